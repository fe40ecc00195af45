//! Multi-member clusters of real `oxetcd` processes (tests/support/cluster.rs):
//! replication, failover under write load, full restarts, catching up by
//! snapshot, learners and membership changes, a paused (partitioned) leader,
//! leadership transfer (MoveLeader), etcd's --strict-reconfig-check.
//!
//! What every scenario checks in the end ([`verify`]): every member has
//! applied up to the cluster's latest revision; all members hold exactly the
//! same key-values; every acknowledged write is there with the revision its
//! response reported; every key was written once, so the revisions present are
//! exactly 2..=N with no gap or repeat; and Maintenance.HashKV at N is the same
//! on every member.
//!
//! The tests run one at a time (each starts its own processes, and the
//! failover times they measure mean little on a machine shared with another
//! cluster). The measured failover times are printed (`--nocapture`).
//! Members use short timings (50 ms heartbeats, 500 ms election timeout)
//! except in the test of the 3 s failover bar, which uses etcd's
//! defaults.
//!
//! The expectations are etcd's: every scenario passes against etcd 3.4 with
//! `OXETCD_TEST_SERVER=/usr/bin/etcd cargo test --test cluster` (checks of
//! oxetcd's own log lines and data dir are skipped there).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxetcd_proto::etcdserverpb::kv_client::KvClient;
use oxetcd_proto::etcdserverpb::{
    MemberAddRequest, MemberPromoteRequest, MemberRemoveRequest, MoveLeaderRequest, PutRequest,
    RangeRequest, ResponseHeader,
};
use oxetcd_proto::mvccpb::KeyValue;
use support::cluster::{channel_to, header_of, Cluster, ClusterOptions, ERR_UNHEALTHY_CLUSTER};
use support::*;
use tonic::transport::Channel;

/// One scenario at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The first revision a write gets in a new cluster (an empty store is at 1).
const FIRST_REVISION: i64 = 2;
/// How long members get to agree again after a disruption.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// What the issue asks of a failover: a new leader serves writes by then.
const FAILOVER_LIMIT: Duration = Duration::from_secs(3);

/// An acknowledged write.
#[derive(Clone, Debug)]
struct Ack {
    key: String,
    value: String,
    revision: i64,
    /// When the request was sent and when its answer came.
    sent: Instant,
    answered: Instant,
}

fn put_request(key: &str, value: &str, timeout: Duration) -> tonic::Request<PutRequest> {
    let mut request = tonic::Request::new(put_req(key, value));
    request.set_timeout(timeout);
    request
}

fn range_request(req: RangeRequest, timeout: Duration) -> tonic::Request<RangeRequest> {
    let mut request = tonic::Request::new(req);
    request.set_timeout(timeout);
    request
}

fn kv_to(cluster: &Cluster, i: usize, timeout: Duration) -> KvClient<Channel> {
    kv_client(channel_to(&cluster.endpoint(i), timeout))
}

// ---------------------------------------------------------------------------
// Write load.

/// Writers putting distinct keys, each request once (never retried: a
/// failed request may still have been applied, which the checks allow).
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<(Vec<Ack>, usize)>>,
}

