//! The config a listener serves TLS with: its certificate (or auto-TLS's),
//! client certificates checked against the trusted CA and CRL, and etcd's
//! allowed CN / hostname on them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use oxetcd_tls::{CertCheck, Pem};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

use super::auto::self_cert;
use super::names::common_name;
use super::TlsError;
use crate::config::TlsSettings;

/// The server side of one of etcd's TLS setups; `kind` is "client" or
/// "peer" (auto-TLS files go to `<data_dir>/fixtures/<kind>/`), `hosts` the
/// listen URLs' hosts (or host:port) that an auto-TLS certificate must name.
///
/// None when neither a certificate nor auto-TLS is configured. Like etcd, a
/// trusted CA file alone already makes client certificates mandatory.
pub fn server_config(
    settings: &TlsSettings,
    data_dir: &Path,
    kind: &str,
    hosts: &[String],
) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let provider = Arc::new(super::cipher_suites::provider(&settings.cipher_suites));
    let (cert_path, key_path, auto) = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone(), false),
        (None, None) if settings.auto_tls => {
            let (cert, key) = self_cert(&data_dir.join("fixtures").join(kind), kind, hosts)?;
            (cert, key, true)
        }
        (None, None) => return Ok(None),
        (cert, key) => {
            let show = |p: &Option<PathBuf>| p.as_deref().map(|p| p.display().to_string());
            return Err(TlsError::IncompletePair {
                cert: show(cert).unwrap_or_default(),
                key: show(key).unwrap_or_default(),
            });
        }
    };
    let (cert_pem, key_pem) = (Pem::file(cert_path), Pem::file(key_path));
    let chain = cert_pem.certs("certificate file")?;
    let key = key_pem.private_key()?;
    // etcd's auto-TLS replaces the whole TLS setup, CA and client auth too.
    let wants_client_certs =
        !auto && (settings.client_cert_auth || settings.trusted_ca_file.is_some());
    let verifier = if wants_client_certs {
        client_verifier(settings, kind, provider.clone())?
    } else {
        WebPkiClientVerifier::no_client_auth()
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|source| oxetcd_tls::Error::KeyPair {
            cert: cert_pem.to_string(),
            key: key_pem.to_string(),
            source,
        })?;
    // gRPC clients negotiate h2; http/1.1 is for the JSON gateway to come.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// CRLs in PEM, or one in DER (etcd's fixtures ship DER).
fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    const WHAT: &str = "CRL file";
    let data = Pem::file(path).contents(WHAT)?.into_owned();
    if !data.starts_with(b"-----BEGIN") && !data.is_empty() {
        return Ok(vec![CertificateRevocationListDer::from(data)]);
    }
    let invalid =
        |reason: &dyn std::fmt::Display| oxetcd_tls::Error::parse(path.display(), WHAT, reason);
    let crls = CertificateRevocationListDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(&e))?;
    if crls.is_empty() {
        return Err(invalid(&"no CRL found").into());
    }
    Ok(crls)
}

