//! The engine's size as the storage quota counts it, kept current without I/O
//! on the request path.
//!
//! It is the engine's file size (etcd's dbSize, what Status reports), less
//! the part of the file that growth reserved ahead and no data has reached
//! yet. redb grows its file by doubling it (up to 4 GiB at a time), so the
//! file says little about the data: 2 GiB of file may hold 1 GiB, and after a
//! defragment the first commit doubles a 36 KiB file to 68 KiB. bbolt, which
//! etcd's quota measures, grows its file by the pages it needs. So the size
//! counted is the file's size when it was last tight (at start, after a
//! defragment) plus the bytes handed to the engine since, and never more
//! than the file: it follows the data as it is written, and the file once
//! the data has filled it (or churn has, which reuses the same pages).
//!
//! ```text
//! defragment: file 36 KiB (tight)        counted 36 KiB
//! write 200 B: file 68 KiB (doubled)     counted 36 KiB + 200 B
//! write 40 KiB more:                     counted 68 KiB (the file)
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

pub(crate) struct FilledSize {
    /// The file's size at the last measure.
    file: AtomicU64,
    /// The file's size when it was last tight.
    tight: AtomicU64,
    /// Bytes handed to the engine since then.
    written: AtomicU64,
    /// Held from a measure to its store: a measure taken before a defragment
    /// and stored after it (the flusher runs at a low priority, and may wait
    /// between the two) would bring back the size before.
    measuring: Mutex<()>,
}

impl FilledSize {
    /// For a file of `size` bytes, taken as tight (the engine just opened).
    pub(crate) fn new(size: u64) -> Self {
        Self {
            file: AtomicU64::new(size),
            tight: AtomicU64::new(size),
            written: AtomicU64::new(0),
            measuring: Mutex::new(()),
        }
    }

    /// The size counted (see the module's doc).
    pub(crate) fn get(&self) -> u64 {
        let file = self.file.load(Ordering::Relaxed);
        let filled = self
            .tight
            .load(Ordering::Relaxed)
            .saturating_add(self.written.load(Ordering::Relaxed));
        file.min(filled)
    }

    /// `bytes` were handed to the engine, and `measure` gives the file's
    /// size after (None: it could not be measured; the last size stays).
    pub(crate) fn wrote(&self, bytes: u64, measure: impl FnOnce() -> Option<u64>) {
        let _one = self.measuring.lock();
        self.written.fetch_add(bytes, Ordering::Relaxed);
        if let Some(size) = measure() {
            self.file.store(size, Ordering::Relaxed);
        }
    }

    /// The file was made tight (a defragment); `measure` gives its size.
    pub(crate) fn tightened(&self, measure: impl FnOnce() -> Option<u64>) {
        let _one = self.measuring.lock();
        if let Some(size) = measure() {
            self.file.store(size, Ordering::Relaxed);
            self.tight.store(size, Ordering::Relaxed);
            self.written.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_reserved_ahead_counts_once_data_fills_it() {
        let size = FilledSize::new(36 << 10);
        size.wrote(200, || Some(68 << 10));
        assert_eq!(
            size.get(),
            (36 << 10) + 200,
            "the doubled file is not counted"
        );
        size.wrote(40 << 10, || Some(68 << 10));
        assert_eq!(size.get(), 68 << 10, "never more than the file");
        size.tightened(|| Some(20 << 10));
        assert_eq!(size.get(), 20 << 10);
        size.wrote(100, || None);
        assert_eq!(
            size.get(),
            20 << 10,
            "a failed measure keeps the file's size"
        );
    }
}
