//! Membership changes as etcd's Cluster service asks for them, carried out by
//! the leader with openraft's joint consensus.
//!
//! - add: the new member joins as a learner at once; a voter is then promoted
//!   in the background, as etcd's MemberAdd returns before the new member has
//!   started (until it starts, the larger quorum waits for it, as in etcd);
//! - remove: a voter or a learner leaves entirely (removing the leader works:
//!   it steps down once the change commits);
//! - update: new peer URLs for a member;
//! - promote: a learner becomes a voter once it is nearly caught up.

use std::collections::{BTreeMap, BTreeSet};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft};
use oxetcd_raft::NodeId;

use super::TypeConfig;
use tracing::warn;

use crate::error::EtcdError;
use crate::ids;

/// A learner may be promoted once it holds this share of the leader's log.
const PROMOTABLE_SHARE: f64 = 0.9;

/// One change, as the Forward RPC carries it from a follower to the leader.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MemberChange {
    #[prost(oneof = "Change", tags = "1, 2, 3, 4")]
    pub change: Option<Change>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Change {
    #[prost(message, tag = "1")]
    Add(AddMember),
    #[prost(uint64, tag = "2")]
    Remove(u64),
    #[prost(message, tag = "3")]
    Update(UpdateMember),
    #[prost(uint64, tag = "4")]
    Promote(u64),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AddMember {
    #[prost(string, repeated, tag = "1")]
    pub peer_urls: Vec<String>,
    #[prost(bool, tag = "2")]
    pub is_learner: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateMember {
    #[prost(uint64, tag = "1")]
    pub member_id: u64,
    #[prost(string, repeated, tag = "2")]
    pub peer_urls: Vec<String>,
}

fn raft_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> EtcdError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => EtcdError::NoLeader,
        other => EtcdError::Reconfiguration(other.to_string()),
    }
}

/// Carries out `change` on this member, which must be the leader. Returns the
/// ID of the member changed.
pub async fn execute(
    raft: &Raft<TypeConfig>,
    cluster_token: &str,
    change: Change,
) -> Result<NodeId, EtcdError> {
    let metrics = raft.metrics().borrow().clone();
    if metrics.current_leader != Some(metrics.id) {
        return Err(EtcdError::NoLeader);
    }
    let membership = metrics.membership_config.membership();
    let nodes: BTreeMap<NodeId, BasicNode> =
        membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    match change {
        Change::Add(add) => {
            if add.peer_urls.is_empty() {
                return Err(EtcdError::BadMemberUrls);
            }
            let in_use = nodes.values().any(|n| {
                n.addr
                    .split(',')
                    .any(|u| add.peer_urls.iter().any(|p| p == u))
            });
            if in_use {
                return Err(EtcdError::PeerUrlExists);
            }
            let id = ids::member_id(&add.peer_urls, cluster_token);
            if nodes.contains_key(&id) {
                return Err(EtcdError::MemberExists);
            }
            raft.add_learner(id, BasicNode::new(add.peer_urls.join(",")), false)
                .await
                .map_err(raft_error)?;
            if !add.is_learner {
                let raft = raft.clone();
                tokio::spawn(async move {
                    if let Err(e) = raft
                        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
                        .await
                    {
                        warn!(member = %format!("{id:x}"), error = %e, "the new member stays a learner: promoting it failed");
                    }
                });
            }
            Ok(id)
        }
        Change::Remove(id) => {
            if !nodes.contains_key(&id) {
                return Err(EtcdError::MemberNotFound);
            }
            let change = if voters.contains(&id) {
                ChangeMembers::RemoveVoters(BTreeSet::from([id]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([id]))
            };
            raft.change_membership(change, false)
                .await
                .map_err(raft_error)?;
            Ok(id)
        }
        Change::Update(update) => {
            if !nodes.contains_key(&update.member_id) {
                return Err(EtcdError::MemberNotFound);
            }
            if update.peer_urls.is_empty() {
                return Err(EtcdError::BadMemberUrls);
            }
            let node = BasicNode::new(update.peer_urls.join(","));
            raft.change_membership(
                ChangeMembers::SetNodes(BTreeMap::from([(update.member_id, node)])),
                true,
            )
            .await
            .map_err(raft_error)?;
            Ok(update.member_id)
        }
        Change::Promote(id) => {
            if !nodes.contains_key(&id) {
                return Err(EtcdError::MemberNotFound);
            }
            if voters.contains(&id) {
                return Err(EtcdError::MemberNotLearner);
            }
            let last = metrics.last_log_index.unwrap_or(0);
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map_or(0, |l| l.index);
            if (matched as f64) < PROMOTABLE_SHARE * last as f64 {
                return Err(EtcdError::LearnerNotReady);
            }
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
                .await
                .map_err(raft_error)?;
            Ok(id)
        }
    }
}

/// The leader's answer to a forwarded change.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChangeOutcome {
    #[prost(uint64, tag = "1")]
    pub member_id: u64,
    /// `EtcdError::wire_code` of a refusal, 0 for success.
    #[prost(uint32, tag = "2")]
    pub refused: u32,
    #[prost(string, tag = "3")]
    pub message: String,
}

impl ChangeOutcome {
    pub fn from_result(result: Result<NodeId, EtcdError>) -> Self {
        match result {
            Ok(member_id) => Self {
                member_id,
                refused: 0,
                message: String::new(),
            },
            Err(e) => Self {
                member_id: 0,
                refused: e.wire_code(),
                message: e.detail(),
            },
        }
    }

    pub fn into_result(self) -> Result<NodeId, EtcdError> {
        match self.refused {
            0 => Ok(self.member_id),
            code => Err(EtcdError::from_wire(code, self.message)),
        }
    }
}
