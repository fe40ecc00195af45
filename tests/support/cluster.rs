//! A cluster of real `oxetcd` processes for the multi-member tests: every
//! member on its own free 127.0.0.1 ports and temporary data dir, started with
//! etcd's bootstrap flags; members can be killed (SIGKILL), paused (SIGSTOP)
//! and resumed (SIGCONT), restarted on their data dirs, and added with
//! MemberAdd plus `--initial-cluster-state existing`.
//!
//! Like [`super::Server`], the binary is `$OXETCD_TEST_SERVER` when set, so the
//! same scenarios can be run against etcd itself:
//!
//! ```text
//! OXETCD_TEST_SERVER=/usr/bin/etcd cargo test --test cluster
//! ```
//!
//! Each start of a member writes its stderr to `<tmp>/logs/stderr-<n>.log`;
//! when a test panics, the tail of every member's logs is printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use oxetcd_proto::etcdserverpb::cluster_client::ClusterClient;
use oxetcd_proto::etcdserverpb::kv_client::KvClient;
use oxetcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd_proto::etcdserverpb::{
    HashKvRequest, HashKvResponse, Member as MemberInfo, MemberAddRequest, MemberListRequest,
    MemberRemoveRequest, RangeRequest, StatusRequest, StatusResponse,
};
use tonic::transport::{Channel, Endpoint};

use super::{b, server_binary, StartLogs, READY_LINE};

/// How long starting (or restarting) members may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Default deadline of a request of the cluster clients.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline of the probes the helper itself sends (status, revision).
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
/// Largest response the clients accept.
const MAX_RESPONSE_BYTES: usize = 1 << 30;
/// etcd's refusal of a membership change while a voter is not connected.
pub const ERR_UNHEALTHY_CLUSTER: &str = "etcdserver: unhealthy cluster";
/// Lines of each member's log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;
/// Characters of each of those lines printed (the full logs stay in the
/// member's `logs()`).
const LOG_LINE_CHARS: usize = 400;

/// Timings and flags every member of a cluster starts with.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// --heartbeat-interval, ms.
    pub heartbeat_ms: u64,
    /// --election-timeout, ms (at least 5 x the heartbeat, as etcd checks).
    pub election_ms: u64,
    /// --snapshot-count, when not the server's default.
    pub snapshot_count: Option<u64>,
    /// More flags for every member.
    pub extra_args: Vec<String>,
}

impl Default for ClusterOptions {
    /// Short timings, so that failovers are quick in tests.
    fn default() -> Self {
        ClusterOptions {
            heartbeat_ms: 50,
            election_ms: 500,
            snapshot_count: None,
            extra_args: Vec::new(),
        }
    }
}

/// One member: its ports, data dir, process and what it was started with.
pub struct Member {
    pub name: String,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    /// --initial-cluster it (re)starts with.
    initial_cluster: String,
    /// --initial-cluster-state: "new" or "existing".
    cluster_state: &'static str,
    /// Environment set for this member's process (e.g. OXETCD_LOG).
    env: Vec<(String, String)>,
    /// Flags for this member's next starts, after the cluster's.
    args: Vec<String>,
    child: Option<Child>,
    paused: bool,
    /// True once the member was removed from the cluster with MemberRemove.
    removed: bool,
    /// Member ID, as its responses report it (known once it served).
    id: Option<u64>,
    logs: StartLogs,
}

