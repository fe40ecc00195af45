//! v3lockpb.Lock: etcd's distributed mutex run on the server, as etcd's
//! v3lock does with clientv3's `concurrency.Mutex`: the waiter's key is
//! `<name>/<lease in hex>`, put with the lease; the lock is held once every
//! key under the name created before it is deleted.
//!
//! One difference from etcd 3.4, the fix later etcd versions made for what
//! Jepsen found: before the lock is granted the waiter's key must still
//! exist, so a waiter whose lease expired while it queued gets an error,
//! never the lock.

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxetcd_proto::etcdserverpb::request_op::Request as Op;
use oxetcd_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use oxetcd_proto::v3lockpb::lock_server::Lock;
use oxetcd_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

use super::caller::{key_write, prefix_needs, require};
use super::local::{by_create, key_prefix, session_key, Local};
use oxetcd_proto::prefix_end;

/// What etcd's concurrency package answers when the session's key is gone.
pub const SESSION_EXPIRED: &str = "session expired";

pub struct LockService {
    local: Local,
}

impl LockService {
    pub fn new(local: Local) -> Self {
        Self { local }
    }
}

/// Deletes a waiter's key if the Lock call ends before the lock is granted
/// (the client went away, or waiting failed), as etcd's Mutex.Lock does.
struct Abandon {
    local: Option<Local>,
    key: Bytes,
}

impl Abandon {
    fn disarm(mut self) {
        self.local = None;
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(local) = self.local.take() {
            let key = std::mem::take(&mut self.key);
            tokio::spawn(async move {
                let _ = local.txn(delete_txn(key)).await;
            });
        }
    }
}

fn delete_txn(key: Bytes) -> TxnRequest {
    TxnRequest {
        success: vec![RequestOp {
            request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                key,
                ..Default::default()
            })),
        }],
        ..Default::default()
    }
}

pub(crate) fn create_rev_is(key: &Bytes, rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.clone(),
        target_union: Some(TargetUnion::CreateRevision(rev)),
        ..Default::default()
    }
}

pub(crate) fn get_op(key: &Bytes) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestRange(RangeRequest {
            key: key.clone(),
            ..Default::default()
        })),
    }
}

pub(crate) fn put_op(key: &Bytes, value: Bytes, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: key.clone(),
            value,
            lease,
            ..Default::default()
        })),
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let prefix = key_prefix(&request.get_ref().name);
        let end = prefix_end(&prefix);
        require(&self.local.node, &request, &prefix_needs(&prefix, &end))?;
        let mut req = request.into_inner();
        req.lease = self.local.session_lease(req.lease).await?;
        let my_key = session_key(&prefix, req.lease);
        let owner = RequestOp {
            request: Some(Op::RequestRange(first_created_op(&prefix))),
        };
        // Queue up (or find our key from an earlier call), and learn the
        // holder, in one txn.
        let resp = self
            .local
            .txn(TxnRequest {
                compare: vec![create_rev_is(&my_key, 0)],
                success: vec![put_op(&my_key, Bytes::new(), req.lease), owner.clone()],
                failure: vec![get_op(&my_key), owner],
            })
            .await?;
        let abandon = Abandon {
            local: Some(self.local.clone()),
            key: my_key.clone(),
        };
        let header_rev = resp.header.as_ref().map_or(0, |h| h.revision);
        let range_of = |i: usize| match resp.responses.get(i).and_then(|r| r.response.as_ref()) {
            Some(oxetcd_proto::etcdserverpb::response_op::Response::ResponseRange(r)) => {
                Some(r.clone())
            }
            _ => None,
        };
        let my_rev = if resp.succeeded {
            header_rev
        } else {
            range_of(0)
                .and_then(|r| r.kvs.first().map(|kv| kv.create_revision))
                .ok_or_else(|| Status::internal("lock key vanished inside a txn"))?
        };
        let holder = range_of(1).and_then(|r| r.kvs.first().map(|kv| kv.create_revision));
        let mut header = resp.header;
        if holder.is_some_and(|rev| rev != my_rev) {
            self.local.wait_deletes(&prefix, my_rev - 1).await?;
            // Granted only if our key (so our lease) is still there.
            let mine = self
                .local
                .get(RangeRequest {
                    key: my_key.clone(),
                    ..Default::default()
                })
                .await?;
            if mine.kvs.is_empty() {
                return Err(Status::unknown(SESSION_EXPIRED));
            }
            header = mine.header;
        }
        abandon.disarm();
        Ok(Response::new(LockResponse {
            header,
            key: my_key,
        }))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        require(
            &self.local.node,
            &request,
            &key_write(&request.get_ref().key),
        )?;
        let key = request.into_inner().key;
        let resp = self.local.txn(delete_txn(key)).await?;
        Ok(Response::new(UnlockResponse {
            header: resp.header,
        }))
    }
}

/// The first-created key under `prefix` (etcd's WithFirstCreate).
pub(crate) fn first_created_op(prefix: &Bytes) -> RangeRequest {
    by_create(
        prefix,
        oxetcd_proto::etcdserverpb::range_request::SortOrder::Ascend,
    )
}
