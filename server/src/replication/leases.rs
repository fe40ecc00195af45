//! Lease requests only the leader can answer: a renewal or a time-to-live
//! that reaches a follower goes to the leader over the peer service, as in
//! etcd. Expiry and checkpoints are proposed only by a current leader: a
//! deposed one must not have its view of expiry forwarded to its successor.

use std::sync::Arc;

use bytes::Bytes;
use openraft::metrics::RaftServerMetrics;
use openraft::{BasicNode, Raft};
use oxetcd_proto::etcdserverpb::{
    LeaseCheckpoint, LeaseCheckpointRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use oxetcd_raft::{NodeId, PeerError};
use prost::Message;

use super::read_index::ReadIndexBatcher;
use super::router::{decode_error, route, write_alone, Forward, Forwarded, Route};
use super::transfer::Transfers;
use super::{Replication, TypeConfig, REQUEST_TIMEOUT};
use crate::command::{Request, Response};
use crate::error::EtcdError;
use crate::lease::{Lessor, Renewal, TimeToLive};

impl Replication {
    pub fn lessor(&self) -> &Arc<Lessor> {
        &self.lessor
    }

    /// This member's role and term, as they change (not at every write).
    pub fn subscribe_role(
        &self,
    ) -> tokio::sync::watch::Receiver<RaftServerMetrics<NodeId, BasicNode>> {
        self.raft.server_metrics()
    }

    /// Renews lease `id` on the leader; its TTL, 0 when there is no such
    /// lease (what a keep-alive answers).
    pub async fn lease_renew(&self, id: i64) -> Result<i64, EtcdError> {
        self.until_leader(|| async {
            match route(&self.raft) {
                Route::Here => match renew_here(
                    &self.raft,
                    &self.leadership,
                    &self.transfers,
                    &self.lessor,
                    id,
                )
                .await
                {
                    Err(EtcdError::LeaseNotFound) => Ok(0),
                    // Leader, but not yet caught up with the leases.
                    Err(EtcdError::NotLeader) => Err(EtcdError::NoLeader),
                    other => other,
                },
                Route::Leader(leader, node) => {
                    let forwarded = Forwarded {
                        what: Some(Forward::LeaseRenew(LeaseKeepAliveRequest { id })),
                    };
                    let answer = self.forward(leader, &node, &forwarded).await?;
                    Ok(LeaseKeepAliveResponse::decode(answer)
                        .map_err(decode_error)?
                        .ttl)
                }
                Route::NoLeader => Err(EtcdError::NoLeader),
            }
        })
        .await
    }

    /// Lease `req.id`'s remaining TTL as the leader sees it (-1: no such
    /// lease, as etcd answers).
    pub async fn lease_time_to_live(
        &self,
        req: &LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, EtcdError> {
        self.until_leader(|| async {
            match route(&self.raft) {
                Route::Here => {
                    match time_to_live_here(&self.raft, &self.leadership, &self.lessor, req).await {
                        Err(EtcdError::NotLeader) => Err(EtcdError::NoLeader),
                        other => Ok(time_to_live_response(req.id, other)),
                    }
                }
                Route::Leader(leader, node) => {
                    let forwarded = Forwarded {
                        what: Some(Forward::LeaseTimeToLive(*req)),
                    };
                    let answer = self.forward(leader, &node, &forwarded).await?;
                    LeaseTimeToLiveResponse::decode(answer).map_err(decode_error)
                }
                Route::NoLeader => Err(EtcdError::NoLeader),
            }
        })
        .await
    }

    /// Proposes `request` only if this member is the leader now.
    /// Refused (`NotLeader`) while leadership moves away: the lease duties
    /// retry on their next tick, on whichever member leads then.
    pub async fn propose_as_leader(&self, request: Request) -> Result<Response, EtcdError> {
        let Some(_admitted) = self.transfers.admit() else {
            return Err(EtcdError::NotLeader);
        };
        write_alone(&self.raft, request)
            .await
            .unwrap_or(Err(EtcdError::NotLeader))
    }
}

/// Fails with `NotLeader` unless a quorum still follows this member: a
/// deposed or cut-off leader would keep alive a lease the new leader
/// expires, or report a TTL the new leader no longer counts (found by the
/// Jepsen lease workload; etcd 3.5 confirms leadership here too).
/// Then it waits until it has applied what was committed before, so the
/// lessor has seen every grant and revocation a client may know of.
///
/// Renewals share confirmation rounds: one that arrives while a round is in
/// flight waits for the next, which starts after it arrived and answers
/// every renewal waiting (as linearizable reads do).
async fn confirm_leadership(
    raft: &Raft<TypeConfig>,
    leadership: &ReadIndexBatcher,
) -> Result<(), EtcdError> {
    let read = leadership
        .read_index()
        .await
        .map_err(|_| EtcdError::NotLeader)?;
    let applied = raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
    if read > applied {
        raft.wait(Some(REQUEST_TIMEOUT))
            .applied_index_at_least(Some(read), "lease read index")
            .await
            .map_err(|_| EtcdError::RequestTimedOut)?;
    }
    Ok(())
}

/// Renews on this member, the leader. A renewal clears a checkpointed
/// remaining TTL cluster-wide, or the next leader would resume from it.
pub(super) async fn renew_here(
    raft: &Raft<TypeConfig>,
    leadership: &ReadIndexBatcher,
    transfers: &Transfers,
    lessor: &Lessor,
    id: i64,
) -> Result<i64, EtcdError> {
    confirm_leadership(raft, leadership).await?;
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    let (ttl, clear_checkpoint) = loop {
        let mut changes = lessor.subscribe_changes();
        match lessor.renew(id)? {
            Renewal::Renewed {
                ttl,
                clear_checkpoint,
            } => break (ttl, clear_checkpoint),
            // Answer "not found" only once the keys are gone (or answer
            // "not leader" if demoted meanwhile): the next renew tells.
            Renewal::Expiring => tokio::time::timeout_at(deadline, changes.changed())
                .await
                .map_err(|_| EtcdError::RequestTimedOut)?
                .map_err(|_| EtcdError::NotLeader)?,
        }
    };
    if clear_checkpoint {
        // A proposal like any other write: not while leadership moves away.
        let Some(_admitted) = transfers.admit() else {
            return Err(EtcdError::NotLeader);
        };
        let clear = LeaseCheckpointRequest {
            checkpoints: vec![LeaseCheckpoint {
                id,
                remaining_ttl: 0,
            }],
        };
        write_alone(raft, Request::LeaseCheckpoint(clear))
            .await
            .unwrap_or(Err(EtcdError::NotLeader))?;
    }
    Ok(ttl)
}

/// Lease `req.id`'s remaining TTL on this member, the leader.
pub(super) async fn time_to_live_here(
    raft: &Raft<TypeConfig>,
    leadership: &ReadIndexBatcher,
    lessor: &Lessor,
    req: &LeaseTimeToLiveRequest,
) -> Result<TimeToLive, EtcdError> {
    confirm_leadership(raft, leadership).await?;
    lessor.time_to_live(req.id, req.keys)
}

/// The leader's answer to a forwarded renewal.
pub(super) fn encode_renewal(id: i64, renewed: Result<i64, EtcdError>) -> Result<Bytes, PeerError> {
    let ttl = match renewed {
        Ok(ttl) => ttl,
        Err(EtcdError::LeaseNotFound) => 0,
        Err(EtcdError::NotLeader) => return Err(not_ready()),
        Err(e) => return Err(PeerError::Rejected(e.to_string())),
    };
    let response = LeaseKeepAliveResponse {
        header: None,
        id,
        ttl,
    };
    Ok(response.encode_to_vec().into())
}

/// The leader's answer to a forwarded time-to-live.
pub(super) fn encode_time_to_live(
    id: i64,
    ttl: Result<TimeToLive, EtcdError>,
) -> Result<Bytes, PeerError> {
    if matches!(ttl, Err(EtcdError::NotLeader)) {
        return Err(not_ready());
    }
    Ok(time_to_live_response(id, ttl).encode_to_vec().into())
}

/// A leader whose lessor is not promoted yet: the asking member retries.
fn not_ready() -> PeerError {
    PeerError::NotLeader {
        leader_id: None,
        leader_node: None,
    }
}

fn time_to_live_response(id: i64, ttl: Result<TimeToLive, EtcdError>) -> LeaseTimeToLiveResponse {
    match ttl {
        Ok(t) => LeaseTimeToLiveResponse {
            header: None,
            id,
            ttl: t.remaining,
            granted_ttl: t.granted,
            keys: t.keys,
        },
        Err(_) => LeaseTimeToLiveResponse {
            header: None,
            id,
            ttl: -1,
            granted_ttl: 0,
            keys: Vec::new(),
        },
    }
}
