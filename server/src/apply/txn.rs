//! Txn: compares, then one branch of operations, all at one revision.
//!
//! As in etcd, every compare on the path taken (nested txns included) is
//! evaluated against the store as it was before the txn, and every check that
//! can fail runs before the first change: a txn is applied whole or not at all.

use oxetcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxetcd_proto::etcdserverpb::request_op::Request as Op;
use oxetcd_proto::etcdserverpb::response_op::Response as OpResponse;
use oxetcd_proto::etcdserverpb::{
    Compare, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use oxetcd_proto::mvccpb::KeyValue;
use oxetcd_storage::{KeyRange, RangeOptions, WriteTxn};
use std::sync::atomic::{AtomicBool, Ordering};

use super::range::{range, Reader};
use super::{check_put, delete_range, put};
use crate::error::EtcdError;
use crate::lease::Lessor;

/// Test-only failpoint (OXETCD_FAILPOINT_TXN_HALF_APPLIED): a txn whose
/// branch puts two keys or more applies all but the last put, and answers
/// as if it had applied it. Process-wide, set once at start: the apply path
/// is deterministic code that no configuration reaches.
static HALF_APPLIED: AtomicBool = AtomicBool::new(false);

/// Enables the failpoint [`HALF_APPLIED`] (at start, from the config).
pub fn set_half_applied_failpoint(on: bool) {
    HALF_APPLIED.store(on, Ordering::Relaxed);
}

/// Test-only failpoint (OXETCD_FAILPOINT_STALE_READ_ONLY_TXN): the ranges
/// of a read-only txn (no put, delete or nested txn on either branch) that
/// ask for the latest revision read the store as it was
/// [`STALE_BY`] revisions before. Process-wide, as [`HALF_APPLIED`].
static STALE_READ_ONLY: AtomicBool = AtomicBool::new(false);
const STALE_BY: i64 = 10;

/// Enables the failpoint [`STALE_READ_ONLY`] (at start, from the config).
pub fn set_stale_read_only_failpoint(on: bool) {
    STALE_READ_ONLY.store(on, Ordering::Relaxed);
}

/// Whether `req` only reads: no put, delete or txn on either branch.
fn read_only(req: &TxnRequest) -> bool {
    let reads = |ops: &[RequestOp]| {
        ops.iter()
            .all(|op| matches!(op.request, Some(Op::RequestRange(_)) | None))
    };
    reads(&req.success) && reads(&req.failure)
}

/// Applies a TxnRequest (already validated) in `txn`.
pub fn apply_txn(
    txn: &mut WriteTxn<'_>,
    leases: &Lessor,
    req: &TxnRequest,
) -> Result<TxnResponse, EtcdError> {
    let mut path = Vec::new();
    compare_path(txn, req, &mut path);
    check_path(txn, leases, req, &path, &mut 0)?;
    let resp = execute(txn, req, &path, &mut 0)?;
    // etcd counts a txn whose reads (compares included) and writes number
    // more than one; each of those is counted where it runs.
    if operations(req, &path, &mut 0) > 1 {
        oxetcd_metrics::mvcc().txn_total.inc();
    }
    Ok(resp)
}

/// The compares and the range, put and delete operations of the txns on
/// the path taken.
fn operations(req: &TxnRequest, path: &[bool], at: &mut usize) -> usize {
    let ok = path[*at];
    *at += 1;
    let mut n = req.compare.len();
    for op in branch(req, ok) {
        n += match &op.request {
            Some(Op::RequestTxn(t)) => operations(t, path, at),
            Some(_) => 1,
            None => 0,
        };
    }
    n
}

fn branch(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

fn nested(ops: &[RequestOp]) -> impl Iterator<Item = &TxnRequest> {
    ops.iter().filter_map(|op| match &op.request {
        Some(Op::RequestTxn(t)) => Some(t),
        _ => None,
    })
}

/// The outcome of every txn on the path taken, depth first.
fn compare_path(reader: &impl Reader, req: &TxnRequest, path: &mut Vec<bool>) {
    let ok = req.compare.iter().all(|c| compare(reader, c));
    path.push(ok);
    for t in nested(branch(req, ok)) {
        compare_path(reader, t, path);
    }
}

fn check_path(
    txn: &WriteTxn<'_>,
    leases: &Lessor,
    req: &TxnRequest,
    path: &[bool],
    at: &mut usize,
) -> Result<(), EtcdError> {
    let ok = path[*at];
    *at += 1;
    for op in branch(req, ok) {
        match &op.request {
            Some(Op::RequestRange(r)) => {
                if r.revision > txn.read_rev() {
                    return Err(EtcdError::FutureRevision);
                }
                // Compacted revisions show up as an error of the read itself.
                if r.revision > 0 {
                    txn.read(
                        KeyRange::new(&r.key, b""),
                        &RangeOptions {
                            rev: r.revision,
                            count_only: true,
                            limit: 0,
                        },
                    )?;
                }
            }
            Some(Op::RequestPut(p)) => check_put(txn, leases, p)?,
            Some(Op::RequestTxn(t)) => check_path(txn, leases, t, path, at)?,
            Some(Op::RequestDeleteRange(_)) | None => {}
        }
    }
    Ok(())
}

fn execute(
    txn: &mut WriteTxn<'_>,
    req: &TxnRequest,
    path: &[bool],
    at: &mut usize,
) -> Result<TxnResponse, EtcdError> {
    let succeeded = path[*at];
    *at += 1;
    let mut responses = Vec::new();
    let ops = branch(req, succeeded);
    let is_put = |op: &&RequestOp| matches!(op.request, Some(Op::RequestPut(_)));
    let puts = ops.iter().filter(is_put).count();
    let mut puts_left = puts;
    for op in ops {
        let response = match &op.request {
            Some(Op::RequestRange(r))
                if r.revision == 0 && STALE_READ_ONLY.load(Ordering::Relaxed) && read_only(req) =>
            {
                // The failpoint's bug: an old snapshot for a read-only txn.
                let stale = oxetcd_proto::etcdserverpb::RangeRequest {
                    revision: (txn.read_rev() - STALE_BY).max(1),
                    ..r.clone()
                };
                OpResponse::ResponseRange(range(&*txn, &stale)?)
            }
            Some(Op::RequestRange(r)) => OpResponse::ResponseRange(range(&*txn, r)?),
            Some(Op::RequestPut(p)) => {
                puts_left -= 1;
                if puts > 1 && puts_left == 0 && HALF_APPLIED.load(Ordering::Relaxed) {
                    // The failpoint's bug: acknowledged, never applied.
                    OpResponse::ResponsePut(Default::default())
                } else {
                    OpResponse::ResponsePut(put(txn, p)?)
                }
            }
            Some(Op::RequestDeleteRange(d)) => {
                OpResponse::ResponseDeleteRange(delete_range(txn, d)?)
            }
            Some(Op::RequestTxn(t)) => OpResponse::ResponseTxn(execute(txn, t, path, at)?),
            None => continue,
        };
        responses.push(ResponseOp {
            response: Some(response),
        });
    }
    Ok(TxnResponse {
        header: Some(ResponseHeader {
            revision: txn.read_rev(),
            ..Default::default()
        }),
        succeeded,
        responses,
    })
}

/// etcd's applyCompare: every key in the range must satisfy the compare; a
/// missing key compares as an empty key-value, except that a VALUE compare on a
/// missing key always fails.
pub fn compare(reader: &impl Reader, c: &Compare) -> bool {
    oxetcd_metrics::mvcc().range_total.inc();
    let Ok(res) = reader.read(
        KeyRange::new(&c.key, &c.range_end),
        &RangeOptions::default(),
    ) else {
        return false;
    };
    if res.kvs.is_empty() {
        if c.target == CompareTarget::Value as i32 {
            return false;
        }
        return compare_kv(c, &KeyValue::default());
    }
    res.kvs.iter().all(|kv| compare_kv(c, kv))
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    // A target_union of another kind than the target compares as its zero value.
    let want_int =
        |pick: fn(&TargetUnion) -> Option<i64>| c.target_union.as_ref().and_then(pick).unwrap_or(0);
    let ord = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_ref().cmp(want)
        }
        Ok(CompareTarget::Version) => kv.version.cmp(&want_int(|t| match t {
            TargetUnion::Version(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Create) => kv.create_revision.cmp(&want_int(|t| match t {
            TargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Mod) => kv.mod_revision.cmp(&want_int(|t| match t {
            TargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Lease) => kv.lease.cmp(&want_int(|t| match t {
            TargetUnion::Lease(v) => Some(*v),
            _ => None,
        })),
        Err(_) => return true,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Err(_) => true,
    }
}
