//! etcd 3.4's command line: the same flags, `ETCD_*` environment variables
//! and defaults, so `oxetcd` can stand in for the `etcd` binary in scripts
//! and unit files.
//!
//! Every flag etcd 3.4 knows is a row of the flag table (`flags::FLAGS`): its
//! type, its default and what oxetcd does with it (uses it, accepts and
//! ignores it with a warning saying why, or refuses to start). The clap
//! command, the environment variable names and the policy all come from that
//! one table, so a flag cannot be half-registered.
//!
//! The modules, in the order a command line meets them:
//!
//! | module | job |
//! |---|---|
//! | `flags` | the flag table and help text; Go's flag forms (`--x v`, `--x=v`, `-x v`, booleans) rewritten for clap |
//! | `values` | each flag's value as given, from the command line or `ETCD_*` (or `--config-file` instead), read as its type |
//! | `file` | `--config-file`: etcd's YAML keys as flag values |
//! | `policy` | refuses the flags oxetcd cannot honour, warns about the ones it ignores |
//! | `urls` | listen and advertise URLs ([`ListenUrl`], [`Scheme`]), `--initial-cluster` |
//! | `bootstrap` | etcd's cross-flag checks before it starts (raft timing, this member in the initial cluster) |
//! | `tls` | [`TlsSettings`] from the Security flags |
//! | `go_values` | Go's syntax for booleans, integers and durations, as etcd's flag package reads them |
//! | `error` | [`ConfigError`], in etcd's words where etcd has them |
//!
//! This module holds [`Config`], the result, and [`parse`], which builds it
//! in etcd's order.

mod auth;
mod bootstrap;
mod error;
mod file;
mod flags;
mod go_values;
mod policy;
#[cfg(test)]
mod test_support;
mod tls;
mod urls;
mod values;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::error::ErrorKind;
use oxetcd_storage::Engine;

pub use error::ConfigError;
pub use tls::TlsSettings;
pub use urls::ListenUrl;
// The type of `ListenUrl::scheme`; only tests outside this module name it.
#[cfg_attr(not(test), allow(unused_imports))]
pub use urls::Scheme;

use crate::logging::{LogOutput, Logger};
use oxetcd_server::DEFAULT_COMPACTION_BATCH_LIMIT;
use values::Values;

/// The etcd version oxetcd claims to speak; the Status RPC reports it and
/// kube-apiserver requires at least 3.5.13.
pub const ETCD_API_VERSION: &str = "3.5.16";

