//! Errors of the peer transport: [`PeerError`], what `Forward` / `ReadIndex`
//! return (it travels between members, so it is serializable), and the
//! transport's own errors, mapped onto openraft's [`RPCError`] for the Raft RPCs.

use std::time::Duration;

use openraft::error::{
    CheckIsLeaderError, ClientWriteError, Fatal, ForwardToLeader, NetworkError, RPCError,
    RaftError, Timeout, Unreachable,
};
use openraft::network::RPCTypes;
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use tonic::Code;

use crate::types::NodeId;

/// Why a `Forward` or `ReadIndex` to the leader failed, as the asking member
/// sees it: the leader's own refusals (sent back encoded) and the transport's
/// failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum PeerError {
    /// The member asked is not the leader. It names the leader it knows of,
    /// if any: retry there (or wait for an election when there is none).
    #[error("not the leader{}", leader_hint(.leader_id, .leader_node))]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_node: Option<BasicNode>,
    },
    /// The leader could not confirm its leadership with a quorum (ReadIndex).
    #[error("the leader could not reach a quorum: {0}")]
    NoQuorum(String),
    /// Raft has stopped on the member asked (shutting down, or a fatal
    /// storage error).
    #[error("raft stopped on the peer: {0}")]
    Stopped(String),
    /// The leader refused the request for another reason (e.g. a membership
    /// change it cannot make, or the server's own checks).
    #[error("{0}")]
    Rejected(String),
    /// The peer could not be reached: bad address, connection refused, TLS
    /// handshake failure. Nothing was delivered.
    #[error("peer {addr} unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    /// No answer in time. A forwarded command may or may not have been
    /// applied.
    #[error("peer {addr} did not answer within {timeout_ms} ms")]
    Timeout { addr: String, timeout_ms: u64 },
    /// The peer answered, but with a gRPC error or something this member
    /// cannot decode. A forwarded command may or may not have been applied.
    #[error("peer {addr}: {reason}")]
    Transport { addr: String, reason: String },
}

fn leader_hint(id: &Option<NodeId>, node: &Option<BasicNode>) -> String {
    match (id, node) {
        (Some(id), Some(node)) => format!(" (leader: {id:x} at {})", node.addr),
        (Some(id), None) => format!(" (leader: {id:x})"),
        _ => " (no leader known)".to_string(),
    }
}

impl PeerError {
    /// Whether the request surely did not take effect, so retrying it
    /// (possibly at another member) is safe even for a non-idempotent write.
    pub fn not_delivered(&self) -> bool {
        matches!(
            self,
            PeerError::NotLeader { .. } | PeerError::Unreachable { .. } | PeerError::NoQuorum(_)
        )
    }
}

impl From<ForwardToLeader<NodeId, BasicNode>> for PeerError {
    fn from(f: ForwardToLeader<NodeId, BasicNode>) -> Self {
        PeerError::NotLeader {
            leader_id: f.leader_id,
            leader_node: f.leader_node,
        }
    }
}

impl From<Fatal<NodeId>> for PeerError {
    fn from(f: Fatal<NodeId>) -> Self {
        PeerError::Stopped(f.to_string())
    }
}

/// What `Raft::client_write` fails with: what a [`LeaderDuties::forward`]
/// implementation returns with `?`.
///
/// [`LeaderDuties::forward`]: crate::network::LeaderDuties::forward
impl From<RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>> for PeerError {
    fn from(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => f.into(),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                PeerError::Rejected(e.to_string())
            }
            RaftError::Fatal(f) => f.into(),
        }
    }
}

/// What `Raft::ensure_linearizable` / `get_read_log_id` fail with: what a
/// [`LeaderDuties::read_index`] implementation returns with `?`.
///
/// [`LeaderDuties::read_index`]: crate::network::LeaderDuties::read_index
impl From<RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>> for PeerError {
    fn from(e: RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>) -> Self {
        match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => f.into(),
            RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
                PeerError::NoQuorum(q.to_string())
            }
            RaftError::Fatal(f) => f.into(),
        }
    }
}

/// A peer URL that cannot be dialed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid peer URL {url:?}: {reason}")]
pub struct AddrError {
    pub url: String,
    pub reason: String,
}

impl From<oxetcd_tls::UrlError> for AddrError {
    fn from(e: oxetcd_tls::UrlError) -> Self {
        AddrError {
            url: e.url,
            reason: e.reason,
        }
    }
}

/// A payload that cannot be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot {verb} {what}: {source}")]
pub(crate) struct CodecError {
    pub(crate) verb: &'static str,
    pub(crate) what: &'static str,
    #[source]
    pub(crate) source: postcard::Error,
}

