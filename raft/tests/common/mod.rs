//! Test support shared by the raft crate's integration tests: a small
//! in-memory state machine (the real one, over the MVCC store, lives in the
//! server).

// Each test crate compiles this module and uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use oxetcd_raft::{LogId, NodeId, Request, Response, TypeConfig};

type Entry = oxetcd_raft::Entry<Request>;
use serde::{Deserialize, Serialize};

// The state machine: a key-value map; a request is `key=value`, its response
// the previous value (empty if none). Its snapshot is the map, as JSON.

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KvData {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership<NodeId, BasicNode>,
    pub kv: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
pub struct SmState {
    pub data: KvData,
    pub snapshot: Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>,
    pub built: u64,
    pub installed: u64,
}

#[derive(Debug, Default, Clone)]
pub struct KvStateMachine(Arc<Mutex<SmState>>);

impl KvStateMachine {
    pub fn state(&self) -> MutexGuard<'_, SmState> {
        self.0.lock().expect("state machine lock")
    }

    pub fn kv(&self) -> BTreeMap<String, String> {
        self.state().data.kv.clone()
    }
}

fn sm_err(e: serde_json::Error) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

impl RaftSnapshotBuilder<TypeConfig> for KvStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let mut st = self.state();
        let bytes = serde_json::to_vec(&st.data).map_err(sm_err)?;
        st.built += 1;
        let meta = SnapshotMeta {
            last_log_id: st.data.last_applied,
            last_membership: st.data.last_membership.clone(),
            snapshot_id: format!("snap-{}", st.built),
        };
        st.snapshot = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for KvStateMachine {
    type SnapshotBuilder = KvStateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>> {
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
            let mut response = Response::default();
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(req) => {
                    let text = String::from_utf8_lossy(req.bytes()).into_owned();
                    let (k, v) = text.split_once('=').unwrap_or((&text, ""));
                    if let Some(prev) = st.data.kv.insert(k.to_string(), v.to_string()) {
                        response = Response(Bytes::from(prev));
                    }
                }
                EntryPayload::Membership(m) => {
                    st.data.last_membership = StoredMembership::new(Some(entry.log_id), m)
                }
            }
            out.push(response);
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
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let mut st = self.state();
        st.data = serde_json::from_slice(&bytes).map_err(sm_err)?;
        st.snapshot = Some((meta.clone(), bytes));
        st.installed += 1;
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
