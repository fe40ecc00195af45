//! The kubeconfig `oxetcd-apiserver kubeconfig` prints: one cluster (server
//! URL and the CA to trust), one user (a bearer token), one context.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// The URL a client on this host uses for a server bound to `bind`:`port`.
pub fn server_url(bind: &str, port: u16) -> String {
    let host = match bind {
        "0.0.0.0" | "" => "127.0.0.1".to_string(),
        "::" => "[::1]".to_string(),
        b if b.contains(':') => format!("[{b}]"),
        b => b.to_string(),
    };
    format!("https://{host}:{port}")
}

/// The kubeconfig as YAML. Every value is written as a JSON string, which
/// is also a valid YAML double-quoted scalar: nothing needs escaping rules
/// of its own.
pub fn render(server: &str, ca_pem: &str, token: &str) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: oxetcd
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: oxetcd-admin
  user:
    token: {token}
contexts:
- name: oxetcd
  context:
    cluster: oxetcd
    user: oxetcd-admin
    namespace: default
current-context: oxetcd
",
        server = q(server),
        ca = q(&STANDARD.encode(ca_pem)),
        token = q(token),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_for_wildcard_and_ipv6_binds() {
        assert_eq!(server_url("0.0.0.0", 6443), "https://127.0.0.1:6443");
        assert_eq!(server_url("127.0.0.7", 1), "https://127.0.0.7:1");
        assert_eq!(server_url("::", 6443), "https://[::1]:6443");
        assert_eq!(server_url("::1", 6443), "https://[::1]:6443");
    }

    #[test]
    fn carries_the_ca_base64_and_the_token() {
        let k = render("https://127.0.0.1:6443", "PEM", "tok\"en");
        assert!(k.contains("    server: \"https://127.0.0.1:6443\"\n"));
        assert!(k.contains("certificate-authority-data: \"UEVN\"\n"));
        assert!(k.contains("    token: \"tok\\\"en\"\n"));
        assert!(k.contains("current-context: oxetcd\n"));
    }
}
