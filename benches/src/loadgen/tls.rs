//! The rustls client configuration for `https://` endpoints, from etcd
//! benchmark's flags: `--cacert` (trusted CAs, PEM; else the system bundle),
//! `--cert` and `--key` (a client certificate, for servers started with
//! `--client-cert-auth`), `--insecure-skip-tls-verify` (accept any server
//! certificate: for self-signed test servers, e.g. `--auto-tls`).
//!
//! [`super::connect`] does the handshake itself and hands tonic the encrypted
//! stream; see there for why.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::error::BenchError;

/// Where the system's trusted CAs are, if `--cacert` is not given (Debian's
/// path; `SSL_CERT_FILE` overrides it).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The TLS flags.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

/// The client configuration for these flags, speaking HTTP/2 (ALPN `h2`).
pub fn client_config(opts: &TlsOptions) -> Result<Arc<ClientConfig>, BenchError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| BenchError::Tls(e.to_string()))?;
    let builder = if opts.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)))
    } else {
        builder.with_root_certificates(root_store(opts.cacert.as_deref())?)
    };
    let mut config = match (&opts.cert, &opts.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(|e| BenchError::Tls(format!("client certificate {}: {e}", cert.display())))?,
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(BenchError::Usage("--cert and --key go together".to_owned())),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn root_store(cacert: Option<&Path>) -> Result<RootCertStore, BenchError> {
    let path = match cacert {
        Some(path) => path.to_owned(),
        None => std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE)),
    };
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(read_certs(&path)?);
    if added == 0 {
        return Err(BenchError::Tls(format!(
            "no CA certificate in {}",
            path.display()
        )));
    }
    Ok(roots)
}

fn open(path: &Path) -> Result<BufReader<File>, BenchError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| BenchError::ReadFile {
            path: path.to_owned(),
            source,
        })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, BenchError> {
    let certs = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| BenchError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(BenchError::Tls(format!(
            "no PEM certificate in {}",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, BenchError> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|source| BenchError::ReadFile {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| BenchError::Tls(format!("no PEM private key in {}", path.display())))
}

/// `--insecure-skip-tls-verify`: any certificate is accepted, but the
/// handshake signatures are still checked (the connection is encrypted, just
/// not authenticated).
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
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
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
