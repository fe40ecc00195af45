//! The client config a member dials its peers with (peer TLS is one
//! setup for both directions in etcd).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::auto::self_cert;
use super::server::{name_rule, NameRule};
use super::{load_certs, load_key, parse_error, TlsError};
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => {
            let ca = settings
                .trusted_ca_file
                .as_ref()
                .ok_or_else(|| TlsError::NoTrustedCa {
                    kind: "peer".to_string(),
                    flag: "peer-trusted-ca-file",
                })?;
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs(ca, "trusted CA file")? {
                roots.add(c).map_err(TlsError::Rustls)?;
            }
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| parse_error(ca, "trusted CA file", e))?;
            // etcd's peer TLS config is one for both directions, so the
            // allowed CN / hostname also applies to the members we dial.
            let verifier: Arc<dyn ServerCertVerifier> = match name_rule(settings)? {
                None => inner,
                Some(rule) => Arc::new(AllowedNameServer { inner, rule }),
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_client_auth_cert(load_certs(cert, "certificate file")?, load_key(key)?)
                .map_err(|source| TlsError::KeyPair {
                    cert: cert.clone(),
                    key: key.clone(),
                    source,
                })?
        }
        (None, None) if settings.auto_tls => {
            let (cert, key) = self_cert(&data_dir.join("fixtures").join("peer"), "peer", hosts)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider)))
                .with_client_auth_cert(load_certs(&cert, "certificate file")?, load_key(&key)?)
                .map_err(|source| TlsError::KeyPair { cert, key, source })?
        }
        _ => return Ok(None),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// The usual server certificate checks, then etcd's allowed name.
#[derive(Debug)]
struct AllowedNameServer {
    inner: Arc<WebPkiServerVerifier>,
    rule: NameRule,
}

impl ServerCertVerifier for AllowedNameServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        self.rule.check(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Peer auto-TLS: encryption without authentication, as etcd does it.
#[derive(Debug)]
struct AcceptAnyServer(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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
}
