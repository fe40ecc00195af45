//! The writer thread: the only code that writes segment files. It takes every
//! operation queued since its last fsync, writes their records in queue order,
//! fsyncs once, publishes where the entries landed, and then completes every
//! operation of the batch (group commit).

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use super::error::WalError;
use super::index::{Loc, SegmentReader};
use super::record::{CarriedState, SegmentHeader};
use super::replay::SegmentInfo;
use super::segment::SegmentFile;
use super::Shared;
use crate::types::Payload;
use crate::types::{LogId, Vote};

/// A batch stops growing at this many bytes of records (it is written with one
/// `write` call, then synced).
const MAX_BATCH_BYTES: usize = 8 << 20;

/// Called once with the outcome of an operation: `Ok` only after the records of
/// the operation (and all before them) are durable.
pub(crate) type Done = Box<dyn FnOnce(Result<(), WalError>) + Send>;

/// What a frame changes besides the bytes on disk.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Effect {
    Entry { index: u64, gen: u64 },
    Vote(Vote),
    Committed(Option<LogId>),
    Truncate(u64),
    Purge(LogId),
}

/// One caller operation: its records, already framed, in order.
pub(crate) struct Op {
    pub(crate) buf: Vec<u8>,
    /// Length and effect of each frame in `buf`.
    pub(crate) frames: Vec<(usize, Effect)>,
    /// Whether `done` must wait for an fsync. Only `save_committed` does not.
    pub(crate) sync: bool,
    pub(crate) done: Option<Done>,
}

pub(crate) struct Writer<P: Payload> {
    pub(crate) shared: Arc<Shared<P>>,
    pub(crate) rx: Receiver<Op>,
    pub(crate) segment_size: u64,
    pub(crate) active: SegmentFile,
    /// Records after the header in the active segment.
    pub(crate) active_records: u64,
    /// Every segment on disk, oldest first; the last is `active`.
    pub(crate) segments: Vec<SegmentInfo>,
    /// Vote / committed / purged as of the records written so far: what the
    /// next segment's header carries.
    pub(crate) carried: CarriedState,
    /// The index the next entry is expected at; names the next segment.
    pub(crate) next_index: u64,
    /// Written since the last fsync.
    pub(crate) dirty: bool,
    /// [`super::WalOptions::skip_fsync`]: the failpoint.
    pub(crate) skip_fsync: bool,
    /// The first error; once set nothing more is written.
    pub(crate) failed: Option<WalError>,
    pub(crate) buf: Vec<u8>,
}

impl<P: Payload> Writer<P> {
    /// Runs until every sender is gone and the queue is drained.
    pub(crate) fn run(mut self) {
        while let Ok(first) = self.rx.recv() {
            let mut bytes = first.buf.len();
            let mut ops = vec![first];
            while bytes < MAX_BATCH_BYTES {
                match self.rx.try_recv() {
                    Ok(op) => {
                        bytes += op.buf.len();
                        ops.push(op);
                    }
                    Err(_) => break,
                }
            }
            let result = match &self.failed {
                Some(e) => Err(WalError::Failed(Arc::new(e.clone()))),
                None => self.write_batch(&ops),
            };
            if let Err(e) = &result {
                if self.failed.is_none() {
                    tracing::error!(error = %e, "WAL write failed; the WAL accepts no more writes");
                    self.failed = Some(e.clone());
                    self.shared.index.write().failed = Some(e.clone());
                }
            }
            self.shared.counters.batches.fetch_add(1, Ordering::Relaxed);
            for op in ops {
                if let Some(done) = op.done {
                    done(result.clone());
                }
            }
        }
        // Everything queued was written; make the lazily written records
        // (committed) durable too before the WAL goes away.
        if self.failed.is_none() && self.dirty {
            if let Err(e) = self.active.sync() {
                tracing::error!(error = %e, "WAL: final fsync failed");
            }
        }
    }

