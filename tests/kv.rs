//! The KV and Maintenance APIs of the real `oxetcd` binary over gRPC, checked
//! against what etcd 3.4 answers to the same requests.
//!
//! Every test starts its own server (see `support`). Revisions are always
//! taken relative to the store's revision before the test's first write, so
//! the tests do not depend on where a fresh store starts (except the one test
//! that checks exactly that).

mod support;

use oxetcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxetcd_proto::etcdserverpb::kv_client::KvClient;
use oxetcd_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxetcd_proto::etcdserverpb::request_op::Request as Op;
use oxetcd_proto::etcdserverpb::response_op::Response as OpResp;
use oxetcd_proto::etcdserverpb::{
    CompactionRequest, Compare, DefragmentRequest, DeleteRangeRequest, DeleteRangeResponse,
    HashKvRequest, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader,
    ResponseOp, StatusRequest, TxnRequest, TxnResponse,
};
use support::*;
use tonic::transport::Channel;
use tonic::Code;

type Kv = KvClient<Channel>;

// ---------------------------------------------------------------------------
// Helpers of this file.

fn op_put(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(put_req(key, value))),
    }
}

fn op_put_req(req: PutRequest) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(req)),
    }
}

fn op_range(req: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestRange(req)),
    }
}

fn op_delete(req: DeleteRangeRequest) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestDeleteRange(req)),
    }
}

fn op_txn(txn: TxnRequest) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestTxn(txn)),
    }
}

fn del_req(key: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: b(key),
        ..Default::default()
    }
}

fn del_prefix_req(prefix: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: b(prefix),
        range_end: prefix_end(prefix),
        ..Default::default()
    }
}

fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare,
        success,
        failure,
    }
}

fn cmp(key: &str, target: CompareTarget, result: CompareResult, operand: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: b(key),
        range_end: Default::default(),
        target_union: Some(operand),
    }
}

fn cmp_version(key: &str, result: CompareResult, version: i64) -> Compare {
    cmp(
        key,
        CompareTarget::Version,
        result,
        TargetUnion::Version(version),
    )
}

fn cmp_value(key: &str, result: CompareResult, value: &str) -> Compare {
    cmp(
        key,
        CompareTarget::Value,
        result,
        TargetUnion::Value(b(value)),
    )
}

async fn run_txn(kv: &mut Kv, t: TxnRequest) -> TxnResponse {
    kv.txn(t.clone())
        .await
        .unwrap_or_else(|e| panic!("txn {t:?}: {e}"))
        .into_inner()
}

fn as_range(op: &ResponseOp) -> &RangeResponse {
    match &op.response {
        Some(OpResp::ResponseRange(r)) => r,
        other => panic!("expected a range response, got {other:?}"),
    }
}

fn as_put(op: &ResponseOp) -> &PutResponse {
    match &op.response {
        Some(OpResp::ResponsePut(r)) => r,
        other => panic!("expected a put response, got {other:?}"),
    }
}

fn as_delete(op: &ResponseOp) -> &DeleteRangeResponse {
    match &op.response {
        Some(OpResp::ResponseDeleteRange(r)) => r,
        other => panic!("expected a delete response, got {other:?}"),
    }
}

fn as_txn(op: &ResponseOp) -> &TxnResponse {
    match &op.response {
        Some(OpResp::ResponseTxn(r)) => r,
        other => panic!("expected a txn response, got {other:?}"),
    }
}

async fn compact(kv: &mut Kv, revision: i64) -> Result<ResponseHeader, tonic::Status> {
    kv.compact(CompactionRequest {
        revision,
        physical: false,
    })
    .await
    .map(|r| r.into_inner().header.unwrap())
}

/// Checks the store still is exactly `before` (same revision, same pairs).
async fn assert_unchanged(kv: &mut Kv, before_rev: i64, before: &[oxetcd_proto::mvccpb::KeyValue]) {
    assert_eq!(
        current_rev(kv).await,
        before_rev,
        "a refused request created a revision"
    );
    assert_eq!(all(kv).await, before, "a refused request changed the store");
}

// ---------------------------------------------------------------------------
// Range

#[tokio::test]
async fn fresh_store_is_at_revision_1_and_first_write_gets_revision_2() {
    // etcd's MVCC store starts at revision 1: an empty cluster reports
    // revision 1 and the first write is revision 2.
    let server = Server::start();
    let mut kv = server.kv().await;
    assert_eq!(current_rev(&mut kv).await, 1);
    let resp = put(&mut kv, "first", "v").await;
    assert_eq!(rev(&resp.header), 2);
    let got = get(&mut kv, "first").await.unwrap();
    assert_eq!(
        (got.create_revision, got.mod_revision, got.version),
        (2, 2, 1)
    );
}

#[tokio::test]
async fn range_single_key_returns_only_that_key() {
    let server = Server::start();
    let mut kv = server.kv().await;
    for k in ["fo", "foo", "foo1", "fop"] {
        put(&mut kv, k, &format!("value of {k}")).await;
    }
    let resp = range(&mut kv, get_req("foo")).await;
    assert_eq!(keys(&resp.kvs), ["foo"]);
    assert_eq!(value_str(&resp.kvs[0]), "value of foo");
    assert_eq!((resp.count, resp.more), (1, false));

    let missing = range(&mut kv, get_req("fooo")).await;
    assert!(missing.kvs.is_empty());
    assert_eq!((missing.count, missing.more), (0, false));
}