/// What the command line asks for.
// Parsed once at start: boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// Start the server.
    Run(Config),
    /// `--version`: print [`version_text`] to stdout and exit 0.
    Version,
    /// `-h`/`--help`: print this text to stdout and exit 0.
    Help(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    /// --wal-dir: the Raft log's directory, when not in the data dir.
    pub wal_dir: Option<PathBuf>,
    pub listen_client_urls: Vec<ListenUrl>,
    /// --listen-metrics-urls: more listeners for /metrics and the health
    /// endpoints (https ones with the client TLS setup, as etcd).
    pub listen_metrics_urls: Vec<ListenUrl>,
    /// --metrics: basic, or extensive (gRPC handling-time histograms too).
    pub metrics: oxetcd_metrics::Level,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<ListenUrl>,
    pub initial_advertise_peer_urls: Vec<String>,
    /// (member name, peer url); one entry per url, in the order given.
    pub initial_cluster: Vec<(String, String)>,
    pub initial_cluster_token: String,
    pub initial_cluster_state: ClusterState,
    /// --force-new-cluster: restart from the data dir as a one-member cluster.
    pub force_new_cluster: bool,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    /// --auto-compaction-mode/-retention; None when disabled.
    pub auto_compaction: Option<oxetcd_server::AutoCompaction>,
    /// Revisions a compaction deletes per batch in the background.
    pub compaction_batch_limit: usize,
    /// --max-concurrent-streams: HTTP/2 streams per client connection, and
    /// the JSON gateway's calls in flight together (in etcd the gateway
    /// shares one gRPC connection).
    pub max_concurrent_streams: u32,
    pub quota_backend_bytes: i64,
    /// --auth-token-ttl: how long a simple token lives after its last use.
    pub auth_token_ttl: std::time::Duration,
    /// --bcrypt-cost: the cost of the password hashes this member makes.
    pub bcrypt_cost: u32,
    /// --auth-token=jwt,...: JWT tokens; None for simple tokens.
    pub jwt: Option<oxetcd_server::auth::JwtConfig>,
    /// --experimental-backend: the storage engine of a new data dir (None:
    /// the data dir's own, or the default for a new one).
    pub backend: Option<Engine>,
    /// How often idle watches that asked for it get a progress notification.
    pub watch_progress_notify_interval: std::time::Duration,
    /// --experimental-initial-corrupt-check.
    pub initial_corrupt_check: bool,
    /// --experimental-corrupt-check-time; None when 0 (etcd's "never").
    pub corrupt_check_interval: Option<std::time::Duration>,
    /// Raft: heartbeat interval and election timeout (milliseconds in etcd's
    /// flags), and applied entries between snapshots.
    pub heartbeat_interval: std::time::Duration,
    pub election_timeout: std::time::Duration,
    pub snapshot_count: u64,
    /// Writes kept in the Raft log behind a snapshot for slow followers.
    pub snapshot_catchup_entries: u64,
    /// --experimental-warning-apply-duration: an entry whose apply takes
    /// longer is logged and counted in etcd_server_slow_apply_total.
    pub warning_apply_duration: std::time::Duration,
    /// --strict-reconfig-check: refuse membership changes that could cost
    /// the quorum.
    pub strict_reconfig_check: bool,
    /// --experimental-enable-lease-checkpoint: the leader checkpoints
    /// remaining lease TTLs through the log (always persisted here, as etcd
    /// does with --experimental-enable-lease-checkpoint-persist).
    pub lease_checkpoint: bool,
    pub client_tls: TlsSettings,
    pub peer_tls: TlsSettings,
    /// One of debug, info, warn, error, dpanic, panic, fatal.
    pub log_level: String,
    /// --logger: zap's JSON lines or capnslog's text.
    pub logger: Logger,
    /// --log-outputs, in the order given, without repeats.
    pub log_outputs: Vec<LogOutput>,
    /// Flags the user set that oxetcd accepts but ignores, and other
    /// start-up remarks etcd would log; for the caller to log once
    /// logging is set up (the log level comes from this config).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

/// The `--version` text, lines in etcd's `Name: value` style.
pub fn version_text() -> String {
    format!(
        "oxetcd Version: {}\netcd API Version: {}\nGit SHA: Not provided\nOS/Arch: {}/{}\n",
        env!("CARGO_PKG_VERSION"),
        ETCD_API_VERSION,
        std::env::consts::OS,
        std::env::consts::ARCH,
    )
}

/// Parses the command line (first item: the program name) and the process
/// environment.
pub fn parse<I, T>(args: I) -> Result<Invocation, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let env_names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("ETCD_"))
        .collect();
    parse_with_env(args, &env_names, &|k| {
        std::env::var_os(k).map(|v| v.to_string_lossy().into_owned())
    })
}

/// [`parse`] with the environment given, so tests need not touch the
/// process-wide one. `env_names` lists the `ETCD_*` names present (for the
/// "unrecognized environment variable" remark).
fn parse_with_env<I, T>(
    args: I,
    env_names: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Invocation, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut cmd = flags::command();
    let matches = match cmd.try_get_matches_from_mut(flags::go_style_args(args)) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::DisplayHelp => {
            return Ok(Invocation::Help(cmd.render_help().to_string()));
        }
        Err(e) => return Err(flags::clap_error(&e)),
    };
    let mut vals = Values::collect(&matches, env_names, env);
    // etcd prints the version before looking at anything else.
    if vals.bool("version")? {
        return Ok(Invocation::Version);
    }
    if let Some(path) = vals.opt_string("config-file") {
        vals.use_config_file(&path)?;
    }
    build(&mut vals).map(Invocation::Run)
}

const LOG_LEVELS: &[&str] = &["debug", "info", "warn", "error", "dpanic", "panic", "fatal"];

