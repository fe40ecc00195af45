//! Where the apiserver is and who we are to it: `--kubeconfig` (else
//! `$KUBECONFIG`), its current context's cluster (server URL, CA,
//! `insecure-skip-tls-verify`) and user (bearer token, token file, client
//! certificate), with the command line's `--endpoints`, `--token`,
//! `--token-file`, `--cacert`, `--cert`/`--key` and
//! `--insecure-skip-tls-verify` taking precedence, as kubectl's flags do.
//!
//! The fields read are those of a static kubeconfig (what kind, kubeadm and
//! `oxetcd-apiserver kubeconfig` write). A user that authenticates through
//! an `exec` plugin or an `auth-provider`, and clusters naming a `proxy-url`
//! or `tls-server-name`, are refused with an error rather than ignored.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use oxetcd_tls::{ClientTlsOptions, Identity, Pem, Trust};
use serde::Deserialize;

use crate::loadgen::cli::{Common, K8sArgs};
use crate::loadgen::error::BenchError;

#[derive(Debug, Default, Deserialize)]
struct Kubeconfig {
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    users: Vec<Named<User>>,
    #[serde(default)]
    contexts: Vec<Named<Context>>,
    #[serde(rename = "current-context", default)]
    current_context: String,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    value: T,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    #[serde(default)]
    server: String,
    certificate_authority: Option<PathBuf>,
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    proxy_url: Option<String>,
    tls_server_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
    client_certificate: Option<PathBuf>,
    client_certificate_data: Option<String>,
    client_key: Option<PathBuf>,
    client_key_data: Option<String>,
    exec: Option<serde::de::IgnoredAny>,
    auth_provider: Option<serde::de::IgnoredAny>,
    username: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Context {
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    user: String,
}

/// How to reach the apiserver.
#[derive(Clone, Debug)]
pub struct Target {
    /// `https://host:port` (or `http://`), no trailing slash.
    pub server: String,
    /// Sent as `Authorization: Bearer`.
    pub token: Option<String>,
    /// For `https://` servers.
    pub tls: ClientTlsOptions,
}

fn usage(what: impl Into<String>) -> BenchError {
    BenchError::Usage(what.into())
}

fn read(path: &Path) -> Result<String, BenchError> {
    std::fs::read_to_string(path).map_err(|source| BenchError::ReadFile {
        path: path.to_owned(),
        source,
    })
}

/// A kubeconfig path relative to the file's directory, as kubectl resolves it.
fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

/// PEM from a `*-data` field (base64) or a file field.
fn pem(
    name: &str,
    data: &Option<String>,
    file: &Option<PathBuf>,
    base: &Path,
) -> Result<Option<Pem>, BenchError> {
    if let Some(data) = data {
        let bytes = STANDARD
            .decode(data.trim())
            .map_err(|e| usage(format!("kubeconfig {name}-data: not base64: {e}")))?;
        return Ok(Some(Pem::bytes(format!("kubeconfig {name}-data"), bytes)));
    }
    Ok(file.as_ref().map(|f| Pem::file(resolve(base, f))))
}

/// The kubeconfig's current context, as (cluster, user) with the
/// directory relative paths in it are resolved against.
fn current(path: &Path) -> Result<(Cluster, User, PathBuf), BenchError> {
    let text = read(path)?;
    let bad = |what: String| usage(format!("kubeconfig {}: {what}", path.display()));
    let mut config: Kubeconfig = serde_saphyr::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let context = config
        .contexts
        .iter()
        .find(|c| c.name == config.current_context)
        .ok_or_else(|| bad(format!("no context {:?}", config.current_context)))?;
    let (cluster_name, user_name) = (context.value.cluster.clone(), context.value.user.clone());
    let cluster = config
        .clusters
        .iter()
        .position(|c| c.name == cluster_name)
        .map(|i| config.clusters.swap_remove(i).value)
        .ok_or_else(|| bad(format!("no cluster {cluster_name:?}")))?;
    // A context without a user is anonymous.
    let user = match config.users.iter().position(|u| u.name == user_name) {
        Some(i) => config.users.swap_remove(i).value,
        None if user_name.is_empty() => User::default(),
        None => return Err(bad(format!("no user {user_name:?}"))),
    };
    if user.exec.is_some() || user.auth_provider.is_some() {
        return Err(bad(format!(
            "user {user_name:?} authenticates through an exec plugin or auth-provider, \
             which oxetcd-bench does not run: give --token or --cert/--key"
        )));
    }
    if user.username.is_some() {
        return Err(bad(format!(
            "user {user_name:?} uses basic auth, which oxetcd-bench does not send"
        )));
    }
    if cluster.proxy_url.is_some() || cluster.tls_server_name.is_some() {
        return Err(bad(format!(
            "cluster {cluster_name:?} sets proxy-url or tls-server-name, which oxetcd-bench does not support"
        )));
    }
    let base = path.parent().map(Path::to_owned).unwrap_or_default();
    Ok((cluster, user, base))
}

/// The target from the flags and the kubeconfig (`--kubeconfig`, else
/// `$KUBECONFIG`'s first file, else none: then `--endpoints` is needed).
pub fn target(common: &Common, args: &K8sArgs) -> Result<Target, BenchError> {
    target_with(common, args, std::env::var_os("KUBECONFIG"))
}

/// [`target`] with `$KUBECONFIG` given.
fn target_with(
    common: &Common,
    args: &K8sArgs,
    kubeconfig_env: Option<std::ffi::OsString>,
) -> Result<Target, BenchError> {
    let path = args.kubeconfig.clone().or_else(|| {
        kubeconfig_env
            .and_then(|v| std::env::split_paths(&v).next())
            .filter(|p| !p.as_os_str().is_empty())
    });
    let (cluster, user, base) = match &path {
        Some(path) => current(path)?,
        None => (Cluster::default(), User::default(), PathBuf::new()),
    };
    let server = match common.endpoints.as_slice() {
        [] => cluster.server.clone(),
        [one] => one.clone(),
        _ => return Err(usage("k8s takes one apiserver in --endpoints")),
    };
    if server.is_empty() {
        return Err(usage(
            "k8s needs the apiserver: --endpoints https://host:port or --kubeconfig",
        ));
    }
    let server = server.trim_end_matches('/').to_owned();
    if !(server.starts_with("https://") || server.starts_with("http://")) {
        return Err(usage(format!(
            "apiserver {server:?}: want an http:// or https:// URL"
        )));
    }

    let token = match (&args.token, &args.token_file) {
        (Some(_), Some(_)) => return Err(usage("--token and --token-file exclude each other")),
        (Some(token), None) => Some(token.clone()),
        (None, Some(file)) => Some(read(file)?.trim().to_owned()),
        (None, None) => match (&user.token, &user.token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(file)) => Some(read(&resolve(&base, file))?.trim().to_owned()),
            (None, None) => None,
        },
    };

