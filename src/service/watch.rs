//! etcdserverpb.Watch: one bidirectional stream per call, many watches on it.
//! The hub decides what each watch gets; this turns its deliveries into
//! WatchResponses: headers, prev_kv, and fragments of oversized responses.
//!
//! The response stream ([`Replies`]) is polled by the gRPC transport itself:
//! a delivery goes from the hub's queue straight into the HTTP/2 stream, with
//! no task or channel of our own between them. Events are encoded once per
//! hub batch ([`oxetcd_watch::Events::encoded`]) and that encoding is shared
//! by every stream sending it; [`codec`] writes a response from its small
//! per-watch head and those shared bytes, and [`server`] is the gRPC service
//! that uses that codec.

mod codec;
mod server;

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::watch_create_request::FilterType;
use oxetcd_proto::etcdserverpb::watch_request::RequestUnion;
use oxetcd_proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use oxetcd_watch::{Delivery, DeliveryKind, WatchSpec, WatchStream};
use prost::Message;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use self::codec::WatchReply;
pub use self::server::WatchServer;
use super::caller::Credentials;
use super::Shared;
use oxetcd_server::auth::{Access, Need};

pub struct WatchService {
    node: Shared,
}

impl WatchService {
    pub fn new(node: Shared) -> Self {
        Self { node }
    }

    /// One Watch call: requests are read by a task of their own; responses
    /// are the returned stream.
    fn watch(&self, request: Request<Streaming<WatchRequest>>) -> Response<Replies> {
        let credentials = Credentials::of(&self.node, &request);
        let mut inbound = request.into_inner();
        let stream = self.node.watch_hub().open_stream();
        let control = stream.control();
        let node = self.node.clone();
        tokio::spawn(async move {
            // Ends when the client closes its side; the responses go on.
            while let Ok(Some(req)) = inbound.message().await {
                match req.request_union {
                    Some(RequestUnion::CreateRequest(c)) => {
                        match may_watch(&node, &credentials, &c) {
                            Ok(()) => control.create(spec(c)),
                            Err(refused) => control.refuse(refused),
                        }
                    }
                    Some(RequestUnion::CancelRequest(c)) => control.cancel(c.watch_id),
                    Some(RequestUnion::ProgressRequest(_)) => control.request_progress(),
                    None => {}
                }
            }
        });
        Response::new(Replies {
            stream,
            node: self.node.clone(),
            ready: VecDeque::new(),
        })
    }
}

/// The responses of one Watch call. Dropped by the transport when the client
/// goes away, which drops the hub stream and with it every watch on it.
pub struct Replies {
    stream: WatchStream,
    node: Shared,
    /// Responses made from one delivery and not yet taken (fragments).
    ready: VecDeque<WatchReply>,
}

impl Stream for Replies {
    type Item = Result<WatchReply, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(reply) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(reply)));
            }
            match this.stream.poll_next(cx) {
                Poll::Ready(Some(delivery)) => replies(&this.node, delivery, &mut this.ready),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Whether the stream's caller may read what `c` watches, checked at each
/// create as etcd does; the refusal's reason as etcd words it (the gRPC
/// error's text).
fn may_watch(
    node: &Shared,
    credentials: &Credentials,
    c: &WatchCreateRequest,
) -> Result<(), String> {
    let refused = |status: Status| {
        format!(
            "rpc error: code = {:?} desc = {}",
            status.code(),
            status.message()
        )
    };
    let caller = credentials.caller(node).map_err(refused)?;
    let needs = [Need::Range {
        key: &c.key,
        range_end: &c.range_end,
        access: Access::Read,
    }];
    node.check(&caller, &needs)
        .map_err(|e| refused(Status::from(e)))
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

/// The responses for `d`, appended to `out`: one, or the fragments of an
/// oversized one when the watch asked for fragments.
fn replies(node: &Shared, d: Delivery, out: &mut VecDeque<WatchReply>) {
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
        DeliveryKind::Events(events) if d.fragment => {
            r.events = if d.prev_kv {
                events.with_prev_kv(node.store()).to_vec()
            } else {
                events.to_vec()
            };
            out.extend(
                fragments(r, node.config().max_request_bytes)
                    .into_iter()
                    .map(WatchReply::whole),
            );
            return;
        }
        DeliveryKind::Events(events) => {
            out.push_back(WatchReply {
                head: r,
                events: events.encoded(d.prev_kv, node.store()),
            });
            return;
        }
    }
    out.push_back(WatchReply::whole(r));
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
    use oxetcd_proto::mvccpb::{Event, KeyValue};

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
