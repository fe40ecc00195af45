//! The watch hub: every watcher of every stream, and the rules that keep each
//! watcher's events ordered, unique, atomic per revision and gap-free.
//!
//! A watcher is either *synced* (it has every event up to the last revision
//! the hub was told about, `notified_rev`, and gets new events straight from
//! the write path) or *unsynced* (it is owed history: it started in the past,
//! or its stream was too slow). Unsynced watchers catch up from the store's
//! history in the background and rejoin the synced set once nothing is owed:
//!
//! ```text
//! notified_rev = 10
//! create(start 4)  -> unsynced, next_rev 4
//! catch-up reads history 4..=10, sends it      -> next_rev 11 > 10: synced
//! notify(rev 11)   -> sent from the write path -> next_rev 12
//! stream full at 12 -> unsynced, next_rev 12 (no event is dropped: it is read
//!                      again from history later)
//! ```
//!
//! The write path never waits for a watcher: a stream whose queue is full has
//! its watchers moved to catch-up instead.

use std::collections::{HashMap, HashSet};
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use oxetcd_proto::mvccpb::Event;
use oxetcd_storage::{StorageError, Store};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tracing::warn;

use crate::delivery::{Delivery, DeliveryKind, Events};
use crate::outbox::{self, Inbox, Outbox};
use crate::watcher::{StreamId, WatchSpec, Watcher, WatcherKey};
use crate::watcher_set::{Slot, WatcherSet};

/// etcd's answer to a client-chosen watch ID already in use on the stream.
pub const DUPLICATE_WATCH_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
/// The watch ID of responses that belong to no single watch.
pub const INVALID_WATCH_ID: i64 = -1;

/// Tuning of the hub.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// Responses a stream may have queued before its watchers are moved to
    /// catch-up.
    pub stream_queue: usize,
    /// How often idle watchers that asked for it get a progress notification.
    pub progress_notify_interval: Duration,
    /// Most events read from history in one catch-up round.
    pub catch_up_batch: usize,
    /// Test-only bugs, off by default (see [`WatchFailpoints`]).
    pub failpoints: WatchFailpoints,
}

/// Test-only bugs in the hub, each enabled by a failpoint of oxetcd's
/// (`OXETCD_FAILPOINT_WATCH_*`), so that the Jepsen tester can show it
/// catches them on a live cluster. All off by default.
#[derive(Clone, Copy, Debug, Default)]
pub struct WatchFailpoints {
    /// The write-path fan-out skips, for each stream, one revision in
    /// [`FAILPOINT_PERIOD`] (which one depends on the stream), while the
    /// watcher moves past it: a gap in the stream.
    pub drop_events: bool,
    /// The write-path fan-out sends, for each stream, one revision in
    /// [`FAILPOINT_PERIOD`] twice: a duplicate in the stream.
    pub duplicate_events: bool,
    /// The write-path fan-out holds back, for each stream, one revision in
    /// [`FAILPOINT_PERIOD`] and sends it after the stream's next one: the
    /// two out of order.
    pub reorder_events: bool,
    /// A watch created at a start revision (a client starting at a known
    /// revision, or resuming after its stream broke) is served from the
    /// revision after it: the start revision's events are never sent.
    pub start_late: bool,
    /// [`start_late`](Self::start_late), but only once the store has been
    /// compacted: a watch resumed after a compaction starts one revision
    /// late.
    pub start_late_after_compaction: bool,
}

/// How often a failpoint of [`WatchFailpoints`] strikes: once every this
/// many revisions.
pub const FAILPOINT_PERIOD: i64 = 20;

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            stream_queue: 1024,
            // etcd's default (--experimental-watch-progress-notify-interval).
            progress_notify_interval: Duration::from_secs(600),
            catch_up_batch: 1000,
            failpoints: WatchFailpoints::default(),
        }
    }
}

struct StreamState {
    outbox: Outbox,
    watch_ids: HashSet<i64>,
    next_auto_id: i64,
    /// A progress request waits for this stream's watchers to catch up.
    progress_pending: bool,
}

impl StreamState {
    fn send(&self, d: Delivery) {
        self.outbox.send(d);
    }

    fn has_room(&self, limit: usize) -> bool {
        self.outbox.has_room(limit)
    }
}

