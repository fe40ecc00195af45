//! Compaction under load, against the real binary: a compaction of a long
//! history must never hold the write path long enough for a put to fail
//! (issue 18; kube-apiserver compacts every 5 minutes). How long puts wait
//! is a benchmark's question (`benches/write-stall`), not this test's.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxetcd_proto::etcdserverpb::request_op::Request as Op;
use oxetcd_proto::etcdserverpb::{
    CompactionRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use support::*;
use tonic::Code;

/// Distinct keys of the history, and revisions of each: 600,000 changes.
const KEYS: usize = 200_000;
const VERSIONS: usize = 3;
/// Puts per load txn (etcd's --max-txn-ops is 128).
const TXN_PUTS: usize = 100;
const LOADERS: usize = 8;
/// Clients putting while the compaction runs.
const CLIENTS: usize = 100;

fn history_key(i: usize) -> bytes::Bytes {
    format!("/registry/history/{i:08}").into()
}

/// Writes VERSIONS versions of every history key, in txns of TXN_PUTS puts
/// from LOADERS clients; returns the revision after the last one.
async fn load_history(server: &Server) -> i64 {
    let mut loaders = Vec::new();
    for loader in 0..LOADERS {
        let mut kv = server.kv().await;
        loaders.push(tokio::spawn(async move {
            let mut last = 0;
            for version in 0..VERSIONS {
                let chunks = (0..KEYS).step_by(TXN_PUTS).skip(loader).step_by(LOADERS);
                for start in chunks {
                    let success = (start..(start + TXN_PUTS).min(KEYS))
                        .map(|i| RequestOp {
                            request: Some(Op::RequestPut(PutRequest {
                                key: history_key(i),
                                value: vec![b'a' + version as u8; 128].into(),
                                ..Default::default()
                            })),
                        })
                        .collect();
                    let txn = TxnRequest {
                        success,
                        ..Default::default()
                    };
                    let resp = kv.txn(txn).await.expect("load txn").into_inner();
                    last = resp.header.expect("header").revision;
                }
            }
            last
        }));
    }
    let mut head = 0;
    for l in loaders {
        head = head.max(l.await.expect("loader"));
    }
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn puts_from_100_clients_never_fail_while_600k_revisions_are_compacted() {
    let server = Server::start();
    let head = load_history(&server).await;

    let stop = Arc::new(AtomicBool::new(false));
    let puts = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let mut kv = server.kv().await;
        let (stop, puts, errors) = (stop.clone(), puts.clone(), errors.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let put = PutRequest {
                    key: format!("/registry/live/{c:03}/{:02}", i % 16).into(),
                    value: vec![b'v'; 128].into(),
                    ..Default::default()
                };
                match kv.put(put).await {
                    Ok(_) => puts.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        errors.lock().expect("errors").push(e.message().to_owned());
                        0
                    }
                };
                i += 1;
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = puts.load(Ordering::Relaxed);
    // physical: answers once the history is deleted, so the puts below
    // overlap the whole compaction, deletions included.
    let mut kv = server.kv().await;
    kv.compact(CompactionRequest {
        revision: head,
        physical: true,
    })
    .await
    .expect("compact");
    let during = puts.load(Ordering::Relaxed) - before;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }

    let errors = errors.lock().expect("errors").clone();
    assert!(
        errors.is_empty(),
        "{} of {} puts failed during the compaction, first: {:?}",
        errors.len(),
        puts.load(Ordering::Relaxed) + errors.len() as u64,
        errors.first()
    );
    assert!(during > 0, "no put completed while the compaction ran");
    // The compaction happened: the history before it is gone.
    let old = RangeRequest {
        key: history_key(0),
        revision: head - 1,
        ..Default::default()
    };
    let err = kv.range(old).await.expect_err("compacted revision");
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    let latest = kv
        .range(RangeRequest {
            key: history_key(KEYS - 1),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(latest.kvs[0].version, VERSIONS as i64);
}
