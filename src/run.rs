//! Start-up of the front end, top to bottom: the member (`oxetcd_server`),
//! peer TLS and listeners, client TLS and listeners, the gRPC services, etcd's
//! plain HTTP endpoints and JSON gateway on the same port.

use std::sync::Arc;
use std::time::Duration;

use oxetcd_proto::etcdserverpb::auth_server::AuthServer;
use oxetcd_proto::etcdserverpb::cluster_server::ClusterServer;
use oxetcd_proto::etcdserverpb::kv_server::KvServer;
use oxetcd_proto::etcdserverpb::lease_server::LeaseServer;
use oxetcd_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use oxetcd_proto::v3electionpb::election_server::ElectionServer;
use oxetcd_proto::v3lockpb::lock_server::LockServer;
use oxetcd_server::{EtcdServer, ServerConfig, StartError as ServerStartError};
use tonic::service::Routes;
use tracing::{info, warn};

use crate::config::{ClusterState, Config};
use crate::gateway;
use crate::listener::{self, ListenError};
use crate::service::{
    grpc_metrics, http, metrics, AuthService, ClusterService, ElectionService, KvService,
    LeaseService, Local, LockService, MaintenanceService, WatchServer, WatchService,
};
use crate::tls::{self, TlsError};

/// gRPC framing on top of the largest request etcd accepts (etcd's
/// grpcOverheadBytes), so that oversized requests get etcd's own error.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// How long in-flight requests get to finish after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Server(#[from] ServerStartError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("serving failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// What the core takes of the flags.
fn server_config(
    config: &Config,
    peer_client_tls: Option<Arc<rustls::ClientConfig>>,
) -> ServerConfig {
    ServerConfig {
        name: config.name.clone(),
        data_dir: config.data_dir.clone(),
        wal_dir: config.wal_dir.clone(),
        initial_cluster: config.initial_cluster.clone(),
        initial_cluster_token: config.initial_cluster_token.clone(),
        initial_advertise_peer_urls: config.initial_advertise_peer_urls.clone(),
        advertise_client_urls: config.advertise_client_urls.clone(),
        new_cluster: config.initial_cluster_state == ClusterState::New,
        force_new_cluster: config.force_new_cluster,
        heartbeat_interval: config.heartbeat_interval,
        election_timeout: config.election_timeout,
        snapshot_count: config.snapshot_count,
        snapshot_catchup_entries: config.snapshot_catchup_entries,
        warning_apply_duration: config.warning_apply_duration,
        strict_reconfig_check: config.strict_reconfig_check,
        lease_checkpoint: config.lease_checkpoint,
        watch_progress_notify_interval: config.watch_progress_notify_interval,
        max_txn_ops: config.max_txn_ops,
        compaction_batch_limit: config.compaction_batch_limit,
        max_request_bytes: config.max_request_bytes,
        quota_backend_bytes: config.quota_backend_bytes,
        backend: config.backend,
        peer_client_tls,
        auth_token_ttl: config.auth_token_ttl,
        bcrypt_cost: config.bcrypt_cost,
        jwt: config.jwt.clone(),
        client_cert_auth: config.client_tls.client_cert_auth,
        failpoint_stale_reads: failpoint("OXETCD_FAILPOINT_STALE_READS"),
        failpoint_skip_wal_fsync: failpoint("OXETCD_FAILPOINT_SKIP_WAL_FSYNC"),
        failpoint_lease_expire_early: failpoint("OXETCD_FAILPOINT_LEASE_EXPIRE_EARLY"),
        failpoint_txn_half_applied: failpoint("OXETCD_FAILPOINT_TXN_HALF_APPLIED"),
        failpoint_stale_read_only_txn: failpoint("OXETCD_FAILPOINT_STALE_READ_ONLY_TXN"),
        failpoint_txn_reads_miss_own_writes: failpoint(
            "OXETCD_FAILPOINT_TXN_READS_MISS_OWN_WRITES",
        ),
        failpoint_forget_write_on_restart: failpoint("OXETCD_FAILPOINT_FORGET_WRITE_ON_RESTART"),
        watch_failpoints: oxetcd_watch::WatchFailpoints {
            drop_events: failpoint("OXETCD_FAILPOINT_WATCH_DROP_EVENTS"),
            duplicate_events: failpoint("OXETCD_FAILPOINT_WATCH_DUPLICATE_EVENTS"),
            reorder_events: failpoint("OXETCD_FAILPOINT_WATCH_REORDER_EVENTS"),
            start_late: failpoint("OXETCD_FAILPOINT_WATCH_START_LATE"),
            start_late_after_compaction: failpoint(
                "OXETCD_FAILPOINT_WATCH_START_LATE_AFTER_COMPACTION",
            ),
        },
        auto_compaction: config.auto_compaction,
        test_auto_compaction_interval: std::env::var("OXETCD_TEST_AUTO_COMPACTION_INTERVAL_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis),
        initial_corrupt_check: config.initial_corrupt_check,
        corrupt_check_interval: config.corrupt_check_interval,
    }
}

/// Whether the test failpoint `name` is set (to 1) in the environment.
fn failpoint(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v == "1")
}

