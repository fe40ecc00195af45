//! The narrow interface MVCC needs from an on-disk engine: ordered buckets of
//! byte keys, atomic batches, a durable flush, the size on disk and in use,
//! and defragmenting.
//!
//! Keeping it this small means an engine can be swapped and measured without
//! touching MVCC code; `conformance` holds the tests every engine must pass.

use bytes::Bytes;

use crate::error::Result;

/// The key spaces the store uses. Each is an ordered map of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    /// Encoded revision -> encoded `mvccpb::KeyValue` (see `revision`).
    Key,
    /// Store metadata: current revision, compacted revision, applied index.
    Meta,
}

/// One change of a batch: a put (`Some` value) or a delete (`None`).
pub type BatchOp = (Bucket, Bytes, Option<Bytes>);

/// A set of changes applied all together or not at all.
#[derive(Default, Debug)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
}

impl WriteBatch {
    pub fn put(&mut self, bucket: Bucket, key: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.ops.push((bucket, key.into(), Some(value.into())));
    }

    pub fn delete(&mut self, bucket: Bucket, key: impl Into<Bytes>) {
        self.ops.push((bucket, key.into(), None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The operations in the order they were added.
    pub fn into_ops(self) -> impl Iterator<Item = BatchOp> {
        self.ops.into_iter()
    }
}

/// A key and value read from a bucket.
pub type Entry = (Bytes, Bytes);

/// An ordered, crash-safe key-value engine.
pub trait Backend: Send + Sync + 'static {
    /// The value at `key`, if any. Sees every applied batch, flushed or not.
    fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Bytes>>;

    /// Entries with `from <= key < to` (`to = None`: to the end), in key order.
    fn scan<'a>(
        &'a self,
        bucket: Bucket,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = Result<Entry>> + 'a>;

    /// Whether [`flush`](Backend::flush) costs little more than the fsync
    /// itself, so that a write-back buffer may make every batch it hands over
    /// durable at once (as etcd commits bbolt with an fsync every 100 ms)
    /// rather than leave the engine to gather seconds of dirty pages for the
    /// next snapshot's flush. By default no (sled's flush is CPU-heavy).
    fn durable_flush_is_cheap(&self) -> bool {
        false
    }

    /// Whether a write can hang forever inside the engine under ordinary
    /// load, so that the server should watch its writer and exit when one
    /// batch takes far too long (a restart recovers the durable state). By
    /// default no; sled 0.34 yes (spacejam/sled#1412, seen here).
    fn writer_may_hang(&self) -> bool {
        false
    }

    /// Whether a scan reads the contents as of its call: batches applied
    /// while its iterator lives do not change what it yields (redb: each scan
    /// owns a read transaction). A snapshot of the store then copies them
    /// without keeping the writer out. By default no (sled's iterators see
    /// later changes).
    fn scans_are_point_in_time(&self) -> bool {
        false
    }

    /// Applies `batch` atomically. After a crash either all of it or none of it is
    /// there, and batches survive in the order they were applied.
    fn apply(&self, batch: WriteBatch) -> Result<()>;

    /// Makes every applied batch durable (fsync) before returning.
    fn flush(&self) -> Result<()>;

    /// Bytes the engine occupies on disk (etcd's Status dbSize).
    fn size_on_disk(&self) -> Result<u64>;

    /// `size_on_disk` as last measured, without I/O or a lock (less file
    /// growth no data has reached yet: see `filled_size`): what a check on
    /// every request (the storage quota) reads. By default it measures,
    /// which only engines used without a [`WriteBuffer`](crate::WriteBuffer)
    /// (tests, tools) do.
    fn size_cached(&self) -> u64 {
        self.size_on_disk().unwrap_or(0)
    }

    /// Bytes of `size_on_disk` that hold data rather than free space the
    /// engine would reuse or a defragment would give back (etcd's Status
    /// dbSizeInUse). At most `size_on_disk`. By default all of it: what an
    /// engine that keeps no count of its free space can say.
    fn size_in_use(&self) -> Result<u64> {
        self.size_on_disk()
    }

    /// Makes every applied batch durable, then gives free space back to the
    /// file system as far as the engine can (etcd's Defragment). By default
    /// only the first half: what an engine that cannot shrink on request can do.
    fn defragment(&self) -> Result<()> {
        self.flush()
    }
}

/// Tests every `Backend` must pass; each engine's test module calls `run_all`.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;

    fn collect(
        b: &dyn Backend,
        bucket: Bucket,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        b.scan(bucket, from, to)
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<_>>()
            .expect("scan")
    }

    pub fn buckets_are_separate(b: &dyn Backend) {
        let mut batch = WriteBatch::default();
        batch.put(Bucket::Key, &b"a"[..], &b"key"[..]);
        batch.put(Bucket::Meta, &b"a"[..], &b"meta"[..]);
        b.apply(batch).unwrap();
        assert_eq!(
            b.get(Bucket::Key, b"a").unwrap().as_deref(),
            Some(&b"key"[..])
        );
        assert_eq!(
            b.get(Bucket::Meta, b"a").unwrap().as_deref(),
            Some(&b"meta"[..])
        );
        assert_eq!(collect(b, Bucket::Key, b"", None).len(), 1);
    }

    pub fn scan_is_ordered_and_bounded(b: &dyn Backend) {
        let mut batch = WriteBatch::default();
        for k in [&b"c"[..], b"a", b"b", b"d", b"\xff"] {
            batch.put(Bucket::Key, k, k);
        }
        b.apply(batch).unwrap();
        let keys: Vec<Vec<u8>> = collect(b, Bucket::Key, b"b", Some(b"d"))
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(keys, vec![b"b".to_vec(), b"c".to_vec()]);
        let all = collect(b, Bucket::Key, b"", None);
        assert_eq!(all.len(), 5);
        assert_eq!(all.last().unwrap().0, b"\xff".to_vec());
    }

    pub fn batch_applies_in_order(b: &dyn Backend) {
        let mut batch = WriteBatch::default();
        batch.put(Bucket::Key, &b"k"[..], &b"1"[..]);
        batch.delete(Bucket::Key, &b"k"[..]);
        batch.put(Bucket::Key, &b"j"[..], &b"1"[..]);
        batch.put(Bucket::Key, &b"j"[..], &b"2"[..]);
        b.apply(batch).unwrap();
        b.flush().unwrap();
        assert_eq!(b.get(Bucket::Key, b"k").unwrap(), None);
        assert_eq!(
            b.get(Bucket::Key, b"j").unwrap().as_deref(),
            Some(&b"2"[..])
        );
        assert!(b.size_on_disk().unwrap() > 0);
    }

    pub fn defragment_keeps_every_entry(b: &dyn Backend) {
        let mut batch = WriteBatch::default();
        for i in 0..200u32 {
            batch.put(Bucket::Key, i.to_be_bytes().to_vec(), vec![b'v'; 512]);
        }
        b.apply(batch).unwrap();
        b.flush().unwrap();
        let mut batch = WriteBatch::default();
        for i in (0..200u32).filter(|i| i % 2 == 0) {
            batch.delete(Bucket::Key, i.to_be_bytes().to_vec());
        }
        b.apply(batch).unwrap();
        b.defragment().unwrap();
        let keys: Vec<Vec<u8>> = collect(b, Bucket::Key, b"", None)
            .into_iter()
            .map(|e| e.0)
            .collect();
        let want: Vec<Vec<u8>> = (0..200u32)
            .filter(|i| i % 2 == 1)
            .map(|i| i.to_be_bytes().to_vec())
            .collect();
        assert_eq!(keys, want);
        let (in_use, size) = (b.size_in_use().unwrap(), b.size_on_disk().unwrap());
        assert!(in_use > 0 && in_use <= size, "in use {in_use}, size {size}");
    }

    /// For an engine that says its scans are point-in-time: a scan started
    /// before a batch yields what was there before it, whatever the batch
    /// puts or deletes.
    pub fn point_in_time_scans_ignore_later_batches(b: &dyn Backend) {
        if !b.scans_are_point_in_time() {
            return;
        }
        // Enough keys that an engine reading lazily has to go back to its
        // tree after the batch.
        let key = |i: u32| Bytes::from(format!("k{i:05}"));
        let mut batch = WriteBatch::default();
        for i in 0..5000 {
            batch.put(Bucket::Key, key(i), &b"old"[..]);
        }
        b.apply(batch).unwrap();
        let mut scan = b.scan(Bucket::Key, b"", None);
        let first = scan.next().unwrap().unwrap();
        let mut later = WriteBatch::default();
        later.delete(Bucket::Key, key(2500));
        later.put(Bucket::Key, key(4999), &b"new"[..]);
        later.put(Bucket::Key, key(5000), &b"new"[..]);
        b.apply(later).unwrap();
        let rest: Vec<Entry> = scan.collect::<Result<_>>().unwrap();
        assert_eq!(first, (key(0), Bytes::from_static(b"old")));
        assert_eq!(
            rest.len(),
            4999,
            "a key deleted or added after the scan began"
        );
        assert!(
            rest.iter().all(|(_, v)| v.as_ref() == b"old"),
            "a value changed after the scan began"
        );
        assert_eq!(
            collect(b, Bucket::Key, b"", None).len(),
            5000,
            "one key fewer, one more"
        );
    }

    pub fn run_all(make: &dyn Fn() -> Box<dyn Backend>) {
        buckets_are_separate(make().as_ref());
        point_in_time_scans_ignore_later_batches(make().as_ref());
        scan_is_ordered_and_bounded(make().as_ref());
        batch_applies_in_order(make().as_ref());
        defragment_keeps_every_entry(make().as_ref());
    }
}
