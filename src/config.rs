//! etcd 3.4's command line: the same flags, `ETCD_*` environment variables
//! and defaults, so `oxetcd` can stand in for the `etcd` binary in scripts
//! and unit files.
//!
//! Every flag etcd 3.4 knows is in [`FLAGS`], one row each: its type, its
//! default and what oxetcd does with it (uses it, accepts it with a warning
//! because the part it tunes lands later, or refuses to start). The clap
//! command, the environment variable names and the policy all come from that
//! one table, so a flag cannot be half-registered.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, ColorChoice, Command};

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
    pub listen_client_urls: Vec<ListenUrl>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<ListenUrl>,
    pub initial_advertise_peer_urls: Vec<String>,
    /// (member name, peer url); one entry per url, in the order given.
    pub initial_cluster: Vec<(String, String)>,
    pub initial_cluster_token: String,
    pub initial_cluster_state: ClusterState,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    /// --max-concurrent-streams: HTTP/2 streams per client connection, and
    /// the JSON gateway's calls in flight together (in etcd the gateway
    /// shares one gRPC connection).
    pub max_concurrent_streams: u32,
    pub quota_backend_bytes: i64,
    /// How often idle watches that asked for it get a progress notification.
    pub watch_progress_notify_interval: std::time::Duration,
    /// Raft: heartbeat interval and election timeout (milliseconds in etcd's
    /// flags), and applied entries between snapshots.
    pub heartbeat_interval: std::time::Duration,
    pub election_timeout: std::time::Duration,
    pub snapshot_count: u64,
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
    /// Flags the user set that oxetcd accepts but does not act on yet, and
    /// other start-up remarks etcd would log; for the caller to log once
    /// logging is set up (the log level comes from this config).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

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
}

/// A URL to listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenUrl {
    pub scheme: Scheme,
    /// Host without IPv6 brackets: "localhost", "127.0.0.1", "::1".
    pub host: String,
    /// 0 for a unix URL whose "port" is not a number.
    pub port: u16,
    /// Unix sockets only: etcd listens on the URL's "host:port" text taken
    /// literally as a file name (`unix://localhost:1234` is the file
    /// `localhost:1234` in the working directory).
    pub path: Option<PathBuf>,
    /// The URL as given (trimmed).
    pub original: String,
}

impl ListenUrl {
    /// "host:port" with IPv6 hosts bracketed.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
    Unix,
    Unixs,
}

impl Scheme {
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Https | Scheme::Unixs)
    }

    pub fn is_unix(self) -> bool {
        matches!(self, Scheme::Unix | Scheme::Unixs)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Unix => "unix",
            Scheme::Unixs => "unixs",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Go's flag package words it this way.
    #[error("flag provided but not defined: {0}")]
    UnknownFlag(String),
    #[error("'{0}' is not a valid flag")]
    NotAFlag(String),
    /// Other command-line syntax errors reported by clap.
    #[error("{0}")]
    Usage(String),
    /// `origin` is "flag --name" or the environment variable's name.
    #[error("invalid value \"{value}\" for {origin}: {reason}")]
    InvalidValue {
        origin: String,
        value: String,
        reason: String,
    },
    #[error("{flag} is not supported by oxetcd: {reason}")]
    Unsupported { flag: String, reason: String },
    #[error("unexpected URL scheme \"{scheme}\" in {flag} \"{url}\"")]
    UrlScheme {
        scheme: String,
        flag: String,
        url: String,
    },
    #[error("invalid URL \"{url}\" in {flag}: {reason}")]
    InvalidUrl {
        flag: String,
        url: String,
        reason: String,
    },
    /// etcd's own start-up checks, in etcd's words.
    #[error("{0}")]
    Invalid(String),
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
    let mut cmd = command();
    let matches = match cmd.try_get_matches_from_mut(go_style_args(args)) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::DisplayHelp => {
            return Ok(Invocation::Help(cmd.render_help().to_string()));
        }
        Err(e) => return Err(clap_error(&e)),
    };
    let mut vals = Values::collect(&matches, env_names, env);
    // etcd prints the version before looking at anything else.
    if vals.bool("version")? {
        return Ok(Invocation::Version);
    }
    build(&mut vals).map(Invocation::Run)
}

