//! etcdserverpb.Watch: one bidirectional stream per call, many watches on it.
//! The hub decides what each watch gets; this turns its deliveries into
//! WatchResponses: headers, prev_kv, and fragments of oversized responses.

use std::sync::Arc;

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::watch_create_request::FilterType;
use oxetcd_proto::etcdserverpb::watch_request::RequestUnion;
use oxetcd_proto::etcdserverpb::watch_server::Watch;
use oxetcd_proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use oxetcd_proto::mvccpb::Event;
use oxetcd_storage::{KeyRange, RangeOptions};
use oxetcd_watch::{Delivery, DeliveryKind, WatchHub, WatchSpec};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Shared;

/// Responses buffered towards the gRPC transport per stream; behind it, the
/// hub's own bounded queue decides when a watcher must catch up instead.
const TRANSPORT_BUFFER: usize = 64;

pub struct WatchService {
    node: Shared,
    hub: Arc<WatchHub>,
}

impl WatchService {
    pub fn new(node: Shared, hub: Arc<WatchHub>) -> Self {
        Self { node, hub }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let mut inbound = request.into_inner();
        let mut stream = self.hub.open_stream();
        let control = stream.control();
        tokio::spawn(async move {
            // Ends when the client closes its side; the responses go on.
            while let Ok(Some(req)) = inbound.message().await {
                match req.request_union {
                    Some(RequestUnion::CreateRequest(c)) => control.create(spec(c)),
                    Some(RequestUnion::CancelRequest(c)) => control.cancel(c.watch_id),
                    Some(RequestUnion::ProgressRequest(_)) => control.request_progress(),
                    None => {}
                }
            }
        });
        let (tx, rx) = mpsc::channel(TRANSPORT_BUFFER);
        let node = self.node.clone();
        tokio::spawn(async move {
            loop {
                let delivery = tokio::select! {
                    d = stream.next() => d,
                    _ = tx.closed() => None,
                };
                let Some(delivery) = delivery else { return };
                for response in responses(&node, delivery) {
                    if tx.send(Ok(response)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Normalizes a create request as etcd does.
fn spec(c: WatchCreateRequest) -> WatchSpec {
    WatchSpec {
        watch_id: c.watch_id,
        // An empty key watches from the smallest key, "\0".
        key: if c.key.is_empty() {
            Bytes::from_static(b"\0")
        } else {
            c.key
        },
        range_end: c.range_end,
        start_revision: c.start_revision,
        no_put: c.filters.contains(&(FilterType::Noput as i32)),
        no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
        prev_kv: c.prev_kv,
        progress_notify: c.progress_notify,
        fragment: c.fragment,
    }
}

fn responses(node: &Shared, d: Delivery) -> Vec<WatchResponse> {
    let mut r = WatchResponse {
        header: node.header(d.revision),
        watch_id: d.watch_id,
        ..Default::default()
    };
    match d.kind {
        DeliveryKind::Created => r.created = true,
        DeliveryKind::Refused(reason) => {
            r.created = true;
            r.canceled = true;
            r.cancel_reason = reason;
        }
        DeliveryKind::Canceled => r.canceled = true,
        DeliveryKind::Compacted(rev) => {
            r.compact_revision = rev;
            r.canceled = true;
        }
        DeliveryKind::Progress => {}
        DeliveryKind::Events(mut events) => {
            if d.prev_kv {
                add_prev_kvs(node, &mut events);
            }
            r.events = events;
            if d.fragment {
                return fragments(r, node.max_request_bytes);
            }
        }
    }
    vec![r]
}

/// The value each key had just before its event, read from history.
fn add_prev_kvs(node: &Shared, events: &mut [Event]) {
    for e in events {
        let Some(kv) = &e.kv else { continue };
        let opts = RangeOptions {
            rev: kv.mod_revision - 1,
            ..Default::default()
        };
        // Compacted history means no prev_kv, as in etcd.
        if let Ok(res) = node.store.range(KeyRange::new(&kv.key, b""), &opts) {
            e.prev_kv = res.kvs.into_iter().next();
        }
    }
}

/// etcd's sendFragments: split an oversized response into several, each marked
/// `fragment` but the last; a single event is never split.
fn fragments(whole: WatchResponse, max_bytes: usize) -> Vec<WatchResponse> {
    if whole.encoded_len() < max_bytes || whole.events.len() < 2 {
        return vec![whole];
    }
    let mut out = Vec::new();
    let mut events = whole.events.into_iter().peekable();
    let empty = WatchResponse {
        events: Vec::new(),
        fragment: true,
        ..whole
    };
    while events.peek().is_some() {
        let mut cur = empty.clone();
        while let Some(e) = events.peek() {
            cur.events.push(e.clone());
            if cur.events.len() > 1 && cur.encoded_len() >= max_bytes {
                cur.events.pop();
                break;
            }
            events.next();
        }
        out.push(cur);
    }
    if let Some(last) = out.last_mut() {
        last.fragment = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxetcd_proto::mvccpb::KeyValue;

    fn event(size: usize) -> Event {
        Event {
            kv: Some(KeyValue {
                key: Bytes::from("k"),
                value: Bytes::from(vec![b'x'; size]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn oversized_responses_fragment_without_splitting_events() {
        let whole = WatchResponse {
            watch_id: 3,
            events: (0..10).map(|_| event(100)).collect(),
            ..Default::default()
        };
        let parts = fragments(whole.clone(), 350);
        assert!(parts.len() > 1);
        assert!(parts[..parts.len() - 1]
            .iter()
            .all(|p| p.fragment && p.watch_id == 3));
        assert!(!parts.last().unwrap().fragment);
        assert_eq!(parts.iter().map(|p| p.events.len()).sum::<usize>(), 10);
        assert!(parts
            .iter()
            .all(|p| p.encoded_len() < 350 || p.events.len() == 1));
        assert_eq!(
            fragments(whole, 1 << 20).len(),
            1,
            "small enough: one response"
        );
    }
}
