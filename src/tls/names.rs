//! Names read out of certificates.

use rustls::pki_types::CertificateDer;
use x509_parser::asn1_rs::{Any, BmpString, Tag, UniversalString};
use x509_parser::certificate::X509CertificateParser;
use x509_parser::nom::Parser;

/// The subject common name of a DER certificate (the last CN attribute, as
/// Go reads it); etcd's auth uses it as the user name of a TLS client.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    // Only the subject is needed: extensions stay unparsed, so one that
    // x509-parser cannot read does not hide the name.
    let mut parser = X509CertificateParser::new().with_deep_parse_extensions(false);
    let (_, cert) = parser.parse(cert.as_ref()).ok()?;
    let last = cert.subject().iter_common_name().last()?;
    directory_string(last.attr_value())
}

/// A DirectoryString value as text; None for other types.
fn directory_string(value: &Any<'_>) -> Option<String> {
    match value.tag() {
        Tag::Utf8String | Tag::NumericString | Tag::PrintableString | Tag::Ia5String => {
            std::str::from_utf8(value.data).ok().map(str::to_string)
        }
        // Read as Latin-1; Go keeps the raw bytes, which agrees for ASCII.
        Tag::T61String => Some(value.data.iter().map(|&b| char::from(b)).collect()),
        // Go refuses an odd-length BMPString; x509-parser would read the
        // stray byte as a character.
        Tag::BmpString if value.data.len().is_multiple_of(2) => {
            BmpString::try_from(value).ok().map(|s| s.string())
        }
        Tag::UniversalString => UniversalString::try_from(value).ok().map(|s| s.string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, DnValue, KeyPair};
    use rustls::pki_types::pem::PemObject;

    use super::*;
    use crate::tls::test_pki::*;

    #[test]
    fn common_names() {
        let ca = Ca::new("the ca");
        let (pem, _) = ca.leaf("user-1", 9);
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(common_name(&der).as_deref(), Some("user-1"));
        assert_eq!(common_name(ca.issuer.der()).as_deref(), Some("the ca"));
        assert_eq!(common_name(&CertificateDer::from(vec![0x30, 0x01])), None);
    }

    /// A self-signed certificate whose subject has `attrs`, in order.
    fn subject(attrs: &[(DnType, DnValue)]) -> CertificateDer<'static> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (ty, value) in attrs {
            params.distinguished_name.push(ty.clone(), value.clone());
        }
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    /// Go's Subject.CommonName keeps the last CN; a subject without one
    /// has no name, whatever else it holds.
    #[test]
    fn the_last_common_name_counts() {
        let utf8 = |s: &str| DnValue::Utf8String(s.to_string());
        // rcgen keeps one value per attribute type, so the second CN is the
        // organization renamed: its OID is as long as the CN's.
        let der = subject(&[
            (DnType::CommonName, utf8("first")),
            (DnType::OrganizationName, utf8("second")),
        ]);
        let (organization, cn) = ([6, 3, 0x55, 4, 0x0a], [6, 3, 0x55, 4, 0x03]);
        let mut two = der.to_vec();
        for at in 0..two.len() - organization.len() {
            if two[at..].starts_with(&organization) {
                two[at..at + cn.len()].copy_from_slice(&cn);
            }
        }
        assert_ne!(two, der.to_vec(), "no organization attribute found");
        assert_eq!(common_name(&der).as_deref(), Some("first"));
        assert_eq!(common_name(&two.into()).as_deref(), Some("second"));
        let none = subject(&[(DnType::OrganizationName, utf8("etcd"))]);
        assert_eq!(common_name(&none), None);
    }

    /// The string types a CN comes in besides UTF8String.
    #[test]
    fn common_name_string_types() {
        let cn = |value: DnValue| common_name(&subject(&[(DnType::CommonName, value)]));
        let printable = rcgen::string::PrintableString::try_from("etcd-1").unwrap();
        assert_eq!(
            cn(DnValue::PrintableString(printable)).as_deref(),
            Some("etcd-1")
        );
        let bmp = rcgen::string::BmpString::try_from("nœud").unwrap();
        assert_eq!(cn(DnValue::BmpString(bmp)).as_deref(), Some("nœud"));
        let universal = rcgen::string::UniversalString::try_from("nœud").unwrap();
        assert_eq!(
            cn(DnValue::UniversalString(universal)).as_deref(),
            Some("nœud")
        );
        let teletex = rcgen::string::TeletexString::try_from("etcd-2").unwrap();
        assert_eq!(
            cn(DnValue::TeletexString(teletex)).as_deref(),
            Some("etcd-2")
        );
    }
}
