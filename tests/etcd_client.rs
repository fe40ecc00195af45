//! The `etcd-client` crate, the etcd client Rust programs use, against the real
//! `oxetcd` binary: put, get (one key, prefix, sorted, limited), delete, txn,
//! compact and status, as an application would use them.

mod support;

use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, Error, GetOptions, PutOptions,
    SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use support::Server;

async fn client(server: &Server) -> Client {
    Client::connect([server.endpoint()], None)
        .await
        .expect("etcd-client connects")
}

fn keys_of(resp: &etcd_client::GetResponse) -> Vec<&str> {
    resp.kvs().iter().map(|kv| kv.key_str().unwrap()).collect()
}

#[tokio::test]
async fn etcd_client_puts_and_gets_keys_and_prefixes() {
    let server = Server::start();
    let mut c = client(&server).await;
    let first = c.put("app/config/a", "1", None).await.unwrap();
    let base = first.header().unwrap().revision();
    c.put("app/config/b", "2", None).await.unwrap();
    c.put("app/config/c", "3", None).await.unwrap();
    c.put("app/other", "x", None).await.unwrap();
    let updated = c
        .put(
            "app/config/a",
            "1b",
            Some(PutOptions::new().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!(updated.prev_key().unwrap().value_str().unwrap(), "1");
    assert_eq!(updated.header().unwrap().revision(), base + 4);

    let one = c.get("app/config/a", None).await.unwrap();
    assert_eq!(one.count(), 1);
    let kv = &one.kvs()[0];
    assert_eq!(
        (kv.key_str().unwrap(), kv.value_str().unwrap()),
        ("app/config/a", "1b")
    );
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (base, base + 4, 2)
    );

    let prefix = c
        .get("app/config/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(
        keys_of(&prefix),
        ["app/config/a", "app/config/b", "app/config/c"]
    );

    let sorted = c
        .get(
            "app/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Mod, SortOrder::Descend)
                    .with_limit(2),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys_of(&sorted), ["app/config/a", "app/other"]);
    assert_eq!((sorted.count(), sorted.more()), (4, true));

    let old = c
        .get("app/config/a", Some(GetOptions::new().with_revision(base)))
        .await
        .unwrap();
    assert_eq!(old.kvs()[0].value_str().unwrap(), "1");

    let missing = c.get("app/missing", None).await.unwrap();
    assert!(missing.kvs().is_empty());
}

#[tokio::test]
async fn etcd_client_deletes_keys_and_prefixes() {
    let server = Server::start();
    let mut c = client(&server).await;
    for k in ["d/1", "d/2", "d/3", "e"] {
        c.put(k, "v", None).await.unwrap();
    }
    let one = c.delete("d/1", None).await.unwrap();
    assert_eq!(one.deleted(), 1);
    let rest = c
        .delete(
            "d/",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!(rest.deleted(), 2);
    let prev: Vec<&str> = rest
        .prev_kvs()
        .iter()
        .map(|kv| kv.key_str().unwrap())
        .collect();
    assert_eq!(prev, ["d/2", "d/3"]);
    let left = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(keys_of(&left), ["e"]);
}

#[tokio::test]
async fn etcd_client_txn_compare_and_swap() {
    let server = Server::start();
    let mut c = client(&server).await;
    c.put("lock", "free", None).await.unwrap();

    // Compare-and-swap that holds.
    let take = Txn::new()
        .when([Compare::value("lock", CompareOp::Equal, "free")])
        .and_then([
            TxnOp::put("lock", "owner-1", None),
            TxnOp::get("lock", None),
        ])
        .or_else([TxnOp::get("lock", None)]);
    let resp = c.txn(take.clone()).await.unwrap();
    assert!(resp.succeeded());
    let ops = resp.op_responses();
    assert_eq!(ops.len(), 2);
    assert!(matches!(ops[0], TxnOpResponse::Put(_)));
    match &ops[1] {
        TxnOpResponse::Get(get) => assert_eq!(get.kvs()[0].value_str().unwrap(), "owner-1"),
        other => panic!("expected a get response, got {other:?}"),
    }

    // The same CAS again fails and reads the current owner.
    let resp = c.txn(take).await.unwrap();
    assert!(!resp.succeeded());
    match &resp.op_responses()[0] {
        TxnOpResponse::Get(get) => assert_eq!(get.kvs()[0].value_str().unwrap(), "owner-1"),
        other => panic!("expected a get response, got {other:?}"),
    }

    // Create-if-absent with create_revision == 0, nested txn and delete.
    let create = Txn::new()
        .when([
            Compare::create_revision("new", CompareOp::Equal, 0),
            Compare::version("lock", CompareOp::Greater, 1),
        ])
        .and_then([
            TxnOp::put("new", "created", None),
            TxnOp::delete("lock", None),
            TxnOp::txn(Txn::new().and_then([TxnOp::put("nested", "yes", None)])),
        ]);
    let resp = c.txn(create).await.unwrap();
    assert!(resp.succeeded());
    let rev = resp.header().unwrap().revision();
    match &resp.op_responses()[1] {
        TxnOpResponse::Delete(del) => assert_eq!(del.deleted(), 1),
        other => panic!("expected a delete response, got {other:?}"),
    }
    let now = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(keys_of(&now), ["nested", "new"]);
    assert!(
        now.kvs().iter().all(|kv| kv.mod_revision() == rev),
        "one txn, one revision"
    );

    // A refused txn surfaces etcd's error.
    let dup = Txn::new().and_then([TxnOp::put("x", "1", None), TxnOp::put("x", "2", None)]);
    match c.txn(dup).await {
        Err(Error::GRpcStatus(status)) => {
            assert_eq!(
                status.message(),
                "etcdserver: duplicate key given in txn request"
            )
        }
        other => panic!("expected a gRPC error, got {other:?}"),
    }
}

#[tokio::test]
async fn etcd_client_compacts_and_reads_status() {
    let server = Server::start();
    let mut c = client(&server).await;
    let r1 = c
        .put("k", "v1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.put("k", "v2", None).await.unwrap();
    let r3 = c
        .put("k", "v3", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();

    c.compact(r3, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    match c.get("k", Some(GetOptions::new().with_revision(r1))).await {
        Err(Error::GRpcStatus(status)) => {
            assert_eq!(status.code(), tonic::Code::OutOfRange);
            assert_eq!(
                status.message(),
                "etcdserver: mvcc: required revision has been compacted"
            );
        }
        other => panic!("expected a compacted error, got {other:?}"),
    }
    assert_eq!(
        c.get("k", None).await.unwrap().kvs()[0]
            .value_str()
            .unwrap(),
        "v3"
    );

    let status = c.status().await.unwrap();
    let header = status.header().unwrap();
    assert!(
        status.version().starts_with("3."),
        "version {:?}",
        status.version()
    );
    assert_eq!(status.leader(), header.member_id());
    assert_ne!(header.cluster_id(), 0);
    assert_eq!(header.revision(), r3);
    assert!(status.raft_index() > 0);
    assert!(status.db_size() > 0);

    let hash = c.hash_kv(0).await.unwrap();
    assert_eq!(hash.compact_version(), r3);
}
