//! One watcher: what it watches, how, and the next revision it is owed.

use bytes::Bytes;
use oxetcd_proto::mvccpb::event::EventType;
use oxetcd_proto::mvccpb::Event;
use oxetcd_storage::KeyRange;

use crate::outbox::Outbox;

/// A stream and a watch ID on it: a watcher's identity in the hub.
pub type WatcherKey = (StreamId, i64);
pub type StreamId = u64;

/// What a client asked to watch (a WatchCreateRequest, normalized).
#[derive(Clone, Debug, Default)]
pub struct WatchSpec {
    /// Client-chosen ID; 0 = let the hub choose.
    pub watch_id: i64,
    pub key: Bytes,
    /// Empty: the single key. `[0]`: every key >= key. Otherwise `[key, end)`.
    pub range_end: Bytes,
    /// First revision wanted; 0 = the next one.
    pub start_revision: i64,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
    pub progress_notify: bool,
    pub fragment: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Watcher {
    pub(crate) key: WatcherKey,
    pub(crate) spec: WatchSpec,
    /// Every event at or after this revision is still owed.
    pub(crate) next_rev: i64,
    /// Events were sent since the last progress tick.
    pub(crate) active: bool,
    /// Its stream's queue.
    pub(crate) outbox: Outbox,
}

impl Watcher {
    pub(crate) fn new(key: WatcherKey, spec: WatchSpec, next_rev: i64, outbox: Outbox) -> Self {
        Self {
            key,
            spec,
            next_rev,
            active: false,
            outbox,
        }
    }

    pub(crate) fn range(&self) -> KeyRange<'_> {
        KeyRange::new(&self.spec.key, &self.spec.range_end)
    }

    /// True when this watcher wants `event` (its key, type and revision).
    pub(crate) fn wants(&self, event: &Event) -> bool {
        let Some(kv) = &event.kv else { return false };
        if kv.mod_revision < self.next_rev || !self.range().contains(&kv.key) {
            return false;
        }
        if event.r#type == EventType::Put as i32 {
            !self.spec.no_put
        } else {
            !self.spec.no_delete
        }
    }
}
