//! rustls configurations built the way etcd's TLS flags set up Go's
//! crypto/tls (pkg/transport/listener.go in etcd 3.4).
//!
//! - `server`: the config a listener serves with: client certificates
//!   checked against the trusted CA and CRL, and etcd's allowed CN / hostname.
//! - `peer_client`: the config a member dials its peers with.
//! - `auto`: auto-TLS, self-signed certificates kept under the data dir.
//! - `names`: the subject CommonName of a certificate.
//! - `handshake_error`: failed handshakes in etcd's (Go's) words.
//! - here: [`TlsError`] and loading PEM files.

mod auto;
mod handshake_error;
mod names;
mod peer_client;
mod server;
#[cfg(test)]
pub(crate) mod test_pki;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use handshake_error::handshake_error_text;
pub use names::common_name;
pub use peer_client::peer_client_config;
pub use server::server_config;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// etcd's words.
    #[error("KeyFile and CertFile must both be present[key: {key}, cert: {cert}]")]
    IncompletePair { cert: String, key: String },
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("invalid {what} {}: {reason}", path.display())]
    Parse {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{kind} client certificate authentication needs a trusted CA file (--{flag})")]
    NoTrustedCa { kind: String, flag: &'static str },
    /// etcd's words.
    #[error(
        "AllowedCN and AllowedHostname are mutually exclusive (cn={cn:?}, hostname={hostname:?})"
    )]
    CnAndHostname { cn: String, hostname: String },
    #[error("invalid allowed hostname {0:?} for client certificates")]
    AllowedHostname(String),
    #[error("cannot use certificate {} with key {}: {source}", cert.display(), key.display())]
    KeyPair {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("cannot generate the self-signed {kind} certificate: {reason}")]
    SelfCert { kind: String, reason: String },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn parse_error(path: &Path, what: &'static str, reason: impl ToString) -> TlsError {
    TlsError::Parse {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Every certificate in a PEM file.
fn load_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parse_error(path, what, e))?;
    if certs.is_empty() {
        return Err(parse_error(path, what, "no PEM certificate found"));
    }
    Ok(certs)
}

/// The first private key in a PEM file: PKCS#1 RSA, PKCS#8 or SEC1 EC.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    const WHAT: &str = "key file";
    let pem = read(path, WHAT)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| parse_error(path, WHAT, e))
}
