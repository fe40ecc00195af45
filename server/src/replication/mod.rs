//! Replication with openraft: every write goes through the Raft log, a single
//! member being a one-member group (one write path to test and tune).
//!
//! - [`Replication::propose`]: a write, routed in one place ([`router`]): run
//!   here when this member leads, sent to the leader over the peer service
//!   when another member does.
//! - [`Replication::read_barrier`]: what a linearizable read waits for. The
//!   leader confirms its leadership with a quorum (ReadIndex); a follower asks
//!   the leader for that index and waits until it has applied it.
//! - [`state_machine`]: committed entries applied to the MVCC store.

mod force_new_cluster;
mod leader_log;
mod leases;
mod log_compaction;
mod membership;
mod proposals;
mod read_index;
mod reconfig;
mod router;
mod state_machine;
mod transfer;

pub use force_new_cluster::force_new_cluster;
pub use leader_log::LeaderSeen;
pub use membership::{AddMember, Change, UpdateMember};
use router::{decode_error, peer_error, route, write_here, Forward, Forwarded, Route};
pub use state_machine::{
    set_forget_write_on_restart_failpoint, Companions, StateMachine, DEFAULT_SLOW_APPLY,
};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::{BasicNode, Raft, SnapshotPolicy};
use oxetcd_raft::{
    ClusterTag, KvHash, LeaderDuties, LogStore, Network, NetworkOptions, NodeId, PeerClient,
    PeerError, PeerService, PurgeGate, Wal, WalOptions,
};
use oxetcd_storage::Store;
use oxetcd_watch::WatchHub;
use prost::Message;
use tracing::info;

use crate::command::{Command, LogCommand, Outcome};
use crate::datadir::RaftPaths;
use crate::error::EtcdError;
use crate::lease::Lessor;
use crate::watchdog::{Watchdog, STUCK_WRITER};

/// oxetcd's Raft types: entries carry typed commands.
pub(crate) type TypeConfig = oxetcd_raft::Types<LogCommand>;
pub(crate) type Entry = oxetcd_raft::Entry<LogCommand>;

/// How long a write or read may wait for a leader, as etcd's request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);
/// Between tries while no leader answers.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Who this member is, and timing and log-size settings, from etcd's flags.
#[derive(Clone, Debug)]
pub struct RaftSettings {
    pub id: NodeId,
    /// --initial-cluster-token: new members' IDs derive from it, as in etcd.
    pub cluster_token: String,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    /// Applied entries between snapshots (--snapshot-count).
    pub snapshot_count: u64,
    /// Writes kept behind a snapshot (--experimental-snapshot-catchup-entries).
    pub snapshot_catchup_entries: u64,
    /// A slower apply is logged and counted (--experimental-warning-apply-duration).
    pub warning_apply_duration: Duration,
    /// --strict-reconfig-check: see [`reconfig`].
    pub strict_reconfig_check: bool,
    /// The failpoint [`ServerConfig::failpoint_skip_wal_fsync`](crate::ServerConfig).
    pub skip_wal_fsync: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("raft log: {0}")]
    Wal(#[from] oxetcd_raft::WalError),
    #[error("raft: {0}")]
    Raft(String),
}

/// This member's part in the Raft group.
pub struct Replication {
    raft: Raft<TypeConfig>,
    peers: PeerClient,
    /// Leadership transfers (MoveLeader) from this member.
    transfers: Arc<transfer::Transfers>,
    /// --strict-reconfig-check, run by the leader before a change.
    strict: Arc<reconfig::StrictCheck>,
    /// The leases this member applies and, as leader, renews and expires.
    lessor: Arc<Lessor>,
    /// --initial-cluster-token: new members' IDs derive from it, as in etcd.
    cluster_token: String,
    /// Linearizable reads, one ReadIndex round per batch.
    reads: read_index::ReadIndexBatcher,
    /// Confirms this member still leads (lease renewals and TTLs), one
    /// round per batch; never asks another member.
    leadership: Arc<read_index::ReadIndexBatcher>,
    /// Key writes, one log entry per batch.
    proposals: Arc<proposals::Proposals>,
    /// The cluster ID on every peer request, checked on every one received.
    cluster: ClusterTag,
    /// The store the state machine applies to: what HashKV asks hash.
    store: Arc<Store>,
}

