//! Throwaway CAs and certificates for tests (here and in listener.rs), and
//! the handshake helpers the tls tests share.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SerialNumber,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{handshake_error_text, load_certs, load_key, server_config};
use crate::config::TlsSettings;

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) struct Ca {
    pub(crate) issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// (cert PEM, key PEM) for a leaf with SANs localhost/127.0.0.1.
    pub(crate) fn leaf(&self, cn: &str, serial: u8) -> (String, String) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from(vec![serial]));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub(crate) fn crl_revoking(&self, serial: u8) -> String {
        let params = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(2021, 1, 1),
            crl_number: SerialNumber::from(vec![1]),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(vec![serial]),
                revocation_time: rcgen::date_time_ymd(2020, 1, 1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }
}

pub(crate) fn write(dir: &Path, name: &str, data: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, data).unwrap();
    p
}

pub(crate) fn client_config(ca_pem: &Path, cert: Option<(&Path, &Path)>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca_pem, "ca").unwrap() {
        roots.add(c).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match cert {
        Some((c, k)) => builder
            .with_client_auth_cert(load_certs(c, "cert").unwrap(), load_key(k).unwrap())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(cfg)
}

pub(crate) struct Pki {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ca: PathBuf,
    pub(crate) server: (PathBuf, PathBuf),
    pub(crate) client: (PathBuf, PathBuf),
    pub(crate) stranger: (PathBuf, PathBuf),
    pub(crate) crl: PathBuf,
}

pub(crate) fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("test ca");
    let other = Ca::new("other ca");
    let (sc, sk) = ca.leaf("server", 1);
    let (cc, ck) = ca.leaf("client", 2);
    let (oc, ok) = other.leaf("client", 2);
    Pki {
        ca: write(d, "ca.crt", &ca.issuer.pem()),
        server: (write(d, "server.crt", &sc), write(d, "server.key", &sk)),
        client: (write(d, "client.crt", &cc), write(d, "client.key", &ck)),
        stranger: (write(d, "other.crt", &oc), write(d, "other.key", &ok)),
        crl: write(d, "revoke.crl", &ca.crl_revoking(2)),
        dir,
    }
}

/// A handshake plus one byte each way: the server side's result (the
/// protocol ALPN chose) and the client side's.
async fn exchange(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> (io::Result<Option<Vec<u8>>>, io::Result<()>) {
    let (c, s) = tokio::io::duplex(1 << 16);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let connector = tokio_rustls::TlsConnector::from(client);
    let server_side = async move {
        let mut tls = acceptor.accept(s).await?;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await?;
        tls.write_all(b"k").await?;
        tls.flush().await?;
        Ok::<_, io::Error>(alpn)
    };
    // The client waits for the server's byte: the server must not find
    // the connection gone while it still writes.
    let client_side = async move {
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, c).await?;
        tls.write_all(b"p").await?;
        tls.flush().await?;
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await?;
        Ok::<_, io::Error>(())
    };
    let both = async { tokio::join!(server_side, client_side) };
    match tokio::time::timeout(std::time::Duration::from_secs(10), both).await {
        Ok(results) => results,
        Err(_) => panic!("handshake hung"),
    }
}

/// Whether a handshake plus one byte each way succeeds; checks h2 ALPN.
pub(crate) async fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> bool {
    match exchange(server, client).await {
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
    let (server_side, _) = exchange(server, client).await;
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