impl Load {
    /// `writers` tasks; writer `w` starts on member `w % n` and moves to the
    /// next member after each failed request.
    fn start(cluster: &Cluster, prefix: &str, writers: usize) -> Load {
        let endpoints: Vec<String> = (0..cluster.len()).map(|i| cluster.endpoint(i)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let tasks = (0..writers)
            .map(|w| {
                let endpoints = endpoints.clone();
                let (stop, acked) = (stop.clone(), acked.clone());
                let prefix = prefix.to_string();
                tokio::spawn(async move {
                    let timeout = Duration::from_secs(3);
                    let clients: Vec<KvClient<Channel>> = endpoints
                        .iter()
                        .map(|e| kv_client(channel_to(e, timeout)))
                        .collect();
                    let mut target = w % clients.len();
                    let (mut acks, mut errors) = (Vec::new(), 0);
                    let mut seq = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        let key = format!("{prefix}/w{w:02}/{seq:06}");
                        let value = format!("{prefix}-{w}-{seq}");
                        seq += 1;
                        let sent = Instant::now();
                        let mut kv = clients[target].clone();
                        match kv.put(put_request(&key, &value, timeout)).await {
                            Ok(resp) => {
                                let revision = header_of(&resp.into_inner().header).revision;
                                acks.push(Ack {
                                    key,
                                    value,
                                    revision,
                                    sent,
                                    answered: Instant::now(),
                                });
                                acked.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(_) => {
                                errors += 1;
                                target = (target + 1) % clients.len();
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                    (acks, errors)
                })
            })
            .collect();
        Load { stop, acked, tasks }
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    /// Stops the writers; returns every acknowledged write and the number of
    /// failed requests.
    async fn stop(self) -> (Vec<Ack>, usize) {
        self.stop.store(true, Ordering::SeqCst);
        let mut acks = Vec::new();
        let mut errors = 0;
        for task in self.tasks {
            let (a, e) = tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("a writer did not stop")
                .expect("writer task panicked");
            acks.extend(a);
            errors += e;
        }
        (acks, errors)
    }
}

/// Waits for a write load to acknowledge `at_least` more writes.
async fn wait_for_progress(load: &Load, at_least: usize, timeout: Duration, what: &str) {
    let start = load.acked();
    let started = Instant::now();
    while load.acked() < start + at_least {
        assert!(
            started.elapsed() < timeout,
            "{what}: only {} writes acknowledged in {timeout:?}",
            load.acked() - start
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// After a kill or pause at `since`: one prober per member in `through`
/// puts (short deadlines, retrying at once) until one put is acknowledged;
/// returns the time from `since` to that acknowledgement, and every probe
/// write acknowledged (the first one first).
async fn first_write_after(
    cluster: &Cluster,
    through: &[usize],
    since: Instant,
    prefix: &str,
) -> (Duration, Vec<Ack>) {
    let timeout = Duration::from_millis(300);
    let done = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for &i in through {
        let mut kv = kv_to(cluster, i, timeout);
        let (done, tx) = (done.clone(), tx.clone());
        let prefix = format!("{prefix}/m{i}");
        tokio::spawn(async move {
            for attempt in 0usize.. {
                if done.load(Ordering::SeqCst) {
                    return;
                }
                let key = format!("{prefix}/{attempt:04}");
                let value = format!("probe {attempt}");
                let sent = Instant::now();
                if let Ok(resp) = kv.put(put_request(&key, &value, timeout)).await {
                    let ack = Ack {
                        key,
                        value,
                        revision: header_of(&resp.into_inner().header).revision,
                        sent,
                        answered: Instant::now(),
                    };
                    let _ = tx.send(ack);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }
    drop(tx);
    let first = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("no write acknowledged within 20 s")
        .expect("probers");
    done.store(true, Ordering::SeqCst);
    // Probers that got an acknowledgement too: their writes must be kept as
    // well, so wait for the rest to finish.
    let mut acks = vec![first];
    while let Some(ack) = rx.recv().await {
        acks.push(ack);
    }
    acks.sort_by_key(|a| a.answered);
    (acks[0].answered - since, acks)
}

// ---------------------------------------------------------------------------
// Checks.

/// What [`verify`] found.
struct Verified {
    revision: i64,
    kvs: Vec<KeyValue>,
}

/// The end-of-scenario checks (see the module docs). Every key in the store
/// must have been written exactly once. Returns the revision all agree on.
async fn verify(cluster: &Cluster, acked: &[Ack]) -> Verified {
    let verified = verify_same_everywhere(cluster, acked).await;
    let mut revisions = Vec::new();
    for kv in &verified.kvs {
        let key = key_str(kv);
        assert_eq!(kv.version, 1, "{key} was written more than once");
        assert_eq!(kv.create_revision, kv.mod_revision, "{key}");
        revisions.push(kv.mod_revision);
    }
    revisions.sort_unstable();
    let revision = verified.revision;
    let expected: Vec<i64> = (FIRST_REVISION..=revision).collect();
    if revisions != expected {
        let missing: Vec<i64> = expected
            .iter()
            .filter(|r| revisions.binary_search(r).is_err())
            .take(20)
            .copied()
            .collect();
        let repeated: Vec<i64> = revisions
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .take(20)
            .collect();
        panic!(
            "revisions present are not exactly {FIRST_REVISION}..={revision}: {} present, missing (first 20) {missing:?}, repeated {repeated:?}",
            revisions.len()
        );
    }
    verified
}

/// Every member applied up to the latest revision and holds the same
/// key-values, with every acknowledged write at its revision; HashKV agrees.
async fn verify_same_everywhere(cluster: &Cluster, acked: &[Ack]) -> Verified {
    let revision = cluster.wait_converged(CONVERGE_TIMEOUT).await;

    // Every member's whole store, by a linearizable read through it.
    let mut reference: Option<(usize, Vec<KeyValue>)> = None;
    for i in cluster.live() {
        let resp = cluster
            .kv(i)
            .range(all_req())
            .await
            .unwrap_or_else(|e| panic!("range everything through m{i}: {e}"))
            .into_inner();
        assert_eq!(
            header_of(&resp.header).revision,
            revision,
            "m{i} answered a full range at another revision"
        );
        match &reference {
            None => reference = Some((i, resp.kvs)),
            Some((j, kvs)) => {
                if *kvs != resp.kvs {
                    let theirs: BTreeMap<String, &KeyValue> =
                        kvs.iter().map(|kv| (key_str(kv), kv)).collect();
                    let ours: BTreeMap<String, &KeyValue> =
                        resp.kvs.iter().map(|kv| (key_str(kv), kv)).collect();
                    let differing: Vec<&String> = theirs
                        .keys()
                        .chain(ours.keys())
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .filter(|k| theirs.get(*k) != ours.get(*k))
                        .take(10)
                        .collect();
                    panic!(
                        "m{i} and m{j} hold different key-values at revision {revision} ({} vs {} keys); first differing keys: {differing:?}",
                        resp.kvs.len(),
                        kvs.len()
                    );
                }
            }
        }
    }
    let (_, kvs) = reference.expect("a live member");

    let by_key: BTreeMap<String, &KeyValue> = kvs.iter().map(|kv| (key_str(kv), kv)).collect();
    for ack in acked {
        let kv = by_key.get(&ack.key).unwrap_or_else(|| {
            panic!(
                "acknowledged write {} (revision {}) was lost",
                ack.key, ack.revision
            )
        });
        assert_eq!(value_str(kv), ack.value, "{}: wrong value", ack.key);
        assert_eq!(
            kv.mod_revision, ack.revision,
            "{} is at another revision than its response said",
            ack.key
        );
    }
    cluster.assert_hash_kv_agrees(revision).await;
    Verified { revision, kvs }
}

/// A put through every live member is acknowledged, at the next revisions.
async fn writes_continue(cluster: &Cluster, prefix: &str, after: i64) -> Vec<Ack> {
    let mut acks = Vec::new();
    let mut expected = after;
    for i in cluster.live() {
        let key = format!("{prefix}/m{i}");
        let sent = Instant::now();
        let resp = put(&mut cluster.kv(i), &key, "after").await;
        expected += 1;
        let revision = rev(&resp.header);
        assert_eq!(revision, expected, "a put through m{i}");
        acks.push(Ack {
            key,
            value: "after".to_string(),
            revision,
            sent,
            answered: Instant::now(),
        });
    }
    acks
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// ---------------------------------------------------------------------------
// 1. Replication.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_replicate_and_agree() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3).await;
    let mut acks = Vec::new();

    // A write through each member; linearizable reads on every member see it.
    for i in 0..3 {
        let key = format!("through/m{i}");
        let value = format!("written through m{i}");
        let sent = Instant::now();
        let resp = put(&mut cluster.kv(i), &key, &value).await;
        let ack = Ack {
            key: key.clone(),
            value: value.clone(),
            revision: rev(&resp.header),
            sent,
            answered: Instant::now(),
        };
        for j in 0..3 {
            let got = get(&mut cluster.kv(j), &key)
                .await
                .unwrap_or_else(|| panic!("m{j} does not see {key} written through m{i}"));
            assert_eq!(value_str(&got), value, "{key} read through m{j}");
            assert_eq!(got.mod_revision, ack.revision, "{key} read through m{j}");
        }
        acks.push(ack);
    }
    let revisions: Vec<i64> = acks.iter().map(|a| a.revision).collect();
    assert_eq!(
        revisions,
        vec![FIRST_REVISION, FIRST_REVISION + 1, FIRST_REVISION + 2],
        "one revision per write, in order, wherever it was sent"
    );

    // The latest write to one key, through whichever member, is what the
    // next linearizable read on every member returns.
    let mut latest = (String::new(), 0);
    for round in 0..6 {
        let value = format!("v{round}");
        let resp = put(&mut cluster.kv(round % 3), "shared", &value).await;
        latest = (value, rev(&resp.header));
        for j in 0..3 {
            let got = get(&mut cluster.kv(j), "shared").await.expect("shared");
            assert_eq!(
                (value_str(&got), got.mod_revision),
                latest,
                "a linearizable read through m{j} after the put of round {round} through m{}",
                round % 3
            );
        }
    }

    // Serializable reads get there too.
    for j in 0..3 {
        let started = Instant::now();
        loop {
            let req = RangeRequest {
                serializable: true,
                ..get_req("shared")
            };
            let resp = range(&mut cluster.kv(j), req).await;
            let seen = resp.kvs.first().map(|kv| (value_str(kv), kv.mod_revision));
            if seen.as_ref() == Some(&latest) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "a serializable read through m{j} still sees {seen:?}, not {latest:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // The same data, hash and headers everywhere.
    let revision = cluster.wait_converged(CONVERGE_TIMEOUT).await;
    assert_eq!(revision, latest.1);
    cluster.assert_hash_kv_agrees(revision).await;
    let mut headers: Vec<ResponseHeader> = Vec::new();
    for i in 0..3 {
        let status = cluster.status(i).await.expect("status");
        headers.push(*header_of(&status.header));
        assert_eq!(
            status.leader,
            cluster
                .member(cluster.wait_leader(Duration::from_secs(5)).await)
                .id(),
            "m{i} names another leader"
        );
    }
    let member_ids: BTreeSet<u64> = headers.iter().map(|h| h.member_id).collect();
    assert_eq!(member_ids.len(), 3, "member IDs in headers: {headers:?}");
    let cluster_ids: BTreeSet<u64> = headers.iter().map(|h| h.cluster_id).collect();
    assert_eq!(cluster_ids.len(), 1, "cluster IDs in headers: {headers:?}");
    assert!(
        headers.iter().all(|h| h.raft_term > 0),
        "raft terms in headers: {headers:?}"
    );

    // MemberList, through every member: three started voters.
    let expected: BTreeMap<u64, (String, Vec<String>, Vec<String>)> = (0..3)
        .map(|i| {
            let m = cluster.member(i);
            (
                m.id(),
                (m.name.clone(), vec![m.peer_url()], vec![m.client_url()]),
            )
        })
        .collect();
    for i in 0..3 {
        let members = cluster.member_list(i).await;
        let listed: BTreeMap<u64, (String, Vec<String>, Vec<String>)> = members
            .iter()
            .map(|m| {
                assert!(!m.is_learner, "{m:?} listed as a learner");
                (
                    m.id,
                    (m.name.clone(), m.peer_ur_ls.clone(), m.client_ur_ls.clone()),
                )
            })
            .collect();
        assert_eq!(listed, expected, "MemberList through m{i}");
    }

    // `shared` was written six times, so not `verify`.
    let verified = verify_same_everywhere(&cluster, &acks).await;
    assert_eq!(verified.kvs.len(), 4);
    assert_eq!(verified.revision, latest.1);
}

// ---------------------------------------------------------------------------
// 2. Failover under load.

/// `n` members, 8 writers, kill -9 the leader mid-load: a new leader takes
/// writes within [`FAILOVER_LIMIT`], and nothing acknowledged is lost.
async fn kill_leader_under_load(n: usize, options: ClusterOptions) {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let timings = format!(
        "--heartbeat-interval {} --election-timeout {}",
        options.heartbeat_ms, options.election_ms
    );
    let mut cluster = Cluster::start_with(n, options).await;
    let load = Load::start(&cluster, "load", 8);
    wait_for_progress(&load, 200, Duration::from_secs(10), "before the kill").await;

    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let before_kill = load.acked();
    let killed_at = Instant::now();
    cluster.kill_9(leader);
    let survivors = cluster.live();
    let (probe_failover, probes) =
        first_write_after(&cluster, &survivors, killed_at, "probe").await;
    let new_leader = cluster.wait_leader(Duration::from_secs(5)).await;

    // The load goes on with the new leader.
    wait_for_progress(&load, 200, Duration::from_secs(10), "after the kill").await;
    let (mut acks, errors) = load.stop().await;
    let after_kill = acks.iter().filter(|a| a.sent > killed_at).count();
    assert!(after_kill > 0, "no writer's write succeeded after the kill");
    // The writers' own view of the failover: the first of their requests sent
    // after the kill that was acknowledged.
    let writers_failover = acks
        .iter()
        .filter(|a| a.sent > killed_at)
        .map(|a| a.answered - killed_at)
        .min()
        .expect("a write after the kill");
    let failover = probe_failover.min(writers_failover);
    eprintln!(
        "{n} members ({timings}): killed leader m{leader} after {before_kill} acknowledged writes; \
         new leader m{new_leader}; first write acknowledged {} ms after the kill \
         (probes {} ms, writers {} ms); {} writes acknowledged ({after_kill} sent after the kill), \
         {errors} failed requests",
        ms(failover),
        ms(probe_failover),
        ms(writers_failover),
        acks.len(),
    );
    assert!(
        failover <= FAILOVER_LIMIT,
        "{n} members ({timings}): the first write after killing the leader was acknowledged only {} ms after the kill",
        ms(failover)
    );
    acks.extend(probes);

    // The killed member comes back and catches up; then everything agrees.
    cluster.restart(leader).await;
    let verified = verify(&cluster, &acks).await;
    let more = writes_continue(&cluster, "after", verified.revision).await;
    acks.extend(more);
    verify(&cluster, &acks).await;
    eprintln!("{n} members: scenario took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    kill_leader_under_load(3, ClusterOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_of_five_under_load_loses_no_acknowledged_write() {
    kill_leader_under_load(5, ClusterOptions::default()).await;
}

/// The bar, with etcd's default timings (100 ms heartbeats, 1 s
/// election timeout): etcd's followers campaign 1-2 s after the last
/// heartbeat, so a new leader serves well within 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_with_etcds_default_timings_fails_over_within_3_s() {
    let options = ClusterOptions {
        heartbeat_ms: 100,
        election_ms: 1000,
        ..ClusterOptions::default()
    };
    kill_leader_under_load(3, options).await;
}

// ---------------------------------------------------------------------------
// 3. Everyone at once.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_member_at_once_keeps_everything() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3).await;
    let load = Load::start(&cluster, "load", 8);
    wait_for_progress(&load, 300, Duration::from_secs(10), "before the kill").await;
    cluster.kill_9_all();
    let (acks, _) = load.stop().await;
    eprintln!(
        "{} writes acknowledged before every member was killed",
        acks.len()
    );

    cluster.restart_all().await;
    let mut acks = acks;
    let verified = verify(&cluster, &acks).await;
    acks.extend(writes_continue(&cluster, "after", verified.revision).await);

    // And once more, without load: a clean state survives a full restart too.
    cluster.kill_9_all();
    cluster.restart_all().await;
    verify(&cluster, &acks).await;
}

/// A leader killed and back at once must not lead on in its term, as etcd's
/// does not: it replicates entries before its own flush, so its followers
/// may have committed one of that term it lost, and leading on it would
/// write another entry under the same log id (raft/vendor/openraft/OXETCD-PATCH.md).
/// The election timeout is long enough that the followers would still be
/// following it, in the old term, had it taken its leadership back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_leader_leads_only_after_a_new_election() {
    let _serial = SERIAL.lock().await;
    let options = ClusterOptions {
        heartbeat_ms: 100,
        election_ms: 3000,
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start_with(3, options).await;
    let leader = cluster.wait_leader(Duration::from_secs(15)).await;
    let term = cluster.status(leader).await.expect("Status").raft_term;
    cluster.restart(leader).await;
    let now_leading = cluster.wait_leader(Duration::from_secs(15)).await;
    let new_term = cluster.status(now_leading).await.expect("Status").raft_term;
    assert!(
        new_term > term,
        "m{leader} led term {term}, was killed and restarted, and the cluster is still in term {new_term} (led by m{now_leading})"
    );
}

// ---------------------------------------------------------------------------
// 4. Catching up by snapshot.

/// --snapshot-count for the snapshot scenario.
const SNAPSHOT_COUNT: u64 = 500;
/// Writes while the follower is down. The leader keeps 5,000 entries behind
/// its latest snapshot for slow followers (as etcd's SnapshotCatchUpEntries;
/// --experimental-snapshot-catchup-entries), so its log is purged past a follower
/// that stopped near the start only once the leader has snapshotted beyond
/// 5,000 + that follower's index: 8,000 writes with snapshots every 500 give
/// six such snapshots (5,500 to 8,000). Snapshots are built in the
/// background: with only two (6,000 writes) a loaded machine once restarted
/// the follower before the leader had finished either.
const WRITES_WHILE_DOWN: usize = 8_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_far_behind_catches_up_by_snapshot() {
    let _serial = SERIAL.lock().await;
    let options = ClusterOptions {
        snapshot_count: Some(SNAPSHOT_COUNT),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start_with(3, options).await;
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    let oxetcd = !against_reference_server();
    if oxetcd {
        // openraft reports the snapshot a follower installs at info level.
        cluster.set_env(
            follower,
            "OXETCD_LOG",
            "info,openraft=warn,openraft::engine::handler::following_handler=info",
        );
    }
    let mut acks = Vec::new();
    let sent = Instant::now();
    let resp = put(&mut cluster.kv(follower), "before", "the follower stopped").await;
    acks.push(Ack {
        key: "before".into(),
        value: "the follower stopped".into(),
        revision: rev(&resp.header),
        sent,
        answered: Instant::now(),
    });
    cluster.wait_converged(CONVERGE_TIMEOUT).await;
    cluster.kill_9(follower);
    let snapshot_meta = cluster
        .member(follower)
        .data_dir()
        .join("oxetcd/raft/snapshot/snapshot.meta");
    if oxetcd {
        assert!(
            !snapshot_meta.exists(),
            "the follower had a snapshot before it stopped"
        );
    }

    // Many writes through the leader, 32 at a time.
    let writing = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let mut kv = kv_to(&cluster, leader, Duration::from_secs(10));
            let next = next.clone();
            tokio::spawn(async move {
                let mut acks = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= WRITES_WHILE_DOWN {
                        return acks;
                    }
                    let (key, value) = (format!("bulk/{n:06}"), format!("value {n}"));
                    let sent = Instant::now();
                    let resp = kv
                        .put(put_req(&key, &value))
                        .await
                        .unwrap_or_else(|e| panic!("put {key}: {e}"));
                    acks.push(Ack {
                        key,
                        value,
                        revision: header_of(&resp.into_inner().header).revision,
                        sent,
                        answered: Instant::now(),
                    });
                }
            })
        })
        .collect();
    for task in tasks {
        acks.extend(task.await.expect("writer task"));
    }
    eprintln!(
        "{WRITES_WHILE_DOWN} writes with --snapshot-count {SNAPSHOT_COUNT} took {:?}",
        writing.elapsed()
    );

    let restarted = Instant::now();
    cluster.restart(follower).await;
    let verified = verify(&cluster, &acks).await;
    eprintln!(
        "the follower caught up to revision {} {:?} after its restart",
        verified.revision,
        restarted.elapsed()
    );
    assert_eq!(verified.kvs.len(), WRITES_WHILE_DOWN + 1);

    if oxetcd {
        let log = cluster.member(follower).current_log();
        assert!(
            log.contains("install_full_snapshot"),
            "the follower caught up without installing a snapshot (no install_full_snapshot in its log)\n{log}"
        );
        assert!(
            snapshot_meta.exists(),
            "{} does not exist after the follower installed a snapshot",
            snapshot_meta.display()
        );
    }
    let more = writes_continue(&cluster, "after", verified.revision).await;
    acks.extend(more);
    verify(&cluster, &acks).await;
}

// ---------------------------------------------------------------------------
// 5. Membership.

const ERR_LEARNER_NOT_READY: &str =
    "etcdserver: can only promote a learner member which is in sync with leader";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_added_promoted_and_old_leader_removed() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3).await;
    let load = Load::start(&cluster, "early", 4);
    wait_for_progress(&load, 300, Duration::from_secs(10), "before the add").await;
    let (mut acks, _) = load.stop().await;

    // A learner joins, serves (serializable) reads and catches up.
    let learner = cluster.add_member(0, true).await;
    let learner_id = cluster.member(learner).id();
    let listed = cluster.member_list(0).await;
    let entry = listed
        .iter()
        .find(|m| m.id == learner_id)
        .unwrap_or_else(|| panic!("the learner is not in MemberList: {listed:?}"));
    assert!(entry.is_learner, "{entry:?}");
    assert_eq!(listed.len(), 4, "{listed:?}");
    // Status says so too, on the learner only.
    let status = cluster.status(learner).await.expect("the learner's status");
    assert!(status.is_learner, "{status:?}");
    assert!(!cluster.status(0).await.expect("status").is_learner);
    cluster.wait_converged(CONVERGE_TIMEOUT).await;

    // Promote it, retrying while the leader finds it not yet in sync.
    let started = Instant::now();
    loop {
        match cluster
            .cluster(0)
            .member_promote(MemberPromoteRequest { id: learner_id })
            .await
        {
            Ok(resp) => {
                let members = resp.into_inner().members;
                assert!(
                    members.iter().all(|m| !m.is_learner),
                    "after MemberPromote: {members:?}"
                );
                break;
            }
            Err(e) if e.message() == ERR_LEARNER_NOT_READY => {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "the caught-up learner was still not promotable after 20 s"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("MemberPromote: {e:?}"),
        }
    }
    // Once it has applied its promotion, its Status no longer says learner.
    let promoted_at = Instant::now();
    while cluster
        .status(learner)
        .await
        .expect("the promoted member's status")
        .is_learner
    {
        assert!(
            promoted_at.elapsed() < Duration::from_secs(10),
            "Status.is_learner still true 10 s after the promotion"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let old_leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let old_leader_id = cluster.member(old_leader).id();

    // Remove the leader, through the new member.
    let members = cluster.remove_member(learner, old_leader).await;
    assert!(
        members.iter().all(|m| m.id != old_leader_id),
        "MemberRemove answered with the removed member still listed: {members:?}"
    );
    let removed_at = Instant::now();
    let remaining = cluster.live();
    let (elapsed, probes) = first_write_after(&cluster, &remaining, removed_at, "probe").await;
    acks.extend(probes);
    let new_leader = cluster.wait_leader(Duration::from_secs(10)).await;
    eprintln!(
        "removed leader m{old_leader}; m{new_leader} leads; a write was acknowledged {} ms after the removal",
        ms(elapsed)
    );
    assert_ne!(new_leader, old_leader);

    // The removed member (etcd's stops itself) acknowledges no write that
    // the cluster does not have: a put sent to it fails, or was forwarded.
    let sent = Instant::now();
    let mut removed_kv = kv_to(&cluster, old_leader, Duration::from_secs(2));
    match removed_kv
        .put(put_request("via-removed", "v", Duration::from_secs(2)))
        .await
    {
        Ok(resp) => {
            let revision = header_of(&resp.into_inner().header).revision;
            eprintln!("a put through the removed member was acknowledged at revision {revision}");
            acks.push(Ack {
                key: "via-removed".into(),
                value: "v".into(),
                revision,
                sent,
                answered: Instant::now(),
            });
        }
        Err(e) => eprintln!(
            "a put through the removed member failed: {:?} {}",
            e.code(),
            e.message()
        ),
    }
    cluster.kill_9(old_leader);

    // Writes go on, through every remaining member.
    let before = cluster.wait_converged(CONVERGE_TIMEOUT).await;
    acks.extend(writes_continue(&cluster, "after", before).await);

    // MemberList through every remaining member: exactly them, all voters,
    // all started.
    let expected: BTreeMap<u64, (String, Vec<String>)> = remaining
        .iter()
        .map(|&i| {
            let m = cluster.member(i);
            (m.id(), (m.name.clone(), vec![m.client_url()]))
        })
        .collect();
    for &i in &remaining {
        let members = cluster.member_list(i).await;
        assert!(
            members.iter().all(|m| !m.is_learner),
            "MemberList through m{i}: {members:?}"
        );
        let listed: BTreeMap<u64, (String, Vec<String>)> = members
            .iter()
            .map(|m| (m.id, (m.name.clone(), m.client_ur_ls.clone())))
            .collect();
        assert_eq!(listed, expected, "MemberList through m{i}");
    }
    verify(&cluster, &acks).await;

    // One cluster: the member that joined reports the same cluster ID as the
    // founding members (etcd takes it from the cluster it joins).
    let mut cluster_ids = BTreeMap::new();
    for &i in &remaining {
        let status = cluster.status(i).await.expect("status");
        cluster_ids.insert(format!("m{i}"), header_of(&status.header).cluster_id);
    }
    let distinct: BTreeSet<u64> = cluster_ids.values().copied().collect();
    assert_eq!(
        distinct.len(),
        1,
        "members report different cluster IDs in their response headers: {cluster_ids:x?}"
    );
}

// ---------------------------------------------------------------------------
// 6. A paused leader, and a minority.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_minority_cannot_write_and_reads_do_not_go_back() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3).await;
    let mut acks: Vec<Ack> = Vec::new();
    // Values of `x`, in the order they were acknowledged.
    let mut history: Vec<(String, i64)> = Vec::new();
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let resp = put(&mut cluster.kv(leader), "x", "old").await;
    history.push(("old".into(), rev(&resp.header)));

    // Pause the leader: the others elect a new one and take writes.
    let paused_at = Instant::now();
    cluster.pause(leader);
    let others = cluster.live();
    let (failover, probes) = first_write_after(&cluster, &others, paused_at, "probe").await;
    acks.extend(probes);
    let new_leader = cluster.wait_leader(Duration::from_secs(5)).await;
    eprintln!(
        "paused leader m{leader}: m{new_leader} leads; a write was acknowledged {} ms after the pause",
        ms(failover)
    );
    assert!(
        failover <= FAILOVER_LIMIT,
        "after pausing the leader, the first write was acknowledged only {} ms later",
        ms(failover)
    );
    let resp = put(&mut cluster.kv(new_leader), "x", "new").await;
    history.push(("new".into(), rev(&resp.header)));

    // The old leader comes back: a linearizable read through it never returns
    // the old value; it may fail while it finds out, then it sees the new one.
    cluster.resume(leader);
    let resumed_at = Instant::now();
    let mut kv = kv_to(&cluster, leader, Duration::from_secs(2));
    let mut failures = Vec::new();
    loop {
        match kv
            .range(range_request(get_req("x"), Duration::from_secs(2)))
            .await
        {
            Ok(resp) => {
                let resp = resp.into_inner();
                let got = resp.kvs.first().map(|kv| (value_str(kv), kv.mod_revision));
                assert_eq!(
                    got.as_ref(),
                    history.last(),
                    "a linearizable read through the resumed old leader m{leader} went back in time (after failures {failures:?})"
                );
                break;
            }
            Err(e) => {
                failures.push(format!("{:?}: {}", e.code(), e.message()));
                assert!(
                    resumed_at.elapsed() < Duration::from_secs(10),
                    "the resumed old leader m{leader} served no linearizable read within 10 s: {failures:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    eprintln!(
        "resumed m{leader}: read the newest value after {} ms ({} failed attempts first)",
        ms(resumed_at.elapsed()),
        failures.len()
    );

    // A write sent to it is acknowledged (forwarded) or fails cleanly; an
    // acknowledged one is there, at its revision, on every member.
    let mut failures = Vec::new();
    for attempt in 0.. {
        let key = format!("via-old-leader/{attempt}");
        let sent = Instant::now();
        match kv.put(put_request(&key, "v", Duration::from_secs(2))).await {
            Ok(resp) => {
                let revision = header_of(&resp.into_inner().header).revision;
                acks.push(Ack {
                    key,
                    value: "v".into(),
                    revision,
                    sent,
                    answered: Instant::now(),
                });
                break;
            }
            Err(e) => {
                failures.push(format!("{:?}: {}", e.code(), e.message()));
                assert!(
                    resumed_at.elapsed() < Duration::from_secs(15),
                    "the resumed old leader m{leader} took no write within 15 s: {failures:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    if !failures.is_empty() {
        eprintln!("writes through the resumed old leader failed first: {failures:?}");
    }
    cluster.wait_converged(CONVERGE_TIMEOUT).await;
    for i in cluster.live() {
        let got = get(&mut cluster.kv(i), "x").await.expect("x");
        assert_eq!(
            Some(&(value_str(&got), got.mod_revision)),
            history.last(),
            "x through m{i}"
        );
    }

    // A minority: pause both followers of the current leader. It can neither
    // acknowledge a write nor serve a linearizable read.
    let isolated = cluster.wait_leader(Duration::from_secs(5)).await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != isolated).collect();
    for &f in &followers {
        cluster.pause(f);
    }
    let mut kv = kv_to(&cluster, isolated, Duration::from_secs(2));
    let write = kv
        .put(put_request("x", "minority", Duration::from_secs(2)))
        .await;
    assert!(
        write.is_err(),
        "a leader cut off from both followers acknowledged a write: {write:?}"
    );
    let read = kv
        .range(range_request(get_req("x"), Duration::from_secs(2)))
        .await;
    assert!(
        read.is_err(),
        "a leader cut off from both followers served a linearizable read: {read:?}"
    );
    for &f in &followers {
        cluster.resume(f);
    }
    cluster.wait_leader(Duration::from_secs(10)).await;
    cluster.wait_converged(CONVERGE_TIMEOUT).await;

    // `x` is the newest acknowledged value, or the unacknowledged minority
    // write if it got committed after all; never an older one.
    for i in cluster.live() {
        let got = get(&mut cluster.kv(i), "x").await.expect("x");
        let got = (value_str(&got), got.mod_revision);
        let newest = history.last().expect("history");
        assert!(
            got == *newest || (got.0 == "minority" && got.1 > newest.1),
            "x through m{i} is {got:?}; the newest acknowledged value is {newest:?}"
        );
    }
    for ack in &acks {
        for i in cluster.live() {
            let got = get(&mut cluster.kv(i), &ack.key)
                .await
                .unwrap_or_else(|| panic!("acknowledged {} is missing on m{i}", ack.key));
            assert_eq!(
                (value_str(&got), got.mod_revision),
                (ack.value.clone(), ack.revision),
                "{} through m{i}",
                ack.key
            );
        }
    }
    let revision = cluster.wait_converged(CONVERGE_TIMEOUT).await;
    cluster.assert_hash_kv_agrees(revision).await;
}

/// A leader cut off from its quorum answers etcd's timeout, not never: its
/// clients must not hang on a write that cannot commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_quorum_times_out_writes_and_reads_like_etcd() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    put(&mut cluster.kv(leader), "before", "v").await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for &f in &followers {
        cluster.pause(f);
    }
    // The client's own deadline is far beyond etcd's 7 s request timeout.
    let mut kv = kv_to(&cluster, leader, Duration::from_secs(30));
    let started = Instant::now();
    let answer = kv
        .put(put_request("during", "v", Duration::from_secs(30)))
        .await;
    let waited = started.elapsed();
    let status = answer.expect_err("a write without a quorum cannot succeed");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(
        status.message(),
        "etcdserver: request timed out",
        "{status:?}"
    );
    assert!(
        waited < Duration::from_secs(12),
        "answered after {waited:?}"
    );
    let read = kv
        .range(range_request(get_req("before"), Duration::from_secs(30)))
        .await;
    let status = read.expect_err("a linearizable read without a quorum cannot succeed");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    for &f in &followers {
        cluster.resume(f);
    }
    // With its quorum back, the cluster writes again.
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    put(&mut cluster.kv(leader), "after", "v").await;
}

// ---------------------------------------------------------------------------
// Leadership transfer (Maintenance.MoveLeader).

/// Asks member `via` to hand leadership to `target_id`.
async fn move_leader(
    cluster: &Cluster,
    via: usize,
    target_id: u64,
) -> Result<Duration, tonic::Status> {
    let started = Instant::now();
    let mut request = tonic::Request::new(MoveLeaderRequest { target_id });
    request.set_timeout(Duration::from_secs(15));
    cluster.maintenance(via).move_leader(request).await?;
    Ok(started.elapsed())
}

/// MoveLeader to member `target`, asked of whichever member leads. A
/// transfer can lose to another candidate when every follower's lease runs
/// out together (etcd's can too, "leader transfer took too long"): then it is
/// asked again of the new leader, at most 3 times. Returns how long the
/// successful try took and how many tries it needed.
async fn move_leader_to(cluster: &Cluster, target: usize) -> (Duration, usize) {
    let target_id = cluster.member(target).id();
    let mut tries = 0;
    loop {
        tries += 1;
        let via = cluster.wait_leader(Duration::from_secs(10)).await;
        match move_leader(cluster, via, target_id).await {
            Ok(took) => return (took, tries),
            Err(e) if tries < 3 && e.message().contains("leader transfer took too long") => {
                eprintln!("MoveLeader to m{target} lost to another candidate: {e}; asking again");
            }
            Err(e) => panic!("MoveLeader to m{target} (try {tries}): {e}"),
        }
    }
}

/// The leader member `i` reports.
async fn leader_seen_by(cluster: &Cluster, i: usize) -> u64 {
    cluster
        .status(i)
        .await
        .unwrap_or_else(|e| panic!("status of m{i}: {e}"))
        .leader
}

/// MoveLeader under write load in a cluster of `n`: leadership moves to the
/// follower asked for, then straight back (a leader elected a moment ago
/// hands over too), and writes only pause: none fails, none is lost.
async fn move_leader_under_load(n: usize) {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(n).await;
    let load = Load::start(&cluster, "load", 8);
    wait_for_progress(&load, 200, Duration::from_secs(10), "before the move").await;

    let first = cluster.wait_leader(Duration::from_secs(5)).await;
    let first_id = cluster.member(first).id();
    let second = (first + 1) % n;
    let second_id = cluster.member(second).id();

    let (took, tries) = move_leader_to(&cluster, second).await;
    // etcd answers once the transferee leads: so does every member soon.
    assert_eq!(leader_seen_by(&cluster, first).await, second_id);
    assert_eq!(cluster.wait_leader(Duration::from_secs(5)).await, second);
    wait_for_progress(&load, 200, Duration::from_secs(10), "after the move").await;

    let (back, tries_back) = move_leader_to(&cluster, first).await;
    assert_eq!(leader_seen_by(&cluster, second).await, first_id);
    assert_eq!(cluster.wait_leader(Duration::from_secs(5)).await, first);
    wait_for_progress(&load, 200, Duration::from_secs(10), "after moving back").await;

    let (acks, errors) = load.stop().await;
    eprintln!(
        "{n} members: leadership moved m{first} -> m{second} in {} ms ({tries} tries) and back in {} ms ({tries_back} tries); {} writes acknowledged, {errors} failed",
        ms(took),
        ms(back),
        acks.len()
    );
    // oxetcd holds writes back while leadership moves, then hands them to
    // the new leader: with 3 s deadlines none fails. (etcd drops them,
    // ErrProposalDropped, and its clients retry.)
    if !against_reference_server() {
        assert_eq!(errors, 0, "writes failed while leadership moved");
    }
    assert!(took < Duration::from_secs(3), "the move took {took:?}");
    assert!(back < Duration::from_secs(3), "the move back took {back:?}");
    verify(&cluster, &acks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_leader_under_load_loses_no_write() {
    move_leader_under_load(3).await;
}

/// With five members the old leader's vote alone is not enough: the others
/// grant theirs once the old leader's lease has run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_leader_of_five_under_load_loses_no_write() {
    move_leader_under_load(5).await;
}

/// MoveLeader's refusals, in etcd's words and codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_leader_refusals_are_etcds() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let leader_id = cluster.member(leader).id();
    let follower = (leader + 1) % 3;
    let follower_id = cluster.member(follower).id();
    let refused = |result: Result<Duration, tonic::Status>, what: &str| {
        let status = result.expect_err(what);
        (status.code(), status.message().to_string())
    };
    let bad_transferee = (
        tonic::Code::FailedPrecondition,
        "etcdserver: bad leader transferee".to_string(),
    );

    // Only the leader can hand leadership over.
    assert_eq!(
        refused(
            move_leader(&cluster, follower, leader_id).await,
            "MoveLeader through a follower"
        ),
        (
            tonic::Code::FailedPrecondition,
            "etcdserver: not leader".to_string()
        )
    );
    assert_eq!(
        refused(
            move_leader(&cluster, leader, 0x1234).await,
            "MoveLeader to no member"
        ),
        bad_transferee
    );
    // To itself: done at once, as in etcd.
    move_leader(&cluster, leader, leader_id)
        .await
        .expect("MoveLeader to the leader itself");
    assert_eq!(leader_seen_by(&cluster, follower).await, leader_id);

    // A learner cannot lead (it need not even run to be refused).
    let request = MemberAddRequest {
        peer_ur_ls: vec!["http://127.0.0.1:9".to_string()],
        is_learner: true,
    };
    let asked = Instant::now();
    let added = loop {
        match cluster.cluster(leader).member_add(request.clone()).await {
            Ok(resp) => break resp.into_inner(),
            // --strict-reconfig-check, right after the start.
            Err(e)
                if e.message() == ERR_UNHEALTHY_CLUSTER
                    && asked.elapsed() < Duration::from_secs(15) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("MemberAdd of a learner: {e:?}"),
        }
    };
    let learner_id = added.member.expect("the added member").id;
    assert_eq!(
        refused(
            move_leader(&cluster, leader, learner_id).await,
            "MoveLeader to a learner"
        ),
        bad_transferee
    );
    assert_eq!(leader_seen_by(&cluster, follower).await, leader_id);
    assert_ne!(follower_id, learner_id);
}

// ---------------------------------------------------------------------------
// --strict-reconfig-check.

/// MemberRemove of `id` through member `via`, once.
async fn remove_once(cluster: &Cluster, via: usize, id: u64) -> Result<(), tonic::Status> {
    cluster
        .cluster(via)
        .member_remove(MemberRemoveRequest { id })
        .await
        .map(|_| ())
}

/// A learner at an address nobody listens on, through member `via`.
async fn add_absent_learner(cluster: &Cluster, via: usize) -> Result<(), tonic::Status> {
    cluster
        .cluster(via)
        .member_add(MemberAddRequest {
            peer_ur_ls: vec!["http://127.0.0.1:9".to_string()],
            is_learner: true,
        })
        .await
        .map(|_| ())
}

/// etcd's default --strict-reconfig-check: with one of three members down,
/// removing a live one would leave the cluster without an active quorum, so
/// it is refused; removing the member that is down is fine. Without the
/// check, changes go through whatever the connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_reconfig_check_protects_the_active_quorum() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let live = (leader + 1) % 3;
    let down = (leader + 2) % 3;
    let (live_id, down_id) = (cluster.member(live).id(), cluster.member(down).id());
    cluster.kill_9(down);
    // Time for the leader to find the member gone.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let refused = remove_once(&cluster, leader, live_id)
        .await
        .expect_err("removing a live member while another is down");
    assert_eq!(
        (refused.code(), refused.message()),
        (tonic::Code::Unavailable, ERR_UNHEALTHY_CLUSTER),
        "{refused:?}"
    );
    let refused = add_absent_learner(&cluster, live)
        .await
        .expect_err("adding a member while one is down");
    assert_eq!(refused.message(), ERR_UNHEALTHY_CLUSTER, "{refused:?}");

    let asked = Instant::now();
    loop {
        match remove_once(&cluster, leader, down_id).await {
            Ok(()) => break,
            // etcd may take a moment to see the member down.
            Err(e)
                if e.message() == ERR_UNHEALTHY_CLUSTER
                    && asked.elapsed() < Duration::from_secs(15) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("removing the member that is down: {e:?}"),
        }
    }
    let members: Vec<u64> = cluster
        .member_list(leader)
        .await
        .iter()
        .map(|m| m.id)
        .collect();
    assert!(members.contains(&live_id), "{members:?}");
    assert!(!members.contains(&down_id), "{members:?}");
    drop(cluster);

    let options = ClusterOptions {
        extra_args: vec!["--strict-reconfig-check=false".to_string()],
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start_with(3, options).await;
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    cluster.kill_9((leader + 2) % 3);
    tokio::time::sleep(Duration::from_secs(2)).await;
    add_absent_learner(&cluster, leader)
        .await
        .expect("without the check, a member is added while another is down");
}

/// A member of another cluster (another --initial-cluster-token) that
/// names one of this cluster's members as its peer gets every request
/// refused with etcd's "cluster ID mismatch", and this cluster keeps its
/// leader and term: peer requests carry the cluster ID, as etcd's do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_another_cluster_is_refused() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let term_before = header_of(&cluster.status(leader).await.expect("status").header).raft_term;

    // A two-member cluster of its own: the stray and our m0, which it keeps
    // asking for votes, since it cannot win alone.
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = support::cluster::free_ports(2);
    let (client, peer) = (
        format!("http://127.0.0.1:{}", ports[0]),
        format!("http://127.0.0.1:{}", ports[1]),
    );
    let log_path = dir.path().join("stray.log");
    let log = std::fs::File::create(&log_path).expect("stray log");
    let mut stray = std::process::Command::new(server_binary())
        .args(["--name", "stray", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &client])
        .args(["--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args([
            "--initial-cluster",
            &format!(
                "stray={peer},{}={}",
                cluster.member(0).name,
                cluster.member(0).peer_url()
            ),
        ])
        .args(["--initial-cluster-token", "another-cluster"])
        .args(["--initial-cluster-state", "new"])
        .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the stray member");

    let deadline = Instant::now() + Duration::from_secs(15);
    let refused = loop {
        if cluster.logs(0).contains("cluster ID mismatch") {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = stray.kill();
    let _ = stray.wait();
    assert!(
        refused,
        "m0 never refused the stray member\n{}\nstray:\n{}",
        cluster.logs(0),
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    let leader_after = cluster.wait_leader(Duration::from_secs(10)).await;
    let term_after =
        header_of(&cluster.status(leader_after).await.expect("status").header).raft_term;
    assert_eq!(
        (leader_after, term_after),
        (leader, term_before),
        "the stray member disturbed the cluster"
    );
}
