//! The in-memory index of every key's history, ordered by key.
//!
//! Rebuilt from the backend at start; the backend holds values by revision, the
//! index says which revision of which key a read at some revision sees.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use crate::key_index::{KeyAt, KeyIndex, Removed};
use crate::revision::Revision;

type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// A key range as etcd's requests express it.
#[derive(Clone, Copy, Debug)]
pub struct KeyRange<'a> {
    pub key: &'a [u8],
    /// Empty: the single `key`. `[0]`: every key >= `key`. Otherwise: `[key, end)`.
    pub end: &'a [u8],
}

impl<'a> KeyRange<'a> {
    pub fn new(key: &'a [u8], end: &'a [u8]) -> Self {
        Self { key, end }
    }

    pub fn is_single(&self) -> bool {
        self.end.is_empty()
    }

    fn bounds(&self) -> Option<KeyBounds<'a>> {
        if self.end == [0] {
            return Some((Bound::Included(self.key), Bound::Unbounded));
        }
        if self.end <= self.key {
            return None;
        }
        Some((Bound::Included(self.key), Bound::Excluded(self.end)))
    }

    /// True when `k` lies in this range.
    pub fn contains(&self, k: &[u8]) -> bool {
        if self.is_single() {
            return k == self.key;
        }
        k >= self.key && (self.end == [0] || k < self.end)
    }
}

/// Keys and their histories.
#[derive(Default, Debug)]
pub struct TreeIndex {
    keys: BTreeMap<Bytes, KeyIndex>,
    /// Keys whose latest generation is open (live at the latest revision):
    /// etcd's keys gauge, kept by the changes below rather than counted.
    live: i64,
}

impl TreeIndex {
    /// Records a put; returns (create_revision, version).
    pub fn put(&mut self, key: &Bytes, rev: Revision) -> (i64, i64) {
        let out = self.put_inner(key, rev);
        // Version 1 starts a generation: the key was not live before.
        if out.1 == 1 {
            self.live += 1;
        }
        out
    }

    /// Keys live at the latest revision.
    pub fn live_keys(&self) -> i64 {
        self.live
    }

    fn put_inner(&mut self, key: &Bytes, rev: Revision) -> (i64, i64) {
        if let Some(ki) = self.keys.get_mut(key.as_ref()) {
            return ki.put(rev);
        }
        let mut ki = KeyIndex::default();
        let out = ki.put(rev);
        // A copy, not `key.clone()`: the caller's key is usually a slice of a
        // request or log buffer, which the index would otherwise keep alive,
        // whole, for as long as the key lives.
        self.keys.insert(Bytes::copy_from_slice(key), ki);
        out
    }

