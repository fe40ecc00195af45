//! The Raft state machine: committed entries applied to the MVCC store in log
//! order, their changes handed to watchers.
//!
//! Durability rule: the log is durable on a quorum before an entry is applied,
//! so applying does not fsync the store. Each entry that changes the store
//! records what was applied (log id + membership) in the same atomic batch as
//! its changes, so after a crash the store says exactly which entry it holds
//! last and openraft replays the log from there. The store's durable point is
//! its last `Backend::flush` (an fsync, or redb's durable commit). Building a
//! snapshot is making the store durable: the store itself is the snapshot,
//! and its meta (`snapshot.meta`, fsynced) names the last entry the flush
//! covered (`Store::flush_applied`). The log is purged only up to a durable
//! point of the store, which the state machine reports to the log store's
//! [`PurgeGate`] after each flush that moves it (start-up, a build, an
//! install): openraft asks a follower to purge up to a snapshot it is still
//! installing, and a power cut then would leave the old store beside a log
//! that no longer holds what it must replay. So every entry the store may
//! lose in a crash is still in the log:
//!
//! ```text
//! log:      1 2 3 4 5 6 7 8        (durable on a quorum before 1..8 apply)
//! store:    applied 1..6; durable up to 4 (the last flush)
//! snapshot: flush -> durable up to 6 -> snapshot.meta fsynced (covers 1..6)
//!           -> purge 1..6 (never past 6: the snapshot's last log id)
//! crash before the snapshot: store says "applied 4" -> openraft re-applies 5..8
//! crash after the purge:     store says "applied 6" (flushed) -> re-applies 7 8
//! ```
//!
//! A snapshot's data (the store's contents, `Store::snapshot_to`) is copied
//! only when it is read: to send to a follower, or when openraft starts. It is
//! then a copy of the store as it is at that moment, and its meta is read from
//! the applied record inside it, so the data and the meta always agree; it may
//! cover more entries than the last build named, which only spares the
//! follower their replay. Copying the whole store at every --snapshot-count
//! writes took a quarter of a member's write throughput
//! (docs/performance.md, snapshot cost).
//!
//! The power-loss tests in jepsen/ (powerfs, engine_power_cuts) drop whatever
//! was not fsynced and check that no acknowledged write is lost.
//!
//! Entries that change nothing (a failed compare, a blank entry) are not
//! recorded: replaying them changes nothing again.

// openraft's StorageError is large, and its traits return it: helpers here
// return it too rather than convert at every call.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use oxetcd_raft::{LogId, NodeId, PurgeGate};
use oxetcd_storage::Store;
use oxetcd_watch::WatchHub;

use serde::Deserialize;

use super::log_compaction::AppliedWrites;
use super::{Entry, TypeConfig};
use crate::alarm::Alarms;
use crate::apply;
use crate::auth::AuthStore;
use crate::command::{
    self, Applied, ExpiredLeases, KeyWrite, LogCommand, Request, Response as WriteResponse,
};
use crate::datadir;
use crate::error::EtcdError;
use crate::lease::{self, Lessor};
use crate::quota::{self, Quota};
use crate::watchdog::Watchdog;

/// etcd's --experimental-warning-apply-duration default.
pub const DEFAULT_SLOW_APPLY: Duration = Duration::from_millis(100);

type Membership = StoredMembership<NodeId, BasicNode>;
type RaftResult<T> = Result<T, StorageError<NodeId>>;

/// What the store records as applied, in the batch of the changes it covers:
/// the last applied log ID and the membership. Written with every applied
/// entry that changes the store, so it is cheap to encode: the membership's
/// JSON is made when the membership changes, not at every apply.
///
/// Stored form (`RECORD_V2`): byte 2, a log-ID flag byte (0 none, 1 some),
/// term, node and index as u64 little-endian (24 bytes, zero when none),
/// then the membership as JSON. Releases before it stored one JSON object
/// `{"last_applied":..,"membership":..}`; that still reads.
#[derive(Clone, Debug)]
struct AppliedRecord {
    last_applied: Option<LogId>,
    membership: Membership,
    /// `membership` as JSON, kept from the last change.
    membership_json: Bytes,
}

