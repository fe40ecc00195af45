//! The client config a member dials its peers with (peer TLS is one
//! setup for both directions in etcd).

use std::path::Path;
use std::sync::Arc;

use oxetcd_tls::{client_config, CertCheck, ClientTlsOptions, Identity, Pem, Trust};

use super::auto::self_cert;
use super::server::name_rule;
use super::TlsError;
use crate::config::TlsSettings;

/// The client side of peer TLS, for connecting to other members: None for
/// plain http peers. With --peer-auto-tls members do not verify each other's
/// self-signed certificates (etcd's InsecureSkipVerify); otherwise the other
/// member must present a certificate from --peer-trusted-ca-file, and we
/// present our --peer-cert-file.
pub fn peer_client_config(
    settings: &TlsSettings,
    data_dir: &Path,
    hosts: &[String],
) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
    let options = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => {
            let ca = settings
                .trusted_ca_file
                .as_ref()
                .ok_or_else(|| TlsError::NoTrustedCa {
                    kind: "peer".to_string(),
                    flag: "peer-trusted-ca-file",
                })?;
            let options = ClientTlsOptions::new(Trust::Cas(vec![Pem::file(ca)]))
                .identity(Identity::files(cert, key));
            // etcd's peer TLS config is one for both directions, so the
            // allowed CN / hostname also applies to the members we dial.
            match name_rule(settings)? {
                Some(rule) => options.check(Arc::new(rule) as Arc<dyn CertCheck>),
                None => options,
            }
        }
        (None, None) if settings.auto_tls => {
            let (cert, key) = self_cert(&data_dir.join("fixtures").join("peer"), "peer", hosts)?;
            ClientTlsOptions::new(Trust::InsecureSkipVerify).identity(Identity::files(cert, key))
        }
        _ => return Ok(None),
    };
    let provider = super::cipher_suites::provider(&settings.cipher_suites);
    Ok(Some(client_config(&options.provider(Arc::new(provider)))?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::test_pki::*;

    #[tokio::test]
    async fn peers_check_the_allowed_name_of_the_members_they_dial() {
        let p = pki();
        let server = build(&mtls(&p), p.dir.path());
        let dialer = |cn: &str| {
            let settings = TlsSettings {
                cert_file: Some(p.client.0.clone()),
                key_file: Some(p.client.1.clone()),
                allowed_cn: Some(cn.to_string()),
                ..mtls(&p)
            };
            peer_client_config(&settings, p.dir.path(), &[])
                .unwrap()
                .expect("peer TLS configured")
        };
        assert_eq!(server_error(server.clone(), dialer("server")).await, None);
        assert_eq!(
            server_error(server, dialer("example2.com"))
                .await
                .as_deref(),
            Some("remote error: tls: bad certificate")
        );
    }

    /// --peer-auto-tls: the member presents its self-signed certificate and
    /// accepts any server; with a certificate pair it trusts only the CA.
    #[tokio::test]
    async fn auto_tls_peers_accept_any_member_but_configured_ones_check_the_ca() {
        let p = pki();
        let elsewhere = Ca::new("elsewhere");
        let server = elsewhere.server_config("member", false);
        let data = tempfile::tempdir().unwrap();
        let auto = TlsSettings {
            auto_tls: true,
            ..TlsSettings::default()
        };
        let client = peer_client_config(&auto, data.path(), &["localhost".into()])
            .unwrap()
            .expect("auto TLS configured");
        assert!(data.path().join("fixtures/peer/cert.pem").is_file());
        assert!(handshake(server.clone(), client).await);
        let configured = TlsSettings {
            cert_file: Some(p.client.0.clone()),
            key_file: Some(p.client.1.clone()),
            ..mtls(&p)
        };
        let client = peer_client_config(&configured, data.path(), &[])
            .unwrap()
            .expect("peer TLS configured");
        assert!(!handshake(server, client).await);
        let plain = TlsSettings::default();
        assert!(peer_client_config(&plain, data.path(), &[])
            .unwrap()
            .is_none());
        let no_ca = TlsSettings {
            trusted_ca_file: None,
            ..configured
        };
        assert!(matches!(
            peer_client_config(&no_ca, data.path(), &[]),
            Err(TlsError::NoTrustedCa { .. })
        ));
    }
}
