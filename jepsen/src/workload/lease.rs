//! `lease`: clients grant leases (client-chosen, unique ids), put one key
//! under `jepsen/l/` attached to each, and then keep some alive, revoke
//! some, and let the rest expire, while reading the whole prefix
//! (linearizable ranges) to see which keys are there.
//!
//! - A kept lease has a keeper task of its own that sends keep-alives on a
//!   stream every third of the TTL for [`KEEP_FOR`] (or until the run's
//!   deadline), recording each answer (reopening the stream on another
//!   member when it breaks), then lets the lease expire. Bounded, so that
//!   the keys alive at once, and so every read of the prefix, stay the same
//!   size however long the run: kept until the end, they made a 30-minute
//!   history 6.5 GB and its check 22 GB of memory.
//! - When the faults are over and the keepers have stopped, the sweep reads
//!   the prefix every half second until it is empty or every lease is past
//!   its deadline ([`crate::check::lease`] says which).
//!
//! TTLs are 3 to 6 s: above the minimum TTL of both servers with the default
//! election timeout (1 s, minimum ceil(1.5 x 1 s) = 2 s), so that the server
//! grants what was asked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest, RangeRequest,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::check::lease::SLACK;
use crate::client::{self, Ctx};
use crate::history::{Call, Op, Outcome};

pub const PREFIX: &str = "jepsen/l/";
const TTLS: std::ops::RangeInclusive<i64> = 3..=6;
/// How long a kept lease is kept alive, in seconds (uniform): across
/// several faults.
const KEEP_FOR: std::ops::RangeInclusive<u64> = 10..=60;
/// Lease ids start here (any positive id works; a recognisable one helps
/// reading logs).
const FIRST_ID: i64 = 0x1_0000;
/// Keepers are logical processes of their own, numbered from here.
const KEEPER_PROCESS: u32 = 3_000_000;

fn lease_key(lease: i64) -> String {
    format!("{PREFIX}{lease:016x}")
}

/// The keeper tasks of kept leases, joined before the sweep.
#[derive(Default)]
pub struct Keepers {
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    next_process: AtomicU64,
}

