//! Names read out of certificates.

use rustls::pki_types::CertificateDer;

/// The subject common name of a DER certificate (the last CN attribute, as
/// Go reads it); etcd's auth uses it as the user name of a TLS client.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (cert_body, _) = der_expect(cert.as_ref(), 0x30)?;
    let (tbs, _) = der_expect(cert_body, 0x30)?;
    let mut rest = tbs;
    // [0] version is optional; then serial, signature, issuer, validity.
    if rest.first() == Some(&0xa0) {
        rest = der_next(rest)?.2;
    }
    for _ in 0..4 {
        rest = der_next(rest)?.2;
    }
    let (mut rdns, _) = der_expect(rest, 0x30)?;
    let mut cn = None;
    while !rdns.is_empty() {
        let (mut attrs, after) = der_expect(rdns, 0x31)?;
        rdns = after;
        while !attrs.is_empty() {
            let (attr, after) = der_expect(attrs, 0x30)?;
            attrs = after;
            let (oid, value) = der_expect(attr, 0x06)?;
            // 2.5.4.3 id-at-commonName
            if oid == [0x55, 0x04, 0x03] {
                let (tag, content, _) = der_next(value)?;
                cn = der_string(tag, content);
            }
        }
    }
    cn
}

/// One DER element: (tag, content, rest).
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

fn der_expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, content, rest) = der_next(input)?;
    (t == tag).then_some((content, rest))
}

fn der_string(tag: u8, content: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, NumericString, PrintableString, IA5String
        0x0c | 0x12 | 0x13 | 0x16 => String::from_utf8(content.to_vec()).ok(),
        // TeletexString, read as Latin-1 like Go does
        0x14 => Some(content.iter().map(|&b| char::from(b)).collect()),
        // BMPString
        0x1e => {
            let units: Vec<u16> = content
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        // UniversalString
        0x1c => content
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
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
}
