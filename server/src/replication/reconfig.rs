//! etcd's --strict-reconfig-check (on by default): the leader refuses a
//! membership change that would leave fewer started members than a quorum
//! ("not enough started members"), or that the members it has not been
//! connected to for a while could turn into a lost quorum ("unhealthy
//! cluster"), before anything is proposed. The rules are etcd 3.4's
//! (`mayAddMember`, `mayRemoveMember`, `mayPromoteMember` in
//! etcdserver/server.go and the `IsReadyTo*` counts of its RaftCluster).
//!
//! A member is started once it has published its attributes through the log
//! (etcd: it has a name); connected means every Raft RPC the leader sent it
//! for [`HEALTH_INTERVAL`] was answered. etcd runs the check on the member
//! that got the request, from its own connections; oxetcd's followers talk
//! to the leader only, so the leader runs it, on forwarded changes too.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{BasicNode, RaftMetrics};
use oxetcd_raft::{NodeId, PeerClient};
use oxetcd_storage::Store;
use prost::Message;

use super::Change;
use crate::command::MemberAttributes;
use crate::error::EtcdError;

/// How long a member must have been connected to count (etcd's
/// HealthInterval).
pub(super) const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// The check as the leader runs it, on the cluster as it is now.
pub(super) struct StrictCheck {
    enabled: bool,
    /// Where members' published attributes are.
    store: Arc<Store>,
    /// Since when each member has answered.
    peers: PeerClient,
}

impl StrictCheck {
    pub(super) fn new(enabled: bool, store: Arc<Store>, peers: PeerClient) -> StrictCheck {
        StrictCheck {
            enabled,
            store,
            peers,
        }
    }

    /// Ok when `change` may be proposed (always, with the check turned off).
    pub(super) fn check(
        &self,
        metrics: &RaftMetrics<NodeId, BasicNode>,
        change: &Change,
    ) -> Result<(), EtcdError> {
        // Only the leader knows the connections; on another member the
        // change is refused anyway, for not being the leader.
        if !self.enabled || metrics.current_leader != Some(metrics.id) {
            return Ok(());
        }
        let membership = metrics.membership_config.membership();
        let now = Instant::now();
        let voters: Vec<Voter> = membership
            .voter_ids()
            .map(|id| Voter {
                id,
                connected_for: if id == metrics.id {
                    Some(Duration::MAX)
                } else {
                    self.peers
                        .active_since(id)
                        .map(|since| now.saturating_duration_since(since))
                },
            })
            .collect();
        let view = View {
            voters,
            learners: membership.learner_ids().collect(),
            started: self.started()?,
            me: metrics.id,
        };
        view.check(change)
    }

    /// The members that have published their attributes.
    fn started(&self) -> Result<HashSet<NodeId>, EtcdError> {
        Ok(self
            .store
            .cluster_records("member/")?
            .into_iter()
            .filter_map(|(_, raw)| MemberAttributes::decode(raw).ok())
            .map(|m| m.member_id)
            .collect())
    }
}

/// A voter, and for how long the leader has been connected to it (None: not
/// now).
#[derive(Debug, Clone)]
struct Voter {
    id: NodeId,
    connected_for: Option<Duration>,
}

impl Voter {
    fn connected_long_enough(&self) -> bool {
        self.connected_for.is_some_and(|d| d >= HEALTH_INTERVAL)
    }
}

/// What the check looks at, apart from where it came from.
#[derive(Debug)]
struct View {
    voters: Vec<Voter>,
    learners: Vec<NodeId>,
    started: HashSet<NodeId>,
    /// The leader itself.
    me: NodeId,
}

impl View {
    fn check(&self, change: &Change) -> Result<(), EtcdError> {
        match change {
            Change::Add(add) => {
                if !add.is_learner && !self.ready_to_add_voter() {
                    return Err(EtcdError::NotEnoughStartedMembers);
                }
                if !self.voters.iter().all(Voter::connected_long_enough) {
                    return Err(EtcdError::Unhealthy);
                }
                Ok(())
            }
            Change::Remove(id) => self.may_remove(*id),
            Change::Promote(_) if !self.ready_to_promote() => {
                Err(EtcdError::NotEnoughStartedMembers)
            }
            Change::Promote(_) | Change::Update(_) => Ok(()),
        }
    }

    fn started_voters(&self, but: Option<NodeId>) -> impl Iterator<Item = &Voter> {
        self.voters
            .iter()
            .filter(move |v| Some(v.id) != but && self.started.contains(&v.id))
    }

    /// The new voter counts as a member, not as started; adding a second
    /// member to a one-member cluster is always allowed (restoring a
    /// cluster from one member's data).
    fn ready_to_add_voter(&self) -> bool {
        let members = self.voters.len() + 1;
        let started = self.started_voters(None).count();
        (started == 1 && members == 2) || started >= quorum(members)
    }

    /// The learner counts as a started voter.
    fn ready_to_promote(&self) -> bool {
        let members = self.voters.len() + 1;
        let started = self.started_voters(None).count() + 1;
        started >= quorum(members)
    }

    fn may_remove(&self, id: NodeId) -> Result<(), EtcdError> {
        // Learners hold no part of the quorum.
        if self.learners.contains(&id) {
            return Ok(());
        }
        let remaining = self.voters.iter().filter(|v| v.id != id).count();
        if self.started_voters(Some(id)).count() < quorum(remaining) {
            return Err(EtcdError::NotEnoughStartedMembers);
        }
        // A member the leader is not connected to is no part of the active
        // quorum: removing it is safe.
        let down = self
            .voters
            .iter()
            .find(|v| v.id == id)
            .is_none_or(|v| v.connected_for.is_none());
        if id != self.me && down {
            return Ok(());
        }
        let active = self
            .voters
            .iter()
            .filter(|v| v.connected_long_enough())
            .count();
        // etcd's count: the active members but the one removed must be a
        // majority of the voters now.
        if active.saturating_sub(1) < 1 + (self.voters.len() - 1) / 2 {
            return Err(EtcdError::Unhealthy);
        }
        Ok(())
    }
}

