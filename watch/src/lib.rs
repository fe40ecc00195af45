//! oxetcd's watch hub: etcd's Watch semantics over the MVCC store.
//!
//! - [`WatchHub`]: every watcher; the write path calls [`WatchHub::notify`]
//!   with each commit's events (durable ones only), and watchers that started in
//!   the past or fell behind catch up from [`oxetcd_storage::Store::history`].
//! - [`WatchStream`]: one client stream; [`StreamControl`] creates and cancels
//!   its watches; [`WatchStream::next`] yields [`Delivery`]s in order.
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

mod hub;
mod watcher;
mod watcher_set;

pub use hub::{
    Delivery, DeliveryKind, StreamControl, WatchConfig, WatchHub, WatchStream, DUPLICATE_WATCH_ID,
    INVALID_WATCH_ID,
};
pub use watcher::WatchSpec;

#[cfg(test)]
mod tests;
