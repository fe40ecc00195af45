//! etcdserverpb.Lease: grants and revocations go through the log; renewals
//! and time-to-live are the leader's (forwarded there by a follower); the
//! list of leases is this member's own.

use std::sync::Arc;

use oxetcd_proto::etcdserverpb::lease_server::Lease;
use oxetcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{mismatched, Shared};
use crate::ids::IdGenerator;
use crate::write::command::{Request as Cmd, Response as Applied};

/// Keep-alive answers buffered per stream.
const KEEPALIVE_BUFFER: usize = 16;

pub struct LeaseService {
    node: Shared,
    /// Lease IDs for grants that leave the choice to the server.
    ids: Arc<IdGenerator>,
}

impl LeaseService {
    pub fn new(node: Shared, ids: Arc<IdGenerator>) -> Self {
        Self { node, ids }
    }
}

/// A positive ID no lease has, as etcd picks them.
pub fn fresh_lease_id(node: &Shared, ids: &IdGenerator) -> i64 {
    loop {
        let id = (ids.next() & i64::MAX as u64) as i64;
        if id != 0 && !node.replication.lessor().exists(id) {
            return id;
        }
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let mut req = request.into_inner();
        if req.id == 0 {
            req.id = fresh_lease_id(&self.node, &self.ids);
        }
        match self.node.write(Cmd::LeaseGrant(req)).await? {
            Applied::LeaseGrant(mut resp) => {
                self.node.stamp(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(mismatched(&other)),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        match self
            .node
            .write(Cmd::LeaseRevoke(request.into_inner()))
            .await?
        {
            Applied::LeaseRevoke(mut resp) => {
                self.node.stamp(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(mismatched(&other)),
        }
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(KEEPALIVE_BUFFER);
        let node = self.node.clone();
        tokio::spawn(async move {
            loop {
                let req = tokio::select! {
                    r = inbound.message() => r,
                    _ = tx.closed() => return,
                };
                let req = match req {
                    Ok(Some(req)) => req,
                    Ok(None) => return,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                let answer = match node.replication.lease_renew(req.id).await {
                    Ok(ttl) => Ok(LeaseKeepAliveResponse {
                        header: node.header(node.store.current_revision()),
                        id: req.id,
                        ttl,
                    }),
                    Err(e) => Err(Status::from(e)),
                };
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        let mut resp = self.node.replication.lease_time_to_live(&req).await?;
        self.node.stamp(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let leases = self
            .node
            .replication
            .lessor()
            .ids()
            .into_iter()
            .map(|id| LeaseStatus { id })
            .collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: self.node.header(self.node.store.current_revision()),
            leases,
        }))
    }
}
