//! A write-back buffer in front of an engine: applied batches are kept in
//! memory, where reads see them at once, and reach the engine together, as one
//! batch per interval (etcd's backend likewise commits bbolt every 100 ms).
//! Where the engine's durable flush is cheap (redb), the flusher makes each
//! batch durable too, so that a snapshot's flush finds little left to write.
//!
//! Why: sled seals and writes its log buffer twice for every batch, each time
//! on its I/O thread pool, which wakes all of its idle threads. One engine
//! batch per applied Raft entry cost more CPU than the rest of a put.
//!
//! Crash safety is the engine's own: a flush hands the engine one atomic batch
//! holding whole applied batches, so after a crash the engine holds a prefix of
//! what was applied. The Raft log replays the rest from the applied index
//! stored with the data. [`Backend::flush`] drains the buffer first.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};

use crate::backend::{Backend, Bucket, Entry, WriteBatch};
use crate::error::Result;
use crate::filled_size::FilledSize;

/// How long an applied batch may wait in memory before it goes to the engine.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Buffered bytes (keys and values) at which a flush starts before the
/// interval is up.
const FLUSH_BYTES: usize = 8 << 20;
/// Buffered bytes at which `apply` flushes itself: the flusher is not keeping
/// up, and memory must stay bounded.
const INLINE_FLUSH_BYTES: usize = 4 * FLUSH_BYTES;

/// The newest change of each key of one bucket: a value, or `None` for a delete.
type Changes = BTreeMap<Bytes, Option<Bytes>>;

const BUCKETS: usize = 2;

fn slot(bucket: Bucket) -> usize {
    match bucket {
        Bucket::Key => 0,
        Bucket::Meta => 1,
    }
}

fn bucket_at(slot: usize) -> Bucket {
    if slot == 0 {
        Bucket::Key
    } else {
        Bucket::Meta
    }
}

#[derive(Default)]
struct Buffered {
    /// Changes not handed to the engine yet.
    active: [Changes; BUCKETS],
    active_bytes: usize,
    /// Changes being handed to the engine right now; reads still need them
    /// until the engine has them.
    frozen: Arc<[Changes; BUCKETS]>,
}

impl Buffered {
    /// The buffered change of `key`, newest first: `Some(None)` is a delete.
    fn lookup(&self, bucket: Bucket, key: &[u8]) -> Option<Option<Bytes>> {
        let s = slot(bucket);
        self.active[s]
            .get(key)
            .or_else(|| self.frozen[s].get(key))
            .cloned()
    }

