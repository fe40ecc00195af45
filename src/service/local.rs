//! The KV and Watch operations the Lock and Election services are built
//! from, run in-process the way etcd's v3lock and v3election run them through
//! an embedded client: transactions through the write path, linearizable
//! reads, and waiting for a key's deletion through the watch hub.

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxetcd_proto::etcdserverpb::{
    LeaseGrantRequest, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use oxetcd_proto::mvccpb::event::EventType;
use oxetcd_proto::mvccpb::Event;
use oxetcd_proto::prefix_end;
use oxetcd_watch::{DeliveryKind, WatchSpec, WatchStream};
use tonic::Status;

use super::Shared;

/// etcd's DefaultSessionTTL: the lease a lock or campaign without one gets.
const SESSION_TTL: i64 = 60;

/// In-process client of this member's KV, Lease and Watch.
#[derive(Clone)]
pub struct Local {
    pub node: Shared,
}

impl Local {
    pub fn new(node: Shared) -> Self {
        Self { node }
    }

    /// The lease a session runs on: `lease`, or with 0, a new lease of
    /// etcd's default session TTL (not kept alive: etcd's v3lock and
    /// v3election orphan their sessions too).
    pub async fn session_lease(&self, lease: i64) -> Result<i64, Status> {
        if lease != 0 {
            return Ok(lease);
        }
        let grant = LeaseGrantRequest {
            ttl: SESSION_TTL,
            id: 0,
        };
        Ok(self.node.lease_grant(grant).await?.id)
    }

    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, Status> {
        Ok(self.node.txn(req).await?)
    }

    /// A linearizable read.
    pub async fn get(&self, req: RangeRequest) -> Result<RangeResponse, Status> {
        Ok(self.node.range(req).await?)
    }

    /// Watches `key` (with `range_end`, as in a WatchCreateRequest) from
    /// revision `from`.
    pub fn watch(&self, key: Bytes, range_end: Bytes, from: i64) -> WatchStream {
        let stream = self.node.watch_hub().open_stream();
        stream.control().create(WatchSpec {
            key,
            range_end,
            start_revision: from,
            ..WatchSpec::default()
        });
        stream
    }

    /// The next events on `stream`; `Err` when the watch ended (compacted,
    /// canceled, or the hub stopped).
    pub async fn next_events(stream: &mut WatchStream) -> Result<Vec<Event>, Status> {
        loop {
            let Some(delivery) = stream.next().await else {
                return Err(Status::unavailable("etcdserver: server stopped"));
            };
            match delivery.kind {
                DeliveryKind::Events(events) => return Ok(events.iter().cloned().collect()),
                DeliveryKind::Created | DeliveryKind::Progress => {}
                DeliveryKind::Compacted(_) => {
                    return Err(Status::out_of_range(
                        "etcdserver: mvcc: required revision has been compacted",
                    ))
                }
                DeliveryKind::Refused(why) => return Err(Status::internal(why)),
                DeliveryKind::Canceled => return Err(Status::cancelled("watch canceled")),
            }
        }
    }

    /// Returns once `key` is deleted at or after revision `from`.
    pub async fn wait_delete(&self, key: Bytes, from: i64) -> Result<(), Status> {
        let mut stream = self.watch(key, Bytes::new(), from);
        loop {
            let events = Self::next_events(&mut stream).await?;
            if events.iter().any(|e| e.r#type == EventType::Delete as i32) {
                return Ok(());
            }
        }
    }

    /// etcd's `waitDeletes`: waits until no key under `prefix` has a create
    /// revision at or below `max_create_rev`, newest first. Returns the header
    /// of the read that found none.
    pub async fn wait_deletes(
        &self,
        prefix: &Bytes,
        max_create_rev: i64,
    ) -> Result<Option<ResponseHeader>, Status> {
        loop {
            let mut req = by_create(prefix, SortOrder::Descend);
            req.max_create_revision = max_create_rev;
            let resp = self.get(req).await?;
            let Some(last) = resp.kvs.first() else {
                return Ok(resp.header);
            };
            let rev = resp.header.as_ref().map_or(0, |h| h.revision);
            self.wait_delete(last.key.clone(), rev).await?;
        }
    }

    /// The key under `prefix` created first (lock holder, election leader).
    pub async fn first_created(&self, prefix: &Bytes) -> Result<RangeResponse, Status> {
        self.get(by_create(prefix, SortOrder::Ascend)).await
    }
}

/// etcd's WithFirstCreate / WithLastCreate: one key under `prefix`, by
/// create revision.
pub(super) fn by_create(prefix: &Bytes, order: SortOrder) -> RangeRequest {
    RangeRequest {
        key: prefix.clone(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: order as i32,
        sort_target: SortTarget::Create as i32,
        ..RangeRequest::default()
    }
}

/// The key a session (lease) holds under `prefix`: `prefix` + lease in hex.
pub fn session_key(prefix: &[u8], lease: i64) -> Bytes {
    let mut key = prefix.to_vec();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    Bytes::from(key)
}

/// `name` + "/", the prefix of a lock's or election's keys.
pub fn key_prefix(name: &[u8]) -> Bytes {
    let mut p = name.to_vec();
    p.push(b'/');
    Bytes::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_etcds() {
        assert_eq!(key_prefix(b"lk"), Bytes::from_static(b"lk/"));
        assert_eq!(
            session_key(b"lk/", 0x694d77aa9e1f1a04),
            Bytes::from_static(b"lk/694d77aa9e1f1a04")
        );
    }
}
