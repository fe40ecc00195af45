//! The MVCC store: the key index in memory, every change in the backend by
//! revision, and the rule that decides what readers may see.
//!
//! Visibility rule: the single writer applies changes (index + backend) and
//! then publishes them ([`Store::publish`]), which raises the visible revision
//! and hands the changes to the watchers. Reads at "latest" read at the
//! visible revision, so a reader never sees half of what one publish covers.
//!
//! ```text
//! apply rev 11, 12 (index + backend, not yet visible)   readers: latest = 10
//! publish: visible_rev = 12, events of 11 and 12 out     readers: latest = 12
//! ```
//!
//! Publishing does not fsync: the server applies only what its Raft log holds
//! durably on a quorum, and replays it after a crash. A caller without such a
//! log uses [`Store::commit`] (flush, then publish), so nobody sees a change
//! that a crash could take back.

use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use oxetcd_proto::mvccpb::event::EventType;
use oxetcd_proto::mvccpb::{Event, KeyValue};
use parking_lot::RwLock;
use prost::Message;

use crate::backend::{Backend, Bucket, WriteBatch};
use crate::compaction::{IndexPass, RemovalQueue, INDEX_STEP_KEYS};
use crate::error::{Result, StorageError};
use crate::index::{KeyRange, TreeIndex};
use crate::revision::Revision;

pub(crate) const META_CURRENT_REV: &[u8] = b"current_rev";
pub(crate) const META_COMPACT_REV: &[u8] = b"compact_rev";
/// The state machine's own record of what it applied (opaque here), stored
/// in the same batch as the changes it covers.
pub(crate) const META_APPLIED_STATE: &[u8] = b"applied_state";
/// Prefix of cluster-level records (see `put_cluster_record`).
const CLUSTER_PREFIX: &str = "cluster/";
/// Prefix of lease records: `lease/` + the lease ID, 8 bytes big-endian.
const LEASE_PREFIX: &[u8] = b"lease/";
/// Left by an interrupted snapshot install of an earlier release (see `open`).
pub(crate) const META_RESTORING: &[u8] = b"restoring";

/// How to read a range.
#[derive(Clone, Copy, Debug, Default)]
pub struct RangeOptions {
    /// Most keys to return; 0 = all. `count` still counts every key.
    pub limit: usize,
    /// Revision to read at; 0 (or less) = latest.
    pub rev: i64,
    /// Count only; return no key-values.
    pub count_only: bool,
}

/// The answer to a range read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// Keys in the range at the revision read, ignoring the limit.
    pub count: i64,
    /// The store's revision when it was read (what etcd puts in the response
    /// header, also for reads of the past).
    pub rev: i64,
}

/// HashKV's answer: a checksum of history up to a revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashKv {
    pub hash: u32,
    pub compact_revision: i64,
    pub hash_revision: i64,
}

/// Mutable state of the store. Guarded by `Store::state`.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) index: TreeIndex,
    /// Last revision applied (visible or not).
    pub(crate) current_rev: i64,
    /// Revisions below this are compacted away.
    pub(crate) compact_rev: i64,
    /// Changes applied since the last publish, in revision order: what watchers
    /// get once a publish makes them visible.
    pub(crate) pending_events: Vec<Event>,
    /// The state machine's record of what it applied (see META_APPLIED_STATE).
    pub(crate) applied_state: Option<Bytes>,
    /// Compacted revisions still in the backend (see `compaction`).
    pub(crate) removals: RemovalQueue,
    /// A compaction's index pass not finished yet (see `compaction`).
    pub(crate) index_pass: Option<IndexPass>,
}

/// What a publish (or a commit) made visible. Its events are handed out once:
/// whoever publishes must pass them on to the watchers, or they never see them.
#[derive(Debug, Default)]
#[must_use = "the committed events are handed out only once: pass them to the watchers"]
pub struct Committed {
    /// The visible revision now.
    pub rev: i64,
    /// Every change since the previous publish, in revision order.
    pub events: Vec<Event>,
}

