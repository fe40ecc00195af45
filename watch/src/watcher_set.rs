//! The synced watchers, indexed so that matching an event does not scan them
//! all: single-key watchers by key, range watchers grouped by their range
//! (Kubernetes opens many watches on few prefixes, so groups are few).

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use oxetcd_storage::KeyRange;

use crate::watcher::{Watcher, WatcherKey};

#[derive(Default)]
pub(crate) struct WatcherSet {
    watchers: HashMap<WatcherKey, Watcher>,
    by_key: HashMap<Bytes, HashSet<WatcherKey>>,
    by_range: HashMap<(Bytes, Bytes), HashSet<WatcherKey>>,
}

impl WatcherSet {
    pub(crate) fn insert(&mut self, w: Watcher) {
        let key = w.key;
        if w.spec.range_end.is_empty() {
            self.by_key
                .entry(w.spec.key.clone())
                .or_default()
                .insert(key);
        } else {
            let group = (w.spec.key.clone(), w.spec.range_end.clone());
            self.by_range.entry(group).or_default().insert(key);
        }
        self.watchers.insert(key, w);
    }

    pub(crate) fn remove(&mut self, key: &WatcherKey) -> Option<Watcher> {
        let w = self.watchers.remove(key)?;
        let emptied = if w.spec.range_end.is_empty() {
            let set = self.by_key.get_mut(&w.spec.key);
            set.map(|s| {
                s.remove(key);
                s.is_empty()
            })
        } else {
            let group = (w.spec.key.clone(), w.spec.range_end.clone());
            self.by_range.get_mut(&group).map(|s| {
                s.remove(key);
                s.is_empty()
            })
        };
        if emptied == Some(true) {
            if w.spec.range_end.is_empty() {
                self.by_key.remove(&w.spec.key);
            } else {
                self.by_range
                    .remove(&(w.spec.key.clone(), w.spec.range_end.clone()));
            }
        }
        Some(w)
    }

    pub(crate) fn get_mut(&mut self, key: &WatcherKey) -> Option<&mut Watcher> {
        self.watchers.get_mut(key)
    }

    /// The watchers whose key or range holds `k`.
    pub(crate) fn matching(&self, k: &[u8], out: &mut Vec<WatcherKey>) {
        if let Some(set) = self.by_key.get(k) {
            out.extend(set.iter().copied());
        }
        for ((start, end), set) in &self.by_range {
            if KeyRange::new(start, end).contains(k) {
                out.extend(set.iter().copied());
            }
        }
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Watcher> {
        self.watchers.values_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watcher::WatchSpec;

    fn watcher(id: i64, key: &str, end: &str) -> Watcher {
        Watcher {
            key: (1, id),
            spec: WatchSpec {
                key: Bytes::from(key.to_string()),
                range_end: Bytes::from(end.to_string()),
                ..Default::default()
            },
            next_rev: 1,
            active: false,
        }
    }

    fn matching(set: &WatcherSet, k: &str) -> Vec<i64> {
        let mut out = Vec::new();
        set.matching(k.as_bytes(), &mut out);
        let mut ids: Vec<i64> = out.into_iter().map(|k| k.1).collect();
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
        assert_eq!(matching(&set, "a"), [1, 2, 3]);
        assert_eq!(matching(&set, "ab"), [2, 3]);
        assert_eq!(matching(&set, "zz"), [4]);
        set.remove(&(1, 2));
        set.remove(&(1, 1));
        assert_eq!(matching(&set, "a"), [3]);
        set.remove(&(1, 3));
        assert!(
            set.by_range.len() == 1 && set.by_key.is_empty(),
            "empty groups are dropped"
        );
    }
}
