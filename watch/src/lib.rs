//! oxetcd's watch hub: etcd's Watch semantics over the MVCC store.
//!
//! - [`WatchHub`]: every watcher; the write path calls [`WatchHub::notify`]
//!   with each commit's events (durable ones only), and watchers that started in
//!   the past or fell behind catch up from [`oxetcd_storage::Store::history`].
//! - [`WatchStream`]: one client stream; [`StreamControl`] creates and cancels
//!   its watches; [`WatchStream::next`] yields [`Delivery`]s in order.
//! - [`Events`]: the events of a delivery, one shared batch for every watcher
//!   owed the same ones; encoded once ([`Events::encoded`], [`encode_events`])
//!   and with `prev_kv` looked up once, whatever the number of watchers.
//!
//! Fan-out scales with the watchers an event concerns, not with all of them:
//! single-key watchers are found by key, range watchers through an interval
//! tree of the distinct ranges (`interval_tree.rs`, `watcher_set.rs`).
//!
//! Guarantees per watcher, as etcd's robustness tests check them: revisions
//! never go back, no event twice, all events of a revision in one delivery, no
//! gap, and a watcher resumed at rev+1 continues exactly. A slow stream never
//! blocks the write path or other streams.
//!
//! ```no_run
//! # async fn example(store: std::sync::Arc<oxetcd_storage::Store>) {
//! use oxetcd_watch::{WatchConfig, WatchHub, WatchSpec};
//! let hub = WatchHub::start(store, WatchConfig::default());
//! let mut stream = hub.open_stream();
//! stream.control().create(WatchSpec { key: "foo".into(), ..Default::default() });
//! while let Some(delivery) = stream.next().await {
//!     println!("{delivery:?}");
//! }
//! # }
//! ```

mod delivery;
mod hub;
mod interval_tree;
mod outbox;
mod watcher;
mod watcher_set;

pub use delivery::{encode_events, Delivery, DeliveryKind, Events};
pub use hub::{
    StreamControl, WatchConfig, WatchFailpoints, WatchHub, WatchStream, DUPLICATE_WATCH_ID,
    FAILPOINT_PERIOD, INVALID_WATCH_ID,
};
pub use watcher::WatchSpec;

#[cfg(test)]
mod tests;