impl Replication {
    /// Opens the log and snapshot at `paths`, starts Raft, and when `bootstrap` names the
    /// members of a new cluster, initializes it (every member of a new cluster
    /// does so with the same membership).
    pub async fn start(
        paths: &RaftPaths,
        store: Arc<Store>,
        hub: Arc<WatchHub>,
        companions: Companions,
        settings: &RaftSettings,
        bootstrap: Option<BTreeMap<NodeId, BasicNode>>,
        peer_tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, ReplicationError> {
        let id = settings.id;
        let started_members = store.clone();
        let hashed = store.clone();
        let raft_err = |e: &dyn std::fmt::Display| ReplicationError::Raft(e.to_string());
        let mut wal_options = WalOptions::default();
        wal_options.skip_fsync = settings.skip_wal_fsync;
        let wal = Wal::open(&paths.wal, wal_options)?;
        let watchdog = if store.writer_may_hang() {
            Some(
                Watchdog::start(STUCK_WRITER, |busy| {
                    tracing::error!(?busy, "applying one batch of writes is stuck (storage engine hang?): stopping so that a restart recovers the last durable state");
                    std::process::exit(1);
                })
                .map_err(|e| raft_err(&e))?,
            )
        } else {
            None
        };
        let lessor = companions.lessor.clone();
        let durable = StateMachine::durable_applied(&store).map_err(|e| raft_err(&e))?;
        let purges = PurgeGate::new(wal, durable);
        let state_machine = StateMachine::new(
            store,
            hub,
            companions,
            paths.snapshot.clone(),
            watchdog,
            purges.clone(),
            settings.warning_apply_duration,
        )
        .map_err(|e| raft_err(&e))?;
        let cluster = ClusterTag::default();
        let options = NetworkOptions {
            cluster: cluster.clone(),
            ..NetworkOptions::default()
        };
        let network = Network::with_options(id, peer_tls, options);
        let peers = network.peer_client();
        let strict = Arc::new(reconfig::StrictCheck::new(
            settings.strict_reconfig_check,
            started_members,
            peers.clone(),
        ));
        let heartbeat = settings.heartbeat_interval.as_millis() as u64;
        // openraft makes a follower wait out a leader lease (the maximum
        // election timeout) and then a random timeout between minimum and
        // maximum before it campaigns. With 1/3 and 2/3 of etcd's
        // --election-timeout a follower campaigns after 1 to 1.33 of it, close
        // to etcd's randomized 1 to 2 (openraft's own min/max of 1x and 2x
        // would make failover take 3 to 4 timeouts).
        let election = settings.election_timeout.as_millis() as u64;
        let (election_min, election_max) = (election / 3, election * 2 / 3);
        let config = openraft::Config {
            cluster_name: "oxetcd".to_string(),
            heartbeat_interval: heartbeat,
            election_timeout_min: election_min,
            election_timeout_max: election_max,
            // Counted in writes, not entries: see `log_compaction`.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: u64::MAX,
            ..Default::default()
        }
        .validate()
        .map_err(|e| raft_err(&e))?;
        let applied_writes = state_machine.applied_writes();
        let raft = Raft::new(
            id,
            Arc::new(config),
            network,
            LogStore::with_purge_gate(purges),
            state_machine,
        )
        .await
        .map_err(|e| raft_err(&e))?;
        tokio::spawn(log_compaction::run(
            raft.clone(),
            applied_writes,
            settings.snapshot_count,
            settings.snapshot_catchup_entries,
        ));
        if let Some(members) = bootstrap {
            if !raft.is_initialized().await.map_err(|e| raft_err(&e))? {
                info!(members = ?members.keys().map(|m| format!("{m:x}")).collect::<Vec<_>>(), "bootstrapping a new cluster");
                raft.initialize(members).await.map_err(|e| raft_err(&e))?;
            }
        }
        let reads = {
            let (raft, peers) = (raft.clone(), peers.clone());
            read_index::ReadIndexBatcher::spawn(move || {
                find_read_index(raft.clone(), peers.clone())
            })
        };
        let leadership = {
            let raft = raft.clone();
            Arc::new(read_index::ReadIndexBatcher::spawn(move || {
                let raft = raft.clone();
                async move {
                    raft.get_read_log_id()
                        .await
                        .map(|(read, _)| read.map_or(0, |l| l.index))
                        .map_err(|_| read_index::RoundError::NoLeader)
                }
            }))
        };
        let proposals = Arc::new(proposals::Proposals::spawn(raft.clone()));
        Ok(Self {
            reads,
            leadership,
            proposals,
            raft,
            peers,
            transfers: Arc::new(transfer::Transfers::new()),
            strict,
            lessor,
            cluster_token: settings.cluster_token.clone(),
            cluster,
            store: hashed,
        })
    }

    /// From now on, peer requests carry `cluster_id`, and requests from
    /// members of any other cluster are refused ("cluster ID mismatch").
    pub fn set_cluster_id(&self, cluster_id: u64) {
        self.cluster.set(cluster_id);
    }

    /// The peer service other members call on this one.
    pub fn peer_service(self: &Arc<Self>) -> PeerService<LogCommand> {
        let duties = Duties {
            raft: self.raft.clone(),
            transfers: self.transfers.clone(),
            strict: self.strict.clone(),
            lessor: self.lessor.clone(),
            cluster_token: self.cluster_token.clone(),
            proposals: self.proposals.clone(),
            leadership: self.leadership.clone(),
            store: self.store.clone(),
        };
        PeerService::new(self.raft.clone(), Arc::new(duties)).with_cluster(self.cluster.clone())
    }

    /// Asks member `id` at `node` for its HashKV at `revision` (see
    /// `corruption`).
    pub async fn peer_hash_kv(
        &self,
        id: NodeId,
        node: &BasicNode,
        revision: i64,
    ) -> Result<KvHash, PeerError> {
        self.peers.hash_kv(id, node, revision).await
    }

    /// Waits until a leader is known (etcd serves clients only then).
    pub async fn wait_for_leader(&self) -> Result<(), EtcdError> {
        self.raft
            .wait(None)
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .map(|_| ())
            .map_err(|e| EtcdError::Storage(e.to_string()))
    }

    /// Snapshots everything applied and drops the log before it, so that a
    /// member that joins later is sent the store whole rather than the log
    /// replayed: after an import from etcd, the store holds data that no log
    /// entry made.
    pub async fn snapshot_and_purge_log(&self) -> Result<(), EtcdError> {
        let fatal = |e: &dyn std::fmt::Display| EtcdError::Storage(e.to_string());
        // Everything logged so far applied first: a snapshot covers only what
        // the state machine holds when it is built.
        let applied = self
            .raft
            .wait(Some(REQUEST_TIMEOUT))
            .metrics(
                |m| {
                    m.last_applied
                        .is_some_and(|l| Some(l.index) >= m.last_log_index)
                },
                "everything logged applied",
            )
            .await
            .map_err(|e| fatal(&e))?
            .last_applied
            .map_or(0, |l| l.index);
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| fatal(&e))?;
        self.raft
            .wait(Some(REQUEST_TIMEOUT))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= applied),
                "a snapshot of everything applied",
            )
            .await
            .map_err(|e| fatal(&e))?;
        self.raft
            .trigger()
            .purge_log(applied)
            .await
            .map_err(|e| fatal(&e))
    }

    /// Stops Raft: requests after this fail.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "stopping Raft");
        }
    }

    /// What Raft reports of this member now.
    pub fn metrics(&self) -> openraft::RaftMetrics<NodeId, BasicNode> {
        self.raft.metrics().borrow().clone()
    }

    /// The current term, without copying the rest of the metrics: every
    /// response header carries it (a watch response per event and watcher).
    pub fn current_term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// Returns once this member has applied everything committed before the
    /// call: then a local read is linearizable.
    pub async fn read_barrier(&self) -> Result<(), EtcdError> {
        self.until_leader(|| self.read_barrier_once()).await
    }

    /// Changes the membership (on the leader; forwarded there by a follower)
    /// and waits until this member sees the change. Returns the member's ID.
    pub async fn change_members(&self, change: Change) -> Result<NodeId, EtcdError> {
        let removing = matches!(change, Change::Remove(_));
        let id = match route(&self.raft) {
            Route::Here => {
                self.strict.check(&self.metrics(), &change)?;
                membership::execute(&self.raft, &self.cluster_token, change).await?
            }
            Route::Leader(leader, node) => {
                let forwarded = Forwarded {
                    what: Some(Forward::Members(membership::MemberChange {
                        change: Some(change),
                    })),
                };
                let answer = self.forward(leader, &node, &forwarded).await?;
                membership::ChangeOutcome::decode(answer)
                    .map_err(decode_error)?
                    .into_result()?
            }
            Route::NoLeader => return Err(EtcdError::NoLeader),
        };
        // Answer with the membership as this member now sees it.
        let seen = self
            .raft
            .wait(Some(REQUEST_TIMEOUT))
            .metrics(
                |m| m.membership_config.membership().get_node(&id).is_some() != removing,
                "the membership change",
            )
            .await;
        seen.map(|_| id).map_err(|_| EtcdError::RequestTimedOut)
    }

    async fn read_barrier_once(&self) -> Result<(), EtcdError> {
        let index = self.reads.read_index().await?;
        self.raft
            .wait(Some(REQUEST_TIMEOUT))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map(|_| ())
            .map_err(|_| EtcdError::RequestTimedOut)
    }
}