impl Member {
    fn new(name: String, client_port: u16, peer_port: u16) -> Member {
        let dir = tempfile::Builder::new()
            .prefix("oxetcd-cluster-")
            .tempdir()
            .expect("create temp dir");
        Member {
            name,
            logs: StartLogs::new(dir.path().join("logs")),
            dir,
            client_port,
            peer_port,
            initial_cluster: String::new(),
            cluster_state: "new",
            env: Vec::new(),
            args: Vec::new(),
            child: None,
            paused: false,
            removed: false,
            id: None,
        }
    }

    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The member ID, once known.
    pub fn id(&self) -> u64 {
        self.id
            .unwrap_or_else(|| panic!("{}: member ID not known yet", self.name))
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Running, not paused, not removed: expected to answer.
    pub fn is_live(&self) -> bool {
        self.child.is_some() && !self.paused && !self.removed
    }

    /// What the current (last) start printed so far.
    pub fn current_log(&self) -> String {
        self.logs.current()
    }

    /// Everything the member printed, every start.
    pub fn logs(&self) -> String {
        self.logs.all()
    }

    fn log_tail(&self) -> String {
        self.logs.tail(&self.name, LOG_TAIL_LINES, LOG_LINE_CHARS)
    }

    fn spawn(&mut self, options: &ClusterOptions) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        self.paused = false;
        let (_, log) = self.logs.next();
        let (client, peer) = (self.client_url(), self.peer_url());
        let mut command = Command::new(server_binary());
        command
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", "oxetcd-cluster-test"])
            .args(["--initial-cluster-state", self.cluster_state])
            .args(["--heartbeat-interval", &options.heartbeat_ms.to_string()])
            .args(["--election-timeout", &options.election_ms.to_string()]);
        if let Some(count) = options.snapshot_count {
            command.args(["--snapshot-count", &count.to_string()]);
        }
        command.args(&options.extra_args);
        command.args(&self.args);
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", server_binary().display()));
        self.child = Some(child);
    }

    /// SIGKILL, and reap the process.
    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait().expect("reap killed member");
        }
        self.paused = false;
    }

    fn signal(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.name))
            .id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Panics (with the logs) if the process has exited.
    fn check_alive(&mut self) {
        if let Some(child) = &mut self.child {
            if let Some(exit) = child.try_wait().expect("poll member process") {
                self.child = None;
                panic!("{} exited with {exit}\n{}", self.name, self.logs());
            }
        }
    }

    /// Ready: printed the ready line this start and accepts connections.
    fn is_ready(&self) -> bool {
        self.current_log().contains(READY_LINE)
            && TcpStream::connect(("127.0.0.1", self.client_port)).is_ok()
    }
}

/// A cluster of `oxetcd` processes, all killed on drop.
pub struct Cluster {
    pub options: ClusterOptions,
    members: Vec<Member>,
}

