//! The store the API keeps its objects in, as kube-apiserver uses etcd
//! (reference: kubernetes-apiserver.md §2): one trait, [`Store`], with the
//! operations the REST layer needs, implemented once (in `txn`) for any
//! [`Transport`], the etcd requests carried; two transports:
//! - [`embedded::Embedded`]: an oxetcd member started in this process;
//! - [`remote::Remote`]: a gRPC client of `--etcd-servers` (oxetcd or etcd).
//!
//! The request shapes (create = txn if mod_revision == 0; update and delete
//! guarded by mod_revision with a Range in Else) are built and read only in
//! `txn`; a transport only carries them.

pub mod compactor;
pub mod embedded;
pub mod lease;
pub mod remote;
mod txn;

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use oxetcd_proto::etcdserverpb::{
    CompactionRequest, LeaseGrantRequest, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
    WatchCreateRequest,
};

/// One stored key-value, as much of etcd's KeyValue as the API uses.
#[derive(Clone, Debug, PartialEq)]
pub struct Kv {
    pub key: Bytes,
    pub value: Bytes,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// One page of a range read.
#[derive(Clone, Debug)]
pub struct Page {
    pub kvs: Vec<Kv>,
    /// More keys follow the last one returned (etcd's `more`).
    pub more: bool,
    /// Keys in the whole range at `revision` (etcd's `count`).
    pub count: i64,
    /// The revision the page was read at (the response header's).
    pub revision: i64,
}

/// The outcome of a guarded write.
#[derive(Clone, Debug, PartialEq)]
pub enum Written {
    /// Applied at this revision.
    Done { revision: i64 },
    /// The guard failed; `current` is the key's value now (None: absent).
    Conflict { current: Option<Kv> },
}

/// The outcome of a compaction claim (see [`compactor`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    /// This round's claim took the key: compact now.
    pub won: bool,
    /// The key's version after the claim (the round counter all API servers
    /// sharing the store agree on).
    pub version: i64,
    /// The claim's header revision: what the next round compacts to.
    pub revision: i64,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Put {
        kv: Kv,
        prev: Option<Kv>,
    },
    /// `revision` is the deletion's; `prev` the value deleted (when not
    /// compacted away).
    Delete {
        key: Bytes,
        revision: i64,
        prev: Option<Kv>,
    },
}

impl Event {
    pub fn revision(&self) -> i64 {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }
}

/// Changes in revision order, each item the events of one or more whole
/// revisions. After an error the stream ends.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Vec<Event>, StoreError>> + Send>>;

/// What a watch opened with [`Store::watch_progress`] delivers.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchItem {
    /// The events of one or more whole revisions.
    Events(Vec<Event>),
    /// A progress notification: no change in the range up to this revision
    /// is still to come.
    Progress(i64),
}

/// Asks a watch for a progress notification (etcd's WatchProgressRequest).
pub type ProgressRequester = Arc<dyn Fn() + Send + Sync>;

/// A watch whose progress can be asked for (the watch cache's).
pub struct ProgressWatch {
    /// In revision order; after an error the stream ends.
    pub items: Pin<Box<dyn Stream<Item = Result<WatchItem, StoreError>> + Send>>,
    pub request_progress: ProgressRequester,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum StoreError {
    /// The revision asked for is compacted; `compact_revision` when the store
    /// said which revision it is compacted to.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted { compact_revision: Option<i64> },
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: request is too large")]
    TooLarge,
    /// No leader, stopped, unreachable: worth retrying later.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Other(String),
}

/// What the API asks of its store. Keys are full etcd keys (prefix included).
#[async_trait]
pub trait Store: Send + Sync {
    /// The key's current value (a linearizable Range, limit 1) and the
    /// header revision.
    async fn get(&self, key: &[u8]) -> Result<(Option<Kv>, i64), StoreError>;

    /// Keys in [start, end) at `revision` (0 = now), at most `limit` (0 = all).
    async fn list(
        &self,
        start: &[u8],
        end: &[u8],
        limit: i64,
        revision: i64,
    ) -> Result<Page, StoreError>;

    /// Writes `value` only if `key` does not exist (Txn If mod_revision ==
    /// 0), attached to `lease` (0: none).
    async fn create(&self, key: &[u8], value: Bytes, lease: i64) -> Result<Written, StoreError>;

    /// Writes `value` only if `key`'s mod_revision is `expected`, attached to
    /// `lease` (0: none).
    async fn update(
        &self,
        key: &[u8],
        value: Bytes,
        expected: i64,
        lease: i64,
    ) -> Result<Written, StoreError>;

    /// Grants a lease of `ttl` seconds; returns its ID.
    async fn grant_lease(&self, ttl: i64) -> Result<i64, StoreError>;

    /// Deletes `key` only if its mod_revision is `expected`.
    async fn delete(&self, key: &[u8], expected: i64) -> Result<Written, StoreError>;

    /// Changes to keys in [start, end) from revision `from` on, with prev_kv.
    /// A compacted `from` gives one `Compacted` error.
    async fn watch(&self, start: &[u8], end: &[u8], from: i64) -> Result<EventStream, StoreError>;

    /// [`Store::watch`] that also delivers progress notifications, asked
    /// for through its [`ProgressRequester`].
    async fn watch_progress(
        &self,
        start: &[u8],
        end: &[u8],
        from: i64,
    ) -> Result<ProgressWatch, StoreError>;

    /// Whether a progress notification's revision can be trusted: no event
    /// at or below it is still to come on the watch (etcd >= 3.4.31 or
    /// 3.5.13, and oxetcd; older etcd answers a progress request on its own
    /// channel, ahead of events still being sent: etcd-io/etcd#15220).
    async fn progress_is_ordered(&self) -> bool;

    /// Compacts history up to `revision` (what kube-apiserver's compactor and
    /// the tests ask for).
    async fn compact(&self, revision: i64) -> Result<(), StoreError>;

    /// kube-apiserver's compaction claim: Txn If(version(`key`) == `version`)
    /// Then(Put `key` = `revision`) Else(Range `key`).
    async fn claim_compaction(
        &self,
        key: &[u8],
        version: i64,
        revision: i64,
    ) -> Result<Claim, StoreError>;
}

/// How a store reaches etcd: each call carries one etcd request as built by
/// `txn` and hands back etcd's answer. [`Store`] is implemented for every
/// transport in terms of these.
#[async_trait]
pub trait Transport: Send + Sync {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError>;
    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, StoreError>;
    async fn compaction(&self, req: CompactionRequest) -> Result<(), StoreError>;
    /// Returns the granted lease's ID.
    async fn lease_grant(&self, req: LeaseGrantRequest) -> Result<i64, StoreError>;
    /// Opens a watch; the stream ends after its first error.
    async fn open_watch(&self, req: WatchCreateRequest) -> Result<ProgressWatch, StoreError>;
    /// See [`Store::progress_is_ordered`].
    async fn progress_is_ordered(&self) -> bool;
}

/// The end of a prefix range: every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff: to the end of the keyspace.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }
}
