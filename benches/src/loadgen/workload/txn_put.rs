//! `txn-put`: Kubernetes-style optimistic updates (kube-apiserver's
//! GuaranteedUpdate). `--key-space-size` keys are preloaded (not measured);
//! each operation picks one at random and runs
//! `Txn(mod_revision(key) == known) Then(Put key value) Else(Range key)`; on a
//! lost compare it takes the mod_revision the failure branch saw and tries
//! again. The known revisions are shared by all clients, as kube-apiserver's
//! watch cache shares them, so conflicts come from clients updating the same
//! key at once (fewer keys: more conflicts). One operation is one update with
//! all its retries; `conflicts` and `txn-attempts` count the rest.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::kv_client::KvClient;

use super::Env;
use crate::loadgen::auth::Conn;
use crate::loadgen::cli::TxnPutArgs;
use crate::loadgen::error::BenchError;
use crate::loadgen::keys::{indexed_key, random_bytes, Rng};
use crate::loadgen::requests::{optimistic, preload, put_op, Applied};
use crate::loadgen::runner::Client;
use crate::loadgen::stats::{Stats, Summary};

struct TxnPutClient {
    kv: KvClient<Conn>,
    stats: Arc<Stats>,
    timeout: Duration,
    rng: Rng,
    keys: Arc<Vec<Bytes>>,
    /// The last mod_revision seen of each key, shared by the clients.
    revs: Arc<Vec<AtomicI64>>,
    value: Bytes,
    max_retries: u32,
}

impl Client for TxnPutClient {
    async fn op(&mut self, start: Instant) -> bool {
        let i = self.rng.below(self.keys.len() as u64) as usize;
        let key = &self.keys[i];
        let known = self.revs[i].load(Ordering::Relaxed);
        let then = put_op(key, self.value.clone());
        let result = optimistic(
            &mut self.kv,
            self.timeout,
            &self.stats,
            key,
            known,
            then,
            self.max_retries,
            false,
        )
        .await;
        let result = result.map(|applied| {
            if let Applied::At(rev) = applied {
                self.revs[i].fetch_max(rev, Ordering::Relaxed);
            }
        });
        self.stats.outcome("txn-put", start, result)
    }
}

pub async fn run(env: &Env, args: &TxnPutArgs) -> Result<Summary, BenchError> {
    if args.key_space_size == 0 {
        return Err(BenchError::Usage(
            "--key-space-size must be at least 1".into(),
        ));
    }
    let keys: Vec<Bytes> = (0..args.key_space_size)
        .map(|i| indexed_key(&args.prefix, i))
        .collect();
    let value = random_bytes(args.val_size, 3);
    let revs = preload(
        &env.pool,
        keys.clone(),
        value.clone(),
        env.timeout,
        env.plan.clients,
    )
    .await?;
    let revs = Arc::new(revs.into_iter().map(AtomicI64::new).collect::<Vec<_>>());
    let keys = Arc::new(keys);
    let clients = (0..env.plan.clients)
        .map(|i| TxnPutClient {
            kv: env.pool.kv(i),
            stats: env.stats.clone(),
            timeout: env.timeout,
            rng: Rng::new(i as u64),
            keys: keys.clone(),
            revs: revs.clone(),
            value: value.clone(),
            max_retries: args.max_retries,
        })
        .collect();
    let outcome = env.run(clients).await?;
    Ok(env.summary("txn-put", outcome, outcome.elapsed))
}