#[derive(Default)]
struct HubState {
    streams: HashMap<StreamId, StreamState>,
    synced: WatcherSet,
    unsynced: HashMap<WatcherKey, Watcher>,
    /// The last revision delivered to synced watchers.
    notified_rev: i64,
    next_stream: StreamId,
    /// Deliveries held back by the `reorder_events` failpoint, sent after
    /// the watcher's next one. Empty unless the failpoint is on.
    held: HashMap<WatcherKey, Delivery>,
}

/// The hub. Shared by the write path (`notify`) and every watch stream.
pub struct WatchHub {
    /// All watcher state. Held briefly, never across I/O or an await; a
    /// stream queue's lock may be taken inside it (never the reverse).
    state: Mutex<HubState>,
    store: Arc<Store>,
    config: WatchConfig,
    wake_catch_up: Notify,
}

/// One client stream's end of the hub. Dropping it cancels its watchers.
pub struct WatchStream {
    control: StreamControl,
    inbox: Inbox,
}

/// Creates, cancels and asks for progress on one stream.
#[derive(Clone)]
pub struct StreamControl {
    hub: Arc<WatchHub>,
    id: StreamId,
}

impl WatchHub {
    /// A hub over `store`, starting after the store's current revision. Spawns
    /// its catch-up and progress tasks on the current tokio runtime.
    pub fn start(store: Arc<Store>, config: WatchConfig) -> Arc<Self> {
        let state = HubState {
            notified_rev: store.current_revision(),
            ..HubState::default()
        };
        let hub = Arc::new(Self {
            state: Mutex::new(state),
            store,
            config,
            wake_catch_up: Notify::new(),
        });
        tokio::spawn(hub.clone().catch_up_loop());
        tokio::spawn(hub.clone().progress_loop());
        hub
    }

    /// Opens a stream.
    pub fn open_stream(self: &Arc<Self>) -> WatchStream {
        let (outbox, inbox) = outbox::channel();
        let mut st = self.state.lock();
        let id = st.next_stream;
        st.next_stream += 1;
        let stream = StreamState {
            outbox,
            watch_ids: HashSet::new(),
            next_auto_id: 0,
            progress_pending: false,
        };
        st.streams.insert(id, stream);
        WatchStream {
            control: StreamControl {
                hub: self.clone(),
                id,
            },
            inbox,
        }
    }

    /// Delivers durable changes, in revision order, to synced watchers. Called
    /// by the write path after each commit; never blocks on a stream.
    ///
    /// Per revision: each event's watchers come from the index (no scan of
    /// every watcher); each watcher gets one delivery with its events of the
    /// revision; watchers owed the same events share one [`Events`] batch.
    pub fn notify(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let limit = self.config.stream_queue;
        let mut fell_behind = false;
        let mut st = self.state.lock();
        let HubState {
            synced,
            unsynced,
            notified_rev,
            held,
            ..
        } = &mut *st;
        let mut matched: Vec<Slot> = Vec::new();
        // (watcher, index of the event in its revision) for each event owed.
        let mut owed: Vec<(Slot, u32)> = Vec::new();
        let mut indices: Vec<u32> = Vec::new();
        for group in events.chunk_by(|a, b| revision_of(a) == revision_of(b)) {
            let rev = revision_of(&group[0]);
            owed.clear();
            for (i, event) in group.iter().enumerate() {
                let Some(kv) = &event.kv else { continue };
                matched.clear();
                synced.matching(&kv.key, &mut matched);
                for &slot in &matched {
                    if synced.at_mut(slot).is_some_and(|w| w.wants(event)) {
                        owed.push((slot, i as u32));
                    }
                }
            }
            // A watcher's events become one run, still in event order (the
            // sort is stable); one event per revision needs no sort.
            if group.len() > 1 {
                owed.sort_by_key(|(slot, _)| *slot);
            }
            let mut batches = Batches::new(group);
            for run in owed.chunk_by(|a, b| a.0 == b.0) {
                let Some(w) = synced.at_mut(run[0].0) else {
                    continue;
                };
                let dropped = self.config.failpoints.drop_events
                    && (rev + w.key.0 as i64) % FAILPOINT_PERIOD == 0;
                if dropped {
                    // The failpoint's bug: moved past events never sent.
                    w.next_rev = rev + 1;
                } else if w.outbox.has_room(limit) {
                    indices.clear();
                    indices.extend(run.iter().map(|(_, i)| *i));
                    let events = batches.get(&indices);
                    if self.config.failpoints.duplicate_events
                        && (rev + w.key.0 as i64) % FAILPOINT_PERIOD == 0
                    {
                        // The failpoint's bug: the same events sent twice.
                        let again = DeliveryKind::Events(events.clone());
                        w.outbox.send(delivery(w, rev, again));
                    }
                    let now = delivery(w, rev, DeliveryKind::Events(events));
                    if self.config.failpoints.reorder_events
                        && (rev + w.key.0 as i64) % FAILPOINT_PERIOD == 0
                    {
                        // The failpoint's bug: sent after the next revision.
                        held.insert(w.key, now);
                    } else {
                        w.outbox.send(now);
                        if let Some(late) = held.remove(&w.key) {
                            w.outbox.send(late);
                        }
                    }
                    w.next_rev = rev + 1;
                    w.active = true;
                } else {
                    // Too slow: it will read this revision from history.
                    let key = w.key;
                    if let Some(mut w) = synced.remove(&key) {
                        w.next_rev = rev;
                        unsynced.insert(key, w);
                        fell_behind = true;
                    }
                }
            }
            *notified_rev = rev;
        }
        drop(st);
        if fell_behind {
            self.wake_catch_up.notify_one();
        }
    }

