//! Store tests against a model: a plain list of every revision's full state.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use proptest::prelude::*;

use crate::{KeyRange, RangeOptions, SledBackend, StorageError, Store};

/// A key's value, create_revision, mod_revision and version.
type ModelKv = (Vec<u8>, i64, i64, i64);

/// The model: the complete key -> value map after each revision. Index = revision.
#[derive(Clone, Default)]
struct Model {
    states: Vec<BTreeMap<Vec<u8>, ModelKv>>,
    compacted: i64,
}

impl Model {
    /// Revision 1 is the empty store, as in etcd; index 0 stands for nothing.
    fn new() -> Self {
        Self {
            states: vec![BTreeMap::new(), BTreeMap::new()],
            compacted: 0,
        }
    }
    fn rev(&self) -> i64 {
        self.states.len() as i64 - 1
    }
    fn put(&mut self, k: &[u8], v: &[u8]) {
        let rev = self.rev() + 1;
        let mut s = self.states.last().unwrap().clone();
        let (create, ver) = match s.get(k) {
            Some(&(_, c, _, ver)) => (c, ver + 1),
            None => (rev, 1),
        };
        s.insert(k.to_vec(), (v.to_vec(), create, rev, ver));
        self.states.push(s);
    }
    fn delete(&mut self, k: &[u8]) -> bool {
        let mut s = self.states.last().unwrap().clone();
        if s.remove(k).is_none() {
            return false;
        }
        self.states.push(s);
        true
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    Compact(u8),
    /// Deletes up to this many compacted revisions from the backend (the
    /// background worker's step), leaving the rest for later or a reopen.
    RemoveCompacted(u8),
    /// One step of a pending index pass over this many keys (the worker's
    /// first job after a compaction), leaving the rest to later steps,
    /// HashKV or a reopen.
    IndexStep(u8),
    Reopen,
    /// Requests applied in one txn, each at its own revision: a put (Some)
    /// or a delete (None).
    Batch(Vec<(u8, Option<u8>)>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..8, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..8).prop_map(Op::Delete),
        1 => any::<u8>().prop_map(Op::Compact),
        1 => (0u8..4).prop_map(Op::RemoveCompacted),
        1 => (1u8..4).prop_map(Op::IndexStep),
        1 => Just(Op::Reopen),
        2 => proptest::collection::vec((0u8..8, proptest::option::of(any::<u8>())), 1..6)
            .prop_map(Op::Batch),
    ]
}

fn open(path: &Path) -> Store {
    Store::open(Box::new(SledBackend::open(path, 8 << 20).unwrap())).unwrap()
}

fn key(k: u8) -> Bytes {
    Bytes::from(vec![b'k', k])
}