#[tokio::test]
async fn range_prefix_uses_prefix_plus_one_as_range_end() {
    let server = Server::start();
    let mut kv = server.kv().await;
    for k in ["a", "ab", "ab/1", "abc", "ac", "b"] {
        put(&mut kv, k, "v").await;
    }
    let resp = range(&mut kv, prefix_req("ab")).await;
    assert_eq!(keys(&resp.kvs), ["ab", "ab/1", "abc"]);
    assert_eq!(resp.count, 3);
    // An explicit [key, range_end) is half-open.
    let resp = range(
        &mut kv,
        RangeRequest {
            key: b("ab"),
            range_end: b("ac"),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(keys(&resp.kvs), ["ab", "ab/1", "abc"]);
    let resp = range(
        &mut kv,
        RangeRequest {
            key: b("a"),
            range_end: b("abc"),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(keys(&resp.kvs), ["a", "ab", "ab/1"]);
}

#[tokio::test]
async fn range_from_key_with_nul_range_end_returns_every_key_from_it() {
    let server = Server::start();
    let mut kv = server.kv().await;
    for k in ["a", "b", "ba", "c", "\u{7f}"] {
        put(&mut kv, k, "v").await;
    }
    let resp = range(&mut kv, from_key_req("b")).await;
    assert_eq!(keys(&resp.kvs), ["b", "ba", "c", "\u{7f}"]);
    assert_eq!(resp.count, 4);
}

#[tokio::test]
async fn range_all_keys_with_nul_key_and_nul_range_end() {
    let server = Server::start();
    let mut kv = server.kv().await;
    for k in ["\u{1}", "a", "zz", "b/c"] {
        put(&mut kv, k, "v").await;
    }
    let resp = range(&mut kv, all_req()).await;
    assert_eq!(keys(&resp.kvs), ["\u{1}", "a", "b/c", "zz"]);
    assert_eq!(resp.count, 4);
}

#[tokio::test]
async fn range_limit_sets_more_and_count_ignores_the_limit() {
    let server = Server::start();
    let mut kv = server.kv().await;
    for k in ["l/1", "l/2", "l/3", "l/4", "l/5"] {
        put(&mut kv, k, "v").await;
    }
    let limited = |limit: i64| RangeRequest {
        limit,
        ..prefix_req("l/")
    };
    let resp = range(&mut kv, limited(2)).await;
    assert_eq!(keys(&resp.kvs), ["l/1", "l/2"]);
    assert_eq!((resp.count, resp.more), (5, true));

    let resp = range(&mut kv, limited(4)).await;
    assert_eq!(keys(&resp.kvs).len(), 4);
    assert_eq!((resp.count, resp.more), (5, true));

    for exact_or_more in [5, 6, 100] {
        let resp = range(&mut kv, limited(exact_or_more)).await;
        assert_eq!(keys(&resp.kvs).len(), 5);
        assert_eq!((resp.count, resp.more), (5, false), "limit {exact_or_more}");
    }
    // limit 0 means no limit.
    let resp = range(&mut kv, limited(0)).await;
    assert_eq!((resp.kvs.len(), resp.count, resp.more), (5, 5, false));

    // The limit applies after sorting.
    let resp = range(
        &mut kv,
        RangeRequest {
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Key as i32,
            ..limited(2)
        },
    )
    .await;
    assert_eq!(keys(&resp.kvs), ["l/5", "l/4"]);
    assert_eq!((resp.count, resp.more), (5, true));
}

#[tokio::test]
async fn range_at_a_past_revision_sees_the_store_as_it_was() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let r1 = rev(&put(&mut kv, "k", "v1").await.header);
    let r2 = rev(&put(&mut kv, "k", "v2").await.header);
    put(&mut kv, "other", "x").await;
    let r3 = rev(&delete(&mut kv, del_req("k")).await.header);
    let r4 = rev(&put(&mut kv, "k", "v3").await.header);

    let at = |revision: i64| RangeRequest {
        revision,
        ..get_req("k")
    };
    let kv1 = range(&mut kv, at(r1)).await.kvs;
    assert_eq!(kv1.len(), 1);
    assert_eq!(
        (
            value_str(&kv1[0]),
            kv1[0].version,
            kv1[0].create_revision,
            kv1[0].mod_revision
        ),
        ("v1".into(), 1, r1, r1)
    );
    let kv2 = range(&mut kv, at(r2)).await.kvs;
    assert_eq!(
        (
            value_str(&kv2[0]),
            kv2[0].version,
            kv2[0].create_revision,
            kv2[0].mod_revision
        ),
        ("v2".into(), 2, r1, r2)
    );
    let gone = range(&mut kv, at(r3)).await;
    assert!(gone.kvs.is_empty());
    assert_eq!(gone.count, 0);
    let kv4 = range(&mut kv, at(r4)).await.kvs;
    assert_eq!(
        (value_str(&kv4[0]), kv4[0].version, kv4[0].create_revision),
        ("v3".into(), 1, r4)
    );
    // Revision 0 is the latest; the current revision itself is readable.
    assert_eq!(range(&mut kv, at(0)).await.kvs, kv4);
    let now = current_rev(&mut kv).await;
    assert_eq!(range(&mut kv, at(now)).await.kvs, kv4);
    // A past read of a range sees the keys of that time.
    let past_all = range(
        &mut kv,
        RangeRequest {
            revision: r1,
            ..all_req()
        },
    )
    .await;
    assert_eq!(keys(&past_all.kvs), ["k"]);
}

#[tokio::test]
async fn range_at_a_past_revision_reports_the_current_revision_in_its_header() {
    // etcd's header is the store's revision when the read was served, not the
    // revision read at (mvcc rangeKeys returns Rev: curRev).
    let server = Server::start();
    let mut kv = server.kv().await;
    let r1 = rev(&put(&mut kv, "k", "v1").await.header);
    let now = rev(&put(&mut kv, "k", "v2").await.header);
    let resp = range(
        &mut kv,
        RangeRequest {
            revision: r1,
            ..get_req("k")
        },
    )
    .await;
    assert_eq!(value_str(&resp.kvs[0]), "v1");
    assert_eq!(rev(&resp.header), now);
}

#[tokio::test]
async fn range_at_a_future_revision_is_out_of_range() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let now = rev(&put(&mut kv, "k", "v").await.header);
    for future in [now + 1, now + 1000] {
        let result = kv
            .range(RangeRequest {
                revision: future,
                ..get_req("k")
            })
            .await;
        assert_status(result, Code::OutOfRange, ERR_FUTURE_REV);
    }
}

#[tokio::test]
async fn range_at_a_compacted_revision_is_out_of_range() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let r1 = rev(&put(&mut kv, "k", "v1").await.header);
    let r2 = rev(&put(&mut kv, "k", "v2").await.header);
    compact(&mut kv, r2).await.unwrap();
    let result = kv
        .range(RangeRequest {
            revision: r1,
            ..get_req("k")
        })
        .await;
    assert_status(result, Code::OutOfRange, ERR_COMPACTED);
    // The compaction revision itself stays readable.
    let at_r2 = range(
        &mut kv,
        RangeRequest {
            revision: r2,
            ..get_req("k")
        },
    )
    .await;
    assert_eq!(value_str(&at_r2.kvs[0]), "v2");
}

/// Keys under `s/` whose every sort target orders them differently:
///
/// | key | value | version | create | mod |
/// |-----|-------|---------|--------|-----|
/// | s/a | m     | 3       | +3     | +10 |
/// | s/b | z     | 2       | +1     | +8  |
/// | s/c | q     | 1       | +4     | +4  |
/// | s/d | b     | 4       | +2     | +9  |
///
/// Returns the revision before the first put.
async fn sort_fixture(kv: &mut Kv) -> i64 {
    let base = current_rev(kv).await;
    let writes = [
        ("s/b", "b1"),
        ("s/d", "d1"),
        ("s/a", "a1"),
        ("s/c", "q"),
        ("s/d", "d2"),
        ("s/a", "a2"),
        ("s/d", "d3"),
        ("s/b", "z"),
        ("s/d", "b"),
        ("s/a", "m"),
    ];
    for (i, (k, v)) in writes.into_iter().enumerate() {
        let r = rev(&put(kv, k, v).await.header);
        assert_eq!(r, base + 1 + i as i64);
    }
    base
}

#[tokio::test]
async fn range_sorts_by_every_target_in_both_orders() {
    let server = Server::start();
    let mut kv = server.kv().await;
    sort_fixture(&mut kv).await;
    let ascending = [
        (SortTarget::Key, ["s/a", "s/b", "s/c", "s/d"]),
        (SortTarget::Version, ["s/c", "s/b", "s/a", "s/d"]),
        (SortTarget::Create, ["s/b", "s/d", "s/a", "s/c"]),
        (SortTarget::Mod, ["s/c", "s/b", "s/d", "s/a"]),
        (SortTarget::Value, ["s/d", "s/a", "s/c", "s/b"]),
    ];
    for (target, want) in ascending {
        let req = |order: SortOrder| RangeRequest {
            sort_order: order as i32,
            sort_target: target as i32,
            ..prefix_req("s/")
        };
        let asc = range(&mut kv, req(SortOrder::Ascend)).await;
        assert_eq!(keys(&asc.kvs), want, "{target:?} ascending");
        let desc = range(&mut kv, req(SortOrder::Descend)).await;
        let mut reversed = want.to_vec();
        reversed.reverse();
        assert_eq!(keys(&desc.kvs), reversed, "{target:?} descending");
        // Sorted with a limit: the first keys of the sorted order.
        let limited = range(
            &mut kv,
            RangeRequest {
                limit: 2,
                ..req(SortOrder::Descend)
            },
        )
        .await;
        assert_eq!(
            keys(&limited.kvs),
            reversed[..2],
            "{target:?} descending, limit 2"
        );
        assert_eq!((limited.count, limited.more), (4, true));
    }
}

#[tokio::test]
async fn range_sorts_ascending_by_default_when_the_target_is_not_key() {
    let server = Server::start();
    let mut kv = server.kv().await;
    sort_fixture(&mut kv).await;
    let none = |target: SortTarget| RangeRequest {
        sort_order: SortOrder::None as i32,
        sort_target: target as i32,
        ..prefix_req("s/")
    };
    assert_eq!(
        keys(&range(&mut kv, none(SortTarget::Key)).await.kvs),
        ["s/a", "s/b", "s/c", "s/d"]
    );
    assert_eq!(
        keys(&range(&mut kv, none(SortTarget::Version)).await.kvs),
        ["s/c", "s/b", "s/a", "s/d"]
    );
    assert_eq!(
        keys(&range(&mut kv, none(SortTarget::Create)).await.kvs),
        ["s/b", "s/d", "s/a", "s/c"]
    );
    assert_eq!(
        keys(&range(&mut kv, none(SortTarget::Mod)).await.kvs),
        ["s/c", "s/b", "s/d", "s/a"]
    );
    assert_eq!(
        keys(&range(&mut kv, none(SortTarget::Value)).await.kvs),
        ["s/d", "s/a", "s/c", "s/b"]
    );
}

#[tokio::test]
async fn range_serializable_returns_the_same_data() {
    let server = Server::start();
    let mut kv = server.kv().await;
    sort_fixture(&mut kv).await;
    let linearizable = range(&mut kv, prefix_req("s/")).await;
    let serializable = range(
        &mut kv,
        RangeRequest {
            serializable: true,
            ..prefix_req("s/")
        },
    )
    .await;
    assert_eq!(serializable.kvs, linearizable.kvs);
    assert_eq!(serializable.count, 4);
    assert_eq!(rev(&serializable.header), rev(&linearizable.header));
}

#[tokio::test]
async fn range_keys_only_returns_keys_and_revisions_without_values() {
    let server = Server::start();
    let mut kv = server.kv().await;
    sort_fixture(&mut kv).await;
    let full = range(&mut kv, prefix_req("s/")).await;
    let resp = range(
        &mut kv,
        RangeRequest {
            keys_only: true,
            ..prefix_req("s/")
        },
    )
    .await;
    assert_eq!(keys(&resp.kvs), ["s/a", "s/b", "s/c", "s/d"]);
    assert_eq!(resp.count, 4);
    for (bare, whole) in resp.kvs.iter().zip(&full.kvs) {
        assert!(
            bare.value.is_empty(),
            "keys_only returned a value for {}",
            key_str(bare)
        );
        assert!(!whole.value.is_empty());
        assert_eq!(
            (
                bare.create_revision,
                bare.mod_revision,
                bare.version,
                bare.lease
            ),
            (
                whole.create_revision,
                whole.mod_revision,
                whole.version,
                whole.lease
            )
        );
    }
}

#[tokio::test]
async fn range_count_only_returns_the_count_without_key_values() {
    let server = Server::start();
    let mut kv = server.kv().await;
    sort_fixture(&mut kv).await;
    let resp = range(
        &mut kv,
        RangeRequest {
            count_only: true,
            ..prefix_req("s/")
        },
    )
    .await;
    assert!(resp.kvs.is_empty());
    assert_eq!((resp.count, resp.more), (4, false));
    let resp = range(
        &mut kv,
        RangeRequest {
            count_only: true,
            limit: 1,
            ..prefix_req("s/")
        },
    )
    .await;
    assert!(resp.kvs.is_empty());
    assert_eq!(resp.count, 4);
    let resp = range(
        &mut kv,
        RangeRequest {
            count_only: true,
            ..get_req("s/missing")
        },
    )
    .await;
    assert_eq!((resp.kvs.len(), resp.count), (0, 0));
}

#[tokio::test]
async fn range_mod_and_create_revision_filters_combine_with_limit() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let base = sort_fixture(&mut kv).await;
    let filtered = |f: fn(&mut RangeRequest, i64), limit: i64| {
        let mut req = RangeRequest {
            limit,
            ..prefix_req("s/")
        };
        f(&mut req, base);
        req
    };
    // (filter, limit, keys, more). count is always 4: etcd counts the range
    // before it applies the revision filters.
    type Case = (
        fn(&mut RangeRequest, i64),
        i64,
        &'static [&'static str],
        bool,
    );
    let cases: [Case; 10] = [
        (
            |r, b| r.min_mod_revision = b + 8,
            0,
            &["s/a", "s/b", "s/d"],
            false,
        ),
        (|r, b| r.min_mod_revision = b + 8, 2, &["s/a", "s/b"], true),
        (
            |r, b| r.min_mod_revision = b + 8,
            3,
            &["s/a", "s/b", "s/d"],
            false,
        ),
        (|r, b| r.max_mod_revision = b + 8, 0, &["s/b", "s/c"], false),
        (
            |r, b| r.min_create_revision = b + 2,
            0,
            &["s/a", "s/c", "s/d"],
            false,
        ),
        (|r, b| r.max_create_revision = b + 3, 1, &["s/a"], true),
        (
            |r, b| r.max_create_revision = b + 3,
            0,
            &["s/a", "s/b", "s/d"],
            false,
        ),
        (
            |r, b| {
                r.min_create_revision = b + 2;
                r.max_mod_revision = b + 9;
            },
            1,
            &["s/c"],
            true,
        ),
        (
            |r, b| {
                r.min_create_revision = b + 2;
                r.max_mod_revision = b + 9;
            },
            2,
            &["s/c", "s/d"],
            false,
        ),
        (
            |r, b| {
                r.min_mod_revision = b + 9;
                r.max_mod_revision = b + 9;
                r.min_create_revision = b + 2;
                r.max_create_revision = b + 2;
            },
            0,
            &["s/d"],
            false,
        ),
    ];
    for (i, (f, limit, want, more)) in cases.into_iter().enumerate() {
        let req = filtered(f, limit);
        let resp = range(&mut kv, req.clone()).await;
        assert_eq!(keys(&resp.kvs), want, "case {i}: {req:?}");
        assert_eq!((resp.more, resp.count), (more, 4), "case {i}: {req:?}");
    }
}

