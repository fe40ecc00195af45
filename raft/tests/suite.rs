//! openraft's storage conformance suite against [`LogStore`] on a real WAL in a
//! temporary directory, with the small in-memory state machine of `common`
//! (the real one, over the MVCC store, lives in the server).

mod common;

use common::KvStateMachine;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, StorageError, StorageIOError};
use oxetcd_raft::{LogStore, NodeId, Request, TypeConfig, Wal, WalOptions};
use tempfile::TempDir;

/// Each test of the suite gets a fresh WAL in its own temporary directory (the
/// guard removes it).
struct Builder;

impl StoreBuilder<TypeConfig, LogStore<Request>, KvStateMachine, TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore<Request>, KvStateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        // Small segments, so rollover and segment deletion are exercised too.
        let mut options = WalOptions::default();
        options.segment_size = 512;
        let wal =
            Wal::open(dir.path(), options).map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        Ok((dir, LogStore::new(wal), KvStateMachine::default()))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft storage suite: {e}");
    }
}
