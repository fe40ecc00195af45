//! PEM inputs, from a file (etcd's `--*-file` flags, an apiserver's
//! `--etcd-cafile`) or from bytes already in memory, and the certificates and
//! keys read out of them.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

/// Where PEM text comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Pem {
    /// A file, read when the configuration is built.
    File(PathBuf),
    /// Text in memory; `name` stands for it in error messages.
    Bytes { name: String, pem: Vec<u8> },
}

impl Pem {
    pub fn file(path: impl Into<PathBuf>) -> Pem {
        Pem::File(path.into())
    }

    pub fn bytes(name: impl Into<String>, pem: impl Into<Vec<u8>>) -> Pem {
        Pem::Bytes {
            name: name.into(),
            pem: pem.into(),
        }
    }

    /// The raw contents; `what` names the input in the error ("CRL file").
    pub fn contents(&self, what: &'static str) -> Result<Cow<'_, [u8]>, Error> {
        match self {
            Pem::File(path) => std::fs::read(path)
                .map(Cow::Owned)
                .map_err(|source| Error::Read {
                    what,
                    path: path.clone(),
                    source,
                }),
            Pem::Bytes { pem, .. } => Ok(Cow::Borrowed(pem)),
        }
    }

    /// Every certificate, in order; at least one.
    pub fn certs(&self, what: &'static str) -> Result<Vec<CertificateDer<'static>>, Error> {
        let pem = self.contents(what)?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::parse(self, what, e))?;
        if certs.is_empty() {
            return Err(Error::parse(self, what, "no PEM certificate found"));
        }
        Ok(certs)
    }

    /// The first private key: PKCS#1 RSA, PKCS#8 or SEC1 EC.
    pub fn private_key(&self) -> Result<PrivateKeyDer<'static>, Error> {
        const WHAT: &str = "key file";
        let pem = self.contents(WHAT)?;
        PrivateKeyDer::from_pem_slice(&pem).map_err(|e| Error::parse(self, WHAT, e))
    }
}

/// The path, or the name of the bytes.
impl fmt::Display for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::File(path) => write!(f, "{}", path.display()),
            Pem::Bytes { name, .. } => f.write_str(name),
        }
    }
}

/// Leaves the bytes out: they may hold a private key.
impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::File(path) => f.debug_tuple("File").field(path).finish(),
            Pem::Bytes { name, pem } => f
                .debug_struct("Bytes")
                .field("name", name)
                .field("len", &pem.len())
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pki::Ca;

    #[test]
    fn certificates_and_keys_from_files_and_bytes() {
        let ca = Ca::new("pem ca");
        let (cert, key) = ca.leaf("leaf", 3);
        let dir = tempfile::tempdir().unwrap();
        let chain = format!("{cert}{}", ca.pem());
        let file = Pem::file(crate::test_pki::write(dir.path(), "chain.pem", &chain));
        assert_eq!(file.certs("certificate file").unwrap().len(), 2);
        let bytes = Pem::bytes("leaf key", key.as_bytes());
        assert!(bytes.private_key().is_ok());
        assert_eq!(
            format!("{bytes:?}"),
            format!("Bytes {{ name: \"leaf key\", len: {} }}", key.len())
        );
    }

    #[test]
    fn errors_name_the_input_and_its_use() {
        let missing = Pem::file("/nonexistent/ca.crt");
        let e = missing.certs("trusted CA file").unwrap_err();
        assert!(matches!(e, Error::Read { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("cannot read trusted CA file /nonexistent/ca.crt: "),
            "{e}"
        );
        let empty = Pem::bytes("--etcd-cafile", "not PEM");
        assert_eq!(
            empty.certs("trusted CA file").unwrap_err().to_string(),
            "invalid trusted CA file --etcd-cafile: no PEM certificate found"
        );
        let e = empty.private_key().unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid key file --etcd-cafile: "),
            "{e}"
        );
    }
}
