//! etcd's backend layout in bbolt, and moving a whole store between it and
//! ours (etcd's snapshots and data dirs are this file).
//!
//! ```text
//! bucket "key":   revision key -> mvccpb.KeyValue
//!                 revision key = main u64 BE | '_' | sub u64 BE [| 't' for a tombstone]
//!                 e.g. 0000000000000005 5f 0000000000000000 = revision 5_0
//!                 a tombstone's KeyValue holds only its key
//! bucket "meta":  "consistent_index" -> u64 BE (the last Raft index applied)
//!                 "finishedCompactRev", "scheduledCompactRev" -> revision key
//!                 (3.5 adds "term")
//! bucket "lease": lease ID i64 BE -> leasepb.Lease {ID, TTL, RemainingTTL}
//! bucket "members": member ID in hex -> JSON {"id", "peerURLs", "name", "clientURLs"}
//! bucket "cluster": "clusterVersion" -> "3.4.0"
//! buckets "auth", "authRoles", "authUsers": the auth state (filled by the
//! caller from its cluster records, see `EtcdExport::cluster_buckets`)
//! buckets "members_removed", "alarm"
//! ```
//!
//! Our store keeps the same KeyValue bytes under our own revision keys (see
//! `revision`), and lease records under `lease/` in its meta bucket, as opaque
//! bytes: the caller converts between them and etcd's `leasepb.Lease`. The
//! import leaves the auth buckets to its caller, who reads them with the same
//! `Reader`.

use std::io::{Seek, Write};

use bytes::Bytes;
use oxetcd_proto::mvccpb::KeyValue;
use prost::Message;

use super::read::{PageSource, Reader};
use super::write::Writer;
use super::BboltError;
use crate::backend::{Backend, Bucket, WriteBatch};
use crate::error::{Result, StorageError};
use crate::revision::Revision;
use crate::store::{encode_i64, lease_record_key, Store, META_COMPACT_REV, META_CURRENT_REV};

pub const KEY_BUCKET: &[u8] = b"key";
pub const META_BUCKET: &[u8] = b"meta";
pub const LEASE_BUCKET: &[u8] = b"lease";
pub const MEMBERS_BUCKET: &[u8] = b"members";
pub const CLUSTER_BUCKET: &[u8] = b"cluster";
/// Buckets etcd 3.4 creates: written empty unless
/// [`EtcdExport::cluster_buckets`] fills them (auth does).
const OTHER_BUCKETS: [&[u8]; 5] = [
    b"members_removed",
    b"alarm",
    b"auth",
    b"authRoles",
    b"authUsers",
];
const CONSISTENT_INDEX: &[u8] = b"consistent_index";
const FINISHED_COMPACT_REV: &[u8] = b"finishedCompactRev";
const SCHEDULED_COMPACT_REV: &[u8] = b"scheduledCompactRev";
const CLUSTER_VERSION: &[u8] = b"clusterVersion";
/// Backend batch size while importing.
const IMPORT_BATCH: usize = 10_000;
/// Deletions per batch when an import finishes the compaction etcd left.
const IMPORT_COMPACTION_BATCH: usize = 10_000;

/// etcd's `leasepb.Lease`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdLease {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

/// etcd's revision key for (main, sub), with a 't' for a tombstone.
pub fn etcd_revision_key(rev: Revision, tombstone: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(18);
    out.extend_from_slice(&(rev.main as u64).to_be_bytes());
    out.push(b'_');
    out.extend_from_slice(&(rev.sub as u64).to_be_bytes());
    if tombstone {
        out.push(b't');
    }
    out
}

/// Decodes etcd's revision key into the revision and its tombstone mark.
pub fn parse_etcd_revision_key(key: &[u8]) -> Option<(Revision, bool)> {
    let tombstone = match key.len() {
        17 => false,
        18 if key[17] == b't' => true,
        _ => return None,
    };
    if key[8] != b'_' {
        return None;
    }
    let main = u64::from_be_bytes(key[..8].try_into().ok()?) as i64;
    let sub = u64::from_be_bytes(key[9..17].try_into().ok()?) as i64;
    Some((Revision::new(main, sub), tombstone))
}

/// What goes into an etcd database besides the store itself.
pub struct EtcdExport<'a> {
    /// Written as "consistent_index" (etcdctl snapshot restore rewrites it).
    pub consistent_index: u64,
    /// Members: ID -> etcd's member JSON.
    pub members: Vec<(u64, Vec<u8>)>,
    /// Written as "clusterVersion", e.g. "3.4.0".
    pub cluster_version: &'a str,
    /// Converts one of our lease records to etcd's form.
    pub lease: &'a dyn Fn(i64, &[u8]) -> Result<EtcdLease>,
    /// Given every cluster record (key without the `cluster/` namespace,
    /// read under the same lock as the data, so of the same moment), the
    /// etcd buckets they make, each with its entries (auth's users, roles
    /// and flags). Buckets not named are written as etcd has them: empty.
    pub cluster_buckets: &'a dyn Fn(Vec<(String, Bytes)>) -> Result<Vec<EtcdBucket>>,
}

