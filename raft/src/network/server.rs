//! The server side: [`PeerService`], the tonic service the server mounts on
//! its peer listener.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::Raft;
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};

use super::cluster_tag::ClusterTag;
use super::error::PeerError;
use super::pb::raft_server::{Raft as RaftRpc, RaftServer};
use super::pb::{
    call, forward_response, hash_kv_answer, read_index_response, reply as stream_reply, Call,
    ForwardRequest, ForwardResponse, HashKvAnswer, HashKvAsk, KvHash, RaftMessage,
    ReadIndexResponse, Reply, SnapshotChunk, TimeoutNowRequest, TimeoutNowResponse,
};
use super::{decode, encode, DEFAULT_MAX_MESSAGE_BYTES};
use crate::types::{NodeId, Payload, Types};

/// What a member does for the other members besides Raft, implemented by the
/// server. `forward` and `read_index` only the leader does: they are called
/// on whichever member the asking follower believes is the leader, and an
/// implementation that is not the leader answers [`PeerError::NotLeader`]
/// (what `?` on openraft's `ForwardToLeader` gives). `hash_kv` every member
/// answers.
#[async_trait::async_trait]
pub trait LeaderDuties: Send + Sync + 'static {
    /// Answers a follower's request, in the server's own encoding (a
    /// client's write to propose, a membership change, a lease call), with
    /// its encoded result.
    async fn forward(&self, command: Bytes) -> Result<Bytes, PeerError>;

    /// Confirms leadership with a quorum and returns the log index a
    /// linearizable read must wait for: `Raft::get_read_log_id`'s, 0 for an
    /// empty log.
    async fn read_index(&self) -> Result<u64, PeerError>;

    /// This member's hash of its key-value history up to `revision` (0: its
    /// current revision), for another member's corruption check. A revision
    /// compacted away or not reached yet is refused with
    /// [`PeerError::Rejected`] carrying the store's error text.
    async fn hash_kv(&self, revision: i64) -> Result<KvHash, PeerError>;
}

/// The peer gRPC service (`oxetcdraftpb.Raft`) of one member: openraft's
/// RPCs go to its [`Raft`], `Forward` and the read-index asks of `Calls`
/// to its [`LeaderDuties`].
pub struct PeerService<P: Payload> {
    raft: Raft<Types<P>>,
    duties: Arc<dyn LeaderDuties>,
    max_message_bytes: usize,
    cluster: ClusterTag,
}

// A handle on the same Raft, whatever `P` is (derive would ask `P: Clone`).
impl<P: Payload> Clone for PeerService<P> {
    fn clone(&self) -> Self {
        PeerService {
            raft: self.raft.clone(),
            duties: Arc::clone(&self.duties),
            max_message_bytes: self.max_message_bytes,
            cluster: self.cluster.clone(),
        }
    }
}

impl<P: Payload> std::fmt::Debug for PeerService<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerService")
            .field("max_message_bytes", &self.max_message_bytes)
            .finish_non_exhaustive()
    }
}

impl<P: Payload> PeerService<P> {
    /// The service of the member running `raft`.
    pub fn new(raft: Raft<Types<P>>, duties: Arc<dyn LeaderDuties>) -> PeerService<P> {
        PeerService {
            raft,
            duties,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            cluster: ClusterTag::default(),
        }
    }

    /// Refuse requests from members of another cluster (see
    /// [`ClusterTag`]); the same tag as the network's
    /// [`NetworkOptions::cluster`](super::NetworkOptions::cluster).
    pub fn with_cluster(mut self, cluster: ClusterTag) -> PeerService<P> {
        self.cluster = cluster;
        self
    }

    /// The largest message accepted or sent (default
    /// [`DEFAULT_MAX_MESSAGE_BYTES`]); keep it equal to the clients'
    /// [`NetworkOptions::max_message_bytes`].
    ///
    /// [`DEFAULT_MAX_MESSAGE_BYTES`]: super::DEFAULT_MAX_MESSAGE_BYTES
    /// [`NetworkOptions::max_message_bytes`]: super::NetworkOptions::max_message_bytes
    pub fn with_max_message_bytes(mut self, bytes: usize) -> PeerService<P> {
        self.max_message_bytes = bytes;
        self
    }

    /// The tonic service, for `Server::builder().add_service(..)` (or an
    /// interceptor around it).
    pub fn into_server(self) -> RaftServer<PeerService<P>> {
        let max = self.max_message_bytes;
        RaftServer::new(self)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }
}

fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

/// openraft's result, encoded.
fn encode_reply<T: Serialize>(result: &T) -> Result<Bytes, Status> {
    encode(result, "reply").map_err(|e| Status::internal(e.to_string()))
}

/// openraft's result, encoded, as a unary call's response.
fn reply<T: Serialize>(result: &T) -> Result<Response<RaftMessage>, Status> {
    let payload = encode_reply(result)?;
    Ok(Response::new(RaftMessage { payload }))
}

fn encode_error(e: &PeerError) -> Result<Bytes, Status> {
    encode(e, "PeerError").map_err(|e| Status::internal(e.to_string()))
}