#[tokio::test]
async fn range_with_an_empty_key_is_invalid() {
    let server = Server::start();
    let mut kv = server.kv().await;
    put(&mut kv, "k", "v").await;
    assert_status(
        kv.range(RangeRequest::default()).await,
        Code::InvalidArgument,
        ERR_EMPTY_KEY,
    );
    let with_end = RangeRequest {
        range_end: b("z"),
        ..Default::default()
    };
    assert_status(
        kv.range(with_end).await,
        Code::InvalidArgument,
        ERR_EMPTY_KEY,
    );
}

// ---------------------------------------------------------------------------
// Put

#[tokio::test]
async fn put_revisions_and_version_across_put_put_delete_put() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let base = current_rev(&mut kv).await;

    assert_eq!(rev(&put(&mut kv, "k", "a").await.header), base + 1);
    let kv1 = get(&mut kv, "k").await.unwrap();
    assert_eq!(
        (kv1.create_revision, kv1.mod_revision, kv1.version),
        (base + 1, base + 1, 1)
    );

    assert_eq!(rev(&put(&mut kv, "k", "b").await.header), base + 2);
    let kv2 = get(&mut kv, "k").await.unwrap();
    assert_eq!(
        (kv2.create_revision, kv2.mod_revision, kv2.version),
        (base + 1, base + 2, 2)
    );
    assert_eq!(value_str(&kv2), "b");

    let del = delete(&mut kv, del_req("k")).await;
    assert_eq!((rev(&del.header), del.deleted), (base + 3, 1));
    assert_eq!(get(&mut kv, "k").await, None);

    // A key put again after a delete is a new key: version 1, new create_revision.
    assert_eq!(rev(&put(&mut kv, "k", "c").await.header), base + 4);
    let kv3 = get(&mut kv, "k").await.unwrap();
    assert_eq!(
        (kv3.create_revision, kv3.mod_revision, kv3.version),
        (base + 4, base + 4, 1)
    );
    assert_eq!(value_str(&kv3), "c");
    assert_eq!(current_rev(&mut kv).await, base + 4);
}

