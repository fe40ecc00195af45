//! Start-up, top to bottom: data dir, store, watch hub, write path, identity, TLS,
//! listeners, services. Each part lives in its own module.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use oxetcd_proto::etcdserverpb::cluster_server::ClusterServer;
use oxetcd_proto::etcdserverpb::kv_server::KvServer;
use oxetcd_proto::etcdserverpb::lease_server::LeaseServer;
use oxetcd_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use oxetcd_proto::v3electionpb::election_server::ElectionServer;
use oxetcd_proto::v3lockpb::lock_server::LockServer;
use oxetcd_storage::{SledBackend, StorageError, Store, WriteBuffer, FLUSH_INTERVAL};
use oxetcd_watch::{WatchConfig, WatchHub};
use tonic::service::Routes;
use tracing::{info, warn};

use crate::apply;
use crate::config::{ClusterState, Config};
use crate::datadir::{DataDir, DataDirError};
use crate::gateway;
use crate::ids;
use crate::lease::{self, Lessor};
use crate::listener::{self, ListenError};
use crate::replication::{LeaderSeen, RaftSettings, Replication, ReplicationError};
use crate::service::{
    http, ClusterService, ElectionService, KvService, LeaseService, Local, LockService,
    MaintenanceService, Node, WatchServer, WatchService,
};
use crate::tls::{self, TlsError};
use crate::write::command::{MemberAttributes, Request as Cmd};

/// sled's page cache.
const STORE_CACHE_BYTES: u64 = 512 << 20;
/// gRPC framing on top of the largest request etcd accepts (etcd's
/// grpcOverheadBytes), so that oversized requests get etcd's own error.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// How long in-flight requests get to finish after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("cannot open the store: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("serving failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    #[error("raft: {0}")]
    Raft(String),
}

