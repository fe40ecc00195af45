//! openraft's storage conformance suite against [`LogStore`] on a real WAL in a
//! temporary directory, with a minimal in-memory state machine defined here
//! (the real one, over the MVCC store, lives in the server).

use std::io::Cursor;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    AnyError, EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use oxetcd_raft::{Entry, LogId, LogStore, NodeId, Response, TypeConfig, Wal, WalOptions};
use serde::{Deserialize, Serialize};
use tempfile::TempDir;

/// What the state machine holds; also its snapshot, as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SmData {
    last_applied: Option<LogId>,
    last_membership: StoredMembership<NodeId, openraft::BasicNode>,
    /// Every normal entry's request bytes, in apply order.
    requests: Vec<Vec<u8>>,
}

#[derive(Debug, Default)]
struct SmState {
    data: SmData,
    /// The last snapshot built or installed, and its bytes.
    snapshot: Option<(SnapshotMeta<NodeId, openraft::BasicNode>, Vec<u8>)>,
    snapshots_built: u64,
}

/// An in-memory state machine. Its snapshot builder is a clone sharing the same
/// state, so a snapshot it builds becomes the current one.
#[derive(Debug, Default, Clone)]
struct MemStateMachine(Arc<Mutex<SmState>>);

impl MemStateMachine {
    fn state(&self) -> MutexGuard<'_, SmState> {
        self.0.lock().expect("state machine lock")
    }
}

fn sm_err(e: serde_json::Error) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

impl RaftSnapshotBuilder<TypeConfig> for MemStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let mut st = self.state();
        let bytes = serde_json::to_vec(&st.data).map_err(sm_err)?;
        st.snapshots_built += 1;
        let meta = SnapshotMeta {
            last_log_id: st.data.last_applied,
            last_membership: st.data.last_membership.clone(),
            snapshot_id: format!("snap-{}", st.snapshots_built),
        };
        st.snapshot = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for MemStateMachine {
    type SnapshotBuilder = MemStateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, openraft::BasicNode>), StorageError<NodeId>>
    {
        let st = self.state();
        Ok((st.data.last_applied, st.data.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut st = self.state();
        let mut out = Vec::new();
        for entry in entries {
            st.data.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(req) => st.data.requests.push(req.bytes().to_vec()),
                EntryPayload::Membership(m) => {
                    st.data.last_membership = StoredMembership::new(Some(entry.log_id), m)
                }
            }
            out.push(Response::default());
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let mut st = self.state();
        st.data = serde_json::from_slice(&bytes).map_err(sm_err)?;
        st.snapshot = Some((meta.clone(), bytes));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self
            .state()
            .snapshot
            .as_ref()
            .map(|(meta, bytes)| Snapshot {
                meta: meta.clone(),
                snapshot: Box::new(Cursor::new(bytes.clone())),
            }))
    }
}

/// Each test of the suite gets a fresh WAL in its own temporary directory (the
/// guard removes it).
struct Builder;

impl StoreBuilder<TypeConfig, LogStore, MemStateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, MemStateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        // Small segments, so rollover and segment deletion are exercised too.
        let mut options = WalOptions::default();
        options.segment_size = 512;
        let wal =
            Wal::open(dir.path(), options).map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        Ok((dir, LogStore::new(wal), MemStateMachine::default()))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft storage suite: {e}");
    }
}
