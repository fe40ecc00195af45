//! The revision history of one key, split into generations.
//!
//! A *generation* is one life of a key: from the put that creates it to the
//! delete (tombstone) that ends it. Within a generation every put raises the
//! version by one; a new put after a delete starts a new generation at version 1
//! with a new create_revision.
//!
//! Worked example for key "foo":
//!
//! ```text
//! put@2  put@5  del@7  put@9  put@12
//!
//! generations: [ {created 2, v1@2 v2@5, tombstone 7}, {created 9, v1@9 v2@12, open} ]
//! get(4)  -> mod 2,  create 2, version 1
//! get(7)  -> none (deleted at 7)
//! get(10) -> mod 9,  create 9, version 1
//! ```
//!
//! Compaction at revision `at` keeps, per key, the latest change at or before
//! `at` that a reader or watcher at `at` can still need, and every later one:
//!
//! ```text
//! compact(6)  -> [ {created 2, v2@5, tombstone 7}, {created 9, ...} ]  (v1@2 gone)
//! compact(7)  -> [ {tombstone 7 only}, {created 9, ...} ]  (a watcher from 7
//!                must still see the delete at 7)
//! compact(8)  -> [ {created 9, v1@9 v2@12, open} ]  (the first life is over)
//! compact(10) -> [ {created 9, v2@12 ... no: v1@9 v2@12} ] keeps v1@9: it is
//!                the value live at 10
//! ```
//!
//! After compaction a generation's first kept put may not be version 1, so each
//! generation remembers the version of its first kept put.

use crate::revision::Revision;

/// What a read at some revision sees of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyAt {
    /// The revision of the put that wrote the visible value.
    pub modified: Revision,
    /// Main revision of the put that created this generation.
    pub created: i64,
    /// The key's version at that put.
    pub version: i64,
}

/// One change to remove from the backend, as compaction decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Removed {
    pub rev: Revision,
    pub tombstone: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Generation {
    /// create_revision of every put in this generation.
    created: i64,
    /// Version of `puts[0]`.
    first_version: i64,
    /// Put revisions, ascending.
    puts: Vec<Revision>,
    /// The delete that ended this generation; `None` while the key is live.
    tombstone: Option<Revision>,
}

impl Generation {
    fn version_at(&self, idx: usize) -> i64 {
        self.first_version + idx as i64
    }
}

/// The history of one key. Every generation but the last has a tombstone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyIndex {
    generations: Vec<Generation>,
}

impl KeyIndex {
    /// Records a put at `rev`; returns (create_revision, version) of the new value.
    pub fn put(&mut self, rev: Revision) -> (i64, i64) {
        match self.generations.last_mut() {
            Some(g) if g.tombstone.is_none() => {
                g.puts.push(rev);
                (g.created, g.version_at(g.puts.len() - 1))
            }
            _ => {
                self.push_generation(Generation {
                    created: rev.main,
                    first_version: 1,
                    puts: vec![rev],
                    tombstone: None,
                });
                (rev.main, 1)
            }
        }
    }

    /// Adds a generation, growing the list by one only: most keys have one
    /// generation all their life, and a default growth to four (256 bytes)
    /// was most of the index's memory per key.
    fn push_generation(&mut self, generation: Generation) {
        self.generations.reserve_exact(1);
        self.generations.push(generation);
    }

    /// Rebuilds history from a stored put whose create_revision and version are
    /// known (the first kept put of a generation may follow a compaction).
    pub fn restore_put(&mut self, rev: Revision, created: i64, version: i64) {
        match self.generations.last_mut() {
            Some(g) if g.tombstone.is_none() && g.created == created => g.puts.push(rev),
            _ => self.push_generation(Generation {
                created,
                first_version: version,
                puts: vec![rev],
                tombstone: None,
            }),
        }
    }

    /// Records a delete at `rev`. Returns false, changing nothing, when the key
    /// is not live (nothing to delete).
    pub fn tombstone(&mut self, rev: Revision) -> bool {
        match self.generations.last_mut() {
            Some(g) if g.tombstone.is_none() => {
                g.tombstone = Some(rev);
                true
            }
            _ => false,
        }
    }

    /// Rebuilds a stored tombstone, which after compaction may be all that is left
    /// of its generation.
    pub fn restore_tombstone(&mut self, rev: Revision) {
        if !self.tombstone(rev) {
            self.push_generation(Generation {
                created: 0,
                first_version: 0,
                puts: Vec::new(),
                tombstone: Some(rev),
            });
        }
    }

    /// The value visible to a read at main revision `at`, if the key is live then.
    pub fn get(&self, at: i64) -> Option<KeyAt> {
        for g in self.generations.iter().rev() {
            if let Some(t) = g.tombstone {
                if t.main <= at {
                    return None;
                }
            }
            let visible = g.puts.partition_point(|r| r.main <= at);
            if visible > 0 {
                let idx = visible - 1;
                return Some(KeyAt {
                    modified: g.puts[idx],
                    created: g.created,
                    version: g.version_at(idx),
                });
            }
            // This generation started after `at`: look at the previous life.
        }
        None
    }

    /// True when the latest generation is open: the key exists now.
    pub fn is_live(&self) -> bool {
        self.generations
            .last()
            .is_some_and(|g| g.tombstone.is_none() && !g.puts.is_empty())
    }

    /// True when no history is left.
    pub fn is_empty(&self) -> bool {
        self.generations.is_empty()
    }

