//! Reading etcd's WAL (`member/wal/*.wal`), only to tell whether its
//! database (`member/snap/db`) holds everything etcd committed.
//!
//! etcd applies entries to the database in memory and commits the database
//! to disk every 100 ms; after a kill, the WAL holds committed entries the
//! database lacks, which etcd replays on its next start. We do not replay
//! them, so an import must refuse such a directory.
//!
//! Segment format (etcd's wal/): records, each framed as
//!
//! ```text
//! u64 LE frame: low 56 bits = record length; if the top bit is set, the low
//!               3 bits of the top byte are padding bytes after the record
//! walpb.Record { type = 1: int64, crc = 2: uint32, data = 3: bytes }
//! ```
//!
//! Types: 1 metadata, 2 raftpb.Entry {Type = 1, Term = 2, Index = 3, Data = 4},
//! 3 raftpb.HardState {term = 1, vote = 2, commit = 3}, 4 crc (restarts the
//! running checksum at its crc field), 5 walpb.Snapshot. The crc of every other
//! record is CRC-32C (Castagnoli) of all record data so far, segment after
//! segment. A zero frame is preallocated space: the segment ends there. A
//! record that does not decode or check at the end of the last segment is a
//! torn write (etcd drops it too); anywhere else the WAL is corrupt.
//!
//! Worked example: a segment starts `0a00000000000000` (10 bytes follow)
//! `08 04 10 00 ...` (Record type 4 = crc, crc 0): the running checksum
//! starts at 0; the next entry record's crc must be CRC-32C(0, its data).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use bytes::Bytes;
use prost::Message;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("cannot read etcd's WAL {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("etcd's WAL {path} is corrupt at byte {offset}: {why}")]
    Corrupt {
        path: String,
        offset: u64,
        why: String,
    },
}

/// etcd's walpb.Record.
#[derive(Clone, PartialEq, Message)]
struct Record {
    #[prost(int64, tag = "1")]
    r#type: i64,
    #[prost(uint32, tag = "2")]
    crc: u32,
    #[prost(bytes = "bytes", tag = "3")]
    data: Bytes,
}

/// raftpb.Entry.
#[derive(Clone, PartialEq, Message)]
struct Entry {
    #[prost(int32, tag = "1")]
    r#type: i32,
    #[prost(uint64, tag = "2")]
    term: u64,
    #[prost(uint64, tag = "3")]
    index: u64,
    #[prost(bytes = "bytes", tag = "4")]
    data: Bytes,
}

/// raftpb.HardState.
#[derive(Clone, PartialEq, Message)]
struct HardState {
    #[prost(uint64, tag = "1")]
    term: u64,
    #[prost(uint64, tag = "2")]
    vote: u64,
    #[prost(uint64, tag = "3")]
    commit: u64,
}

/// The parts of etcdserverpb.InternalRaftRequest that change what the
/// database holds. Every v3 request etcd proposes has a header (field 100);
/// v2 requests (etcd's own member attributes, cluster version) do not.
#[derive(Clone, PartialEq, Message)]
struct InternalRaftRequest {
    #[prost(bytes = "bytes", optional, tag = "100")]
    header: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "4")]
    put: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "5")]
    delete_range: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "6")]
    txn: Option<Bytes>,
    #[prost(message, optional, tag = "7")]
    compaction: Option<CompactionRequest>,
    #[prost(message, optional, tag = "8")]
    lease_grant: Option<LeaseGrantRequest>,
    #[prost(message, optional, tag = "9")]
    lease_revoke: Option<LeaseRevokeRequest>,
}

#[derive(Clone, PartialEq, Message)]
struct CompactionRequest {
    #[prost(int64, tag = "1")]
    revision: i64,
}

#[derive(Clone, PartialEq, Message)]
struct LeaseRevokeRequest {
    #[prost(int64, tag = "1")]
    id: i64,
}

#[derive(Clone, PartialEq, Message)]
struct LeaseGrantRequest {
    #[prost(int64, tag = "1")]
    ttl: i64,
    #[prost(int64, tag = "2")]
    id: i64,
}

