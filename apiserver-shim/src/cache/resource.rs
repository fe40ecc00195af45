//! One resource's watch cache: a store watch of its prefix (the reflector)
//! keeping every current object, decoded once, and a window of recent
//! events; lists and watches served from them, and paged lists from
//! snapshots of the objects pinned by their first page.
//!
//! The reflector lists the prefix (in pages of 10,000 at one revision),
//! then watches from the revision after. A watch that ends or fails is
//! reopened where it stopped; only when that revision is compacted away is
//! the cache rebuilt by a new list, and its watches closed with 410 (their
//! position is gone with the old window), so that their clients relist.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::event::{CachedEvent, Object};
use super::watchers::{Closed, Registered, Spec, Watchers};
use super::window::{TooOld, Window};
use super::Config;
use crate::error::ApiError;
use crate::store::{prefix_end, Event, ProgressRequester, Store, StoreError, WatchItem};

/// The initial list's page size (kube-apiserver's reflector's).
const LIST_PAGE: i64 = 10_000;
/// How long a read waits for the cache to be fresh enough before the store
/// answers it instead (kube-apiserver's 3 s).
const FRESH_WAIT: Duration = Duration::from_secs(3);
/// How often a waiting read asks the store watch for progress
/// (kube-apiserver's progress requester: 100 ms).
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// Between attempts to list or watch after a store error.
const RETRY: Duration = Duration::from_secs(1);
/// How long a paged list's snapshot is kept for its continue pages
/// (kube-apiserver keeps its cache snapshots as long as its event history:
/// 75 s); a later page is read from the store.
const SNAPSHOT_TTL: Duration = Duration::from_secs(75);
/// Snapshots kept at most (the oldest is dropped first).
const SNAPSHOTS_MAX: usize = 64;

/// The cached objects by key: a persistent map, so that a snapshot for a
/// paged list is an O(1) clone that later changes copy on write.
pub type Objects = imbl::OrdMap<Bytes, Arc<Object>>;

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Freshness {
    /// Any state the cache has (resourceVersion "0").
    Any,
    /// At least this revision (resourceVersion N, NotOlderThan).
    NotOlderThan(i64),
    /// At least the store's revision when the read began (resourceVersion
    /// unset: kube-apiserver's consistent read from cache).
    Consistent,
}

/// Where a cached watch starts.
pub enum Start {
    /// At the cache's current state: every object is sent as ADDED first.
    Snapshot,
    /// After this revision: the window's later events, then new ones.
    After(i64),
}

/// What a watch starts with besides what the fan-out sends it.
pub enum Initial {
    Objects(Vec<Arc<Object>>),
    Events(Vec<Arc<CachedEvent>>),
}

struct State {
    /// The initial list is done (and no rebuild is under way).
    ready: bool,
    /// Every change up to this revision is applied.
    revision: i64,
    objects: Objects,
    /// Snapshots of `objects` pinned by paged lists: (revision, when, objects).
    snapshots: VecDeque<(i64, Instant, Objects)>,
    window: Window,
    watchers: Watchers,
    /// Asks the current store watch for progress (None: no watch, or a
    /// store whose progress notifications are not ordered with its events,
    /// which the cache then neither asks for nor believes).
    progress: Option<ProgressRequester>,
}

pub struct Cache {
    store: Arc<dyn Store>,
    start: Vec<u8>,
    end: Vec<u8>,
    config: Config,
    state: Mutex<State>,
    /// (ready, revision), for reads waiting for freshness.
    seen: watch::Sender<(bool, i64)>,
}

