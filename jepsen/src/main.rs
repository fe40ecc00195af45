//! `oxetcd-jepsen`: runs one test and exits 0 when the history is valid,
//! 1 when a checker found an anomaly, 3 when a checker could not decide,
//! 2 when the run itself failed, 130 / 143 when interrupted (SIGINT /
//! SIGTERM; the members are stopped and the namespaces removed first).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use oxetcd_jepsen::auth::Granted;
use oxetcd_jepsen::check::{Validity, Verdict};
use oxetcd_jepsen::cluster::netns::Netns;
use oxetcd_jepsen::error::JepsenError;
use oxetcd_jepsen::history::read_jsonl;
use oxetcd_jepsen::run::{self, RunConfig};
use oxetcd_jepsen::workload::Workload;

/// A Jepsen-style consistency test of an etcd-API cluster.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// The server binary: oxetcd, etcd, or anything taking etcd's flags.
    #[arg(long, required_unless_present = "check")]
    server: Option<PathBuf>,
    /// Check a recorded history.jsonl with the workload's checkers instead
    /// of running a test.
    #[arg(long, value_name = "HISTORY")]
    check: Option<PathBuf>,
    /// Cluster size.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Seconds of client traffic (and faults).
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// register, set, watch, append, kubernetes or lease.
    #[arg(long, default_value = "register")]
    workload: String,
    /// Comma-separated fault kinds: kill, pause, partition, member, wal,
    /// compact, slow, lossy, clock, power (or none).
    #[arg(long, value_delimiter = ',', default_value = "kill,pause,partition")]
    nemesis: Vec<String>,
    /// Seeds the clients' and the nemesis' choices (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// The run directory (default: jepsen-runs/<workload>-<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Client tasks.
    #[arg(long, default_value_t = 10)]
    concurrency: u32,
    /// Operations per second over all clients.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// A request not answered within this is indeterminate (ms).
    #[arg(long, default_value_t = 2000)]
    op_timeout_ms: u64,
    /// Quiet time between faults, LO-HI ms (uniform).
    #[arg(long, value_name = "LO-HI", default_value = "2000-5000", value_parser = parse_ms_range)]
    fault_interval_ms: (u64, u64),
    /// How long each fault is held, LO-HI ms (uniform); e.g. 100-300 with
    /// an interval of 100-300 makes about a hundred power cuts a minute.
    #[arg(long, value_name = "LO-HI", default_value = "2000-6000", value_parser = parse_ms_range)]
    fault_hold_ms: (u64, u64),
    /// Run members on 127.x loopback addresses even as root (no partitions).
    #[arg(long)]
    no_namespaces: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Environment for every member, KEY=VALUE (repeatable); e.g.
    /// OXETCD_FAILPOINT_STALE_READS=1 to check that the tester catches a
    /// broken oxetcd.
    #[arg(long = "server-env", value_name = "KEY=VALUE", value_parser = parse_server_env)]
    server_env: Vec<(String, String)>,
    /// Extra flags for every member, e.g. --server-arg=--snapshot-count=100.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Enable etcd's auth once the cluster forms: clients authenticate as a
    /// user granted READWRITE on the workload's keys and send its token
    /// (simple or JWT, as the server is started: --server-arg=--auth-token=...).
    #[arg(long)]
    auth: bool,
    /// With --auth: what the workload user is granted (readwrite; read or
    /// write alone only to check that the tester reports the denials).
    #[arg(long, default_value = "readwrite", requires = "auth", value_parser = parse_granted)]
    auth_permission: Granted,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(path) = &cli.check {
        return check_history(path, &cli.workload);
    }
    let seed = cli.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let out = cli
        .out
        .unwrap_or_else(|| PathBuf::from(format!("jepsen-runs/{}-{seed}", cli.workload)));
    let config = RunConfig {
        server: cli.server.unwrap_or_default(),
        nodes: cli.nodes,
        workload: cli.workload,
        nemesis: cli.nemesis,
        time_limit_s: cli.time_limit,
        seed,
        concurrency: cli.concurrency,
        rate: cli.rate,
        op_timeout_ms: cli.op_timeout_ms,
        fault_interval_ms: cli.fault_interval_ms,
        fault_hold_ms: cli.fault_hold_ms,
        out,
        namespaces: !cli.no_namespaces && Netns::available(),
        progress: !cli.quiet,
        server_args: cli.server_args,
        server_env: cli.server_env,
        auth: cli.auth.then_some(cli.auth_permission),
    };
    // Dropping the run stops its members and removes its namespaces (the
    // cluster's Drop); a signal's default action would skip that and leave
    // them behind.
    let result = tokio::select! {
        result = run::run(config) => result,
        (name, code) = interrupted() => {
            eprintln!("oxetcd-jepsen: {name}: stopping the members; no verdict");
            return ExitCode::from(code);
        }
    };
    match result {
        Ok(outcome) => {
            for verdict in &outcome.verdicts {
                println!(
                    "{}: {:?}: {}",
                    verdict.checker, verdict.validity, verdict.summary
                );
                for anomaly in verdict.anomalies.iter().take(5) {
                    println!("  {}: {}", anomaly.kind, anomaly.explanation);
                }
            }
            println!(
                "{:?}: {} operations, {} faults; report in {}",
                outcome.validity,
                outcome.operations,
                outcome.faults,
                outcome.report.join("index.html").display()
            );
            exit_code(outcome.validity)
        }
        Err(e) => {
            eprintln!("oxetcd-jepsen: {e}");
            ExitCode::from(2)
        }
    }
}

/// Waits for SIGINT or SIGTERM; returns its name and the shell's exit code
/// for it (128 + the signal number). Never returns when the handlers cannot
/// be installed.
async fn interrupted() -> (&'static str, u8) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => ("interrupted", 130),
        _ = term.recv() => ("terminated", 143),
    }
}

fn parse_granted(text: &str) -> Result<Granted, String> {
    text.parse().map_err(|e: JepsenError| e.to_string())
}

fn parse_server_env(text: &str) -> Result<(String, String), String> {
    run::parse_env(text).map_err(|e| e.to_string())
}

/// The exit code of a verdict (see the top of this file).
fn exit_code(validity: Validity) -> ExitCode {
    match validity {
        Validity::Valid => ExitCode::SUCCESS,
        Validity::Invalid => ExitCode::from(1),
        Validity::Unknown => ExitCode::from(3),
    }
}

/// `LO-HI` milliseconds, LO <= HI.
fn parse_ms_range(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("wants LO-HI in ms (e.g. 2000-5000), not {text:?}");
    let (lo, hi) = text.split_once('-').ok_or_else(bad)?;
    let (lo, hi): (u64, u64) = (
        lo.parse().map_err(|_| bad())?,
        hi.parse().map_err(|_| bad())?,
    );
    if lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// Re-checks a stored history; prints the verdicts as JSON.
fn check_history(path: &Path, workload: &str) -> ExitCode {
    let checked = (|| -> Result<Vec<Verdict>, String> {
        let workload: Workload = workload.parse().map_err(|e: JepsenError| e.to_string())?;
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let ops =
            read_jsonl(BufReader::new(file)).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(oxetcd_jepsen::workload::check(workload, &ops))
    })();
    match checked {
        Ok(verdicts) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&verdicts).unwrap_or_default()
            );
            exit_code(run::overall(&verdicts))
        }
        Err(e) => {
            eprintln!("oxetcd-jepsen: {e}");
            ExitCode::from(2)
        }
    }
}
