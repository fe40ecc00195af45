//! Criterion benchmarks of the MVCC store's hot paths, on Kubernetes-like data:
//! 100,000 keys `/registry/pods/default/pod-NNNNNN` with 256-byte values.
//!
//! - `mvcc/put`: one put + `WriteTxn::end` overwriting a random key (apply
//!   cost, no fsync); `mvcc/put_commit_batch_100`: 100 such puts, then one
//!   `Store::commit` (a group commit, fsync included).
//! - `mvcc/range/*`: reads of a store whose keys have 3 revisions each: a
//!   single-key get, a list page (limit 500) and a count over the whole prefix,
//!   and the get and the page at an older revision.
//! - `mvcc/compact_schedule`: compacting that store at its latest revision and
//!   running the index pass to its end (200,000 old revisions queued);
//!   `mvcc/compact`: the same, then the deletions (200,000 removed). Each
//!   iteration needs a fresh store, so it runs 10 samples of one iteration
//!   each.
//!
//! Fixtures are built once per group, and only when a benchmark of the group
//! is selected. Run: `cargo bench -p oxetcd-benches --bench mvcc`.

use std::cell::OnceCell;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
mod common;

use common::{clone_store, key, prefix_end, put_all, store_with_keys, value, KeyPicker, PREFIX};
use oxetcd_storage::{KeyRange, RangeOptions, Store, INDEX_STEP_KEYS};
use tempfile::TempDir;

/// Keys in every fixture store.
const KEYS: usize = 100_000;
/// Bytes per value.
const VALUE_SIZE: usize = 256;
/// Revisions per key in the history fixture (range and compact).
const HISTORY_REVS: usize = 3;

/// A store and the temporary directory it lives in (removed on drop, after the
/// store is closed).
struct Fixture {
    store: Store,
    _dir: TempDir,
}

fn tempdir() -> TempDir {
    tempfile::tempdir().expect("create temp dir")
}

/// A closed store holding [`KEYS`] keys with [`HISTORY_REVS`] revisions each:
/// every key put once (one revision per put), then again, then again. Cloned
/// by the range and compact groups, so the history is loaded only once.
fn history_template() -> TempDir {
    let dir = tempdir();
    let store = store_with_keys(dir.path(), KEYS, VALUE_SIZE);
    for _ in 1..HISTORY_REVS {
        put_all(&store, KEYS, VALUE_SIZE);
    }
    dir
}

/// The revision at which the first load of a history store ended: every key
/// at version 1 (the latest is version [`HISTORY_REVS`]).
fn first_load_rev(store: &Store) -> i64 {
    store.current_revision() - ((HISTORY_REVS - 1) * KEYS) as i64
}

fn history_store(template: &OnceCell<TempDir>) -> Fixture {
    let dir = tempdir();
    let store = clone_store(template.get_or_init(history_template).path(), dir.path());
    Fixture { store, _dir: dir }
}

/// Every fixture key, built up front so that benchmarks time the store, not
/// formatting keys (a server gets them ready-made from the request).
fn all_keys() -> Vec<Bytes> {
    (0..KEYS).map(key).collect()
}

fn bench_put(c: &mut Criterion) {
    let cell = OnceCell::new();
    let fixture = || {
        cell.get_or_init(|| {
            let dir = tempdir();
            Fixture {
                store: store_with_keys(dir.path(), KEYS, VALUE_SIZE),
                _dir: dir,
            }
        })
    };
    let keys = all_keys();
    let new_value = value(VALUE_SIZE, 1);
    let mut picker = KeyPicker::new(KEYS);
    let mut put_one = |store: &Store| {
        let mut txn = store.write();
        txn.put(keys[picker.next_index()].clone(), new_value.clone(), 0);
        txn.end().expect("apply put")
    };

    let mut group = c.benchmark_group("mvcc");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(1));
    group.bench_function("put", |b| {
        let store = &fixture().store;
        b.iter(|| put_one(store));
    });
    // 100 puts take milliseconds with the fsync: fewer samples keep the
    // group short (criterion's linear sampling runs 1+2+...+n iterations).
    group.sample_size(20);
    group.throughput(Throughput::Elements(100));
    group.bench_function("put_commit_batch_100", |b| {
        let store = &fixture().store;
        // Flush, untimed, the backlog `put` left (it never commits), so that
        // every timed commit covers only its own 100 puts.
        let _ = store.commit().expect("commit");
        b.iter(|| {
            for _ in 0..100 {
                put_one(store);
            }
            store.commit().expect("commit")
        });
    });
    group.finish();
}

