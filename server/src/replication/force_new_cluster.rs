//! --force-new-cluster: etcd's disaster recovery. A member whose peers are
//! gone for good restarts from its own data as a one-member cluster, keeping
//! its member ID, the cluster's ID and every key.
//!
//! As etcd does with its WAL, what the log holds as committed is kept and
//! what it holds beyond that is discarded. In order:
//!
//! 1. The entries committed but not applied yet (the store's durable point
//!    lags the log's) are applied to the store.
//! 2. The store's applied record names this member alone as the membership,
//!    and is flushed.
//! 3. The Raft log and snapshot are replaced by an empty log, purged up to
//!    the last applied entry, holding a vote of this member in the highest
//!    term seen: Raft then starts from the store, elects this member (the
//!    only voter) in a later term, and the log goes on from there.
//!
//! A crash in step 3 leaves the store as step 2 made it; starting again with
//! the flag finds the log empty and does step 3 again.

use std::path::Path;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use oxetcd_raft::{NodeId, PurgeGate, Vote, Wal, WalOptions};
use oxetcd_storage::Store;
use oxetcd_watch::WatchHub;
use tracing::{info, warn};

use super::{Companions, ReplicationError, StateMachine, DEFAULT_SLOW_APPLY};
use crate::command::LogCommand;
use crate::datadir::RaftPaths;
use crate::watchdog::{Watchdog, STUCK_WRITER};

fn failed(step: &str, e: impl std::fmt::Display) -> ReplicationError {
    ReplicationError::Raft(format!("--force-new-cluster: {step}: {e}"))
}

/// Makes the data at `paths` (the Raft log and snapshot) and in `store` a
/// one-member cluster of member `id`. Returns false when there is no data to
/// recover (a new member, which then bootstraps as usual).
pub async fn force_new_cluster(
    paths: &RaftPaths,
    store: &Arc<Store>,
    hub: &Arc<WatchHub>,
    companions: &Companions,
    id: NodeId,
) -> Result<bool, ReplicationError> {
    let wal_dir = &paths.wal;
    let snapshot_dir = &paths.snapshot;
    let wal: Wal<LogCommand> = Wal::open(wal_dir, WalOptions::default())?;
    if wal.log_state().1.is_none() && store.applied_state().is_none() {
        return Ok(false);
    }
    let watchdog = if store.writer_may_hang() {
        Some(
            Watchdog::start(STUCK_WRITER, |busy| {
                tracing::error!(
                    ?busy,
                    "applying the committed log before --force-new-cluster is stuck"
                );
                std::process::exit(1);
            })
            .map_err(|e| failed("watchdog", e))?,
        )
    } else {
        None
    };
    let durable =
        StateMachine::durable_applied(store).map_err(|e| failed("flushing the store", e))?;
    let mut sm = StateMachine::new(
        store.clone(),
        hub.clone(),
        companions.clone(),
        snapshot_dir.clone(),
        watchdog,
        PurgeGate::new(wal.clone(), durable),
        DEFAULT_SLOW_APPLY,
    )
    .map_err(|e| failed("opening the state machine", e))?;

    // 1. What was committed, applied.
    let (applied, _) = sm
        .applied_state()
        .await
        .map_err(|e| failed("reading the applied state", e))?;
    let committed = wal.committed();
    if committed > applied {
        let from = applied.map_or(0, |l| l.index + 1);
        let to = committed.map_or(0, |l| l.index);
        let entries = wal.entries(from..=to)?;
        info!(from, to, "applying the committed entries not applied yet");
        sm.apply(entries)
            .await
            .map_err(|e| failed("applying the committed log", e))?;
    }
    let (applied, membership) = sm
        .applied_state()
        .await
        .map_err(|e| failed("reading the applied state", e))?;
    let discarded = wal.log_state().1.map_or(0, |last| {
        last.index.saturating_sub(applied.map_or(0, |a| a.index))
    });
    if discarded > 0 {
        warn!(
            discarded,
            "discarding log entries that were not committed (as etcd's --force-new-cluster)"
        );
    }

    // 2. This member alone.
    let members = membership.membership();
    let Some(node) = members.get_node(&id).cloned() else {
        return Err(failed(
            "membership",
            format!(
                "member {id:x} is not a member of the cluster its data belongs to (members {:x?}): check --initial-advertise-peer-urls and --initial-cluster-token",
                members.nodes().map(|(m, _)| *m).collect::<Vec<_>>()
            ),
        ));
    };
    let removed: Vec<String> = members
        .nodes()
        .map(|(m, _)| *m)
        .filter(|m| *m != id)
        .map(|m| format!("{m:x}"))
        .collect();
    sm.force_single_member(id, node)
        .map_err(|e| failed("recording the membership", e))?;

    // 3. A fresh log from the store on.
    let term = [
        wal.vote().map(|v| v.leader_id().get_term()),
        applied.map(|a| a.leader_id.term),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0);
    drop(sm);
    drop(wal);
    // Emptied rather than removed: --wal-dir may be a mount point.
    for gone in [wal_dir, snapshot_dir] {
        empty_dir(gone).map_err(|e| failed(&format!("emptying {}", gone.display()), e))?;
    }
    let wal: Wal<LogCommand> = Wal::open(wal_dir, WalOptions::default())?;
    wal.save_vote(&Vote::new(term, id)).await?;
    if let Some(applied) = applied {
        wal.purge(applied).await?;
    }
    warn!(
        member = %format!("{id:x}"),
        removed = ?removed,
        term,
        "forced a new one-member cluster from this member's data (--force-new-cluster)"
    );
    Ok(true)
}

/// Removes everything in `dir` (nothing if it does not exist), keeping `dir`.
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}
