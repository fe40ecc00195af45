//! Record framing and the payload of each record type (the byte layout is
//! documented in the module doc of [`crate::wal`]).

use bytes::Bytes;
use openraft::{CommittedLeaderId, EntryPayload, Membership};

use super::error::WalError;
use crate::types::{Entry, LogId, Payload, Vote};

/// `len u32 | crc u32 | type u8`.
pub(crate) const FRAME_HEADER_LEN: usize = 9;

/// The first 8 bytes of every segment's header record.
pub(crate) const MAGIC: [u8; 8] = *b"oxetcdwl";
/// The format version in the header record.
pub(crate) const VERSION: u32 = 1;

/// What a record is; the type byte of its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum RecordType {
    Header = 1,
    Entry = 2,
    Vote = 3,
    Committed = 4,
    Truncate = 5,
    Purge = 6,
}

impl RecordType {
    fn from_byte(b: u8) -> Option<RecordType> {
        Some(match b {
            1 => RecordType::Header,
            2 => RecordType::Entry,
            3 => RecordType::Vote,
            4 => RecordType::Committed,
            5 => RecordType::Truncate,
            6 => RecordType::Purge,
            _ => return None,
        })
    }
}

/// One decoded frame, borrowing its payload from the segment's bytes.
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    pub(crate) ty: RecordType,
    pub(crate) payload: &'a [u8],
    /// Header plus payload: where the next frame starts, relative to this one.
    pub(crate) total_len: usize,
}

/// Why the bytes at an offset are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Fewer bytes left than the frame header or the length it announces.
    Incomplete { need: usize, have: usize },
    /// The checksum does not match.
    Checksum { stored: u32, computed: u32 },
    /// The checksum matches but the type byte is unknown (a newer format).
    UnknownType(u8),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Incomplete { need, have } => {
                write!(
                    f,
                    "incomplete record: needs {need} bytes, {have} left in the file"
                )
            }
            FrameError::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            FrameError::UnknownType(t) => write!(f, "unknown record type {t}"),
        }
    }
}

fn checksum(len: [u8; 4], ty: u8, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(&[ty]);
    h.update(payload);
    h.finalize()
}

/// Decodes the frame at the start of `data`.
pub(crate) fn decode_frame(data: &[u8]) -> Result<Frame<'_>, FrameError> {
    let Some(header) = data.get(..FRAME_HEADER_LEN) else {
        return Err(FrameError::Incomplete {
            need: FRAME_HEADER_LEN,
            have: data.len(),
        });
    };
    let len_bytes = [header[0], header[1], header[2], header[3]];
    let len = u32::from_le_bytes(len_bytes) as usize;
    let stored = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let ty = header[8];
    let total_len = FRAME_HEADER_LEN + len;
    let Some(payload) = data.get(FRAME_HEADER_LEN..total_len) else {
        return Err(FrameError::Incomplete {
            need: total_len,
            have: data.len(),
        });
    };
    let computed = checksum(len_bytes, ty, payload);
    if computed != stored {
        return Err(FrameError::Checksum { stored, computed });
    }
    let ty = RecordType::from_byte(ty).ok_or(FrameError::UnknownType(ty))?;
    Ok(Frame {
        ty,
        payload,
        total_len,
    })
}

/// Appends one frame to `buf`; the payload is written by `write_payload`
/// directly into `buf`, then the header is filled in.
fn push_frame(
    buf: &mut Vec<u8>,
    ty: RecordType,
    write_payload: impl FnOnce(&mut Vec<u8>) -> Result<(), WalError>,
) -> Result<usize, WalError> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    write_payload(buf)?;
    let payload_len = buf.len() - start - FRAME_HEADER_LEN;
    // The whole frame's length must fit a u32 too (the in-memory index keeps it
    // as one).
    let (Ok(len), Ok(_)) = (
        u32::try_from(payload_len),
        u32::try_from(payload_len + FRAME_HEADER_LEN),
    ) else {
        buf.truncate(start);
        return Err(WalError::TooLarge { len: payload_len });
    };
    let len_bytes = len.to_le_bytes();
    let crc = checksum(len_bytes, ty as u8, &buf[start + FRAME_HEADER_LEN..]);
    buf[start..start + 4].copy_from_slice(&len_bytes);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    buf[start + 8] = ty as u8;
    Ok(buf.len() - start)
}

