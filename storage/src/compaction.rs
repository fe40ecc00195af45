//! Compaction: removing history no read at or after the compaction revision
//! can see (see `key_index` for what is kept, with an example), in three
//! steps, the last two in the background (the server's compactor) so that
//! the write path is never held for more than one bounded step:
//!
//! 1. [`Store::compact`] (the single writer, one apply): the new compacted
//!    revision is stored, and reads below it fail from here on. It starts an
//!    index pass and returns.
//! 2. [`Store::compact_index_step`]: the index drops the history before the
//!    revision, [`INDEX_STEP_KEYS`] keys at a time in key order, each step
//!    under the write lock; writes run between steps. Reads at or after the
//!    revision see the same whether a key was passed or not, since a pass only
//!    drops what they cannot see. When the pass ends, what it dropped is queued.
//! 3. [`Store::remove_compacted`]: deletes queued revisions from the backend
//!    in bounded batches, oldest first, each under the write lock.
//!
//! Why a crash, or a snapshot taken midway, is safe without recording
//! progress: every queued revision is below the compacted revision, so no
//! read or watcher reaches it; and a key's removed revisions are the oldest of
//! its history, so deleting oldest first leaves, for every key, a suffix of
//! its stored history. Rebuilding the index from such a suffix and compacting
//! it again at the stored compacted revision (`load_state`) gives the same
//! index and queues exactly the revisions still left:
//!
//! ```text
//! key "a": put@2 put@5 del@7 put@9, compact(8) removes 2, 5, 7; keeps 9
//! crash after deleting 2:  stored 5 del@7 9  -> rebuild, compact(8) -> 9; queue 5, 7
//! crash after deleting 5:  stored del@7 9    -> (a tombstone-only generation)
//!                                               compact(8) -> 9; queue 7
//! ```
//!
//! Until a queued revision is deleted, HashKV skips it, and HashKV finishes
//! a pending index pass first, so members agree on the hash whatever their
//! progress.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::backend::{Bucket, WriteBatch};
use crate::error::{Result, StorageError};
use crate::key_index::Removed;
use crate::revision::Revision;
use crate::store::{encode_i64, Store, META_COMPACT_REV};

/// Keys per index-pass step: about 1 us each on this project's machines
/// (docs/performance.md, the compaction write-stall run), so a step holds the
/// write path for about 10 ms.
pub const INDEX_STEP_KEYS: usize = 10_000;

/// An index pass under way: the keys up to `cursor` have dropped their history
/// before `rev`; those after it have not yet.
#[derive(Debug)]
pub(crate) struct IndexPass {
    rev: i64,
    /// The last key passed; `None` before the first step.
    cursor: Option<Bytes>,
    /// What the steps so far dropped from the index: queued when the pass ends.
    removed: Vec<Removed>,
}

/// Revisions a compaction took out of the index but not yet out of the
/// backend, oldest first (the order that keeps each key's stored history a
/// suffix: see the module docs).
#[derive(Debug, Default)]
pub(crate) struct RemovalQueue {
    queued: VecDeque<Removed>,
}

impl RemovalQueue {
    /// Queues what a compaction removed from the index (in any order).
    pub(crate) fn extend(&mut self, mut removed: Vec<Removed>) {
        removed.sort_unstable_by_key(|r| r.rev);
        let in_order = match (self.queued.back(), removed.first()) {
            (Some(last), Some(first)) => last.rev < first.rev,
            _ => true,
        };
        self.queued.extend(removed);
        if !in_order {
            // A second compaction before the first was done: it can remove
            // revisions older than ones still queued.
            self.queued
                .make_contiguous()
                .sort_unstable_by_key(|r| r.rev);
        }
    }

    /// True while `rev` is queued: gone from the index, not yet from the backend.
    pub(crate) fn contains(&self, rev: Revision) -> bool {
        self.queued.binary_search_by_key(&rev, |r| r.rev).is_ok()
    }

    pub(crate) fn len(&self) -> usize {
        self.queued.len()
    }
}

