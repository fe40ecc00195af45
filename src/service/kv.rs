//! etcdserverpb.KV: Range, Put, DeleteRange, Txn, Compact, each as its
//! caller (see `caller`): the member checks the caller's permissions.

use oxetcd_proto::etcdserverpb::kv_server::Kv;
use oxetcd_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use super::caller::caller;
use super::Shared;

pub struct KvService {
    node: Shared,
}

impl KvService {
    pub fn new(node: Shared) -> Self {
        Self { node }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let caller = caller(&self.node, &request)?;
        Ok(Response::new(
            self.node.range_as(&caller, request.into_inner()).await?,
        ))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let caller = caller(&self.node, &request)?;
        Ok(Response::new(
            self.node.put_as(&caller, request.into_inner()).await?,
        ))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let caller = caller(&self.node, &request)?;
        Ok(Response::new(
            self.node
                .delete_range_as(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let caller = caller(&self.node, &request)?;
        Ok(Response::new(
            self.node.txn_as(&caller, request.into_inner()).await?,
        ))
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        // As etcd 3.4: a token given must be valid, but compaction checks no
        // user nor permission (anyone may compact, even without a user).
        caller(&self.node, &request)?;
        Ok(Response::new(
            self.node.compact(request.into_inner()).await?,
        ))
    }
}
