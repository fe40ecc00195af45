//! This machine's fsync latency: append 4 KiB to a file, then `File::sync_data`
//! (fdatasync), as a write-ahead log does for each durable write. One sequential
//! durable writer cannot exceed 1 / this latency commits per second; group
//! commit (many requests per fsync) is how a store gets past it.
//!
//! Run: `cargo bench -p oxetcd-benches --bench fsync`.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

use criterion::{Criterion, Throughput};

fn bench_fsync(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("create temp dir");
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(dir.path().join("wal"))
        .expect("create file");
    let block = [0x5au8; 4096];

    let mut group = c.benchmark_group("fsync");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    group.bench_function("write_4k_fsync", |b| {
        b.iter(|| {
            file.write_all(&block).expect("write");
            file.sync_data().expect("fdatasync");
        });
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_fsync(&mut c);
    c.final_summary();
}
