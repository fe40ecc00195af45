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
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT, WARNING};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::auth::{self, Tokens, User};
use crate::discovery;
use crate::error::ApiError;
use crate::proto;
use crate::rest::{Api, Encoding, Query, Reply, Request, Warnings};
use crate::route::{self, Route};
use crate::schema::openapi;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// kube-apiserver's cap on request bodies (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// How much of an oversized body is read and dropped before the 413 is
/// sent: a client still sending when the server answers and closes would
/// otherwise lose the answer to a connection reset.
const MAX_DRAINED: usize = 64 * 1024 * 1024;

/// The request body, at most [`MAX_BODY`] bytes; over that a 413, after
/// draining up to [`MAX_DRAINED`] of what the client still sends.
async fn read_body(mut body: Incoming) -> Result<Bytes, ApiError> {
    let mut data = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        seen += chunk.len();
        if seen > MAX_DRAINED {
            break;
        }
        if seen <= MAX_BODY {
            data.extend_from_slice(&chunk);
        }
    }
    if seen > MAX_BODY {
        return Err(ApiError::TooLarge(MAX_BODY));
    }
    Ok(Bytes::from(data))
}

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
            // A client certificate here has been verified against
            // --client-ca-file by the handshake.
            let cert_user: Option<Arc<User>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(auth::certificate_user)
                .map(Arc::new);
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                let cert_user = cert_user.clone();
                async move { Ok::<_, Infallible>(app.handle(req, cert_user.as_deref()).await) }
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

fn streamed(rx: tokio::sync::mpsc::Receiver<Bytes>, content_type: &'static str) -> Response<Body> {
    let frames = stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(frames).boxed_unsync());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A `Warning` header value as kube-apiserver writes it: code 299, no agent,
/// the text quoted (RFC 7234 §5.5).
fn warning(text: &str) -> String {
    let quoted = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("299 - \"{quoted}\"")
}

/// A response shape a client may ask for in Accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Json,
    /// meta.k8s.io Table, of this version (v1 or v1beta1).
    Table(&'static str),
    /// apidiscovery.k8s.io APIGroupDiscoveryList, of this version (v2 or
    /// v2beta1).
    Discovery(&'static str),
    /// application/vnd.kubernetes.protobuf (built-in kinds' objects, lists
    /// and watches).
    Protobuf,
}

impl Shape {
    fn content_type(self) -> &'static str {
        match self {
            Shape::Json => "application/json",
            Shape::Protobuf => proto::MEDIA_TYPE,
            Shape::Table("v1beta1") => "application/json;as=Table;v=v1beta1;g=meta.k8s.io",
            Shape::Table(_) => "application/json;as=Table;v=v1;g=meta.k8s.io",
            Shape::Discovery("v2beta1") => {
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            }
            Shape::Discovery(_) => {
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            }
        }
    }

    fn same_kind(self, other: Shape) -> bool {
        std::mem::discriminant(&self) == std::mem::discriminant(&other)
    }
}

/// The first entry of Accept this route can answer with (no Accept: plain
/// JSON); None: 406. Entries asking for other shapes (YAML,
/// PartialObjectMetadata, protobuf where not offered) are passed over, so
/// their JSON fallback applies.
fn negotiate(accept: Option<&str>, offered: &[Shape]) -> Option<Shape> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(Shape::Json);
    };
    accept.split(',').find_map(|entry| {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let (mut as_, mut g, mut v) = (None, None, None);
        for p in parts {
            let (key, value) = p.split_once('=').unwrap_or((p, ""));
            match key.trim() {
                "as" => as_ = Some(value.trim()),
                "g" => g = Some(value.trim()),
                "v" => v = Some(value.trim()),
                _ => {}
            }
        }
        let json = matches!(media.as_str(), "application/json" | "*/*" | "application/*");
        let shape = match (json, as_, g, v) {
            (false, None, None, None) if media == proto::MEDIA_TYPE => Shape::Protobuf,
            (true, None, None, None) => Shape::Json,
            (true, Some("Table"), Some("meta.k8s.io"), Some("v1")) => Shape::Table("v1"),
            (true, Some("Table"), Some("meta.k8s.io"), Some("v1beta1")) => Shape::Table("v1beta1"),
            (true, Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some("v2")) => {
                Shape::Discovery("v2")
            }
            (true, Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some("v2beta1")) => {
                Shape::Discovery("v2beta1")
            }
            _ => return None,
        };
        offered.iter().find(|o| o.same_kind(shape)).map(|_| shape)
    })
}

