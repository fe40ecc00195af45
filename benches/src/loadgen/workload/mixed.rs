//! `mixed`: Kubernetes-like traffic, the requests kube-apiserver makes to
//! its store (see shared/reference/kubernetes-api.md), on pods stored as
//! ~2 KiB of JSON at `/registry/pods/<namespace>/<name>`.
//!
//! Client `i` works in namespace `ns-<i % --namespaces>` on the objects it
//! created itself (`--objects-per-client` of them before the run, not
//! measured), and watches its namespace (prefix, `prev_kv`, like the
//! apiserver's watch). Each operation is one of, by `--*-weight`:
//!
//! | op | requests |
//! |---|---|
//! | `create` | `Txn(mod_revision(key) == 0) Then(Put key json)` |
//! | `update` | `Txn(mod_revision == known) Then(Put) Else(Range key)`, retried with the revision Else saw |
//! | `delete` | `Txn(mod_revision == known) Then(DeleteRange key) Else(Range key)`, retried likewise |
//! | `get` | `Range key` (linearizable) |
//! | `list` | `Range [ns/, ns0) limit 500`, then continued from `last_key + "\0"` at the first page's revision while `more` |
//!
//! An update, delete or get with no object of its own to work on creates
//! one instead. Rows: one per op kind, `list-page` per page, `watch-event`
//! from the put being issued (the time is in the object's annotations) to
//! the event arriving. Counters: `conflicts`, `txn-attempts`, `list-pages`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::kv_client::KvClient;
use oxetcd_proto::etcdserverpb::watch_client::WatchClient;
use oxetcd_proto::etcdserverpb::{RangeRequest, TxnRequest};
use oxetcd_proto::mvccpb::event::EventType;
use tokio::task::JoinSet;

use super::Env;
use crate::loadgen::auth::Conn;
use crate::loadgen::cli::MixedArgs;
use crate::loadgen::error::{BenchError, OpError};
use crate::loadgen::keys::{prefix_end, since_stamp, stamp, Rng};
use crate::loadgen::requests::{
    call, delete_op, mod_revision_is, optimistic, put_op, revision, Applied,
};
use crate::loadgen::runner::Client;
use crate::loadgen::stats::{Role, Stats, Summary};
use crate::loadgen::watchers::{self, WatchSpec, WatchStream};

/// Where a pod's JSON says when the put that wrote it was issued.
const STAMP_MARK: &[u8] = b"\"bench.oxetcd.io/issued-ns\":\"";
/// Digits of that stamp (fixed, so every version of an object has one size).
const STAMP_DIGITS: usize = 20;

/// A pod of about `size` bytes of JSON (never less than its fields need).
pub fn pod_json(namespace: &str, name: &str, issued: u64, generation: u64, size: usize) -> Bytes {
    let head = format!(
        concat!(
            r#"{{"kind":"Pod","apiVersion":"v1","metadata":{{"name":"{name}","namespace":"{ns}","#,
            r#""uid":"oxetcd-bench-{ns}-{name}","generation":{generation},"labels":{{"app":"oxetcd-bench"}},"#,
            r#""annotations":{{"bench.oxetcd.io/issued-ns":"{issued:020}"}}}},"#,
            r#""spec":{{"nodeName":"node-{node:04}","containers":[{{"name":"app","image":"registry.k8s.io/pause:3.9","#,
            r#""resources":{{"requests":{{"cpu":"100m","memory":"64Mi"}}}}}}],"padding":""#
        ),
        name = name,
        ns = namespace,
        generation = generation,
        issued = issued,
        node = generation % 5000,
    );
    let tail = r#""},"status":{"phase":"Running"}}"#;
    let padding = size.saturating_sub(head.len() + tail.len());
    let mut json = String::with_capacity(head.len() + padding + tail.len());
    json.push_str(&head);
    json.extend(std::iter::repeat_n('x', padding));
    json.push_str(tail);
    Bytes::from(json)
}

/// The issue stamp of a [`pod_json`].
pub fn pod_stamp(json: &[u8]) -> Option<u64> {
    let at = json
        .windows(STAMP_MARK.len())
        .position(|w| w == STAMP_MARK)?
        + STAMP_MARK.len();
    std::str::from_utf8(json.get(at..at + STAMP_DIGITS)?)
        .ok()?
        .parse()
        .ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Create,
    Update,
    Delete,
    Get,
    List,
}

struct Object {
    key: Bytes,
    name: String,
    rev: i64,
    generation: u64,
}

struct MixedClient {
    id: usize,
    kv: KvClient<Conn>,
    stats: Arc<Stats>,
    timeout: Duration,
    rng: Rng,
    namespace: String,
    /// `/registry/pods/<namespace>/`.
    prefix: Bytes,
    prefix_end: Bytes,
    objects: Vec<Object>,
    created: u64,
    /// Taken by [`MixedClient::prepare`] to open the watch (`None`: no watch).
    watch_client: Option<WatchClient<Conn>>,
    /// (cumulative weight, action).
    weights: Arc<Vec<(u32, Action)>>,
    args: Arc<MixedArgs>,
    /// Kept for its lifetime: the watch stops when the client is dropped.
    watch: Option<WatchStream>,
}

