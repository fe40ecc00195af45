//! The Watch call's gRPC codec: requests are decoded by prost as usual;
//! responses are written from a [`WatchReply`], whose events are already
//! encoded (once per batch, shared by every stream that sends them), so that
//! a response costs a small header encode and one copy, not a full protobuf
//! encode of every event for every watcher.

use bytes::{BufMut, Bytes};
use oxetcd_proto::etcdserverpb::{WatchRequest, WatchResponse};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// A WatchResponse in two parts: `head`, everything but the shared events
/// (header, watch_id, flags; it may carry events of its own), and `events`,
/// more of its `events` field already encoded
/// ([`oxetcd_watch::encode_events`]). On the wire, `events` follows `head`:
/// together they are the one response (protobuf lets a repeated field come
/// in pieces).
#[derive(Debug, Default)]
pub struct WatchReply {
    pub head: WatchResponse,
    pub events: Bytes,
}

impl WatchReply {
    pub fn whole(head: WatchResponse) -> Self {
        Self {
            head,
            events: Bytes::new(),
        }
    }

    pub fn encoded_len(&self) -> usize {
        self.head.encoded_len() + self.events.len()
    }

    fn encode(&self, dst: &mut impl BufMut) {
        // prost writes varints a byte at a time, which tonic's buffer makes
        // costly: encode the (small) head on the stack, then copy it in once.
        const SMALL: usize = 128;
        let mut small = [0u8; SMALL];
        let mut cursor = &mut small[..];
        // `encode` checks the room first: on error nothing was written.
        if self.head.encode(&mut cursor).is_ok() {
            let written = SMALL - cursor.len();
            dst.put_slice(&small[..written]);
        } else {
            dst.put_slice(&self.head.encode_to_vec());
        }
        dst.put_slice(&self.events);
    }
}

/// [`WatchReply`] out, [`WatchRequest`] in.
#[derive(Clone, Copy, Debug, Default)]
pub struct WatchCodec;

impl Codec for WatchCodec {
    type Encode = WatchReply;
    type Decode = WatchRequest;
    type Encoder = ReplyEncoder;
    type Decoder = RequestDecoder;

    fn encoder(&mut self) -> ReplyEncoder {
        ReplyEncoder
    }

    fn decoder(&mut self) -> RequestDecoder {
        RequestDecoder
    }
}

#[derive(Debug)]
pub struct ReplyEncoder;

impl Encoder for ReplyEncoder {
    type Item = WatchReply;
    type Error = Status;

    fn encode(&mut self, item: WatchReply, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.encoded_len());
        item.encode(dst);
        Ok(())
    }
}

#[derive(Debug)]
pub struct RequestDecoder;

impl Decoder for RequestDecoder {
    type Item = WatchRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<WatchRequest>, Status> {
        // As tonic's prost codec answers a malformed message.
        WatchRequest::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxetcd_proto::etcdserverpb::ResponseHeader;
    use oxetcd_proto::mvccpb::{Event, KeyValue};

    fn event(key: &str) -> Event {
        Event {
            kv: Some(KeyValue {
                key: Bytes::from(key.to_string()),
                value: Bytes::from(vec![b'v'; 200]),
                mod_revision: 9,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn head(reason: &str) -> WatchResponse {
        WatchResponse {
            header: Some(ResponseHeader {
                cluster_id: u64::MAX,
                member_id: 7,
                revision: 9,
                raft_term: 3,
            }),
            watch_id: 5,
            cancel_reason: reason.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn a_reply_is_written_as_the_response_it_stands_for() {
        let events = vec![event("a"), event("b")];
        // A head that fits the stack buffer, and one that does not.
        for reason in ["", &"x".repeat(300)] {
            let reply = WatchReply {
                head: head(reason),
                events: oxetcd_watch::encode_events(&events),
            };
            let mut wire = Vec::new();
            reply.encode(&mut wire);
            assert_eq!(wire.len(), reply.encoded_len());
            let want = WatchResponse {
                events: events.clone(),
                ..head(reason)
            };
            assert_eq!(wire, want.encode_to_vec());
        }
        let mut wire = Vec::new();
        WatchReply::whole(head("")).encode(&mut wire);
        assert_eq!(wire, head("").encode_to_vec());
    }
}