fn media_type(v: Option<&HeaderValue>) -> Option<String> {
    let s = v?.to_str().ok()?;
    let media = s.split(';').next()?.trim().to_ascii_lowercase();
    (!media.is_empty()).then_some(media)
}

impl App {
    async fn handle(
        &self,
        req: hyper::Request<Incoming>,
        cert_user: Option<&User>,
    ) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let resp = match self.route(req, cert_user).await {
            Ok(r) => r,
            Err(e) => error(&e),
        };
        debug!(%method, %path, status = resp.status().as_u16());
        resp
    }

    async fn route(
        &self,
        req: hyper::Request<Incoming>,
        cert_user: Option<&User>,
    ) -> Result<Response<Body>, ApiError> {
        let route = route::parse(req.uri().path());
        let public = matches!(route, Route::Version | Route::Health);
        // kube-apiserver's order: the client certificate, then the token.
        let auth = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let user = cert_user.or_else(|| self.tokens.authenticate(auth));
        if !public && user.is_none() {
            return Err(ApiError::Unauthorized);
        }
        match route {
            Route::Health => return Ok(self.health().await),
            // Unknown paths are 404 whatever the client accepts (kubectl
            // tells a missing OpenAPI document from a broken one by it).
            Route::Unknown => return Err(ApiError::UnknownPath),
            _ => {}
        }
        let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
        let builtin = |p: &route::ResourcePath| {
            self.api
                .registry()
                .find(&p.group, &p.version, &p.resource)
                .is_some_and(|k| k.has_protobuf())
        };
        let offered: &[Shape] = match &route {
            Route::Resource(p) if builtin(p) => &[Shape::Json, Shape::Table("v1"), Shape::Protobuf],
            Route::Resource(_) => &[Shape::Json, Shape::Table("v1")],
            Route::CoreVersions | Route::Groups => &[Shape::Json, Shape::Discovery("v2")],
            _ => &[Shape::Json],
        };
        let shape = negotiate(accept, offered).ok_or(ApiError::NotAcceptable)?;
        let discovery_only = |doc: Option<Value>| -> Result<Response<Body>, ApiError> {
            if req.method() != Method::GET {
                return Err(ApiError::MethodNotAllowed {
                    verb: req.method().to_string(),
                    resource: "discovery".into(),
                });
            }
            doc.map(|d| full(200, shape.content_type(), Bytes::from(d.to_string())))
                .ok_or(ApiError::UnknownPath)
        };
        let kinds = self.api.registry().kinds();
        match route {
            Route::Version => discovery_only(Some(discovery::version())),
            Route::CoreVersions | Route::Groups => {
                let core = route == Route::CoreVersions;
                discovery_only(Some(match shape {
                    Shape::Discovery(v) => discovery::aggregated(&kinds, core, v),
                    _ if core => discovery::core_versions(&kinds, &self.address),
                    _ => discovery::groups(&kinds),
                }))
            }
            Route::Group(g) => discovery_only(discovery::group(&kinds, &g)),
            Route::Resources { group, version } => {
                // /api/{v} is the core group only; /apis/{g}/{v} never is.
                discovery_only(discovery::resources(&kinds, &group, &version))
            }
            Route::OpenApiV2 | Route::OpenApiV3Index | Route::OpenApiV3(_) => {
                if req.method() != Method::GET {
                    return Err(ApiError::MethodNotAllowed {
                        verb: req.method().to_string(),
                        resource: "openapi".into(),
                    });
                }
                let doc = match &route {
                    Route::OpenApiV2 => Some(openapi::v2(&kinds)),
                    Route::OpenApiV3Index => Some(openapi::v3_index(&kinds)),
                    Route::OpenApiV3(gv) => openapi::v3(&kinds, gv),
                    _ => None,
                };
                doc.map(|d| full(200, "application/json", d))
                    .ok_or(ApiError::UnknownPath)
            }
            Route::Health | Route::Unknown => Err(ApiError::UnknownPath),
            Route::Resource(path) if auth::is_self_subject_review(&path) => {
                if req.method() != Method::POST {
                    return Err(ApiError::MethodNotAllowed {
                        verb: req.method().to_string(),
                        resource: "selfsubjectreviews.authentication.k8s.io".into(),
                    });
                }
                match user {
                    Some(u) => Ok(json(201, &auth::self_subject_review(u))),
                    None => Err(ApiError::Unauthorized),
                }
            }
            Route::Resource(path) => {
                let method = req.method().clone();
                let query = Query::parse(req.uri().query());
                let content_type = media_type(req.headers().get(CONTENT_TYPE));
                let user_agent = req
                    .headers()
                    .get(USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                let body = read_body(req.into_body()).await?;
                let warnings = Warnings::default();
                let request = Request {
                    method,
                    path,
                    query,
                    content_type,
                    user_agent,
                    body,
                    warnings: warnings.clone(),
                };
                let encoding = match shape {
                    Shape::Table(v) => Encoding::Table(v),
                    Shape::Protobuf => Encoding::Protobuf,
                    _ => Encoding::Json,
                };
                let mut resp = match self.api.handle_as(request, encoding).await? {
                    // Only reads become Tables; writes answer JSON.
                    Reply::Json { code, body } if body["kind"] == "Table" => {
                        full(code, shape.content_type(), Bytes::from(body.to_string()))
                    }
                    Reply::Json { code, body } if shape == Shape::Protobuf => {
                        full(code, proto::MEDIA_TYPE, proto::encode_response(&body)?)
                    }
                    Reply::Json { code, body } => json(code, &body),
                    Reply::Stream(rx) if shape == Shape::Protobuf => {
                        streamed(rx, proto::WATCH_MEDIA_TYPE)
                    }
                    Reply::Stream(rx) => streamed(rx, shape.content_type()),
                };
                for w in warnings.take() {
                    if let Ok(v) = HeaderValue::from_str(&warning(&w)) {
                        resp.headers_mut().append(WARNING, v);
                    }
                }
                Ok(resp)
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
    fn negotiation_picks_the_first_shape_the_route_serves() {
        let resource = &[Shape::Json, Shape::Table("v1")];
        let discovery = &[Shape::Json, Shape::Discovery("v2")];
        assert_eq!(negotiate(None, resource), Some(Shape::Json));
        assert_eq!(
            negotiate(Some("application/json"), resource),
            Some(Shape::Json)
        );
        // kubectl get: Table first, JSON as the fallback.
        let get = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(get), resource), Some(Shape::Table("v1")));
        assert_eq!(negotiate(Some(get), discovery), Some(Shape::Json));
        // kubectl's aggregated discovery with the legacy fallback.
        let agg = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            negotiate(Some(agg), discovery),
            Some(Shape::Discovery("v2"))
        );
        assert_eq!(negotiate(Some(agg), resource), Some(Shape::Json));
        assert_eq!(
            negotiate(
                Some("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"),
                discovery
            ),
            Some(Shape::Discovery("v2beta1"))
        );
        assert_eq!(
            negotiate(Some("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"), resource),
            Some(Shape::Json)
        );
        assert_eq!(negotiate(Some("*/*"), resource), Some(Shape::Json));
        assert_eq!(
            negotiate(
                Some("application/json;as=Table;v=v1;g=meta.k8s.io"),
                discovery
            ),
            None
        );
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf"), resource),
            None
        );
        // client-go's protobuf clients: protobuf where served, else JSON.
        let pb = &[Shape::Json, Shape::Table("v1"), Shape::Protobuf];
        let client_go = "application/vnd.kubernetes.protobuf, */*";
        assert_eq!(negotiate(Some(client_go), pb), Some(Shape::Protobuf));
        assert_eq!(negotiate(Some(client_go), resource), Some(Shape::Json));
        assert_eq!(negotiate(Some("application/yaml"), resource), None);
    }

    #[test]
    fn warnings_are_quoted_strings_with_code_299() {
        assert_eq!(
            warning(r#"unknown field "spec.foo""#),
            r#"299 - "unknown field \"spec.foo\"""#
        );
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