    /// Drops the history that compaction at `at` makes unreachable (see the
    /// type's example) and reports each removed change.
    pub fn compact(&mut self, at: i64, removed: &mut Vec<Removed>) {
        let mut kept = Vec::with_capacity(self.generations.len());
        for mut g in self.generations.drain(..) {
            match g.tombstone {
                Some(t) if t.main < at => {
                    removed.extend(g.puts.iter().map(|&rev| Removed {
                        rev,
                        tombstone: false,
                    }));
                    removed.push(Removed {
                        rev: t,
                        tombstone: true,
                    });
                }
                Some(t) if t.main == at => {
                    // Only the delete is left: the generation's other fields no
                    // longer describe any stored value.
                    removed.extend(g.puts.iter().map(|&rev| Removed {
                        rev,
                        tombstone: false,
                    }));
                    kept.push(Generation {
                        created: 0,
                        first_version: 0,
                        puts: Vec::new(),
                        tombstone: Some(t),
                    });
                }
                _ => {
                    let visible = g.puts.partition_point(|r| r.main <= at);
                    if visible > 1 {
                        let drop = visible - 1;
                        removed.extend(g.puts.drain(..drop).map(|rev| Removed {
                            rev,
                            tombstone: false,
                        }));
                        g.first_version += drop as i64;
                        // Compaction is when memory is given back.
                        g.puts.shrink_to_fit();
                    }
                    kept.push(g);
                }
            }
        }
        self.generations = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// The history of the type's worked example.
    fn example() -> KeyIndex {
        let mut ki = KeyIndex::default();
        assert_eq!(ki.put(rev(2)), (2, 1));
        assert_eq!(ki.put(rev(5)), (2, 2));
        assert!(ki.tombstone(rev(7)));
        assert_eq!(ki.put(rev(9)), (9, 1));
        assert_eq!(ki.put(rev(12)), (9, 2));
        ki
    }

    fn at(ki: &KeyIndex, r: i64) -> Option<(i64, i64, i64)> {
        ki.get(r).map(|k| (k.modified.main, k.created, k.version))
    }

    #[test]
    fn get_follows_generations() {
        let ki = example();
        assert_eq!(at(&ki, 1), None);
        assert_eq!(at(&ki, 4), Some((2, 2, 1)));
        assert_eq!(at(&ki, 6), Some((5, 2, 2)));
        assert_eq!(at(&ki, 7), None);
        assert_eq!(at(&ki, 8), None);
        assert_eq!(at(&ki, 10), Some((9, 9, 1)));
        assert_eq!(at(&ki, 100), Some((12, 9, 2)));
    }

    #[test]
    fn tombstone_of_dead_key_changes_nothing() {
        let mut ki = example();
        ki.tombstone(rev(13));
        let before = ki.clone();
        assert!(!ki.tombstone(rev(14)));
        assert_eq!(ki, before);
    }

    fn compact_example(at_rev: i64) -> (KeyIndex, Vec<i64>) {
        let mut ki = example();
        let mut removed = Vec::new();
        ki.compact(at_rev, &mut removed);
        (ki, removed.iter().map(|r| r.rev.main).collect())
    }

    #[test]
    fn compaction_keeps_what_reads_at_or_after_it_need() {
        let (ki, removed) = compact_example(6);
        assert_eq!(removed, vec![2]);
        assert_eq!(at(&ki, 6), Some((5, 2, 2)));

        let (ki, removed) = compact_example(7);
        assert_eq!(removed, vec![2, 5]);
        assert_eq!(at(&ki, 7), None);
        assert_eq!(ki.generations[0].tombstone, Some(rev(7)));

        let (ki, removed) = compact_example(8);
        assert_eq!(removed, vec![2, 5, 7]);
        assert_eq!(ki.generations.len(), 1);
        assert_eq!(at(&ki, 100), Some((12, 9, 2)));

        let (ki, removed) = compact_example(12);
        assert_eq!(removed, vec![2, 5, 7, 9]);
        assert_eq!(at(&ki, 12), Some((12, 9, 2)));
    }

    #[test]
    fn compaction_past_final_delete_empties_the_index() {
        let mut ki = example();
        ki.tombstone(rev(13));
        let mut removed = Vec::new();
        ki.compact(13, &mut removed);
        assert!(
            !ki.is_empty(),
            "the delete at 13 is kept for watchers from 13"
        );
        ki.compact(14, &mut removed);
        assert!(ki.is_empty());
        let tombstones: Vec<i64> = removed
            .iter()
            .filter(|r| r.tombstone)
            .map(|r| r.rev.main)
            .collect();
        assert_eq!(tombstones, vec![7, 13]);
    }

    #[test]
    fn restore_rebuilds_compacted_history() {
        let (compacted, _) = compact_example(7);
        let mut restored = KeyIndex::default();
        restored.restore_tombstone(rev(7));
        restored.restore_put(rev(9), 9, 1);
        restored.restore_put(rev(12), 9, 2);
        assert_eq!(restored, compacted);

        let (compacted, _) = compact_example(6);
        let mut restored = KeyIndex::default();
        restored.restore_put(rev(5), 2, 2);
        restored.restore_tombstone(rev(7));
        restored.restore_put(rev(9), 9, 1);
        restored.restore_put(rev(12), 9, 2);
        assert_eq!(restored, compacted);
    }

    #[test]
    fn a_new_key_allocates_one_generation_and_compaction_gives_memory_back() {
        let mut ki = KeyIndex::default();
        ki.put(rev(2));
        assert_eq!(ki.generations.capacity(), 1, "a default growth to four");
        for r in 3..=6 {
            ki.put(rev(r));
        }
        let mut removed = Vec::new();
        ki.compact(6, &mut removed);
        assert_eq!(removed.len(), 4);
        assert_eq!(
            ki.generations[0].puts.capacity(),
            1,
            "compaction kept the memory"
        );
    }
}
