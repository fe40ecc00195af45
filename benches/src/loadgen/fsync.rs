//! `oxetcd-bench fsync-probe`: this machine's fsync latency, the physical
//! limit under every durable write. The probe appends `block_size` bytes to a
//! fresh file and calls `File::sync_data` (fdatasync), `count` times, as a
//! write-ahead log does for each durable write. One sequential durable writer
//! (one client, each write acknowledged after its own fsync) cannot exceed
//! 1 / (mean fsync latency) writes per second; group commit (many requests per
//! fsync) is how a server gets past it with many clients.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::error::BenchError;

/// What the probe measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FsyncReport {
    pub dir: PathBuf,
    pub count: u64,
    pub block_size: usize,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// 1 / mean latency: the most durable writes per second one sequential
    /// writer can make.
    pub ceiling_per_sec: f64,
}

impl FsyncReport {
    pub fn to_text(&self) -> String {
        format!(
            "fsync probe: {} writes of {} B, each followed by fdatasync, in {}\n  \
             latency (µs): mean {:.1}  p50 {:.1}  p99 {:.1}  max {:.1}\n  \
             ceiling for one sequential durable writer (1 / mean): {:.0} writes/s\n",
            self.count,
            self.block_size,
            self.dir.display(),
            self.mean_us,
            self.p50_us,
            self.p99_us,
            self.max_us,
            self.ceiling_per_sec
        )
    }
}

/// Runs the probe in a temporary file inside `dir` (removed afterwards).
/// Blocking: call it from `spawn_blocking` inside async code.
pub fn probe(dir: &Path, count: u64, block_size: usize) -> Result<FsyncReport, BenchError> {
    let io_err = |source| BenchError::Fsync {
        dir: dir.to_owned(),
        source,
    };
    if count == 0 || block_size == 0 {
        return Err(BenchError::Usage(
            "fsync probe: --count and --block-size must be positive".into(),
        ));
    }
    let tmp = tempfile::Builder::new()
        .prefix("oxetcd-fsync-probe-")
        .tempdir_in(dir)
        .map_err(io_err)?;
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(tmp.path().join("wal"))
        .map_err(io_err)?;
    let block = vec![0x5au8; block_size];
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| BenchError::Histogram(format!("{e:?}")))?;
    // One unmeasured write first: creating the file's first extent costs more
    // than the appends that follow.
    file.write_all(&block).map_err(io_err)?;
    file.sync_data().map_err(io_err)?;
    for _ in 0..count {
        let start = Instant::now();
        file.write_all(&block).map_err(io_err)?;
        file.sync_data().map_err(io_err)?;
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        hist.saturating_record(nanos.max(1));
    }
    let us = |nanos: u64| nanos as f64 / 1000.0;
    let mean_us = hist.mean() / 1000.0;
    Ok(FsyncReport {
        dir: dir.to_owned(),
        count,
        block_size,
        mean_us,
        p50_us: us(hist.value_at_quantile(0.5)),
        p99_us: us(hist.value_at_quantile(0.99)),
        max_us: us(hist.max()),
        ceiling_per_sec: if mean_us > 0.0 { 1e6 / mean_us } else { 0.0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_measures_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let report = probe(dir.path(), 5, 512).unwrap();
        assert_eq!(report.count, 5);
        assert!(report.mean_us > 0.0 && report.ceiling_per_sec > 0.0);
        assert!(report.p50_us <= report.max_us);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(report.to_text().contains("writes/s"));
    }

    #[test]
    fn probe_refuses_zero_counts() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            probe(dir.path(), 0, 512),
            Err(BenchError::Usage(_))
        ));
    }
}
