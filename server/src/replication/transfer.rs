//! Leadership transfer, etcd's MoveLeader, which openraft 0.9 lacks.
//!
//! The leader does what etcd's raft does around MsgTimeoutNow:
//! 1. it holds back new writes (they wait, then go to the new leader), lets
//!    the writes already admitted finish, and stops campaigning itself;
//! 2. it waits until the target has its whole log, so that the target's vote
//!    request is not refused for a shorter log;
//! 3. it stops its heartbeats and asks the target to campaign at once (the
//!    `TimeoutNow` peer RPC);
//! 4. it waits until it sees the target lead, asking again once every
//!    follower's leader lease has run out if it still leads itself (once it
//!    stepped down, the target campaigns by its own timer: asking again would
//!    only split the vote), and gives up with etcd's error after the request
//!    timeout, or as soon as another member leads.
//!
//! Why the target wins: openraft's members refuse votes while their leader
//! lease lasts (`election_timeout_max` since they heard from the leader, or,
//! for the leader itself, since it was elected). In a three-member cluster
//! whose leader has led for longer than that, the old leader's vote is enough
//! and the first request wins. Otherwise (more members, or a leader elected
//! moments ago) the leases run out one `election_timeout_max` after the
//! heartbeats stop, and the second request, sent a heartbeat interval later,
//! wins: the followers themselves campaign only `election_timeout_min` after
//! their lease ran out, which is longer than a heartbeat interval (etcd
//! requires an election timeout of at least five heartbeats).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use openraft::{BasicNode, Raft, RaftMetrics};
use oxetcd_raft::NodeId;

use super::TypeConfig;
use tokio::time::Instant;
use tracing::{debug, info};

use super::{Replication, REQUEST_TIMEOUT};
use crate::error::EtcdError;

/// The state of transfers on this member.
pub(super) struct Transfers {
    /// One transfer at a time.
    running: tokio::sync::Mutex<()>,
    /// Writes are refused while this is set (see [`Transfers::admit`]).
    holding: AtomicBool,
    /// Writes admitted and not yet written: a transfer waits for them, or
    /// one appended after the target caught up would make its log the
    /// shorter one.
    in_flight: AtomicUsize,
}

impl Transfers {
    pub(super) fn new() -> Transfers {
        Transfers {
            running: tokio::sync::Mutex::new(()),
            holding: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Admits a write to this member's log, counted until the returned
    /// guard drops; None while this member, the leader, hands its leadership
    /// over: the write is then answered as if there were no leader, and
    /// retried.
    pub(super) fn admit(&self) -> Option<Admitted<'_>> {
        // Counted first, then checked (and the transfer sets the flag, then
        // reads the count): either the transfer sees this write, or this
        // write sees the transfer.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let admitted = Admitted(self);
        (!self.holding.load(Ordering::SeqCst)).then_some(admitted)
    }

    /// Waits until every admitted write is written (or `deadline`).
    async fn drain(&self, deadline: Instant) -> Result<(), EtcdError> {
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return Err(EtcdError::LeaderTransferTimeout);
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
        Ok(())
    }
}

/// How often [`Transfers::drain`] looks again.
const DRAIN_POLL: Duration = Duration::from_millis(1);

/// One admitted write (see [`Transfers::admit`]).
pub(super) struct Admitted<'a>(&'a Transfers);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// While alive: writes held back, no elections of our own, and heartbeats as
/// [`Hold::heartbeats`] last set them. Dropping it (the transfer done, failed
/// or abandoned) undoes all of it.
struct Hold<'a> {
    transfers: &'a Transfers,
    raft: &'a Raft<TypeConfig>,
}

impl<'a> Hold<'a> {
    fn start(transfers: &'a Transfers, raft: &'a Raft<TypeConfig>) -> Hold<'a> {
        transfers.holding.store(true, Ordering::SeqCst);
        raft.runtime_config().elect(false);
        Hold { transfers, raft }
    }

    fn heartbeats(&self, on: bool) {
        self.raft.runtime_config().heartbeat(on);
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.raft.runtime_config().elect(true);
        self.raft.runtime_config().heartbeat(true);
        self.transfers.holding.store(false, Ordering::SeqCst);
    }
}

/// How a wait for the transferee to lead ended.
enum Outcome {
    /// The transferee leads.
    Led,
    /// Another member leads: asking the transferee again would only disrupt
    /// it.
    Lost,
    /// Nothing settled yet.
    Pending,
}

