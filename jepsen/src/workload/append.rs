//! `append`: transactions of 1 to 4 micro-operations over a sliding window
//! of keys, each appending a unique value to a key's list or reading it,
//! checked for strict serializability ([`crate::check::append`]).
//!
//! A list is stored as comma-separated values. etcd has no append, so a
//! transaction first reads every key it touches (for each key's
//! mod_revision and list), then commits with one Txn that compares each
//! key's mod_revision with what it read and runs the micro-operations in
//! order on the server: an append is a Put of the list read plus the new
//! value, a read is a Range. The Txn succeeds only if nothing changed in
//! between; its Ranges are the server's answers at the Txn's revision, and a
//! Range after the Txn's own Put of that key must see it (etcd reads a Txn's
//! writes back within it), which is what the checker's `internal` holds it
//! to. A failed compare means nothing was written: a definite `fail`.
//!
//! etcd refuses a Txn that puts one key twice ("duplicate key given in txn
//! request"), so a transaction appends to a key at most once; it may read
//! that key before and after the append.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::kv_client::KvClient;
use oxetcd_proto::etcdserverpb::request_op::Request;
use oxetcd_proto::etcdserverpb::{PutRequest, RequestOp};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::client::{self, AuthedChannel, Ctx};
use crate::history::{Call, Mop, Op, Outcome};

/// Every key of the workload is under it.
pub const PREFIX: &str = "jepsen/a/";
const KEYS_AT_ONCE: u64 = 6;
const TXNS_PER_WINDOW: u64 = 150;

pub fn parse_list(value: &[u8]) -> Vec<i64> {
    std::str::from_utf8(value)
        .unwrap_or("")
        .split(',')
        .filter_map(|v| v.parse().ok())
        .collect()
}

