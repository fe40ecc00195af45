//! Txn: compares, then one branch of operations, all at one revision.
//!
//! As in etcd, every compare on the path taken (nested txns included) is
//! evaluated against the store as it was before the txn, and every check that
//! can fail runs before the first change: a txn is applied whole or not at all.

use oxetcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxetcd_proto::etcdserverpb::request_op::Request as Op;
use oxetcd_proto::etcdserverpb::response_op::Response as OpResponse;
use oxetcd_proto::etcdserverpb::{
    Compare, RangeRequest, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use oxetcd_proto::mvccpb::KeyValue;
use oxetcd_storage::{KeyRange, RangeOptions, RangeResult, Store, WriteTxn};
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

/// Test-only failpoint (OXETCD_FAILPOINT_TXN_READS_MISS_OWN_WRITES): a
/// range in a txn that has already changed something, asking for the latest
/// revision, reads the store as it was before the txn (a txn that does not
/// read its own writes back). Process-wide, as [`HALF_APPLIED`].
static READS_MISS_OWN_WRITES: AtomicBool = AtomicBool::new(false);

/// Enables the failpoint [`READS_MISS_OWN_WRITES`] (at start, from the
/// config).
pub fn set_reads_miss_own_writes_failpoint(on: bool) {
    READS_MISS_OWN_WRITES.store(on, Ordering::Relaxed);
}

/// Whether `req` only reads: no put, delete or txn on either branch
/// (etcd's isTxnReadonly). Such a txn is served by [`read_only_txn`]
/// without going through Raft, as etcd serves it.
pub fn is_read_only(req: &TxnRequest) -> bool {
    let reads = |ops: &[RequestOp]| {
        ops.iter()
            .all(|op| matches!(op.request, Some(Op::RequestRange(_)) | None))
    };
    reads(&req.success) && reads(&req.failure)
}

/// Whether every range of read-only `req` is serializable (etcd's
/// isTxnSerializable): then it needs no read barrier.
pub fn is_serializable(req: &TxnRequest) -> bool {
    let serializable = |ops: &[RequestOp]| {
        ops.iter().all(|op| match &op.request {
            Some(Op::RequestRange(r)) => r.serializable,
            _ => true,
        })
    };
    serializable(&req.success) && serializable(&req.failure)
}

/// The store as of one revision: every read of a read-only txn, compares
/// included, sees the same revision while applies go on.
struct AtRevision<'a> {
    store: &'a Store,
    rev: i64,
}

impl Reader for AtRevision<'_> {
    fn read(
        &self,
        range: KeyRange<'_>,
        opts: &RangeOptions,
    ) -> oxetcd_storage::Result<RangeResult> {
        let rev = if opts.rev == 0 { self.rev } else { opts.rev };
        self.store.range(range, &RangeOptions { rev, ..*opts })
    }
}

/// Serves a read-only txn (already validated, see [`is_read_only`]) from
/// `store` as of its latest visible revision; the caller has waited for a
/// read barrier unless the txn [`is_serializable`].
pub fn read_only_txn(store: &Store, req: &TxnRequest) -> Result<TxnResponse, EtcdError> {
    loop {
        let rev = store.current_revision();
        let reader = AtRevision { store, rev };
        let mut path = Vec::new();
        compare_path(&reader, req, &mut path);
        let resp = execute_reads(&reader, rev, req, &path, &mut 0);
        // A compaction past `rev` while reading may have failed a compare or
        // a read that was valid when the txn began: read again, later.
        if store.compacted_revision() <= rev {
            if operations(req, &path, &mut 0) > 1 {
                oxetcd_metrics::mvcc().txn_total.inc();
            }
            return resp;
        }
    }
}

