//! What a run measured: latency histograms per kind of request, errors by
//! kind, gRPC code and message, and plain counters; summed up in a
//! [`Summary`] (text for people, JSON for machines).
//!
//! Kinds have a [`Role`]: an `Op` is what the run issues and what throughput
//! counts (a put, a whole Kubernetes-style list, an optimistic update with its
//! retries); a `Detail` is measured beside it (one page of a list, one watch
//! event delivered, a lease grant) and shows in the per-kind rows only.
//!
//! Latencies are recorded in microseconds in HdrHistograms with 3 significant
//! digits, from 1 µs to 1 hour (longer is recorded as 1 hour). One lock
//! ([`Stats::inner`]) guards everything: a record is a few array increments,
//! far cheaper than the gRPC round trip it measures.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::cpu::ClientCpu;
use super::delivery::KeepsUp;
use super::error::{BenchError, OpError};

/// Longest latency a histogram holds (1 hour), in microseconds.
const MAX_MICROS: u64 = 3_600_000_000;

/// Whether a kind counts towards throughput.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Op,
    Detail,
}

struct Kind {
    role: Role,
    hist: Histogram<u64>,
    errors: u64,
}

/// The shared recorder of one run.
pub struct Stats {
    /// Every figure of the run; held only to record one sample or to take a
    /// snapshot.
    inner: Mutex<Inner>,
}