const RECORD_V2: u8 = 2;
const LOG_ID_BYTES: usize = 1 + 3 * 8;

/// The record as releases before `RECORD_V2` stored it.
#[derive(Deserialize)]
struct AppliedRecordV1 {
    last_applied: Option<LogId>,
    membership: Membership,
}

impl AppliedRecord {
    fn new(last_applied: Option<LogId>, membership: Membership) -> RaftResult<Self> {
        let membership_json = serde_json::to_vec(&membership)
            .map(Bytes::from)
            .map_err(|e| write_err(&e))?;
        Ok(Self {
            last_applied,
            membership,
            membership_json,
        })
    }

    fn set_membership(&mut self, membership: Membership) -> RaftResult<()> {
        *self = Self::new(self.last_applied, membership)?;
        Ok(())
    }

    fn encode(&self) -> Bytes {
        let mut b = Vec::with_capacity(1 + LOG_ID_BYTES + self.membership_json.len());
        b.push(RECORD_V2);
        match &self.last_applied {
            None => b.extend_from_slice(&[0; LOG_ID_BYTES]),
            Some(id) => {
                b.push(1);
                b.extend_from_slice(&id.leader_id.term.to_le_bytes());
                b.extend_from_slice(&id.leader_id.node_id.to_le_bytes());
                b.extend_from_slice(&id.index.to_le_bytes());
            }
        }
        b.extend_from_slice(&self.membership_json);
        Bytes::from(b)
    }

    fn decode(raw: Option<Bytes>) -> RaftResult<Self> {
        let corrupt = |why: &str| {
            read_err(&std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("applied record: {why}"),
            ))
        };
        let Some(raw) = raw else {
            return Self::new(None, Membership::default());
        };
        match raw.first() {
            Some(&RECORD_V2) => {
                let id = raw
                    .get(1..1 + LOG_ID_BYTES)
                    .ok_or_else(|| corrupt("too short"))?;
                let u64_at = |at: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&id[at..at + 8]);
                    u64::from_le_bytes(b)
                };
                let last_applied = (id[0] == 1).then(|| {
                    LogId::new(
                        openraft::CommittedLeaderId::new(u64_at(1), u64_at(9)),
                        u64_at(17),
                    )
                });
                let membership_json = raw.slice(1 + LOG_ID_BYTES..);
                let membership =
                    serde_json::from_slice(&membership_json).map_err(|e| read_err(&e))?;
                Ok(Self {
                    last_applied,
                    membership,
                    membership_json,
                })
            }
            Some(b'{') => {
                let v1: AppliedRecordV1 = serde_json::from_slice(&raw).map_err(|e| read_err(&e))?;
                Self::new(v1.last_applied, v1.membership)
            }
            _ => Err(corrupt("unknown format")),
        }
    }
}

fn write_err(e: &(impl std::error::Error + 'static)) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::write_state_machine(AnyError::new(e)),
    }
}

fn read_err(e: &(impl std::error::Error + 'static)) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::read_state_machine(AnyError::new(e)),
    }
}

fn snapshot_err(e: &(impl std::error::Error + 'static)) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::write_snapshot(None, AnyError::new(e)),
    }
}

