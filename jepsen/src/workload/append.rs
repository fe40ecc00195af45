//! `append`: transactions of 1 to 4 micro-operations over a sliding window
//! of keys, each appending a unique value to a key's list or reading it,
//! checked for strict serializability ([`crate::check::append`]).
//!
//! A list is stored as comma-separated values. A transaction first reads
//! every key it touches, works out its reads and the new lists locally, and
//! then commits with one Txn that compares each key's mod_revision with what
//! it read: the Txn succeeds only if nothing changed in between, so its reads
//! and writes happen together at the Txn's revision. A failed compare means
//! nothing was written: a definite `fail`.

use std::collections::BTreeMap;
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
        let mops: Vec<Mop> = (0..rng.random_range(1..=4))
            .map(|_| {
                let key = format!("{PREFIX}{}", window + rng.random_range(0..KEYS_AT_ONCE));
                if rng.random_bool(0.5) {
                    Mop::Read { key, value: None }
                } else {
                    let value = values.fetch_add(1, Ordering::Relaxed) as i64;
                    Mop::Append { key, value }
                }
            })
            .collect();
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

/// Runs one transaction: `Some(mops with reads filled)` when committed,
/// `None` when a key changed since it was read.
async fn transact(
    kv: &mut KvClient<AuthedChannel>,
    mops: &[Mop],
) -> Result<Option<Vec<Mop>>, tonic::Status> {
    // key -> (mod_revision read, list)
    let mut state: BTreeMap<String, (i64, Vec<i64>)> = BTreeMap::new();
    for mop in mops {
        let (Mop::Read { key, .. } | Mop::Append { key, .. }) = mop;
        if !state.contains_key(key) {
            let current = client::get(kv, key).await?;
            let (revision, list) = current
                .map(|kv| (kv.mod_revision, parse_list(&kv.value)))
                .unwrap_or((0, Vec::new()));
            state.insert(key.clone(), (revision, list));
        }
    }
    let compare = state
        .iter()
        .map(|(key, (revision, _))| {
            client::compare_mod_revision(Bytes::from(key.clone()), *revision)
        })
        .collect();
    let mut done = Vec::new();
    let mut written: BTreeMap<&str, ()> = BTreeMap::new();
    for mop in mops {
        match mop {
            Mop::Read { key, .. } => {
                let list = state[key].1.clone();
                done.push(Mop::Read {
                    key: key.clone(),
                    value: Some(list),
                });
            }
            Mop::Append { key, value } => {
                if let Some((_, list)) = state.get_mut(key) {
                    list.push(*value);
                }
                written.insert(key, ());
                done.push(mop.clone());
            }
        }
    }
    let puts = written
        .keys()
        .map(|key| RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: Bytes::from(key.to_string()),
                value: Bytes::from(format_list(&state[*key].1)),
                ..Default::default()
            })),
        })
        .collect();
    let response = client::txn(kv, compare, puts, Vec::new()).await?;
    Ok(response.succeeded.then_some(done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip() {
        assert_eq!(parse_list(format_list(&[3, 1, 2]).as_bytes()), [3, 1, 2]);
        assert_eq!(parse_list(b""), Vec::<i64>::new());
    }
}
