//! kube-apiserver's request shapes (reference: kubernetes-apiserver.md §2),
//! built and read here once for both stores, and [`Store`] in their terms
//! for every [`Transport`]:
//! - create: Txn If(mod_revision(key) == 0) Then(Put), no Else;
//! - update: Txn If(mod_revision == rev) Then(Put) Else(Range key);
//! - delete: Txn If(mod_revision == rev) Then(DeleteRange key) Else(Range key).

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use oxetcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxetcd_proto::etcdserverpb::request_op::Request;
use oxetcd_proto::etcdserverpb::response_op::Response;
use oxetcd_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest,
    RangeResponse, RequestOp, TxnRequest, TxnResponse, WatchCreateRequest,
};
use oxetcd_proto::mvccpb;
use oxetcd_proto::mvccpb::event::EventType;

use super::{
    Claim, Event, EventStream, Kv, Page, ProgressWatch, Store, StoreError, Transport, WatchItem,
    Written,
};

#[async_trait]
impl<T: Transport + ?Sized> Store for T {
    async fn get(&self, key: &[u8]) -> Result<(Option<Kv>, i64), StoreError> {
        let page = page(self.range(get(key)).await?);
        Ok((page.kvs.into_iter().next(), page.revision))
    }

    async fn list(
        &self,
        start: &[u8],
        end: &[u8],
        limit: i64,
        revision: i64,
    ) -> Result<Page, StoreError> {
        Ok(page(self.range(list(start, end, limit, revision)).await?))
    }

    async fn create(&self, key: &[u8], value: Bytes, lease: i64) -> Result<Written, StoreError> {
        written(self.txn(create(key, value, lease)).await?)
    }

    async fn update(
        &self,
        key: &[u8],
        value: Bytes,
        expected: i64,
        lease: i64,
    ) -> Result<Written, StoreError> {
        written(self.txn(update(key, value, expected, lease)).await?)
    }

    async fn grant_lease(&self, ttl: i64) -> Result<i64, StoreError> {
        self.lease_grant(LeaseGrantRequest { ttl, id: 0 }).await
    }

    async fn delete(&self, key: &[u8], expected: i64) -> Result<Written, StoreError> {
        written(self.txn(delete(key, expected)).await?)
    }

    async fn watch(&self, start: &[u8], end: &[u8], from: i64) -> Result<EventStream, StoreError> {
        let watch = self.open_watch(watch(start, end, from)).await?;
        Ok(Box::pin(watch.items.filter_map(|item| async move {
            match item {
                Ok(WatchItem::Events(events)) => Some(Ok(events)),
                Ok(WatchItem::Progress(_)) => None,
                Err(e) => Some(Err(e)),
            }
        })))
    }

    async fn watch_progress(
        &self,
        start: &[u8],
        end: &[u8],
        from: i64,
    ) -> Result<ProgressWatch, StoreError> {
        self.open_watch(watch(start, end, from)).await
    }

    async fn progress_is_ordered(&self) -> bool {
        Transport::progress_is_ordered(self).await
    }

    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        let req = CompactionRequest {
            revision,
            physical: true,
        };
        self.compaction(req).await
    }

    async fn claim_compaction(
        &self,
        key: &[u8],
        version: i64,
        revision: i64,
    ) -> Result<Claim, StoreError> {
        let resp = self.txn(claim(key, version, revision)).await?;
        let header = resp.header.map(|h| h.revision).unwrap_or_default();
        if resp.succeeded {
            return Ok(Claim {
                won: true,
                version: version + 1,
                revision: header,
            });
        }
        let current = else_range(resp.responses).map_or(0, |kv| kv.version);
        Ok(Claim {
            won: false,
            version: current,
            revision: header,
        })
    }
}

fn watch(start: &[u8], end: &[u8], from: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: Bytes::copy_from_slice(start),
        range_end: Bytes::copy_from_slice(end),
        start_revision: from,
        prev_kv: true,
        ..Default::default()
    }
}

fn get(key: &[u8]) -> RangeRequest {
    RangeRequest {
        key: Bytes::copy_from_slice(key),
        limit: 1,
        ..Default::default()
    }
}

fn list(start: &[u8], end: &[u8], limit: i64, revision: i64) -> RangeRequest {
    RangeRequest {
        key: Bytes::copy_from_slice(start),
        range_end: Bytes::copy_from_slice(end),
        limit,
        revision,
        ..Default::default()
    }
}

