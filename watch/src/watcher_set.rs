//! The synced watchers, indexed so that matching an event does not scan them
//! all: single-key watchers by key (a hash map), range watchers by range (an
//! [`IntervalTree`] of the distinct ranges, each with its watchers).
//!
//! Watchers live in slots of one vector; the indexes hold slot numbers, so
//! that fan-out goes from an event to its watchers without hashing a watcher
//! key. Each watcher remembers its place in its key's or range's list, so
//! removing one is O(1) there too (a `swap_remove`).

use std::collections::HashMap;

use bytes::Bytes;

use crate::interval_tree::{End, IntervalTree};
use crate::watcher::{Watcher, WatcherKey};

/// A watcher's place in the set; valid until it is removed.
pub(crate) type Slot = u32;

struct Member {
    watcher: Watcher,
    /// Index of this slot in its key's or range's list.
    in_list: usize,
}

#[derive(Default)]
pub(crate) struct WatcherSet {
    slots: Vec<Option<Member>>,
    /// Empty slots, reused first.
    free: Vec<Slot>,
    ids: HashMap<WatcherKey, Slot>,
    by_key: HashMap<Bytes, Vec<Slot>>,
    by_range: IntervalTree<Vec<Slot>>,
}

/// Where a watcher is listed: its single key, or its range.
enum Index<'a> {
    Key(&'a Bytes),
    Range(&'a Bytes, End),
}

fn index_of(w: &Watcher) -> Index<'_> {
    match w.spec.range_end.as_ref() {
        [] => Index::Key(&w.spec.key),
        [0] => Index::Range(&w.spec.key, End::Unbounded),
        _ => Index::Range(&w.spec.key, End::Key(w.spec.range_end.clone())),
    }
}

/// Takes the entry at `at` out of `list`, fixing the place of the entry moved
/// into its spot; returns whether the list is empty now.
fn unlist(slots: &mut [Option<Member>], list: &mut Vec<Slot>, at: usize) -> bool {
    list.swap_remove(at);
    if let Some(moved) = list.get(at) {
        if let Some(m) = slots.get_mut(*moved as usize).and_then(Option::as_mut) {
            m.in_list = at;
        }
    }
    list.is_empty()
}