/// The MVCC key-value store.
pub struct Store {
    pub(crate) backend: Box<dyn Backend>,
    /// Index, counters and the compaction queue. The single writer holds it
    /// for write for one txn or one compaction step (one step of an index
    /// pass, or one batch of deletions; backend batch included); a reader
    /// holds it for read for its whole read, so it sees one revision and no
    /// compaction step midway.
    /// The only lock in the store.
    pub(crate) state: RwLock<State>,
    /// Highest revision published; "latest" for readers.
    visible_rev: AtomicI64,
}

impl Store {
    /// Opens the store on `backend`, rebuilding the index from stored history.
    pub fn open(backend: Box<dyn Backend>) -> Result<Self> {
        if backend.get(Bucket::Meta, META_RESTORING)?.is_some() {
            // Installs of earlier builds replaced the store in several batches
            // under this marker, and one of them died half way: what is here
            // is neither the old store nor the new one. Start empty; the
            // cluster sends it again. (Installs are one batch now.)
            clear(backend.as_ref())?;
            backend.flush()?;
        }
        let state = load_state(backend.as_ref())?;
        let visible = state.current_rev;
        Ok(Self {
            backend,
            state: RwLock::new(state),
            visible_rev: AtomicI64::new(visible),
        })
    }

    /// After a snapshot install: the visible revision is the snapshot's.
    pub(crate) fn reset_visible(&self, rev: i64) {
        self.visible_rev.store(rev, Ordering::Release);
    }

    /// Latest revision readers may see.
    pub fn current_revision(&self) -> i64 {
        self.visible_rev.load(Ordering::Acquire)
    }

    /// Last revision applied, visible or not (what the writer sees).
    pub fn applied_revision(&self) -> i64 {
        self.state.read().current_rev
    }

    /// Revisions below this have been compacted.
    pub fn compacted_revision(&self) -> i64 {
        self.state.read().compact_rev
    }

    /// Reads `range` as of `opts.rev` (latest visible when 0).
    pub fn range(&self, range: KeyRange<'_>, opts: &RangeOptions) -> Result<RangeResult> {
        let state = self.state.read();
        let backend = self.backend.as_ref();
        read_range(&state, range, opts, self.current_revision(), |rev| {
            fetch_kv(backend, rev)
        })
    }

    /// Makes everything applied so far durable, then visible; returns the new
    /// visible revision and the changes that just became visible.
    pub fn commit(&self) -> Result<Committed> {
        self.flush()?;
        Ok(self.publish())
    }

    /// Makes everything applied so far durable (fsync), without publishing.
    pub fn flush(&self) -> Result<()> {
        self.backend.flush()
    }

    /// Makes everything applied so far durable, and returns an applied state
    /// (see `save_applied_state`) that the durable store now covers. The
    /// state is read first, then the backend flushed: an apply hands its
    /// changes to the backend before it records its state (under the write
    /// lock), so a flush that starts after the read makes all that the state
    /// covers durable, and applies go on during the flush. Holding the lock
    /// through it stopped every apply for the length of the engine's fsync,
    /// tens of milliseconds at each snapshot.
    pub fn flush_applied(&self) -> Result<Option<Bytes>> {
        let applied = self.state.read().applied_state.clone();
        self.backend.flush()?;
        Ok(applied)
    }

    /// Makes everything applied so far visible to readers and hands out its
    /// changes, WITHOUT an fsync: only for callers whose changes are durable
    /// elsewhere already (a replicated log that replays them after a crash).
    pub fn publish(&self) -> Committed {
        let (rev, events) = {
            let mut state = self.state.write();
            (state.current_rev, std::mem::take(&mut state.pending_events))
        };
        self.visible_rev.fetch_max(rev, Ordering::AcqRel);
        Committed { rev, events }
    }

    /// Stores a cluster-level record (member attributes and the like) beside
    /// the data: replicated like it, in snapshots, durable with the next flush.
    /// Keys are namespaced under `cluster/`.
    pub fn put_cluster_record(&self, key: &str, value: Bytes) -> Result<()> {
        let _state = self.state.write();
        let mut batch = WriteBatch::default();
        batch.put(
            Bucket::Meta,
            Bytes::from(format!("{CLUSTER_PREFIX}{key}")),
            value,
        );
        self.backend.apply(batch)
    }

