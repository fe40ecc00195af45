//! One client watch served from a cache: what it starts with (a snapshot's
//! ADDED events, or the window's events after its resourceVersion), then
//! what the fan-out queues for it, bookmarks, and the end.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::{interval_at, sleep, Instant};

use super::event::{encode, Format};
use super::resource::{Cache, Initial, Registration};
use super::watchers::{Closed, Spec, Wire, QUEUE};
use crate::error::ApiError;

/// How often a watch that allows them gets a BOOKMARK (kube-apiserver's
/// ~1 minute).
pub const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

/// What the client asked of its watch besides the selection.
pub struct Options {
    pub bookmarks: bool,
    /// sendInitialEvents: a BOOKMARK marks the end of the initial events.
    pub initial_end_bookmark: bool,
    /// When the watch ends (timeoutSeconds).
    pub timeout: Duration,
}

/// The format of lines this watch writes outside the shared ones
/// (bookmarks, errors): Tables are JSON.
fn format(spec: &Spec) -> Format {
    match spec.wire {
        Wire::Shared(f) => f,
        Wire::Table(_) => Format::Json,
    }
}

/// A BOOKMARK line: an empty object of the kind at `revision`.
pub fn bookmark(spec: &Spec, revision: i64, initial_end: bool) -> Option<Bytes> {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let obj =
        json!({"kind": spec.kind.kind, "apiVersion": spec.kind.api_version(), "metadata": meta});
    encode("BOOKMARK", &obj, format(spec))
}

/// An ERROR line carrying `e`'s Status.
pub fn error(spec: &Spec, e: &ApiError) -> Option<Bytes> {
    encode("ERROR", &e.status(), format(spec))
}

/// The Status a watch closed by the cache ends with: 410 Expired, which
/// makes client-go, kube-rs and the Python client list again.
fn closed_error(spec: &Spec, why: &Closed, last: i64) -> ApiError {
    match why {
        Closed::TooSlow => ApiError::Expired(format!(
            "watch of {} closed: the client fell {QUEUE} events behind; list again",
            spec.kind.qualified_resource()
        )),
        Closed::Rebuilt { revision } => {
            ApiError::Expired(format!("too old resource version: {last} ({revision})"))
        }
    }
}

/// Serves the watch into `out` until it times out, the client goes, or the
/// cache closes it. `revision`: the cache's revision when it registered.
pub async fn run(
    spec: Arc<Spec>,
    opts: Options,
    initial: Initial,
    revision: i64,
    cache: Arc<Cache>,
    mut reg: Registration,
    out: mpsc::Sender<Bytes>,
) {
    let deadline = sleep(opts.timeout);
    tokio::pin!(deadline);
    let columns_sent = reg.registered.columns_sent.clone();
    let closed = reg.registered.closed.clone();
    let mut last = revision;
    // What the watch starts with, encoded and sent one at a time (a
    // snapshot may be every object of the resource).
    match initial {
        Initial::Objects(objs) => {
            for o in &objs {
                let Some(v) = o.value.as_ref().ok().filter(|v| spec.matches(v)) else {
                    continue;
                };
                let Some(l) = spec.initial_line(o, v, &columns_sent) else {
                    continue;
                };
                if out.send(l).await.is_err() {
                    return;
                }
            }
        }
        Initial::Events(events) => {
            for ev in &events {
                last = last.max(ev.revision);
                let Some(l) = ev
                    .line_type(|v| spec.matches(v))
                    .and_then(|t| spec.line(ev, t, &columns_sent))
                else {
                    continue;
                };
                if out.send(l).await.is_err() {
                    return;
                }
            }
        }
    }
    if opts.initial_end_bookmark && opts.bookmarks {
        if let Some(b) = bookmark(&spec, revision, true) {
            if out.send(b).await.is_err() {
                return;
            }
        }
    }
    let mut ticks = interval_at(Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            _ = out.closed() => return,
            _ = ticks.tick(), if opts.bookmarks => {
                // Every event up to the cache's revision is queued by now:
                // forward them, so that the bookmark follows them.
                let at = cache.revision();
                while let Ok((rev, l)) = reg.registered.rx.try_recv() {
                    last = last.max(rev);
                    if out.send(l).await.is_err() {
                        return;
                    }
                }
                if let Some(b) = bookmark(&spec, at.max(last), false) {
                    if out.send(b).await.is_err() {
                        return;
                    }
                }
            }
            item = reg.registered.rx.recv() => {
                let line = match (item, closed.get()) {
                    (Some((rev, line)), None) => {
                        last = last.max(rev);
                        line
                    }
                    (_, Some(why)) => {
                        // Closed: what is still queued is not sent.
                        if let Some(l) = error(&spec, &closed_error(&spec, why, last)) {
                            let _ = out.send(l).await;
                        }
                        return;
                    }
                    (None, None) => return,
                };
                if out.send(line).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The single ERROR line of a watch from before the cache's window.
pub fn too_old(spec: &Spec, asked: i64, start: i64) -> Option<Bytes> {
    error(
        spec,
        &ApiError::Expired(format!("too old resource version: {asked} ({start})")),
    )
}