/// How many calls of one `Calls` stream are answered at once; more wait in
/// the stream (HTTP/2 flow control holds the caller back). A leader sends one
/// append-entries at a time per follower, plus a heartbeat per read-index
/// round; a follower batches its reads into one ask per round.
const CALLS_IN_FLIGHT: usize = 64;

/// The leader's answer to one read-index ask.
async fn answer_read_index(duties: &dyn LeaderDuties) -> Result<ReadIndexResponse, Status> {
    let result = match duties.read_index().await {
        Ok(index) => read_index_response::Result::Index(index),
        Err(e) => read_index_response::Result::Error(encode_error(&e)?),
    };
    Ok(ReadIndexResponse {
        result: Some(result),
    })
}

impl<P: Payload> PeerService<P> {
    /// openraft's answer to an encoded append-entries, encoded.
    async fn append(&self, payload: &[u8]) -> Result<Bytes, Status> {
        let rpc: AppendEntriesRequest<Types<P>> =
            decode(payload, "AppendEntriesRequest").map_err(invalid)?;
        encode_reply(&self.raft.append_entries(rpc).await)
    }

    /// The reply to one call of a `Calls` stream. An error ends the stream.
    async fn answer(&self, call: Call) -> Result<Reply, Status> {
        let kind = match call.kind {
            Some(call::Kind::ReadIndex(_)) => {
                stream_reply::Kind::ReadIndex(answer_read_index(&*self.duties).await?)
            }
            Some(call::Kind::AppendEntries(payload)) => {
                stream_reply::Kind::AppendEntries(self.append(&payload).await?)
            }
            None => return Err(Status::invalid_argument("a call without a kind")),
        };
        Ok(Reply {
            id: call.id,
            kind: Some(kind),
        })
    }
}

type Replies = Pin<Box<dyn Stream<Item = Result<Reply, Status>> + Send>>;

#[tonic::async_trait]
impl<P: Payload> RaftRpc for PeerService<P> {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.cluster.check(&request)?;
        let payload = self.append(&request.get_ref().payload).await?;
        Ok(Response::new(RaftMessage { payload }))
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.cluster.check(&request)?;
        let rpc: VoteRequest<NodeId> =
            decode(&request.get_ref().payload, "VoteRequest").map_err(invalid)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<SnapshotChunk>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.cluster.check(&request)?;
        let chunk = request.into_inner();
        let mut rpc: InstallSnapshotRequest<Types<P>> =
            decode(&chunk.payload, "InstallSnapshotRequest").map_err(invalid)?;
        rpc.data = Vec::from(chunk.data);
        reply(&self.raft.install_snapshot(rpc).await)
    }

    async fn forward(
        &self,
        request: Request<ForwardRequest>,
    ) -> Result<Response<ForwardResponse>, Status> {
        self.cluster.check(&request)?;
        let command = request.into_inner().command;
        let result = match self.duties.forward(command).await {
            Ok(response) => forward_response::Result::Response(response),
            Err(e) => forward_response::Result::Error(encode_error(&e)?),
        };
        Ok(Response::new(ForwardResponse {
            result: Some(result),
        }))
    }

    type CallsStream = Replies;

    async fn calls(&self, request: Request<Streaming<Call>>) -> Result<Response<Replies>, Status> {
        self.cluster.check(&request)?;
        let service = self.clone();
        // The stream ends when this member's Raft stops, so that callers
        // drop it and reach whatever serves this address next (a member
        // stopping gracefully would otherwise keep its connection, and
        // answer "stopped", as long as the stream stays open). The server
        // metrics' sender goes away with Raft's core; they change only with
        // the vote, role or membership, where `metrics()` changes with every
        // write and would wake every stream each time.
        let mut server_metrics = self.raft.server_metrics();
        let stopped = async move { while server_metrics.changed().await.is_ok() {} };
        // The replies are computed inside the response stream, which hyper
        // polls in the stream's own task: no task or channel per call.
        let replies = request
            .into_inner()
            .map(move |call| {
                let service = service.clone();
                async move { service.answer(call?).await }
            })
            .buffer_unordered(CALLS_IN_FLIGHT)
            .take_until(stopped);
        Ok(Response::new(Box::pin(replies)))
    }

    async fn timeout_now(
        &self,
        request: Request<TimeoutNowRequest>,
    ) -> Result<Response<TimeoutNowResponse>, Status> {
        self.cluster.check(&request)?;
        // openraft ignores the trigger on a leader and on a learner.
        let error = match self.raft.trigger().elect().await {
            Ok(()) => Bytes::new(),
            Err(fatal) => encode_error(&PeerError::from(fatal))?,
        };
        Ok(Response::new(TimeoutNowResponse { error }))
    }

    async fn hash_kv(&self, request: Request<HashKvAsk>) -> Result<Response<HashKvAnswer>, Status> {
        self.cluster.check(&request)?;
        let result = match self.duties.hash_kv(request.get_ref().revision).await {
            Ok(hash) => hash_kv_answer::Result::Hash(hash),
            Err(e) => hash_kv_answer::Result::Error(encode_error(&e)?),
        };
        Ok(Response::new(HashKvAnswer {
            result: Some(result),
        }))
    }
}
