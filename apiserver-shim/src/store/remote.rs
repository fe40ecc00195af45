//! The remote store: an etcd v3 gRPC client of `--etcd-servers` (oxetcd, or
//! etcd itself), over plain HTTP/2 or TLS (oxetcd-tls's Dialer, configured
//! from --etcd-cafile/--etcd-certfile/--etcd-keyfile).

use async_trait::async_trait;
use std::sync::Arc;

use futures_util::stream;
use oxetcd_proto::etcdserverpb::kv_client::KvClient;
use oxetcd_proto::etcdserverpb::lease_client::LeaseClient;
use oxetcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd_proto::etcdserverpb::watch_client::WatchClient;
use oxetcd_proto::etcdserverpb::watch_request::RequestUnion;
use oxetcd_proto::etcdserverpb::{
    CompactionRequest, LeaseGrantRequest, RangeRequest, RangeResponse, StatusRequest, TxnRequest,
    TxnResponse, WatchCreateRequest, WatchProgressRequest, WatchRequest,
};
use oxetcd_tls::{Dialer, Target, TlsConnector, UrlError};
use tokio::sync::{mpsc, OnceCell};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use super::{txn, Event, ProgressWatch, StoreError, Transport, WatchItem};

/// The largest answer read from etcd: kube-apiserver's etcd client limit.
const MAX_ANSWER_BYTES: usize = i32::MAX as usize;

pub struct Remote {
    channel: Channel,
    /// Whether the store's progress notifications can be trusted (probed
    /// once, on first use).
    progress_ordered: OnceCell<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("--etcd-servers: {0}")]
    BadEndpoint(#[from] UrlError),
    #[error("--etcd-servers: {0:?} is https:// but no TLS configuration was given")]
    NoTls(String),
    #[error("--etcd-servers is empty")]
    Empty,
}

impl Remote {
    /// A client of `servers` (http:// or https:// each), TLS configured by
    /// `tls` (from --etcd-cafile/--etcd-certfile/--etcd-keyfile). Connects
    /// lazily: the first request finds out whether the store is there; the
    /// servers are dialed in order until one answers (oxetcd-tls's Dialer).
    pub fn connect(servers: &[String], tls: Option<TlsConnector>) -> Result<Self, RemoteError> {
        if servers.is_empty() {
            return Err(RemoteError::Empty);
        }
        let targets = Target::parse_list(&servers.join(","))?;
        if tls.is_none() {
            if let Some(t) = targets.iter().find(|t| t.uses_tls()) {
                return Err(RemoteError::NoTls(t.url().to_string()));
            }
        }
        let dialer = Dialer::new(targets, tls);
        let endpoint = dialer.endpoint()?;
        Ok(Self {
            channel: endpoint.connect_with_connector_lazy(dialer),
            progress_ordered: OnceCell::new(),
        })
    }

    /// Answers of any size, as kube-apiserver's etcd client takes them
    /// (MaxCallRecvMsgSize = math.MaxInt32): a list of 20,000 pods is 77 MB,
    /// and tonic's default of 4 MiB refused it.
    fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel.clone()).max_decoding_message_size(MAX_ANSWER_BYTES)
    }
}

/// kube-apiserver's metadata on every call: fail rather than hang when the
/// cluster has no leader.
fn with_leader<T>(msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert(
        "hasleader",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    req
}

/// etcd's errors travel as gRPC statuses; their words say which one.
fn store_error(s: Status) -> StoreError {
    let msg = s.message();
    if msg.contains("required revision has been compacted") {
        StoreError::Compacted {
            compact_revision: None,
        }
    } else if msg.contains("required revision is a future revision") {
        StoreError::FutureRevision
    } else if msg.contains("request is too large")
        || (s.code() == Code::ResourceExhausted && msg.contains("larger than max"))
    {
        // etcd's --max-request-bytes (1.5 MiB), or its gRPC message cap
        // (that + 512 KiB) reached first: too large either way.
        StoreError::TooLarge
    } else if matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded) {
        StoreError::Unavailable(format!("etcd: {msg}"))
    } else {
        StoreError::Other(format!("etcd: {:?}: {msg}", s.code()))
    }
}

#[async_trait]
impl Transport for Remote {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        let resp = self.kv().range(with_leader(req)).await;
        Ok(resp.map_err(store_error)?.into_inner())
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, StoreError> {
        let resp = self.kv().txn(with_leader(req)).await;
        Ok(resp.map_err(store_error)?.into_inner())
    }

    async fn compaction(&self, req: CompactionRequest) -> Result<(), StoreError> {
        let resp = self.kv().compact(with_leader(req)).await;
        resp.map_err(store_error)?;
        Ok(())
    }

    async fn lease_grant(&self, req: LeaseGrantRequest) -> Result<i64, StoreError> {
        let resp = LeaseClient::new(self.channel.clone())
            .lease_grant(with_leader(req))
            .await;
        Ok(resp.map_err(store_error)?.into_inner().id)
    }