const ENTRY: i64 = 2;
const STATE: i64 = 3;
const CRC: i64 = 4;
/// raftpb.EntryNormal.
const NORMAL: i32 = 0;

/// Committed entries past the database's consistent index, and the commit index.
#[derive(Debug, Default)]
pub struct Tail {
    pub commit: u64,
    /// Committed entries with index above the consistent index.
    entries: BTreeMap<u64, Entry>,
}

/// What the database holds that tells whether a request that moves no
/// consistent index was applied to it.
#[derive(Debug, Default)]
pub struct DbFacts {
    pub leases: BTreeSet<i64>,
    /// "scheduledCompactRev": etcd records a compaction there when applying it.
    pub scheduled_compact: i64,
}

/// Why the database is behind the WAL, if it is.
#[derive(Debug, PartialEq, Eq)]
pub struct Behind {
    /// The first committed entry the database may lack.
    pub index: u64,
    pub what: &'static str,
}

impl Tail {
    /// Reads every segment in `dir`, keeping the entries past `consistent_index`.
    pub fn read(dir: &Path, consistent_index: u64) -> Result<Self, WalError> {
        let io = |source| WalError::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "wal"))
            .collect();
        names.sort();
        let mut tail = Tail::default();
        let mut crc = 0u32;
        for (i, path) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            let data = fs::read(path).map_err(|source| WalError::Io {
                path: path.display().to_string(),
                source,
            })?;
            tail.read_segment(&data, &mut crc, last, consistent_index)
                .map_err(|(offset, why)| WalError::Corrupt {
                    path: path.display().to_string(),
                    offset,
                    why,
                })?;
        }
        tail.entries.retain(|&i, _| i <= tail.commit);
        Ok(tail)
    }

    fn read_segment(
        &mut self,
        data: &[u8],
        crc: &mut u32,
        last: bool,
        consistent_index: u64,
    ) -> Result<(), (u64, String)> {
        let mut at = 0usize;
        while at + 8 <= data.len() {
            let mut frame = [0u8; 8];
            frame.copy_from_slice(&data[at..at + 8]);
            let frame = u64::from_le_bytes(frame);
            if frame == 0 {
                return Ok(()); // preallocated space
            }
            let len = (frame & !(0xff << 56)) as usize;
            let pad = if frame >> 63 == 1 {
                ((frame >> 56) & 0x7) as usize
            } else {
                0
            };
            let Some(raw) = data.get(at + 8..at + 8 + len) else {
                return torn(last, at, "record runs past the segment");
            };
            let record = match Record::decode(raw) {
                Ok(r) => r,
                Err(e) => return torn(last, at, &e.to_string()),
            };
            if record.r#type == CRC {
                *crc = record.crc;
            } else {
                let next = crc32c_update(*crc, &record.data);
                if next != record.crc {
                    return torn(last, at, "record checksum mismatch");
                }
                *crc = next;
                self.apply(&record, consistent_index)
                    .map_err(|why| (at as u64, why))?;
            }
            at += 8 + len + pad;
        }
        Ok(())
    }

    fn apply(&mut self, record: &Record, consistent_index: u64) -> Result<(), String> {
        match record.r#type {
            ENTRY => {
                let e = Entry::decode(record.data.clone()).map_err(|e| e.to_string())?;
                // A new entry at index i replaces every entry from i on (a
                // new leader overwrote an uncommitted tail).
                self.entries.split_off(&e.index);
                if e.index > consistent_index {
                    self.entries.insert(e.index, e);
                }
            }
            STATE => {
                let s = HardState::decode(record.data.clone()).map_err(|e| e.to_string())?;
                self.commit = s.commit;
            }
            _ => {}
        }
        Ok(())
    }

    /// The first committed entry whose change the database does not hold,
    /// if any. A put, delete or txn that changes keys moves the consistent
    /// index with it, so one past the index is a change the database lacks
    /// (one that changed nothing, e.g. a txn whose compare failed, is counted
    /// too: we cannot tell). Compactions and lease grants and revokes move
    /// no index; the database shows them (`facts`).
    pub fn first_missing(&self, facts: &DbFacts) -> Option<Behind> {
        for (&index, e) in &self.entries {
            if e.r#type != NORMAL || e.data.is_empty() {
                continue;
            }
            let Ok(r) = InternalRaftRequest::decode(e.data.clone()) else {
                continue; // a v2 request
            };
            if r.header.is_none() {
                continue;
            }
            let what = if r.put.is_some() {
                "put"
            } else if r.delete_range.is_some() {
                "delete"
            } else if r.txn.is_some() {
                "txn"
            } else if r
                .compaction
                .as_ref()
                .is_some_and(|c| c.revision > facts.scheduled_compact)
            {
                "compaction"
            } else if r
                .lease_revoke
                .as_ref()
                .is_some_and(|l| facts.leases.contains(&l.id))
            {
                "lease revoke"
            } else if r
                .lease_grant
                .as_ref()
                .is_some_and(|g| !facts.leases.contains(&g.id))
            {
                "lease grant"
            } else {
                continue;
            };
            return Some(Behind { index, what });
        }
        None
    }
}