fn check_all_revisions(store: &Store, model: &Model) {
    assert_eq!(store.current_revision(), model.rev());
    // The index's running count of live keys (etcd's keys gauge), through
    // puts, deletes, compactions and the rebuild at reopen.
    assert_eq!(
        store.live_keys(),
        model.states.last().unwrap().len() as i64,
        "live keys"
    );
    let latest = store.range(KeyRange::new(b"\0", b"\0"), &RangeOptions::default());
    if model.rev() >= model.compacted {
        let latest = latest.unwrap();
        assert_eq!(
            (latest.rev, latest.count as usize),
            (model.rev(), model.states.last().unwrap().len())
        );
    }
    for rev in 1..=model.rev() {
        let opts = RangeOptions {
            rev,
            ..Default::default()
        };
        let got = store.range(KeyRange::new(b"\0", b"\0"), &opts);
        if rev < model.compacted {
            assert!(
                matches!(got, Err(StorageError::Compacted)),
                "rev {rev} should be compacted"
            );
            continue;
        }
        let got = got.unwrap();
        let want = &model.states[rev as usize];
        let got_map: BTreeMap<Vec<u8>, ModelKv> = got
            .kvs
            .iter()
            .map(|kv| {
                (
                    kv.key.to_vec(),
                    (
                        kv.value.to_vec(),
                        kv.create_revision,
                        kv.mod_revision,
                        kv.version,
                    ),
                )
            })
            .collect();
        assert_eq!(&got_map, want, "state at revision {rev}");
        assert_eq!(got.count as usize, want.len());
    }
    let future = RangeOptions {
        rev: model.rev() + 1,
        ..Default::default()
    };
    assert!(matches!(
        store.range(KeyRange::new(b"a", b""), &future),
        Err(StorageError::FutureRevision)
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model_at_every_revision(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let mut model = Model::new();
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    let mut txn = store.write();
                    txn.put(key(k), Bytes::from(vec![v]), 0);
                    txn.end().unwrap();
                    model.put(&key(k), &[v]);
                }
                Op::Delete(k) => {
                    let mut txn = store.write();
                    let deleted = txn.delete_range(KeyRange::new(&key(k), b""));
                    txn.end().unwrap();
                    prop_assert_eq!(deleted.len() == 1, model.delete(&key(k)));
                }
                Op::Compact(r) => {
                    let r = i64::from(r) % (model.rev() + 1);
                    let res = store.compact(r);
                    if r <= model.compacted {
                        prop_assert!(matches!(res, Err(StorageError::Compacted)));
                    } else {
                        res.unwrap();
                        model.compacted = r;
                    }
                }
                Op::RemoveCompacted(n) => {
                    let before = store.compaction_backlog();
                    let left = store.remove_compacted(usize::from(n)).unwrap();
                    prop_assert_eq!(left, before.saturating_sub(usize::from(n)));
                }
                Op::IndexStep(n) => {
                    let _ = store.compact_index_step(usize::from(n));
                }
                Op::Batch(requests) => {
                    let mut txn = store.write();
                    for (k, v) in requests {
                        match v {
                            Some(v) => {
                                txn.put(key(k), Bytes::from(vec![v]), 0);
                                model.put(&key(k), &[v]);
                            }
                            None => {
                                let deleted = txn.delete_range(KeyRange::new(&key(k), b""));
                                prop_assert_eq!(deleted.len() == 1, model.delete(&key(k)));
                            }
                        }
                        prop_assert_eq!(txn.finish_revision(), model.rev());
                    }
                    prop_assert_eq!(txn.end().unwrap(), model.rev());
                }
                Op::Reopen => {
                    let _ = store.commit().unwrap();
                    drop(store);
                    store = open(dir.path());
                }
            }
            let _ = store.commit().unwrap();
        }
        check_all_revisions(&store, &model);
        // Whatever the compaction's progress, the hash is that of the
        // finished compaction, and a reopened store queues what is left.
        let hash = store.hash_kv(0).unwrap();
        let backlog = store.compaction_backlog();
        drop(store);
        let store = open(dir.path());
        check_all_revisions(&store, &model);
        prop_assert_eq!(store.compaction_backlog(), backlog);
        store.finish_compaction(3).unwrap();
        prop_assert_eq!(store.hash_kv(0).unwrap(), hash);
        check_all_revisions(&store, &model);
    }
}

/// Every revision key the backend holds, by main revision.
fn stored_revisions(store: &Store) -> Vec<i64> {
    store
        .backend
        .scan(crate::Bucket::Key, &[], None)
        .map(|e| crate::Revision::from_key(&e.unwrap().0).unwrap().0.main)
        .collect()
}

#[test]
fn compaction_deletes_in_the_background_and_resumes_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // a: put@2 put@3 del@4 put@5; b: put@6 put@7; c: put@8 del@9
    fill(&store, &[("a", "1"), ("a", "2")]);
    let mut txn = store.write();
    txn.delete_range(KeyRange::new(b"a", b""));
    txn.end().unwrap();
    fill(&store, &[("a", "3"), ("b", "1"), ("b", "2"), ("c", "1")]);
    let mut txn = store.write();
    txn.delete_range(KeyRange::new(b"c", b""));
    txn.end().unwrap();
    let _ = store.commit().unwrap();
    let before = all_at(&store, 9);

    // Compacting at 9 removes a@2 a@3 del-a@4 b@6 c@8 (del-c@9 stays: a
    // watcher from 9 must see it), by an index pass over the three keys,
    // here in steps of two; nothing is deleted yet.
    store.compact(9).unwrap();
    assert!(store.compaction_pending());
    assert!(store.compact_index_step(2), "one key left");
    assert_eq!(store.compaction_backlog(), 0, "queued when the pass ends");
    assert_eq!(all_at(&store, 9), before, "reads midway see the same");
    assert!(!store.compact_index_step(2));
    assert_eq!(store.compaction_backlog(), 5);
    assert_eq!(stored_revisions(&store), (2..=9).collect::<Vec<_>>());
    let hash = store.hash_kv(0).unwrap();

    // One batch of two (the oldest first), then a crash.
    assert_eq!(store.remove_compacted(2).unwrap(), 3);
    assert_eq!(stored_revisions(&store), [4, 5, 6, 7, 8, 9]);
    assert_eq!(store.hash_kv(0).unwrap(), hash, "hash ignores the backlog");
    store.flush().unwrap();
    drop(store);

    // Reopened on a history that starts with a's tombstone: the index is
    // the compacted one, and the rest is queued again.
    let store = open(dir.path());
    assert_eq!(store.compaction_backlog(), 3);
    assert_eq!(all_at(&store, 9), before);
    assert_eq!(store.hash_kv(0).unwrap(), hash);
    store.finish_compaction(1).unwrap();
    assert_eq!(stored_revisions(&store), [5, 7, 9]);
    assert_eq!(store.hash_kv(0).unwrap(), hash);
    assert_eq!(all_at(&store, 9), before);
}

