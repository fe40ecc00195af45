//! Compaction: removing history no read at or after the compaction revision
//! can see (see `key_index` for what is kept, with an example), in two steps,
//! as etcd does:
//!
//! 1. [`Store::compact`] (the single writer, one apply): the index drops the
//!    history, the new compacted revision is stored, and the revisions to
//!    delete are queued. Reads below the revision fail from here on. This is
//!    a pass over the in-memory index, so it holds the write path briefly.
//! 2. [`Store::remove_compacted`] (a background worker, see the server's
//!    compactor): deletes queued revisions from the backend in bounded
//!    batches, oldest first, each under the write lock for one batch only.
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
//! Until a queued revision is deleted, HashKV skips it, so members agree on
//! the hash whatever their progress.

use std::collections::VecDeque;

use crate::backend::{Bucket, WriteBatch};
use crate::error::{Result, StorageError};
use crate::key_index::Removed;
use crate::revision::Revision;
use crate::store::{encode_i64, Store, META_COMPACT_REV};

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
    /// Compacts history before `rev`: reads below it fail from now on, and
    /// the history they would need is queued for [`Store::remove_compacted`].
    /// Returns the number of changes queued.
    pub fn compact(&self, rev: i64) -> Result<usize> {
        let mut state = self.state.write();
        if rev <= state.compact_rev {
            return Err(StorageError::Compacted);
        }
        if rev > state.current_rev {
            return Err(StorageError::FutureRevision);
        }
        let removed = state.index.compact(rev);
        let queued = removed.len();
        let mut batch = WriteBatch::default();
        batch.put(Bucket::Meta, META_COMPACT_REV, encode_i64(rev));
        self.backend.apply(batch)?;
        state.compact_rev = rev;
        state.removals.extend(removed);
        Ok(queued)
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

    /// Revisions compacted away but still in the backend.
    pub fn compaction_backlog(&self) -> usize {
        self.state.read().removals.len()
    }

    /// Deletes everything queued, in batches of `batch` (for callers with no
    /// background worker: imports, tools, tests).
    pub fn finish_compaction(&self, batch: usize) -> Result<()> {
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
