//! Drives the clients of a run: who issues the next request and when, when
//! the run ends, the progress bar and the per-second CSV series.
//!
//! **Closed loop** (default): each client issues its next request as soon as
//! the previous one is answered; latency runs from issue to answer.
//!
//! **Open loop** (`--rate R`): request `k` of the run is *scheduled* at
//! `start + k / R`, whichever client is free takes it, and its latency runs
//! from the scheduled time, not from when a client got round to sending it.
//! A server that stalls therefore shows the whole stall in the latencies of
//! every request that should have been sent meanwhile, instead of silently
//! lowering the request rate (coordinated omission). `--clients` bounds how
//! many requests are in flight at once; if they are all busy, scheduled
//! requests queue, and the queueing shows as latency.
//!
//! The run ends after `--total` requests were issued, or when `--duration`
//! has passed (open loop: once every request scheduled before the end was
//! answered), or on Ctrl-C (the summary covers what ran).

use std::fs::File;
use std::future::Future;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::error::{BenchError, OpError};
use super::stats::{Role, Stats};

/// Pause of a client after a failed request, so that a dead server does not
/// turn the tool into a busy loop. Not part of any latency.
pub const ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// How often the progress bar is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// When a run ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// After this many requests were issued.
    Total(u64),
    /// After this long.
    Duration(Duration),
}

/// The shape of a run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub clients: usize,
    pub limit: Limit,
    /// Open-loop requests per second (the whole run, all clients together).
    pub rate: Option<f64>,
}

/// What the run shows while it runs and writes beside the summary.
#[derive(Clone, Debug, Default)]
pub struct Reporting {
    pub progress: bool,
    /// `--csv FILE`: one row per second.
    pub csv: Option<PathBuf>,
}

/// One client of a run: issues one request (or one logical operation) per
/// call, and records its outcome in the run's [`Stats`].
pub trait Client: Send + 'static {
    /// Runs one operation timed from `start` (now, or its scheduled time in
    /// an open-loop run); false if it failed.
    fn op(&mut self, start: Instant) -> impl Future<Output = bool> + Send;
}

/// Hands out the run's requests: their number and, in open loop, their time.
pub struct Schedule {
    start: Instant,
    issued: AtomicU64,
    total: Option<u64>,
    deadline: Option<Instant>,
    rate: Option<f64>,
    stopped: AtomicBool,
}

impl Schedule {
    pub fn new(plan: &Plan) -> Schedule {
        let start = Instant::now();
        let (total, deadline) = match plan.limit {
            Limit::Total(n) => (Some(n), None),
            Limit::Duration(d) => (None, Some(start + d)),
        };
        Schedule {
            start,
            issued: AtomicU64::new(0),
            total,
            deadline,
            rate: plan.rate.filter(|r| *r > 0.0),
            stopped: AtomicBool::new(false),
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// Ends the run: no more requests are handed out.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// The start time of the next request (waiting for it in open loop), or
    /// `None` when the run is over.
    pub async fn next(&self) -> Option<Instant> {
        if self.stopped.load(Ordering::Relaxed) {
            return None;
        }
        let k = self.issued.fetch_add(1, Ordering::Relaxed);
        if self.total.is_some_and(|total| k >= total) {
            return None;
        }
        match self.rate {
            Some(rate) => {
                let at = self.start + Duration::from_secs_f64(k as f64 / rate);
                if self.deadline.is_some_and(|deadline| at >= deadline) {
                    return None;
                }
                tokio::time::sleep_until(at.into()).await;
                if self.stopped.load(Ordering::Relaxed) {
                    return None;
                }
                Some(at)
            }
            None => {
                let now = Instant::now();
                if self.deadline.is_some_and(|deadline| now >= deadline) {
                    return None;
                }
                Some(now)
            }
        }
    }
}

/// How a run went.
#[derive(Clone, Copy, Debug)]
pub struct RunOutcome {
    pub elapsed: Duration,
    /// Ended early by Ctrl-C.
    pub interrupted: bool,
}

/// Runs `clients` to the end of `plan`.
pub async fn run<C: Client>(
    plan: &Plan,
    stats: &Arc<Stats>,
    clients: Vec<C>,
    reporting: &Reporting,
) -> Result<RunOutcome, BenchError> {
    let csv = match &reporting.csv {
        Some(path) => Some(CsvSeries::create(path)?),
        None => None,
    };
    let schedule = Arc::new(Schedule::new(plan));
    let bar = progress_bar(plan, reporting.progress);
    let (done_tx, done_rx) = oneshot::channel();
    let reporter = tokio::spawn(report_progress(
        schedule.clone(),
        stats.clone(),
        bar.clone(),
        plan.limit,
        csv,
        done_rx,
    ));

    let mut tasks = JoinSet::new();
    for mut client in clients {
        let schedule = schedule.clone();
        tasks.spawn(async move {
            while let Some(start) = schedule.next().await {
                if !client.op(start).await {
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
            }
        });
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    let on_ctrl_c = {
        let schedule = schedule.clone();
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::Relaxed);
                schedule.stop();
            }
        })
    };
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            let error = OpError::Unexpected(format!("client task failed: {e}"));
            stats.record_errors("client", Role::Op, &error, 1);
        }
    }
    on_ctrl_c.abort();
    let elapsed = schedule.start().elapsed();
    let _ = done_tx.send(());
    let csv_result = reporter.await.unwrap_or(Ok(()));
    bar.finish_and_clear();
    csv_result?;
    Ok(RunOutcome {
        elapsed,
        interrupted: interrupted.load(Ordering::Relaxed),
    })
}

