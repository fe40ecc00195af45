//! `watch --watch-processes N`: the watch streams held by N processes of
//! their own, so that decoding events does not share the putting process's
//! threads and the streams run over more connections. Both sides of the pipe
//! between the putting process (the parent) and a watcher process live here.
//!
//! The parent starts `oxetcd-bench watch-process` N times (the same binary),
//! each with its share of `--streams`, the parent's connection and TLS
//! flags, and `--user` in the environment (not on a command line others can
//! read). A watcher opens its streams, prints `ready`, and waits. Once every
//! watcher is ready the parent puts; after the last put it writes
//! `expect PUTS` to every watcher's stdin; each waits for its events as the
//! in-process run does (up to `--drain-timeout` without progress) and prints
//! one JSON line, a [`WatcherReport`]: its deliveries by send time, how many
//! it missed, how long the drain took, its CPU time (from `ready` to the
//! report) and its stream errors. The parent merges them ([`merge`]).
//!
//! Delivery latency across processes holds because stamps are read on
//! CLOCK_MONOTONIC, one clock for the whole machine (see `keys`).

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::watch::{on_delivery, open_streams, wait_for_events};
use super::Env;
use crate::loadgen::auth::Credentials;
use crate::loadgen::cli::{Common, WatchArgs, WatchProcessArgs};
use crate::loadgen::cpu::CpuTimes;
use crate::loadgen::delivery::{DeliveryLog, SliceCounts};
use crate::loadgen::error::BenchError;
use crate::loadgen::keys::prefix_end;
use crate::loadgen::stats::{ErrorCount, Role, Stats};
use crate::loadgen::watchers::WatchSpec;

/// Where a watcher process finds `--user` (NAME:PASSWORD).
const USER_VAR: &str = "OXETCD_BENCH_WATCHER_USER";
/// What a watcher prints once its watches are open.
const READY: &str = "ready";
/// What the parent writes after the last put: `expect PUTS`.
const EXPECT: &str = "expect";

/// What one watcher process sends back.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WatcherReport {
    pub watchers: u64,
    pub delivered: u64,
    /// Events this process's watchers should have had (puts × watchers) and did not.
    pub missing: u64,
    /// From `expect` to its last event (or to giving up).
    pub drain_secs: f64,
    pub cpu_user_secs: f64,
    pub cpu_system_secs: f64,
    /// Its `watch-stream` errors.
    pub errors: Vec<ErrorCount>,
    pub slices: Vec<SliceCounts>,
}

/// Streams per process: `streams` shared out among `processes` as evenly as
/// possible (the first ones get one more).
pub fn shares(streams: usize, processes: usize) -> Vec<usize> {
    (0..processes)
        .map(|i| streams / processes + usize::from(i < streams % processes))
        .collect()
}

/// The watcher processes' reports, merged.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Merged {
    pub delivered: u64,
    pub missing: u64,
    /// The longest drain of any of them.
    pub drain: Duration,
    /// Their CPU time together.
    pub cpu: CpuTimes,
}

/// Adds the reports' deliveries to `log`, their errors to `stats`, and sums
/// the rest up.
pub fn merge(reports: &[WatcherReport], log: &DeliveryLog, stats: &Stats) -> Merged {
    let mut merged = Merged::default();
    for report in reports {
        log.merge(&report.slices);
        for error in &report.errors {
            stats.record_error_count("watch-stream", Role::Detail, error);
        }
        merged.delivered += report.delivered;
        merged.missing += report.missing;
        merged.drain = merged
            .drain
            .max(Duration::from_secs_f64(report.drain_secs.max(0.0)));
        merged.cpu.user += Duration::from_secs_f64(report.cpu_user_secs.max(0.0));
        merged.cpu.system += Duration::from_secs_f64(report.cpu_system_secs.max(0.0));
    }
    merged
}

/// The flags of watcher process `streams` streams, from the parent's.
fn watcher_args(common: &Common, args: &WatchArgs, streams: usize) -> Vec<String> {
    let secs = |d: Duration| format!("{}s", d.as_secs_f64());
    let mut out = vec![
        "--no-progress".to_owned(),
        "--conns".to_owned(),
        common.conns.to_string(),
        "--request-timeout".to_owned(),
        secs(common.request_timeout),
        "--dial-timeout".to_owned(),
        secs(common.dial_timeout),
    ];
    if !common.endpoints.is_empty() {
        out.push("--endpoints".to_owned());
        out.push(common.endpoints.join(","));
    }
    for (flag, path) in [
        ("--cacert", &common.cacert),
        ("--cert", &common.cert),
        ("--key", &common.key),
    ] {
        if let Some(path) = path {
            out.push(flag.to_owned());
            out.push(path.display().to_string());
        }
    }
    for (flag, on) in [
        (
            "--insecure-skip-tls-verify",
            common.insecure_skip_tls_verify,
        ),
        ("--target-leader", common.target_leader),
        ("--target-follower", common.target_follower),
    ] {
        if on {
            out.push(flag.to_owned());
        }
    }
    out.extend([
        "watch-process".to_owned(),
        "--streams".to_owned(),
        streams.to_string(),
        "--watchers-per-stream".to_owned(),
        args.watchers_per_stream.to_string(),
        "--prefix".to_owned(),
        args.prefix.clone(),
        "--drain-timeout".to_owned(),
        secs(args.drain_timeout),
    ]);
    out
}

