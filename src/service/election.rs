//! v3electionpb.Election: etcd's leader election run on the server, as
//! etcd's v3election does with clientv3's `concurrency.Election`. A
//! candidate's key is `<name>/<lease in hex>` holding its value; the leader
//! is the candidate whose key was created first.

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::request_op::Request as Op;
use oxetcd_proto::etcdserverpb::response_op::Response as OpResponse;
use oxetcd_proto::etcdserverpb::{DeleteRangeRequest, RequestOp, TxnRequest};
use oxetcd_proto::mvccpb::event::EventType;
use oxetcd_proto::v3electionpb::election_server::Election;
use oxetcd_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::caller::{key_write, prefix_needs, require};
use super::local::{key_prefix, session_key, Local};
use super::lock::{create_rev_is, first_created_op, get_op, put_op};
use oxetcd_proto::prefix_end;

/// etcd's words (concurrency package and v3election).
pub const NOT_LEADER: &str = "election: not leader";
pub const NO_LEADER: &str = "election: no leader";
pub const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";

/// Observe answers buffered per stream.
const OBSERVE_BUFFER: usize = 16;

pub struct ElectionService {
    local: Local,
}

impl ElectionService {
    pub fn new(local: Local) -> Self {
        Self { local }
    }

    /// Sets the leader's value if `leader` still holds its key.
    async fn proclaim(&self, leader: &LeaderKey, value: Bytes) -> Result<ProclaimResponse, Status> {
        let resp = self
            .local
            .txn(TxnRequest {
                compare: vec![create_rev_is(&leader.key, leader.rev)],
                success: vec![put_op(&leader.key, value, leader.lease)],
                failure: vec![],
            })
            .await?;
        if !resp.succeeded {
            return Err(Status::unknown(NOT_LEADER));
        }
        Ok(ProclaimResponse {
            header: resp.header,
        })
    }

    async fn resign(&self, leader: &LeaderKey) -> Result<ResignResponse, Status> {
        let delete = RequestOp {
            request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                key: leader.key.clone(),
                ..Default::default()
            })),
        };
        let resp = self
            .local
            .txn(TxnRequest {
                compare: vec![create_rev_is(&leader.key, leader.rev)],
                success: vec![delete],
                failure: vec![],
            })
            .await?;
        Ok(ResignResponse {
            header: resp.header,
        })
    }
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let prefix = key_prefix(&request.get_ref().name);
        let end = prefix_end(&prefix);
        require(&self.local.node, &request, &prefix_needs(&prefix, &end))?;
        let mut req = request.into_inner();
        req.lease = self.local.session_lease(req.lease).await?;
        let prefix = key_prefix(&req.name);
        let key = session_key(&prefix, req.lease);
        let resp = self
            .local
            .txn(TxnRequest {
                compare: vec![create_rev_is(&key, 0)],
                success: vec![put_op(&key, req.value.clone(), req.lease)],
                failure: vec![get_op(&key)],
            })
            .await?;
        let mut leader = LeaderKey {
            name: req.name.clone(),
            key: key.clone(),
            rev: resp.header.as_ref().map_or(0, |h| h.revision),
            lease: req.lease,
        };
        if !resp.succeeded {
            let kv = match resp.responses.first().and_then(|r| r.response.as_ref()) {
                Some(OpResponse::ResponseRange(r)) => r.kvs.first().cloned(),
                _ => None,
            }
            .ok_or_else(|| Status::internal("campaign key vanished inside a txn"))?;
            leader.rev = kv.create_revision;
            if kv.value != req.value {
                if let Err(e) = self.proclaim(&leader, req.value.clone()).await {
                    let _ = self.resign(&leader).await;
                    return Err(e);
                }
            }
        }
        // Leader once every candidate created before us is gone.
        self.local.wait_deletes(&prefix, leader.rev - 1).await?;
        Ok(Response::new(CampaignResponse {
            header: resp.header,
            leader: Some(leader),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let leader_key = request.get_ref().leader.as_ref().map(|l| l.key.clone());
        require(
            &self.local.node,
            &request,
            &key_write(&leader_key.unwrap_or_default()),
        )?;
        let req = request.into_inner();
        let leader = req
            .leader
            .ok_or_else(|| Status::unknown(MISSING_LEADER_KEY))?;
        Ok(Response::new(
            ElectionService::proclaim(self, &leader, req.value).await?,
        ))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let prefix = key_prefix(&request.get_ref().name);
        let end = prefix_end(&prefix);
        require(
            &self.local.node,
            &request,
            &prefix_needs(&prefix, &end)[..1],
        )?;
        let resp = self.local.first_created(&prefix).await?;
        let kv = resp
            .kvs
            .into_iter()
            .next()
            .ok_or_else(|| Status::unknown(NO_LEADER))?;
        Ok(Response::new(LeaderResponse {
            header: resp.header,
            kv: Some(kv),
        }))
    }

    type ObserveStream = ReceiverStream<Result<LeaderResponse, Status>>;

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let prefix = key_prefix(&request.get_ref().name);
        let end = prefix_end(&prefix);
        require(
            &self.local.node,
            &request,
            &prefix_needs(&prefix, &end)[..1],
        )?;
        let (tx, rx) = mpsc::channel(OBSERVE_BUFFER);
        let local = self.local.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = observe(&local, &prefix, &tx) => {
                    if let Err(status) = result {
                        let _ = tx.send(Err(status)).await;
                    }
                }
                _ = tx.closed() => {}
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let leader_key = request.get_ref().leader.as_ref().map(|l| l.key.clone());
        require(
            &self.local.node,
            &request,
            &key_write(&leader_key.unwrap_or_default()),
        )?;
        let leader = request
            .into_inner()
            .leader
            .ok_or_else(|| Status::unknown(MISSING_LEADER_KEY))?;
        Ok(Response::new(ElectionService::resign(self, &leader).await?))
    }
}

/// etcd's `Election.Observe`: sends the current leader, then every new value
/// it proclaims, then the next leader once its key is deleted, and so on.
async fn observe(
    local: &Local,
    prefix: &Bytes,
    tx: &mpsc::Sender<Result<LeaderResponse, Status>>,
) -> Result<(), Status> {
    loop {
        let resp = local.get(first_created_op(prefix)).await?;
        let mut header = resp.header.unwrap_or_default();
        let kv = match resp.kvs.into_iter().next() {
            Some(kv) => kv,
            None => {
                // No leader yet: the first put under the prefix is one.
                let mut stream = local.watch(prefix.clone(), prefix_end(prefix), header.revision);
                loop {
                    let events = Local::next_events(&mut stream).await?;
                    let put = events
                        .into_iter()
                        .find(|e| e.r#type == EventType::Put as i32)
                        .and_then(|e| e.kv);
                    if let Some(kv) = put {
                        header.revision = kv.mod_revision;
                        break kv;
                    }
                }
            }
        };
        let key = kv.key.clone();
        let from = header.revision + 1;
        if tx
            .send(Ok(LeaderResponse {
                header: Some(header),
                kv: Some(kv),
            }))
            .await
            .is_err()
        {
            return Ok(());
        }
        // Follow that leader's key until it is deleted.
        let mut stream = local.watch(key, Bytes::new(), from);
        'leader: loop {
            for event in Local::next_events(&mut stream).await? {
                if event.r#type == EventType::Delete as i32 {
                    break 'leader;
                }
                let Some(kv) = event.kv else { continue };
                header.revision = kv.mod_revision;
                let update = LeaderResponse {
                    header: Some(header),
                    kv: Some(kv),
                };
                if tx.send(Ok(update)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}
