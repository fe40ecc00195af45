//! Write transactions: the changes of one or more write requests, each request
//! at its own main revision, stored with one backend batch.
//!
//! A request that changes anything gets main revision `current + 1`; its
//! changes get sub revisions 0, 1, 2, ... A request that changes nothing (reads
//! only, or a delete that matched nothing) creates no revision, as in etcd.
//! [`WriteTxn::finish_revision`] closes one request's revision and opens the
//! next, so a batch of requests from one log entry costs one backend write:
//!
//! ```text
//! txn (base rev 10): put a, put b | finish -> 11 | delete c | finish -> 12 | end
//! backend: one batch with revs 11.0, 11.1, 12.0, current_rev = 12
//! ```
//!
//! Reads inside the txn see its own earlier changes, of every revision.

use bytes::Bytes;
use oxetcd_proto::mvccpb::event::EventType;
use oxetcd_proto::mvccpb::{Event, KeyValue};
use parking_lot::RwLockWriteGuard;
use prost::Message;

use crate::backend::{Bucket, WriteBatch};
use crate::error::Result;
use crate::index::KeyRange;
use crate::revision::Revision;
use crate::store::{
    encode_i64, fetch_kv, lease_record_key, read_range, RangeOptions, RangeResult, State, Store,
    META_APPLIED_STATE, META_CURRENT_REV,
};

/// One write request in progress. Holds the store's write lock until `end`.
pub struct WriteTxn<'a> {
    store: &'a Store,
    state: RwLockWriteGuard<'a, State>,
    batch: WriteBatch,
    /// The store's revision when the txn began; the txn's revisions follow it.
    base_rev: i64,
    /// Changes made so far in the open revision; the next one's sub revision.
    changes: i64,
    /// This txn's changes as watch events, in revision order. Reads in the txn
    /// find its own puts here before they reach the backend.
    events: Vec<Event>,
    /// Where each revision's events start in `events`: `starts[i]` for
    /// revision `base_rev + 1 + i`; the last one is the open revision's.
    starts: Vec<usize>,
    /// The state machine's applied record, stored with the changes.
    applied_state: Option<Bytes>,
    /// Whether the batch holds lease records: those are stored even by a txn
    /// that makes no revision (a lease grant changes no key).
    leases_changed: bool,
}

impl Store {
    /// Starts a write txn: the changes of one log entry's commands.
    pub fn write(&self) -> WriteTxn<'_> {
        let state = self.state.write();
        WriteTxn {
            store: self,
            base_rev: state.current_rev,
            state,
            batch: WriteBatch::default(),
            changes: 0,
            events: Vec::new(),
            starts: vec![0],
            applied_state: None,
            leases_changed: false,
        }
    }
}

impl WriteTxn<'_> {
    /// The revision reads in this txn see: the txn's own if it changed anything.
    pub fn read_rev(&self) -> i64 {
        self.state.current_rev + i64::from(self.changes > 0)
    }

    /// The main revision of this txn's changes.
    pub fn write_rev(&self) -> i64 {
        self.state.current_rev + 1
    }

    /// Reads a range, seeing this txn's changes so far.
    pub fn range(&self, range: KeyRange<'_>, opts: &RangeOptions) -> Result<RangeResult> {
        let backend = self.store.backend.as_ref();
        let write_rev = self.write_rev();
        read_range(&self.state, range, opts, self.read_rev(), |rev| {
            if rev.main > self.base_rev && rev.main <= write_rev {
                let own = usize::try_from(rev.main - self.base_rev - 1)
                    .ok()
                    .and_then(|i| self.starts.get(i))
                    .and_then(|start| self.events.get(start + rev.sub as usize))
                    .filter(|e| e.r#type == EventType::Put as i32);
                if let Some(kv) = own.and_then(|e| e.kv.clone()) {
                    return Ok(kv);
                }
            }
            fetch_kv(backend, rev)
        })
    }

    fn next_rev(&mut self) -> Revision {
        let rev = Revision::new(self.write_rev(), self.changes);
        self.changes += 1;
        rev
    }

    /// Puts `value` at `key`; returns the stored key-value.
    pub fn put(&mut self, key: Bytes, value: Bytes, lease: i64) -> KeyValue {
        let rev = self.next_rev();
        let (create_revision, version) = self.state.index.put(&key, rev);
        let kv = KeyValue {
            key,
            create_revision,
            mod_revision: rev.main,
            version,
            value,
            lease,
        };
        self.batch
            .put(Bucket::Key, rev.to_key(false).to_vec(), kv.encode_to_vec());
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv.clone()),
            prev_kv: None,
        });
        kv
    }

    /// Deletes every key live in `range`; returns the deleted keys.
    pub fn delete_range(&mut self, range: KeyRange<'_>) -> Vec<Bytes> {
        let mut keys = Vec::new();
        self.state.index.visit(range, self.read_rev(), |k, _| {
            keys.push(k.clone());
            true
        });
        for key in &keys {
            let rev = self.next_rev();
            self.state.index.tombstone(key, rev);
            let tomb = KeyValue {
                key: key.clone(),
                mod_revision: rev.main,
                ..KeyValue::default()
            };
            self.batch
                .put(Bucket::Key, rev.to_key(true).to_vec(), tomb.encode_to_vec());
            self.events.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(tomb),
                prev_kv: None,
            });
        }
        keys
    }

    /// The open revision's changes so far, as watch events in sub revision
    /// order.
    pub fn events(&self) -> &[Event] {
        let start = self.starts.last().copied().unwrap_or(0);
        &self.events[start..]
    }

    /// Closes the open revision (if it changed anything) and opens the next:
    /// what follows is another request. Returns the store's revision now.
    pub fn finish_revision(&mut self) -> i64 {
        if self.changes > 0 {
            self.state.current_rev += 1;
            self.changes = 0;
            self.starts.push(self.events.len());
        }
        self.state.current_rev
    }

    /// Stores lease `id`'s record (opaque here) with this txn's changes.
    pub fn put_lease_record(&mut self, id: i64, record: Bytes) {
        self.batch.put(Bucket::Meta, lease_record_key(id), record);
        self.leases_changed = true;
    }

    /// Deletes lease `id`'s record with this txn's changes.
    pub fn delete_lease_record(&mut self, id: i64) {
        self.batch.delete(Bucket::Meta, lease_record_key(id));
        self.leases_changed = true;
    }

    /// Stores `applied` (the state machine's record of what it applied) in the
    /// same atomic batch as this txn's changes, if it has any.
    pub fn set_applied_state(&mut self, applied: Bytes) {
        self.applied_state = Some(applied);
    }

    /// Ends the txn: closes the open revision and writes every change to the
    /// backend in one batch (visible at the next `Store::publish`, durable at
    /// the next `Store::flush`). Returns the store's revision after the txn.
    pub fn end(mut self) -> Result<i64> {
        let rev = self.finish_revision();
        if rev > self.base_rev {
            self.batch
                .put(Bucket::Meta, META_CURRENT_REV, encode_i64(rev));
        }
        if rev > self.base_rev || self.leases_changed {
            if let Some(applied) = &self.applied_state {
                self.batch
                    .put(Bucket::Meta, META_APPLIED_STATE, applied.clone());
            }
            self.store.backend.apply(std::mem::take(&mut self.batch))?;
            if let Some(applied) = self.applied_state.take() {
                self.state.applied_state = Some(applied);
            }
        }
        if rev > self.base_rev {
            let events = std::mem::take(&mut self.events);
            self.state.pending_events.extend(events);
        }
        Ok(rev)
    }
}
