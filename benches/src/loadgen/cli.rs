//! `oxetcd-bench`'s flags. The common ones (`--endpoints`, `--conns`,
//! `--clients`, `--total`/`--duration`, `--rate`, TLS, output) go before or
//! after the sub-command, as in etcd's `benchmark`:
//! `oxetcd-bench put --clients 100 --conns 10 --total 50000`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::auth::Credentials;

#[derive(Debug, Parser)]
#[command(
    name = "oxetcd-bench",
    version,
    about = "Load generator for etcd v3 API servers (oxetcd, etcd): the counterpart of etcd's `benchmark`",
    after_help = "Exit status: 0 the run finished and every request succeeded; \
                  1 the run finished (summary printed) but some requests failed; \
                  2 the run could not start or its output could not be written."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every sub-command takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// gRPC endpoints, comma separated: http://host:port, https://host:port or host:port
    /// (default: http://127.0.0.1:2379). k8s: the apiserver's URL (default: the kubeconfig's).
    #[arg(long, global = true, value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// gRPC (HTTP/2) connections, spread over the endpoints; client i uses connection i % conns.
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Concurrent clients (closed loop: each waits for its answer before its next request;
    /// open loop: at most this many requests in flight). Default 1; k8s: 100.
    #[arg(long, global = true)]
    pub clients: Option<usize>,
    /// Requests to issue in all (default: 10000; watch-latency: 1000).
    #[arg(long, global = true, conflicts_with = "duration")]
    pub total: Option<u64>,
    /// Run for this long instead of a total, e.g. 10s, 500ms, 2m.
    #[arg(long, global = true, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Open loop: issue this many requests per second on a fixed schedule and
    /// time each from its scheduled start (no coordinated omission).
    #[arg(long, global = true)]
    pub rate: Option<f64>,
    /// Send everything to the leader only (found with Maintenance.Status).
    #[arg(long, global = true, conflicts_with = "target_follower")]
    pub target_leader: bool,
    /// Send everything to the followers only: the endpoints whose member
    /// follows a leader (found with Maintenance.Status). With one
    /// connection, the first of them.
    #[arg(long, global = true)]
    pub target_follower: bool,
    /// Trusted CA certificates (PEM) for https endpoints (default: the system's).
    #[arg(long, global = true)]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM), with --key.
    #[arg(long, global = true)]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM), with --cert.
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
    /// Accept any server certificate (still encrypted, not authenticated).
    #[arg(long, global = true)]
    pub insecure_skip_tls_verify: bool,
    /// Run as this user of a server with auth enabled (etcdctl's --user): each connection
    /// authenticates before the run and sends the token with every request, authenticating
    /// again when the token is refused (expired, or auth changed).
    #[arg(long, global = true)]
    pub user: Option<Credentials>,
    /// A request without an answer after this long counts as a ClientTimeout error.
    #[arg(long, global = true, value_parser = parse_duration, default_value = "10s")]
    pub request_timeout: Duration,
    /// Longest wait for a connection (at start, and when re-dialling).
    #[arg(long, global = true, value_parser = parse_duration, default_value = "5s")]
    pub dial_timeout: Duration,
    /// Print the summary as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Write a per-second series (throughput, errors, latency percentiles) to this CSV file.
    #[arg(long, global = true)]
    pub csv: Option<PathBuf>,
    /// No progress bar (it is drawn on stderr only when stderr is a terminal).
    #[arg(long, global = true)]
    pub no_progress: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Put keys (etcd benchmark's `put`).
    Put(PutArgs),
    /// Range over keys, linearizable or serializable (etcd benchmark's `range`).
    Range(RangeArgs),
    /// Kubernetes-style optimistic updates: Txn(mod_revision == known) Then(Put) Else(Range), retried on conflict.
    TxnPut(TxnPutArgs),
    /// N watch streams on one prefix, the clients put under it: event delivery latency and rate.
    Watch(WatchArgs),
    /// One put at a time (at --rate, default 100/s) to one key; latency until every watcher has it.
    WatchLatency(WatchLatencyArgs),
    /// One watcher process of `watch --watch-processes` (started by it, not by hand):
    /// opens its watches, says `ready`, waits for `expect PUTS` on stdin, and prints its
    /// deliveries as one JSON line.
    #[command(hide = true)]
    WatchProcess(WatchProcessArgs),
    /// Authenticate calls (--user's name and password, each checked by the server as a login).
    Authenticate,
    /// Sets up auth on a fresh server for runs with --user: a root user, the --user user
    /// with read-write on --prefix (a role of its own name), then enables auth.
    AuthSetup(AuthSetupArgs),
    /// LeaseGrant per client, then keepalive round trips on a LeaseKeepAlive stream.
    LeaseKeepalive(LeaseArgs),
    /// Kubernetes-like traffic on /registry/pods/<ns>/<name>: optimistic create/update/delete,
    /// get, paged lists, one watch per client.
    Mixed(MixedArgs),
    /// This machine's fsync latency, and the ceiling it sets for one sequential durable writer.
    FsyncProbe(FsyncArgs),
    /// Kubelet- and controller-like load on a Kubernetes apiserver: nodes watching their pods
    /// by spec.nodeName, pod creates/updates/status patches/deletes at --rate, periodic lists.
    K8s(K8sArgs),
    /// Turns `benches/compare` results into the markdown table and SVG plot of docs/performance.md.
    Report(ReportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PutArgs {
    /// Key size in bytes (etcd benchmark's keys: the index as a Go varint, zero padded).
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Put every key under this prefix (the key is the prefix, then --key-size bytes):
    /// a user's permission can then name the keys.
    #[arg(long, default_value = "")]
    pub key_prefix: String,
    /// Value size in bytes.
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Distinct keys written.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
    /// Write keys 0, 1, 2, ... in turn instead of at random.
    #[arg(long)]
    pub sequential_keys: bool,
    /// With --clients 1: where to probe fsync for the ceiling (default: the temp dir).
    #[arg(long)]
    pub fsync_dir: Option<PathBuf>,
    /// With --clients 1: skip the fsync probe.
    #[arg(long)]
    pub no_fsync_probe: bool,
    /// Grant each put a lease of this many seconds first and attach the key
    /// to it (etcdctl's `lease grant` + `put --lease`): a load of leases that
    /// expire together, for a lease-expiry storm. 0: no leases.
    #[arg(long, default_value_t = 0)]
    pub lease_ttl: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// Linearizable.
    L,
    /// Serializable.
    S,
}

#[derive(Debug, Clone, Args)]
pub struct RangeArgs {
    /// l: linearizable, s: serializable.
    #[arg(long, value_enum, default_value_t = Consistency::L)]
    pub consistency: Consistency,
    /// Prefix of the keys preloaded and ranged over.
    #[arg(long, default_value = "/bench/range/")]
    pub prefix: String,
    /// Keys preloaded under the prefix (before the run; not measured).
    #[arg(long, default_value_t = 1000)]
    pub key_space_size: u64,
    /// Value size of the preloaded keys.
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Keys per request: consecutive keys from a random one.
    #[arg(long, default_value_t = 1)]
    pub keys_per_range: u64,
    /// Range the whole prefix in each request instead (with --limit).
    #[arg(long)]
    pub whole_prefix: bool,
    /// Limit of each range (0: none).
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Do not preload (the keys are already there).
    #[arg(long)]
    pub no_preload: bool,
}

#[derive(Debug, Clone, Args)]
pub struct TxnPutArgs {
    /// Prefix of the keys updated.
    #[arg(long, default_value = "/bench/txn/")]
    pub prefix: String,
    /// Keys preloaded and updated at random (fewer keys: more conflicts).
    #[arg(long, default_value_t = 1000)]
    pub key_space_size: u64,
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Lost compares in a row before an update counts as failed.
    #[arg(long, default_value_t = 100)]
    pub max_retries: u32,
}

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Watch streams (gRPC Watch calls), spread over the connections.
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    /// Watches per stream, each on the whole prefix.
    #[arg(long, default_value_t = 1)]
    pub watchers_per_stream: usize,
    /// Prefix the clients put under and the watches watch.
    #[arg(long, default_value = "/bench/watch/")]
    pub prefix: String,
    /// Distinct keys put.
    #[arg(long, default_value_t = 1000)]
    pub key_space_size: u64,
    /// Value size (at least 16: a timestamp and a sequence number).
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// After the last put, how long to wait for events still on their way.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub drain_timeout: Duration,
    /// Hold the watch streams in this many processes of their own (each with --conns
    /// connections), not in the putting process: the streams are shared out among them,
    /// and their deliveries and CPU merged into the summary. 0: in this process.
    #[arg(long, default_value_t = 0)]
    pub watch_processes: usize,
}

#[derive(Debug, Clone, Args)]
pub struct WatchProcessArgs {
    #[arg(long)]
    pub streams: usize,
    #[arg(long)]
    pub watchers_per_stream: usize,
    #[arg(long)]
    pub prefix: String,
    #[arg(long, value_parser = parse_duration)]
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct WatchLatencyArgs {
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    #[arg(long, default_value_t = 1)]
    pub watchers_per_stream: usize,
    /// The key put and watched (`--key` is the TLS key).
    #[arg(long, default_value = "/bench/watch-latency")]
    pub watch_key: String,
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Longest wait for every watcher to see one put.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub event_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct LeaseArgs {
    /// TTL of the granted leases, in seconds.
    #[arg(long, default_value_t = 60)]
    pub ttl: i64,
}

#[derive(Debug, Clone, Args)]
pub struct MixedArgs {
    /// Namespaces; client i works in /registry/pods/ns-<i % namespaces>/.
    #[arg(long, default_value_t = 10)]
    pub namespaces: usize,
    /// Objects each client creates before the run (not measured).
    #[arg(long, default_value_t = 20)]
    pub objects_per_client: usize,
    /// Size of each object's JSON (Kubernetes: ~2 KiB per pod).
    #[arg(long, default_value_t = 2048)]
    pub val_size: usize,
    /// Relative weight of creates: Txn(mod_revision == 0) Then(Put).
    #[arg(long, default_value_t = 15)]
    pub create_weight: u32,
    /// Relative weight of updates: Txn(mod_revision == known) Then(Put) Else(Range), retried.
    #[arg(long, default_value_t = 50)]
    pub update_weight: u32,
    /// Relative weight of deletes: Txn(mod_revision == known) Then(DeleteRange) Else(Range), retried.
    #[arg(long, default_value_t = 10)]
    pub delete_weight: u32,
    /// Relative weight of gets: Range of one object.
    #[arg(long, default_value_t = 15)]
    pub get_weight: u32,
    /// Relative weight of lists: the namespace in pages of --list-limit, continued at the first page's revision.
    #[arg(long, default_value_t = 10)]
    pub list_weight: u32,
    /// Page size of lists (kubectl and informers ask for 500).
    #[arg(long, default_value_t = 500)]
    pub list_limit: i64,
    /// Lost compares in a row before an update or delete counts as failed.
    #[arg(long, default_value_t = 100)]
    pub max_retries: u32,
    /// No watch per client.
    #[arg(long)]
    pub no_watch: bool,
}

/// `--mix`: relative weights of the k8s mutations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub create: u32,
    pub update: u32,
    pub status: u32,
    pub delete: u32,
}

impl std::str::FromStr for Mix {
    type Err = String;

    /// `create=10,update=30,status=50,delete=10`; a verb left out weighs 0.
    fn from_str(text: &str) -> Result<Mix, String> {
        let mut mix = Mix {
            create: 0,
            update: 0,
            status: 0,
            delete: 0,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (verb, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: want verb=weight"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the weight is not a whole number"))?;
            let slot = match verb.trim() {
                "create" => &mut mix.create,
                "update" => &mut mix.update,
                "status" => &mut mix.status,
                "delete" => &mut mix.delete,
                other => {
                    return Err(format!(
                        "unknown verb {other:?} (create, update, status, delete)"
                    ))
                }
            };
            *slot = weight;
        }
        if mix.create + mix.update + mix.status + mix.delete == 0 {
            return Err("every weight is 0".into());
        }
        Ok(mix)
    }
}

#[derive(Debug, Clone, Args)]
pub struct K8sArgs {
    /// kubeconfig to read the apiserver, CA and credentials from (default: $KUBECONFIG).
    /// --endpoints, --token, --cacert, --cert/--key and --insecure-skip-tls-verify override it.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Bearer token.
    #[arg(long)]
    pub token: Option<String>,
    /// File holding the bearer token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Namespace the pods are created in (created if missing).
    #[arg(long, default_value = "oxetcd-bench")]
    pub namespace: String,
    /// Simulated nodes (bench-node-00000, ...): the pods' spec.nodeName is spread over them.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Pods created before the run (not measured), pod i on node i % nodes.
    #[arg(long, default_value_t = 1000)]
    pub pods: usize,
    /// Size of each pod's JSON as created, in bytes (Kubernetes: about 2 KiB).
    #[arg(long, default_value_t = 2048)]
    pub pod_size: usize,
    /// Watches on pods by fieldSelector=spec.nodeName, as kubelets open: watch w is node
    /// w % nodes's (default: one per node).
    #[arg(long)]
    pub watches: Option<usize>,
    /// Watch streams per HTTP/2 connection (servers cap concurrent streams: hyper 200,
    /// Go 250); watches get connections of their own, apart from --conns.
    #[arg(long, default_value_t = 100)]
    pub watches_per_conn: usize,
    /// Relative weights of the mutations: create (POST), update (PUT of labels and
    /// annotations with the known resourceVersion), status (merge PATCH of status, as
    /// kubelets), delete (DELETE, gracePeriodSeconds=0).
    #[arg(long, default_value = "create=10,update=30,status=50,delete=10")]
    pub mix: Mix,
    /// Every this long, a full list of the namespace's pods, paged (--list-limit) and
    /// unpaged; 0: no lists.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub list_interval: Duration,
    /// Page size of the paged lists (kubectl and informers ask for 500).
    #[arg(long, default_value_t = 500)]
    pub list_limit: usize,
    /// Concurrent creates while setting up the pods.
    #[arg(long, default_value_t = 50)]
    pub setup_clients: usize,
    /// After the last mutation, how long to wait without progress for events on their way.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct AuthSetupArgs {
    /// Password of the root user created.
    #[arg(long, default_value = "root")]
    pub root_password: String,
    /// Keys the --user user may read and write: this prefix.
    #[arg(long, default_value = "/bench/")]
    pub prefix: String,
}

#[derive(Debug, Clone, Args)]
pub struct FsyncArgs {
    /// Directory to probe (the disk the server's data dir is on).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Writes (each followed by fdatasync).
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Bytes per write.
    #[arg(long, default_value_t = 4096)]
    pub block_size: usize,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// The manifest `benches/compare` wrote (one line per run: tab-separated
    /// scenario, group, clients, metric kind, server, round, JSON file, command).
    #[arg(long)]
    pub manifest: PathBuf,
    /// Where to write the SVG plot of the client-count sweeps (none without sweeps).
    #[arg(long)]
    pub svg: PathBuf,
    /// How the markdown links the plot (relative to the doc).
    #[arg(long)]
    pub svg_link: String,
    /// Where to write the markdown (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `10s`, `500ms`, `2m`, `1h`, `1.5s`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: not a duration (e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn every_sub_command_parses_with_its_defaults() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        for sub in [
            "put",
            "range",
            "txn-put",
            "watch",
            "watch-latency",
            "lease-keepalive",
            "authenticate",
            "auth-setup",
            "mixed",
            "fsync-probe",
            "k8s",
        ] {
            // A sub-command flag sharing a name with a common one (e.g. the
            // TLS `--key`) would panic here.
            let cli = Cli::try_parse_from(["oxetcd-bench", sub, "--key", "k.pem"]).unwrap();
            assert_eq!(cli.common.key, Some(PathBuf::from("k.pem")), "{sub}");
        }
    }

    #[test]
    fn common_flags_go_after_the_sub_command_too() {
        let cli = Cli::try_parse_from([
            "oxetcd-bench",
            "put",
            "--clients",
            "100",
            "--conns",
            "10",
            "--total",
            "50000",
        ])
        .unwrap();
        assert_eq!((cli.common.clients, cli.common.conns), (Some(100), 10));
        assert_eq!(cli.common.total, Some(50000));
        assert!(matches!(cli.command, Command::Put(_)));

        let cli = Cli::try_parse_from([
            "oxetcd-bench",
            "--endpoints",
            "http://a:1,https://b:2",
            "range",
            "--consistency",
            "s",
        ])
        .unwrap();
        assert_eq!(cli.common.endpoints, ["http://a:1", "https://b:2"]);
        assert!(matches!(
            cli.command,
            Command::Range(RangeArgs {
                consistency: Consistency::S,
                ..
            })
        ));
        assert!(
            Cli::try_parse_from(["oxetcd-bench", "put", "--total", "1", "--duration", "1s"])
                .is_err(),
            "--total and --duration exclude each other"
        );
    }
}
