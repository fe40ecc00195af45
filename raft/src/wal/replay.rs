//! Opening a WAL: replay every segment in order into a [`LogIndex`], cut a torn
//! tail off the last segment, refuse anything else that is damaged.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::WalError;
use super::index::{Loc, LogIndex, SegmentReader};
use super::record::{self, CarriedState, Record, RecordType, SegmentHeader};
use super::segment::{self, SegmentFile, SegmentPath};
use super::{Counters, Recovery, TornTail};
use crate::types::LogId;
use crate::types::Payload;

/// The sector size torn writes are judged by: a crash can lose whole sectors
/// (pages) of an unsynced write and leave them zero-filled.
const SECTOR: usize = 512;

/// What the writer keeps per segment to know which ones a purge may delete.
#[derive(Debug, Clone)]
pub(crate) struct SegmentInfo {
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
    /// The highest entry index ever written to it (truncated ones included).
    pub(crate) max_index: Option<u64>,
}

/// Everything `Wal::open` needs to start the writer.
pub(crate) struct Replayed<P: Payload> {
    pub(crate) index: LogIndex<P>,
    pub(crate) segments: Vec<SegmentInfo>,
    pub(crate) active: SegmentFile,
    /// Records after the header in the active segment.
    pub(crate) active_records: u64,
    pub(crate) carried: CarriedState,
    pub(crate) next_index: u64,
    pub(crate) recovery: Recovery,
}

/// The log as the records so far describe it.
struct ReplayState<P: Payload> {
    index: LogIndex<P>,
    carried: CarriedState,
    next_index: u64,
}

impl<P: Payload> ReplayState<P> {
    fn apply(
        &mut self,
        record: Record,
        loc: Loc,
        path: &Path,
        max_index: &mut Option<u64>,
    ) -> Result<(), WalError> {
        match record {
            Record::Header(_) => {
                return Err(corrupt(
                    path,
                    loc.offset,
                    "segment header in the middle of a segment",
                ));
            }
            Record::Entry(log_id) => {
                if let Some(floor) = self.index.floor() {
                    if log_id.index <= floor {
                        return Err(corrupt(
                            path,
                            loc.offset,
                            format!("entry {log_id} is not above the log's last index {floor}"),
                        ));
                    }
                }
                self.index.insert_replayed(log_id, loc);
                self.next_index = log_id.index.saturating_add(1);
                *max_index = Some(max_index.map_or(log_id.index, |m| m.max(log_id.index)));
            }
            Record::Vote(v) => {
                self.carried.vote = Some(v);
                self.index.vote = Some(v);
            }
            Record::Committed(c) => {
                self.carried.committed = c;
                self.index.committed = c;
            }
            Record::Truncate(since) => {
                self.index.truncate(since);
                self.next_index = self.next_index.min(since);
            }
            Record::Purge(upto) => self.purge(upto),
        }
        Ok(())
    }