/// One running watcher process.
struct Watcher {
    number: usize,
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Watcher {
    async fn line(&mut self, waiting_for: &str) -> Result<String, BenchError> {
        match self.stdout.next_line().await {
            Ok(Some(line)) => Ok(line),
            Ok(None) => Err(BenchError::WatchProcess(format!(
                "watcher process {} ended before {waiting_for} (its errors are on stderr)",
                self.number
            ))),
            Err(e) => Err(BenchError::WatchProcess(format!(
                "reading watcher process {}: {e}",
                self.number
            ))),
        }
    }
}

/// The watcher processes of a run, killed if dropped before [`finish`](WatchProcesses::finish).
pub struct WatchProcesses {
    watchers: Vec<Watcher>,
}

impl WatchProcesses {
    /// Starts `args.watch_processes` watcher processes and waits until every
    /// one has its watches open.
    pub async fn start(common: &Common, args: &WatchArgs) -> Result<WatchProcesses, BenchError> {
        let exe = std::env::current_exe()
            .map_err(|e| BenchError::WatchProcess(format!("finding this program: {e}")))?;
        let mut watchers = Vec::new();
        for (number, streams) in shares(args.streams, args.watch_processes)
            .into_iter()
            .enumerate()
            .filter(|(_, streams)| *streams > 0)
        {
            let mut command = tokio::process::Command::new(&exe);
            command
                .args(watcher_args(common, args, streams))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            match &common.user {
                Some(user) => command.env(USER_VAR, format!("{}:{}", user.name, user.password)),
                None => command.env_remove(USER_VAR),
            };
            let mut child = command.spawn().map_err(|e| {
                BenchError::WatchProcess(format!("starting {}: {e}", exe.display()))
            })?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err(BenchError::WatchProcess(
                    "no pipe to a watcher process".into(),
                ));
            };
            watchers.push(Watcher {
                number,
                child,
                stdin,
                stdout: BufReader::new(stdout).lines(),
            });
        }
        for watcher in &mut watchers {
            let line = watcher.line("its watches were open").await?;
            if line.trim() != READY {
                return Err(BenchError::WatchProcess(format!(
                    "watcher process {} said {line:?}, not {READY:?}",
                    watcher.number
                )));
            }
        }
        Ok(WatchProcesses { watchers })
    }

    pub fn len(&self) -> usize {
        self.watchers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.watchers.is_empty()
    }

    /// Tells every watcher that `puts` puts succeeded, and collects their reports.
    pub async fn finish(mut self, puts: u64) -> Result<Vec<WatcherReport>, BenchError> {
        for watcher in &mut self.watchers {
            let line = format!("{EXPECT} {puts}\n");
            watcher
                .stdin
                .write_all(line.as_bytes())
                .await
                .map_err(|e| {
                    BenchError::WatchProcess(format!(
                        "writing to watcher process {}: {e}",
                        watcher.number
                    ))
                })?;
            let _ = watcher.stdin.flush().await;
        }
        let mut reports = Vec::with_capacity(self.watchers.len());
        for watcher in &mut self.watchers {
            let line = watcher.line("its report").await?;
            let report: WatcherReport = serde_json::from_str(&line).map_err(|e| {
                BenchError::WatchProcess(format!(
                    "watcher process {}'s report: {e}",
                    watcher.number
                ))
            })?;
            reports.push(report);
            let _ = watcher.child.wait().await;
        }
        Ok(reports)
    }
}

/// The `--user` a watcher process was started with, from its environment.
pub fn user_from_env() -> Result<Option<Credentials>, BenchError> {
    match std::env::var(USER_VAR) {
        Ok(user) if !user.is_empty() => user
            .parse()
            .map(Some)
            .map_err(|e| BenchError::Usage(format!("{USER_VAR}: {e}"))),
        _ => Ok(None),
    }
}