/// A majority of `members`.
fn quorum(members: usize) -> usize {
    members / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::AddMember;

    const LONG: Option<Duration> = Some(Duration::from_secs(60));
    const JUST_NOW: Option<Duration> = Some(Duration::from_secs(1));

    /// Members 1..=n, leader 1; `connected[i]` for member i + 1 (the leader
    /// is always connected), all started unless named in `unstarted`.
    fn view(connected: &[Option<Duration>], unstarted: &[NodeId]) -> View {
        let voters: Vec<Voter> = connected
            .iter()
            .enumerate()
            .map(|(i, c)| Voter {
                id: i as NodeId + 1,
                connected_for: if i == 0 { Some(Duration::MAX) } else { *c },
            })
            .collect();
        let started = voters
            .iter()
            .map(|v| v.id)
            .filter(|id| !unstarted.contains(id))
            .collect();
        View {
            voters,
            learners: vec![9],
            started,
            me: 1,
        }
    }

    fn add(is_learner: bool) -> Change {
        Change::Add(AddMember {
            peer_urls: vec!["http://127.0.0.1:9".into()],
            is_learner,
        })
    }

    fn refusal(result: Result<(), EtcdError>) -> Option<String> {
        result.err().map(|e| e.to_string())
    }

    const NOT_ENOUGH: Option<&str> =
        Some("etcdserver: re-configuration failed due to not enough started members");
    const UNHEALTHY: Option<&str> = Some("etcdserver: unhealthy cluster");

    #[test]
    fn adding_needs_every_voter_connected_for_a_while() {
        let healthy = view(&[LONG, LONG, LONG], &[]);
        assert_eq!(refusal(healthy.check(&add(false))), None);
        assert_eq!(refusal(healthy.check(&add(true))), None);
        let fresh = view(&[LONG, LONG, JUST_NOW], &[]);
        assert_eq!(refusal(fresh.check(&add(false))).as_deref(), UNHEALTHY);
        assert_eq!(refusal(fresh.check(&add(true))).as_deref(), UNHEALTHY);
        let down = view(&[LONG, None, LONG], &[]);
        assert_eq!(refusal(down.check(&add(true))).as_deref(), UNHEALTHY);
        // A single member is connected to everyone.
        assert_eq!(refusal(view(&[LONG], &[]).check(&add(false))), None);
    }

    #[test]
    fn adding_a_voter_needs_a_quorum_of_started_members_after_it() {
        // 3 + 1 members need 3 started.
        let two_started = view(&[LONG, LONG, LONG], &[3]);
        assert_eq!(
            refusal(two_started.check(&add(false))).as_deref(),
            NOT_ENOUGH
        );
        // A learner adds nothing to the quorum.
        assert_eq!(refusal(two_started.check(&add(true))), None);
        // 1 + 1: allowed, to restore a cluster from one member.
        assert_eq!(refusal(view(&[LONG], &[]).check(&add(false))), None);
        // 2 + 1 with one started: not.
        let half = view(&[LONG, LONG], &[2]);
        assert_eq!(refusal(half.check(&add(false))).as_deref(), NOT_ENOUGH);
    }

    #[test]
    fn removing_must_keep_an_active_quorum() {
        let healthy = view(&[LONG, LONG, LONG], &[]);
        assert_eq!(refusal(healthy.check(&Change::Remove(3))), None);
        assert_eq!(refusal(healthy.check(&Change::Remove(1))), None);
        // One voter down: removing another live one leaves 1 of 2 active.
        let one_down = view(&[LONG, LONG, None], &[]);
        assert_eq!(
            refusal(one_down.check(&Change::Remove(2))).as_deref(),
            UNHEALTHY
        );
        assert_eq!(
            refusal(one_down.check(&Change::Remove(1))).as_deref(),
            UNHEALTHY
        );
        // Removing the member that is down is always safe.
        assert_eq!(refusal(one_down.check(&Change::Remove(3))), None);
        // Connected, but only just: not yet part of the active count.
        let fresh = view(&[LONG, JUST_NOW, LONG], &[]);
        assert_eq!(
            refusal(fresh.check(&Change::Remove(3))).as_deref(),
            UNHEALTHY
        );
        // Learners never matter.
        assert_eq!(refusal(one_down.check(&Change::Remove(9))), None);
    }

    #[test]
    fn removing_must_leave_a_quorum_of_started_members() {
        // Of the 2 left after removing 3, only 1 started.
        let v = view(&[LONG, LONG, LONG], &[2]);
        assert_eq!(refusal(v.check(&Change::Remove(3))).as_deref(), NOT_ENOUGH);
        // Removing the unstarted one leaves 2 of 2.
        assert_eq!(refusal(v.check(&Change::Remove(2))), None);
    }

    #[test]
    fn promoting_counts_the_learner_as_started() {
        // 3 voters (1 started) + the learner: 2 of 4 started, 3 needed.
        let v = view(&[LONG, LONG, LONG], &[2, 3]);
        assert_eq!(refusal(v.check(&Change::Promote(9))).as_deref(), NOT_ENOUGH);
        let v = view(&[LONG, LONG, LONG], &[3]);
        assert_eq!(refusal(v.check(&Change::Promote(9))), None);
    }
}