/// Vote, committed and purged: the state a segment's header carries forward so
/// that older segments can be deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CarriedState {
    pub(crate) vote: Option<Vote>,
    pub(crate) committed: Option<LogId>,
    pub(crate) purged: Option<LogId>,
}

/// The first record of every segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) seq: u64,
    pub(crate) state: CarriedState,
}

/// A decoded record. Entries are decoded to their log ID only: replay needs no
/// more, and reads decode the payload with [`decode_entry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    Header(SegmentHeader),
    Entry(LogId),
    Vote(Vote),
    Committed(Option<LogId>),
    Truncate(u64),
    Purge(LogId),
}

// ---- encoding --------------------------------------------------------------

const ENTRY_BLANK: u8 = 0;
const ENTRY_NORMAL: u8 = 1;
const ENTRY_MEMBERSHIP: u8 = 2;

fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_log_id(buf: &mut Vec<u8>, id: &LogId) {
    put_u64(buf, id.leader_id.term);
    put_u64(buf, id.leader_id.node_id);
    put_u64(buf, id.index);
}

fn put_opt_log_id(buf: &mut Vec<u8>, id: Option<&LogId>) {
    match id {
        None => buf.push(0),
        Some(id) => {
            buf.push(1);
            put_log_id(buf, id);
        }
    }
}

fn put_opt_vote(buf: &mut Vec<u8>, vote: Option<&Vote>) {
    match vote {
        None => buf.push(0),
        Some(v) => {
            buf.push(1);
            put_u64(buf, v.leader_id.term);
            put_u64(buf, v.leader_id.node_id);
            buf.push(u8::from(v.committed));
        }
    }
}

/// Appends a header frame; returns the frame length.
pub(crate) fn push_header(buf: &mut Vec<u8>, header: &SegmentHeader) -> Result<usize, WalError> {
    push_frame(buf, RecordType::Header, |b| {
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        put_u64(b, header.seq);
        put_opt_vote(b, header.state.vote.as_ref());
        put_opt_log_id(b, header.state.committed.as_ref());
        put_opt_log_id(b, header.state.purged.as_ref());
        Ok(())
    })
}

/// Appends an entry frame; returns the frame length.
pub(crate) fn push_entry<P: Payload>(
    buf: &mut Vec<u8>,
    entry: &Entry<P>,
) -> Result<usize, WalError> {
    push_frame(buf, RecordType::Entry, |b| {
        put_log_id(b, &entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => b.push(ENTRY_BLANK),
            EntryPayload::Normal(payload) => {
                b.push(ENTRY_NORMAL);
                payload.encode(b);
            }
            EntryPayload::Membership(m) => {
                b.push(ENTRY_MEMBERSHIP);
                serde_json::to_writer(&mut *b, m)
                    .map_err(|e| WalError::Membership(std::sync::Arc::new(e)))?;
            }
        }
        Ok(())
    })
}

/// Appends a vote frame; returns the frame length.
pub(crate) fn push_vote(buf: &mut Vec<u8>, vote: &Vote) -> Result<usize, WalError> {
    push_frame(buf, RecordType::Vote, |b| {
        put_u64(b, vote.leader_id.term);
        put_u64(b, vote.leader_id.node_id);
        b.push(u8::from(vote.committed));
        Ok(())
    })
}

/// Appends a committed frame; returns the frame length.
pub(crate) fn push_committed(
    buf: &mut Vec<u8>,
    committed: Option<&LogId>,
) -> Result<usize, WalError> {
    push_frame(buf, RecordType::Committed, |b| {
        put_opt_log_id(b, committed);
        Ok(())
    })
}