impl MixedClient {
    fn pick(&mut self) -> Action {
        let total = self.weights.last().map(|(w, _)| *w).unwrap_or(0);
        let roll = self.rng.below(u64::from(total)) as u32;
        let action = self
            .weights
            .iter()
            .find(|(w, _)| roll < *w)
            .map(|(_, a)| *a)
            .unwrap_or(Action::Create);
        match action {
            Action::Update | Action::Delete | Action::Get if self.objects.is_empty() => {
                Action::Create
            }
            other => other,
        }
    }

    async fn create(&mut self, start: Instant) -> Result<(), OpError> {
        let name = format!("pod-{}-{}", self.id, self.created);
        self.created += 1;
        let key = Bytes::from(format!("{}{name}", String::from_utf8_lossy(&self.prefix)));
        let json = pod_json(&self.namespace, &name, stamp(start), 1, self.args.val_size);
        let txn = TxnRequest {
            compare: vec![mod_revision_is(&key, 0)],
            success: vec![put_op(&key, json)],
            failure: vec![],
        };
        let response = call(self.timeout, self.kv.txn(txn)).await?;
        if response.succeeded {
            self.objects.push(Object {
                key,
                name,
                rev: revision(response.header),
                generation: 1,
            });
        } else {
            self.stats.count("create-exists", 1);
        }
        Ok(())
    }

    async fn update(&mut self, start: Instant) -> Result<(), OpError> {
        let i = self.rng.below(self.objects.len() as u64) as usize;
        let object = &self.objects[i];
        let generation = object.generation + 1;
        let json = pod_json(
            &self.namespace,
            &object.name,
            stamp(start),
            generation,
            self.args.val_size,
        );
        let (key, rev) = (object.key.clone(), object.rev);
        let applied = optimistic(
            &mut self.kv,
            self.timeout,
            &self.stats,
            &key,
            rev,
            put_op(&key, json),
            self.args.max_retries,
            false,
        )
        .await?;
        if let Applied::At(rev) = applied {
            let object = &mut self.objects[i];
            object.rev = rev;
            object.generation = generation;
        }
        Ok(())
    }

    async fn delete(&mut self) -> Result<(), OpError> {
        let i = self.rng.below(self.objects.len() as u64) as usize;
        let (key, rev) = (self.objects[i].key.clone(), self.objects[i].rev);
        optimistic(
            &mut self.kv,
            self.timeout,
            &self.stats,
            &key,
            rev,
            delete_op(&key),
            self.args.max_retries,
            true,
        )
        .await?;
        self.objects.swap_remove(i);
        Ok(())
    }

    async fn get(&mut self) -> Result<(), OpError> {
        let i = self.rng.below(self.objects.len() as u64) as usize;
        let get = RangeRequest {
            key: self.objects[i].key.clone(),
            ..Default::default()
        };
        call(self.timeout, self.kv.range(get)).await.map(|_| ())
    }

    async fn list(&mut self) -> Result<(), OpError> {
        let mut key = self.prefix.clone();
        let mut rev = 0;
        loop {
            let page_start = Instant::now();
            let page = RangeRequest {
                key,
                range_end: self.prefix_end.clone(),
                limit: self.args.list_limit,
                revision: rev,
                ..Default::default()
            };
            let response = match call(self.timeout, self.kv.range(page)).await {
                Ok(response) => response,
                Err(error) => {
                    self.stats
                        .record_errors("list-page", Role::Detail, &error, 1);
                    return Err(error);
                }
            };
            self.stats
                .record("list-page", Role::Detail, page_start.elapsed());
            self.stats.count("list-pages", 1);
            if rev == 0 {
                rev = revision(response.header);
            }
            match response.kvs.last() {
                Some(last) if response.more => {
                    let mut next = last.key.to_vec();
                    next.push(0);
                    key = Bytes::from(next);
                }
                _ => return Ok(()),
            }
        }
    }

    /// Creates the objects this client starts with, then opens its watch.
    async fn prepare(mut self) -> Result<MixedClient, BenchError> {
        for _ in 0..self.args.objects_per_client {
            self.create(Instant::now())
                .await
                .map_err(|error| BenchError::Setup {
                    what: "creating the initial objects".into(),
                    error,
                })?;
        }
        let Some(watch_client) = self.watch_client.take() else {
            return Ok(self);
        };
        let spec = WatchSpec {
            key: self.prefix.clone(),
            range_end: self.prefix_end.clone(),
            start_revision: 0,
            prev_kv: true,
        };
        let stats = self.stats.clone();
        let stream = watchers::open(
            watch_client,
            &spec,
            1,
            self.timeout,
            self.stats.clone(),
            move |_, event| {
                if event.r#type != EventType::Put as i32 {
                    return;
                }
                if let Some(issued) = event.kv.as_ref().and_then(|kv| pod_stamp(&kv.value)) {
                    stats.record("watch-event", Role::Detail, since_stamp(issued));
                }
            },
        )
        .await
        .map_err(|error| BenchError::Setup {
            what: "opening the watches".into(),
            error,
        })?;
        self.watch = Some(stream);
        Ok(self)
    }
}