/// The state machine over the MVCC store.
pub struct StateMachine {
    store: Arc<Store>,
    hub: Arc<WatchHub>,
    /// Leases, kept in step with the store.
    lessor: Arc<Lessor>,
    /// Alarms, kept in step with the store.
    alarms: Arc<Alarms>,
    /// Users, roles and tokens, kept in step with the store.
    auth: Arc<AuthStore>,
    /// Told what applied writes cost, to notice the store past its quota.
    quota: Arc<Quota>,
    /// Where the meta of the last built or installed snapshot is kept.
    snapshots: SnapshotFiles,
    applied: AppliedRecord,
    /// Stops the member if one batch of applies hangs (see `watchdog`);
    /// only for an engine whose writer may hang.
    watchdog: Option<Arc<Watchdog>>,
    /// Writes per applied entry: what snapshots and log purges count.
    writes: Arc<AppliedWrites>,
    /// Told each new durable point of the store, so the log is purged no
    /// further.
    purges: Arc<PurgeGate<LogCommand>>,
    /// An entry whose apply takes longer is logged and counted in
    /// etcd_server_slow_apply_total (--experimental-warning-apply-duration).
    slow_apply: Duration,
    /// The failpoint [`FORGET_WRITE_ON_RESTART`] is armed: the next batch
    /// of key writes is recorded as applied without being applied.
    forget_next_write: bool,
}

/// Test-only failpoint (OXETCD_FAILPOINT_FORGET_WRITE_ON_RESTART): a member
/// that restarts on its data forgets the first batch of key writes it
/// applies (the replay of its last entries, or the next new one): recorded
/// as applied, never applied, so its store lacks writes the others hold.
/// Process-wide, set once at start: the state machine is made deep inside
/// the replication layer, which no failpoint configuration reaches.
static FORGET_WRITE_ON_RESTART: AtomicBool = AtomicBool::new(false);

/// Enables the failpoint [`FORGET_WRITE_ON_RESTART`] (at start).
pub fn set_forget_write_on_restart_failpoint(on: bool) {
    FORGET_WRITE_ON_RESTART.store(on, Ordering::Relaxed);
}

/// What the state machine keeps in step with the store besides the keys.
#[derive(Clone)]
pub struct Companions {
    pub lessor: Arc<Lessor>,
    pub alarms: Arc<Alarms>,
    pub auth: Arc<AuthStore>,
    pub quota: Arc<Quota>,
}

impl StateMachine {
    pub fn new(
        store: Arc<Store>,
        hub: Arc<WatchHub>,
        companions: Companions,
        snapshot_dir: PathBuf,
        watchdog: Option<Arc<Watchdog>>,
        purges: Arc<PurgeGate<LogCommand>>,
        slow_apply: Duration,
    ) -> RaftResult<Self> {
        let Companions {
            lessor,
            alarms,
            auth,
            quota,
        } = companions;
        let applied = AppliedRecord::decode(store.applied_state())?;
        lease::recover(&lessor, &store).map_err(|e| read_err(&e))?;
        alarms.reload(&store).map_err(|e| read_err(&e))?;
        auth.reload(&store).map_err(|e| read_err(&e))?;
        let restarted = applied.last_applied.is_some();
        let forget_next_write = restarted && FORGET_WRITE_ON_RESTART.load(Ordering::Relaxed);
        Ok(Self {
            store,
            hub,
            lessor,
            alarms,
            auth,
            quota,
            snapshots: SnapshotFiles { dir: snapshot_dir },
            applied,
            watchdog,
            writes: Arc::default(),
            purges,
            slow_apply,
            forget_next_write,
        })
    }

    /// Makes `store` durable and names the last entry it then holds: the
    /// durable point a [`PurgeGate`] starts from. (After a kill the store may
    /// show applies that were never made durable; they are now.)
    pub fn durable_applied(store: &Store) -> RaftResult<Option<LogId>> {
        let applied = store.flush_applied().map_err(|e| write_err(&e))?;
        Ok(AppliedRecord::decode(applied)?.last_applied)
    }

    /// --force-new-cluster: records this member alone as the membership, as
    /// of the last entry applied, and makes it durable (see
    /// `force_new_cluster`).
    pub(super) fn force_single_member(&mut self, id: NodeId, node: BasicNode) -> RaftResult<()> {
        let alone = openraft::Membership::new(
            vec![std::collections::BTreeSet::from([id])],
            std::collections::BTreeMap::from([(id, node)]),
        );
        self.applied
            .set_membership(StoredMembership::new(self.applied.last_applied, alone))?;
        self.store
            .save_applied_state(self.applied.encode())
            .map_err(|e| write_err(&e))?;
        self.store.flush().map_err(|e| write_err(&e))
    }

