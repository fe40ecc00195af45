//! What each request needs of its caller's permissions, as etcd's
//! `authApplierV3` and `authMaintenanceServer` ask: a Range reads its range,
//! a Put writes its key (and reads it for prev_kv), a DeleteRange writes its
//! range (and reads it for prev_kv), a Txn reads every compare's range and
//! needs what each of its operations, in both branches, needs.

use oxetcd_proto::etcdserverpb::request_op::Request as Op;
use oxetcd_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest};

use super::perms::Access;

/// One thing a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need<'a> {
    /// The root role: membership, maintenance and auth administration.
    Admin,
    /// Root, or the caller is this user (etcd lets a user read itself).
    AdminOrUser(&'a str),
    /// Root, or the caller holds this role (and may read it).
    AdminOrRole(&'a str),
    /// `access` on `[key, range_end)` (etcd's notation).
    Range {
        key: &'a [u8],
        range_end: &'a [u8],
        access: Access,
    },
}

fn on<'a>(key: &'a [u8], range_end: &'a [u8], access: Access) -> Need<'a> {
    Need::Range {
        key,
        range_end,
        access,
    }
}

pub fn range(r: &RangeRequest) -> Vec<Need<'_>> {
    vec![on(&r.key, &r.range_end, Access::Read)]
}

pub fn put(p: &PutRequest) -> Vec<Need<'_>> {
    let mut needs = vec![on(&p.key, b"", Access::Write)];
    if p.prev_kv {
        needs.push(on(&p.key, b"", Access::Read));
    }
    needs
}

pub fn delete_range(d: &DeleteRangeRequest) -> Vec<Need<'_>> {
    let mut needs = vec![on(&d.key, &d.range_end, Access::Write)];
    if d.prev_kv {
        needs.push(on(&d.key, &d.range_end, Access::Read));
    }
    needs
}

pub fn txn(t: &TxnRequest) -> Vec<Need<'_>> {
    let mut needs = Vec::new();
    add_txn(t, &mut needs);
    needs
}

fn add_txn<'a>(t: &'a TxnRequest, needs: &mut Vec<Need<'a>>) {
    for c in &t.compare {
        needs.push(on(&c.key, &c.range_end, Access::Read));
    }
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(Op::RequestRange(r)) => needs.extend(range(r)),
            Some(Op::RequestPut(p)) => needs.extend(put(p)),
            Some(Op::RequestDeleteRange(d)) => needs.extend(delete_range(d)),
            Some(Op::RequestTxn(inner)) => add_txn(inner, needs),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxetcd_proto::etcdserverpb::{Compare, RequestOp};

    #[test]
    fn a_txn_needs_its_compares_and_both_branches_nested_ones_included() {
        let t = TxnRequest {
            compare: vec![Compare {
                key: "c".into(),
                ..Default::default()
            }],
            success: vec![RequestOp {
                request: Some(Op::RequestPut(PutRequest {
                    key: "p".into(),
                    prev_kv: true,
                    ..Default::default()
                })),
            }],
            failure: vec![RequestOp {
                request: Some(Op::RequestTxn(TxnRequest {
                    success: vec![RequestOp {
                        request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                            key: "d".into(),
                            range_end: "e".into(),
                            ..Default::default()
                        })),
                    }],
                    ..Default::default()
                })),
            }],
        };
        assert_eq!(
            txn(&t),
            vec![
                on(b"c", b"", Access::Read),
                on(b"p", b"", Access::Write),
                on(b"p", b"", Access::Read),
                on(b"d", b"e", Access::Write),
            ]
        );
    }
}
