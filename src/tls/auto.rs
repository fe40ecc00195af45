//! Auto-TLS (--auto-tls, --peer-auto-tls): a self-signed certificate for
//! the listen hosts, written under the data dir and reused on restart.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::TlsError;

/// etcd's transport.SelfCert: reuse `cert.pem`/`key.pem` in `dir` when both
/// exist, otherwise make a self-signed certificate for `hosts` and write them.
pub(super) fn self_cert(
    dir: &Path,
    kind: &str,
    hosts: &[String],
) -> Result<(PathBuf, PathBuf), TlsError> {
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

/// Written under a temporary name (with `mode` before any byte is written),
/// fsynced and renamed, so a crash never leaves a half-written file that the
/// next start would reuse.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    let result = (|| {
        let mut file = atomic_write_file::AtomicWriteFile::open(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        #[cfg(not(unix))]
        let _ = mode;
        file.write_all(data)?;
        file.commit()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsSettings;
    use crate::tls::server_config;
    use crate::tls::test_pki::*;

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
}
