//! --cipher-suites: Go's cipher-suite names (what etcd takes) to rustls'
//! suites, and the crypto provider a listener or dialer uses with them.
//!
//! As Go's crypto/tls, which etcd uses, the list restricts TLS 1.2 only:
//! TLS 1.3 always offers its own three suites (Go ignores the list for 1.3,
//! and so does this). rustls implements the AEAD suites with ECDHE key
//! exchange only; the CBC, RC4, 3DES and RSA key-exchange suites Go still
//! knows are refused at start with a message that says so, where etcd would
//! accept them.

use rustls::crypto::CryptoProvider;
use rustls::{CipherSuite, SupportedCipherSuite};

/// Go's names (and etcd's two short CHACHA20 aliases) of the suites rustls
/// implements.
const SUPPORTED: &[(&str, CipherSuite)] = &[
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    // TLS 1.3's: Go accepts the names and ignores them; so does this.
    (
        "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
];

/// The suites Go (1.19, Debian's etcd 3.4) knows that rustls does not
/// implement.
const GO_ONLY: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherSuiteError {
    /// etcd's words.
    #[error("unexpected TLS cipher suite {0:?}")]
    Unknown(String),
    #[error(
        "TLS cipher suite {0:?} is not supported by oxetcd: rustls implements only the ECDHE AEAD suites ({names})",
        names = supported_names()
    )]
    Unsupported(String),
}

fn supported_names() -> String {
    SUPPORTED
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The suites named in `list` (comma-separated Go names, as etcd takes
/// them), in its order; empty for an empty list (the defaults).
pub fn parse(list: &str) -> Result<Vec<CipherSuite>, CipherSuiteError> {
    list.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| match SUPPORTED.iter().find(|(n, _)| *n == name) {
            Some((_, suite)) => Ok(*suite),
            None if GO_ONLY.contains(&name) => Err(CipherSuiteError::Unsupported(name.into())),
            None => Err(CipherSuiteError::Unknown(name.into())),
        })
        .collect()
}

/// ring's provider: with a list, its TLS 1.2 suites are the list's (in that
/// order; none when it names only TLS 1.3 suites, as in Go); TLS 1.3's
/// suites are always all offered.
pub fn provider(chosen: &[CipherSuite]) -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    let is_tls12 = |s: &SupportedCipherSuite| matches!(s, SupportedCipherSuite::Tls12(_));
    if !chosen.is_empty() {
        let all = std::mem::take(&mut provider.cipher_suites);
        let mut suites: Vec<SupportedCipherSuite> =
            all.iter().filter(|s| !is_tls12(s)).copied().collect();
        for c in chosen {
            if let Some(s) = all.iter().find(|s| s.suite() == *c && is_tls12(s)) {
                if !suites.contains(s) {
                    suites.push(*s);
                }
            }
        }
        provider.cipher_suites = suites;
    }
    provider
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_names_map_to_rustls_suites_in_order() {
        let got =
            parse("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305")
                .unwrap();
        assert_eq!(
            got,
            vec![
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            ]
        );
        assert_eq!(parse(""), Ok(vec![]));
    }

    #[test]
    fn unknown_and_unsupported_names_are_refused_apart() {
        assert_eq!(
            parse("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,bogus")
                .unwrap_err()
                .to_string(),
            "unexpected TLS cipher suite \"bogus\""
        );
        let e = parse("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA").unwrap_err();
        assert!(matches!(e, CipherSuiteError::Unsupported(_)), "{e}");
    }

    #[test]
    fn the_list_limits_tls12_and_leaves_tls13_whole() {
        let p = provider(&[CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]);
        let tls12: Vec<CipherSuite> = p
            .cipher_suites
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
            .map(|s| s.suite())
            .collect();
        assert_eq!(
            tls12,
            vec![CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
        );
        let tls13 = p.cipher_suites.len() - tls12.len();
        assert_eq!(tls13, 3);
        // No list: every default suite.
        assert_eq!(
            provider(&[]).cipher_suites.len(),
            rustls::crypto::ring::default_provider().cipher_suites.len()
        );
    }
}