impl Cluster {
    /// Starts `n` members with [`ClusterOptions::default`].
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, ClusterOptions::default()).await
    }

    /// Starts `n` members bootstrapping a new cluster together, and waits
    /// until every one serves clients.
    pub async fn start_with(n: usize, options: ClusterOptions) -> Cluster {
        let ports = free_ports(2 * n);
        let mut members: Vec<Member> = (0..n)
            .map(|i| Member::new(format!("m{i}"), ports[2 * i], ports[2 * i + 1]))
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.initial_cluster = initial_cluster.clone();
        }
        let mut cluster = Cluster { options, members };
        // Every process first: none becomes ready without a quorum.
        for i in 0..n {
            cluster.members[i].spawn(&cluster.options);
        }
        let all: Vec<usize> = (0..n).collect();
        cluster.wait_ready(&all).await;
        cluster
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn member(&self, i: usize) -> &Member {
        &self.members[i]
    }

    /// Sets an environment variable for member `i`'s future starts.
    /// Flags member `i` starts with from its next start on (replacing any
    /// set before), after the cluster's own.
    pub fn set_args(&mut self, i: usize, args: &[&str]) {
        self.members[i].args = args.iter().map(|a| a.to_string()).collect();
    }

    pub fn set_env(&mut self, i: usize, key: &str, value: &str) {
        self.members[i]
            .env
            .push((key.to_string(), value.to_string()));
    }

    /// Indices of members that run, are not paused and were not removed.
    pub fn live(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].is_live())
            .collect()
    }

    /// Indices of members not removed from the cluster.
    pub fn in_cluster(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| !self.members[i].removed)
            .collect()
    }

    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.members.iter().position(|m| m.id == Some(id))
    }

    pub fn logs(&self, i: usize) -> String {
        self.members[i].logs()
    }

    /// Waits until each of `which` printed its ready line and accepts
    /// connections; then learns their member IDs.
    pub async fn wait_ready(&mut self, which: &[usize]) {
        let started = Instant::now();
        let mut pending: Vec<usize> = which.to_vec();
        while !pending.is_empty() {
            for &i in &pending {
                self.members[i].check_alive();
            }
            pending.retain(|&i| !self.members[i].is_ready());
            if started.elapsed() > START_TIMEOUT {
                let names: Vec<&str> = pending
                    .iter()
                    .map(|&i| self.members[i].name.as_str())
                    .collect();
                panic!("members {names:?} not ready within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        for &i in which {
            if self.members[i].id.is_none() {
                let status = self
                    .status_with(i, REQUEST_TIMEOUT)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("{}: Status after ready: {e}", self.members[i].name)
                    });
                self.members[i].id = Some(header_of(&status.header).member_id);
            }
        }
    }

    // -----------------------------------------------------------------------
    // Processes.

    /// SIGKILL member `i` (no chance to flush anything).
    pub fn kill_9(&mut self, i: usize) {
        self.members[i].kill_9();
    }

    /// SIGKILL every running member, back to back, then reap them.
    pub fn kill_9_all(&mut self) {
        let mut children: Vec<Child> = self
            .members
            .iter_mut()
            .filter_map(|m| {
                m.paused = false;
                m.child.take()
            })
            .collect();
        for child in &mut children {
            let _ = child.kill();
        }
        for child in &mut children {
            child.wait().expect("reap killed member");
        }
    }

    /// SIGSTOP: the process stays, but answers nothing (like a partition).
    pub fn pause(&mut self, i: usize) {
        self.members[i].signal("-STOP");
        self.members[i].paused = true;
    }

    /// SIGCONT after [`Cluster::pause`].
    pub fn resume(&mut self, i: usize) {
        self.members[i].signal("-CONT");
        self.members[i].paused = false;
    }

    /// Starts member `i` again on its data dir (killing it first if it runs)
    /// and waits until it serves clients.
    pub async fn restart(&mut self, i: usize) {
        self.members[i].kill_9();
        self.members[i].spawn(&self.options);
        self.wait_ready(&[i]).await;
    }

    /// Starts member `i` again on its data dir (killing it first if it runs)
    /// without waiting for it to serve: for a start expected to fail (see
    /// [`Cluster::wait_exit`]).
    pub fn respawn(&mut self, i: usize) {
        self.members[i].kill_9();
        self.members[i].spawn(&self.options);
    }

    /// Waits up to `timeout` for member `i`'s process to exit; its exit
    /// status, or None if it still runs.
    pub async fn wait_exit(&mut self, i: usize, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            let child = self.members[i].child.as_mut()?;
            if let Some(status) = child.try_wait().expect("poll member process") {
                self.members[i].child = None;
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Starts every member not running (and not removed), all before waiting
    /// for any: after a full stop none can be ready without a quorum.
    pub async fn restart_all(&mut self) {
        let which: Vec<usize> = (0..self.members.len())
            .filter(|&i| !self.members[i].removed && !self.members[i].is_running())
            .collect();
        for &i in &which {
            self.members[i].spawn(&self.options);
        }
        self.wait_ready(&which).await;
    }

    /// Adds a member: MemberAdd through member `via`, then starts the new
    /// process with `--initial-cluster-state existing` and waits until it
    /// serves. Returns its index.
    pub async fn add_member(&mut self, via: usize, is_learner: bool) -> usize {
        let index = self.members.len();
        let ports = free_ports(2);
        let mut member = Member::new(format!("m{index}"), ports[0], ports[1]);
        let request = MemberAddRequest {
            peer_ur_ls: vec![member.peer_url()],
            is_learner,
        };
        let asked = Instant::now();
        let added = loop {
            match self.cluster(via).member_add(request.clone()).await {
                Ok(resp) => break resp.into_inner(),
                // etcd's --strict-reconfig-check: every voter must have been
                // connected for a while (5 s) first. Nothing was added.
                Err(e)
                    if e.message() == ERR_UNHEALTHY_CLUSTER
                        && asked.elapsed() < Duration::from_secs(15) =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("MemberAdd through m{via}: {e}"),
            }
        };
        let new = added.member.expect("MemberAdd answers with the new member");
        assert_eq!(new.is_learner, is_learner, "MemberAdd: {new:?}");
        member.id = Some(new.id);
        // As `etcdctl member add` prints ETCD_INITIAL_CLUSTER: every member by
        // name, the new one by the name it will have.
        let mut initial = Vec::new();
        for m in &added.members {
            let name = if m.id == new.id {
                member.name.clone()
            } else {
                m.name.clone()
            };
            for url in &m.peer_ur_ls {
                initial.push(format!("{name}={url}"));
            }
        }
        member.initial_cluster = initial.join(",");
        member.cluster_state = "existing";
        self.members.push(member);
        self.members[index].spawn(&self.options);
        self.wait_ready(&[index]).await;
        index
    }

    /// MemberRemove of member `i` through member `via`; returns the members
    /// the answer lists. The removed member's process is left alone (kill it
    /// with [`Cluster::kill_9`]).
    pub async fn remove_member(&mut self, via: usize, i: usize) -> Vec<MemberInfo> {
        let id = self.members[i].id();
        let asked = Instant::now();
        let resp = loop {
            match self
                .cluster(via)
                .member_remove(MemberRemoveRequest { id })
                .await
            {
                Ok(resp) => break resp.into_inner(),
                // etcd's --strict-reconfig-check, as in `add_member`.
                Err(e)
                    if e.message() == ERR_UNHEALTHY_CLUSTER
                        && asked.elapsed() < Duration::from_secs(15) =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("MemberRemove of m{i} through m{via}: {e:?}"),
            }
        };
        self.members[i].removed = true;
        resp.members
    }

    // -----------------------------------------------------------------------
    // Clients.

    /// A channel to member `i` that connects lazily (so it can be made to a
    /// member that is down) with the default request deadline.
    pub fn channel(&self, i: usize) -> Channel {
        channel_to(&self.members[i].client_url(), REQUEST_TIMEOUT)
    }

    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].client_url()
    }

    pub fn kv(&self, i: usize) -> KvClient<Channel> {
        KvClient::new(self.channel(i)).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    pub fn maintenance(&self, i: usize) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.channel(i)).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    pub fn cluster(&self, i: usize) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel(i))
    }

    // -----------------------------------------------------------------------
    // Questions to the members.

    pub async fn status(&self, i: usize) -> Result<StatusResponse, tonic::Status> {
        self.status_with(i, PROBE_TIMEOUT).await
    }

    async fn status_with(
        &self,
        i: usize,
        timeout: Duration,
    ) -> Result<StatusResponse, tonic::Status> {
        let channel = channel_to(&self.members[i].client_url(), timeout);
        let mut request = tonic::Request::new(StatusRequest {});
        request.set_timeout(timeout);
        MaintenanceClient::new(channel)
            .status(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// The leader every live member agrees on, if they agree now and the
    /// leader is itself live and says so.
    pub async fn current_leader(&self) -> Option<usize> {
        let live = self.live();
        let mut leaders = Vec::new();
        for &i in &live {
            match self.status(i).await {
                Ok(s) if s.leader != 0 => leaders.push(s.leader),
                _ => return None,
            }
        }
        let first = *leaders.first()?;
        if leaders.iter().any(|&l| l != first) {
            return None;
        }
        self.index_of(first).filter(|i| live.contains(i))
    }

    /// Waits until the live members agree on a live leader; returns it.
    pub async fn wait_leader(&self, timeout: Duration) -> usize {
        let started = Instant::now();
        loop {
            if let Some(leader) = self.current_leader().await {
                return leader;
            }
            if started.elapsed() > timeout {
                let mut seen = String::new();
                for i in self.live() {
                    let _ = writeln!(seen, "  m{i}: {:?}", self.status(i).await.map(|s| s.leader));
                }
                panic!("the live members agree on no live leader within {timeout:?}:\n{seen}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Member `i`'s current revision, read locally (serializable).
    pub async fn local_revision(&self, i: usize) -> Result<i64, tonic::Status> {
        let mut request = tonic::Request::new(RangeRequest {
            key: b("\u{1}no such key"),
            serializable: true,
            ..Default::default()
        });
        request.set_timeout(PROBE_TIMEOUT);
        let resp = KvClient::new(channel_to(&self.members[i].client_url(), PROBE_TIMEOUT))
            .range(request)
            .await?
            .into_inner();
        Ok(header_of(&resp.header).revision)
    }

    /// The cluster's revision, by a linearizable read through member `i`.
    pub async fn linearizable_revision(&self, i: usize) -> Result<i64, tonic::Status> {
        let mut request = tonic::Request::new(RangeRequest {
            key: b("\u{1}no such key"),
            ..Default::default()
        });
        request.set_timeout(REQUEST_TIMEOUT);
        let resp = self.kv(i).range(request).await?.into_inner();
        Ok(header_of(&resp.header).revision)
    }

    /// Waits until every live member has applied up to the cluster's latest
    /// revision (as a linearizable read through the leader reports it) and
    /// the revisions stay put; returns that revision. No writes may be in
    /// flight.
    pub async fn wait_converged(&self, timeout: Duration) -> i64 {
        let started = Instant::now();
        let mut last_seen = String::new();
        loop {
            if let Some(leader) = self.current_leader().await {
                if let Ok(target) = self.linearizable_revision(leader).await {
                    let mut revisions = BTreeMap::new();
                    for i in self.live() {
                        revisions.insert(i, self.local_revision(i).await.ok());
                    }
                    if revisions.values().all(|r| *r == Some(target)) {
                        return target;
                    }
                    last_seen = format!("leader m{leader} at {target}, members at {revisions:?}");
                }
            }
            if started.elapsed() > timeout {
                panic!("members did not converge within {timeout:?}: {last_seen}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// HashKV at `revision` from every live member.
    pub async fn hash_kv_all(&self, revision: i64) -> BTreeMap<usize, HashKvResponse> {
        let mut out = BTreeMap::new();
        for i in self.live() {
            let resp = self
                .maintenance(i)
                .hash_kv(HashKvRequest { revision })
                .await
                .unwrap_or_else(|e| panic!("HashKV at {revision} on m{i}: {e}"))
                .into_inner();
            out.insert(i, resp);
        }
        out
    }

    /// Asserts every live member's HashKV at `revision` is the same hash of
    /// the same revision.
    pub async fn assert_hash_kv_agrees(&self, revision: i64) {
        let hashes = self.hash_kv_all(revision).await;
        let summary: BTreeMap<usize, (u32, i64, i64)> = hashes
            .iter()
            .map(|(i, h)| (*i, (h.hash, h.hash_revision, h.compact_revision)))
            .collect();
        let first = summary.values().next().copied().expect("a live member");
        assert!(
            summary.values().all(|s| *s == first),
            "HashKV at revision {revision} differs between members (hash, hash_revision, compact_revision): {summary:?}"
        );
        // (etcd 3.4 does not report hash_revision.)
        if !super::against_reference_server() {
            assert_eq!(
                first.1, revision,
                "HashKV hashed another revision than asked"
            );
        }
    }

    /// MemberList through member `i`.
    pub async fn member_list(&self, i: usize) -> Vec<MemberInfo> {
        self.cluster(i)
            .member_list(MemberListRequest { linearizable: true })
            .await
            .unwrap_or_else(|e| panic!("MemberList through m{i}: {e}"))
            .into_inner()
            .members
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_9_all();
        if std::thread::panicking() {
            for m in &self.members {
                eprintln!("{}", m.log_tail());
            }
        }
    }
}

/// A channel to `url` that connects on first use and reconnects after a
/// failure, with a deadline on every request.
pub fn channel_to(url: &str, timeout: Duration) -> Channel {
    Endpoint::from_shared(url.to_string())
        .expect("endpoint URL")
        .connect_timeout(Duration::from_millis(500))
        .timeout(timeout)
        .connect_lazy()
}

pub fn header_of(
    h: &Option<oxetcd_proto::etcdserverpb::ResponseHeader>,
) -> &oxetcd_proto::etcdserverpb::ResponseHeader {
    h.as_ref().expect("response has a header")
}

/// `n` distinct ports that were free a moment ago.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}
