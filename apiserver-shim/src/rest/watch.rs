//! Watch streams (reference: kubernetes-apiserver.md §3): JSON lines of
//! {"type", "object"} over a store watch of the collection's prefix.
//!
//! - resourceVersion unset or "0": ADDED for every current object (a list at
//!   revision R), then changes from R+1; N: changes after N only.
//! - With selectors, an object entering the selection is ADDED, one leaving
//!   it DELETED (its old state at the event's revision).
//! - A compacted start gives one ERROR event (410 Expired) and the end.
//! - allowWatchBookmarks: a BOOKMARK every minute; sendInitialEvents ends
//!   the initial ADDED events with the initial-events-end BOOKMARK.
//! - The stream ends at timeoutSeconds; a client that goes away drops the
//!   receiver, which ends the task and with it the store watch.
//!
//! Every kind but events is served from its watch cache (`crate::cache`):
//! unset and "0" start from the cache's state (unset once the cache has
//! caught up with the store), N from the cache's window of events (older
//! than the window: the 410 ERROR event). The store serves a watch itself
//! when the cache cannot (events; the cache not ready or not caught up in
//! time).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::{interval_at, sleep, Instant};
use tracing::warn;

use super::{object, Api, Query, Reply, Target};
use crate::cache::client;
use crate::cache::event::Format;
use crate::cache::watchers::{Spec, Wire};
use crate::cache::window::TooOld;
use crate::cache::{Cache, Freshness, Start};
use crate::error::ApiError;
use crate::registry::Kind;
use crate::selector::Selector;
use crate::store::{prefix_end, Event, StoreError};
use crate::table;

/// kube-apiserver's --min-request-timeout: a watch without timeoutSeconds
/// ends after this.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);
/// Lines queued for a slow client before the watch task waits for it.
const QUEUE: usize = 256;

struct Plan {
    kind: &'static Kind,
    selector: Selector,
    start: Vec<u8>,
    end: Vec<u8>,
    /// The prefix object keys are relative to (for DELETED without a prev).
    namespace_in_key: bool,
    /// "0"/unset: list first. Some(n): from n+1 only.
    from: Option<i64>,
    bookmarks: bool,
    initial_end_bookmark: bool,
    timeout: Duration,
    /// Objects as one-row Tables (kubectl get -w).
    table: Option<table::Options>,
    /// The Table's column definitions went out (with the first event).
    columns_sent: AtomicBool,
    /// How fresh the initial state must be (`from` None).
    freshness: Freshness,
    /// Lines are protobuf frames.
    protobuf: bool,
    /// The namespace and selectors as given (watches alike share lines).
    class: String,
}

impl Plan {
    /// The line of an ADDED, MODIFIED or DELETED event.
    fn line(&self, kind: &str, obj: &Value) -> Bytes {
        match self.table {
            None => line(kind, obj),
            Some(opts) => {
                let first = !self.columns_sent.swap(true, Ordering::Relaxed);
                line(kind, &table::one(self.kind, obj, opts, first))
            }
        }
    }
}