struct Inner {
    /// An empty histogram with the bounds every other one is cloned from.
    template: Histogram<u64>,
    kinds: BTreeMap<&'static str, Kind>,
    /// Every successful `Op` since the start.
    all_ops: Histogram<u64>,
    /// `Op`s since the last [`Stats::take_interval`].
    interval: Histogram<u64>,
    interval_errors: u64,
    ops: u64,
    errors: u64,
    error_counts: BTreeMap<(&'static str, String, String), u64>,
    counters: BTreeMap<&'static str, u64>,
}

/// The `Op`s of one interval (one CSV row).
pub struct Interval {
    pub ops: u64,
    pub errors: u64,
    pub latency: Latency,
}

/// Progress so far, for the progress bar.
pub struct Progress {
    pub ops: u64,
    pub errors: u64,
}

impl Stats {
    pub fn new() -> Result<Stats, BenchError> {
        let template = new_histogram()?;
        Ok(Stats {
            inner: Mutex::new(Inner {
                all_ops: template.clone(),
                interval: template.clone(),
                template,
                kinds: BTreeMap::new(),
                interval_errors: 0,
                ops: 0,
                errors: 0,
                error_counts: BTreeMap::new(),
                counters: BTreeMap::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while recording cannot leave the figures half-updated in a
        // way that matters more than losing them.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one success of `kind` that took `latency`.
    pub fn record(&self, kind: &'static str, role: Role, latency: Duration) {
        let micros = to_micros(latency);
        let mut inner = self.lock();
        inner.kind(kind, role).hist.saturating_record(micros);
        if role == Role::Op {
            inner.all_ops.saturating_record(micros);
            inner.interval.saturating_record(micros);
            inner.ops += 1;
        }
    }

    /// Records every latency of `hist` (microseconds, as [`new_histogram`]
    /// makes them) as a success of `kind`, a [`Role::Detail`].
    pub fn record_histogram(&self, kind: &'static str, hist: &Histogram<u64>) {
        let mut inner = self.lock();
        // Same bounds as every histogram here: adding cannot fail.
        let _ = inner.kind(kind, Role::Detail).hist.add(hist);
    }

    /// Records `n` failures of `kind` with the same error.
    pub fn record_errors(&self, kind: &'static str, role: Role, error: &OpError, n: u64) {
        if n == 0 {
            return;
        }
        let mut inner = self.lock();
        inner.kind(kind, role).errors += n;
        inner.errors += n;
        inner.interval_errors += n;
        *inner
            .error_counts
            .entry((kind, error.code(), error.message()))
            .or_default() += n;
    }

    /// Records errors counted by another process (a watcher process), by
    /// their code and message as it counted them.
    pub fn record_error_count(&self, kind: &'static str, role: Role, error: &ErrorCount) {
        if error.count == 0 {
            return;
        }
        let mut inner = self.lock();
        inner.kind(kind, role).errors += error.count;
        inner.errors += error.count;
        inner.interval_errors += error.count;
        *inner
            .error_counts
            .entry((kind, error.code.clone(), error.message.clone()))
            .or_default() += error.count;
    }

    /// Records the outcome of one `Op` that started at `start` (its scheduled
    /// time in open-loop runs); true if it succeeded.
    pub fn outcome(&self, kind: &'static str, start: Instant, result: Result<(), OpError>) -> bool {
        match result {
            Ok(()) => {
                self.record(kind, Role::Op, start.elapsed());
                true
            }
            Err(error) => {
                self.record_errors(kind, Role::Op, &error, 1);
                false
            }
        }
    }

    /// Adds `n` to the counter `name` (conflicts, retries, pages, ...).
    pub fn count(&self, name: &'static str, n: u64) {
        *self.lock().counters.entry(name).or_default() += n;
    }

    pub fn counter(&self, name: &'static str) -> u64 {
        self.lock().counters.get(name).copied().unwrap_or(0)
    }

    pub fn progress(&self) -> Progress {
        let inner = self.lock();
        Progress {
            ops: inner.ops,
            errors: inner.errors,
        }
    }

    /// The `Op`s since the previous call, and starts a new interval.
    pub fn take_interval(&self) -> Interval {
        let mut inner = self.lock();
        let latency = Latency::of(&inner.interval);
        let interval = Interval {
            ops: inner.interval.len(),
            errors: inner.interval_errors,
            latency,
        };
        inner.interval.reset();
        inner.interval_errors = 0;
        interval
    }

    /// Sums up the run, which took `elapsed`.
    pub fn summary(&self, command: &str, setup: &RunSetup, elapsed: Duration) -> Summary {
        let inner = self.lock();
        let secs = elapsed.as_secs_f64().max(1e-9);
        let kinds = inner
            .kinds
            .iter()
            .map(|(name, kind)| KindSummary {
                kind: (*name).to_owned(),
                role: match kind.role {
                    Role::Op => "op".to_owned(),
                    Role::Detail => "detail".to_owned(),
                },
                count: kind.hist.len(),
                errors: kind.errors,
                per_sec: kind.hist.len() as f64 / secs,
                latency_ms: Latency::of(&kind.hist),
            })
            .collect();
        let errors = inner
            .error_counts
            .iter()
            .map(|((kind, code, message), count)| ErrorCount {
                kind: (*kind).to_owned(),
                code: code.clone(),
                message: message.clone(),
                count: *count,
            })
            .collect();
        Summary {
            command: command.to_owned(),
            endpoints: setup.endpoints.clone(),
            conns: setup.conns,
            clients: setup.clients,
            rate: setup.rate,
            elapsed_secs: secs,
            ops: inner.ops,
            ops_per_sec: inner.ops as f64 / secs,
            errors: inner.errors,
            latency_ms: Latency::of(&inner.all_ops),
            kinds,
            error_counts: errors,
            counters: inner
                .counters
                .iter()
                .map(|(name, n)| ((*name).to_owned(), *n))
                .collect(),
            fsync: None,
            client_cpu: None,
            keeps_up: None,
            notes: Vec::new(),
        }
    }
}

/// An empty latency histogram in microseconds, 1 µs to 1 hour, 3 significant digits.
pub fn new_histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3)
        .map_err(|e| BenchError::Histogram(format!("{e:?}")))
}

/// `latency` in whole microseconds, at least 1 (the histograms' lowest value).
pub fn to_micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros())
        .unwrap_or(MAX_MICROS)
        .max(1)
}

impl Inner {
    fn kind(&mut self, name: &'static str, role: Role) -> &mut Kind {
        let template = &self.template;
        self.kinds.entry(name).or_insert_with(|| Kind {
            role,
            hist: template.clone(),
            errors: 0,
        })
    }
}

/// How a run was set up, as the summary reports it.
#[derive(Clone, Debug)]
pub struct RunSetup {
    pub endpoints: Vec<String>,
    pub conns: usize,
    pub clients: usize,
    pub rate: Option<f64>,
}

/// Latency percentiles in milliseconds (all 0 when nothing was recorded).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    fn of(hist: &Histogram<u64>) -> Latency {
        if hist.is_empty() {
            return Latency::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Latency {
            mean: hist.mean() / 1000.0,
            p50: ms(hist.value_at_quantile(0.50)),
            p90: ms(hist.value_at_quantile(0.90)),
            p99: ms(hist.value_at_quantile(0.99)),
            p999: ms(hist.value_at_quantile(0.999)),
            max: ms(hist.max()),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KindSummary {
    pub kind: String,
    /// "op" (counted in `ops`) or "detail".
    pub role: String,
    /// Successes.
    pub count: u64,
    pub errors: u64,
    pub per_sec: f64,
    pub latency_ms: Latency,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorCount {
    pub kind: String,
    pub code: String,
    pub message: String,
    pub count: u64,
}

/// The machine's fsync ceiling, and how close a one-client put run came.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FsyncCeiling {
    pub probe: super::fsync::FsyncReport,
    /// This run's ops/s as a fraction of the ceiling.
    pub fraction_of_ceiling: f64,
}

/// Everything a run measured; `--json` prints it as is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub command: String,
    pub endpoints: Vec<String>,
    pub conns: usize,
    pub clients: usize,
    /// Open-loop rate (requests/s), if the run had one.
    pub rate: Option<f64>,
    pub elapsed_secs: f64,
    /// Successful `Op`s.
    pub ops: u64,
    pub ops_per_sec: f64,
    /// Failed requests, streams and missing events, of every kind.
    pub errors: u64,
    /// Latency of every successful `Op`.
    pub latency_ms: Latency,
    pub kinds: Vec<KindSummary>,
    pub error_counts: Vec<ErrorCount>,
    pub counters: BTreeMap<String, u64>,
    pub fsync: Option<FsyncCeiling>,
    /// The load generator's own CPU over the run (runs on an etcd API endpoint).
    #[serde(default)]
    pub client_cpu: Option<ClientCpu>,
    /// Open-loop `watch` runs: whether delivery kept up with the puts.
    #[serde(default)]
    pub keeps_up: Option<KeepsUp>,
    pub notes: Vec<String>,
}

impl Summary {
    /// The per-kind row of `kind`, if the run recorded it.
    pub fn kind(&self, kind: &str) -> Option<&KindSummary> {
        self.kinds.iter().find(|k| k.kind == kind)
    }

    /// The human-readable summary.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let rate = match self.rate {
            Some(rate) => format!(", open loop at {rate}/s"),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "{}: {} clients over {} connections to {}{rate}",
            self.command,
            self.clients,
            self.conns,
            self.endpoints.join(",")
        );
        let _ = writeln!(
            out,
            "  {} ops in {:.2} s: {:.1} ops/s, {} errors",
            self.ops, self.elapsed_secs, self.ops_per_sec, self.errors
        );
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "  latency (ms): p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        );
        let _ = writeln!(
            out,
            "\n  {:<17} {:>6} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "kind",
            "role",
            "count",
            "errors",
            "per s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms"
        );
        for k in &self.kinds {
            let l = &k.latency_ms;
            let _ = writeln!(
                out,
                "  {:<17} {:>6} {:>9} {:>7} {:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                k.kind, k.role, k.count, k.errors, k.per_sec, l.p50, l.p90, l.p99, l.p999, l.max
            );
        }
        if !self.counters.is_empty() {
            let _ = writeln!(out, "\n  counters:");
            for (name, n) in &self.counters {
                let _ = writeln!(out, "    {name}: {n}");
            }
        }
        if !self.error_counts.is_empty() {
            let _ = writeln!(out, "\n  errors (kind, code, message: count):");
            for e in &self.error_counts {
                let _ = writeln!(
                    out,
                    "    {} {} {:?}: {}",
                    e.kind, e.code, e.message, e.count
                );
            }
        }
        if let Some(f) = &self.fsync {
            let _ = writeln!(
                out,
                "\n  fsync ceiling: {} writes of {} B + fdatasync in {}: mean {:.1} µs, p50 {:.1} µs, p99 {:.1} µs",
                f.probe.count,
                f.probe.block_size,
                f.probe.dir.display(),
                f.probe.mean_us,
                f.probe.p50_us,
                f.probe.p99_us
            );
            let _ = writeln!(
                out,
                "  one sequential durable writer: at most {:.0}/s (1 / mean fsync); this run: {:.1} ops/s = {:.1}% of it",
                f.probe.ceiling_per_sec,
                self.ops_per_sec,
                f.fraction_of_ceiling * 100.0
            );
        }
        if let Some(c) = &self.client_cpu {
            let _ = writeln!(
                out,
                "\n  client CPU ({} process{}): user {:.2} s + system {:.2} s = {:.2} s, {:.2} cores, {:.1} µs per op",
                c.processes,
                if c.processes == 1 { "" } else { "es" },
                c.user_secs,
                c.system_secs,
                c.cpu_secs,
                c.cores,
                c.us_per_op
            );
        }
        if let Some(k) = &self.keeps_up {
            let _ = writeln!(
                out,
                "  keeps up: {} ({:.1} puts/s; watch-event p50 / p99 {:.2} / {:.2} ms for puts sent in the \
                 first third, {:.2} / {:.2} ms in the last; drain {:.2} s; {} missing)",
                if k.keeps_up { "yes" } else { "no" },
                k.puts_per_sec,
                k.first_third.p50_ms,
                k.first_third.p99_ms,
                k.last_third.p50_ms,
                k.last_third.p99_ms,
                k.drain_secs,
                k.missing
            );
            for reason in &k.reasons {
                let _ = writeln!(out, "    {reason}");
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> RunSetup {
        RunSetup {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            conns: 1,
            clients: 1,
            rate: None,
        }
    }

    #[test]
    fn ops_count_towards_throughput_and_details_do_not() {
        let stats = Stats::new().unwrap();
        stats.record("put", Role::Op, Duration::from_millis(2));
        stats.record("put", Role::Op, Duration::from_millis(4));
        stats.record("watch-event", Role::Detail, Duration::from_millis(1));
        let s = stats.summary("put", &setup(), Duration::from_secs(2));
        assert_eq!((s.ops, s.errors), (2, 0));
        assert!((s.ops_per_sec - 1.0).abs() < 1e-9);
        assert_eq!(s.kind("watch-event").unwrap().count, 1);
        assert!((s.latency_ms.max - 4.0).abs() < 0.01);
    }

    #[test]
    fn errors_are_grouped_by_kind_code_and_message() {
        let stats = Stats::new().unwrap();
        let unavailable = OpError::Grpc(tonic::Status::unavailable("connection refused"));
        stats.record_errors("put", Role::Op, &unavailable, 1);
        stats.record_errors("put", Role::Op, &unavailable, 2);
        stats.record_errors(
            "put",
            Role::Op,
            &OpError::Timeout(Duration::from_secs(1)),
            1,
        );
        let s = stats.summary("put", &setup(), Duration::from_secs(1));
        assert_eq!(s.errors, 4);
        assert_eq!(s.error_counts.len(), 2);
        let first = &s.error_counts[0];
        assert_eq!((first.code.as_str(), first.count), ("ClientTimeout", 1));
        assert_eq!(s.error_counts[1].code, "Unavailable");
        assert_eq!(s.error_counts[1].count, 3);
        assert!(s.to_text().contains("connection refused"));
    }

    #[test]
    fn intervals_start_empty_after_each_take() {
        let stats = Stats::new().unwrap();
        stats.record("put", Role::Op, Duration::from_micros(500));
        let first = stats.take_interval();
        assert_eq!(first.ops, 1);
        assert!((first.latency.p50 - 0.5).abs() < 0.01);
        assert_eq!(stats.take_interval().ops, 0);
        assert_eq!(stats.progress().ops, 1);
    }
}
