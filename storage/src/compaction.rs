//! Compaction: physically removing history no read at or after the compaction
//! revision can see (see `key_index` for what is kept, with an example).
//!
//! It runs as one command of the single writer, in one atomic backend batch
//! together with the new compacted revision, so a crash leaves either the old
//! history and old compacted revision or the new ones: never a compacted
//! revision that claims more than was removed, or the reverse.

use crate::backend::{Bucket, WriteBatch};
use crate::error::{Result, StorageError};
use crate::store::{encode_i64, Store, META_COMPACT_REV};

impl Store {
    /// Compacts history before `rev`. Returns the number of changes removed.
    pub fn compact(&self, rev: i64) -> Result<usize> {
        let mut state = self.state.write();
        if rev <= state.compact_rev {
            return Err(StorageError::Compacted);
        }
        if rev > state.current_rev {
            return Err(StorageError::FutureRevision);
        }
        let removed = state.index.compact(rev);
        let mut batch = WriteBatch::default();
        for r in &removed {
            batch.delete(Bucket::Key, r.rev.to_key(r.tombstone).to_vec());
        }
        batch.put(Bucket::Meta, META_COMPACT_REV, encode_i64(rev));
        self.backend.apply(batch)?;
        state.compact_rev = rev;
        Ok(removed.len())
    }
}
