//! The cluster under test: N members of a server binary (oxetcd, etcd, any
//! binary taking etcd's flags) as real processes, each with its data dir and
//! log under the run directory. Either the tester starts and signals them
//! itself, with etcd's flags, or a `--db` hook does, as it likes ([`hook`]).
//!
//! Members listen on `10.77.<net>.<i+1>` inside network namespaces when the
//! tester is root ([`netns`]; partitions possible), otherwise on
//! `127.<net>.0.<i+1>` (every 127/8 address is loopback on Linux; no
//! partitions). Ports are etcd's 2379 (clients) and 2380 (peers).
//!
//! Faults on processes: kill -9 and restart on the same data dir,
//! SIGSTOP / SIGCONT, damage to the tail of a killed member's WAL
//! ([`wal`]), power cuts on a member's disk ([`power`]: its data dir on a
//! file system that loses unsynced writes); membership changes: remove a
//! member, add it back empty ([`membership`]); compaction and
//! defragmentation ([`maintenance`]).
//! Faults on links and clocks, when asked for: every member's peer port
//! behind a fault-injecting proxy ([`proxy`]), every member's wall clock
//! shifted through libfaketime ([`clock`]).

pub mod clock;
pub mod hook;
mod hooked;
pub mod launch;
pub mod maintenance;
pub mod membership;
pub mod netns;
pub mod power;
pub mod proxy;
pub mod wal;

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxetcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd_proto::etcdserverpb::StatusRequest;
use tonic::transport::{Channel, Endpoint};

use crate::error::JepsenError;
use crate::powerfs::PowerFs;
use hook::{Action, Hook};
use launch::Launch;
use netns::Netns;
use proxy::{LinkFault, Proxy};

/// How long the first start may take before the run is abandoned.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of a status probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);
/// How long adding a removed member back may be retried.
const REJOIN_PATIENCE: Duration = Duration::from_secs(20);
/// How long a learner may take to catch up before its promotion is given
/// up: on a healthy cluster, a few seconds of writes to replay.
const PROMOTE_PATIENCE: Duration = Duration::from_secs(30);
/// etcd's peer port.
const PEER_PORT: u16 = 2380;
/// Lines of a member's log quoted when it crashed.
const LOG_LINES: usize = 5;

/// How the cluster is laid out.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The server binary (with a hook: given to it as `SERVER`, if set).
    pub binary: PathBuf,
    /// Members started and signalled by this `--db` hook, not by the
    /// tester.
    pub db: Option<PathBuf>,
    pub members: usize,
    /// Under this directory: `<name>/data`, `<name>/log`.
    pub dir: PathBuf,
    /// Picks subnets and namespace names (1..=250).
    pub net: u8,
    /// Run each member in a namespace of its own (root only).
    pub namespaces: bool,
    pub token: String,
    /// Extra flags for every member (after a hook's `start`).
    pub extra_args: Vec<String>,
    /// Extra environment variables for every member (e.g. a server's
    /// test-only failpoints).
    pub env: Vec<(String, String)>,
    /// Put every member's peer port behind a [`proxy`] (for link faults).
    pub proxies: bool,
    /// libfaketime, preloaded into every member (for clock faults).
    pub faketime: Option<PathBuf>,
    /// Every member's data dir on a power-loss file system ([`power`]),
    /// for power cuts.
    pub power_fs: bool,
    /// Revisions the `compact` nemesis keeps below the current one.
    pub compact_keep: i64,
}

/// A started member's process, as the tester holds it.
enum Process {
    /// Spawned by the tester.
    Child(Child),
    /// Started by the `--db` hook, which keeps track of it.
    Hooked,
}

