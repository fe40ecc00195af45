//! The Watch gRPC service as tonic's generated `WatchServer` serves it, with
//! one difference: the responses go through [`WatchCodec`], which writes
//! pre-encoded events (tonic's generated server always uses prost's codec).
//! Same path (`/etcdserverpb.Watch/Watch`), same message-size limits, and
//! `Unimplemented` for any other method, as the generated code answers.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use oxetcd_proto::etcdserverpb::WatchRequest;
use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Status, Streaming};

use super::codec::{WatchCodec, WatchReply};
use super::{Replies, WatchService};

/// What `Routes::add_service` takes for etcd's Watch service.
#[derive(Clone)]
pub struct WatchServer {
    inner: Arc<WatchService>,
    max_decoding_message_size: Option<usize>,
    max_encoding_message_size: Option<usize>,
}

impl WatchServer {
    pub fn new(inner: WatchService) -> Self {
        Self {
            inner: Arc::new(inner),
            max_decoding_message_size: None,
            max_encoding_message_size: None,
        }
    }

    /// Largest request accepted (tonic's default: 4 MiB).
    #[must_use]
    pub fn max_decoding_message_size(mut self, limit: usize) -> Self {
        self.max_decoding_message_size = Some(limit);
        self
    }

    /// Largest response sent (tonic's default: no limit).
    #[must_use]
    pub fn max_encoding_message_size(mut self, limit: usize) -> Self {
        self.max_encoding_message_size = Some(limit);
        self
    }
}

impl NamedService for WatchServer {
    const NAME: &'static str = "etcdserverpb.Watch";
}

/// One Watch call.
struct WatchCall(Arc<WatchService>);

impl StreamingService<WatchRequest> for WatchCall {
    type Response = WatchReply;
    type ResponseStream = Replies;
    type Future = BoxFuture<tonic::Response<Replies>, Status>;

    fn call(&mut self, request: tonic::Request<Streaming<WatchRequest>>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { Ok(service.watch(request)) })
    }
}

impl<B> Service<http::Request<B>> for WatchServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != "/etcdserverpb.Watch/Watch" {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let call = WatchCall(self.inner.clone());
        let mut grpc = Grpc::new(WatchCodec).apply_max_message_size_config(
            self.max_decoding_message_size,
            self.max_encoding_message_size,
        );
        Box::pin(async move { Ok(grpc.streaming(call, req).await) })
    }
}