/// Appends a truncate frame (entries from `since` on are gone); returns the
/// frame length.
pub(crate) fn push_truncate(buf: &mut Vec<u8>, since: u64) -> Result<usize, WalError> {
    push_frame(buf, RecordType::Truncate, |b| {
        put_u64(b, since);
        Ok(())
    })
}

/// Appends a purge frame (entries up to `upto` are gone); returns the frame
/// length.
pub(crate) fn push_purge(buf: &mut Vec<u8>, upto: &LogId) -> Result<usize, WalError> {
    push_frame(buf, RecordType::Purge, |b| {
        put_log_id(b, upto);
        Ok(())
    })
}

// ---- decoding --------------------------------------------------------------

/// Reads fixed-size fields off a payload; every error is "payload too short" or
/// a bad tag, reported as a string for [`WalError::Corrupt`].
struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err(format!(
                "record payload too short: needs {n} more bytes, has {}",
                self.buf.len()
            ));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn log_id(&mut self) -> Result<LogId, String> {
        let term = self.u64()?;
        let node = self.u64()?;
        let index = self.u64()?;
        Ok(LogId::new(CommittedLeaderId::new(term, node), index))
    }

    fn opt_log_id(&mut self) -> Result<Option<LogId>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.log_id()?)),
            t => Err(format!("bad option tag {t}")),
        }
    }

    fn vote(&mut self) -> Result<Vote, String> {
        let term = self.u64()?;
        let node = self.u64()?;
        let committed = match self.u8()? {
            0 => false,
            1 => true,
            t => return Err(format!("bad vote committed flag {t}")),
        };
        Ok(if committed {
            Vote::new_committed(term, node)
        } else {
            Vote::new(term, node)
        })
    }

    fn opt_vote(&mut self) -> Result<Option<Vote>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.vote()?)),
            t => Err(format!("bad option tag {t}")),
        }
    }

    fn end(&self) -> Result<(), String> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} unexpected bytes after the record",
                self.buf.len()
            ))
        }
    }
}

/// Decodes a frame's payload (entries to their log ID only).
pub(crate) fn decode_record(frame: &Frame<'_>) -> Result<Record, String> {
    let mut f = Fields { buf: frame.payload };
    let record = match frame.ty {
        RecordType::Header => {
            if f.take(MAGIC.len())? != MAGIC {
                return Err("bad magic: not an oxetcd WAL segment".to_string());
            }
            let version = f.u32()?;
            if version != VERSION {
                return Err(format!("unsupported WAL format version {version}"));
            }
            let seq = f.u64()?;
            let vote = f.opt_vote()?;
            let committed = f.opt_log_id()?;
            let purged = f.opt_log_id()?;
            f.end()?;
            Record::Header(SegmentHeader {
                seq,
                state: CarriedState {
                    vote,
                    committed,
                    purged,
                },
            })
        }
        // The body follows; `decode_entry` reads it.
        RecordType::Entry => Record::Entry(f.log_id()?),
        RecordType::Vote => {
            let v = f.vote()?;
            f.end()?;
            Record::Vote(v)
        }
        RecordType::Committed => {
            let c = f.opt_log_id()?;
            f.end()?;
            Record::Committed(c)
        }
        RecordType::Truncate => {
            let since = f.u64()?;
            f.end()?;
            Record::Truncate(since)
        }
        RecordType::Purge => {
            let upto = f.log_id()?;
            f.end()?;
            Record::Purge(upto)
        }
    };
    Ok(record)
}