#[tokio::test]
async fn put_returns_the_previous_pair_only_with_prev_kv() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let first = kv
        .put(PutRequest {
            prev_kv: true,
            ..put_req("k", "v1")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.prev_kv, None, "a new key has no previous pair");
    let before = get(&mut kv, "k").await.unwrap();

    let second = kv
        .put(PutRequest {
            prev_kv: true,
            ..put_req("k", "v2")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.prev_kv.as_ref(), Some(&before));
    assert_eq!(value_str(second.prev_kv.as_ref().unwrap()), "v1");

    let third = put(&mut kv, "k", "v3").await;
    assert_eq!(third.prev_kv, None, "prev_kv not asked for");
}

#[tokio::test]
async fn put_with_ignore_value_keeps_the_value() {
    let server = Server::start();
    let mut kv = server.kv().await;
    put(&mut kv, "k", "kept").await;
    let resp = kv
        .put(PutRequest {
            key: b("k"),
            ignore_value: true,
            prev_kv: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(value_str(resp.prev_kv.as_ref().unwrap()), "kept");
    let now = get(&mut kv, "k").await.unwrap();
    assert_eq!(value_str(&now), "kept");
    assert_eq!((now.version, now.mod_revision), (2, rev(&resp.header)));
}

#[tokio::test]
async fn put_with_ignore_value_is_refused_on_a_missing_key_or_with_a_value() {
    let server = Server::start();
    let mut kv = server.kv().await;
    put(&mut kv, "k", "v").await;
    let (before_rev, before) = (current_rev(&mut kv).await, all(&mut kv).await);

    let missing = PutRequest {
        key: b("missing"),
        ignore_value: true,
        ..Default::default()
    };
    assert_status(
        kv.put(missing).await,
        Code::InvalidArgument,
        ERR_KEY_NOT_FOUND,
    );
    let with_value = PutRequest {
        ignore_value: true,
        ..put_req("k", "new")
    };
    assert_status(
        kv.put(with_value).await,
        Code::InvalidArgument,
        ERR_VALUE_PROVIDED,
    );
    assert_unchanged(&mut kv, before_rev, &before).await;
}

#[tokio::test]
async fn put_with_ignore_lease_keeps_the_lease_and_refuses_a_lease() {
    let server = Server::start();
    let mut kv = server.kv().await;
    put(&mut kv, "k", "v1").await;
    let resp = kv
        .put(PutRequest {
            ignore_lease: true,
            ..put_req("k", "v2")
        })
        .await
        .unwrap()
        .into_inner();
    let now = get(&mut kv, "k").await.unwrap();
    assert_eq!(
        (value_str(&now), now.lease, now.version, now.mod_revision),
        ("v2".into(), 0, 2, rev(&resp.header))
    );

    let (before_rev, before) = (current_rev(&mut kv).await, all(&mut kv).await);
    let with_lease = PutRequest {
        ignore_lease: true,
        lease: 7,
        ..put_req("k", "v3")
    };
    assert_status(
        kv.put(with_lease).await,
        Code::InvalidArgument,
        ERR_LEASE_PROVIDED,
    );
    let missing = PutRequest {
        ignore_lease: true,
        ..put_req("missing", "v")
    };
    assert_status(
        kv.put(missing).await,
        Code::InvalidArgument,
        ERR_KEY_NOT_FOUND,
    );
    assert_unchanged(&mut kv, before_rev, &before).await;
}

#[tokio::test]
async fn put_with_an_unknown_lease_is_not_found() {
    let server = Server::start();
    let mut kv = server.kv().await;
    put(&mut kv, "k", "v").await;
    let (before_rev, before) = (current_rev(&mut kv).await, all(&mut kv).await);
    let req = PutRequest {
        lease: 0x1234_5678,
        ..put_req("k", "leased")
    };
    assert_status(kv.put(req).await, Code::NotFound, ERR_LEASE_NOT_FOUND);
    let req = PutRequest {
        lease: 42,
        ..put_req("new", "leased")
    };
    assert_status(kv.put(req).await, Code::NotFound, ERR_LEASE_NOT_FOUND);
    assert_unchanged(&mut kv, before_rev, &before).await;
}

#[tokio::test]
async fn put_with_an_empty_key_is_invalid() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let before_rev = current_rev(&mut kv).await;
    assert_status(
        kv.put(put_req("", "v")).await,
        Code::InvalidArgument,
        ERR_EMPTY_KEY,
    );
    assert_unchanged(&mut kv, before_rev, &[]).await;
}

#[tokio::test]
async fn requests_larger_than_max_request_bytes_are_refused() {
    let server = Server::start_with(&["--max-request-bytes", "1024"]);
    let mut kv = server.kv().await;
    // Well under the limit: accepted.
    put(&mut kv, "small", &"s".repeat(500)).await;
    let (before_rev, before) = (current_rev(&mut kv).await, all(&mut kv).await);

    let big = "x".repeat(2000);
    assert_status(
        kv.put(put_req("big", &big)).await,
        Code::InvalidArgument,
        ERR_TOO_LARGE,
    );
    assert_status(
        kv.put(put_req("small", &big)).await,
        Code::InvalidArgument,
        ERR_TOO_LARGE,
    );
    // A txn whose ops are each small but together too large.
    let half = "y".repeat(600);
    let t = txn(
        vec![],
        vec![op_put("t1", &half), op_put("t2", &half)],
        vec![],
    );
    assert_status(kv.txn(t).await, Code::InvalidArgument, ERR_TOO_LARGE);
    assert_unchanged(&mut kv, before_rev, &before).await;
}

// ---------------------------------------------------------------------------
// DeleteRange

async fn delete_fixture(kv: &mut Kv) -> i64 {
    for k in ["c", "d/a", "d/ab", "d/b", "e"] {
        put(kv, k, &format!("value of {k}")).await;
    }
    current_rev(kv).await
}

#[tokio::test]
async fn delete_single_key_removes_only_that_key() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let base = delete_fixture(&mut kv).await;
    let resp = delete(&mut kv, del_req("d/a")).await;
    assert_eq!((resp.deleted, rev(&resp.header)), (1, base + 1));
    assert!(resp.prev_kvs.is_empty(), "prev_kv not asked for");
    assert_eq!(keys(&all(&mut kv).await), ["c", "d/ab", "d/b", "e"]);
    // The history keeps it.
    let past = range(
        &mut kv,
        RangeRequest {
            revision: base,
            ..get_req("d/a")
        },
    )
    .await;
    assert_eq!(keys(&past.kvs), ["d/a"]);
}

#[tokio::test]
async fn delete_prefix_removes_every_key_under_it_at_one_revision() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let base = delete_fixture(&mut kv).await;
    let resp = delete(&mut kv, del_prefix_req("d/a")).await;
    assert_eq!((resp.deleted, rev(&resp.header)), (2, base + 1));
    assert_eq!(keys(&all(&mut kv).await), ["c", "d/b", "e"]);
    let resp = delete(&mut kv, del_prefix_req("d/")).await;
    assert_eq!((resp.deleted, rev(&resp.header)), (1, base + 2));
    assert_eq!(keys(&all(&mut kv).await), ["c", "e"]);
}

#[tokio::test]
async fn delete_from_key_removes_every_key_from_it() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let base = delete_fixture(&mut kv).await;
    let resp = delete(
        &mut kv,
        DeleteRangeRequest {
            key: b("d/ab"),
            range_end: b("\0"),
            ..Default::default()
        },
    )
    .await;
    assert_eq!((resp.deleted, rev(&resp.header)), (3, base + 1));
    assert_eq!(keys(&all(&mut kv).await), ["c", "d/a"]);
    // Everything.
    let resp = delete(
        &mut kv,
        DeleteRangeRequest {
            key: b("\0"),
            range_end: b("\0"),
            ..Default::default()
        },
    )
    .await;
    assert_eq!((resp.deleted, rev(&resp.header)), (2, base + 2));
    assert!(all(&mut kv).await.is_empty());
}

#[tokio::test]
async fn delete_with_prev_kv_returns_the_deleted_pairs() {
    let server = Server::start();
    let mut kv = server.kv().await;
    delete_fixture(&mut kv).await;
    let before = range(&mut kv, prefix_req("d/")).await.kvs;
    let resp = delete(
        &mut kv,
        DeleteRangeRequest {
            prev_kv: true,
            ..del_prefix_req("d/")
        },
    )
    .await;
    assert_eq!(resp.deleted, 3);
    assert_eq!(resp.prev_kvs, before);
    assert_eq!(value_str(&resp.prev_kvs[0]), "value of d/a");
}

#[tokio::test]
async fn delete_of_nothing_creates_no_revision() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let base = delete_fixture(&mut kv).await;
    let before = all(&mut kv).await;
    for req in [
        del_req("missing"),
        del_prefix_req("zzz"),
        DeleteRangeRequest {
            prev_kv: true,
            ..del_req("d/")
        },
    ] {
        let resp = delete(&mut kv, req).await;
        assert_eq!((resp.deleted, rev(&resp.header)), (0, base));
        assert!(resp.prev_kvs.is_empty());
    }
    assert_unchanged(&mut kv, base, &before).await;
    assert_eq!(rev(&put(&mut kv, "next", "v").await.header), base + 1);
}

#[tokio::test]
async fn delete_with_an_empty_key_is_invalid() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let base = delete_fixture(&mut kv).await;
    let before = all(&mut kv).await;
    let req = DeleteRangeRequest {
        range_end: b("\0"),
        ..Default::default()
    };
    assert_status(
        kv.delete_range(req).await,
        Code::InvalidArgument,
        ERR_EMPTY_KEY,
    );
    assert_unchanged(&mut kv, base, &before).await;
}

// ---------------------------------------------------------------------------
// Txn

#[tokio::test]
async fn txn_compares_every_target_with_every_result() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let create = rev(&put(&mut kv, "c/k", "m").await.header);
    let modified = rev(&put(&mut kv, "c/k", "m").await.header);
    put(&mut kv, "c/other", "x").await;
    // c/k: version 2, create_revision `create`, mod_revision `modified`, value "m", lease 0.
    use CompareResult::{Equal, Greater, Less, NotEqual};
    use CompareTarget::{Create, Lease, Mod, Value, Version};
    let int_cases = |target: CompareTarget, actual: i64, operand: fn(i64) -> TargetUnion| {
        vec![
            (target, Equal, operand(actual), true),
            (target, Equal, operand(actual - 1), false),
            (target, Greater, operand(actual - 1), true),
            (target, Greater, operand(actual), false),
            (target, Less, operand(actual + 1), true),
            (target, Less, operand(actual), false),
            (target, NotEqual, operand(actual + 5), true),
            (target, NotEqual, operand(actual), false),
        ]
    };
    let mut cases = Vec::new();
    cases.extend(int_cases(Version, 2, TargetUnion::Version));
    cases.extend(int_cases(Create, create, TargetUnion::CreateRevision));
    cases.extend(int_cases(Mod, modified, TargetUnion::ModRevision));
    cases.extend(int_cases(Lease, 0, TargetUnion::Lease));
    let value = |s: &str| TargetUnion::Value(b(s));
    cases.extend([
        (Value, Equal, value("m"), true),
        (Value, Equal, value("n"), false),
        (Value, Equal, value("m\0"), false),
        (Value, Greater, value("l"), true),
        (Value, Greater, value("ZZZ"), true),
        (Value, Greater, value("m"), false),
        (Value, Greater, value("ma"), false),
        (Value, Less, value("n"), true),
        (Value, Less, value("ma"), true),
        (Value, Less, value("m"), false),
        (Value, NotEqual, value("x"), true),
        (Value, NotEqual, value("m"), false),
    ]);

    let base = current_rev(&mut kv).await;
    for (target, result, operand, expected) in cases {
        let c = cmp("c/k", target, result, operand.clone());
        let t = txn(
            vec![c],
            vec![op_range(get_req("c/k"))],
            vec![op_range(get_req("c/other"))],
        );
        let resp = run_txn(&mut kv, t).await;
        let what = format!("{target:?} {result:?} {operand:?}");
        assert_eq!(resp.succeeded, expected, "{what}");
        assert_eq!(resp.responses.len(), 1, "{what}");
        let read = as_range(&resp.responses[0]);
        assert_eq!(
            keys(&read.kvs),
            [if expected { "c/k" } else { "c/other" }],
            "{what}: wrong branch ran"
        );
        assert_eq!(
            rev(&resp.header),
            base,
            "{what}: a read-only txn created a revision"
        );
    }
}

