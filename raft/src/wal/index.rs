//! The in-memory view of the log: where each live entry is on disk, the most
//! recent entries themselves (a bounded tail cache), and vote / committed /
//! purged.
//!
//! The index is changed in the order the caller's operations arrive (an append
//! is readable as soon as `append` returns, before it is durable); the writer
//! thread fills in where each entry landed once it has written it. An entry
//! stays cached at least until then, so a read never needs a location that is
//! not there yet.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use super::error::WalError;
use crate::types::{Entry, LogId, Payload, Vote};

/// Where a frame is: segment, byte offset of the frame, frame length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) seq: u64,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

/// A segment opened for reading; reads use positional I/O, so one handle
/// serves every reader at once. Kept alive by readers after the segment is
/// deleted (the file lives on until the last handle closes).
#[derive(Debug)]
pub(crate) struct SegmentReader {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
}

#[derive(Debug)]
struct Slot<P: Payload> {
    log_id: LogId,
    /// Which append wrote this slot: a location is accepted only from the same
    /// append, never from one whose entry a truncate since replaced.
    gen: u64,
    /// `None` until the writer has written the frame.
    loc: Option<Loc>,
    cached: Option<Entry<P>>,
    /// Frame bytes, charged to the cache while `cached` is set.
    size: usize,
}

/// One entry to return from a read: in memory, or to be read from disk.
pub(crate) enum Fetch<P: Payload> {
    Cached(Entry<P>),
    Disk {
        log_id: LogId,
        loc: Loc,
        segment: Arc<SegmentReader>,
    },
}

pub(crate) struct LogIndex<P: Payload> {
    slots: BTreeMap<u64, Slot<P>>,
    pub(crate) purged: Option<LogId>,
    /// Published by the writer once durable.
    pub(crate) vote: Option<Vote>,
    /// Updated when saved (it is written lazily, see the module doc of `wal`).
    pub(crate) committed: Option<LogId>,
    /// Read handles of the segments, by sequence number.
    pub(crate) segments: BTreeMap<u64, Arc<SegmentReader>>,
    cached_bytes: usize,
    cache_limit: usize,
    /// Entries at or above this index are cached (or not yet written).
    cache_floor: u64,
    next_gen: u64,
    /// Set by the writer after a failed write or fsync; every later write fails.
    pub(crate) failed: Option<WalError>,
}

impl<P: Payload> LogIndex<P> {
    pub(crate) fn new(cache_limit: usize) -> LogIndex<P> {
        LogIndex {
            slots: BTreeMap::new(),
            purged: None,
            vote: None,
            committed: None,
            segments: BTreeMap::new(),
            cached_bytes: 0,
            cache_limit,
            cache_floor: 0,
            next_gen: 0,
            failed: None,
        }
    }

    /// The last entry's log ID, else the last purged one.
    pub(crate) fn last_log_id(&self) -> Option<LogId> {
        self.slots
            .last_key_value()
            .map(|(_, s)| s.log_id)
            .or(self.purged)
    }

    /// How many entries are live.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The index the next entry must be above, if any: the last entry, else
    /// the last purged one.
    pub(crate) fn floor(&self) -> Option<u64> {
        self.last_log_id().map(|id| id.index)
    }

    /// Fails with [`WalError::Failed`] once the writer has failed.
    pub(crate) fn check_failed(&self) -> Result<(), WalError> {
        match &self.failed {
            Some(e) => Err(WalError::Failed(Arc::new(e.clone()))),
            None => Ok(()),
        }
    }

    /// Adds an entry found during replay.
    pub(crate) fn insert_replayed(&mut self, log_id: LogId, loc: Loc) {
        self.slots.insert(
            log_id.index,
            Slot {
                log_id,
                gen: 0,
                loc: Some(loc),
                cached: None,
                size: loc.len as usize,
            },
        );
        self.cache_floor = log_id.index.saturating_add(1);
    }

    /// Adds an appended entry, cached until written; returns its generation.
    pub(crate) fn insert_appended(&mut self, entry: Entry<P>, size: usize) -> u64 {
        let gen = self.next_gen;
        self.next_gen += 1;
        let index = entry.log_id.index;
        self.cache_floor = self.cache_floor.min(index);
        self.cached_bytes += size;
        self.slots.insert(
            index,
            Slot {
                log_id: entry.log_id,
                gen,
                loc: None,
                cached: Some(entry),
                size,
            },
        );
        gen
    }

    /// Removes entries from `since` on.
    pub(crate) fn truncate(&mut self, since: u64) {
        let removed = self.slots.split_off(&since);
        self.uncharge(removed.values());
    }

    /// Removes entries up to `upto` and remembers it as purged (never going back).
    pub(crate) fn purge(&mut self, upto: LogId) {
        if self.purged.is_some_and(|p| p.index >= upto.index) {
            return;
        }
        self.purged = Some(upto);
        let kept = match upto.index.checked_add(1) {
            Some(next) => self.slots.split_off(&next),
            None => BTreeMap::new(),
        };
        let removed = std::mem::replace(&mut self.slots, kept);
        self.uncharge(removed.values());
        self.cache_floor = self.cache_floor.max(upto.index.saturating_add(1));
    }

