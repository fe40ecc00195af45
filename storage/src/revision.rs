//! Revisions and their on-disk encoding.
//!
//! Every write request gets one store-wide *main* revision; the individual key
//! changes inside it get *sub* revisions 0, 1, 2, ... in the order they were made.
//! The backend stores each change under its encoded revision, so a scan of the
//! key bucket visits history in exactly the order it happened:
//!
//! ```text
//! byte  0..8    main, big-endian u64
//! byte  8..16   sub,  big-endian u64
//! byte  16      0 = put, 1 = tombstone (delete)
//! ```
//!
//! Big-endian makes byte order equal numeric order; a main revision has at most
//! one change per key, so the marker byte never decides the order of two entries.

use std::fmt;

/// Length of an encoded revision key.
pub const REVISION_KEY_LEN: usize = 17;

/// A (main, sub) revision. Ordered by main, then sub.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }

    /// The backend key of the change made at this revision.
    pub fn to_key(self, tombstone: bool) -> [u8; REVISION_KEY_LEN] {
        let mut out = [0u8; REVISION_KEY_LEN];
        out[..8].copy_from_slice(&(self.main as u64).to_be_bytes());
        out[8..16].copy_from_slice(&(self.sub as u64).to_be_bytes());
        out[16] = u8::from(tombstone);
        out
    }

    /// The smallest backend key of main revision `main` (a scan bound).
    pub fn scan_start(main: i64) -> [u8; REVISION_KEY_LEN] {
        Revision::new(main, 0).to_key(false)
    }

    /// Decodes a backend key into the revision and its tombstone marker.
    pub fn from_key(key: &[u8]) -> Option<(Revision, bool)> {
        if key.len() != REVISION_KEY_LEN || key[16] > 1 {
            return None;
        }
        let main = u64::from_be_bytes(key[..8].try_into().ok()?) as i64;
        let sub = u64::from_be_bytes(key[8..16].try_into().ok()?) as i64;
        Some((Revision { main, sub }, key[16] == 1))
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.main, self.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips_and_marks_tombstones() {
        let rev = Revision::new(0x0102_0304_0506, 7);
        let key = rev.to_key(true);
        assert_eq!(Revision::from_key(&key), Some((rev, true)));
        assert_eq!(Revision::from_key(&rev.to_key(false)), Some((rev, false)));
    }

    #[test]
    fn byte_order_is_revision_order() {
        let revs = [
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(2, 0),
            Revision::new(255, 3),
            Revision::new(256, 0),
        ];
        for pair in revs.windows(2) {
            assert!(pair[0].to_key(true) < pair[1].to_key(false), "{pair:?}");
        }
    }

    #[test]
    fn rejects_malformed_keys() {
        assert_eq!(Revision::from_key(&[0u8; 16]), None);
        let mut key = Revision::new(1, 1).to_key(false);
        key[16] = 9;
        assert_eq!(Revision::from_key(&key), None);
    }
}