/// One ReadIndex round: the leader's commit index once it has confirmed its
/// leadership with a quorum (asked of the leader when this member follows).
async fn find_read_index(
    raft: Raft<TypeConfig>,
    peers: PeerClient,
) -> Result<u64, read_index::RoundError> {
    use read_index::RoundError;
    let ask_leader = |leader: NodeId, node: BasicNode| {
        let peers = peers.clone();
        async move {
            peers
                .read_index(leader, &node)
                .await
                .map_err(read_index_error)
        }
    };
    // A follower that knows its leader asks it straight away: Raft's own
    // check would only answer "forward to the leader", one more trip through
    // the Raft core per round. The leader confirms its leadership either way.
    if let Route::Leader(leader, node) = route(&raft) {
        return ask_leader(leader, node).await;
    }
    match raft.get_read_log_id().await {
        Ok((read, _)) => Ok(read.map_or(0, |l| l.index)),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
            let (Some(leader), Some(node)) = (f.leader_id, f.leader_node) else {
                return Err(RoundError::NoLeader);
            };
            ask_leader(leader, node).await
        }
        Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {
            Err(RoundError::NoLeader)
        }
        Err(e) => Err(RoundError::Fatal(e.to_string())),
    }
}

/// Why asking the leader for a read index failed, for the round.
fn read_index_error(e: PeerError) -> read_index::RoundError {
    use read_index::RoundError;
    match e {
        // Asking for a read index changes nothing: whatever broke the ask
        // (the connection to the leader closed, say), asking again is safe.
        PeerError::Transport { .. } => RoundError::NoLeader,
        e => match peer_error(e) {
            EtcdError::NoLeader => RoundError::NoLeader,
            EtcdError::RequestTimedOut => RoundError::TimedOut,
            other => RoundError::Fatal(other.to_string()),
        },
    }
}

