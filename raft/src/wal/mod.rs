//! The Raft log: a write-ahead log of segment files with group commit.
//!
//! # Files
//!
//! A WAL directory holds segment files named `{seq:016x}-{index:016x}.wal`, as
//! etcd names its WAL files: `seq` counts segments from 0 without gaps, `index`
//! is the log index the next entry was expected at when the segment was cut
//! (for people reading `ls`; replay does not use it). Nothing else in the
//! directory is read; `*.wal.tmp` files are half-created segments and are
//! removed on open.
//!
//! A segment is cut when the next record would take it past
//! [`WalOptions::segment_size`] (default [`SEGMENT_SIZE`], 64 MiB) and it holds
//! at least one record after its header (a larger record gets a segment of its
//! own). Cutting syncs the old segment and cuts off its unused bytes, writes
//! the new one's header to `….wal.tmp`, preallocates it to the segment size
//! (zero-filled, so that an fsync has no size change to write, as etcd does),
//! syncs it, renames it into place and syncs the directory: a segment under its
//! final name always has an intact header, every segment but the last is
//! complete and durable, and the last one's records end where its zero-filled
//! tail starts.
//!
//! # Records
//!
//! A segment is a sequence of frames, all integers little-endian:
//!
//! ```text
//! +---------+---------+--------+-------------------+
//! | len u32 | crc u32 | type u8| payload (len)     |
//! +---------+---------+--------+-------------------+
//! crc = crc32 (IEEE, crc32fast) of len | type | payload
//! ```
//!
//! | type | record    | payload                                                        |
//! |------|-----------|----------------------------------------------------------------|
//! | 1    | header    | magic `oxetcdwl`, version u32 (1), seq u64, vote?, committed?, purged? |
//! | 2    | entry     | log id, kind u8, body: 0 blank (empty), 1 normal (the [`Request`](crate::Request) bytes as they are), 2 membership (JSON) |
//! | 3    | vote      | term u64, node u64, committed u8                               |
//! | 4    | committed | log id?                                                        |
//! | 5    | truncate  | since u64: entries from `since` on are gone                    |
//! | 6    | purge     | log id: entries up to its index are gone                       |
//!
//! A log id is term u64, leader node u64, index u64; `x?` is a byte 0 (absent)
//! or 1 followed by `x`. The header is always the first record of a segment and
//! carries vote, committed and purged as of the records before it, so a purge
//! can delete whole older segments without losing them.
//!
//! Entry indexes only go up in the stream, except right after a truncate
//! record. openraft never leaves holes; the format does not forbid them
//! (openraft's own storage test suite appends with gaps).
//!
//! # Durability
//!
//! - **Entries**: [`Wal::append`] puts the entries in memory (readable at once)
//!   and queues their records to the writer thread; the completion is called
//!   after the fsync that covers them. Entries at or below the last purged index
//!   are already covered by a snapshot and are skipped.
//! - **Vote**: [`Wal::save_vote`] returns after its record is synced (two votes
//!   in one term after a crash would break Raft). Kept in the log instead of a
//!   separate file so that it shares the group commit and needs no rename.
//! - **Truncate / purge**: return after their record is synced. A purge then
//!   deletes the oldest segments whose entries are all at or below it (never the
//!   last one); a failed delete is retried at the next purge.
//! - **Committed**: [`Wal::save_committed`] is written without an fsync of its
//!   own; it becomes durable with the next synced record. openraft only uses it
//!   to re-apply committed entries at start-up; a lagging value is safe, and it
//!   can never be ahead of the entries before it in the stream.
//!
//! # Group commit
//!
//! One writer thread owns the files. It blocks for the first queued operation,
//! takes every other one already queued (up to 8 MiB), writes their records in
//! queue order with one `write`, fsyncs once (`fdatasync`) and then completes
//! them all. While it syncs, new operations queue up and form the next batch, so
//! the number of fsyncs follows the disk, not the number of appends. After a
//! failed write or fsync nothing more is written and every operation fails with
//! [`WalError::Failed`]: what reached the disk is unknown, and reopening the WAL
//! is the way to find out. A failed append is never reported flushed.
//!
//! # Open and replay
//!
//! [`Wal::open`] lists the segments (failing on a gap in `seq`), reads each in
//! order and applies its records to an in-memory index: log index -> (segment,
//! offset, length) of every live entry. A bad frame (short, or checksum wrong):
//! - in any segment but the last: [`WalError::Corrupt`], naming file and offset;
//!   those segments were synced before the next one existed;
//! - in the last segment, when no valid frame follows it: a torn write. The
//!   file is truncated at the bad frame and synced, and [`Wal::recovery`] says so;
//! - in the last segment, when a valid frame follows it: corruption of the middle
//!   of the log, [`WalError::Corrupt`], unless the damaged bytes contain a whole
//!   zero-filled 512-byte sector (a page of the unsynced batch that the crash
//!   lost while a later one was written), which is a torn write as well.
//!
//! The most recent entries (up to [`WalOptions::cache_bytes`]) stay in memory
//! after being written; older ones are read back with positional reads.
//!
//! # Worked example
//!
//! A fresh directory, then `save_vote(term 1, node 1)` and `append` of one
//! normal entry, index 1, term 1, leader 1, request `put`:
//!
//! ```text
//! 0000000000000000-0000000000000000.wal
//! offset 0   17000000 19486b15 01  6f78657463647764 01000000 0000000000000000 00 00 00
//!            len=23   crc      hdr "oxetcdwl"         v1       seq 0            no vote/committed/purged
//! offset 32  11000000 039dad6c 03  0100000000000000 0100000000000000 00
//!            len=17   crc      vote term 1            node 1           not committed
//! offset 58  1c000000 f5f48dc4 02  01..00 01..00 0100000000000000 01   707574
//!            len=28   crc      entry term 1 node 1 index 1            normal "put"
//! ```
//!
//! The index now maps 1 -> (segment 0, offset 58, 37 bytes). Say the entry is
//! overwritten by a new leader: `truncate(1)` adds `08000000 3ed04ad3 05
//! 0100000000000000`, and the next append of index 1 follows it; replay applies
//! both in order and ends with the new entry. If the process dies half-way
//! through that append's frame, the next open finds a short frame at the end of
//! the last segment, truncates the file there and recovers everything before it.
//! Had a byte flipped in the vote frame instead, with the entry intact after
//! it, open would fail with `WAL corrupt: …/0000000000000000-0000000000000000.wal
//! at offset 32: checksum mismatch …`.
//!
//! When the segment fills up, `0000000000000001-0000000000000002.wal` starts
//! with a header carrying vote (1, 1); a later `purge` at or above index 1
//! deletes segment 0.

