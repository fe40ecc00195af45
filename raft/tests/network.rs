//! The peer transport end to end: 3-member openraft clusters in this process,
//! each member with its own WAL (a temporary directory), an in-memory
//! key-value state machine defined here, and `PeerService` on its own
//! 127.0.0.1 port, connected through `Network`: elections, replication,
//! `Forward` / `ReadIndex`, fail-over, catching up by snapshot, and TLS.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use oxetcd_raft::{
    KvHash, LeaderDuties, LogStore, Network, NodeId, PeerError, PeerService, Request, TypeConfig,
    Wal, WalOptions,
};
use oxetcd_tls::test_pki::Ca;
use oxetcd_tls::{ClientTlsOptions, Identity, Pem, Trust};
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::StreamExt;

use common::KvStateMachine;

// ---------------------------------------------------------------------------
// The leader duties, as the server will implement them.

struct Duties(Raft<TypeConfig>);

#[async_trait::async_trait]
impl LeaderDuties for Duties {
    async fn forward(&self, command: Bytes) -> Result<Bytes, PeerError> {
        Ok(self.0.client_write(Request(command)).await?.data.0)
    }

    async fn read_index(&self) -> Result<u64, PeerError> {
        Ok(self.0.ensure_linearizable().await?.map_or(0, |id| id.index))
    }

    /// The test state machine keeps no history: the answer names the member
    /// (as its hash) and its applied index (as its revision), enough to see
    /// that the call reached the member asked and came back whole.
    async fn hash_kv(&self, revision: i64) -> Result<KvHash, PeerError> {
        if revision < 0 {
            return Err(PeerError::Rejected(format!("bad revision {revision}")));
        }
        let metrics = self.0.metrics().borrow().clone();
        Ok(KvHash {
            hash: metrics.id as u32,
            compact_revision: 1,
            revision: metrics.last_applied.map_or(0, |l| l.index as i64),
            hash_revision: revision,
        })
    }
}

// ---------------------------------------------------------------------------
// TLS material: one CA, one certificate per member (server and client auth,
// SANs 127.0.0.1 and localhost), mutual authentication as etcd's
// --peer-client-cert-auth.

/// What a member dials its peers with: its own certificate, trusting `ca`.
fn client_config(ca: &Ca, cn: &str) -> Arc<ClientConfig> {
    let (cert, key) = ca.leaf(cn, 1);
    let options = ClientTlsOptions::new(Trust::Cas(vec![Pem::bytes("peer CA", ca.pem())]))
        .identity(Identity {
            cert: Pem::bytes(cn, cert),
            key: Pem::bytes(cn, key),
        });
    oxetcd_tls::client_config(&options).unwrap()
}

/// An accepted TLS connection, for tonic's `serve_with_incoming`.
struct TlsConn(tokio_rustls::server::TlsStream<TcpStream>);

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------
// Clusters.

struct Member {
    raft: Raft<TypeConfig>,
    sm: KvStateMachine,
    network: Network,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
    acceptor: Option<JoinHandle<()>>,
}