    /// After the store was replaced wholesale (a snapshot install), every
    /// watcher catches up from the store's history again, from what it is owed.
    pub fn resync(&self) {
        let mut st = self.state.lock();
        let keys: Vec<WatcherKey> = st.synced_keys();
        for key in keys {
            if let Some(w) = st.synced.remove(&key) {
                st.unsynced.insert(key, w);
            }
        }
        st.notified_rev = self.store.current_revision();
        drop(st);
        self.wake_catch_up.notify_one();
    }

    fn refuse(&self, stream_id: StreamId, reason: String) {
        let mut st = self.state.lock();
        let notified = st.notified_rev;
        if let Some(stream) = st.streams.get_mut(&stream_id) {
            stream.send(Delivery {
                watch_id: INVALID_WATCH_ID,
                revision: notified,
                kind: DeliveryKind::Refused(reason),
                prev_kv: false,
                fragment: false,
            });
        }
    }

    fn create(&self, stream_id: StreamId, spec: WatchSpec) {
        let failpoints = self.config.failpoints;
        let start_late = failpoints.start_late
            || (failpoints.start_late_after_compaction && self.store.compacted_revision() > 0);
        let mut st = self.state.lock();
        let notified = st.notified_rev;
        let Some(stream) = st.streams.get_mut(&stream_id) else {
            return;
        };
        let id = if spec.watch_id != 0 {
            if stream.watch_ids.contains(&spec.watch_id) {
                stream.send(Delivery {
                    watch_id: INVALID_WATCH_ID,
                    revision: notified,
                    kind: DeliveryKind::Refused(DUPLICATE_WATCH_ID.to_string()),
                    prev_kv: false,
                    fragment: false,
                });
                return;
            }
            spec.watch_id
        } else {
            while stream.watch_ids.contains(&stream.next_auto_id) {
                stream.next_auto_id += 1;
            }
            stream.next_auto_id += 1;
            stream.next_auto_id - 1
        };
        stream.watch_ids.insert(id);
        let next_rev = if spec.start_revision > 0 {
            // The failpoint's bug: the watch starts one revision late.
            spec.start_revision + i64::from(start_late)
        } else {
            notified + 1
        };
        let w = Watcher::new((stream_id, id), spec, next_rev, stream.outbox.clone());
        stream.send(delivery(&w, notified, DeliveryKind::Created));
        if next_rev > notified {
            st.synced.insert(w);
        } else {
            st.unsynced.insert(w.key, w);
            drop(st);
            self.wake_catch_up.notify_one();
        }
    }

    fn cancel(&self, stream_id: StreamId, watch_id: i64) {
        let mut st = self.state.lock();
        let key = (stream_id, watch_id);
        let found = st.synced.remove(&key).or_else(|| st.unsynced.remove(&key));
        let notified = st.notified_rev;
        if let (Some(w), Some(stream)) = (found, st.streams.get_mut(&stream_id)) {
            stream.watch_ids.remove(&watch_id);
            stream.send(delivery(&w, notified, DeliveryKind::Canceled));
        }
        // The canceled watcher may have been the one a progress request waited for.
        let behind = st.unsynced.keys().any(|k| k.0 == stream_id);
        if let Some(stream) = st.streams.get_mut(&stream_id) {
            if stream.progress_pending && !behind {
                stream.progress_pending = false;
                stream.send(progress(INVALID_WATCH_ID, notified));
            }
        }
    }

