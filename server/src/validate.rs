//! Checks a request must pass before it reaches the write path, as etcd's
//! gRPC layer (`v3rpc/key.go`) makes them: nothing that fails here is applied.

use std::collections::HashSet;

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxetcd_proto::etcdserverpb::request_op::Request as Op;
use oxetcd_proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use oxetcd_storage::KeyRange;

use crate::error::EtcdError;

pub fn range(r: &RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if SortOrder::try_from(r.sort_order).is_err() || SortTarget::try_from(r.sort_target).is_err() {
        return Err(EtcdError::InvalidSortOption);
    }
    Ok(())
}

pub fn put(r: &PutRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

pub fn delete_range(r: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// Validates a txn and its nested txns; then refuses a txn that would change
/// one key twice.
pub fn txn(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    txn_ops(r, max_txn_ops)?;
    intervals(&r.success)?;
    intervals(&r.failure)?;
    Ok(())
}

/// A nested txn may use only the ops its parent leaves (etcd's rule).
fn txn_ops(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    let ops = r.compare.len().max(r.success.len()).max(r.failure.len());
    if ops > max_txn_ops {
        return Err(EtcdError::TooManyOps);
    }
    let left_for_nested = max_txn_ops - ops;
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        match &op.request {
            Some(Op::RequestRange(x)) => range(x)?,
            Some(Op::RequestPut(x)) => put(x)?,
            Some(Op::RequestDeleteRange(x)) => delete_range(x)?,
            Some(Op::RequestTxn(x)) => txn_ops(x, left_for_nested)?,
            // etcd answers an empty op this way.
            None => return Err(EtcdError::KeyNotFound),
        }
    }
    Ok(())
}

/// The keys a list of ops puts and the ranges it deletes, nested txns included
/// (their two branches exclude each other, so they may put the same key).
struct Writes {
    puts: HashSet<Bytes>,
    dels: Vec<(Bytes, Bytes)>,
}

impl Writes {
    fn deletes(&self, key: &[u8]) -> bool {
        // etcd 3.4 compares range ends as strings, so a from-key delete (end
        // "\0") overlaps nothing here; clients rely on such txns being accepted.
        self.dels
            .iter()
            .any(|(k, end)| end.as_ref() != [0] && KeyRange::new(k, end).contains(key))
    }
}

fn intervals(ops: &[RequestOp]) -> Result<Writes, EtcdError> {
    let mut w = Writes {
        puts: HashSet::new(),
        dels: Vec::new(),
    };
    for op in ops {
        if let Some(Op::RequestDeleteRange(d)) = &op.request {
            w.dels.push((d.key.clone(), d.range_end.clone()));
        }
    }
    for op in ops {
        let Some(Op::RequestTxn(t)) = &op.request else {
            continue;
        };
        let then = intervals(&t.success)?;
        let otherwise = intervals(&t.failure)?;
        for k in &then.puts {
            if w.puts.contains(k) || w.deletes(k) {
                return Err(EtcdError::DuplicateKey);
            }
        }
        for k in &otherwise.puts {
            if (w.puts.contains(k) && !then.puts.contains(k)) || w.deletes(k) {
                return Err(EtcdError::DuplicateKey);
            }
        }
        w.puts.extend(then.puts.into_iter().chain(otherwise.puts));
        w.dels.extend(then.dels.into_iter().chain(otherwise.dels));
    }
    for op in ops {
        let Some(Op::RequestPut(p)) = &op.request else {
            continue;
        };
        if w.puts.contains(&p.key) || w.deletes(&p.key) {
            return Err(EtcdError::DuplicateKey);
        }
        w.puts.insert(p.key.clone());
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_op(k: &str) -> RequestOp {
        RequestOp {
            request: Some(Op::RequestPut(PutRequest {
                key: Bytes::from(k.to_string()),
                ..Default::default()
            })),
        }
    }
    fn del_op(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                key: Bytes::from(k.to_string()),
                range_end: Bytes::from(end.to_string()),
                ..Default::default()
            })),
        }
    }
    fn txn_of(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success,
            failure,
        }
    }
    fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(Op::RequestTxn(txn_of(success, failure))),
        }
    }

    #[test]
    fn duplicate_puts_and_put_inside_delete_are_refused() {
        assert!(matches!(
            txn(&txn_of(vec![put_op("a"), put_op("a")], vec![]), 128),
            Err(EtcdError::DuplicateKey)
        ));
        assert!(matches!(
            txn(&txn_of(vec![put_op("b"), del_op("a", "c")], vec![]), 128),
            Err(EtcdError::DuplicateKey)
        ));
        let from_key = txn_of(vec![put_op("z"), del_op("a", "\0")], vec![]);
        assert!(txn(&from_key, 128).is_ok(), "etcd 3.4 accepts this");
        assert!(txn(
            &txn_of(
                vec![put_op("a"), del_op("b", "c"), del_op("b", "d")],
                vec![]
            ),
            128
        )
        .is_ok());
        assert!(
            txn(&txn_of(vec![put_op("a")], vec![put_op("a")]), 128).is_ok(),
            "branches exclude each other"
        );
    }

    #[test]
    fn nested_branches_may_share_keys_but_not_with_outer_ops() {
        let ok = txn_of(vec![nested(vec![put_op("a")], vec![put_op("a")])], vec![]);
        assert!(txn(&ok, 128).is_ok());
        let bad = txn_of(vec![put_op("a"), nested(vec![put_op("a")], vec![])], vec![]);
        assert!(matches!(txn(&bad, 128), Err(EtcdError::DuplicateKey)));
        let bad = txn_of(
            vec![del_op("a", "b"), nested(vec![], vec![put_op("a")])],
            vec![],
        );
        assert!(matches!(txn(&bad, 128), Err(EtcdError::DuplicateKey)));
    }

    #[test]
    fn op_count_and_empty_keys_are_checked() {
        let many = txn_of((0..129).map(|i| put_op(&format!("k{i}"))).collect(), vec![]);
        assert!(matches!(txn(&many, 128), Err(EtcdError::TooManyOps)));
        assert!(txn(
            &txn_of((0..128).map(|i| put_op(&format!("k{i}"))).collect(), vec![]),
            128
        )
        .is_ok());
        let nested_too_big = txn_of(
            vec![put_op("a"), nested(vec![put_op("b"), put_op("c")], vec![])],
            vec![],
        );
        assert!(matches!(
            txn(&nested_too_big, 3),
            Err(EtcdError::TooManyOps)
        ));
        assert!(
            txn(&nested_too_big, 4).is_ok(),
            "nested gets what the parent leaves"
        );
        assert!(matches!(
            txn(&txn_of(vec![put_op("")], vec![]), 128),
            Err(EtcdError::EmptyKey)
        ));
        let empty_op = txn_of(vec![RequestOp { request: None }], vec![]);
        assert!(matches!(txn(&empty_op, 128), Err(EtcdError::KeyNotFound)));
        let ignore = PutRequest {
            key: Bytes::from("k"),
            value: Bytes::from("v"),
            ignore_value: true,
            ..Default::default()
        };
        assert!(matches!(put(&ignore), Err(EtcdError::ValueProvided)));
    }
}