fn mod_revision_is(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Mod as i32,
        key: Bytes::copy_from_slice(key),
        target_union: Some(TargetUnion::ModRevision(revision)),
        ..Default::default()
    }
}

fn put(key: &[u8], value: Bytes, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: Bytes::copy_from_slice(key),
            value,
            lease,
            ..Default::default()
        })),
    }
}

fn range_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(get(key))),
    }
}

fn create(key: &[u8], value: Bytes, lease: i64) -> TxnRequest {
    TxnRequest {
        compare: vec![mod_revision_is(key, 0)],
        success: vec![put(key, value, lease)],
        failure: vec![],
    }
}

fn update(key: &[u8], value: Bytes, expected: i64, lease: i64) -> TxnRequest {
    TxnRequest {
        compare: vec![mod_revision_is(key, expected)],
        success: vec![put(key, value, lease)],
        failure: vec![range_op(key)],
    }
}

fn delete(key: &[u8], expected: i64) -> TxnRequest {
    TxnRequest {
        compare: vec![mod_revision_is(key, expected)],
        success: vec![RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: Bytes::copy_from_slice(key),
                ..Default::default()
            })),
        }],
        failure: vec![range_op(key)],
    }
}

/// The compactor's claim (kube-apiserver's etcd3/compact.go): If(version ==
/// v) Then(Put key = revision) Else(Range key). The Put bumps the version,
/// which is what makes exactly one API server win each round.
fn claim(key: &[u8], version: i64, revision: i64) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Version as i32,
            key: Bytes::copy_from_slice(key),
            target_union: Some(TargetUnion::Version(version)),
            ..Default::default()
        }],
        success: vec![put(key, Bytes::from(revision.to_string()), 0)],
        failure: vec![range_op(key)],
    }
}

/// The key an Else(Range key) read, if it exists.
fn else_range(responses: Vec<oxetcd_proto::etcdserverpb::ResponseOp>) -> Option<mvccpb::KeyValue> {
    responses
        .into_iter()
        .find_map(|op| match op.response {
            Some(Response::ResponseRange(r)) => Some(r.kvs),
            _ => None,
        })
        .and_then(|kvs| kvs.into_iter().next())
}

fn kv(kv: mvccpb::KeyValue) -> Kv {
    Kv {
        key: kv.key,
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
    }
}

fn page(resp: RangeResponse) -> Page {
    Page {
        revision: resp.header.map(|h| h.revision).unwrap_or_default(),
        more: resp.more,
        count: resp.count,
        kvs: resp.kvs.into_iter().map(kv).collect(),
    }
}

/// What a guarded write's response says: applied at the header revision, or
/// the key as the Else branch read it (a create has no Else: the key exists).
fn written(resp: TxnResponse) -> Result<Written, StoreError> {
    let revision = resp.header.map(|h| h.revision).unwrap_or_default();
    if resp.succeeded {
        return Ok(Written::Done { revision });
    }
    let current = else_range(resp.responses).map(kv);
    Ok(Written::Conflict { current })
}

/// The store-neutral form of an etcd watch event.
pub(super) fn event(e: &mvccpb::Event) -> Option<Event> {
    let current = e.kv.clone()?;
    let prev = e.prev_kv.clone().map(kv);
    if e.r#type == EventType::Delete as i32 {
        Some(Event::Delete {
            key: current.key,
            revision: current.mod_revision,
            prev,
        })
    } else {
        Some(Event::Put {
            kv: kv(current),
            prev,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_compares_mod_revision_zero_without_else() {
        let t = create(
            b"/registry/configmaps/default/a",
            Bytes::from_static(b"{}"),
            0,
        );
        assert_eq!(t.compare.len(), 1);
        assert_eq!(t.compare[0].target, CompareTarget::Mod as i32);
        assert_eq!(t.compare[0].target_union, Some(TargetUnion::ModRevision(0)));
        assert!(matches!(
            t.success[0].request,
            Some(Request::RequestPut(ref p)) if p.key == "/registry/configmaps/default/a"
        ));
        assert!(t.failure.is_empty());
    }

    #[test]
    fn update_and_delete_read_the_key_when_the_guard_fails() {
        for t in [
            update(b"k", Bytes::from_static(b"v"), 7, 0),
            delete(b"k", 7),
        ] {
            assert_eq!(t.compare[0].target_union, Some(TargetUnion::ModRevision(7)));
            assert!(matches!(
                t.failure[0].request,
                Some(Request::RequestRange(ref r)) if r.key == "k" && r.limit == 1
            ));
        }
    }
}
