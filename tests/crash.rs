//! kill -9 while clients write: after a restart on the same data dir, every
//! acknowledged write is there, nothing half-applied is, and the revisions form
//! a gap-free sequence.
//!
//! Each test runs several kill cycles on one server. In a cycle, `WRITERS`
//! client tasks each write distinct keys one request at a time and record every
//! acknowledged request with the revision its response reported; the server is
//! SIGKILLed while they write, restarted, and the whole store is checked:
//!
//! - every acknowledged write is present, with its value and revision;
//! - every write present is whole (a txn's three keys, or none of them);
//! - each writer's writes present are a prefix of what it sent: all it had
//!   acknowledged, plus at most the one request in flight at the kill;
//! - since every write here creates distinct keys at one revision, the
//!   revisions present are exactly base+1..=N, N the store's revision;
//! - the store takes writes again, the next one at N+1.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxetcd_proto::etcdserverpb::request_op::Request as Op;
use oxetcd_proto::etcdserverpb::{RequestOp, TxnRequest};
use oxetcd_proto::mvccpb::KeyValue;
use support::*;

/// Concurrent client tasks per cycle.
const WRITERS: usize = 16;
/// Keys a txn of the txn workload puts, all with one value.
const TXN_KEYS: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Workload {
    /// One put of one new key per request.
    Puts,
    /// One txn putting three new keys, with one value, per request.
    Txns,
}

/// Which request of the test wrote a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct WriteId {
    cycle: usize,
    writer: usize,
    seq: u64,
}

impl Workload {
    fn tag(self) -> &'static str {
        match self {
            Workload::Puts => "p",
            Workload::Txns => "t",
        }
    }

    /// The keys request `id` writes.
    fn keys(self, id: WriteId) -> Vec<String> {
        let stem = format!("{}{}/w{:02}/{:08}", self.tag(), id.cycle, id.writer, id.seq);
        match self {
            Workload::Puts => vec![stem],
            Workload::Txns => TXN_KEYS.iter().map(|k| format!("{stem}/{k}")).collect(),
        }
    }

    /// Which request wrote `key`, if one of this workload did.
    fn parse(self, key: &str) -> Option<WriteId> {
        let rest = key.strip_prefix(self.tag())?;
        let mut parts = rest.split('/');
        let cycle = parts.next()?.parse().ok()?;
        let writer = parts.next()?.strip_prefix('w')?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        let id = WriteId { cycle, writer, seq };
        self.keys(id).iter().any(|k| k == key).then_some(id)
    }

    fn value(id: WriteId) -> String {
        format!("value-{}-{}-{}", id.cycle, id.writer, id.seq)
    }
}

/// One writer: writes until the server dies under it. Returns each
/// acknowledged request with the revision of its response. An error before
/// the kill fails the test.
async fn writer(
    endpoint: String,
    workload: Workload,
    cycle: usize,
    writer: usize,
    killed: Arc<AtomicBool>,
) -> Result<Vec<(WriteId, i64)>, String> {
    let mut kv = kv_client(
        connect(&endpoint)
            .await
            .map_err(|e| format!("writer {writer}: connect: {e}"))?,
    );
    let mut acked = Vec::new();
    for seq in 0.. {
        let id = WriteId { cycle, writer, seq };
        let value = Workload::value(id);
        let keys = workload.keys(id);
        let result = match workload {
            Workload::Puts => kv
                .put(put_req(&keys[0], &value))
                .await
                .map(|r| rev(&r.into_inner().header)),
            Workload::Txns => {
                let success = keys
                    .iter()
                    .map(|k| RequestOp {
                        request: Some(Op::RequestPut(put_req(k, &value))),
                    })
                    .collect();
                let t = TxnRequest {
                    compare: vec![],
                    success,
                    failure: vec![],
                };
                kv.txn(t).await.map(|r| rev(&r.into_inner().header))
            }
        };
        match result {
            Ok(revision) => acked.push((id, revision)),
            Err(_) if killed.load(Ordering::SeqCst) => return Ok(acked),
            Err(e) => {
                return Err(format!(
                    "writer {writer}: request {seq} failed before the kill: {e}"
                ))
            }
        }
    }
    unreachable!()
}

/// One cycle: writers, kill -9 after `write_for`, restart. Returns the acknowledged writes.
async fn write_and_kill(
    server: &mut Server,
    workload: Workload,
    cycle: usize,
    write_for: Duration,
) -> BTreeMap<WriteId, i64> {
    let killed = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                server.endpoint(),
                workload,
                cycle,
                w,
                killed.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(write_for).await;
    killed.store(true, Ordering::SeqCst);
    server.kill_9();

    let mut acked = BTreeMap::new();
    for task in tasks {
        let writes = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("a writer did not stop after the kill")
            .expect("writer task panicked")
            .unwrap_or_else(|e| panic!("{e}\n{}", server.logs()));
        acked.extend(writes);
    }
    assert!(
        !acked.is_empty(),
        "cycle {cycle}: no write was acknowledged before the kill"
    );
    server.restart();
    acked
}