#[test]
fn a_snapshot_taken_midway_through_a_compaction_installs_its_result() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = open(d1.path());
    fill(
        &source,
        &[("a", "1"), ("b", "2"), ("a", "3"), ("c", "4"), ("b", "5")],
    );
    // Compacting at 6 removes a@2 and b@3; the snapshot holds b@3 still.
    source.compact(6).unwrap();
    assert!(!source.compact_index_step(10), "three keys: one step");
    assert_eq!(source.remove_compacted(1).unwrap(), 1);
    let mut snap = Vec::new();
    source.snapshot_to(&mut snap).unwrap();

    let target = open(d2.path());
    target.install_snapshot(&snap).unwrap();
    assert_eq!(target.compaction_backlog(), 1);
    assert_eq!(target.hash_kv(0).unwrap(), source.hash_kv(0).unwrap());
    target.finish_compaction(10).unwrap();
    source.finish_compaction(10).unwrap();
    assert_eq!(stored_revisions(&target), stored_revisions(&source));
    assert_eq!(all_at(&target, 0), all_at(&source, 0));
}

#[test]
fn a_snapshot_taken_before_the_index_pass_installs_the_compacted_index() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = open(d1.path());
    fill(
        &source,
        &[("a", "1"), ("b", "2"), ("a", "3"), ("c", "4"), ("b", "5")],
    );
    source.compact(6).unwrap();
    let mut snap = Vec::new();
    source.snapshot_to(&mut snap).unwrap();

    // The installed store passes its index at the stored compacted revision.
    let target = open(d2.path());
    target.install_snapshot(&snap).unwrap();
    assert!(!target.compact_index_step(10), "no pass left to run");
    assert_eq!(target.compaction_backlog(), 2, "a@2 and b@3 queued");
    assert_eq!(target.hash_kv(0).unwrap(), source.hash_kv(0).unwrap());
    assert_eq!(all_at(&target, 6), all_at(&source, 6));
}

#[test]
fn unflushed_changes_are_invisible_until_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut txn = store.write();
    txn.put(key(1), Bytes::from("v"), 0);
    txn.end().unwrap();
    let latest = RangeOptions::default();
    assert_eq!(
        store
            .range(KeyRange::new(&key(1), b""), &latest)
            .unwrap()
            .kvs
            .len(),
        0
    );
    let _ = store.commit().unwrap();
    assert_eq!(
        store
            .range(KeyRange::new(&key(1), b""), &latest)
            .unwrap()
            .kvs
            .len(),
        1
    );
}

#[test]
fn txn_changes_share_one_revision_and_read_their_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut txn = store.write();
    txn.put(key(1), Bytes::from("a"), 0);
    txn.put(key(2), Bytes::from("b"), 7);
    let seen = txn
        .range(KeyRange::new(b"\0", b"\0"), &RangeOptions::default())
        .unwrap();
    assert_eq!(seen.kvs.len(), 2);
    assert_eq!(txn.end().unwrap(), 2);
    let _ = store.commit().unwrap();
    let got = store
        .range(KeyRange::new(b"\0", b"\0"), &RangeOptions::default())
        .unwrap();
    assert!(got.kvs.iter().all(|kv| kv.mod_revision == 2));
    assert_eq!(got.kvs[1].lease, 7);
}

