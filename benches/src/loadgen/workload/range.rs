//! `range`: etcd benchmark's range, over keys this command preloads
//! (`--key-space-size` keys `<prefix><10-digit index>`, `--val-size` bytes,
//! before the run and not measured). Each request reads `--keys-per-range`
//! consecutive keys from a random one, or the whole prefix
//! (`--whole-prefix`, with `--limit`), linearizable (`--consistency l`) or
//! serializable (`s`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::kv_client::KvClient;
use oxetcd_proto::etcdserverpb::RangeRequest;

use super::Env;
use crate::loadgen::auth::Conn;
use crate::loadgen::cli::{Consistency, RangeArgs};
use crate::loadgen::error::BenchError;
use crate::loadgen::keys::{indexed_key, prefix_end, random_bytes, Rng};
use crate::loadgen::requests::{call, preload};
use crate::loadgen::runner::Client;
use crate::loadgen::stats::{Stats, Summary};

struct RangeClient {
    kv: KvClient<Conn>,
    stats: Arc<Stats>,
    timeout: Duration,
    rng: Rng,
    args: Arc<RangeArgs>,
    prefix_end: Bytes,
}

impl RangeClient {
    fn request(&mut self) -> RangeRequest {
        let args = &self.args;
        let (key, range_end) = if args.whole_prefix {
            (Bytes::from(args.prefix.clone()), self.prefix_end.clone())
        } else {
            let first = self.rng.below(args.key_space_size);
            let end = if args.keys_per_range <= 1 {
                Bytes::new()
            } else if first + args.keys_per_range >= args.key_space_size {
                self.prefix_end.clone()
            } else {
                indexed_key(&args.prefix, first + args.keys_per_range)
            };
            (indexed_key(&args.prefix, first), end)
        };
        RangeRequest {
            key,
            range_end,
            limit: args.limit,
            serializable: args.consistency == Consistency::S,
            ..Default::default()
        }
    }
}

impl Client for RangeClient {
    async fn op(&mut self, start: Instant) -> bool {
        let request = self.request();
        let result = call(self.timeout, self.kv.range(request)).await.map(|_| ());
        self.stats.outcome("range", start, result)
    }
}

pub async fn run(env: &Env, args: &RangeArgs) -> Result<Summary, BenchError> {
    if args.key_space_size == 0 {
        return Err(BenchError::Usage(
            "--key-space-size must be at least 1".into(),
        ));
    }
    if !args.no_preload {
        let keys = (0..args.key_space_size)
            .map(|i| indexed_key(&args.prefix, i))
            .collect();
        preload(
            &env.pool,
            keys,
            random_bytes(args.val_size, 2),
            env.timeout,
            env.plan.clients,
        )
        .await?;
    }
    let shared = Arc::new(args.clone());
    let end = prefix_end(args.prefix.as_bytes());
    let clients = (0..env.plan.clients)
        .map(|i| RangeClient {
            kv: env.pool.kv(i),
            stats: env.stats.clone(),
            timeout: env.timeout,
            rng: Rng::new(i as u64),
            args: shared.clone(),
            prefix_end: end.clone(),
        })
        .collect();
    let outcome = env.run(clients).await?;
    Ok(env.summary("range", outcome, outcome.elapsed))
}