/// Builds and validates the Config, in etcd's order (the first error etcd
/// would report is the one reported).
fn build(v: &mut Values) -> Result<Config, ConfigError> {
    v.apply_policies()?;

    let name = v.string("name");
    let data_dir = v
        .opt_string("data-dir")
        .map_or_else(|| PathBuf::from(format!("{name}.etcd")), PathBuf::from);
    let max_request_bytes = v.usize("max-request-bytes")?;
    let max_txn_ops = v.usize("max-txn-ops")?;
    // As in etcd, 0 (or less) means the default.
    let compaction_batch_limit = match v.int("experimental-compaction-batch-limit", 64)? {
        n if n <= 0 => DEFAULT_COMPACTION_BATCH_LIMIT,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let quota_backend_bytes = v.int("quota-backend-bytes", 64)?;
    let auth = auth::auth_settings(v)?;
    let heartbeat_interval = std::time::Duration::from_millis(v.uint("heartbeat-interval", 64)?);
    let election_timeout = std::time::Duration::from_millis(v.uint("election-timeout", 64)?);
    let snapshot_count = v.uint("snapshot-count", 64)?;
    let snapshot_catchup_entries = v.uint("experimental-snapshot-catchup-entries", 64)?;
    // etcd takes any duration here, zero and negative ones included (then
    // every apply is slow).
    let warning_apply_duration = std::time::Duration::from_nanos(
        u64::try_from(v.duration("experimental-warning-apply-duration")?).unwrap_or(0),
    );
    let watch_progress_notify_interval =
        values::positive_duration(v, "experimental-watch-progress-notify-interval")?;
    // etcd checks only for a positive interval (a negative one would spin).
    let corrupt_check_interval = match v.duration("experimental-corrupt-check-time")? {
        nanos if nanos <= 0 => None,
        nanos => Some(std::time::Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        )),
    };

    let listen_peer_urls = urls::listen_urls(v, "listen-peer-urls")?;
    let listen_client_urls = urls::listen_urls(v, "listen-client-urls")?;
    let listen_metrics_urls = urls::listen_urls(v, "listen-metrics-urls")?;
    // As etcd: any value but "extensive" is basic (said in the log).
    let metrics_level = v.string("metrics");
    let metrics = metrics_level.parse().unwrap_or_else(|_| {
        v.warnings.push(format!(
            "--metrics={metrics_level} is not basic or extensive: serving basic metrics, as etcd"
        ));
        oxetcd_metrics::Level::Basic
    });
    let initial_advertise_peer_urls = urls::advertise_urls(v, "initial-advertise-peer-urls")?;
    bootstrap::check_advertise_client_urls(v)?;
    let advertise_client_urls = urls::advertise_urls(v, "advertise-client-urls")?;

    let backend = match v.opt_string("experimental-backend") {
        None => None,
        Some(name) => Some(Engine::from_name(&name).ok_or_else(|| {
            let names = Engine::ALL.map(Engine::name);
            values::invalid_choice(v, "experimental-backend", &names)
        })?),
    };
    let initial_cluster_state = match v.string("initial-cluster-state").as_str() {
        "new" => ClusterState::New,
        "existing" => ClusterState::Existing,
        _ => {
            return Err(values::invalid_choice(
                v,
                "initial-cluster-state",
                &["new", "existing"],
            ));
        }
    };
    bootstrap::check_ticks(v)?;
    let auto_compaction = bootstrap::auto_compaction(v)?;
    let logger = match v.string("logger").as_str() {
        "zap" => Logger::Zap,
        "capnslog" => Logger::Capnslog,
        other => {
            return Err(ConfigError::Invalid(format!(
                "unknown logger option {other:?}"
            )))
        }
    };
    // --log-output is 3.4's older spelling, used when --log-outputs is not.
    let outputs_flag = if !v.is_set("log-outputs") && v.is_set("log-output") {
        "log-output"
    } else {
        "log-outputs"
    };
    let log_outputs = log_outputs(&v.string(outputs_flag));
    let log_level = if v.bool("debug")? {
        "debug".to_string()
    } else {
        let level = v.string("log-level");
        if !LOG_LEVELS.contains(&level.as_str()) {
            return Err(values::invalid_choice(v, "log-level", LOG_LEVELS));
        }
        level
    };

    let initial_cluster = urls::initial_cluster(v, &name, &initial_advertise_peer_urls)?;
    bootstrap::check_bootstrap(
        &name,
        initial_cluster_state,
        &initial_advertise_peer_urls,
        &initial_cluster,
    )?;

    let mut warnings = std::mem::take(&mut v.warnings);
    let client_tls = tls::client_tls(v, &mut warnings)?;
    let peer_tls = tls::peer_tls(v, &mut warnings)?;
    Ok(Config {
        name,
        data_dir,
        wal_dir: v.opt_path("wal-dir"),
        listen_client_urls,
        listen_metrics_urls,
        metrics,
        advertise_client_urls,
        listen_peer_urls,
        initial_advertise_peer_urls,
        initial_cluster,
        initial_cluster_token: v.string("initial-cluster-token"),
        initial_cluster_state,
        force_new_cluster: v.bool("force-new-cluster")?,
        max_request_bytes,
        max_txn_ops,
        auto_compaction,
        compaction_batch_limit,
        // Uint(32) flags parse within u32.
        max_concurrent_streams: u32::try_from(v.uint("max-concurrent-streams", 32)?)
            .unwrap_or(u32::MAX),
        quota_backend_bytes,
        auth_token_ttl: auth.token_ttl,
        bcrypt_cost: auth.bcrypt_cost,
        jwt: auth.jwt,
        backend,
        watch_progress_notify_interval,
        initial_corrupt_check: v.bool("experimental-initial-corrupt-check")?,
        corrupt_check_interval,
        heartbeat_interval,
        election_timeout,
        snapshot_count,
        snapshot_catchup_entries,
        warning_apply_duration,
        strict_reconfig_check: v.bool("strict-reconfig-check")?,
        lease_checkpoint: v.bool("experimental-enable-lease-checkpoint")?,
        client_tls,
        peer_tls,
        log_level,
        logger,
        log_outputs,
        warnings,
    })
}

