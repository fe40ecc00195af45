//! The storage quota (--quota-backend-bytes), as etcd's backendQuota: a
//! write that grows the store is admitted while the store's size plus the
//! write's estimated cost stays under the quota. Past it, the member raises
//! the NOSPACE alarm for itself through the log (the request path when it
//! refuses a write, the quota watcher when the writes it applied took it
//! there), and every member then refuses such writes until the alarm is
//! disarmed.
//!
//! The size is the store's size on disk as Status reports it (dbSize), less
//! what the engine reserved ahead when it grew its file and no data has
//! reached yet (redb doubles its file; bbolt, which etcd measures, grows it
//! by the pages it needs), read from the backend's cached measure
//! ([`Store::size_cached`]): the check on every write costs a few atomic
//! loads, no I/O and no lock.

use std::sync::atomic::{AtomicU64, Ordering};

use oxetcd_proto::etcdserverpb::request_op::Request as Op;
use oxetcd_proto::etcdserverpb::{PutRequest, TxnRequest};
use oxetcd_storage::Store;
use tokio::sync::Notify;

use crate::command::{Command, KeyWriteRef, Request};

/// etcd's quota when --quota-backend-bytes is 0.
pub const DEFAULT_QUOTA_BYTES: i64 = 2 << 30;
/// etcd's estimate of a key's metadata in the backend.
const KV_OVERHEAD: u64 = 256;
/// etcd's estimate of a lease in the backend.
const LEASE_OVERHEAD: u64 = 64;

/// The quota and what the quota watcher needs to know of applied writes.
pub struct Quota {
    /// None: disabled (a negative --quota-backend-bytes, as in etcd).
    limit: Option<u64>,
    /// The cost of the last applied write that had one: what "this member
    /// is past its quota" is measured with between writes.
    last_cost: AtomicU64,
    /// Woken when an applied write found the member past its quota.
    over: Notify,
}

impl Quota {
    /// The quota for --quota-backend-bytes `bytes`: 0 is etcd's default,
    /// a negative value disables it.
    pub fn new(bytes: i64) -> Self {
        let limit = match bytes {
            b if b < 0 => None,
            0 => Some(DEFAULT_QUOTA_BYTES as u64),
            b => Some(b as u64),
        };
        Self {
            limit,
            last_cost: AtomicU64::new(0),
            over: Notify::new(),
        }
    }

    /// The quota in bytes as Status reports it (dbSizeQuota); 0 when disabled.
    pub fn bytes(&self) -> i64 {
        self.limit.map_or(0, |l| l as i64)
    }

    /// Whether a write of `cost` fits on a store of `size` bytes.
    pub fn admits(&self, size: u64, cost: u64) -> bool {
        match self.limit {
            Some(limit) if cost > 0 => size.saturating_add(cost) < limit,
            _ => true,
        }
    }

    /// After applying writes whose largest cost was `cost` (0: none that
    /// grows the store): remembers it, and wakes the quota watcher when the
    /// store is past the quota.
    pub(crate) fn applied(&self, store: &Store, cost: u64) {
        if cost == 0 || self.limit.is_none() {
            return;
        }
        self.last_cost.store(cost, Ordering::Relaxed);
        if !self.admits(store.size_cached(), cost) {
            self.over.notify_one();
        }
    }

    /// Whether the store is past the quota for writes like the last one
    /// applied (never, before one was).
    pub(crate) fn exceeded(&self, store: &Store) -> bool {
        let cost = self.last_cost.load(Ordering::Relaxed);
        !self.admits(store.size_cached(), cost)
    }

    /// Resolves when an applied write found the store past the quota.
    pub(crate) async fn applied_past_quota(&self) {
        self.over.notified().await
    }
}

/// The estimated cost of `request` to the store's size, as etcd's: a put's
/// key, value and metadata; a txn's costlier branch; a lease grant's record.
/// Requests that do not grow the store cost 0.
pub fn cost(request: &Request) -> u64 {
    match request {
        Request::LeaseGrant(_) => LEASE_OVERHEAD,
        Request::Authorized(w) => w
            .command
            .as_deref()
            .and_then(|c| c.request.as_ref())
            .map_or(0, cost),
        other => other.as_key_write().map_or(0, key_write_cost),
    }
}

/// The largest cost of the writes in `command`.
pub(crate) fn command_cost(command: &Command) -> u64 {
    match &command.request {
        Some(request) => cost(request),
        None => command
            .batch
            .iter()
            .filter_map(|w| w.as_ref())
            .map(key_write_cost)
            .max()
            .unwrap_or(0),
    }
}

pub fn key_write_cost(write: KeyWriteRef<'_>) -> u64 {
    match write {
        KeyWriteRef::Put(p) => put_cost(p),
        KeyWriteRef::DeleteRange(_) => 0,
        KeyWriteRef::Txn(t) => txn_cost(t),
    }
}

fn put_cost(p: &PutRequest) -> u64 {
    KV_OVERHEAD + p.key.len() as u64 + p.value.len() as u64
}

/// The costlier branch's puts. Unlike etcd 3.4, puts in nested txns count:
/// otherwise a txn nesting its puts would get past a full store.
pub fn txn_cost(t: &TxnRequest) -> u64 {
    let branch = |ops: &[oxetcd_proto::etcdserverpb::RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(Op::RequestPut(p)) => put_cost(p),
                Some(Op::RequestTxn(t)) => txn_cost(t),
                _ => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxetcd_proto::etcdserverpb::{DeleteRangeRequest, LeaseGrantRequest, RequestOp};

    fn put(key: &str, value: &str) -> PutRequest {
        PutRequest {
            key: key.as_bytes().to_vec().into(),
            value: value.as_bytes().to_vec().into(),
            ..Default::default()
        }
    }

    fn op_put(key: &str, value: &str) -> RequestOp {
        RequestOp {
            request: Some(Op::RequestPut(put(key, value))),
        }
    }

    #[test]
    fn costs_are_etcds() {
        assert_eq!(cost(&Request::Put(put("k", "vv"))), 256 + 3);
        assert_eq!(
            cost(&Request::DeleteRange(DeleteRangeRequest::default())),
            0
        );
        assert_eq!(cost(&Request::LeaseGrant(LeaseGrantRequest::default())), 64);
        let txn = TxnRequest {
            success: vec![op_put("a", "1")],
            failure: vec![op_put("b", "1"), op_put("c", "1")],
            ..Default::default()
        };
        assert_eq!(txn_cost(&txn), 2 * 258);
        let nested = TxnRequest {
            success: vec![RequestOp {
                request: Some(Op::RequestTxn(txn)),
            }],
            ..Default::default()
        };
        assert_eq!(txn_cost(&nested), 2 * 258, "nested puts count");
        assert_eq!(txn_cost(&TxnRequest::default()), 0);
    }

    #[test]
    fn the_quota_admits_while_size_and_cost_stay_under_it() {
        let q = Quota::new(1000);
        assert!(q.admits(700, 299));
        assert!(!q.admits(700, 300));
        assert!(q.admits(5000, 0), "what costs nothing always passes");
        assert!(Quota::new(-1).admits(u64::MAX, 1), "negative: disabled");
        assert_eq!(Quota::new(0).bytes(), DEFAULT_QUOTA_BYTES);
        assert_eq!(Quota::new(-1).bytes(), 0);
    }
}