impl Keepers {
    fn spawn(&self, task: impl FnOnce(u32) -> JoinHandle<()>) {
        let process = KEEPER_PROCESS + self.next_process.fetch_add(1, Ordering::Relaxed) as u32;
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(task(process));
        }
    }

    pub async fn join(&self) {
        let tasks = self
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// One client's loop, on `member`, until the run's deadline.
pub async fn client(
    ctx: Arc<Ctx>,
    counter: Arc<AtomicU64>,
    keepers: Arc<Keepers>,
    mut process: u32,
    member: usize,
    mut rng: ChaCha8Rng,
) {
    // This client's leases that it may revoke.
    let mut revocable: Vec<i64> = Vec::new();
    while ctx.running() {
        let roll = rng.random_range(0..100);
        let outcome = if roll < 8 {
            let lease = FIRST_ID + counter.fetch_add(1, Ordering::Relaxed) as i64;
            let ttl = rng.random_range(TTLS);
            let outcome = grant_and_put(&ctx, &mut process, member, lease, ttl).await;
            if outcome == Outcome::Ok {
                match rng.random_range(0..10) {
                    0..=3 => {
                        let ctx = ctx.clone();
                        let until =
                            Instant::now() + Duration::from_secs(rng.random_range(KEEP_FOR));
                        let kept = Kept { lease, ttl, until };
                        keepers.spawn(|p| tokio::spawn(keeper(ctx, p, member, kept)));
                    }
                    4..=5 => revocable.push(lease),
                    _ => {}
                }
            }
            outcome
        } else if roll < 14 && !revocable.is_empty() {
            let lease = revocable.swap_remove(rng.random_range(0..revocable.len()));
            revoke(&ctx, process, member, lease).await
        } else {
            read_keys(&ctx, process, member, false).await.0
        };
        if outcome == Outcome::Info {
            process += ctx.concurrency;
        }
        super::register::pace(&ctx, outcome).await;
    }
}

/// Grants `lease` and puts its key; the outcome of the put (`Fail` when the
/// grant certainly did not happen).
async fn grant_and_put(
    ctx: &Ctx,
    process: &mut u32,
    member: usize,
    lease: i64,
    ttl: i64,
) -> Outcome {
    let mut leases = ctx.lease(member);
    let call = Call::Grant {
        lease,
        ttl,
        granted: None,
    };
    let granted = ctx
        .invoke(*process, call, true, async {
            let request = LeaseGrantRequest { ttl, id: lease };
            let response = leases.lease_grant(request).await?.into_inner();
            Ok(Call::Grant {
                lease,
                ttl,
                granted: Some(response.ttl),
            })
        })
        .await;
    match granted {
        Outcome::Fail => return Outcome::Fail,
        Outcome::Info => *process += ctx.concurrency,
        Outcome::Ok => {}
    }
    let key = lease_key(lease);
    let mut kv = ctx.kv(member);
    let call = Call::PutLeased {
        key: key.clone(),
        lease,
    };
    ctx.invoke(*process, call.clone(), true, async {
        let request = PutRequest {
            key: Bytes::from(key.clone()),
            value: client::encode(lease),
            lease,
            ..Default::default()
        };
        kv.put(request).await?;
        Ok(call)
    })
    .await
}

async fn revoke(ctx: &Ctx, process: u32, member: usize, lease: i64) -> Outcome {
    let mut leases = ctx.lease(member);
    let call = Call::Revoke { lease };
    ctx.invoke(process, call.clone(), true, async {
        leases
            .lease_revoke(LeaseRevokeRequest { id: lease })
            .await?;
        Ok(call)
    })
    .await
}

/// A linearizable read of every key under the prefix; with the number of
/// keys found when it succeeded.
async fn read_keys(
    ctx: &Ctx,
    process: u32,
    member: usize,
    sweep: bool,
) -> (Outcome, Option<usize>) {
    let mut kv = ctx.kv(member);
    let call = Call::ReadKeys {
        prefix: PREFIX.into(),
        keys: None,
        sweep,
    };
    let mut found = None;
    let outcome = ctx
        .invoke(process, call, false, async {
            let request = RangeRequest {
                key: Bytes::from_static(PREFIX.as_bytes()),
                range_end: client::prefix_end(PREFIX),
                keys_only: true,
                ..Default::default()
            };
            let response = kv.range(request).await?.into_inner();
            let keys = response
                .kvs
                .iter()
                .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
                .collect::<Vec<_>>();
            found = Some(keys.len());
            Ok(Call::ReadKeys {
                prefix: PREFIX.into(),
                keys: Some(keys),
                sweep,
            })
        })
        .await;
    (outcome, found)
}

/// A lease a keeper keeps alive, until when.
struct Kept {
    lease: i64,
    ttl: i64,
    until: Instant,
}

/// Keeps a lease alive until `kept.until` or the run's deadline: a
/// keep-alive every third of its TTL on a stream, each recorded with the
/// TTL it was answered with. Stops early when the server says the lease is
/// gone.
async fn keeper(ctx: Arc<Ctx>, mut process: u32, mut member: usize, kept: Kept) {
    let Kept { lease, ttl, until } = kept;
    let every = Duration::from_millis(ttl as u64 * 1000 / 3);
    let request = LeaseKeepAliveRequest { id: lease };
    let keeping = || ctx.running() && Instant::now() < until;
    'streams: while keeping() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut leases = ctx.lease(member);
        // The first request goes with the stream's opening: a Go server
        // sends its response headers only with its first answer.
        let mut invoke = ctx.now();
        if tx.send(request).await.is_err() {
            break;
        }
        let opened = tokio::time::timeout(
            ctx.op_timeout,
            leases.lease_keep_alive(ReceiverStream::new(rx)),
        )
        .await;
        let mut stream = match opened {
            Ok(Ok(response)) => Some(response.into_inner()),
            Ok(Err(status)) => {
                record_keep_alive(&ctx, process, invoke, lease, Err(status.to_string()));
                None
            }
            Err(_) => {
                record_keep_alive(&ctx, process, invoke, lease, Err("timeout".into()));
                None
            }
        };
        while let Some(answers) = &mut stream {
            let answer = match tokio::time::timeout(ctx.op_timeout, answers.message()).await {
                Ok(Ok(Some(response))) => Ok(response.ttl),
                Ok(Ok(None)) => Err("stream ended".to_owned()),
                Ok(Err(status)) => Err(status.to_string()),
                Err(_) => Err("timeout".to_owned()),
            };
            record_keep_alive(&ctx, process, invoke, lease, answer.clone());
            match answer {
                Ok(t) if t <= 0 => break 'streams,
                Ok(_) => {}
                Err(_) => stream = None,
            }
            if stream.is_some() {
                tokio::time::sleep(every).await;
                if !keeping() {
                    break 'streams;
                }
                invoke = ctx.now();
                if tx.send(request).await.is_err() {
                    stream = None;
                }
            }
        }
        // A new stream, on the next member, as a new process: the last
        // request may still be answered on the old one.
        process += ctx.concurrency;
        member += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Records one keep-alive: answered with a TTL, or indeterminate.
fn record_keep_alive(
    ctx: &Ctx,
    process: u32,
    invoke: u64,
    lease: i64,
    answer: Result<i64, String>,
) {
    let (outcome, ttl, error) = match answer {
        Ok(ttl) => (Outcome::Ok, Some(ttl), None),
        Err(e) => (Outcome::Info, None, Some(e)),
    };
    ctx.record(Op {
        process,
        invoke,
        complete: ctx.now(),
        outcome,
        call: Call::KeepAlive { lease, ttl },
        error,
    });
}

/// After the keepers stopped and the faults ended: reads the prefix every
/// half second until it is empty, or until every lease is past the latest
/// deadline the checker allows (the longest TTL + [`SLACK`]) and a second
/// more.
pub async fn sweep(ctx: &Ctx, process: u32) {
    let started = Instant::now();
    let limit = Duration::from_secs(*TTLS.end() as u64) + SLACK + Duration::from_secs(2);
    let mut member = 0;
    while started.elapsed() < limit {
        match read_keys(ctx, process, member, true).await {
            (Outcome::Ok, Some(0)) => return,
            (Outcome::Ok, _) => {}
            _ => member += 1,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_keys_sort_by_lease_id() {
        assert!(lease_key(FIRST_ID + 9) < lease_key(FIRST_ID + 10));
        assert!(lease_key(FIRST_ID).starts_with(PREFIX));
    }
}
