//! Criterion benchmarks of the Raft log (`oxetcd_raft::Wal`): appending
//! entries and waiting until they are durable, as openraft does for every
//! proposal.
//!
//! - `wal/append_one`: one entry, one `append`, then wait for its fsync. The
//!   floor of a single sequential writer.
//! - `wal/concurrent_appends/{1,16,256}`: N `append` calls of one entry each,
//!   queued back to back (as N concurrent proposals reach the log), then wait
//!   for all of them. Group commit should cover them with a few fsyncs, so
//!   appends per second should grow with N. After each benchmark the WAL's own
//!   counters give the fsyncs per iteration (printed to stderr).
//!
//! Entries carry a [`ENTRY_BYTES`]-byte request, about the size of an encoded
//! put of a 256-byte value. Each benchmark appends to a fresh WAL in `/tmp`.
//!
//! Run: `cargo bench -p oxetcd-benches --bench wal`.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use openraft::{CommittedLeaderId, EntryPayload};
use oxetcd_raft::{Flushed, LogId, Request, WalOptions, WalStats};

/// The WAL over opaque payloads: the write path's cost without a command format.
type Wal = oxetcd_raft::Wal<Request>;
type Entry = oxetcd_raft::Entry<Request>;
use tempfile::TempDir;

/// Bytes of each entry's request.
const ENTRY_BYTES: usize = 300;

/// Appends in one batch, as concurrent proposals.
const BATCHES: [u64; 3] = [1, 16, 256];

/// A WAL in a fresh directory and the index of its next entry.
struct Log {
    wal: Wal,
    next_index: u64,
    request: Request,
    _dir: TempDir,
}

impl Log {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("create temp dir");
        let wal = Wal::open(dir.path(), WalOptions::default()).expect("open WAL");
        Self {
            wal,
            next_index: 1,
            request: Request::from(vec![0x5a; ENTRY_BYTES]),
            _dir: dir,
        }
    }

    fn entry(&mut self) -> Entry {
        let index = self.next_index;
        self.next_index += 1;
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(self.request.clone()),
        }
    }

    /// Queues one append of one entry; durable when the result completes.
    fn append(&mut self) -> Flushed {
        let entry = self.entry();
        self.wal.append([entry]).expect("append")
    }
}

/// Prints how many appends each fsync covered over a whole benchmark
/// (warm-up included).
fn report(name: &str, before: WalStats, after: WalStats, appends: u64) {
    let fsyncs = after.fsyncs - before.fsyncs;
    if fsyncs > 0 {
        eprintln!(
            "{name}: {appends} appends, {fsyncs} fsyncs, {:.1} appends per fsync",
            appends as f64 / fsyncs as f64
        );
    }
}

fn bench_wal(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    // One WAL per benchmark, made outside the routine: criterion calls the
    // routine for every sample.
    group.throughput(Throughput::Elements(1));
    let mut log = Log::new();
    let before = log.wal.stats();
    group.bench_function("append_one", |b| {
        b.iter(|| log.append().wait().expect("fsync"));
    });
    report(
        "wal/append_one",
        before,
        log.wal.stats(),
        log.next_index - 1,
    );

    for n in BATCHES {
        group.throughput(Throughput::Elements(n));
        let mut log = Log::new();
        let before = log.wal.stats();
        let mut pending = Vec::with_capacity(n as usize);
        group.bench_with_input(BenchmarkId::new("concurrent_appends", n), &n, |b, &n| {
            b.iter(|| {
                pending.extend((0..n).map(|_| log.append()));
                for flushed in pending.drain(..) {
                    flushed.wait().expect("fsync");
                }
            });
        });
        let name = format!("wal/concurrent_appends/{n}");
        report(&name, before, log.wal.stats(), log.next_index - 1);
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_wal(&mut c);
    c.final_summary();
}
