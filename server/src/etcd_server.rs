//! [`EtcdServer`]: one member, from opening its data directory to serving
//! requests. The front end calls these methods from its gRPC services; an
//! embedder calls them directly.
//!
//! Start-up, in order: the data directory (importing etcd's), the store, the
//! watch hub, Raft (log, state machine, peers), the leader's lease duties;
//! then, once the front end serves the peer service ([`Opened`]), the first
//! leader, and this member's attributes published through the log. Like
//! etcd, a member answers clients only after that.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use oxetcd_proto::etcdserverpb::alarm_request::AlarmAction;
use oxetcd_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, CompactionRequest, CompactionResponse,
    DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest, LeaseGrantResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
    Member, PutRequest, PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest,
    TxnResponse,
};
use oxetcd_raft::{NodeId, PeerService};
use oxetcd_storage::{Engine, StorageError, Store, WriteBuffer, FLUSH_INTERVAL};
use oxetcd_watch::{WatchConfig, WatchFailpoints, WatchHub};
use prost::Message;
use tracing::{info, warn};

mod auth;

use crate::alarm::Alarms;
use crate::apply;
use crate::auth::{needs, AuthStore, Caller, JwtTokens, LoginBackoff, Need, SimpleTokens};
use crate::auto_compaction::{self, AutoCompaction};
use crate::command::{
    Authorized, Command, KeyWriteRef, LogCommand, MemberAttributes, Proposal, Request,
};
use crate::compactor::{self, DEFAULT_COMPACTION_BATCH_LIMIT};
use crate::corruption::{self, CorruptionError};
use crate::datadir::{DataDir, DataDirError};
use crate::error::EtcdError;
use crate::ids::{self, IdGenerator};
use crate::lease::{self, Lessor};
use crate::quota::{self, Quota};
use crate::replication::{
    self, Change, Companions, LeaderSeen, RaftSettings, Replication, ReplicationError,
};
use crate::validate;

/// The storage engine's page cache. Small: redb reads through the OS page
/// cache, which keeps the file's hot pages anyway; what redb caches on top of
/// it is counted in the process's RSS (at 1M keys, 512 MiB cost about 200 MB
/// of RSS for no measured gain: docs/performance.md, footprint). 4 MiB
/// against 16 (`benches/ab-releases`, 2 rounds, 100,000 keys of 256 B):
/// puts at 100 clients 30,000 against 31,000/s (noise), linearizable ranges
/// at 100 clients 37,100 against 36,800/s and at 1 client 6,620 against
/// 6,680/s, RSS 12-25 MB lower.
const STORE_CACHE_BYTES: u64 = 4 << 20;
/// How many times a write refused for a changed auth state is checked and
/// proposed again before the refusal reaches the client.
const AUTH_RETRIES: u32 = 8;
/// How often a physical Compact looks whether the compactor is done.
const PHYSICAL_COMPACTION_POLL: Duration = Duration::from_millis(10);
/// Between tries of a start-up step that waits for the cluster.
const START_RETRY: Duration = Duration::from_millis(500);
/// How often the quota watcher looks at the store's size besides when an
/// applied write wakes it: the size also grows when the write buffer
/// flushes, after the apply.
const QUOTA_CHECK_INTERVAL: Duration = FLUSH_INTERVAL;