impl Member {
    /// Stops raft and the peer server; the port is free afterwards.
    async fn stop(self) {
        self.raft.shutdown().await.unwrap();
        if let Some(acceptor) = self.acceptor {
            acceptor.abort();
            let _ = acceptor.await;
        }
        let _ = self.stop.send(());
        let mut server = self.server;
        if tokio::time::timeout(Duration::from_secs(3), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    config: Arc<Config>,
    pki: Option<Ca>,
    nodes: BTreeMap<NodeId, BasicNode>,
    members: BTreeMap<NodeId, Member>,
    /// Connections the members' peer servers accepted (TLS: handshaken).
    accepted: Arc<AtomicUsize>,
}

fn config(snapshots: bool) -> Arc<Config> {
    let mut config = Config {
        cluster_name: "network-test".into(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        ..Default::default()
    };
    if snapshots {
        config.snapshot_policy = SnapshotPolicy::LogsSinceLast(10);
        config.max_in_snapshot_log_to_keep = 0;
        config.purge_batch_size = 1;
        // Several chunks per snapshot.
        config.snapshot_max_chunk_size = 256;
    }
    Arc::new(config.validate().unwrap())
}

impl Cluster {
    /// Three members on 127.0.0.1 (https if `tls`), started, not initialized.
    async fn start(snapshots: bool, tls: bool) -> Cluster {
        let pki = tls.then(|| Ca::new("peer ca"));
        let mut listeners = BTreeMap::new();
        let mut nodes = BTreeMap::new();
        for id in 1..=3 {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let scheme = if tls { "https" } else { "http" };
            let addr = format!("{scheme}://{}", listener.local_addr().unwrap());
            nodes.insert(id, BasicNode::new(addr));
            listeners.insert(id, listener);
        }
        let mut cluster = Cluster {
            dir: tempfile::tempdir().unwrap(),
            config: config(snapshots),
            pki,
            nodes,
            members: BTreeMap::new(),
            accepted: Arc::new(AtomicUsize::new(0)),
        };
        for (id, listener) in listeners {
            cluster.launch(id, listener).await;
        }
        cluster
    }

    fn wal_dir(&self, id: NodeId) -> PathBuf {
        self.dir.path().join(format!("member-{id}"))
    }

    /// Starts member `id` (again) on `listener`, on its WAL directory, with
    /// an empty state machine.
    async fn launch(&mut self, id: NodeId, listener: TcpListener) {
        let wal = Wal::open(self.wal_dir(id), WalOptions::default()).unwrap();
        let sm = KvStateMachine::default();
        let client_tls = self
            .pki
            .as_ref()
            .map(|ca| client_config(ca, &format!("member-{id}")));
        let network = Network::new(id, client_tls);
        let raft = Raft::new(
            id,
            self.config.clone(),
            network.clone(),
            LogStore::new(wal),
            sm.clone(),
        )
        .await
        .unwrap();
        let service = PeerService::new(raft.clone(), Arc::new(Duties(raft.clone())));
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let router = tonic::transport::Server::builder().add_service(service.into_server());
        let (server, acceptor) = match &self.pki {
            None => {
                let accepted = self.accepted.clone();
                let incoming = TcpListenerStream::new(listener).map(move |conn| {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    conn
                });
                let server = tokio::spawn(async move {
                    router
                        .serve_with_incoming_shutdown(incoming, shutdown)
                        .await
                        .unwrap();
                });
                (server, None)
            }
            Some(pki) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(
                    pki.server_config(&format!("member-{id}"), true),
                );
                let (tx, rx) = mpsc::channel::<std::io::Result<TlsConn>>(16);
                let accepted = self.accepted.clone();
                let accept_loop = tokio::spawn(async move {
                    while let Ok((tcp, _)) = listener.accept().await {
                        let acceptor = acceptor.clone();
                        let tx = tx.clone();
                        let accepted = accepted.clone();
                        tokio::spawn(async move {
                            // Failed handshakes are the client's business.
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                accepted.fetch_add(1, Ordering::Relaxed);
                                let _ = tx.send(Ok(TlsConn(tls))).await;
                            }
                        });
                    }
                });
                let incoming = ReceiverStream::new(rx);
                let server = tokio::spawn(async move {
                    router
                        .serve_with_incoming_shutdown(incoming, shutdown)
                        .await
                        .unwrap();
                });
                (server, Some(accept_loop))
            }
        };
        let member = Member {
            raft,
            sm,
            network,
            stop,
            server,
            acceptor,
        };
        self.members.insert(id, member);
    }

    async fn initialize(&self) {
        self.members[&1]
            .raft
            .initialize(self.nodes.clone())
            .await
            .unwrap();
    }

    /// Each member dials each other member once at most, however many
    /// calls (heartbeats, votes, forwards) it made: the channels are reused.
    fn assert_connections_reused(&self) {
        let accepted = self.accepted.load(Ordering::Relaxed);
        assert!((2..=6).contains(&accepted), "{accepted} connections");
    }

    fn member(&self, id: NodeId) -> &Member {
        &self.members[&id]
    }

    /// Waits until every running member follows the same leader, which is
    /// running and leading, and is not `not`.
    async fn leader(&self, not: Option<NodeId>) -> NodeId {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen: Vec<Option<NodeId>> = self
                .members
                .values()
                .map(|m| m.raft.metrics().borrow().current_leader)
                .collect();
            if let Some(Some(leader)) = seen.first().copied() {
                if seen.iter().all(|l| *l == Some(leader))
                    && Some(leader) != not
                    && self
                        .members
                        .get(&leader)
                        .is_some_and(|m| m.raft.metrics().borrow().state == ServerState::Leader)
                {
                    return leader;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader: {seen:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every running member has applied `index`.
    async fn applied_everywhere(&self, index: u64) {
        for (id, m) in &self.members {
            m.raft
                .wait(Some(Duration::from_secs(10)))
                .applied_index_at_least(Some(index), format!("member {id} applies {index}"))
                .await
                .unwrap();
        }
    }

    /// A member other than `leader` (and not `also_not`).
    fn follower(&self, leader: NodeId, also_not: Option<NodeId>) -> NodeId {
        *self
            .members
            .keys()
            .find(|id| **id != leader && Some(**id) != also_not)
            .unwrap()
    }

    async fn write(&self, leader: NodeId, command: &str) -> (u64, Bytes) {
        let resp = self
            .member(leader)
            .raft
            .client_write(Request::from(command.as_bytes().to_vec()))
            .await
            .unwrap();
        (resp.log_id.index, resp.data.0)
    }

    async fn stop(&mut self, id: NodeId) -> u16 {
        let member = self.members.remove(&id).unwrap();
        member.stop().await;
        port(&self.nodes[&id])
    }

    async fn shutdown(mut self) {
        let ids: Vec<_> = self.members.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}

fn port(node: &BasicNode) -> u16 {
    let addr: SocketAddr = node.addr.rsplit_once("://").unwrap().1.parse().unwrap();
    addr.port()
}

fn kv(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicates_forwards_reads_and_fails_over() {
    let mut cluster = Cluster::start(false, false).await;
    cluster.initialize().await;
    let leader = cluster.leader(None).await;
    let follower = cluster.follower(leader, None);
    let other = cluster.follower(leader, Some(follower));
    let leader_node = cluster.nodes[&leader].clone();

    // Append-entries above 64 KiB go as unary calls, the rest on the
    // standing stream: both reach every member.
    let big = "x".repeat(100 << 10);
    let (index, prev) = cluster.write(leader, &format!("a={big}")).await;
    assert!(prev.is_empty());
    cluster.applied_everywhere(index).await;
    for m in cluster.members.values() {
        assert_eq!(m.sm.kv()["a"].len(), big.len());
    }

    // A write at the leader reaches every member.
    let (index, prev) = cluster.write(leader, "a=1").await;
    assert_eq!(prev.len(), big.len(), "the previous value of a");
    cluster.applied_everywhere(index).await;
    for m in cluster.members.values() {
        assert_eq!(m.sm.kv(), kv(&[("a", "1")]));
    }

    // A follower forwards writes to the leader and gets the responses.
    let peers = cluster.member(follower).network.peer_client();
    let resp = peers
        .forward(leader, &leader_node, Bytes::from_static(b"b=2"))
        .await
        .unwrap();
    assert!(resp.is_empty());
    let resp = peers
        .forward(leader, &leader_node, Bytes::from_static(b"a=3"))
        .await
        .unwrap();
    assert_eq!(resp, Bytes::from_static(b"1"), "the previous value of a");

    // ReadIndex: at least the last write's index, which is then applied here.
    let read_index = peers.read_index(leader, &leader_node).await.unwrap();
    let last = cluster.member(leader).raft.metrics().borrow().last_applied;
    assert!(read_index >= index + 2, "{read_index} vs {last:?}");
    cluster
        .member(follower)
        .raft
        .wait(Some(Duration::from_secs(5)))
        .applied_index_at_least(Some(read_index), "read index applied")
        .await
        .unwrap();
    assert_eq!(
        cluster.member(follower).sm.kv(),
        kv(&[("a", "3"), ("b", "2")])
    );

    // A member that is not the leader says who is.
    let not_leader = cluster.nodes[&other].clone();
    let err = peers
        .forward(other, &not_leader, Bytes::from_static(b"c=1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PeerError::NotLeader { leader_id: Some(l), leader_node: Some(n) }
            if *l == leader && *n == leader_node),
        "{err}"
    );
    assert!(err.not_delivered());
    let err = peers.read_index(other, &not_leader).await.unwrap_err();
    assert!(matches!(err, PeerError::NotLeader { .. }), "{err}");
    // Any member answers HashKV, and its refusal comes back as it was sent.
    let hash = peers.hash_kv(other, &not_leader, 7).await.unwrap();
    assert_eq!((hash.hash, hash.hash_revision), (other as u32, 7));
    assert!(hash.revision > 0, "{hash:?}");
    let err = peers.hash_kv(other, &not_leader, -1).await.unwrap_err();
    assert_eq!(err, PeerError::Rejected("bad revision -1".into()));
    cluster.assert_connections_reused();

    // The leader goes away: the others elect a new one, writes go on.
    cluster.stop(leader).await;
    let new_leader = cluster.leader(Some(leader)).await;
    assert_ne!(new_leader, leader);
    let (index, _) = cluster.write(new_leader, "d=4").await;
    let survivor = cluster.follower(new_leader, None);
    let peers = cluster.member(survivor).network.peer_client();
    let new_leader_node = cluster.nodes[&new_leader].clone();
    peers
        .forward(new_leader, &new_leader_node, Bytes::from_static(b"e=5"))
        .await
        .unwrap();
    cluster.applied_everywhere(index + 1).await;
    for m in cluster.members.values() {
        assert_eq!(
            m.sm.kv(),
            kv(&[("a", "3"), ("b", "2"), ("d", "4"), ("e", "5")])
        );
    }

    // The old leader is unreachable, and said so.
    let err = peers
        .with_timeout(Duration::from_secs(2))
        .read_index(leader, &leader_node)
        .await
        .unwrap_err();
    assert!(matches!(err, PeerError::Unreachable { .. }), "{err}");
    assert!(err.not_delivered());

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_index_asks_share_a_stream_that_reopens_after_the_leader_restarts() {
    let mut cluster = Cluster::start(false, false).await;
    cluster.initialize().await;
    let leader = cluster.leader(None).await;
    let follower = cluster.follower(leader, None);
    let leader_node = cluster.nodes[&leader].clone();
    let (index, _) = cluster.write(leader, "a=1").await;

    // Many asks at once, on the one stream: each gets its own answer.
    let peers = cluster.member(follower).network.peer_client();
    let asks: Vec<_> = (0..20)
        .map(|_| {
            let (peers, node) = (peers.clone(), leader_node.clone());
            tokio::spawn(async move { peers.read_index(leader, &node).await })
        })
        .collect();
    for ask in asks {
        let read_index = ask.await.unwrap().unwrap();
        assert!(read_index >= index, "{read_index} < {index}");
    }
    cluster.assert_connections_reused();

    // The leader stops and comes back on the same address as a follower.
    // Its server ends the stream when its Raft stops (in this harness the
    // stopped member's server shuts down gracefully, keeping connections
    // with open streams). The asks then move to a new stream, which reaches
    // the new member: it says it does not lead. On the way, an ask may meet
    // the old stream or connection closing.
    let port = cluster.stop(leader).await;
    let new_leader = cluster.leader(Some(leader)).await;
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    cluster.launch(leader, listener).await;
    let mut answers = Vec::new();
    for _ in 0..5 {
        let err = peers.read_index(leader, &leader_node).await.unwrap_err();
        let reached = matches!(err, PeerError::NotLeader { .. });
        answers.push(err.to_string());
        if reached {
            break;
        }
        assert!(
            matches!(
                err,
                PeerError::Stopped(_) | PeerError::Transport { .. } | PeerError::Unreachable { .. }
            ),
            "{answers:?}"
        );
    }
    assert!(
        answers.len() < 5,
        "never reached the restarted member: {answers:?}"
    );
    let new_leader_node = cluster.nodes[&new_leader].clone();
    let read_index = peers
        .read_index(new_leader, &new_leader_node)
        .await
        .unwrap();
    assert!(read_index > index);

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_follower_catches_up_by_snapshot() {
    let mut cluster = Cluster::start(true, false).await;
    cluster.initialize().await;
    let leader = cluster.leader(None).await;
    let follower = cluster.follower(leader, None);
    let mut expected = BTreeMap::new();
    let mut index = 0;
    for i in 0..3 {
        (index, _) = cluster.write(leader, &format!("early{i}=x")).await;
        expected.insert(format!("early{i}"), "x".to_string());
    }
    cluster.applied_everywhere(index).await;
    let follower_last = cluster
        .member(follower)
        .raft
        .metrics()
        .borrow()
        .last_log_index
        .unwrap();

    // The follower is down while the others go on, snapshot and purge the
    // log it would need.
    let follower_port = cluster.stop(follower).await;
    for i in 0..40 {
        let value = format!("value-{i}-{}", "v".repeat(20));
        (index, _) = cluster.write(leader, &format!("key{i:02}={value}")).await;
        expected.insert(format!("key{i:02}"), value);
    }
    cluster
        .member(leader)
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index > follower_last + 10),
            "leader purged past the follower's log",
        )
        .await
        .unwrap();

    // Back on the same port and WAL, with an empty state machine: the leader
    // no longer has the entries it misses, so it sends a snapshot.
    let listener = TcpListener::bind(("127.0.0.1", follower_port))
        .await
        .unwrap();
    cluster.launch(follower, listener).await;
    cluster.applied_everywhere(index).await;
    let back = cluster.member(follower);
    assert!(
        back.sm.state().installed >= 1,
        "caught up without a snapshot"
    );
    assert_eq!(back.sm.kv(), expected);
    assert_eq!(cluster.member(leader).sm.kv(), expected);

    // And it follows the log again after the snapshot.
    let (index, _) = cluster.write(leader, "after=snapshot").await;
    cluster.applied_everywhere(index).await;
    assert_eq!(
        cluster
            .member(follower)
            .sm
            .kv()
            .get("after")
            .map(String::as_str),
        Some("snapshot")
    );

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_over_mutual_tls() {
    let cluster = Cluster::start(false, true).await;
    assert!(cluster.nodes[&1].addr.starts_with("https://"));
    cluster.initialize().await;
    let leader = cluster.leader(None).await;
    let follower = cluster.follower(leader, None);
    let leader_node = cluster.nodes[&leader].clone();

    let (index, _) = cluster.write(leader, "tls=yes").await;
    let peers = cluster.member(follower).network.peer_client();
    peers
        .forward(
            leader,
            &leader_node,
            Bytes::from_static(b"forwarded=over tls"),
        )
        .await
        .unwrap();
    let read_index = peers.read_index(leader, &leader_node).await.unwrap();
    assert!(read_index > index);
    cluster.applied_everywhere(read_index).await;
    for m in cluster.members.values() {
        assert_eq!(m.sm.kv(), kv(&[("forwarded", "over tls"), ("tls", "yes")]));
    }

    cluster.assert_connections_reused();

    // A member that trusts another CA cannot talk to them; neither can one
    // without TLS.
    let stranger = Ca::new("other ca");
    let outsider = Network::new(9, Some(client_config(&stranger, "outsider"))).peer_client();
    let err = outsider.read_index(leader, &leader_node).await.unwrap_err();
    assert!(matches!(err, PeerError::Unreachable { .. }), "{err}");
    let plain = Network::new(9, None).peer_client();
    let err = plain.read_index(leader, &leader_node).await.unwrap_err();
    assert!(
        matches!(&err, PeerError::Unreachable { reason, .. } if reason.contains("needs TLS")),
        "{err}"
    );

    cluster.shutdown().await;
}
