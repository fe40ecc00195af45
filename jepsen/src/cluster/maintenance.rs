//! Compaction and defragmentation under load, for the `compact` nemesis:
//! KV.Compact at the current revision minus the revisions to keep
//! (`--compact-keep`, [`KEEP`] by default), physical, then
//! Maintenance.Defragment of one member.
//!
//! [`KEEP`] revisions stay by default: more than the workloads write during
//! the longest fault (6 s at the default 200 operations/s), so that a
//! watcher resuming after a fault, or a Kubernetes list at a revision listed
//! a moment ago, still finds its history. A list at an older revision may meet the
//! compaction; it fails (a read: certainly without effect), as
//! kube-apiserver's would with "410 Gone".

use std::time::Duration;

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::kv_client::KvClient;
use oxetcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd_proto::etcdserverpb::{CompactionRequest, DefragmentRequest, RangeRequest};

use super::channel;

/// Revisions kept below the current one, by default.
pub const KEEP: i64 = 5_000;
/// Deadline of each call (a physical compaction or a defragmentation of a
/// busy member takes a while).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

async fn timed<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err("timeout".into()),
    }
}

/// The revision to compact at, `current - keep`, if there is one.
pub fn target(current: i64, keep: i64) -> Option<i64> {
    (current - keep > 1).then_some(current - keep)
}

/// Compacts through the first of `via` that answers, then defragments the
/// member at `defrag`; says what happened (a refusal is a result, not an
/// error of the run).
pub async fn compact_and_defrag(via: &[String], defrag: &str, keep: i64) -> String {
    let mut said = Vec::new();
    for url in via {
        let Ok(ch) = channel(url, CALL_TIMEOUT) else {
            continue;
        };
        let mut kv = KvClient::new(ch);
        let probe = RangeRequest {
            key: Bytes::from_static(b"jepsen/"),
            limit: 1,
            ..Default::default()
        };
        let current = match timed(kv.range(probe)).await {
            Ok(r) => r.header.map(|h| h.revision).unwrap_or(0),
            Err(e) => {
                said.push(format!("{url}: {e}"));
                continue;
            }
        };
        match target(current, keep) {
            None => said.push(format!("revision {current}: nothing to compact")),
            Some(revision) => {
                let request = CompactionRequest {
                    revision,
                    physical: true,
                };
                match timed(kv.compact(request)).await {
                    Ok(_) => said.push(format!("compacted at {revision} (revision {current})")),
                    Err(e) => said.push(format!("compacting at {revision}: {e}")),
                }
            }
        }
        break;
    }
    let defragmented = match channel(defrag, CALL_TIMEOUT) {
        Ok(ch) => timed(MaintenanceClient::new(ch).defragment(DefragmentRequest {})).await,
        Err(e) => Err(e),
    };
    match defragmented {
        Ok(_) => said.push(format!("defragmented {defrag}")),
        Err(e) => said.push(format!("defragmenting {defrag}: {e}")),
    }
    said.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_keeps_the_last_revisions() {
        assert_eq!(target(100, KEEP), None);
        assert_eq!(target(KEEP + 1, KEEP), None);
        assert_eq!(target(KEEP + 500, KEEP), Some(500));
        assert_eq!(target(800, 300), Some(500));
    }
}