/// What a member needs to know to start: etcd's flags that reach the core.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub name: String,
    pub data_dir: PathBuf,
    /// --wal-dir: the Raft log's directory when not in the data dir.
    pub wal_dir: Option<PathBuf>,
    /// (member name, peer URL) for every member of the initial cluster, one
    /// entry per URL.
    pub initial_cluster: Vec<(String, String)>,
    pub initial_cluster_token: String,
    /// This member's peer URLs as the others reach it: its ID derives from them.
    pub initial_advertise_peer_urls: Vec<String>,
    /// Published through the log, so every member lists them.
    pub advertise_client_urls: Vec<String>,
    /// True for a member of a new cluster (it bootstraps it with the others),
    /// false for one joining an existing cluster (it waits to be added).
    pub new_cluster: bool,
    /// --force-new-cluster: restart from this member's data as a one-member
    /// cluster (see `replication::force_new_cluster`).
    pub force_new_cluster: bool,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    /// Applied writes between snapshots (--snapshot-count).
    pub snapshot_count: u64,
    /// Writes kept in the log behind a snapshot for slow followers
    /// (--experimental-snapshot-catchup-entries, etcd's SnapshotCatchUpEntries).
    pub snapshot_catchup_entries: u64,
    /// An entry whose apply takes longer is logged and counted as slow
    /// (--experimental-warning-apply-duration).
    pub warning_apply_duration: Duration,
    pub strict_reconfig_check: bool,
    /// --experimental-enable-lease-checkpoint.
    pub lease_checkpoint: bool,
    pub watch_progress_notify_interval: Duration,
    pub max_txn_ops: usize,
    /// Revisions the compactor deletes per batch
    /// (--experimental-compaction-batch-limit).
    pub compaction_batch_limit: usize,
    pub max_request_bytes: usize,
    /// --quota-backend-bytes: 0 is etcd's default (2 GiB), a negative value
    /// disables the quota (see `quota`).
    pub quota_backend_bytes: i64,
    /// --experimental-backend: the storage engine of a new data dir; on an
    /// existing one it must be the engine the data was written with. None:
    /// the data dir's engine, or the default for a new one.
    pub backend: Option<Engine>,
    /// TLS for requests to other members; None for plain HTTP/2.
    pub peer_client_tls: Option<Arc<rustls::ClientConfig>>,
    /// --auth-token-ttl: a simple token lives this long after its last use.
    pub auth_token_ttl: Duration,
    /// --auth-token=jwt,...: tokens are JWTs; None for simple tokens.
    pub jwt: Option<crate::auth::JwtConfig>,
    /// --client-cert-auth: a client certificate's CommonName names the
    /// user of a request that carries no token.
    pub client_cert_auth: bool,
    /// --bcrypt-cost: the cost of the password hashes made here.
    pub bcrypt_cost: u32,
    /// Test-only failpoint (OXETCD_FAILPOINT_STALE_READS=1 in the front end):
    /// linearizable reads (Ranges and read-only Txns) skip ReadIndex and read
    /// whatever this member has, so
    /// that the Jepsen tester can show it catches stale reads.
    pub failpoint_stale_reads: bool,
    /// Test-only failpoint (OXETCD_FAILPOINT_SKIP_WAL_FSYNC=1 in the front
    /// end): the Raft log is never fsynced, so a power cut loses acknowledged
    /// writes; the power-loss tests must catch it.
    pub failpoint_skip_wal_fsync: bool,
    /// Test-only failpoints in the watch hub (OXETCD_FAILPOINT_WATCH_*=1 in
    /// the front end): events dropped, duplicated, or a resumed watch served
    /// from a later revision; the tester's watch checker must catch each.
    pub watch_failpoints: WatchFailpoints,
    /// Test-only failpoint (OXETCD_FAILPOINT_LEASE_EXPIRE_EARLY=1 in the
    /// front end): the leader expires leases after half their TTL; the
    /// tester's lease checker must catch it.
    pub failpoint_lease_expire_early: bool,
    /// Test-only failpoint (OXETCD_FAILPOINT_TXN_HALF_APPLIED=1 in the front
    /// end): a txn putting several keys applies all puts but its last; the
    /// tester's append checker must catch it.
    pub failpoint_txn_half_applied: bool,
    /// Test-only failpoint (OXETCD_FAILPOINT_STALE_READ_ONLY_TXN=1 in the
    /// front end): read-only txns read a snapshot 10 revisions old; the
    /// tester's register checker must catch it.
    pub failpoint_stale_read_only_txn: bool,
    /// Test-only failpoint (OXETCD_FAILPOINT_TXN_READS_MISS_OWN_WRITES=1 in
    /// the front end): a txn's ranges after its own puts read the store as
    /// it was before the txn; the tester's append checker must catch it.
    pub failpoint_txn_reads_miss_own_writes: bool,
    /// Test-only failpoint (OXETCD_FAILPOINT_FORGET_WRITE_ON_RESTART=1 in
    /// the front end): a restarted member forgets the first key writes it
    /// applies; the tester must see the members diverge.
    pub failpoint_forget_write_on_restart: bool,
    /// --auto-compaction-mode and --auto-compaction-retention; None when
    /// the retention is 0 (etcd's "disabled").
    pub auto_compaction: Option<AutoCompaction>,
    /// Test hook (OXETCD_TEST_AUTO_COMPACTION_INTERVAL_MS in the front end):
    /// revision mode looks this often instead of every 5 minutes.
    pub test_auto_compaction_interval: Option<Duration>,
    /// --experimental-initial-corrupt-check: a member restarting on its
    /// data compares its HashKV with its peers' before it serves clients
    /// (see `corruption`).
    pub initial_corrupt_check: bool,
    /// --experimental-corrupt-check-time: how often the leader compares
    /// every member's HashKV; None (etcd's 0) for never.
    pub corrupt_check_interval: Option<Duration>,
}