    let trust = if common.insecure_skip_tls_verify {
        Trust::InsecureSkipVerify
    } else if let Some(ca) = &common.cacert {
        Trust::Cas(vec![Pem::file(ca)])
    } else if cluster.insecure_skip_tls_verify {
        Trust::InsecureSkipVerify
    } else {
        match pem(
            "certificate-authority",
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
            &base,
        )? {
            Some(ca) => Trust::Cas(vec![ca]),
            None => Trust::System,
        }
    };
    let identity = match (&common.cert, &common.key) {
        (Some(cert), Some(key)) => Some(Identity::files(cert, key)),
        (None, None) => {
            let cert = pem(
                "client-certificate",
                &user.client_certificate_data,
                &user.client_certificate,
                &base,
            )?;
            let key = pem("client-key", &user.client_key_data, &user.client_key, &base)?;
            match (cert, key) {
                (Some(cert), Some(key)) => Some(Identity { cert, key }),
                (None, None) => None,
                _ => {
                    return Err(usage(
                        "kubeconfig user has a client certificate or key alone",
                    ))
                }
            }
        }
        _ => return Err(usage("--cert and --key go together")),
    };
    let mut tls = ClientTlsOptions::new(trust);
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Ok(Target { server, token, tls })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    use crate::loadgen::cli::{Cli, Command};

    fn parse(args: &[&str]) -> (Common, K8sArgs) {
        let mut all = vec!["oxetcd-bench", "k8s"];
        all.extend_from_slice(args);
        let cli = Cli::try_parse_from(all).unwrap();
        match cli.command {
            Command::K8s(k8s) => (cli.common, k8s),
            other => panic!("{other:?}"),
        }
    }

    const CONFIG: &str = r#"apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: "https://127.0.0.1:6443/"
    certificate-authority-data: "UEVN"
users:
- name: u
  user:
    token: "secret"
contexts:
- name: ctx
  context:
    cluster: c
    user: u
current-context: ctx
"#;

    #[test]
    fn the_current_context_gives_server_token_and_ca() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, CONFIG).unwrap();
        let (common, args) = parse(&["--kubeconfig", path.to_str().unwrap()]);
        let t = target(&common, &args).unwrap();
        assert_eq!(t.server, "https://127.0.0.1:6443");
        assert_eq!(t.token.as_deref(), Some("secret"));
        assert_eq!(
            t.tls.trust,
            Trust::Cas(vec![Pem::bytes(
                "kubeconfig certificate-authority-data",
                b"PEM".to_vec()
            )])
        );

        // Flags win over the file.
        let (common, args) = parse(&[
            "--kubeconfig",
            path.to_str().unwrap(),
            "--endpoints",
            "https://10.0.0.1:443",
            "--token",
            "other",
            "--insecure-skip-tls-verify",
        ]);
        let t = target(&common, &args).unwrap();
        assert_eq!(t.server, "https://10.0.0.1:443");
        assert_eq!(t.token.as_deref(), Some("other"));
        assert_eq!(t.tls.trust, Trust::InsecureSkipVerify);
    }

    #[test]
    fn exec_users_and_missing_servers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let exec = CONFIG.replace("    token: \"secret\"", "    exec:\n      command: aws");
        std::fs::write(&path, exec).unwrap();
        let (common, args) = parse(&["--kubeconfig", path.to_str().unwrap()]);
        let e = target(&common, &args).unwrap_err().to_string();
        assert!(e.contains("exec plugin"), "{e}");

        let (common, args) = parse(&[]);
        let e = target_with(&common, &args, None).unwrap_err().to_string();
        assert!(e.contains("needs the apiserver"), "{e}");
        // $KUBECONFIG names the file when --kubeconfig does not.
        std::fs::write(&path, CONFIG).unwrap();
        let t = target_with(&common, &args, Some(path.into_os_string())).unwrap();
        assert_eq!(t.server, "https://127.0.0.1:6443");
    }
}
