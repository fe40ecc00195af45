//! `register`: reads, writes and compare-and-sets (a Txn comparing the
//! value) on a few keys at a time, checked for linearizability per key.
//!
//! Keys move on as the run goes (every `OPS_PER_WINDOW` operations the
//! window of `KEYS_AT_ONCE` keys slides by one), so each key sees a few
//! hundred concurrent operations: enough to meet faults, small enough for
//! the search. Values are small (0..5), as in Jepsen, so that compares
//! often hold. Half the reads are Ranges, half read-only Txns (a Txn of one
//! Range, no compare): servers may serve those on a path of their own
//! (etcd's read-only txn), which must be as linearizable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::client::{self, Ctx};
use crate::history::{Call, Outcome};

/// Every key of the workload is under it.
pub const PREFIX: &str = "jepsen/r/";
const KEYS_AT_ONCE: u64 = 3;
const OPS_PER_WINDOW: u64 = 100;
const VALUES: i64 = 5;

/// One client's loop, on `member`, until the run's deadline.
pub async fn client(
    ctx: Arc<Ctx>,
    counter: Arc<AtomicU64>,
    mut process: u32,
    member: usize,
    mut rng: ChaCha8Rng,
) {
    let mut kv = ctx.kv(member);
    while ctx.running() {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let key = format!(
            "{PREFIX}{}",
            n / OPS_PER_WINDOW + rng.random_range(0..KEYS_AT_ONCE)
        );
        let outcome = match rng.random_range(0..4) {
            kind @ (0 | 1) => {
                let call = Call::Read {
                    key: key.clone(),
                    value: None,
                };
                let kv = &mut kv;
                ctx.invoke(process, call, false, async move {
                    let found = if kind == 0 {
                        client::get(kv, &key).await?
                    } else {
                        client::get_in_txn(kv, &key).await?
                    };
                    let value = found.as_ref().and_then(client::decode);
                    Ok(Call::Read { key, value })
                })
                .await
            }
            2 => {
                let value = rng.random_range(0..VALUES);
                let call = Call::Write {
                    key: key.clone(),
                    value,
                };
                let kv = &mut kv;
                ctx.invoke(process, call.clone(), true, async move {
                    client::put(kv, &key, value).await?;
                    Ok(call)
                })
                .await
            }
            _ => {
                let (from, to) = (rng.random_range(0..VALUES), rng.random_range(0..VALUES));
                let call = Call::Cas {
                    key: key.clone(),
                    from: Some(from),
                    to: Some(to),
                    swapped: None,
                };
                let kv = &mut kv;
                ctx.invoke(process, call, true, async move {
                    let compare = vec![client::compare_value(&key, Some(from))];
                    let put = vec![client::write_op(&key, Some(to))];
                    let response = client::txn(kv, compare, put, Vec::new()).await?;
                    Ok(Call::Cas {
                        key,
                        from: Some(from),
                        to: Some(to),
                        swapped: Some(response.succeeded),
                    })
                })
                .await
            }
        };
        if outcome == Outcome::Info {
            process += ctx.concurrency;
        }
        pace(&ctx, outcome).await;
    }
}

/// Waits between operations; longer after an error, so that a client of a
/// dead member does not spin.
pub async fn pace(ctx: &Ctx, outcome: Outcome) {
    let wait = match outcome {
        Outcome::Ok => ctx.delay,
        _ => ctx.delay.max(std::time::Duration::from_millis(100)),
    };
    tokio::time::sleep(wait).await;
}