#[test]
fn one_txn_holds_several_revisions_each_reading_the_ones_before() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let mut txn = store.write();
        txn.put(key(1), Bytes::from("a"), 0);
        txn.put(key(2), Bytes::from("b"), 0);
        assert_eq!(txn.finish_revision(), 2);
        // A request that changes nothing makes no revision.
        assert!(txn.delete_range(KeyRange::new(b"nothing", b"")).is_empty());
        assert_eq!(txn.finish_revision(), 2);
        // Later requests see earlier ones' changes, from the txn itself.
        let seen = txn
            .range(KeyRange::new(&key(2), b""), &RangeOptions::default())
            .unwrap();
        assert_eq!(seen.kvs[0].value, Bytes::from("b"));
        assert_eq!(seen.rev, 2);
        txn.put(key(2), Bytes::from("b2"), 0);
        assert_eq!(txn.events().len(), 1, "only the open revision's events");
        let seen = txn
            .range(KeyRange::new(&key(1), b""), &RangeOptions::default())
            .unwrap();
        assert_eq!(seen.kvs[0].value, Bytes::from("a"));
        assert_eq!(txn.finish_revision(), 3);
        txn.delete_range(KeyRange::new(&key(1), b""));
        assert_eq!(txn.end().unwrap(), 4);
        let committed = store.commit().unwrap();
        let revs: Vec<_> = committed
            .events
            .iter()
            .map(|e| e.kv.as_ref().unwrap().mod_revision)
            .collect();
        assert_eq!(revs, vec![2, 2, 3, 4]);
    }
    // Every revision reached the backend, with the current revision.
    let store = open(dir.path());
    assert_eq!(store.current_revision(), 4);
    let at = |rev| {
        store
            .range(
                KeyRange::new(b"\0", b"\0"),
                &RangeOptions {
                    rev,
                    ..RangeOptions::default()
                },
            )
            .unwrap()
            .kvs
            .into_iter()
            .map(|kv| (kv.key, kv.value, kv.mod_revision))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        at(3),
        vec![
            (key(1), Bytes::from("a"), 2),
            (key(2), Bytes::from("b2"), 3)
        ]
    );
    assert_eq!(at(4), vec![(key(2), Bytes::from("b2"), 3)]);
}

#[test]
fn empty_txn_creates_no_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut txn = store.write();
    assert!(txn.delete_range(KeyRange::new(b"nothing", b"")).is_empty());
    assert_eq!(txn.end().unwrap(), 1, "still the empty store's revision");
}

#[test]
fn limit_cuts_kvs_but_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..5 {
        let mut txn = store.write();
        txn.put(key(i as u8), Bytes::from("v"), 0);
        txn.end().unwrap();
    }
    let _ = store.commit().unwrap();
    let got = store
        .range(
            KeyRange::new(b"\0", b"\0"),
            &RangeOptions {
                limit: 2,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((got.kvs.len(), got.count), (2, 5));
    let counted = store
        .range(
            KeyRange::new(b"\0", b"\0"),
            &RangeOptions {
                count_only: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((counted.kvs.len(), counted.count), (0, 5));
}

#[test]
fn hash_kv_agrees_between_stores_with_equal_history_and_differs_otherwise() {
    let build = |values: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        for v in values {
            let mut txn = store.write();
            txn.put(key(1), Bytes::copy_from_slice(v.as_bytes()), 0);
            txn.end().unwrap();
        }
        let _ = store.commit().unwrap();
        store.compact(3).unwrap();
        (dir, store)
    };
    let (_d1, a) = build(&["x", "y", "z"]);
    let (_d2, b) = build(&["x", "y", "z"]);
    let (_d3, c) = build(&["x", "y", "Z"]);
    let ha = a.hash_kv(0).unwrap();
    assert_eq!(ha, b.hash_kv(0).unwrap());
    assert_eq!((ha.compact_revision, ha.hash_revision), (3, 4));
    assert_ne!(ha.hash, c.hash_kv(0).unwrap().hash);
    assert_eq!(
        a.hash_kv(3).unwrap().hash,
        c.hash_kv(3).unwrap().hash,
        "same history up to 3"
    );
    assert!(matches!(a.hash_kv(2), Err(StorageError::Compacted)));
}

fn event_summary(events: &[oxetcd_proto::mvccpb::Event]) -> Vec<(i32, String, i64)> {
    events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().expect("event kv");
            (
                e.r#type,
                String::from_utf8_lossy(&kv.key).into_owned(),
                kv.mod_revision,
            )
        })
        .collect()
}

