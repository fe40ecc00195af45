//! Watch caches (reference: kubernetes-apiserver.md §3, kube-apiserver's
//! cacher): one per resource, started on first use (and for the built-in
//! kinds at start-up), each one store watch of the resource's prefix.
//!
//! - `resource`: the cache: objects decoded once (in a persistent map whose
//!   snapshots serve paged lists), the reflector (list + watch, progress
//!   requests, rebuild after a compaction), reads waiting for freshness;
//! - `window`: the bounded window of recent events watches start from;
//! - `event`: cached objects and events, lines encoded once and shared;
//! - `watchers`: client watches indexed by spec.nodeName, a label or the
//!   namespace, and the fan-out with bounded queues;
//! - `client`: one client watch's task.
//!
//! Events (core and events.k8s.io) are not cached, as in kube-apiserver:
//! their lists and watches go to the store.

pub mod client;
pub mod event;
pub mod resource;
pub mod watchers;
pub mod window;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::registry::Kind;
use crate::store::Store;

pub use self::resource::{Cache, Freshness, Start};

/// The windows' bounds, from --default-watch-cache-size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Events kept whatever their age.
    pub window_min: usize,
}

impl Config {
    /// Events kept at most: 1024 times the minimum (kube-apiserver's
    /// watchCache grows from its lower bound up to 1024 times it while its
    /// events are younger than 75 s).
    pub fn window_max(&self) -> usize {
        self.window_min.saturating_mul(1024)
    }
}

/// Every resource's cache, by key prefix.
pub struct Caches {
    store: Arc<dyn Store>,
    config: Config,
    by_prefix: Mutex<HashMap<String, Arc<Cache>>>,
}

impl Caches {
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        Caches {
            store,
            config,
            by_prefix: Mutex::default(),
        }
    }

    /// The cache of the keys under `prefix` (a resource's collection
    /// prefix), started if this is its first use.
    pub fn get(&self, prefix: &str) -> Arc<Cache> {
        let mut map = self.by_prefix.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(prefix.to_string())
            .or_insert_with(|| Cache::start(self.store.clone(), prefix, self.config))
            .clone()
    }
}

/// Whether `kind` is served from a cache: all but events.
pub fn cached(kind: &Kind) -> bool {
    kind.resource != "events"
}
