//! The flag table: every flag of etcd 3.4 with its type, default, help text
//! and policy; the clap command built from it; and Go's flag forms (`--x v`,
//! `--x=v`, `-x v`, `-x=v`, booleans as `--x` or `--x=false`) rewritten into
//! the one form clap is given, with Go's error words for unknown flags.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction, ColorChoice, Command};

use super::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
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
pub(super) enum Policy {
    Supported,
    /// Accepted and ignored; when set to a non-default value, a warning
    /// "--flag=value is ignored: <this text>", which says what oxetcd does
    /// instead or why the flag does not matter here.
    Warn(&'static str),
    /// Refused when set to a non-default value.
    Reject(&'static str),
}

pub(super) struct Flag {
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    /// Typed default (as etcd's help shows it, where that is parseable).
    pub(super) default: &'static str,
    pub(super) policy: Policy,
    heading: &'static str,
    help: &'static str,
}

// Why a flag is refused.
const NO_V2: &str = "oxetcd serves only the v3 API";
const NO_DISCOVERY: &str = "discovery bootstrap is not implemented; use --initial-cluster";
const NO_PROXY: &str = "the v2 proxy is not implemented";
// Why an accepted flag is ignored, shared by several rows.
const BACKEND_BATCH: &str = "the store flushes applied writes every 100ms or 8 MiB, whichever comes first (the Raft log made them durable already)";
const NO_SERVER_PINGS: &str = "the gRPC server sends no keepalive pings";

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
pub(super) const FLAGS: &[Flag] = &[
    flag!("config-file", Str, "", Supported, "Member", "Path to the server configuration file (etcd's YAML keys). Other command line flags and environment variables are ignored when it is given."),
    flag!("name", Str, "default", Supported, "Member", "Human-readable name for this member."),
    flag!("data-dir", Str, "", Supported, "Member", "Path to the data directory. [default: ${name}.etcd]"),
    flag!("wal-dir", Str, "", Supported, "Member", "Path to the dedicated wal directory."),
    flag!("snapshot-count", Uint(64), "100000", Supported, "Member", "Number of committed transactions to trigger a snapshot to disk."),
    flag!("experimental-snapshot-catchup-entries", Uint(64), "5000", Supported, "Member", "Number of entries for a slow follower to catch up after compacting the raft storage entries."),
    flag!("heartbeat-interval", Uint(64), "100", Supported, "Member", "Time (in milliseconds) of a heartbeat interval."),
    flag!("election-timeout", Uint(64), "1000", Supported, "Member", "Time (in milliseconds) for an election to timeout."),
    flag!("initial-election-tick-advance", Bool, "true", Warn("openraft times elections itself and has no election ticks to fast-forward"), "Member", "Whether to fast-forward initial election ticks on boot for faster election."),
    flag!("listen-peer-urls", Urls, "http://localhost:2380", Supported, "Member", "List of URLs to listen on for peer traffic."),
    flag!("listen-client-urls", Urls, "http://localhost:2379", Supported, "Member", "List of URLs to listen on for client traffic."),
    flag!("max-snapshots", Uint(64), "5", Warn("oxetcd keeps only its latest Raft snapshot (oxetcd/raft/snapshot in --data-dir)"), "Member", "Maximum number of snapshot files to retain (0 is unlimited)."),
    flag!("max-wals", Uint(64), "5", Warn("the Raft log deletes the segment files a snapshot covers, less the writes kept for slow followers (see --experimental-snapshot-catchup-entries)"), "Member", "Maximum number of wal files to retain (0 is unlimited)."),
    flag!("quota-backend-bytes", Int(64), "0", Supported, "Member", "Raise alarms when backend size exceeds the given quota (0 defaults to low space quota)."),
    flag!("backend-batch-interval", Dur, "0s", Warn(BACKEND_BATCH), "Member", "BackendBatchInterval is the maximum time before commit the backend transaction."),
    flag!("backend-batch-limit", Int(64), "0", Warn(BACKEND_BATCH), "Member", "BackendBatchLimit is the maximum operations before commit the backend transaction."),
    flag!("max-txn-ops", Uint(64), "128", Supported, "Member", "Maximum number of operations permitted in a transaction."),
    flag!("max-request-bytes", Uint(64), "1572864", Supported, "Member", "Maximum client request size in bytes the server will accept."),
    flag!("max-concurrent-streams", Uint(32), "4294967295", Supported, "Member", "Maximum concurrent streams that each client can open at a time."),
    flag!("grpc-keepalive-min-time", Dur, "5s", Warn("the gRPC server answers client pings however often they come"), "Member", "Minimum duration interval that a client should wait before pinging server."),
    flag!("grpc-keepalive-interval", Dur, "2h", Warn(NO_SERVER_PINGS), "Member", "Frequency duration of server-to-client ping to check if a connection is alive (0 to disable)."),
    flag!("grpc-keepalive-timeout", Dur, "20s", Warn(NO_SERVER_PINGS), "Member", "Additional duration of wait before closing a non-responsive connection (0 to disable)."),
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
    flag!("pre-vote", Bool, "false", Warn("openraft has no pre-vote phase; a follower that hears from its leader refuses vote requests for the leader lease (2/3 of --election-timeout)"), "Clustering", "Enable to run an additional Raft election phase."),
    flag!("auto-compaction-retention", Str, "0", Supported, "Clustering", "Auto compaction retention length. 0 means disable auto compaction."),
    flag!("auto-compaction-mode", Str, "periodic", Supported, "Clustering", "Interpret 'auto-compaction-retention' one of: periodic|revision."),
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
    flag!("cipher-suites", Str, "", Supported, "Security", "Comma-separated list of supported TLS cipher suites between client/server and peers."),
    flag!("cors", Str, "*", Warn("the JSON gateway allows every origin (Access-Control-Allow-Origin: *)"), "Security", "Comma-separated whitelist of origins for CORS (empty or * means allow all)."),
    flag!("host-whitelist", Str, "*", Warn("oxetcd serves HTTP requests for any Host"), "Security", "Acceptable hostnames from HTTP client requests, if server is not secure (empty or * means allow all)."),
    flag!("auth-token", Str, "simple", Supported, "Auth", "Specify a v3 authentication token type and its options ('simple' or 'jwt')."),
    flag!("bcrypt-cost", Uint(64), "10", Supported, "Auth", "Specify the cost / strength of the bcrypt algorithm for hashing auth passwords."),
    flag!("auth-token-ttl", Uint(64), "300", Supported, "Auth", "Time (in seconds) of the auth-token-ttl."),
    flag!("enable-pprof", Bool, "false", Warn("there is no Go runtime to profile"), "Profiling and Monitoring", "Enable runtime profiling data via HTTP server."),
    flag!("metrics", Str, "basic", Supported, "Profiling and Monitoring", "Set level of detail for exported metrics, specify 'extensive' to include histogram metrics."),
    flag!("listen-metrics-urls", Urls, "", Supported, "Profiling and Monitoring", "List of URLs to listen on for the metrics and health endpoints."),
    flag!("logger", Str, "zap", Supported, "Logging", "Specify 'zap' for structured logging (JSON lines) or 'capnslog' (text lines); etcd 3.4's default is capnslog, 3.5's zap."),
    flag!("log-output", Str, "default", Supported, "Logging", "[TO BE DEPRECATED IN v3.5] use '--log-outputs'."),
    flag!("log-outputs", Str, "default", Supported, "Logging", "Comma-separated output targets: 'stderr', 'stdout' or file paths ('default' is stderr; oxetcd does not write to journald)."),
    flag!("log-level", Str, "info", Supported, "Logging", "Configures log level. Only supports debug, info, warn, error, panic, or fatal."),
    flag!("debug", Bool, "false", Supported, "Logging", "Enable debug-level logging for etcd. Use '--log-level=debug' instead."),
    flag!("log-package-levels", Str, "", Warn("set levels per module with OXETCD_LOG (tracing filter syntax, e.g. oxetcd_server=debug)"), "Logging", "Specify a particular log level for each etcd package (eg: 'etcdmain=CRITICAL,etcdserver=DEBUG')."),
    flag!("proxy", Str, "off", Reject(NO_PROXY), "v2 Proxy", "Proxy mode setting ('off', 'readonly' or 'on')."),
    flag!("proxy-failure-wait", Uint(64), "5000", Reject(NO_PROXY), "v2 Proxy", "Time (in milliseconds) an endpoint will be held in a failed state."),
    flag!("proxy-refresh-interval", Uint(64), "30000", Reject(NO_PROXY), "v2 Proxy", "Time (in milliseconds) of the endpoints refresh interval."),
    flag!("proxy-dial-timeout", Uint(64), "1000", Reject(NO_PROXY), "v2 Proxy", "Time (in milliseconds) for a dial to timeout."),
    flag!("proxy-write-timeout", Uint(64), "5000", Reject(NO_PROXY), "v2 Proxy", "Time (in milliseconds) for a write to timeout."),
    flag!("proxy-read-timeout", Uint(64), "0", Reject(NO_PROXY), "v2 Proxy", "Time (in milliseconds) for a read to timeout."),
    flag!("enable-grpc-gateway", Bool, "true", Warn("the JSON gateway is always served on the client URLs"), "Experimental feature", "Enable GRPC gateway."),
    flag!("experimental-initial-corrupt-check", Bool, "false", Supported, "Experimental feature", "Enable to check data corruption before serving any client/peer traffic."),
    flag!("experimental-corrupt-check-time", Dur, "0s", Supported, "Experimental feature", "Duration of time between cluster corruption check passes."),
    flag!("experimental-enable-v2v3", Str, "", Reject(NO_V2), "Experimental feature", "Serve v2 requests through the v3 backend under a given prefix."),
    flag!("experimental-backend-bbolt-freelist-type", Str, "array", Warn("oxetcd keeps its store in sled or redb (--experimental-backend), not bbolt"), "Experimental feature", "ExperimentalBackendFreelistType specifies the type of freelist that boltdb backend uses (array and map are supported types)."),
    flag!("experimental-backend", Str, "", Supported, "Experimental feature", "oxetcd's own: the storage engine of a new data directory, 'redb' or 'sled' [default: redb]. A data directory keeps the engine its data was written with; naming another is an error."),
    flag!("experimental-enable-lease-checkpoint", Bool, "false", Supported, "Experimental feature", "Enable leader to send regular checkpoints to other members to prevent reset of remaining TTL on leader change."),
    flag!("experimental-enable-lease-checkpoint-persist", Bool, "false", Supported, "Experimental feature", "Enable persisting remainingTTL to prevent indefinite auto-renewal of long lived leases."),
    flag!("experimental-compaction-batch-limit", Int(64), "1000", Supported, "Experimental feature", "Sets the maximum revisions deleted in each compaction batch."),
    flag!("experimental-peer-skip-client-san-verification", Bool, "false", Warn("oxetcd never checks a peer client certificate's SANs against the peer's address"), "Experimental feature", "Skip verification of SAN field in client certificate for peer connections."),
    flag!("experimental-watch-progress-notify-interval", Dur, "10m", Supported, "Experimental feature", "Duration of periodical watch progress notification."),
    flag!("experimental-warning-apply-duration", Dur, "100ms", Supported, "Experimental feature", "Warning is generated if requests take more than this duration."),
    flag!("unsafe-no-fsync", Bool, "false", Warn("oxetcd always fsyncs the Raft log before it acknowledges a write"), "Unsafe feature", "Disables fsync, unsafe, will cause data loss."),
    flag!("force-new-cluster", Bool, "false", Supported, "Unsafe feature", "Force to create a new one-member cluster."),
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

pub(super) fn flag_spec(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.name == name)
}

pub(super) fn env_name(flag: &str) -> String {
    format!("ETCD_{}", flag.to_uppercase().replace('-', "_"))
}

/// Flags that take no value unless written `--flag=value`.
fn is_bool_like(kind: Kind) -> bool {
    matches!(kind, Kind::Bool | Kind::Legacy)
}

pub(super) fn command() -> Command {
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
            // Say which flags do nothing here, before anyone relies on them.
            match f.policy {
                Policy::Supported => {}
                Policy::Warn(_) => help.push_str(" [accepted, no effect in oxetcd]"),
                Policy::Reject(_) => help.push_str(" [not supported by oxetcd]"),
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
pub(super) fn go_style_args(args: Vec<OsString>) -> Vec<OsString> {
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

pub(super) fn clap_error(e: &clap::Error) -> ConfigError {
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::config::go_values::{parse_go_bool, parse_go_duration, parse_go_int, parse_go_uint};
    use crate::config::test_support::*;

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
    fn help_marks_flags_without_effect() {
        let help = command().render_help().to_string();
        // A flag's entry: its line and the wrapped help lines under it.
        let entry = |flag: &str| {
            let starts = |l: &str| {
                l.trim_start()
                    .strip_prefix(&format!("--{flag}"))
                    .is_some_and(|rest| {
                        !rest.starts_with(|c: char| c.is_alphanumeric() || c == '-')
                    })
            };
            let mut lines = help.lines().skip_while(|l| !starts(l));
            let first = lines.next().unwrap_or_default().to_string();
            let rest: String = lines
                .take_while(|l| l.starts_with(' ') && !l.trim_start().starts_with("--"))
                .collect();
            first + &rest
        };
        assert!(
            entry("enable-pprof").contains("[accepted, no effect in oxetcd]"),
            "{}",
            entry("enable-pprof")
        );
        assert!(
            entry("proxy").contains("[not supported by oxetcd]"),
            "{}",
            entry("proxy")
        );
        let name = entry("name");
        assert!(name.contains("Human-readable name"), "{name}");
        assert!(!name.contains("oxetcd]"), "{name}");
        assert!(
            !entry("wal-dir").contains("oxetcd]"),
            "{}",
            entry("wal-dir")
        );
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
            // .ci/run installs etcd: under CI a missing one fails the test.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "/usr/bin/etcd is not installed (apt-get install etcd-server)"
            );
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
}