// ---------------------------------------------------------------------------
// The flag table.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bool,
    /// Go's `uint`/`uint64`/`uint32` (bits).
    Uint(u32),
    /// Go's `int`/`int64` (bits).
    Int(u32),
    /// Go's time.Duration syntax: "5s", "1h30m", "100ms".
    Duration,
    /// Comma-separated URLs.
    Urls,
    /// Flags etcd 3.4 itself ignores (etcd 0.4 leftovers): bool-like, any value.
    Legacy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    Supported,
    /// Accepted; a warning when set to a non-default value.
    Warn(&'static str),
    /// Refused when set to a non-default value.
    Reject(&'static str),
}

struct Flag {
    name: &'static str,
    kind: Kind,
    /// Typed default (as etcd's help shows it, where that is parseable).
    default: &'static str,
    policy: Policy,
    heading: &'static str,
    help: &'static str,
}

const RAFT_LATER: &str = "raft tuning lands with clustering";
const NO_V2: &str = "oxetcd serves only the v3 API";
const NO_DISCOVERY: &str = "discovery bootstrap is not implemented; use --initial-cluster";
const NO_PROXY: &str = "the v2 proxy is not implemented";
const NO_GATEWAY: &str = "the HTTP/JSON gateway is not served yet";
const NO_METRICS: &str = "metrics are not served yet";
const NO_AUTH_TUNING: &str = "auth lands later";
const NO_LOG_TUNING: &str = "oxetcd logs to stderr through its own logger";

macro_rules! flag {
    ($name:literal, $kind:expr, $default:literal, $policy:expr, $heading:literal, $help:literal) => {
        Flag {
            name: $name,
            kind: $kind,
            default: $default,
            policy: $policy,
            heading: $heading,
            help: $help,
        }
    };
}

use Kind::{Bool, Duration as Dur, Int, Legacy, Str, Uint, Urls};
use Policy::{Reject, Supported, Warn};

/// Every flag of etcd 3.4 (etcdmain/config.go), in its help's order.
// One row per flag reads as a table; rustfmt would spread each over 8 lines.
#[rustfmt::skip]
const FLAGS: &[Flag] = &[
    flag!("config-file", Str, "", Reject("configuration files are not supported; use flags or ETCD_* variables"), "Member", "Path to the server configuration file."),
    flag!("name", Str, "default", Supported, "Member", "Human-readable name for this member."),
    flag!("data-dir", Str, "", Supported, "Member", "Path to the data directory. [default: ${name}.etcd]"),
    flag!("wal-dir", Str, "", Warn("the write-ahead log lives in --data-dir"), "Member", "Path to the dedicated wal directory."),
    flag!("snapshot-count", Uint(64), "100000", Supported, "Member", "Number of committed transactions to trigger a snapshot to disk."),
    flag!("heartbeat-interval", Uint(64), "100", Supported, "Member", "Time (in milliseconds) of a heartbeat interval."),
    flag!("election-timeout", Uint(64), "1000", Supported, "Member", "Time (in milliseconds) for an election to timeout."),
    flag!("initial-election-tick-advance", Bool, "true", Warn(RAFT_LATER), "Member", "Whether to fast-forward initial election ticks on boot for faster election."),
    flag!("listen-peer-urls", Urls, "http://localhost:2380", Supported, "Member", "List of URLs to listen on for peer traffic."),
    flag!("listen-client-urls", Urls, "http://localhost:2379", Supported, "Member", "List of URLs to listen on for client traffic."),
    flag!("max-snapshots", Uint(64), "5", Warn("raft snapshots land with clustering"), "Member", "Maximum number of snapshot files to retain (0 is unlimited)."),
    flag!("max-wals", Uint(64), "5", Warn("the write-ahead log is not kept in files"), "Member", "Maximum number of wal files to retain (0 is unlimited)."),
    flag!("quota-backend-bytes", Int(64), "0", Warn("the backend quota is not enforced yet"), "Member", "Raise alarms when backend size exceeds the given quota (0 defaults to low space quota)."),
    flag!("backend-batch-interval", Dur, "0s", Warn("the backend commits every write"), "Member", "BackendBatchInterval is the maximum time before commit the backend transaction."),
    flag!("backend-batch-limit", Int(64), "0", Warn("the backend commits every write"), "Member", "BackendBatchLimit is the maximum operations before commit the backend transaction."),
    flag!("max-txn-ops", Uint(64), "128", Supported, "Member", "Maximum number of operations permitted in a transaction."),
    flag!("max-request-bytes", Uint(64), "1572864", Supported, "Member", "Maximum client request size in bytes the server will accept."),
    flag!("max-concurrent-streams", Uint(32), "4294967295", Supported, "Member", "Maximum concurrent streams that each client can open at a time."),
    flag!("grpc-keepalive-min-time", Dur, "5s", Warn("gRPC keepalive tuning lands later"), "Member", "Minimum duration interval that a client should wait before pinging server."),
    flag!("grpc-keepalive-interval", Dur, "2h", Warn("gRPC keepalive tuning lands later"), "Member", "Frequency duration of server-to-client ping to check if a connection is alive (0 to disable)."),
    flag!("grpc-keepalive-timeout", Dur, "20s", Warn("gRPC keepalive tuning lands later"), "Member", "Additional duration of wait before closing a non-responsive connection (0 to disable)."),
    flag!("initial-advertise-peer-urls", Urls, "http://localhost:2380", Supported, "Clustering", "List of this member's peer URLs to advertise to the rest of the cluster."),
    flag!("initial-cluster", Str, "default=http://localhost:2380", Supported, "Clustering", "Initial cluster configuration for bootstrapping."),
    flag!("initial-cluster-state", Str, "new", Supported, "Clustering", "Initial cluster state ('new' or 'existing')."),
    flag!("initial-cluster-token", Str, "etcd-cluster", Supported, "Clustering", "Initial cluster token for the etcd cluster during bootstrap."),
    flag!("advertise-client-urls", Urls, "http://localhost:2379", Supported, "Clustering", "List of this member's client URLs to advertise to the public."),
    flag!("discovery", Str, "", Reject(NO_DISCOVERY), "Clustering", "Discovery URL used to bootstrap the cluster."),
    flag!("discovery-fallback", Str, "proxy", Reject(NO_DISCOVERY), "Clustering", "Expected behavior ('exit' or 'proxy') when discovery services fails."),
    flag!("discovery-proxy", Str, "", Reject(NO_DISCOVERY), "Clustering", "HTTP proxy to use for traffic to discovery service."),
    flag!("discovery-srv", Str, "", Reject(NO_DISCOVERY), "Clustering", "DNS srv domain used to bootstrap the cluster."),
    flag!("discovery-srv-name", Str, "", Reject(NO_DISCOVERY), "Clustering", "Suffix to the dns srv name queried when bootstrapping."),
    flag!("strict-reconfig-check", Bool, "true", Supported, "Clustering", "Reject reconfiguration requests that would cause quorum loss."),
    flag!("pre-vote", Bool, "false", Warn(RAFT_LATER), "Clustering", "Enable to run an additional Raft election phase."),
    flag!("auto-compaction-retention", Str, "0", Warn("auto compaction lands later"), "Clustering", "Auto compaction retention length. 0 means disable auto compaction."),
    flag!("auto-compaction-mode", Str, "periodic", Warn("auto compaction lands later"), "Clustering", "Interpret 'auto-compaction-retention' one of: periodic|revision."),
    flag!("enable-v2", Bool, "false", Reject(NO_V2), "Clustering", "Accept etcd V2 client requests."),
    flag!("cert-file", Str, "", Supported, "Security", "Path to the client server TLS cert file."),
    flag!("key-file", Str, "", Supported, "Security", "Path to the client server TLS key file."),
    flag!("client-cert-auth", Bool, "false", Supported, "Security", "Enable client cert authentication."),
    flag!("client-crl-file", Str, "", Supported, "Security", "Path to the client certificate revocation list file."),
    flag!("client-cert-allowed-hostname", Str, "", Supported, "Security", "Allowed TLS hostname for client cert authentication."),
    flag!("trusted-ca-file", Str, "", Supported, "Security", "Path to the client server TLS trusted CA cert file."),
    flag!("auto-tls", Bool, "false", Supported, "Security", "Client TLS using generated certificates."),
    flag!("peer-cert-file", Str, "", Supported, "Security", "Path to the peer server TLS cert file."),
    flag!("peer-key-file", Str, "", Supported, "Security", "Path to the peer server TLS key file."),
    flag!("peer-client-cert-auth", Bool, "false", Supported, "Security", "Enable peer client cert authentication."),
    flag!("peer-trusted-ca-file", Str, "", Supported, "Security", "Path to the peer server TLS trusted CA file."),
    flag!("peer-cert-allowed-cn", Str, "", Supported, "Security", "Required CN for client certs connecting to the peer endpoint."),
    flag!("peer-cert-allowed-hostname", Str, "", Supported, "Security", "Allowed TLS hostname for inter peer authentication."),
    flag!("peer-auto-tls", Bool, "false", Supported, "Security", "Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are not provided."),
    flag!("peer-crl-file", Str, "", Supported, "Security", "Path to the peer certificate revocation list file."),
    flag!("cipher-suites", Str, "", Warn("oxetcd uses rustls' safe default cipher suites"), "Security", "Comma-separated list of supported TLS cipher suites between client/server and peers."),
    flag!("cors", Str, "*", Warn(NO_GATEWAY), "Security", "Comma-separated whitelist of origins for CORS (empty or * means allow all)."),
    flag!("host-whitelist", Str, "*", Warn(NO_GATEWAY), "Security", "Acceptable hostnames from HTTP client requests, if server is not secure (empty or * means allow all)."),
    flag!("auth-token", Str, "simple", Warn(NO_AUTH_TUNING), "Auth", "Specify a v3 authentication token type and its options ('simple' or 'jwt')."),
    flag!("bcrypt-cost", Uint(64), "10", Warn(NO_AUTH_TUNING), "Auth", "Specify the cost / strength of the bcrypt algorithm for hashing auth passwords."),
    flag!("auth-token-ttl", Uint(64), "300", Warn(NO_AUTH_TUNING), "Auth", "Time (in seconds) of the auth-token-ttl."),
    flag!("enable-pprof", Bool, "false", Warn("there is no Go runtime to profile"), "Profiling and Monitoring", "Enable runtime profiling data via HTTP server."),
    flag!("metrics", Str, "basic", Warn(NO_METRICS), "Profiling and Monitoring", "Set level of detail for exported metrics, specify 'extensive' to include histogram metrics."),
    flag!("listen-metrics-urls", Urls, "", Warn(NO_METRICS), "Profiling and Monitoring", "List of URLs to listen on for the metrics and health endpoints."),
    flag!("logger", Str, "capnslog", Warn(NO_LOG_TUNING), "Logging", "Specify 'zap' for structured logging or 'capnslog'."),
    flag!("log-output", Str, "default", Warn(NO_LOG_TUNING), "Logging", "[TO BE DEPRECATED IN v3.5] use '--log-outputs'."),
    flag!("log-outputs", Str, "default", Warn(NO_LOG_TUNING), "Logging", "Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, or list of comma separated output targets."),
    flag!("log-level", Str, "info", Supported, "Logging", "Configures log level. Only supports debug, info, warn, error, panic, or fatal."),
    flag!("debug", Bool, "false", Supported, "Logging", "Enable debug-level logging for etcd. Use '--log-level=debug' instead."),
    flag!("log-package-levels", Str, "", Warn(NO_LOG_TUNING), "Logging", "Specify a particular log level for each etcd package (eg: 'etcdmain=CRITICAL,etcdserver=DEBUG')."),
    flag!("proxy", Str, "off", Reject(NO_PROXY), "v2 Proxy", "Proxy mode setting ('off', 'readonly' or 'on')."),
    flag!("proxy-failure-wait", Uint(64), "5000", Reject(NO_PROXY), "v2 Proxy", "Time (in milliseconds) an endpoint will be held in a failed state."),
    flag!("proxy-refresh-interval", Uint(64), "30000", Reject(NO_PROXY), "v2 Proxy", "Time (in milliseconds) of the endpoints refresh interval."),
    flag!("proxy-dial-timeout", Uint(64), "1000", Reject(NO_PROXY), "v2 Proxy", "Time (in milliseconds) for a dial to timeout."),
    flag!("proxy-write-timeout", Uint(64), "5000", Reject(NO_PROXY), "v2 Proxy", "Time (in milliseconds) for a write to timeout."),
    flag!("proxy-read-timeout", Uint(64), "0", Reject(NO_PROXY), "v2 Proxy", "Time (in milliseconds) for a read to timeout."),
    flag!("enable-grpc-gateway", Bool, "true", Warn(NO_GATEWAY), "Experimental feature", "Enable GRPC gateway."),
    flag!("experimental-initial-corrupt-check", Bool, "false", Warn("corruption checks land later"), "Experimental feature", "Enable to check data corruption before serving any client/peer traffic."),
    flag!("experimental-corrupt-check-time", Dur, "0s", Warn("corruption checks land later"), "Experimental feature", "Duration of time between cluster corruption check passes."),
    flag!("experimental-enable-v2v3", Str, "", Reject(NO_V2), "Experimental feature", "Serve v2 requests through the v3 backend under a given prefix."),
    flag!("experimental-backend-bbolt-freelist-type", Str, "array", Warn("oxetcd does not use bbolt"), "Experimental feature", "ExperimentalBackendFreelistType specifies the type of freelist that boltdb backend uses (array and map are supported types)."),
    flag!("experimental-enable-lease-checkpoint", Bool, "false", Supported, "Experimental feature", "Enable leader to send regular checkpoints to other members to prevent reset of remaining TTL on leader change."),
    flag!("experimental-enable-lease-checkpoint-persist", Bool, "false", Supported, "Experimental feature", "Enable persisting remainingTTL to prevent indefinite auto-renewal of long lived leases."),
    flag!("experimental-compaction-batch-limit", Int(64), "1000", Warn("compaction tuning lands later"), "Experimental feature", "Sets the maximum revisions deleted in each compaction batch."),
    flag!("experimental-peer-skip-client-san-verification", Bool, "false", Warn("peer connections land with clustering"), "Experimental feature", "Skip verification of SAN field in client certificate for peer connections."),
    flag!("experimental-watch-progress-notify-interval", Dur, "10m", Supported, "Experimental feature", "Duration of periodical watch progress notification."),
    flag!("experimental-warning-apply-duration", Dur, "100ms", Warn("slow-apply warnings land later"), "Experimental feature", "Warning is generated if requests take more than this duration."),
    flag!("unsafe-no-fsync", Bool, "false", Warn("durability settings land later"), "Unsafe feature", "Disables fsync, unsafe, will cause data loss."),
    flag!("force-new-cluster", Bool, "false", Warn("membership changes land with clustering"), "Unsafe feature", "Force to create a new one-member cluster."),
    flag!("version", Bool, "false", Supported, "", "Print the version and exit."),
    // etcd 0.4 leftovers that etcd 3.4 accepts and ignores.
    flag!("cluster-active-size", Legacy, "", Warn(""), "", ""),
    flag!("cluster-remove-delay", Legacy, "", Warn(""), "", ""),
    flag!("cluster-sync-interval", Legacy, "", Warn(""), "", ""),
    flag!("config", Legacy, "", Warn(""), "", ""),
    flag!("force", Legacy, "", Warn(""), "", ""),
    flag!("max-result-buffer", Legacy, "", Warn(""), "", ""),
    flag!("max-retry-attempts", Legacy, "", Warn(""), "", ""),
    flag!("peer-heartbeat-interval", Legacy, "", Warn(""), "", ""),
    flag!("peer-election-timeout", Legacy, "", Warn(""), "", ""),
    flag!("retry-interval", Legacy, "", Warn(""), "", ""),
    flag!("snapshot", Legacy, "", Warn(""), "", ""),
    flag!("v", Legacy, "", Warn(""), "", ""),
    flag!("vv", Legacy, "", Warn(""), "", ""),
];

fn flag_spec(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.name == name)
}

