//! Command-line flags, in kube-apiserver's names and style
//! (`--etcd-servers=http://a:2379,http://b:2379`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "oxetcd-apiserver",
    version,
    about = "A thin Kubernetes API server keeping its objects in an etcd-API store \
             (an embedded oxetcd, or --etcd-servers)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub flags: Flags,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Prints a kubeconfig for this server (URL, CA, admin token) and exits.
    Kubeconfig {
        /// The server URL to write (default: from --bind-address and --secure-port).
        #[arg(long)]
        server: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct Flags {
    /// etcd endpoints (http://host:port, comma-separated). Without it an
    /// embedded one-member oxetcd keeps the data in --data-dir.
    #[arg(long, value_delimiter = ',', global = true)]
    pub etcd_servers: Vec<String>,
    /// Key prefix of every object in the store.
    #[arg(long, default_value = "/registry", global = true)]
    pub etcd_prefix: String,
    /// TLS to etcd: not built yet; refused rather than ignored.
    #[arg(long, global = true)]
    pub etcd_cafile: Option<PathBuf>,
    #[arg(long, global = true)]
    pub etcd_certfile: Option<PathBuf>,
    #[arg(long, global = true)]
    pub etcd_keyfile: Option<PathBuf>,
    /// The HTTPS port.
    #[arg(long, default_value_t = 6443, global = true)]
    pub secure_port: u16,
    /// The address to listen on. kube-apiserver's default is 0.0.0.0; this
    /// server's is loopback, as every user is an administrator.
    #[arg(long, default_value = "127.0.0.1", global = true)]
    pub bind_address: String,
    /// Serving certificate (PEM chain). Default: generated into --data-dir.
    #[arg(long, global = true, requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long, global = true, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// Bearer tokens, kube-apiserver's CSV: token,user,uid[,"group1,group2"].
    /// Default: one admin token generated into --data-dir.
    #[arg(long, global = true)]
    pub token_auth_file: Option<PathBuf>,
    /// How often the store is compacted (kube-apiserver's compactor: the
    /// history of one to two intervals survives); 0 disables it.
    #[arg(long, default_value = "5m", value_parser = go_duration, global = true)]
    pub etcd_compaction_interval: Duration,
    /// The embedded store's data, the generated certificates and token.
    #[arg(long, default_value = "oxetcd-apiserver-data", global = true)]
    pub data_dir: PathBuf,
}

/// A duration as kube-apiserver's flags take it (Go's syntax: "5m0s",
/// "1h", "500ms", "0").
fn go_duration(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

impl Flags {
    /// Flags this build cannot honour, as an error rather than ignored.
    pub fn unsupported(&self) -> Option<String> {
        let tls = [
            ("--etcd-cafile", &self.etcd_cafile),
            ("--etcd-certfile", &self.etcd_certfile),
            ("--etcd-keyfile", &self.etcd_keyfile),
        ];
        tls.iter().find(|(_, v)| v.is_some()).map(|(name, _)| {
            format!("{name}: TLS to etcd is not supported yet; use http:// --etcd-servers or the embedded store")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_apiserver_style_flags() {
        let cli = Cli::parse_from([
            "oxetcd-apiserver",
            "--etcd-servers=http://127.0.0.1:2379,http://127.0.0.2:2379",
            "--secure-port=26443",
        ]);
        assert_eq!(cli.flags.etcd_servers.len(), 2);
        assert_eq!(cli.flags.secure_port, 26443);
        assert_eq!(cli.flags.etcd_prefix, "/registry");
        assert!(cli.flags.unsupported().is_none());
        let cli = Cli::parse_from(["oxetcd-apiserver", "kubeconfig", "--data-dir", "/x"]);
        assert!(matches!(cli.command, Some(Command::Kubeconfig { .. })));
        assert_eq!(cli.flags.data_dir, PathBuf::from("/x"));
        let cli = Cli::parse_from(["oxetcd-apiserver", "--etcd-cafile=/ca.pem"]);
        assert!(cli.flags.unsupported().unwrap().contains("--etcd-cafile"));
        assert!(Cli::try_parse_from(["oxetcd-apiserver", "--tls-cert-file=/c"]).is_err());
    }

    #[test]
    fn durations_in_go_syntax() {
        let cli = Cli::parse_from(["oxetcd-apiserver"]);
        assert_eq!(cli.flags.etcd_compaction_interval, Duration::from_secs(300));
        for (arg, want) in [("5m0s", 300), ("1h", 3600), ("0", 0), ("90s", 90)] {
            let cli = Cli::parse_from([
                "oxetcd-apiserver",
                &format!("--etcd-compaction-interval={arg}"),
            ]);
            assert_eq!(cli.flags.etcd_compaction_interval.as_secs(), want, "{arg}");
        }
        assert!(Cli::try_parse_from(["oxetcd-apiserver", "--etcd-compaction-interval=5"]).is_err());
    }
}