/// A top-level bucket of etcd's database: its name and its entries.
pub type EtcdBucket = (&'static [u8], Vec<(Vec<u8>, Vec<u8>)>);

/// What an etcd database held (or was written with).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EtcdDbSummary {
    /// Highest revision (the compacted revision if history is empty).
    pub revision: i64,
    pub compact_revision: i64,
    /// A compaction etcd scheduled but did not finish (import completes it).
    pub scheduled_compact_revision: i64,
    pub consistent_index: u64,
    /// Entries of the "key" bucket: every revision of every key kept.
    pub revisions: u64,
    pub leases: u64,
    /// File size, when written.
    pub size: u64,
}

impl Store {
    /// Writes the whole store, as of its latest visible revision, as etcd's
    /// backend database (what etcd's Maintenance.Snapshot streams). Writers
    /// wait while it runs, so the copy is of one revision exactly.
    pub fn write_etcd_db<W: Write + Seek>(
        &self,
        out: W,
        export: &EtcdExport<'_>,
    ) -> Result<(W, EtcdDbSummary)> {
        let state = self.state.read();
        let revision = self.current_revision();
        let mut summary = EtcdDbSummary {
            revision,
            compact_revision: state.compact_rev,
            scheduled_compact_revision: state.compact_rev,
            consistent_index: export.consistent_index,
            ..EtcdDbSummary::default()
        };
        let mut w = Writer::new(out)?;
        let end = Revision::scan_start(revision + 1);
        let mut revisions = 0u64;
        // Revisions a compaction queued but has not deleted yet are not
        // history any more: etcd would find them as kept ones.
        let not_queued = |entry: &Result<(Bytes, Bytes)>| match entry {
            Ok((k, _)) => Revision::from_key(k).is_none_or(|(r, _)| !state.removals.contains(r)),
            Err(_) => true,
        };
        let keys = self
            .backend
            .scan(Bucket::Key, &[], Some(&end))
            .filter(not_queued)
            .map(|entry| -> std::result::Result<_, BboltError> {
                let (k, v) = entry.map_err(|e| BboltError::Source(e.to_string()))?;
                let (rev, tombstone) = Revision::from_key(&k)
                    .ok_or_else(|| BboltError::Source(format!("bad revision key {k:x?}")))?;
                revisions += 1;
                let value = if tombstone {
                    // etcd's tombstones carry only the key.
                    let kv = KeyValue::decode(v)
                        .map_err(|e| BboltError::Source(format!("revision {rev}: {e}")))?;
                    KeyValue {
                        key: kv.key,
                        ..KeyValue::default()
                    }
                    .encode_to_vec()
                } else {
                    v.to_vec()
                };
                Ok((etcd_revision_key(rev, tombstone), value))
            });
        w.bucket(KEY_BUCKET, keys)?;
        summary.revisions = revisions;

        let mut meta = vec![(
            CONSISTENT_INDEX.to_vec(),
            export.consistent_index.to_be_bytes().to_vec(),
        )];
        if state.compact_rev > 0 {
            let rev = etcd_revision_key(Revision::new(state.compact_rev, 0), false);
            meta.push((FINISHED_COMPACT_REV.to_vec(), rev.clone()));
            meta.push((SCHEDULED_COMPACT_REV.to_vec(), rev));
        }
        meta.sort();
        w.bucket(META_BUCKET, meta.into_iter().map(Ok))?;

        // The store's lease record keys are a prefix and the ID (8 bytes BE).
        let first = lease_record_key(0);
        let prefix = &first[..first.len() - 8];
        let mut leases = Vec::new();
        for entry in self.backend.scan(Bucket::Meta, prefix, None) {
            let (k, v) = entry?;
            let Some(id) = k.strip_prefix(prefix) else {
                break;
            };
            let id: [u8; 8] = id
                .try_into()
                .map_err(|_| StorageError::Corrupt(format!("bad lease record key {k:x?}")))?;
            let id = i64::from_be_bytes(id);
            let lease = (export.lease)(id, &v)?;
            leases.push((id.to_be_bytes().to_vec(), lease.encode_to_vec()));
        }
        leases.sort();
        summary.leases = leases.len() as u64;
        w.bucket(LEASE_BUCKET, leases.into_iter().map(Ok))?;

        let mut members: Vec<(Vec<u8>, Vec<u8>)> = export
            .members
            .iter()
            .map(|(id, json)| (format!("{id:x}").into_bytes(), json.clone()))
            .collect();
        members.sort();
        w.bucket(MEMBERS_BUCKET, members.into_iter().map(Ok))?;
        w.bucket(
            CLUSTER_BUCKET,
            [Ok((
                CLUSTER_VERSION.to_vec(),
                export.cluster_version.as_bytes().to_vec(),
            ))],
        )?;
        let filled = (export.cluster_buckets)(self.scan_cluster_records("")?)?;
        drop(state);
        for name in OTHER_BUCKETS {
            if !filled.iter().any(|(n, _)| *n == name) {
                w.bucket(name, std::iter::empty())?;
            }
        }
        for (name, mut entries) in filled {
            entries.sort();
            w.bucket(name, entries.into_iter().map(Ok))?;
        }
        let (out, size) = w.finish()?;
        summary.size = size;
        Ok((out, summary))
    }

