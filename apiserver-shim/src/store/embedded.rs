//! The embedded store: a one-member oxetcd started in this process (the
//! zero-setup path: no etcd to run). Requests go through [`EtcdServer`]'s
//! request router, watches through its watch hub.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::stream;
use oxetcd_proto::etcdserverpb::{
    CompactionRequest, LeaseGrantRequest, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
    WatchCreateRequest,
};
use oxetcd_server::{EtcdError, EtcdServer, ServerConfig, StartError};
use oxetcd_watch::{DeliveryKind, WatchSpec, WatchStream};

use super::{txn, ProgressWatch, StoreError, Transport, WatchItem};

pub struct Embedded {
    server: Arc<EtcdServer>,
}

impl Embedded {
    /// Starts a one-member oxetcd with its data in `data_dir`.
    pub async fn start(data_dir: &Path) -> Result<Self, StartError> {
        let server = EtcdServer::start(ServerConfig::single_member(data_dir)).await?;
        Ok(Self { server })
    }

    /// Stops the member; every acknowledged write is already durable.
    pub async fn stop(&self) {
        self.server.stop().await;
    }
}

impl From<EtcdError> for StoreError {
    fn from(e: EtcdError) -> Self {
        match e {
            EtcdError::Compacted => StoreError::Compacted {
                compact_revision: None,
            },
            EtcdError::FutureRevision => StoreError::FutureRevision,
            EtcdError::RequestTooLarge => StoreError::TooLarge,
            EtcdError::NoLeader
            | EtcdError::NotLeader
            | EtcdError::Stopped
            | EtcdError::RequestTimedOut
            | EtcdError::Unhealthy => StoreError::Unavailable(e.to_string()),
            other => StoreError::Other(other.to_string()),
        }
    }
}

#[async_trait]
impl Transport for Embedded {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        Ok(self.server.range(req).await?)
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, StoreError> {
        Ok(self.server.txn(req).await?)
    }

    async fn compaction(&self, req: CompactionRequest) -> Result<(), StoreError> {
        self.server.compact(req).await?;
        Ok(())
    }

    async fn lease_grant(&self, req: LeaseGrantRequest) -> Result<i64, StoreError> {
        Ok(self.server.lease_grant(req).await?.id)
    }

    async fn open_watch(&self, req: WatchCreateRequest) -> Result<ProgressWatch, StoreError> {
        let hub_stream = self.server.watch_hub().open_stream();
        let control = hub_stream.control();
        control.create(WatchSpec {
            key: req.key,
            range_end: req.range_end,
            start_revision: req.start_revision,
            prev_kv: req.prev_kv,
            ..Default::default()
        });
        let state = HubWatch {
            stream: hub_stream,
            server: self.server.clone(),
            done: false,
        };
        // Dropping the returned stream drops the hub stream, which cancels
        // the watch in the hub.
        let items = Box::pin(stream::unfold(state, |mut s| async move {
            let item = s.next().await?;
            Some((item, s))
        }));
        Ok(ProgressWatch {
            items,
            request_progress: Arc::new(move || control.request_progress()),
        })
    }

    /// The hub answers a progress request once the stream's watchers have
    /// caught up.
    async fn progress_is_ordered(&self) -> bool {
        true
    }
}

/// One hub watch, read as a stream of event batches.
struct HubWatch {
    stream: WatchStream,
    server: Arc<EtcdServer>,
    done: bool,
}

impl HubWatch {
    async fn next(&mut self) -> Option<Result<WatchItem, StoreError>> {
        if self.done {
            return None;
        }
        loop {
            let delivery = self.stream.next().await?;
            match delivery.kind {
                DeliveryKind::Created => continue,
                DeliveryKind::Progress => return Some(Ok(WatchItem::Progress(delivery.revision))),
                DeliveryKind::Events(events) => {
                    let events = events.with_prev_kv(self.server.store());
                    let events = events.iter().filter_map(txn::event).collect();
                    return Some(Ok(WatchItem::Events(events)));
                }
                DeliveryKind::Compacted(rev) => {
                    self.done = true;
                    return Some(Err(StoreError::Compacted {
                        compact_revision: Some(rev),
                    }));
                }
                DeliveryKind::Refused(why) => {
                    self.done = true;
                    return Some(Err(StoreError::Other(why)));
                }
                DeliveryKind::Canceled => return None,
            }
        }
    }
}