    fn purge(&mut self, upto: LogId) {
        if self.carried.purged.is_none_or(|p| upto.index > p.index) {
            self.carried.purged = Some(upto);
        }
        self.index.purge(upto);
        self.next_index = self.next_index.max(upto.index.saturating_add(1));
    }
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> WalError {
    WalError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// Replays the segments in `dir` (creating the first one in an empty dir).
pub(crate) fn replay<P: Payload>(
    dir: &Path,
    segment_size: u64,
    cache_limit: usize,
    counters: Arc<Counters>,
) -> Result<Replayed<P>, WalError> {
    let mut paths = segment::list_segments(dir)?;
    if paths.is_empty() {
        let header = SegmentHeader {
            seq: 0,
            state: CarriedState::default(),
        };
        let file = SegmentFile::create(dir, &header, 0, segment_size, Arc::clone(&counters))?;
        paths.push(SegmentPath {
            seq: 0,
            path: file.path.clone(),
        });
    }

    let mut state = ReplayState {
        index: LogIndex::new(cache_limit),
        carried: CarriedState::default(),
        next_index: 0,
    };
    let mut infos = Vec::with_capacity(paths.len());
    let mut torn_tail = None;
    let mut last_len = 0u64;
    let mut last_records = 0u64;
    let count = paths.len();
    for (i, seg) in paths.iter().enumerate() {
        let is_last = i + 1 == count;
        let data = fs::read(&seg.path).map_err(|e| WalError::io("read", &seg.path, e))?;
        let out = replay_segment(seg, &data, i == 0, is_last, &mut state)?;
        if let Some(offset) = out.torn_at {
            // The torn bytes, not the zero-filled preallocated rest.
            let dropped = (records_end(&data) as u64).saturating_sub(offset);
            tracing::warn!(
                path = %seg.path.display(),
                offset,
                dropped_bytes = dropped,
                "WAL: torn write at the tail of the last segment, truncating it"
            );
            let file = OpenOptions::new()
                .write(true)
                .open(&seg.path)
                .map_err(|e| WalError::io("open", &seg.path, e))?;
            file.set_len(offset)
                .map_err(|e| WalError::io("truncate", &seg.path, e))?;
            file.sync_all()
                .map_err(|e| WalError::io("fsync", &seg.path, e))?;
            torn_tail = Some(TornTail {
                path: seg.path.clone(),
                offset,
                dropped_bytes: dropped,
            });
        }
        last_len = out.valid_len;
        last_records = out.records;
        infos.push(SegmentInfo {
            seq: seg.seq,
            path: seg.path.clone(),
            max_index: out.max_index,
        });
    }

    for info in &infos {
        let file = File::open(&info.path).map_err(|e| WalError::io("open", &info.path, e))?;
        state.index.segments.insert(
            info.seq,
            Arc::new(SegmentReader {
                path: info.path.clone(),
                file,
            }),
        );
    }
    let last = infos.last().ok_or_else(|| WalError::BadLayout {
        dir: dir.to_path_buf(),
        reason: "no segment after replay".to_string(),
    })?;
    let active = SegmentFile::open_append(
        last.seq,
        last.path.clone(),
        last_len,
        segment_size,
        counters,
    )?;
    let recovery = Recovery {
        segments: infos.len(),
        entries: state.index.len(),
        torn_tail,
    };
    Ok(Replayed {
        index: state.index,
        segments: infos,
        active,
        active_records: last_records,
        carried: state.carried,
        next_index: state.next_index,
        recovery,
    })
}

struct SegmentOutcome {
    /// Bytes of valid records (the whole file unless the tail was torn).
    valid_len: u64,
    /// Records after the header.
    records: u64,
    max_index: Option<u64>,
    /// Where a torn tail starts (last segment only).
    torn_at: Option<u64>,
}

fn replay_segment<P: Payload>(
    seg: &SegmentPath,
    data: &[u8],
    is_first: bool,
    is_last: bool,
    state: &mut ReplayState<P>,
) -> Result<SegmentOutcome, WalError> {
    let path = seg.path.as_path();
    // The header: always intact, segments are renamed into place only after it
    // is synced.
    let header = record::decode_frame(data)
        .map_err(|e| corrupt(path, 0, format!("bad segment header: {e}")))?;
    let SegmentHeader {
        seq,
        state: carried,
    } = match record::decode_record(&header) {
        Ok(Record::Header(h)) => h,
        Ok(_) => return Err(corrupt(path, 0, "the first record is not a segment header")),
        Err(reason) => return Err(corrupt(path, 0, format!("bad segment header: {reason}"))),
    };
    if seq != seg.seq {
        return Err(corrupt(
            path,
            0,
            format!("header says segment {seq}, the file name says {}", seg.seq),
        ));
    }
    if is_first {
        // Older segments were purged: the header carries what they said.
        state.index.vote = carried.vote;
        state.index.committed = carried.committed;
        state.carried.vote = carried.vote;
        state.carried.committed = carried.committed;
        if let Some(p) = carried.purged {
            state.purge(p);
        }
    } else if carried != state.carried {
        return Err(corrupt(
            path,
            0,
            format!(
                "header state {carried:?} does not match the segments before it ({:?})",
                state.carried
            ),
        ));
    }

    let mut offset = header.total_len;
    let mut records = 0u64;
    let mut max_index = None;
    while offset < data.len() {
        match record::decode_frame(&data[offset..]) {
            Ok(frame) => {
                let record = record::decode_record(&frame)
                    .map_err(|reason| corrupt(path, offset as u64, reason))?;
                let loc = Loc {
                    seq,
                    offset: offset as u64,
                    // decode_frame read the length from a u32.
                    len: u32::try_from(frame.total_len).unwrap_or(u32::MAX),
                };
                state.apply(record, loc, path, &mut max_index)?;
                offset += frame.total_len;
                records += 1;
            }
            Err(err) => {
                if !is_last {
                    // This segment was synced before the next one was created.
                    return Err(corrupt(path, offset as u64, err.to_string()));
                }
                let written = records_end(data);
                if written <= offset {
                    break;
                }
                return match judge_bad_record(&data[..written], offset) {
                    Damage::TornTail => Ok(SegmentOutcome {
                        valid_len: offset as u64,
                        records,
                        max_index,
                        torn_at: Some(offset as u64),
                    }),
                    Damage::Corrupt { next_valid } => Err(corrupt(
                        path,
                        offset as u64,
                        format!("{err}, and a valid record follows at offset {next_valid}"),
                    )),
                };
            }
        }
    }
    Ok(SegmentOutcome {
        valid_len: offset as u64,
        records,
        max_index,
        torn_at: None,
    })
}

/// Where the written bytes end: the rest is the preallocated, never written
/// zero fill of the segment (no frame is all zeros: type 0 does not exist).
fn records_end(data: &[u8]) -> usize {
    // Whole zero blocks are skipped with a slice comparison (a memcmp): a
    // byte-by-byte scan of a 64 MiB preallocated tail took 0.6 s in a debug
    // build, longer than the power-cut tests leave a member to start.
    const BLOCK: usize = 4096;
    static ZEROS: [u8; BLOCK] = [0; BLOCK];
    let mut end = data.len();
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let block = &data[start..end];
        if block != &ZEROS[..block.len()] {
            return block
                .iter()
                .rposition(|&b| b != 0)
                .map_or(start, |p| start + p + 1);
        }
        end = start;
    }
    0
}

enum Damage {
    /// Cut the segment here.
    TornTail,
    /// Damage in the middle of the log.
    Corrupt { next_valid: usize },
}

/// Decides whether the bad record at `bad` in the last segment is a torn write.
///
/// It is when no valid record can be found after it: the crash interrupted the
/// last, unsynced batch. It is also when valid records follow but the damaged
/// bytes between contain a whole zero-filled sector: the crash lost a page of
/// the unsynced batch while a later page reached the disk, so the records after
/// it were never acknowledged either (etcd's WAL reads torn writes the same
/// way). Otherwise the damage is in acknowledged data.
fn judge_bad_record(data: &[u8], bad: usize) -> Damage {
    let next_valid = (bad + 1..data.len())
        .find(|&o| matches!(record::decode_frame(&data[o..]), Ok(f) if f.ty != RecordType::Header));
    let Some(next_valid) = next_valid else {
        return Damage::TornTail;
    };
    if has_zero_sector(data, bad, next_valid) {
        Damage::TornTail
    } else {
        Damage::Corrupt { next_valid }
    }
}

/// Whether `data[from..to]` contains a whole, sector-aligned run of zeros.
fn has_zero_sector(data: &[u8], from: usize, to: usize) -> bool {
    let mut start = from.div_ceil(SECTOR) * SECTOR;
    while start + SECTOR <= to {
        if data[start..start + SECTOR].iter().all(|&b| b == 0) {
            return true;
        }
        start += SECTOR;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_sector_must_be_whole_and_aligned() {
        let mut data = vec![1u8; 4 * SECTOR];
        assert!(!has_zero_sector(&data, 0, data.len()));
        // Zeros straddling a sector boundary are not a whole sector.
        data[SECTOR / 2..SECTOR + SECTOR / 2].fill(0);
        assert!(!has_zero_sector(&data, 0, data.len()));
        data[2 * SECTOR..3 * SECTOR].fill(0);
        assert!(has_zero_sector(&data, 0, data.len()));
        assert!(has_zero_sector(&data, 2 * SECTOR, 3 * SECTOR));
        assert!(!has_zero_sector(&data, 2 * SECTOR + 1, 4 * SECTOR));
        assert!(!has_zero_sector(&data, 0, 3 * SECTOR - 1));
    }

    #[test]
    fn a_valid_record_after_damage_is_corruption_unless_a_sector_was_lost() {
        let mut data = Vec::new();
        record::push_truncate(&mut data, 1).expect("encode");
        let second = data.len();
        record::push_truncate(&mut data, 2).expect("encode");
        let mut bad = data.clone();
        bad[3] ^= 0xff; // the first record's length
        assert!(matches!(
            judge_bad_record(&bad, 0),
            Damage::Corrupt { next_valid } if next_valid == second
        ));
        // Damage at the very end: torn.
        let mut tail = data.clone();
        let last = tail.len() - 1;
        tail[last] ^= 0xff;
        assert!(matches!(judge_bad_record(&tail, second), Damage::TornTail));
        // A lost (zeroed) sector between the bad record and a valid one: torn.
        let mut lost = vec![7u8; 3 * SECTOR];
        lost[SECTOR..2 * SECTOR].fill(0);
        record::push_truncate(&mut lost, 3).expect("encode");
        assert!(matches!(judge_bad_record(&lost, 0), Damage::TornTail));
    }

    #[test]
    fn records_end_finds_the_last_written_byte_in_any_block() {
        assert_eq!(records_end(&[]), 0);
        assert_eq!(records_end(&[0; 10_000]), 0);
        for last in [0, 1, 4095, 4096, 4097, 8191, 9999] {
            let mut data = vec![0u8; 10_000];
            data[last] = 7;
            assert_eq!(records_end(&data), last + 1, "last written byte at {last}");
            // Earlier bytes do not move the end.
            data[0] = 1;
            assert_eq!(records_end(&data), last + 1, "last written byte at {last}");
        }
    }
}
