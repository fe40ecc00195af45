//! The HTTPS front: a TLS accept loop serving HTTP/2 and HTTP/1.1 (ALPN) with
//! hyper 1, authentication, content negotiation, and the one place where
//! every [`ApiError`] becomes a Status response.
//!
//! hyper rather than axum: Kubernetes paths are parsed by our own
//! [`route`](crate::route) (what is a resource depends on the registry, not on
//! a fixed route table), so a router would add nothing, and a watch is a
//! streamed body that hyper takes as it is.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::auth::Tokens;
use crate::discovery;
use crate::error::ApiError;
use crate::rest::{Api, Query, Reply, Request};
use crate::route::{self, Route};
use crate::schema::openapi;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// kube-apiserver's cap on request bodies (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub struct App {
    pub api: Api,
    pub tokens: Tokens,
    /// host:port clients reach this server at (for /api).
    pub address: String,
    /// Where /healthz checks the store (a plain Get; the key need not exist).
    pub health_key: String,
}

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, app: Arc<App>) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!("accept: {e}");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    debug!(%peer, "TLS handshake: {e}");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.handle(req).await) }
            });
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                debug!(%peer, "connection: {e}");
            }
        });
    }
}

fn full(code: u16, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body).boxed_unsync());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(code: u16, body: &Value) -> Response<Body> {
    full(code, "application/json", Bytes::from(body.to_string()))
}

/// The one mapping of errors to responses.
fn error(e: &ApiError) -> Response<Body> {
    json(e.code(), &e.status())
}

fn streamed(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Response<Body> {
    let frames = stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(frames).boxed_unsync());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// True when the client takes plain JSON: no Accept, or an entry for
/// application/json (or a wildcard) that does not ask for another shape
/// (as=Table, as=APIGroupDiscoveryList: not served).
fn accepts_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return true;
    };
    accept.split(',').any(|entry| {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let reshaped = parts.any(|p| {
            let key = p.split('=').next().unwrap_or("").trim();
            matches!(key, "as" | "g" | "v")
        });
        matches!(media.as_str(), "application/json" | "*/*" | "application/*") && !reshaped
    })
}

fn media_type(v: Option<&HeaderValue>) -> Option<String> {
    let s = v?.to_str().ok()?;
    let media = s.split(';').next()?.trim().to_ascii_lowercase();
    (!media.is_empty()).then_some(media)
}

impl App {
    async fn handle(&self, req: hyper::Request<Incoming>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let resp = match self.route(req).await {
            Ok(r) => r,
            Err(e) => error(&e),
        };
        debug!(%method, %path, status = resp.status().as_u16());
        resp
    }

    async fn route(&self, req: hyper::Request<Incoming>) -> Result<Response<Body>, ApiError> {
        let route = route::parse(req.uri().path());
        let public = matches!(route, Route::Version | Route::Health);
        if !public {
            let auth = req
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if self.tokens.authenticate(auth).is_none() {
                return Err(ApiError::Unauthorized);
            }
        }
        match route {
            Route::Health => return Ok(self.health().await),
            // Unknown paths are 404 whatever the client accepts (kubectl
            // tells a missing OpenAPI document from a broken one by it).
            Route::Unknown => return Err(ApiError::UnknownPath),
            _ => {}
        }
        let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
        if !accepts_json(accept) {
            return Err(ApiError::NotAcceptable);
        }
        let discovery_only = |doc: Option<Value>| -> Result<Response<Body>, ApiError> {
            if req.method() != Method::GET {
                return Err(ApiError::MethodNotAllowed {
                    verb: req.method().to_string(),
                    resource: "discovery".into(),
                });
            }
            doc.map(|d| json(200, &d)).ok_or(ApiError::UnknownPath)
        };
        match route {
            Route::Version => discovery_only(Some(discovery::version())),
            Route::CoreVersions => discovery_only(Some(discovery::core_versions(&self.address))),
            Route::Groups => discovery_only(Some(discovery::groups())),
            Route::Group(g) => discovery_only(discovery::group(&g)),
            Route::Resources { group, version } => {
                // /api/{v} is the core group only; /apis/{g}/{v} never is.
                discovery_only(discovery::resources(&group, &version))
            }
            Route::OpenApiV2 | Route::OpenApiV3Index | Route::OpenApiV3(_) => {
                if req.method() != Method::GET {
                    return Err(ApiError::MethodNotAllowed {
                        verb: req.method().to_string(),
                        resource: "openapi".into(),
                    });
                }
                let docs = openapi::documents();
                let doc = match &route {
                    Route::OpenApiV2 => Some(&docs.v2),
                    Route::OpenApiV3Index => Some(&docs.v3_index),
                    Route::OpenApiV3(gv) => docs.v3(gv),
                    _ => None,
                };
                doc.map(|d| full(200, "application/json", d.clone()))
                    .ok_or(ApiError::UnknownPath)
            }
            Route::Health | Route::Unknown => Err(ApiError::UnknownPath),
            Route::Resource(path) => {
                let method = req.method().clone();
                let query = Query::parse(req.uri().query());
                let content_type = media_type(req.headers().get(CONTENT_TYPE));
                let user_agent = req
                    .headers()
                    .get(USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                let body = Limited::new(req.into_body(), MAX_BODY)
                    .collect()
                    .await
                    .map_err(|_| ApiError::TooLarge(MAX_BODY))?
                    .to_bytes();
                let request = Request {
                    method,
                    path,
                    query,
                    content_type,
                    user_agent,
                    body,
                };
                Ok(match self.api.handle(request).await? {
                    Reply::Json { code, body } => json(code, &body),
                    Reply::Stream(rx) => streamed(rx),
                })
            }
        }
    }

    /// /healthz, /livez, /readyz: "ok" when the store answers a read.
    async fn health(&self) -> Response<Body> {
        match self.api.store().get(self.health_key.as_bytes()).await {
            Ok(_) => full(200, "text/plain; charset=utf-8", Bytes::from_static(b"ok")),
            Err(e) => {
                warn!("health check: store: {e}");
                full(
                    500,
                    "text/plain; charset=utf-8",
                    Bytes::from(format!("[-]etcd failed: {e}\nhealthz check failed\n")),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_serves_json_to_kubectl_and_refuses_other_shapes() {
        assert!(accepts_json(None));
        assert!(accepts_json(Some("application/json")));
        // kubectl get: Table first, JSON as the fallback.
        assert!(accepts_json(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        )));
        // Aggregated discovery with the legacy fallback.
        assert!(accepts_json(Some(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        )));
        assert!(accepts_json(Some("*/*")));
        assert!(!accepts_json(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io"
        )));
        assert!(!accepts_json(Some("application/vnd.kubernetes.protobuf")));
        assert!(!accepts_json(Some("application/yaml")));
    }

    #[test]
    fn content_types_lose_their_parameters() {
        let v = HeaderValue::from_static("application/merge-patch+json; charset=utf-8");
        assert_eq!(
            media_type(Some(&v)).as_deref(),
            Some("application/merge-patch+json")
        );
        assert_eq!(media_type(None), None);
    }
}
