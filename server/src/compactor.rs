//! The compactor: a background thread that carries out applied compactions,
//! as etcd's scheduled compaction does.
//!
//! Applying a Compact only records the revision (storage's `compaction`
//! module explains the steps and why they are safe across crashes and
//! snapshots); this thread runs the index pass, [`INDEX_STEP_KEYS`] keys at a
//! time, then deletes the history it queued, one batch of at most
//! `--experimental-compaction-batch-limit` revisions at a time, pausing
//! between steps so that writes are never held for more than one step.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use oxetcd_storage::{Store, INDEX_STEP_KEYS};
use tracing::{error, info};

/// etcd's default for --experimental-compaction-batch-limit.
pub const DEFAULT_COMPACTION_BATCH_LIMIT: usize = 1000;
/// Between two steps: the write path runs freely (etcd waits 10 ms too).
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
    // When the compaction's work last went from none to some.
    let mut busy_since: Option<Instant> = None;
    loop {
        let Some(store) = store.upgrade() else { return };
        let pause = if !store.compaction_pending() {
            IDLE_POLL
        } else {
            let started = *busy_since.get_or_insert_with(Instant::now);
            match step(&store, batch_limit) {
                Ok(true) => BATCH_PAUSE,
                Ok(false) => {
                    busy_since = None;
                    info!(
                        took_ms = started.elapsed().as_millis() as u64,
                        "finished scheduled compaction"
                    );
                    IDLE_POLL
                }
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

/// One step: of the index pass while it is pending, else one batch of
/// deletions. Returns whether work is left.
fn step(store: &Store, batch_limit: usize) -> oxetcd_storage::Result<bool> {
    if store.compact_index_step(INDEX_STEP_KEYS) {
        return Ok(true);
    }
    Ok(store.remove_compacted(batch_limit)? > 0 || store.compaction_pending())
}