    fn write_batch(&mut self, ops: &[Op]) -> Result<(), WalError> {
        let mut placed: Vec<(u64, u64, Loc)> = Vec::new();
        let mut votes = Vec::new();
        let mut purged = false;
        let mut need_sync = false;
        self.buf.clear();
        for op in ops {
            need_sync |= op.sync;
            let mut pos = 0;
            for &(len, effect) in &op.frames {
                let frame = &op.buf[pos..pos + len];
                pos += len;
                let used = self.active.size + self.buf.len() as u64;
                if self.active_records > 0 && used + len as u64 > self.segment_size {
                    self.flush_buf()?;
                    self.cut()?;
                }
                let loc = Loc {
                    seq: self.active.seq,
                    offset: self.active.size + self.buf.len() as u64,
                    len: u32::try_from(len).map_err(|_| WalError::TooLarge { len })?,
                };
                self.buf.extend_from_slice(frame);
                self.active_records += 1;
                match effect {
                    Effect::Entry { index, gen } => {
                        placed.push((index, gen, loc));
                        self.next_index = index.saturating_add(1);
                        if let Some(seg) = self.segments.last_mut() {
                            seg.max_index = Some(seg.max_index.map_or(index, |m| m.max(index)));
                        }
                    }
                    Effect::Vote(v) => {
                        self.carried.vote = Some(v);
                        votes.push(v);
                    }
                    Effect::Committed(c) => self.carried.committed = c,
                    Effect::Truncate(since) => self.next_index = self.next_index.min(since),
                    Effect::Purge(upto) => {
                        if self.carried.purged.is_none_or(|p| upto.index > p.index) {
                            self.carried.purged = Some(upto);
                        }
                        self.next_index = self.next_index.max(upto.index.saturating_add(1));
                        purged = true;
                    }
                }
            }
        }
        self.flush_buf()?;
        if need_sync && self.dirty {
            if !self.skip_fsync {
                self.active.sync()?;
            }
            self.dirty = false;
        }
        let counters = &self.shared.counters;
        counters.records.fetch_add(
            ops.iter().map(|o| o.frames.len() as u64).sum(),
            Ordering::Relaxed,
        );
        {
            // Publish: where entries are (so the cache may let go of them), and
            // the vote, now durable.
            let mut index = self.shared.index.write();
            for (i, gen, loc) in placed {
                index.set_loc(i, gen, loc);
            }
            if let Some(v) = votes.last() {
                index.vote = Some(*v);
            }
            index.evict();
        }
        if purged {
            self.delete_purged_segments();
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<(), WalError> {
        if !self.buf.is_empty() {
            self.active.write_all(&self.buf)?;
            self.shared
                .counters
                .bytes
                .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
            self.buf.clear();
            self.dirty = true;
        }
        Ok(())
    }

    /// Seals the active segment (synced, preallocated tail cut off: only the
    /// last segment may have a torn or zero-filled tail) and starts the next
    /// one, its header carrying the current state.
    fn cut(&mut self) -> Result<(), WalError> {
        self.active.seal()?;
        self.dirty = false;
        let header = SegmentHeader {
            seq: self.active.seq + 1,
            state: self.carried.clone(),
        };
        let dir = self.shared.dir.clone();
        #[cfg(test)]
        let faults = self.active.faults();
        let next = SegmentFile::create(
            &dir,
            &header,
            self.next_index,
            self.segment_size,
            Arc::clone(&self.shared.counters),
        )?;
        #[cfg(test)]
        let next = {
            let mut next = next;
            next.set_faults(faults);
            next
        };
        let reader = fs::File::open(&next.path).map_err(|e| WalError::io("open", &next.path, e))?;
        self.shared.index.write().segments.insert(
            next.seq,
            Arc::new(SegmentReader {
                path: next.path.clone(),
                file: reader,
            }),
        );
        tracing::debug!(path = %next.path.display(), "WAL: new segment");
        self.segments.push(SegmentInfo {
            seq: next.seq,
            path: next.path.clone(),
            max_index: None,
        });
        self.active = next;
        self.active_records = 0;
        Ok(())
    }

    /// Deletes the oldest segments whose entries are all purged, oldest first,
    /// never the active one. The purge record is durable by now, and the next
    /// segment's header carries vote / committed / purged, so nothing in a
    /// deleted segment is needed. A failed delete is retried at the next purge
    /// (deleting oldest first keeps the remaining sequence without gaps).
    fn delete_purged_segments(&mut self) {
        let Some(purged) = self.carried.purged else {
            return;
        };
        let deletable = self
            .segments
            .iter()
            .take(self.segments.len().saturating_sub(1))
            .take_while(|s| s.max_index.is_none_or(|m| m <= purged.index))
            .count();
        let mut deleted: Vec<(u64, PathBuf)> = Vec::new();
        for seg in &self.segments[..deletable] {
            if let Err(e) = fs::remove_file(&seg.path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %seg.path.display(), error = %e, "WAL: cannot delete purged segment");
                    break;
                }
            }
            deleted.push((seg.seq, seg.path.clone()));
        }
        if deleted.is_empty() {
            return;
        }
        self.segments.drain(..deleted.len());
        let mut index = self.shared.index.write();
        for (seq, path) in &deleted {
            index.segments.remove(seq);
            tracing::debug!(path = %path.display(), "WAL: deleted purged segment");
        }
    }
}
