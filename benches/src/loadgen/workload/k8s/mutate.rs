//! The controller side: creates, labels patches, status patches and deletes
//! of pods, one per scheduled operation of the runner (open loop at
//! `--rate`: each timed from its scheduled start), picked by `--mix`.
//!
//! A mutation takes a pod out of the shared [`Pods`] for its duration, so no
//! two mutations of one pod are ever in flight: each patch carries the
//! resourceVersion it last saw as a precondition and never conflicts with
//! the load itself (a conflict would be the server's doing). An update,
//! status patch or delete finding no pod free creates one instead.
//!
//! Kinds (ops): `create`, `update`, `status`, `delete`. Each is entered in
//! the [`Ledger`] before it is sent, with the pod's node, for the watchers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use hyper::Method;
use serde_json::Value;

use super::api::{Answer, Conn, MERGE_PATCH};
use super::ledger::Ledger;
use super::pod::{labels_patch, pod_json, resource_version, status_patch, PodState};
use crate::loadgen::cli::Mix;
use crate::loadgen::error::OpError;
use crate::loadgen::keys::Rng;
use crate::loadgen::runner::Client;
use crate::loadgen::stats::Stats;

/// The pods no mutation holds now.
#[derive(Default)]
pub struct Pods {
    free: Mutex<Vec<PodState>>,
}

impl Pods {
    pub fn new(pods: Vec<PodState>) -> Pods {
        Pods {
            free: Mutex::new(pods),
        }
    }

    /// Takes a free pod at random.
    fn take(&self, rng: &mut Rng) -> Option<PodState> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.is_empty() {
            return None;
        }
        let i = rng.below(free.len() as u64) as usize;
        Some(free.swap_remove(i))
    }

    fn put_back(&self, pod: PodState) {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(pod);
    }

    pub fn len(&self) -> usize {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What an operation does to a pod it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Update,
    Status,
    Delete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Create,
    Change(Change),
}

impl Verb {
    fn kind(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Change(Change::Update) => "update",
            Verb::Change(Change::Status) => "status",
            Verb::Change(Change::Delete) => "delete",
        }
    }
}

/// What the mutators share.
pub struct Shared {
    pub stats: Arc<Stats>,
    pub ledger: Arc<Ledger>,
    pub pods: Arc<Pods>,
    pub mix: Mix,
    pub namespace: String,
    pub run: String,
    pub nodes: usize,
    pub pod_size: usize,
    /// The next sequence number (0 is no mutation's).
    pub seq: AtomicU64,
    /// The next name of a created pod.
    pub created: AtomicU64,
}

/// One client of the runner.
pub struct Mutator {
    pub conn: Conn,
    pub shared: Arc<Shared>,
    pub rng: Rng,
}

/// What the ledger is told of a mutation.
struct Mutation<'a> {
    seq: u64,
    /// The node of the pod it changes.
    node: usize,
    /// The pod a delete removes.
    delete: Option<&'a str>,
}

/// The pod's new resourceVersion from a create or patch answer.
fn new_rv(answer: &Value) -> Result<String, OpError> {
    resource_version(answer)
        .map(str::to_owned)
        .ok_or_else(|| OpError::Unexpected("answer without metadata.resourceVersion".into()))
}

impl Mutator {
    fn pick(&mut self) -> Verb {
        let m = self.shared.mix;
        let total = m.create + m.update + m.status + m.delete;
        let mut roll = self.rng.below(u64::from(total)) as u32;
        for (weight, verb) in [
            (m.create, Verb::Create),
            (m.update, Verb::Change(Change::Update)),
            (m.status, Verb::Change(Change::Status)),
            (m.delete, Verb::Change(Change::Delete)),
        ] {
            if roll < weight {
                return verb;
            }
            roll -= weight;
        }
        Verb::Create
    }

    fn pods_path(&self) -> String {
        format!("/api/v1/namespaces/{}/pods", self.shared.namespace)
    }

    /// Sends `mutation` and records its answer in the ledger.
    async fn send(
        &self,
        mutation: Mutation<'_>,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Answer {
        let ledger = &self.shared.ledger;
        ledger.send(mutation.seq, mutation.node, mutation.delete);
        let answer = self.conn.call(method, path, content_type, body).await;
        ledger.answered(mutation.seq, answer.is_ok());
        answer
    }

    async fn create(&mut self, seq: u64) -> Result<(), OpError> {
        let shared = self.shared.clone();
        let n = shared.created.fetch_add(1, Ordering::Relaxed);
        let mut pod = PodState {
            name: format!("pod-{}-c{n}", shared.run),
            node: self.rng.below(shared.nodes as u64) as usize,
            rv: String::new(),
            generation: 0,
            ready: false,
        };
        let body = pod_json(&shared.namespace, &shared.run, &pod, seq, shared.pod_size);
        let path = self.pods_path();
        let answer = self
            .send(
                Mutation {
                    seq,
                    node: pod.node,
                    delete: None,
                },
                Method::POST,
                &path,
                "application/json",
                body,
            )
            .await?;
        pod.rv = new_rv(&answer)?;
        shared.pods.put_back(pod);
        Ok(())
    }

    /// An update, status patch or delete of a pod this mutator holds.
    async fn change(&mut self, change: Change, mut pod: PodState, seq: u64) -> Result<(), OpError> {
        let path = format!("{}/{}", self.pods_path(), pod.name);
        let patch = Mutation {
            seq,
            node: pod.node,
            delete: None,
        };
        let result = match change {
            Change::Update => {
                pod.generation += 1;
                let body = labels_patch(&pod, seq);
                self.send(patch, Method::PATCH, &path, MERGE_PATCH, body)
                    .await
            }
            Change::Status => {
                pod.ready = !pod.ready;
                let body = status_patch(&pod, seq);
                let path = format!("{path}/status");
                self.send(patch, Method::PATCH, &path, MERGE_PATCH, body)
                    .await
            }
            Change::Delete => {
                let path = format!("{path}?gracePeriodSeconds=0");
                let name = pod.name.clone();
                let delete = Mutation {
                    delete: Some(&name),
                    ..patch
                };
                let answer = self
                    .send(delete, Method::DELETE, &path, "", Bytes::new())
                    .await;
                if answer.is_ok() {
                    return Ok(()); // the pod is gone
                }
                answer
            }
        };
        match result.and_then(|answer| new_rv(&answer)) {
            Ok(rv) => {
                pod.rv = rv;
                self.shared.pods.put_back(pod);
                Ok(())
            }
            Err(e) => {
                // The pod's state is unknown now (the request may have been
                // applied): it is not used again rather than conflict.
                self.shared.stats.count("pods-dropped", 1);
                Err(e)
            }
        }
    }
}

impl Client for Mutator {
    async fn op(&mut self, start: Instant) -> bool {
        let picked = match self.pick() {
            Verb::Create => None,
            Verb::Change(change) => self
                .shared
                .pods
                .take(&mut self.rng)
                .map(|pod| (change, pod)),
        };
        // Numbered after the pod was taken (under the pool's lock): the
        // mutation that put it back was numbered before, so each version of
        // a pod has a higher number than the last, as `pod::written_by`
        // assumes.
        let seq = self.shared.seq.fetch_add(1, Ordering::Relaxed);
        let (verb, result) = match picked {
            Some((change, pod)) => (Verb::Change(change), self.change(change, pod, seq).await),
            None => (Verb::Create, self.create(seq).await),
        };
        self.shared.stats.outcome(verb.kind(), start, result)
    }
}
