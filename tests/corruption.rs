//! The corruption checks, on 3-member clusters of real processes: a member
//! whose store was altered on disk (as etcd's TestEtcdCorruptHash edits
//! bbolt: every value of the history changed in place, so the revisions stay
//! and only the hash differs) is refused at start by
//! --experimental-initial-corrupt-check and found by the leader's periodic
//! check (--experimental-corrupt-check-time), which raises CORRUPT for it;
//! and a healthy cluster under writes and compactions raises nothing.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use oxetcd_proto::etcdserverpb::alarm_request::AlarmAction;
use oxetcd_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmType, CompactionRequest, DefragmentRequest,
};
use oxetcd_proto::mvccpb::KeyValue;
use oxetcd_server::DataDir;
use oxetcd_storage::{Bucket, WriteBatch};
use prost::Message;
use support::cluster::{Cluster, ClusterOptions};
use support::{assert_status, get, http_get, put_req};
use tonic::Code;

const ERR_CORRUPT: &str = "etcdserver: corrupt cluster";

/// Changes the first byte of every value in the store of the (stopped)
/// member with data in `data_dir`, in place: the same revisions and keys,
/// other data, written without Raft.
fn alter_store(data_dir: &Path) {
    let dir = DataDir::prepare(data_dir, None, None).expect("the member's data dir");
    let backend = dir
        .engine()
        .open(&dir.kv_path(), 1 << 20)
        .expect("open the member's store");
    let mut batch = WriteBatch::default();
    for entry in backend.scan(Bucket::Key, &[], None) {
        let (key, raw) = entry.expect("scan the key bucket");
        let mut kv = KeyValue::decode(raw).expect("a stored key-value");
        if kv.value.is_empty() {
            continue;
        }
        let mut value = kv.value.to_vec();
        value[0] = value[0].wrapping_add(1);
        kv.value = value.into();
        batch.put(Bucket::Key, key, kv.encode_to_vec());
    }
    assert!(!batch.is_empty(), "no value to alter");
    backend.apply(batch).expect("write the altered values");
    backend.flush().expect("flush the altered store");
}

/// Puts `n` keys through member 0, waits until every member has them, and
/// makes member `victim`'s store durable (a Defragment does that first): it
/// is killed next, and what its store had not made durable would come back
/// from the Raft log unaltered.
async fn fill(cluster: &Cluster, n: usize, victim: usize) {
    let mut kv = cluster.kv(0);
    for i in 0..n {
        kv.put(put_req(&format!("foo{i:05}"), &format!("v{i:05}")))
            .await
            .expect("put");
    }
    cluster.wait_converged(Duration::from_secs(10)).await;
    cluster
        .maintenance(victim)
        .defragment(DefragmentRequest {})
        .await
        .expect("defragment");
}