    /// The count of writes applied, by entry (see `log_compaction`).
    pub fn applied_writes(&self) -> Arc<AppliedWrites> {
        self.writes.clone()
    }

    /// Applies one entry; `cost` is raised to its writes' largest cost.
    fn apply_one(&mut self, entry: Entry, cost: &mut u64) -> RaftResult<Applied> {
        self.applied.last_applied = Some(entry.log_id);
        // Every entry counts as one write, as in etcd, except a batch: one
        // per write in it.
        let mut writes = 1;
        let index = entry.log_id.index;
        let term = entry.log_id.leader_id.term;
        let applied = match entry.payload {
            EntryPayload::Blank => Applied::default(),
            EntryPayload::Membership(m) => {
                self.applied
                    .set_membership(StoredMembership::new(Some(entry.log_id), m))?;
                // Membership must survive a restart even though no key changed.
                self.store
                    .save_applied_state(self.applied.encode())
                    .map_err(|e| write_err(&e))?;
                Applied::default()
            }
            EntryPayload::Normal(logged) => {
                let command = logged.command();
                command::count_applied(command);
                *cost = (*cost).max(quota::command_cost(command));
                if !command.batch.is_empty() {
                    writes = command.batch.len() as u64;
                    if std::mem::take(&mut self.forget_next_write) {
                        self.forget_batch(&command.batch)?
                    } else {
                        self.apply_batch(&command.batch)?
                    }
                } else {
                    match &command.request {
                        Some(Request::LeaseExpire(e)) if e.is_stale(term) => {
                            Applied(vec![Ok(WriteResponse::LeaseExpire(ExpiredLeases {
                                ids: Vec::new(),
                                term: e.term,
                            }))])
                        }
                        Some(request) => self.apply_request(request)?,
                        None => Applied::default(),
                    }
                }
            }
        };
        self.writes.applied(index, writes);
        Ok(applied)
    }

    /// A lone request, its changes stored with the applied record.
    fn apply_request(&mut self, request: &Request) -> RaftResult<Applied> {
        let record = self.applied.encode();
        let result = apply::apply(
            &self.store,
            &self.lessor,
            &self.alarms,
            &self.auth,
            Some(&record),
            request,
        );
        if let Err(e) = &result {
            if e.is_fatal() {
                return Err(write_err(e));
            }
        }
        Ok(Applied(vec![result]))
    }

    /// The failpoint's bug: the batch is recorded as applied, and its
    /// writes are not applied (each answered "stopped").
    fn forget_batch(&mut self, batch: &[KeyWrite]) -> RaftResult<Applied> {
        tracing::warn!(
            writes = batch.len(),
            "OXETCD_FAILPOINT_FORGET_WRITE_ON_RESTART: key writes forgotten"
        );
        let record = self.applied.encode();
        apply::apply_key_writes(
            &self.store,
            &self.lessor,
            &self.alarms,
            Some(&record),
            std::iter::empty(),
        )
        .map_err(|e| write_err(&e))?;
        Ok(Applied(
            batch.iter().map(|_| Err(EtcdError::Stopped)).collect(),
        ))
    }