mod error;
mod index;
mod record;
mod replay;
mod segment;
mod writer;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use parking_lot::RwLock;
use tokio::sync::oneshot;

pub use self::error::WalError;
use self::index::{Fetch, LogIndex};
use self::writer::{Done, Effect, Op, Writer};
use crate::types::{Entry, LogId, Payload, Vote};

/// Default segment cut size: 64 MiB, as etcd's.
pub const SEGMENT_SIZE: u64 = 64 << 20;

/// Default size of the in-memory cache of recent entries, counted in frame
/// bytes: enough for the apply loop and followers a few batches behind (at
/// about 300 bytes a write, some 13,000 writes); older entries are read back
/// from the segment files. A cached entry holds its writes decoded beside
/// their encoding, so it costs about 2.5 times its frame: 16 MiB held some
/// 45 MB of RSS.
pub const CACHE_BYTES: usize = 4 << 20;

/// How a WAL is opened. Start from `WalOptions::default()` and set fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WalOptions {
    /// Cut a new segment when the next record would pass this size. Tests lower
    /// it to exercise rollover and purge.
    pub segment_size: u64,
    /// Bytes of recent entries kept in memory after they are written.
    pub cache_bytes: usize,
    /// A failpoint for fault tests (oxetcd's `OXETCD_FAILPOINT_SKIP_WAL_FSYNC`):
    /// appends complete without fdatasync, so a power cut loses writes that
    /// were acknowledged. Never set otherwise.
    pub skip_fsync: bool,
    /// Test-only fault injection on the segment files.
    #[cfg(test)]
    pub(crate) faults: Option<Arc<segment::Faults>>,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: SEGMENT_SIZE,
            cache_bytes: CACHE_BYTES,
            skip_fsync: false,
            #[cfg(test)]
            faults: None,
        }
    }
}