#[tokio::test]
async fn txn_compare_with_range_end_must_hold_for_every_key_in_the_range() {
    let server = Server::start();
    let mut kv = server.kv().await;
    put(&mut kv, "r/a", "1").await;
    put(&mut kv, "r/b", "1").await;
    put(&mut kv, "r/b", "2").await;
    put(&mut kv, "rz", "outside").await;
    let over = |mut c: Compare, prefix: &str| {
        c.range_end = prefix_end(prefix);
        c
    };
    use CompareResult::{Equal, Greater, Less, NotEqual};
    let cases = [
        (over(cmp_version("r/", Greater, 0), "r/"), true),
        (over(cmp_version("r/", Equal, 1), "r/"), false), // r/b has version 2
        (over(cmp_version("r/", Less, 3), "r/"), true),
        (over(cmp_version("r/", NotEqual, 2), "r/"), false),
        (over(cmp_value("r/", Equal, "1"), "r/"), false), // r/b is "2"
        (over(cmp_value("r/", Greater, "0"), "r/"), true),
        (over(cmp_value("r/", NotEqual, "outside"), "r/"), true),
        // A range without keys compares like a missing key.
        (over(cmp_version("none/", Equal, 0), "none/"), true),
        (over(cmp_value("none/", Equal, ""), "none/"), false),
        // "\0" as range_end: every key from `key` on, here r/b and rz.
        (
            Compare {
                range_end: b("\0"),
                ..cmp_version("r/b", Greater, 0)
            },
            true,
        ),
        (
            Compare {
                range_end: b("\0"),
                ..cmp_value("r/b", Equal, "2")
            },
            false,
        ),
    ];
    for (c, expected) in cases {
        let resp = run_txn(&mut kv, txn(vec![c.clone()], vec![], vec![])).await;
        assert_eq!(resp.succeeded, expected, "{c:?}");
    }
}

#[tokio::test]
async fn txn_value_compare_on_a_missing_key_always_fails() {
    let server = Server::start();
    let mut kv = server.kv().await;
    put(&mut kv, "present", "").await;
    use CompareResult::{Equal, Greater, Less, NotEqual};
    use CompareTarget::{Create, Lease, Mod, Version};
    let missing_cases = [
        (cmp_value("missing", Equal, ""), false),
        (cmp_value("missing", NotEqual, "x"), false),
        (cmp_value("missing", Less, "z"), false),
        (cmp_value("missing", Greater, ""), false),
        // Other targets compare against a zero key-value.
        (cmp_version("missing", Equal, 0), true),
        (
            cmp("missing", Create, Equal, TargetUnion::CreateRevision(0)),
            true,
        ),
        (cmp("missing", Mod, Less, TargetUnion::ModRevision(1)), true),
        (cmp("missing", Lease, Equal, TargetUnion::Lease(0)), true),
        (
            cmp("missing", Version, Greater, TargetUnion::Version(0)),
            false,
        ),
        // An existing key with an empty value does equal "".
        (cmp_value("present", Equal, ""), true),
    ];
    for (c, expected) in missing_cases {
        let resp = run_txn(&mut kv, txn(vec![c.clone()], vec![], vec![])).await;
        assert_eq!(resp.succeeded, expected, "{c:?}");
    }
}

#[tokio::test]
async fn txn_runs_the_success_branch_when_every_compare_holds_and_failure_otherwise() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let base = rev(&put(&mut kv, "k", "v1").await.header);
    use CompareResult::Equal;
    let guarded = |compare: Vec<Compare>| {
        txn(
            compare,
            vec![op_put("k", "from-success")],
            vec![op_put("k", "from-failure"), op_range(get_req("k"))],
        )
    };

    // Both compares hold: success.
    let resp = run_txn(
        &mut kv,
        guarded(vec![
            cmp_value("k", Equal, "v1"),
            cmp_version("k", Equal, 1),
        ]),
    )
    .await;
    assert!(resp.succeeded);
    assert_eq!(resp.responses.len(), 1);
    assert_eq!(rev(&as_put(&resp.responses[0]).header), base + 1);
    assert_eq!(value_str(&get(&mut kv, "k").await.unwrap()), "from-success");

    // One compare fails: failure, with both of its ops.
    let resp = run_txn(
        &mut kv,
        guarded(vec![
            cmp_version("k", Equal, 2),
            cmp_value("k", Equal, "v1"),
        ]),
    )
    .await;
    assert!(!resp.succeeded);
    assert_eq!(rev(&resp.header), base + 2);
    assert_eq!(resp.responses.len(), 2);
    as_put(&resp.responses[0]);
    let read = as_range(&resp.responses[1]);
    assert_eq!(
        value_str(&read.kvs[0]),
        "from-failure",
        "a read in the txn sees the txn's own write"
    );
    assert_eq!(value_str(&get(&mut kv, "k").await.unwrap()), "from-failure");

    // No compare at all: success.
    let resp = run_txn(&mut kv, guarded(vec![])).await;
    assert!(resp.succeeded);
    assert_eq!(value_str(&get(&mut kv, "k").await.unwrap()), "from-success");
}

#[tokio::test]
async fn txn_runs_every_op_kind_and_answers_each() {
    let server = Server::start();
    let mut kv = server.kv().await;
    put(&mut kv, "o/del", "gone").await;
    put(&mut kv, "o/keep", "kept").await;
    let deleted_before = get(&mut kv, "o/del").await.unwrap();
    let base = current_rev(&mut kv).await;

    let t = txn(
        vec![cmp_value("o/keep", CompareResult::Equal, "kept")],
        vec![
            op_range(get_req("o/keep")),
            op_put_req(PutRequest {
                prev_kv: true,
                ..put_req("o/new", "n")
            }),
            op_delete(DeleteRangeRequest {
                prev_kv: true,
                ..del_req("o/del")
            }),
            op_range(prefix_req("o/")),
            op_txn(txn(
                vec![],
                vec![op_put("o/nested", "x"), op_range(prefix_req("o/"))],
                vec![],
            )),
        ],
        vec![],
    );
    let resp = run_txn(&mut kv, t).await;
    assert!(resp.succeeded);
    let t_rev = base + 1;
    assert_eq!(rev(&resp.header), t_rev);
    assert_eq!(resp.responses.len(), 5);

    let first_read = as_range(&resp.responses[0]);
    assert_eq!(keys(&first_read.kvs), ["o/keep"]);
    assert_eq!(value_str(&first_read.kvs[0]), "kept");

    let put_resp = as_put(&resp.responses[1]);
    assert_eq!(put_resp.prev_kv, None);
    assert_eq!(rev(&put_resp.header), t_rev);

    let del_resp = as_delete(&resp.responses[2]);
    assert_eq!(del_resp.deleted, 1);
    assert_eq!(del_resp.prev_kvs, [deleted_before]);
    assert_eq!(rev(&del_resp.header), t_rev);

    // Reads later in the txn see its earlier writes.
    let second_read = as_range(&resp.responses[3]);
    assert_eq!(keys(&second_read.kvs), ["o/keep", "o/new"]);
    assert_eq!(rev(&second_read.header), t_rev);

    let nested = as_txn(&resp.responses[4]);
    assert!(nested.succeeded);
    assert_eq!(nested.responses.len(), 2);
    assert_eq!(rev(&as_put(&nested.responses[0]).header), t_rev);
    assert_eq!(
        keys(&as_range(&nested.responses[1]).kvs),
        ["o/keep", "o/nested", "o/new"]
    );

    let now = all(&mut kv).await;
    assert_eq!(keys(&now), ["o/keep", "o/nested", "o/new"]);
    for written in ["o/nested", "o/new"] {
        let kv = now.iter().find(|kv| key_str(kv) == written).unwrap();
        assert_eq!(
            (kv.create_revision, kv.mod_revision, kv.version),
            (t_rev, t_rev, 1),
            "{written}"
        );
    }
}