fn progress_bar(plan: &Plan, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let (len, template) = match plan.limit {
        Limit::Total(n) => (n, "{elapsed_precise} [{wide_bar}] {pos}/{len} {msg}"),
        Limit::Duration(d) => (
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            "{elapsed_precise} [{wide_bar}] {msg}",
        ),
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// Redraws the progress bar and writes a CSV row every second, until `done`.
async fn report_progress(
    schedule: Arc<Schedule>,
    stats: Arc<Stats>,
    bar: ProgressBar,
    limit: Limit,
    mut csv: Option<CsvSeries>,
    mut done: oneshot::Receiver<()>,
) -> Result<(), BenchError> {
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    let mut last_row = schedule.start();
    loop {
        let finished = tokio::select! {
            _ = ticker.tick() => false,
            _ = &mut done => true,
        };
        let progress = stats.progress();
        let elapsed = schedule.start().elapsed();
        match limit {
            Limit::Total(_) => bar.set_position(progress.ops + progress.errors),
            Limit::Duration(_) => {
                bar.set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
            }
        }
        let secs = elapsed.as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "{} ops, {:.0}/s, {} errors",
            progress.ops,
            progress.ops as f64 / secs,
            progress.errors
        ));
        if let Some(csv) = &mut csv {
            if finished || last_row.elapsed() >= Duration::from_secs(1) {
                let now = Instant::now();
                csv.row(elapsed, now - last_row, &stats)?;
                last_row = now;
            }
        }
        if finished {
            if let Some(csv) = csv {
                csv.finish()?;
            }
            return Ok(());
        }
    }
}

/// `--csv FILE`: per-second throughput and latency of the run's `Op`s.
struct CsvSeries {
    path: PathBuf,
    out: BufWriter<File>,
}

impl CsvSeries {
    const HEADER: &'static str =
        "elapsed_s,interval_s,ops,errors,ops_per_sec,p50_ms,p90_ms,p99_ms,p999_ms,max_ms";

    fn create(path: &Path) -> Result<CsvSeries, BenchError> {
        let file = File::create(path).map_err(|source| BenchError::WriteFile {
            path: path.to_owned(),
            source,
        })?;
        let mut series = CsvSeries {
            path: path.to_owned(),
            out: BufWriter::new(file),
        };
        series.line(Self::HEADER.to_owned())?;
        Ok(series)
    }

    fn row(
        &mut self,
        elapsed: Duration,
        interval: Duration,
        stats: &Stats,
    ) -> Result<(), BenchError> {
        let i = stats.take_interval();
        let secs = interval.as_secs_f64().max(1e-9);
        let l = i.latency;
        self.line(format!(
            "{:.3},{:.3},{},{},{:.1},{:.3},{:.3},{:.3},{:.3},{:.3}",
            elapsed.as_secs_f64(),
            secs,
            i.ops,
            i.errors,
            i.ops as f64 / secs,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max
        ))
    }

    fn line(&mut self, line: String) -> Result<(), BenchError> {
        writeln!(self.out, "{line}").map_err(|source| BenchError::WriteFile {
            path: self.path.clone(),
            source,
        })
    }

    fn finish(mut self) -> Result<(), BenchError> {
        self.out.flush().map_err(|source| BenchError::WriteFile {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(limit: Limit, rate: Option<f64>) -> Plan {
        Plan {
            clients: 1,
            limit,
            rate,
        }
    }

    #[tokio::test]
    async fn a_total_hands_out_exactly_that_many_requests() {
        let schedule = Schedule::new(&plan(Limit::Total(3), None));
        let mut n = 0;
        while schedule.next().await.is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
    }

    #[tokio::test]
    async fn open_loop_requests_start_at_their_scheduled_times() {
        let schedule = Schedule::new(&plan(Limit::Total(3), Some(100.0)));
        let start = schedule.start();
        let mut times = Vec::new();
        while let Some(at) = schedule.next().await {
            times.push(at - start);
        }
        assert_eq!(
            times,
            [0, 10, 20].map(Duration::from_millis).to_vec(),
            "request k is due at k / rate"
        );
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[tokio::test]
    async fn open_loop_with_a_duration_stops_scheduling_at_the_end() {
        let schedule = Schedule::new(&plan(
            Limit::Duration(Duration::from_millis(50)),
            Some(100.0),
        ));
        let mut n = 0;
        while schedule.next().await.is_some() {
            n += 1;
        }
        assert_eq!(n, 5, "requests due at 0, 10, 20, 30 and 40 ms");
    }

    #[tokio::test]
    async fn a_stopped_schedule_hands_out_nothing() {
        let schedule = Schedule::new(&plan(Limit::Total(10), None));
        schedule.stop();
        assert!(schedule.next().await.is_none());
    }

    struct Counting(Arc<Stats>);

    impl Client for Counting {
        async fn op(&mut self, start: Instant) -> bool {
            self.0.outcome("op", start, Ok(()))
        }
    }

    #[tokio::test]
    async fn run_writes_a_csv_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("series.csv");
        let stats = Arc::new(Stats::new().unwrap());
        let clients = (0..4).map(|_| Counting(stats.clone())).collect();
        let reporting = Reporting {
            progress: false,
            csv: Some(path.clone()),
        };
        let outcome = run(&plan(Limit::Total(100), None), &stats, clients, &reporting)
            .await
            .unwrap();
        assert!(!outcome.interrupted);
        assert_eq!(stats.progress().ops, 100);
        let csv = std::fs::read_to_string(&path).unwrap();
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some(CsvSeries::HEADER));
        let ops: u64 = lines
            .map(|l| l.split(',').nth(2).unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(ops, 100, "the rows add up to the run");
    }
}