    /// Deletes a cluster record (see `put_cluster_record`); none is no error.
    pub fn delete_cluster_record(&self, key: &str) -> Result<()> {
        let _state = self.state.write();
        let mut batch = WriteBatch::default();
        batch.delete(Bucket::Meta, Bytes::from(format!("{CLUSTER_PREFIX}{key}")));
        self.backend.apply(batch)
    }

    /// Puts (`Some`) and deletes (`None`) cluster records, and records
    /// `applied` (the state machine's record) when given, in one backend
    /// batch: a change of several records (auth's users, roles and revision)
    /// is stored whole or not at all.
    pub fn change_cluster_records(
        &self,
        changes: Vec<(String, Option<Bytes>)>,
        applied: Option<Bytes>,
    ) -> Result<()> {
        let mut state = self.state.write();
        let mut batch = WriteBatch::default();
        for (key, value) in changes {
            let key = Bytes::from(format!("{CLUSTER_PREFIX}{key}"));
            match value {
                Some(value) => batch.put(Bucket::Meta, key, value),
                None => batch.delete(Bucket::Meta, key),
            }
        }
        if let Some(applied) = &applied {
            batch.put(Bucket::Meta, META_APPLIED_STATE, applied.clone());
        }
        self.backend.apply(batch)?;
        if applied.is_some() {
            state.applied_state = applied;
        }
        Ok(())
    }

    /// Every cluster record whose key starts with `prefix`, in key order.
    pub fn cluster_records(&self, prefix: &str) -> Result<Vec<(String, Bytes)>> {
        let _state = self.state.read();
        self.scan_cluster_records(prefix)
    }

    /// [`Store::cluster_records`] for a caller that holds the state lock.
    pub(crate) fn scan_cluster_records(&self, prefix: &str) -> Result<Vec<(String, Bytes)>> {
        let from = format!("{CLUSTER_PREFIX}{prefix}");
        let mut out = Vec::new();
        for entry in self.backend.scan(Bucket::Meta, from.as_bytes(), None) {
            let (k, v) = entry?;
            if !k.starts_with(from.as_bytes()) {
                break;
            }
            let key = String::from_utf8_lossy(&k[CLUSTER_PREFIX.len()..]).into_owned();
            out.push((key, v));
        }
        Ok(out)
    }

    /// Every lease record (see `WriteTxn::put_lease_record`), by lease ID.
    pub fn lease_records(&self) -> Result<Vec<(i64, Bytes)>> {
        let _state = self.state.read();
        let mut out = Vec::new();
        for entry in self.backend.scan(Bucket::Meta, LEASE_PREFIX, None) {
            let (k, v) = entry?;
            let Some(id) = k.strip_prefix(LEASE_PREFIX) else {
                break;
            };
            let id: [u8; 8] = id
                .try_into()
                .map_err(|_| StorageError::Corrupt(format!("bad lease record key {k:x?}")))?;
            out.push((i64::from_be_bytes(id), v));
        }
        Ok(out)
    }

    /// What the state machine last recorded as applied, if anything.
    pub fn applied_state(&self) -> Option<Bytes> {
        self.state.read().applied_state.clone()
    }

    /// Records what the state machine applied when a command changed nothing
    /// (the record is durable with the next flush).
    pub fn save_applied_state(&self, applied: Bytes) -> Result<()> {
        let mut state = self.state.write();
        let mut batch = WriteBatch::default();
        batch.put(Bucket::Meta, META_APPLIED_STATE, applied.clone());
        self.backend.apply(batch)?;
        state.applied_state = Some(applied);
        Ok(())
    }

