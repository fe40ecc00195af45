//! rustls client configurations from what etcd's TLS flags give: whom to
//! trust (CA files, the system's store, or nobody checked, as etcd's
//! `InsecureSkipVerify`), the client certificate to present, and an extra
//! check of the server's certificate (etcd's allowed CN / hostname).

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::verifier::Verifier;
use crate::{Error, Pem};

/// Whose certificates a server's must chain to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The CA certificates in these inputs, every one of which must parse
    /// (etcd's `--trusted-ca-file`, etcdctl's `--cacert`, an apiserver's
    /// `--etcd-cafile`).
    Cas(Vec<Pem>),
    /// The system's CA store: `SSL_CERT_FILE` / `SSL_CERT_DIR`, else the
    /// distribution's bundle. Certificates in it that do not parse are
    /// skipped; an empty store is an error.
    System,
    /// Any certificate is accepted (etcd's `InsecureSkipVerify`, which
    /// `--peer-auto-tls` and `--insecure-skip-tls-verify` set): the
    /// connection is encrypted and the handshake signatures are checked, but
    /// the server is not authenticated.
    InsecureSkipVerify,
}

/// The certificate (chain) and key a client presents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cert: Pem,
    pub key: Pem,
}

impl Identity {
    /// From a certificate file and a key file.
    pub fn files(cert: impl Into<std::path::PathBuf>, key: impl Into<std::path::PathBuf>) -> Self {
        Identity {
            cert: Pem::file(cert),
            key: Pem::file(key),
        }
    }
}

/// A check of the server's end-entity certificate after the chain (and,
/// for [`Trust::Cas`] and [`Trust::System`], the name) was verified, as Go's
/// `VerifyPeerCertificate`: etcd's `--peer-cert-allowed-cn` applies to the
/// members a member dials.
pub trait CertCheck: fmt::Debug + Send + Sync {
    /// An error fails the handshake (send the alert Go would send through
    /// the error's kind: an `InvalidCertificate` error sends bad_certificate).
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error>;
}

/// What a client configuration is built from.
#[derive(Clone, Debug)]
pub struct ClientTlsOptions {
    pub trust: Trust,
    /// For servers that ask for a client certificate.
    pub identity: Option<Identity>,
    pub check: Option<Arc<dyn CertCheck>>,
    /// The primitives and cipher suites (etcd's --cipher-suites); ring's
    /// defaults when None.
    pub provider: Option<Arc<CryptoProvider>>,
}

impl ClientTlsOptions {
    /// Trusting `trust`, presenting no certificate, with no extra check.
    pub fn new(trust: Trust) -> Self {
        ClientTlsOptions {
            trust,
            identity: None,
            check: None,
            provider: None,
        }
    }

    pub fn provider(self, provider: Arc<CryptoProvider>) -> Self {
        ClientTlsOptions {
            provider: Some(provider),
            ..self
        }
    }

    pub fn identity(self, identity: Identity) -> Self {
        ClientTlsOptions {
            identity: Some(identity),
            ..self
        }
    }

    pub fn check(self, check: Arc<dyn CertCheck>) -> Self {
        ClientTlsOptions {
            check: Some(check),
            ..self
        }
    }
}

