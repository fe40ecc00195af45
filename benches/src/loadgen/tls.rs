//! The rustls client configuration for `https://` endpoints, from etcd
//! benchmark's flags: `--cacert` (trusted CAs, PEM; else the system's store),
//! `--cert` and `--key` (a client certificate, for servers started with
//! `--client-cert-auth`), `--insecure-skip-tls-verify` (accept any server
//! certificate: for self-signed test servers, e.g. `--auto-tls`). oxetcd-tls
//! builds it; [`super::connect`] dials through its connector.

use std::path::PathBuf;
use std::sync::Arc;

use oxetcd_tls::{ClientTlsOptions, Identity, Pem, Trust};
use rustls::ClientConfig;

use super::error::BenchError;

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
    let trust = match (&opts.cacert, opts.insecure_skip_verify) {
        (_, true) => Trust::InsecureSkipVerify,
        (Some(cacert), false) => Trust::Cas(vec![Pem::file(cacert)]),
        (None, false) => Trust::System,
    };
    let options = ClientTlsOptions::new(trust);
    let options = match (&opts.cert, &opts.key) {
        (Some(cert), Some(key)) => options.identity(Identity::files(cert, key)),
        (None, None) => options,
        _ => return Err(BenchError::Usage("--cert and --key go together".to_owned())),
    };
    Ok(oxetcd_tls::client_config(&options)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_onto_the_options() {
        let lone_cert = TlsOptions {
            cert: Some("client.crt".into()),
            ..TlsOptions::default()
        };
        assert!(matches!(
            client_config(&lone_cert),
            Err(BenchError::Usage(_))
        ));
        let missing_ca = TlsOptions {
            cacert: Some("/nonexistent/ca.crt".into()),
            ..TlsOptions::default()
        };
        let e = client_config(&missing_ca).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("TLS: cannot read trusted CA file /nonexistent/ca.crt"),
            "{e}"
        );
        // --insecure-skip-tls-verify needs no CA file at all.
        let insecure = TlsOptions {
            insecure_skip_verify: true,
            ..missing_ca
        };
        assert!(client_config(&insecure).is_ok());
    }
}
