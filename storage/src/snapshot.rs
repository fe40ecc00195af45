//! Snapshots: the whole store as one byte stream, for a member too far behind
//! to catch up from the log.
//!
//! Format (all integers little-endian):
//!
//! ```text
//! "OXSNAP01"                                  8 bytes, magic + format version
//! record*: bucket u8 | key_len u32 | key | value_len u32 | value
//!          bucket: b'k' = Key (revision -> KeyValue), b'm' = Meta
//! 0xFF | crc32 u32                            end marker, checksum of all before it
//! ```
//!
//! Worked example, one key bucket entry (key 3 bytes, value 2 bytes):
//! `4f58534e41503031 6b 03000000 616263 02000000 7879 ff <crc32>`.
//!
//! Installing one replaces everything in one engine batch (every old key
//! deleted, every record put), made durable before the install returns: a
//! crash leaves the old store or the new one, never a mix and never an empty
//! store. The old store must survive: the Raft log may already be purged up to
//! what it holds, and a member whose store went back to empty could not replay
//! its log (found by the Jepsen power-cut test, see `Store::open`).

use std::io::Write;

use bytes::Bytes;

use crate::backend::{Bucket, WriteBatch};
use crate::error::{Result, StorageError};
use crate::store::{load_state, Store, META_RESTORING};

const MAGIC: &[u8; 8] = b"OXSNAP01";
const END: u8 = 0xFF;

fn bucket_byte(b: Bucket) -> u8 {
    match b {
        Bucket::Key => b'k',
        Bucket::Meta => b'm',
    }
}

/// Writes and checksums at once.
struct Checksummed<W> {
    out: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Checksummed<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc.update(bytes);
        self.out.write_all(bytes)
    }
}

impl Store {
    /// Writes a consistent snapshot of the whole store (as of its latest
    /// applied revision) to `out`; returns the applied state it holds, which
    /// describes exactly what the snapshot contains. Everything in it is
    /// durable first: the Raft log it covers may be purged once it exists.
    pub fn snapshot_to(&self, out: impl Write) -> Result<Option<Bytes>> {
        let io = |e: std::io::Error| StorageError::Backend(format!("writing snapshot: {e}"));
        // The read lock keeps the single writer (and compaction) out from the
        // flush until the scans start: a change applied after the flush and
        // read into the snapshot would be in no durable copy once the log is
        // purged. An engine whose scans are point-in-time lets the writer go
        // on from there; with any other, it waits until the copy ends.
        let state = self.state.read();
        self.backend.flush()?;
        let applied = state.applied_state.clone();
        let scans = [Bucket::Meta, Bucket::Key].map(|b| (b, self.backend.scan(b, &[], None)));
        let _writer_kept_out = (!self.backend.scans_are_point_in_time()).then_some(state);
        let mut w = Checksummed {
            out,
            crc: crc32fast::Hasher::new(),
        };
        w.put(MAGIC).map_err(io)?;
        for (bucket, scan) in scans {
            for entry in scan {
                let (k, v) = entry?;
                if bucket == Bucket::Meta && k.as_ref() == META_RESTORING {
                    continue;
                }
                w.put(&[bucket_byte(bucket)]).map_err(io)?;
                w.put(&(k.len() as u32).to_le_bytes()).map_err(io)?;
                w.put(&k).map_err(io)?;
                w.put(&(v.len() as u32).to_le_bytes()).map_err(io)?;
                w.put(&v).map_err(io)?;
            }
        }
        w.put(&[END]).map_err(io)?;
        let crc = w.crc.clone().finalize();
        w.out.write_all(&crc.to_le_bytes()).map_err(io)?;
        w.out.flush().map_err(io)?;
        Ok(applied)
    }

    /// Replaces the whole store with `snapshot` (as written by `snapshot_to`),
    /// atomically and durably. The snapshot is checked completely before
    /// anything changes. Watchers must be re-synced by the caller: history may
    /// have jumped.
    pub fn install_snapshot(&self, snapshot: &[u8]) -> Result<()> {
        let records = parse(snapshot)?;
        let mut state = self.state.write();
        let mut batch = WriteBatch::default();
        // Deletes first: a later change of the same key wins (`WriteBatch`).
        for bucket in [Bucket::Key, Bucket::Meta] {
            for entry in self.backend.scan(bucket, &[], None) {
                let (key, _) = entry?;
                batch.delete(bucket, key);
            }
        }
        for (bucket, key, value) in records {
            batch.put(bucket, key, value);
        }
        self.backend.apply(batch)?;
        self.backend.flush()?;
        *state = load_state(self.backend.as_ref())?;
        self.reset_visible(state.current_rev);
        Ok(())
    }
}

/// Every record of a snapshot, after checking its framing and checksum.
fn parse(data: &[u8]) -> Result<Vec<(Bucket, Bytes, Bytes)>> {
    let bad = |why: &str| StorageError::Corrupt(format!("snapshot: {why}"));
    if data.len() < MAGIC.len() + 5 || &data[..MAGIC.len()] != MAGIC {
        return Err(bad("not an oxetcd snapshot (bad magic)"));
    }
    let (body, crc) = data.split_at(data.len() - 4);
    let want = u32::from_le_bytes(crc.try_into().map_err(|_| bad("truncated"))?);
    if crc32fast::hash(body) != want {
        return Err(bad("checksum mismatch"));
    }
    let data = Bytes::copy_from_slice(body);
    let mut at = MAGIC.len();
    let mut records = Vec::new();
    let take_len = |at: &mut usize| -> Result<usize> {
        let raw = data
            .get(*at..*at + 4)
            .ok_or_else(|| bad("truncated length"))?;
        *at += 4;
        Ok(u32::from_le_bytes(raw.try_into().map_err(|_| bad("length"))?) as usize)
    };
    loop {
        let tag = *data.get(at).ok_or_else(|| bad("missing end marker"))?;
        at += 1;
        let bucket = match tag {
            END if at == data.len() => return Ok(records),
            END => return Err(bad("bytes after the end marker")),
            b'k' => Bucket::Key,
            b'm' => Bucket::Meta,
            other => return Err(bad(&format!("unknown bucket {other:#x}"))),
        };
        let klen = take_len(&mut at)?;
        let key = data
            .get(at..at + klen)
            .ok_or_else(|| bad("truncated key"))?;
        let key = data.slice_ref(key);
        at += klen;
        let vlen = take_len(&mut at)?;
        let value = data
            .get(at..at + vlen)
            .ok_or_else(|| bad("truncated value"))?;
        let value = data.slice_ref(value);
        at += vlen;
        records.push((bucket, key, value));
    }
}
