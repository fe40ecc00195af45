//! Watch event delivery over a run, and whether the server kept up with it.
//!
//! [`DeliveryLog`] holds the delivery latency (put sent → event received) of
//! every event in histograms per [`SLICE`] of the put's send time, so that
//! the latency of the puts sent early in a run can be set against that of
//! the puts sent late. [`judge`] is the "keeps up" rule of an open-loop run
//! (`watch --rate`): a server keeps up with a put rate when
//!
//! 1. every watcher got every event (none missing after the drain),
//! 2. the last event arrived at most [`DRAIN_LIMIT`] after the last put was
//!    answered, and
//! 3. delivery did not slow down over the run: the median latency of the
//!    puts sent in the last third of the run is at most [`GROWTH_FACTOR`] ×
//!    that of those sent in the first third, plus [`GROWTH_SLACK`] ("sent"
//!    is the put's scheduled time, which its latency counts from), and
//! 4. the puts kept the rate: successful puts per second over the run (from
//!    its start to the last put's answer) at least [`RATE_FLOOR`] × `--rate`.
//!
//! A server that delivers slower than the puts come queues events, and the
//! queue (so the latency) grows for as long as the run lasts: the last
//! third's median grows far past the first's, and the drain outlasts its
//! limit. A server that keeps up shows the same latency early and late,
//! whatever its level. The median, not the p99, is compared: a single stall
//! (an fsync, another process on the core) decides the p99 of a third of a
//! short run but not its median; the slack keeps jitter at millisecond
//! latencies from counting as growth. The p99s are reported beside it.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::error::BenchError;
use super::stats::{new_histogram, to_micros};

/// The span of send times one histogram of a [`DeliveryLog`] covers.
pub const SLICE: Duration = Duration::from_millis(100);
/// Longest time from the last put's answer to the last event's receipt.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(1);
/// How much the last third's median may exceed the first third's, as a factor...
pub const GROWTH_FACTOR: f64 = 2.0;
/// ... plus this much.
pub const GROWTH_SLACK: Duration = Duration::from_millis(10);
/// The share of the asked put rate the server must have taken.
pub const RATE_FLOOR: f64 = 0.95;

/// Delivery latencies by send time (stamps, in nanoseconds).
pub struct DeliveryLog {
    template: Histogram<u64>,
    /// Slice number (stamp / [`SLICE`]) → latencies in microseconds.
    slices: Mutex<BTreeMap<u64, Histogram<u64>>>,
}

impl DeliveryLog {
    pub fn new() -> Result<DeliveryLog, BenchError> {
        Ok(DeliveryLog {
            template: new_histogram()?,
            slices: Mutex::new(BTreeMap::new()),
        })
    }

    /// One event of a put sent at `stamp`, received `latency` after it.
    pub fn record(&self, stamp: u64, latency: Duration) {
        let slice = stamp / slice_nanos();
        let mut slices = self.slices.lock().unwrap_or_else(PoisonError::into_inner);
        slices
            .entry(slice)
            .or_insert_with(|| self.template.clone())
            .saturating_record(to_micros(latency));
    }

    /// The log as a watcher process sends it to its parent.
    pub fn export(&self) -> Vec<SliceCounts> {
        let slices = self.slices.lock().unwrap_or_else(PoisonError::into_inner);
        slices
            .iter()
            .map(|(slice, hist)| SliceCounts {
                slice: *slice,
                counts: hist
                    .iter_recorded()
                    .map(|v| (v.value_iterated_to(), v.count_at_value()))
                    .collect(),
            })
            .collect()
    }

    /// Adds a log [exported](DeliveryLog::export) by another process.
    pub fn merge(&self, exported: &[SliceCounts]) {
        let mut slices = self.slices.lock().unwrap_or_else(PoisonError::into_inner);
        for slice in exported {
            let hist = slices
                .entry(slice.slice)
                .or_insert_with(|| self.template.clone());
            for (micros, count) in &slice.counts {
                // Each value is its bucket's highest: it lands in the same bucket.
                let _ = hist.record_n(*micros, *count);
            }
        }
    }

