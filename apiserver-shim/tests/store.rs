//! One conformance suite for both stores: the embedded oxetcd member and the
//! remote gRPC client (against Debian's etcd 3.4, which CI installs; without
//! it the remote half is skipped, except under CI=true where it fails). Then
//! the REST layer over the embedded store, where kubectl cannot reach:
//! continue tokens and a watch from a compacted resourceVersion.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use hyper::Method;
use oxetcd_apiserver::rest::{namespaces, Api, Query, Reply, Request};
use oxetcd_apiserver::route::{self, Route};
use oxetcd_apiserver::store::compactor::{Compactor, COMPACT_REV_KEY};
use oxetcd_apiserver::store::embedded::Embedded;
use oxetcd_apiserver::store::remote::Remote;
use oxetcd_apiserver::store::{prefix_end, Event, Store, StoreError, Written};
use serde_json::{json, Value};
use support::etcd::{self, Etcd};

mod support;

async fn next_batch(
    events: &mut oxetcd_apiserver::store::EventStream,
) -> Result<Vec<Event>, StoreError> {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("a watch event within 10 s")
        .expect("the watch stream goes on")
}

/// What the API relies on, for any store.
async fn conformance(store: &dyn Store) {
    let (a, b) = (b"/t/items/a".as_slice(), b"/t/items/b".as_slice());
    let Written::Done { revision: r1 } =
        store.create(a, Bytes::from_static(b"1"), 0).await.unwrap()
    else {
        panic!("create of a new key")
    };
    // Create is If(mod_revision == 0): a second create fails, no Else.
    assert_eq!(
        store.create(a, Bytes::from_static(b"x"), 0).await.unwrap(),
        Written::Conflict { current: None }
    );
    let (kv, rev) = store.get(a).await.unwrap();
    let kv = kv.unwrap();
    assert_eq!(
        (kv.value.as_ref(), kv.mod_revision, kv.create_revision),
        (b"1".as_ref(), r1, r1)
    );
    assert!(rev >= r1);

    let mut watch = store
        .watch(b"/t/items/", &prefix_end(b"/t/items/"), r1 + 1)
        .await
        .unwrap();

    // Update guarded by mod_revision: stale -> the current value from Else.
    match store
        .update(a, Bytes::from_static(b"2"), r1 - 1, 0)
        .await
        .unwrap()
    {
        Written::Conflict { current: Some(cur) } => assert_eq!(cur.mod_revision, r1),
        other => panic!("stale update: {other:?}"),
    }
    let Written::Done { revision: r2 } = store
        .update(a, Bytes::from_static(b"2"), r1, 0)
        .await
        .unwrap()
    else {
        panic!("fresh update")
    };
    store.create(b, Bytes::from_static(b"3"), 0).await.unwrap();

    // Lists: pages, count, more, and reads at an older revision.
    let end = prefix_end(b"/t/items/");
    let page = store.list(b"/t/items/", &end, 1, 0).await.unwrap();
    assert_eq!((page.kvs.len(), page.more, page.count), (1, true, 2));
    let old = store.list(b"/t/items/", &end, 0, r1).await.unwrap();
    assert_eq!(old.kvs.len(), 1);
    assert_eq!(old.kvs[0].value.as_ref(), b"1");

    // Delete guarded by mod_revision.
    assert!(matches!(
        store.delete(a, r1).await.unwrap(),
        Written::Conflict { current: Some(_) }
    ));
    let Written::Done { revision: r4 } = store.delete(a, r2).await.unwrap() else {
        panic!("fresh delete")
    };

    // The watch saw all three, with the previous values.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.extend(next_batch(&mut watch).await.unwrap());
    }
    match &seen[0] {
        Event::Put { kv, prev: Some(p) } => assert_eq!(
            (kv.value.as_ref(), p.value.as_ref()),
            (b"2".as_ref(), b"1".as_ref())
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(&seen[1], Event::Put { kv, prev: None } if kv.key == b));
    match &seen[2] {
        Event::Delete {
            revision,
            prev: Some(p),
            ..
        } => assert_eq!((*revision, p.value.as_ref()), (r4, b"2".as_ref())),
        other => panic!("{other:?}"),
    }

    // Compaction: older reads and watches are refused as compacted.
    store.compact(r4).await.unwrap();
    assert!(matches!(
        store.list(b"/t/items/", &end, 0, r1).await,
        Err(StoreError::Compacted { .. })
    ));
    let mut late = store.watch(b"/t/items/", &end, r1).await.unwrap();
    match next_batch(&mut late).await {
        Err(StoreError::Compacted { compact_revision }) => assert_eq!(compact_revision, Some(r4)),
        other => panic!("watch from a compacted revision: {other:?}"),
    }

    // kube-apiserver's compactor: the first round only records the
    // revision, the next compacts to it; a server that expects an older
    // version of compact_rev_key loses its round and adopts the version.
    let mut compactor = Compactor::default();
    assert_eq!(compactor.round(store).await.unwrap(), None);
    let recorded = compactor.revision;
    assert_eq!(compactor.version, 1);
    store
        .create(b"/t/items/c", Bytes::from_static(b"4"), 0)
        .await
        .unwrap();
    assert_eq!(compactor.round(store).await.unwrap(), Some(recorded));
    assert_eq!(compactor.version, 2);
    let (key, _) = store.get(COMPACT_REV_KEY.as_bytes()).await.unwrap();
    assert_eq!(key.unwrap().value, recorded.to_string());
    assert!(matches!(
        store.list(b"/t/items/", &end, 0, recorded - 1).await,
        Err(StoreError::Compacted { .. })
    ));
    assert_eq!(
        store
            .list(b"/t/items/", &end, 0, recorded)
            .await
            .unwrap()
            .kvs
            .len(),
        1
    );
    let mut late_server = Compactor::default();
    assert_eq!(late_server.round(store).await.unwrap(), None);
    assert_eq!(late_server.version, 2);
    let (key, _) = store.get(COMPACT_REV_KEY.as_bytes()).await.unwrap();
    assert_eq!(
        key.unwrap().value,
        recorded.to_string(),
        "the loser wrote nothing"
    );
}