fn env_name(flag: &str) -> String {
    format!("ETCD_{}", flag.to_uppercase().replace('-', "_"))
}

/// Flags that take no value unless written `--flag=value`.
fn is_bool_like(kind: Kind) -> bool {
    matches!(kind, Kind::Bool | Kind::Legacy)
}

fn command() -> Command {
    let mut cmd = Command::new("oxetcd")
        .about("An etcd v3 API compatible key-value store; takes etcd 3.4's flags.")
        .override_usage("oxetcd [flags]\n       oxetcd --version\n       oxetcd -h | --help")
        .after_help(
            "Every flag may also be set through the environment as ETCD_<FLAG> \
             (upper case, '-' as '_', e.g. ETCD_DATA_DIR); a flag on the command line wins.\n\
             Flags take Go's syntax: -flag value, --flag=value, and booleans as --flag or --flag=false.",
        )
        .color(ColorChoice::Never)
        .disable_version_flag(true)
        .args_override_self(true)
        .max_term_width(100);
    for f in FLAGS {
        let mut arg = Arg::new(f.name)
            .long(f.name)
            .action(ArgAction::Set)
            .value_name(match f.kind {
                Kind::Bool | Kind::Legacy => "BOOL",
                Kind::Uint(_) | Kind::Int(_) => "N",
                Kind::Duration => "DURATION",
                Kind::Urls => "URLS",
                Kind::Str => "VALUE",
            });
        if is_bool_like(f.kind) {
            arg = arg
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true");
        }
        if f.help.is_empty() {
            arg = arg.hide(true);
        } else {
            let mut help = f.help.to_string();
            if !f.default.is_empty() && f.name != "version" {
                help.push_str(&format!(" [default: {}]", f.default));
            }
            arg = arg.help(help);
        }
        if !f.heading.is_empty() {
            arg = arg.help_heading(f.heading);
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

/// Rewrites Go flag syntax into `--name=value` tokens for clap: `-name`,
/// `--name`, `-name=value`, and a non-boolean flag's value as the next
/// argument even when it starts with a dash (as Go's flag package does).
fn go_style_args(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    if let Some(prog) = it.next() {
        out.push(prog);
    }
    while let Some(arg) = it.next() {
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            // Go stops at "--"; whatever follows is not a flag.
            out.push(arg);
            out.extend(it);
            break;
        }
        let body = match s.strip_prefix("--").or_else(|| s.strip_prefix('-')) {
            Some(b) if !b.is_empty() && !b.starts_with('-') && !b.starts_with('=') => b,
            _ => {
                out.push(arg);
                continue;
            }
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        if name == "h" || name == "help" {
            out.push("--help".into());
            continue;
        }
        match (value, flag_spec(name)) {
            (Some(v), _) => out.push(format!("--{name}={v}").into()),
            (None, Some(f)) if !is_bool_like(f.kind) => match it.next() {
                Some(next) => {
                    let mut tok = OsString::from(format!("--{name}="));
                    tok.push(next);
                    out.push(tok);
                }
                // Let clap report the missing value.
                None => out.push(format!("--{name}").into()),
            },
            (None, _) => out.push(format!("--{name}").into()),
        }
    }
    out
}

fn clap_error(e: &clap::Error) -> ConfigError {
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    match (e.kind(), arg) {
        (ErrorKind::UnknownArgument, Some(a)) if a.starts_with('-') => {
            let name = a.split('=').next().unwrap_or(&a);
            ConfigError::UnknownFlag(name.to_string())
        }
        (ErrorKind::UnknownArgument, Some(a)) => ConfigError::NotAFlag(a),
        _ => ConfigError::Usage(first_line(e)),
    }
}

fn first_line(e: &clap::Error) -> String {
    let s = e.to_string();
    let line = s.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

// ---------------------------------------------------------------------------
// Values as given, from the command line or the environment.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Flag,
    Env(String),
}

#[derive(Debug, Clone)]
struct Raw {
    value: String,
    origin: Origin,
}

impl Raw {
    /// How etcd names the source in messages: "--name" or "ETCD_NAME".
    fn label(&self, flag: &str) -> String {
        match &self.origin {
            Origin::Flag => format!("--{flag}"),
            Origin::Env(k) => k.clone(),
        }
    }

    fn invalid(&self, flag: &str, reason: impl Into<String>) -> ConfigError {
        let origin = match &self.origin {
            Origin::Flag => format!("flag --{flag}"),
            Origin::Env(k) => k.clone(),
        };
        ConfigError::InvalidValue {
            origin,
            value: self.value.clone(),
            reason: reason.into(),
        }
    }
}

struct Values {
    raw: HashMap<&'static str, Raw>,
    warnings: Vec<String>,
}

impl Values {
    /// Command-line values, then (like etcd) the environment for flags the
    /// command line left unset; empty environment values count as unset.
    fn collect(
        matches: &ArgMatches,
        env_names: &[String],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Values {
        let mut raw = HashMap::new();
        let mut warnings = Vec::new();
        for f in FLAGS {
            let key = env_name(f.name);
            // etcd checks --version before it reads the environment.
            let from_env = if f.name == "version" {
                None
            } else {
                env(&key).filter(|v| !v.is_empty())
            };
            let from_flag = (matches.value_source(f.name) == Some(ValueSource::CommandLine))
                .then(|| matches.try_get_one::<String>(f.name).ok().flatten())
                .flatten();
            if let Some(v) = from_flag {
                if from_env.is_some() {
                    warnings.push(format!(
                        "environment variable {key} is shadowed by the command-line flag --{}",
                        f.name
                    ));
                }
                let origin = Origin::Flag;
                raw.insert(
                    f.name,
                    Raw {
                        value: v.clone(),
                        origin,
                    },
                );
            } else if let Some(v) = from_env {
                let origin = Origin::Env(key);
                raw.insert(f.name, Raw { value: v, origin });
            }
        }
        let known: HashSet<String> = FLAGS.iter().map(|f| env_name(f.name)).collect();
        for k in env_names {
            if k.starts_with("ETCD_") && !known.contains(k) {
                warnings.push(format!("unrecognized environment variable {k}"));
            }
        }
        Values { raw, warnings }
    }

    fn get(&self, flag: &str) -> Option<&Raw> {
        self.raw.get(flag)
    }

    fn is_set(&self, flag: &str) -> bool {
        self.raw.contains_key(flag)
    }

    fn default_of(flag: &str) -> &'static str {
        flag_spec(flag).map_or("", |f| f.default)
    }

    fn string(&self, flag: &str) -> String {
        self.get(flag)
            .map_or_else(|| Self::default_of(flag).to_string(), |r| r.value.clone())
    }

    /// None when unset or empty (all such flags default to empty).
    fn opt_string(&self, flag: &str) -> Option<String> {
        Some(self.string(flag)).filter(|s| !s.is_empty())
    }

    fn opt_path(&self, flag: &str) -> Option<PathBuf> {
        self.opt_string(flag).map(PathBuf::from)
    }

    fn typed<T>(
        &self,
        flag: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.get(flag) {
            Some(r) => parse(&r.value).map_err(|reason| r.invalid(flag, reason)),
            // Defaults in the table are valid by construction (tested).
            None => parse(Self::default_of(flag)).map_err(|reason| ConfigError::InvalidValue {
                origin: format!("default of --{flag}"),
                value: Self::default_of(flag).to_string(),
                reason,
            }),
        }
    }

    fn bool(&self, flag: &str) -> Result<bool, ConfigError> {
        self.typed(flag, parse_go_bool)
    }

    fn uint(&self, flag: &str, bits: u32) -> Result<u64, ConfigError> {
        self.typed(flag, |s| parse_go_uint(s, bits))
    }

    fn usize(&self, flag: &str) -> Result<usize, ConfigError> {
        let n = self.uint(flag, 64)?;
        usize::try_from(n).map_err(|_| match self.get(flag) {
            Some(r) => r.invalid(flag, "value out of range"),
            None => ConfigError::Invalid(format!("default of --{flag} out of range")),
        })
    }

    fn int(&self, flag: &str, bits: u32) -> Result<i64, ConfigError> {
        self.typed(flag, |s| parse_go_int(s, bits))
    }

    /// Nanoseconds.
    fn duration(&self, flag: &str) -> Result<i128, ConfigError> {
        self.typed(flag, parse_go_duration)
    }

    /// Whether a set value differs from the default, comparing typed values
    /// (so "--snapshot-count=100000" or "--grpc-keepalive-min-time=5000ms"
    /// count as default). Also rejects values of the wrong type.
    fn differs_from_default(&self, f: &Flag) -> Result<bool, ConfigError> {
        let Some(r) = self.get(f.name) else {
            return Ok(false);
        };
        let differs = match f.kind {
            Kind::Str => r.value != f.default,
            Kind::Legacy => true,
            Kind::Bool => self.bool(f.name)? != parse_go_bool(f.default).unwrap_or_default(),
            Kind::Uint(bits) => {
                self.uint(f.name, bits)? != parse_go_uint(f.default, bits).unwrap_or_default()
            }
            Kind::Int(bits) => {
                self.int(f.name, bits)? != parse_go_int(f.default, bits).unwrap_or_default()
            }
            Kind::Duration => {
                self.duration(f.name)? != parse_go_duration(f.default).unwrap_or_default()
            }
            Kind::Urls => !r.value.trim().is_empty() && r.value != f.default,
        };
        Ok(differs)
    }

    /// Refuses the flags oxetcd cannot honour and notes the ones it ignores.
    fn apply_policies(&mut self) -> Result<(), ConfigError> {
        let mut notes = Vec::new();
        for f in FLAGS {
            if !self.differs_from_default(f)? {
                continue;
            }
            let Some(r) = self.get(f.name) else {
                continue;
            };
            match f.policy {
                Policy::Supported => {}
                Policy::Reject(reason) => {
                    return Err(ConfigError::Unsupported {
                        flag: r.label(f.name),
                        reason: reason.to_string(),
                    });
                }
                // etcd's own words for its ignored flags.
                Policy::Warn(_) if f.kind == Kind::Legacy => notes.push(format!(
                    "flag \"{}\" is no longer supported - ignoring",
                    r.label(f.name)
                )),
                Policy::Warn(reason) => notes.push(format!(
                    "{}={} is accepted but has no effect yet: {reason}",
                    r.label(f.name),
                    r.value
                )),
            }
        }
        self.warnings.extend(notes);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Building and validating the Config, in etcd's order.

const LOG_LEVELS: &[&str] = &["debug", "info", "warn", "error", "dpanic", "panic", "fatal"];
/// etcd's upper bound on --election-timeout.
const MAX_ELECTION_MS: u64 = 50_000;

fn build(v: &mut Values) -> Result<Config, ConfigError> {
    v.apply_policies()?;

    let name = v.string("name");
    let data_dir = v
        .opt_string("data-dir")
        .map_or_else(|| PathBuf::from(format!("{name}.etcd")), PathBuf::from);
    let max_request_bytes = v.usize("max-request-bytes")?;
    let max_txn_ops = v.usize("max-txn-ops")?;
    let quota_backend_bytes = v.int("quota-backend-bytes", 64)?;
    let heartbeat_interval = std::time::Duration::from_millis(v.uint("heartbeat-interval", 64)?);
    let election_timeout = std::time::Duration::from_millis(v.uint("election-timeout", 64)?);
    let snapshot_count = v.uint("snapshot-count", 64)?;
    let watch_progress_notify_interval =
        positive_duration(v, "experimental-watch-progress-notify-interval")?;

    let listen_peer_urls = listen_urls(v, "listen-peer-urls")?;
    let listen_client_urls = listen_urls(v, "listen-client-urls")?;
    // Only validated: metrics are not served yet.
    listen_urls(v, "listen-metrics-urls")?;
    let initial_advertise_peer_urls = advertise_urls(v, "initial-advertise-peer-urls")?;
    // etcd drops the default advertise URL once listen URLs are explicit.
    if v.is_set("listen-client-urls") && !v.is_set("advertise-client-urls") {
        return Err(ConfigError::Invalid(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
                .into(),
        ));
    }
    let advertise_client_urls = advertise_urls(v, "advertise-client-urls")?;

    let initial_cluster_state = match v.string("initial-cluster-state").as_str() {
        "new" => ClusterState::New,
        "existing" => ClusterState::Existing,
        _ => {
            return Err(invalid_choice(
                v,
                "initial-cluster-state",
                &["new", "existing"],
            ));
        }
    };
    check_ticks(v)?;
    check_auto_compaction(v)?;
    let logger = v.string("logger");
    if logger != "capnslog" && logger != "zap" {
        return Err(ConfigError::Invalid(format!(
            "unknown logger option {logger:?}"
        )));
    }
    let log_level = if v.bool("debug")? {
        "debug".to_string()
    } else {
        let level = v.string("log-level");
        if !LOG_LEVELS.contains(&level.as_str()) {
            return Err(invalid_choice(v, "log-level", LOG_LEVELS));
        }
        level
    };

    let initial_cluster = initial_cluster(v, &name, &initial_advertise_peer_urls)?;
    check_bootstrap(
        &name,
        initial_cluster_state,
        &initial_advertise_peer_urls,
        &initial_cluster,
    )?;

    let mut warnings = std::mem::take(&mut v.warnings);
    let client_tls = client_tls(v, &mut warnings)?;
    let peer_tls = peer_tls(v, &mut warnings)?;
    Ok(Config {
        name,
        data_dir,
        listen_client_urls,
        advertise_client_urls,
        listen_peer_urls,
        initial_advertise_peer_urls,
        initial_cluster,
        initial_cluster_token: v.string("initial-cluster-token"),
        initial_cluster_state,
        max_request_bytes,
        max_txn_ops,
        // Uint(32) flags parse within u32.
        max_concurrent_streams: u32::try_from(v.uint("max-concurrent-streams", 32)?)
            .unwrap_or(u32::MAX),
        quota_backend_bytes,
        watch_progress_notify_interval,
        heartbeat_interval,
        election_timeout,
        snapshot_count,
        strict_reconfig_check: v.bool("strict-reconfig-check")?,
        lease_checkpoint: v.bool("experimental-enable-lease-checkpoint")?,
        client_tls,
        peer_tls,
        log_level,
        warnings,
    })
}

/// A duration flag that must be above zero (a zero interval would spin).
fn positive_duration(v: &Values, flag: &str) -> Result<std::time::Duration, ConfigError> {
    let nanos = v.duration(flag)?;
    if nanos <= 0 {
        return Err(ConfigError::InvalidValue {
            origin: format!("flag --{flag}"),
            value: format!("{nanos}ns"),
            reason: "must be greater than zero".to_string(),
        });
    }
    Ok(std::time::Duration::from_nanos(
        u64::try_from(nanos).unwrap_or(u64::MAX),
    ))
}

fn invalid_choice(v: &Values, flag: &str, valid: &[&str]) -> ConfigError {
    let list = valid
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let reason = format!("valid values are {list}");
    match v.get(flag) {
        Some(r) => r.invalid(flag, reason),
        None => ConfigError::Invalid(format!("default of --{flag}: {reason}")),
    }
}

/// etcd's checks of the raft timing flags.
fn check_ticks(v: &Values) -> Result<(), ConfigError> {
    let tick = v.uint("heartbeat-interval", 64)?;
    let election = v.uint("election-timeout", 64)?;
    if tick == 0 {
        return Err(ConfigError::Invalid(format!(
            "--heartbeat-interval must be >0 (set to {tick}ms)"
        )));
    }
    if election == 0 {
        return Err(ConfigError::Invalid(format!(
            "--election-timeout must be >0 (set to {election}ms)"
        )));
    }
    if tick.saturating_mul(5) > election {
        return Err(ConfigError::Invalid(format!(
            "--election-timeout[{election}ms] should be at least as 5 times as --heartbeat-interval[{tick}ms]"
        )));
    }
    if election > MAX_ELECTION_MS {
        return Err(ConfigError::Invalid(format!(
            "--election-timeout[{election}ms] is too long, and should be set less than {MAX_ELECTION_MS}ms"
        )));
    }
    Ok(())
}

fn check_auto_compaction(v: &Values) -> Result<(), ConfigError> {
    let mode = v.string("auto-compaction-mode");
    if mode != "periodic" && mode != "revision" {
        return Err(ConfigError::Invalid(format!(
            "unknown auto-compaction-mode {mode:?}"
        )));
    }
    let Some(r) = v.get("auto-compaction-retention") else {
        return Ok(());
    };
    // etcd: a bare number is hours (periodic) or revisions; periodic also
    // takes a duration.
    let ok = parse_go_int(&r.value, 64).is_ok()
        || (mode == "periodic" && parse_go_duration(&r.value).is_ok());
    if ok {
        Ok(())
    } else {
        Err(r.invalid("auto-compaction-retention", "parse error"))
    }
}

fn initial_cluster(
    v: &Values,
    name: &str,
    advertise_peer_urls: &[String],
) -> Result<Vec<(String, String)>, ConfigError> {
    let raw = v.string("initial-cluster");
    // Like etcd: the default value stands for "this member alone".
    if raw == Values::default_of("initial-cluster") {
        return Ok(advertise_peer_urls
            .iter()
            .map(|u| (name.to_string(), u.clone()))
            .collect());
    }
    let label = v.get("initial-cluster").map_or_else(
        || "--initial-cluster".to_string(),
        |r| r.label("initial-cluster"),
    );
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    // etcd's format: name=url pairs, commas between; a name may repeat.
    for item in raw.split(',').filter(|s| !s.is_empty()) {
        let (member, url) = item.split_once('=').unwrap_or((item, ""));
        let url = parse_url(url, &label)?.normalized;
        if !seen.insert(url.clone()) {
            return Err(ConfigError::Invalid(format!(
                "initial cluster {raw} has duplicate url"
            )));
        }
        out.push((member.to_string(), url));
    }
    Ok(out)
}

/// etcd's checks before bootstrapping a member: it must be in the initial
/// cluster, and when the cluster is new, with its advertised peer URLs.
fn check_bootstrap(
    name: &str,
    state: ClusterState,
    advertise_peer_urls: &[String],
    cluster: &[(String, String)],
) -> Result<(), ConfigError> {
    let mut in_cluster: Vec<&str> = cluster
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, u)| u.as_str())
        .collect();
    if in_cluster.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "couldn't find local name {name:?} in the initial cluster configuration"
        )));
    }
    if state == ClusterState::Existing {
        return Ok(());
    }
    let mut advertised: Vec<&str> = advertise_peer_urls.iter().map(String::as_str).collect();
    in_cluster.sort_unstable();
    in_cluster.dedup();
    advertised.sort_unstable();
    advertised.dedup();
    if in_cluster == advertised {
        return Ok(());
    }
    // etcd resolves host names before comparing (localhost == 127.0.0.1).
    if let (Some(a), Some(b)) = (resolve_all(&in_cluster), resolve_all(&advertised)) {
        if a == b {
            return Ok(());
        }
    }
    let missing: Vec<String> = in_cluster
        .iter()
        .filter(|u| !advertised.contains(u))
        .map(|u| format!("{name}={u}"))
        .collect();
    if !missing.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "--initial-cluster has {} but missing from --initial-advertise-peer-urls={}",
            missing.join(","),
            advertised.join(",")
        )));
    }
    let this_member = advertised
        .iter()
        .map(|u| format!("{name}={u}"))
        .collect::<Vec<_>>()
        .join(",");
    let extra: Vec<&str> = advertised
        .iter()
        .copied()
        .filter(|u| !in_cluster.contains(u))
        .collect();
    if !extra.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "--initial-advertise-peer-urls has {} but missing from --initial-cluster={this_member}",
            extra.join(",")
        )));
    }
    Err(ConfigError::Invalid(format!(
        "failed to resolve {} to match --initial-cluster={this_member}",
        advertised.join(",")
    )))
}