/// Decodes a whole entry from an entry frame's payload.
pub(crate) fn decode_entry<P: Payload>(payload: &[u8]) -> Result<Entry<P>, String> {
    let mut f = Fields { buf: payload };
    let log_id = f.log_id()?;
    let payload = match f.u8()? {
        ENTRY_BLANK => {
            f.end()?;
            EntryPayload::Blank
        }
        ENTRY_NORMAL => EntryPayload::Normal(P::decode(Bytes::copy_from_slice(f.buf))?),
        ENTRY_MEMBERSHIP => {
            let m: Membership<u64, openraft::BasicNode> = serde_json::from_slice(f.buf)
                .map_err(|e| format!("bad membership payload: {e}"))?;
            EntryPayload::Membership(m)
        }
        k => return Err(format!("unknown entry kind {k}")),
    };
    Ok(Entry { log_id, payload })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn log_id(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    fn one_frame(buf: &[u8]) -> Frame<'_> {
        let frame = decode_frame(buf).expect("frame");
        assert_eq!(frame.total_len, buf.len());
        frame
    }

    #[test]
    fn entry_kinds_round_trip() {
        let members = Membership::new(
            vec![BTreeSet::from([1u64, 2])],
            BTreeMap::from([
                (1u64, openraft::BasicNode::new("10.0.0.1:2380")),
                (2u64, openraft::BasicNode::new("10.0.0.2:2380")),
            ]),
        );
        let entries = [
            Entry {
                log_id: log_id(1, 1, 0),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(2, 7, 1),
                payload: EntryPayload::Normal(crate::Request::from(b"put foo".to_vec())),
            },
            Entry {
                log_id: log_id(3, 2, 9),
                payload: EntryPayload::Membership(members),
            },
        ];
        for e in &entries {
            let mut buf = Vec::new();
            let n = push_entry(&mut buf, e).expect("encode");
            assert_eq!(n, buf.len());
            let frame = one_frame(&buf);
            assert_eq!(frame.ty, RecordType::Entry);
            assert_eq!(decode_record(&frame), Ok(Record::Entry(e.log_id)));
            let back = decode_entry::<crate::Request>(frame.payload).expect("decode");
            assert_eq!(back.log_id, e.log_id);
            assert_eq!(format!("{:?}", back.payload), format!("{:?}", e.payload));
        }
    }

    #[test]
    fn state_records_round_trip() {
        let header = SegmentHeader {
            seq: 5,
            state: CarriedState {
                vote: Some(Vote::new_committed(4, 3)),
                committed: Some(log_id(4, 3, 10)),
                purged: None,
            },
        };
        let cases: Vec<(Vec<u8>, Record)> = vec![
            {
                let mut b = Vec::new();
                push_header(&mut b, &header).expect("encode");
                (b, Record::Header(header.clone()))
            },
            {
                let mut b = Vec::new();
                push_vote(&mut b, &Vote::new(9, 2)).expect("encode");
                (b, Record::Vote(Vote::new(9, 2)))
            },
            {
                let mut b = Vec::new();
                push_committed(&mut b, None).expect("encode");
                (b, Record::Committed(None))
            },
            {
                let mut b = Vec::new();
                push_truncate(&mut b, 42).expect("encode");
                (b, Record::Truncate(42))
            },
            {
                let mut b = Vec::new();
                push_purge(&mut b, &log_id(1, 1, 3)).expect("encode");
                (b, Record::Purge(log_id(1, 1, 3)))
            },
        ];
        for (buf, want) in cases {
            assert_eq!(decode_record(&one_frame(&buf)), Ok(want));
        }
    }

    #[test]
    fn frame_layout_is_len_crc_type_payload() {
        let mut buf = Vec::new();
        push_truncate(&mut buf, 0x0102).expect("encode");
        assert_eq!(&buf[0..4], &8u32.to_le_bytes());
        assert_eq!(buf[8], RecordType::Truncate as u8);
        assert_eq!(&buf[9..], &0x0102u64.to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&buf[0..4]);
        h.update(&buf[8..]);
        assert_eq!(&buf[4..8], &h.finalize().to_le_bytes());
    }

    #[test]
    fn damaged_frames_are_rejected() {
        let mut buf = Vec::new();
        push_truncate(&mut buf, 7).expect("encode");
        for cut in 0..buf.len() {
            assert!(matches!(
                decode_frame(&buf[..cut]),
                Err(FrameError::Incomplete { .. })
            ));
        }
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(
                decode_frame(&bad).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
        // A zero-filled region is never a valid frame (type 0 does not exist).
        assert!(decode_frame(&[0u8; 64]).is_err());
    }
}
