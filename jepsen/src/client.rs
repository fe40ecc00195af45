//! What the workloads share: one gRPC channel per member, the run's clock,
//! the history being recorded, and the etcd requests they send.
//!
//! Each client is bound to one member, as in Jepsen: its requests go there,
//! so a fault on that member shows in that client's operations.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxetcd_proto::etcdserverpb::kv_client::KvClient;
use oxetcd_proto::etcdserverpb::lease_client::LeaseClient;
use oxetcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd_proto::etcdserverpb::request_op::Request;
use oxetcd_proto::etcdserverpb::response_op::Response;
use oxetcd_proto::etcdserverpb::watch_client::WatchClient;
use oxetcd_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, TxnResponse,
};
use oxetcd_proto::mvccpb::KeyValue;
pub use oxetcd_proto::prefix_end;

pub use crate::auth::channel::AuthedChannel;
use crate::auth::tokens::{AuthCounts, Login, NOT_SENT};
use crate::auth::{refusal, PASSWORD, ROOT, ROOT_PASSWORD, USER};
use crate::cluster;
use crate::history::{Call, Op, Outcome};

/// Largest response accepted (a final read of a big set).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The state every client task shares.
pub struct Ctx {
    /// One per member: the workload's requests, with the workload user's
    /// token when auth is on.
    channels: Vec<AuthedChannel>,
    /// One per member: administration (HashKV), with root's token when
    /// auth is on.
    admin: Vec<AuthedChannel>,
    /// The workload user's tokens, when auth is on.
    login: Option<Login>,
    start: Instant,
    /// Clients issue no new operation after this.
    pub deadline: Instant,
    /// A request not answered by then is indeterminate.
    pub op_timeout: Duration,
    /// Pause between a client's operations (the rate limit).
    pub delay: Duration,
    /// Number of client tasks: a client whose operation was indeterminate
    /// continues as process `p + concurrency`, as Jepsen does, since the
    /// old operation may still be in flight.
    pub concurrency: u32,
    /// Every operation recorded so far. Held only to push or drain.
    history: Mutex<Vec<Op>>,
}

impl Ctx {
    pub fn new(
        urls: &[String],
        start: Instant,
        deadline: Instant,
        op_timeout: Duration,
        delay: Duration,
        concurrency: u32,
        auth: bool,
    ) -> Result<Ctx, String> {
        let raw = urls
            .iter()
            .map(|u| cluster::channel(u, op_timeout))
            .collect::<Result<Vec<_>, _>>()?;
        let (channels, admin, login) = if auth {
            let login = Login::new(USER, PASSWORD, &raw, op_timeout);
            let root = Login::new(ROOT, ROOT_PASSWORD, &raw, op_timeout);
            let authed = |login: &Login| {
                raw.iter()
                    .zip(&login.members)
                    .map(|(c, t)| AuthedChannel::with_token(c.clone(), t.clone()))
                    .collect::<Vec<_>>()
            };
            (authed(&login), authed(&root), Some(login))
        } else {
            let plain: Vec<_> = raw.into_iter().map(AuthedChannel::plain).collect();
            (plain.clone(), plain, None)
        };
        Ok(Ctx {
            channels,
            admin,
            login,
            start,
            deadline,
            op_timeout,
            delay,
            concurrency,
            history: Mutex::new(Vec::new()),
        })
    }

    pub fn members(&self) -> usize {
        self.channels.len()
    }