impl ServerConfig {
    /// A one-member cluster with its data in `data_dir` and etcd's defaults
    /// (member "default" at http://localhost:2380).
    pub fn single_member(data_dir: &Path) -> Self {
        let peer_url = "http://localhost:2380".to_string();
        Self {
            name: "default".to_string(),
            data_dir: data_dir.to_path_buf(),
            wal_dir: None,
            initial_cluster: vec![("default".to_string(), peer_url.clone())],
            initial_cluster_token: "etcd-cluster".to_string(),
            initial_advertise_peer_urls: vec![peer_url],
            advertise_client_urls: vec!["http://localhost:2379".to_string()],
            new_cluster: true,
            force_new_cluster: false,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            snapshot_count: 100_000,
            snapshot_catchup_entries: 5_000,
            warning_apply_duration: crate::replication::DEFAULT_SLOW_APPLY,
            strict_reconfig_check: true,
            lease_checkpoint: false,
            watch_progress_notify_interval: Duration::from_secs(600),
            max_txn_ops: 128,
            compaction_batch_limit: DEFAULT_COMPACTION_BATCH_LIMIT,
            max_request_bytes: 1536 * 1024,
            quota_backend_bytes: 0,
            backend: None,
            peer_client_tls: None,
            auth_token_ttl: crate::auth::DEFAULT_TOKEN_TTL,
            bcrypt_cost: bcrypt::DEFAULT_COST,
            client_cert_auth: false,
            jwt: None,
            failpoint_stale_reads: false,
            failpoint_skip_wal_fsync: false,
            watch_failpoints: WatchFailpoints::default(),
            failpoint_lease_expire_early: false,
            failpoint_txn_half_applied: false,
            failpoint_stale_read_only_txn: false,
            failpoint_txn_reads_miss_own_writes: false,
            failpoint_forget_write_on_restart: false,
            auto_compaction: None,
            test_auto_compaction_interval: None,
            initial_corrupt_check: false,
            corrupt_check_interval: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("cannot open the store: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("raft: {0}")]
    Raft(String),
    #[error("--auth-token: {0}")]
    AuthToken(String),
    #[error(transparent)]
    Corruption(#[from] CorruptionError),
}

fn raft_error(e: impl std::fmt::Display) -> StartError {
    StartError::Raft(e.to_string())
}

/// Who we are and who the members are, as etcd derives member and cluster
/// IDs from --initial-cluster and --initial-cluster-token.
struct Identity {
    member_id: u64,
    cluster_id: u64,
    /// Every member of the initial cluster, at its first peer URL.
    members: BTreeMap<u64, BasicNode>,
}

impl Identity {
    fn of(config: &ServerConfig) -> Self {
        let mut by_name: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (name, url) in &config.initial_cluster {
            by_name.entry(name.as_str()).or_default().push(url.clone());
        }
        let members: BTreeMap<u64, BasicNode> = by_name
            .values()
            .map(|urls| {
                let id = ids::member_id(urls, &config.initial_cluster_token);
                (id, BasicNode::new(urls[0].clone()))
            })
            .collect();
        let member_ids: Vec<u64> = members.keys().copied().collect();
        Self {
            member_id: ids::member_id(
                &config.initial_advertise_peer_urls,
                &config.initial_cluster_token,
            ),
            cluster_id: ids::cluster_id(&member_ids),
            members,
        }
    }
}

/// A member whose Raft runs but which does not serve clients yet: the front
/// end serves [`Opened::peer_service`] on the peer URLs, then calls
/// [`Opened::serve`], which waits for a leader (that needs the peers).
pub struct Opened {
    config: ServerConfig,
    data_dir: DataDir,
    store: Arc<Store>,
    hub: Arc<WatchHub>,
    replication: Arc<Replication>,
    alarms: Arc<Alarms>,
    auth: Arc<AuthStore>,
    quota: Arc<Quota>,
    member_id: u64,
    /// Known at start unless this member is joining: then learned from the log.
    known_cluster_id: Option<u64>,
    /// The data dir held a member's data before this start (etcd's
    /// "member initialized"): only then is there anything to check for
    /// corruption at start.
    initialized: bool,
}

impl Opened {
    /// The Raft peer service, for the front end to serve on the peer URLs.
    pub fn peer_service(&self) -> PeerService<LogCommand> {
        self.replication.peer_service()
    }

    /// Waits for a leader, publishes this member's attributes, and returns
    /// the member ready for requests.
    pub async fn serve(self) -> Result<Arc<EtcdServer>, StartError> {
        let Opened {
            config,
            data_dir,
            store,
            hub,
            replication,
            alarms,
            auth,
            quota,
            member_id,
            known_cluster_id,
            initialized,
        } = self;
        replication.wait_for_leader().await.map_err(raft_error)?;
        if config.initial_corrupt_check && initialized {
            corruption::check_initial(&replication, &store, member_id).await?;
        }
        if data_dir.imported_store_needs_snapshot() {
            // Members that join later must get the imported data by snapshot.
            replication
                .snapshot_and_purge_log()
                .await
                .map_err(raft_error)?;
            data_dir.imported_store_snapshotted()?;
        }
        // The cluster ID is replicated state, as in etcd: members that
        // bootstrap a cluster record the one derived from --initial-cluster; a
        // member that joins learns it from the cluster.
        let cluster_id = match known_cluster_id {
            Some(id) => id,
            None => wait_for_cluster_id(&store).await,
        };
        replication.set_cluster_id(cluster_id);
        if config.failpoint_stale_reads {
            warn!("OXETCD_FAILPOINT_STALE_READS is set: linearizable reads may be stale (a test failpoint)");
        }
        if config.failpoint_skip_wal_fsync {
            warn!("OXETCD_FAILPOINT_SKIP_WAL_FSYNC is set: the Raft log is not fsynced, a power cut loses acknowledged writes (a test failpoint)");
        }
        if config.watch_failpoints.drop_events {
            warn!("OXETCD_FAILPOINT_WATCH_DROP_EVENTS is set: watch streams miss events (a test failpoint)");
        }
        if config.watch_failpoints.reorder_events {
            warn!("OXETCD_FAILPOINT_WATCH_REORDER_EVENTS is set: watch streams get some events after later ones (a test failpoint)");
        }
        if config.watch_failpoints.duplicate_events {
            warn!("OXETCD_FAILPOINT_WATCH_DUPLICATE_EVENTS is set: watch streams get some events twice (a test failpoint)");
        }
        if config.failpoint_forget_write_on_restart {
            warn!("OXETCD_FAILPOINT_FORGET_WRITE_ON_RESTART is set: a restarted member forgets the first key writes it applies (a test failpoint)");
        }
        if config.failpoint_stale_read_only_txn {
            warn!("OXETCD_FAILPOINT_STALE_READ_ONLY_TXN is set: read-only txns read an old snapshot (a test failpoint)");
        }
        if config.failpoint_txn_reads_miss_own_writes {
            warn!("OXETCD_FAILPOINT_TXN_READS_MISS_OWN_WRITES is set: txns do not read their own writes back (a test failpoint)");
        }
        if config.failpoint_txn_half_applied {
            warn!("OXETCD_FAILPOINT_TXN_HALF_APPLIED is set: txns putting several keys lose their last put (a test failpoint)");
        }
        if config.failpoint_lease_expire_early {
            warn!("OXETCD_FAILPOINT_LEASE_EXPIRE_EARLY is set: leases expire after half their TTL (a test failpoint)");
        }
        if config.watch_failpoints.start_late_after_compaction {
            warn!("OXETCD_FAILPOINT_WATCH_START_LATE_AFTER_COMPACTION is set: once the store is compacted, watches created at a revision skip it (a test failpoint)");
        }
        if config.watch_failpoints.start_late {
            warn!("OXETCD_FAILPOINT_WATCH_START_LATE is set: watches created at a revision skip it (a test failpoint)");
        }
        tokio::spawn(watch_quota(QuotaWatch {
            replication: replication.clone(),
            store: store.clone(),
            alarms: alarms.clone(),
            quota: quota.clone(),
            member_id,
        }));
        if let Some(interval) = config.corrupt_check_interval {
            tokio::spawn(corruption::run_periodic(corruption::PeriodicCheck {
                replication: replication.clone(),
                store: store.clone(),
                alarms: alarms.clone(),
                member_id,
                interval,
            }));
        }
        if let Some(policy) = config.auto_compaction {
            info!(?policy, "auto compaction is on (on the leader)");
            tokio::spawn(auto_compaction::run(
                policy,
                replication.clone(),
                store.clone(),
                config.test_auto_compaction_interval,
            ));
        }
        let server = Arc::new(EtcdServer {
            store,
            hub,
            replication,
            alarms,
            auth,
            quota,
            cluster_id,
            member_id,
            // Lease IDs chosen by this member: for grants, and the sessions
            // of locks and campaigns that come without a lease.
            lease_ids: IdGenerator::new(member_id),
            login_backoff: LoginBackoff::default(),
            config,
        });
        server
            .publish(MemberAttributes {
                member_id,
                name: server.config.name.clone(),
                client_urls: server.config.advertise_client_urls.clone(),
                cluster_id: if server.config.new_cluster {
                    cluster_id
                } else {
                    0
                },
            })
            .await;
        Ok(server)
    }
}

/// One member of an etcd-API cluster, ready for requests.
pub struct EtcdServer {
    store: Arc<Store>,
    hub: Arc<WatchHub>,
    replication: Arc<Replication>,
    alarms: Arc<Alarms>,
    auth: Arc<AuthStore>,
    quota: Arc<Quota>,
    cluster_id: u64,
    member_id: u64,
    lease_ids: IdGenerator,
    /// Slows repeated failed logins (see `auth::LoginBackoff`).
    login_backoff: LoginBackoff,
    config: ServerConfig,
}

impl EtcdServer {
    /// Opens the member's data and starts Raft; see [`Opened`]. A cluster of
    /// several members needs the peer service served before [`Opened::serve`].
    pub async fn open(config: ServerConfig) -> Result<Opened, StartError> {
        // Ours, or etcd's to import: a member's data either way.
        let initialized =
            config.data_dir.join("oxetcd").exists() || config.data_dir.join("member").exists();
        let data_dir =
            DataDir::prepare(&config.data_dir, config.backend, config.wal_dir.as_deref())?;
        info!(engine = %data_dir.engine(), "opening the store");
        let engine = data_dir
            .engine()
            .open(&data_dir.kv_path(), STORE_CACHE_BYTES)?;
        let backend = WriteBuffer::new(engine, FLUSH_INTERVAL)?;
        let store = Arc::new(Store::open(Box::new(backend))?);
        compactor::spawn(&store, config.compaction_batch_limit)?;
        let watch_config = WatchConfig {
            progress_notify_interval: config.watch_progress_notify_interval,
            failpoints: config.watch_failpoints,
            ..WatchConfig::default()
        };
        let hub = WatchHub::start(store.clone(), watch_config);
        let identity = Identity::of(&config);
        let settings = RaftSettings {
            id: identity.member_id,
            cluster_token: config.initial_cluster_token.clone(),
            heartbeat_interval: config.heartbeat_interval,
            election_timeout: config.election_timeout,
            snapshot_count: config.snapshot_count,
            snapshot_catchup_entries: config.snapshot_catchup_entries,
            warning_apply_duration: config.warning_apply_duration,
            strict_reconfig_check: config.strict_reconfig_check,
            skip_wal_fsync: config.failpoint_skip_wal_fsync,
        };
        // Members of a new cluster bootstrap it together; a member joining an
        // existing one waits to be added (MemberAdd on the cluster).
        let mut bootstrap = config.new_cluster.then(|| identity.members.clone());
        // Before the log is replayed: every txn applied here is broken.
        if config.failpoint_txn_half_applied {
            crate::apply::set_half_applied_failpoint(true);
        }
        if config.failpoint_stale_read_only_txn {
            crate::apply::set_stale_read_only_failpoint(true);
        }
        if config.failpoint_txn_reads_miss_own_writes {
            crate::apply::set_reads_miss_own_writes_failpoint(true);
        }
        if config.failpoint_forget_write_on_restart {
            crate::replication::set_forget_write_on_restart_failpoint(true);
        }
        let lessor = Arc::new(
            Lessor::new(
                Lessor::min_ttl_for(config.election_timeout),
                config.lease_checkpoint,
            )
            .with_early_expiry(config.failpoint_lease_expire_early),
        );
        let alarms = Arc::new(Alarms::load(&store).map_err(raft_error)?);
        let quota = Arc::new(Quota::new(config.quota_backend_bytes));
        let jwt = match &config.jwt {
            Some(jwt) => Some(JwtTokens::new(jwt).map_err(StartError::AuthToken)?),
            None => None,
        };
        let auth = Arc::new(
            AuthStore::load(&store, SimpleTokens::new(config.auth_token_ttl), jwt)
                .map_err(raft_error)?,
        );
        let companions = Companions {
            lessor,
            alarms: alarms.clone(),
            auth: auth.clone(),
            quota: quota.clone(),
        };
        if config.force_new_cluster
            && replication::force_new_cluster(
                &data_dir.raft_paths(),
                &store,
                &hub,
                &companions,
                identity.member_id,
            )
            .await?
        {
            // The data names the cluster now; --initial-cluster has no say.
            bootstrap = None;
        }
        let replication = Arc::new(
            Replication::start(
                &data_dir.raft_paths(),
                store.clone(),
                hub.clone(),
                companions,
                &settings,
                bootstrap,
                config.peer_client_tls.clone(),
            )
            .await?,
        );
        let known_cluster_id = apply::recorded_cluster_id(&store)
            .map_err(raft_error)?
            .or(config.new_cluster.then_some(identity.cluster_id));
        if let Some(id) = known_cluster_id {
            replication.set_cluster_id(id);
        }
        tokio::spawn(log_leader_changes(replication.clone()));
        tokio::spawn(lease::run_leader_duties(
            replication.clone(),
            config.election_timeout,
        ));
        Ok(Opened {
            config,
            data_dir,
            store,
            hub,
            replication,
            alarms,
            auth,
            quota,
            member_id: identity.member_id,
            known_cluster_id,
            initialized,
        })
    }

    /// Opens and serves a member that needs no peer service: a one-member
    /// cluster (an embedded store).
    pub async fn start(config: ServerConfig) -> Result<Arc<Self>, StartError> {
        Self::open(config).await?.serve().await
    }

    /// Stops Raft; requests after this fail. Every acknowledged write is
    /// already durable, so nothing is lost.
    pub async fn stop(&self) {
        self.replication.shutdown().await;
    }

    /// Resolves once Raft has stopped, by [`EtcdServer::stop`] or because it
    /// failed (a panic, a fatal storage error): then the member can answer
    /// nothing, and the front end exits so that a restart recovers.
    pub async fn stopped(&self) {
        let mut role = self.replication.subscribe_role();
        while role.changed().await.is_ok() {}
    }

    pub fn member_id(&self) -> u64 {
        self.member_id
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The MVCC store, for reads that need no ordering against writes
    /// (hashes, sizes, the snapshot export) and for the watch service.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn watch_hub(&self) -> &Arc<WatchHub> {
        &self.hub
    }

    /// What Raft reports of this member now.
    pub fn raft_metrics(&self) -> openraft::RaftMetrics<NodeId, BasicNode> {
        self.replication.metrics()
    }

    /// A full response header at `revision`.
    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            // Every response header carries it: read without copying the rest
            // of Raft's metrics.
            raft_term: self.replication.current_term(),
        })
    }

    /// A full response header at the store's current revision.
    pub fn current_header(&self) -> Option<ResponseHeader> {
        self.header(self.store.current_revision())
    }

    /// Completes the header the applier started (it knows the revision).
    fn stamp(&self, header: &mut Option<ResponseHeader>) {
        let revision = match header {
            Some(h) => h.revision,
            None => self.store.current_revision(),
        };
        *header = self.header(revision);
    }

    /// Returns once this member has applied everything committed before the
    /// call: a local read after it is linearizable.
    pub async fn read_barrier(&self) -> Result<(), EtcdError> {
        self.replication.read_barrier().await
    }

    /// A Range: linearizable (after a read barrier) unless `serializable`.
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse, EtcdError> {
        self.range_as(&Caller::Unchecked, req).await
    }

    /// [`EtcdServer::range`] for `caller`, who must be allowed to read the
    /// range.
    pub async fn range_as(
        &self,
        caller: &Caller,
        req: RangeRequest,
    ) -> Result<RangeResponse, EtcdError> {
        validate::range(&req)?;
        self.auth.check(caller, &needs::range(&req))?;
        if !req.serializable && !self.config.failpoint_stale_reads {
            self.read_barrier().await?;
        }
        let mut resp = apply::range(self.store.as_ref(), &req)?;
        self.stamp(&mut resp.header);
        Ok(resp)
    }

    pub async fn put(&self, req: PutRequest) -> Result<PutResponse, EtcdError> {
        self.put_as(&Caller::Unchecked, req).await
    }

    pub async fn put_as(&self, caller: &Caller, req: PutRequest) -> Result<PutResponse, EtcdError> {
        validate::put(&req)?;
        self.auth.check(caller, &needs::put(&req))?;
        self.check_quota(quota::key_write_cost(KeyWriteRef::Put(&req)))
            .await?;
        let mut resp = self
            .propose_checked(caller, &needs::put(&req), req.clone())
            .await?;
        self.stamp(&mut resp.header);
        Ok(resp)
    }

    pub async fn delete_range(
        &self,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, EtcdError> {
        self.delete_range_as(&Caller::Unchecked, req).await
    }

    pub async fn delete_range_as(
        &self,
        caller: &Caller,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, EtcdError> {
        validate::delete_range(&req)?;
        let mut resp = self
            .propose_checked(caller, &needs::delete_range(&req), req.clone())
            .await?;
        self.stamp(&mut resp.header);
        Ok(resp)
    }

    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, EtcdError> {
        self.txn_as(&Caller::Unchecked, req).await
    }

    pub async fn txn_as(&self, caller: &Caller, req: TxnRequest) -> Result<TxnResponse, EtcdError> {
        validate::txn(&req, self.config.max_txn_ops)?;
        self.auth.check(caller, &needs::txn(&req))?;
        if apply::is_read_only_txn(&req) {
            // As etcd: a read-only txn is a local read, not a proposal.
            if !apply::is_serializable_txn(&req) && !self.config.failpoint_stale_reads {
                self.read_barrier().await?;
            }
            let mut resp = apply::read_only_txn(self.store.as_ref(), &req)?;
            self.stamp(&mut resp.header);
            return Ok(resp);
        }
        self.check_quota(quota::txn_cost(&req)).await?;
        let mut resp = self
            .propose_checked(caller, &needs::txn(&req), req.clone())
            .await?;
        self.stamp(&mut resp.header);
        Ok(resp)
    }

    /// Compacts once the compaction is applied (reads below it fail from
    /// then on); the history is deleted in the background. With `physical`,
    /// as in etcd, it answers only once this member has deleted it. No
    /// caller is checked: etcd 3.4 lets anyone compact, auth enabled or not.
    pub async fn compact(&self, req: CompactionRequest) -> Result<CompactionResponse, EtcdError> {
        let (physical, revision) = (req.physical, req.revision);
        let mut resp = self.propose(req).await?;
        if physical {
            // A follower may apply it after the leader has answered.
            while self.store.compacted_revision() < revision || self.store.compaction_pending() {
                tokio::time::sleep(PHYSICAL_COMPACTION_POLL).await;
            }
        }
        self.stamp(&mut resp.header);
        Ok(resp)
    }

    /// Grants a lease; an ID of 0 gets a fresh one chosen by this member.
    pub async fn lease_grant(
        &self,
        mut req: LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, EtcdError> {
        self.check_quota(quota::cost(&Request::LeaseGrant(
            LeaseGrantRequest::default(),
        )))
        .await?;
        if req.id == 0 {
            req.id = self.fresh_lease_id();
        }
        let mut resp = self.propose(req).await?;
        self.stamp(&mut resp.header);
        Ok(resp)
    }

    pub async fn lease_revoke(
        &self,
        req: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, EtcdError> {
        self.lease_revoke_as(&Caller::Unchecked, req).await
    }

    /// [`EtcdServer::lease_revoke`] for `caller`, who must be allowed to
    /// write every key attached to the lease (revoking deletes them).
    pub async fn lease_revoke_as(
        &self,
        caller: &Caller,
        req: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, EtcdError> {
        let keys = match caller {
            Caller::Unchecked => Vec::new(),
            _ => self.replication.lessor().keys(req.id).unwrap_or_default(),
        };
        let needs: Vec<Need<'_>> = keys
            .iter()
            .map(|key| Need::Range {
                key,
                range_end: b"",
                access: crate::auth::Access::Write,
            })
            .collect();
        let mut resp = self.propose_checked(caller, &needs, req).await?;
        self.stamp(&mut resp.header);
        Ok(resp)
    }

    /// Renews lease `id` (on the leader: a follower forwards it); returns its
    /// TTL.
    pub async fn lease_renew(&self, id: i64) -> Result<i64, EtcdError> {
        self.replication.lease_renew(id).await
    }

    pub async fn lease_time_to_live(
        &self,
        req: &LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, EtcdError> {
        let mut resp = self.replication.lease_time_to_live(req).await?;
        self.stamp(&mut resp.header);
        Ok(resp)
    }

    /// The IDs of every lease this member holds.
    pub fn lease_ids(&self) -> Vec<i64> {
        self.replication.lessor().ids()
    }

    /// A lease ID no lease has yet.
    fn fresh_lease_id(&self) -> i64 {
        loop {
            let id = (self.lease_ids.next() & i64::MAX as u64) as i64;
            if id != 0 && !self.replication.lessor().exists(id) {
                return id;
            }
        }
    }

    /// Admits a write of `cost` to the store (see `quota`): refused while
    /// NOSPACE is active (the applier would refuse it anyway), and refused
    /// past the quota, when this member raises NOSPACE for itself first, as
    /// etcd's quota alarmer does (the client sees the alarm once it sees the
    /// refusal).
    async fn check_quota(&self, cost: u64) -> Result<(), EtcdError> {
        if cost == 0 {
            return Ok(());
        }
        if self.alarms.no_space() {
            return Err(EtcdError::NoSpace);
        }
        let size = self.store.size_cached();
        if self.quota.admits(size, cost) {
            return Ok(());
        }
        warn!(
            size,
            cost,
            quota = self.quota.bytes(),
            "a write would take the store past --quota-backend-bytes"
        );
        raise_no_space(&self.replication, self.member_id).await;
        Err(EtcdError::NoSpace)
    }

    /// Maintenance.Alarm: GET lists the alarms in force once this member has
    /// applied everything committed before the call (a linearizable read,
    /// as etcd's GET through the log); ACTIVATE and DEACTIVATE go through
    /// the log (see `alarm`).
    pub async fn alarm(&self, req: AlarmRequest) -> Result<AlarmResponse, EtcdError> {
        let mut resp = match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Get) => {
                self.read_barrier().await?;
                AlarmResponse {
                    header: None,
                    alarms: self
                        .alarms
                        .list(AlarmType::try_from(req.alarm).unwrap_or(AlarmType::None)),
                }
            }
            Ok(AlarmAction::Activate | AlarmAction::Deactivate) => self.propose(req).await?,
            Err(_) => return Err(EtcdError::UnknownAlarmAction),
        };
        self.stamp(&mut resp.header);
        Ok(resp)
    }

    /// The alarms in force as this member applied them (no read barrier):
    /// what Status and the health checks report.
    pub fn active_alarms(&self) -> Vec<AlarmMember> {
        self.alarms.list(AlarmType::None)
    }

    /// The storage quota in bytes (Status's dbSizeQuota); 0 when disabled.
    pub fn quota_bytes(&self) -> i64 {
        self.quota.bytes()
    }

    /// Changes the membership and waits until this member sees it; returns
    /// the member's ID (a new one for an addition).
    pub async fn change_members(&self, change: Change) -> Result<NodeId, EtcdError> {
        self.replication.change_members(change).await
    }

    /// Moves the leadership to `target` (on the leader).
    pub async fn move_leader(&self, target: NodeId) -> Result<(), EtcdError> {
        self.replication.move_leader(target).await
    }

    /// The members as this member sees them: Raft's membership (IDs, peer
    /// URLs, voter or learner) with the attributes each member published
    /// (name, client URLs). A member that has not published yet has no name,
    /// which etcdctl shows as "unstarted".
    pub fn members(&self) -> Result<Vec<Member>, EtcdError> {
        let published: HashMap<u64, MemberAttributes> = self
            .store
            .cluster_records("member/")?
            .into_iter()
            .filter_map(|(_, raw)| MemberAttributes::decode(raw).ok())
            .map(|m| (m.member_id, m))
            .collect();
        let metrics = self.replication.metrics();
        let membership = metrics.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        Ok(membership
            .nodes()
            .map(|(id, node)| {
                let attrs = published.get(id);
                Member {
                    id: *id,
                    name: attrs.map(|a| a.name.clone()).unwrap_or_default(),
                    peer_ur_ls: node.addr.split(',').map(str::to_string).collect(),
                    client_ur_ls: attrs.map(|a| a.client_urls.clone()).unwrap_or_default(),
                    is_learner: !voters.contains(id),
                }
            })
            .collect())
    }

    /// Checks `caller` for `needs` and proposes: a write refused because
    /// users or roles changed after the check is checked again against the
    /// new auth state and proposed again, for a caller named by a simple
    /// token or a certificate (etcd's clients without a token cannot
    /// refresh anything); a JWT's revision is its own, so it stays refused.
    async fn propose_checked<P: Proposal + Clone>(
        &self,
        caller: &Caller,
        needs: &[Need<'_>],
        proposal: P,
    ) -> Result<P::Response, EtcdError> {
        let mut caller = caller.clone();
        let mut tries = 0;
        loop {
            self.auth.check(&caller, needs)?;
            match self.propose_as(&caller, proposal.clone()).await {
                Err(EtcdError::AuthOldRevision) if tries < AUTH_RETRIES => {
                    match caller.refreshed(self.auth.revision()) {
                        Some(fresh) => caller = fresh,
                        None => return Err(EtcdError::AuthOldRevision),
                    }
                    tries += 1;
                }
                result => return result,
            }
        }
    }

    /// [`EtcdServer::propose`] for `caller`: a checked user's write carries
    /// the auth revision it was checked at, and is refused when applied if
    /// the auth state changed since (see `auth`).
    async fn propose_as<P: Proposal>(
        &self,
        caller: &Caller,
        proposal: P,
    ) -> Result<P::Response, EtcdError> {
        let Some(auth_revision) = caller.checked_at() else {
            return self.propose(proposal).await;
        };
        let request = Request::Authorized(Authorized {
            auth_revision,
            command: Some(Box::new(Command::from(proposal.into_request()))),
        });
        if request.encoded_len() > self.config.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        let response = self.replication.propose(request).await?;
        P::response(response)
    }

    /// Sends a write through the log; answers once it is applied here, with
    /// the response of its own kind.
    async fn propose<P: Proposal>(&self, proposal: P) -> Result<P::Response, EtcdError> {
        let request = proposal.into_request();
        if request.encoded_len() > self.config.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        let response = self.replication.propose(request).await?;
        P::response(response)
    }

    /// Publishes this member's name and client URLs through the log, retrying
    /// until the cluster takes it; like etcd, a member serves clients only
    /// after.
    async fn publish(&self, attributes: MemberAttributes) {
        let publish = Request::Publish(attributes);
        while let Err(e) = self.replication.propose(publish.clone()).await {
            warn!(error = %e, "cannot publish this member's attributes yet; retrying");
            tokio::time::sleep(START_RETRY).await;
        }
        // A follower's write returns once the leader applied it; etcd serves
        // once the member applied its own publish, so its member list names
        // itself (e2e's memberToRemove reads this member's list right after
        // start).
        while let Err(e) = self.replication.read_barrier().await {
            warn!(error = %e, "cannot catch up with the published attributes yet; retrying");
            tokio::time::sleep(START_RETRY).await;
        }
    }
}

/// Waits until the cluster's ID has reached this joining member's store.
async fn wait_for_cluster_id(store: &Store) -> u64 {
    loop {
        if let Ok(Some(id)) = apply::recorded_cluster_id(store) {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Proposes NOSPACE for `member_id`. A failure is logged: the write that
/// found the store full is refused either way, and the next one tries again.
async fn raise_no_space(replication: &Replication, member_id: u64) {
    let raise = Request::Alarm(AlarmRequest {
        action: AlarmAction::Activate as i32,
        member_id,
        alarm: AlarmType::Nospace as i32,
    });
    warn!(member = %format!("{member_id:x}"), "raising the NOSPACE alarm");
    if let Err(e) = replication.propose(raise).await {
        warn!(error = %e, "cannot raise the NOSPACE alarm");
    }
}

/// What the quota watcher needs.
struct QuotaWatch {
    replication: Arc<Replication>,
    store: Arc<Store>,
    alarms: Arc<Alarms>,
    quota: Arc<Quota>,
    member_id: u64,
}

/// Raises NOSPACE for this member once the writes it applied took its store
/// past the quota, as every etcd member does for itself when it applies a
/// write over its quota: a member that never takes a client write still
/// reports its own full store. Runs for the life of Raft.
async fn watch_quota(w: QuotaWatch) {
    let mut role = w.replication.subscribe_role();
    loop {
        tokio::select! {
            changed = role.changed() => if changed.is_err() { return },
            _ = w.quota.applied_past_quota() => {}
            _ = tokio::time::sleep(QUOTA_CHECK_INTERVAL) => {}
        }
        if w.quota.exceeded(&w.store) && !w.alarms.has(w.member_id, AlarmType::Nospace) {
            warn!(
                size = w.store.size_cached(),
                quota = w.quota.bytes(),
                "the writes applied took the store past --quota-backend-bytes"
            );
            raise_no_space(&w.replication, w.member_id).await;
        }
    }
}

/// Logs elections as etcd does, for the life of Raft.
async fn log_leader_changes(replication: Arc<Replication>) {
    let mut role = replication.subscribe_role();
    let mut seen = LeaderSeen::default();
    loop {
        let line = {
            let m = role.borrow_and_update();
            seen.update(m.id, m.current_leader, m.vote.leader_id().get_term())
        };
        if let Some(line) = line {
            info!("{line}");
        }
        if role.changed().await.is_err() {
            return;
        }
    }
}
