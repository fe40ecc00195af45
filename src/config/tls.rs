//! [`TlsSettings`] for the client and the peer ports from etcd's Security
//! flags; `crate::tls` turns them into rustls configurations.

use std::path::PathBuf;

use super::values::Values;
use super::ConfigError;

/// One port's TLS flags (client: --cert-file etc.; peer: --peer-*).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    pub crl_file: Option<PathBuf>,
    pub auto_tls: bool,
    pub allowed_cn: Option<String>,
    pub allowed_hostname: Option<String>,
    /// --cipher-suites (both ports, as etcd): the TLS 1.2 suites offered,
    /// in order; empty for rustls' defaults.
    pub cipher_suites: Vec<rustls::CipherSuite>,
}

/// --cipher-suites, checked at start as etcd checks it.
fn cipher_suites(v: &Values) -> Result<Vec<rustls::CipherSuite>, ConfigError> {
    crate::tls::cipher_suites::parse(&v.string("cipher-suites"))
        .map_err(|e| ConfigError::Invalid(e.to_string()))
}

/// The client port's settings; a cert pair given turns --auto-tls off, as
/// in etcd.
pub(super) fn client_tls(
    v: &Values,
    warnings: &mut Vec<String>,
) -> Result<TlsSettings, ConfigError> {
    let mut tls = TlsSettings {
        cert_file: v.opt_path("cert-file"),
        key_file: v.opt_path("key-file"),
        trusted_ca_file: v.opt_path("trusted-ca-file"),
        client_cert_auth: v.bool("client-cert-auth")?,
        crl_file: v.opt_path("client-crl-file"),
        auto_tls: v.bool("auto-tls")?,
        allowed_cn: None,
        allowed_hostname: v.opt_string("client-cert-allowed-hostname"),
        cipher_suites: cipher_suites(v)?,
    };
    if tls.auto_tls && (tls.cert_file.is_some() || tls.key_file.is_some()) {
        warnings.push("ignoring client auto TLS since certs given".into());
        tls.auto_tls = false;
    }
    Ok(tls)
}

/// The peer port's settings; --peer-cert-allowed-cn and
/// --peer-cert-allowed-hostname exclude each other.
pub(super) fn peer_tls(v: &Values, warnings: &mut Vec<String>) -> Result<TlsSettings, ConfigError> {
    let mut tls = TlsSettings {
        cert_file: v.opt_path("peer-cert-file"),
        key_file: v.opt_path("peer-key-file"),
        trusted_ca_file: v.opt_path("peer-trusted-ca-file"),
        client_cert_auth: v.bool("peer-client-cert-auth")?,
        crl_file: v.opt_path("peer-crl-file"),
        auto_tls: v.bool("peer-auto-tls")?,
        allowed_cn: v.opt_string("peer-cert-allowed-cn"),
        allowed_hostname: v.opt_string("peer-cert-allowed-hostname"),
        cipher_suites: cipher_suites(v)?,
    };
    if let (Some(cn), Some(host)) = (&tls.allowed_cn, &tls.allowed_hostname) {
        return Err(ConfigError::Invalid(format!(
            "--peer-cert-allowed-cn and --peer-cert-allowed-hostname are mutually exclusive (cn={cn:?}, hostname={host:?})"
        )));
    }
    if tls.auto_tls && (tls.cert_file.is_some() || tls.key_file.is_some()) {
        warnings.push("ignoring peer auto TLS since certs given".into());
        tls.auto_tls = false;
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;

    #[test]
    fn cipher_suites_apply_to_both_ports_and_unknown_names_stop_the_start() {
        let c = cfg(&[
            "--cipher-suites",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        ]);
        let want = vec![
            rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ];
        assert_eq!(c.client_tls.cipher_suites, want);
        assert_eq!(c.peer_tls.cipher_suites, want);
        assert!(cfg(&[]).client_tls.cipher_suites.is_empty());
        assert_eq!(
            err(&["--cipher-suites", "TLS_NOPE"]),
            "unexpected TLS cipher suite \"TLS_NOPE\""
        );
    }

    #[test]
    fn auto_tls_gives_way_to_certs() {
        let c = cfg(&["--auto-tls", "--cert-file", "c.pem", "--key-file", "k.pem"]);
        assert!(!c.client_tls.auto_tls);
        assert_eq!(
            c.warnings,
            vec!["ignoring client auto TLS since certs given"]
        );
        let c = cfg(&[
            "--peer-auto-tls",
            "--peer-cert-file",
            "c.pem",
            "--peer-key-file",
            "k.pem",
        ]);
        assert!(!c.peer_tls.auto_tls);
        let e = err(&[
            "--peer-cert-allowed-cn",
            "a",
            "--peer-cert-allowed-hostname",
            "b",
        ]);
        assert!(e.contains("mutually exclusive"), "{e}");
    }
}
