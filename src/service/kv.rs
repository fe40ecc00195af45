//! etcdserverpb.KV: Range, Put, DeleteRange, Txn, Compact.

use oxetcd_proto::etcdserverpb::kv_server::Kv;
use oxetcd_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use super::{mismatched, Shared};
use crate::apply;
use crate::validate;
use crate::write::command::{Request as Cmd, Response as Applied};

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
        let req = request.into_inner();
        validate::range(&req)?;
        // A linearizable read first makes sure this member has applied
        // everything committed before it began (ReadIndex); a serializable one
        // reads what this member has.
        if !req.serializable && !self.node.failpoint_stale_reads {
            self.node.replication.read_barrier().await?;
        }
        let mut resp = apply::range(self.node.store.as_ref(), &req)?;
        self.node.stamp(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let req = request.into_inner();
        validate::put(&req)?;
        match self.node.write(Cmd::Put(req)).await? {
            Applied::Put(mut resp) => {
                self.node.stamp(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(mismatched(&other)),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let req = request.into_inner();
        validate::delete_range(&req)?;
        match self.node.write(Cmd::DeleteRange(req)).await? {
            Applied::DeleteRange(mut resp) => {
                self.node.stamp(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(mismatched(&other)),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let req = request.into_inner();
        validate::txn(&req, self.node.max_txn_ops)?;
        match self.node.write(Cmd::Txn(req)).await? {
            Applied::Txn(mut resp) => {
                self.node.stamp(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(mismatched(&other)),
        }
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        // Compaction is always physical here: it is done when it is applied.
        match self.node.write(Cmd::Compact(request.into_inner())).await? {
            Applied::Compact(mut resp) => {
                self.node.stamp(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(mismatched(&other)),
        }
    }
}
