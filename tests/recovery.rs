//! Disaster recovery with --force-new-cluster, as etcd's: the last member
//! of a cluster whose other members' data is gone restarts from its own data
//! as a one-member cluster, with every key, and takes writes.

mod support;

use std::time::Duration;

use oxetcd_proto::etcdserverpb::StatusRequest;
use support::cluster::{header_of, Cluster};
use support::{all, put, put_req};

const KEYS: usize = 200;

#[tokio::test]
async fn force_new_cluster_recovers_a_member_whose_peers_data_is_gone() {
    let mut cluster = Cluster::start(3).await;
    for i in 0..KEYS {
        let mut kv = cluster.kv(i % 3);
        put(&mut kv, &format!("key{i:03}"), &format!("value{i}")).await;
    }
    cluster.wait_converged(Duration::from_secs(30)).await;
    let before = all(&mut cluster.kv(2)).await;
    assert_eq!(before.len(), KEYS);
    let survivor = cluster.member(2).id();

    // Disaster: every member dies at once (no chance to flush), and two
    // members' data dirs are lost.
    cluster.kill_9_all();
    for gone in [0, 1] {
        std::fs::remove_dir_all(cluster.member(gone).data_dir()).expect("remove a data dir");
    }
    cluster.set_args(2, &["--force-new-cluster"]);
    cluster.restart(2).await;

    // Every key, as it was, on a cluster of one that takes writes.
    let mut kv = cluster.kv(2);
    assert_eq!(all(&mut kv).await, before);
    let members = cluster.member_list(2).await;
    assert_eq!(
        members.iter().map(|m| m.id).collect::<Vec<_>>(),
        [survivor],
        "{members:?}"
    );
    let status = cluster
        .maintenance(2)
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.leader, survivor);
    assert_eq!(header_of(&status.header).member_id, survivor);
    let written = kv
        .put(put_req("after", "recovery"))
        .await
        .expect("a write after recovery")
        .into_inner();
    assert!(
        header_of(&written.header).revision
            > before.iter().map(|kv| kv.mod_revision).max().unwrap_or(0)
    );

    // The recovery is durable: started again without the flag (and killed
    // first), it is still a cluster of one with every key.
    cluster.set_args(2, &[]);
    cluster.restart(2).await;
    let mut kv = cluster.kv(2);
    let mut after = all(&mut kv).await;
    after.retain(|kv| kv.key != "after");
    assert_eq!(after, before);
    assert_eq!(cluster.member_list(2).await.len(), 1);
    put(&mut kv, "again", "x").await;
}
