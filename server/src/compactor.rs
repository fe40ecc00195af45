//! The compactor: a background thread that deletes compacted history from
//! the store in bounded batches, as etcd's scheduled compaction does.
//!
//! Applying a Compact only drops the history from the index and queues its
//! revisions (storage's `compaction` module explains why that is safe across
//! crashes and snapshots); this thread does the deletions, one batch of at
//! most `--experimental-compaction-batch-limit` revisions at a time, pausing
//! between batches so that writes are never held for more than one batch.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use oxetcd_storage::Store;
use tracing::{error, info};

/// etcd's default for --experimental-compaction-batch-limit.
pub const DEFAULT_COMPACTION_BATCH_LIMIT: usize = 1000;
/// Between two batches: the write path runs freely (etcd waits 10 ms too).
const BATCH_PAUSE: Duration = Duration::from_millis(10);
/// How often an idle compactor looks for queued history.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// After a backend error, before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Starts the compactor of `store`; it stops once the store is dropped.
pub(crate) fn spawn(store: &Arc<Store>, batch_limit: usize) -> std::io::Result<()> {
    let store = Arc::downgrade(store);
    std::thread::Builder::new()
        .name("compactor".into())
        .spawn(move || run(&store, batch_limit.max(1)))?;
    Ok(())
}

fn run(store: &Weak<Store>, batch_limit: usize) {
    // When the queue last went from empty to busy, and its size then.
    let mut busy_since: Option<(Instant, usize)> = None;
    loop {
        let Some(store) = store.upgrade() else { return };
        let queued = store.compaction_backlog();
        let pause = if queued == 0 {
            IDLE_POLL
        } else {
            let (started, _) = *busy_since.get_or_insert((Instant::now(), queued));
            match store.remove_compacted(batch_limit) {
                Ok(0) => {
                    let queued_at_start = busy_since.take().map_or(0, |(_, n)| n);
                    info!(
                        queued_at_start,
                        took_ms = started.elapsed().as_millis() as u64,
                        "finished scheduled compaction"
                    );
                    IDLE_POLL
                }
                Ok(_) => BATCH_PAUSE,
                Err(e) => {
                    // Nothing is lost: the revisions stay queued, and a
                    // restart queues them again. A broken disk fails the
                    // next write too, which stops the member.
                    error!("compaction: deleting compacted revisions failed: {e}");
                    ERROR_PAUSE
                }
            }
        };
        drop(store);
        std::thread::sleep(pause);
    }
}
