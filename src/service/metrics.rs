//! `/metrics`: etcd's Prometheus endpoint, on the client URLs and on
//! --listen-metrics-urls. The counters and histograms are counted where
//! their events happen (`oxetcd_metrics`); the gauges whose truth the member
//! keeps anyway (leadership, applied index, sizes, keys) are read from it
//! here, at each scrape, so that requests pay nothing for them.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use oxetcd_server::EtcdServer;
use tracing::warn;

use super::Shared;

/// The etcd release whose metrics this exports: names, types, labels and
/// buckets are checked against it (Debian's etcd 3.4.23), and
/// etcd_server_version / etcd_cluster_version name it, as etcd's dashboards
/// and its e2e tests read them. The API version oxetcd claims elsewhere
/// (Status, /version) is `crate::config::ETCD_API_VERSION`.
const ETCD_METRICS_VERSION: &str = "3.4.23";

pub fn router(node: Shared) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(node)
}

/// Names this member in etcd_server_id, etcd_server_version and
/// etcd_cluster_version; once, at start.
pub fn set_identity(node: &EtcdServer) {
    let cluster = ETCD_METRICS_VERSION
        .rsplit_once('.')
        .map_or(ETCD_METRICS_VERSION, |(major_minor, _)| major_minor);
    oxetcd_metrics::server().set_identity(node.member_id(), ETCD_METRICS_VERSION, cluster);
}

async fn metrics(State(node): State<Shared>) -> Response {
    // The sizes need a stat and, for redb, a transaction that waits for
    // the store's flusher: off the async workers.
    let read = tokio::task::spawn_blocking(move || read_gauges(&node)).await;
    if let Err(e) = read {
        warn!(error = %e, "reading the gauges for /metrics failed");
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    (
        [(header::CONTENT_TYPE, oxetcd_metrics::CONTENT_TYPE)],
        oxetcd_metrics::encode(),
    )
        .into_response()
}

/// Sets the gauges from the member's state now.
fn read_gauges(node: &EtcdServer) {
    let raft = node.raft_metrics();
    let server = oxetcd_metrics::server();
    server
        .has_leader
        .set(i64::from(raft.current_leader.is_some()));
    server
        .is_leader
        .set(i64::from(raft.current_leader == Some(raft.id)));
    if let Some(applied) = raft.last_applied {
        server
            .proposals_applied_total
            .set(i64::try_from(applied.index).unwrap_or(i64::MAX));
    }
    server.quota_backend_bytes.set(node.quota_bytes() as f64);
    let mvcc = oxetcd_metrics::mvcc();
    let store = node.store();
    mvcc.keys_total.set(store.live_keys());
    // A failed measurement keeps the last value (and says so in the log).
    match store.size_on_disk() {
        Ok(size) => mvcc
            .db_total_size_in_bytes
            .set(i64::try_from(size).unwrap_or(i64::MAX)),
        Err(e) => warn!(error = %e, "cannot measure the store's size for /metrics"),
    }
    match store.size_in_use() {
        Ok(size) => mvcc
            .db_total_size_in_use_in_bytes
            .set(i64::try_from(size).unwrap_or(i64::MAX)),
        Err(e) => warn!(error = %e, "cannot measure the store's size in use for /metrics"),
    }
}