/// What this member does for followers when it is the leader.
struct Duties {
    raft: Raft<TypeConfig>,
    /// Forwarded writes wait while leadership moves away.
    transfers: Arc<transfer::Transfers>,
    strict: Arc<reconfig::StrictCheck>,
    lessor: Arc<Lessor>,
    cluster_token: String,
    proposals: Arc<proposals::Proposals>,
    leadership: Arc<read_index::ReadIndexBatcher>,
    store: Arc<Store>,
}

#[tonic::async_trait]
impl LeaderDuties for Duties {
    async fn forward(&self, payload: Bytes) -> Result<Bytes, PeerError> {
        let forwarded =
            Forwarded::decode(payload).map_err(|e| PeerError::Rejected(e.to_string()))?;
        match forwarded.what {
            Some(Forward::Command(received)) => {
                let not_leader = || PeerError::NotLeader {
                    leader_id: None,
                    leader_node: None,
                };
                let Some(_admitted) = self.transfers.admit() else {
                    return Err(not_leader());
                };
                // A buffer of its own: the request lives on in the log's cache,
                // and must not keep the whole received message alive.
                let encoded = Bytes::copy_from_slice(&received);
                let request = Command::decode_counted(encoded.clone())
                    .map_err(|e| PeerError::Rejected(e.to_string()))?
                    .request
                    .ok_or_else(|| PeerError::Rejected("empty forwarded command".to_string()))?;
                match write_here(&self.raft, &self.proposals, request, Some(encoded)).await {
                    Ok(result) => Ok(Outcome::from_result(result).encode_to_vec().into()),
                    // No longer the leader: the follower asks again.
                    Err(_unproposed) => Err(not_leader()),
                }
            }
            Some(Forward::Members(membership::MemberChange {
                change: Some(change),
            })) => {
                let metrics = self.raft.metrics().borrow().clone();
                let result = match self.strict.check(&metrics, &change) {
                    Ok(()) => membership::execute(&self.raft, &self.cluster_token, change).await,
                    Err(refused) => Err(refused),
                };
                Ok(membership::ChangeOutcome::from_result(result)
                    .encode_to_vec()
                    .into())
            }
            Some(Forward::LeaseRenew(r)) => {
                let renewed = leases::renew_here(
                    &self.raft,
                    &self.leadership,
                    &self.transfers,
                    &self.lessor,
                    r.id,
                )
                .await;
                leases::encode_renewal(r.id, renewed)
            }
            Some(Forward::LeaseTimeToLive(r)) => {
                let ttl =
                    leases::time_to_live_here(&self.raft, &self.leadership, &self.lessor, &r).await;
                leases::encode_time_to_live(r.id, ttl)
            }
            _ => Err(PeerError::Rejected("empty forwarded request".to_string())),
        }
    }

