//! etcdserverpb.Lease: grants and revocations go through the log; renewals
//! and time-to-live are the leader's (forwarded there by a follower); the
//! list of leases is this member's own.

use oxetcd_proto::etcdserverpb::lease_server::Lease;
use oxetcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::caller::caller;
use super::Shared;

/// Keep-alive answers buffered per stream.
const KEEPALIVE_BUFFER: usize = 16;

pub struct LeaseService {
    node: Shared,
}

impl LeaseService {
    pub fn new(node: Shared) -> Self {
        Self { node }
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        // As etcd 3.4: anyone may grant a lease, but a token given must be
        // valid.
        caller(&self.node, &request)?;
        Ok(Response::new(
            self.node.lease_grant(request.into_inner()).await?,
        ))
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        Ok(Response::new(
            self.node
                .lease_revoke_as(&caller(&self.node, &request)?, request.into_inner())
                .await?,
        ))
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
                let answer = match node.lease_renew(req.id).await {
                    Ok(ttl) => Ok(LeaseKeepAliveResponse {
                        header: node.current_header(),
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
        Ok(Response::new(self.node.lease_time_to_live(&req).await?))
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let leases = self
            .node
            .lease_ids()
            .into_iter()
            .map(|id| LeaseStatus { id })
            .collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: self.node.current_header(),
            leases,
        }))
    }
}
