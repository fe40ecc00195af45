//! oxetcd's Raft layer, on [openraft] 0.9.
//!
//! - [`Types`]: the openraft types over a [`Payload`], what a normal entry
//!   carries: the server's typed command, which the WAL stores by
//!   [`Payload::encode`] and reads back by [`Payload::decode`], and the network
//!   carries through serde. This crate never looks inside a payload.
//!   [`TypeConfig`] is the configuration over [`Request`], opaque bytes, for
//!   this crate's tests and benchmarks.
//! - [`Wal`]: the Raft log on disk, segment files of checksummed records with
//!   group commit. The documentation of its module, `src/wal/mod.rs` (`cargo
//!   doc --document-private-items`), describes the on-disk format byte by byte,
//!   the durability of each operation and what opening does with damaged files.
//! - [`LogStore`] / [`LogReader`]: openraft's `RaftLogStorage` and
//!   `RaftLogReader` on the WAL, what `openraft::Raft::new` takes as log store.
//!   [`PurgeGate`]: purges held back until the state machine is durable past
//!   them.
//!
//! - [`network`]: the peer transport, gRPC between members: [`PeerService`]
//!   (served on the peer URLs), [`Network`] (openraft's network factory) and
//!   [`PeerClient`] (forwarding writes and read-index requests to the leader).
//!
//! The state machine (applying entries to the MVCC store) lives in the server.
//!
//! # Example
//!
//! ```
//! use oxetcd_raft::{Entry, LogId, Request, Vote, Wal, WalOptions};
//! use openraft::{CommittedLeaderId, EntryPayload};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let wal: Wal<Request> = Wal::open(dir.path(), WalOptions::default())?;
//!
//! // Append two entries; `wait` returns once they are fsynced.
//! let entries = (1..=2).map(|index| Entry {
//!     log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
//!     payload: EntryPayload::Normal(Request::from(b"encoded command".to_vec())),
//! });
//! wal.append(entries)?.wait()?;
//! assert_eq!(wal.entries(1..)?.len(), 2);
//! drop(wal);
//!
//! // Reopening replays the segments.
//! let wal: Wal<Request> = Wal::open(dir.path(), WalOptions::default())?;
//! assert_eq!(wal.log_state().1.map(|id| id.index), Some(2));
//! assert_eq!(wal.vote(), None::<Vote>);
//! # Ok(())
//! # }
//! ```
//!
//! With openraft, wrap the WAL: `LogStore::new(wal)` (or
//! `LogStore::with_purge_gate`, for a state machine that is not durable at
//! every apply) is the log store passed to
//! `openraft::Raft::new` next to the state machine.

#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod log_store;
pub mod network;
mod purge_gate;
mod types;
mod wal;

pub use log_store::{LogReader, LogStore};
pub use network::{
    ClusterTag, KvHash, LeaderDuties, Network, NetworkOptions, PeerClient, PeerError, PeerService,
};
pub use purge_gate::PurgeGate;
pub use types::{Entry, LogId, NodeId, Payload, Request, Response, TypeConfig, Types, Vote};
pub use wal::{
    Flushed, Recovery, TornTail, Wal, WalError, WalOptions, WalStats, CACHE_BYTES, SEGMENT_SIZE,
};
