//! What a stream is sent ([`Delivery`]), and the events in it ([`Events`]):
//! one shared, immutable batch per set of events, however many watchers get
//! it. Work that depends only on the events (their protobuf encoding, the
//! previous values for `prev_kv`) is done once per batch, by the first
//! stream that needs it, off the write path:
//!
//! ```text
//! put /p/a at rev 7 -> notify -> Events [put /p/a@7]  (one allocation)
//!                                   |  Arc clone per watcher of /p/
//!               stream 1 ... stream 1000: encoded(prev_kv: false)
//!                                   -> computed once, then Bytes clones
//! ```

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use oxetcd_proto::mvccpb::Event;
use oxetcd_storage::{KeyRange, RangeOptions, Store};

/// Field number of `events` in etcd's `WatchResponse`.
const WATCH_RESPONSE_EVENTS_FIELD: u32 = 11;

/// What a stream is sent; the gRPC layer turns it into a WatchResponse.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub watch_id: i64,
    /// The revision for the response header.
    pub revision: i64,
    pub kind: DeliveryKind,
    /// The watcher asked for prev_kv / fragment.
    pub prev_kv: bool,
    pub fragment: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum DeliveryKind {
    Created,
    /// Created and canceled at once (watch_id is INVALID_WATCH_ID).
    Refused(String),
    Canceled,
    /// Events of one or more whole revisions, oldest first.
    Events(Events),
    /// The watcher's start revision was compacted; it is canceled.
    Compacted(i64),
    /// Every event after `revision` will be newer.
    Progress,
}

/// Events of one or more whole revisions, oldest first, shared by every
/// watcher that is sent exactly these. Cloning is an `Arc` clone; it reads as
/// a slice of events.
#[derive(Clone)]
pub struct Events(Arc<Batch>);

struct Batch {
    events: Vec<Event>,
    /// The events with `prev_kv` filled in.
    with_prev_kv: OnceLock<Vec<Event>>,
    /// [`encode_events`] of `events` and of `with_prev_kv`.
    encoded: OnceLock<Bytes>,
    encoded_with_prev_kv: OnceLock<Bytes>,
}

impl Events {
    pub fn new(events: Vec<Event>) -> Self {
        Self(Arc::new(Batch {
            events,
            with_prev_kv: OnceLock::new(),
            encoded: OnceLock::new(),
            encoded_with_prev_kv: OnceLock::new(),
        }))
    }

    /// The events, each with the key-value it replaced (`prev_kv`), read from
    /// `store`'s history by the first caller. A change whose previous
    /// revision is compacted away gets none, as in etcd.
    pub fn with_prev_kv(&self, store: &Store) -> &[Event] {
        self.0
            .with_prev_kv
            .get_or_init(|| with_prev_kvs(store, &self.0.events))
    }

    /// The events as the `events` field of a WatchResponse (see
    /// [`encode_events`]), with or without `prev_kv`; encoded once per batch.
    pub fn encoded(&self, prev_kv: bool, store: &Store) -> Bytes {
        let batch = &self.0;
        if prev_kv {
            let events = self.with_prev_kv(store);
            batch
                .encoded_with_prev_kv
                .get_or_init(|| encode_events(events))
                .clone()
        } else {
            batch
                .encoded
                .get_or_init(|| encode_events(&batch.events))
                .clone()
        }
    }
}

impl Deref for Events {
    type Target = [Event];

    fn deref(&self) -> &[Event] {
        &self.0.events
    }
}

impl From<Vec<Event>> for Events {
    fn from(events: Vec<Event>) -> Self {
        Self::new(events)
    }
}

impl PartialEq for Events {
    fn eq(&self, other: &Self) -> bool {
        self.0.events == other.0.events
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.events.fmt(f)
    }
}

/// `events` as they appear in an encoded WatchResponse: each one as field 11
/// (tag, length, Event). Protobuf fields may come in any order and a repeated
/// field may be split, so these bytes appended to an encoded response without
/// events make the response with them.
pub fn encode_events(events: &[Event]) -> Bytes {
    let len: usize = events
        .iter()
        .map(|e| prost::encoding::message::encoded_len(WATCH_RESPONSE_EVENTS_FIELD, e))
        .sum();
    let mut buf = Vec::with_capacity(len);
    for e in events {
        prost::encoding::message::encode(WATCH_RESPONSE_EVENTS_FIELD, e, &mut buf);
    }
    Bytes::from(buf)
}

/// The value each key had just before its event, read from history.
fn with_prev_kvs(store: &Store, events: &[Event]) -> Vec<Event> {
    let mut out = events.to_vec();
    for e in &mut out {
        let Some(kv) = &e.kv else { continue };
        let opts = RangeOptions {
            rev: kv.mod_revision - 1,
            ..Default::default()
        };
        // Compacted history means no prev_kv, as in etcd.
        if let Ok(res) = store.range(KeyRange::new(&kv.key, b""), &opts) {
            e.prev_kv = res.kvs.into_iter().next();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxetcd_proto::etcdserverpb::{ResponseHeader, WatchResponse};
    use oxetcd_proto::mvccpb::event::EventType;
    use oxetcd_proto::mvccpb::KeyValue;
    use prost::Message;

    fn event(key: &str, rev: i64) -> Event {
        Event {
            r#type: EventType::Put as i32,
            kv: Some(KeyValue {
                key: Bytes::from(key.to_string()),
                mod_revision: rev,
                value: Bytes::from(vec![b'v'; 300]),
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn a_response_plus_encoded_events_is_the_response_with_them() {
        let events = vec![event("a", 7), event("b", 7)];
        let head = WatchResponse {
            header: Some(ResponseHeader {
                revision: 7,
                raft_term: 2,
                ..Default::default()
            }),
            watch_id: 3,
            ..Default::default()
        };
        let mut wire = head.encode_to_vec();
        wire.extend_from_slice(&encode_events(&events));
        let whole = WatchResponse {
            events: events.clone(),
            ..head
        };
        assert_eq!(
            wire,
            whole.encode_to_vec(),
            "byte for byte prost's encoding"
        );
        assert_eq!(WatchResponse::decode(wire.as_slice()).unwrap(), whole);
    }

    #[test]
    fn a_batch_is_encoded_once_and_shared() {
        let dir = tempfile::tempdir().unwrap();
        let backend = oxetcd_storage::SledBackend::open(dir.path(), 1 << 20).unwrap();
        let store = Store::open(Box::new(backend)).unwrap();
        let events = Events::new(vec![event("a", 1)]);
        let copy = events.clone();
        let first = events.encoded(false, &store);
        let second = copy.encoded(false, &store);
        assert_eq!(
            first.as_ptr(),
            second.as_ptr(),
            "the same bytes, not a copy"
        );
        assert_eq!(first, encode_events(&copy));
        assert_eq!(&*copy, &[event("a", 1)][..]);
    }
}