#[test]
fn commit_hands_out_durable_changes_and_history_replays_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut committed = Vec::new();
    for i in 0..6u8 {
        let mut txn = store.write();
        txn.put(key(i % 3), Bytes::from(vec![i]), 0);
        if i == 4 {
            txn.put(key(9), Bytes::from("x"), 0);
        }
        if i == 5 {
            txn.delete_range(KeyRange::new(&key(0), b""));
        }
        txn.end().unwrap();
        if i % 2 == 1 {
            committed.extend(store.commit().unwrap().events);
        }
    }
    assert_eq!(
        store.commit().unwrap().events.len(),
        0,
        "each change is handed out once"
    );
    let (history, next) = store.history(2, 100, usize::MAX).unwrap();
    assert_eq!(event_summary(&history), event_summary(&committed));
    assert_eq!(next, store.current_revision() + 1);
    assert_eq!(history.len(), 8, "6 puts, 1 extra put, 1 delete");

    // A limit never splits a revision: revision 6 has two changes.
    let (first, next) = store.history(2, 100, 5).unwrap();
    assert_eq!(first.len(), 6);
    assert_eq!(next, 7);
    let (rest, _) = store.history(next, 100, usize::MAX).unwrap();
    assert_eq!(first.len() + rest.len(), history.len());

    store.compact(4).unwrap();
    assert!(matches!(
        store.history(3, 100, 10),
        Err(StorageError::Compacted)
    ));
    let (after, _) = store.history(4, 100, usize::MAX).unwrap();
    assert_eq!(
        after
            .first()
            .and_then(|e| e.kv.as_ref())
            .map(|kv| kv.mod_revision),
        Some(4)
    );
}

fn fill(store: &Store, values: &[(&str, &str)]) {
    for (k, v) in values {
        let mut txn = store.write();
        txn.put(
            Bytes::copy_from_slice(k.as_bytes()),
            Bytes::copy_from_slice(v.as_bytes()),
            0,
        );
        txn.end().unwrap();
    }
    let _ = store.commit().unwrap();
}

fn all_at(store: &Store, rev: i64) -> Vec<(String, String, i64)> {
    let opts = RangeOptions {
        rev,
        ..Default::default()
    };
    store
        .range(KeyRange::new(b"\0", b"\0"), &opts)
        .unwrap()
        .kvs
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into(),
                String::from_utf8_lossy(&kv.value).into(),
                kv.mod_revision,
            )
        })
        .collect()
}

#[test]
fn a_snapshot_installs_the_same_history_elsewhere() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = open(d1.path());
    fill(
        &source,
        &[("a", "1"), ("b", "2"), ("a", "3"), ("c", "4"), ("b", "5")],
    );
    source.compact(3).unwrap();
    let mut snap = Vec::new();
    source.snapshot_to(&mut snap).unwrap();

    let target = open(d2.path());
    fill(&target, &[("zzz", "old contents")]);
    target.install_snapshot(&snap).unwrap();
    assert_eq!(target.current_revision(), source.current_revision());
    assert_eq!(target.compacted_revision(), 3);
    for rev in 3..=source.current_revision() {
        assert_eq!(all_at(&target, rev), all_at(&source, rev), "revision {rev}");
    }
    assert_eq!(target.hash_kv(0).unwrap(), source.hash_kv(0).unwrap());
    drop(target);
    let reopened = open(d2.path());
    assert_eq!(all_at(&reopened, 0), all_at(&source, 0), "durable");
}

#[test]
fn a_damaged_snapshot_is_refused_and_changes_nothing() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = open(d1.path());
    fill(&source, &[("a", "1")]);
    let mut snap = Vec::new();
    source.snapshot_to(&mut snap).unwrap();
    let target = open(d2.path());
    fill(&target, &[("keep", "me")]);
    let before = all_at(&target, 0);
    let mut flipped = snap.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    assert!(matches!(
        target.install_snapshot(&flipped),
        Err(StorageError::Corrupt(_))
    ));
    assert!(matches!(
        target.install_snapshot(&snap[..snap.len() - 3]),
        Err(StorageError::Corrupt(_))
    ));
    assert!(matches!(
        target.install_snapshot(b"not a snapshot at all"),
        Err(StorageError::Corrupt(_))
    ));
    assert_eq!(all_at(&target, 0), before);
}