    /// The buffered changes of `from <= key < to`, in key order, newest winning.
    fn changes_in(
        &self,
        bucket: Bucket,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> Vec<(Bytes, Option<Bytes>)> {
        let s = slot(bucket);
        let range = |m: &Changes| -> Vec<(Bytes, Option<Bytes>)> {
            let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
            m.range::<[u8], _>((Bound::Included(from), upper))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let older = range(&self.frozen[s]);
        if older.is_empty() {
            return range(&self.active[s]);
        }
        let mut merged: BTreeMap<Bytes, Option<Bytes>> = older.into_iter().collect();
        merged.extend(range(&self.active[s]));
        merged.into_iter().collect()
    }
}

struct Shared {
    engine: Box<dyn Backend>,
    buffered: RwLock<Buffered>,
    /// The engine's size as the quota counts it (see `filled_size`),
    /// measured after each change of its file (a flush to it, a durable
    /// flush, a defragment): the file changes only then, so one stat per
    /// flush keeps it current.
    engine_size: FilledSize,
    /// `Buffered::active_bytes`, readable without the lock.
    buffered_bytes: AtomicU64,
    /// One flush at a time: `frozen` holds one generation.
    flushing: Mutex<()>,
    /// Set to stop the flusher; `wake` ends its wait early.
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    /// Measures the engine's file again (after it changed). A failed stat
    /// keeps the last size: the next flush measures again.
    fn measure_engine(&self, handed: u64) {
        self.engine_size
            .wrote(handed, || self.engine.size_on_disk().ok());
    }

    /// Hands every buffered change to the engine as one batch; says whether
    /// there was any.
    fn flush_active(&self) -> Result<bool> {
        let _one = self.flushing.lock();
        let frozen = {
            let mut b = self.buffered.write();
            if b.active.iter().all(BTreeMap::is_empty) {
                return Ok(false);
            }
            let active = std::mem::take(&mut b.active);
            b.active_bytes = 0;
            self.buffered_bytes.store(0, AtomicOrdering::Relaxed);
            b.frozen = Arc::new(active);
            Arc::clone(&b.frozen)
        };
        let mut batch = WriteBatch::default();
        // What the engine gets: each key's last change only.
        let mut handed = 0;
        for (s, changes) in frozen.iter().enumerate() {
            for (k, v) in changes {
                handed += (k.len() + v.as_ref().map_or(0, Bytes::len)) as u64;
                match v {
                    Some(v) => batch.put(bucket_at(s), k.clone(), v.clone()),
                    None => batch.delete(bucket_at(s), k.clone()),
                }
            }
        }
        // etcd_disk_backend_commit_duration_seconds: the engine's write of
        // the batch, what a bbolt commit is to etcd.
        let started = std::time::Instant::now();
        let result = self.engine.apply(batch);
        if result.is_ok() {
            oxetcd_metrics::disk()
                .backend_commit_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        let mut b = self.buffered.write();
        let frozen = std::mem::take(&mut b.frozen);
        if result.is_err() {
            // Keep the changes for the next try; newer ones win.
            for (s, changes) in frozen.iter().enumerate() {
                for (k, v) in changes {
                    if !b.active[s].contains_key(k) {
                        b.active_bytes += k.len() + v.as_ref().map_or(0, Bytes::len);
                        b.active[s].insert(k.clone(), v.clone());
                    }
                }
            }
            self.buffered_bytes
                .store(b.active_bytes as u64, AtomicOrdering::Relaxed);
        }
        drop(b);
        if result.is_ok() {
            self.measure_engine(handed);
        }
        result.map(|()| true)
    }
}

/// An engine behind a write-back buffer, flushed by a thread of its own.
pub struct WriteBuffer {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

impl WriteBuffer {
    /// Puts `engine` behind a buffer flushed every `interval`.
    pub fn new(engine: Box<dyn Backend>, interval: Duration) -> std::io::Result<WriteBuffer> {
        let engine_size = FilledSize::new(engine.size_on_disk().unwrap_or(0));
        let shared = Arc::new(Shared {
            engine,
            buffered: RwLock::new(Buffered::default()),
            engine_size,
            buffered_bytes: AtomicU64::new(0),
            flushing: Mutex::new(()),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let flusher = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("oxetcd-kv-flush".into())
                .spawn(move || run_flusher(&shared, interval))?
        };
        Ok(WriteBuffer {
            shared,
            flusher: Some(flusher),
        })
    }
}

/// Flushes every `interval`, or sooner when woken, until stopped. A failed
/// flush keeps its changes buffered; the next one (or an explicit
/// [`Backend::flush`], which reports the error) tries again.
fn run_flusher(shared: &Shared, interval: Duration) {
    lower_priority();
    loop {
        {
            let mut stop = shared.stop.lock();
            if !*stop {
                shared.wake.wait_for(&mut stop, interval);
            }
            if *stop {
                return;
            }
        }
        // An error stays visible to the next explicit flush.
        if let Ok(true) = shared.flush_active() {
            if shared.engine.durable_flush_is_cheap() {
                let _ = shared.engine.flush();
            }
        }
    }
}

/// The flusher's nice value: CPU goes to request handling first.
pub const FLUSHER_NICE: i32 = 10;

/// Makes the calling thread (the flusher) yield the CPU to request handling.
///
/// Why: a flush is a burst of CPU (sled applies the batch and wakes its I/O
/// threads, which inherit this priority), three times per interval on a
/// three-member cluster sharing a host, and whatever request runs during it
/// waits. Nothing on a request path waits for the flusher (reads find
/// buffered changes in memory) except the reads of values it is writing to
/// the engine (sled's batch lock), so it can run in the gaps. On a 2-core
/// host it took put p99 at one client on three members from 1.73 ms to
/// 1.49 ms (docs/performance.md).
/// The buffer's size bound still holds if the flusher falls behind: `apply`
/// then flushes inline, at the caller's priority.
fn lower_priority() {
    // On Linux PRIO_PROCESS with no pid is the calling thread alone. A
    // failure leaves the default priority, which costs latency only.
    let _ = rustix::process::setpriority_process(None, FLUSHER_NICE);
}

impl Drop for WriteBuffer {
    fn drop(&mut self) {
        *self.shared.stop.lock() = true;
        self.shared.wake.notify_all();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        // Hand the rest to the engine, as if each batch had gone there directly.
        let _ = self.shared.flush_active();
    }
}

impl Backend for WriteBuffer {
    fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Bytes>> {
        // Changes only move from the buffer to the engine, and leave the buffer
        // after the engine has them: a miss here means the engine is current.
        if let Some(change) = self.shared.buffered.read().lookup(bucket, key) {
            return Ok(change);
        }
        self.shared.engine.get(bucket, key)
    }

    fn scan<'a>(
        &'a self,
        bucket: Bucket,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = Result<Entry>> + 'a> {
        let changes = self.shared.buffered.read().changes_in(bucket, from, to);
        let engine = self.shared.engine.scan(bucket, from, to);
        if changes.is_empty() {
            return engine;
        }
        Box::new(Merge {
            changes: changes.into_iter().peekable(),
            engine: engine.peekable(),
        })
    }

    /// A scan copies the buffered changes in its range when it starts, so it
    /// is point-in-time when the engine's scans are.
    fn scans_are_point_in_time(&self) -> bool {
        self.shared.engine.scans_are_point_in_time()
    }

    fn writer_may_hang(&self) -> bool {
        self.shared.engine.writer_may_hang()
    }

    fn apply(&self, batch: WriteBatch) -> Result<()> {
        let bytes = {
            let mut b = self.shared.buffered.write();
            for (bucket, key, value) in batch.into_ops() {
                b.active_bytes += key.len() + value.as_ref().map_or(0, Bytes::len);
                b.active[slot(bucket)].insert(key, value);
            }
            self.shared
                .buffered_bytes
                .store(b.active_bytes as u64, AtomicOrdering::Relaxed);
            b.active_bytes
        };
        if bytes >= INLINE_FLUSH_BYTES {
            self.shared.flush_active()?;
        } else if bytes >= FLUSH_BYTES {
            self.shared.wake.notify_all();
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.shared.flush_active()?;
        let flushed = self.shared.engine.flush();
        self.shared.measure_engine(0);
        flushed
    }

    /// The engine's size plus what is buffered for it: the buffer reaches the
    /// disk within an interval, and a quota check must count it now.
    fn size_on_disk(&self) -> Result<u64> {
        let buffered = self.shared.buffered.read().active_bytes as u64;
        Ok(self.shared.engine.size_on_disk()? + buffered)
    }

    /// The engine's size as measured at its last change, less growth no
    /// data has reached yet (see `filled_size`), plus the buffered bytes:
    /// a few atomic loads.
    fn size_cached(&self) -> u64 {
        self.shared.engine_size.get() + self.shared.buffered_bytes.load(AtomicOrdering::Relaxed)
    }

    /// The engine's, plus what is buffered for it (as `size_on_disk`).
    fn size_in_use(&self) -> Result<u64> {
        let buffered = self.shared.buffered.read().active_bytes as u64;
        Ok(self.shared.engine.size_in_use()? + buffered)
    }

    /// Hands the buffer to the engine first, so that nothing is left out.
    fn defragment(&self) -> Result<()> {
        self.shared.flush_active()?;
        let defragmented = self.shared.engine.defragment();
        if defragmented.is_ok() {
            let engine = &self.shared.engine;
            self.shared
                .engine_size
                .tightened(|| engine.size_on_disk().ok());
        }
        defragmented
    }
}

/// The engine's entries with the buffered changes laid over them.
struct Merge<'a, C: Iterator<Item = (Bytes, Option<Bytes>)>> {
    changes: std::iter::Peekable<C>,
    engine: std::iter::Peekable<Box<dyn Iterator<Item = Result<Entry>> + 'a>>,
}

impl<C: Iterator<Item = (Bytes, Option<Bytes>)>> Iterator for Merge<'_, C> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            let order = match (self.changes.peek(), self.engine.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) | (Some(_), Some(Err(_))) => Ordering::Greater,
                (Some((ck, _)), Some(Ok((ek, _)))) => ck.cmp(ek),
            };
            if order == Ordering::Greater {
                return self.engine.next();
            }
            if order == Ordering::Equal {
                // The buffered change replaces the engine's entry.
                self.engine.next();
            }
            if let Some((k, Some(v))) = self.changes.next() {
                return Some(Ok((k, v)));
            }
            // A buffered delete hides the key.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SledBackend;

    fn buffered(dir: &std::path::Path, interval: Duration) -> WriteBuffer {
        let engine = SledBackend::open(dir, 16 << 20).expect("open sled");
        WriteBuffer::new(Box::new(engine), interval).expect("start flusher")
    }

    #[test]
    fn only_sled_asks_for_a_writer_watchdog_through_the_buffer() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(buffered(&dir.path().join("sled"), FLUSH_INTERVAL).writer_may_hang());
        let redb = crate::RedbBackend::open(&dir.path().join("redb"), 1 << 20).expect("open redb");
        let redb = WriteBuffer::new(Box::new(redb), FLUSH_INTERVAL).expect("start flusher");
        assert!(!redb.writer_may_hang());
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_flusher_runs_at_a_lower_priority() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _backend = buffered(dir.path(), Duration::from_secs(3600));
        // The nice value (field 19 of /proc/<tid>/stat) of every flusher
        // thread in this process (tests run in parallel), once it has started.
        let flusher_nices = || -> Vec<i32> {
            let mut nices = Vec::new();
            for task in std::fs::read_dir("/proc/self/task").expect("/proc") {
                let path = task.expect("task").path();
                let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
                if comm.trim() != "oxetcd-kv-flush" {
                    continue;
                }
                let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
                let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
                if let Some(nice) = after_comm.split_whitespace().nth(16) {
                    nices.push(nice.parse().expect("nice"));
                }
            }
            nices
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let nices = flusher_nices();
            if !nices.is_empty() && nices.iter().all(|n| *n == FLUSHER_NICE) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "flusher nices {nices:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn write_buffer_passes_backend_conformance() {
        let dirs = std::cell::RefCell::new(Vec::new());
        crate::backend::conformance::run_all(&|| {
            let dir = tempfile::tempdir().expect("tempdir");
            // Never flushed by time: every read goes through the buffer.
            let backend = buffered(dir.path(), Duration::from_secs(3600));
            dirs.borrow_mut().push(dir);
            Box::new(backend)
        });
    }

    fn collect(b: &dyn Backend, from: &[u8], to: Option<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
        b.scan(Bucket::Key, from, to)
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<_>>()
            .expect("scan")
    }

    fn batch(ops: &[(&[u8], Option<&[u8]>)]) -> WriteBatch {
        let mut b = WriteBatch::default();
        for (k, v) in ops {
            match v {
                Some(v) => b.put(
                    Bucket::Key,
                    Bytes::copy_from_slice(k),
                    Bytes::copy_from_slice(v),
                ),
                None => b.delete(Bucket::Key, Bytes::copy_from_slice(k)),
            }
        }
        b
    }

    fn is_drained(b: &WriteBuffer) -> bool {
        let buffered = b.shared.buffered.read();
        buffered.active.iter().all(BTreeMap::is_empty) && buffered.active_bytes == 0
    }

    #[test]
    fn buffered_changes_overlay_the_engine_in_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = buffered(dir.path(), Duration::from_secs(3600));
        b.apply(batch(&[
            (b"a", Some(b"1")),
            (b"b", Some(b"1")),
            (b"c", Some(b"1")),
        ]))
        .expect("apply");
        b.flush().expect("flush");
        let flushed = b.size_cached();
        // Now in the engine; overlay a delete, an update and a new key.
        b.apply(batch(&[
            (b"b", None),
            (b"c", Some(b"2")),
            (b"d", Some(b"2")),
        ]))
        .expect("apply");
        let engine_size = b.shared.engine.size_on_disk().expect("size");
        assert!(
            b.size_on_disk().expect("size") > engine_size,
            "buffered bytes not counted"
        );
        assert!(b.size_cached() > flushed, "buffered bytes not counted");
        assert!(b.size_cached() <= b.size_on_disk().expect("size"));
        assert_eq!(
            b.get(Bucket::Key, b"a").expect("get").as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(b.get(Bucket::Key, b"b").expect("get"), None);
        assert_eq!(
            b.get(Bucket::Key, b"c").expect("get").as_deref(),
            Some(&b"2"[..])
        );
        let want = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"c".to_vec(), b"2".to_vec()),
            (b"d".to_vec(), b"2".to_vec()),
        ];
        assert_eq!(collect(&b, b"", None), want);
        assert_eq!(collect(&b, b"b", Some(b"d")), want[1..2].to_vec());
        // The same after the buffer reaches the engine.
        b.flush().expect("flush");
        assert_eq!(collect(&b, b"", None), want);
        assert!(is_drained(&b));
    }

    #[test]
    fn the_flusher_hands_changes_to_the_engine_within_the_interval() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = buffered(dir.path(), Duration::from_millis(20));
        b.apply(batch(&[(b"k", Some(b"v"))])).expect("apply");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while b
            .shared
            .engine
            .get(Bucket::Key, b"k")
            .expect("get")
            .is_none()
        {
            assert!(std::time::Instant::now() < deadline, "never flushed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(is_drained(&b));
    }

    #[test]
    fn dropping_hands_the_rest_to_the_engine() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let b = buffered(dir.path(), Duration::from_secs(3600));
            b.apply(batch(&[(b"k", Some(b"v"))])).expect("apply");
            assert_eq!(b.shared.engine.get(Bucket::Key, b"k").expect("get"), None);
            // Dropped here: the buffer goes to sled, and sled flushes on drop.
        }
        let engine = SledBackend::open(dir.path(), 16 << 20).expect("reopen");
        assert_eq!(
            engine.get(Bucket::Key, b"k").expect("get").as_deref(),
            Some(&b"v"[..])
        );
    }
}
