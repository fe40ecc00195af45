//! The single writer, with group commit and watch notification.
//!
//! Requests queue on a channel; one thread takes everything queued, applies it in
//! order (each command its own revision), fsyncs once through
//! `Store::commit`, and only then answers every request of the group. While one
//! group is being fsynced the next one queues, so concurrent writers share
//! fsyncs and a lone writer pays exactly one.
//!
//! A storage failure (I/O) stops the process, as etcd does: what was applied in
//! memory may not match the disk, and a restart recovers the last durable state.
//! So does a writer stuck on one group for `watchdog::STUCK_WRITER`.

use std::sync::Arc;

use oxetcd_storage::Store;
use oxetcd_watch::WatchHub;
use tokio::sync::{mpsc, oneshot};
use tracing::error;

use super::command::{Request, Response};
use super::watchdog::{Watchdog, STUCK_WRITER};
use crate::apply;
use crate::error::EtcdError;

/// Most commands applied per fsync.
const MAX_GROUP: usize = 1024;
/// Requests that may wait for the writer before senders wait too.
const QUEUE_DEPTH: usize = 16 * 1024;

struct Proposal {
    request: Request,
    reply: oneshot::Sender<Result<Response, EtcdError>>,
}

/// The handle request handlers propose through.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Proposal>,
}

impl Proposer {
    /// Starts the writer thread over `store`; each commit's changes go to `hub`.
    pub fn start(store: Arc<Store>, hub: Arc<WatchHub>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let watchdog = Watchdog::start(STUCK_WRITER, |busy| {
            error!(?busy, "the writer is stuck on one group of writes (storage engine hang?): stopping so that a restart recovers the last durable state");
            std::process::exit(1);
        })?;
        std::thread::Builder::new()
            .name("oxetcd-apply".into())
            .spawn(move || run(&store, &hub, &watchdog, rx))?;
        Ok(Self { tx })
    }

    /// Applies `request` and returns its response once it is durable.
    pub async fn propose(&self, request: Request) -> Result<Response, EtcdError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Proposal { request, reply })
            .await
            .map_err(|_| EtcdError::Stopped)?;
        rx.await.map_err(|_| EtcdError::Stopped)?
    }
}

fn run(store: &Store, hub: &WatchHub, watchdog: &Watchdog, mut rx: mpsc::Receiver<Proposal>) {
    let mut index = store.applied_index();
    let mut group = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(p) => group.push(p),
                Err(_) => break,
            }
        }
        let _busy = watchdog.busy();
        let before = (store.applied_revision(), store.compacted_revision());
        let mut results = Vec::with_capacity(group.len());
        let mut fatal = None;
        for p in &group {
            index += 1;
            let result = apply::apply(store, index, &p.request);
            if let Err(e) = &result {
                if e.is_fatal() {
                    fatal = Some(e.to_string());
                    break;
                }
            }
            results.push(result);
        }
        if fatal.is_none() && before != (store.applied_revision(), store.compacted_revision()) {
            match store.commit() {
                // Watchers see a change only once it is durable, before the
                // writer hears back: a client that wrote and then watches from
                // the next revision misses nothing.
                Ok(committed) => hub.notify(&committed.events),
                Err(e) => fatal = Some(e.to_string()),
            }
        }
        if let Some(err) = fatal {
            error!(error = %err, "storage failure: stopping so that a restart recovers the last durable state");
            for p in group.drain(..) {
                let _ = p.reply.send(Err(EtcdError::Storage(err.clone())));
            }
            std::process::exit(1);
        }
        for (p, result) in group.drain(..).zip(results) {
            // The client may have gone away; its write stands all the same.
            let _ = p.reply.send(result);
        }
    }
}
