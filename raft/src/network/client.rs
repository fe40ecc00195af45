//! The client side: openraft's network ([`Network`], [`PeerConnection`]) and
//! the calls to the leader ([`PeerClient`]), over one cached channel per peer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::error::{InstallSnapshotError, PayloadTooLarge, RPCError, RaftError, RemoteError};
use openraft::network::{Backoff, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use oxetcd_tls::{tls_connector, Dialer, Target, TlsConnector};
use parking_lot::Mutex;
use rustls::ClientConfig;
use tonic::transport::Channel;

use super::call_stream::CallStreams;
use super::cluster_tag::ClusterTag;
use super::error::{AddrError, CallError, PeerError};
use super::pb::raft_client::RaftClient;
use super::pb::{
    call, forward_response, hash_kv_answer, read_index_response, reply, ForwardRequest, HashKvAsk,
    KvHash, RaftMessage, ReadIndexAsk, SnapshotChunk, TimeoutNowRequest,
};
use super::{decode, encode, DEFAULT_MAX_MESSAGE_BYTES};
use crate::types::{NodeId, Payload, Types};

/// Settings of the client side. The defaults suit a LAN cluster.
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    /// How long establishing a connection (TCP and TLS) may take. Default 1 s.
    pub connect_timeout: Duration,
    /// The default timeout of [`PeerClient`] calls. Default 5 s (etcd's
    /// request timeout). Raft RPCs use openraft's own (from its config).
    pub request_timeout: Duration,
    /// HTTP/2 pings on idle connections, so a dead peer (a partition, a
    /// powered-off host) is noticed. Default 5 s.
    pub keepalive_interval: Duration,
    /// A ping not answered within this closes the connection. Default 5 s.
    pub keepalive_timeout: Duration,
    /// How long replication to a peer pauses after it was unreachable.
    /// Default 250 ms.
    pub unreachable_backoff: Duration,
    /// The largest message sent or accepted. Default
    /// [`DEFAULT_MAX_MESSAGE_BYTES`]; set the same on [`PeerService`].
    ///
    /// [`PeerService`]: super::PeerService
    pub max_message_bytes: usize,
    /// The cluster ID stamped on every request (see [`ClusterTag`]); share
    /// it with the [`PeerService`] and set it once known.
    ///
    /// [`PeerService`]: super::PeerService
    pub cluster: ClusterTag,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(5),
            unreachable_backoff: Duration::from_millis(250),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            cluster: ClusterTag::default(),
        }
    }
}

/// One peer's cached channel, for the address it was made for.
struct Peer {
    addr: String,
    client: Result<RaftClient<Channel>, AddrError>,
}

/// Since when each peer has answered every Raft RPC (etcd's transport
/// "active since"): what etcd's --strict-reconfig-check asks of the leader.
#[derive(Default)]
struct Activity(Mutex<HashMap<NodeId, Instant>>);

impl Activity {
    /// Records the outcome of one RPC: a peer that answered (even with an
    /// openraft error) stays active from its first answer on; a transport
    /// failure or timeout ends that.
    fn record(&self, target: NodeId, reached: bool) {
        let mut active = self.0.lock();
        if reached {
            active.entry(target).or_insert_with(Instant::now);
        } else {
            active.remove(&target);
        }
    }

    fn since(&self, target: NodeId) -> Option<Instant> {
        self.0.lock().get(&target).copied()
    }
}

struct Shared {
    id: NodeId,
    tls: Option<TlsConnector>,
    options: NetworkOptions,
    peers: Mutex<HashMap<NodeId, Peer>>,
    activity: Activity,
    calls: CallStreams,
}

impl Shared {
    /// A request with a deadline, stamped with this member's cluster ID.
    fn request<T>(&self, message: T, timeout: Duration) -> tonic::Request<T> {
        request(message, timeout, &self.options.cluster)
    }

    /// The client for `target` at `addr`: the cached one, or a new lazily
    /// connecting channel if there is none or the address changed. Cheap: a
    /// tonic client is a handle on the shared channel.
    fn client(&self, target: NodeId, addr: &str) -> Result<RaftClient<Channel>, AddrError> {
        let mut peers = self.peers.lock();
        if let Some(peer) = peers.get(&target) {
            if peer.addr == addr {
                return peer.client.clone();
            }
        }
        let client = self.connect(addr);
        peers.insert(
            target,
            Peer {
                addr: addr.to_string(),
                client: client.clone(),
            },
        );
        client
    }

