//! rustls server configurations built the way etcd's TLS flags set up Go's
//! crypto/tls (pkg/transport/listener.go in etcd 3.4).

use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    AlertDescription, CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};

use crate::config::TlsSettings;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// etcd's words.
    #[error("KeyFile and CertFile must both be present[key: {key}, cert: {cert}]")]
    IncompletePair { cert: String, key: String },
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("invalid {what} {}: {reason}", path.display())]
    Parse {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{kind} client certificate authentication needs a trusted CA file (--{flag})")]
    NoTrustedCa { kind: String, flag: &'static str },
    /// etcd's words.
    #[error(
        "AllowedCN and AllowedHostname are mutually exclusive (cn={cn:?}, hostname={hostname:?})"
    )]
    CnAndHostname { cn: String, hostname: String },
    #[error("invalid allowed hostname {0:?} for client certificates")]
    AllowedHostname(String),
    #[error("cannot use certificate {} with key {}: {source}", cert.display(), key.display())]
    KeyPair {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("cannot generate the self-signed {kind} certificate: {reason}")]
    SelfCert { kind: String, reason: String },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
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
    let chain = load_certs(&cert_path, "certificate file")?;
    let key = load_key(&key_path)?;
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
        .map_err(|source| TlsError::KeyPair {
            cert: cert_path.clone(),
            key: key_path.clone(),
            source,
        })?;
    // gRPC clients negotiate h2; http/1.1 is for the JSON gateway to come.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

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

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn parse_error(path: &Path, what: &'static str, reason: impl ToString) -> TlsError {
    TlsError::Parse {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Every certificate in a PEM file.
fn load_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parse_error(path, what, e))?;
    if certs.is_empty() {
        return Err(parse_error(path, what, "no PEM certificate found"));
    }
    Ok(certs)
}

/// The first private key in a PEM file: PKCS#1 RSA, PKCS#8 or SEC1 EC.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    const WHAT: &str = "key file";
    let pem = read(path, WHAT)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| parse_error(path, WHAT, e))
}

/// CRLs in PEM, or one in DER (etcd's fixtures ship DER).
fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    const WHAT: &str = "CRL file";
    let data = read(path, WHAT)?;
    if !data.starts_with(b"-----BEGIN") && !data.is_empty() {
        return Ok(vec![CertificateRevocationListDer::from(data)]);
    }
    let crls = CertificateRevocationListDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parse_error(path, WHAT, e))?;
    if crls.is_empty() {
        return Err(parse_error(path, WHAT, "no CRL found"));
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
    for cert in load_certs(ca_path, WHAT)? {
        roots.add(cert).map_err(|e| parse_error(ca_path, WHAT, e))?;
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
        parse_error(path, "CA or CRL file", e)
    })?;
    match name_rule(settings)? {
        None => Ok(inner),
        Some(rule) => Ok(Arc::new(AllowedNameVerifier { inner, rule })),
    }
}

