//! The client side of TLS for everything in oxetcd that dials a server over
//! gRPC: members dialing their peers, the load generator dialing
//! `--endpoints`, and an apiserver dialing etcd (`--etcd-cafile`,
//! `--etcd-certfile`, `--etcd-keyfile`).
//!
//! - [`client_config`]: a rustls [`ClientConfig`](rustls::ClientConfig) from
//!   [`ClientTlsOptions`]: whom to [`Trust`] (CA files or PEM bytes, the
//!   system's store, or any server, as etcd's `InsecureSkipVerify`), the
//!   [`Identity`] to present, an extra [`CertCheck`] of the server's
//!   certificate; ALPN `h2`.
//! - [`Target`]: an etcd URL (`http`, `https`, `unix`, `unixs`) parsed into
//!   what to dial and the name the server certificate must have.
//! - [`Dialer`]: the connector tonic dials through (`connect_with_connector`):
//!   the targets in order, TCP or unix socket, then the rustls handshake;
//!   [`Dialer::endpoint`] is the tonic endpoint to use it with.
//! - [`Pem`]: a PEM input, a file or bytes, and the certificates and keys in
//!   it (the server side of the front end reads its files with it too).
//! - Errors: [`Error`] (building a configuration), [`UrlError`], [`DialError`].
//! - `test_pki` (feature `test-pki`): throwaway CAs and certificates for tests.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use oxetcd_tls::{client_config, tls_connector, ClientTlsOptions, Dialer, Identity, Pem, Target, Trust};
//!
//! // An apiserver's --etcd-cafile, --etcd-certfile, --etcd-keyfile, --etcd-servers.
//! let options = ClientTlsOptions::new(Trust::Cas(vec![Pem::file("/etc/etcd/ca.crt")]))
//!     .identity(Identity::files("/etc/etcd/client.crt", "/etc/etcd/client.key"));
//! let tls = tls_connector(client_config(&options)?);
//! let dialer = Dialer::new(Target::parse_list("https://127.0.0.1:2379")?, Some(tls));
//! let channel = dialer.endpoint()?.connect_with_connector(dialer).await?;
//! # let _ = channel; Ok(()) }
//! ```

mod client_config;
mod dialer;
mod error;
mod pem;
mod target;
#[cfg(any(test, feature = "test-pki"))]
pub mod test_pki;
mod verifier;

pub use client_config::{client_config, CertCheck, ClientTlsOptions, Identity, Trust};
pub use dialer::{tls_connector, Dialer, Io};
pub use error::{DialError, Error, UrlError};
pub use pem::Pem;
pub use target::{Dial, Target};
/// What a [`Dialer`] does its handshakes with ([`tls_connector`] makes one).
pub use tokio_rustls::TlsConnector;