impl Replication {
    /// Makes voter `target` the leader (etcd's MoveLeader). Only the leader
    /// can; a target that already leads is done at once, as in etcd.
    pub async fn move_leader(&self, target: NodeId) -> Result<(), EtcdError> {
        let _one_at_a_time = self.transfers.running.lock().await;
        let metrics = self.metrics();
        if metrics.current_leader != Some(metrics.id) {
            return Err(EtcdError::NotLeader);
        }
        let membership = metrics.membership_config.membership();
        // etcd refuses unknown members and learners alike.
        if !membership.voter_ids().any(|id| id == target) {
            return Err(EtcdError::BadLeaderTransferee);
        }
        if target == metrics.id {
            return Ok(());
        }
        let node = membership
            .get_node(&target)
            .cloned()
            .ok_or(EtcdError::BadLeaderTransferee)?;
        let config = self.raft.config();
        // Every lease has run out by then (see the module docs).
        let retry = Duration::from_millis(config.election_timeout_max + config.heartbeat_interval);
        let started = Instant::now();
        let deadline = started + REQUEST_TIMEOUT;
        info!(
            from = %format!("{:x}", metrics.id),
            to = %format!("{target:x}"),
            "leadership transfer starting"
        );
        let hold = Hold::start(&self.transfers, &self.raft);
        self.transfers.drain(deadline).await?;
        loop {
            if !caught_up(&self.metrics(), target) {
                // Followers waiting meanwhile must keep hearing from us, or
                // they would campaign themselves.
                hold.heartbeats(true);
                self.wait_caught_up(target, deadline).await?;
            }
            hold.heartbeats(false);
            let next_try = (Instant::now() + retry).min(deadline);
            if let Err(e) = self.peers.timeout_now(target, &node).await {
                debug!(error = %e, "asking the transferee to campaign");
            }
            match self.wait_for_transferee(target, next_try).await {
                Outcome::Led => {
                    info!(
                        to = %format!("{target:x}"),
                        took = ?started.elapsed(),
                        "leadership transfer finished"
                    );
                    return Ok(());
                }
                Outcome::Lost => return Err(EtcdError::LeaderTransferTimeout),
                Outcome::Pending if Instant::now() >= deadline => {
                    return Err(EtcdError::LeaderTransferTimeout)
                }
                // Still leading: the leases refused the target; ask again.
                Outcome::Pending if self.metrics().current_leader == Some(self.metrics().id) => {}
                // Stepped down: the target's campaign goes on by its own
                // timer; asking again would only split the vote.
                Outcome::Pending => {
                    return match self.wait_for_transferee(target, deadline).await {
                        Outcome::Led => Ok(()),
                        Outcome::Lost | Outcome::Pending => Err(EtcdError::LeaderTransferTimeout),
                    };
                }
            }
        }
    }

    /// Waits until `until` for a leader to be known other than this member.
    async fn wait_for_transferee(&self, target: NodeId, until: Instant) -> Outcome {
        let settled = self
            .raft
            .wait(Some(until.saturating_duration_since(Instant::now())))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != m.id),
                "a new leader",
            )
            .await;
        match settled {
            Ok(m) if m.current_leader == Some(target) => Outcome::Led,
            Ok(_) => Outcome::Lost,
            Err(_) => Outcome::Pending,
        }
    }

    /// Waits until [`caught_up`].
    async fn wait_caught_up(&self, target: NodeId, deadline: Instant) -> Result<(), EtcdError> {
        self.raft
            .wait(Some(deadline.saturating_duration_since(Instant::now())))
            .metrics(|m| caught_up(m, target), "the transferee to catch up")
            .await
            .map(|_| ())
            .map_err(|_| EtcdError::LeaderTransferTimeout)
    }
}

/// Whether `target` has every entry of this member's log, or this member no
/// longer leads (and there is nothing more to wait for).
fn caught_up(m: &RaftMetrics<NodeId, BasicNode>, target: NodeId) -> bool {
    let Some(replication) = &m.replication else {
        return true;
    };
    let matched = replication.get(&target).copied().flatten();
    matched.map(|l| l.index) == m.last_log_index
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId};
    use std::collections::BTreeMap;

    #[tokio::test]
    async fn writes_are_refused_while_held_and_drained_before_the_transfer() {
        let transfers = Transfers::new();
        let admitted = transfers.admit().expect("no transfer yet");
        transfers.holding.store(true, Ordering::SeqCst);
        assert!(transfers.admit().is_none(), "admitted during a transfer");
        // The write admitted before waits the transfer out.
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(matches!(
            transfers.drain(soon).await,
            Err(EtcdError::LeaderTransferTimeout)
        ));
        drop(admitted);
        transfers
            .drain(Instant::now() + Duration::from_secs(1))
            .await
            .expect("drained once the write is done");
        transfers.holding.store(false, Ordering::SeqCst);
        assert!(transfers.admit().is_some());
        assert_eq!(transfers.in_flight.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn the_target_is_caught_up_when_it_matches_the_last_entry() {
        let log_id = |index| LogId::new(CommittedLeaderId::new(1, 1), index);
        let mut m = RaftMetrics::<NodeId, BasicNode>::new_initial(1);
        // Not leading: nothing to wait for.
        assert!(caught_up(&m, 2));
        m.last_log_index = Some(10);
        m.replication = Some(BTreeMap::from([
            (2, Some(log_id(9))),
            (3, Some(log_id(10))),
        ]));
        assert!(!caught_up(&m, 2));
        assert!(caught_up(&m, 3));
        m.replication = Some(BTreeMap::from([(2, None)]));
        assert!(!caught_up(&m, 2));
    }
}
