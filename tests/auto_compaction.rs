//! Auto-compaction against the real binary: with etcd's revision mode the
//! leader compacts on its own, through the log, so old revisions answer
//! etcd's "required revision has been compacted".

mod support;

use std::time::{Duration, Instant};

use oxetcd_proto::etcdserverpb::RangeRequest;
use support::*;

#[tokio::test]
async fn revision_mode_compacts_all_but_the_last_10_revisions() {
    // The test hook shortens revision mode's 5-minute check.
    let server = Server::start_with_env(
        &[
            "--auto-compaction-mode=revision",
            "--auto-compaction-retention=10",
        ],
        &[("OXETCD_TEST_AUTO_COMPACTION_INTERVAL_MS", "200")],
    );
    let mut kv = server.kv().await;
    let mut head = 0;
    for i in 0..30 {
        let resp = kv
            .put(put_req("k", &format!("v{i}")))
            .await
            .expect("put")
            .into_inner();
        head = resp.header.expect("header").revision;
    }
    let at = |revision| RangeRequest {
        key: b("k"),
        revision,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        match kv.range(at(2)).await {
            Err(status) => break status,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(_) => panic!("revision 2 is still readable\n{}", server.logs()),
        }
    };
    assert_eq!(
        status.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    // The last 10 revisions are kept.
    let kept = kv
        .range(at(head - 10))
        .await
        .expect("the revision 10 back is kept")
        .into_inner();
    assert_eq!(kept.kvs.len(), 1);
    assert!(
        server.logs().contains("completed auto revision compaction"),
        "{}",
        server.logs()
    );
}
