//! The gRPC services, over one shared [`Node`].

mod cluster;
mod election;
pub mod http;
mod kv;
mod lease;
mod local;
mod lock;
mod maintenance;
mod snapshot;
mod watch;

pub use cluster::ClusterService;
pub use election::ElectionService;
pub use kv::KvService;
pub use lease::LeaseService;
pub use local::Local;
pub use lock::LockService;
pub use maintenance::MaintenanceService;
pub use watch::{WatchServer, WatchService};

use std::sync::Arc;

use oxetcd_proto::etcdserverpb::ResponseHeader;
use oxetcd_storage::Store;
use prost::Message;
use tonic::Status;

use crate::error::EtcdError;
use crate::replication::Replication;
use crate::write::command::{Command, Request, Response};

/// What every service needs: the store, the write path, who we are, limits.
pub struct Node {
    pub store: Arc<Store>,
    pub replication: Arc<Replication>,
    pub cluster_id: u64,
    pub member_id: u64,
    pub max_txn_ops: usize,
    pub max_request_bytes: usize,
    pub quota_backend_bytes: i64,
    /// Test-only failpoint (OXETCD_FAILPOINT_STALE_READS=1): linearizable
    /// reads skip ReadIndex and read whatever this member has, so that the
    /// Jepsen tester can show it catches stale reads. Never set in use.
    pub failpoint_stale_reads: bool,
}

impl Node {
    pub fn raft_term(&self) -> u64 {
        self.replication.current_term()
    }

    /// A full response header at `revision`.
    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.raft_term(),
        })
    }

    /// Completes the header the applier started (it knows the revision).
    pub fn stamp(&self, header: &mut Option<ResponseHeader>) {
        let revision = match header {
            Some(h) => h.revision,
            None => self.store.current_revision(),
        };
        *header = self.header(revision);
    }

    /// Sends a write through the write path; answers once it is durable.
    pub async fn write(&self, request: Request) -> Result<Response, Status> {
        let command = Command::from(request);
        if command.encoded_len() > self.max_request_bytes {
            return Err(EtcdError::RequestTooLarge.into());
        }
        let Some(request) = command.request else {
            return Err(Status::internal("empty command"));
        };
        Ok(self.replication.propose(request).await?)
    }
}

/// The applier answered a command with a response of another kind: a bug.
fn mismatched(response: &Response) -> Status {
    Status::internal(format!(
        "write path answered with the wrong kind of response: {response:?}"
    ))
}

type Shared = Arc<Node>;
