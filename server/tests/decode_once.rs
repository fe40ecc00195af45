//! The write path decodes each command once per member: the leader decodes
//! its proposer's (or a forwarding follower's) encoding once, into a compact
//! buffer, and applies that typed value; a follower decodes what replication
//! brought once; the WAL and the state machine share the value. Counted by
//! `command_decodes` against `applied_commands`, both per process, so
//! everything here runs in one test: one member first, then three members in
//! this process.

use std::sync::Arc;
use std::time::Duration;

use oxetcd_proto::etcdserverpb::PutRequest;
use oxetcd_server::command::{applied_commands, command_decodes};
use oxetcd_server::{EtcdServer, ServerConfig};
use tokio_stream::wrappers::TcpListenerStream;

const WRITES: usize = 300;

fn put(i: usize) -> PutRequest {
    PutRequest {
        key: format!("key-{i}").into(),
        value: "value".into(),
        ..Default::default()
    }
}

/// `WRITES` puts from 50 concurrent writers, spread over `servers` in turn.
async fn write_through(servers: &[Arc<EtcdServer>]) {
    let mut writers = Vec::new();
    for w in 0..50 {
        let servers = servers.to_vec();
        writers.push(tokio::spawn(async move {
            for i in (w..WRITES).step_by(50) {
                let server = &servers[i % servers.len()];
                server.put(put(i)).await.expect("put");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
}

/// Waits until every member has applied everything the first one logged.
async fn wait_applied(servers: &[Arc<EtcdServer>]) {
    let last = servers
        .iter()
        .filter_map(|s| s.raft_metrics().last_log_index)
        .max()
        .unwrap_or(0);
    for _ in 0..500 {
        let behind = servers
            .iter()
            .any(|s| s.raft_metrics().last_applied.map_or(0, |l| l.index) < last);
        if !behind {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("members did not apply up to {last}");
}

async fn three_members(dir: &std::path::Path) -> Vec<Arc<EtcdServer>> {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let urls: Vec<String> = listeners
        .iter()
        .map(|l| format!("http://{}", l.local_addr().unwrap()))
        .collect();
    let names = ["a", "b", "c"];
    let initial_cluster: Vec<(String, String)> = names
        .iter()
        .zip(&urls)
        .map(|(n, u)| (n.to_string(), u.clone()))
        .collect();
    let mut serving = Vec::new();
    for ((name, url), listener) in names.iter().zip(&urls).zip(listeners) {
        let mut config = ServerConfig::single_member(&dir.join(name));
        config.name = name.to_string();
        config.initial_cluster = initial_cluster.clone();
        config.initial_advertise_peer_urls = vec![url.clone()];
        let opened = EtcdServer::open(config).await.expect("open");
        let peers =
            tonic::transport::Server::builder().add_service(opened.peer_service().into_server());
        tokio::spawn(peers.serve_with_incoming(TcpListenerStream::new(listener)));
        serving.push(tokio::spawn(opened.serve()));
    }
    let mut servers = Vec::new();
    for s in serving {
        servers.push(s.await.expect("serve task").expect("serve"));
    }
    servers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_member_decodes_each_command_at_most_once() {
    let dir = tempfile::tempdir().unwrap();

    // One member: each put decoded once (by its proposer) and applied once.
    let one = EtcdServer::start(ServerConfig::single_member(&dir.path().join("one")))
        .await
        .expect("start");
    let (decodes, applied) = (command_decodes(), applied_commands());
    write_through(std::slice::from_ref(&one)).await;
    assert_eq!(
        applied_commands() - applied,
        WRITES as u64,
        "every put applied once"
    );
    assert_eq!(
        command_decodes() - decodes,
        WRITES as u64,
        "every put decoded once"
    );
    one.stop().await;

    // Three members: writes through each (a follower's go to the leader).
    // Every put is applied by each member, and decoded once by each: by the
    // leader from its proposer's or the forwarding follower's encoding, by
    // each follower from what replication brought.
    let servers = three_members(dir.path()).await;
    wait_applied(&servers).await;
    let (decodes, applied) = (command_decodes(), applied_commands());
    write_through(&servers).await;
    wait_applied(&servers).await;
    let applied_here = applied_commands() - applied;
    let decoded = command_decodes() - decodes;
    assert_eq!(
        applied_here,
        3 * WRITES as u64,
        "every member applied every put"
    );
    assert_eq!(decoded, applied_here, "each member decoded each put once");
    for s in &servers {
        assert_eq!(
            s.range(oxetcd_proto::etcdserverpb::RangeRequest {
                key: "key-".into(),
                range_end: "key.".into(),
                count_only: true,
                serializable: true,
                ..Default::default()
            })
            .await
            .expect("range")
            .count,
            WRITES as i64
        );
    }
    for s in &servers {
        s.stop().await;
    }
}