/// [`execute`] for a read-only txn: its ranges, as of `rev`.
fn execute_reads(
    reader: &AtRevision<'_>,
    rev: i64,
    req: &TxnRequest,
    path: &[bool],
    at: &mut usize,
) -> Result<TxnResponse, EtcdError> {
    let (succeeded, ops) = next_branch(req, path, at);
    let mut responses = Vec::new();
    for op in ops {
        // A read-only txn holds nothing but ranges.
        let Some(Op::RequestRange(r)) = &op.request else {
            continue;
        };
        if r.revision > rev {
            return Err(EtcdError::FutureRevision);
        }
        let response = if r.revision == 0 && STALE_READ_ONLY.load(Ordering::Relaxed) {
            // The failpoint's bug: an old snapshot for a read-only txn.
            let stale = RangeRequest {
                revision: (rev - STALE_BY).max(1),
                ..r.clone()
            };
            range(reader, &stale)?
        } else {
            range(reader, r)?
        };
        responses.push(ResponseOp {
            response: Some(OpResponse::ResponseRange(response)),
        });
    }
    Ok(txn_response(rev, succeeded, responses))
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
    let (_, ops) = next_branch(req, path, at);
    let mut n = req.compare.len();
    for op in ops {
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
    let (_, ops) = next_branch(req, path, at);
    for op in ops {
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
    let (succeeded, ops) = next_branch(req, path, at);
    let mut responses = Vec::new();
    // Counted only for the failpoint: the apply path pays nothing without it.
    let half_applied = HALF_APPLIED.load(Ordering::Relaxed);
    let is_put = |op: &&RequestOp| matches!(op.request, Some(Op::RequestPut(_)));
    let puts = if half_applied {
        ops.iter().filter(is_put).count()
    } else {
        0
    };
    let mut puts_left = puts;
    for op in ops {
        let response = match &op.request {
            Some(Op::RequestRange(r))
                if r.revision == 0 && READS_MISS_OWN_WRITES.load(Ordering::Relaxed) =>
            {
                // The failpoint's bug: the txn's own changes are not seen.
                let before = RangeRequest {
                    revision: txn.write_rev() - 1,
                    ..r.clone()
                };
                OpResponse::ResponseRange(range(&*txn, &before)?)
            }
            Some(Op::RequestRange(r)) => OpResponse::ResponseRange(range(&*txn, r)?),
            Some(Op::RequestPut(p)) => {
                puts_left = puts_left.saturating_sub(1);
                if puts > 1 && puts_left == 0 {
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
    Ok(txn_response(txn.read_rev(), succeeded, responses))
}

/// The branch the compares chose for the txn at `*at` on `path` (compares
/// of nested txns follow their parent's, depth first); moves `at` past it.
fn next_branch<'r>(req: &'r TxnRequest, path: &[bool], at: &mut usize) -> (bool, &'r [RequestOp]) {
    let succeeded = path[*at];
    *at += 1;
    (succeeded, branch(req, succeeded))
}

fn txn_response(revision: i64, succeeded: bool, responses: Vec<ResponseOp>) -> TxnResponse {
    TxnResponse {
        header: Some(ResponseHeader {
            revision,
            ..Default::default()
        }),
        succeeded,
        responses,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::TestApplier;
    use crate::command::{Request, Response};
    use oxetcd_proto::etcdserverpb::PutRequest;

    fn put(key: &'static str, value: &'static str) -> Request {
        Request::Put(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })
    }

    fn put_op(key: &'static str) -> RequestOp {
        RequestOp {
            request: Some(Op::RequestPut(PutRequest {
                key: key.into(),
                value: "v".into(),
                ..Default::default()
            })),
        }
    }

    fn range_op(key: &'static str, revision: i64, serializable: bool) -> RequestOp {
        RequestOp {
            request: Some(Op::RequestRange(RangeRequest {
                key: key.into(),
                revision,
                serializable,
                ..Default::default()
            })),
        }
    }

    fn value_is(key: &'static str, value: &'static str) -> Compare {
        Compare {
            key: key.into(),
            target: CompareTarget::Value as i32,
            result: CompareResult::Equal as i32,
            target_union: Some(TargetUnion::Value(value.into())),
            ..Default::default()
        }
    }

    /// The values each range of the response found (other responses left out).
    fn range_values(resp: &TxnResponse) -> Vec<Vec<String>> {
        resp.responses
            .iter()
            .filter_map(|r| match &r.response {
                Some(OpResponse::ResponseRange(r)) => Some(
                    r.kvs
                        .iter()
                        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn read_only_means_ranges_only_and_serializable_means_every_range() {
        let reads = TxnRequest {
            success: vec![range_op("a", 0, true)],
            failure: vec![range_op("b", 0, true)],
            ..Default::default()
        };
        assert!(is_read_only(&reads) && is_serializable(&reads));
        let mut one_linearizable = reads.clone();
        one_linearizable.failure.push(range_op("c", 0, false));
        assert!(is_read_only(&one_linearizable) && !is_serializable(&one_linearizable));
        let mut writes = reads.clone();
        writes.failure.push(put_op("c"));
        assert!(!is_read_only(&writes));
        let nested = TxnRequest {
            success: vec![RequestOp {
                request: Some(Op::RequestTxn(reads)),
            }],
            ..Default::default()
        };
        assert!(!is_read_only(&nested), "etcd proposes nested txns");
    }

    #[test]
    fn a_read_only_txn_compares_and_reads_the_store_as_of_one_revision() {
        let applier = TestApplier::new();
        let store = &applier.store;
        for value in ["old", "new"] {
            applier.apply(&put("k", value)).unwrap();
        }
        let _published = store.commit().unwrap();
        let head = store.current_revision();
        let txn = |value: &'static str, revision: i64| TxnRequest {
            compare: vec![value_is("k", value)],
            success: vec![range_op("k", 0, false), range_op("k", revision, false)],
            failure: vec![range_op("missing", 0, false)],
        };

        let resp = read_only_txn(store, &txn("new", head - 1)).unwrap();
        assert!(resp.succeeded);
        assert_eq!(resp.header.as_ref().unwrap().revision, head);
        assert_eq!(range_values(&resp), [vec!["new"], vec!["old"]]);

        let resp = read_only_txn(store, &txn("old", head - 1)).unwrap();
        assert!(!resp.succeeded, "the compare reads the latest value");
        assert_eq!(range_values(&resp), [Vec::<String>::new()]);

        assert!(matches!(
            read_only_txn(store, &txn("new", head + 1)),
            Err(EtcdError::FutureRevision)
        ));
    }

    #[test]
    fn a_txn_reads_its_own_writes_back() {
        let applier = TestApplier::new();
        applier.apply(&put("k", "old")).unwrap();
        let txn = Request::Txn(TxnRequest {
            success: vec![
                range_op("k", 0, false),
                put_op("k"),
                range_op("k", 0, false),
            ],
            ..Default::default()
        });
        let Ok(Response::Txn(resp)) = applier.apply(&txn) else {
            panic!("not a txn response");
        };
        assert_eq!(
            range_values(&resp),
            [vec!["old"], vec!["v"]],
            "the second range follows the put"
        );
    }
}
