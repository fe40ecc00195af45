//! The sub-commands that put load on a server. Each builds its clients on an
//! [`Env`] (connections, recorder, plan), runs them with
//! [`super::runner::run`], and returns the [`Summary`].

pub mod authenticate;
pub mod k8s;
pub mod lease;
pub mod mixed;
pub mod put;
pub mod range;
pub mod txn_put;
pub mod watch;
pub mod watch_procs;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::auth::Credentials;
use super::cli::Common;
use super::connect::{ConnOptions, Pool};
use super::cpu::{ClientCpu, CpuTimes};
use super::error::BenchError;
use super::runner::{self, Client, Limit, Plan, Reporting, RunOutcome};
use super::stats::{RunSetup, Stats, Summary};
use super::tls::TlsOptions;

/// The etcd endpoint when `--endpoints` is not given.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:2379";

/// Default `--clients`.
pub const DEFAULT_CLIENTS: usize = 1;

/// The plan and reporting of the common flags: `default_total` requests
/// unless `--total` or `--duration` says otherwise; `default_rate` unless
/// `--rate` does; `default_clients` unless `--clients` does.
pub fn plan(
    common: &Common,
    default_total: u64,
    default_rate: Option<f64>,
    default_clients: usize,
) -> Result<(Plan, Reporting), BenchError> {
    let clients = common.clients.unwrap_or(default_clients);
    if clients == 0 {
        return Err(BenchError::Usage("--clients must be at least 1".into()));
    }
    if common.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(BenchError::Usage("--rate must be a positive number".into()));
    }
    let limit = match (common.total, common.duration) {
        (_, Some(duration)) => Limit::Duration(duration),
        (Some(total), None) => Limit::Total(total),
        (None, None) => Limit::Total(default_total),
    };
    Ok((
        Plan {
            clients,
            limit,
            rate: common.rate.or(default_rate),
        },
        Reporting {
            progress: !common.no_progress,
            csv: common.csv.clone(),
        },
    ))
}

/// How to reach the servers, from the common flags.
pub fn conn_options(common: &Common) -> ConnOptions {
    let endpoints = if common.endpoints.is_empty() {
        vec![DEFAULT_ENDPOINT.to_owned()]
    } else {
        common.endpoints.clone()
    };
    ConnOptions {
        endpoints,
        conns: common.conns,
        target_leader: common.target_leader,
        target_follower: common.target_follower,
        dial_timeout: common.dial_timeout,
        tls: TlsOptions {
            cacert: common.cacert.clone(),
            cert: common.cert.clone(),
            key: common.key.clone(),
            insecure_skip_verify: common.insecure_skip_tls_verify,
        },
        credentials: common.user.clone(),
        request_timeout: common.request_timeout,
    }
}

/// What every workload runs on.
pub struct Env {
    pub pool: Pool,
    pub stats: Arc<Stats>,
    pub plan: Plan,
    pub reporting: Reporting,
    /// `--request-timeout`.
    pub timeout: Duration,
    /// `--user`.
    pub credentials: Option<Credentials>,
    /// This process's CPU time when the measured run began (the first
    /// [`Env::run`]): the summary's client CPU counts from there.
    cpu_at_start: OnceLock<CpuTimes>,
}

impl Env {
    /// Connects, and settles the plan: `default_total` requests unless
    /// `--total` or `--duration` says otherwise; `default_rate` unless
    /// `--rate` does.
    pub async fn new(
        common: &Common,
        default_total: u64,
        default_rate: Option<f64>,
    ) -> Result<Env, BenchError> {
        let (plan, reporting) = plan(common, default_total, default_rate, DEFAULT_CLIENTS)?;
        let pool = Pool::connect(&conn_options(common)).await?;
        Ok(Env {
            pool,
            stats: Arc::new(Stats::new()?),
            plan,
            reporting,
            timeout: common.request_timeout,
            credentials: common.user.clone(),
            cpu_at_start: OnceLock::new(),
        })
    }

    pub fn setup(&self) -> RunSetup {
        RunSetup {
            endpoints: self.pool.endpoints.clone(),
            conns: self.pool.len(),
            clients: self.plan.clients,
            rate: self.plan.rate,
        }
    }

    /// This process's CPU time since the measured run began, if it has.
    pub fn cpu_used(&self) -> Option<CpuTimes> {
        let start = self.cpu_at_start.get()?;
        Some(CpuTimes::of_this_process().since(*start))
    }

    /// Runs `clients` to the end of the plan.
    pub async fn run<C: Client>(&self, clients: Vec<C>) -> Result<RunOutcome, BenchError> {
        self.cpu_at_start.get_or_init(CpuTimes::of_this_process);
        runner::run(&self.plan, &self.stats, clients, &self.reporting).await
    }

    /// The summary of a run named `command` that took `elapsed`, with this
    /// process's CPU time from the start of the run to now.
    pub fn summary(&self, command: &str, outcome: RunOutcome, elapsed: Duration) -> Summary {
        let mut summary = self.stats.summary(command, &self.setup(), elapsed);
        if let Some(used) = self.cpu_used() {
            summary.client_cpu = Some(ClientCpu::new(used, 1, elapsed, summary.ops));
        }
        if self.credentials.is_some() {
            summary
                .counters
                .insert("token-renewals".into(), self.pool.token_renewals());
        }
        if outcome.interrupted {
            summary
                .notes
                .push("interrupted (Ctrl-C): the figures cover the run until then".into());
        }
        summary
    }
}