/// One member process.
pub struct Member {
    pub name: String,
    /// Its log, data dir (without power cuts) and the hook's files.
    dir: PathBuf,
    pub ip: Ipv4Addr,
    /// Where its proxy listens, if it has one: the peer URL it advertises.
    proxy_ip: Option<Ipv4Addr>,
    /// libfaketime's offset file for this member.
    clock_file: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    process: Option<Process>,
    paused: bool,
    /// Removed from the cluster by the nemesis, not yet added back.
    removed: Option<String>,
    /// Set once the member was added back: it starts with this
    /// `--initial-cluster` and `--initial-cluster-state existing`.
    joined: Option<String>,
    /// How many times its data was set aside (names the old dirs).
    removals: u32,
    /// Add it back as a learner, then promote it (else as a voter).
    rejoin_as_learner: bool,
    /// The file system its data dir is on, when power cuts are asked for.
    /// Dropped after the process is killed ([`Cluster`]'s drop stops the
    /// members before its fields go).
    disk: Option<PowerFs>,
}

impl Member {
    pub fn client_url(&self) -> String {
        format!("http://{}:2379", self.ip)
    }
    /// The peer URL the others dial: the proxy's, if there is one.
    fn peer_url(&self) -> String {
        format!("http://{}:{PEER_PORT}", self.proxy_ip.unwrap_or(self.ip))
    }
    fn listen_peer_url(&self) -> String {
        format!("http://{}:{PEER_PORT}", self.ip)
    }
    pub fn running(&self) -> bool {
        self.process.is_some()
    }
    pub fn paused(&self) -> bool {
        self.paused
    }
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

pub struct Cluster {
    config: ClusterConfig,
    /// The `--db` hook, when members are not the tester's to start.
    hook: Option<Hook>,
    pub members: Vec<Member>,
    netns: Option<Netns>,
    /// One per member, in member order, when the config asks for them.
    proxies: Vec<Proxy>,
}

impl Cluster {
    /// Starts every member and waits until each answers a status request
    /// and one of them is the leader.
    pub async fn start(config: ClusterConfig) -> Result<Cluster, JepsenError> {
        if config.members == 0 || config.members > 9 {
            return Err(JepsenError::Usage("--nodes must be 1 to 9".into()));
        }
        let netns = if config.namespaces {
            Some(Netns::create(config.net, config.members)?)
        } else {
            None
        };
        let mut members = Vec::new();
        let mut proxies = Vec::new();
        for i in 0..config.members {
            let name = format!("n{}", i + 1);
            let (ip, proxy_ip) = match &netns {
                Some(netns) => (netns.addr(i), netns.proxy_addr(i)),
                None => (
                    Ipv4Addr::new(127, config.net, 0, i as u8 + 1),
                    Ipv4Addr::new(127, config.net, 1, i as u8 + 1),
                ),
            };
            let dir = config.dir.join(&name);
            fs::create_dir_all(&dir).map_err(JepsenError::io(&dir))?;
            if config.proxies {
                if let Some(netns) = &netns {
                    netns.add_proxy_addr(i)?;
                }
                let listen = SocketAddr::from((proxy_ip, PEER_PORT));
                let upstream = SocketAddr::from((ip, PEER_PORT));
                proxies.push(Proxy::start(listen, upstream, i as u64).await?);
            }
            let (disk, data_dir) = if config.power_fs {
                let (disk, data_dir) = power::mount(&dir, i as u64)?;
                (Some(disk), data_dir)
            } else {
                (None, dir.join("data"))
            };
            let clock_file = dir.join("faketime");
            if config.faketime.is_some() {
                clock::set_offset(&clock_file, 0)?;
            }
            members.push(Member {
                name,
                dir: dir.clone(),
                ip,
                proxy_ip: config.proxies.then_some(proxy_ip),
                clock_file,
                data_dir,
                log: dir.join("log"),
                process: None,
                paused: false,
                removed: None,
                joined: None,
                removals: 0,
                rejoin_as_learner: false,
                disk,
            });
        }
        let hook = config.db.clone().map(Hook::new);
        let mut cluster = Cluster {
            config,
            hook,
            members,
            netns,
            proxies,
        };
        for i in 0..cluster.members.len() {
            cluster.spawn(i)?;
        }
        cluster.wait_ready(START_TIMEOUT).await?;
        Ok(cluster)
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// What member `i` is started with now: the whole cluster, or the
    /// membership it was added back to.
    fn launch(&self, i: usize) -> Launch<'_> {
        let member = &self.members[i];
        let (initial_cluster, initial_cluster_state) = match &member.joined {
            Some(joined) => (joined.clone(), "existing"),
            None => (self.initial_cluster(), "new"),
        };
        Launch {
            name: &member.name,
            index: i,
            member_dir: &member.dir,
            data_dir: &member.data_dir,
            log: &member.log,
            client_url: member.client_url(),
            listen_peer_url: member.listen_peer_url(),
            advertise_peer_url: member.peer_url(),
            initial_cluster,
            initial_cluster_state,
            token: &self.config.token,
        }
    }

