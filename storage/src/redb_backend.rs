//! The redb engine: one redb file, one table per bucket, a batch one write
//! transaction.
//!
//! Durability: [`Backend::apply`] commits with `Durability::None` (visible at
//! once, on disk whenever redb writes it back; a crash rolls the file back to
//! the last durable commit, so what survives is a prefix of the applied
//! batches). [`Backend::flush`] commits an empty transaction with
//! `Durability::Immediate`, which makes it and every commit before it durable
//! (redb fsyncs the file before it returns). That is the same contract the
//! store relies on with sled, but with a real fsync behind the flush.
//!
//! Defragment is redb's `Database::compact`, which moves pages towards the
//! start of the file and truncates it. It needs the database to itself: it
//! takes the lock every other call shares, and waits for the reads that
//! outlive their call (a scan's iterator) to end.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::RwLock;
use redb::{
    CompactionError, CompactionMode, Database, Durability, ReadableDatabase, ReadableTable,
    TableDefinition,
};

use crate::backend::{Backend, Bucket, Entry, WriteBatch};
use crate::error::{Result, StorageError};
use crate::fsync::{io_err, sync_dir};

/// The database file inside the engine's directory.
pub const REDB_FILE: &str = "data.redb";

const KEY_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key");
const META_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");

fn table(bucket: Bucket) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    match bucket {
        Bucket::Key => KEY_TABLE,
        Bucket::Meta => META_TABLE,
    }
}

/// How long a defragment waits for scans in progress before giving up.
const DEFRAGMENT_WAIT: Duration = Duration::from_secs(30);
const DEFRAGMENT_RETRY_PAUSE: Duration = Duration::from_millis(10);

pub struct RedbBackend {
    /// Shared by every call; held exclusively only by a defragment, which
    /// needs `&mut Database`.
    db: RwLock<Database>,
    file: PathBuf,
}

fn redb_err(e: impl Into<redb::Error>) -> StorageError {
    match e.into() {
        redb::Error::Corrupted(what) => StorageError::Corrupt(format!("redb: {what}")),
        other => StorageError::Backend(format!("redb: {other}")),
    }
}

impl RedbBackend {
    /// Opens (or creates) the engine in directory `dir`, with a page cache of
    /// `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, e))?;
        let file = dir.join(REDB_FILE);
        let fresh = !file.exists();
        let db = Database::builder()
            .set_cache_size(usize::try_from(cache_bytes).unwrap_or(usize::MAX))
            .create(&file)
            .map_err(redb_err)?;
        let backend = Self {
            db: RwLock::new(db),
            file,
        };
        // Both tables exist from the first start on, so that reads never meet
        // a missing table; the commit is durable, and so is the file's name.
        backend.commit_with(Durability::Immediate, |txn| {
            txn.open_table(KEY_TABLE).map_err(redb_err)?;
            txn.open_table(META_TABLE).map_err(redb_err)?;
            Ok(())
        })?;
        if fresh {
            // redb makes a new file with room to grow (72 KiB); compacted it
            // starts at a few pages, as bbolt's does, so that a small
            // --quota-backend-bytes (etcd's tests use 13 pages) is not spent
            // before the first write.
            backend.defragment()?;
        }
        sync_dir(dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        Ok(backend)
    }

    fn commit_with(
        &self,
        durability: Durability,
        changes: impl FnOnce(&redb::WriteTransaction) -> Result<()>,
    ) -> Result<()> {
        let db = self.db.read();
        let mut txn = db.begin_write().map_err(redb_err)?;
        txn.set_durability(durability).map_err(redb_err)?;
        changes(&txn)?;
        txn.commit().map_err(redb_err)
    }
}

impl Backend for RedbBackend {
    fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Bytes>> {
        let db = self.db.read();
        let txn = db.begin_read().map_err(redb_err)?;
        let table = txn.open_table(table(bucket)).map_err(redb_err)?;
        let value = table.get(key).map_err(redb_err)?;
        Ok(value.map(|v| Bytes::copy_from_slice(v.value())))
    }

