//! What a checker cost: its wall time and the tester's peak memory while it
//! ran, so that the checkers' cost on long histories is stated in every
//! report rather than guessed.
//!
//! Memory is the process' peak resident set (`VmHWM`), reset before each
//! checker through `/proc/self/clear_refs` (Linux 4.0 and later); the
//! history itself is part of it. Where the reset is refused, the peak is
//! left out rather than reported for the wrong span.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::Verdict;

/// One checker's cost on one history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckCost {
    pub seconds: f64,
    /// Resident memory when the checker started.
    pub rss_before_bytes: Option<u64>,
    /// The peak resident memory while it ran.
    pub peak_rss_bytes: Option<u64>,
}

impl CheckCost {
    /// `1.2 s, peak RSS 310 MB (+120 MB)`.
    pub fn describe(&self) -> String {
        let mb = |bytes: u64| bytes / 1_000_000;
        match (self.rss_before_bytes, self.peak_rss_bytes) {
            (Some(before), Some(peak)) => format!(
                "{:.1} s, peak RSS {} MB (+{} MB)",
                self.seconds,
                mb(peak),
                mb(peak.saturating_sub(before))
            ),
            _ => format!("{:.1} s", self.seconds),
        }
    }
}

/// Runs `checker`, and records what it cost in its verdict.
pub fn measured(checker: impl FnOnce() -> Verdict) -> Verdict {
    let reset = reset_peak();
    let rss_before_bytes = status_field("VmRSS:");
    let started = Instant::now();
    let mut verdict = checker();
    let seconds = started.elapsed().as_secs_f64();
    verdict.cost = Some(CheckCost {
        seconds,
        rss_before_bytes,
        peak_rss_bytes: reset.then(|| status_field("VmHWM:")).flatten(),
    });
    verdict
}

/// Resets the process' peak resident set to its current one.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A `kB` field of /proc/self/status, in bytes.
fn status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_kb_field(&status, name)
}

fn parse_kb_field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(name))?;
    let kb: u64 = line[name.len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_counts_what_the_checker_held() {
        let verdict = measured(|| {
            // 64 MiB, touched so that it is resident.
            let held = vec![1u8; 64 << 20];
            std::hint::black_box(&held);
            Verdict::from_anomalies("c", String::new(), Vec::new(), false)
        });
        let cost = verdict.cost.expect("measured");
        let (before, peak) = (cost.rss_before_bytes.unwrap(), cost.peak_rss_bytes.unwrap());
        assert!(peak >= before + (60 << 20), "{before} -> {peak}");
        assert!(cost.describe().contains("peak RSS"));
    }

    #[test]
    fn status_fields_are_read_in_bytes() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t1024 kB\n";
        assert_eq!(parse_kb_field(status, "VmHWM:"), Some(2 << 20));
        assert_eq!(parse_kb_field(status, "VmRSS:"), Some(1 << 20));
        assert_eq!(parse_kb_field(status, "VmSwap:"), None);
    }
}