    /// Every change with main revision in `from..=to`, oldest first, stopping
    /// after the revision in which the `max_events`th event falls (a revision is
    /// never split). Returns the events and the next revision to read from.
    /// `from` must not be compacted: this is what watchers catch up from.
    pub fn history(&self, from: i64, to: i64, max_events: usize) -> Result<(Vec<Event>, i64)> {
        let state = self.state.read();
        if from < state.compact_rev {
            return Err(StorageError::Compacted);
        }
        let to = to.min(self.current_revision());
        let mut events: Vec<Event> = Vec::new();
        let mut next = to + 1;
        let end = Revision::scan_start(to + 1);
        for entry in self
            .backend
            .scan(Bucket::Key, &Revision::scan_start(from), Some(&end))
        {
            let (k, v) = entry?;
            let (rev, tombstone) = Revision::from_key(&k)
                .ok_or_else(|| StorageError::Corrupt(format!("bad revision key {k:x?}")))?;
            if events.len() >= max_events
                && events
                    .last()
                    .and_then(|e| e.kv.as_ref())
                    .map(|kv| kv.mod_revision)
                    != Some(rev.main)
            {
                next = rev.main;
                break;
            }
            let kind = if tombstone {
                EventType::Delete
            } else {
                EventType::Put
            };
            events.push(Event {
                r#type: kind as i32,
                kv: Some(decode_kv(v, rev)?),
                prev_kv: None,
            });
        }
        Ok((events, next))
    }

    /// A checksum of every stored change at or below `rev` (0 = latest), to compare
    /// members holding the same history. Changes compacted away but not yet
    /// deleted are left out, so members agree whatever their compaction's progress.
    pub fn hash_kv(&self, rev: i64) -> Result<HashKv> {
        let state = loop {
            let state = self.state.read();
            if state.index_pass.is_none() {
                break state;
            }
            // Until the pass ends, the revisions it drops are not queued, and
            // the hash would depend on how far it got.
            drop(state);
            while self.compact_index_step(INDEX_STEP_KEYS) {}
        };
        let latest = self.current_revision();
        let rev = if rev <= 0 { latest } else { rev };
        check_readable(&state, rev, latest)?;
        let mut hasher = crc32fast::Hasher::new();
        let end = Revision::scan_start(rev + 1);
        for entry in self.backend.scan(Bucket::Key, &[], Some(&end)) {
            let (k, v) = entry?;
            let (r, _) = Revision::from_key(&k)
                .ok_or_else(|| StorageError::Corrupt(format!("bad revision key {k:x?}")))?;
            if state.removals.contains(r) {
                continue;
            }
            hasher.update(&k);
            hasher.update(&v);
        }
        Ok(HashKv {
            hash: hasher.finalize(),
            compact_revision: state.compact_rev,
            hash_revision: rev,
        })
    }

    /// Keys live at the latest applied revision (etcd's keys gauge).
    pub fn live_keys(&self) -> i64 {
        self.state.read().index.live_keys()
    }

    /// Bytes the backend occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.backend.size_on_disk()
    }

    /// The store's size as the storage quota counts it: [`Store::size_on_disk`]
    /// as last measured (at the backend's last flush, plus what it buffers),
    /// less file growth that no data has reached yet (`filled_size`), read
    /// without I/O or a lock, for checks on every request.
    pub fn size_cached(&self) -> u64 {
        self.backend.size_cached()
    }

    /// Whether the engine's writer can hang (see [`Backend::writer_may_hang`]).
    pub fn writer_may_hang(&self) -> bool {
        self.backend.writer_may_hang()
    }
}

pub(crate) fn lease_record_key(id: i64) -> Bytes {
    let mut key = Vec::with_capacity(LEASE_PREFIX.len() + 8);
    key.extend_from_slice(LEASE_PREFIX);
    key.extend_from_slice(&id.to_be_bytes());
    key.into()
}

