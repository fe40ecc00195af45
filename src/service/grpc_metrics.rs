//! etcd's gRPC server metrics, counted as the RPCs pass: a tower layer over
//! the gRPC routes (go-grpc-prometheus' interceptors and etcd's codec
//! counters, in one place).
//!
//! - `grpc_server_started_total` when a request for a known method arrives;
//! - `grpc_server_handled_total` by the status the RPC ends with: the
//!   `grpc-status` of a trailers-only answer (an error before any message),
//!   else of the trailers after the last message; an answer dropped before
//!   its end (the client went away: a Watch whose etcdctl was stopped) is
//!   `Canceled`, as grpc-go sees a cancelled context;
//! - `grpc_server_handling_seconds` from arrival to that end, with
//!   `--metrics extensive` only;
//! - `etcd_network_client_grpc_{received,sent}_bytes_total`: the protobuf
//!   messages' bytes, without gRPC's 5-byte message headers, as etcd's codec
//!   counts them.
//!
//! Per RPC this costs the table lookup of its path, atomic adds, and the two
//! boxed body wrappers the router's body type requires.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response};
use bytes::{Buf, Bytes};
use http_body::Frame;
use oxetcd_metrics::Grpc;
use pin_project_lite::pin_project;
use tonic::codegen::Service;

/// grpc-go's code for an RPC whose client went away.
const CANCELED: i32 = 1;
/// A stream that ended without a status (not gRPC's way): grpc-go's Unknown.
const UNKNOWN: i32 = 2;

/// Wraps the gRPC routes in [`GrpcMetrics`].
#[derive(Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S> Service<Request<Body>> for GrpcMetrics<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Counted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let Some(method) = Grpc::method_index(request.uri().path()) else {
            return Counted {
                inner: self.inner.call(request),
                rpc: None,
            };
        };
        oxetcd_metrics::grpc().started(method);
        let rpc = Rpc {
            method,
            started: oxetcd_metrics::handling_time_enabled().then(Instant::now),
        };
        let request = request.map(|body| Body::new(Received::new(body)));
        Counted {
            inner: self.inner.call(request),
            rpc: Some(rpc),
        }
    }
}

/// One RPC being counted: its method, and when it arrived (extensive only).
#[derive(Clone, Copy)]
struct Rpc {
    method: usize,
    started: Option<Instant>,
}

impl Rpc {
    fn handled(self, code: i32) {
        let grpc = oxetcd_metrics::grpc();
        grpc.handled(self.method, code);
        if let Some(started) = self.started {
            grpc.observe_handling(self.method, started.elapsed().as_secs_f64());
        }
    }
}

pin_project! {
    /// The routes' answer to one request; counts the RPC as handled
    /// (cancelled) if dropped before the answer's headers.
    pub struct Counted<F> {
        #[pin]
        inner: F,
        rpc: Option<Rpc>,
    }

    impl<F> PinnedDrop for Counted<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(rpc) = this.project().rpc.take() {
                rpc.handled(CANCELED);
            }
        }
    }
}

impl<F, E> Future for Counted<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        let Some(rpc) = this.rpc.take() else {
            return Poll::Ready(response);
        };
        Poll::Ready(response.map(|response| {
            // A trailers-only answer: the RPC ended here.
            if let Some(code) = status(response.headers()) {
                rpc.handled(code);
                return response;
            }
            response.map(|body| {
                Body::new(Sent {
                    inner: body,
                    rpc: Some(rpc),
                    messages: MessageBytes::default(),
                })
            })
        }))
    }
}

/// The `grpc-status` in `headers`, if any.
fn status(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status").map(|v| {
        std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(UNKNOWN)
    })
}

/// An answer's body: counts the bytes of the messages sent, and the RPC as
/// handled at its trailers (or cancelled, dropped before them).
struct Sent {
    inner: Body,
    rpc: Option<Rpc>,
    messages: MessageBytes,
}

impl http_body::Body for Sent {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = self.messages.payload(data.chunk());
                    oxetcd_metrics::network()
                        .client_grpc_sent_bytes_total
                        .inc_by(n);
                } else if let Some(trailers) = frame.trailers_ref() {
                    if let Some(rpc) = self.rpc.take() {
                        rpc.handled(status(trailers).unwrap_or(UNKNOWN));
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(rpc) = self.rpc.take() {
                    rpc.handled(UNKNOWN);
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Sent {
    fn drop(&mut self) {
        if let Some(rpc) = self.rpc.take() {
            rpc.handled(CANCELED);
        }
    }
}

/// A request's body: counts the bytes of the messages received.
struct Received {
    inner: Body,
    messages: MessageBytes,
}

impl Received {
    fn new(inner: Body) -> Self {
        Self {
            inner,
            messages: MessageBytes::default(),
        }
    }
}

impl http_body::Body for Received {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let n = self.messages.payload(data.chunk());
                oxetcd_metrics::network()
                    .client_grpc_received_bytes_total
                    .inc_by(n);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Follows gRPC's message framing (1 byte compressed flag, 4 bytes
/// big-endian length, the message) across body chunks, to count message
/// bytes only.
#[derive(Default)]
struct MessageBytes {
    /// Bytes of the current 5-byte header seen so far (0 between messages).
    header_seen: u8,
    /// The current header's length field, as far as seen.
    length: u32,
    /// Message bytes still to come after the header.
    body_left: u32,
}

impl MessageBytes {
    /// The message bytes in `chunk`, the next bytes of the stream.
    fn payload(&mut self, mut chunk: &[u8]) -> u64 {
        let mut payload = 0u64;
        while !chunk.is_empty() {
            if self.body_left > 0 {
                let take = chunk.len().min(self.body_left as usize);
                payload += take as u64;
                self.body_left -= take as u32;
                chunk = &chunk[take..];
                continue;
            }
            // In a header: byte 0 is the flag, bytes 1-4 the length.
            if self.header_seen > 0 {
                self.length = (self.length << 8) | u32::from(chunk[0]);
            }
            self.header_seen += 1;
            chunk = &chunk[1..];
            if self.header_seen == 5 {
                self.body_left = self.length;
                self.header_seen = 0;
                self.length = 0;
            }
        }
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(message: &[u8]) -> Vec<u8> {
        let mut f = vec![0];
        f.extend_from_slice(&(message.len() as u32).to_be_bytes());
        f.extend_from_slice(message);
        f
    }

    #[test]
    fn message_bytes_leave_out_headers_however_the_stream_is_cut() {
        let mut stream = frame(&[7; 300]);
        stream.extend(frame(b""));
        stream.extend(frame(&[1; 3]));
        for cut in [1, 2, 4, 5, 6, 299, 1000] {
            let mut m = MessageBytes::default();
            let total: u64 = stream.chunks(cut).map(|c| m.payload(c)).sum();
            assert_eq!(total, 303, "chunks of {cut}");
        }
    }

    #[test]
    fn statuses_come_from_the_grpc_status_header() {
        let mut h = HeaderMap::new();
        assert_eq!(status(&h), None);
        h.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(status(&h), Some(5));
        h.insert("grpc-status", "x".parse().unwrap());
        assert_eq!(status(&h), Some(UNKNOWN));
    }
}
