//! When to snapshot and how much log to keep, counted in writes as etcd
//! counts them (--snapshot-count, and --experimental-snapshot-catchup-entries
//! writes, 5,000 by default, kept after a snapshot for slow followers), not
//! in log entries: one entry holds a whole batch of
//! writes (see `proposals`), so openraft's entry-counting policy would
//! snapshot hundreds of times too rarely under load and keep up to 512 times
//! as much log.
//!
//! The state machine tells [`AppliedWrites`] how many writes each entry it
//! applies holds; [`run`] snapshots every `snapshot_count` writes and purges
//! the log up to the last entry with at least that many writes after it (never past the snapshot: openraft clamps the purge).

use std::collections::VecDeque;
use std::sync::Arc;

use super::TypeConfig;
use openraft::Raft;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Writes applied so far, by log index.
#[derive(Default)]
pub struct AppliedWrites {
    log: Mutex<WriteMarks>,
    applied: Notify,
}

#[derive(Default)]
struct WriteMarks {
    /// Writes applied since this member started.
    total: u64,
    /// (log index, `total` once it was applied), oldest first, for the
    /// entries not purged yet.
    marks: VecDeque<(u64, u64)>,
}

impl AppliedWrites {
    /// The entry at `index`, holding `writes` writes, was applied.
    pub fn applied(&self, index: u64, writes: u64) {
        {
            let mut log = self.log.lock();
            log.total += writes;
            let total = log.total;
            log.marks.push_back((index, total));
        }
        self.applied.notify_one();
    }

    fn total(&self) -> u64 {
        self.log.lock().total
    }

    /// The last entry with at least `keep` writes applied after it, if any;
    /// marks up to it are dropped (it is about to be purged).
    fn take_purge_point(&self, keep: u64) -> Option<u64> {
        let mut log = self.log.lock();
        let limit = log.total.checked_sub(keep)?;
        let mut point = None;
        while let Some(&(index, total)) = log.marks.front() {
            if total > limit {
                break;
            }
            point = Some(index);
            log.marks.pop_front();
        }
        point
    }
}

/// Snapshots and purges for the life of `raft`.
pub(super) async fn run(
    raft: Raft<TypeConfig>,
    writes: Arc<AppliedWrites>,
    snapshot_count: u64,
    writes_kept: u64,
) {
    let mut at_last_snapshot = writes.total();
    loop {
        writes.applied.notified().await;
        let total = writes.total();
        if total.saturating_sub(at_last_snapshot) >= snapshot_count.max(1) {
            at_last_snapshot = total;
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
        }
        if let Some(upto) = writes.take_purge_point(writes_kept) {
            // Clamped by openraft to the last snapshot; what is not purged now
            // goes with a later, larger purge.
            if raft.trigger().purge_log(upto).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_point_keeps_the_last_writes_whole_entries_at_a_time() {
        let writes = AppliedWrites::default();
        assert_eq!(writes.take_purge_point(10), None, "nothing applied");
        writes.applied(1, 1);
        writes.applied(2, 512);
        writes.applied(3, 4);
        writes.applied(4, 6);
        // 523 writes; keep 10: entries 3 and 4 hold the last 10.
        assert_eq!(writes.take_purge_point(10), Some(2));
        assert_eq!(writes.take_purge_point(10), None, "already taken");
        // Keep 5: entry 4 alone holds 6.
        assert_eq!(writes.take_purge_point(5), Some(3));
        writes.applied(5, 100);
        assert_eq!(writes.take_purge_point(0), Some(5));
        assert_eq!(writes.total(), 623);
    }
}