/// A backend that hands every batch to `inner` and keeps a copy of it, so a
/// test can replay any prefix of them: what a crash after that batch leaves.
struct RecordingBackend {
    inner: Box<dyn crate::Backend>,
    batches: std::sync::Arc<std::sync::Mutex<Vec<Vec<crate::backend::BatchOp>>>>,
}

impl crate::Backend for RecordingBackend {
    fn get(&self, bucket: crate::Bucket, key: &[u8]) -> crate::Result<Option<Bytes>> {
        self.inner.get(bucket, key)
    }

    fn scan<'a>(
        &'a self,
        bucket: crate::Bucket,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = crate::Result<crate::backend::Entry>> + 'a> {
        self.inner.scan(bucket, from, to)
    }

    fn apply(&self, batch: crate::WriteBatch) -> crate::Result<()> {
        let ops: Vec<_> = batch.into_ops().collect();
        self.batches.lock().unwrap().push(ops.clone());
        let mut copy = crate::WriteBatch::default();
        for (bucket, key, value) in ops {
            match value {
                Some(v) => copy.put(bucket, key, v),
                None => copy.delete(bucket, key),
            }
        }
        self.inner.apply(copy)
    }

    fn flush(&self) -> crate::Result<()> {
        self.inner.flush()
    }

    fn size_on_disk(&self) -> crate::Result<u64> {
        self.inner.size_on_disk()
    }
}

/// Every key-value of the store at every revision it can read, and its
/// applied state: what must be the old store or the new one after a crash.
fn contents(store: &Store) -> (Vec<(String, String, i64)>, Option<Bytes>, i64) {
    (
        (store.compacted_revision().max(1)..=store.current_revision())
            .flat_map(|rev| all_at(store, rev))
            .collect(),
        store.applied_state(),
        store.current_revision(),
    )
}

fn old_store(path: &Path) -> Store {
    let store = open(path);
    fill(&store, &[("zzz", "old"), ("a", "old a"), ("zzz", "older")]);
    let mut txn = store.write();
    txn.put(Bytes::from("b"), Bytes::from("old b"), 0);
    txn.set_applied_state(Bytes::from("old applied"));
    txn.end().unwrap();
    let _ = store.commit().unwrap();
    store.flush().unwrap();
    store
}

#[test]
fn a_crash_at_any_point_of_an_install_leaves_the_old_store_or_the_new_one() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = open(source_dir.path());
    fill(&source, &[("a", "1"), ("b", "2"), ("a", "3"), ("c", "4")]);
    source.compact(2).unwrap();
    let mut txn = source.write();
    txn.put(Bytes::from("d"), Bytes::from("5"), 0);
    txn.set_applied_state(Bytes::from("new applied"));
    txn.end().unwrap();
    let _ = source.commit().unwrap();
    let mut snap = Vec::new();
    source.snapshot_to(&mut snap).unwrap();

    // Install once through a recording backend, on top of an old store.
    let dir = tempfile::tempdir().unwrap();
    let old = contents(&old_store(dir.path()));
    let batches = std::sync::Arc::default();
    let recorded = Store::open(Box::new(RecordingBackend {
        inner: Box::new(SledBackend::open(dir.path(), 8 << 20).unwrap()),
        batches: std::sync::Arc::clone(&batches),
    }))
    .unwrap();
    recorded.install_snapshot(&snap).unwrap();
    let new = contents(&recorded);
    assert_eq!(new.1.as_deref(), Some(&b"new applied"[..]));
    drop(recorded);
    let batches = batches.lock().unwrap().clone();
    assert!(!batches.is_empty());

    // A crash after any number of those batches reached the engine.
    for crashed_after in 0..=batches.len() {
        let dir = tempfile::tempdir().unwrap();
        drop(old_store(dir.path()));
        {
            let engine = SledBackend::open(dir.path(), 8 << 20).unwrap();
            for ops in &batches[..crashed_after] {
                let mut batch = crate::WriteBatch::default();
                for (bucket, key, value) in ops.iter().cloned() {
                    match value {
                        Some(v) => batch.put(bucket, key, v),
                        None => batch.delete(bucket, key),
                    }
                }
                crate::Backend::apply(&engine, batch).unwrap();
            }
            crate::Backend::flush(&engine).unwrap();
        }
        let after = contents(&open(dir.path()));
        assert!(
            after == old || after == new,
            "a crash after {crashed_after} of {} install batches left {after:?}",
            batches.len()
        );
    }
}

