//! Key intervals `[start, end)` and the question "which of them hold key k?"
//! answered without looking at every interval.
//!
//! The intervals are kept sorted by `(start, end)` in one vector, which is
//! also read as a balanced binary search tree: the root of the sub-array
//! `lo..hi` is its middle element, its left subtree `lo..mid`, its right one
//! `mid+1..hi` (the layout of cgranges, Li 2020). Each root remembers which
//! interval of its subtree ends last. A stabbing query for k then skips
//!
//! - every subtree whose latest end is at or before k (nothing in it holds k),
//! - every right subtree of a root starting after k (sorted: all start later),
//!
//! so it costs O(log n) plus the intervals found. Inserting or removing an
//! interval shifts the vector (a `memmove`) and marks the "ends last" array
//! stale; the next query rebuilds it in O(n). Intervals change when watchers
//! on a *new* range come or the last one on a range goes, far less often than
//! events arrive; watchers on an existing range only change its value.
//!
//! ```text
//! sorted (index: interval):  0:[a,c)  1:[b,z)  2:[c,d)  3:[e,f)  4:[g,∞)
//!
//!                 2:[c,d)  ends last: 4 (∞)
//!                /                  \
//!     1:[b,z)  ends last: 1 (z)    4:[g,∞)  ends last: 4 (∞)
//!        /                           /
//!   0:[a,c)  ends last: 0 (c)      3:[e,f)  ends last: 3 (f)
//!
//! stab "ca":  2: its subtree ends at ∞, after "ca": look in.
//!             1: ends at z: look in.  0: ends at c, not after "ca": skip.
//!                1 starts at b <= "ca" and ends after it: found 1.
//!             2 starts at c <= "ca" and ends at d, after it: found 2.
//!             4: ends at ∞: look in.  3 starts at e > "ca": skip it and its
//!                right subtree.  4 starts at g > "ca": skip.   -> 1, 2
//! ```

use bytes::Bytes;

/// The end of an interval: a key (excluded), or no end at all. `Key` sorts
/// before `Unbounded`, so the derived order is the order of ends.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum End {
    Key(Bytes),
    Unbounded,
}

impl End {
    /// True when a key `k` lies before this end.
    fn is_after(&self, k: &[u8]) -> bool {
        match self {
            End::Key(end) => k < end.as_ref(),
            End::Unbounded => true,
        }
    }
}

struct Interval<V> {
    start: Bytes,
    end: End,
    value: V,
}

/// Distinct intervals, each with a value.
pub(crate) struct IntervalTree<V> {
    /// Sorted by `(start, end)`, no two equal.
    intervals: Vec<Interval<V>>,
    /// For the root `mid` of each sub-array: the index of the interval in it
    /// with the greatest end. Stale while `stale` is set.
    ends_last: Vec<usize>,
    stale: bool,
}

impl<V> Default for IntervalTree<V> {
    fn default() -> Self {
        Self {
            intervals: Vec::new(),
            ends_last: Vec::new(),
            stale: false,
        }
    }
}