async fn alarms(cluster: &Cluster, i: usize) -> Vec<AlarmMember> {
    cluster
        .maintenance(i)
        .alarm(AlarmRequest {
            action: AlarmAction::Get as i32,
            member_id: 0,
            alarm: AlarmType::None as i32,
        })
        .await
        .expect("alarm list")
        .into_inner()
        .alarms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_altered_data_is_refused_at_start_by_the_initial_check() {
    let mut cluster = Cluster::start(3).await;
    let victim = 2;
    fill(&cluster, 10, victim).await;
    let id = cluster.member(victim).id();
    cluster.kill_9(victim);
    alter_store(&cluster.member(victim).data_dir());

    cluster.set_args(victim, &["--experimental-initial-corrupt-check"]);
    cluster.respawn(victim);
    let exit = cluster
        .wait_exit(victim, Duration::from_secs(30))
        .await
        .expect("the altered member exits");
    assert!(!exit.success(), "{exit}");
    let log = cluster.member(victim).current_log();
    let expected = format!("{id:016x} found data inconsistency with peers");
    assert!(log.contains(&expected), "{expected:?} not in:\n{log}");
    assert!(
        log.contains("found different hash values from remote peer"),
        "{log}"
    );
    assert!(!log.contains(support::READY_LINE), "served clients: {log}");

    // Without the check it starts (etcd does not look at its data then).
    cluster.set_args(victim, &[]);
    cluster.restart(victim).await;
    assert!(get(&mut cluster.kv(victim), "foo00001").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_check_raises_corrupt_for_a_member_with_altered_data() {
    let options = ClusterOptions {
        extra_args: vec!["--experimental-corrupt-check-time".into(), "1s".into()],
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start_with(3, options).await;
    let victim = 1;
    fill(&cluster, 10, victim).await;
    let id = cluster.member(victim).id();
    cluster.kill_9(victim);
    alter_store(&cluster.member(victim).data_dir());
    cluster.restart(victim).await;

    let started = Instant::now();
    let raised = loop {
        let listed = alarms(&cluster, 0).await;
        if !listed.is_empty() {
            break listed;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no alarm within 20s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        raised,
        vec![AlarmMember {
            member_id: id,
            alarm: AlarmType::Corrupt as i32,
        }],
        "CORRUPT for the altered member only"
    );

    // Every member refuses writes with etcd's error; reads are served, as
    // etcd 3.4 serves them.
    for i in 0..3 {
        assert_status(
            cluster.kv(i).put(put_req("after", "x")).await,
            Code::DataLoss,
            ERR_CORRUPT,
        );
        let compact = cluster
            .kv(i)
            .compact(CompactionRequest {
                revision: 2,
                physical: false,
            })
            .await;
        assert_status(compact, Code::DataLoss, ERR_CORRUPT);
    }
    assert!(get(&mut cluster.kv(0), "foo00003").await.is_some());
    let (status, body) = http_get(&cluster.member(0).client_url(), "/health");
    assert_eq!((status, body.as_str()), (503, r#"{"health":"false"}"#));
    let (status, body) = http_get(&cluster.member(2).client_url(), "/readyz?verbose");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("alarm:CORRUPT"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_cluster_under_writes_and_compactions_raises_no_alarm() {
    let options = ClusterOptions {
        extra_args: vec![
            "--experimental-corrupt-check-time".into(),
            "1s".into(),
            "--experimental-initial-corrupt-check".into(),
        ],
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start_with(3, options).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (mut kv, stop) = (cluster.kv(0), stop.clone());
        tokio::spawn(async move {
            let mut writes = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let put = kv
                    .put(put_req(&format!("k{}", writes % 50), &writes.to_string()))
                    .await;
                let Ok(put) = put else {
                    // A member restarting may cost a write its answer.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                writes += 1;
                let revision = support::rev(&put.get_ref().header);
                if writes.is_multiple_of(40) {
                    let _ = kv
                        .compact(CompactionRequest {
                            revision: revision - 20,
                            physical: false,
                        })
                        .await;
                }
            }
            writes
        })
    };
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.await.expect("writer");
    assert!(writes > 100, "only {writes} writes");
    // A member restarting with the initial check starts: its store made
    // durable first, so that it restarts at the others' revision and
    // compacted revision and its hash is compared with theirs.
    cluster.wait_converged(Duration::from_secs(10)).await;
    cluster
        .maintenance(2)
        .defragment(DefragmentRequest {})
        .await
        .expect("defragment");
    cluster.restart(2).await;
    // One more check after the restart.
    tokio::time::sleep(Duration::from_secs(2)).await;

    for i in 0..3 {
        assert_eq!(alarms(&cluster, i).await, vec![], "m{i}'s alarms");
    }
    let logs: Vec<String> = (0..3).map(|i| cluster.logs(i)).collect();
    let checks: usize = logs
        .iter()
        .map(|l| l.matches("finished peer corruption check").count())
        .sum();
    assert!(checks >= 5, "only {checks} periodic checks ran");
    let restart = cluster.member(2).current_log();
    assert!(
        restart.contains("initial corruption checking passed; no corruption"),
        "{restart}"
    );
    for skipped in [
        "different compact revision",
        "cannot fetch hash",
        "failed hash kv",
    ] {
        assert!(!restart.contains(skipped), "a peer was skipped: {restart}");
    }
    for (i, log) in logs.iter().enumerate() {
        assert!(!log.contains("raising the CORRUPT alarm"), "m{i}: {log}");
    }
}