    /// A batch entry: its key writes in one store batch with the applied
    /// record, so a crash leaves the entry applied whole or not at all.
    fn apply_batch(&mut self, batch: &[KeyWrite]) -> RaftResult<Applied> {
        let writes = batch
            .iter()
            .map(|w| {
                w.as_ref().ok_or_else(|| {
                    read_err(&EtcdError::Storage(
                        "a batch entry holds an empty key write".to_string(),
                    ))
                })
            })
            .collect::<RaftResult<Vec<_>>>()?;
        let record = self.applied.encode();
        let results = apply::apply_key_writes(
            &self.store,
            &self.lessor,
            &self.alarms,
            Some(&record),
            writes,
        )
        .map_err(|e| write_err(&e))?;
        Ok(Applied(results))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> RaftResult<(Option<LogId>, Membership)> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> RaftResult<Vec<Applied>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let watchdog = self.watchdog.clone();
        let _busy = watchdog.as_deref().map(Watchdog::busy);
        let mut responses = Vec::new();
        let mut cost = 0;
        for entry in entries {
            let started = Instant::now();
            let index = entry.log_id.index;
            let (what, writes) = entry_kind(&entry);
            responses.push(self.apply_one(entry, &mut cost)?);
            let took = started.elapsed();
            if took > self.slow_apply {
                oxetcd_metrics::server().slow_apply_total.inc();
                // etcd's warning, with the entry's kind instead of its
                // contents (keys and values may be secret).
                tracing::warn!(
                    took = ?took,
                    "expected-duration" = ?self.slow_apply,
                    index,
                    request = what,
                    writes,
                    "apply request took too long"
                );
            }
        }
        self.quota.applied(&self.store, cost);
        // Committed on a quorum already: visible now, and to watchers.
        let published = self.store.publish();
        self.hub.notify(&published.events);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Entries that changed nothing left no record: write the true one now,
        // so a snapshot taken from here on names the last entry it includes.
        // (openraft asks for a builder between applies; a failure here only
        // makes the snapshot name an earlier entry, which replays harmlessly.)
        let _ = self.store.save_applied_state(self.applied.encode());
        SnapshotBuilder {
            store: self.store.clone(),
            files: self.snapshots.clone(),
            purges: self.purges.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> RaftResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> RaftResult<()> {
        let data = snapshot.into_inner();
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.install_snapshot(&data))
            .await
            .map_err(|e| snapshot_err(&e))?
            .map_err(|e| snapshot_err(&e))?;
        self.applied = AppliedRecord::new(meta.last_log_id, meta.last_membership.clone())?;
        self.store
            .save_applied_state(self.applied.encode())
            .map_err(|e| write_err(&e))?;
        self.store.flush().map_err(|e| write_err(&e))?;
        self.snapshots.save_meta(meta)?;
        // Durable now: the log may go up to the snapshot's end (openraft has
        // asked for that already), before the leader hears that it is in.
        self.purges
            .durable_at(meta.last_log_id)
            .await
            .map_err(|e| write_err(&e))?;
        lease::recover(&self.lessor, &self.store).map_err(|e| snapshot_err(&e))?;
        self.alarms
            .reload(&self.store)
            .map_err(|e| snapshot_err(&e))?;
        self.auth
            .reload(&self.store)
            .map_err(|e| snapshot_err(&e))?;
        self.hub.resync();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> RaftResult<Option<Snapshot<TypeConfig>>> {
        if self.snapshots.load_meta()?.is_none() {
            // Nothing built or installed yet: openraft builds one if it
            // needs one.
            return Ok(None);
        }
        copy_store(&self.store).await.map(Some)
    }
}

/// What an entry is and how many writes it holds, for the slow-apply
/// warning (taken before every apply: no allocation).
fn entry_kind(entry: &Entry) -> (&'static str, usize) {
    match &entry.payload {
        EntryPayload::Blank => ("blank entry", 0),
        EntryPayload::Membership(_) => ("membership change", 0),
        EntryPayload::Normal(logged) => {
            let command = logged.command();
            match &command.request {
                Some(request) => (request.kind(), 1),
                None => ("batch of key writes", command.batch.len()),
            }
        }
    }
}

/// The snapshot of the store as it is now: its contents, and the meta read
/// from the applied record among them.
async fn copy_store(store: &Arc<Store>) -> RaftResult<Snapshot<TypeConfig>> {
    let store = store.clone();
    let (data, applied) = tokio::task::spawn_blocking(move || {
        let mut data = Vec::new();
        let applied = store.snapshot_to(&mut data)?;
        Ok::<_, oxetcd_storage::StorageError>((data, applied))
    })
    .await
    .map_err(|e| snapshot_err(&e))?
    .map_err(|e| snapshot_err(&e))?;
    Ok(Snapshot {
        meta: snapshot_meta(AppliedRecord::decode(applied)?),
        snapshot: Box::new(Cursor::new(data)),
    })
}

/// The meta of a snapshot that ends with `applied`'s entry.
fn snapshot_meta(applied: AppliedRecord) -> SnapshotMeta<NodeId, BasicNode> {
    let id = applied.last_applied.map_or_else(
        || "empty".to_string(),
        |l| format!("{}-{}", l.leader_id, l.index),
    );
    SnapshotMeta {
        last_log_id: applied.last_applied,
        last_membership: applied.membership,
        snapshot_id: id,
    }
}

/// Builds a snapshot: makes the store durable and records the entry it
/// covers (see the module docs: the data is copied when read).
pub struct SnapshotBuilder {
    store: Arc<Store>,
    files: SnapshotFiles,
    purges: Arc<PurgeGate<LogCommand>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> RaftResult<Snapshot<TypeConfig>> {
        let store = self.store.clone();
        let applied = tokio::task::spawn_blocking(move || store.flush_applied())
            .await
            .map_err(|e| snapshot_err(&e))?
            .map_err(|e| snapshot_err(&e))?;
        let meta = snapshot_meta(AppliedRecord::decode(applied)?);
        self.files.save_meta(&meta)?;
        self.purges
            .durable_at(meta.last_log_id)
            .await
            .map_err(|e| write_err(&e))?;
        // openraft keeps only the meta of what a build returns (it reads the
        // data through `get_current_snapshot` when it sends one).
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(Vec::new())),
        })
    }
}

