//! The request router: where each request runs, decided in one place.
//!
//! [`route`] is the one leader lookup: this member leads ([`Route::Here`]),
//! another member does ([`Route::Leader`]), or none is known
//! ([`Route::NoLeader`]). A write that runs here goes through the proposal
//! batcher (key writes) or straight to Raft (everything else); one for
//! another leader goes to it at once, encoded once, over the peer service's
//! `Forward`, without passing through this member's batcher or Raft. A
//! request that reached no leader was not proposed anywhere, so it comes back
//! to [`Replication::propose`], which tries again until etcd's request
//! timeout: clients see an election as a pause.
//!
//! ```text
//! propose(request) --route--> Here ----------> proposals / client_write --> apply --> result
//!                        \--> Leader(id) ----> Forward --> leader: write_here ------> Outcome
//!                        \--> NoLeader ------> back, retried after RETRY_PAUSE
//! ```

use bytes::Bytes;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft};
use oxetcd_raft::{NodeId, PeerError};
use prost::Message;

use super::proposals::{Proposals, WriteError};
use super::{membership, Replication, TypeConfig, REQUEST_TIMEOUT, RETRY_PAUSE};
use crate::command::{LogCommand, Outcome, Request, Response};
use crate::error::EtcdError;

/// What a follower asks the leader to do: the Forward RPC's payload. Log
/// commands and membership changes travel apart, so nothing but commands
/// ever reaches the log.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Forwarded {
    #[prost(oneof = "Forward", tags = "1, 2, 3, 4")]
    pub(super) what: Option<Forward>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub(super) enum Forward {
    /// A client's request, as an encoded [`Command`] (wire-compatible with
    /// the message): the leader decodes it once, into a buffer of its own.
    #[prost(bytes = "bytes", tag = "1")]
    Command(Bytes),
    #[prost(message, tag = "2")]
    Members(membership::MemberChange),
    /// Only the leader renews leases: a keep-alive a follower received.
    #[prost(message, tag = "3")]
    LeaseRenew(oxetcd_proto::etcdserverpb::LeaseKeepAliveRequest),
    /// Only the leader knows how long a lease has left.
    #[prost(message, tag = "4")]
    LeaseTimeToLive(oxetcd_proto::etcdserverpb::LeaseTimeToLiveRequest),
}

/// Where a request goes now.
pub(super) enum Route {
    Here,
    Leader(NodeId, BasicNode),
    NoLeader,
}

/// The one leader lookup: by Raft's view now. It reads Raft's server
/// metrics, which change with the role and the leader only (its full metrics
/// change with every write, and every request would contend with them).
pub(super) fn route(raft: &Raft<TypeConfig>) -> Route {
    let metrics = raft.server_metrics();
    let metrics = metrics.borrow();
    match metrics.current_leader {
        Some(leader) if leader == metrics.id => Route::Here,
        Some(leader) => match metrics.membership_config.membership().get_node(&leader) {
            Some(node) => Route::Leader(leader, node.clone()),
            None => Route::NoLeader,
        },
        None => Route::NoLeader,
    }
}

/// One try of a request: its answer, or the request back when it reached no
/// leader (not proposed anywhere: safe to try again).
enum Attempt {
    Done(Result<Response, EtcdError>),
    Retry(Request),
}

