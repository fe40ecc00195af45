//! Building and sending etcd requests: a deadline on every call, the pieces
//! of Kubernetes-style optimistic transactions, and preloading keys before a
//! run.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxetcd_proto::etcdserverpb::kv_client::KvClient;
use oxetcd_proto::etcdserverpb::request_op::Request;
use oxetcd_proto::etcdserverpb::response_op::Response;
use oxetcd_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest,
    TxnResponse,
};
use oxetcd_proto::mvccpb::KeyValue;
use tokio::task::JoinSet;
use tonic::Status;

use super::auth::Conn;
use super::connect::Pool;
use super::error::{BenchError, OpError};
use super::stats::Stats;

/// Awaits one unary call for at most `timeout`.
pub async fn call<T>(
    timeout: Duration,
    request: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, OpError> {
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(OpError::Grpc(status)),
        Err(_) => Err(OpError::Timeout(timeout)),
    }
}

/// The revision a response header reports (0 without a header).
pub fn revision(header: Option<ResponseHeader>) -> i64 {
    header.map(|h| h.revision).unwrap_or(0)
}

/// `mod_revision(key) == rev` (`rev` 0: the key does not exist).
pub fn mod_revision_is(key: &Bytes, rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Mod as i32,
        key: key.clone(),
        range_end: Bytes::new(),
        target_union: Some(TargetUnion::ModRevision(rev)),
    }
}

pub fn put_op(key: &Bytes, value: Bytes) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: key.clone(),
            value,
            ..Default::default()
        })),
    }
}

pub fn get_op(key: &Bytes) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key: key.clone(),
            ..Default::default()
        })),
    }
}

pub fn delete_op(key: &Bytes) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
            key: key.clone(),
            ..Default::default()
        })),
    }
}

/// The key as the failure branch's range (`Else(Range key)`) found it, `None`
/// if it does not exist.
pub fn else_range_kv(txn: TxnResponse) -> Result<Option<KeyValue>, OpError> {
    match txn.responses.into_iter().next().and_then(|r| r.response) {
        Some(Response::ResponseRange(range)) => Ok(range.kvs.into_iter().next()),
        _ => Err(OpError::Unexpected(
            "txn failure branch returned no range response".into(),
        )),
    }
}

/// The result of an optimistic update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// `then` ran, at this revision.
    At(i64),
    /// The key is gone, and `gone_is_done` said that is the end of it.
    Gone,
}

/// Kubernetes' GuaranteedUpdate: `Txn(mod_revision(key) == rev) Then(then)
/// Else(Range key)`, and on a lost compare the same again with the
/// mod_revision the failure branch saw, at most `max_retries` more times.
/// A key found missing is retried as `rev` 0 (so an update re-creates it),
/// unless `gone_is_done` (a delete: nothing left to do). Counts
/// `txn-attempts` and `conflicts`.
#[allow(clippy::too_many_arguments)]
pub async fn optimistic(
    kv: &mut KvClient<Conn>,
    timeout: Duration,
    stats: &Stats,
    key: &Bytes,
    mut rev: i64,
    then: RequestOp,
    max_retries: u32,
    gone_is_done: bool,
) -> Result<Applied, OpError> {
    for _ in 0..=max_retries {
        let txn = TxnRequest {
            compare: vec![mod_revision_is(key, rev)],
            success: vec![then.clone()],
            failure: vec![get_op(key)],
        };
        let response = call(timeout, kv.txn(txn)).await?;
        stats.count("txn-attempts", 1);
        if response.succeeded {
            return Ok(Applied::At(revision(response.header)));
        }
        stats.count("conflicts", 1);
        match else_range_kv(response)? {
            Some(current) => rev = current.mod_revision,
            None if gone_is_done => return Ok(Applied::Gone),
            None => rev = 0,
        }
    }
    Err(OpError::RetriesExhausted(max_retries + 1))
}

/// Puts every key once before a run (not measured), `concurrency` puts at a
/// time spread over the connections; the keys' mod revisions, in order.
pub async fn preload(
    pool: &Pool,
    keys: Vec<Bytes>,
    value: Bytes,
    timeout: Duration,
    concurrency: usize,
) -> Result<Vec<i64>, BenchError> {
    let concurrency = concurrency.clamp(1, 64);
    let chunk = keys.len().div_ceil(concurrency).max(1);
    let mut tasks = JoinSet::new();
    for (i, part) in keys.chunks(chunk).enumerate() {
        let mut kv = pool.kv(i);
        let part = part.to_vec();
        let value = value.clone();
        tasks.spawn(async move {
            let mut revs = Vec::with_capacity(part.len());
            for key in part {
                let put = PutRequest {
                    key,
                    value: value.clone(),
                    ..Default::default()
                };
                revs.push(revision(call(timeout, kv.put(put)).await?.header));
            }
            Ok::<_, OpError>((i, revs))
        });
    }
    let mut parts = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let setup = |error| BenchError::Setup {
            what: "preloading keys".into(),
            error,
        };
        let part = joined
            .map_err(|e| setup(OpError::Unexpected(format!("preload task failed: {e}"))))?
            .map_err(setup)?;
        parts.push(part);
    }
    parts.sort_by_key(|(i, _)| *i);
    Ok(parts.into_iter().flat_map(|(_, revs)| revs).collect())
}