fn plan(
    api: &Api,
    t: &Target<'_>,
    q: &Query,
    table: Option<table::Options>,
    protobuf: bool,
) -> Result<Plan, ApiError> {
    let selector = Selector::parse(t.kind, q.get("labelSelector"), q.get("fieldSelector"))?;
    let send_initial = q.flag("sendInitialEvents")?;
    let rvm = q.get("resourceVersionMatch");
    if send_initial && rvm != Some("NotOlderThan") {
        return Err(ApiError::Unprocessable(
            "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan".into(),
        ));
    }
    if !send_initial && rvm.is_some() {
        return Err(ApiError::Unprocessable(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided".into(),
        ));
    }
    let from = match q.get("resourceVersion") {
        None | Some("0") => None,
        _ if send_initial => None,
        Some(rv) => Some(
            rv.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::BadRequest(format!("invalid resourceVersion: {rv:?}")))?,
        ),
    };
    let freshness = match q.get("resourceVersion") {
        None => Freshness::Consistent,
        Some("0") => Freshness::Any,
        Some(rv) => Freshness::NotOlderThan(
            rv.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::BadRequest(format!("invalid resourceVersion: {rv:?}")))?,
        ),
    };
    let timeout = match q.int("timeoutSeconds")? {
        Some(s) if s > 0 => Duration::from_secs(s as u64),
        _ => DEFAULT_TIMEOUT,
    };
    let prefix = api.collection(t.kind, t.namespace);
    let (start, end) = match (
        selector.pinned_name(),
        t.namespace.is_some() || !t.kind.namespaced,
    ) {
        (Some(name), true) => {
            let key = format!("{prefix}{name}");
            (key.clone().into_bytes(), format!("{key}\0").into_bytes())
        }
        _ => (prefix.clone().into_bytes(), prefix_end(prefix.as_bytes())),
    };
    Ok(Plan {
        kind: t.kind,
        selector,
        start,
        end,
        namespace_in_key: t.kind.namespaced,
        from,
        bookmarks: q.flag("allowWatchBookmarks")?,
        initial_end_bookmark: send_initial,
        timeout,
        table,
        columns_sent: AtomicBool::new(false),
        freshness,
        protobuf,
        class: format!(
            "{}\0{}\0{}",
            t.namespace.unwrap_or(""),
            q.get("labelSelector").unwrap_or(""),
            q.get("fieldSelector").unwrap_or("")
        ),
    })
}