    /// Every latency recorded, in one histogram.
    pub fn all(&self) -> Histogram<u64> {
        self.merged(|_| true)
    }

    /// The latency of the puts sent in the first and in the last third of
    /// the span of send times recorded (from the first event's slice to the
    /// last's: in open loop, the puts' scheduled times, however late they
    /// were sent or answered).
    pub fn thirds(&self) -> (Third, Third) {
        let span = {
            let slices = self.slices.lock().unwrap_or_else(PoisonError::into_inner);
            slices
                .keys()
                .next()
                .copied()
                .zip(slices.keys().next_back().copied())
        };
        let Some((first, last)) = span else {
            return (Third::default(), Third::default());
        };
        let (start, end) = (first * slice_nanos(), (last + 1) * slice_nanos());
        let third = (end - start) / 3;
        let (first_end, last_start) = (start + third, end - third);
        let slice_start = |slice: u64| slice * slice_nanos();
        let early = self.merged(|slice| slice_start(slice) < first_end);
        let late = self.merged(|slice| slice_start(slice) >= last_start);
        (Third::of(&early), Third::of(&late))
    }

    fn merged(&self, pick: impl Fn(u64) -> bool) -> Histogram<u64> {
        let slices = self.slices.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = self.template.clone();
        for (_, hist) in slices.iter().filter(|(slice, _)| pick(**slice)) {
            // Same bounds as the template: adding cannot fail.
            let _ = out.add(hist);
        }
        out
    }
}

/// One slice of a [`DeliveryLog`], exported: latencies (µs) and how many
/// events had each.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SliceCounts {
    pub slice: u64,
    pub counts: Vec<(u64, u64)>,
}

fn slice_nanos() -> u64 {
    SLICE.as_nanos() as u64
}

/// The delivery latency of a third of a run's puts.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Third {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Third {
    fn of(hist: &Histogram<u64>) -> Third {
        if hist.is_empty() {
            return Third::default();
        }
        let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
        Third {
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
        }
    }
}

/// The verdict of [`judge`], with what it was drawn from.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct KeepsUp {
    pub keeps_up: bool,
    /// Events some watcher never got.
    pub missing: u64,
    /// From the last put's answer to the last event (or to giving up).
    pub drain_secs: f64,
    /// Delivery latency of the puts sent in the first third of the run.
    pub first_third: Third,
    /// ... and in the last third.
    pub last_third: Third,
    /// Successful puts per second from the run's start to the last put's
    /// answer (the summary's ops/s also counts the drain).
    pub puts_per_sec: f64,
    /// Why it did not keep up (empty if it did).
    pub reasons: Vec<String>,
}

/// What [`judge`] judges: one open-loop run's figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunFigures {
    pub missing: u64,
    pub drain: Duration,
    pub first_third: Third,
    pub last_third: Third,
    /// Successful puts per second over the run.
    pub puts_per_sec: f64,
    /// `--rate`.
    pub rate: f64,
}

