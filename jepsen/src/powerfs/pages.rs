//! One file's unsynced writes: the page cache of a kernel that never writes
//! back on its own. The backing file holds what is durable; this holds the
//! pages written since the last fsync, and the size the process sees.
//!
//! A read takes each page from the dirty pages, else from the backing file,
//! where only bytes below both the durable size and the lowest size the file
//! was cut to since the last sync count (the rest reads as zeros, as a
//! truncated-then-extended file does). [`Pages::sync`] writes the dirty
//! pages and the size to the backing file; dropping a `Pages` is a power cut.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use rand::Rng;

/// The page size of the cache: writes dirty whole pages, as a kernel's do.
pub const PAGE: u64 = 4096;

pub struct Pages {
    /// Page index -> the page's whole visible content.
    dirty: BTreeMap<u64, Box<[u8]>>,
    /// The size the process sees.
    size: u64,
    /// The backing file's size.
    durable_size: u64,
    /// Backing bytes from here on were cut off by a truncate since the last
    /// sync: they read as zeros.
    cut_to: u64,
    /// The last write since the sync (offset, bytes), for a torn cut.
    last_write: Option<(u64, Vec<u8>)>,
}

impl Pages {
    /// A clean cache over a backing file of `durable_size` bytes.
    pub fn new(durable_size: u64) -> Pages {
        Pages {
            dirty: BTreeMap::new(),
            size: durable_size,
            durable_size,
            cut_to: durable_size,
            last_write: None,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether anything is not yet durable.
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty() || self.size != self.durable_size || self.cut_to < self.durable_size
    }

    /// The visible content of page `index`.
    fn page(&self, backing: &File, index: u64) -> io::Result<Box<[u8]>> {
        if let Some(page) = self.dirty.get(&index) {
            return Ok(page.clone());
        }
        let mut page = vec![0u8; PAGE as usize].into_boxed_slice();
        let start = index * PAGE;
        let readable = self.cut_to.min(self.durable_size).min(self.size);
        if start < readable {
            let len = (readable - start).min(PAGE) as usize;
            read_full_at(backing, &mut page[..len], start)?;
        }
        Ok(page)
    }

    /// Up to `len` bytes at `offset`, short at the end of the file.
    pub fn read(&self, backing: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let end = offset.saturating_add(len).min(self.size);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            let page = self.page(backing, at / PAGE)?;
            let from = (at % PAGE) as usize;
            let to = ((end - at / PAGE * PAGE).min(PAGE)) as usize;
            out.extend_from_slice(&page[from..to]);
            at = at / PAGE * PAGE + to as u64;
        }
        Ok(out)
    }

    pub fn write(&mut self, backing: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let index = at / PAGE;
            let mut page = self.page(backing, index)?;
            let from = (at % PAGE) as usize;
            let n = (PAGE as usize - from).min(data.len() - done);
            page[from..from + n].copy_from_slice(&data[done..done + n]);
            self.dirty.insert(index, page);
            done += n;
        }
        self.size = self.size.max(offset + data.len() as u64);
        self.last_write = Some((offset, data.to_vec()));
        Ok(())
    }

    /// ftruncate: the file's visible size becomes `size`.
    pub fn set_len(&mut self, size: u64) {
        if size < self.size {
            // Pages past the end go; the page the end falls in keeps only
            // what is before it, so that growing again shows zeros.
            self.dirty.retain(|&index, _| index * PAGE < size);
            if let Some(page) = self.dirty.get_mut(&(size / PAGE)) {
                page[(size % PAGE) as usize..].fill(0);
            }
            self.cut_to = self.cut_to.min(size);
        }
        self.size = size;
    }

    /// fallocate without KEEP_SIZE: the file grows to at least `end`.
    pub fn extend_to(&mut self, end: u64) {
        self.size = self.size.max(end);
    }

    /// fsync: the backing file becomes what the process sees.
    pub fn sync(&mut self, backing: &File) -> io::Result<()> {
        if self.cut_to < self.durable_size {
            backing.set_len(self.cut_to)?;
        }
        for (&index, page) in &self.dirty {
            let start = index * PAGE;
            if start < self.size {
                let len = (self.size - start).min(PAGE) as usize;
                backing.write_all_at(&page[..len], start)?;
            }
        }
        backing.set_len(self.size)?;
        *self = Pages::new(self.size);
        Ok(())
    }

    /// A torn cut: a strict prefix of the last unsynced write reaches the
    /// backing file (sectors written in order until the power went); the
    /// rest of the unsynced writes are lost with the cache. Says how many
    /// bytes of how many it wrote.
    pub fn tear(&self, backing: &File, rng: &mut impl Rng) -> io::Result<Option<(usize, usize)>> {
        let Some((offset, data)) = &self.last_write else {
            return Ok(None);
        };
        let kept = rng.random_range(0..data.len().max(1));
        backing.write_all_at(&data[..kept], *offset)?;
        Ok(Some((kept, data.len())))
    }
}

/// pread until `buf` is full or the file ends (the rest stays zero).
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn backing(content: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, content).unwrap();
        let file = File::options().read(true).write(true).open(&path).unwrap();
        (dir, file)
    }

    fn on_disk(file: &File) -> Vec<u8> {
        let mut out = vec![0; file.metadata().unwrap().len() as usize];
        read_full_at(file, &mut out, 0).unwrap();
        out
    }

    #[test]
    fn writes_are_seen_but_reach_the_backing_file_only_on_sync() {
        let (_dir, file) = backing(b"hello world");
        let mut pages = Pages::new(11);
        pages.write(&file, 6, b"there, and more").unwrap();
        assert_eq!(pages.read(&file, 0, 100).unwrap(), b"hello there, and more");
        assert_eq!(on_disk(&file), b"hello world");
        assert!(pages.is_dirty());
        pages.sync(&file).unwrap();
        assert_eq!(on_disk(&file), b"hello there, and more");
        assert!(!pages.is_dirty());
    }

    #[test]
    fn a_file_cut_then_grown_reads_zeros_where_it_was_cut() {
        let (_dir, file) = backing(&[7u8; 10_000]);
        let mut pages = Pages::new(10_000);
        pages.write(&file, 4000, &[1u8; 200]).unwrap();
        pages.set_len(4100);
        pages.extend_to(9000);
        let seen = pages.read(&file, 0, 20_000).unwrap();
        assert_eq!(seen.len(), 9000);
        assert!(seen[..4000].iter().all(|&b| b == 7));
        assert!(seen[4000..4100].iter().all(|&b| b == 1));
        assert!(seen[4100..].iter().all(|&b| b == 0), "cut bytes came back");
        pages.sync(&file).unwrap();
        assert_eq!(on_disk(&file), seen);
    }

    #[test]
    fn a_tear_writes_a_strict_prefix_of_the_last_write_only() {
        let (_dir, file) = backing(b"");
        let mut pages = Pages::new(0);
        pages.write(&file, 0, b"first").unwrap();
        pages.write(&file, 5, b"0123456789").unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let (kept, of) = pages.tear(&file, &mut rng).unwrap().unwrap();
        assert_eq!(of, 10);
        assert!(kept < 10);
        let disk = on_disk(&file);
        assert_eq!(disk.len(), if kept == 0 { 0 } else { 5 + kept });
        if kept > 0 {
            assert_eq!(&disk[..5], &[0; 5], "the earlier write is lost");
            assert_eq!(&disk[5..], &b"0123456789"[..kept]);
        }
    }
}
