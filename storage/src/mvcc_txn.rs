//! Write transactions: every change of one write request, at one main revision.
//!
//! A txn that changes anything gets main revision `current + 1`; its changes get
//! sub revisions 0, 1, 2, ... Reads inside the txn see its own earlier changes.
//! A txn that changes nothing (reads only, or a delete that matched nothing)
//! creates no revision, as in etcd.

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
    META_APPLIED_INDEX, META_APPLIED_STATE, META_CURRENT_REV,
};

/// One write request in progress. Holds the store's write lock until `end`.
pub struct WriteTxn<'a> {
    store: &'a Store,
    state: RwLockWriteGuard<'a, State>,
    batch: WriteBatch,
    /// Changes made so far; the next one's sub revision.
    changes: i64,
    /// This txn's changes as watch events; `events[sub]` is the change at sub
    /// revision `sub`. Reads in the txn find its own puts here before they reach
    /// the backend.
    events: Vec<Event>,
    applied_index: u64,
    /// The state machine's applied record, stored with the changes.
    applied_state: Option<Bytes>,
    /// Whether the batch holds lease records: those are stored even by a txn
    /// that makes no revision (a lease grant changes no key).
    leases_changed: bool,
}

impl Store {
    /// Starts the write txn of the command with log index `applied_index`.
    pub fn write(&self, applied_index: u64) -> WriteTxn<'_> {
        WriteTxn {
            store: self,
            state: self.state.write(),
            batch: WriteBatch::default(),
            changes: 0,
            events: Vec::new(),
            applied_state: None,
            applied_index,
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
            if rev.main == write_rev {
                let own = self
                    .events
                    .get(rev.sub as usize)
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

    /// This txn's changes so far, as watch events in sub revision order.
    pub fn events(&self) -> &[Event] {
        &self.events
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

    /// Ends the txn: writes its changes to the backend (durable at the next
    /// `Store::commit`). Returns the store's revision after the txn.
    pub fn end(mut self) -> Result<i64> {
        if self.changes > 0 {
            let rev = self.write_rev();
            self.batch
                .put(Bucket::Meta, META_CURRENT_REV, encode_i64(rev));
            self.batch.put(
                Bucket::Meta,
                META_APPLIED_INDEX,
                encode_i64(self.applied_index as i64),
            );
            if let Some(applied) = &self.applied_state {
                self.batch
                    .put(Bucket::Meta, META_APPLIED_STATE, applied.clone());
            }
            self.store.backend.apply(std::mem::take(&mut self.batch))?;
            if let Some(applied) = self.applied_state.take() {
                self.state.applied_state = Some(applied);
            }
            self.state.current_rev = rev;
            self.state.applied_index = self.applied_index;
            let events = std::mem::take(&mut self.events);
            self.state.pending_events.extend(events);
        } else if self.leases_changed {
            if let Some(applied) = &self.applied_state {
                self.batch
                    .put(Bucket::Meta, META_APPLIED_STATE, applied.clone());
            }
            self.store.backend.apply(std::mem::take(&mut self.batch))?;
            if let Some(applied) = self.applied_state.take() {
                self.state.applied_state = Some(applied);
            }
        }
        Ok(self.state.current_rev)
    }
}