#[test]
fn an_install_interrupted_by_an_earlier_build_leaves_an_empty_store_not_a_mix() {
    let dir = tempfile::tempdir().unwrap();
    {
        let backend = SledBackend::open(dir.path(), 8 << 20).unwrap();
        let store = Store::open(Box::new(backend)).unwrap();
        fill(&store, &[("a", "1"), ("b", "2")]);
        // What install_snapshot of earlier builds left if it died after its
        // first step (it wrote this marker, then the store in batches).
        let mut marker = crate::WriteBatch::default();
        marker.put(crate::Bucket::Meta, &b"restoring"[..], &b"1"[..]);
        store.backend.apply(marker).unwrap();
        store.backend.flush().unwrap();
    }
    let store = open(dir.path());
    assert!(all_at(&store, 0).is_empty());
    assert_eq!(store.current_revision(), 1);
    assert_eq!(store.applied_state(), None);
}

#[test]
fn applied_state_is_stored_with_the_changes_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let mut txn = store.write();
        txn.put(key(1), Bytes::from("v"), 0);
        txn.set_applied_state(Bytes::from("applied up to 7"));
        txn.end().unwrap();
        let _ = store.commit().unwrap();
        let untouched = store.write();
        untouched.end().unwrap();
        assert_eq!(
            store.applied_state().as_deref(),
            Some(&b"applied up to 7"[..])
        );
        store
            .save_applied_state(Bytes::from("applied up to 8"))
            .unwrap();
        store.flush().unwrap();
    }
    assert_eq!(
        open(dir.path()).applied_state().as_deref(),
        Some(&b"applied up to 8"[..])
    );
}

#[test]
fn publish_makes_changes_visible_without_waiting_for_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut txn = store.write();
    txn.put(key(1), Bytes::from("v"), 0);
    txn.end().unwrap();
    let published = store.publish();
    assert_eq!((published.rev, published.events.len()), (2, 1));
    assert_eq!(store.current_revision(), 2);
}

#[test]
fn cluster_records_are_listed_by_prefix_and_travel_in_snapshots() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = open(d1.path());
    source
        .put_cluster_record("member/a", Bytes::from("one"))
        .unwrap();
    source
        .put_cluster_record("member/b", Bytes::from("two"))
        .unwrap();
    source
        .put_cluster_record("other", Bytes::from("x"))
        .unwrap();
    let members = source.cluster_records("member/").unwrap();
    assert_eq!(
        members.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["member/a", "member/b"]
    );
    let mut snap = Vec::new();
    source.snapshot_to(&mut snap).unwrap();
    let target = open(d2.path());
    target.install_snapshot(&snap).unwrap();
    assert_eq!(target.cluster_records("member/").unwrap(), members);
    target.delete_cluster_record("member/a").unwrap();
    target.delete_cluster_record("member/none").unwrap();
    assert_eq!(target.cluster_records("member/").unwrap(), members[1..]);
}

#[test]
fn lease_records_are_stored_with_the_txn_and_survive_reopen_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        // A grant changes no key: stored all the same, with no new revision.
        let mut txn = store.write();
        txn.put_lease_record(7, Bytes::from("seven"));
        txn.put_lease_record(i64::MAX, Bytes::from("max"));
        assert_eq!(txn.end().unwrap(), 1);
        // A revoke: the record goes in the batch of the deletes.
        let mut txn = store.write();
        txn.put(key(1), Bytes::from("v"), 7);
        assert_eq!(txn.events().len(), 1);
        txn.delete_lease_record(i64::MAX);
        assert_eq!(txn.end().unwrap(), 2);
        let _ = store.commit().unwrap();
        assert_eq!(
            store.lease_records().unwrap(),
            vec![(7, Bytes::from("seven"))]
        );
        let mut copy = Vec::new();
        store.snapshot_to(&mut copy).unwrap();
        let other = tempfile::tempdir().unwrap();
        let restored = open(other.path());
        restored.install_snapshot(&copy).unwrap();
        assert_eq!(
            restored.lease_records().unwrap(),
            vec![(7, Bytes::from("seven"))]
        );
    }
    let reopened = open(dir.path());
    assert_eq!(
        reopened.lease_records().unwrap(),
        vec![(7, Bytes::from("seven"))]
    );
}