    /// ns since the run started.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    pub fn record(&self, op: Op) {
        if let Ok(mut history) = self.history.lock() {
            history.push(op);
        }
    }

    pub fn ops_so_far(&self) -> usize {
        self.history.lock().map(|h| h.len()).unwrap_or(0)
    }

    /// The history, sorted by invocation.
    pub fn take_history(&self) -> Vec<Op> {
        let mut ops = self
            .history
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default();
        ops.sort_by_key(|op| (op.invoke, op.process));
        ops
    }

    /// How often the workload user authenticated and why its tokens were
    /// refreshed, when auth is on.
    pub fn auth_counts(&self) -> Option<AuthCounts> {
        self.login.as_ref().map(Login::counts)
    }

    pub fn kv(&self, member: usize) -> KvClient<AuthedChannel> {
        KvClient::new(self.channels[member % self.channels.len()].clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn lease(&self, member: usize) -> LeaseClient<AuthedChannel> {
        LeaseClient::new(self.channels[member % self.channels.len()].clone())
    }

    /// As root when auth is on: HashKV needs it.
    pub fn maintenance(&self, member: usize) -> MaintenanceClient<AuthedChannel> {
        MaintenanceClient::new(self.admin[member % self.admin.len()].clone())
    }

    pub fn watch(&self, member: usize) -> WatchClient<AuthedChannel> {
        WatchClient::new(self.channels[member % self.channels.len()].clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Runs one operation with the deadline and records it. `effect` is
    /// whether the call changes state: a change that timed out or errored
    /// is indeterminate, a read that did is simply failed; a change refused
    /// by an auth check failed (the server guarantees it was not applied:
    /// see [`refusal`]).
    pub async fn invoke<F>(&self, process: u32, call: Call, effect: bool, run: F) -> Outcome
    where
        F: std::future::Future<Output = Result<Call, tonic::Status>>,
    {
        let invoke = self.now();
        let result = tokio::time::timeout(self.op_timeout, run).await;
        let complete = self.now();
        let uncertain = if effect { Outcome::Info } else { Outcome::Fail };
        let (outcome, call, error) = match result {
            Ok(Ok(call)) => (Outcome::Ok, call, None),
            Ok(Err(status)) if never_sent(&status) || refusal::never_applied(status.message()) => {
                (Outcome::Fail, call, Some(status_text(&status)))
            }
            Ok(Err(status)) => (uncertain, call, Some(status_text(&status))),
            Err(_) => (uncertain, call, Some("timeout".into())),
        };
        self.record(Op {
            process,
            invoke,
            complete,
            outcome,
            call,
            error,
        });
        outcome
    }
}

/// The channel could not connect, or no token could be had, so the request
/// never left the client: certainly not executed. Anything else (a timeout,
/// a reset, an error from the server) may have come after the server
/// applied it.
fn never_sent(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable
        && (status.message() == "tcp connect error" || status.message().starts_with(NOT_SENT))
}

fn status_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

pub fn encode(value: i64) -> Bytes {
    Bytes::from(value.to_string())
}

/// The integer a workload stored; anything else reads as `None`.
pub fn decode(kv: &KeyValue) -> Option<i64> {
    std::str::from_utf8(&kv.value).ok()?.parse().ok()
}

/// A linearizable read of one key.
pub async fn get(
    kv: &mut KvClient<AuthedChannel>,
    key: &str,
) -> Result<Option<KeyValue>, tonic::Status> {
    let request = RangeRequest {
        key: Bytes::from(key.to_owned()),
        ..Default::default()
    };
    Ok(kv.range(request).await?.into_inner().kvs.into_iter().next())
}

/// A linearizable read of one key by a read-only Txn (no compare, one
/// Range).
pub async fn get_in_txn(
    kv: &mut KvClient<AuthedChannel>,
    key: &str,
) -> Result<Option<KeyValue>, tonic::Status> {
    let response = txn(kv, Vec::new(), vec![range_op(key)], Vec::new()).await?;
    Ok(range_kvs(&response, 0).and_then(|kvs| kvs.first().cloned()))
}

/// A put; returns the header revision (the put's mod_revision).
pub async fn put(
    kv: &mut KvClient<AuthedChannel>,
    key: &str,
    value: i64,
) -> Result<i64, tonic::Status> {
    let request = PutRequest {
        key: Bytes::from(key.to_owned()),
        value: encode(value),
        ..Default::default()
    };
    let response = kv.put(request).await?.into_inner();
    Ok(response.header.map(|h| h.revision).unwrap_or(0))
}

/// Every key under `prefix` at revision `at` (0: the latest), in pages of
/// `page` keys as Kubernetes lists: the next page starts after the last key,
/// at the first page's revision. Returns (revision, keys and values).
pub async fn list(
    kv: &mut KvClient<AuthedChannel>,
    prefix: &str,
    page: i64,
    at: i64,
) -> Result<(i64, Vec<KeyValue>), tonic::Status> {
    let end = prefix_end(prefix);
    let mut start = Bytes::from(prefix.to_owned());
    let mut revision = at;
    let mut all = Vec::new();
    loop {
        let request = RangeRequest {
            key: start.clone(),
            range_end: end.clone(),
            limit: page,
            revision,
            ..Default::default()
        };
        let response = kv.range(request).await?.into_inner();
        if revision == 0 {
            revision = response.header.map(|h| h.revision).unwrap_or(0);
        }
        let more = response.more;
        if let Some(last) = response.kvs.last() {
            let mut next = last.key.to_vec();
            next.push(0);
            start = Bytes::from(next);
        }
        all.extend(response.kvs);
        if !more {
            return Ok((revision, all));
        }
    }
}

/// A compare on one key's value (`None`: the key is absent, compared as
/// mod_revision 0).
pub fn compare_value(key: &str, value: Option<i64>) -> Compare {
    let key = Bytes::from(key.to_owned());
    match value {
        Some(v) => Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Value as i32,
            key,
            target_union: Some(TargetUnion::Value(encode(v))),
            ..Default::default()
        },
        None => compare_mod_revision(key, 0),
    }
}

pub fn compare_mod_revision(key: Bytes, revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Mod as i32,
        key,
        target_union: Some(TargetUnion::ModRevision(revision)),
        ..Default::default()
    }
}

/// The write half of a compare-and-set: put a value, or delete.
pub fn write_op(key: &str, value: Option<i64>) -> RequestOp {
    let key = Bytes::from(key.to_owned());
    let request = match value {
        Some(v) => Request::RequestPut(PutRequest {
            key,
            value: encode(v),
            ..Default::default()
        }),
        None => Request::RequestDeleteRange(DeleteRangeRequest {
            key,
            ..Default::default()
        }),
    };
    RequestOp {
        request: Some(request),
    }
}

pub fn range_op(key: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key: Bytes::from(key.to_owned()),
            ..Default::default()
        })),
    }
}

pub async fn txn(
    kv: &mut KvClient<AuthedChannel>,
    compare: Vec<Compare>,
    success: Vec<RequestOp>,
    failure: Vec<RequestOp>,
) -> Result<TxnResponse, tonic::Status> {
    let request = TxnRequest {
        compare,
        success,
        failure,
    };
    Ok(kv.txn(request).await?.into_inner())
}

/// The key-values of the `n`th response of a transaction, if it was a range.
pub fn range_kvs(response: &TxnResponse, n: usize) -> Option<&[KeyValue]> {
    match response.responses.get(n)?.response.as_ref()? {
        Response::ResponseRange(range) => Some(&range.kvs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_foreign_values_read_as_none() {
        let kv = |value: &[u8]| KeyValue {
            value: Bytes::copy_from_slice(value),
            ..Default::default()
        };
        assert_eq!(decode(&kv(&encode(-42))), Some(-42));
        assert_eq!(decode(&kv(b"{}")), None);
    }
}