fn client_verifier(
    settings: &TlsSettings,
    kind: &str,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    const WHAT: &str = "trusted CA file";
    let Some(ca_path) = &settings.trusted_ca_file else {
        let flag = if kind == "peer" {
            "peer-trusted-ca-file"
        } else {
            "trusted-ca-file"
        };
        return Err(TlsError::NoTrustedCa {
            kind: kind.to_string(),
            flag,
        });
    };
    let mut roots = RootCertStore::empty();
    let trusted = Pem::file(ca_path).certs(WHAT)?;
    for cert in &trusted {
        roots
            .add(cert.clone())
            .map_err(|e| oxetcd_tls::Error::parse(ca_path.display(), WHAT, e))?;
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if let Some(crl_path) = &settings.crl_file {
        builder = builder
            .with_crls(load_crls(crl_path)?)
            // etcd refuses only certificates a CRL lists; a CRL from
            // another issuer, or a stale one, does not lock clients out.
            .allow_unknown_revocation_status();
    }
    let inner = builder.build().map_err(|e| {
        let path = settings.crl_file.as_deref().unwrap_or(ca_path);
        oxetcd_tls::Error::parse(path.display(), "CA or CRL file", e)
    })?;
    Ok(Arc::new(EtcdClientVerifier {
        inner,
        trusted,
        rule: name_rule(settings)?,
    }))
}

/// etcd's --peer-cert-allowed-cn / --*-cert-allowed-hostname, if given.
pub(super) fn name_rule(settings: &TlsSettings) -> Result<Option<NameRule>, TlsError> {
    match (&settings.allowed_cn, &settings.allowed_hostname) {
        (None, None) => Ok(None),
        (Some(cn), Some(hostname)) => Err(TlsError::CnAndHostname {
            cn: cn.clone(),
            hostname: hostname.clone(),
        }),
        (Some(cn), None) => Ok(Some(NameRule::CommonName(cn.clone()))),
        (None, Some(host)) => Ok(Some(NameRule::Hostname(
            ServerName::try_from(host.as_str())
                .map_err(|_| TlsError::AllowedHostname(host.clone()))?
                .to_owned(),
        ))),
    }
}

#[derive(Debug)]
pub(super) enum NameRule {
    /// --peer-cert-allowed-cn: the subject CN must equal it.
    CommonName(String),
    /// --client-cert-allowed-hostname / --peer-cert-allowed-hostname: the
    /// certificate must be valid for that name (its SANs, as Go checks).
    Hostname(ServerName<'static>),
}

impl CertCheck for NameRule {
    /// Ok, or the error whose alert is the one Go sends when its
    /// VerifyPeerCertificate hook fails: bad_certificate. rustls's own name
    /// check reports the name it expected, so [`handshake_error_text`] can
    /// tell this one apart.
    ///
    /// [`handshake_error_text`]: super::handshake_error_text
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let allowed = match self {
            NameRule::CommonName(cn) => common_name(end_entity).as_deref() == Some(cn.as_str()),
            NameRule::Hostname(name) => webpki::EndEntityCert::try_from(end_entity)
                .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(name).is_ok()),
        };
        if allowed {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            ))
        }
    }
}

/// The CA check as Go's, then etcd's extra name check on the client
/// certificate.
#[derive(Debug)]
struct EtcdClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    /// The trusted CA file's certificates: Go accepts a client presenting
    /// one of them itself, CA or not (webpki refuses a CA as an end entity;
    /// etcd's own tests use one self-signed CA as server, client and CA).
    trusted: Vec<CertificateDer<'static>>,
    rule: Option<NameRule>,
}

impl EtcdClientVerifier {
    /// True when `end_entity` is itself one of the trusted certificates and
    /// valid now: a chain of one, as Go's verifier accepts.
    fn is_trusted_itself(&self, end_entity: &CertificateDer<'_>, now: UnixTime) -> bool {
        if !self
            .trusted
            .iter()
            .any(|t| t.as_ref() == end_entity.as_ref())
        {
            return false;
        }
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(end_entity) else {
            return false;
        };
        let now = x509_parser::time::ASN1Time::from_timestamp(now.as_secs() as i64);
        now.is_ok_and(|now| cert.validity().is_valid_at(now))
    }
}

/// webpki's refusal of a certificate marked as a CA in the end entity's place.
fn is_ca_used_as_end_entity(e: &rustls::Error) -> bool {
    matches!(e, rustls::Error::InvalidCertificate(CertificateError::Other(other))
        if other.0.downcast_ref::<webpki::Error>() == Some(&webpki::Error::CaUsedAsEndEntity))
}