impl Cache {
    /// A cache of the keys under `prefix`, filled by a task started here.
    pub fn start(store: Arc<dyn Store>, prefix: &str, config: Config) -> Arc<Self> {
        let cache = Arc::new(Cache {
            store,
            start: prefix.as_bytes().to_vec(),
            end: prefix_end(prefix.as_bytes()),
            config,
            state: Mutex::new(State {
                ready: false,
                revision: 0,
                objects: Objects::new(),
                snapshots: VecDeque::new(),
                window: Window::new(0, config.window_min, config.window_max()),
                watchers: Watchers::default(),
                progress: None,
            }),
            seen: watch::channel((false, 0)).0,
        });
        tokio::spawn(reflect(Arc::downgrade(&cache)));
        cache
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The revision every change up to is applied.
    pub fn revision(&self) -> i64 {
        self.lock().revision
    }

    /// Waits until the cache may serve a read of `freshness`; false: it
    /// could not in time (or cannot tell), and the store should answer.
    pub async fn fresh(&self, freshness: Freshness) -> Result<bool, ApiError> {
        let deadline = tokio::time::Instant::now() + FRESH_WAIT;
        let target = match freshness {
            Freshness::Any => 0,
            Freshness::NotOlderThan(n) => n,
            Freshness::Consistent => {
                if !self.store.progress_is_ordered().await {
                    return Ok(false);
                }
                // kube-apiserver's current revision: a limit-1 list of the
                // prefix (linearizable).
                self.store
                    .list(&self.start, &self.end, 1, 0)
                    .await?
                    .revision
            }
        };
        let mut seen = self.seen.subscribe();
        loop {
            let (ready, revision) = *seen.borrow_and_update();
            if ready && revision >= target {
                return Ok(true);
            }
            if ready {
                let progress = self.lock().progress.clone();
                if let Some(ask) = progress {
                    ask();
                }
            }
            let wait = deadline.min(tokio::time::Instant::now() + PROGRESS_EVERY);
            match tokio::time::timeout_at(wait, seen.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Ok(false),
                Err(_) if tokio::time::Instant::now() >= deadline => return Ok(false),
                Err(_) => {}
            }
        }
    }

    /// The objects with keys in [start, end) and the revision they are at;
    /// None while the cache is not ready.
    pub fn snapshot(&self, start: &[u8], end: &[u8]) -> Option<(Vec<Arc<Object>>, i64)> {
        let st = self.lock();
        if !st.ready {
            return None;
        }
        let range = (Bound::Included(start), Bound::Excluded(end));
        let objs = st.objects.range::<_, [u8]>(range).map(|(_, o)| o.clone());
        Some((objs.collect(), st.revision))
    }

    /// The cached object at `key`; None while the cache is not ready or
    /// when it holds no such key.
    pub fn object(&self, key: &[u8]) -> Option<Arc<Object>> {
        let st = self.lock();
        if !st.ready {
            return None;
        }
        st.objects.get(key).cloned()
    }

    /// Every current object and the revision they are at, pinned for
    /// later pages at that revision (see [`Cache::pinned`]); None while the
    /// cache is not ready.
    pub fn pin(&self) -> Option<(Objects, i64)> {
        let mut st = self.lock();
        if !st.ready {
            return None;
        }
        let (objects, revision) = (st.objects.clone(), st.revision);
        let now = Instant::now();
        st.snapshots
            .retain(|(_, at, _)| now.duration_since(*at) < SNAPSHOT_TTL);
        if st.snapshots.back().map(|(r, _, _)| *r) != Some(revision) {
            if st.snapshots.len() == SNAPSHOTS_MAX {
                st.snapshots.pop_front();
            }
            st.snapshots.push_back((revision, now, objects.clone()));
        }
        Some((objects, revision))
    }

    /// The objects at `revision` as an earlier [`Cache::pin`] kept them, if
    /// they are still kept.
    pub fn pinned(&self, revision: i64) -> Option<Objects> {
        let st = self.lock();
        st.snapshots
            .iter()
            .rev()
            .find(|(r, at, _)| *r == revision && at.elapsed() < SNAPSHOT_TTL)
            .map(|(_, _, objects)| objects.clone())
    }

    /// Registers a watch of `spec` (keys in [start, end)) starting at
    /// `start`. Taken under the same lock the fan-out holds, so that what it
    /// starts with and what it is sent later neither miss nor repeat an
    /// event. None while the cache is not ready.
    pub fn watch(
        self: &Arc<Self>,
        spec: Arc<Spec>,
        range: (&[u8], &[u8]),
        start: Start,
    ) -> Option<Result<(Initial, i64, Registration), TooOld>> {
        let mut st = self.lock();
        if !st.ready {
            return None;
        }
        let (initial, after) = match start {
            Start::Snapshot => {
                let range = (Bound::Included(range.0), Bound::Excluded(range.1));
                let objs = st.objects.range::<_, [u8]>(range).map(|(_, o)| o.clone());
                (Initial::Objects(objs.collect()), st.revision)
            }
            Start::After(n) => match st.window.since(n) {
                Ok(events) => (Initial::Events(events), n),
                Err(too_old) => return Some(Err(too_old)),
            },
        };
        let registered = st.watchers.add(spec, after);
        let revision = st.revision;
        drop(st);
        Some(Ok((
            initial,
            revision,
            Registration {
                cache: self.clone(),
                registered,
            },
        )))
    }

    /// Replaces the state with a new list at `revision`; closes the watches
    /// of an earlier state.
    fn reset(&self, objects: Objects, revision: i64) {
        let mut st = self.lock();
        if !st.watchers.is_empty() {
            st.watchers.close_all(Closed::Rebuilt { revision });
        }
        st.objects = objects;
        st.window = Window::new(revision, self.config.window_min, self.config.window_max());
        st.revision = revision;
        st.ready = true;
        drop(st);
        self.seen.send_replace((true, revision));
    }

    fn unready(&self) {
        let mut st = self.lock();
        st.ready = false;
        st.progress = None;
        let revision = st.revision;
        drop(st);
        self.seen.send_replace((false, revision));
    }

    /// Applies a batch of store events: state, window, fan-out, then the
    /// revision (so that a watch that reads the revision has been sent
    /// every event up to it).
    fn apply(&self, batch: Vec<Event>) {
        let decoded: Vec<(Bytes, i64, Option<Arc<Object>>)> = batch
            .iter()
            .map(|e| match e {
                Event::Put { kv, .. } => (
                    kv.key.clone(),
                    kv.mod_revision,
                    Some(Arc::new(Object::decode(kv))),
                ),
                Event::Delete { key, revision, .. } => (key.clone(), *revision, None),
            })
            .collect();
        let now = Instant::now();
        let mut st = self.lock();
        let mut last = st.revision;
        for (key, revision, new) in decoded {
            if revision <= st.revision {
                // Already applied (a reopened watch repeating itself).
                continue;
            }
            let old = match &new {
                Some(obj) => st.objects.insert(key, obj.clone()),
                None => st.objects.remove(&key),
            };
            let ev = Arc::new(CachedEvent::new(revision, new, old));
            st.watchers.dispatch(&ev);
            st.window.push(ev, now);
            last = revision;
        }
        st.revision = last;
        drop(st);
        self.seen.send_replace((true, last));
    }

    /// A progress notification: nothing up to `revision` is still to come.
    fn progress(&self, revision: i64) {
        let mut st = self.lock();
        if revision <= st.revision {
            return;
        }
        st.revision = revision;
        drop(st);
        self.seen.send_replace((true, revision));
    }

    /// The current objects, listed from the store in pages at one revision.
    async fn list(&self) -> Result<(Objects, i64), StoreError> {
        let mut objects = Objects::new();
        let mut start = self.start.clone();
        let mut revision = 0;
        loop {
            let page = self
                .store
                .list(&start, &self.end, LIST_PAGE, revision)
                .await?;
            revision = page.revision;
            for kv in &page.kvs {
                objects.insert(kv.key.clone(), Arc::new(Object::decode(kv)));
            }
            match page.kvs.last() {
                Some(last) if page.more => {
                    start = last.key.to_vec();
                    start.push(0);
                }
                _ => return Ok((objects, revision)),
            }
        }
    }
}

/// A registered watch; dropping it unregisters the watch.
pub struct Registration {
    cache: Arc<Cache>,
    pub registered: Registered,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.cache.lock().watchers.remove(self.registered.id);
    }
}

