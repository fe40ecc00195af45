//! The serving certificate. With --tls-cert-file/--tls-private-key-file it is
//! the operator's; without them a CA and a serving certificate it signs are
//! generated once into `<data-dir>/pki/` and reused, so a kubeconfig printed
//! earlier (which carries the CA) stays valid across restarts. The serving
//! certificate is re-issued by the same CA when the names it must cover change.

use oxetcd_tls::Pem;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{0}: {1}")]
    Io(PathBuf, io::Error),
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error(transparent)]
    Pem(#[from] oxetcd_tls::Error),
    #[error("{0}: no certificate in the file")]
    NoCertificate(PathBuf),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("--client-ca-file {0}: {1}")]
    ClientCa(PathBuf, String),
}

fn read(path: &Path) -> Result<Vec<u8>, PkiError> {
    fs::read(path).map_err(|e| PkiError::Io(path.to_path_buf(), e))
}

fn write(path: &Path, data: &str, mode: u32) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e| PkiError::Io(path.to_path_buf(), e);
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    io::Write::write_all(&mut f, data.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

/// Where the generated files live.
pub struct Generated {
    dir: PathBuf,
}

impl Generated {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("pki"),
        }
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join("apiserver.crt")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("apiserver.key")
    }
    fn hosts(&self) -> PathBuf {
        self.dir.join("apiserver.hosts")
    }

    /// Makes sure the CA exists and the serving certificate covers `hosts`.
    pub fn ensure(&self, hosts: &[String]) -> Result<(), PkiError> {
        fs::create_dir_all(&self.dir).map_err(|e| PkiError::Io(self.dir.clone(), e))?;
        if !self.ca_cert().exists() || !self.ca_key().exists() {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "oxetcd-apiserver-ca");
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.key_usages = vec![
                rcgen::KeyUsagePurpose::KeyCertSign,
                rcgen::KeyUsagePurpose::DigitalSignature,
                rcgen::KeyUsagePurpose::CrlSign,
            ];
            params.not_after = rcgen::date_time_ymd(2125, 1, 1);
            let key = rcgen::KeyPair::generate()?;
            let cert = params.self_signed(&key)?;
            write(&self.ca_key(), &key.serialize_pem(), 0o600)?;
            write(&self.ca_cert(), &cert.pem(), 0o644)?;
            // A new CA invalidates any serving certificate.
            let _ = fs::remove_file(self.hosts());
        }
        let wanted = hosts.join("\n");
        let have = fs::read_to_string(self.hosts()).unwrap_or_default();
        if have == wanted && self.cert().exists() && self.key().exists() {
            return Ok(());
        }
        let ca_key_pem = String::from_utf8_lossy(&read(&self.ca_key())?).to_string();
        let ca_key = rcgen::KeyPair::from_pem(&ca_key_pem)?;
        let ca_pem = String::from_utf8_lossy(&read(&self.ca_cert())?).to_string();
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        for h in hosts {
            params.subject_alt_names.push(match h.parse() {
                Ok(ip) => rcgen::SanType::IpAddress(ip),
                Err(_) => rcgen::SanType::DnsName(h.clone().try_into()?),
            });
        }
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "oxetcd-apiserver");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.not_after = rcgen::date_time_ymd(2125, 1, 1);
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        write(&self.key(), &key.serialize_pem(), 0o600)?;
        write(&self.cert(), &format!("{}{}", cert.pem(), ca_pem), 0o644)?;
        write(&self.hosts(), &wanted, 0o644)
    }
}

/// The names the generated serving certificate covers: loopback, the bind
/// address, and this host's name.
pub fn default_hosts(bind: &str) -> Vec<String> {
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if !["0.0.0.0", "::"].contains(&bind) && !hosts.iter().any(|h| h == bind) {
        hosts.push(bind.to_string());
    }
    hosts
}

/// A rustls server config for `cert` (a PEM chain) and `key`, speaking
/// HTTP/2 and HTTP/1.1 (ALPN). With `client_ca` (--client-ca-file) clients
/// may present a certificate, which must chain to it (as Go's
/// VerifyClientCertIfGiven: a client without one still connects, to
/// authenticate with a token).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    // oxetcd-tls reads PEM for every crate, with etcd's error wording.
    let chain: Vec<CertificateDer<'static>> = Pem::file(cert).certs("cert file")?;
    let key_der: PrivateKeyDer<'static> = Pem::file(key).private_key()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in Pem::file(ca).certs("client CA file")? {
                roots.add(c)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| PkiError::ClientCa(ca.to_path_buf(), e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The PEM a client should trust for `cert_file`: its last certificate (the
/// chain's top as far as the file goes; the generated file ends with the CA).
pub fn trust_anchor_pem(cert_file: &Path) -> Result<String, PkiError> {
    let text = String::from_utf8_lossy(&read(cert_file)?).to_string();
    let begin = "-----BEGIN CERTIFICATE-----";
    let last = text
        .rfind(begin)
        .ok_or_else(|| PkiError::NoCertificate(cert_file.to_path_buf()))?;
    Ok(text[last..].trim_end().to_string() + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_and_reissued_only_for_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let g = Generated::new(dir.path());
        g.ensure(&default_hosts("127.0.0.1")).unwrap();
        let ca = fs::read(g.ca_cert()).unwrap();
        let cert = fs::read(g.cert()).unwrap();
        g.ensure(&default_hosts("127.0.0.1")).unwrap();
        assert_eq!(fs::read(g.cert()).unwrap(), cert, "same names: kept");
        g.ensure(&default_hosts("127.0.0.5")).unwrap();
        assert_ne!(fs::read(g.cert()).unwrap(), cert, "new name: re-issued");
        assert_eq!(fs::read(g.ca_cert()).unwrap(), ca, "by the same CA");
        assert_eq!(trust_anchor_pem(&g.cert()).unwrap().as_bytes(), &ca[..]);
        server_config(&g.cert(), &g.key(), None).unwrap();
        server_config(&g.cert(), &g.key(), Some(&g.ca_cert())).unwrap();
    }
}