impl ClientCertVerifier for EtcdClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Ok(verified) => verified,
            Err(e) if is_ca_used_as_end_entity(&e) && self.is_trusted_itself(end_entity, now) => {
                ClientCertVerified::assertion()
            }
            Err(e) => return Err(e),
        };
        if let Some(rule) = &self.rule {
            rule.check(end_entity)?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::test_pki::*;

    const FIXTURES: &str = "/usr/share/gocode/src/go.etcd.io/etcd/integration/fixtures";

    #[test]
    fn no_tls_without_cert_or_auto_tls() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TlsSettings {
            trusted_ca_file: Some("ca.crt".into()),
            client_cert_auth: true,
            ..TlsSettings::default()
        };
        assert!(server_config(&settings, dir.path(), "client", &[])
            .unwrap()
            .is_none());
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TlsSettings {
            cert_file: Some("/nonexistent/server.crt".into()),
            key_file: Some("/nonexistent/server.key".into()),
            ..TlsSettings::default()
        };
        let e = server_config(&settings, dir.path(), "client", &[]).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/server.crt"), "{e}");
        let p = pki();
        let settings = TlsSettings {
            key_file: Some(p.ca.clone()),
            ..mtls(&p)
        };
        let e = server_config(&settings, dir.path(), "client", &[]).unwrap_err();
        assert!(e.to_string().contains("ca.crt"), "{e}");
        let settings = TlsSettings {
            key_file: None,
            ..mtls(&p)
        };
        let e = server_config(&settings, dir.path(), "client", &[]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("KeyFile and CertFile must both be present"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn client_certificates_are_checked_against_the_ca() {
        let p = pki();
        let server = build(&mtls(&p), p.dir.path());
        let good = client_config(&p.ca, Some((&p.client.0, &p.client.1)));
        let none = client_config(&p.ca, None);
        let stranger = client_config(&p.ca, Some((&p.stranger.0, &p.stranger.1)));
        assert!(handshake(server.clone(), good).await);
        assert!(!handshake(server.clone(), none).await);
        assert!(!handshake(server, stranger).await);
    }

    #[tokio::test]
    async fn cipher_suites_limit_tls12_and_leave_tls13_whole() {
        use rustls::CipherSuite as S;
        let p = pki();
        let settings = TlsSettings {
            cipher_suites: vec![
                S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            ],
            ..mtls(&p)
        };
        let server = build(&settings, p.dir.path());
        // A client that offers `suite` only (a TLS 1.2 suite: TLS 1.2 only).
        let offering = |suite: S| {
            let mut provider = rustls::crypto::ring::default_provider();
            provider.cipher_suites.retain(|s| s.suite() == suite);
            let options = oxetcd_tls::ClientTlsOptions::new(oxetcd_tls::Trust::Cas(vec![
                oxetcd_tls::Pem::file(&p.ca),
            ]))
            .identity(oxetcd_tls::Identity::files(&p.client.0, &p.client.1))
            .provider(Arc::new(provider));
            oxetcd_tls::client_config(&options).unwrap()
        };
        // Whatever the test certificate's key type, its listed suite works
        // and the unlisted one of the same key type does not.
        let listed = handshake(
            server.clone(),
            offering(S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
        )
        .await
            || handshake(
                server.clone(),
                offering(S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            )
            .await;
        assert!(listed, "a listed suite was refused");
        for unlisted in [
            S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ] {
            assert!(
                !handshake(server.clone(), offering(unlisted)).await,
                "{unlisted:?} was accepted"
            );
        }
        // TLS 1.3 is not limited, as in Go.
        assert!(handshake(server, offering(S::TLS13_AES_256_GCM_SHA384)).await);
    }

    #[tokio::test]
    async fn a_client_presenting_the_trusted_ca_itself_is_accepted_like_go() {
        // etcd's TestCtlV3AuthCertCNWithWithConcurrentOperation uses one
        // self-signed CA as server, client and CA certificate.
        let p = pki();
        let server = build(&mtls(&p), p.dir.path());
        let ca_key = write(
            p.dir.path(),
            "ca.key",
            &p.issuer.issuer.key().serialize_pem(),
        );
        let itself = client_config(&p.ca, Some((&p.ca, &ca_key)));
        assert!(handshake(server.clone(), itself).await);
        // Another CA's own certificate is still refused.
        let other = Ca::new("other ca");
        let other_cert = write(p.dir.path(), "other.crt", &other.pem());
        let other_key = write(
            p.dir.path(),
            "other.key",
            &other.issuer.key().serialize_pem(),
        );
        let stranger = client_config(&p.ca, Some((&other_cert, &other_key)));
        assert!(!handshake(server, stranger).await);
    }

    #[tokio::test]
    async fn a_trusted_ca_alone_requires_client_certificates_like_etcd() {
        let p = pki();
        let settings = TlsSettings {
            client_cert_auth: false,
            ..mtls(&p)
        };
        let server = build(&settings, p.dir.path());
        assert!(!handshake(server.clone(), client_config(&p.ca, None)).await);
        let good = client_config(&p.ca, Some((&p.client.0, &p.client.1)));
        assert!(handshake(server, good).await);
    }

    #[tokio::test]
    async fn without_client_auth_no_certificate_is_asked() {
        let p = pki();
        let settings = TlsSettings {
            trusted_ca_file: None,
            client_cert_auth: false,
            ..mtls(&p)
        };
        let server = build(&settings, p.dir.path());
        assert!(handshake(server, client_config(&p.ca, None)).await);
    }

    #[tokio::test]
    async fn a_revoked_client_certificate_is_refused() {
        let p = pki();
        let settings = TlsSettings {
            crl_file: Some(p.crl.clone()),
            ..mtls(&p)
        };
        let server = build(&settings, p.dir.path());
        let revoked = client_config(&p.ca, Some((&p.client.0, &p.client.1)));
        assert!(!handshake(server.clone(), revoked).await);
        // The server certificate (serial 1) is not on the list.
        let fine = client_config(&p.ca, Some((&p.server.0, &p.server.1)));
        assert!(handshake(server, fine).await);
    }

    #[tokio::test]
    async fn allowed_common_name_and_hostname() {
        let p = pki();
        let good = || client_config(&p.ca, Some((&p.client.0, &p.client.1)));
        let with = |cn: Option<&str>, host: Option<&str>| TlsSettings {
            allowed_cn: cn.map(str::to_string),
            allowed_hostname: host.map(str::to_string),
            ..mtls(&p)
        };
        let dir = p.dir.path();
        assert!(handshake(build(&with(Some("client"), None), dir), good()).await);
        assert!(!handshake(build(&with(Some("someone"), None), dir), good()).await);
        assert!(handshake(build(&with(None, Some("localhost")), dir), good()).await);
        assert!(handshake(build(&with(None, Some("127.0.0.1")), dir), good()).await);
        assert!(!handshake(build(&with(None, Some("example.com")), dir), good()).await);
        let both = with(Some("a"), Some("b"));
        assert!(matches!(
            server_config(&both, dir, "peer", &[]),
            Err(TlsError::CnAndHostname { .. })
        ));
    }

    /// etcd's e2e suite runs servers with these exact files.
    #[tokio::test]
    async fn etcd_fixture_files() {
        let fixtures = Path::new(FIXTURES);
        if !fixtures.is_dir() {
            // .ci/run installs them (golang-etcd-server-dev, which the e2e
            // suite needs anyway): under CI a missing copy fails the test.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{FIXTURES} is not installed (apt-get install golang-etcd-server-dev)"
            );
            eprintln!("skipped: {FIXTURES} not installed");
            return;
        }
        let f = |name: &str| fixtures.join(name);
        let settings = TlsSettings {
            cert_file: Some(f("server.crt")),
            key_file: Some(f("server.key.insecure")),
            trusted_ca_file: Some(f("ca.crt")),
            client_cert_auth: true,
            crl_file: Some(f("revoke.crl")),
            ..TlsSettings::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let server = build(&settings, dir.path());
        let ok = client_config(
            &f("ca.crt"),
            Some((&f("server.crt"), &f("server.key.insecure"))),
        );
        assert!(handshake(server.clone(), ok).await);
        let revoked = client_config(
            &f("ca.crt"),
            Some((&f("server-revoked.crt"), &f("server-revoked.key.insecure"))),
        );
        assert!(!handshake(server.clone(), revoked).await);
        let no_cn = client_config(
            &f("ca.crt"),
            Some((&f("client-nocn.crt"), &f("client-nocn.key.insecure"))),
        );
        assert!(handshake(server, no_cn).await);

        let cert = Pem::file(f("server.crt")).certs("cert").unwrap();
        assert_eq!(common_name(&cert[0]).as_deref(), Some("example.com"));
        let nocn = Pem::file(f("client-nocn.crt")).certs("cert").unwrap();
        assert_eq!(common_name(&nocn[0]), None);

        // The SEC1 EC key of the ECDSA server certificate.
        let ecdsa = TlsSettings {
            cert_file: Some(f("server-ecdsa.crt")),
            key_file: Some(f("server-ecdsa.key.insecure")),
            ..TlsSettings::default()
        };
        let server = build(&ecdsa, dir.path());
        assert!(handshake(server, client_config(&f("ca.crt"), None)).await);
    }
}