#[tokio::test]
async fn txn_nested_txn_takes_its_own_branch() {
    let server = Server::start();
    let mut kv = server.kv().await;
    put(&mut kv, "n/k", "v").await;
    use CompareResult::Equal;
    let inner = |holds: bool| {
        txn(
            vec![cmp_version("n/k", Equal, if holds { 1 } else { 5 })],
            vec![op_put("n/inner", "then")],
            vec![op_put("n/inner", "else")],
        )
    };
    // Outer success, inner failure.
    let resp = run_txn(&mut kv, txn(vec![], vec![op_txn(inner(false))], vec![])).await;
    assert!(resp.succeeded);
    let nested = as_txn(&resp.responses[0]);
    assert!(!nested.succeeded);
    assert_eq!(nested.responses.len(), 1);
    assert_eq!(value_str(&get(&mut kv, "n/k").await.unwrap()), "v");
    assert_eq!(value_str(&get(&mut kv, "n/inner").await.unwrap()), "else");

    // Outer failure holding a nested txn whose compare holds.
    let outer = txn(
        vec![cmp_version("n/k", Equal, 99)],
        vec![op_put("n/wrong", "x")],
        vec![op_txn(inner(true))],
    );
    let resp = run_txn(&mut kv, outer).await;
    assert!(!resp.succeeded);
    assert!(as_txn(&resp.responses[0]).succeeded);
    assert_eq!(value_str(&get(&mut kv, "n/inner").await.unwrap()), "then");
    assert_eq!(get(&mut kv, "n/wrong").await, None);

    // Two levels deep.
    let deep = txn(
        vec![],
        vec![op_txn(txn(vec![], vec![op_txn(inner(true))], vec![]))],
        vec![],
    );
    let resp = run_txn(&mut kv, deep).await;
    let level2 = as_txn(&as_txn(&resp.responses[0]).responses[0]);
    assert!(level2.succeeded);
    assert_eq!(get(&mut kv, "n/inner").await.unwrap().version, 3);
}

#[tokio::test]
async fn txn_nested_compares_see_the_store_as_it_was_before_the_txn() {
    // etcd evaluates every compare on the path before the first op runs.
    let server = Server::start();
    let mut kv = server.kv().await;
    let inner = txn(
        vec![cmp_version("n/x", CompareResult::Equal, 0)],
        vec![op_put("n/y", "saw-before")],
        vec![op_put("n/y", "saw-own-write")],
    );
    let resp = run_txn(
        &mut kv,
        txn(vec![], vec![op_put("n/x", "1"), op_txn(inner)], vec![]),
    )
    .await;
    assert!(as_txn(&resp.responses[1]).succeeded);
    assert_eq!(value_str(&get(&mut kv, "n/y").await.unwrap()), "saw-before");
}

#[tokio::test]
async fn txn_writes_all_share_one_revision() {
    let server = Server::start();
    let mut kv = server.kv().await;
    put(&mut kv, "w/c", "to delete").await;
    put(&mut kv, "w/b", "old").await;
    let base = current_rev(&mut kv).await;
    let t = txn(
        vec![],
        vec![
            op_put("w/a", "1"),
            op_put("w/b", "2"),
            op_delete(del_req("w/c")),
        ],
        vec![],
    );
    let resp = run_txn(&mut kv, t).await;
    assert_eq!(rev(&resp.header), base + 1);
    let now = all(&mut kv).await;
    assert_eq!(keys(&now), ["w/a", "w/b"]);
    assert!(now.iter().all(|kv| kv.mod_revision == base + 1), "{now:?}");
    assert_eq!(now[1].version, 2);
    // The delete happened at that revision too.
    let past = range(
        &mut kv,
        RangeRequest {
            revision: base,
            ..get_req("w/c")
        },
    )
    .await;
    assert_eq!(past.kvs.len(), 1);
    assert_eq!(current_rev(&mut kv).await, base + 1);
    assert_eq!(rev(&put(&mut kv, "w/next", "v").await.header), base + 2);
}

#[tokio::test]
async fn txn_that_writes_nothing_creates_no_revision() {
    let server = Server::start();
    let mut kv = server.kv().await;
    put(&mut kv, "k", "v").await;
    let base = current_rev(&mut kv).await;
    let before = all(&mut kv).await;
    let read_only = [
        txn(
            vec![],
            vec![op_range(get_req("k")), op_range(all_req())],
            vec![],
        ),
        // Failing compare with an empty failure branch.
        txn(
            vec![cmp_version("k", CompareResult::Equal, 9)],
            vec![op_put("k", "x")],
            vec![],
        ),
        // A delete that deletes nothing.
        txn(vec![], vec![op_delete(del_req("missing"))], vec![]),
        txn(vec![], vec![], vec![]),
    ];
    for t in read_only {
        let resp = run_txn(&mut kv, t.clone()).await;
        assert_eq!(rev(&resp.header), base, "{t:?}");
    }
    assert_unchanged(&mut kv, base, &before).await;
    assert_eq!(rev(&put(&mut kv, "k", "v2").await.header), base + 1);
}

#[tokio::test]
async fn txn_with_too_many_ops_is_refused() {
    let server = Server::start_with(&["--max-txn-ops", "3"]);
    let mut kv = server.kv().await;
    put(&mut kv, "k", "v").await;
    let base = current_rev(&mut kv).await;
    let before = all(&mut kv).await;
    let puts = |n: usize, tag: &str| {
        (0..n)
            .map(|i| op_put(&format!("{tag}{i}"), "v"))
            .collect::<Vec<_>>()
    };
    let compares = |n: usize| {
        (0..n)
            .map(|_| cmp_version("k", CompareResult::Equal, 1))
            .collect::<Vec<_>>()
    };

    let refused = [
        txn(vec![], puts(4, "s"), vec![]),
        txn(vec![], vec![], puts(4, "f")),
        txn(compares(4), vec![], vec![]),
    ];
    for t in refused {
        assert_status(kv.txn(t).await, Code::InvalidArgument, ERR_TOO_MANY_OPS);
    }
    assert_unchanged(&mut kv, base, &before).await;

    // Exactly the limit in each list is fine.
    let resp = run_txn(&mut kv, txn(compares(3), puts(3, "s"), puts(3, "f"))).await;
    assert!(resp.succeeded);
    assert_eq!(rev(&resp.header), base + 1);
    assert_eq!(
        keys(&range(&mut kv, prefix_req("s")).await.kvs),
        ["s0", "s1", "s2"]
    );
}

#[tokio::test]
async fn txn_nested_ops_count_against_what_the_outer_txn_leaves() {
    // etcd's checkTxnRequest gives a nested txn the budget max-txn-ops minus
    // the op count of the txn holding it.
    let server = Server::start_with(&["--max-txn-ops", "3"]);
    let mut kv = server.kv().await;
    let base = current_rev(&mut kv).await;
    // Outer: 2 ops, so 1 left for the nested txn, which has 2.
    let t = txn(
        vec![],
        vec![
            op_put("a", "1"),
            op_txn(txn(
                vec![],
                vec![op_put("b", "2"), op_put("c", "3")],
                vec![],
            )),
        ],
        vec![],
    );
    assert_status(kv.txn(t).await, Code::InvalidArgument, ERR_TOO_MANY_OPS);
    assert_unchanged(&mut kv, base, &[]).await;
    // Outer: 2 ops, nested: 1: fits.
    let t = txn(
        vec![],
        vec![
            op_put("a", "1"),
            op_txn(txn(vec![], vec![op_put("b", "2")], vec![])),
        ],
        vec![],
    );
    run_txn(&mut kv, t).await;
    assert_eq!(current_rev(&mut kv).await, base + 1);
}