/// --log-outputs: "default" and "stderr" are stderr, "stdout", else a file.
fn log_outputs(list: &str) -> Vec<LogOutput> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let output = match name {
            "default" | "stderr" => LogOutput::Stderr,
            "stdout" => LogOutput::Stdout,
            path => LogOutput::File(PathBuf::from(path)),
        };
        if !out.contains(&output) {
            out.push(output);
        }
    }
    if out.is_empty() {
        out.push(LogOutput::Stderr);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    #[test]
    fn metrics_levels_and_urls() {
        use oxetcd_metrics::Level;
        let c = cfg(&[]);
        assert_eq!(c.metrics, Level::Basic);
        assert!(c.listen_metrics_urls.is_empty());
        let c = cfg(&[
            "--metrics",
            "extensive",
            "--listen-metrics-urls",
            "http://127.0.0.1:9379,https://127.0.0.1:9380",
        ]);
        assert_eq!(c.metrics, Level::Extensive);
        assert_eq!(c.listen_metrics_urls.len(), 2);
        assert_eq!(c.listen_metrics_urls[1].scheme, Scheme::Https);
        // etcd takes any other level as basic; oxetcd says so.
        let c = cfg(&["--metrics", "full"]);
        assert_eq!(c.metrics, Level::Basic);
        assert!(c.warnings.iter().any(|w| w.contains("--metrics=full")));
    }

    #[test]
    fn defaults_are_etcds() {
        let c = cfg(&[]);
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
        assert_eq!(c.listen_client_urls.len(), 1);
        let l = &c.listen_client_urls[0];
        assert_eq!(
            (l.scheme, l.host.as_str(), l.port),
            (Scheme::Http, "localhost", 2379)
        );
        assert_eq!(l.original, "http://localhost:2379");
        assert_eq!(c.advertise_client_urls, vec!["http://localhost:2379"]);
        assert_eq!(c.listen_peer_urls[0].port, 2380);
        assert_eq!(c.initial_advertise_peer_urls, vec!["http://localhost:2380"]);
        assert_eq!(
            c.initial_cluster,
            vec![("default".to_string(), "http://localhost:2380".to_string())]
        );
        assert_eq!(c.initial_cluster_token, "etcd-cluster");
        assert_eq!(c.initial_cluster_state, ClusterState::New);
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.max_txn_ops, 128);
        assert_eq!(c.max_concurrent_streams, u32::MAX);
        assert_eq!(
            cfg(&["--max-concurrent-streams", "3"]).max_concurrent_streams,
            3
        );
        assert_eq!(c.quota_backend_bytes, 0);
        assert_eq!(c.backend, None);
        assert_eq!(c.client_tls, TlsSettings::default());
        assert_eq!(c.peer_tls, TlsSettings::default());
        assert_eq!(c.log_level, "info");
        assert_eq!(c.logger, Logger::Zap);
        assert_eq!(c.log_outputs, vec![LogOutput::Stderr]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn a_config_file_is_equivalent_to_the_flags() {
        let flags = [
            "--name=infra1",
            "--data-dir=/var/lib/etcd/infra1",
            "--wal-dir=/wal/infra1",
            "--listen-client-urls=https://127.0.0.1:2379",
            "--advertise-client-urls=https://127.0.0.1:2379",
            "--listen-peer-urls=https://127.0.0.1:2380",
            "--initial-advertise-peer-urls=https://127.0.0.1:2380",
            "--initial-cluster=infra1=https://127.0.0.1:2380,infra2=https://127.0.0.2:2380",
            "--initial-cluster-token=tok",
            "--initial-cluster-state=existing",
            "--heartbeat-interval=200",
            "--election-timeout=2000",
            "--quota-backend-bytes=1000000",
            "--auto-compaction-mode=revision",
            "--auto-compaction-retention=100",
            "--cert-file=/c.pem",
            "--key-file=/c-key.pem",
            "--client-cert-auth",
            "--trusted-ca-file=/ca.pem",
            "--peer-auto-tls",
            "--log-level=warn",
        ];
        let yaml = "\
name: infra1
data-dir: /var/lib/etcd/infra1
wal-dir: /wal/infra1
listen-client-urls: https://127.0.0.1:2379
advertise-client-urls: https://127.0.0.1:2379
listen-peer-urls: https://127.0.0.1:2380
initial-advertise-peer-urls: https://127.0.0.1:2380
initial-cluster: infra1=https://127.0.0.1:2380,infra2=https://127.0.0.2:2380
initial-cluster-token: tok
initial-cluster-state: existing
heartbeat-interval: 200
election-timeout: 2000
quota-backend-bytes: 1000000
auto-compaction-mode: revision
auto-compaction-retention: \"100\"
client-transport-security:
  cert-file: /c.pem
  key-file: /c-key.pem
  client-cert-auth: true
  trusted-ca-file: /ca.pem
peer-transport-security:
  auto-tls: true
log-level: warn
";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.yml");
        std::fs::write(&path, yaml).unwrap();
        let path = path.to_str().unwrap().to_string();
        let from_flags = cfg(&flags);
        let from_file = cfg(&["--config-file", &path]);
        assert_eq!(from_file, from_flags);
        assert_ne!(from_file, cfg(&[]));

        // As etcd: other flags and ETCD_* variables are ignored, and said so.
        let c = cfg_env(
            &["--config-file", &path, "--name=other"],
            &[("ETCD_DATA_DIR", "/elsewhere")],
        );
        assert_eq!(c.name, "infra1");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/etcd/infra1"));
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0].contains("--name, ETCD_DATA_DIR"),
            "{:?}",
            c.warnings
        );
        // ETCD_CONFIG_FILE names the file too.
        let c = cfg_env(&[], &[("ETCD_CONFIG_FILE", &path)]);
        assert_eq!(c.name, "infra1");

        // The file's values go through the flags' checks, named by key.
        std::fs::write(dir.path().join("bad.yml"), "initial-cluster-state: old\n").unwrap();
        let bad = dir.path().join("bad.yml");
        assert_eq!(
            err(&["--config-file", bad.to_str().unwrap()]),
            "invalid value \"old\" for initial-cluster-state in the config file: valid values are \"new\", \"existing\""
        );
        assert!(err(&["--config-file", "/nonexistent.yml"])
            .starts_with("cannot load config file /nonexistent.yml: "));
    }

    #[test]
    fn log_flags() {
        let c = cfg(&[
            "--logger=capnslog",
            "--log-outputs",
            "stdout,/tmp/x.log,stderr,stdout",
        ]);
        assert_eq!(c.logger, Logger::Capnslog);
        assert_eq!(
            c.log_outputs,
            vec![
                LogOutput::Stdout,
                LogOutput::File(PathBuf::from("/tmp/x.log")),
                LogOutput::Stderr
            ]
        );
        assert_eq!(
            cfg(&["--log-output=stdout"]).log_outputs,
            vec![LogOutput::Stdout]
        );
        assert_eq!(
            err(&["--logger=syslog"]),
            "unknown logger option \"syslog\""
        );
        assert!(cfg(&["--logger=zap", "--log-outputs=default"])
            .warnings
            .is_empty());
    }

    #[test]
    fn name_moves_data_dir_and_initial_cluster() {
        let c = cfg(&["--name", "infra1"]);
        assert_eq!(c.data_dir, PathBuf::from("infra1.etcd"));
        assert_eq!(
            c.initial_cluster,
            vec![("infra1".to_string(), "http://localhost:2380".to_string())]
        );
        let c = cfg(&["--initial-advertise-peer-urls", "http://127.0.0.1:12380"]);
        assert_eq!(c.initial_cluster[0].1, "http://127.0.0.1:12380");
    }

    #[test]
    fn experimental_backend_names_an_engine() {
        assert_eq!(
            cfg(&["--experimental-backend", "redb"]).backend,
            Some(Engine::Redb)
        );
        let c = cfg_env(&[], &[("ETCD_EXPERIMENTAL_BACKEND", "sled")]);
        assert_eq!(c.backend, Some(Engine::Sled));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn etcd_value_checks() {
        assert_eq!(
            err(&["--max-request-bytes", "x"]),
            "invalid value \"x\" for flag --max-request-bytes: parse error"
        );
        assert_eq!(
            err(&["--max-concurrent-streams", "4294967296"]),
            "invalid value \"4294967296\" for flag --max-concurrent-streams: value out of range"
        );
        assert_eq!(
            err(&["--grpc-keepalive-timeout", "20"]),
            "invalid value \"20\" for flag --grpc-keepalive-timeout: parse error"
        );
        assert_eq!(
            err(&["--initial-cluster-state", "old"]),
            "invalid value \"old\" for flag --initial-cluster-state: valid values are \"new\", \"existing\""
        );
        assert_eq!(
            err(&["--experimental-backend", "bbolt"]),
            "invalid value \"bbolt\" for flag --experimental-backend: valid values are \"sled\", \"redb\""
        );
        assert!(err(&["--log-level", "loud"]).contains("--log-level"));
        assert_eq!(cfg(&["--max-txn-ops", "0x100"]).max_txn_ops, 256);
        assert_eq!(cfg(&[]).compaction_batch_limit, 1000);
        assert_eq!(
            cfg(&["--experimental-compaction-batch-limit", "50"]).compaction_batch_limit,
            50
        );
        assert_eq!(
            cfg(&["--experimental-compaction-batch-limit", "0"]).compaction_batch_limit,
            1000,
            "0 means the default, as in etcd"
        );
    }

    #[test]
    fn log_level_and_debug() {
        assert_eq!(cfg(&["--log-level", "warn"]).log_level, "warn");
        assert_eq!(cfg(&["--debug"]).log_level, "debug");
    }

    #[test]
    fn etcd_e2e_arguments_parse() {
        let c = cfg(&[
            "--name",
            "testname0",
            "--listen-client-urls",
            "https://localhost:20000",
            "--advertise-client-urls",
            "https://localhost:20000",
            "--listen-peer-urls",
            "https://localhost:20001",
            "--initial-advertise-peer-urls",
            "https://localhost:20001",
            "--initial-cluster-token",
            "new",
            "--data-dir",
            "/tmp/x",
            "--snapshot-count",
            "100000",
            "--cert-file",
            "a",
            "--key-file",
            "b",
            "--trusted-ca-file",
            "c",
            "--client-cert-auth",
            "--peer-auto-tls",
            "--initial-cluster",
            "testname0=https://localhost:20001",
        ]);
        assert_eq!(c.name, "testname0");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.initial_cluster_token, "new");
        assert_eq!(c.listen_client_urls[0].scheme, Scheme::Https);
        assert_eq!(c.listen_client_urls[0].port, 20000);
        assert_eq!(
            c.client_tls,
            TlsSettings {
                cert_file: Some("a".into()),
                key_file: Some("b".into()),
                trusted_ca_file: Some("c".into()),
                client_cert_auth: true,
                ..TlsSettings::default()
            }
        );
        assert!(c.peer_tls.auto_tls);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        // Mixed http+https on one port, as the e2e harness also runs it.
        let both = "http://localhost:20000,https://localhost:20000";
        let c = cfg(&[
            "--listen-client-urls",
            both,
            "--advertise-client-urls",
            both,
        ]);
        assert_eq!(c.listen_client_urls.len(), 2);
    }

    #[test]
    fn version_and_help() {
        assert_eq!(run(&["--version"]), Ok(Invocation::Version));
        assert_eq!(run(&["-version"]), Ok(Invocation::Version));
        let text = version_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!("oxetcd Version: {}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(lines[1], format!("etcd API Version: {ETCD_API_VERSION}"));
        assert_eq!(lines[2], "Git SHA: Not provided");
        for h in ["-h", "--help", "-help"] {
            match run(&[h]) {
                Ok(Invocation::Help(text)) => {
                    assert!(text.contains("--listen-client-urls"), "{text}");
                    assert!(text.contains("ETCD_"), "{text}");
                }
                other => panic!("{h}: {other:?}"),
            }
        }
    }
}
