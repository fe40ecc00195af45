//! oxetcd's MVCC storage engine.
//!
//! - [`Store`]: the multi-version key-value store. Reads at any revision not yet
//!   compacted ([`Store::range`]), one writer at a time ([`Store::write`] gives a
//!   [`WriteTxn`]: one main revision, sub revisions per change), compaction
//!   ([`Store::compact`]), visibility ([`Store::publish`]: applied changes
//!   become readable and are handed back as watch events; [`Store::flush`]
//!   makes them durable, [`Store::commit`] does both), history for watchers catching up
//!   ([`Store::history`]), checksums ([`Store::hash_kv`]) and whole-store
//!   snapshots ([`Store::snapshot_to`], [`Store::install_snapshot`]).
//! - [`Backend`]: the narrow on-disk interface (ordered buckets, atomic batches,
//!   flush, sizes, defragment); [`RedbBackend`] implements it on redb (the
//!   default engine), [`SledBackend`] on sled ([`Engine`] names them and
//!   opens one), and
//!   [`WriteBuffer`] keeps applied batches in memory and hands them to an
//!   engine together.
//! - [`Revision`], [`KeyRange`]: the vocabulary of requests.
//!
//! A write txn cannot be rolled back: callers validate a request completely
//! before its first change, and treat an error from [`WriteTxn::end`] or
//! [`Store::compact`] (backend I/O) as fatal to the process, which restarts from
//! the last durable state.
//!
//! The server publishes without an fsync: what it applies is already durable
//! in its Raft log, which replays whatever the store lost in a crash (the
//! store's applied record, stored in the same batch as the changes, says
//! where to replay from). The store is flushed when a snapshot is built, so
//! the log is purged only below what the store holds durably.
//!
//! ```
//! use bytes::Bytes;
//! use oxetcd_storage::{KeyRange, RangeOptions, SledBackend, Store};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(Box::new(SledBackend::open(dir.path(), 1 << 20).unwrap())).unwrap();
//! let mut txn = store.write();
//! txn.put(Bytes::from("foo"), Bytes::from("bar"), 0);
//! assert_eq!(txn.end().unwrap(), 2); // an empty store is at revision 1
//! assert_eq!(store.commit().unwrap().rev, 2); // durable, now visible
//! let got = store.range(KeyRange::new(b"foo", b""), &RangeOptions::default()).unwrap();
//! assert_eq!(got.kvs[0].value, "bar");
//! ```

mod backend;
pub mod bbolt;
mod compaction;
mod defragment;
mod engine;
mod error;
mod filled_size;
mod fsync;
mod index;
mod key_index;
mod mvcc_txn;
mod redb_backend;
mod revision;
mod sled_backend;
mod snapshot;
mod store;
mod write_buffer;

pub use backend::{Backend, BatchOp, Bucket, Entry, WriteBatch};
pub use compaction::INDEX_STEP_KEYS;
pub use engine::Engine;
pub use error::{Result, StorageError};
pub use index::KeyRange;
pub use mvcc_txn::WriteTxn;
pub use redb_backend::RedbBackend;
pub use revision::Revision;
pub use sled_backend::SledBackend;
pub use store::{Committed, HashKv, RangeOptions, RangeResult, Store};
pub use write_buffer::{WriteBuffer, FLUSH_INTERVAL};

#[cfg(test)]
mod tests;
