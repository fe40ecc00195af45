//! oxetcd-server: a member of an etcd-API cluster as a library (the
//! counterpart of etcd's `etcdserver`). The front end (the `oxetcd` binary's
//! flags, TLS, listeners, gRPC services, JSON gateway) and embedders such as
//! the Kubernetes API shim call it through one handle, [`EtcdServer`].
//!
//! What it owns, by module:
//! - [`command`]: what the Raft log holds, and what applying an entry answers.
//! - `apply`: how each command changes the MVCC store (etcd's applier).
//! - `lease`: the lessor and the leader's duty of expiring leases.
//! - `replication`: Raft (openraft over `oxetcd-raft`'s WAL and network), the
//!   state machine, proposal batching, ReadIndex batching, membership changes,
//!   leader transfer, and the request router: whether a request runs here, waits
//!   for a read index, or goes to the leader.
//! - `datadir`: the data directory's layout, and importing etcd's.
//! - [`auth`]: users, roles, permissions and tokens as replicated state,
//!   and the check of every request against them.
//! - `auto_compaction`: the leader's periodic or revision-based compaction.
//! - `corruption`: members compare their HashKV (at start, and the leader
//!   periodically) and raise CORRUPT, as etcd's corruption checks.
//! - [`alarm`] / [`quota`]: alarms as replicated state, and the storage
//!   quota that raises NOSPACE.
//! - [`validate`] / [`error`]: etcd's request checks and its errors, mapped to
//!   gRPC statuses in one place.
//!
//! # Example
//!
//! A one-member server in a temporary directory: put a key, read it back.
//!
//! ```
//! use oxetcd_proto::etcdserverpb::{PutRequest, RangeRequest};
//! use oxetcd_server::{EtcdServer, ServerConfig};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let server = EtcdServer::start(ServerConfig::single_member(dir.path())).await?;
//!
//! let put = PutRequest { key: "foo".into(), value: "bar".into(), ..Default::default() };
//! let written = server.put(put).await?;
//!
//! let got = server.range(RangeRequest { key: "foo".into(), ..Default::default() }).await?;
//! assert_eq!(got.kvs[0].value, "bar");
//! assert_eq!(got.kvs[0].mod_revision, written.header.unwrap().revision);
//!
//! server.stop().await;
//! # Ok(())
//! # }
//! ```

#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod alarm;
mod apply;
pub mod auth;
mod auto_compaction;
pub mod command;
mod compactor;
mod corruption;
mod datadir;
pub mod error;
mod etcd_server;
pub mod ids;
mod lease;
pub mod quota;
mod replication;
pub mod validate;
mod watchdog;

pub use apply::{range, recorded_cluster_id, Reader};
pub use auto_compaction::AutoCompaction;
pub use compactor::DEFAULT_COMPACTION_BATCH_LIMIT;
pub use corruption::CorruptionError;
pub use datadir::{DataDir, DataDirError, RaftPaths};
pub use error::EtcdError;
pub use etcd_server::{EtcdServer, Opened, ServerConfig, StartError};
pub use lease::{Renewal, TimeToLive};
pub use oxetcd_raft::{NodeId, PeerService};
pub use replication::{AddMember, Change, LeaderSeen, UpdateMember};
