//! The peer transport: how members talk to each other, over gRPC on the peer
//! URLs.
//!
//! - [`PeerService`]: the server side, the tonic service `oxetcdraftpb.Raft`
//!   (`proto/peer.proto`). It hands openraft's RPCs (`AppendEntries`, `Vote`,
//!   `InstallSnapshot`, one chunk per call) to the local [`openraft::Raft`],
//!   and the two leader duties (`Forward`, and a follower's read-index asks)
//!   to the server's [`LeaderDuties`]; `TimeoutNow` makes the member campaign
//!   at once (the last step of a leadership transfer); `HashKV` answers
//!   another member's corruption check with [`LeaderDuties::hash_kv`]
//!   (etcd's `/members/hashkv` on its peer URLs). `Calls` is one
//!   standing stream per pair of members for the small, frequent calls:
//!   read-index asks and append-entries up to 64 KiB (heartbeats included). The server mounts
//!   [`PeerService::into_server`] on its peer listener, which it binds (with
//!   TLS) itself.
//! - [`Network`]: the client side, openraft's `RaftNetworkFactory`. One lazily
//!   connected tonic channel (one HTTP/2 connection) per peer, shared by
//!   replication, votes, snapshots and the [`PeerClient`] calls to the leader.
//!
//! # Wire format
//! openraft's request and response types are serialized with [postcard] into
//! the messages' `bytes payload`; a snapshot chunk's data travels beside the
//! payload as raw bytes. postcard is compact (varint integers, length-prefixed
//! bytes), has a documented, stable wire format, and is maintained. It is not
//! self-describing: both ends must run the same openraft version.
//!
//! # Errors
//! Transport failures reach openraft as [`openraft::error::RPCError`]s:
//! `Unreachable` when nothing reached the peer (connection refused, TLS
//! handshake failed, bad URL; replication then backs off for
//! [`NetworkOptions::unreachable_backoff`]), `Timeout` when no answer came
//! within the [`openraft::network::RPCOption`]'s TTL, `Network` for anything
//! else (retried with the next heartbeat), `PayloadTooLarge` when an
//! append-entries batch exceeds [`NetworkOptions::max_message_bytes`] (openraft
//! then sends fewer entries per call), and `RemoteError` with the peer's own
//! openraft error. `Forward` and `ReadIndex` fail with a [`PeerError`].
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use oxetcd_raft::network::{KvHash, LeaderDuties, Network, PeerError, PeerService};
//! use oxetcd_raft::{Request, TypeConfig};
//!
//! struct Duties(openraft::Raft<TypeConfig>);
//!
//! #[async_trait::async_trait]
//! impl LeaderDuties for Duties {
//!     async fn forward(&self, command: Bytes) -> Result<Bytes, PeerError> {
//!         Ok(self.0.client_write(Request(command)).await?.data.0)
//!     }
//!     async fn read_index(&self) -> Result<u64, PeerError> {
//!         let (read, _applied) = self.0.get_read_log_id().await?;
//!         Ok(read.map_or(0, |id| id.index))
//!     }
//!     async fn hash_kv(&self, _revision: i64) -> Result<KvHash, PeerError> {
//!         Err(PeerError::Rejected("this example keeps no key-value history".into()))
//!     }
//! }
//!
//! # async fn run(raft: openraft::Raft<TypeConfig>, listener: tokio::net::TcpListener)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! // `Network::new(my_id, tls)` is what `openraft::Raft::new` took as network.
//! let service = PeerService::new(raft.clone(), Arc::new(Duties(raft)));
//! tonic::transport::Server::builder()
//!     .add_service(service.into_server())
//!     .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
//!     .await?;
//! # Ok(()) }
//! ```

mod call_stream;
mod client;
mod cluster_tag;
mod error;
mod server;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use client::{Network, NetworkOptions, PeerClient, PeerConnection};
pub use cluster_tag::ClusterTag;
pub use error::{AddrError, PeerError};
pub use pb::raft_server::RaftServer;
pub use pb::KvHash;
pub use server::{LeaderDuties, PeerService};

use error::CodecError;

/// The generated protobuf messages and gRPC stubs of `proto/peer.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("oxetcdraftpb");
}

/// The largest message either side sends or accepts by default: 64 MiB.
/// Append-entries batches above it are split (see the module docs); a single
/// entry is bounded far below by the server's request size limit.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