    /// A call on the standing `Calls` stream to `target` at `addr` (see
    /// `call_stream.rs`).
    async fn stream_call(
        &self,
        target: NodeId,
        addr: &str,
        kind: call::Kind,
        timeout: Duration,
    ) -> Result<reply::Kind, CallError> {
        let client = || Ok(self.client(target, addr)?);
        let cluster = &self.options.cluster;
        self.calls
            .call(target, addr, client, cluster, kind, timeout)
            .await
    }

    /// A lazily connecting channel to a member's peer URLs (one or more,
    /// separated by commas, tried in order).
    fn connect(&self, addr: &str) -> Result<RaftClient<Channel>, AddrError> {
        let dialer = Dialer::new(Target::parse_list(addr)?, self.tls.clone());
        let endpoint = dialer
            .endpoint()?
            .connect_timeout(self.options.connect_timeout)
            .http2_keep_alive_interval(self.options.keepalive_interval)
            .keep_alive_timeout(self.options.keepalive_timeout)
            .keep_alive_while_idle(true)
            // Snapshots and large batches: let hyper size the flow-control
            // windows to the link.
            .http2_adaptive_window(true);
        let channel = endpoint.connect_with_connector_lazy(dialer);
        Ok(RaftClient::new(channel)
            .max_decoding_message_size(self.options.max_message_bytes)
            .max_encoding_message_size(self.options.max_message_bytes))
    }
}

/// openraft's network: connections to the other members. Cheap to clone;
/// clones share the channels.
#[derive(Clone)]
pub struct Network {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("id", &self.shared.id)
            .field("tls", &self.shared.tls.is_some())
            .field("options", &self.shared.options)
            .finish()
    }
}

impl Network {
    /// The network of member `id` (named in openraft's timeout errors).
    /// `tls` is used for `https://` and `unixs://` peers; if its ALPN list is
    /// empty, `h2` is offered.
    pub fn new(id: NodeId, tls: Option<Arc<ClientConfig>>) -> Network {
        Network::with_options(id, tls, NetworkOptions::default())
    }

    /// [`Network::new`] with other settings.
    pub fn with_options(
        id: NodeId,
        tls: Option<Arc<ClientConfig>>,
        options: NetworkOptions,
    ) -> Network {
        let tls = tls.map(tls_connector);
        Network {
            shared: Arc::new(Shared {
                id,
                tls,
                options,
                peers: Mutex::new(HashMap::new()),
                activity: Activity::default(),
                calls: CallStreams::default(),
            }),
        }
    }

    /// Calls to the leader, over the same channels.
    pub fn peer_client(&self) -> PeerClient {
        PeerClient {
            shared: self.shared.clone(),
            timeout: self.shared.options.request_timeout,
        }
    }

    /// Drops the channel to a member (removed from the cluster); its
    /// connection closes once no call uses it.
    pub fn forget(&self, target: NodeId) {
        self.shared.peers.lock().remove(&target);
        self.shared.calls.forget(target);
        self.shared.activity.record(target, false);
    }
}

impl<P: Payload> RaftNetworkFactory<Types<P>> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConnection {
        PeerConnection {
            shared: self.shared.clone(),
            id: self.shared.id,
            target,
            node: node.clone(),
            client: self.shared.client(target, &node.addr),
            max_message_bytes: self.shared.options.max_message_bytes,
            backoff: self.shared.options.unreachable_backoff,
            round_trip: oxetcd_metrics::network().peer_round_trip(target),
        }
    }
}

/// The largest append-entries payload sent on the `Calls` stream; larger ones
/// go as unary calls, so that a big batch (a follower catching up) does not
/// hold up the heartbeats behind it: a stream delivers its bytes in order, and
/// HTTP/2 flow control paces each stream on its own. 64 KiB is HTTP/2's
/// initial stream window, and a batch of a hundred small puts.
const STREAMED_APPEND_MAX_BYTES: usize = 64 << 10;

/// openraft's connection to one member (a handle on the shared channel).
pub struct PeerConnection {
    shared: Arc<Shared>,
    id: NodeId,
    target: NodeId,
    node: BasicNode,
    client: Result<RaftClient<Channel>, AddrError>,
    max_message_bytes: usize,
    backoff: Duration,
    /// etcd_network_peer_round_trip_time_seconds{To=target}: the round trips
    /// of heartbeats (append-entries without entries, which the peer answers
    /// without touching its disk: what etcd's probes measure).
    round_trip: oxetcd_metrics::Histogram,
}