    fn request_progress(&self, stream_id: StreamId) {
        let mut st = self.state.lock();
        let behind = st.unsynced.keys().any(|k| k.0 == stream_id);
        let notified = st.notified_rev;
        let Some(stream) = st.streams.get_mut(&stream_id) else {
            return;
        };
        if behind {
            // Answering now would promise a revision some watcher has not
            // reached; answer when the stream has caught up.
            stream.progress_pending = true;
        } else {
            stream.send(progress(INVALID_WATCH_ID, notified));
        }
    }

    fn close_stream(&self, stream_id: StreamId) {
        let mut st = self.state.lock();
        if let Some(stream) = st.streams.remove(&stream_id) {
            for id in stream.watch_ids {
                let key = (stream_id, id);
                if st.synced.remove(&key).is_none() {
                    st.unsynced.remove(&key);
                }
            }
        }
    }

    /// Brings unsynced watchers up to date from history, forever.
    async fn catch_up_loop(self: Arc<Self>) {
        loop {
            let (work, owed) = {
                let st = self.state.lock();
                // Only watchers whose stream can take more: a stream that is
                // not being read must not hold back every other catch-up.
                let work = st
                    .unsynced
                    .values()
                    .filter(|w| {
                        st.streams
                            .get(&w.key.0)
                            .is_some_and(|s| s.has_room(self.config.stream_queue))
                    })
                    .map(|w| w.next_rev)
                    .min()
                    .map(|from| (from, st.notified_rev));
                (work, !st.unsynced.is_empty())
            };
            let Some((from, upto)) = work else {
                // Nothing owed: sleep until woken. Owed only to full streams:
                // a stream draining below its bound wakes us (WatchStream::next).
                let nap = if owed {
                    Duration::from_millis(10)
                } else {
                    Duration::from_millis(100)
                };
                tokio::select! {
                    _ = self.wake_catch_up.notified() => {}
                    _ = tokio::time::sleep(nap) => {}
                }
                continue;
            };
            let compacted = self.store.compacted_revision();
            let read_from = from.max(compacted);
            let store = self.store.clone();
            let batch = self.config.catch_up_batch;
            let read =
                tokio::task::spawn_blocking(move || store.history(read_from, upto, batch)).await;
            let progressed = match read {
                Ok(Ok((events, next))) => self.deliver_history(&events, read_from, next, compacted),
                // Compacted between the two reads: go again with the new bound.
                Ok(Err(StorageError::Compacted)) => true,
                Ok(Err(e)) => {
                    warn!(error = %e, "watch catch-up cannot read history");
                    false
                }
                Err(e) => {
                    warn!(error = %e, "watch catch-up task failed");
                    false
                }
            };
            if !progressed {
                // Every owed stream is full (or the store failed): let them drain.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Sends each unsynced watcher its part of `events` (every change in
    /// `from..next`); returns whether any watcher moved forward.
    fn deliver_history(&self, events: &[Event], from: i64, next: i64, compacted: i64) -> bool {
        let mut st = self.state.lock();
        // A watcher created after a compaction that came after the read must
        // still get `Compacted`, not the compacted events the read found: the
        // bound is taken again now that no watcher can be added.
        let compacted = compacted.max(self.store.compacted_revision());
        let HubState {
            streams,
            synced,
            unsynced,
            notified_rev,
            ..
        } = &mut *st;
        let mut progressed = false;
        let mut batches = Batches::new(events);
        let mut indices: Vec<u32> = Vec::new();
        let keys: Vec<WatcherKey> = unsynced.keys().copied().collect();
        for wk in keys {
            let Some(w) = unsynced.get_mut(&wk) else {
                continue;
            };
            let Some(stream) = streams.get_mut(&wk.0) else {
                continue;
            };
            if w.next_rev < compacted {
                stream.watch_ids.remove(&wk.1);
                stream.send(delivery(
                    w,
                    *notified_rev,
                    DeliveryKind::Compacted(compacted),
                ));
                unsynced.remove(&wk);
                progressed = true;
                continue;
            }
            if w.next_rev < from || w.next_rev >= next {
                continue;
            }
            indices.clear();
            indices.extend((0..events.len() as u32).filter(|&i| w.wants(&events[i as usize])));
            if !indices.is_empty() {
                if !stream.has_room(self.config.stream_queue) {
                    continue;
                }
                let evs = batches.get(&indices);
                stream.send(delivery(w, next - 1, DeliveryKind::Events(evs)));
                w.active = true;
            }
            w.next_rev = next;
            progressed = true;
            if w.next_rev > *notified_rev {
                if let Some(w) = unsynced.remove(&wk) {
                    synced.insert(w);
                }
            }
        }
        for (id, stream) in streams.iter_mut() {
            if stream.progress_pending && !unsynced.keys().any(|k| k.0 == *id) {
                stream.progress_pending = false;
                stream.send(progress(INVALID_WATCH_ID, *notified_rev));
            }
        }
        progressed
    }

    /// Sends progress notifications to idle synced watchers that asked for them.
    async fn progress_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.progress_notify_interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let mut st = self.state.lock();
            let HubState {
                synced,
                notified_rev,
                ..
            } = &mut *st;
            for w in synced.iter_mut() {
                if w.spec.progress_notify
                    && !w.active
                    && w.outbox.has_room(self.config.stream_queue)
                {
                    w.outbox.send(progress(w.key.1, *notified_rev));
                }
                w.active = false;
            }
        }
    }
}

fn revision_of(e: &Event) -> i64 {
    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

fn delivery(w: &Watcher, revision: i64, kind: DeliveryKind) -> Delivery {
    Delivery {
        watch_id: w.key.1,
        revision,
        kind,
        prev_kv: w.spec.prev_kv,
        fragment: w.spec.fragment,
    }
}

fn progress(watch_id: i64, revision: i64) -> Delivery {
    Delivery {
        watch_id,
        revision,
        kind: DeliveryKind::Progress,
        prev_kv: false,
        fragment: false,
    }
}

/// The [`Events`] batches of one fan-out: watchers owed the same events (by
/// their indices in `events`) get the same batch. Almost always every
/// watcher is owed the same, so the last batch is checked before the map.
struct Batches<'a> {
    events: &'a [Event],
    last: Option<(Vec<u32>, Events)>,
    made: HashMap<Vec<u32>, Events>,
}

impl<'a> Batches<'a> {
    fn new(events: &'a [Event]) -> Self {
        Self {
            events,
            last: None,
            made: HashMap::new(),
        }
    }