    async fn open_watch(&self, req: WatchCreateRequest) -> Result<ProgressWatch, StoreError> {
        // The request side stays open for as long as the watch is read
        // (etcd ends the call when the client drops it); progress requests
        // go on it.
        let (requests, mut rx) = mpsc::unbounded_channel();
        let _ = requests.send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(req)),
        });
        let outgoing = stream::poll_fn(move |cx| rx.poll_recv(cx));
        let mut client =
            WatchClient::new(self.channel.clone()).max_decoding_message_size(MAX_ANSWER_BYTES);
        let responses = client
            .watch(with_leader(outgoing))
            .await
            .map_err(store_error)?
            .into_inner();
        let state = (responses, false);
        let items = Box::pin(stream::unfold(state, |(mut responses, done)| async move {
            if done {
                return None;
            }
            loop {
                let resp = match responses.message().await {
                    Ok(Some(r)) => r,
                    Ok(None) => return None,
                    Err(s) => return Some((Err(store_error(s)), (responses, true))),
                };
                if resp.compact_revision > 0 {
                    let err = StoreError::Compacted {
                        compact_revision: Some(resp.compact_revision),
                    };
                    return Some((Err(err), (responses, true)));
                }
                if resp.canceled {
                    let why = format!("etcd canceled the watch: {}", resp.cancel_reason);
                    return Some((Err(StoreError::Other(why)), (responses, true)));
                }
                if resp.created {
                    continue;
                }
                if resp.events.is_empty() {
                    // A progress notification (asked for, or etcd's
                    // periodic one).
                    let revision = resp.header.map(|h| h.revision).unwrap_or_default();
                    return Some((Ok(WatchItem::Progress(revision)), (responses, false)));
                }
                let events: Vec<Event> = resp.events.iter().filter_map(txn::event).collect();
                return Some((Ok(WatchItem::Events(events)), (responses, false)));
            }
        }));
        let request_progress = Arc::new(move || {
            let _ = requests.send(WatchRequest {
                request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
            });
        });
        Ok(ProgressWatch {
            items,
            request_progress,
        })
    }

    /// kube-apiserver's probe: the version Maintenance.Status reports,
    /// asked once (a failed probe is asked again next time).
    async fn progress_is_ordered(&self) -> bool {
        let probe = self
            .progress_ordered
            .get_or_try_init(|| async {
                let resp = MaintenanceClient::new(self.channel.clone())
                    .status(with_leader(StatusRequest {}))
                    .await?;
                Ok::<_, Status>(orders_progress(&resp.into_inner().version))
            })
            .await;
        probe.copied().unwrap_or(false)
    }
}

/// Whether etcd `version` answers progress requests after the events
/// before them: 3.4.31+, 3.5.13+, 3.6 and later (kube-apiserver's rule).
fn orders_progress(version: &str) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let (major, minor, patch) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    match (major, minor) {
        (3, 4) => patch >= 31,
        (3, 5) => patch >= 13,
        (3, m) => m > 5,
        (m, _) => m > 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_statuses_map_to_store_errors_by_their_words() {
        let compacted =
            Status::out_of_range("etcdserver: mvcc: required revision has been compacted");
        assert_eq!(
            store_error(compacted),
            StoreError::Compacted {
                compact_revision: None
            }
        );
        let big = Status::invalid_argument("etcdserver: request is too large");
        assert_eq!(store_error(big), StoreError::TooLarge);
        let bigger = Status::resource_exhausted(
            "grpc: received message larger than max (2097431 vs. 2097152)",
        );
        assert_eq!(store_error(bigger), StoreError::TooLarge);
        assert!(matches!(
            store_error(Status::unavailable("etcdserver: no leader")),
            StoreError::Unavailable(_)
        ));
    }

    #[test]
    fn progress_is_trusted_from_the_etcd_versions_that_order_it() {
        for (v, want) in [
            ("3.4.23", false),
            ("3.4.31", true),
            ("3.5.12", false),
            ("3.5.16", true),
            ("3.6.0", true),
            ("3.3.27", false),
            ("", false),
        ] {
            assert_eq!(orders_progress(v), want, "{v}");
        }
    }

    #[tokio::test]
    async fn https_endpoints_need_a_tls_configuration() {
        assert!(matches!(
            Remote::connect(&["https://127.0.0.1:2379".into()], None),
            Err(RemoteError::NoTls(_))
        ));
        assert!(matches!(
            Remote::connect(&["ftp://127.0.0.1:2379".into()], None),
            Err(RemoteError::BadEndpoint(_))
        ));
        assert!(matches!(
            Remote::connect(&[], None),
            Err(RemoteError::Empty)
        ));
        assert!(Remote::connect(&["http://127.0.0.1:2379".into()], None).is_ok());
    }
}
