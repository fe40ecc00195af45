//! Throwaway CAs and certificates (rcgen) written to files: etcd's serving
//! and client certificates, and the client certificates of API users.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate's file.
    pub file: PathBuf,
}

/// A certificate and its key, as files.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    /// A CA named `name`, its certificate written to `<dir>/<name>.crt`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let file = dir.join(format!("{name}.crt"));
        std::fs::write(&file, issuer.pem()).unwrap();
        Ca { issuer, file }
    }

    /// A certificate for server and client use with subject CN `cn` and an
    /// O per entry of `orgs`, for localhost and 127.0.0.1, written to
    /// `<dir>/<cn>.crt` and `.key`.
    pub fn issue(&self, dir: &Path, cn: &str, orgs: &[&str]) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        // rcgen keeps one attribute per DnType: every O after the first goes
        // in as a custom type with O's OID (2.5.4.10), which is what it is.
        for (i, o) in orgs.iter().enumerate() {
            let o_type = match i {
                0 => DnType::OrganizationName,
                _ => DnType::CustomDnType(vec![2, 5, 4, 10]),
            };
            params.distinguished_name.push(o_type, *o);
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let leaf = Leaf {
            cert: dir.join(format!("{cn}.crt")),
            key: dir.join(format!("{cn}.key")),
        };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }
}
