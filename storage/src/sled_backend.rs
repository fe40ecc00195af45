//! The sled engine: one sled tree, each bucket a one-byte key prefix, so that a
//! batch touching several buckets is still one atomic sled batch.
//!
//! Durability: sled 0.34 never fsyncs on its own where it matters. It writes
//! its `conf` file without an fsync, and its flush ends in
//! `sync_file_range`, which writes the pages back but neither the file's
//! metadata nor the disk's cache, and names no new file in its directory.
//! A power cut could then leave a torn `conf` (the member cannot open the
//! store) or lose what a flush claimed durable. So `open` fsyncs `conf` and
//! the directories, and `flush` fsyncs the log file and the directory after
//! sled's own flush.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::backend::{Backend, Bucket, Entry, WriteBatch};
use crate::error::Result;
use crate::fsync::{sync_dir, sync_file};

pub struct SledBackend {
    db: sled::Db,
    dir: PathBuf,
}

fn prefix(bucket: Bucket) -> u8 {
    match bucket {
        Bucket::Key => b'k',
        Bucket::Meta => b'm',
    }
}

fn prefixed(bucket: Bucket, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(prefix(bucket));
    out.extend_from_slice(key);
    out
}

impl SledBackend {
    /// Opens (or creates) the engine in directory `path`.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Self> {
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            // We flush at each group commit; a timer flush would only add I/O.
            .flush_every_ms(None);
        // sled's I/O threads release a closed database's file lock a moment
        // after the handle is dropped; reopening in the same process may race.
        let mut attempts = 0;
        loop {
            match config.open() {
                // sled reports a busy lock only in its message (kind Other).
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && attempts < LOCK_RETRIES =>
                {
                    attempts += 1;
                    std::thread::sleep(LOCK_RETRY_PAUSE);
                }
                other => {
                    let backend = Self {
                        db: other?,
                        dir: path.to_path_buf(),
                    };
                    backend.sync_files()?;
                    if let Some(parent) = path.parent() {
                        sync_dir(parent)?;
                    }
                    return Ok(backend);
                }
            }
        }
    }

    /// fsyncs what sled wrote without an fsync: its settings (`conf`, written
    /// once, when the database is made), its log (`db`), and the names in its
    /// directories.
    fn sync_files(&self) -> Result<()> {
        for name in ["conf", "db"] {
            sync_file(&self.dir.join(name))?;
        }
        let blobs = self.dir.join("blobs");
        if blobs.is_dir() {
            sync_dir(&blobs)?;
        }
        sync_dir(&self.dir)
    }
}

/// How long `open` waits for a just-closed database's lock: 50 x 20 ms.
const LOCK_RETRIES: u32 = 50;
const LOCK_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

impl Backend for SledBackend {
    fn writer_may_hang(&self) -> bool {
        true
    }

    fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self
            .db
            .get(prefixed(bucket, key))?
            .map(|v| Bytes::copy_from_slice(&v)))
    }

    fn scan<'a>(
        &'a self,
        bucket: Bucket,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = Result<Entry>> + 'a> {
        let start = prefixed(bucket, from);
        let end = match to {
            Some(to) => prefixed(bucket, to),
            None => vec![prefix(bucket) + 1],
        };
        Box::new(self.db.range(start..end).map(|item| {
            let (k, v) = item?;
            Ok((Bytes::copy_from_slice(&k[1..]), Bytes::copy_from_slice(&v)))
        }))
    }

    fn apply(&self, batch: WriteBatch) -> Result<()> {
        let mut sled_batch = sled::Batch::default();
        for (bucket, key, value) in batch.into_ops() {
            let key = prefixed(bucket, &key);
            match value {
                Some(v) => sled_batch.insert(key, v.as_ref()),
                None => sled_batch.remove(key),
            }
        }
        self.db.apply_batch(sled_batch)?;
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.db.flush()?;
        self.sync_files()
    }

    fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }

    /// sled keeps no count of its free space (its own GC reclaims segments
    /// in the background): all of it is in use as far as anyone can tell.
    fn size_in_use(&self) -> Result<u64> {
        self.size_on_disk()
    }

    /// sled cannot shrink its file on request; what it holds is made durable.
    fn defragment(&self) -> Result<()> {
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sled_passes_backend_conformance() {
        let dirs = std::cell::RefCell::new(Vec::new());
        crate::backend::conformance::run_all(&|| {
            let dir = tempfile::tempdir().unwrap();
            let backend = SledBackend::open(dir.path(), 16 << 20).unwrap();
            dirs.borrow_mut().push(dir);
            Box::new(backend)
        });
    }

    #[test]
    fn flushed_batches_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = SledBackend::open(dir.path(), 16 << 20).unwrap();
            let mut batch = WriteBatch::default();
            batch.put(Bucket::Meta, &b"rev"[..], &b"7"[..]);
            b.apply(batch).unwrap();
            b.flush().unwrap();
        }
        let b = SledBackend::open(dir.path(), 16 << 20).unwrap();
        assert_eq!(
            b.get(Bucket::Meta, b"rev").unwrap().as_deref(),
            Some(&b"7"[..])
        );
    }
}