/// The keeps-up rule (see the module's documentation).
pub fn judge(run: &RunFigures) -> KeepsUp {
    let mut reasons = Vec::new();
    if run.missing > 0 {
        reasons.push(format!("{} events never arrived", run.missing));
    }
    if run.drain > DRAIN_LIMIT {
        reasons.push(format!(
            "the last events came {:.2} s after the last put (limit {:.2} s)",
            run.drain.as_secs_f64(),
            DRAIN_LIMIT.as_secs_f64()
        ));
    }
    let bound = GROWTH_FACTOR * run.first_third.p50_ms + GROWTH_SLACK.as_secs_f64() * 1000.0;
    if run.last_third.p50_ms > bound {
        reasons.push(format!(
            "delivery slowed down: median {:.2} ms in the last third against \
             {:.2} ms in the first (limit {bound:.2} ms)",
            run.last_third.p50_ms, run.first_third.p50_ms
        ));
    }
    if run.puts_per_sec < RATE_FLOOR * run.rate {
        reasons.push(format!(
            "the puts fell behind: {:.1}/s against {:.1}/s asked (floor {:.0}%)",
            run.puts_per_sec,
            run.rate,
            RATE_FLOOR * 100.0
        ));
    }
    KeepsUp {
        keeps_up: reasons.is_empty(),
        missing: run.missing,
        drain_secs: run.drain.as_secs_f64(),
        first_third: run.first_third,
        last_third: run.last_third,
        puts_per_sec: run.puts_per_sec,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn run(drain: Duration, first_p50_ms: f64, last_p50_ms: f64) -> RunFigures {
        let third = |p50_ms: f64| Third {
            p50_ms,
            p99_ms: 3.0 * p50_ms,
        };
        RunFigures {
            missing: 0,
            drain,
            first_third: third(first_p50_ms),
            last_third: third(last_p50_ms),
            puts_per_sec: 998.0,
            rate: 1000.0,
        }
    }

    #[test]
    fn steady_delivery_keeps_up_whatever_its_level() {
        assert!(judge(&run(50 * MS, 40.0, 70.0)).keeps_up);
        assert!(
            judge(&run(Duration::ZERO, 0.3, 9.0)).keeps_up,
            "within the slack"
        );
    }

    #[test]
    fn growing_latency_a_long_drain_missing_events_or_slow_puts_do_not() {
        let grew = judge(&run(50 * MS, 40.0, 95.0));
        assert!(!grew.keeps_up);
        assert!(grew.reasons[0].contains("slowed down"), "{grew:?}");
        assert!(!judge(&run(1500 * MS, 5.0, 5.0)).keeps_up);
        let lost = judge(&RunFigures {
            missing: 3,
            ..run(50 * MS, 5.0, 5.0)
        });
        assert!(!lost.keeps_up);
        assert_eq!(lost.reasons, ["3 events never arrived"]);
        let slow = judge(&RunFigures {
            puts_per_sec: 900.0,
            ..run(50 * MS, 5.0, 5.0)
        });
        assert!(!slow.keeps_up);
        assert!(slow.reasons[0].contains("fell behind"), "{slow:?}");
    }

    #[test]
    fn thirds_are_taken_by_send_time() {
        let log = DeliveryLog::new().unwrap();
        let second = 1_000_000_000u64;
        let start = 10 * second;
        // A 3 s run: 1 ms early, 50 ms late, 20 ms in between.
        for i in 0..100u64 {
            log.record(start + i * 10_000_000, MS);
            log.record(start + second + i * 10_000_000, 20 * MS);
            log.record(start + 2 * second + i * 10_000_000, 50 * MS);
        }
        let (first, last) = log.thirds();
        assert!((first.p50_ms - 1.0).abs() < 0.01, "{first:?}");
        assert!((last.p50_ms - 50.0).abs() < 0.1, "{last:?}");
        assert_eq!(log.all().len(), 300);
    }

    #[test]
    fn logs_of_other_processes_merge_slice_by_slice() {
        let (a, b, merged) = (
            DeliveryLog::new().unwrap(),
            DeliveryLog::new().unwrap(),
            DeliveryLog::new().unwrap(),
        );
        for i in 0..300u64 {
            a.record(i * 10_000_000, 2 * MS);
            b.record(i * 10_000_000, if i < 200 { 2 * MS } else { 30 * MS });
        }
        merged.merge(&a.export());
        merged.merge(&b.export());
        assert_eq!(merged.all().len(), 600);
        let (first, last) = merged.thirds();
        assert!((first.p99_ms - 2.0).abs() < 0.01, "{first:?}");
        // The last third: 100 events at 2 ms (a's), 100 at 30 ms (b's).
        assert!((last.p99_ms - 30.0).abs() < 0.1, "{last:?}");
        assert_eq!(merged.export(), {
            let both = DeliveryLog::new().unwrap();
            both.merge(&b.export());
            both.merge(&a.export());
            both.export()
        });
    }
}