/// The reflector: list, then watch, until the cache is dropped.
async fn reflect(cache: std::sync::Weak<Cache>) {
    'list: loop {
        let Some(c) = cache.upgrade() else { return };
        let (objects, mut revision) = match c.list().await {
            Ok(listed) => listed,
            Err(e) => {
                warn!(prefix = %String::from_utf8_lossy(&c.start), "watch cache list: {e}");
                drop(c);
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        c.reset(objects, revision);
        debug!(prefix = %String::from_utf8_lossy(&c.start), revision, "watch cache listed");
        drop(c);
        loop {
            let Some(c) = cache.upgrade() else { return };
            let mut watch = match c.store.watch_progress(&c.start, &c.end, revision + 1).await {
                Ok(w) => w,
                Err(StoreError::Compacted { .. }) => {
                    c.unready();
                    continue 'list;
                }
                Err(e) => {
                    warn!(prefix = %String::from_utf8_lossy(&c.start), "watch cache watch: {e}");
                    drop(c);
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            let ordered = c.store.progress_is_ordered().await;
            c.lock().progress = ordered.then(|| watch.request_progress.clone());
            drop(c);
            // The cache is held only while an item is applied: dropping the
            // last handle elsewhere ends the reflector.
            while let Some(item) = watch.items.next().await {
                let Some(c) = cache.upgrade() else { return };
                match item {
                    Ok(WatchItem::Events(batch)) => c.apply(batch),
                    Ok(WatchItem::Progress(rev)) if ordered => c.progress(rev),
                    Ok(WatchItem::Progress(_)) => {}
                    Err(StoreError::Compacted { .. }) => {
                        warn!(prefix = %String::from_utf8_lossy(&c.start), "watch cache: the store watch was compacted; listing again");
                        c.unready();
                        continue 'list;
                    }
                    Err(e) => {
                        warn!(prefix = %String::from_utf8_lossy(&c.start), "watch cache: store watch: {e}; reopening");
                        break;
                    }
                }
            }
            let Some(c) = cache.upgrade() else { return };
            c.lock().progress = None;
            revision = c.revision();
            drop(c);
            tokio::time::sleep(RETRY).await;
        }
    }
}