impl Client for MixedClient {
    async fn op(&mut self, start: Instant) -> bool {
        match self.pick() {
            Action::Create => {
                let result = self.create(start).await;
                self.stats.outcome("create", start, result)
            }
            Action::Update => {
                let result = self.update(start).await;
                self.stats.outcome("update", start, result)
            }
            Action::Delete => {
                let result = self.delete().await;
                self.stats.outcome("delete", start, result)
            }
            Action::Get => {
                let result = self.get().await;
                self.stats.outcome("get", start, result)
            }
            Action::List => {
                let result = self.list().await;
                self.stats.outcome("list", start, result)
            }
        }
    }
}

fn cumulative_weights(args: &MixedArgs) -> Result<Vec<(u32, Action)>, BenchError> {
    let mut total = 0u32;
    let mut weights = Vec::new();
    for (weight, action) in [
        (args.create_weight, Action::Create),
        (args.update_weight, Action::Update),
        (args.delete_weight, Action::Delete),
        (args.get_weight, Action::Get),
        (args.list_weight, Action::List),
    ] {
        if weight > 0 {
            total = total
                .checked_add(weight)
                .ok_or_else(|| BenchError::Usage("op weights too large".into()))?;
            weights.push((total, action));
        }
    }
    if total == 0 {
        return Err(BenchError::Usage("every op weight is 0".into()));
    }
    Ok(weights)
}

pub async fn run(env: &Env, args: &MixedArgs) -> Result<Summary, BenchError> {
    if args.namespaces == 0 || args.list_limit < 0 {
        return Err(BenchError::Usage(
            "--namespaces must be at least 1 and --list-limit not negative".into(),
        ));
    }
    let weights = Arc::new(cumulative_weights(args)?);
    let shared = Arc::new(args.clone());
    let mut preparing = JoinSet::new();
    for i in 0..env.plan.clients {
        let namespace = format!("ns-{:04}", i % args.namespaces);
        let prefix = format!("/registry/pods/{namespace}/");
        let client = MixedClient {
            id: i,
            kv: env.pool.kv(i),
            watch_client: (!args.no_watch).then(|| env.pool.watch(i)),
            stats: env.stats.clone(),
            timeout: env.timeout,
            rng: Rng::new(i as u64),
            namespace,
            prefix_end: prefix_end(prefix.as_bytes()),
            prefix: Bytes::from(prefix),
            objects: Vec::new(),
            created: 0,
            weights: weights.clone(),
            args: shared.clone(),
            watch: None,
        };
        preparing.spawn(async move { (i, client.prepare().await) });
    }
    let mut clients = Vec::with_capacity(env.plan.clients);
    while let Some(joined) = preparing.join_next().await {
        let (i, client) = joined.map_err(|e| BenchError::Setup {
            what: "preparing clients".into(),
            error: OpError::Unexpected(e.to_string()),
        })?;
        clients.push((i, client?));
    }
    clients.sort_by_key(|(i, _)| *i);
    let clients = clients.into_iter().map(|(_, c)| c).collect();
    let outcome = env.run(clients).await?;
    let mut summary = env.summary("mixed", outcome, outcome.elapsed);
    summary.notes.push(format!(
        "{} namespaces, {} objects per client before the run, {} B per object",
        args.namespaces, args.objects_per_client, args.val_size
    ));
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_have_the_asked_size_and_carry_their_stamp() {
        let json = pod_json("ns-0001", "pod-3-7", 123_456_789, 2, 2048);
        assert_eq!(json.len(), 2048);
        assert_eq!(pod_stamp(&json), Some(123_456_789));
        let text = std::str::from_utf8(&json).unwrap();
        assert!(text.starts_with(r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"pod-3-7""#));
        assert!(text.ends_with(r#""status":{"phase":"Running"}}"#));
        // Too small a size: all fields, no padding.
        let small = pod_json("ns", "p", 1, 1, 10);
        assert!(small.len() > 10);
        assert_eq!(pod_stamp(&small), Some(1));
        assert_eq!(pod_stamp(b"{}"), None);
    }

    #[test]
    fn weights_pick_every_action_with_weight() {
        let args = MixedArgs {
            namespaces: 1,
            objects_per_client: 0,
            val_size: 100,
            create_weight: 1,
            update_weight: 0,
            delete_weight: 2,
            get_weight: 0,
            list_weight: 1,
            list_limit: 500,
            max_retries: 1,
            no_watch: true,
        };
        assert_eq!(
            cumulative_weights(&args).unwrap(),
            vec![(1, Action::Create), (3, Action::Delete), (4, Action::List)]
        );
        let none = MixedArgs {
            create_weight: 0,
            delete_weight: 0,
            list_weight: 0,
            ..args
        };
        assert!(cumulative_weights(&none).is_err());
    }
}