fn bench_range(c: &mut Criterion, template: &OnceCell<TempDir>) {
    let cell = OnceCell::new();
    let store = || &cell.get_or_init(|| history_store(template)).store;
    let keys = all_keys();
    let end = prefix_end(PREFIX.as_bytes());
    let prefix = KeyRange::new(PREFIX.as_bytes(), &end);
    let latest = RangeOptions::default();
    let page = RangeOptions {
        limit: 500,
        ..RangeOptions::default()
    };
    let count = RangeOptions {
        count_only: true,
        ..RangeOptions::default()
    };
    let mut picker = KeyPicker::new(KEYS);

    let mut group = c.benchmark_group("mvcc/range");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    group.bench_function("get", |b| {
        let store = store();
        b.iter(|| {
            store
                .range(KeyRange::new(&keys[picker.next_index()], b""), &latest)
                .expect("get")
        });
    });
    group.bench_function("list_limit_500", |b| {
        let store = store();
        let got = store.range(prefix, &page).expect("list");
        assert_eq!((got.kvs.len(), got.count), (500, KEYS as i64));
        b.iter(|| store.range(black_box(prefix), &page).expect("list"));
    });
    group.bench_function("count_only", |b| {
        let store = store();
        assert_eq!(
            store.range(prefix, &count).expect("count").count,
            KEYS as i64
        );
        b.iter(|| store.range(black_box(prefix), &count).expect("count"));
    });
    group.bench_function("get_old_rev", |b| {
        let store = store();
        let at_old = RangeOptions {
            rev: first_load_rev(store),
            ..latest
        };
        let got = store
            .range(KeyRange::new(&keys[7], b""), &at_old)
            .expect("get");
        assert_eq!(got.kvs[0].version, 1);
        b.iter(|| {
            store
                .range(KeyRange::new(&keys[picker.next_index()], b""), &at_old)
                .expect("get")
        });
    });
    group.bench_function("list_limit_500_old_rev", |b| {
        let store = store();
        let page_at_old = RangeOptions {
            rev: first_load_rev(store),
            ..page
        };
        let got = store.range(prefix, &page_at_old).expect("list");
        assert_eq!((got.kvs.len(), got.kvs[499].version), (500, 1));
        b.iter(|| store.range(black_box(prefix), &page_at_old).expect("list"));
    });
    group.finish();
}

/// The server's default --experimental-compaction-batch-limit (etcd's).
const SERVER_COMPACTION_BATCH: usize = 1000;

fn bench_compact(c: &mut Criterion, template: &OnceCell<TempDir>) {
    let removed = KEYS * (HISTORY_REVS - 1);
    let mut group = c.benchmark_group("mvcc");
    // Every iteration needs a fresh 300,000-revision store (a copy of the
    // template, reopened and warmed: seconds), so: 10 samples of one iteration
    // each, and criterion's warning that it cannot fit them in the target time
    // is expected.
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(removed as u64));
    // The index pass (in steps; each holds the write path for its keys).
    group.bench_function("compact_schedule", |b| {
        b.iter_batched(
            || history_store(template),
            |fixture| {
                let rev = fixture.store.current_revision();
                fixture.store.compact(rev).expect("compact");
                while fixture.store.compact_index_step(INDEX_STEP_KEYS) {}
                assert_eq!(fixture.store.compaction_backlog(), removed);
                fixture // dropped (store closed, dir removed) outside the timing
            },
            BatchSize::PerIteration,
        );
    });
    // The whole compaction: the index pass, then the deletions in the
    // server's batches (each of which holds the write path alone).
    group.bench_function("compact", |b| {
        b.iter_batched(
            || history_store(template),
            |fixture| {
                let rev = fixture.store.current_revision();
                fixture.store.compact(rev).expect("compact");
                fixture
                    .store
                    .finish_compaction(SERVER_COMPACTION_BATCH)
                    .expect("remove compacted");
                fixture
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_put(&mut c);
    let template = OnceCell::new();
    bench_range(&mut c, &template);
    bench_compact(&mut c, &template);
    c.final_summary();
}