/// `watch-process`: one watcher process's side (see the module's documentation).
pub async fn run_watcher(env: &Env, args: &WatchProcessArgs) -> Result<String, BenchError> {
    let spec = WatchSpec {
        key: Bytes::from(args.prefix.clone()),
        range_end: prefix_end(args.prefix.as_bytes()),
        start_revision: 0,
        prev_kv: false,
    };
    let log = Arc::new(DeliveryLog::new()?);
    let delivered = Arc::new(AtomicU64::new(0));
    let on_event = on_delivery(log.clone(), delivered.clone());
    let streams =
        open_streams(env, &spec, args.streams, args.watchers_per_stream, on_event).await?;
    let cpu_at_ready = CpuTimes::of_this_process();
    println!("{READY}");

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let puts = loop {
        let line = stdin
            .next_line()
            .await
            .map_err(|e| BenchError::WatchProcess(format!("reading stdin: {e}")))?
            .ok_or_else(|| BenchError::WatchProcess(format!("stdin closed before {EXPECT:?}")))?;
        if let Some(n) = line.trim().strip_prefix(EXPECT) {
            break n
                .trim()
                .parse::<u64>()
                .map_err(|_| BenchError::WatchProcess(format!("{line:?}: want {EXPECT} PUTS")))?;
        }
    };
    let watchers = (args.streams * args.watchers_per_stream) as u64;
    let expected = puts * watchers;
    let drain = wait_for_events(&delivered, expected, args.drain_timeout).await;
    drop(streams);
    let got = delivered.load(Ordering::Relaxed);
    let cpu = CpuTimes::of_this_process().since(cpu_at_ready);
    let errors = env
        .stats
        .summary("watch-process", &env.setup(), Duration::from_secs(1))
        .error_counts;
    let report = WatcherReport {
        watchers,
        delivered: got,
        missing: expected.saturating_sub(got),
        drain_secs: drain.as_secs_f64(),
        cpu_user_secs: cpu.user.as_secs_f64(),
        cpu_system_secs: cpu.system.as_secs_f64(),
        errors,
        slices: log.export(),
    };
    let mut line = serde_json::to_string(&report)
        .map_err(|e| BenchError::WatchProcess(format!("its report as JSON: {e}")))?;
    line.push('\n');
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_shared_out_evenly() {
        assert_eq!(shares(10, 3), [4, 3, 3]);
        assert_eq!(shares(5000, 4), [1250; 4]);
        assert_eq!(shares(1, 2), [1, 0]);
    }

    #[test]
    fn reports_merge_into_one_result() {
        let one = DeliveryLog::new().unwrap();
        one.record(0, Duration::from_millis(3));
        one.record(0, Duration::from_millis(3));
        let two = DeliveryLog::new().unwrap();
        two.record(0, Duration::from_millis(7));
        let error = ErrorCount {
            kind: "watch-stream".into(),
            code: "StreamEnded".into(),
            message: "watch".into(),
            count: 2,
        };
        let reports = [
            WatcherReport {
                watchers: 2,
                delivered: 2,
                missing: 0,
                drain_secs: 0.25,
                cpu_user_secs: 1.0,
                cpu_system_secs: 0.5,
                errors: vec![],
                slices: one.export(),
            },
            WatcherReport {
                watchers: 2,
                delivered: 1,
                missing: 1,
                drain_secs: 0.5,
                cpu_user_secs: 2.0,
                cpu_system_secs: 0.25,
                errors: vec![error],
                slices: two.export(),
            },
        ];
        let (log, stats) = (DeliveryLog::new().unwrap(), Stats::new().unwrap());
        let merged = merge(&reports, &log, &stats);
        assert_eq!((merged.delivered, merged.missing), (3, 1));
        assert_eq!(
            merged.drain,
            Duration::from_millis(500),
            "the longest drain"
        );
        assert_eq!(merged.cpu.user, Duration::from_secs(3));
        assert_eq!(merged.cpu.system, Duration::from_millis(750));
        let all = log.all();
        assert_eq!(all.len(), 3);
        assert!((all.max() as f64 / 1000.0 - 7.0).abs() < 0.01);
        assert_eq!(stats.progress().errors, 2);
    }

    #[test]
    fn watcher_flags_parse_as_a_watch_process_command() {
        use crate::loadgen::cli::{Cli, Command};
        use clap::Parser;
        let parent = Cli::try_parse_from([
            "oxetcd-bench",
            "--endpoints",
            "http://a:1,http://b:2",
            "--conns",
            "3",
            "--insecure-skip-tls-verify",
            "watch",
            "--streams",
            "10",
            "--watch-processes",
            "2",
            "--drain-timeout",
            "1500ms",
        ])
        .unwrap();
        let Command::Watch(args) = &parent.command else {
            panic!("not watch");
        };
        let mut argv = vec!["oxetcd-bench".to_owned()];
        argv.extend(watcher_args(&parent.common, args, 5));
        let child = Cli::try_parse_from(argv).unwrap();
        assert_eq!(child.common.endpoints, parent.common.endpoints);
        assert_eq!(child.common.conns, 3);
        assert!(child.common.insecure_skip_tls_verify);
        let Command::WatchProcess(w) = child.command else {
            panic!("not watch-process");
        };
        assert_eq!((w.streams, w.watchers_per_stream), (5, 1));
        assert_eq!(w.drain_timeout, Duration::from_millis(1500));
        assert_eq!(w.prefix, args.prefix);
    }
}
