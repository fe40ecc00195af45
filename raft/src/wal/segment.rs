//! Segment files: their names, creating one atomically, and the write handle
//! the writer thread appends through.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::error::WalError;
use super::record::{self, SegmentHeader};
use super::Counters;

/// The extension of a segment file.
pub(crate) const SEGMENT_EXT: &str = "wal";
/// The extension of a segment being created; removed on open.
pub(crate) const TMP_EXT: &str = "tmp";

/// `{seq:016x}-{first_index:016x}.wal`, as etcd names its WAL files.
pub(crate) fn segment_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}.{SEGMENT_EXT}")
}

/// Parses a segment file name into `(seq, first_index)`.
pub(crate) fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (seq, index) = stem.split_once('-')?;
    if seq.len() != 16 || index.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(seq, 16).ok()?,
        u64::from_str_radix(index, 16).ok()?,
    ))
}

/// A segment found on disk.
#[derive(Debug, Clone)]
pub(crate) struct SegmentPath {
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
}

/// Lists the segments in `dir` by sequence number, removing leftover
/// half-created ones (`*.tmp`). Fails on a gap in the sequence numbers.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<SegmentPath>, WalError> {
    let mut segments = Vec::new();
    let read_dir = fs::read_dir(dir).map_err(|e| WalError::io("read dir", dir, e))?;
    for entry in read_dir {
        let entry = entry.map_err(|e| WalError::io("read dir", dir, e))?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == TMP_EXT) {
            // A crash while creating a segment: it was never renamed into place,
            // so nothing in it was ever acknowledged.
            tracing::warn!(path = %path.display(), "removing half-created WAL segment");
            fs::remove_file(&path).map_err(|e| WalError::io("remove", &path, e))?;
            continue;
        }
        if let Some((seq, _)) = parse_segment_name(name) {
            segments.push(SegmentPath { seq, path });
        }
    }
    segments.sort_by_key(|s| s.seq);
    for pair in segments.windows(2) {
        if pair[1].seq != pair[0].seq + 1 {
            return Err(WalError::BadLayout {
                dir: dir.to_path_buf(),
                reason: format!(
                    "segment {} is missing between {} and {}",
                    pair[0].seq + 1,
                    pair[0].path.display(),
                    pair[1].path.display()
                ),
            });
        }
    }
    Ok(segments)
}

/// Makes a rename or removal in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io("fsync dir", dir, e))
}

/// Fault injection for tests: fail the write or fsync after a number of
/// successful ones.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Writes that still succeed; `None` = no fault.
    pub(crate) writes_left: std::sync::Mutex<Option<u64>>,
    /// Fsyncs that still succeed; `None` = no fault.
    pub(crate) syncs_left: std::sync::Mutex<Option<u64>>,
}

