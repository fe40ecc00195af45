//! `watch`: writers put unique values to a few keys under `jepsen/w/`; one
//! watcher per member watches the prefix from the run's first revision.
//! A watcher whose stream breaks (its member killed, a timeout) resumes on
//! the next member at its last revision + 1. When the faults are over, a
//! fence key is put; each watcher must reach the fence's revision, having
//! seen every event on the way, in order, once.
//!
//! The watchers and the fence serve the `kubernetes` workload too, on its
//! own prefix and with kube-apiserver's options ([`Spec`]).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::watch_request::RequestUnion;
use oxetcd_proto::etcdserverpb::{WatchCreateRequest, WatchRequest};
use oxetcd_proto::mvccpb::event::EventType;
use oxetcd_proto::mvccpb::Event;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;

use crate::client::{self, Ctx};
use crate::history::{Call, Op, Outcome, WatchEvent};

pub const PREFIX: &str = "jepsen/w/";

/// What a watcher watches, and how it asks.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub prefix: &'static str,
    /// Send `hasleader: true` metadata, as kube-apiserver does: a member
    /// without a leader must then cancel the watch rather than stay silent.
    pub require_leader: bool,
    /// Ask for the previous value with every event.
    pub prev_kv: bool,
}

/// The `watch` workload's watchers.
pub const SPEC: Spec = Spec {
    prefix: PREFIX,
    require_leader: false,
    prev_kv: false,
};
const KEYS: u64 = 5;
/// How long a watcher waits for the fence on one member before trying the
/// next, and in all.
const FENCE_WAIT_PER_MEMBER: Duration = Duration::from_secs(5);
const FENCE_WAIT: Duration = Duration::from_secs(30);

/// What the watchers need to know about the end of the run: the fence's
/// revision once it is written (0 before).
#[derive(Default)]
pub struct Fence {
    revision: AtomicI64,
    /// When the fence was written: watchers give up FENCE_WAIT later.
    written: std::sync::Mutex<Option<Instant>>,
}

impl Fence {
    fn revision(&self) -> Option<i64> {
        match self.revision.load(Ordering::Acquire) {
            0 => None,
            r => Some(r),
        }
    }
    fn gave_up(&self) -> bool {
        let written = self.written.lock().ok().and_then(|w| *w);
        written.is_some_and(|t| t.elapsed() > FENCE_WAIT)
    }
}

pub async fn writer(
    ctx: Arc<Ctx>,
    counter: Arc<AtomicU64>,
    mut process: u32,
    member: usize,
    mut rng: ChaCha8Rng,
) {
    let mut kv = ctx.kv(member);
    while ctx.running() {
        let value = counter.fetch_add(1, Ordering::Relaxed) as i64;
        let key = format!("{PREFIX}k{}", rng.random_range(0..KEYS));
        let call = Call::Put {
            key: key.clone(),
            value,
            revision: None,
        };
        let kv = &mut kv;
        let outcome = ctx
            .invoke(process, call, true, async move {
                let revision = client::put(kv, &key, value).await?;
                Ok(Call::Put {
                    key,
                    value,
                    revision: Some(revision),
                })
            })
            .await;
        if outcome == Outcome::Info {
            process += ctx.concurrency;
        }
        super::register::pace(&ctx, outcome).await;
    }
}

/// The revision the watchers start from: the current one + 1.
pub async fn start_revision(ctx: &Ctx, prefix: &str) -> Result<i64, tonic::Status> {
    let mut kv = ctx.kv(0);
    let (revision, _) = client::list(&mut kv, prefix, 1, 0).await?;
    Ok(revision + 1)
}

/// Writes the fence `key` (after the faults), retrying on every member.
pub async fn write_fence(ctx: &Ctx, fence: &Fence, key: &str, process: u32) {
    for attempt in 0..3 * ctx.members() {
        let mut kv = ctx.kv(attempt);
        let key = key.to_owned();
        let value = -1 - attempt as i64;
        let invoke = ctx.now();
        let result = tokio::time::timeout(ctx.op_timeout, client::put(&mut kv, &key, value)).await;
        let (outcome, revision, error) = match result {
            Ok(Ok(revision)) => (Outcome::Ok, Some(revision), None),
            Ok(Err(e)) => (Outcome::Info, None, Some(e.to_string())),
            Err(_) => (Outcome::Info, None, Some("timeout".into())),
        };
        ctx.record(Op {
            process,
            invoke,
            complete: ctx.now(),
            outcome,
            call: Call::Put {
                key,
                value,
                revision,
            },
            error,
        });
        if let Some(revision) = revision {
            if let Ok(mut written) = fence.written.lock() {
                *written = Some(Instant::now());
            }
            fence.revision.store(revision, Ordering::Release);
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // No fence: the watchers give up after FENCE_WAIT and are "stalled".
    if let Ok(mut written) = fence.written.lock() {
        *written = Some(Instant::now());
    }
}

/// One watcher: follows `spec.prefix` from `from` until it has seen the
/// fence.
pub async fn watcher(
    ctx: Arc<Ctx>,
    fence: Arc<Fence>,
    spec: Spec,
    watcher: u32,
    process: u32,
    from: i64,
) {
    let invoke = ctx.now();
    let mut events: Vec<WatchEvent> = Vec::new();
    let mut resumes = Vec::new();
    let mut member = watcher as usize;
    let mut next = from;
    let caught_up = |events: &[WatchEvent], fence: &Fence| {
        fence
            .revision()
            .filter(|f| events.last().is_some_and(|e| e.revision >= *f))
    };
    'streams: loop {
        if caught_up(&events, &fence).is_some() || fence.gave_up() {
            break;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: Bytes::from_static(spec.prefix.as_bytes()),
                range_end: client::prefix_end(spec.prefix),
                start_revision: next,
                prev_kv: spec.prev_kv,
                ..Default::default()
            })),
        };
        if tx.send(create).await.is_err() {
            break;
        }
        let mut watch = ctx.watch(member);
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if spec.require_leader {
            request
                .metadata_mut()
                .insert("hasleader", MetadataValue::from_static("true"));
        }
        let opened = tokio::time::timeout(ctx.op_timeout, watch.watch(request)).await;
        if let Ok(Ok(response)) = opened {
            let mut stream = response.into_inner();
            let mut idle_since = Instant::now();
            loop {
                let message =
                    tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
                match message {
                    Ok(Ok(Some(response))) => {
                        if response.canceled || response.compact_revision != 0 {
                            break;
                        }
                        for event in response.events.into_iter().filter_map(watch_event) {
                            next = event.revision + 1;
                            events.push(event);
                        }
                        idle_since = Instant::now();
                        if caught_up(&events, &fence).is_some() {
                            break 'streams;
                        }
                    }
                    // Still open, nothing new: fine while the run goes on; once the
                    // fence is out, a member that stays silent is left for another.
                    Err(_) => {
                        let waiting = fence.revision().is_some() || fence.gave_up();
                        if waiting && idle_since.elapsed() > FENCE_WAIT_PER_MEMBER {
                            break;
                        }
                        if fence.gave_up() {
                            break 'streams;
                        }
                    }
                    Ok(Ok(None)) | Ok(Err(_)) => break,
                }
            }
        }
        drop(tx);
        member = (member + 1) % ctx.members();
        resumes.push(next);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let until = caught_up(&events, &fence);
    ctx.record(Op {
        process,
        invoke,
        complete: ctx.now(),
        outcome: Outcome::Ok,
        call: Call::WatchLog {
            watcher,
            from,
            until,
            events,
            resumes,
        },
        error: None,
    });
}