fn encode<T: Serialize>(value: &T, what: &'static str) -> Result<Bytes, CodecError> {
    postcard::to_stdvec(value)
        .map(Bytes::from)
        .map_err(|source| CodecError {
            verb: "encode",
            what,
            source,
        })
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, CodecError> {
    postcard::from_bytes(bytes).map_err(|source| CodecError {
        verb: "decode",
        what,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Entry, NodeId, Request, TypeConfig};
    use openraft::error::{InstallSnapshotError, RaftError, SnapshotMismatch};
    use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest};
    use openraft::{BasicNode, CommittedLeaderId, EntryPayload, LogId, Membership, Vote};
    use std::collections::{BTreeMap, BTreeSet};

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    #[test]
    fn openraft_messages_round_trip_through_postcard() {
        let members = BTreeMap::from([
            (1, BasicNode::new("https://127.0.0.1:2380")),
            (2, BasicNode::new("https://127.0.0.1:2381")),
        ]);
        let membership = Membership::new(vec![BTreeSet::from([1, 2])], members);
        let req = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(log_id(2, 9)),
            entries: vec![
                Entry {
                    log_id: log_id(3, 10),
                    payload: EntryPayload::Normal(Request::from(vec![7u8; 100])),
                },
                Entry {
                    log_id: log_id(3, 11),
                    payload: EntryPayload::Membership(membership),
                },
                Entry {
                    log_id: log_id(3, 12),
                    payload: EntryPayload::Blank,
                },
            ],
            leader_commit: Some(log_id(3, 10)),
        };
        let bytes = encode(&req, "req").unwrap();
        // Compact: the 100 request bytes plus little framing.
        assert!(bytes.len() < 220, "{} bytes", bytes.len());
        let back: AppendEntriesRequest<TypeConfig> = decode(&bytes, "req").unwrap();
        // (No PartialEq on the request; its Debug shows every field.)
        assert_eq!(format!("{back:?}"), format!("{req:?}"));
        match &back.entries[0].payload {
            EntryPayload::Normal(r) => assert_eq!(r.bytes().as_ref(), &[7u8; 100]),
            other => panic!("{other:?}"),
        }

        let vote = VoteRequest::new(Vote::new(4, 2), Some(log_id(3, 12)));
        let back: VoteRequest<NodeId> = decode(&encode(&vote, "v").unwrap(), "v").unwrap();
        assert_eq!(back, vote);

        type Reply = Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>;
        for reply in [
            Ok(AppendEntriesResponse::Success),
            Ok(AppendEntriesResponse::PartialSuccess(Some(log_id(3, 11)))),
            Ok(AppendEntriesResponse::Conflict),
            Ok(AppendEntriesResponse::HigherVote(Vote::new(5, 3))),
            Err(RaftError::Fatal(openraft::error::Fatal::Stopped)),
        ] {
            let back: Reply = decode(&encode(&reply, "r").unwrap(), "r").unwrap();
            assert_eq!(back, reply);
        }

        let err: Result<(), RaftError<NodeId, InstallSnapshotError>> = Err(RaftError::APIError(
            InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
                expect: openraft::SnapshotSegmentId {
                    id: "a".into(),
                    offset: 0,
                },
                got: openraft::SnapshotSegmentId {
                    id: "b".into(),
                    offset: 9,
                },
            }),
        ));
        let back: Result<(), RaftError<NodeId, InstallSnapshotError>> =
            decode(&encode(&err, "e").unwrap(), "e").unwrap();
        assert_eq!(back, err);
    }

    #[test]
    fn peer_errors_round_trip_through_postcard() {
        for e in [
            PeerError::NotLeader {
                leader_id: Some(0x8e9e05c52164694d),
                leader_node: Some(BasicNode::new("http://127.0.0.1:2380")),
            },
            PeerError::NotLeader {
                leader_id: None,
                leader_node: None,
            },
            PeerError::NoQuorum("q".into()),
            PeerError::Rejected("r".into()),
            PeerError::Timeout {
                addr: "a".into(),
                timeout_ms: 5,
            },
        ] {
            let back: PeerError = decode(&encode(&e, "e").unwrap(), "e").unwrap();
            assert_eq!(back, e);
        }
        assert!(decode::<PeerError>(&[0xff, 0xff], "e").is_err());
    }
}