impl Replication {
    /// Applies `request` through the log, on whichever member leads; answers
    /// once this member's leader has applied it.
    pub async fn propose(&self, request: Request) -> Result<Response, EtcdError> {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        let mut request = request;
        loop {
            // A leader cut off from its quorum never commits: answer as etcd
            // does after its request timeout. The write may still commit later
            // (the client cannot know), as with etcd.
            let attempt = tokio::time::timeout_at(deadline, self.propose_once(request));
            match attempt.await {
                Err(_) => return Err(EtcdError::RequestTimedOut),
                Ok(Attempt::Done(result)) => return result,
                Ok(Attempt::Retry(back)) if tokio::time::Instant::now() < deadline => {
                    request = back;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Ok(Attempt::Retry(_)) => return Err(EtcdError::NoLeader),
            }
        }
    }

    async fn propose_once(&self, request: Request) -> Attempt {
        match route(&self.raft) {
            Route::Here => {
                // Refused while leadership moves away: by the next try the
                // new leader takes it. Counted until written, so the transfer
                // can wait for it.
                let Some(_admitted) = self.transfers.admit() else {
                    return Attempt::Retry(request);
                };
                match write_here(&self.raft, &self.proposals, request, None).await {
                    Ok(result) => Attempt::Done(result),
                    Err(back) => Attempt::Retry(back),
                }
            }
            Route::Leader(leader, node) => {
                // The request's oneof encoded alone is the Command holding it.
                let mut command = Vec::with_capacity(request.encoded_len());
                request.encode(&mut command);
                let forwarded = Forwarded {
                    what: Some(Forward::Command(Bytes::from(command))),
                };
                match self.forward(leader, &node, &forwarded).await {
                    Ok(answer) => Attempt::Done(decode_outcome(answer)),
                    Err(EtcdError::NoLeader) => Attempt::Retry(request),
                    Err(e) => Attempt::Done(Err(e)),
                }
            }
            Route::NoLeader => Attempt::Retry(request),
        }
    }

    /// Sends `forwarded` to the leader; its encoded answer.
    pub(super) async fn forward(
        &self,
        leader: NodeId,
        node: &BasicNode,
        forwarded: &Forwarded,
    ) -> Result<Bytes, EtcdError> {
        self.peers
            .forward(leader, node, forwarded.encode_to_vec().into())
            .await
            .map_err(peer_error)
    }

    /// Retries `attempt` while there is no leader to take it, all within etcd's
    /// request timeout: a request that met no leader was never delivered, so
    /// trying again is safe, and clients see an election as a pause.
    pub(super) async fn until_leader<T, F>(&self, attempt: impl Fn() -> F) -> Result<T, EtcdError>
    where
        F: std::future::Future<Output = Result<T, EtcdError>>,
    {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            let outcome = tokio::time::timeout_at(deadline, attempt())
                .await
                .unwrap_or(Err(EtcdError::RequestTimedOut));
            match outcome {
                Err(EtcdError::NoLeader) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                other => return other,
            }
        }
    }
}

/// Writes `request` through this member's log: key
/// writes with others that arrive together, anything else alone. The request
/// comes back when this member does not lead after all (Raft refused it
/// unproposed). `encoded`, when given, is the request's encoding, which its
/// fields share (a forwarded request): it is not encoded again.
pub(super) async fn write_here(
    raft: &Raft<TypeConfig>,
    proposals: &Proposals,
    request: Request,
    encoded: Option<Bytes>,
) -> Result<Result<Response, EtcdError>, Request> {
    let request = match request.into_key_write() {
        Ok(write) => {
            let written = match encoded {
                // A Command holding one key write is that write's encoding.
                Some(encoded) => proposals.write_compact(write, encoded).await,
                None => proposals.write(write).await,
            };
            return match written {
                Ok(result) => Ok(result),
                Err(WriteError::NotLeader(write)) => match write.into_request() {
                    Some(request) => Err(request),
                    None => Ok(Err(EtcdError::Storage("an empty key write".to_string()))),
                },
                Err(WriteError::Failed(why)) => Ok(Err(EtcdError::Storage(why))),
            };
        }
        Err(request) => request,
    };
    write_alone(raft, request).await
}

/// Writes `request` through this member's log as an entry of its own; the
/// request back when this member does not lead after all.
pub(super) async fn write_alone(
    raft: &Raft<TypeConfig>,
    request: Request,
) -> Result<Result<Response, EtcdError>, Request> {
    // Kept to take the request back if Raft refuses it unproposed.
    let command = LogCommand::from(request);
    match super::proposals::counted(1, raft.client_write(command.clone())).await {
        Ok(written) => Ok(written
            .data
            .0
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(EtcdError::Storage("a write got no result".to_string())))),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
            match command.into_command().request {
                Some(request) => Err(request),
                None => Ok(Err(EtcdError::NoLeader)),
            }
        }
        Err(e) => Ok(Err(EtcdError::Storage(e.to_string()))),
    }
}

fn decode_outcome(raw: Bytes) -> Result<Response, EtcdError> {
    Outcome::decode(raw)
        .map_err(|e| EtcdError::Storage(format!("undecodable apply result: {e}")))?
        .into_result()
}

pub(super) fn decode_error(e: prost::DecodeError) -> EtcdError {
    EtcdError::Storage(format!("undecodable message between members: {e}"))
}

pub(super) fn peer_error(e: PeerError) -> EtcdError {
    match e {
        // Not delivered, or the peer's Raft stopped: another try may find a
        // leader.
        PeerError::NotLeader { .. }
        | PeerError::NoQuorum(_)
        | PeerError::Unreachable { .. }
        | PeerError::Stopped(_) => EtcdError::NoLeader,
        // The leader may or may not have applied it: etcd's answer when a
        // request's outcome is unknown.
        PeerError::Timeout { .. } | PeerError::Transport { .. } => EtcdError::RequestTimedOut,
        other => EtcdError::Storage(other.to_string()),
    }
}