/// The whole store checked against everything acknowledged so far. Returns
/// the store's revision.
async fn verify(
    server: &Server,
    workload: Workload,
    base: i64,
    acked: &BTreeMap<WriteId, i64>,
) -> i64 {
    let mut kv = server.kv().await;
    let resp = range(&mut kv, all_req()).await;
    let n = rev(&resp.header);
    assert_eq!(resp.count as usize, resp.kvs.len());

    // Group what is present by the request that wrote it.
    let mut writes: BTreeMap<WriteId, Vec<&KeyValue>> = BTreeMap::new();
    let mut revisions = Vec::new();
    for kv in &resp.kvs {
        let key = key_str(kv);
        assert_eq!(kv.version, 1, "{key} was written more than once");
        assert_eq!(kv.create_revision, kv.mod_revision, "{key}");
        if key.starts_with("after/") {
            revisions.push(kv.mod_revision);
            continue;
        }
        let id = workload
            .parse(&key)
            .unwrap_or_else(|| panic!("unexpected key {key:?} in the store"));
        writes.entry(id).or_default().push(kv);
    }

    for (id, kvs) in &writes {
        let want_keys = workload.keys(*id);
        let got_keys: Vec<String> = kvs.iter().map(|kv| key_str(kv)).collect();
        assert_eq!(
            got_keys, want_keys,
            "{id:?} is only partly present: a torn write"
        );
        let revision = kvs[0].mod_revision;
        for kv in kvs {
            assert_eq!(value_str(kv), Workload::value(*id), "{id:?}: wrong value");
            assert_eq!(
                kv.mod_revision, revision,
                "{id:?}: its keys were written at different revisions"
            );
        }
        if let Some(&acked_rev) = acked.get(id) {
            assert_eq!(
                revision, acked_rev,
                "{id:?} is at another revision than its response said"
            );
        }
        revisions.push(revision);
    }

    for (id, revision) in acked {
        assert!(
            writes.contains_key(id),
            "acknowledged write {id:?} (revision {revision}) was lost"
        );
    }

    // Per writer: what survived is what it had acknowledged plus at most the
    // one request it had in flight.
    let mut per_writer: BTreeMap<(usize, usize), Vec<u64>> = BTreeMap::new();
    for id in writes.keys() {
        per_writer
            .entry((id.cycle, id.writer))
            .or_default()
            .push(id.seq);
    }
    for ((cycle, w), seqs) in &per_writer {
        let expected: Vec<u64> = (0..seqs.len() as u64).collect();
        assert_eq!(
            seqs, &expected,
            "writer {w} of cycle {cycle}: surviving writes are not a prefix of its writes"
        );
        let acked_count = acked
            .keys()
            .filter(|id| id.cycle == *cycle && id.writer == *w)
            .count();
        assert!(
            seqs.len() == acked_count || seqs.len() == acked_count + 1,
            "writer {w} of cycle {cycle}: {} writes present, {acked_count} acknowledged",
            seqs.len()
        );
    }

    revisions.sort_unstable();
    let expected: Vec<i64> = (base + 1..=n).collect();
    if revisions != expected {
        let missing: Vec<i64> = expected
            .iter()
            .filter(|r| revisions.binary_search(r).is_err())
            .copied()
            .collect();
        let repeated: Vec<i64> = revisions
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        panic!(
            "revisions present are not exactly {}..={n}: {} present, missing {missing:?}, repeated {repeated:?}",
            base + 1,
            revisions.len()
        );
    }
    n
}

async fn kill_cycles(workload: Workload, cycles: &[Duration]) {
    let started = Instant::now();
    let mut server = Server::start();
    let base = current_rev(&mut server.kv().await).await;
    let mut acked = BTreeMap::new();
    for (cycle, write_for) in cycles.iter().enumerate() {
        let this_cycle = write_and_kill(&mut server, workload, cycle, *write_for).await;
        eprintln!(
            "{workload:?} cycle {cycle}: {} writes acknowledged before kill -9",
            this_cycle.len()
        );
        acked.extend(this_cycle);
        let n = verify(&server, workload, base, &acked).await;

        // The store takes writes again, right after the last revision.
        let mut kv = server.kv().await;
        let resp = put(&mut kv, &format!("after/{cycle}"), "v").await;
        assert_eq!(rev(&resp.header), n + 1, "first write after the restart");
    }
    verify(&server, workload, base, &acked).await;
    eprintln!(
        "{workload:?}: {} cycles in {:?}",
        cycles.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_puts_survive_kill_9_with_gap_free_revisions() {
    kill_cycles(
        Workload::Puts,
        &[
            Duration::from_millis(1500),
            Duration::from_millis(1000),
            Duration::from_millis(1800),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txns_survive_kill_9_whole_or_not_at_all() {
    kill_cycles(
        Workload::Txns,
        &[
            Duration::from_millis(1200),
            Duration::from_millis(1700),
            Duration::from_millis(900),
        ],
    )
    .await;
}