/// Answers past gRPC's default 4 MiB (a list of 20,000 pods is 77 MB):
/// kube-apiserver's etcd client reads any size, and so must ours.
async fn large_answers(store: &dyn Store) {
    let big = Bytes::from(vec![b'x'; 1 << 20]);
    for i in 0..5 {
        let key = format!("/t/big/{i}");
        store.create(key.as_bytes(), big.clone(), 0).await.unwrap();
    }
    let page = store
        .list(b"/t/big/", &prefix_end(b"/t/big/"), 0, 0)
        .await
        .unwrap();
    assert_eq!(page.kvs.len(), 5);
    assert!(page.kvs.iter().all(|kv| kv.value == big));
}

#[tokio::test]
async fn the_embedded_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = Embedded::start(dir.path()).await.unwrap();
    conformance(&store).await;
    large_answers(&store).await;
    store.stop().await;
}

#[tokio::test]
async fn the_remote_store_conforms_against_etcd() {
    if !etcd::present() {
        return;
    }
    let etcd = Etcd::start(43300);
    let store = Remote::connect(std::slice::from_ref(&etcd.url), None).unwrap();
    // Wait for etcd to answer.
    for _ in 0..100 {
        if store.get(b"/ready").await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    conformance(&store).await;
    large_answers(&store).await;
}

/// A request to the REST layer as the HTTP layer would hand it over.
async fn call(
    api: &Api,
    method: Method,
    uri: &str,
    body: Value,
) -> Result<Reply, oxetcd_apiserver::error::ApiError> {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let Route::Resource(path) = route::parse(path) else {
        panic!("{uri}")
    };
    api.handle(Request {
        method,
        path,
        query: Query::parse(Some(query)),
        content_type: Some("application/json".into()),
        user_agent: None,
        body: if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(body.to_string())
        },
        warnings: Default::default(),
    })
    .await
}

async fn json_of(api: &Api, method: Method, uri: &str, body: Value) -> Value {
    match call(api, method, uri, body).await.unwrap() {
        Reply::Json { body, .. } => body,
        Reply::Stream(_) => panic!("{uri}: a stream"),
    }
}

#[tokio::test]
async fn lists_page_with_continue_and_old_watches_get_410() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Arc::new(Embedded::start(dir.path()).await.unwrap());
    let api = Api::new(embedded.clone(), "/registry");
    namespaces::bootstrap(&api).await.unwrap();
    let cms = "/api/v1/namespaces/default/configmaps";
    let mut first_rv = String::new();
    for i in 0..5 {
        let cm = json_of(
            &api,
            Method::POST,
            cms,
            json!({"metadata": {"name": format!("c{i}"), "labels": {"n": i.to_string()}}}),
        )
        .await;
        if i == 0 {
            first_rv = cm["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .to_string();
        }
    }

    // Pages of 2 at one revision; a write between pages is not seen.
    let page1 = json_of(&api, Method::GET, &format!("{cms}?limit=2"), Value::Null).await;
    assert_eq!(page1["metadata"]["remainingItemCount"], 3);
    let list_rv = page1["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    json_of(&api, Method::POST, cms, json!({"metadata": {"name": "c9"}})).await;
    let mut names: Vec<String> = Vec::new();
    let mut page = page1;
    loop {
        assert_eq!(
            page["metadata"]["resourceVersion"].as_str().unwrap(),
            list_rv
        );
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["metadata"]["name"].as_str().unwrap().to_string()),
        );
        let Some(token) = page["metadata"]["continue"].as_str() else {
            break;
        };
        page = json_of(
            &api,
            Method::GET,
            &format!("{cms}?limit=2&continue={token}"),
            Value::Null,
        )
        .await;
    }
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);

    // A selector that filters short pages still fills each page.
    let sel = json_of(
        &api,
        Method::GET,
        &format!("{cms}?limit=2&labelSelector=n+in+(1,3,4)"),
        Value::Null,
    )
    .await;
    let got: Vec<&str> = sel["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["c1", "c3"]);
    assert!(sel["metadata"]["continue"].is_string());

    // Compact past the first write: a watch from it is one 410 ERROR event.
    let now: i64 = json_of(&api, Method::GET, cms, Value::Null).await["metadata"]
        ["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    embedded.compact(now).await.unwrap();
    let Reply::Stream(mut rx) = call(
        &api,
        Method::GET,
        &format!("{cms}?watch=1&resourceVersion={first_rv}"),
        Value::Null,
    )
    .await
    .unwrap() else {
        panic!("a watch stream")
    };
    let line = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let event: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");
    assert_eq!(
        event["object"]["message"],
        format!("too old resource version: {first_rv} ({now})")
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .is_none(),
        "then the stream ends"
    );

    // A list at the compacted revision is 410 Expired too.
    let err = call(
        &api,
        Method::GET,
        &format!("{cms}?limit=2&resourceVersion={first_rv}&resourceVersionMatch=Exact"),
        Value::Null,
    )
    .await
    .err()
    .unwrap();
    assert_eq!((err.code(), err.reason()), (410, "Expired"));
    embedded.stop().await;
}