    async fn read_index(&self) -> Result<u64, PeerError> {
        let (read, _) = self.raft.get_read_log_id().await?;
        Ok(read.map_or(0, |l| l.index))
    }

    /// Not a leader duty: every member answers another's corruption check.
    /// The store's refusals (compacted, future revision) go back as their
    /// etcd error text, which the asking member matches, as etcd's peer
    /// endpoint answers them.
    async fn hash_kv(&self, revision: i64) -> Result<KvHash, PeerError> {
        crate::corruption::hash_here(&self.store, revision)
            .await
            .map_err(|e| PeerError::Rejected(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::read_index::RoundError;
    use super::*;

    #[test]
    fn a_failed_read_index_ask_is_retried_unless_it_timed_out() {
        let addr = || "http://127.0.0.1:2380".to_string();
        let retried = [
            PeerError::Transport {
                addr: addr(),
                reason: "connection closed".into(),
            },
            PeerError::Unreachable {
                addr: addr(),
                reason: "refused".into(),
            },
            PeerError::NotLeader {
                leader_id: None,
                leader_node: None,
            },
            PeerError::NoQuorum("1 of 3".into()),
        ];
        for e in retried {
            assert_eq!(read_index_error(e.clone()), RoundError::NoLeader, "{e}");
        }
        let timed_out = PeerError::Timeout {
            addr: addr(),
            timeout_ms: 5000,
        };
        assert_eq!(read_index_error(timed_out), RoundError::TimedOut);
        assert!(matches!(
            read_index_error(PeerError::Rejected("no".into())),
            RoundError::Fatal(_)
        ));
    }
}