/// Rebuilds the in-memory state (index, revisions, applied state) from what
/// the backend holds, and queues again what an unfinished compaction (one cut
/// off by a crash, or caught midway by a snapshot) left to delete.
pub(crate) fn load_state(backend: &dyn Backend) -> Result<State> {
    let read_meta = |key: &[u8]| -> Result<i64> {
        match backend.get(Bucket::Meta, key)? {
            None => Ok(0),
            Some(v) => decode_i64(&v).ok_or_else(|| corrupt_meta(key)),
        }
    };
    let mut state = State {
        // As in etcd, an empty store is at revision 1: the first write is 2.
        current_rev: read_meta(META_CURRENT_REV)?.max(1),
        compact_rev: read_meta(META_COMPACT_REV)?,
        applied_state: backend.get(Bucket::Meta, META_APPLIED_STATE)?,
        ..State::default()
    };
    for entry in backend.scan(Bucket::Key, &[], None) {
        let (k, v) = entry?;
        let (rev, tombstone) = Revision::from_key(&k)
            .ok_or_else(|| StorageError::Corrupt(format!("bad revision key {k:x?}")))?;
        let kv = decode_kv(v, rev)?;
        if tombstone {
            state.index.restore_tombstone(kv.key, rev);
        } else {
            state
                .index
                .restore_put(kv.key, rev, kv.create_revision, kv.version);
        }
        state.current_rev = state.current_rev.max(rev.main);
    }
    state.current_rev = state.current_rev.max(state.compact_rev);
    if state.compact_rev > 0 {
        let unfinished = state.index.compact(state.compact_rev);
        state.removals.extend(unfinished);
    }
    Ok(state)
}

/// Deletes everything in every bucket, in bounded batches.
pub(crate) fn clear(backend: &dyn Backend) -> Result<()> {
    for bucket in [Bucket::Key, Bucket::Meta] {
        loop {
            let keys: Vec<Bytes> = backend
                .scan(bucket, &[], None)
                .take(10_000)
                .map(|e| e.map(|(k, _)| k))
                .collect::<Result<_>>()?;
            if keys.is_empty() {
                break;
            }
            let mut batch = WriteBatch::default();
            for k in keys {
                batch.delete(bucket, k);
            }
            backend.apply(batch)?;
        }
    }
    Ok(())
}

pub(crate) fn check_readable(state: &State, rev: i64, latest: i64) -> Result<()> {
    if rev > latest {
        return Err(StorageError::FutureRevision);
    }
    if rev < state.compact_rev {
        return Err(StorageError::Compacted);
    }
    Ok(())
}

/// The one read path, shared by plain reads and reads inside a write txn
/// (whose own puts are not in the backend yet: `fetch` finds them).
pub(crate) fn read_range(
    state: &State,
    range: KeyRange<'_>,
    opts: &RangeOptions,
    latest: i64,
    fetch: impl Fn(Revision) -> Result<KeyValue>,
) -> Result<RangeResult> {
    let rev = if opts.rev <= 0 { latest } else { opts.rev };
    check_readable(state, rev, latest)?;
    let mut count = 0i64;
    let mut found = Vec::new();
    state.index.visit(range, rev, |_, at| {
        count += 1;
        if !opts.count_only && (opts.limit == 0 || found.len() < opts.limit) {
            found.push(at.modified);
        }
        true
    });
    let kvs = found.into_iter().map(fetch).collect::<Result<_>>()?;
    Ok(RangeResult {
        kvs,
        count,
        rev: latest,
    })
}

pub(crate) fn fetch_kv(backend: &dyn Backend, rev: Revision) -> Result<KeyValue> {
    let v = backend
        .get(Bucket::Key, &rev.to_key(false))?
        .ok_or_else(|| {
            StorageError::Corrupt(format!(
                "index names revision {rev} but the backend lacks it"
            ))
        })?;
    decode_kv(v, rev)
}

fn decode_kv(v: Bytes, rev: Revision) -> Result<KeyValue> {
    KeyValue::decode(v).map_err(|e| StorageError::Corrupt(format!("revision {rev}: {e}")))
}

pub(crate) fn encode_i64(v: i64) -> Bytes {
    Bytes::copy_from_slice(&v.to_be_bytes())
}

fn decode_i64(v: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(v.try_into().ok()?))
}

fn corrupt_meta(key: &[u8]) -> StorageError {
    StorageError::Corrupt(format!(
        "meta value {} is not 8 bytes",
        String::from_utf8_lossy(key)
    ))
}
