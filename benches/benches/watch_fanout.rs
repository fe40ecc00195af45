//! Criterion benchmarks of watch fan-out: the write path hands one revision's
//! events to the hub (`WatchHub::notify`), and every stream that should get
//! them receives its delivery. One watcher per stream, as in `oxetcd-bench
//! watch` with 1,000 streams.
//!
//! - `watch_fanout/prefix/{1,100,1000,10000}`: every watcher watches one
//!   prefix; each iteration is one put under it, delivered to all N streams.
//!   Throughput counts deliveries (N per iteration).
//! - `watch_fanout/keys/{N}`: N watchers on N distinct single keys; each put
//!   reaches one of them. Throughput counts that one delivery: with watchers
//!   indexed by key, it should not fall as N grows.
//! - `watch_fanout/ranges/{N}`: N watchers on N distinct, disjoint prefixes
//!   (one per namespace, as per-namespace Kubernetes informers); each put
//!   reaches one of them. Matching must not scan every range.
//!
//! Events are made up (one put of a 256-byte value each, at the next
//! revision) rather than written to the store: this times the hub, not MVCC.
//! Watchers never fall behind here, so history is never read.
//!
//! Run: `cargo bench -p oxetcd-benches --bench watch_fanout`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
mod common;

use common::{open_store, prefix_end, KeyPicker};
use oxetcd_proto::mvccpb::event::EventType;
use oxetcd_proto::mvccpb::{Event, KeyValue};
use oxetcd_watch::{DeliveryKind, WatchConfig, WatchHub, WatchSpec, WatchStream};
use tempfile::TempDir;
use tokio::runtime::Runtime;

const WATCHERS: [usize; 4] = [1, 100, 1_000, 10_000];
const VALUE_SIZE: usize = 256;
const PREFIX: &str = "/registry/pods/";

/// What the N watchers watch.
#[derive(Clone, Copy)]
enum Shape {
    /// All of them: one prefix.
    Prefix,
    /// Watcher i: the key of pod i.
    Keys,
    /// Watcher i: the prefix of namespace i.
    Ranges,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Prefix => "prefix",
            Shape::Keys => "keys",
            Shape::Ranges => "ranges",
        }
    }

    fn spec(self, i: usize) -> WatchSpec {
        let (key, range_end) = match self {
            Shape::Prefix => (PREFIX.to_string(), prefix_end(PREFIX.as_bytes())),
            Shape::Keys => (pod_key(i), Bytes::new()),
            Shape::Ranges => {
                let ns = namespace(i);
                let end = prefix_end(ns.as_bytes());
                (ns, end)
            }
        };
        WatchSpec {
            key: Bytes::from(key),
            range_end,
            ..Default::default()
        }
    }

    /// The key a put aimed at watcher i writes.
    fn key_for(self, i: usize) -> String {
        match self {
            Shape::Prefix | Shape::Keys => pod_key(i),
            Shape::Ranges => format!("{}pod", namespace(i)),
        }
    }
}

fn namespace(i: usize) -> String {
    format!("{PREFIX}ns-{i:06}/")
}

fn pod_key(i: usize) -> String {
    format!("{PREFIX}default/pod-{i:06}")
}

/// A hub over an empty store with N streams of one watcher each.
struct Fixture {
    rt: Runtime,
    hub: Arc<WatchHub>,
    streams: Vec<WatchStream>,
    /// The key a put aimed at watcher i writes, made up front.
    keys: Vec<Bytes>,
    /// The revision of the next made-up event.
    next_rev: i64,
    value: Bytes,
    _dir: TempDir,
}

impl Fixture {
    fn new(shape: Shape, n: usize) -> Self {
        let dir = tempfile::tempdir().expect("create temp dir");
        let store = Arc::new(open_store(dir.path()));
        let next_rev = store.current_revision() + 1;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let config = WatchConfig {
            stream_queue: 64,
            ..WatchConfig::default()
        };
        let hub = rt.block_on(async { WatchHub::start(store, config) });
        let mut streams = Vec::with_capacity(n);
        for i in 0..n {
            let stream = hub.open_stream();
            stream.control().create(shape.spec(i));
            streams.push(stream);
        }
        let mut fixture = Self {
            rt,
            hub,
            streams,
            keys: (0..n).map(|i| Bytes::from(shape.key_for(i))).collect(),
            next_rev,
            value: Bytes::from(vec![b'v'; VALUE_SIZE]),
            _dir: dir,
        };
        // Every stream's `Created` first.
        let streams = &mut fixture.streams;
        fixture.rt.block_on(async {
            for s in streams.iter_mut() {
                let created = s.next().await.expect("stream open");
                assert_eq!(created.kind, DeliveryKind::Created);
            }
        });
        fixture
    }

    /// One put of watcher `i`'s key at the next revision, through the hub to
    /// `streams` (those that must get it).
    fn put(&mut self, i: usize, streams: std::ops::Range<usize>) {
        let rev = self.next_rev;
        self.next_rev += 1;
        let event = Event {
            r#type: EventType::Put as i32,
            kv: Some(KeyValue {
                key: self.keys[i].clone(),
                create_revision: 1,
                mod_revision: rev,
                version: rev,
                value: self.value.clone(),
                lease: 0,
            }),
            prev_kv: None,
        };
        self.hub.notify(std::slice::from_ref(&event));
        let streams = &mut self.streams[streams];
        self.rt.block_on(async {
            for s in streams {
                let d = s.next().await.expect("stream open");
                debug_assert!(matches!(d.kind, DeliveryKind::Events(_)));
            }
        });
    }
}

fn bench_shape(c: &mut Criterion, shape: Shape) {
    let mut group = c.benchmark_group(format!("watch_fanout/{}", shape.name()));
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for n in WATCHERS {
        let delivered = match shape {
            Shape::Prefix => n,
            Shape::Keys | Shape::Ranges => 1,
        };
        group.throughput(Throughput::Elements(delivered as u64));
        // Made once per benchmark (criterion calls the routine per sample),
        // and only if the benchmark is selected.
        let mut fixture = None;
        let mut picker = KeyPicker::new(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let fixture = fixture.get_or_insert_with(|| Fixture::new(shape, n));
            b.iter(|| {
                let i = picker.next_index();
                match shape {
                    Shape::Prefix => fixture.put(i, 0..n),
                    Shape::Keys | Shape::Ranges => fixture.put(i, i..i + 1),
                }
            });
        });
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    for shape in [Shape::Prefix, Shape::Keys, Shape::Ranges] {
        bench_shape(&mut c, shape);
    }
    c.final_summary();
}