fn torn(last: bool, at: usize, why: &str) -> Result<(), (u64, String)> {
    if last {
        Ok(()) // a torn write at the end: etcd drops it too
    } else {
        Err((at as u64, why.to_string()))
    }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), continuing from
/// `crc` as Go's crc32.Update does.
fn crc32c_update(crc: u32, data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut c = !crc;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A segment holding a committed put at `index` (for the import's tests).
    pub(in crate::datadir) fn segment_with_committed_put(index: u64) -> Vec<u8> {
        let mut s = Segment::new(0);
        s.entry(index, v3(|r| r.put = Some(Bytes::new())));
        s.commit(index);
        s.bytes
    }

    /// Builds a segment the way etcd's encoder does (8-byte aligned frames).
    struct Segment {
        bytes: Vec<u8>,
        crc: u32,
    }

    impl Segment {
        fn new(prev_crc: u32) -> Self {
            let mut s = Self {
                bytes: Vec::new(),
                crc: prev_crc,
            };
            s.frame(Record {
                r#type: CRC,
                crc: prev_crc,
                data: Bytes::new(),
            });
            s
        }
        fn frame(&mut self, r: Record) {
            let raw = r.encode_to_vec();
            let pad = (8 - raw.len() % 8) % 8;
            let mut frame = raw.len() as u64;
            if pad > 0 {
                frame |= (0x80 | pad as u64) << 56;
            }
            self.bytes.extend_from_slice(&frame.to_le_bytes());
            self.bytes.extend_from_slice(&raw);
            self.bytes.extend(std::iter::repeat_n(0u8, pad));
        }
        fn record(&mut self, ty: i64, data: Vec<u8>) {
            self.crc = crc32c_update(self.crc, &data);
            let crc = self.crc;
            self.frame(Record {
                r#type: ty,
                crc,
                data: data.into(),
            });
        }
        fn entry(&mut self, index: u64, data: Vec<u8>) {
            let e = Entry {
                r#type: NORMAL,
                term: 2,
                index,
                data: data.into(),
            };
            self.record(ENTRY, e.encode_to_vec());
        }
        fn commit(&mut self, commit: u64) {
            let s = HardState {
                term: 2,
                vote: 1,
                commit,
            };
            self.record(STATE, s.encode_to_vec());
        }
    }

    fn v3(f: impl FnOnce(&mut InternalRaftRequest)) -> Vec<u8> {
        let mut r = InternalRaftRequest {
            header: Some(Bytes::from_static(&[8, 1])),
            ..Default::default()
        };
        f(&mut r);
        r.encode_to_vec()
    }

    fn read(segments: &[Vec<u8>], ci: u64) -> Result<Tail, WalError> {
        let dir = tempfile::tempdir().unwrap();
        for (i, s) in segments.iter().enumerate() {
            fs::write(dir.path().join(format!("{i:016x}-{:016x}.wal", 0)), s).unwrap();
        }
        Tail::read(dir.path(), ci)
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c_update(0, b"123456789"), 0xE306_9283);
        // Continuing equals hashing the concatenation.
        assert_eq!(
            crc32c_update(crc32c_update(0, b"1234"), b"56789"),
            0xE306_9283
        );
    }

    #[test]
    fn a_committed_put_past_the_consistent_index_is_missing() {
        let mut s = Segment::new(0);
        s.entry(5, v3(|r| r.put = Some(Bytes::from_static(b"\x0a\x01k"))));
        s.entry(6, Vec::new()); // a leader's empty entry
        s.entry(7, v3(|r| r.put = Some(Bytes::new())));
        s.commit(6);
        s.bytes.extend_from_slice(&[0u8; 64]); // preallocated space
        let tail = read(&[s.bytes.clone()], 4).unwrap();
        assert_eq!(tail.commit, 6);
        assert_eq!(
            tail.first_missing(&DbFacts::default()),
            Some(Behind {
                index: 5,
                what: "put"
            })
        );
        // The database applied 5: entry 7 is not committed, nothing is missing.
        let tail = read(&[s.bytes], 5).unwrap();
        assert_eq!(tail.first_missing(&DbFacts::default()), None);
    }

    #[test]
    fn lease_grants_count_only_when_the_lease_is_absent() {
        let mut s = Segment::new(0);
        s.entry(
            3,
            v3(|r| r.lease_grant = Some(LeaseGrantRequest { ttl: 60, id: 9 })),
        );
        s.commit(3);
        let tail = read(&[s.bytes], 2).unwrap();
        let with_lease = DbFacts {
            leases: BTreeSet::from([9]),
            ..DbFacts::default()
        };
        assert_eq!(tail.first_missing(&with_lease), None);
        assert_eq!(
            tail.first_missing(&DbFacts::default()).map(|b| b.what),
            Some("lease grant")
        );
    }

    #[test]
    fn compactions_and_revokes_count_only_when_the_database_lacks_them() {
        let mut s = Segment::new(0);
        s.entry(
            3,
            v3(|r| r.compaction = Some(CompactionRequest { revision: 5 })),
        );
        s.entry(
            4,
            v3(|r| r.lease_revoke = Some(LeaseRevokeRequest { id: 9 })),
        );
        s.commit(4);
        let tail = read(&[s.bytes], 2).unwrap();
        let applied = DbFacts {
            leases: BTreeSet::new(),
            scheduled_compact: 5,
        };
        assert_eq!(tail.first_missing(&applied), None);
        let not_applied = DbFacts {
            leases: BTreeSet::from([9]),
            scheduled_compact: 5,
        };
        assert_eq!(
            tail.first_missing(&not_applied).map(|b| b.what),
            Some("lease revoke")
        );
        assert_eq!(
            tail.first_missing(&DbFacts::default()).map(|b| b.what),
            Some("compaction")
        );
    }

    #[test]
    fn v2_requests_and_overwritten_entries_are_not_missing() {
        let mut s = Segment::new(0);
        s.entry(3, v3(|r| r.put = Some(Bytes::new())));
        // A new leader overwrote index 3 with a v2 request (no header).
        s.entry(3, b"\x08\x01\x12\x03PUT".to_vec());
        s.commit(3);
        let tail = read(&[s.bytes], 2).unwrap();
        assert_eq!(tail.first_missing(&DbFacts::default()), None);
    }

    #[test]
    fn checksums_chain_across_segments_and_torn_tails_are_dropped() {
        let mut a = Segment::new(0);
        a.entry(3, v3(|r| r.put = Some(Bytes::new())));
        let mut b = Segment::new(a.crc);
        b.commit(3);
        let mut torn = b.bytes.clone();
        torn.extend_from_slice(&[0x20, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
        let tail = read(&[a.bytes.clone(), torn], 2).unwrap();
        assert_eq!(
            tail.first_missing(&DbFacts::default()).map(|b| b.index),
            Some(3)
        );

        // A damaged record in a segment that is not the last is corruption.
        let mut damaged = a.bytes.clone();
        damaged[30] ^= 0xff; // inside the entry record, after the crc record

        assert!(matches!(
            read(&[damaged, b.bytes], 2),
            Err(WalError::Corrupt { .. })
        ));
    }
}