/// The meta of the last snapshot built or installed, `snapshot.meta` (JSON),
/// replaced atomically (write, fsync, rename). Releases before lazy snapshots
/// kept the data beside it in `snapshot.data`; it is removed at the next save.
#[derive(Clone)]
struct SnapshotFiles {
    dir: PathBuf,
}

impl SnapshotFiles {
    fn save_meta(&self, meta: &SnapshotMeta<NodeId, BasicNode>) -> RaftResult<()> {
        let meta = serde_json::to_vec(meta).map_err(|e| snapshot_err(&e))?;
        std::fs::create_dir_all(&self.dir).map_err(|e| snapshot_err(&e))?;
        datadir::write_atomically(&self.dir.join("snapshot.meta"), &meta)
            .map_err(|e| snapshot_err(&e))?;
        match std::fs::remove_file(self.dir.join("snapshot.data")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(snapshot_err(&e)),
            _ => Ok(()),
        }
    }

    fn load_meta(&self) -> RaftResult<Option<SnapshotMeta<NodeId, BasicNode>>> {
        let meta = match std::fs::read(self.dir.join("snapshot.meta")) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_err(&e)),
        };
        serde_json::from_slice(&meta)
            .map(Some)
            .map_err(|e| read_err(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::LogCommand;
    use openraft::testing::{StoreBuilder, Suite};
    use oxetcd_raft::{LogStore, Wal, WalOptions};
    use oxetcd_storage::{SledBackend, WriteBuffer};
    use oxetcd_watch::WatchConfig;
    use std::time::Duration;
    use tempfile::TempDir;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore<LogCommand>, StateMachine, TempDir> for Builder {
        async fn build(&self) -> RaftResult<(TempDir, LogStore<LogCommand>, StateMachine)> {
            let dir = tempfile::tempdir().map_err(|e| write_err(&e))?;
            let wal = Wal::open(dir.path().join("wal"), WalOptions::default())
                .map_err(|e| write_err(&e))?;
            let engine =
                SledBackend::open(&dir.path().join("kv"), 8 << 20).map_err(|e| write_err(&e))?;
            let backend = WriteBuffer::new(Box::new(engine), oxetcd_storage::FLUSH_INTERVAL)
                .map_err(|e| write_err(&e))?;
            let store = Arc::new(Store::open(Box::new(backend)).map_err(|e| write_err(&e))?);
            let hub = WatchHub::start(store.clone(), WatchConfig::default());
            let watchdog =
                Some(Watchdog::start(Duration::from_secs(600), |_| {}).map_err(|e| write_err(&e))?);
            let companions = Companions {
                lessor: Arc::new(crate::lease::Lessor::new(1, false)),
                alarms: Arc::default(),
                auth: Arc::default(),
                quota: Arc::new(Quota::new(0)),
            };
            // openraft's suite purges without building snapshots first.
            let purges = PurgeGate::unchecked(wal);
            let sm = StateMachine::new(
                store,
                hub,
                companions,
                dir.path().join("snapshot"),
                watchdog,
                purges.clone(),
                DEFAULT_SLOW_APPLY,
            )?;
            Ok((dir, LogStore::with_purge_gate(purges), sm))
        }
    }

    fn entry(term: u64, index: u64, request: Request) -> Entry {
        Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(LogCommand::from(request)),
        }
    }

    fn expire(id: i64, term: u64) -> Request {
        Request::LeaseExpire(ExpiredLeases {
            ids: vec![id],
            term,
        })
    }

    /// A leader that lost the lead while its revocation waited may get it
    /// logged after it leads again; by then the lease may have been renewed.
    #[tokio::test]
    async fn a_lease_expiry_logged_in_a_later_term_than_decided_revokes_nothing() {
        let (_dir, _log, mut sm) = Builder.build().await.unwrap();
        let grant =
            |id| Request::LeaseGrant(oxetcd_proto::etcdserverpb::LeaseGrantRequest { id, ttl: 10 });
        sm.apply([entry(1, 1, grant(7)), entry(1, 2, grant(8))])
            .await
            .unwrap();
        sm.apply([entry(2, 3, expire(7, 1))]).await.unwrap();
        assert!(sm.lessor.exists(7), "a term-1 decision logged in term 2");
        sm.apply([entry(2, 4, expire(7, 2))]).await.unwrap();
        assert!(!sm.lessor.exists(7), "decided and logged in term 2");
        // Entries from before the term was recorded still revoke.
        sm.apply([entry(3, 5, expire(8, 0))]).await.unwrap();
        assert!(!sm.lessor.exists(8));
    }

    #[test]
    fn the_applied_record_round_trips_and_reads_the_earlier_json_form() {
        let log_id = openraft::LogId::new(openraft::CommittedLeaderId::new(3, 9), 42);
        let members = openraft::Membership::new(
            vec![std::collections::BTreeSet::from([9u64])],
            std::collections::BTreeMap::from([(9u64, BasicNode::new("http://a:2380"))]),
        );
        let membership = StoredMembership::new(Some(log_id), members);
        let record = AppliedRecord::new(Some(log_id), membership.clone()).unwrap();
        let back = AppliedRecord::decode(Some(record.encode())).unwrap();
        assert_eq!(back.last_applied, Some(log_id));
        assert_eq!(back.membership, membership);
        let none = AppliedRecord::new(None, Membership::default()).unwrap();
        let empty = AppliedRecord::decode(Some(none.encode())).unwrap();
        assert_eq!(empty.last_applied, None);

        let v1 = serde_json::json!({ "last_applied": log_id, "membership": membership });
        let old = AppliedRecord::decode(Some(Bytes::from(v1.to_string()))).unwrap();
        assert_eq!(old.last_applied, Some(log_id));
        assert_eq!(old.membership, membership);
        assert!(AppliedRecord::decode(Some(Bytes::from_static(b"\x07"))).is_err());
    }

    /// openraft's own conformance suite, against our log and state machine.
    #[test]
    fn openraft_storage_suite_passes_on_the_mvcc_state_machine() {
        if let Err(e) = Suite::test_all(Builder) {
            panic!("openraft storage suite: {e}");
        }
    }
}