/// Runs a member until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), StartError> {
    let hosts = |urls: &[crate::config::ListenUrl]| -> Vec<String> {
        urls.iter().map(|u| u.host.clone()).collect()
    };
    let peer_hosts = hosts(&config.listen_peer_urls);
    let peer_server_tls =
        tls::server_config(&config.peer_tls, &config.data_dir, "peer", &peer_hosts)?;
    let peer_client_tls = tls::peer_client_config(&config.peer_tls, &config.data_dir, &peer_hosts)?;
    let opened = EtcdServer::open(server_config(&config, peer_client_tls)).await?;
    let peer_listeners = listener::bind(&config.listen_peer_urls, peer_server_tls, "peer").await?;
    let peers =
        tonic::transport::Server::builder().add_service(opened.peer_service().into_server());
    tokio::spawn(async move {
        if let Err(e) = peers.serve_with_incoming(peer_listeners.incoming()).await {
            tracing::error!(error = %e, "peer service stopped");
        }
    });
    let server = opened.serve().await?;
    oxetcd_metrics::init(config.metrics);
    metrics::set_identity(&server);
    // A Raft core that stopped (a panic, a fatal storage error) leaves a
    // member that can answer nothing: exit, so that a supervisor restarts it
    // from the durable state, as etcd panics.
    let watched = server.clone();
    tokio::spawn(async move {
        watched.stopped().await;
        tracing::error!(
            "the Raft core stopped: exiting so that a restart recovers from the durable state"
        );
        std::process::exit(1);
    });

    let client_tls = tls::server_config(
        &config.client_tls,
        &config.data_dir,
        "client",
        &hosts(&config.listen_client_urls),
    )?;
    let listeners =
        listener::bind(&config.listen_client_urls, client_tls.clone(), "client").await?;
    serve_metrics_urls(&config, client_tls, server.clone()).await?;
    let max_message = config.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let local = Local::new(server.clone());
    let grpc = Routes::new(
        KvServer::new(KvService::new(server.clone()))
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(usize::MAX),
    )
    .add_service(LockServer::new(LockService::new(local.clone())))
    .add_service(ElectionServer::new(ElectionService::new(local)))
    .add_service(
        WatchServer::new(WatchService::new(server.clone()))
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(usize::MAX),
    )
    .add_service(AuthServer::new(AuthService::new(server.clone())))
    .add_service(ClusterServer::new(ClusterService::new(server.clone())))
    .add_service(LeaseServer::new(LeaseService::new(server.clone())))
    .add_service(
        MaintenanceServer::new(MaintenanceService::new(server.clone()))
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(usize::MAX),
    );
    // etcd's JSON gateway calls the same services in-process.
    let json_gateway = gateway::Gateway::new(
        Routes::from(grpc.clone().into_axum_router().fallback(http::not_found)),
        config.max_concurrent_streams,
        config.max_request_bytes,
    );
    // gRPC and etcd's plain HTTP endpoints share the client port, as in etcd.
    let routes = Routes::from(
        grpc.into_axum_router()
            .layer(grpc_metrics::GrpcMetricsLayer)
            .merge(http::router(server.clone()))
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
    // etcd's announcement of the cluster version; etcd's tests wait for it.
    let cluster_version = crate::config::ETCD_API_VERSION
        .rsplit_once('.')
        .map_or(crate::config::ETCD_API_VERSION, |(major_minor, _)| {
            major_minor
        });
    info!("enabled capabilities for version {cluster_version}");
    info!(
        name = %config.name,
        member_id = %format!("{:x}", server.member_id()),
        cluster_id = %format!("{:x}", server.cluster_id()),
        addresses = ?listeners.local_addrs(),
        "ready to serve client requests"
    );
    router
        .serve_with_incoming_shutdown(listeners.incoming(), shutdown_signal())
        .await?;
    Ok(())
}

/// Serves /metrics and the health endpoints on --listen-metrics-urls (none
/// by default), https ones with the client port's TLS setup, as etcd.
async fn serve_metrics_urls(
    config: &Config,
    client_tls: Option<Arc<rustls::ServerConfig>>,
    server: Arc<EtcdServer>,
) -> Result<(), StartError> {
    if config.listen_metrics_urls.is_empty() {
        return Ok(());
    }
    let listeners = listener::bind(&config.listen_metrics_urls, client_tls, "metrics").await?;
    info!(addresses = ?listeners.local_addrs(), "serving metrics");
    let routes = Routes::from(http::metrics_router(server).fallback(http::not_found));
    let metrics = tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(routes);
    tokio::spawn(async move {
        if let Err(e) = metrics.serve_with_incoming(listeners.incoming()).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(())
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