impl std::fmt::Debug for PeerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConnection")
            .field("id", &self.id)
            .field("target", &self.target)
            .field("addr", &self.node.addr)
            .finish()
    }
}

fn request<T>(message: T, timeout: Duration, cluster: &ClusterTag) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    // Sent as grpc-timeout, so the peer gives up too.
    request.set_timeout(timeout);
    cluster.stamp(&mut request);
    request
}

/// Awaits a call for at most `timeout`.
async fn call<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(status.into()),
        Err(_) => Err(CallError::TimedOut(timeout)),
    }
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerConnection {
    fn client(&self) -> Result<RaftClient<Channel>, CallError> {
        Ok(self.client.clone()?)
    }

    /// Notes whether the peer answered the call: a gRPC error of the
    /// peer's own counts, a failed connection or a timeout does not.
    fn reached<T>(&self, reply: Result<T, CallError>) -> Result<T, CallError> {
        let reached = match &reply {
            Ok(_) => true,
            Err(CallError::Status(status)) => !matches!(
                status.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Cancelled
                    | tonic::Code::Unknown
            ),
            Err(_) => false,
        };
        self.shared.activity.record(self.target, reached);
        reply
    }

    fn fail<E: std::error::Error>(
        &self,
        action: RPCTypes,
        e: impl Into<CallError>,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        e.into().into_rpc(action, self.id, self.target)
    }

    /// The peer's answer: its openraft result, or its openraft error as a
    /// `RemoteError`. (The error type is what `RaftNetwork` returns.)
    #[allow(clippy::result_large_err)]
    fn answer<T, E>(&self, action: RPCTypes, payload: &[u8]) -> RpcResult<T, E>
    where
        T: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let result: Result<T, RaftError<NodeId, E>> =
            decode(payload, "reply").map_err(|e| self.fail(action, e))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl<P: Payload> RaftNetwork<Types<P>> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Types<P>>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        const ACTION: RPCTypes = RPCTypes::AppendEntries;
        let payload = encode(&rpc, "AppendEntriesRequest").map_err(|e| self.fail(ACTION, e))?;
        if payload.len() > self.max_message_bytes && rpc.entries.len() > 1 {
            // openraft retries at once with at most this many entries.
            let hint = (rpc.entries.len() / 2) as u64;
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        let ttl = option.hard_ttl();
        let reply = if payload.len() <= STREAMED_APPEND_MAX_BYTES {
            let kind = call::Kind::AppendEntries(payload);
            let addr = &self.node.addr;
            let sent = Instant::now();
            match self.shared.stream_call(self.target, addr, kind, ttl).await {
                Ok(reply::Kind::AppendEntries(payload)) => {
                    if rpc.entries.is_empty() {
                        self.round_trip.observe(sent.elapsed().as_secs_f64());
                    }
                    Ok(payload)
                }
                Ok(_) => Err(CallError::WrongReply),
                Err(e) => Err(e),
            }
        } else {
            let mut client = self.client().map_err(|e| self.fail(ACTION, e))?;
            let request = self.shared.request(RaftMessage { payload }, ttl);
            call(ttl, client.append_entries(request))
                .await
                .map(|reply| reply.payload)
        };
        let payload = self.reached(reply).map_err(|e| self.fail(ACTION, e))?;
        self.answer(ACTION, &payload)
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<Types<P>>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        const ACTION: RPCTypes = RPCTypes::InstallSnapshot;
        // The chunk goes as raw protobuf bytes, not as a serde sequence.
        let data = Bytes::from(std::mem::take(&mut rpc.data));
        let payload = encode(&rpc, "InstallSnapshotRequest").map_err(|e| self.fail(ACTION, e))?;
        let mut client = self.client().map_err(|e| self.fail(ACTION, e))?;
        let ttl = option.hard_ttl();
        let reply = call(
            ttl,
            client.install_snapshot(self.shared.request(SnapshotChunk { payload, data }, ttl)),
        )
        .await;
        let reply = self.reached(reply).map_err(|e| self.fail(ACTION, e))?;
        self.answer(ACTION, &reply.payload)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        const ACTION: RPCTypes = RPCTypes::Vote;
        let payload = encode(&rpc, "VoteRequest").map_err(|e| self.fail(ACTION, e))?;
        let mut client = self.client().map_err(|e| self.fail(ACTION, e))?;
        let ttl = option.hard_ttl();
        let reply = call(
            ttl,
            client.vote(self.shared.request(RaftMessage { payload }, ttl)),
        )
        .await;
        let reply = self.reached(reply).map_err(|e| self.fail(ACTION, e))?;
        self.answer(ACTION, &reply.payload)
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.backoff))
    }
}

