//! The errors of this crate: [`Error`] while a configuration is built,
//! [`UrlError`] for a URL that cannot be dialed, [`DialError`] when no URL of
//! a target could be reached.

use std::io;
use std::path::PathBuf;

/// Why a TLS configuration could not be built. The messages name the file
/// (or the name given to PEM bytes) and what it was for.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// `origin` is the file's path or the name PEM bytes were given.
    #[error("invalid {what} {origin}: {reason}")]
    Parse {
        what: &'static str,
        origin: String,
        reason: String,
    },
    #[error("cannot use certificate {cert} with key {key}: {source}")]
    KeyPair {
        cert: String,
        key: String,
        source: rustls::Error,
    },
    /// [`crate::Trust::System`] found no certificate; `reason` says what
    /// went wrong where.
    #[error("no trusted CA certificate in the system's store: {reason}")]
    NoSystemCa { reason: String },
    #[error("cannot build the server certificate verifier: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

impl Error {
    /// [`Error::Parse`] for `origin` (a path or a PEM source's name).
    pub fn parse(origin: impl ToString, what: &'static str, reason: impl ToString) -> Error {
        Error::Parse {
            what,
            origin: origin.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// A URL that cannot be dialed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid URL {url:?}: {reason}")]
pub struct UrlError {
    pub url: String,
    pub reason: String,
}

impl UrlError {
    pub(crate) fn new(url: &str, reason: impl ToString) -> UrlError {
        UrlError {
            url: url.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Why a URL could not be dialed (the last one tried, when a target has
/// several).
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: io::Error },
    #[error("TLS handshake with {url} failed: {source}")]
    Handshake { url: String, source: io::Error },
    #[error("{url} needs TLS, but no TLS configuration was given")]
    NoTls { url: String },
}