/// What [`Wal::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Segment files replayed.
    pub segments: usize,
    /// Live entries after replay.
    pub entries: usize,
    /// The torn write cut off the last segment, if there was one.
    pub torn_tail: Option<TornTail>,
}

/// A torn write removed from the end of the last segment on open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    /// Where the records now end.
    pub offset: u64,
    /// From `offset` to the last non-zero byte: what the torn write left (its
    /// trailing zeros look like the preallocated rest of the segment).
    pub dropped_bytes: u64,
}

/// Counters since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// fsync / fdatasync calls on segment files.
    pub fsyncs: u64,
    /// Batches the writer thread wrote (each at most one fsync).
    pub batches: u64,
    /// Records written.
    pub records: u64,
    /// Bytes written to segments (headers of new segments not included).
    pub bytes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    fsyncs: AtomicU64,
    batches: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
}

/// State shared by the handles and the writer thread.
pub(crate) struct Shared<P: Payload> {
    dir: PathBuf,
    /// The log as callers see it. Callers change it and queue the matching
    /// operation to the writer while holding the write lock, so the queue order
    /// is the order of the changes; the writer takes it briefly to publish
    /// locations. No other lock is taken while it is held.
    index: RwLock<LogIndex<P>>,
    counters: Arc<Counters>,
}

struct Inner<P: Payload> {
    shared: Arc<Shared<P>>,
    /// The writer thread's queue; `None` once dropping. Only sent to while the
    /// index write lock is held.
    tx: Option<Sender<Op>>,
    /// Joined on drop, after the queue is closed and drained.
    thread: Option<JoinHandle<()>>,
    recovery: Recovery,
}

impl<P: Payload> Drop for Inner<P> {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("WAL writer thread panicked");
            }
        }
    }
}

/// A write-ahead log of Raft entries, vote and committed index. Cheap to
/// clone; every clone is the same log. Dropping the last clone finishes the
/// queued writes and stops the writer thread.
pub struct Wal<P: Payload> {
    inner: Arc<Inner<P>>,
}

// Every clone is the same log, whatever `P` is (derive would ask `P: Clone`).
impl<P: Payload> Clone for Wal<P> {
    fn clone(&self) -> Self {
        Wal {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<P: Payload> std::fmt::Debug for Wal<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.inner.shared.dir)
            .finish_non_exhaustive()
    }
}

/// Completes when an append is durable. `.await` it, or [`Flushed::wait`] from
/// a thread that is not running async code.
#[derive(Debug)]
pub struct Flushed {
    rx: oneshot::Receiver<Result<(), WalError>>,
}

impl Flushed {
    /// Blocks until the append is durable. Must not be called from async code.
    pub fn wait(self) -> Result<(), WalError> {
        self.rx.blocking_recv().unwrap_or(Err(WalError::Closed))
    }
}

impl Future for Flushed {
    type Output = Result<(), WalError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(WalError::Closed)))
    }
}