/// A follower's calls to the leader: forwarding a write, asking for the read
/// index. Cheap to clone; shares the [`Network`]'s channels.
#[derive(Clone)]
pub struct PeerClient {
    shared: Arc<Shared>,
    timeout: Duration,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("id", &self.shared.id)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PeerClient {
    /// The same client with another timeout per call (default
    /// [`NetworkOptions::request_timeout`]).
    pub fn with_timeout(mut self, timeout: Duration) -> PeerClient {
        self.timeout = timeout;
        self
    }

    /// Hands a request of the server's (its own encoding: a write, a
    /// membership change, a lease call) to the leader `leader` at `node`,
    /// which answers with the encoded result.
    /// A [`PeerError::NotLeader`] names the leader to try instead.
    pub async fn forward(
        &self,
        leader: NodeId,
        node: &BasicNode,
        command: Bytes,
    ) -> Result<Bytes, PeerError> {
        let peer_err = |e: CallError| e.into_peer(&node.addr);
        let mut client = self
            .shared
            .client(leader, &node.addr)
            .map_err(|e| peer_err(e.into()))?;
        let reply = call(
            self.timeout,
            client.forward(
                self.shared
                    .request(ForwardRequest { command }, self.timeout),
            ),
        )
        .await
        .map_err(peer_err)?;
        match reply.result {
            Some(forward_response::Result::Response(response)) => Ok(response),
            Some(forward_response::Result::Error(e)) => Err(decode_peer_error(&e, &node.addr)),
            None => Err(peer_err(CallError::Empty)),
        }
    }

    /// Asks the leader `leader` at `node` to confirm its leadership and
    /// return the index a linearizable read must wait for (to be applied
    /// locally before reading). Asks travel on the standing `Calls` stream
    /// to the leader (see `call_stream.rs`).
    pub async fn read_index(&self, leader: NodeId, node: &BasicNode) -> Result<u64, PeerError> {
        let peer_err = |e: CallError| e.into_peer(&node.addr);
        let kind = call::Kind::ReadIndex(ReadIndexAsk {});
        let reply = self
            .shared
            .stream_call(leader, &node.addr, kind, self.timeout)
            .await
            .map_err(peer_err)?;
        let reply::Kind::ReadIndex(reply) = reply else {
            return Err(peer_err(CallError::WrongReply));
        };
        match reply.result {
            Some(read_index_response::Result::Index(index)) => Ok(index),
            Some(read_index_response::Result::Error(e)) => Err(decode_peer_error(&e, &node.addr)),
            None => Err(peer_err(CallError::Empty)),
        }
    }

    /// Since when member `target` has answered every Raft RPC of this member
    /// (so far only the leader sends them to every member); None when the
    /// last one failed to reach it, or there was none yet.
    pub fn active_since(&self, target: NodeId) -> Option<Instant> {
        self.shared.activity.since(target)
    }

    /// Asks member `target` at `node` to campaign now: the leader's last step
    /// in handing its leadership over (etcd's MsgTimeoutNow). Returns once
    /// the campaign has started, not when it is won.
    pub async fn timeout_now(&self, target: NodeId, node: &BasicNode) -> Result<(), PeerError> {
        let peer_err = |e: CallError| e.into_peer(&node.addr);
        let mut client = self
            .shared
            .client(target, &node.addr)
            .map_err(|e| peer_err(e.into()))?;
        let reply = call(
            self.timeout,
            client.timeout_now(self.shared.request(TimeoutNowRequest {}, self.timeout)),
        )
        .await
        .map_err(peer_err)?;
        if reply.error.is_empty() {
            Ok(())
        } else {
            Err(decode_peer_error(&reply.error, &node.addr))
        }
    }
}

impl PeerClient {
    /// Asks member `target` at `node` for its hash of its key-value history
    /// up to `revision` (etcd's HashKV over the peer URL, as etcd's
    /// corruption checks ask their peers). Any member answers.
    pub async fn hash_kv(
        &self,
        target: NodeId,
        node: &BasicNode,
        revision: i64,
    ) -> Result<KvHash, PeerError> {
        let peer_err = |e: CallError| e.into_peer(&node.addr);
        let mut client = self
            .shared
            .client(target, &node.addr)
            .map_err(|e| peer_err(e.into()))?;
        let reply = call(
            self.timeout,
            client.hash_kv(self.shared.request(HashKvAsk { revision }, self.timeout)),
        )
        .await
        .map_err(peer_err)?;
        match reply.result {
            Some(hash_kv_answer::Result::Hash(hash)) => Ok(hash),
            Some(hash_kv_answer::Result::Error(e)) => Err(decode_peer_error(&e, &node.addr)),
            None => Err(peer_err(CallError::Empty)),
        }
    }
}

fn decode_peer_error(bytes: &[u8], addr: &str) -> PeerError {
    decode(bytes, "PeerError").unwrap_or_else(|e| CallError::from(e).into_peer(addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TypeConfig;

    #[tokio::test]
    async fn channels_are_cached_per_peer_and_address() {
        let net = Network::new(1, None);
        net.shared.client(2, "http://127.0.0.1:1").unwrap();
        net.shared.client(2, "http://127.0.0.1:1").unwrap();
        net.shared.client(3, "http://127.0.0.1:2").unwrap();
        assert_eq!(net.shared.peers.lock().len(), 2);
        // A changed address replaces the channel.
        net.shared.client(2, "http://127.0.0.1:3").unwrap();
        assert_eq!(net.shared.peers.lock()[&2].addr, "http://127.0.0.1:3");
        net.forget(2);
        assert_eq!(net.shared.peers.lock().len(), 1);
        assert!(net.shared.client(4, "bogus").is_err());
    }

    #[test]
    fn a_peer_is_active_from_its_first_answer_until_a_failure() {
        let activity = Activity::default();
        assert_eq!(activity.since(2), None);
        activity.record(2, true);
        let since = activity.since(2).expect("active");
        activity.record(2, true);
        assert_eq!(
            activity.since(2),
            Some(since),
            "later answers keep the start"
        );
        activity.record(2, false);
        assert_eq!(activity.since(2), None);
        activity.record(2, true);
        assert!(activity.since(2).is_some_and(|t| t >= since));
    }

    #[tokio::test]
    async fn unreachable_peers_are_reported_as_unreachable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let mut net = Network::new(1, None);
        let mut conn =
            RaftNetworkFactory::<TypeConfig>::new_client(&mut net, 2, &BasicNode::new(&addr)).await;
        let rpc = VoteRequest::new(openraft::Vote::new(1, 1), None);
        let option = RPCOption::new(Duration::from_secs(1));
        let err = RaftNetwork::<TypeConfig>::vote(&mut conn, rpc.clone(), option)
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err}");
        assert_eq!(net.peer_client().active_since(2), None);

        let mut bad =
            RaftNetworkFactory::<TypeConfig>::new_client(&mut net, 3, &BasicNode::new("ftp://x"))
                .await;
        let option = RPCOption::new(Duration::from_secs(1));
        let err = RaftNetwork::<TypeConfig>::vote(&mut bad, rpc, option)
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err}");

        let err = net
            .peer_client()
            .read_index(2, &BasicNode::new(&addr))
            .await
            .unwrap_err();
        assert!(matches!(err, PeerError::Unreachable { .. }), "{err}");
    }

    #[tokio::test]
    async fn oversized_batches_ask_openraft_for_fewer_entries() {
        let options = NetworkOptions {
            max_message_bytes: 1000,
            ..NetworkOptions::default()
        };
        let mut net = Network::with_options(1, None, options);
        let mut conn = RaftNetworkFactory::<TypeConfig>::new_client(
            &mut net,
            2,
            &BasicNode::new("http://127.0.0.1:1"),
        )
        .await;
        let entries = (1..=4)
            .map(|i| crate::Entry::<crate::Request> {
                log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), i),
                payload: openraft::EntryPayload::Normal(crate::Request::from(vec![0u8; 400])),
            })
            .collect();
        let rpc = AppendEntriesRequest {
            vote: openraft::Vote::new_committed(1, 1),
            prev_log_id: None,
            entries,
            leader_commit: None,
        };
        match conn
            .append_entries(rpc, RPCOption::new(Duration::from_secs(1)))
            .await
        {
            Err(RPCError::PayloadTooLarge(p)) => assert_eq!(p.entries_hint(), 2),
            other => panic!("{other:?}"),
        }
    }
}
