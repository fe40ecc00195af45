//! Command-line flags, in kube-apiserver's names and style
//! (`--etcd-servers=http://a:2379,http://b:2379`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use oxetcd_tls::{
    client_config, tls_connector, ClientTlsOptions, Identity, Pem, TlsConnector, Trust,
};

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
    /// CA certificates (PEM) etcd's serving certificate must chain to, for
    /// https:// --etcd-servers (default: the system's store).
    #[arg(long, global = true)]
    pub etcd_cafile: Option<PathBuf>,
    /// The client certificate presented to etcd (with --etcd-keyfile), for
    /// an etcd started with --client-cert-auth.
    #[arg(long, global = true, requires = "etcd_keyfile")]
    pub etcd_certfile: Option<PathBuf>,
    #[arg(long, global = true, requires = "etcd_certfile")]
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
    /// How long events live: each is written with a lease of this TTL
    /// (kube-apiserver's --event-ttl).
    #[arg(long, default_value = "1h", value_parser = go_duration, global = true)]
    pub event_ttl: Duration,
    /// Client certificates signed by these CAs (PEM) authenticate: the user
    /// is the subject's CN, its groups the O's.
    #[arg(long, global = true)]
    pub client_ca_file: Option<PathBuf>,
    /// Watch cache size (kube-apiserver's flag): each resource's window of
    /// recent events keeps at least this many, and up to 1024 times as many
    /// while they are younger than 75 s. 0 disables the watch caches: every
    /// list and watch goes to the store.
    #[arg(long, default_value_t = 100, global = true)]
    pub default_watch_cache_size: usize,
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
    /// Flags that make no sense together, as an error rather than ignored:
    /// etcd's TLS flags without an https:// etcd to use them with.
    pub fn conflicts(&self) -> Option<String> {
        let tls = [
            ("--etcd-cafile", &self.etcd_cafile),
            ("--etcd-certfile", &self.etcd_certfile),
            ("--etcd-keyfile", &self.etcd_keyfile),
        ];
        let given = tls.iter().find(|(_, v)| v.is_some())?.0;
        if self.etcd_servers.iter().any(|s| s.starts_with("https://")) {
            return None;
        }
        Some(format!(
            "{given} configures TLS to etcd, but no --etcd-servers endpoint is https://"
        ))
    }

    /// The TLS configuration for https:// --etcd-servers: trust
    /// --etcd-cafile (else the system's CAs), present --etcd-certfile/-keyfile.
    pub fn etcd_tls(&self) -> Result<TlsConnector, oxetcd_tls::Error> {
        let trust = match &self.etcd_cafile {
            Some(ca) => Trust::Cas(vec![Pem::file(ca)]),
            None => Trust::System,
        };
        let mut options = ClientTlsOptions::new(trust);
        if let (Some(cert), Some(key)) = (&self.etcd_certfile, &self.etcd_keyfile) {
            options = options.identity(Identity::files(cert, key));
        }
        Ok(tls_connector(client_config(&options)?))
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
        assert_eq!(cli.flags.default_watch_cache_size, 100);
        assert!(cli.flags.conflicts().is_none());
        let cli = Cli::parse_from(["oxetcd-apiserver", "kubeconfig", "--data-dir", "/x"]);
        assert!(matches!(cli.command, Some(Command::Kubeconfig { .. })));
        assert_eq!(cli.flags.data_dir, PathBuf::from("/x"));
        let cli = Cli::parse_from(["oxetcd-apiserver", "--etcd-cafile=/ca.pem"]);
        assert!(cli.flags.conflicts().unwrap().contains("--etcd-cafile"));
        let cli = Cli::parse_from([
            "oxetcd-apiserver",
            "--etcd-cafile=/ca.pem",
            "--etcd-servers=https://127.0.0.1:2379",
        ]);
        assert!(cli.flags.conflicts().is_none());
        assert!(Cli::try_parse_from(["oxetcd-apiserver", "--etcd-certfile=/c"]).is_err());
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