impl<P: Payload> Wal<P> {
    /// Opens (or creates) the WAL in `dir`: replays it, cuts a torn tail, fails
    /// on corruption in the middle, and starts the writer thread.
    pub fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<Wal<P>, WalError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| WalError::io("create dir", &dir, e))?;
        let counters = Arc::new(Counters::default());
        let replayed = replay::replay(
            &dir,
            options.segment_size,
            options.cache_bytes,
            Arc::clone(&counters),
        )?;
        let active = replayed.active;
        #[cfg(test)]
        let active = {
            let mut active = active;
            active.set_faults(options.faults.clone());
            active
        };
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            index: RwLock::new(replayed.index),
            counters,
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            shared: Arc::clone(&shared),
            rx,
            segment_size: options.segment_size,
            active,
            active_records: replayed.active_records,
            segments: replayed.segments,
            carried: replayed.carried,
            next_index: replayed.next_index,
            dirty: false,
            skip_fsync: options.skip_fsync,
            failed: None,
            buf: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("oxetcd-wal".to_string())
            .spawn(move || writer.run())
            .map_err(|e| WalError::io("spawn writer thread", &dir, e))?;
        tracing::info!(
            dir = %dir.display(),
            segments = replayed.recovery.segments,
            entries = replayed.recovery.entries,
            torn_tail = replayed.recovery.torn_tail.is_some(),
            "WAL opened"
        );
        Ok(Wal {
            inner: Arc::new(Inner {
                shared,
                tx: Some(tx),
                thread: Some(thread),
                recovery: replayed.recovery,
            }),
        })
    }

    /// The directory of the segment files.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// What opening found (segments, entries, a torn tail cut off).
    pub fn recovery(&self) -> &Recovery {
        &self.inner.recovery
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        let c = &self.inner.shared.counters;
        WalStats {
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
        }
    }

    /// Appends entries; they are readable when this returns and durable when
    /// the returned [`Flushed`] completes (as is everything appended before).
    /// Indexes must increase and be above the last entry (truncate first to
    /// overwrite); entries at or below the last purged index are skipped.
    pub fn append(&self, entries: impl IntoIterator<Item = Entry<P>>) -> Result<Flushed, WalError> {
        let (tx, rx) = oneshot::channel();
        self.append_then(entries, move |result| {
            // The receiver may be gone (the caller stopped waiting): fine.
            let _ = tx.send(result);
        })?;
        Ok(Flushed { rx })
    }

    /// [`Wal::append`] with a completion callback instead of a future: called
    /// once, from the writer thread, with `Ok` only after the fsync covering the
    /// entries. Not called if this returns an error.
    pub fn append_then(
        &self,
        entries: impl IntoIterator<Item = Entry<P>>,
        on_flushed: impl FnOnce(Result<(), WalError>) + Send + 'static,
    ) -> Result<(), WalError> {
        // Entries at or below the last purged index are covered by the state
        // machine's snapshot: skip them (openraft's test suite appends such).
        let purged = self.inner.shared.index.read().purged.map(|p| p.index);
        let entries: Vec<Entry<P>> = entries
            .into_iter()
            .filter(|e| purged.is_none_or(|p| e.log_id.index > p))
            .collect();
        let mut buf = Vec::new();
        let mut sizes = Vec::with_capacity(entries.len());
        for e in &entries {
            sizes.push(record::push_entry(&mut buf, e)?);
        }
        let mut index = self.inner.shared.index.write();
        index.check_failed()?;
        let mut floor = index.floor();
        for e in &entries {
            if let Some(last) = floor.filter(|&last| e.log_id.index <= last) {
                return Err(WalError::OutOfOrder {
                    index: e.log_id.index,
                    last,
                });
            }
            floor = Some(e.log_id.index);
        }
        let mut frames = Vec::with_capacity(entries.len());
        for (e, size) in entries.into_iter().zip(sizes) {
            let idx = e.log_id.index;
            let gen = index.insert_appended(e, size);
            frames.push((size, Effect::Entry { index: idx, gen }));
        }
        self.send(
            Op {
                buf,
                frames,
                sync: true,
                done: Some(Box::new(on_flushed)),
            },
            &index,
        )
    }

    /// Saves the vote; returns once it is durable.
    pub async fn save_vote(&self, vote: &Vote) -> Result<(), WalError> {
        let mut buf = Vec::new();
        let len = record::push_vote(&mut buf, vote)?;
        self.write_and_wait(buf, vec![(len, Effect::Vote(*vote))], |_| {})
            .await
    }

    /// The last saved vote.
    pub fn vote(&self) -> Option<Vote> {
        self.inner.shared.index.read().vote
    }

    /// Saves the committed log id; durable with the next synced record (see
    /// the module doc), readable at once.
    pub fn save_committed(&self, committed: Option<LogId>) -> Result<(), WalError> {
        let mut buf = Vec::new();
        let len = record::push_committed(&mut buf, committed.as_ref())?;
        let mut index = self.inner.shared.index.write();
        index.check_failed()?;
        index.committed = committed;
        self.send(
            Op {
                buf,
                frames: vec![(len, Effect::Committed(committed))],
                sync: false,
                done: None,
            },
            &index,
        )
    }

    /// The last saved committed log id.
    pub fn committed(&self) -> Option<LogId> {
        self.inner.shared.index.read().committed
    }

    /// Removes the entries from `since.index` on; returns once durable.
    pub async fn truncate(&self, since: LogId) -> Result<(), WalError> {
        let mut buf = Vec::new();
        let len = record::push_truncate(&mut buf, since.index)?;
        self.write_and_wait(buf, vec![(len, Effect::Truncate(since.index))], |index| {
            index.truncate(since.index)
        })
        .await
    }

    /// Removes the entries up to `upto.index` and remembers `upto` as the last
    /// purged log id; returns once durable. Whole segments below it are deleted.
    pub async fn purge(&self, upto: LogId) -> Result<(), WalError> {
        if self
            .inner
            .shared
            .index
            .read()
            .purged
            .is_some_and(|p| p.index >= upto.index)
        {
            // Already purged (and durable: that purge returned).
            return Ok(());
        }
        let mut buf = Vec::new();
        let len = record::push_purge(&mut buf, &upto)?;
        self.write_and_wait(buf, vec![(len, Effect::Purge(upto))], |index| {
            index.purge(upto)
        })
        .await
    }

    /// The last purged log id and the last log id (the last purged one when no
    /// entry is left).
    pub fn log_state(&self) -> (Option<LogId>, Option<LogId>) {
        let index = self.inner.shared.index.read();
        (index.purged, index.last_log_id())
    }

    /// The live entries with an index in `range`, in order.
    pub fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry<P>>, WalError> {
        let lo = match range.start_bound() {
            Bound::Included(&x) => x,
            Bound::Excluded(&x) => match x.checked_add(1) {
                Some(x) => x,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let hi = match range.end_bound() {
            Bound::Included(&x) => x.checked_add(1),
            Bound::Excluded(&x) => Some(x),
            Bound::Unbounded => None,
        };
        let plan = self.inner.shared.index.read().plan_read(lo, hi)?;
        let mut out = Vec::with_capacity(plan.len());
        let mut buf = Vec::new();
        for fetch in plan {
            match fetch {
                Fetch::Cached(e) => out.push(e),
                Fetch::Disk {
                    log_id,
                    loc,
                    segment,
                } => {
                    buf.resize(loc.len as usize, 0);
                    segment
                        .file
                        .read_exact_at(&mut buf, loc.offset)
                        .map_err(|e| WalError::io("read", &segment.path, e))?;
                    let corrupt = |reason: String| WalError::Corrupt {
                        path: segment.path.clone(),
                        offset: loc.offset,
                        reason,
                    };
                    let frame = record::decode_frame(&buf).map_err(|e| corrupt(e.to_string()))?;
                    let entry = record::decode_entry(frame.payload).map_err(corrupt)?;
                    if entry.log_id != log_id {
                        return Err(corrupt(format!(
                            "expected entry {log_id}, found {}",
                            entry.log_id
                        )));
                    }
                    out.push(entry);
                }
            }
        }
        Ok(out)
    }

    /// Queues `op`; the caller holds the index write lock (`_index`), which
    /// keeps the queue in the order of the index changes.
    fn send(
        &self,
        op: Op,
        _index: &parking_lot::RwLockWriteGuard<'_, LogIndex<P>>,
    ) -> Result<(), WalError> {
        let tx = self.inner.tx.as_ref().ok_or(WalError::Closed)?;
        tx.send(op).map_err(|_| WalError::Closed)
    }

    /// Applies `change` to the index, queues the records and waits until they
    /// are durable.
    async fn write_and_wait(
        &self,
        buf: Vec<u8>,
        frames: Vec<(usize, Effect)>,
        change: impl FnOnce(&mut LogIndex<P>),
    ) -> Result<(), WalError> {
        let (tx, rx) = oneshot::channel();
        let done: Done = Box::new(move |result| {
            let _ = tx.send(result);
        });
        {
            let mut index = self.inner.shared.index.write();
            index.check_failed()?;
            change(&mut index);
            self.send(
                Op {
                    buf,
                    frames,
                    sync: true,
                    done: Some(done),
                },
                &index,
            )?;
        }
        rx.await.unwrap_or(Err(WalError::Closed))
    }
}