    /// The batch of the events at `indices` (ascending).
    fn get(&mut self, indices: &[u32]) -> Events {
        if let Some((last, batch)) = &self.last {
            if last.as_slice() == indices {
                return batch.clone();
            }
        }
        let batch = match self.made.get(indices) {
            Some(batch) => batch.clone(),
            None => {
                let events = indices
                    .iter()
                    .map(|&i| self.events[i as usize].clone())
                    .collect();
                let batch = Events::new(events);
                self.made.insert(indices.to_vec(), batch.clone());
                batch
            }
        };
        self.last = Some((indices.to_vec(), batch.clone()));
        batch
    }
}

impl HubState {
    fn synced_keys(&self) -> Vec<WatcherKey> {
        self.streams
            .iter()
            .flat_map(|(sid, st)| st.watch_ids.iter().map(move |id| (*sid, *id)))
            .filter(|k| !self.unsynced.contains_key(k))
            .collect()
    }
}

impl WatchStream {
    /// The next response for this stream.
    pub async fn next(&mut self) -> Option<Delivery> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// [`WatchStream::next`] for hand-written futures and streams: `Pending`
    /// (and `cx` woken later) while nothing is queued. (It never ends: the
    /// hub outlives its streams; the `Option` is for `Stream`-like callers.)
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let Poll::Ready((d, before)) = self.inbox.poll_recv(cx) else {
            return Poll::Pending;
        };
        if before == self.control.hub.config.stream_queue {
            // Room again: watchers of this stream may be owed history.
            self.control.hub.wake_catch_up.notify_one();
        }
        Poll::Ready(Some(d))
    }

    /// A handle for the request side of the stream.
    pub fn control(&self) -> StreamControl {
        self.control.clone()
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.control.hub.close_stream(self.control.id);
    }
}

impl StreamControl {
    pub fn create(&self, spec: WatchSpec) {
        self.hub.create(self.id, spec);
    }

    pub fn cancel(&self, watch_id: i64) {
        self.hub.cancel(self.id, watch_id);
    }

    /// Answers a create request that is not served (the caller may not
    /// read the range): created and canceled at once, for `reason`, in the
    /// stream's order.
    pub fn refuse(&self, reason: String) {
        self.hub.refuse(self.id, reason);
    }

    pub fn request_progress(&self) {
        self.hub.request_progress(self.id);
    }
}