/// "scheme://ip:port" for each URL, sorted; None if a host does not resolve.
fn resolve_all(urls: &[&str]) -> Option<Vec<String>> {
    let mut out = Vec::with_capacity(urls.len());
    for u in urls {
        let parts = parse_url(u, "").ok()?;
        if parts.scheme.is_unix() {
            out.push(parts.normalized);
            continue;
        }
        let port: u16 = parts.port.parse().ok()?;
        let host = if parts.host == "localhost" {
            "127.0.0.1"
        } else {
            parts.host.as_str()
        };
        let addrs: Vec<_> = (host, port).to_socket_addrs().ok()?.collect();
        let addr = addrs.iter().find(|a| a.is_ipv4()).or(addrs.first())?;
        out.push(format!("{}://{addr}", parts.scheme.as_str()));
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

fn client_tls(v: &Values, warnings: &mut Vec<String>) -> Result<TlsSettings, ConfigError> {
    let mut tls = TlsSettings {
        cert_file: v.opt_path("cert-file"),
        key_file: v.opt_path("key-file"),
        trusted_ca_file: v.opt_path("trusted-ca-file"),
        client_cert_auth: v.bool("client-cert-auth")?,
        crl_file: v.opt_path("client-crl-file"),
        auto_tls: v.bool("auto-tls")?,
        allowed_cn: None,
        allowed_hostname: v.opt_string("client-cert-allowed-hostname"),
    };
    if tls.auto_tls && (tls.cert_file.is_some() || tls.key_file.is_some()) {
        warnings.push("ignoring client auto TLS since certs given".into());
        tls.auto_tls = false;
    }
    Ok(tls)
}

fn peer_tls(v: &Values, warnings: &mut Vec<String>) -> Result<TlsSettings, ConfigError> {
    let mut tls = TlsSettings {
        cert_file: v.opt_path("peer-cert-file"),
        key_file: v.opt_path("peer-key-file"),
        trusted_ca_file: v.opt_path("peer-trusted-ca-file"),
        client_cert_auth: v.bool("peer-client-cert-auth")?,
        crl_file: v.opt_path("peer-crl-file"),
        auto_tls: v.bool("peer-auto-tls")?,
        allowed_cn: v.opt_string("peer-cert-allowed-cn"),
        allowed_hostname: v.opt_string("peer-cert-allowed-hostname"),
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

// ---------------------------------------------------------------------------
// URLs, checked as etcd's types.NewURLs and embed.Config.Validate do.

struct UrlParts {
    scheme: Scheme,
    /// "host:port" exactly as written (IPv6 in brackets).
    authority: String,
    /// Without brackets.
    host: String,
    port: String,
    /// Scheme lower-cased + "://" + authority.
    normalized: String,
}

fn parse_url(raw: &str, label: &str) -> Result<UrlParts, ConfigError> {
    let url = raw.trim();
    let bad = |reason: &str| ConfigError::InvalidUrl {
        flag: label.to_string(),
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let Some((scheme_text, rest)) = url.split_once("://") else {
        return Err(bad("URL scheme must be http, https, unix, or unixs"));
    };
    let scheme = match scheme_text.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        "unix" => Scheme::Unix,
        "unixs" => Scheme::Unixs,
        _ => {
            return Err(ConfigError::UrlScheme {
                scheme: scheme_text.to_string(),
                flag: label.to_string(),
                url: url.to_string(),
            });
        }
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if tail.starts_with('/') {
        return Err(bad("URL must not contain a path"));
    }
    if !tail.is_empty() {
        return Err(bad("URL must not contain a query or fragment"));
    }
    if authority.contains('@') {
        return Err(bad("URL must not contain user information"));
    }
    let Some((host, port)) = split_host_port(authority) else {
        return Err(bad("URL address does not have the form \"host:port\""));
    };
    Ok(UrlParts {
        scheme,
        authority: authority.to_string(),
        host: host.to_string(),
        port: port.to_string(),
        normalized: format!("{}://{authority}", scheme.as_str()),
    })
}

/// Go's net.SplitHostPort.
fn split_host_port(hp: &str) -> Option<(&str, &str)> {
    if let Some(rest) = hp.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        if port.contains([':', '[', ']']) {
            return None;
        }
        return Some((host, port));
    }
    let (host, port) = hp.rsplit_once(':')?;
    if host.contains([':', '[', ']']) || port.contains([']', '[']) {
        return None;
    }
    Some((host, port))
}

/// (how to name the source in errors, the comma-separated items); an empty
/// value means the default, as in etcd.
fn url_list(v: &Values, flag: &str) -> (String, Vec<String>) {
    let value = v.string(flag);
    let value = if value.trim().is_empty() {
        Values::default_of(flag).to_string()
    } else {
        value
    };
    let label = v
        .get(flag)
        .map_or_else(|| format!("--{flag}"), |r| r.label(flag));
    let items = if value.is_empty() {
        Vec::new()
    } else {
        value.split(',').map(str::to_string).collect()
    };
    (label, items)
}

fn listen_urls(v: &Values, flag: &str) -> Result<Vec<ListenUrl>, ConfigError> {
    let (label, items) = url_list(v, flag);
    let mut out: Vec<ListenUrl> = Vec::new();
    for item in items {
        let p = parse_url(&item, &label)?;
        let bad = |reason: String| ConfigError::InvalidUrl {
            flag: label.clone(),
            url: item.trim().to_string(),
            reason,
        };
        let (port, path) = if p.scheme.is_unix() {
            // The socket file is named by the URL's host:port text.
            (
                p.port.parse().unwrap_or(0),
                Some(PathBuf::from(&p.authority)),
            )
        } else {
            if p.host != "localhost" && p.host.parse::<IpAddr>().is_err() {
                return Err(bad(format!(
                    "expected IP in URL for binding ({})",
                    item.trim()
                )));
            }
            let port = p
                .port
                .parse::<u16>()
                .map_err(|_| bad(format!("invalid port {:?}", p.port)))?;
            (port, None)
        };
        let url = ListenUrl {
            scheme: p.scheme,
            host: p.host,
            port,
            path,
            original: item.trim().to_string(),
        };
        if !out.iter().any(|o| o.original == url.original) {
            out.push(url);
        }
    }
    Ok(out)
}

fn advertise_urls(v: &Values, flag: &str) -> Result<Vec<String>, ConfigError> {
    let (label, items) = url_list(v, flag);
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let p = parse_url(&item, &label)?;
        let bad = |reason: String| ConfigError::InvalidUrl {
            flag: label.clone(),
            url: item.trim().to_string(),
            reason,
        };
        if p.host.is_empty() {
            return Err(bad("must be \"host:port\" (unexpected empty host)".into()));
        }
        if !p.scheme.is_unix() && p.port.parse::<u16>().is_err() {
            return Err(bad(format!("invalid port {:?}", p.port)));
        }
        if !out.contains(&p.normalized) {
            out.push(p.normalized);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Go's value syntax (strconv and time.ParseDuration), with the flag
// package's error words.

fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err("parse error".into()),
    }
}

/// strconv.ParseUint(s, 0, bits): 0x/0o/0b prefixes, a leading 0 for octal.
fn parse_go_uint(s: &str, bits: u32) -> Result<u64, String> {
    let syntax = || "parse error".to_string();
    let lower = s.get(..2).map(str::to_ascii_lowercase);
    let (digits, radix, prefix) = match lower.as_deref() {
        Some("0x") => (&s[2..], 16, true),
        Some("0o") => (&s[2..], 8, true),
        Some("0b") => (&s[2..], 2, true),
        _ if s.len() > 1 && s.starts_with('0') => (&s[1..], 8, false),
        _ => (s, 10, false),
    };
    if s.is_empty() || digits.is_empty() {
        return Err(syntax());
    }
    // Underscores only between digits, or right after a base prefix.
    let leading_zero = radix == 8 && !prefix;
    if (digits.starts_with('_') && !prefix && !leading_zero)
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return Err(syntax());
    }
    let max = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut n: u64 = 0;
    for c in digits.chars().filter(|c| *c != '_') {
        let d = c.to_digit(radix).ok_or_else(syntax)?;
        n = n
            .checked_mul(u64::from(radix))
            .and_then(|n| n.checked_add(u64::from(d)))
            .filter(|n| *n <= max)
            .ok_or_else(|| "value out of range".to_string())?;
    }
    Ok(n)
}

/// strconv.ParseInt(s, 0, bits).
fn parse_go_int(s: &str, bits: u32) -> Result<i64, String> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = parse_go_uint(body, 64)?;
    let limit = 1u64 << (bits.clamp(1, 64) - 1);
    let out_of_range = || "value out of range".to_string();
    if neg {
        if magnitude > limit {
            return Err(out_of_range());
        }
        Ok(0i64.wrapping_sub_unsigned(magnitude))
    } else {
        if magnitude >= limit {
            return Err(out_of_range());
        }
        i64::try_from(magnitude).map_err(|_| out_of_range())
    }
}

/// time.ParseDuration, in nanoseconds.
fn parse_go_duration(s: &str) -> Result<i128, String> {
    let err = || "parse error".to_string();
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_part, after) = rest.split_at(int_end);
        rest = after;
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let end = after_dot
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after_dot.len());
            (frac_part, rest) = after_dot.split_at(end);
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err());
        }
        let unit_end = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (unit, after) = rest.split_at(unit_end);
        rest = after;
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(err()),
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| err())?
        };
        total = whole
            .checked_mul(scale)
            .and_then(|w| total.checked_add(w))
            .ok_or_else(err)?;
        // Digits beyond nanosecond precision do not matter.
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        if !frac_digits.is_empty() {
            let frac: u128 = frac_digits.parse().map_err(|_| err())?;
            total += frac * scale / 10u128.pow(frac_digits.len() as u32);
        }
        if total > i64::MAX as u128 {
            return Err("value out of range".into());
        }
    }
    let total = total as i128;
    Ok(if neg { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_env(args: &[&str], env: &[(&str, &str)]) -> Result<Invocation, ConfigError> {
        let names: Vec<String> = env.iter().map(|(k, _)| k.to_string()).collect();
        let lookup = |k: &str| {
            env.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        };
        parse_with_env(
            std::iter::once("oxetcd").chain(args.iter().copied()),
            &names,
            &lookup,
        )
    }

    fn run(args: &[&str]) -> Result<Invocation, ConfigError> {
        run_env(args, &[])
    }

    fn cfg(args: &[&str]) -> Config {
        cfg_env(args, &[])
    }

    fn cfg_env(args: &[&str], env: &[(&str, &str)]) -> Config {
        match run_env(args, env) {
            Ok(Invocation::Run(c)) => c,
            other => panic!("expected a config for {args:?}, got {other:?}"),
        }
    }

    fn err(args: &[&str]) -> String {
        match run(args) {
            Err(e) => e.to_string(),
            Ok(other) => panic!("expected an error for {args:?}, got {other:?}"),
        }
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
        assert_eq!(c.client_tls, TlsSettings::default());
        assert_eq!(c.peer_tls, TlsSettings::default());
        assert_eq!(c.log_level, "info");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
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
    fn environment_sets_flags() {
        let c = cfg_env(
            &[],
            &[
                ("ETCD_NAME", "envname"),
                ("ETCD_DATA_DIR", "/var/lib/etcd"),
                ("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:3379"),
                ("ETCD_ADVERTISE_CLIENT_URLS", "http://127.0.0.1:3379"),
                ("ETCD_CLIENT_CERT_AUTH", "true"),
                ("ETCD_MAX_TXN_OPS", "256"),
                // Empty means unset, as in etcd.
                ("ETCD_MAX_REQUEST_BYTES", ""),
            ],
        );
        assert_eq!(c.name, "envname");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/etcd"));
        assert_eq!(c.listen_client_urls[0].port, 3379);
        assert!(c.client_tls.client_cert_auth);
        assert_eq!(c.max_txn_ops, 256);
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn flag_beats_environment() {
        let c = cfg_env(&["--name", "flagname"], &[("ETCD_NAME", "envname")]);
        assert_eq!(c.name, "flagname");
        assert!(
            c.warnings.iter().any(|w| w.contains("ETCD_NAME")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn environment_errors_name_the_variable() {
        let e = run_env(&[], &[("ETCD_MAX_REQUEST_BYTES", "lots")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value \"lots\" for ETCD_MAX_REQUEST_BYTES: parse error"
        );
        let e = run_env(&[], &[("ETCD_DISCOVERY", "https://discovery.etcd.io/x")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("ETCD_DISCOVERY is not supported by oxetcd"),
            "{e}"
        );
    }

    #[test]
    fn unknown_environment_variables_are_noted() {
        let c = cfg_env(&[], &[("ETCD_NAMEE", "x")]);
        assert_eq!(
            c.warnings,
            vec!["unrecognized environment variable ETCD_NAMEE"]
        );
    }

    #[test]
    fn go_flag_syntax() {
        for args in [
            &["-name", "a"][..],
            &["-name=a"],
            &["--name", "a"],
            &["--name=a"],
        ] {
            assert_eq!(cfg(args).name, "a", "{args:?}");
        }
        // A non-boolean flag takes the next argument, dash or not, like Go.
        assert_eq!(cfg(&["--name", "-x"]).name, "-x");
        assert_eq!(
            cfg(&["-initial-cluster-token", "--tok"]).initial_cluster_token,
            "--tok"
        );
        // The last occurrence wins, as in Go.
        assert_eq!(cfg(&["--name", "a", "--name", "b"]).name, "b");
        let e = err(&["--name"]);
        assert!(e.contains("--name"), "{e}");
    }

    #[test]
    fn boolean_forms() {
        for (args, want) in [
            (&["--client-cert-auth"][..], true),
            (&["-client-cert-auth"], true),
            (&["--client-cert-auth=true"], true),
            (&["--client-cert-auth=1"], true),
            (&["--client-cert-auth=T"], true),
            (&["--client-cert-auth=false"], false),
            (&["-client-cert-auth=0"], false),
            (&[], false),
        ] {
            assert_eq!(cfg(args).client_tls.client_cert_auth, want, "{args:?}");
        }
        // Go booleans never take a separate value argument.
        assert_eq!(
            err(&["--client-cert-auth", "false"]),
            "'false' is not a valid flag"
        );
        assert_eq!(
            err(&["--client-cert-auth="]),
            "invalid value \"\" for flag --client-cert-auth: parse error"
        );
        assert_eq!(
            err(&["--client-cert-auth=yes"]),
            "invalid value \"yes\" for flag --client-cert-auth: parse error"
        );
    }

    #[test]
    fn unknown_flags_are_named() {
        assert_eq!(err(&["--foo"]), "flag provided but not defined: --foo");
        assert_eq!(
            err(&["-foo", "bar"]),
            "flag provided but not defined: --foo"
        );
        assert_eq!(err(&["--foo=bar"]), "flag provided but not defined: --foo");
        assert_eq!(err(&["stray"]), "'stray' is not a valid flag");
    }

    #[test]
    fn rejected_flags_are_named() {
        for (args, flag) in [
            (
                &["--discovery", "https://discovery.etcd.io/abc"][..],
                "--discovery",
            ),
            (&["--discovery-srv", "example.com"], "--discovery-srv"),
            (&["--discovery-srv-name=x"], "--discovery-srv-name"),
            (&["--proxy", "on"], "--proxy"),
            (
                &["--proxy-refresh-interval", "1000"],
                "--proxy-refresh-interval",
            ),
            (&["--enable-v2"], "--enable-v2"),
            (&["--enable-v2=true"], "--enable-v2"),
            (
                &["--experimental-enable-v2v3", "v2/"],
                "--experimental-enable-v2v3",
            ),
            (&["--config-file", "/etc/etcd.yml"], "--config-file"),
        ] {
            let e = err(args);
            assert!(
                e.starts_with(&format!("{flag} is not supported by oxetcd")),
                "{e}"
            );
        }
        assert_eq!(
            err(&["--discovery-srv", "x"]),
            "--discovery-srv is not supported by oxetcd: discovery bootstrap is not implemented; use --initial-cluster"
        );
        // Set to their defaults they change nothing, so they pass.
        let c = cfg(&[
            "--enable-v2=false",
            "--proxy",
            "off",
            "--discovery-fallback=proxy",
        ]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn later_features_warn_only_when_changed() {
        let c = cfg(&[
            "--snapshot-count",
            "100000",
            "--grpc-keepalive-min-time=5000ms",
            "--strict-reconfig-check=true",
            "--auto-compaction-mode",
            "periodic",
            "--metrics=basic",
        ]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = cfg(&[
            "--snapshot-count",
            "5000",
            "--heartbeat-interval",
            "250",
            "--election-timeout",
            "2500",
            "--quota-backend-bytes",
            "8589934592",
            "--auto-compaction-retention=1h",
            "--experimental-initial-corrupt-check",
            "--grpc-keepalive-interval",
            "10s",
            "--listen-metrics-urls",
            "http://127.0.0.1:2381",
            "--auth-token",
            "jwt,pub-key=a,priv-key=b,sign-method=RS256",
            "--strict-reconfig-check=false",
            "-v",
        ]);
        assert_eq!(c.quota_backend_bytes, 8_589_934_592);
        assert!(!c.strict_reconfig_check);
        let flags: Vec<&str> = c
            .warnings
            .iter()
            .map(|w| w.split('=').next().unwrap_or_default())
            .collect();
        assert_eq!(
            flags,
            [
                "--quota-backend-bytes",
                "--grpc-keepalive-interval",
                "--auto-compaction-retention",
                "--auth-token",
                "--listen-metrics-urls",
                "--experimental-initial-corrupt-check",
                "flag \"--v\" is no longer supported - ignoring",
            ]
        );
        assert_eq!(
            c.warnings[0],
            "--quota-backend-bytes=8589934592 is accepted but has no effect yet: the backend quota is not enforced yet"
        );
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
            err(&["--heartbeat-interval", "300"]),
            "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]"
        );
        assert_eq!(
            err(&["--auto-compaction-mode", "sometimes"]),
            "unknown auto-compaction-mode \"sometimes\""
        );
        assert!(err(&["--log-level", "loud"]).contains("--log-level"));
        assert_eq!(cfg(&["--max-txn-ops", "0x100"]).max_txn_ops, 256);
    }

    #[test]
    fn log_level_and_debug() {
        assert_eq!(cfg(&["--log-level", "warn"]).log_level, "warn");
        assert_eq!(cfg(&["--debug"]).log_level, "debug");
    }

    #[test]
    fn urls_are_checked_like_etcd() {
        assert_eq!(
            err(&[
                "--listen-client-urls",
                "ftp://x:1",
                "--advertise-client-urls",
                "http://x:1"
            ]),
            "unexpected URL scheme \"ftp\" in --listen-client-urls \"ftp://x:1\""
        );
        let e = err(&[
            "--listen-client-urls",
            "http://127.0.0.1:2379/v3",
            "--advertise-client-urls",
            "http://127.0.0.1:2379",
        ]);
        assert_eq!(
            e,
            "invalid URL \"http://127.0.0.1:2379/v3\" in --listen-client-urls: URL must not contain a path"
        );
        let e = err(&["--listen-peer-urls", "http://127.0.0.1"]);
        assert!(e.contains("does not have the form \"host:port\""), "{e}");
        let e = err(&["--listen-peer-urls", "http://example.com:2380"]);
        assert!(e.contains("expected IP in URL for binding"), "{e}");
        assert_eq!(
            err(&["--listen-client-urls", "http://127.0.0.1:2379"]),
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
        );

        let c = cfg(&[
            "--listen-client-urls",
            "http://[::1]:2379, https://0.0.0.0:2379,unix://localhost:1234,unixs://etcd.sock:0",
            "--advertise-client-urls",
            "http://[::1]:2379",
        ]);
        let l = &c.listen_client_urls;
        assert_eq!((l[0].host.as_str(), l[0].port), ("::1", 2379));
        assert_eq!(l[0].host_port(), "[::1]:2379");
        assert_eq!(
            (l[1].scheme, l[1].host.as_str()),
            (Scheme::Https, "0.0.0.0")
        );
        assert_eq!(l[2].scheme, Scheme::Unix);
        assert_eq!(l[2].path, Some(PathBuf::from("localhost:1234")));
        assert_eq!(l[3].scheme, Scheme::Unixs);
        assert_eq!(l[3].path, Some(PathBuf::from("etcd.sock:0")));
    }

    #[test]
    fn initial_cluster_parsing() {
        let c = cfg(&[
            "--name",
            "infra1",
            "--initial-advertise-peer-urls",
            "http://10.0.0.1:2380,http://10.0.0.11:2380",
            "--initial-cluster",
            "infra0=http://10.0.0.0:2380,infra1=http://10.0.0.1:2380,infra1=http://10.0.0.11:2380,,infra2=http://10.0.0.2:2380",
        ]);
        assert_eq!(
            c.initial_cluster,
            [
                ("infra0", "http://10.0.0.0:2380"),
                ("infra1", "http://10.0.0.1:2380"),
                ("infra1", "http://10.0.0.11:2380"),
                ("infra2", "http://10.0.0.2:2380"),
            ]
            .map(|(n, u)| (n.to_string(), u.to_string()))
        );
        assert_eq!(
            err(&[
                "--name",
                "x",
                "--initial-cluster",
                "y=http://127.0.0.1:2380"
            ]),
            "couldn't find local name \"x\" in the initial cluster configuration"
        );
        assert_eq!(
            err(&["--initial-cluster", "default=http://127.0.0.1:9999"]),
            "--initial-cluster has default=http://127.0.0.1:9999 but missing from --initial-advertise-peer-urls=http://localhost:2380"
        );
        // Joining an existing cluster only needs the name to be there.
        let c = cfg(&[
            "--initial-cluster-state",
            "existing",
            "--initial-cluster",
            "default=http://127.0.0.1:9999",
        ]);
        assert_eq!(c.initial_cluster_state, ClusterState::Existing);
        // localhost and 127.0.0.1 are the same address to etcd.
        cfg(&["--initial-cluster", "default=http://127.0.0.1:2380"]);
        assert_eq!(
            err(&["--initial-cluster", "default=http://localhost:2380,b=http://localhost:2380"]),
            "initial cluster default=http://localhost:2380,b=http://localhost:2380 has duplicate url"
        );
        let e = err(&["--initial-cluster", "default=localhost:2380"]);
        assert!(e.contains("--initial-cluster"), "{e}");
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

    #[test]
    fn table_defaults_are_valid_and_names_unique() {
        let mut seen = HashSet::new();
        for f in FLAGS {
            assert!(seen.insert(f.name), "{} twice", f.name);
            let ok = match f.kind {
                Kind::Bool => parse_go_bool(f.default).is_ok(),
                Kind::Uint(bits) => parse_go_uint(f.default, bits).is_ok(),
                Kind::Int(bits) => parse_go_int(f.default, bits).is_ok(),
                Kind::Duration => parse_go_duration(f.default).is_ok(),
                Kind::Str | Kind::Urls | Kind::Legacy => true,
            };
            assert!(ok, "default of {} does not parse", f.name);
        }
    }

    /// Every flag Debian's etcd 3.4 lists in its help is known here.
    #[test]
    fn knows_every_flag_of_installed_etcd() {
        let Ok(out) = std::process::Command::new("/usr/bin/etcd")
            .arg("--help")
            .output()
        else {
            eprintln!("skipped: /usr/bin/etcd not installed");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let mut n = 0;
        for line in text.lines() {
            let Some(rest) = line.trim_start().strip_prefix("--") else {
                continue;
            };
            let name = rest.split_whitespace().next().unwrap_or_default();
            assert!(
                flag_spec(name).is_some(),
                "etcd flag --{name} unknown to oxetcd"
            );
            n += 1;
        }
        assert!(n > 70, "only {n} flags found in etcd's help");
    }

    #[test]
    fn go_value_syntax() {
        assert_eq!(parse_go_uint("0x10", 64), Ok(16));
        assert_eq!(parse_go_uint("010", 64), Ok(8));
        assert_eq!(parse_go_uint("0", 64), Ok(0));
        assert_eq!(parse_go_uint("1_000", 64), Ok(1000));
        assert!(parse_go_uint("", 64).is_err());
        assert!(parse_go_uint("-1", 64).is_err());
        assert!(parse_go_uint("09", 64).is_err());
        assert!(parse_go_uint("0x", 64).is_err());
        assert!(parse_go_uint("0o", 64).is_err());
        assert_eq!(parse_go_uint("0o17", 64), Ok(15));
        assert_eq!(parse_go_uint("0B101", 64), Ok(5));
        assert_eq!(parse_go_uint("4294967295", 32), Ok(u64::from(u32::MAX)));
        assert!(parse_go_uint("4294967296", 32).is_err());
        assert_eq!(parse_go_int("-5", 64), Ok(-5));
        assert_eq!(parse_go_int("-9223372036854775808", 64), Ok(i64::MIN));
        assert!(parse_go_int("9223372036854775808", 64).is_err());
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("5s"), Ok(5_000_000_000));
        assert_eq!(parse_go_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("1.5ms"), Ok(1_500_000));
        assert_eq!(parse_go_duration("-2us"), Ok(-2_000));
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("s").is_err());
        assert!(parse_go_duration("").is_err());
    }
}
