//! The leader's lease duties: promote the lessor once this member leads and
//! has applied everything before its term, demote it when leadership is
//! lost, propose the revocation of expired leases in bounded batches, and
//! (with --experimental-enable-lease-checkpoint) checkpoint remaining TTLs.

use std::sync::Arc;
use std::time::Duration;

use openraft::metrics::RaftServerMetrics;
use openraft::{BasicNode, ServerState};
use oxetcd_proto::etcdserverpb::{LeaseCheckpoint, LeaseCheckpointRequest};
use oxetcd_raft::NodeId;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, warn};

use crate::command::{ExpiredLeases, Request};
use crate::replication::Replication;

/// The longest the leader goes without looking at leadership and leases
/// (etcd looks every 500 ms); it also wakes when the next lease expires.
const EXPIRY_TICK: Duration = Duration::from_millis(500);
/// Leases revoked per log entry: bounds how long one entry holds the apply
/// path (each revocation is its own revision).
const EXPIRE_BATCH: usize = 256;
/// Revocation entries in flight at once.
const EXPIRE_IN_FLIGHT: usize = 8;
/// etcd's leaseCheckpointInterval and its batch bound.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(300);
const CHECKPOINT_BATCH: usize = 1000;

/// Runs for the life of the member.
pub async fn run_leader_duties(replication: Arc<Replication>, election_timeout: Duration) {
    let lessor = replication.lessor().clone();
    let mut metrics = replication.subscribe_role();
    let in_flight = Arc::new(Semaphore::new(EXPIRE_IN_FLIGHT));
    let mut promoted_term = None;
    let mut next_checkpoint = tokio::time::Instant::now() + CHECKPOINT_INTERVAL;
    loop {
        let tick = tokio::time::Instant::now() + EXPIRY_TICK;
        let wake = lessor.next_expiry().map_or(tick, |at| at.min(tick));
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            changed = metrics.changed() => if changed.is_err() { return },
        }
        let (leading, term) = {
            let m = metrics.borrow();
            (m.state == ServerState::Leader, m.vote.leader_id().term)
        };
        if !leading {
            if lessor.is_primary() {
                debug!("no longer the leader: leases stop expiring here");
                lessor.demote();
            }
            promoted_term = None;
            continue;
        }
        if promoted_term != Some(term) {
            // Leading in a new term, maybe without having seen the step-down
            // (role changes are watched, and Leader -> Follower -> Leader can
            // look like one): nothing decided under the old term may renew or
            // expire a lease now.
            if lessor.is_primary() {
                lessor.demote();
            }
            // Apply everything committed before this term first, so that every
            // lease granted so far is known before any expires or renews here.
            if replication.read_barrier().await.is_err() {
                continue;
            }
            if !leads_in(&metrics, term) {
                continue;
            }
            lessor.promote(election_timeout);
            promoted_term = Some(term);
            debug!(term, "leading: leases expire here from now");
        }
        loop {
            // A slot first, then the decision: waiting for a slot (while the
            // revocations in flight cannot commit) may outlast this term, and
            // leases taken before the wait would be revoked on stale grounds.
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            if !leads_in(&metrics, term) {
                // Back to the top: demote, or promote afresh in the new term.
                break;
            }
            let ids = lessor.take_expired(EXPIRE_BATCH);
            if ids.is_empty() {
                break;
            }
            let replication = replication.clone();
            tokio::spawn(async move {
                let _permit = permit;
                // Stamped with the deciding term: logged in any other term
                // (this task ran late), the entry revokes nothing.
                let request = Request::LeaseExpire(ExpiredLeases { ids, term });
                if let Err(e) = replication.propose_as_leader(request).await {
                    // Offered again after the retry interval if still leading.
                    debug!(error = %e, "revoking expired leases failed");
                }
            });
        }
        if lessor.checkpointing() && tokio::time::Instant::now() >= next_checkpoint {
            next_checkpoint = tokio::time::Instant::now() + CHECKPOINT_INTERVAL;
            let remaining = lessor.remaining_ttls(CHECKPOINT_INTERVAL);
            for batch in remaining.chunks(CHECKPOINT_BATCH) {
                let checkpoints = batch
                    .iter()
                    .map(|(id, ttl)| LeaseCheckpoint {
                        id: *id,
                        remaining_ttl: *ttl,
                    })
                    .collect();
                let request = Request::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints });
                if let Err(e) = replication.propose_as_leader(request).await {
                    warn!(error = %e, "checkpointing lease TTLs failed");
                    break;
                }
            }
        }
    }
}

/// Whether this member still leads, in `term`.
fn leads_in(metrics: &watch::Receiver<RaftServerMetrics<NodeId, BasicNode>>, term: u64) -> bool {
    let m = metrics.borrow();
    m.state == ServerState::Leader && m.vote.leader_id().term == term
}