    fn scan<'a>(
        &'a self,
        bucket: Bucket,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = Result<Entry>> + 'a> {
        let range = || -> Result<redb::OwnedRange<&'static [u8], &'static [u8]>> {
            let db = self.db.read();
            let txn = db.begin_read().map_err(redb_err)?;
            let table = txn.open_table(table(bucket)).map_err(redb_err)?;
            let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
            // The owned range keeps its read transaction alive until dropped.
            table
                .range_owned((Bound::Included(from), upper))
                .map_err(redb_err)
        };
        match range() {
            Ok(range) => Box::new(range.map(|item| {
                let (k, v) = item.map_err(redb_err)?;
                Ok((
                    Bytes::copy_from_slice(k.value()),
                    Bytes::copy_from_slice(v.value()),
                ))
            })),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    /// A durable commit writes the pages the commits before it dirtied and
    /// fsyncs: done each buffer interval it writes a little often; left to
    /// the next snapshot it wrote seconds of pages at once, and the WAL's
    /// fsyncs queued behind them (put latency spikes at each snapshot).
    fn durable_flush_is_cheap(&self) -> bool {
        true
    }

    /// Each scan owns a read transaction: redb's MVCC keeps its pages as
    /// they were while later commits write elsewhere.
    fn scans_are_point_in_time(&self) -> bool {
        true
    }

    fn apply(&self, batch: WriteBatch) -> Result<()> {
        self.commit_with(Durability::None, |txn| {
            let mut key = txn.open_table(KEY_TABLE).map_err(redb_err)?;
            let mut meta = txn.open_table(META_TABLE).map_err(redb_err)?;
            for (bucket, k, value) in batch.into_ops() {
                let table = match bucket {
                    Bucket::Key => &mut key,
                    Bucket::Meta => &mut meta,
                };
                match value {
                    Some(v) => table.insert(k.as_ref(), v.as_ref()).map(drop),
                    None => table.remove(k.as_ref()).map(drop),
                }
                .map_err(redb_err)?;
            }
            Ok(())
        })
    }

    /// A durable commit of nothing: redb makes every commit before it
    /// durable with it.
    fn flush(&self) -> Result<()> {
        self.commit_with(Durability::Immediate, |_| Ok(()))
    }

    /// The file's length (etcd's dbSize: the bbolt file's).
    fn size_on_disk(&self) -> Result<u64> {
        std::fs::metadata(&self.file)
            .map(|m| m.len())
            .map_err(|e| io_err("cannot stat", &self.file, e))
    }

    /// The pages redb has allocated (etcd's dbSizeInUse: the file less its
    /// free pages). redb counts them in a write transaction by walking its
    /// trees, so this costs a read of every page's header; the write buffer
    /// keeps that off the request path (it waits at most one interval).
    fn size_in_use(&self) -> Result<u64> {
        let db = self.db.read();
        let txn = db.begin_write().map_err(redb_err)?;
        let stats = txn.stats().map_err(redb_err)?;
        txn.abort().map_err(redb_err)?;
        Ok(stats.allocated_pages() * stats.page_size() as u64)
    }

    /// Makes everything durable, then compacts the file (moves pages to its
    /// start, packs partly filled ones, and truncates the free end).
    fn defragment(&self) -> Result<()> {
        self.flush()?;
        let deadline = Instant::now() + DEFRAGMENT_WAIT;
        loop {
            let outcome = self.db.write().compact(CompactionMode::Maximum);
            match outcome {
                Ok(_) => return Ok(()),
                // A scan's iterator still holds a read transaction: wait for
                // it without holding the lock, which it does not need.
                Err(CompactionError::TransactionInProgress) if Instant::now() < deadline => {
                    std::thread::sleep(DEFRAGMENT_RETRY_PAUSE)
                }
                Err(e) => return Err(redb_err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> RedbBackend {
        RedbBackend::open(dir, 16 << 20).expect("open redb")
    }

    #[test]
    fn redb_passes_backend_conformance() {
        let dirs = std::cell::RefCell::new(Vec::new());
        crate::backend::conformance::run_all(&|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let backend = open(dir.path());
            dirs.borrow_mut().push(dir);
            Box::new(backend)
        });
    }

    #[test]
    fn redb_behind_the_write_buffer_passes_backend_conformance() {
        let dirs = std::cell::RefCell::new(Vec::new());
        crate::backend::conformance::run_all(&|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let engine = open(dir.path());
            // Never flushed by time: every read goes through the buffer.
            let backend = crate::WriteBuffer::new(Box::new(engine), Duration::from_secs(3600))
                .expect("start flusher");
            dirs.borrow_mut().push(dir);
            Box::new(backend)
        });
    }

    #[test]
    fn a_new_file_starts_small() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = open(dir.path());
        let size = b.size_on_disk().expect("size");
        assert!(size <= 32 << 10, "a new engine's file is {size} bytes");
    }

    #[test]
    fn flushed_batches_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let b = open(dir.path());
            let mut batch = WriteBatch::default();
            batch.put(Bucket::Meta, &b"rev"[..], &b"7"[..]);
            b.apply(batch).expect("apply");
            b.flush().expect("flush");
        }
        let b = open(dir.path());
        assert_eq!(
            b.get(Bucket::Meta, b"rev").expect("get").as_deref(),
            Some(&b"7"[..])
        );
    }

    #[test]
    fn defragment_waits_for_a_scan_in_progress() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = std::sync::Arc::new(open(dir.path()));
        let mut batch = WriteBatch::default();
        batch.put(Bucket::Key, &b"a"[..], &b"1"[..]);
        batch.put(Bucket::Key, &b"b"[..], &b"2"[..]);
        b.apply(batch).expect("apply");
        let mut scan = b.scan(Bucket::Key, b"", None);
        assert!(scan.next().is_some());
        let defrag = {
            let b = b.clone();
            std::thread::spawn(move || b.defragment())
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!defrag.is_finished(), "compacted under a live scan");
        // The scan goes on undisturbed, and its end lets the defragment run.
        assert!(scan.next().is_some());
        drop(scan);
        defrag.join().expect("join").expect("defragment");
    }
}