    /// Builds a store on `backend` (which must be empty) from etcd's database
    /// in `db`: every revision kept, the compacted revision, the leases
    /// (converted by `lease`). A compaction etcd scheduled but had not finished
    /// is completed.
    pub fn import_etcd_db<S: PageSource>(
        backend: Box<dyn Backend>,
        db: &Reader<S>,
        lease: &dyn Fn(EtcdLease) -> Bytes,
    ) -> Result<(Store, EtcdDbSummary)> {
        for bucket in [Bucket::Key, Bucket::Meta] {
            if backend.scan(bucket, &[], None).next().is_some() {
                return Err(StorageError::Backend(
                    "importing an etcd database needs an empty store".into(),
                ));
            }
        }
        let summary = read_etcd_db(backend.as_ref(), db, lease)?;
        backend.flush()?;
        let store = Store::open(backend)?;
        if summary.scheduled_compact_revision > summary.compact_revision {
            store.compact(summary.scheduled_compact_revision)?;
            store.finish_compaction(IMPORT_COMPACTION_BATCH)?;
            store.flush()?;
        }
        Ok((store, summary))
    }
}

/// Copies the etcd database's contents into `backend`.
fn read_etcd_db<S: PageSource>(
    backend: &dyn Backend,
    db: &Reader<S>,
    lease: &dyn Fn(EtcdLease) -> Bytes,
) -> Result<EtcdDbSummary> {
    let corrupt = |what: String| StorageError::Corrupt(format!("etcd database: {what}"));
    let mut summary = EtcdDbSummary::default();
    let mut batch = WriteBatch::default();
    let mut max_rev = 0i64;
    let found = db.for_each(KEY_BUCKET, &mut |k, v| {
        let (rev, tombstone) = parse_etcd_revision_key(k)
            .ok_or_else(|| BboltError::Corrupt(format!("bad revision key {k:x?}")))?;
        let value = if tombstone {
            // Ours keep the deletion's revision, as watchers are sent it.
            let kv = KeyValue::decode(v)
                .map_err(|e| BboltError::Corrupt(format!("revision {rev}: {e}")))?;
            KeyValue {
                key: kv.key,
                mod_revision: rev.main,
                ..KeyValue::default()
            }
            .encode_to_vec()
        } else {
            KeyValue::decode(v).map_err(|e| BboltError::Corrupt(format!("revision {rev}: {e}")))?;
            v.to_vec()
        };
        batch.put(Bucket::Key, rev.to_key(tombstone).to_vec(), value);
        max_rev = max_rev.max(rev.main);
        summary.revisions += 1;
        if batch.len() >= IMPORT_BATCH {
            backend
                .apply(std::mem::take(&mut batch))
                .map_err(|e| BboltError::Source(e.to_string()))?;
        }
        Ok(())
    })?;
    if !found {
        return Err(corrupt("no \"key\" bucket: not an etcd v3 database".into()));
    }
    let mut bad_meta = None;
    db.for_each(META_BUCKET, &mut |k, v| {
        let rev = || {
            parse_etcd_revision_key(v)
                .map(|(r, _)| r.main)
                .ok_or_else(|| BboltError::Corrupt(format!("bad meta value {v:x?}")))
        };
        match k {
            FINISHED_COMPACT_REV => summary.compact_revision = rev()?,
            SCHEDULED_COMPACT_REV => summary.scheduled_compact_revision = rev()?,
            CONSISTENT_INDEX => match <[u8; 8]>::try_from(v) {
                Ok(raw) => summary.consistent_index = u64::from_be_bytes(raw),
                Err(_) => bad_meta = Some("consistent_index is not 8 bytes"),
            },
            _ => {}
        }
        Ok(())
    })?;
    if let Some(why) = bad_meta {
        return Err(corrupt(why.into()));
    }
    db.for_each(LEASE_BUCKET, &mut |_, v| {
        let l = EtcdLease::decode(v).map_err(|e| BboltError::Corrupt(format!("lease: {e}")))?;
        batch.put(Bucket::Meta, lease_record_key(l.id), lease(l));
        summary.leases += 1;
        Ok(())
    })?;
    summary.revision = max_rev.max(summary.compact_revision).max(1);
    batch.put(Bucket::Meta, META_CURRENT_REV, encode_i64(summary.revision));
    if summary.compact_revision > 0 {
        batch.put(
            Bucket::Meta,
            META_COMPACT_REV,
            encode_i64(summary.compact_revision),
        );
    }
    backend.apply(batch)?;
    Ok(summary)
}
