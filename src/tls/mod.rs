//! rustls configurations built the way etcd's TLS flags set up Go's
//! crypto/tls (pkg/transport/listener.go in etcd 3.4).
//!
//! - `server`: the config a listener serves with: client certificates
//!   checked against the trusted CA and CRL, and etcd's allowed CN / hostname.
//! - `peer_client`: the config a member dials its peers with (built by
//!   `oxetcd_tls`, which also reads every PEM file here).
//! - `auto`: auto-TLS, self-signed certificates kept under the data dir.
//! - `names`: the subject CommonName of a certificate.
//! - `cipher_suites`: --cipher-suites, Go's names to rustls' suites.
//! - `handshake_error`: failed handshakes in etcd's (Go's) words.
//! - here: [`TlsError`].

mod auto;
pub mod cipher_suites;
mod handshake_error;
mod names;
mod peer_client;
mod server;
#[cfg(test)]
pub(crate) mod test_pki;

use std::io;
use std::path::PathBuf;

pub use handshake_error::handshake_error_text;
pub use names::common_name;
pub use peer_client::peer_client_config;
pub use server::server_config;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// etcd's words.
    #[error("KeyFile and CertFile must both be present[key: {key}, cert: {cert}]")]
    IncompletePair { cert: String, key: String },
    /// A file that cannot be read or parsed, a key that is not the
    /// certificate's.
    #[error(transparent)]
    Load(#[from] oxetcd_tls::Error),
    #[error("{kind} client certificate authentication needs a trusted CA file (--{flag})")]
    NoTrustedCa { kind: String, flag: &'static str },
    /// etcd's words.
    #[error(
        "AllowedCN and AllowedHostname are mutually exclusive (cn={cn:?}, hostname={hostname:?})"
    )]
    CnAndHostname { cn: String, hostname: String },
    #[error("invalid allowed hostname {0:?} for client certificates")]
    AllowedHostname(String),
    #[error("cannot generate the self-signed {kind} certificate: {reason}")]
    SelfCert { kind: String, reason: String },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}
