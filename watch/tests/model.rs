//! The watch hub against a model of MVCC history, through its public API only.
//!
//! `every_watcher_sees_exactly_mvcc_history` drives random operations against a
//! real store and hub: commits of one or more txns (puts and deletes of several
//! keys at one revision, range deletes), compactions, watch creations (key,
//! prefix, range and from-key watches; start revision 0, past, compacted, at the
//! compaction, current, future; NOPUT / NODELETE; progress_notify),
//! cancellations, progress requests and stalls (a stream not read for a while
//! behind a tiny `stream_queue`, so its watchers fall back to catch-up). A plain
//! model of the ops says which events each watcher is owed, and every stream's
//! deliveries are checked against it:
//!
//! - ordered, unique, gap-free and exact: the events a watcher got are always a
//!   prefix of what the model owes it (every change in its range at or after
//!   its start revision, minus filtered types), and all of it once the hub is
//!   quiet;
//! - atomic: a delivery holds whole revisions only;
//! - a start revision below the compaction gives `Compacted` and nothing else;
//!   a watcher behind a later compaction may be cut off by `Compacted(c)` only
//!   with `c` a compaction that really passed the revision it was owed;
//! - nothing after `Canceled`, and `Canceled` only for a watch that was canceled;
//! - progress: a `Progress` at revision R comes after every owed event <= R of
//!   the watchers it covers and before any later one;
//! - resumable: a watcher created at (last revision seen + 1) gets exactly the
//!   rest.
//!
//! The streams are read together at the end (as a client reads all its
//! streams), so the property test checks correctness, not that one stream
//! never waits for another; that, and a progress request that must be answered
//! after its lagging watcher is canceled, have tests of their own.
//!
//! Then one test per etcd watch bug (etcd-api.md, "Watch") that applies to a
//! single node, named after it. ("Watch going back in time after a partition"
//! needs several members: not here.)

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxetcd_proto::mvccpb::event::EventType;
use oxetcd_proto::mvccpb::{Event, KeyValue};
use oxetcd_storage::{KeyRange, SledBackend, Store};
use oxetcd_watch::{
    Delivery, DeliveryKind, WatchConfig, WatchHub, WatchSpec, WatchStream, INVALID_WATCH_ID,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// The model of MVCC history.

/// One change of a txn. A txn never touches a key twice (etcd refuses that).
#[derive(Clone, Debug)]
enum Change {
    Put(&'static str, String),
    Delete(&'static str),
    /// Every live key in `[start, end)` (end "\0": every key >= start).
    DeleteRange(&'static str, &'static str),
}

fn in_range(start: &[u8], end: &[u8], k: &[u8]) -> bool {
    if end.is_empty() {
        k == start
    } else if end == b"\0" {
        k >= start
    } else {
        k >= start && k < end
    }
}

fn rev_of(e: &Event) -> i64 {
    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

fn is_put(e: &Event) -> bool {
    e.r#type == EventType::Put as i32
}

/// What the store must hold: every change ever made, as watch events.
#[derive(Clone, Debug)]
struct Model {
    /// The store's revision (an empty store is at 1).
    rev: i64,
    compacted: i64,
    compactions: Vec<i64>,
    live: BTreeMap<Bytes, KeyValue>,
    events: Vec<Event>,
}

impl Model {
    fn new() -> Self {
        Self {
            rev: 1,
            compacted: 0,
            compactions: Vec::new(),
            live: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    /// Applies one txn; returns its events (none: it created no revision).
    fn apply(&mut self, changes: &[Change]) -> Vec<Event> {
        let rev = self.rev + 1;
        let mut out = Vec::new();
        let delete = |model: &mut Self, key: Bytes, out: &mut Vec<Event>| {
            if model.live.remove(&key).is_some() {
                out.push(Event {
                    r#type: EventType::Delete as i32,
                    kv: Some(KeyValue {
                        key,
                        mod_revision: rev,
                        ..KeyValue::default()
                    }),
                    prev_kv: None,
                });
            }
        };
        for c in changes {
            match c {
                Change::Put(k, v) => {
                    let key = Bytes::from_static(k.as_bytes());
                    let (create_revision, version) = match self.live.get(&key) {
                        Some(kv) => (kv.create_revision, kv.version + 1),
                        None => (rev, 1),
                    };
                    let kv = KeyValue {
                        key: key.clone(),
                        create_revision,
                        mod_revision: rev,
                        version,
                        value: Bytes::from(v.clone()),
                        lease: 0,
                    };
                    self.live.insert(key, kv.clone());
                    out.push(Event {
                        r#type: EventType::Put as i32,
                        kv: Some(kv),
                        prev_kv: None,
                    });
                }
                Change::Delete(k) => delete(self, Bytes::from_static(k.as_bytes()), &mut out),
                Change::DeleteRange(s, e) => {
                    let keys: Vec<Bytes> = self
                        .live
                        .keys()
                        .filter(|k| in_range(s.as_bytes(), e.as_bytes(), k))
                        .cloned()
                        .collect();
                    for key in keys {
                        delete(self, key, &mut out);
                    }
                }
            }
        }
        if !out.is_empty() {
            self.rev = rev;
            self.events.extend(out.iter().cloned());
        }
        out
    }

    /// Every event `spec` is owed from revision `start` on.
    fn owed(&self, spec: &WatchSpec, start: i64) -> Vec<Event> {
        self.events
            .iter()
            .filter(|e| {
                let kv = e.kv.as_ref().unwrap();
                kv.mod_revision >= start
                    && in_range(&spec.key, &spec.range_end, &kv.key)
                    && if is_put(e) {
                        !spec.no_put
                    } else {
                        !spec.no_delete
                    }
            })
            .cloned()
            .collect()
    }
}

// ---------------------------------------------------------------------------
// A store, a hub and the model, kept in step.

struct Fixture {
    _dir: Option<tempfile::TempDir>,
    store: Arc<Store>,
    hub: Arc<WatchHub>,
    model: Model,
}

fn open_store(path: &Path) -> Store {
    Store::open(Box::new(SledBackend::open(path, 8 << 20).unwrap())).unwrap()
}

impl Fixture {
    /// A fresh store in a temp dir. Must run inside a tokio runtime.
    fn new(config: WatchConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut f = Self::open(dir.path(), Model::new(), config);
        f._dir = Some(dir);
        f
    }

    /// The store in `path` (whose history `model` describes) in a fresh hub.
    fn open(path: &Path, model: Model, config: WatchConfig) -> Self {
        let store = Arc::new(open_store(path));
        let hub = WatchHub::start(store.clone(), config);
        Self {
            _dir: None,
            store,
            hub,
            model,
        }
    }

    /// Applies `txns` (each its own revision), commits them at once, checks the
    /// store agrees with the model, and notifies the hub as the write path does.
    fn commit(&mut self, txns: &[Vec<Change>]) {
        let mut want = Vec::new();
        for changes in txns {
            let mut txn = self.store.write();
            for c in changes {
                match c {
                    Change::Put(k, v) => {
                        txn.put(Bytes::from_static(k.as_bytes()), Bytes::from(v.clone()), 0);
                    }
                    Change::Delete(k) => {
                        txn.delete_range(KeyRange::new(k.as_bytes(), b""));
                    }
                    Change::DeleteRange(s, e) => {
                        txn.delete_range(KeyRange::new(s.as_bytes(), e.as_bytes()));
                    }
                }
            }
            let rev = txn.end().unwrap();
            want.extend(self.model.apply(changes));
            assert_eq!(
                rev, self.model.rev,
                "store and model disagree on the revision"
            );
        }
        let committed = self.store.commit().unwrap();
        assert_eq!(committed.rev, self.model.rev);
        assert_eq!(committed.events, want, "store and model disagree on events");
        self.hub.notify(&committed.events);
    }

    fn put(&mut self, k: &'static str, v: &str) -> i64 {
        self.commit(&[vec![Change::Put(k, v.to_string())]]);
        self.model.rev
    }

    fn delete(&mut self, k: &'static str) -> i64 {
        self.commit(&[vec![Change::Delete(k)]]);
        self.model.rev
    }

    fn compact(&mut self, rev: i64) {
        self.store.compact(rev).unwrap();
        self.model.compacted = rev;
        self.model.compactions.push(rev);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn spec(key: &str, end: &str, start: i64) -> WatchSpec {
    WatchSpec {
        key: Bytes::copy_from_slice(key.as_bytes()),
        range_end: Bytes::copy_from_slice(end.as_bytes()),
        start_revision: start,
        ..WatchSpec::default()
    }
}

/// The next delivery if one is queued, without waiting.
fn try_next(s: &mut WatchStream) -> Option<Delivery> {
    let mut next = pin!(tokio::task::unconstrained(s.next()));
    match next.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(d) => Some(d.expect("stream open")),
        Poll::Pending => None,
    }
}

async fn next(s: &mut WatchStream) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("a delivery within 10 s")
        .expect("stream open")
}

/// Reads `s` until a stream progress at `rev` or later (the hub answers only
/// once every watcher of the stream has everything up to it); returns all read.
async fn read_until_progress(s: &mut WatchStream, rev: i64) -> Vec<Delivery> {
    settle_all(&mut [s], rev).await.pop().unwrap()
}

/// `read_until_progress` for several streams read at once, as a client with
/// several streams reads them all.
async fn settle_all(streams: &mut [&mut WatchStream], rev: i64) -> Vec<Vec<Delivery>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut logs = vec![Vec::new(); streams.len()];
    let mut done = vec![false; streams.len()];
    for s in streams.iter() {
        s.control().request_progress();
    }
    while done.contains(&false) {
        let mut idle = true;
        for (i, s) in streams.iter_mut().enumerate() {
            while let Some(d) = try_next(s) {
                idle = false;
                let answer = d.watch_id == INVALID_WATCH_ID && d.kind == DeliveryKind::Progress;
                let at = d.revision;
                logs[i].push(d);
                if answer && !done[i] {
                    if at >= rev {
                        done[i] = true;
                    } else {
                        s.control().request_progress();
                    }
                }
            }
        }
        if Instant::now() > deadline {
            let pending: Vec<String> = (0..streams.len())
                .filter(|i| !done[*i])
                .map(|i| format!("stream {i} read {}", brief_all(&logs[i])))
                .collect();
            panic!(
                "no progress at revision {rev} within 10 s: {}",
                pending.join("; ")
            );
        }
        if idle {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    logs
}

fn ev_brief(e: &Event) -> String {
    let kv = e.kv.as_ref().unwrap();
    format!(
        "{}{}@{}",
        if is_put(e) { "put " } else { "del " },
        String::from_utf8_lossy(&kv.key),
        kv.mod_revision
    )
}

fn evs_brief(evs: &[Event]) -> String {
    let v: Vec<String> = evs.iter().map(ev_brief).collect();
    format!("[{}]", v.join(", "))
}

fn brief(d: &Delivery) -> String {
    let kind = match &d.kind {
        DeliveryKind::Events(evs) => evs_brief(evs),
        other => format!("{other:?}"),
    };
    format!("(id {} rev {} {kind})", d.watch_id, d.revision)
}

fn brief_all(ds: &[Delivery]) -> String {
    let v: Vec<String> = ds.iter().map(brief).collect();
    v.join(" ")
}

/// The events of the deliveries of `watch_id`, in order.
fn events_of(ds: &[Delivery], watch_id: i64) -> Vec<Event> {
    ds.iter()
        .filter(|d| d.watch_id == watch_id)
        .flat_map(|d| match &d.kind {
            DeliveryKind::Events(evs) => evs.to_vec(),
            _ => Vec::new(),
        })
        .collect()
}

/// Asserts the deliveries of `watch_id` are whole revisions each.
#[track_caller]
fn assert_whole_revisions(ds: &[Delivery], watch_id: i64, owed: &[Event]) {
    for d in ds.iter().filter(|d| d.watch_id == watch_id) {
        if let DeliveryKind::Events(evs) = &d.kind {
            for r in evs.iter().map(rev_of) {
                let got = evs.iter().filter(|e| rev_of(e) == r).count();
                let want = owed.iter().filter(|e| rev_of(e) == r).count();
                assert_eq!(got, want, "revision {r} split or padded in {}", brief(d));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The checker: every stream's deliveries against the model.

/// One watch the test created, and what it knew at the time.
#[derive(Clone, Debug)]
struct WatchRec {
    stream: usize,
    id: i64,
    spec: WatchSpec,
    /// The first revision owed (start_revision, or creation revision + 1).
    start: i64,
    /// The hub's revision at creation (the Created header).
    rev_at_create: i64,
    compacted_at_create: i64,
    /// The model revision when the test canceled it.
    cancel_at: Option<i64>,
}

#[derive(Default)]
struct WatchState {
    created: bool,
    terminal: Option<String>,
    delivered: Vec<Event>,
    last_rev: i64,
}

/// Checks one stream's deliveries; `recs` are the watches created on it.
fn check_stream(model: &Model, recs: &[&WatchRec], log: &[Delivery]) -> Result<(), String> {
    let owed: HashMap<i64, Vec<Event>> = recs
        .iter()
        .map(|r| (r.id, model.owed(&r.spec, r.start)))
        .collect();
    let rec_of: HashMap<i64, &WatchRec> = recs.iter().map(|r| (r.id, *r)).collect();
    let mut st: HashMap<i64, WatchState> = HashMap::new();
    let mut last_progress = 0;
    for (pos, d) in log.iter().enumerate() {
        let at = || format!("delivery #{pos} {}", brief(d));
        if d.kind == DeliveryKind::Progress {
            let r = d.revision;
            if r < last_progress {
                return Err(format!("{}: progress went back from {last_progress}", at()));
            }
            if r > model.rev {
                return Err(format!(
                    "{}: progress beyond the store ({})",
                    at(),
                    model.rev
                ));
            }
            last_progress = r;
            let covered: Vec<i64> = if d.watch_id == INVALID_WATCH_ID {
                st.iter()
                    .filter(|(_, s)| s.created && s.terminal.is_none())
                    .map(|(id, _)| *id)
                    .collect()
            } else {
                let Some(rec) = rec_of.get(&d.watch_id) else {
                    return Err(format!("{}: progress for an unknown watch", at()));
                };
                if !rec.spec.progress_notify {
                    return Err(format!("{}: progress_notify was not asked for", at()));
                }
                match st.get(&d.watch_id) {
                    Some(s) if s.created && s.terminal.is_none() => {}
                    _ => return Err(format!("{}: progress for a watch not live", at())),
                }
                vec![d.watch_id]
            };
            for id in covered {
                let want: Vec<Event> = owed[&id]
                    .iter()
                    .filter(|e| rev_of(e) <= r)
                    .cloned()
                    .collect();
                let got = &st[&id].delivered;
                if *got != want {
                    return Err(format!(
                        "{}: watch {id} ({:?}) promised everything up to {r} but had {} of {}",
                        at(),
                        rec_of[&id],
                        evs_brief(got),
                        evs_brief(&want)
                    ));
                }
            }
            continue;
        }
        let Some(rec) = rec_of.get(&d.watch_id) else {
            return Err(format!("{}: delivery for an unknown watch", at()));
        };
        let s = st.entry(d.watch_id).or_default();
        if let Some(t) = &s.terminal {
            return Err(format!("{}: delivery after {t}", at()));
        }
        if !s.created && d.kind != DeliveryKind::Created {
            return Err(format!("{}: delivery before Created", at()));
        }
        let owed = &owed[&d.watch_id];
        match &d.kind {
            DeliveryKind::Created => {
                if s.created {
                    return Err(format!("{}: Created twice", at()));
                }
                if d.revision != rec.rev_at_create {
                    return Err(format!(
                        "{}: Created header revision, want {}",
                        at(),
                        rec.rev_at_create
                    ));
                }
                s.created = true;
            }
            DeliveryKind::Events(evs) => {
                if evs.is_empty() {
                    return Err(format!("{}: empty events delivery", at()));
                }
                let revs: Vec<i64> = evs.iter().map(rev_of).collect();
                if revs[0] <= s.last_rev || revs.windows(2).any(|w| w[1] < w[0]) {
                    return Err(format!(
                        "{}: revisions go back (last delivered {})",
                        at(),
                        s.last_rev
                    ));
                }
                if d.revision < *revs.last().unwrap() {
                    return Err(format!("{}: header revision below its events", at()));
                }
                s.delivered.extend(evs.iter().cloned());
                s.last_rev = *revs.last().unwrap();
                let n = s.delivered.len();
                if n > owed.len() || s.delivered[..] != owed[..n] {
                    let first_bad = s
                        .delivered
                        .iter()
                        .zip(owed.iter())
                        .position(|(a, b)| a != b)
                        .unwrap_or(owed.len());
                    return Err(format!(
                        "{}: watch {rec:?} got {} but is owed {} (first difference at event {first_bad})",
                        at(),
                        evs_brief(&s.delivered),
                        evs_brief(owed)
                    ));
                }
                if n < owed.len() && rev_of(&owed[n]) == rev_of(&owed[n - 1]) {
                    return Err(format!(
                        "{}: revision {} split across deliveries",
                        at(),
                        rev_of(&owed[n])
                    ));
                }
            }
            DeliveryKind::Compacted(c) => {
                let c = *c;
                if !model.compactions.contains(&c) {
                    return Err(format!("{}: no compaction at {c}", at()));
                }
                if c <= rec.start || (s.last_rev > 0 && c <= s.last_rev + 1) {
                    return Err(format!(
                        "{}: compaction at {c} does not pass what watch {rec:?} was owed (last delivered {})",
                        at(),
                        s.last_rev
                    ));
                }
                s.terminal = Some(format!("Compacted({c})"));
            }
            DeliveryKind::Canceled => {
                let Some(when) = rec.cancel_at else {
                    return Err(format!("{}: Canceled but never canceled", at()));
                };
                if s.last_rev > when {
                    return Err(format!("{}: events after the cancel at {when}", at()));
                }
                s.terminal = Some("Canceled".into());
            }
            DeliveryKind::Refused(_) | DeliveryKind::Progress => {
                return Err(format!("{}: unexpected", at()));
            }
        }
    }
    for rec in recs {
        let Some(s) = st.get(&rec.id) else {
            return Err(format!("watch {rec:?}: no Created"));
        };
        let owed = &owed[&rec.id];
        let start_compacted = rec.start < rec.compacted_at_create;
        if start_compacted && (s.terminal.is_none() || !s.delivered.is_empty()) {
            return Err(format!(
                "watch {rec:?} from a compacted revision got {} and ended with {:?}, want Compacted only",
                evs_brief(&s.delivered),
                s.terminal
            ));
        }
        match &s.terminal {
            None if rec.cancel_at.is_some() => {
                return Err(format!("watch {rec:?}: canceled, never told so"));
            }
            None if s.delivered != *owed => {
                return Err(format!(
                    "watch {rec:?}: got {} but is owed {}",
                    evs_brief(&s.delivered),
                    evs_brief(owed)
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The property test.

const KEYS: [&str; 4] = ["a", "ab", "b", "c"];
/// Watch ranges: single keys, prefix "a", a range, from-key, everything.
const RANGES: [(&str, &str); 7] = [
    ("a", ""),
    ("ab", ""),
    ("c", ""),
    ("a", "b"),
    ("ab", "c"),
    ("b", "\0"),
    ("\0", "\0"),
];
/// Range deletes.
const DELETE_RANGES: [(&str, &str); 3] = [("a", "b"), ("ab", "c"), ("\0", "\0")];
const STREAMS: usize = 3;

#[derive(Clone, Debug)]
enum StartPick {
    Zero,
    Current,
    Past(u8),
    BelowCompaction(u8),
    AtCompaction,
    Future(u8),
}

#[derive(Clone, Debug)]
enum Op {
    /// Txns committed together (one commit, one notify).
    Write(Vec<Vec<Change>>),
    Compact(u8),
    Create {
        stream: usize,
        range: usize,
        start: StartPick,
        no_put: bool,
        no_delete: bool,
        progress_notify: bool,
    },
    Cancel {
        stream: usize,
        pick: u8,
    },
    Progress(usize),
    /// Stop reading the stream.
    Pause(usize),
    Resume(usize),
    Sleep(u8),
}

#[derive(Clone, Debug)]
struct Case {
    stream_queue: usize,
    catch_up_batch: usize,
    paused: Vec<bool>,
    ops: Vec<Op>,
}

fn txn_strategy() -> impl Strategy<Value = Vec<Change>> {
    let singles = prop::collection::vec(
        (0..KEYS.len(), prop::option::weighted(0.7, 0..50u32)),
        1..=3,
    )
    .prop_map(|ops| {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for (k, v) in ops {
            if seen.contains(&k) {
                continue;
            }
            seen.push(k);
            out.push(match v {
                Some(v) => Change::Put(KEYS[k], format!("v{v}")),
                None => Change::Delete(KEYS[k]),
            });
        }
        out
    });
    let range = (0..DELETE_RANGES.len()).prop_map(|i| {
        let (s, e) = DELETE_RANGES[i];
        vec![Change::DeleteRange(s, e)]
    });
    prop_oneof![6 => singles, 1 => range]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let start = prop_oneof![
        2 => Just(StartPick::Zero),
        1 => Just(StartPick::Current),
        2 => any::<u8>().prop_map(StartPick::Past),
        1 => any::<u8>().prop_map(StartPick::BelowCompaction),
        1 => Just(StartPick::AtCompaction),
        1 => (1..=3u8).prop_map(StartPick::Future),
    ];
    let create = (
        0..STREAMS,
        0..RANGES.len(),
        start,
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(stream, range, start, no_put, no_delete, progress_notify)| Op::Create {
                stream,
                range,
                start,
                no_put,
                no_delete,
                progress_notify,
            },
        );
    prop_oneof![
        8 => prop::collection::vec(txn_strategy(), 1..=3).prop_map(Op::Write),
        1 => any::<u8>().prop_map(Op::Compact),
        4 => create,
        1 => (0..STREAMS, any::<u8>()).prop_map(|(stream, pick)| Op::Cancel { stream, pick }),
        2 => (0..STREAMS).prop_map(Op::Progress),
        1 => (0..STREAMS).prop_map(Op::Pause),
        1 => (0..STREAMS).prop_map(Op::Resume),
        1 => (0..4u8).prop_map(Op::Sleep),
    ]
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        1..=4usize,
        1..=6usize,
        prop::collection::vec(prop::bool::weighted(0.3), STREAMS),
        prop::collection::vec(op_strategy(), 1..60),
    )
        .prop_map(|(stream_queue, catch_up_batch, paused, ops)| Case {
            stream_queue,
            catch_up_batch,
            paused,
            ops,
        })
}

fn resolve_start(pick: &StartPick, m: &Model) -> i64 {
    let past = |n: u8| (m.rev - i64::from(n % 8)).max(1);
    match *pick {
        StartPick::Zero => 0,
        StartPick::Current => m.rev,
        StartPick::Past(n) => past(n),
        StartPick::BelowCompaction(n) if m.compacted > 1 => {
            (m.compacted - 1 - i64::from(n % 3)).max(1)
        }
        StartPick::BelowCompaction(n) => past(n),
        StartPick::AtCompaction if m.compacted > 0 => m.compacted,
        StartPick::AtCompaction => m.rev,
        StartPick::Future(n) => m.rev + i64::from(n),
    }
}

struct Harness {
    f: Fixture,
    streams: Vec<WatchStream>,
    logs: Vec<Vec<Delivery>>,
    paused: Vec<bool>,
    next_id: Vec<i64>,
    recs: Vec<WatchRec>,
}

impl Harness {
    fn open_stream(&mut self) -> usize {
        self.streams.push(self.f.hub.open_stream());
        self.logs.push(Vec::new());
        self.paused.push(false);
        self.next_id.push(0);
        self.streams.len() - 1
    }

    fn create(&mut self, stream: usize, spec: WatchSpec) {
        let m = &self.f.model;
        let rec = WatchRec {
            stream,
            // Auto IDs count up from 0 per stream (no client-chosen IDs here).
            id: self.next_id[stream],
            start: if spec.start_revision > 0 {
                spec.start_revision
            } else {
                m.rev + 1
            },
            rev_at_create: m.rev,
            compacted_at_create: m.compacted,
            cancel_at: None,
            spec: spec.clone(),
        };
        self.next_id[stream] += 1;
        self.recs.push(rec);
        self.streams[stream].control().create(spec);
    }

    fn drain(&mut self) {
        for (i, s) in self.streams.iter_mut().enumerate() {
            if !self.paused[i] {
                while let Some(d) = try_next(s) {
                    self.logs[i].push(d);
                }
            }
        }
    }

    async fn apply(&mut self, op: &Op) {
        match op {
            Op::Write(txns) => self.f.commit(txns),
            Op::Compact(n) => {
                let m = &self.f.model;
                if m.rev > m.compacted {
                    let at = m.compacted + 1 + i64::from(*n) % (m.rev - m.compacted);
                    self.f.compact(at);
                }
            }
            Op::Create {
                stream,
                range,
                start,
                no_put,
                no_delete,
                progress_notify,
            } => {
                let (k, e) = RANGES[*range];
                let spec = WatchSpec {
                    no_put: *no_put,
                    no_delete: *no_delete,
                    progress_notify: *progress_notify,
                    ..spec(k, e, resolve_start(start, &self.f.model))
                };
                self.create(*stream, spec);
            }
            Op::Cancel { stream, pick } => {
                let rev = self.f.model.rev;
                let live: Vec<&mut WatchRec> = self
                    .recs
                    .iter_mut()
                    .filter(|r| r.stream == *stream && r.cancel_at.is_none())
                    .collect();
                let n = live.len();
                if let Some(rec) = live.into_iter().nth(usize::from(*pick) % n.max(1)) {
                    rec.cancel_at = Some(rev);
                    self.streams[*stream].control().cancel(rec.id);
                }
            }
            Op::Progress(s) => self.streams[*s].control().request_progress(),
            Op::Pause(s) => self.paused[*s] = true,
            Op::Resume(s) => self.paused[*s] = false,
            Op::Sleep(0) => tokio::task::yield_now().await,
            Op::Sleep(ms) => tokio::time::sleep(Duration::from_millis(u64::from(*ms))).await,
        }
        self.drain();
    }

    /// Reads every stream until the hub has delivered everything to it.
    async fn settle(&mut self) {
        self.paused.iter_mut().for_each(|p| *p = false);
        let mut streams: Vec<&mut WatchStream> = self.streams.iter_mut().collect();
        let read = settle_all(&mut streams, self.f.model.rev).await;
        for (log, read) in self.logs.iter_mut().zip(read) {
            log.extend(read);
        }
    }

    fn check(&self) -> Result<(), String> {
        for (i, log) in self.logs.iter().enumerate() {
            let recs: Vec<&WatchRec> = self.recs.iter().filter(|r| r.stream == i).collect();
            check_stream(&self.f.model, &recs, log)
                .map_err(|e| format!("stream {i}: {e}\nstream log: {}", brief_all(log)))?;
        }
        Ok(())
    }
}

fn run_case(case: &Case) -> Result<(), String> {
    runtime().block_on(async {
        let config = WatchConfig {
            stream_queue: case.stream_queue,
            catch_up_batch: case.catch_up_batch,
            progress_notify_interval: Duration::from_millis(15),
            ..WatchConfig::default()
        };
        let mut h = Harness {
            f: Fixture::new(config),
            streams: Vec::new(),
            logs: Vec::new(),
            paused: Vec::new(),
            next_id: Vec::new(),
            recs: Vec::new(),
        };
        for i in 0..STREAMS {
            h.open_stream();
            h.paused[i] = case.paused[i];
        }
        for op in &case.ops {
            h.apply(op).await;
        }
        h.settle().await;
        // Resumable: a new watch at (last revision seen + 1), on a fresh stream,
        // for every watch that saw something.
        let fresh = h.open_stream();
        let resumed: Vec<WatchSpec> = h
            .recs
            .iter()
            .filter_map(|r| {
                let last = events_of(&h.logs[r.stream], r.id).last().map(rev_of)?;
                Some(WatchSpec {
                    start_revision: last + 1,
                    progress_notify: false,
                    ..r.spec.clone()
                })
            })
            .collect();
        for spec in resumed {
            h.create(fresh, spec);
        }
        h.settle().await;
        // MODEL_STATS=1 prints what each case exercised.
        if std::env::var_os("MODEL_STATS").is_some() {
            let all: Vec<&Delivery> = h.logs.iter().flatten().collect();
            let count = |f: &dyn Fn(&Delivery) -> bool| all.iter().filter(|d| f(d)).count();
            eprintln!(
                "STATS watches {} deliveries {} events {} multi-rev {} compacted {} canceled {} progress(-1) {} progress(w) {} rev {}",
                h.recs.len(),
                all.len(),
                count(&|d| matches!(d.kind, DeliveryKind::Events(_))),
                count(&|d| matches!(&d.kind, DeliveryKind::Events(e) if rev_of(&e[0]) != rev_of(e.last().unwrap()))),
                count(&|d| matches!(d.kind, DeliveryKind::Compacted(_))),
                count(&|d| d.kind == DeliveryKind::Canceled),
                count(&|d| d.kind == DeliveryKind::Progress && d.watch_id == INVALID_WATCH_ID),
                count(&|d| d.kind == DeliveryKind::Progress && d.watch_id != INVALID_WATCH_ID),
                h.f.model.rev,
            );
        }
        h.check()
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 100,
        max_shrink_iters: 300,
        max_shrink_time: 60_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_watcher_sees_exactly_mvcc_history(case in case_strategy()) {
        let result = run_case(&case);
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}

// ---------------------------------------------------------------------------
// One test per etcd watch bug that applies to a single node.

/// Reads `s` until the hub has delivered everything up to `rev` to it.
async fn settle(s: &mut WatchStream, rev: i64) -> Vec<Delivery> {
    read_until_progress(s, rev).await
}

/// etcd bug "duplicated event from a txn": a txn's events were delivered twice to a watch created while
/// the txn was being applied (synced and catch-up paths overlapping). Here a
/// writer commits multi-key txns, sometimes several per commit, while watches
/// are created at every interesting revision around it (0, the durable
/// revision not yet notified, one past it, in the past): each must get every
/// event exactly once.
#[test]
fn duplicated_event_from_a_txn() {
    runtime().block_on(async {
        let f = Fixture::new(WatchConfig {
            catch_up_batch: 3,
            ..WatchConfig::default()
        });
        let (store, hub) = (f.store.clone(), f.hub.clone());
        let writer = std::thread::spawn(move || {
            let mut f = f;
            for i in 0..300 {
                let txn = |j: usize| {
                    vec![
                        Change::Put("a", format!("{i}.{j}")),
                        Change::Put("ab", format!("{i}.{j}")),
                        Change::Put("b", format!("{i}.{j}")),
                    ]
                };
                if i % 3 == 0 {
                    f.commit(&[txn(0), txn(1)]);
                } else {
                    f.commit(&[txn(0)]);
                }
            }
            f
        });
        let mut s = hub.open_stream();
        let mut starts = Vec::new();
        while !writer.is_finished() {
            let durable = store.current_revision();
            for start in [0, durable, durable + 1, (durable - 3).max(1)] {
                if starts.len() < 400 {
                    s.control().create(spec("a", "b", start));
                    starts.push(start);
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let f = writer.join().unwrap();
        let log = settle(&mut s, f.model.rev).await;
        // The Created header says what a start revision of 0 meant.
        let created: HashMap<i64, i64> = log
            .iter()
            .filter(|d| d.kind == DeliveryKind::Created)
            .map(|d| (d.watch_id, d.revision))
            .collect();
        for (id, start) in starts.iter().enumerate() {
            let id = id as i64;
            let from = if *start > 0 { *start } else { created[&id] + 1 };
            let owed = f.model.owed(&spec("a", "b", from), from);
            let got = events_of(&log, id);
            assert_eq!(
                evs_brief(&got),
                evs_brief(&owed),
                "watch {id} from {start}: every txn event exactly once"
            );
            assert_whole_revisions(&log, id, &owed);
        }
    });
}

/// etcd bug "events lost under stream starvation": events lost when a stream could not keep up (its
/// watchers were moved to catch-up and skipped revisions). Watchers on a
/// stream that is not read at all, and on one read a little now and then,
/// get every event exactly once, in order, once read.
#[test]
fn events_lost_under_stream_starvation() {
    runtime().block_on(async {
        let mut f = Fixture::new(WatchConfig {
            stream_queue: 2,
            catch_up_batch: 5,
            ..WatchConfig::default()
        });
        let mut starved = f.hub.open_stream();
        let mut trickle = f.hub.open_stream();
        let specs = [spec("a", "", 0), spec("a", "b", 0), spec("b", "\0", 0)];
        for sp in &specs {
            starved.control().create(sp.clone());
            trickle.control().create(sp.clone());
        }
        let mut trickled = Vec::new();
        for i in 0..400 {
            let mut txn = vec![
                Change::Put("a", format!("{i}")),
                Change::Put("b", format!("{i}")),
            ];
            match i % 5 {
                0 => txn.push(Change::Delete("ab")),
                1 => txn.push(Change::Put("ab", format!("{i}"))),
                _ => {}
            }
            f.commit(&[txn]);
            if i % 7 == 0 {
                trickled.extend(try_next(&mut trickle));
            }
        }
        let [starved_log, rest] = settle_all(&mut [&mut starved, &mut trickle], f.model.rev)
            .await
            .try_into()
            .unwrap();
        trickled.extend(rest);
        for log in [&starved_log, &trickled] {
            for (id, sp) in specs.iter().enumerate() {
                let owed = f.model.owed(sp, 2);
                assert_eq!(
                    evs_brief(&events_of(log, id as i64)),
                    evs_brief(&owed),
                    "watch {id}: every event once, in order"
                );
                assert_whole_revisions(log, id as i64, &owed);
            }
        }
    });
}

/// The hub's own promise (lib.rs: "a slow stream never blocks ... other
/// streams"), and what starvation means for the streams next to the starved
/// one: a stream its client does not read must not hold back the catch-up of
/// another stream's watchers. Here stream `stalled` is never read while
/// stream `reader` is read all along; both fell behind during a burst of
/// writes, and `reader` must catch up without waiting for `stalled`.
#[test]
fn a_stalled_stream_holds_back_no_other_streams_catch_up() {
    runtime().block_on(async {
        let mut f = Fixture::new(WatchConfig {
            stream_queue: 2,
            catch_up_batch: 5,
            ..WatchConfig::default()
        });
        let _stalled = {
            let s = f.hub.open_stream();
            s.control().create(spec("a", "", 0));
            s
        };
        let mut reader = f.hub.open_stream();
        reader.control().create(spec("a", "", 0));
        // Neither stream is read during the burst: both watchers fall behind.
        for i in 0..100 {
            f.put("a", &i.to_string());
        }
        let log = read_until_progress(&mut reader, f.model.rev).await;
        assert_eq!(
            evs_brief(&events_of(&log, 0)),
            evs_brief(&f.model.owed(&spec("a", "", 2), 2))
        );
    });
}

/// etcd bug "a delete event dropped when compacting at the delete": the delete event was dropped when compaction happened at
/// the delete's revision while a watcher was behind it. A watcher that falls
/// behind exactly at the delete (its stream is full) and catches up after a
/// compaction at that revision must still get the delete.
#[test]
fn delete_event_dropped_when_compacting_at_the_delete() {
    runtime().block_on(async {
        let mut f = Fixture::new(WatchConfig {
            // The unread Created already fills the stream.
            stream_queue: 1,
            ..WatchConfig::default()
        });
        f.put("a", "1");
        f.put("ab", "1");
        let mut s = f.hub.open_stream();
        s.control().create(spec("a", "b", 0));
        let del = f.delete("a");
        f.compact(del);
        let after = f.put("ab", "2");
        let log = settle(&mut s, after).await;
        assert_eq!(log[0].kind, DeliveryKind::Created);
        let got: Vec<String> = events_of(&log, 0).iter().map(ev_brief).collect();
        assert_eq!(got, [format!("del a@{del}"), format!("put ab@{after}")]);
    });
}

/// etcd bug "a missing delete on a watch opened at the compaction revision": a watch opened at the compaction revision missed the
/// delete made at that revision (compaction removed the tombstone). Checked for
/// a single-key and a prefix watch, with the key re-created afterwards.
#[test]
fn missing_delete_on_a_watch_opened_at_the_compaction_revision() {
    runtime().block_on(async {
        let mut f = Fixture::new(WatchConfig::default());
        f.put("a", "1");
        f.put("a", "2");
        f.put("ab", "1");
        let del = f.delete("a");
        f.compact(del);
        let again = f.put("a", "3");
        let mut s = f.hub.open_stream();
        s.control().create(spec("a", "", del));
        s.control().create(spec("a", "b", del));
        let log = settle(&mut s, again).await;
        for id in [0, 1] {
            let got: Vec<String> = events_of(&log, id).iter().map(ev_brief).collect();
            assert_eq!(
                got,
                [format!("del a@{del}"), format!("put a@{again}")],
                "watch {id} from the compaction revision"
            );
        }
        // One below the compaction: Compacted, nothing else.
        s.control().create(spec("a", "", del - 1));
        assert_eq!(next(&mut s).await.kind, DeliveryKind::Created);
        assert_eq!(next(&mut s).await.kind, DeliveryKind::Compacted(del));
    });
}

/// etcd bug "a watch on a future revision returning old events": a watch on a future revision got events older than it.
/// Tried on the live path, inside a commit of several revisions spanning the
/// start, and through catch-up (its stream full).
#[test]
fn watch_on_a_future_revision_returning_old_events() {
    runtime().block_on(async {
        let mut f = Fixture::new(WatchConfig {
            stream_queue: 1,
            catch_up_batch: 2,
            ..WatchConfig::default()
        });
        let base = f.put("a", "0");
        let mut live = f.hub.open_stream();
        let mut stalled = f.hub.open_stream();
        for s in [&live, &stalled] {
            s.control().create(spec("a", "b", base + 3));
            s.control().create(spec("a", "b", base + 5));
        }
        // Created fills `live`'s queue too: read it so that it stays live.
        assert_eq!(next(&mut live).await.kind, DeliveryKind::Created);
        assert_eq!(next(&mut live).await.kind, DeliveryKind::Created);
        for i in 1..=3 {
            f.put("a", &i.to_string());
        }
        let revs: Vec<Vec<Change>> = (4..=7)
            .map(|i| vec![Change::Put("ab", i.to_string())])
            .collect();
        f.commit(&revs);
        let end = f.model.rev;
        let logs = settle_all(&mut [&mut live, &mut stalled], end).await;
        for log in &logs {
            for (id, start) in [(0, base + 3), (1, base + 5)] {
                let got = events_of(log, id);
                assert!(
                    got.iter().all(|e| rev_of(e) >= start),
                    "watch from {start} got {}",
                    evs_brief(&got)
                );
                assert_eq!(
                    evs_brief(&got),
                    evs_brief(&f.model.owed(&spec("a", "b", start), start))
                );
            }
        }
    });
}

/// etcd bug "progress notification out of sync with the stream": a progress notification was sent with a revision whose events
/// the lagging watcher had not received yet. A progress request made while a
/// watcher of the stream is behind must come after all its events up to the
/// progress revision (an idle watch with progress_notify adds its own
/// periodic progress to the stream meanwhile).
#[test]
fn progress_notification_out_of_sync_with_the_stream() {
    runtime().block_on(async {
        let mut f = Fixture::new(WatchConfig {
            stream_queue: 2,
            catch_up_batch: 2,
            progress_notify_interval: Duration::from_millis(5),
            ..WatchConfig::default()
        });
        let mut s = f.hub.open_stream();
        s.control().create(spec("a", "", 0));
        let mut idle = spec("c", "", 0);
        idle.progress_notify = true;
        s.control().create(idle);
        let mut puts = Vec::new();
        for i in 0..50 {
            puts.push(f.put("a", &i.to_string()));
            if i % 10 == 0 {
                s.control().request_progress();
                tokio::time::sleep(Duration::from_millis(6)).await;
            }
        }
        let log = settle(&mut s, f.model.rev).await;
        let mut seen = Vec::new();
        for d in &log {
            match &d.kind {
                DeliveryKind::Events(evs) => seen.extend(evs.iter().map(rev_of)),
                // The idle watch's own progress promises nothing of watch 0.
                DeliveryKind::Progress if d.watch_id == INVALID_WATCH_ID => {
                    let owed: Vec<i64> =
                        puts.iter().copied().filter(|r| *r <= d.revision).collect();
                    assert_eq!(
                        seen, owed,
                        "progress {} before the events up to it",
                        d.revision
                    );
                }
                _ => {}
            }
        }
        assert_eq!(seen, puts);
    });
}

/// The same bug family, as a liveness bug: a progress request made while a
/// watcher of the stream lags is held back until the stream catches up; if
/// the lagging watcher is canceled instead, the stream has nothing left to
/// catch up and the request must be answered all the same. (Whether it is
/// depends on where the hub's catch-up task is at the cancel: the scenario is
/// repeated so that a lucky interleaving cannot hide the bug.)
#[test]
fn progress_request_answered_after_the_lagging_watcher_is_canceled() {
    runtime().block_on(async {
        let mut f = Fixture::new(WatchConfig {
            stream_queue: 1,
            ..WatchConfig::default()
        });
        for round in 0..10 {
            let mut s = f.hub.open_stream();
            s.control().create(spec("a", "", 0));
            // The unread Created fills the queue: this put leaves the watcher
            // behind.
            let rev = f.put("a", &round.to_string());
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.control().request_progress();
            s.control().cancel(0);
            let mut log = Vec::new();
            let answered = tokio::time::timeout(Duration::from_secs(2), async {
                loop {
                    let d = s.next().await.expect("stream open");
                    log.push(d.clone());
                    if d.kind == DeliveryKind::Progress {
                        return d.revision;
                    }
                }
            })
            .await;
            assert_eq!(
                answered.ok(),
                Some(rev),
                "round {round}: the progress request was never answered; got {}",
                brief_all(&log)
            );
        }
    });
}

/// Writes a mix of puts, deletes and txns, compacts at the last delete, and
/// returns the model; everything was delivered to a watcher of the first hub,
/// and its last seen revision is returned too.
fn first_life(path: &Path) -> (Model, i64) {
    let rt = runtime();
    let out = rt.block_on(async {
        let mut f = Fixture::open(path, Model::new(), WatchConfig::default());
        let mut s = f.hub.open_stream();
        s.control().create(spec("\0", "\0", 0));
        for i in 0..20 {
            f.commit(&[
                vec![
                    Change::Put("a", format!("{i}")),
                    Change::Put("b", format!("{i}")),
                ],
                vec![Change::Put("c", format!("{i}"))],
            ]);
        }
        f.delete("a");
        f.commit(&[vec![Change::DeleteRange("\0", "\0")]]);
        // Compacting at the latest revision, a delete of everything: the
        // history left says nothing of the revisions before.
        f.compact(f.model.rev);
        let log = settle(&mut s, f.model.rev).await;
        let seen = events_of(&log, 0);
        assert_eq!(
            evs_brief(&seen),
            evs_brief(&f.model.owed(&spec("\0", "\0", 2), 2))
        );
        let last = rev_of(seen.last().unwrap());
        (f.model.clone(), last)
    });
    // Dropping the runtime drops the hub's tasks, the last holders of the store.
    drop(rt);
    out
}

/// etcd bug "revision going backwards after a crash during compaction": after a restart the revision went backwards (it was
/// derived from what compaction had left). A fresh hub on the reopened store
/// must start at the old revision, and a watcher resumed at last seen + 1 must
/// get the next writes at new, higher revisions, never an old one again.
#[test]
fn revision_going_backwards_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (model, last_seen) = first_life(dir.path());
    runtime().block_on(async {
        let mut f = Fixture::open(dir.path(), model.clone(), WatchConfig::default());
        assert_eq!(
            f.store.current_revision(),
            model.rev,
            "revision after restart"
        );
        assert_eq!(f.store.compacted_revision(), model.compacted);
        let mut s = f.hub.open_stream();
        s.control().create(spec("\0", "\0", last_seen + 1));
        let first = f.put("a", "after");
        assert_eq!(first, model.rev + 1);
        let log = settle(&mut s, first).await;
        let got: Vec<String> = events_of(&log, 0).iter().map(ev_brief).collect();
        assert_eq!(got, [format!("put a@{first}")]);
    });
}

/// etcd bug "a single node losing a write on crash": a single node lost a write it had acknowledged
/// across a crash. Every write the first hub delivered must still be there for
/// a watcher of a fresh hub on the reopened store, from the compaction on, and
/// a watcher resumed at last seen + 1 continues exactly into new writes.
#[test]
fn lost_write_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (model, last_seen) = rt.block_on(async {
        let mut f = Fixture::open(dir.path(), Model::new(), WatchConfig::default());
        let mut s = f.hub.open_stream();
        s.control().create(spec("a", "b", 0));
        for i in 0..30 {
            f.commit(&[vec![Change::Put(KEYS[i % 4], format!("{i}"))]]);
        }
        f.compact(10);
        for i in 0..10 {
            f.commit(&[
                vec![Change::Put("ab", format!("x{i}"))],
                vec![Change::Delete("a")],
            ]);
        }
        let log = settle(&mut s, f.model.rev).await;
        // The watcher read up to a revision in the middle.
        let seen = events_of(&log, 0);
        (f.model.clone(), rev_of(&seen[seen.len() / 2]))
    });
    drop(rt);
    runtime().block_on(async {
        let mut f = Fixture::open(dir.path(), model.clone(), WatchConfig::default());
        let mut s = f.hub.open_stream();
        s.control().create(spec("a", "b", model.compacted));
        s.control().create(spec("a", "b", last_seen + 1));
        let mut more = Vec::new();
        for i in 0..5 {
            more.push(f.put("ab", &format!("new{i}")));
        }
        assert_eq!(more[0], model.rev + 1, "no revision reused");
        let log = settle(&mut s, f.model.rev).await;
        let all = f.model.owed(&spec("a", "b", 0), model.compacted);
        assert_eq!(evs_brief(&events_of(&log, 0)), evs_brief(&all));
        let rest = f.model.owed(&spec("a", "b", 0), last_seen + 1);
        assert_eq!(evs_brief(&events_of(&log, 1)), evs_brief(&rest));
        assert_eq!(events_of(&log, 1), rest, "same values, versions, revisions");
    });
}
