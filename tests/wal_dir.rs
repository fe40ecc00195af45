//! --wal-dir: the Raft log lives in its own directory, as etcd's WAL, and a
//! restart with the same flags finds it.

mod support;

use support::*;

#[tokio::test]
async fn the_raft_log_lives_in_wal_dir_and_a_restart_finds_it() {
    let wal_parent = tempfile::tempdir().expect("temp dir");
    let wal = wal_parent.path().join("wal");
    let wal_arg = format!("--wal-dir={}", wal.display());
    let mut server = Server::start_with(&[&wal_arg]);
    let mut kv = server.kv().await;
    for i in 0..20 {
        kv.put(put_req(&format!("k{i}"), "v")).await.expect("put");
    }
    let segments = std::fs::read_dir(&wal)
        .expect("the --wal-dir exists")
        .count();
    assert!(segments > 0, "no log files in {}", wal.display());
    let inside = server.data_dir().join("oxetcd/raft/wal");
    assert!(
        !inside.exists(),
        "a log was written in the data dir too: {}",
        inside.display()
    );

    server.restart();
    let mut kv = server.kv().await;
    let got = kv.range(prefix_req("k")).await.expect("range").into_inner();
    assert_eq!(got.count, 20, "{}", server.logs());
}
