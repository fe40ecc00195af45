//! etcd's JSON gateway on the client port: `POST /v3/kv/put` and the rest of
//! the v3 API as JSON over HTTP, as etcd 3.4 serves it with grpc-gateway v1
//! (`/v3beta/` is the same API under its old name).
//!
//! Each path is a gRPC method. A request body becomes the method's request
//! message ([`json`]), the call goes to the very gRPC services this member
//! serves, in-process through tonic's generated clients over their
//! [`Routes`] (no socket, but the same codecs, limits and errors), and the
//! answer goes back as JSON ([`reply`]); streaming methods stream both ways,
//! one JSON object per message ([`stream`]). The path table is [`routes`].
//!
//! ```text
//! $ curl -d '{"key":"Zm9v","value":"YmFy"}' http://127.0.0.1:2379/v3/kv/put
//! {"header":{"cluster_id":"…","member_id":"…","revision":"2","raft_term":"2"}}
//! ```
//!
//! etcd's gateway reaches its gRPC server over one client connection, so
//! `--max-concurrent-streams` bounds the gateway's calls in flight together;
//! the [`Semaphore`] here is that bound: a call over it waits for a place.

mod json;
mod reply;
mod routes;
mod stream;

use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Routes;
use tonic::{Status, Streaming};

use crate::listener::ConnInfo;

pub use routes::router;

/// What an HTTP request carries to name its user, handed to the gRPC call
/// as a gRPC client would send it: the `Authorization` header's token as the
/// `authorization` metadata etcd's gateway passes on, and the connection's
/// TLS details (the client certificate's CommonName) as they are.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    token: Option<MetadataValue<Ascii>>,
    connection: Option<ConnInfo>,
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| MetadataValue::try_from(v.as_bytes()).ok());
        Ok(Identity {
            token,
            connection: parts.extensions.get::<ConnInfo>().cloned(),
        })
    }
}

impl Identity {
    /// `message` as a gRPC request from this identity.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        if let Some(connection) = &self.connection {
            request.extensions_mut().insert(connection.clone());
        }
        request
    }
}

/// What every gateway handler shares: the gRPC services and the stream bound.
#[derive(Clone)]
pub struct Gateway {
    grpc: Routes,
    streams: Arc<Semaphore>,
    /// Largest request body read, JSON and base64 included.
    body_limit: usize,
}

impl Gateway {
    /// `max_streams`: calls in flight at once (etcd's
    /// --max-concurrent-streams); `max_request_bytes`: etcd's request limit,
    /// which the gRPC services enforce on the decoded message.
    pub fn new(grpc: Routes, max_streams: u32, max_request_bytes: usize) -> Self {
        let permits = usize::try_from(max_streams)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            grpc,
            streams: Arc::new(Semaphore::new(permits)),
            // base64 takes 4 bytes for 3; the rest is room for JSON syntax,
            // so that the services, not the gateway, refuse large requests.
            body_limit: max_request_bytes.saturating_mul(2).saturating_add(1 << 20),
        }
    }

    /// A place among the calls in flight; waits while they are all taken.
    async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        // The semaphore is never closed, so this only waits.
        self.streams.clone().acquire_owned().await.ok()
    }

    /// A unary call: one message in, one out.
    async fn unary<Req, Resp, F, Fut>(&self, who: Identity, body: Bytes, call: F) -> Response
    where
        Req: DeserializeOwned + Default,
        Resp: Serialize,
        F: FnOnce(Routes, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let request = match json::first_message::<Req>(&body) {
            Ok(request) => request,
            Err(e) => return reply::error(&Status::invalid_argument(e.to_string())),
        };
        let _permit = self.permit().await;
        match call(self.grpc.clone(), who.request(request)).await {
            Ok(response) => reply::message(response.metadata(), response.get_ref()),
            Err(status) => reply::error(&status),
        }
    }

    /// One message in, a stream out (Observe, Snapshot).
    async fn server_streaming<Req, Resp, F, Fut>(
        &self,
        who: Identity,
        body: Bytes,
        call: F,
    ) -> Response
    where
        Req: DeserializeOwned + Default,
        Resp: Serialize + Send + 'static,
        F: FnOnce(Routes, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Streaming<Resp>>, Status>>,
    {
        let request = match json::first_message::<Req>(&body) {
            Ok(request) => request,
            Err(e) => return reply::error(&Status::invalid_argument(e.to_string())),
        };
        let permit = self.permit().await;
        match call(self.grpc.clone(), who.request(request)).await {
            Ok(response) => stream::respond(response, permit).await,
            Err(status) => reply::error(&status),
        }
    }

    /// Streams both ways (Watch, LeaseKeepAlive).
    async fn bidi<Req, Resp, F, Fut>(&self, who: Identity, body: Body, call: F) -> Response
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: FnOnce(Routes, tonic::Request<ReceiverStream<Req>>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Streaming<Resp>>, Status>>,
    {
        let requests = match stream::requests::<Req>(body, self.body_limit).await {
            Ok(requests) => requests,
            // etcd's gateway reports this one as a plain (Unknown) error.
            Err(e) => return reply::error(&Status::unknown(e.to_string())),
        };
        let permit = self.permit().await;
        match call(self.grpc.clone(), who.request(requests)).await {
            Ok(response) => stream::respond(response, permit).await,
            Err(status) => reply::error(&status),
        }
    }
}