fn format_list(list: &[i64]) -> String {
    list.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub async fn client(
    ctx: Arc<Ctx>,
    counter: Arc<AtomicU64>,
    values: Arc<AtomicU64>,
    mut process: u32,
    member: usize,
    mut rng: ChaCha8Rng,
) {
    let mut kv = ctx.kv(member);
    while ctx.running() {
        let window = counter.fetch_add(1, Ordering::Relaxed) / TXNS_PER_WINDOW;
        let mops = generate(&mut rng, window, &values);
        let invoke = ctx.now();
        let result = tokio::time::timeout(ctx.op_timeout, transact(&mut kv, &mops)).await;
        let (outcome, mops, error) = match result {
            Ok(Ok(Some(done))) => (Outcome::Ok, done, None),
            Ok(Ok(None)) => (Outcome::Fail, mops, Some("conflict".into())),
            // An error before the commit was sent could be `fail`; we cannot
            // tell which step failed from here, so it is indeterminate.
            Ok(Err(e)) => (Outcome::Info, mops, Some(e.to_string())),
            Err(_) => (Outcome::Info, mops, Some("timeout".into())),
        };
        ctx.record(Op {
            process,
            invoke,
            complete: ctx.now(),
            outcome,
            call: Call::Txn { mops },
            error,
        });
        if outcome == Outcome::Info {
            process += ctx.concurrency;
        }
        super::register::pace(&ctx, outcome).await;
    }
}

/// One transaction's micro-operations: 1 to 4 over the window's keys, reads
/// and appends half and half, at most one append per key (a second append
/// to a key becomes a read of it); after an append, a quarter of the picks
/// are that key again, so reads of the transaction's own writes are common.
fn generate(rng: &mut ChaCha8Rng, window: u64, values: &AtomicU64) -> Vec<Mop> {
    let mut appended = BTreeSet::new();
    let mut last_appended = None;
    (0..rng.random_range(1..=4))
        .map(|_| {
            let key = match &last_appended {
                // Often enough to matter, read back what was just appended.
                Some(key) if rng.random_bool(0.25) => String::clone(key),
                _ => format!("{PREFIX}{}", window + rng.random_range(0..KEYS_AT_ONCE)),
            };
            if rng.random_bool(0.5) && appended.insert(key.clone()) {
                let value = values.fetch_add(1, Ordering::Relaxed) as i64;
                last_appended = Some(key.clone());
                Mop::Append { key, value }
            } else {
                Mop::Read { key, value: None }
            }
        })
        .collect()
}

/// Runs one transaction: `Some(mops with reads filled)` when committed,
/// `None` when a key changed since it was read.
async fn transact(
    kv: &mut KvClient<AuthedChannel>,
    mops: &[Mop],
) -> Result<Option<Vec<Mop>>, tonic::Status> {
    // key -> (mod_revision read, list)
    let mut read: BTreeMap<&str, (i64, Vec<i64>)> = BTreeMap::new();
    for mop in mops {
        let (Mop::Read { key, .. } | Mop::Append { key, .. }) = mop;
        if !read.contains_key(key.as_str()) {
            let current = client::get(kv, key).await?;
            let (revision, list) = current
                .map(|kv| (kv.mod_revision, parse_list(&kv.value)))
                .unwrap_or((0, Vec::new()));
            read.insert(key, (revision, list));
        }
    }
    let compare = read
        .iter()
        .map(|(key, (revision, _))| {
            client::compare_mod_revision(Bytes::from(key.to_string()), *revision)
        })
        .collect();
    let ops = mops.iter().map(|mop| txn_op(mop, &read)).collect();
    let response = client::txn(kv, compare, ops, Vec::new()).await?;
    if !response.succeeded {
        return Ok(None);
    }
    let done = mops
        .iter()
        .enumerate()
        .map(|(n, mop)| match mop {
            Mop::Read { key, .. } => {
                let list = client::range_kvs(&response, n)
                    .and_then(|kvs| kvs.first())
                    .map(|kv| parse_list(&kv.value))
                    .unwrap_or_default();
                Mop::Read {
                    key: key.clone(),
                    value: Some(list),
                }
            }
            Mop::Append { .. } => mop.clone(),
        })
        .collect();
    Ok(Some(done))
}

/// The Txn operation of one micro-operation: a Range, or a Put of the list
/// read before the Txn with the value appended.
fn txn_op(mop: &Mop, read: &BTreeMap<&str, (i64, Vec<i64>)>) -> RequestOp {
    match mop {
        Mop::Read { key, .. } => client::range_op(key),
        Mop::Append { key, value } => {
            let mut list = read
                .get(key.as_str())
                .map(|(_, list)| list.clone())
                .unwrap_or_default();
            list.push(*value);
            RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: Bytes::from(key.clone()),
                    value: Bytes::from(format_list(&list)),
                    ..Default::default()
                })),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_transaction_appends_to_a_key_once_and_often_reads_it_back() {
        let values = AtomicU64::new(0);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut reads_back = 0;
        for _ in 0..1000 {
            let mops = generate(&mut rng, 3, &values);
            let mut appended = BTreeSet::new();
            for mop in &mops {
                match mop {
                    Mop::Append { key, .. } => assert!(appended.insert(key), "{mops:?}"),
                    Mop::Read { key, .. } => reads_back += usize::from(appended.contains(key)),
                }
            }
        }
        // 202 without the bias towards the key just appended.
        assert!(reads_back > 300, "{reads_back} reads of own appends");
    }

    #[test]
    fn an_append_puts_the_list_read_with_the_value_added() {
        let read = BTreeMap::from([("k", (5, vec![1, 2]))]);
        let op = txn_op(
            &Mop::Append {
                key: "k".into(),
                value: 3,
            },
            &read,
        );
        let Some(Request::RequestPut(put)) = op.request else {
            panic!("{op:?}");
        };
        assert_eq!(&put.value[..], b"1,2,3");
    }

    #[test]
    fn lists_round_trip() {
        assert_eq!(parse_list(format_list(&[3, 1, 2]).as_bytes()), [3, 1, 2]);
        assert_eq!(parse_list(b""), Vec::<i64>::new());
    }
}