/// An engine that remembers what its last `flush` made durable: what a crash
/// would leave of it.
struct DurableOnFlush {
    engine: SledBackend,
    durable_applied: std::sync::Arc<parking_lot::Mutex<Option<Bytes>>>,
}

impl crate::Backend for DurableOnFlush {
    fn get(&self, bucket: crate::Bucket, key: &[u8]) -> crate::Result<Option<Bytes>> {
        self.engine.get(bucket, key)
    }
    fn scan<'a>(
        &'a self,
        bucket: crate::Bucket,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = crate::Result<crate::Entry>> + 'a> {
        self.engine.scan(bucket, from, to)
    }
    fn apply(&self, batch: crate::WriteBatch) -> crate::Result<()> {
        self.engine.apply(batch)
    }
    fn flush(&self) -> crate::Result<()> {
        self.engine.flush()?;
        *self.durable_applied.lock() = self
            .engine
            .get(crate::Bucket::Meta, crate::store::META_APPLIED_STATE)?;
        Ok(())
    }
    fn size_on_disk(&self) -> crate::Result<u64> {
        self.engine.size_on_disk()
    }
}

#[test]
fn a_snapshot_holds_only_what_is_durable() {
    // The Raft log a snapshot covers gets purged: a change in the snapshot but
    // still in the write buffer would be in no durable copy after a crash.
    let dir = tempfile::tempdir().unwrap();
    let durable_applied = std::sync::Arc::default();
    let engine = DurableOnFlush {
        engine: SledBackend::open(dir.path(), 16 << 20).unwrap(),
        durable_applied: std::sync::Arc::clone(&durable_applied),
    };
    let buffered =
        crate::WriteBuffer::new(Box::new(engine), std::time::Duration::from_secs(3600)).unwrap();
    let store = Store::open(Box::new(buffered)).unwrap();
    let mut txn = store.write();
    txn.put(key(1), Bytes::from("v"), 0);
    txn.set_applied_state(Bytes::from("applied up to 1"));
    txn.end().unwrap();
    store
        .save_applied_state(Bytes::from("applied up to 2"))
        .unwrap();

    let mut data = Vec::new();
    let in_snapshot = store.snapshot_to(&mut data).unwrap();
    assert_eq!(in_snapshot.as_deref(), Some(&b"applied up to 2"[..]));
    assert_eq!(
        durable_applied.lock().as_deref(),
        Some(&b"applied up to 2"[..]),
        "the snapshot holds an applied state no flush made durable"
    );
}

/// What a snapshot's sink does at its first write: a put from another
/// thread, which must finish while the copy is under way.
struct PutDuringCopy {
    store: std::sync::Arc<Store>,
    put_finished: Option<bool>,
    data: Vec<u8>,
}

impl std::io::Write for PutDuringCopy {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.put_finished.is_none() {
            let store = std::sync::Arc::clone(&self.store);
            let (done, finished) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                fill(&store, &[("during", "the copy")]);
                let _ = done.send(());
            });
            let waited = finished.recv_timeout(std::time::Duration::from_secs(5));
            self.put_finished = Some(waited.is_ok());
        }
        self.data.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_snapshot_on_redb_lets_the_writer_go_on_and_holds_only_what_came_before() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let redb = |dir: &Path| {
        let engine = crate::RedbBackend::open(dir, 8 << 20).unwrap();
        let buffered =
            crate::WriteBuffer::new(Box::new(engine), std::time::Duration::from_secs(3600))
                .unwrap();
        Store::open(Box::new(buffered)).unwrap()
    };
    let source = std::sync::Arc::new(redb(d1.path()));
    fill(&source, &[("a", "1"), ("b", "2")]);
    let before = all_at(&source, 0);
    let mut sink = PutDuringCopy {
        store: std::sync::Arc::clone(&source),
        put_finished: None,
        data: Vec::new(),
    };
    source.snapshot_to(&mut sink).unwrap();
    assert_eq!(
        sink.put_finished,
        Some(true),
        "the put waited for the snapshot's copy to end"
    );
    assert_eq!(all_at(&source, 0).len(), 3, "the put is in the store");
    let target = redb(d2.path());
    target.install_snapshot(&sink.data).unwrap();
    assert_eq!(all_at(&target, 0), before, "the snapshot holds the put");
}