/// How one call to a peer failed, before its answer was looked at.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error(transparent)]
    Addr(#[from] AddrError),
    #[error("gRPC error: {0}")]
    Status(#[from] tonic::Status),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("the peer sent an empty answer")]
    Empty,
    #[error("the peer answered another kind of call")]
    WrongReply,
}

impl CallError {
    /// Nothing reached the peer (as far as the transport can tell).
    fn unreachable(&self) -> bool {
        match self {
            CallError::Addr(_) => true,
            CallError::Status(s) => s.code() == Code::Unavailable,
            _ => false,
        }
    }

    fn timed_out(&self) -> Option<Duration> {
        match self {
            CallError::TimedOut(d) => Some(*d),
            _ => None,
        }
    }

    /// For openraft: `Unreachable` makes replication back off (see
    /// [`openraft::RaftNetwork::backoff`]), `Timeout` and `Network` are
    /// retried with the next heartbeat or replication round.
    pub(crate) fn into_rpc<E: std::error::Error>(
        self,
        action: RPCTypes,
        id: NodeId,
        target: NodeId,
    ) -> RPCError<NodeId, BasicNode, E> {
        if let Some(timeout) = self.timed_out() {
            return RPCError::Timeout(Timeout {
                action,
                id,
                target,
                timeout,
            });
        }
        if let CallError::Status(s) = &self {
            if s.code() == Code::DeadlineExceeded {
                return RPCError::Timeout(Timeout {
                    action,
                    id,
                    target,
                    timeout: Duration::ZERO,
                });
            }
        }
        if self.unreachable() {
            RPCError::Unreachable(Unreachable::new(&self))
        } else {
            RPCError::Network(NetworkError::new(&self))
        }
    }

    /// For `Forward` / `ReadIndex` callers.
    pub(crate) fn into_peer(self, addr: &str) -> PeerError {
        let addr = addr.to_string();
        if let Some(timeout) = self.timed_out() {
            return PeerError::Timeout {
                addr,
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            };
        }
        if self.unreachable() {
            PeerError::Unreachable {
                addr,
                reason: self.to_string(),
            }
        } else {
            PeerError::Transport {
                addr,
                reason: self.to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::error::QuorumNotEnough;
    use std::collections::BTreeSet;

    #[test]
    fn call_errors_map_onto_openraft() {
        let rpc = |e: CallError| e.into_rpc::<RaftError<NodeId>>(RPCTypes::Vote, 1, 2);
        assert!(matches!(
            rpc(CallError::Status(tonic::Status::unavailable("refused"))),
            RPCError::Unreachable(_)
        ));
        assert!(matches!(
            rpc(CallError::Addr(AddrError {
                url: "x".into(),
                reason: "bad".into()
            })),
            RPCError::Unreachable(_)
        ));
        match rpc(CallError::TimedOut(Duration::from_millis(50))) {
            RPCError::Timeout(t) => {
                assert_eq!(
                    (t.id, t.target, t.timeout),
                    (1, 2, Duration::from_millis(50))
                );
                assert_eq!(t.action, RPCTypes::Vote);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            rpc(CallError::Status(tonic::Status::deadline_exceeded("late"))),
            RPCError::Timeout(_)
        ));
        assert!(matches!(
            rpc(CallError::Status(tonic::Status::internal("boom"))),
            RPCError::Network(_)
        ));
        assert!(matches!(rpc(CallError::Empty), RPCError::Network(_)));
    }

    #[test]
    fn call_errors_map_onto_peer_errors() {
        let e = CallError::Status(tonic::Status::unavailable("refused")).into_peer("http://a");
        assert!(matches!(e, PeerError::Unreachable { .. }) && e.not_delivered());
        let e = CallError::TimedOut(Duration::from_secs(2)).into_peer("http://a");
        assert_eq!(
            e,
            PeerError::Timeout {
                addr: "http://a".into(),
                timeout_ms: 2000
            }
        );
        assert!(!e.not_delivered());
        let e = CallError::Status(tonic::Status::internal("x")).into_peer("http://a");
        assert!(matches!(e, PeerError::Transport { .. }));
    }

    #[test]
    fn raft_errors_become_peer_errors() {
        let node = BasicNode::new("http://127.0.0.1:2380");
        let e: PeerError = RaftError::<NodeId, ClientWriteError<NodeId, BasicNode>>::APIError(
            ForwardToLeader::new(7, node.clone()).into(),
        )
        .into();
        assert_eq!(
            e,
            PeerError::NotLeader {
                leader_id: Some(7),
                leader_node: Some(node)
            }
        );
        assert_eq!(
            e.to_string(),
            "not the leader (leader: 7 at http://127.0.0.1:2380)"
        );
        let e: PeerError =
            RaftError::<NodeId, ClientWriteError<NodeId, BasicNode>>::Fatal(Fatal::Stopped).into();
        assert_eq!(e, PeerError::Stopped("raft stopped".into()));
        let e: PeerError = RaftError::<NodeId, CheckIsLeaderError<NodeId, BasicNode>>::APIError(
            QuorumNotEnough {
                cluster: "{1,2,3}".into(),
                got: BTreeSet::from([1]),
            }
            .into(),
        )
        .into();
        assert!(matches!(e, PeerError::NoQuorum(_)));
        assert_eq!(
            PeerError::NotLeader {
                leader_id: None,
                leader_node: None
            }
            .to_string(),
            "not the leader (no leader known)"
        );
    }
}
