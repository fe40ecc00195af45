//! One run, top to bottom: start the cluster, start the workload's clients
//! and the nemesis, stop the faults at the time limit, let the workload do
//! its final reads, check the history, write the report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::auth::tokens::AuthCounts;
use crate::auth::{self, Granted};
use crate::check::{Anomaly, Validity, Verdict};
use crate::client::Ctx;
use crate::cluster::{self, clock, netns::Netns, Cluster, ClusterConfig};
use crate::convergence;
use crate::error::JepsenError;
use crate::nemesis::{self, FaultKind, NemesisConfig};
use crate::powerfs::PowerFs;
use crate::report;
use crate::workload::{self, Workload};

/// Everything a run is made of; written to the report as `config.json`.
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    /// The server binary; empty when a `--db` hook starts the store
    /// without one.
    pub server: PathBuf,
    /// The `--db` hook that starts, stops and signals the members, instead
    /// of the tester (docs/jepsen.md, Any store: --db hooks).
    pub db: Option<PathBuf>,
    pub nodes: usize,
    pub workload: String,
    pub nemesis: Vec<String>,
    pub time_limit_s: u64,
    pub seed: u64,
    pub concurrency: u32,
    /// Operations per second over all clients.
    pub rate: u32,
    pub op_timeout_ms: u64,
    /// Quiet time between faults, drawn uniformly from this range (ms).
    pub fault_interval_ms: (u64, u64),
    /// How long each fault is held, drawn uniformly from this range (ms).
    pub fault_hold_ms: (u64, u64),
    pub out: PathBuf,
    /// Members in network namespaces (root), else on 127.x loopback.
    pub namespaces: bool,
    pub progress: bool,
    /// Extra flags for every member.
    pub server_args: Vec<String>,
    /// Extra environment for every member, as `KEY=VALUE` on the command
    /// line; e.g. oxetcd's `OXETCD_FAILPOINT_STALE_READS=1` makes a broken
    /// server that the tester must catch.
    pub server_env: Vec<(String, String)>,
    /// Run with etcd's auth enabled ([`crate::auth`]), the workload user
    /// granted this on the workload's prefix; None: auth stays off.
    pub auth: Option<Granted>,
    /// Revisions the `compact` nemesis keeps below the current one.
    pub compact_keep: i64,
}

impl RunConfig {
    /// What is tested, for titles: the server binary, else the hook.
    pub fn tested(&self) -> &Path {
        match &self.db {
            Some(db) if self.server.as_os_str().is_empty() => db,
            _ => &self.server,
        }
    }
}

/// Parses `KEY=VALUE` (for `--server-env`).
pub fn parse_env(text: &str) -> Result<(String, String), JepsenError> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() && !key.contains('\0') => {
            Ok((key.to_owned(), value.to_owned()))
        }
        _ => Err(JepsenError::Usage(format!(
            "--server-env wants KEY=VALUE, not {text:?}"
        ))),
    }
}

/// What a run found.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub validity: Validity,
    pub verdicts: Vec<Verdict>,
    pub operations: usize,
    pub faults: usize,
    pub report: PathBuf,
    /// The workload user's authentications and token refreshes, with
    /// `--auth`.
    pub auth: Option<AuthCounts>,
}

/// The subnet and namespace names of a run: distinct for runs in one
/// process (tests) and likely distinct across processes.
fn net_id() -> u8 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    ((std::process::id().wrapping_mul(7).wrapping_add(n)) % 240 + 1) as u8
}

/// The fault kinds of `--nemesis`; `none` and empty names stand for no
/// fault.
pub fn fault_kinds(nemesis: &[String]) -> Result<Vec<FaultKind>, JepsenError> {
    nemesis
        .iter()
        .filter(|k| !k.is_empty() && *k != "none")
        .map(|k| k.parse())
        .collect()
}

