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
    forward_response, read_index_response, ForwardRequest, ForwardResponse, RaftMessage,
    ReadIndexAnswer, ReadIndexAsk, ReadIndexResponse, SnapshotChunk, TimeoutNowRequest,
    TimeoutNowResponse,
};
use super::{decode, encode, DEFAULT_MAX_MESSAGE_BYTES};
use crate::types::{NodeId, TypeConfig};

/// What only the leader does for the other members, implemented by the
/// server. Called on whichever member the asking follower believes is the
/// leader: an implementation that is not the leader answers
/// [`PeerError::NotLeader`] (what `?` on openraft's `ForwardToLeader` gives).
#[async_trait::async_trait]
pub trait LeaderDuties: Send + Sync + 'static {
    /// Proposes an encoded command (a follower's client's write) and returns
    /// the encoded response once it is applied: `Raft::client_write`.
    async fn forward(&self, command: Bytes) -> Result<Bytes, PeerError>;

    /// Confirms leadership with a quorum and returns the log index a
    /// linearizable read must wait for: `Raft::get_read_log_id`'s, 0 for an
    /// empty log.
    async fn read_index(&self) -> Result<u64, PeerError>;
}

/// The peer gRPC service (`oxetcdraftpb.Raft`) of one member: openraft's
/// RPCs go to its [`Raft`], `Forward` and `ReadIndexStream` to its
/// [`LeaderDuties`].
#[derive(Clone)]
pub struct PeerService {
    raft: Raft<TypeConfig>,
    duties: Arc<dyn LeaderDuties>,
    max_message_bytes: usize,
    cluster: ClusterTag,
}

impl std::fmt::Debug for PeerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerService")
            .field("max_message_bytes", &self.max_message_bytes)
            .finish_non_exhaustive()
    }
}

impl PeerService {
    /// The service of the member running `raft`.
    pub fn new(raft: Raft<TypeConfig>, duties: Arc<dyn LeaderDuties>) -> PeerService {
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
    pub fn with_cluster(mut self, cluster: ClusterTag) -> PeerService {
        self.cluster = cluster;
        self
    }

    /// The largest message accepted or sent (default
    /// [`DEFAULT_MAX_MESSAGE_BYTES`]); keep it equal to the clients'
    /// [`NetworkOptions::max_message_bytes`].
    ///
    /// [`DEFAULT_MAX_MESSAGE_BYTES`]: super::DEFAULT_MAX_MESSAGE_BYTES
    /// [`NetworkOptions::max_message_bytes`]: super::NetworkOptions::max_message_bytes
    pub fn with_max_message_bytes(mut self, bytes: usize) -> PeerService {
        self.max_message_bytes = bytes;
        self
    }

    /// The tonic service, for `Server::builder().add_service(..)` (or an
    /// interceptor around it).
    pub fn into_server(self) -> RaftServer<PeerService> {
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
fn reply<T: Serialize>(result: &T) -> Result<Response<RaftMessage>, Status> {
    let payload = encode(result, "reply").map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftMessage { payload }))
}

fn encode_error(e: &PeerError) -> Result<Bytes, Status> {
    encode(e, "PeerError").map_err(|e| Status::internal(e.to_string()))
}

/// How many asks of one read-index stream the leader answers at once; more
/// wait in the stream (HTTP/2 flow control holds the follower back). A
/// follower batches its reads into one ask per round, so it rarely has more
/// than one or two in flight.
const READ_ASKS_IN_FLIGHT: usize = 64;

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

type ReadIndexAnswers = Pin<Box<dyn Stream<Item = Result<ReadIndexAnswer, Status>> + Send>>;

#[tonic::async_trait]
impl RaftRpc for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.cluster.check(&request)?;
        let rpc: AppendEntriesRequest<TypeConfig> =
            decode(&request.get_ref().payload, "AppendEntriesRequest").map_err(invalid)?;
        reply(&self.raft.append_entries(rpc).await)
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
        let mut rpc: InstallSnapshotRequest<TypeConfig> =
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

    type ReadIndexStreamStream = ReadIndexAnswers;

    async fn read_index_stream(
        &self,
        request: Request<Streaming<ReadIndexAsk>>,
    ) -> Result<Response<ReadIndexAnswers>, Status> {
        self.cluster.check(&request)?;
        let duties = self.duties.clone();
        // The answers are computed inside the response stream, which hyper
        // polls in the stream's own task: no task or channel per ask.
        let answers = request
            .into_inner()
            .map(move |ask| {
                let duties = duties.clone();
                async move {
                    let ask = ask?;
                    Ok(ReadIndexAnswer {
                        id: ask.id,
                        response: Some(answer_read_index(&*duties).await?),
                    })
                }
            })
            .buffer_unordered(READ_ASKS_IN_FLIGHT);
        Ok(Response::new(Box::pin(answers)))
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
}
