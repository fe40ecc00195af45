//! The front end's TLS test helpers: the CA and certificates come from
//! `oxetcd_tls::test_pki`; here are what needs this crate's server config
//! (a listener's config for [`TlsSettings`], handshakes reported in etcd's
//! words) and client configs built the way every client of oxetcd builds
//! them.

use std::path::Path;
use std::sync::Arc;

pub(crate) use oxetcd_tls::test_pki::{pki, write, Ca, Pki};
use oxetcd_tls::{ClientTlsOptions, Identity, Pem, Trust};
use rustls::{ClientConfig, ServerConfig};

use super::{handshake_error_text, server_config};
use crate::config::TlsSettings;

/// A client trusting `ca_pem`, presenting `cert` (cert, key) if given.
pub(crate) fn client_config(ca_pem: &Path, cert: Option<(&Path, &Path)>) -> Arc<ClientConfig> {
    let options = ClientTlsOptions::new(Trust::Cas(vec![Pem::file(ca_pem)]));
    let options = match cert {
        Some((cert, key)) => options.identity(Identity::files(cert, key)),
        None => options,
    };
    oxetcd_tls::client_config(&options).unwrap()
}

/// Whether a handshake plus one byte each way succeeds; checks h2 ALPN.
pub(crate) async fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> bool {
    match oxetcd_tls::test_pki::exchange(server, client, "localhost").await {
        (Ok(alpn), Ok(())) => {
            assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
            true
        }
        _ => false,
    }
}

/// The server side's handshake error, None when the server side finished.
pub(crate) async fn server_error(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> Option<String> {
    let (server_side, _) = oxetcd_tls::test_pki::exchange(server, client, "localhost").await;
    server_side.err().map(|e| handshake_error_text(&e))
}

/// `server` serving, client certificates from `ca` required.
pub(crate) fn mtls(p: &Pki) -> TlsSettings {
    TlsSettings {
        cert_file: Some(p.server.0.clone()),
        key_file: Some(p.server.1.clone()),
        trusted_ca_file: Some(p.ca.clone()),
        client_cert_auth: true,
        ..TlsSettings::default()
    }
}

/// The "client" listener's config for `settings`.
pub(crate) fn build(settings: &TlsSettings, dir: &Path) -> Arc<ServerConfig> {
    server_config(settings, dir, "client", &["localhost:2379".to_string()])
        .unwrap()
        .expect("TLS configured")
}