    /// The environment every member's server gets: the run's
    /// `--server-env`, and libfaketime with clock faults.
    fn server_env(&self, i: usize) -> Vec<(String, String)> {
        let mut env = self.config.env.clone();
        if let Some(lib) = &self.config.faketime {
            env.extend(clock::env(lib, &self.members[i].clock_file));
        }
        env
    }

    /// Starts member `i`'s process (the first time, or after a kill).
    fn spawn(&mut self, i: usize) -> Result<(), JepsenError> {
        let process = match &self.hook {
            Some(hook) => {
                self.call_hook(hook, Action::Start, i)?;
                Process::Hooked
            }
            None => Process::Child(self.spawn_child(i)?),
        };
        let member = &mut self.members[i];
        member.process = Some(process);
        member.paused = false;
        Ok(())
    }

    /// Starts member `i`'s server with etcd's flags.
    fn spawn_child(&self, i: usize) -> Result<Child, JepsenError> {
        let binary = &self.config.binary;
        let member = &self.members[i];
        let log = File::options()
            .create(true)
            .append(true)
            .open(&member.log)
            .map_err(JepsenError::io(&member.log))?;
        let log_err = log.try_clone().map_err(JepsenError::io(&member.log))?;
        let mut command = match (&self.netns, self.config.namespaces) {
            // `ip netns exec` execs the binary itself: the child's pid is the
            // member's, so signals reach it directly.
            (Some(netns), true) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &netns.ns(i)]).arg(binary);
                c
            }
            _ => Command::new(binary),
        };
        command
            .args(self.launch(i).etcd_flags())
            .args(&self.config.extra_args)
            .envs(self.server_env(i))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        command.spawn().map_err(|source| JepsenError::Spawn {
            binary: binary.clone(),
            source,
        })
    }

    /// Waits until every running member answers and a leader is known.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), JepsenError> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut answered = 0;
            let mut leader = false;
            let mut last = String::new();
            for member in self.members.iter().filter(|m| m.running()) {
                match status(member).await {
                    Ok((id, lead)) => {
                        answered += 1;
                        leader |= lead != 0 && id != 0;
                    }
                    Err(e) => last = format!("{}: {e}", member.name),
                }
            }
            if answered == self.members.iter().filter(|m| m.running()).count() && leader {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(JepsenError::NotReady(format!(
                    "{answered} of {} members answered ({last}); logs in {}",
                    self.members.len(),
                    self.config.dir.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The index of the member that says it is the leader, if one does.
    pub async fn leader(&self) -> Option<usize> {
        for (i, member) in self.members.iter().enumerate() {
            if !member.running() || member.paused {
                continue;
            }
            if let Ok((id, leader)) = status(member).await {
                if id != 0 && id == leader {
                    return Some(i);
                }
            }
        }
        None
    }

    /// Members whose process ended without being killed by the nemesis
    /// (crashed, or refused to start), or that could not be added back after
    /// a removal: (name, what happened, last log lines). With a hook, its
    /// `alive` says whether the process ended.
    pub fn crashed(&mut self) -> Vec<(String, String, String)> {
        let mut crashed = Vec::new();
        for i in 0..self.members.len() {
            if let Some(why) = &self.members[i].removed {
                crashed.push((self.members[i].name.clone(), why.clone(), String::new()));
            }
            let ended = match self.members[i].process.as_mut() {
                None => None,
                Some(Process::Child(child)) => match child.try_wait() {
                    Ok(Some(status)) => Some(format!("exited by itself ({status})")),
                    _ => None,
                },
                Some(Process::Hooked) => self.hook_ended(i),
            };
            if let Some(why) = ended {
                let member = &self.members[i];
                let log = std::fs::read_to_string(&member.log).unwrap_or_default();
                crashed.push((member.name.clone(), why, last_lines(&log, LOG_LINES)));
            }
        }
        crashed
    }

    /// Damages the end of a killed member's newest WAL file (see [`wal`]);
    /// says what it did.
    pub fn damage_wal(&mut self, i: usize, damage: &wal::Damage) -> Result<String, JepsenError> {
        self.kill(i)?;
        let member = &self.members[i];
        let done = wal::damage(&member.data_dir, damage)?;
        Ok(format!("{}: {done}", member.name))
    }

    /// kill -9 each of `members`, then cuts the power of their disks (with
    /// `tear`, a torn last write per file); says what each lost. They are
    /// restarted by [`Cluster::recover`].
    pub fn power_cut(&mut self, members: &[usize], tear: bool) -> Result<String, JepsenError> {
        for &m in members {
            self.kill(m)?;
        }
        let mut said = Vec::new();
        for &m in members {
            let member = &self.members[m];
            let Some(disk) = &member.disk else {
                return Err(JepsenError::Usage(
                    "power cuts need the members' data dirs on the power-loss file system".into(),
                ));
            };
            said.push(format!("{}: {}", member.name, disk.power_cut(tear)?));
        }
        Ok(said.join("; "))
    }

    /// kill -9, then reaps the process (the hook's `kill`: returns once
    /// the process is gone).
    pub fn kill(&mut self, i: usize) -> Result<(), JepsenError> {
        self.end(i, Action::Kill)
    }

    /// Ends member `i`'s process: kill -9 (`kill`), or the hook's `kill`
    /// or `stop`.
    fn end(&mut self, i: usize, action: Action) -> Result<(), JepsenError> {
        match (self.members[i].process.take(), &self.hook) {
            (Some(Process::Child(mut child)), _) => {
                signal(&self.members[i].name, &child, libc::SIGKILL)?;
                let _ = child.wait();
            }
            (Some(Process::Hooked), Some(hook)) => self.call_hook(hook, action, i)?,
            // A hook's `start` that failed may still have launched the
            // store: the hook is asked to stop every member at the end.
            (None, Some(hook)) if action == Action::Stop => self.call_hook(hook, action, i)?,
            _ => {}
        }
        self.members[i].paused = false;
        Ok(())
    }

    /// Starts a killed member again on its data dir (not a removed one).
    pub fn restart(&mut self, i: usize) -> Result<(), JepsenError> {
        if self.members[i].running() || self.members[i].removed.is_some() {
            return Ok(());
        }
        self.spawn(i)
    }

    /// Client URLs of the members that can answer now, but `except`.
    fn reachable(&self, except: usize) -> Vec<String> {
        self.members
            .iter()
            .enumerate()
            .filter(|(j, m)| *j != except && m.running() && !m.paused && m.removed.is_none())
            .map(|(_, m)| m.client_url())
            .collect()
    }

    /// Removes member `i` from the cluster (Cluster.MemberRemove), kills it
    /// and sets its data aside; says what happened. A removal the cluster
    /// refused leaves everything as it was.
    pub async fn remove_member(
        &mut self,
        i: usize,
        rejoin_as_learner: bool,
    ) -> Result<String, JepsenError> {
        let via = self.reachable(i);
        let peer_url = self.members[i].peer_url();
        if let Err(e) = membership::remove(&via, &peer_url).await {
            return Ok(format!("removing {} failed: {e}", self.members[i].name));
        }
        self.kill(i)?;
        let member = &mut self.members[i];
        member.removals += 1;
        let aside = member
            .data_dir
            .with_file_name(format!("data.removed-{}", member.removals));
        if member.data_dir.exists() {
            fs::rename(&member.data_dir, &aside).map_err(JepsenError::io(&aside))?;
        }
        member.removed = Some("not added back yet".into());
        member.rejoin_as_learner = rejoin_as_learner;
        let back = if rejoin_as_learner {
            "a learner, then promoted"
        } else {
            "a voter"
        };
        Ok(format!("{} removed; back as {back}", member.name))
    }

    /// Compacts the store (keeping the last revisions) and defragments
    /// member `i`; says what happened.
    pub async fn compact(&self, i: usize) -> String {
        let via = self.reachable(usize::MAX);
        let said = maintenance::compact_and_defrag(
            &via,
            &self.members[i].client_url(),
            self.config.compact_keep,
        )
        .await;
        said.replace(&self.members[i].client_url(), &self.members[i].name)
    }

    /// Adds a removed member back (Cluster.MemberAdd) and starts it, empty,
    /// to join the cluster; a learner is then promoted once the cluster
    /// says it has caught up. On failure it stays out (or a learner), and
    /// says why.
    async fn rejoin(&mut self, i: usize) -> Result<(), JepsenError> {
        let via = self.reachable(i);
        let (name, peer_url) = (self.members[i].name.clone(), self.members[i].peer_url());
        let learner = self.members[i].rejoin_as_learner;
        match membership::add(&via, &peer_url, learner, REJOIN_PATIENCE).await {
            Ok(members) => {
                let member = &mut self.members[i];
                member.joined = Some(membership::initial_cluster(&members, &name, &peer_url));
                member.removed = None;
                self.spawn(i)?;
            }
            Err(e) => {
                self.members[i].removed = Some(format!("adding it back failed: {e}"));
                return Ok(());
            }
        }
        if learner {
            if let Err(e) = membership::promote(&via, &peer_url, PROMOTE_PATIENCE).await {
                self.members[i].removed = Some(format!("promoting the learner failed: {e}"));
            }
        }
        Ok(())
    }

    /// SIGSTOP (the hook's `pause`): the process keeps its sockets but
    /// does nothing.
    pub fn pause(&mut self, i: usize) -> Result<(), JepsenError> {
        if self.deliver(i, libc::SIGSTOP, Action::Pause)? {
            self.members[i].paused = true;
        }
        Ok(())
    }

    /// SIGCONT (the hook's `resume`).
    pub fn resume(&mut self, i: usize) -> Result<(), JepsenError> {
        self.deliver(i, libc::SIGCONT, Action::Resume)?;
        self.members[i].paused = false;
        Ok(())
    }

    /// Sends `signal` to member `i`'s child, or has the hook do `action`;
    /// false when it has no process.
    fn deliver(&self, i: usize, sig: libc::c_int, action: Action) -> Result<bool, JepsenError> {
        let member = &self.members[i];
        match (&member.process, &self.hook) {
            (Some(Process::Child(child)), _) => signal(&member.name, child, sig)?,
            (Some(Process::Hooked), Some(hook)) => self.call_hook(hook, action, i)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Whether partitions can be made (members in namespaces).
    pub fn can_partition(&self) -> bool {
        self.netns.is_some()
    }

    pub fn partition(&self, groups: &[Vec<usize>]) -> Result<(), JepsenError> {
        match &self.netns {
            Some(netns) => netns.partition(groups),
            None => Err(JepsenError::Usage(
                "partitions need network namespaces (run as root)".into(),
            )),
        }
    }

    /// Cuts single links (for rings and bridges, which are not groups).
    pub fn cut(&self, links: &[(usize, usize)]) -> Result<(), JepsenError> {
        match &self.netns {
            Some(netns) => links.iter().try_for_each(|&(a, b)| netns.cut(a, b)),
            None => Err(JepsenError::Usage(
                "partitions need network namespaces (run as root)".into(),
            )),
        }
    }

    /// Whether link faults can be made (peer ports behind proxies).
    pub fn can_slow_links(&self) -> bool {
        !self.proxies.is_empty()
    }

    /// Sets the fault on the links into each of `members`.
    pub fn fault_links(&self, members: &[usize], fault: &LinkFault) -> Result<(), JepsenError> {
        if self.proxies.is_empty() {
            return Err(JepsenError::Usage(
                "link faults need the members behind proxies".into(),
            ));
        }
        for &m in members {
            self.proxies[m].set(fault.clone());
        }
        Ok(())
    }

    /// Shifts member `i`'s wall clock `offset_s` seconds from the true time.
    pub fn shift_clock(&self, i: usize, offset_s: i64) -> Result<(), JepsenError> {
        if self.config.faketime.is_none() {
            return Err(JepsenError::Usage(
                "clock faults need libfaketime preloaded into the members".into(),
            ));
        }
        clock::set_offset(&self.members[i].clock_file, offset_s)
    }

    /// Ends partitions, link faults and clock shifts.
    pub fn heal(&self) -> Result<(), JepsenError> {
        for proxy in &self.proxies {
            proxy.set(LinkFault::None);
        }
        if self.config.faketime.is_some() {
            for member in &self.members {
                clock::set_offset(&member.clock_file, 0)?;
            }
        }
        match &self.netns {
            Some(netns) => netns.heal(),
            None => Ok(()),
        }
    }

    /// Ends every fault: heals the network, resumes and restarts members,
    /// adds removed members back.
    pub async fn recover(&mut self) -> Result<(), JepsenError> {
        self.heal()?;
        for i in 0..self.members.len() {
            self.resume(i)?;
            self.restart(i)?;
        }
        for i in 0..self.members.len() {
            if self.members[i].removed.is_some() {
                self.rejoin(i).await?;
            }
        }
        Ok(())
    }

    /// Kills every member, or has the hook stop it (the data stays in the
    /// run directory). A hook's failure is printed: nothing else can be
    /// done about it at the end of a run.
    pub fn stop(&mut self) {
        for i in 0..self.members.len() {
            let _ = self.resume(i);
            if let Err(e) = self.end(i, Action::Stop) {
                eprintln!("oxetcd-jepsen: {e}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn signal(member: &str, child: &Child, signal: libc::c_int) -> Result<(), JepsenError> {
    // SAFETY: kill(2) on our own child's pid, which is not yet reaped (we
    // hold its Child), so the pid cannot have been reused.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    if rc != 0 {
        return Err(JepsenError::Signal {
            member: member.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// (member id, leader id) from Maintenance.Status.
async fn status(member: &Member) -> Result<(u64, u64), String> {
    let channel = channel(&member.client_url(), PROBE_TIMEOUT)?;
    let mut client = MaintenanceClient::new(channel);
    match tokio::time::timeout(PROBE_TIMEOUT, client.status(StatusRequest {})).await {
        Ok(Ok(response)) => {
            let status = response.into_inner();
            let id = status.header.map(|h| h.member_id).unwrap_or(0);
            Ok((id, status.leader))
        }
        Ok(Err(status)) => Err(status.to_string()),
        Err(_) => Err("no answer".into()),
    }
}

/// A lazily connecting channel: it dials on first use and re-dials after a
/// member restarts.
pub fn channel(url: &str, connect_timeout: Duration) -> Result<Channel, String> {
    Endpoint::from_shared(url.to_owned())
        .map(|e| {
            e.connect_timeout(connect_timeout)
                .tcp_nodelay(true)
                .connect_lazy()
        })
        .map_err(|e| e.to_string())
}