#[cfg(test)]
impl Faults {
    fn hit(counter: &std::sync::Mutex<Option<u64>>, what: &str) -> std::io::Result<()> {
        let mut left = counter
            .lock()
            .map_err(|_| std::io::Error::other("fault mutex poisoned"))?;
        match left.as_mut() {
            Some(0) => Err(std::io::Error::other(format!("injected {what} failure"))),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// The active segment, as the writer thread appends to it.
pub(crate) struct SegmentFile {
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
    file: File,
    /// Bytes in the file (the offset the next record is written at).
    pub(crate) size: u64,
    stats: Arc<Counters>,
    #[cfg(test)]
    faults: Option<Arc<Faults>>,
}

/// Gives `file` `len` zero-filled, allocated bytes (its size grows to `len` if
/// smaller), so that appends within them change neither the file's size nor
/// its allocation, and fdatasync has no metadata to write (a third cheaper on
/// the benchmark machine). etcd preallocates its WAL segments the same way.
/// File systems without fallocate go without.
fn preallocate(file: &File, len: u64) -> std::io::Result<()> {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl SegmentFile {
    /// Opens an existing segment for appending at `size` (its replayed length,
    /// where the zero-filled preallocated tail starts), preallocated to
    /// `prealloc` bytes.
    pub(crate) fn open_append(
        seq: u64,
        path: PathBuf,
        size: u64,
        prealloc: u64,
        stats: Arc<Counters>,
    ) -> Result<SegmentFile, WalError> {
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| WalError::io("open", &path, e))?;
        preallocate(&file, prealloc.max(size)).map_err(|e| WalError::io("fallocate", &path, e))?;
        Ok(SegmentFile {
            seq,
            path,
            file,
            size,
            stats,
            #[cfg(test)]
            faults: None,
        })
    }

    /// Creates segment `header.seq` atomically: the header is written to a
    /// `.tmp` file, the file preallocated to `prealloc` bytes and synced, then
    /// renamed into place and the directory synced. A segment file under its
    /// final name therefore always has a valid header.
    pub(crate) fn create(
        dir: &Path,
        header: &SegmentHeader,
        first_index: u64,
        prealloc: u64,
        stats: Arc<Counters>,
    ) -> Result<SegmentFile, WalError> {
        let name = segment_name(header.seq, first_index);
        let path = dir.join(&name);
        let tmp = dir.join(format!("{name}.{TMP_EXT}"));
        let mut buf = Vec::new();
        record::push_header(&mut buf, header)?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .map_err(|e| WalError::io("create", &tmp, e))?;
        file.write_all(&buf)
            .map_err(|e| WalError::io("write", &tmp, e))?;
        preallocate(&file, prealloc).map_err(|e| WalError::io("fallocate", &tmp, e))?;
        file.sync_all()
            .map_err(|e| WalError::io("fsync", &tmp, e))?;
        stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        fs::rename(&tmp, &path).map_err(|e| WalError::io("rename", &tmp, e))?;
        sync_dir(dir)?;
        drop(file);
        Self::open_append(header.seq, path, buf.len() as u64, prealloc, stats)
    }

    #[cfg(test)]
    pub(crate) fn set_faults(&mut self, faults: Option<Arc<Faults>>) {
        self.faults = faults;
    }

    #[cfg(test)]
    pub(crate) fn faults(&self) -> Option<Arc<Faults>> {
        self.faults.clone()
    }

    /// Appends `buf` at the end of the file.
    pub(crate) fn write_all(&mut self, buf: &[u8]) -> Result<(), WalError> {
        if buf.is_empty() {
            return Ok(());
        }
        #[cfg(test)]
        if let Some(f) = &self.faults {
            Faults::hit(&f.writes_left, "write")
                .map_err(|e| WalError::io("write", &self.path, e))?;
        }
        // At the end of the records, inside the preallocated bytes.
        self.file
            .write_all_at(buf, self.size)
            .map_err(|e| WalError::io("write", &self.path, e))?;
        self.size += buf.len() as u64;
        Ok(())
    }

    /// Cuts the unused preallocated bytes off and makes the segment durable,
    /// size included: a sealed segment ends with its last record.
    pub(crate) fn seal(&mut self) -> Result<(), WalError> {
        self.sync()?;
        self.file
            .set_len(self.size)
            .map_err(|e| WalError::io("truncate", &self.path, e))?;
        self.file
            .sync_all()
            .map_err(|e| WalError::io("fsync", &self.path, e))?;
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Makes everything written so far durable (fdatasync: the records are
    /// written into preallocated bytes, so there is no size change to sync).
    pub(crate) fn sync(&mut self) -> Result<(), WalError> {
        #[cfg(test)]
        if let Some(f) = &self.faults {
            Faults::hit(&f.syncs_left, "fsync")
                .map_err(|e| WalError::io("fsync", &self.path, e))?;
        }
        // etcd_disk_wal_fsync_duration_seconds: the fdatasync alone, as
        // etcd times its WAL's fsync.
        let started = std::time::Instant::now();
        self.file
            .sync_data()
            .map_err(|e| WalError::io("fsync", &self.path, e))?;
        oxetcd_metrics::disk()
            .wal_fsync_seconds
            .observe(started.elapsed().as_secs_f64());
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_seq() {
        let name = segment_name(0x2a, 0x1000);
        assert_eq!(name, "000000000000002a-0000000000001000.wal");
        assert_eq!(parse_segment_name(&name), Some((0x2a, 0x1000)));
        assert_eq!(parse_segment_name("2a-1000.wal"), None);
        assert_eq!(
            parse_segment_name("000000000000002a-0000000000001000.wal.tmp"),
            None
        );
    }

    #[test]
    fn listing_removes_tmp_and_rejects_gaps() {
        let dir = tempfile::tempdir().expect("tempdir");
        for seq in [0u64, 1, 3] {
            fs::write(dir.path().join(segment_name(seq, 0)), b"").expect("write");
        }
        fs::write(dir.path().join(format!("{}.tmp", segment_name(4, 0))), b"x").expect("write");
        let err = list_segments(dir.path()).expect_err("gap");
        assert!(err.to_string().contains("segment 2 is missing"), "{err}");
        assert!(!dir
            .path()
            .join(format!("{}.tmp", segment_name(4, 0)))
            .exists());
        fs::write(dir.path().join(segment_name(2, 0)), b"").expect("write");
        let segs = list_segments(dir.path()).expect("list");
        assert_eq!(
            segs.iter().map(|s| s.seq).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
    }
}