/// The rustls client configuration for `options`: ring's primitives, TLS 1.2
/// and 1.3, offering HTTP/2 (ALPN `h2`: gRPC's protocol).
pub fn client_config(options: &ClientTlsOptions) -> Result<Arc<ClientConfig>, Error> {
    let provider = options
        .provider
        .clone()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let verifier = verifier(options, provider.clone())?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &options.identity {
        Some(Identity { cert, key }) => builder
            .with_client_auth_cert(cert.certs("certificate file")?, key.private_key()?)
            .map_err(|source| Error::KeyPair {
                cert: cert.to_string(),
                key: key.to_string(),
                source,
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn verifier(
    options: &ClientTlsOptions,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, Error> {
    let roots = match &options.trust {
        Trust::Cas(cas) => Some(ca_roots(cas)?),
        Trust::System => Some(system_roots()?),
        Trust::InsecureSkipVerify => None,
    };
    let chain = match roots {
        Some(roots) => Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()?,
        ),
        None => None,
    };
    Ok(match (chain, &options.check) {
        (Some(chain), None) => chain,
        (chain, check) => Arc::new(Verifier {
            chain,
            check: check.clone(),
            algorithms: provider.signature_verification_algorithms,
        }),
    })
}

fn ca_roots(cas: &[Pem]) -> Result<RootCertStore, Error> {
    const WHAT: &str = "trusted CA file";
    let mut roots = RootCertStore::empty();
    for ca in cas {
        for cert in ca.certs(WHAT)? {
            roots.add(cert).map_err(|e| Error::parse(ca, WHAT, e))?;
        }
    }
    // An empty list is left to the verifier builder, which refuses it.
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, Error> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _unparsable) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let reason = if found.errors.is_empty() {
            "none found".to_string()
        } else {
            found
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Err(Error::NoSystemCa { reason });
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pki::{exchange, pki, Ca};

    fn trusting(ca: &std::path::Path) -> ClientTlsOptions {
        ClientTlsOptions::new(Trust::Cas(vec![Pem::file(ca)]))
    }

    /// Whether the handshake with the test server (whose certificate names
    /// localhost and 127.0.0.1) and one byte each way succeed.
    async fn handshakes(server: Arc<rustls::ServerConfig>, options: &ClientTlsOptions) -> bool {
        let client = client_config(options).unwrap();
        let (server_side, client_side) = exchange(server, client, "localhost").await;
        if let Ok(alpn) = &server_side {
            assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "h2 is offered");
        }
        server_side.is_ok() && client_side.is_ok()
    }

    #[tokio::test]
    async fn a_server_is_trusted_through_its_ca() {
        let p = pki();
        let server = p.issuer.server_config("server", false);
        assert!(handshakes(server.clone(), &trusting(&p.ca)).await);
        let stranger = Ca::new("other ca");
        let dir = tempfile::tempdir().unwrap();
        let other = crate::test_pki::write(dir.path(), "other.crt", &stranger.pem());
        assert!(!handshakes(server.clone(), &trusting(&other)).await);
        // Several CA inputs: one of them is enough.
        let both = ClientTlsOptions::new(Trust::Cas(vec![
            Pem::file(&other),
            Pem::bytes("the test CA", p.issuer.pem()),
        ]));
        assert!(handshakes(server, &both).await);
    }

    #[tokio::test]
    async fn skipping_verification_accepts_any_server() {
        let p = pki();
        let stranger = Ca::new("other ca");
        let server = stranger.server_config("server", false);
        assert!(!handshakes(server.clone(), &trusting(&p.ca)).await);
        let insecure = ClientTlsOptions::new(Trust::InsecureSkipVerify);
        assert!(handshakes(server, &insecure).await);
    }

    #[tokio::test]
    async fn the_client_certificate_is_presented_when_asked() {
        let p = pki();
        let server = p.issuer.server_config("server", true);
        assert!(!handshakes(server.clone(), &trusting(&p.ca)).await);
        let with_cert = trusting(&p.ca).identity(Identity::files(&p.client.0, &p.client.1));
        assert!(handshakes(server.clone(), &with_cert).await);
        // PEM bytes work the same as files.
        let (cert, key) = p.issuer.leaf("from bytes", 7);
        let from_bytes = ClientTlsOptions::new(Trust::Cas(vec![Pem::bytes("ca", p.issuer.pem())]))
            .identity(Identity {
                cert: Pem::bytes("cert", cert),
                key: Pem::bytes("key", key),
            });
        assert!(handshakes(server, &from_bytes).await);
    }

    /// Accepts only the certificate it was given.
    #[derive(Debug)]
    struct Only(CertificateDer<'static>);

    impl CertCheck for Only {
        fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
            if end_entity.as_ref() == self.0.as_ref() {
                Ok(())
            } else {
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName,
                ))
            }
        }
    }

    #[tokio::test]
    async fn the_extra_check_runs_after_verification() {
        let p = pki();
        let (cert, key) = p.issuer.leaf("member-1", 5);
        let server = crate::test_pki::server_config(&cert, &key, None);
        let der = Pem::bytes("member-1", cert)
            .certs("cert")
            .unwrap()
            .remove(0);
        let other = Pem::file(&p.client.0).certs("cert").unwrap().remove(0);
        let only = |der| Arc::new(Only(der)) as Arc<dyn CertCheck>;
        let checked = |der| trusting(&p.ca).check(only(der));
        assert!(handshakes(server.clone(), &checked(der.clone())).await);
        assert!(!handshakes(server.clone(), &checked(other.clone())).await);
        // Skipping verification skips the chain, not the check.
        let insecure = ClientTlsOptions::new(Trust::InsecureSkipVerify);
        assert!(handshakes(server.clone(), &insecure.clone().check(only(der))).await);
        assert!(!handshakes(server, &insecure.check(only(other))).await);
    }

    #[tokio::test]
    async fn ip_addresses_are_checked_against_ip_sans() {
        let p = pki();
        let server = p.issuer.server_config("server", false);
        let client = client_config(&trusting(&p.ca)).unwrap();
        let (s, c) = exchange(server.clone(), client.clone(), "127.0.0.1").await;
        assert!(s.is_ok() && c.is_ok(), "{s:?} {c:?}");
        let (_, c) = exchange(server, client, "127.0.0.2").await;
        let e = c.unwrap_err().to_string();
        assert!(e.contains("not valid for name"), "{e}");
    }

    /// The only test that sets SSL_CERT_FILE and SSL_CERT_DIR
    /// (rustls-native-certs then reads them alone), so no other test sees
    /// them change; it puts back what it found.
    #[tokio::test]
    async fn the_system_store_is_where_ssl_cert_file_says() {
        let p = pki();
        let server = p.issuer.server_config("server", false);
        let saved = ["SSL_CERT_FILE", "SSL_CERT_DIR"].map(|v| (v, std::env::var_os(v)));
        let empty = p.dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        std::env::set_var("SSL_CERT_DIR", &empty);
        std::env::set_var("SSL_CERT_FILE", &p.ca);
        let trusted = handshakes(server, &ClientTlsOptions::new(Trust::System)).await;
        std::env::set_var("SSL_CERT_FILE", p.dir.path().join("missing.pem"));
        let missing = client_config(&ClientTlsOptions::new(Trust::System));
        for (var, value) in saved {
            match value {
                Some(value) => std::env::set_var(var, value),
                None => std::env::remove_var(var),
            }
        }
        assert!(trusted);
        let e = missing.unwrap_err();
        assert!(matches!(e, Error::NoSystemCa { .. }), "{e}");
        assert!(e.to_string().contains("missing.pem"), "{e}");
    }

    #[test]
    fn configuration_errors_are_typed() {
        let p = pki();
        let e = client_config(&trusting(std::path::Path::new("/nonexistent/ca.crt"))).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Read {
                    what: "trusted CA file",
                    ..
                }
            ),
            "{e}"
        );
        let e = client_config(&ClientTlsOptions::new(Trust::Cas(vec![]))).unwrap_err();
        assert!(matches!(e, Error::Verifier(_)), "{e}");
        // A key that is not the certificate's.
        let mismatched = trusting(&p.ca).identity(Identity::files(&p.client.0, &p.server.1));
        let e = client_config(&mismatched).unwrap_err();
        assert!(matches!(e, Error::KeyPair { .. }), "{e}");
        assert!(e.to_string().contains("client.crt"), "{e}");
    }
}
