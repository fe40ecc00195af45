//! The plain HTTP endpoints etcd serves on its client URLs: the health
//! endpoints (`super::health`: load balancers and liveness probes),
//! `/metrics` (`super::metrics`) and `/version`. They share the port with
//! gRPC. --listen-metrics-urls serve the health endpoints and `/metrics`.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::Shared;
use crate::config::ETCD_API_VERSION;

/// The cluster version etcd reports next to its own: the minor series.
fn cluster_version() -> String {
    let minor: Vec<&str> = ETCD_API_VERSION.split('.').take(2).collect();
    format!("{}.0", minor.join("."))
}

pub fn router(node: Shared) -> Router {
    Router::new()
        .route("/version", get(version))
        .merge(metrics_router(node))
}

/// What --listen-metrics-urls serve, as etcd: /metrics and the health
/// endpoints.
pub fn metrics_router(node: Shared) -> Router {
    super::metrics::router(node.clone()).merge(super::health::router(node))
}

/// Unknown paths: gRPC clients get the Unimplemented status they expect for a
/// service this member does not serve; plain HTTP clients get 404.
pub async fn not_found(request: Request<Body>) -> Response {
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        let path = request.uri().path().to_string();
        return tonic::Status::unimplemented(format!("unknown service or method {path}"))
            .into_http::<Body>();
    }
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

async fn version() -> Json<Value> {
    Json(json!({ "etcdserver": ETCD_API_VERSION, "etcdcluster": cluster_version() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_version_is_the_minor_series() {
        assert!(cluster_version().starts_with("3.5"));
        assert!(cluster_version().ends_with(".0"));
    }
}