/// Runs a member until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), StartError> {
    let data_dir = DataDir::prepare(&config.data_dir)?;
    let engine = SledBackend::open(&data_dir.kv_path(), STORE_CACHE_BYTES)?;
    let backend = WriteBuffer::new(Box::new(engine), FLUSH_INTERVAL)?;
    let store = Arc::new(Store::open(Box::new(backend))?);
    let watch_config = WatchConfig {
        progress_notify_interval: config.watch_progress_notify_interval,
        ..WatchConfig::default()
    };
    let hub = WatchHub::start(store.clone(), watch_config);

    let identity = Identity::of(&config);
    let peer_hosts: Vec<String> = config
        .listen_peer_urls
        .iter()
        .map(|u| u.host.clone())
        .collect();
    let peer_server_tls =
        tls::server_config(&config.peer_tls, &config.data_dir, "peer", &peer_hosts)?;
    let peer_client_tls = tls::peer_client_config(&config.peer_tls, &config.data_dir, &peer_hosts)?;
    let settings = RaftSettings {
        id: identity.member_id,
        cluster_token: config.initial_cluster_token.clone(),
        heartbeat_interval: config.heartbeat_interval,
        election_timeout: config.election_timeout,
        snapshot_count: config.snapshot_count,
        strict_reconfig_check: config.strict_reconfig_check,
    };
    // Members of a new cluster bootstrap it together; a member joining an
    // existing one waits to be added (MemberAdd on the cluster).
    let bootstrap =
        (config.initial_cluster_state == ClusterState::New).then(|| identity.members.clone());
    let lessor = Arc::new(Lessor::new(
        Lessor::min_ttl_for(config.election_timeout),
        config.lease_checkpoint,
    ));
    let replication = Arc::new(
        Replication::start(
            &data_dir.raft_path(),
            store.clone(),
            hub.clone(),
            lessor,
            &settings,
            bootstrap,
            peer_client_tls,
        )
        .await?,
    );
    // Known now unless this member is joining: then once it has learned it.
    let known_cluster_id = apply::recorded_cluster_id(&store)
        .map_err(|e| StartError::Raft(e.to_string()))?
        .or((config.initial_cluster_state == ClusterState::New).then_some(identity.cluster_id));
    if let Some(id) = known_cluster_id {
        replication.set_cluster_id(id);
    }
    let peer_listeners = listener::bind(&config.listen_peer_urls, peer_server_tls, "peer").await?;
    let peers =
        tonic::transport::Server::builder().add_service(replication.peer_service().into_server());
    tokio::spawn(async move {
        if let Err(e) = peers.serve_with_incoming(peer_listeners.incoming()).await {
            tracing::error!(error = %e, "peer service stopped");
        }
    });
    // Elections go to the log as etcd's do. A Raft core that stopped (a
    // panic, a fatal storage error) leaves a member that can answer nothing:
    // exit, so that a supervisor restarts it from the durable state, as etcd
    // panics.
    let mut role = replication.subscribe_role();
    tokio::spawn(async move {
        let mut seen = LeaderSeen::default();
        loop {
            let line = {
                let m = role.borrow_and_update();
                seen.update(m.id, m.current_leader, m.vote.leader_id().get_term())
            };
            if let Some(line) = line {
                info!("{line}");
            }
            if role.changed().await.is_err() {
                break;
            }
        }
        tracing::error!(
            "the Raft core stopped: exiting so that a restart recovers from the durable state"
        );
        std::process::exit(1);
    });
    tokio::spawn(lease::run_leader_duties(
        replication.clone(),
        config.election_timeout,
    ));
    // Like etcd, serve clients once the cluster has a leader.
    replication
        .wait_for_leader()
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    if data_dir.imported_store_needs_snapshot() {
        // Members that join later must get the imported data by snapshot.
        replication
            .snapshot_and_purge_log()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        data_dir.imported_store_snapshotted()?;
    }

    // The cluster ID is replicated state, as in etcd: members that bootstrap
    // a cluster record the one derived from --initial-cluster; a member that
    // joins learns it from the cluster.
    let cluster_id = match known_cluster_id {
        Some(id) => id,
        None => wait_for_cluster_id(&store).await,
    };
    replication.set_cluster_id(cluster_id);
    let member_id = identity.member_id;
    let node = Arc::new(Node {
        store,
        replication,
        cluster_id,
        member_id,
        max_txn_ops: config.max_txn_ops,
        max_request_bytes: config.max_request_bytes,
        quota_backend_bytes: config.quota_backend_bytes,
        failpoint_stale_reads: std::env::var_os("OXETCD_FAILPOINT_STALE_READS")
            .is_some_and(|v| v == "1"),
    });

    if node.failpoint_stale_reads {
        warn!("OXETCD_FAILPOINT_STALE_READS is set: linearizable reads may be stale (a test failpoint)");
    }
    let client_hosts: Vec<String> = config
        .listen_client_urls
        .iter()
        .map(|u| u.host.clone())
        .collect();
    let client_tls = tls::server_config(
        &config.client_tls,
        &config.data_dir,
        "client",
        &client_hosts,
    )?;

    let listeners = listener::bind(&config.listen_client_urls, client_tls, "client").await?;
    let max_message = config.max_request_bytes + GRPC_OVERHEAD_BYTES;
    // Lease IDs chosen by this member: for grants, and the sessions of locks
    // and campaigns that come without a lease.
    let lease_ids = Arc::new(ids::IdGenerator::new(member_id));
    let local = Local::new(node.clone(), hub.clone(), lease_ids.clone());
    let grpc = Routes::new(
        KvServer::new(KvService::new(node.clone()))
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(usize::MAX),
    )
    .add_service(LockServer::new(LockService::new(local.clone())))
    .add_service(ElectionServer::new(ElectionService::new(local)))
    .add_service(
        WatchServer::new(WatchService::new(node.clone(), hub))
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(usize::MAX),
    )
    .add_service(ClusterServer::new(ClusterService::new(node.clone())))
    .add_service(LeaseServer::new(LeaseService::new(
        node.clone(),
        lease_ids.clone(),
    )))
    .add_service(
        MaintenanceServer::new(MaintenanceService::new(node.clone()))
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(usize::MAX),
    );
    // etcd's JSON gateway calls the same services in-process.
    // (Auth is not served yet: its calls get the same Unimplemented as over gRPC.)
    let json_gateway = gateway::Gateway::new(
        Routes::from(grpc.clone().into_axum_router().fallback(http::not_found)),
        config.max_concurrent_streams,
        config.max_request_bytes,
    );
    // gRPC and etcd's plain HTTP endpoints share the client port, as in etcd.
    let routes = Routes::from(
        grpc.into_axum_router()
            .merge(http::router(node.clone()))
            .merge(gateway::router(json_gateway))
            .fallback(http::not_found),
    );
    let router = tonic::transport::Server::builder()
        .accept_http1(true)
        // etcd's default (u32::MAX) is no limit: leave hyper's settings alone.
        .max_concurrent_streams(
            (config.max_concurrent_streams != u32::MAX).then_some(config.max_concurrent_streams),
        )
        .add_routes(routes);
    publish(
        &node,
        MemberAttributes {
            member_id,
            name: config.name.clone(),
            client_urls: config.advertise_client_urls.clone(),
            cluster_id: if config.initial_cluster_state == ClusterState::New {
                cluster_id
            } else {
                0
            },
        },
    )
    .await;
    // etcd's announcement of the cluster version; etcd's tests wait for it.
    let cluster_version = crate::config::ETCD_API_VERSION
        .rsplit_once('.')
        .map_or(crate::config::ETCD_API_VERSION, |(major_minor, _)| {
            major_minor
        });
    info!("enabled capabilities for version {cluster_version}");
    info!(
        name = %config.name,
        member_id = %format!("{member_id:x}"),
        cluster_id = %format!("{cluster_id:x}"),
        addresses = ?listeners.local_addrs(),
        "ready to serve client requests"
    );
    router
        .serve_with_incoming_shutdown(listeners.incoming(), shutdown_signal())
        .await?;
    Ok(())
}

