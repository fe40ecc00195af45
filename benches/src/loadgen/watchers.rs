//! Watch streams for the watch workloads: one gRPC Watch call carrying `n`
//! watches of the same key range, its events handed to a callback in a task
//! of its own.
//!
//! The create requests are queued before the call is made: a gRPC server
//! (etcd's grpc-go) sends the response headers only with the first message,
//! so the call itself does not return before a watch is created.

use std::time::Duration;

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::watch_client::WatchClient;
use oxetcd_proto::etcdserverpb::watch_request::RequestUnion;
use oxetcd_proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use oxetcd_proto::mvccpb::Event;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::codec::Streaming;

use super::auth::Conn;
use super::error::OpError;
use super::requests::call;
use super::stats::{Role, Stats};

/// What each watch of a stream watches.
#[derive(Clone, Debug)]
pub struct WatchSpec {
    pub key: Bytes,
    /// Empty: the key alone.
    pub range_end: Bytes,
    /// 0: from the current revision on.
    pub start_revision: i64,
    pub prev_kv: bool,
}

/// A running watch stream, cancelled (without counting that as an error)
/// when dropped or [stopped](WatchStream::stop).
pub struct WatchStream {
    task: JoinHandle<()>,
}

impl WatchStream {
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens a stream with `watches` watches of `spec`, and returns once every
/// one is created (or `timeout` passed). From then on `on_event(watch, event)`
/// runs for each event, `watch` being the watch's number in the stream
/// (`0..watches`). If the stream fails, that is one `watch-stream` error.
pub async fn open<F>(
    mut client: WatchClient<Conn>,
    spec: &WatchSpec,
    watches: usize,
    timeout: Duration,
    stats: Arc<Stats>,
    mut on_event: F,
) -> Result<WatchStream, OpError>
where
    F: FnMut(usize, &Event) + Send + 'static,
{
    let (requests, rx) = mpsc::unbounded_channel();
    for _ in 0..watches {
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: spec.key.clone(),
                range_end: spec.range_end.clone(),
                start_revision: spec.start_revision,
                prev_kv: spec.prev_kv,
                ..Default::default()
            })),
        };
        requests
            .send(create)
            .map_err(|_| OpError::StreamEnded("watch request"))?;
    }
    let mut stream = call(timeout, client.watch(UnboundedReceiverStream::new(rx))).await?;
    let mut ids: Vec<i64> = Vec::with_capacity(watches);
    while ids.len() < watches {
        let response = next(&mut stream, timeout).await?;
        if response.created {
            if response.canceled {
                return Err(OpError::Unexpected(format!(
                    "watch refused: {}",
                    response.cancel_reason
                )));
            }
            ids.push(response.watch_id);
        }
        deliver(&ids, &response, &mut on_event);
    }
    let task = tokio::spawn(async move {
        // Holding the sender keeps our side of the stream open.
        let _requests = requests;
        loop {
            match stream.message().await {
                Ok(Some(response)) => {
                    if response.canceled {
                        let error = OpError::Unexpected(format!(
                            "watch canceled by the server: {}",
                            response.cancel_reason
                        ));
                        stats.record_errors("watch-stream", Role::Detail, &error, 1);
                    }
                    deliver(&ids, &response, &mut on_event);
                }
                Ok(None) => {
                    let error = OpError::StreamEnded("watch");
                    stats.record_errors("watch-stream", Role::Detail, &error, 1);
                    return;
                }
                Err(status) => {
                    stats.record_errors("watch-stream", Role::Detail, &OpError::Grpc(status), 1);
                    return;
                }
            }
        }
    });
    Ok(WatchStream { task })
}

async fn next(
    stream: &mut Streaming<WatchResponse>,
    timeout: Duration,
) -> Result<WatchResponse, OpError> {
    match tokio::time::timeout(timeout, stream.message()).await {
        Ok(Ok(Some(response))) => Ok(response),
        Ok(Ok(None)) => Err(OpError::StreamEnded("watch")),
        Ok(Err(status)) => Err(OpError::Grpc(status)),
        Err(_) => Err(OpError::Timeout(timeout)),
    }
}

fn deliver<F: FnMut(usize, &Event)>(ids: &[i64], response: &WatchResponse, on_event: &mut F) {
    if response.events.is_empty() {
        return;
    }
    if let Some(watch) = ids.iter().position(|id| *id == response.watch_id) {
        for event in &response.events {
            on_event(watch, event);
        }
    }
}