    fn uncharge<'a>(&mut self, removed: impl Iterator<Item = &'a Slot<P>>) {
        for slot in removed {
            if slot.cached.is_some() {
                self.cached_bytes -= slot.size;
            }
        }
    }

    /// Records where the writer put an entry (if the slot is still the same
    /// append's).
    pub(crate) fn set_loc(&mut self, index: u64, gen: u64, loc: Loc) {
        if let Some(slot) = self.slots.get_mut(&index) {
            if slot.gen == gen {
                slot.loc = Some(loc);
            }
        }
    }

    /// Drops the oldest cached entries that are on disk until the cache fits.
    pub(crate) fn evict(&mut self) {
        while self.cached_bytes > self.cache_limit {
            let Some((&index, slot)) = self.slots.range_mut(self.cache_floor..).next() else {
                break;
            };
            if slot.loc.is_none() {
                // Not written yet: it and everything after it must stay.
                break;
            }
            if slot.cached.take().is_some() {
                self.cached_bytes -= slot.size;
            }
            self.cache_floor = index.saturating_add(1);
        }
    }

    /// What a read of `[lo, hi)` returns (hi `None` = unbounded).
    pub(crate) fn plan_read(&self, lo: u64, hi: Option<u64>) -> Result<Vec<Fetch<P>>, WalError> {
        if hi.is_some_and(|hi| hi <= lo) {
            return Ok(Vec::new());
        }
        let range = match hi {
            Some(hi) => self.slots.range(lo..hi),
            None => self.slots.range(lo..),
        };
        let mut out = Vec::new();
        for (_, slot) in range {
            if let Some(entry) = &slot.cached {
                out.push(Fetch::Cached(entry.clone()));
                continue;
            }
            // An uncached slot always has a location: entries are cached until
            // written, and replayed ones come with theirs.
            let (Some(loc), Some(segment)) =
                (slot.loc, slot.loc.and_then(|l| self.segments.get(&l.seq)))
            else {
                return Err(WalError::Corrupt {
                    path: PathBuf::new(),
                    offset: 0,
                    reason: format!("entry {} has no segment to read it from", slot.log_id),
                });
            };
            out.push(Fetch::Disk {
                log_id: slot.log_id,
                loc,
                segment: Arc::clone(segment),
            });
        }
        Ok(out)
    }

    #[cfg(test)]
    pub(crate) fn cached_bytes(&self) -> usize {
        self.cached_bytes
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn entry(index: u64) -> Entry<crate::Request> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn loc(offset: u64) -> Loc {
        Loc {
            seq: 0,
            offset,
            len: 10,
        }
    }

    #[test]
    fn truncate_then_reappend_ignores_stale_locations() {
        let mut idx = LogIndex::<crate::Request>::new(1 << 20);
        let g1 = idx.insert_appended(entry(1), 10);
        idx.truncate(1);
        let g2 = idx.insert_appended(entry(1), 10);
        idx.set_loc(1, g1, loc(100));
        assert!(idx.slots[&1].loc.is_none(), "stale location accepted");
        idx.set_loc(1, g2, loc(200));
        assert_eq!(idx.slots[&1].loc, Some(loc(200)));
        assert_eq!(idx.cached_bytes(), 10);
    }

    #[test]
    fn eviction_keeps_unwritten_entries_and_respects_the_limit() {
        let mut idx = LogIndex::<crate::Request>::new(25);
        let gens: Vec<u64> = (1..=5).map(|i| idx.insert_appended(entry(i), 10)).collect();
        idx.evict();
        assert_eq!(idx.cached_bytes(), 50, "nothing written, nothing evicted");
        for (i, g) in gens.iter().enumerate().take(3) {
            idx.set_loc(i as u64 + 1, *g, loc(i as u64 * 10));
        }
        idx.evict();
        // 1, 2, 3 are on disk; evicting 1..=3 brings 50 down to 20 <= 25, but
        // eviction stops as soon as the cache fits: 1, 2 and 3 go (50->40->30->20).
        assert_eq!(idx.cached_bytes(), 20);
        let cached: Vec<u64> = idx
            .slots
            .iter()
            .filter(|(_, s)| s.cached.is_some())
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(cached, vec![4, 5]);
    }

    #[test]
    fn purge_moves_the_floor_and_last_log_id() {
        let mut idx = LogIndex::<crate::Request>::new(1 << 20);
        for i in 1..=3 {
            idx.insert_appended(entry(i), 10);
        }
        idx.purge(entry(2).log_id);
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.cached_bytes(), 10);
        idx.purge(entry(9).log_id);
        assert_eq!(idx.len(), 0);
        assert_eq!(idx.last_log_id(), Some(entry(9).log_id));
        // Purging backwards is ignored.
        idx.purge(entry(4).log_id);
        assert_eq!(idx.purged, Some(entry(9).log_id));
        assert_eq!(idx.floor(), Some(9));
    }
}