/// etcd's --peer-cert-allowed-cn / --*-cert-allowed-hostname, if given.
fn name_rule(settings: &TlsSettings) -> Result<Option<NameRule>, TlsError> {
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
enum NameRule {
    /// --peer-cert-allowed-cn: the subject CN must equal it.
    CommonName(String),
    /// --client-cert-allowed-hostname / --peer-cert-allowed-hostname: the
    /// certificate must be valid for that name (its SANs, as Go checks).
    Hostname(ServerName<'static>),
}

impl NameRule {
    /// Ok, or the error whose alert is the one Go sends when its
    /// VerifyPeerCertificate hook fails: bad_certificate. rustls's own name
    /// check reports the name it expected, so [`handshake_error_text`] can
    /// tell this one apart.
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

/// The CA check, then etcd's extra name check on the client certificate.
#[derive(Debug)]
struct AllowedNameVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    rule: NameRule,
}

impl ClientCertVerifier for AllowedNameVerifier {
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
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
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

// ---------------------------------------------------------------------------
// Handshake failures in Go's words.

/// What etcd logs for a failed TLS handshake ("rejected connection from
/// ..."), from the error tokio-rustls returned: an alert the other side sent
/// is a "remote error", a refusal of our own allowed-name check is etcd's
/// "client certificate authentication failed". Anything else keeps rustls's
/// wording.
pub fn handshake_error_text(error: &io::Error) -> String {
    let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return error.to_string();
    };
    match tls {
        rustls::Error::AlertReceived(alert) => format!("remote error: tls: {}", go_alert(*alert)),
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
            "client certificate authentication failed".to_string()
        }
        other => other.to_string(),
    }
}

/// Go's crypto/tls names of the alerts (alert.go).
fn go_alert(alert: AlertDescription) -> String {
    use AlertDescription as A;
    let text = match alert {
        A::CloseNotify => "close notify",
        A::UnexpectedMessage => "unexpected message",
        A::BadRecordMac => "bad record MAC",
        A::RecordOverflow => "record overflow",
        A::HandshakeFailure => "handshake failure",
        A::BadCertificate => "bad certificate",
        A::UnsupportedCertificate => "unsupported certificate",
        A::CertificateRevoked => "revoked certificate",
        A::CertificateExpired => "expired certificate",
        A::CertificateUnknown => "unknown certificate",
        A::IllegalParameter => "illegal parameter",
        A::UnknownCA => "unknown certificate authority",
        A::AccessDenied => "access denied",
        A::DecodeError => "error decoding message",
        A::DecryptError => "error decrypting message",
        A::ProtocolVersion => "protocol version not supported",
        A::InsufficientSecurity => "insufficient security level",
        A::InternalError => "internal error",
        A::UserCanceled => "user canceled",
        A::MissingExtension => "missing extension",
        A::UnsupportedExtension => "unsupported extension",
        A::UnrecognisedName => "unrecognized name",
        A::NoApplicationProtocol => "no application protocol",
        A::CertificateRequired => "certificate required",
        other => return format!("alert({})", u8::from(other)),
    };
    text.to_string()
}

// ---------------------------------------------------------------------------
// Auto-TLS.

/// etcd's transport.SelfCert: reuse `cert.pem`/`key.pem` in `dir` when both
/// exist, otherwise make a self-signed certificate for `hosts` and write them.
fn self_cert(dir: &Path, kind: &str, hosts: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.is_file() && key_path.is_file() {
        return Ok((cert_path, key_path));
    }
    let fail = |reason: String| TlsError::SelfCert {
        kind: kind.to_string(),
        reason,
    };
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = san_hosts(hosts)
        .into_iter()
        .filter_map(|h| match h.parse::<IpAddr>() {
            Ok(ip) => Some(rcgen::SanType::IpAddress(ip)),
            Err(_) => h.try_into().ok().map(rcgen::SanType::DnsName),
        })
        .collect();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "etcd");
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    // Peers present the same certificate as clients of each other.
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = rcgen::KeyPair::generate().map_err(|e| fail(e.to_string()))?;
    let cert = params.self_signed(&key).map_err(|e| fail(e.to_string()))?;

    let mut dirs = fs::DirBuilder::new();
    dirs.recursive(true);
    set_mode_dir(&mut dirs);
    dirs.create(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
    tracing::info!(path = %cert_path.display(), "created self-signed {kind} certificate");
    Ok((cert_path, key_path))
}

#[cfg(unix)]
fn set_mode_dir(b: &mut fs::DirBuilder) {
    use std::os::unix::fs::DirBuilderExt;
    b.mode(0o700);
}

#[cfg(not(unix))]
fn set_mode_dir(_: &mut fs::DirBuilder) {}

/// Written under a temporary name and renamed, so a crash never leaves a
/// half-written file that the next start would reuse.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("pem.tmp");
    let result = (|| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = opts.open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Host names and IPs from "host", "host:port", "[v6]:port" or "v6";
/// "localhost" brings its loopback addresses along (oxetcd binds it to
/// 127.0.0.1, and clients may dial either).
fn san_hosts(hosts: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |h: String| {
        if !h.is_empty() && !out.contains(&h) {
            out.push(h);
        }
    };
    for raw in hosts {
        let raw = raw.trim();
        let host = if let Ok(ip) = raw.parse::<IpAddr>() {
            ip.to_string()
        } else if let Ok(sa) = raw.parse::<SocketAddr>() {
            sa.ip().to_string()
        } else if let Some((h, _port)) = raw.rsplit_once(':') {
            h.trim_start_matches('[').trim_end_matches(']').to_string()
        } else {
            raw.to_string()
        };
        let is_localhost = host == "localhost";
        push(host);
        if is_localhost {
            push("127.0.0.1".into());
            push("::1".into());
        }
    }
    if out.is_empty() {
        for h in ["localhost", "127.0.0.1", "::1"] {
            out.push(h.to_string());
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Certificate names.

/// The subject common name of a DER certificate (the last CN attribute, as
/// Go reads it); etcd's auth uses it as the user name of a TLS client.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (cert_body, _) = der_expect(cert.as_ref(), 0x30)?;
    let (tbs, _) = der_expect(cert_body, 0x30)?;
    let mut rest = tbs;
    // [0] version is optional; then serial, signature, issuer, validity.
    if rest.first() == Some(&0xa0) {
        rest = der_next(rest)?.2;
    }
    for _ in 0..4 {
        rest = der_next(rest)?.2;
    }
    let (mut rdns, _) = der_expect(rest, 0x30)?;
    let mut cn = None;
    while !rdns.is_empty() {
        let (mut attrs, after) = der_expect(rdns, 0x31)?;
        rdns = after;
        while !attrs.is_empty() {
            let (attr, after) = der_expect(attrs, 0x30)?;
            attrs = after;
            let (oid, value) = der_expect(attr, 0x06)?;
            // 2.5.4.3 id-at-commonName
            if oid == [0x55, 0x04, 0x03] {
                let (tag, content, _) = der_next(value)?;
                cn = der_string(tag, content);
            }
        }
    }
    cn
}

/// One DER element: (tag, content, rest).
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

fn der_expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, content, rest) = der_next(input)?;
    (t == tag).then_some((content, rest))
}

fn der_string(tag: u8, content: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, NumericString, PrintableString, IA5String
        0x0c | 0x12 | 0x13 | 0x16 => String::from_utf8(content.to_vec()).ok(),
        // TeletexString, read as Latin-1 like Go does
        0x14 => Some(content.iter().map(|&b| char::from(b)).collect()),
        // BMPString
        0x1e => {
            let units: Vec<u16> = content
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        // UniversalString
        0x1c => content
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod test_pki {
    //! Throwaway CAs and certificates for tests (here and in listener.rs).
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
        DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
        RevokedCertParams, SerialNumber,
    };
    use rustls::ClientConfig;

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
                CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                    .unwrap();
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
}

#[cfg(test)]
mod tests {
    use super::test_pki::*;
    use super::*;
    use rustls::ClientConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Whether a handshake plus one byte each way succeeds; checks h2 ALPN.
    async fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> bool {
        let (c, s) = tokio::io::duplex(1 << 16);
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let connector = tokio_rustls::TlsConnector::from(client);
        let server_side = async move {
            let mut tls = acceptor.accept(s).await?;
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            let mut b = [0u8; 1];
            tls.read_exact(&mut b).await?;
            tls.write_all(b"k").await?;
            tls.flush().await?;
            Ok::<_, io::Error>(())
        };
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
            Ok((s, c)) => s.is_ok() && c.is_ok(),
            Err(_) => panic!("handshake hung"),
        }
    }

    const FIXTURES: &str = "/usr/share/gocode/src/go.etcd.io/etcd/integration/fixtures";

    fn mtls(p: &Pki) -> TlsSettings {
        TlsSettings {
            cert_file: Some(p.server.0.clone()),
            key_file: Some(p.server.1.clone()),
            trusted_ca_file: Some(p.ca.clone()),
            client_cert_auth: true,
            ..TlsSettings::default()
        }
    }

    fn build(settings: &TlsSettings, dir: &Path) -> Arc<ServerConfig> {
        server_config(settings, dir, "client", &["localhost:2379".to_string()])
            .unwrap()
            .expect("TLS configured")
    }

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

    /// The server side's handshake error, None when both sides finished.
    async fn server_error(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Option<String> {
        let (c, s) = tokio::io::duplex(1 << 16);
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let connector = tokio_rustls::TlsConnector::from(client);
        let server_side = async move {
            let mut tls = acceptor.accept(s).await?;
            let mut b = [0u8; 1];
            tls.read_exact(&mut b).await?;
            tls.write_all(b"k").await?;
            tls.flush().await?;
            Ok::<_, io::Error>(())
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
            Ok((Ok(()), _)) => None,
            Ok((Err(e), _)) => Some(handshake_error_text(&e)),
            Err(_) => panic!("handshake hung"),
        }
    }

    /// etcd's e2e TestEtcdPeerNameAuth waits for these words on the member
    /// whose allowed hostname the others' certificates do not have.
    #[tokio::test]
    async fn a_refused_peer_certificate_is_logged_in_etcds_words() {
        let p = pki();
        let settings = TlsSettings {
            allowed_hostname: Some("example.com".into()),
            ..mtls(&p)
        };
        let server = build(&settings, p.dir.path());
        let peer = client_config(&p.ca, Some((&p.client.0, &p.client.1)));
        assert_eq!(
            server_error(server, peer).await.as_deref(),
            Some("client certificate authentication failed")
        );
    }

    /// etcd checks the allowed CN / hostname on the members it dials too;
    /// TestEtcdPeerCNAuth waits for the refused member to log the alert.
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

    #[test]
    fn other_handshake_errors_keep_their_words() {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::UnknownCA),
        );
        assert_eq!(
            handshake_error_text(&e),
            "remote error: tls: unknown certificate authority"
        );
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::NoCertificatesPresented,
        );
        assert_eq!(
            handshake_error_text(&e),
            rustls::Error::NoCertificatesPresented.to_string()
        );
        let e = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(handshake_error_text(&e), e.to_string());
    }

    #[tokio::test]
    async fn auto_tls_writes_and_reuses_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TlsSettings {
            auto_tls: true,
            client_cert_auth: true,
            ..TlsSettings::default()
        };
        let hosts = vec!["localhost:2379".to_string(), "[::1]:2379".to_string()];
        let server = server_config(&settings, dir.path(), "peer", &hosts)
            .unwrap()
            .unwrap();
        let cert = dir.path().join("fixtures/peer/cert.pem");
        let key = dir.path().join("fixtures/peer/key.pem");
        let (cert_pem, key_pem) = (fs::read(&cert).unwrap(), fs::read(&key).unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Auto-TLS asks no client certificate; the client trusts the
        // self-signed certificate itself.
        assert!(handshake(server, client_config(&cert, None)).await);

        server_config(&settings, dir.path(), "peer", &hosts)
            .unwrap()
            .unwrap();
        assert_eq!(fs::read(&cert).unwrap(), cert_pem);
        assert_eq!(fs::read(&key).unwrap(), key_pem);
    }

    #[test]
    fn san_hosts_from_listen_hosts() {
        let hosts = [
            "localhost:2379",
            "10.0.0.1:2379",
            "[::1]:2379",
            "etcd.unix:1",
            "node1",
        ]
        .map(str::to_string);
        assert_eq!(
            san_hosts(&hosts),
            [
                "localhost",
                "127.0.0.1",
                "::1",
                "10.0.0.1",
                "etcd.unix",
                "node1"
            ]
        );
    }

    #[test]
    fn common_names() {
        let ca = Ca::new("the ca");
        let (pem, _) = ca.leaf("user-1", 9);
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(common_name(&der).as_deref(), Some("user-1"));
        assert_eq!(common_name(ca.issuer.der()).as_deref(), Some("the ca"));
        assert_eq!(common_name(&CertificateDer::from(vec![0x30, 0x01])), None);
    }

    /// etcd's e2e suite runs servers with these exact files.
    #[tokio::test]
    async fn etcd_fixture_files() {
        let fixtures = Path::new(FIXTURES);
        if !fixtures.is_dir() {
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

        let cert = load_certs(&f("server.crt"), "cert").unwrap();
        assert_eq!(common_name(&cert[0]).as_deref(), Some("example.com"));
        let nocn = load_certs(&f("client-nocn.crt"), "cert").unwrap();
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
