//! etcd's plain HTTP endpoints on the client port, beside gRPC.

mod support;

use std::time::{Duration, Instant};

use support::cluster::Cluster;
use support::{http_get as get, Server};

#[tokio::test]
async fn health_and_version_answer_over_http_on_the_grpc_port() {
    let server = Server::start();
    let (status, body) = get(&server.endpoint(), "/health");
    assert_eq!(status, 200);
    assert!(body.contains(r#""health":"true""#), "{body}");
    let (status, body) = get(&server.endpoint(), "/version");
    assert_eq!(status, 200);
    assert!(
        body.contains(r#""etcdserver":"3."#) && body.contains(r#""etcdcluster":"3."#),
        "{body}"
    );
    assert_eq!(get(&server.endpoint(), "/no-such-page").0, 404);
    // gRPC still works on the same port.
    let mut kv = server.kv().await;
    kv.put(support::put_req("k", "v"))
        .await
        .expect("put over gRPC");
}

/// Polls `path` on `url` until its status is `want`; returns how long it took.
fn wait_status(url: &str, path: &str, want: u16, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (status, body) = get(url, path);
        if status == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{path} still {status} ({body}) after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_member_cut_off_from_its_peers_is_unhealthy_until_they_return() {
    let mut cluster = Cluster::start(3).await;
    let election = Duration::from_millis(cluster.options.election_ms);
    // A follower: it campaigns once its leader is gone, and then knows it has
    // none. (A leader cut off stays leader in openraft, whose leaders do not
    // step down without a quorum as etcd's do with CheckQuorum: its /health is
    // false from the failed read instead.)
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let observed = (0..3).find(|&i| i != leader).expect("a follower");
    let url = cluster.member(observed).client_url();
    assert_eq!(get(&url, "/health"), (200, r#"{"health":"true"}"#.into()));
    assert_eq!(get(&url, "/readyz"), (200, "ok".into()));
    let (status, verbose) = get(&url, "/readyz?verbose");
    assert_eq!(status, 200);
    assert!(
        verbose.contains("[+]linearizable_read ok\n") && verbose.ends_with("readyz check passed\n"),
        "{verbose}"
    );

    for peer in (0..3).filter(|&i| i != observed) {
        cluster.kill_9(peer);
    }
    // A few election timeouts, and the health read's own second.
    let within = 5 * election + Duration::from_secs(1);
    let took = wait_status(&url, "/health", 503, within);
    println!("/health unhealthy {took:?} after the peers stopped");
    assert_eq!(get(&url, "/health").1, r#"{"health":"false"}"#);
    // Once it has campaigned it knows it has no leader, and says why.
    let deadline = Instant::now() + within;
    while !cluster.logs(observed).contains("RAFT NO LEADER") {
        assert!(Instant::now() < deadline, "no RAFT NO LEADER in the log");
        get(&url, "/health");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = get(&url, "/readyz");
    assert_eq!(status, 503);
    assert!(
        body.contains("[-]linearizable_read failed") && body.ends_with("readyz check failed\n"),
        "{body}"
    );
    // A local read still works: alive, serving serializable reads.
    assert_eq!(get(&url, "/livez"), (200, "ok".into()));
    assert_eq!(get(&url, "/health?serializable=true").0, 200);

    cluster.restart_all().await;
    wait_status(&url, "/health", 200, Duration::from_secs(10));
    assert_eq!(get(&url, "/readyz").0, 200);
}