pub async fn run(config: RunConfig) -> Result<Outcome, JepsenError> {
    let workload: Workload = config.workload.parse()?;
    let kinds = fault_kinds(&config.nemesis)?;
    if config.namespaces && !Netns::available() {
        return Err(JepsenError::Usage(
            "network namespaces need root and iproute2".into(),
        ));
    }
    // These nemeses' own requests (Compact, Defragment, MemberAdd...) carry
    // no token yet.
    let admin_nemesis = kinds
        .iter()
        .any(|k| matches!(k, FaultKind::Member | FaultKind::Compact));
    if config.auth.is_some() && admin_nemesis {
        return Err(JepsenError::Usage(
            "the member and compact nemeses do not run with --auth yet".into(),
        ));
    }
    if kinds.contains(&FaultKind::Partition) && !config.namespaces {
        return Err(JepsenError::Usage(
            "the partition nemesis needs network namespaces (run as root)".into(),
        ));
    }
    let faketime = if kinds.contains(&FaultKind::Clock) {
        Some(clock::find_library().ok_or_else(|| {
            JepsenError::Usage(
                "the clock nemesis needs libfaketime (apt-get install faketime)".into(),
            )
        })?)
    } else {
        None
    };
    let power_fs = kinds.iter().any(|k| k.needs_power_fs());
    if let Some(why) = power_fs.then(PowerFs::unavailable).flatten() {
        return Err(JepsenError::Usage(format!(
            "the power nemesis needs FUSE: {why}"
        )));
    }
    // Members started on another run's data would not form this cluster.
    if config.out.join("members").exists() {
        return Err(JepsenError::Usage(format!(
            "{} already holds a run; pick another --out",
            config.out.display()
        )));
    }
    std::fs::create_dir_all(&config.out).map_err(JepsenError::io(&config.out))?;
    let mut cluster = Cluster::start(ClusterConfig {
        binary: config.server.clone(),
        db: config.db.clone(),
        members: config.nodes,
        dir: config.out.join("members"),
        net: net_id(),
        namespaces: config.namespaces,
        token: format!("jepsen-{}", config.seed),
        extra_args: config.server_args.clone(),
        env: config.server_env.clone(),
        proxies: kinds.iter().any(|k| k.needs_proxies()),
        faketime,
        power_fs,
        compact_keep: config.compact_keep,
    })
    .await?;
    let urls: Vec<String> = cluster.members.iter().map(|m| m.client_url()).collect();
    let op_timeout = Duration::from_millis(config.op_timeout_ms);
    if let Some(granted) = config.auth {
        let channels = urls
            .iter()
            .map(|u| cluster::channel(u, op_timeout))
            .collect::<Result<Vec<_>, _>>()
            .map_err(JepsenError::Usage)?;
        auth::setup::enable(&channels, workload.key_prefix(), granted, op_timeout).await?;
    }
    let start = Instant::now();
    let limit = Duration::from_secs(config.time_limit_s);
    let delay = Duration::from_secs_f64(config.concurrency as f64 / config.rate.max(1) as f64);
    let ctx = Ctx::new(
        &urls,
        start,
        start + limit,
        op_timeout,
        delay,
        config.concurrency,
        config.auth.is_some(),
    )
    .map_err(JepsenError::Usage)?;
    let ctx = Arc::new(ctx);
    let running = workload::start(workload, &ctx, config.seed).await?;
    let progress = progress_bar(&config, ctx.clone());
    // The nemesis' RNG is the seed itself (see nemesis::preview); clients
    // draw from seed + 1 + i.
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let nemesis_config = NemesisConfig::new(kinds, config.fault_interval_ms, config.fault_hold_ms);
    let faults = nemesis::run(
        &mut cluster,
        &nemesis_config,
        &mut rng,
        start,
        start + limit,
    )
    .await;
    // Whatever happened, end every fault before the final reads.
    cluster.recover().await?;
    let faults = faults?;
    if let Some((bar, ticker)) = progress {
        ticker.abort();
        bar.finish_with_message(format!(
            "{} operations, {} faults; checking",
            ctx.ops_so_far(),
            faults.len()
        ));
    }
    // A cluster that does not recover is itself a finding; the final reads
    // will show it, so go on either way.
    let _ = cluster.wait_ready(Duration::from_secs(30)).await;
    running.finish(&ctx).await;
    let names: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();
    let agreement = convergence::check(&ctx, &names).await;
    let crashed = cluster.crashed();
    cluster.stop();
    let history = ctx.take_history();
    let mut verdicts = workload::check(workload, &history);
    verdicts.push(members_verdict(&crashed));
    verdicts.push(agreement);
    let auth_counts = ctx.auth_counts();
    if let Some(counts) = &auth_counts {
        verdicts.push(auth::verdict::check(&history, counts));
    }
    let validity = overall(&verdicts);
    report::write(&config.out, &config, &history, &faults, &verdicts, validity)?;
    if let Some(counts) = &auth_counts {
        report::write_json(&config.out.join("auth.json"), counts)?;
    }
    Ok(Outcome {
        validity,
        verdicts,
        operations: history.len(),
        faults: faults.len(),
        report: config.out.clone(),
        auth: auth_counts,
    })
}

/// Every member must still be running at the end: one that exited by
/// itself crashed or refused to restart (e.g. on a damaged WAL tail).
fn members_verdict(crashed: &[(String, String, String)]) -> Verdict {
    let anomalies = crashed
        .iter()
        .map(|(name, status, log)| Anomaly {
            kind: "crashed".into(),
            explanation: format!("member {name}: {status}; the end of members/{name}/log:\n{log}"),
            ops: Vec::new(),
        })
        .collect::<Vec<_>>();
    let summary = format!("{} members exited by themselves", anomalies.len());
    Verdict::from_anomalies("members", summary, anomalies, false)
}

/// Invalid if any checker says so; unknown if any gave up; else valid.
pub fn overall(verdicts: &[Verdict]) -> Validity {
    if verdicts.iter().any(|v| v.validity == Validity::Invalid) {
        Validity::Invalid
    } else if verdicts.iter().any(|v| v.validity == Validity::Unknown) {
        Validity::Unknown
    } else {
        Validity::Valid
    }
}

fn progress_bar(
    config: &RunConfig,
    ctx: Arc<Ctx>,
) -> Option<(ProgressBar, tokio::task::JoinHandle<()>)> {
    if !config.progress {
        return None;
    }
    let bar = ProgressBar::new(config.time_limit_s);
    let style =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len}s {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    let ticking = bar.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            ticking.set_position(ctx.now() / 1_000_000_000);
            ticking.set_message(format!("{} ops", ctx.ops_so_far()));
        }
    });
    Some((bar, ticker))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_env_is_key_equals_value() {
        assert_eq!(
            parse_env("OXETCD_FAILPOINT_STALE_READS=1").unwrap(),
            ("OXETCD_FAILPOINT_STALE_READS".to_owned(), "1".to_owned())
        );
        assert_eq!(
            parse_env("A=b=c").unwrap(),
            ("A".to_owned(), "b=c".to_owned())
        );
        assert!(parse_env("A").is_err());
        assert!(parse_env("=1").is_err());
    }

    #[test]
    fn a_member_that_exited_by_itself_makes_the_run_invalid() {
        assert_eq!(members_verdict(&[]).validity, Validity::Valid);
        let crashed = [(
            "n2".to_owned(),
            "exit status: 1".to_owned(),
            "corrupt WAL".to_owned(),
        )];
        let verdict = members_verdict(&crashed);
        assert_eq!(verdict.validity, Validity::Invalid);
        assert!(verdict.anomalies[0].explanation.contains("corrupt WAL"));
    }
}