impl WatcherSet {
    pub(crate) fn insert(&mut self, w: Watcher) {
        let key = w.key;
        // Re-inserting a watcher key replaces the watcher (never done by the
        // hub, but the set stays consistent).
        self.remove(&key);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as Slot
            }
        };
        let list = match index_of(&w) {
            Index::Key(k) => self.by_key.entry(k.clone()).or_default(),
            Index::Range(start, end) => self.by_range.get_or_insert_with(start, &end, Vec::new),
        };
        list.push(slot);
        let in_list = list.len() - 1;
        self.slots[slot as usize] = Some(Member {
            watcher: w,
            in_list,
        });
        self.ids.insert(key, slot);
    }

    pub(crate) fn remove(&mut self, key: &WatcherKey) -> Option<Watcher> {
        let slot = self.ids.remove(key)?;
        let member = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        let w = member.watcher;
        let emptied = match index_of(&w) {
            Index::Key(k) => {
                let list = self.by_key.get_mut(k.as_ref());
                list.map(|l| unlist(&mut self.slots, l, member.in_list))
            }
            Index::Range(start, end) => {
                let list = self.by_range.get_mut(start, &end);
                list.map(|l| unlist(&mut self.slots, l, member.in_list))
            }
        };
        if emptied == Some(true) {
            match index_of(&w) {
                Index::Key(k) => {
                    self.by_key.remove(k.as_ref());
                }
                Index::Range(start, end) => {
                    self.by_range.remove(start, &end);
                }
            }
        }
        Some(w)
    }

    /// The watcher in `slot`, if the slot holds one.
    pub(crate) fn at_mut(&mut self, slot: Slot) -> Option<&mut Watcher> {
        let member = self.slots.get_mut(slot as usize)?.as_mut()?;
        Some(&mut member.watcher)
    }

    /// Appends to `out` the slot of every watcher whose key or range holds `k`.
    pub(crate) fn matching(&mut self, k: &[u8], out: &mut Vec<Slot>) {
        if let Some(list) = self.by_key.get(k) {
            out.extend_from_slice(list);
        }
        self.by_range.stab(k, |list| out.extend_from_slice(list));
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Watcher> {
        self.slots.iter_mut().flatten().map(|m| &mut m.watcher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watcher::WatchSpec;
    use proptest::prelude::*;

    fn watcher(id: i64, key: &str, end: &str) -> Watcher {
        Watcher::new(
            (1, id),
            WatchSpec {
                key: Bytes::from(key.to_string()),
                range_end: Bytes::from(end.to_string()),
                ..Default::default()
            },
            1,
            crate::outbox::detached(),
        )
    }

    fn matching(set: &mut WatcherSet, k: &str) -> Vec<i64> {
        let mut slots = Vec::new();
        set.matching(k.as_bytes(), &mut slots);
        let mut ids: Vec<i64> = slots
            .into_iter()
            .map(|s| set.at_mut(s).expect("a matched slot holds a watcher").key.1)
            .collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn matches_keys_prefixes_and_from_key_ranges() {
        let mut set = WatcherSet::default();
        set.insert(watcher(1, "a", ""));
        set.insert(watcher(2, "a", "b"));
        set.insert(watcher(3, "a", "b"));
        set.insert(watcher(4, "b", "\0"));
        set.insert(watcher(5, "aa", "ab"));
        assert_eq!(matching(&mut set, "a"), [1, 2, 3]);
        assert_eq!(matching(&mut set, "aa"), [2, 3, 5]);
        assert_eq!(matching(&mut set, "zz"), [4]);
        set.remove(&(1, 2));
        set.remove(&(1, 1));
        assert_eq!(matching(&mut set, "a"), [3]);
        set.remove(&(1, 3));
        set.remove(&(1, 5));
        assert!(
            set.by_range.len() == 1 && set.by_key.is_empty(),
            "empty lists are dropped"
        );
        assert_eq!(set.free.len(), 4, "slots are reused");
        set.insert(watcher(6, "c", ""));
        assert_eq!(set.slots.len(), 5);
    }

    proptest! {
        /// Any inserts and removes: matching finds what a scan of every
        /// watcher finds, and each list entry knows its place.
        #[test]
        fn matching_finds_what_a_scan_finds(
            ops in prop::collection::vec((0i64..12, 0usize..4, any::<bool>()), 1..60),
            probes in prop::collection::vec("[a-c]{0,2}", 1..8),
        ) {
            let ranges = [("a", ""), ("a", "b"), ("ab", "\0"), ("b", "c")];
            let mut set = WatcherSet::default();
            let mut model: HashMap<i64, usize> = HashMap::new();
            for (id, range, insert) in ops {
                if insert {
                    let (k, e) = ranges[range];
                    set.insert(watcher(id, k, e));
                    model.insert(id, range);
                } else {
                    prop_assert_eq!(set.remove(&(1, id)).is_some(), model.remove(&id).is_some());
                }
                for k in &probes {
                    let mut want: Vec<i64> = model
                        .iter()
                        .filter(|(_, r)| {
                            let (s, e) = ranges[**r];
                            oxetcd_storage::KeyRange::new(s.as_bytes(), e.as_bytes())
                                .contains(k.as_bytes())
                        })
                        .map(|(id, _)| *id)
                        .collect();
                    want.sort_unstable();
                    prop_assert_eq!(matching(&mut set, k), want);
                }
            }
            for (slot, m) in set.slots.iter().enumerate() {
                if let Some(m) = m {
                    let list = match index_of(&m.watcher) {
                        Index::Key(k) => set.by_key.get(k.as_ref()),
                        Index::Range(s, e) => set.by_range.get(s, &e),
                    };
                    prop_assert_eq!(list.map(|l| l[m.in_list]), Some(slot as Slot));
                }
            }
        }
    }
}