impl<V> IntervalTree<V> {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.intervals.len()
    }

    fn position(&self, start: &[u8], end: &End) -> Result<usize, usize> {
        self.intervals
            .binary_search_by(|i| i.start.as_ref().cmp(start).then_with(|| i.end.cmp(end)))
    }

    /// The value of `[start, end)`, if that interval is here.
    #[cfg(test)]
    pub(crate) fn get(&self, start: &[u8], end: &End) -> Option<&V> {
        let at = self.position(start, end).ok()?;
        Some(&self.intervals[at].value)
    }

    /// The value of `[start, end)`, if that interval is here.
    pub(crate) fn get_mut(&mut self, start: &[u8], end: &End) -> Option<&mut V> {
        let at = self.position(start, end).ok()?;
        Some(&mut self.intervals[at].value)
    }

    /// The value of `[start, end)`, inserted with `make` if the interval is new.
    pub(crate) fn get_or_insert_with(
        &mut self,
        start: &Bytes,
        end: &End,
        make: impl FnOnce() -> V,
    ) -> &mut V {
        let at = match self.position(start, end) {
            Ok(at) => at,
            Err(at) => {
                let interval = Interval {
                    start: start.clone(),
                    end: end.clone(),
                    value: make(),
                };
                self.intervals.insert(at, interval);
                self.stale = true;
                at
            }
        };
        &mut self.intervals[at].value
    }

    /// Removes `[start, end)` and returns its value.
    pub(crate) fn remove(&mut self, start: &[u8], end: &End) -> Option<V> {
        let at = self.position(start, end).ok()?;
        self.stale = true;
        Some(self.intervals.remove(at).value)
    }

    /// Calls `found` with the value of every interval that holds `k`, in
    /// order of start.
    pub(crate) fn stab(&mut self, k: &[u8], mut found: impl FnMut(&V)) {
        if self.stale {
            self.rebuild();
        }
        self.stab_in(0, self.intervals.len(), k, &mut found);
    }

    fn stab_in(&self, lo: usize, hi: usize, k: &[u8], found: &mut impl FnMut(&V)) {
        if lo >= hi {
            return;
        }
        let mid = lo + (hi - lo) / 2;
        if !self.intervals[self.ends_last[mid]].end.is_after(k) {
            return;
        }
        self.stab_in(lo, mid, k, found);
        let root = &self.intervals[mid];
        if root.start.as_ref() <= k {
            if root.end.is_after(k) {
                found(&root.value);
            }
            self.stab_in(mid + 1, hi, k, found);
        }
    }

    fn rebuild(&mut self) {
        self.ends_last.clear();
        self.ends_last.resize(self.intervals.len(), 0);
        self.build(0, self.intervals.len());
        self.stale = false;
    }

    /// Fills `ends_last` for the sub-array `lo..hi`; returns its entry.
    fn build(&mut self, lo: usize, hi: usize) -> Option<usize> {
        if lo >= hi {
            return None;
        }
        let mid = lo + (hi - lo) / 2;
        let mut last = mid;
        for side in [self.build(lo, mid), self.build(mid + 1, hi)]
            .into_iter()
            .flatten()
        {
            if self.intervals[side].end > self.intervals[last].end {
                last = side;
            }
        }
        self.ends_last[mid] = last;
        Some(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn end(e: &str) -> End {
        if e == "∞" {
            End::Unbounded
        } else {
            End::Key(Bytes::from(e.to_string()))
        }
    }

    fn stabbed(tree: &mut IntervalTree<u32>, k: &str) -> Vec<u32> {
        let mut out = Vec::new();
        tree.stab(k.as_bytes(), |v| out.push(*v));
        out.sort_unstable();
        out
    }

    #[test]
    fn the_worked_example_of_the_module() {
        let mut tree = IntervalTree::default();
        for (v, (s, e)) in [("a", "c"), ("b", "z"), ("c", "d"), ("e", "f"), ("g", "∞")]
            .into_iter()
            .enumerate()
        {
            *tree.get_or_insert_with(&Bytes::from(s), &end(e), || 0) = v as u32;
        }
        assert_eq!(stabbed(&mut tree, "ca"), [1, 2]);
        assert_eq!(stabbed(&mut tree, "a"), [0]);
        assert_eq!(stabbed(&mut tree, "zz"), [4]);
        assert_eq!(stabbed(&mut tree, "f"), [1]);
        assert_eq!(tree.remove(b"b", &end("z")), Some(1));
        assert_eq!(stabbed(&mut tree, "ca"), [2]);
        assert_eq!(tree.remove(b"b", &end("z")), None);
        assert_eq!(tree.len(), 4);
    }

    #[test]
    fn an_interval_is_inserted_once() {
        let mut tree = IntervalTree::default();
        *tree.get_or_insert_with(&Bytes::from("a"), &end("b"), || 1) += 1;
        *tree.get_or_insert_with(&Bytes::from("a"), &end("b"), || 1) += 1;
        assert_eq!(tree.len(), 1);
        assert_eq!(tree.get_mut(b"a", &end("b")), Some(&mut 3));
        assert_eq!(stabbed(&mut tree, "a"), [3]);
        assert_eq!(stabbed(&mut tree, "b"), [] as [u32; 0]);
    }

    /// Short keys over a small alphabet, so that intervals overlap, nest and
    /// share bounds often.
    fn key() -> impl Strategy<Value = String> {
        "[a-d]{0,3}"
    }

    proptest! {
        /// After any inserts and removes, a stab finds exactly the intervals
        /// a scan of all of them finds.
        #[test]
        fn stab_finds_what_a_scan_finds(
            ops in prop::collection::vec((any::<bool>(), key(), key(), any::<bool>()), 1..80),
            probes in prop::collection::vec(key(), 1..20),
        ) {
            let mut tree = IntervalTree::default();
            let mut all: Vec<(String, End)> = Vec::new();
            for (i, (insert, s, e, unbounded)) in ops.into_iter().enumerate() {
                let e = if unbounded { End::Unbounded } else { End::Key(Bytes::from(e)) };
                if insert {
                    if !all.contains(&(s.clone(), e.clone())) {
                        all.push((s.clone(), e.clone()));
                    }
                    *tree.get_or_insert_with(&Bytes::from(s), &e, || 0) = i as u32;
                } else {
                    let was = all.iter().position(|x| *x == (s.clone(), e.clone()));
                    let removed = tree.remove(s.as_bytes(), &e);
                    prop_assert_eq!(was.is_some(), removed.is_some());
                    if let Some(at) = was {
                        all.remove(at);
                    }
                }
                for k in &probes {
                    let mut want: Vec<(String, End)> = all
                        .iter()
                        .filter(|(s, e)| s.as_bytes() <= k.as_bytes() && e.is_after(k.as_bytes()))
                        .cloned()
                        .collect();
                    want.sort();
                    // Values are unique per interval (the op's number).
                    let mut got = Vec::new();
                    let mut seen = Vec::new();
                    tree.stab(k.as_bytes(), |v| seen.push(*v));
                    for (s, e) in &want {
                        got.push(*tree.get_mut(s.as_bytes(), e).expect("present"));
                    }
                    seen.sort_unstable();
                    got.sort_unstable();
                    prop_assert_eq!(seen, got);
                }
            }
        }
    }
}