pub async fn watch(
    api: &Api,
    t: &Target<'_>,
    q: &Query,
    table: Option<table::Options>,
    protobuf: bool,
) -> Result<Reply, ApiError> {
    let plan = plan(api, t, q, table, protobuf)?;
    if let Some(cache) = api.cache(plan.kind) {
        if let Some(reply) = watch_cached(cache, &plan, t).await? {
            return Ok(reply);
        }
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    // The initial state is read before answering, so that its errors are
    // still HTTP errors.
    let (initial, from) = match plan.from {
        Some(n) => (Vec::new(), n + 1),
        None => {
            let page = api.store.list(&plan.start, &plan.end, 0, 0).await?;
            let mut objs = Vec::new();
            for kv in &page.kvs {
                let obj = object::decode_as(plan.kind, kv)?;
                if plan.selector.matches(&obj) {
                    objs.push(obj);
                }
            }
            (objs, page.revision + 1)
        }
    };
    let events = api.store.watch(&plan.start, &plan.end, from).await?;
    tokio::spawn(run(plan, initial, from - 1, events, tx));
    Ok(Reply::Stream(rx))
}

/// A watch served from `cache`; None: the store serves it (the cache is
/// not ready, or not caught up in time).
async fn watch_cached(
    cache: Arc<Cache>,
    plan: &Plan,
    t: &Target<'_>,
) -> Result<Option<Reply>, ApiError> {
    let start = match plan.from {
        Some(n) => Start::After(n),
        None if cache.fresh(plan.freshness).await? => Start::Snapshot,
        None => return Ok(None),
    };
    let wire = match (plan.table, plan.protobuf) {
        (Some(opts), _) => Wire::Table(opts),
        (None, true) => Wire::Shared(Format::Protobuf),
        (None, false) => Wire::Shared(Format::Json),
    };
    let spec = Arc::new(Spec {
        kind: plan.kind,
        namespace: t
            .namespace
            .filter(|_| plan.kind.namespaced)
            .map(String::from),
        selector: plan.selector.clone(),
        class: plan.class.clone(),
        wire,
    });
    let Some(registered) = cache.watch(spec.clone(), (&plan.start, &plan.end), start) else {
        return Ok(None);
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    match registered {
        Err(TooOld { start }) => {
            let asked = plan.from.unwrap_or_default();
            if let Some(line) = client::too_old(&spec, asked, start) {
                let _ = tx.try_send(line);
            }
        }
        Ok((initial, revision, registration)) => {
            let opts = client::Options {
                bookmarks: plan.bookmarks,
                initial_end_bookmark: plan.initial_end_bookmark,
                timeout: plan.timeout,
            };
            tokio::spawn(client::run(
                spec,
                opts,
                initial,
                revision,
                cache,
                registration,
                tx,
            ));
        }
    }
    Ok(Some(Reply::Stream(rx)))
}

fn line(kind: &str, obj: &Value) -> Bytes {
    let mut s = json!({"type": kind, "object": obj}).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn bookmark(kind: &Kind, revision: i64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": kind.kind, "apiVersion": kind.api_version(), "metadata": meta}),
    )
}

async fn run(
    plan: Plan,
    initial: Vec<Value>,
    start_rev: i64,
    mut events: crate::store::EventStream,
    tx: mpsc::Sender<Bytes>,
) {
    let deadline = sleep(plan.timeout);
    tokio::pin!(deadline);
    let mut last_rev = start_rev;
    // Lines become protobuf frames here when asked for; one that cannot be
    // ends the stream (the client lists again).
    let tx = Frames {
        tx,
        protobuf: plan.protobuf,
    };
    for obj in &initial {
        if tx.send(plan.line("ADDED", obj)).await.is_err() {
            return;
        }
    }
    if plan.initial_end_bookmark
        && plan.bookmarks
        && tx.send(bookmark(plan.kind, last_rev, true)).await.is_err()
    {
        return;
    }
    let mut ticks = interval_at(Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            _ = tx.closed() => return,
            _ = ticks.tick(), if plan.bookmarks => {
                if tx.send(bookmark(plan.kind, last_rev, false)).await.is_err() {
                    return;
                }
            }
            batch = events.next() => {
                let lines = match batch {
                    None => return,
                    Some(Ok(batch)) => {
                        if let Some(e) = batch.last() {
                            last_rev = e.revision();
                        }
                        batch.iter().filter_map(|e| translate(&plan, e)).collect::<Vec<_>>()
                    }
                    Some(Err(e)) => vec![line("ERROR", &error_status(start_rev, e))],
                };
                for l in lines {
                    if tx.send(l).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// The store path's sender: JSON lines, or the protobuf frames of them.
struct Frames {
    tx: mpsc::Sender<Bytes>,
    protobuf: bool,
}

impl Frames {
    async fn send(&self, line: Bytes) -> Result<(), ()> {
        let frame = if self.protobuf {
            crate::proto::watch_frame(&line).map_err(|e| warn!("protobuf watch: {e}"))?
        } else {
            line
        };
        self.tx.send(frame).await.map_err(|_| ())
    }

    async fn closed(&self) {
        self.tx.closed().await
    }
}

/// The ERROR event's Status for a failed store watch.
fn error_status(start_rev: i64, e: StoreError) -> Value {
    match e {
        StoreError::Compacted { compact_revision } => {
            let msg = match compact_revision {
                Some(c) => format!("too old resource version: {start_rev} ({c})"),
                None => format!("too old resource version: {start_rev}"),
            };
            ApiError::Expired(msg).status()
        }
        other => ApiError::from(other).status(),
    }
}

/// One store event as the watch line it becomes, if the selection sees it.
fn translate(plan: &Plan, e: &Event) -> Option<Bytes> {
    let decode_prev = |prev: &Option<crate::store::Kv>, rev: i64| {
        prev.as_ref()
            .and_then(|p| object::decode_at(&p.value, &p.key, rev).ok())
            .map(|mut o| {
                crate::crd::serve(plan.kind, &mut o);
                o
            })
    };
    match e {
        Event::Put { kv, prev } => {
            let obj = object::decode_as(plan.kind, kv).ok()?;
            let old = decode_prev(prev, kv.mod_revision);
            let now_in = plan.selector.matches(&obj);
            let was_in = old.as_ref().is_some_and(|o| plan.selector.matches(o));
            let created = kv.create_revision == kv.mod_revision;
            match (now_in, was_in) {
                (true, true) if !created => Some(plan.line("MODIFIED", &obj)),
                (true, _) => Some(plan.line("ADDED", &obj)),
                (false, true) => old.map(|o| plan.line("DELETED", &o)),
                (false, false) => None,
            }
        }
        Event::Delete {
            key,
            revision,
            prev,
        } => {
            let obj = decode_prev(prev, *revision).unwrap_or_else(|| bare(plan, key, *revision));
            plan.selector
                .matches(&obj)
                .then(|| plan.line("DELETED", &obj))
        }
    }
}

/// A deleted object whose last state is compacted away: what its key says.
fn bare(plan: &Plan, key: &[u8], revision: i64) -> Value {
    let key = String::from_utf8_lossy(key);
    let mut parts = key.rsplit('/');
    let name = parts.next().unwrap_or("");
    let mut meta = json!({"name": name, "resourceVersion": revision.to_string()});
    if plan.namespace_in_key {
        meta["namespace"] = json!(parts.next().unwrap_or(""));
    }
    json!({"kind": plan.kind.kind, "apiVersion": plan.kind.api_version(), "metadata": meta})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;
    use crate::store::Kv;

    fn plan_for(labels: Option<&str>) -> Plan {
        let kind = find("", "v1", "configmaps").unwrap();
        Plan {
            kind,
            selector: Selector::parse(kind, labels, None).unwrap(),
            start: vec![],
            end: vec![],
            namespace_in_key: true,
            from: None,
            bookmarks: false,
            initial_end_bookmark: false,
            timeout: DEFAULT_TIMEOUT,
            table: None,
            columns_sent: AtomicBool::new(false),
            freshness: Freshness::Any,
            protobuf: false,
            class: String::new(),
        }
    }

    fn kv(labels: Value, create: i64, rev: i64) -> Kv {
        let v = json!({"kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d", "labels": labels}});
        Kv {
            key: "/registry/configmaps/d/c".into(),
            value: v.to_string().into(),
            create_revision: create,
            mod_revision: rev,
        }
    }

    fn decoded(b: Option<Bytes>) -> Value {
        serde_json::from_slice(&b.unwrap()).unwrap()
    }

    #[test]
    fn puts_and_deletes_become_added_modified_deleted() {
        let p = plan_for(None);
        let added = decoded(translate(
            &p,
            &Event::Put {
                kv: kv(json!({}), 5, 5),
                prev: None,
            },
        ));
        assert_eq!(added["type"], "ADDED");
        assert_eq!(added["object"]["metadata"]["resourceVersion"], "5");
        let modified = decoded(translate(
            &p,
            &Event::Put {
                kv: kv(json!({}), 5, 6),
                prev: Some(kv(json!({}), 5, 5)),
            },
        ));
        assert_eq!(modified["type"], "MODIFIED");
        let deleted = decoded(translate(
            &p,
            &Event::Delete {
                key: "/registry/configmaps/d/c".into(),
                revision: 7,
                prev: Some(kv(json!({}), 5, 6)),
            },
        ));
        assert_eq!(deleted["type"], "DELETED");
        assert_eq!(deleted["object"]["metadata"]["resourceVersion"], "7");
        assert_eq!(deleted["object"]["metadata"]["name"], "c");
    }

    #[test]
    fn selections_see_objects_enter_and_leave() {
        let p = plan_for(Some("app=web"));
        let enter = translate(
            &p,
            &Event::Put {
                kv: kv(json!({"app": "web"}), 5, 6),
                prev: Some(kv(json!({}), 5, 5)),
            },
        );
        assert_eq!(decoded(enter)["type"], "ADDED");
        let leave = decoded(translate(
            &p,
            &Event::Put {
                kv: kv(json!({}), 5, 7),
                prev: Some(kv(json!({"app": "web"}), 5, 6)),
            },
        ));
        assert_eq!(leave["type"], "DELETED");
        assert_eq!(leave["object"]["metadata"]["labels"]["app"], "web");
        assert_eq!(leave["object"]["metadata"]["resourceVersion"], "7");
        assert!(translate(
            &p,
            &Event::Put {
                kv: kv(json!({}), 8, 8),
                prev: None
            }
        )
        .is_none());
    }

    #[test]
    fn a_compacted_start_is_a_410_expired_error_event() {
        let s = error_status(
            3,
            StoreError::Compacted {
                compact_revision: Some(9),
            },
        );
        assert_eq!(s["code"], 410);
        assert_eq!(s["reason"], "Expired");
        assert_eq!(s["message"], "too old resource version: 3 (9)");
    }
}
