//! etcdserverpb.Maintenance: what `etcdctl endpoint status/health`, `alarm`,
//! `defrag`, `move-leader` and members' hash checks use.

use std::pin::Pin;

use oxetcd_proto::etcdserverpb::maintenance_server::Maintenance;
use oxetcd_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use tonic::{Request, Response, Status};

use super::caller::{maintenance_caller, require_maintenance_admin};
use super::Shared;
use crate::config::ETCD_API_VERSION;
use oxetcd_server::EtcdError;

pub struct MaintenanceService {
    node: Shared,
}

impl MaintenanceService {
    pub fn new(node: Shared) -> Self {
        Self { node }
    }
}

type SnapshotStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        // As etcd 3.4: any caller may list, raise and clear alarms, but a
        // token given must be valid.
        maintenance_caller(&self.node, &request)?;
        Ok(Response::new(self.node.alarm(request.into_inner()).await?))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let node = &self.node;
        // redb counts its pages in use in a write transaction, which waits
        // for the store's flusher: off the async workers.
        let sizes = {
            let node = node.clone();
            tokio::task::spawn_blocking(move || {
                let store = node.store();
                Ok::<_, oxetcd_storage::StorageError>((store.size_on_disk()?, store.size_in_use()?))
            })
        };
        let (db_size, db_size_in_use) = sizes
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(EtcdError::from)?;
        let raft = node.raft_metrics();
        // As etcd: no leader, then each alarm in force, in protobuf's text
        // form (what etcdctl's ERRORS column shows).
        let mut errors = Vec::new();
        if raft.current_leader.is_none() {
            errors.push(EtcdError::NoLeader.to_string());
        }
        errors.extend(node.active_alarms().iter().map(|a| {
            let alarm = AlarmType::try_from(a.alarm).map_or("UNKNOWN", |t| t.as_str_name());
            format!("memberID:{} alarm:{alarm} ", a.member_id)
        }));
        Ok(Response::new(StatusResponse {
            header: node.current_header(),
            version: ETCD_API_VERSION.to_string(),
            db_size: db_size as i64,
            leader: raft.current_leader.unwrap_or(0),
            raft_index: raft.last_log_index.unwrap_or(0),
            raft_term: raft.current_term,
            raft_applied_index: raft.last_applied.map_or(0, |l| l.index),
            errors,
            // sled keeps no count of its free space: there it equals db_size.
            db_size_in_use: db_size_in_use as i64,
            // A member of the membership that is not a voter.
            is_learner: !raft
                .membership_config
                .membership()
                .voter_ids()
                .any(|id| id == node.member_id()),
            db_size_quota: node.quota_bytes(),
            ..Default::default()
        }))
    }

    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        require_maintenance_admin(&self.node, &request)?;
        // The store makes what it holds durable, then the engine shrinks its
        // file (redb compacts it; sled, which reclaims space in the
        // background, cannot). Only the state machine publishes: a publish
        // here would take the changes of the batch being applied away from
        // the watchers (a Jepsen watch run found exactly that: events lost
        // on the defragmented member).
        let node = self.node.clone();
        let before = node.store().size_cached();
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || node.store().defragment())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(EtcdError::from)?;
        // etcd logs the same once a defragment is done.
        let after = self.node.store().size_cached();
        tracing::info!(
            current_db_size_bytes = after,
            current_db_size_bytes_diff = after as i64 - before as i64,
            took = ?started.elapsed(),
            "finished defragmenting directory"
        );
        Ok(Response::new(DefragmentResponse {
            header: self.node.current_header(),
        }))
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        require_maintenance_admin(&self.node, &request)?;
        let h = self.node.store().hash_kv(0).map_err(EtcdError::from)?;
        Ok(Response::new(HashResponse {
            header: self.node.header(h.hash_revision),
            hash: h.hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        require_maintenance_admin(&self.node, &request)?;
        let rev = request.into_inner().revision;
        let h = self.node.store().hash_kv(rev).map_err(EtcdError::from)?;
        Ok(Response::new(HashKvResponse {
            header: self.node.current_header(),
            hash: h.hash,
            compact_revision: h.compact_revision,
            hash_revision: h.hash_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        require_maintenance_admin(&self.node, &request)?;
        Ok(Response::new(Box::pin(super::snapshot::stream(
            self.node.clone(),
        ))))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        // etcd 3.4 checks no user nor token for MoveLeader (checked side by
        // side with 3.4.23): anyone may move the leadership to a member.
        let target = request.into_inner().target_id;
        self.node.move_leader(target).await?;
        Ok(Response::new(MoveLeaderResponse {
            header: self.node.current_header(),
        }))
    }

    async fn downgrade(
        &self,
        _: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(Status::unimplemented(
            "etcdserver: cluster downgrade is not supported by oxetcd",
        ))
    }
}