/// How long the record's stream may stay silent before the member is left
/// for the next one.
const RECORD_IDLE: Duration = Duration::from_secs(10);

/// Reads the record of `spec.prefix` (see [`Call::WatchRecord`]) from
/// `from` to the fence, once the watchers are done: a fresh watch on one
/// member at a time, read to the fence. Every change is in the store by
/// then, so the member serves it from its history rather than from the
/// live fan-out the watchers used. A stream that breaks is not resumed:
/// the next member reads the record again from the start, so the record
/// is one stream's answer.
pub async fn read_record(ctx: &Ctx, fence: &Fence, spec: Spec, from: i64, process: u32) {
    let invoke = ctx.now();
    let mut record = Vec::new();
    let mut start = from;
    let mut compacted = None;
    let mut until = None;
    if let Some(fence_revision) = fence.revision() {
        for attempt in 0..2 * ctx.members() {
            match record_stream(ctx, spec, attempt % ctx.members(), start, fence_revision).await {
                RecordRead::Complete(events) => {
                    record = events;
                    until = Some(fence_revision);
                    break;
                }
                RecordRead::Compacted(revision) => {
                    compacted = Some(revision);
                    start = start.max(revision + 1);
                }
                RecordRead::Broken => {}
            }
        }
    }
    ctx.record(Op {
        process,
        invoke,
        complete: ctx.now(),
        outcome: if until.is_some() {
            Outcome::Ok
        } else {
            Outcome::Info
        },
        call: Call::WatchRecord {
            from: start,
            until,
            compacted,
            events: record,
        },
        error: None,
    });
}

/// How one try at the record ended.
enum RecordRead {
    /// Every event from the start to the fence.
    Complete(Vec<WatchEvent>),
    /// The start is compacted; the server's compact revision.
    Compacted(i64),
    /// No connection, a broken or silent stream: try another member.
    Broken,
}

async fn record_stream(ctx: &Ctx, spec: Spec, member: usize, start: i64, until: i64) -> RecordRead {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: Bytes::from_static(spec.prefix.as_bytes()),
            range_end: client::prefix_end(spec.prefix),
            start_revision: start,
            ..Default::default()
        })),
    };
    if tx.send(create).await.is_err() {
        return RecordRead::Broken;
    }
    let mut watch = ctx.watch(member);
    let opened = tokio::time::timeout(ctx.op_timeout, watch.watch(ReceiverStream::new(rx))).await;
    let Ok(Ok(response)) = opened else {
        return RecordRead::Broken;
    };
    let mut stream = response.into_inner();
    let mut events = Vec::new();
    loop {
        let message = tokio::time::timeout(RECORD_IDLE, stream.message()).await;
        let Ok(Ok(Some(response))) = message else {
            return RecordRead::Broken;
        };
        if response.compact_revision != 0 {
            return RecordRead::Compacted(response.compact_revision);
        }
        if response.canceled {
            return RecordRead::Broken;
        }
        events.extend(response.events.into_iter().filter_map(watch_event));
        if events.last().is_some_and(|e| e.revision >= until) {
            // A revision's events come in one response, so the fence's
            // revision is whole; later events are past the record's end.
            events.retain(|e| e.revision <= until);
            return RecordRead::Complete(events);
        }
    }
}

/// What the history keeps of one event of a watch response (`None` for an
/// event without its key-value).
fn watch_event(event: Event) -> Option<WatchEvent> {
    let kv = event.kv?;
    let value = (event.r#type != EventType::Delete as i32)
        .then(|| client::decode(&kv))
        .flatten();
    Some(WatchEvent {
        revision: kv.mod_revision,
        key: String::from_utf8_lossy(&kv.key).into_owned(),
        value,
    })
}
