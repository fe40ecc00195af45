//! `put`: etcd benchmark's put. Each request puts one key (`--key-size`
//! bytes, from a key space of `--key-space-size`, at random or in turn) with
//! one fixed `--val-size`-byte value, under `--key-prefix` if given.
//!
//! With `--clients 1` (one sequential writer) the summary also gives the
//! machine's fsync ceiling (see [`crate::loadgen::fsync`]) and how close the
//! run came: a server that makes each put durable before answering cannot
//! beat it with one client. Only meaningful when the server's data is on this
//! machine's disk (`--fsync-dir` names where).
//!
//! With `--lease-ttl` each operation is a LeaseGrant then the put attached to
//! that lease (its latency covers both), so the keys disappear when the
//! leases expire, all within the load's span of each other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::kv_client::KvClient;
use oxetcd_proto::etcdserverpb::lease_client::LeaseClient;
use oxetcd_proto::etcdserverpb::{LeaseGrantRequest, PutRequest};

use super::Env;
use crate::loadgen::auth::Conn;
use crate::loadgen::cli::PutArgs;
use crate::loadgen::error::BenchError;
use crate::loadgen::fsync;
use crate::loadgen::keys::{etcd_key, random_bytes, Rng};
use crate::loadgen::requests::call;
use crate::loadgen::runner::Client;
use crate::loadgen::stats::{FsyncCeiling, Stats, Summary};

/// fsync samples taken for the one-client ceiling.
const CEILING_PROBE_COUNT: u64 = 500;
const CEILING_PROBE_BLOCK: usize = 4096;

enum Keys {
    Sequential(Arc<AtomicU64>),
    Random(Rng),
}

struct PutClient {
    kv: KvClient<Conn>,
    /// With `--lease-ttl`: the client that grants each put's lease, and the TTL.
    lease: Option<(LeaseClient<Conn>, i64)>,
    stats: Arc<Stats>,
    timeout: Duration,
    keys: Keys,
    key_space: u64,
    key_size: usize,
    key_prefix: Bytes,
    value: Bytes,
}

impl Client for PutClient {
    async fn op(&mut self, start: Instant) -> bool {
        let index = match &mut self.keys {
            Keys::Sequential(next) => next.fetch_add(1, Ordering::Relaxed) % self.key_space,
            Keys::Random(rng) => rng.below(self.key_space),
        };
        let key = etcd_key(index, self.key_size);
        let key = if self.key_prefix.is_empty() {
            key
        } else {
            [&self.key_prefix[..], &key[..]].concat().into()
        };
        let mut put = PutRequest {
            key,
            value: self.value.clone(),
            ..Default::default()
        };
        if let Some((lease, ttl)) = &mut self.lease {
            let grant = LeaseGrantRequest { ttl: *ttl, id: 0 };
            match call(self.timeout, lease.lease_grant(grant)).await {
                Ok(granted) => put.lease = granted.id,
                Err(e) => return self.stats.outcome("put", start, Err(e)),
            }
        }
        let result = call(self.timeout, self.kv.put(put)).await.map(|_| ());
        self.stats.outcome("put", start, result)
    }
}

pub async fn run(env: &Env, args: &PutArgs) -> Result<Summary, BenchError> {
    if args.key_space_size == 0 || args.key_size == 0 {
        return Err(BenchError::Usage(
            "--key-space-size and --key-size must be at least 1".into(),
        ));
    }
    if args.lease_ttl < 0 {
        return Err(BenchError::Usage("--lease-ttl must not be negative".into()));
    }
    let value = random_bytes(args.val_size, 1);
    let next = Arc::new(AtomicU64::new(0));
    let clients = (0..env.plan.clients)
        .map(|i| PutClient {
            kv: env.pool.kv(i),
            lease: (args.lease_ttl > 0).then(|| (env.pool.lease(i), args.lease_ttl)),
            stats: env.stats.clone(),
            timeout: env.timeout,
            keys: if args.sequential_keys {
                Keys::Sequential(next.clone())
            } else {
                Keys::Random(Rng::new(i as u64))
            },
            key_space: args.key_space_size,
            key_size: args.key_size,
            key_prefix: Bytes::from(args.key_prefix.clone()),
            value: value.clone(),
        })
        .collect();
    let outcome = env.run(clients).await?;
    let mut summary = env.summary("put", outcome, outcome.elapsed);
    if env.plan.clients == 1 && !args.no_fsync_probe {
        let dir = args.fsync_dir.clone().unwrap_or_else(std::env::temp_dir);
        let probe_dir = dir.clone();
        let probe = tokio::task::spawn_blocking(move || {
            fsync::probe(&probe_dir, CEILING_PROBE_COUNT, CEILING_PROBE_BLOCK)
        })
        .await
        .map_err(|e| BenchError::Fsync {
            dir,
            source: std::io::Error::other(e.to_string()),
        })??;
        let fraction = if probe.ceiling_per_sec > 0.0 {
            summary.ops_per_sec / probe.ceiling_per_sec
        } else {
            0.0
        };
        summary.fsync = Some(FsyncCeiling {
            probe,
            fraction_of_ceiling: fraction,
        });
    }
    Ok(summary)
}
