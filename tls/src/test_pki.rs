//! Throwaway CAs, certificates and CRLs for tests (feature `test-pki`), and
//! a handshake over an in-memory pipe. Panics on any failure: test code.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SerialNumber,
};
use rustls::pki_types::ServerName;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Pem;

/// A certificate authority.
pub struct Ca {
    pub issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
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

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// (cert PEM, key PEM) of a leaf for server and client auth, with
    /// subject CN `cn`, SANs localhost and 127.0.0.1, and serial `serial`.
    pub fn leaf(&self, cn: &str, serial: u8) -> (String, String) {
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

    /// A PEM CRL that revokes `serial`.
    pub fn crl_revoking(&self, serial: u8) -> String {
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

    /// A server presenting a new leaf for `cn`; with `client_auth`, client
    /// certificates from this CA are required.
    pub fn server_config(&self, cn: &str, client_auth: bool) -> Arc<ServerConfig> {
        let (cert, key) = self.leaf(cn, 1);
        server_config(&cert, &key, client_auth.then_some(self))
    }
}

/// A server presenting `cert` (PEM) with `key`, offering h2; with
/// `client_ca`, client certificates from it are required.
pub fn server_config(cert: &str, key: &str, client_ca: Option<&Ca>) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.issuer.der().clone()).unwrap();
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap()
        }
        None => WebPkiClientVerifier::no_client_auth(),
    };
    let chain = Pem::bytes("cert", cert).certs("cert").unwrap();
    let key = Pem::bytes("key", key).private_key().unwrap();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// `data` written to `dir/name`.
pub fn write(dir: &Path, name: &str, data: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, data).unwrap();
    p
}

/// A CA and certificates from it, as files in `dir`.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub issuer: Ca,
    /// The CA certificate.
    pub ca: PathBuf,
    /// (cert, key): CN "server", serial 1.
    pub server: (PathBuf, PathBuf),
    /// (cert, key): CN "client", serial 2.
    pub client: (PathBuf, PathBuf),
    /// (cert, key): CN "client", serial 2, from another CA.
    pub stranger: (PathBuf, PathBuf),
    /// The CA's CRL, revoking serial 2 (the client).
    pub crl: PathBuf,
}

pub fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("test ca");
    let other = Ca::new("other ca");
    let (sc, sk) = ca.leaf("server", 1);
    let (cc, ck) = ca.leaf("client", 2);
    let (oc, ok) = other.leaf("client", 2);
    Pki {
        ca: write(d, "ca.crt", &ca.pem()),
        server: (write(d, "server.crt", &sc), write(d, "server.key", &sk)),
        client: (write(d, "client.crt", &cc), write(d, "client.key", &ck)),
        stranger: (write(d, "other.crt", &oc), write(d, "other.key", &ok)),
        crl: write(d, "revoke.crl", &ca.crl_revoking(2)),
        issuer: ca,
        dir,
    }
}

/// A handshake with the client dialing `server_name`, plus one byte each
/// way: the server side's result (the protocol ALPN chose) and the client
/// side's.
pub async fn exchange(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    server_name: &str,
) -> (io::Result<Option<Vec<u8>>>, io::Result<()>) {
    let (c, s) = tokio::io::duplex(1 << 16);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = ServerName::try_from(server_name.to_string()).unwrap();
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
        let mut tls = connector.connect(name, c).await?;
        tls.write_all(b"p").await?;
        tls.flush().await?;
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await?;
        Ok::<_, io::Error>(())
    };
    let both = async { tokio::join!(server_side, client_side) };
    match tokio::time::timeout(Duration::from_secs(10), both).await {
        Ok(results) => results,
        Err(_) => panic!("handshake hung"),
    }
}