/// Who we are and who the members are, as etcd derives member and cluster
/// IDs from --initial-cluster and --initial-cluster-token.
struct Identity {
    member_id: u64,
    cluster_id: u64,
    /// Every member of the initial cluster, at its first peer URL.
    members: BTreeMap<u64, BasicNode>,
}

impl Identity {
    fn of(config: &Config) -> Self {
        let mut by_name: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (name, url) in &config.initial_cluster {
            by_name.entry(name.as_str()).or_default().push(url.clone());
        }
        let members: BTreeMap<u64, BasicNode> = by_name
            .values()
            .map(|urls| {
                let id = ids::member_id(urls, &config.initial_cluster_token);
                (id, BasicNode::new(urls[0].clone()))
            })
            .collect();
        let member_ids: Vec<u64> = members.keys().copied().collect();
        Self {
            member_id: ids::member_id(
                &config.initial_advertise_peer_urls,
                &config.initial_cluster_token,
            ),
            cluster_id: ids::cluster_id(&member_ids),
            members,
        }
    }
}

/// Publishes this member's name and client URLs through the log, retrying
/// until the cluster takes it; like etcd, a member serves clients only after.
async fn publish(node: &Node, attributes: MemberAttributes) {
    while let Err(e) = node.write(Cmd::Publish(attributes.clone())).await {
        warn!(error = %e, "cannot publish this member's attributes yet; retrying");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A follower's write returns once the leader applied it; etcd serves once
    // the member applied its own publish, so its member list names itself
    // (e2e's memberToRemove reads this member's list right after start).
    while let Err(e) = node.replication.read_barrier().await {
        warn!(error = %e, "cannot catch up with the published attributes yet; retrying");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the cluster's ID has reached this joining member's store.
async fn wait_for_cluster_id(store: &Store) -> u64 {
    loop {
        if let Ok(Some(id)) = apply::recorded_cluster_id(store) {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resolves on SIGINT or SIGTERM, and makes sure the process ends soon after
/// even if a client holds a stream open.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot watch SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
            return exit_after_grace();
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    exit_after_grace();
}

fn exit_after_grace() {
    info!("received a stop signal, stopping");
    // Every acknowledged write is already durable: nothing is lost by exiting.
    tokio::spawn(async {
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        std::process::exit(0);
    });
}