impl Store {
    /// Compacts history before `rev`: reads below it fail from now on. The
    /// history they would need is dropped by [`Store::compact_index_step`]
    /// and deleted by [`Store::remove_compacted`].
    pub fn compact(&self, rev: i64) -> Result<()> {
        let mut state = self.state.write();
        if rev <= state.compact_rev {
            return Err(StorageError::Compacted);
        }
        if rev > state.current_rev {
            return Err(StorageError::FutureRevision);
        }
        let mut batch = WriteBatch::default();
        batch.put(Bucket::Meta, META_COMPACT_REV, encode_i64(rev));
        self.backend.apply(batch)?;
        state.compact_rev = rev;
        match &mut state.index_pass {
            // The keys already passed go again, at the new revision.
            Some(pass) => {
                pass.rev = rev;
                pass.cursor = None;
            }
            None => {
                state.index_pass = Some(IndexPass {
                    rev,
                    cursor: None,
                    removed: Vec::new(),
                })
            }
        }
        Ok(())
    }

    /// Passes the next `max_keys` keys of a pending index pass, holding the
    /// write path for this step only; queues what the pass dropped once it
    /// ends. Returns true while the pass is still pending.
    pub fn compact_index_step(&self, max_keys: usize) -> bool {
        let mut guard = self.state.write();
        let state = &mut *guard;
        let Some(pass) = state.index_pass.as_mut() else {
            return false;
        };
        pass.cursor = state.index.compact_keys(
            pass.cursor.as_deref(),
            pass.rev,
            max_keys,
            &mut pass.removed,
        );
        if pass.cursor.is_some() {
            return true;
        }
        if let Some(done) = state.index_pass.take() {
            state.removals.extend(done.removed);
        }
        false
    }

    /// True while a compaction has work left: an index pass, or revisions
    /// still to delete.
    pub fn compaction_pending(&self) -> bool {
        let state = self.state.read();
        state.index_pass.is_some() || !state.removals.queued.is_empty()
    }

    /// Deletes up to `limit` queued revisions from the backend, holding the
    /// write path for this one batch. Returns how many stay queued.
    pub fn remove_compacted(&self, limit: usize) -> Result<usize> {
        let mut state = self.state.write();
        let n = limit.min(state.removals.len());
        if n == 0 {
            return Ok(state.removals.len());
        }
        let mut batch = WriteBatch::default();
        for r in state.removals.queued.iter().take(n) {
            batch.delete(Bucket::Key, r.rev.to_key(r.tombstone).to_vec());
        }
        self.backend.apply(batch)?;
        state.removals.queued.drain(..n);
        if state.removals.queued.is_empty() {
            // A large compaction's queue would otherwise keep its memory.
            state.removals.queued.shrink_to_fit();
        }
        Ok(state.removals.len())
    }

    /// Revisions compacted away and queued, still in the backend (a pending
    /// index pass has not queued its revisions yet).
    pub fn compaction_backlog(&self) -> usize {
        self.state.read().removals.len()
    }

    /// Finishes the index pass, then deletes everything queued, in batches of
    /// `batch` (for callers with no background worker: imports, tools, tests).
    pub fn finish_compaction(&self, batch: usize) -> Result<()> {
        while self.compact_index_step(INDEX_STEP_KEYS) {}
        while self.remove_compacted(batch)? > 0 {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn removed(mains: &[i64]) -> Vec<Removed> {
        mains
            .iter()
            .map(|&m| Removed {
                rev: Revision::new(m, 0),
                tombstone: false,
            })
            .collect()
    }

    fn mains(q: &RemovalQueue) -> Vec<i64> {
        q.queued.iter().map(|r| r.rev.main).collect()
    }

    #[test]
    fn queue_stays_oldest_first_across_compactions() {
        let mut q = RemovalQueue::default();
        q.extend(removed(&[7, 2, 5]));
        assert_eq!(mains(&q), [2, 5, 7]);
        // A later compaction can remove a revision the first one kept (3).
        q.extend(removed(&[9, 3]));
        assert_eq!(mains(&q), [2, 3, 5, 7, 9]);
        assert!(q.contains(Revision::new(3, 0)));
        assert!(!q.contains(Revision::new(4, 0)));
    }
}