#[tokio::test]
async fn txn_writing_one_key_twice_is_refused() {
    let server = Server::start();
    let mut kv = server.kv().await;
    put(&mut kv, "d/existing", "v").await;
    let base = current_rev(&mut kv).await;
    let before = all(&mut kv).await;

    let refused = [
        (
            "two puts of one key",
            txn(vec![], vec![op_put("k", "1"), op_put("k", "2")], vec![]),
        ),
        (
            "put inside a deleted range",
            txn(
                vec![],
                vec![op_delete(del_prefix_req("d/")), op_put("d/x", "1")],
                vec![],
            ),
        ),
        (
            "put before a deleted range",
            txn(
                vec![],
                vec![op_put("d/x", "1"), op_delete(del_prefix_req("d/"))],
                vec![],
            ),
        ),
        (
            "put of a deleted single key",
            txn(
                vec![],
                vec![op_delete(del_req("d/existing")), op_put("d/existing", "1")],
                vec![],
            ),
        ),
        (
            "two puts in the failure branch",
            txn(
                vec![cmp_version("k", CompareResult::Equal, 9)],
                vec![],
                vec![op_put("k", "1"), op_put("k", "2")],
            ),
        ),
        (
            "put in a nested txn of a key put outside",
            txn(
                vec![],
                vec![
                    op_put("k", "1"),
                    op_txn(txn(vec![], vec![op_put("k", "2")], vec![])),
                ],
                vec![],
            ),
        ),
        (
            "put in a nested failure branch of a deleted key",
            txn(
                vec![],
                vec![
                    op_delete(del_prefix_req("d/")),
                    op_txn(txn(vec![], vec![], vec![op_put("d/y", "2")])),
                ],
                vec![],
            ),
        ),
    ];
    for (what, t) in refused {
        let err = kv.txn(t).await.expect_err(what);
        assert_eq!(
            (err.code(), err.message()),
            (Code::InvalidArgument, ERR_DUPLICATE_KEY),
            "{what}"
        );
        assert_unchanged(&mut kv, base, &before).await;
    }

    // Not duplicates: the two branches exclude each other, and deletes may overlap.
    let allowed = [
        txn(vec![], vec![op_put("k", "1")], vec![op_put("k", "2")]),
        txn(
            vec![],
            vec![op_txn(txn(
                vec![],
                vec![op_put("k", "1")],
                vec![op_put("k", "2")],
            ))],
            vec![],
        ),
        txn(
            vec![],
            vec![
                op_delete(del_prefix_req("d/")),
                op_delete(del_req("d/existing")),
                op_put("e", "1"),
            ],
            vec![],
        ),
    ];
    for t in allowed {
        kv.txn(t.clone())
            .await
            .unwrap_or_else(|e| panic!("{t:?} was refused: {e}"));
    }
}

#[tokio::test]
async fn txn_put_inside_a_from_key_delete_is_accepted_as_etcd_does() {
    // etcd's duplicate-key check builds an interval [key, "\0") for a from-key
    // delete, which is empty, so it does not see the overlap: the txn is
    // applied in order, and the delete removes the key just put.
    let server = Server::start();
    let mut kv = server.kv().await;
    put(&mut kv, "m", "v").await;
    let base = current_rev(&mut kv).await;
    let from_a = DeleteRangeRequest {
        key: b("a"),
        range_end: b("\0"),
        ..Default::default()
    };
    let t = txn(vec![], vec![op_put("zzz", "1"), op_delete(from_a)], vec![]);
    let resp = run_txn(&mut kv, t).await;
    assert_eq!(rev(&resp.header), base + 1);
    assert_eq!(as_delete(&resp.responses[1]).deleted, 2);
    assert!(all(&mut kv).await.is_empty());
}

#[tokio::test]
async fn txn_refused_while_applying_changes_nothing() {
    // The checks that need the store (ignore_value on a missing key, leases,
    // revisions of reads) run before the txn's first write.
    let server = Server::start();
    let mut kv = server.kv().await;
    let r1 = rev(&put(&mut kv, "k", "v1").await.header);
    let r2 = rev(&put(&mut kv, "k", "v2").await.header);
    compact(&mut kv, r2).await.unwrap();
    let base = current_rev(&mut kv).await;
    let before = all(&mut kv).await;

    let ignore_value_missing = PutRequest {
        key: b("missing"),
        ignore_value: true,
        ..Default::default()
    };
    let t = txn(
        vec![],
        vec![op_put("x", "1"), op_put_req(ignore_value_missing)],
        vec![],
    );
    assert_status(kv.txn(t).await, Code::InvalidArgument, ERR_KEY_NOT_FOUND);

    let leased = PutRequest {
        lease: 77,
        ..put_req("y", "1")
    };
    let t = txn(vec![], vec![op_put("x", "1"), op_put_req(leased)], vec![]);
    assert_status(kv.txn(t).await, Code::NotFound, ERR_LEASE_NOT_FOUND);

    let future = RangeRequest {
        revision: base + 10,
        ..get_req("k")
    };
    let t = txn(vec![], vec![op_put("x", "1"), op_range(future)], vec![]);
    assert_status(kv.txn(t).await, Code::OutOfRange, ERR_FUTURE_REV);

    let compacted = RangeRequest {
        revision: r1,
        ..get_req("k")
    };
    let t = txn(
        vec![],
        vec![op_delete(del_req("k")), op_range(compacted)],
        vec![],
    );
    assert_status(kv.txn(t).await, Code::OutOfRange, ERR_COMPACTED);

    // In a nested txn too.
    let nested_bad = txn(
        vec![],
        vec![op_put_req(PutRequest {
            key: b("missing"),
            ignore_lease: true,
            ..Default::default()
        })],
        vec![],
    );
    let t = txn(vec![], vec![op_put("x", "1"), op_txn(nested_bad)], vec![]);
    assert_status(kv.txn(t).await, Code::InvalidArgument, ERR_KEY_NOT_FOUND);

    // Validation errors inside the ops.
    let t = txn(
        vec![],
        vec![op_put("x", "1"), op_put("", "empty key")],
        vec![],
    );
    assert_status(kv.txn(t).await, Code::InvalidArgument, ERR_EMPTY_KEY);
    let t = txn(
        vec![cmp_version("", CompareResult::Equal, 0)],
        vec![op_put("x", "1")],
        vec![],
    );
    assert_status(kv.txn(t).await, Code::InvalidArgument, ERR_EMPTY_KEY);

    assert_unchanged(&mut kv, base, &before).await;
}

// ---------------------------------------------------------------------------
// Compact

#[tokio::test]
async fn compact_hides_older_revisions_and_keeps_the_latest_values() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let r1 = rev(&put(&mut kv, "k", "v1").await.header);
    let r2 = rev(&put(&mut kv, "k", "v2").await.header);
    put(&mut kv, "gone", "x").await;
    delete(&mut kv, del_req("gone")).await;
    let r5 = rev(&put(&mut kv, "k", "v3").await.header);
    let latest_before = all(&mut kv).await;

    let header = compact(&mut kv, r5 - 1).await.unwrap();
    assert_eq!(
        header.revision, r5,
        "compaction reports the current revision and creates none"
    );
    assert_eq!(current_rev(&mut kv).await, r5);

    for old in [r1, r2, r5 - 2] {
        let result = kv
            .range(RangeRequest {
                revision: old,
                ..get_req("k")
            })
            .await;
        assert_status(result, Code::OutOfRange, ERR_COMPACTED);
    }
    // At the compaction revision: the store as it was then.
    let at = range(
        &mut kv,
        RangeRequest {
            revision: r5 - 1,
            ..all_req()
        },
    )
    .await;
    assert_eq!(keys(&at.kvs), ["k"]);
    assert_eq!(value_str(&at.kvs[0]), "v2");
    // Latest: unchanged.
    assert_eq!(all(&mut kv).await, latest_before);
    let k = get(&mut kv, "k").await.unwrap();
    assert_eq!((k.create_revision, k.mod_revision, k.version), (r1, r5, 3));
    // Writes go on after it.
    assert_eq!(rev(&put(&mut kv, "k", "v4").await.header), r5 + 1);
    assert_eq!(get(&mut kv, "k").await.unwrap().version, 4);
}

#[tokio::test]
async fn compact_at_or_below_the_compacted_revision_is_refused() {
    let server = Server::start();
    let mut kv = server.kv().await;
    for i in 0..4 {
        put(&mut kv, "k", &format!("v{i}")).await;
    }
    let now = current_rev(&mut kv).await;
    compact(&mut kv, now - 1).await.unwrap();
    for again in [now - 1, now - 2, 1] {
        assert_status(
            compact(&mut kv, again).await,
            Code::OutOfRange,
            ERR_COMPACTED,
        );
    }
    // Compacting at the current revision is allowed.
    compact(&mut kv, now).await.unwrap();
    assert_status(compact(&mut kv, now).await, Code::OutOfRange, ERR_COMPACTED);
    assert_eq!(value_str(&get(&mut kv, "k").await.unwrap()), "v3");
    assert_eq!(current_rev(&mut kv).await, now);
}