    /// Records a delete of a live key; false (nothing changed) when it is not live.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> bool {
        let deleted = self.keys.get_mut(key).is_some_and(|ki| ki.tombstone(rev));
        if deleted {
            self.live -= 1;
        }
        deleted
    }

    pub fn restore_put(&mut self, key: Bytes, rev: Revision, created: i64, version: i64) {
        let ki = self.keys.entry(key).or_default();
        let was = ki.is_live();
        ki.restore_put(rev, created, version);
        self.live += i64::from(ki.is_live()) - i64::from(was);
    }

    pub fn restore_tombstone(&mut self, key: Bytes, rev: Revision) {
        let ki = self.keys.entry(key).or_default();
        let was = ki.is_live();
        ki.restore_tombstone(rev);
        self.live += i64::from(ki.is_live()) - i64::from(was);
    }

    /// Calls `visit` with each key live at `at` in the range, in key order, until
    /// it returns false.
    pub fn visit(
        &self,
        range: KeyRange<'_>,
        at: i64,
        mut visit: impl FnMut(&Bytes, KeyAt) -> bool,
    ) {
        if range.is_single() {
            if let Some((k, ki)) = self.keys.get_key_value(range.key) {
                if let Some(found) = ki.get(at) {
                    visit(k, found);
                }
            }
            return;
        }
        let Some(bounds) = range.bounds() else { return };
        for (k, ki) in self.keys.range::<[u8], _>(bounds) {
            if let Some(found) = ki.get(at) {
                if !visit(k, found) {
                    return;
                }
            }
        }
    }

    /// Compacts every key's history at `at`; returns the changes to remove.
    pub fn compact(&mut self, at: i64) -> Vec<Removed> {
        let mut removed = Vec::new();
        self.compact_keys(None, at, usize::MAX, &mut removed);
        removed
    }

    /// Compacts the history at `at` of at most `max_keys` keys, in key order
    /// from the first key after `after` (from the first key when `None`),
    /// adding the changes to remove to `removed`. Returns the last key it
    /// compacted while keys may remain after it, `None` once it reached the end:
    /// a pass in bounded steps, so that writes run between them.
    pub fn compact_keys(
        &mut self,
        after: Option<&[u8]>,
        at: i64,
        max_keys: usize,
        removed: &mut Vec<Removed>,
    ) -> Option<Bytes> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut emptied = Vec::new();
        let mut last = None;
        let mut compacted = 0;
        for (k, ki) in self
            .keys
            .range_mut::<[u8], _>((lower, Bound::Unbounded))
            .take(max_keys)
        {
            ki.compact(at, removed);
            if ki.is_empty() {
                emptied.push(k.clone());
            }
            last = Some(k.clone());
            compacted += 1;
        }
        for k in emptied {
            self.keys.remove(&k);
        }
        // A full step may have stopped right at the end: the next one finds
        // nothing and ends the pass.
        last.filter(|_| compacted == max_keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_with(keys: &[&str]) -> TreeIndex {
        let mut idx = TreeIndex::default();
        for (i, k) in keys.iter().enumerate() {
            idx.put(
                &Bytes::copy_from_slice(k.as_bytes()),
                Revision::new(i as i64 + 1, 0),
            );
        }
        idx
    }

    fn keys_in(idx: &TreeIndex, key: &str, end: &[u8], at: i64) -> Vec<String> {
        let mut out = Vec::new();
        idx.visit(KeyRange::new(key.as_bytes(), end), at, |k, _| {
            out.push(String::from_utf8(k.to_vec()).unwrap());
            true
        });
        out
    }

    #[test]
    fn ranges_follow_etcd_conventions() {
        let idx = index_with(&["a", "b", "c", "d"]);
        assert_eq!(keys_in(&idx, "b", b"", 10), ["b"]);
        assert_eq!(keys_in(&idx, "b", b"d", 10), ["b", "c"]);
        assert_eq!(keys_in(&idx, "b", b"\0", 10), ["b", "c", "d"]);
        assert_eq!(keys_in(&idx, "\0", b"\0", 10), ["a", "b", "c", "d"]);
        assert!(
            keys_in(&idx, "c", b"b", 10).is_empty(),
            "end before key is empty"
        );
        assert_eq!(
            keys_in(&idx, "a", b"\0", 2),
            ["a", "b"],
            "history respected"
        );
    }

    #[test]
    fn deleted_keys_are_invisible_after_the_delete_only() {
        let mut idx = index_with(&["a", "b"]);
        assert!(idx.tombstone(b"a", Revision::new(3, 0)));
        assert!(!idx.tombstone(b"zzz", Revision::new(3, 1)));
        assert_eq!(keys_in(&idx, "a", b"\0", 3), ["b"]);
        assert_eq!(keys_in(&idx, "a", b"\0", 2), ["a", "b"]);
    }

    #[test]
    fn range_contains_matches_visit() {
        let r = KeyRange::new(b"b", b"d");
        assert!(r.contains(b"b") && r.contains(b"c") && !r.contains(b"d") && !r.contains(b"a"));
        let from = KeyRange::new(b"b", b"\0");
        assert!(from.contains(b"zzz") && !from.contains(b"a"));
        assert!(KeyRange::new(b"b", b"").contains(b"b"));
    }

    #[test]
    fn a_pass_in_steps_compacts_as_one_pass_does() {
        // Each key: put, put, delete, so compacting at the end empties some.
        let build = || {
            let mut idx = TreeIndex::default();
            let mut rev = 1;
            for k in ["a", "b", "c", "d", "e"] {
                let key = Bytes::copy_from_slice(k.as_bytes());
                for _ in 0..2 {
                    rev += 1;
                    idx.put(&key, Revision::new(rev, 0));
                }
                if k != "c" {
                    rev += 1;
                    idx.tombstone(k.as_bytes(), Revision::new(rev, 0));
                }
            }
            (idx, rev + 1)
        };
        let (mut whole, at) = build();
        let mut expected = whole.compact(at);
        let (mut stepped, _) = build();
        let mut removed = Vec::new();
        let mut cursor = None;
        let mut steps = 0;
        loop {
            steps += 1;
            cursor = stepped.compact_keys(cursor.as_deref(), at, 2, &mut removed);
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(steps, 3, "five keys in steps of two");
        expected.sort_unstable_by_key(|r| r.rev);
        removed.sort_unstable_by_key(|r| r.rev);
        assert_eq!(removed, expected);
        assert_eq!(keys_in(&stepped, "\0", b"\0", at), ["c"]);
        assert_eq!(
            stepped.keys.len(),
            whole.keys.len(),
            "emptied keys are gone"
        );
    }

    #[test]
    fn a_key_kept_by_the_index_does_not_keep_its_buffer() {
        // A request's fields are slices of its buffer: the index must copy.
        let buffer = Bytes::from(vec![b'k'; 4096]);
        let mut idx = TreeIndex::default();
        idx.put(&buffer.slice(0..8), Revision::new(2, 0));
        assert!(
            buffer.is_unique(),
            "the index holds a slice of the request buffer"
        );
        assert_eq!(keys_in(&idx, "kkkkkkkk", b"", 2), ["kkkkkkkk"]);
    }
}
