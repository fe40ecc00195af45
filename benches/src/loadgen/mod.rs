//! `oxetcd-bench`: a load generator speaking etcd's v3 gRPC API to any
//! endpoints, the counterpart of etcd's `benchmark` tool, so the same client
//! measures oxetcd and etcd; and (`k8s`) the Kubernetes API to any
//! apiserver, so the same client measures oxetcd-apiserver over oxetcd,
//! over etcd, and kube-apiserver.
//!
//! ```text
//! oxetcd-bench put --clients 100 --conns 10 --total 50000
//! oxetcd-bench --endpoints https://127.0.0.1:2379 --cacert ca.pem range --consistency s --duration 10s
//! oxetcd-bench mixed --clients 50 --duration 30s --rate 2000 --json --csv series.csv
//! oxetcd-bench fsync-probe --dir /var/lib/etcd
//! oxetcd-bench k8s --kubeconfig admin.conf --nodes 100 --pods 1000 --rate 100 --duration 60s
//! ```
//!
//! How it is put together:
//!
//! | module | what |
//! |---|---|
//! | [`cli`] | flags (clap) |
//! | [`connect`], [`tls`] | `--conns` connections over the endpoints, `--target-leader`, TLS |
//! | [`auth`], [`auth_setup`] | `--user`: a login per connection, its token on every request; `auth-setup` |
//! | [`runner`] | clients, closed or open loop (`--rate`), `--total`/`--duration`, progress bar, `--csv` |
//! | [`stats`] | latency histograms (HdrHistogram), errors by code and message, the summary |
//! | [`cpu`] | the tool's own CPU time over a run |
//! | [`delivery`] | watch delivery latency by send time, and the keeps-up rule of `watch --rate` |
//! | [`workload`] | one module per sub-command (`k8s`: its HTTP client, kubeconfig, pods and watches too) |
//! | [`requests`], [`watchers`], [`keys`] | etcd requests, watch streams, keys and stamped values |
//! | [`fsync`] | `fsync-probe`: the machine's fsync ceiling |
//! | [`report`] | the side-by-side table and plot of `benches/compare` |
//!
//! A failed request is counted (by kind, gRPC code and message) and the run
//! goes on; see [`ExitStatus`] for what the tool returns.

pub mod auth;
pub mod auth_setup;
pub mod cli;
pub mod connect;
pub mod cpu;
pub mod delivery;
pub mod error;
pub mod fsync;
pub mod keys;
pub mod report;
pub mod requests;
pub mod runner;
pub mod stats;
pub mod tls;
pub mod watchers;
pub mod workload;

use cli::{Cli, Command};
pub use error::{BenchError, OpError};
use stats::Summary;
use workload::Env;

/// Default `--total` of the load sub-commands.
pub const DEFAULT_TOTAL: u64 = 10_000;

/// What a sub-command produced.
#[derive(Debug)]
pub enum Output {
    /// A load run.
    Run(Box<Summary>),
    Fsync(fsync::FsyncReport),
    /// `report`'s markdown.
    Report(String),
    /// What a setup sub-command did (`auth-setup`).
    Done(String),
}

/// The tool's exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// The run finished and every request succeeded.
    Success = 0,
    /// The run finished (the summary is printed) but requests failed.
    RequestsFailed = 1,
    /// The run could not start, or its output could not be written.
    CannotRun = 2,
}

impl Output {
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Output::Run(summary) if summary.errors > 0 => ExitStatus::RequestsFailed,
            _ => ExitStatus::Success,
        }
    }

    /// What the tool prints on stdout.
    pub fn render(&self, json: bool) -> Result<String, BenchError> {
        let to_json = |value: serde_json::Result<String>| {
            value
                .map(|mut s| {
                    s.push('\n');
                    s
                })
                .map_err(|e| BenchError::Report(format!("JSON: {e}")))
        };
        match self {
            Output::Run(summary) if json => to_json(serde_json::to_string_pretty(summary)),
            Output::Run(summary) => Ok(summary.to_text()),
            Output::Fsync(report) if json => to_json(serde_json::to_string_pretty(report)),
            Output::Fsync(report) => Ok(report.to_text()),
            Output::Report(markdown) | Output::Done(markdown) => Ok(markdown.clone()),
        }
    }
}

/// Runs the sub-command `cli` names.
pub async fn execute(cli: &Cli) -> Result<Output, BenchError> {
    keys::start_clock();
    let common = &cli.common;
    let run = |summary: Summary| Output::Run(Box::new(summary));
    Ok(match &cli.command {
        Command::Put(args) => {
            run(workload::put::run(&Env::new(common, DEFAULT_TOTAL, None).await?, args).await?)
        }
        Command::Range(args) => {
            run(workload::range::run(&Env::new(common, DEFAULT_TOTAL, None).await?, args).await?)
        }
        Command::TxnPut(args) => {
            run(workload::txn_put::run(&Env::new(common, DEFAULT_TOTAL, None).await?, args).await?)
        }
        Command::Watch(args) => {
            let env = Env::new(common, DEFAULT_TOTAL, None).await?;
            run(workload::watch::run(&env, common, args).await?)
        }
        Command::WatchProcess(args) => {
            let mut common = common.clone();
            if let Some(user) = workload::watch_procs::user_from_env()? {
                common.user = Some(user);
            }
            let env = Env::new(&common, DEFAULT_TOTAL, None).await?;
            Output::Done(workload::watch_procs::run_watcher(&env, args).await?)
        }
        Command::WatchLatency(args) => {
            let env = Env::new(
                common,
                workload::watch::LATENCY_DEFAULT_TOTAL,
                Some(workload::watch::LATENCY_DEFAULT_RATE),
            )
            .await?;
            run(workload::watch::run_latency(&env, args).await?)
        }
        Command::Authenticate => {
            run(workload::authenticate::run(&Env::new(common, DEFAULT_TOTAL, None).await?).await?)
        }
        Command::AuthSetup(args) => {
            let Some(user) = &common.user else {
                return Err(BenchError::Usage(
                    "auth-setup needs --user NAME:PASSWORD (the user to create)".into(),
                ));
            };
            // Auth is still off: one connection, no login.
            let mut opts = workload::conn_options(common);
            opts.credentials = None;
            opts.conns = 1;
            let pool = connect::Pool::connect(&opts).await?;
            let done = auth_setup::run(pool.channel(0), user, args, common.request_timeout).await?;
            Output::Done(done)
        }
        Command::LeaseKeepalive(args) => {
            run(workload::lease::run(&Env::new(common, DEFAULT_TOTAL, None).await?, args).await?)
        }
        Command::Mixed(args) => {
            run(workload::mixed::run(&Env::new(common, DEFAULT_TOTAL, None).await?, args).await?)
        }
        Command::K8s(args) => run(workload::k8s::run(common, args).await?),
        Command::FsyncProbe(args) => {
            let args = args.clone();
            let dir = args.dir.clone();
            let report = tokio::task::spawn_blocking(move || {
                fsync::probe(&args.dir, args.count, args.block_size)
            })
            .await
            .map_err(|e| BenchError::Fsync {
                dir,
                source: std::io::Error::other(e.to_string()),
            })??;
            Output::Fsync(report)
        }
        Command::Report(args) => Output::Report(report::run(args)?),
    })
}