#[tokio::test]
async fn compact_to_a_future_revision_is_refused() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let r1 = rev(&put(&mut kv, "k", "v1").await.header);
    let now = rev(&put(&mut kv, "k", "v2").await.header);
    for future in [now + 1, now + 100] {
        assert_status(
            compact(&mut kv, future).await,
            Code::OutOfRange,
            ERR_FUTURE_REV,
        );
    }
    // Nothing was compacted.
    let old = range(
        &mut kv,
        RangeRequest {
            revision: r1,
            ..get_req("k")
        },
    )
    .await;
    assert_eq!(value_str(&old.kvs[0]), "v1");
    assert_eq!(current_rev(&mut kv).await, now);
}

#[tokio::test]
async fn compact_physical_waits_for_the_compaction() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let mut mt = server.maintenance().await;
    let r1 = rev(&put(&mut kv, "k", "v1").await.header);
    let r2 = rev(&put(&mut kv, "k", "v2").await.header);
    let r3 = rev(&put(&mut kv, "k", "v3").await.header);
    let resp = kv
        .compact(CompactionRequest {
            revision: r2,
            physical: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rev(&resp.header), r3);
    // Done when answered: old revisions are gone, HashKV reports the compaction.
    assert_status(
        kv.range(RangeRequest {
            revision: r1,
            ..get_req("k")
        })
        .await,
        Code::OutOfRange,
        ERR_COMPACTED,
    );
    let hash = mt
        .hash_kv(HashKvRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hash.compact_revision, r2);
    assert_status(
        mt.hash_kv(HashKvRequest { revision: r1 }).await,
        Code::OutOfRange,
        ERR_COMPACTED,
    );
    assert_eq!(value_str(&get(&mut kv, "k").await.unwrap()), "v3");
}

// ---------------------------------------------------------------------------
// Response headers and Maintenance

#[tokio::test]
async fn every_response_header_names_the_same_cluster_and_member() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let mut mt = server.maintenance().await;
    let base = current_rev(&mut kv).await;

    let mut headers: Vec<(&str, ResponseHeader, i64)> = Vec::new();
    let h = put(&mut kv, "k", "v").await.header.unwrap();
    headers.push(("put", h, base + 1));
    let h = range(&mut kv, get_req("k")).await.header.unwrap();
    headers.push(("range", h, base + 1));
    let h = run_txn(&mut kv, txn(vec![], vec![op_put("t", "v")], vec![]))
        .await
        .header
        .unwrap();
    headers.push(("txn", h, base + 2));
    let h = delete(&mut kv, del_req("t")).await.header.unwrap();
    headers.push(("delete", h, base + 3));
    let h = compact(&mut kv, base + 2).await.unwrap();
    headers.push(("compact", h, base + 3));
    let h = mt
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap();
    headers.push(("status", h, base + 3));
    let h = mt
        .hash_kv(HashKvRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap();
    headers.push(("hash_kv", h, base + 3));

    let first = headers[0].1;
    assert_ne!(first.cluster_id, 0, "cluster_id");
    assert_ne!(first.member_id, 0, "member_id");
    assert_ne!(first.cluster_id, first.member_id);
    for (what, h, want_rev) in &headers {
        assert_eq!(
            (h.cluster_id, h.member_id),
            (first.cluster_id, first.member_id),
            "{what}"
        );
        assert!(h.raft_term > 0, "{what}: raft_term {}", h.raft_term);
        assert_eq!(h.revision, *want_rev, "{what}: revision");
    }
}

#[tokio::test]
async fn status_reports_version_leader_raft_index_and_db_size() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let mut mt = server.maintenance().await;
    put(&mut kv, "k", "v").await;
    let before = mt.status(StatusRequest {}).await.unwrap().into_inner();
    let h = *header(&before.header);
    if against_reference_server() {
        assert!(
            before.version.starts_with("3."),
            "version {:?}",
            before.version
        );
    } else {
        // oxetcd speaks etcd 3.5's API and says so, as etcdctl expects.
        assert!(
            before.version.starts_with("3.5."),
            "version {:?}",
            before.version
        );
    }
    assert_eq!(before.leader, h.member_id, "a single member leads itself");
    assert!(before.raft_index > 0, "raft_index after a write");
    assert!(before.raft_term > 0);
    assert!(before.db_size > 0, "db_size");
    assert!(before.errors.is_empty(), "{:?}", before.errors);
    assert!(!before.is_learner);

    for i in 0..3 {
        put(&mut kv, "k", &format!("v{i}")).await;
    }
    let after = mt.status(StatusRequest {}).await.unwrap().into_inner();
    assert!(
        after.raft_index >= before.raft_index + 3,
        "{} -> {}",
        before.raft_index,
        after.raft_index
    );
    assert_eq!(rev(&after.header), h.revision + 3);
}

#[tokio::test]
async fn defragment_gives_back_the_space_compaction_freed() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let mut mt = server.maintenance().await;
    let value = "v".repeat(4096);
    for i in 0..300 {
        put(&mut kv, &format!("big/{i:03}"), &value).await;
    }
    let head = rev(&delete(&mut kv, del_prefix_req("big/")).await.header);
    compact(&mut kv, head).await.unwrap();
    // oxetcd's sizes count what its write buffer holds until it reaches
    // the engine (every 100 ms): compare the engine's file alone.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before = mt.status(StatusRequest {}).await.unwrap().into_inner();
    mt.defragment(DefragmentRequest {}).await.unwrap();
    let after = mt.status(StatusRequest {}).await.unwrap().into_inner();
    assert!(
        after.db_size < before.db_size,
        "db_size {} -> {}: the freed space stayed in the file",
        before.db_size,
        after.db_size
    );
    assert!(
        after.db_size_in_use > 0 && after.db_size_in_use <= after.db_size,
        "in use {} of {}",
        after.db_size_in_use,
        after.db_size
    );
}

#[tokio::test]
async fn hash_kv_is_stable_for_a_revision_and_changes_after_a_write() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let mut mt = server.maintenance().await;
    put(&mut kv, "a", "1").await;
    let r = rev(&put(&mut kv, "b", "2").await.header);

    let h1 = mt
        .hash_kv(HashKvRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner();
    let h2 = mt
        .hash_kv(HashKvRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h1.hash, h2.hash, "two reads at one revision");
    assert_eq!(rev(&h1.header), r);

    put(&mut kv, "a", "3").await;
    let h3 = mt
        .hash_kv(HashKvRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(h3.hash, h1.hash, "a write changes the latest hash");
    // The hash at the earlier revision does not change with later writes.
    let at_r = mt
        .hash_kv(HashKvRequest { revision: r })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(at_r.hash, h1.hash);
    assert_status(
        mt.hash_kv(HashKvRequest { revision: r + 10 }).await,
        Code::OutOfRange,
        ERR_FUTURE_REV,
    );
}

// ---------------------------------------------------------------------------
// Restart

#[tokio::test]
async fn data_survives_a_clean_stop_and_restart() {
    let mut server = Server::start();
    let (before, before_rev, r1, ids) = {
        let mut kv = server.kv().await;
        let r1 = rev(&put(&mut kv, "a", "1").await.header);
        put(&mut kv, "a", "2").await;
        put(&mut kv, "b", "x").await;
        put(&mut kv, "gone", "x").await;
        delete(&mut kv, del_req("gone")).await;
        run_txn(
            &mut kv,
            txn(vec![], vec![op_put("t/1", "v"), op_put("t/2", "v")], vec![]),
        )
        .await;
        let now = current_rev(&mut kv).await;
        compact(&mut kv, now - 1).await.unwrap();
        let h = put(&mut kv, "c", "last").await.header.unwrap();
        (
            all(&mut kv).await,
            h.revision,
            r1,
            (h.cluster_id, h.member_id),
        )
    };

    server.stop();
    server.restart();

    let mut kv = server.kv().await;
    assert_eq!(all(&mut kv).await, before);
    assert_eq!(current_rev(&mut kv).await, before_rev);
    // History after the compaction is still there, before it still compacted.
    let at = range(
        &mut kv,
        RangeRequest {
            revision: before_rev - 1,
            ..get_req("a")
        },
    )
    .await;
    assert_eq!(value_str(&at.kvs[0]), "2");
    assert_status(
        kv.range(RangeRequest {
            revision: r1,
            ..get_req("a")
        })
        .await,
        Code::OutOfRange,
        ERR_COMPACTED,
    );
    let h = put(&mut kv, "d", "after").await.header.unwrap();
    assert_eq!(h.revision, before_rev + 1);
    assert_eq!(
        (h.cluster_id, h.member_id),
        ids,
        "identity changed across a restart"
    );
}
