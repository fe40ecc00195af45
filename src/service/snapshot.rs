//! Maintenance.Snapshot: the store as etcd's backend database (a bbolt file,
//! see `oxetcd_storage::bbolt`), streamed as etcd 3.4 streams it, so that
//! `etcdctl snapshot save/status/restore` work on it:
//!
//! ```text
//! message 1..n   blob = next <= 32 KiB of the file, remaining_bytes = file bytes after it
//! message n+1    blob = sha256 of the whole file, remaining_bytes = 0
//! ```
//!
//! etcdctl appends the digest to the file it saves; `snapshot restore` finds
//! it there (file size % 512 == 32) and checks it.
//!
//! The auth state (users, roles, enabled flag, auth revision) goes in etcd's
//! auth buckets, so etcd restored from it keeps them.
//!
//! The copy is written to an unlinked temporary file first (in $TMPDIR),
//! holding the store's read lock, so it is of exactly one revision; writes
//! wait meanwhile. Then it is streamed at the client's pace.

use std::io::{Read, Seek, SeekFrom};

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::SnapshotResponse;
use oxetcd_storage::bbolt::{EtcdExport, EtcdLease};
use oxetcd_storage::StorageError;
use prost::Message;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::info;

use oxetcd_server::EtcdError;

use super::Shared;

/// etcd's snapshotSendBufferSize.
const CHUNK: usize = 32 * 1024;
/// Messages buffered ahead of a slow client.
const AHEAD: usize = 4;
/// What the exported database says the cluster version is (the etcd API
/// version we implement).
const CLUSTER_VERSION: &str = "3.4.0";

/// The snapshot of `node`'s store, as a stream of etcd's messages.
pub fn stream(node: Shared) -> ReceiverStream<Result<SnapshotResponse, Status>> {
    let (tx, rx) = mpsc::channel(AHEAD);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = send(&node, &tx) {
            // The client may be gone already; then nobody needs the error.
            let _ = tx.blocking_send(Err(e));
        }
    });
    ReceiverStream::new(rx)
}

type Sender = mpsc::Sender<Result<SnapshotResponse, Status>>;

fn send(node: &Shared, tx: &Sender) -> Result<(), Status> {
    let io = |e: std::io::Error| Status::internal(format!("snapshot: {e}"));
    let members = members_json(node)?;
    let applied = node.raft_metrics().last_applied.map_or(0, |l| l.index);
    let export = EtcdExport {
        consistent_index: applied,
        members,
        cluster_version: CLUSTER_VERSION,
        lease: &etcd_lease,
        cluster_buckets: &|records| Ok(oxetcd_server::auth::etcd_buckets(records)),
    };
    let file = tempfile::tempfile().map_err(io)?;
    let (mut file, summary) = node
        .store()
        .write_etcd_db(file, &export)
        .map_err(EtcdError::from)?;
    info!(
        total_bytes = summary.size,
        revision = summary.revision,
        "sending database snapshot to client"
    );
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut digest = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut remaining = summary.size;
    while remaining > 0 {
        let n = CHUNK.min(remaining as usize);
        file.read_exact(&mut buf[..n]).map_err(io)?;
        digest.update(&buf[..n]);
        remaining -= n as u64;
        let message = SnapshotResponse {
            header: None,
            remaining_bytes: remaining,
            blob: Bytes::copy_from_slice(&buf[..n]),
            ..SnapshotResponse::default()
        };
        if tx.blocking_send(Ok(message)).is_err() {
            return Ok(()); // the client went away
        }
    }
    let sha = SnapshotResponse {
        header: None,
        remaining_bytes: 0,
        blob: Bytes::copy_from_slice(&digest.finalize()),
        ..SnapshotResponse::default()
    };
    let _ = tx.blocking_send(Ok(sha));
    info!(
        total_bytes = summary.size,
        "sent database snapshot to client"
    );
    Ok(())
}

/// Our lease records are etcd's `leasepb.Lease` field for field (ID 1, TTL
/// 2, RemainingTTL 3; see `lease::lessor::LeaseRecord`).
fn etcd_lease(id: i64, raw: &[u8]) -> Result<EtcdLease, StorageError> {
    let mut lease = EtcdLease::decode(raw)
        .map_err(|e| StorageError::Corrupt(format!("lease {id:x} record: {e}")))?;
    lease.id = id;
    Ok(lease)
}

/// The members, as etcd's "members" bucket holds them (JSON by member ID).
fn members_json(node: &Shared) -> Result<Vec<(u64, Vec<u8>)>, Status> {
    Ok(node
        .members()?
        .iter()
        .map(|m| {
            let peer_urls = m.peer_ur_ls.iter().map(String::as_str);
            let json = member_json(m.id, peer_urls, &m.name, &m.client_ur_ls, m.is_learner);
            (m.id, json)
        })
        .collect())
}

/// etcd's `membership.Member` JSON (empty fields left out, as etcd does).
fn member_json<'a>(
    id: u64,
    peer_urls: impl Iterator<Item = &'a str>,
    name: &str,
    client_urls: &[String],
    is_learner: bool,
) -> Vec<u8> {
    let mut m = serde_json::Map::new();
    m.insert("id".into(), id.into());
    let peers: Vec<serde_json::Value> = peer_urls.map(|u| u.into()).collect();
    m.insert("peerURLs".into(), peers.into());
    if is_learner {
        m.insert("isLearner".into(), true.into());
    }
    if !name.is_empty() {
        m.insert("name".into(), name.into());
    }
    if !client_urls.is_empty() {
        m.insert("clientURLs".into(), client_urls.to_vec().into());
    }
    serde_json::Value::Object(m).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_json_is_etcds() {
        let json = member_json(
            0x8e9e05c52164694d,
            ["http://127.0.0.1:2380"].into_iter(),
            "default",
            &["http://127.0.0.1:2379".to_string()],
            false,
        );
        let parse = |raw: Vec<u8>| serde_json::from_slice::<serde_json::Value>(&raw).unwrap();
        assert_eq!(
            parse(json),
            serde_json::json!({
                "id": 0x8e9e05c52164694d_u64,
                "peerURLs": ["http://127.0.0.1:2380"],
                "name": "default",
                "clientURLs": ["http://127.0.0.1:2379"],
            })
        );
        let learner = member_json(1, [].into_iter(), "", &[], true);
        assert_eq!(
            parse(learner),
            serde_json::json!({"id": 1, "peerURLs": [], "isLearner": true})
        );
    }

    #[test]
    fn lease_records_read_as_etcd_leases() {
        let raw = EtcdLease {
            id: 0,
            ttl: 30,
            remaining_ttl: 12,
        }
        .encode_to_vec();
        let lease = etcd_lease(0x1234, &raw).unwrap();
        assert_eq!((lease.id, lease.ttl, lease.remaining_ttl), (0x1234, 30, 12));
        assert!(etcd_lease(1, &[0xff]).is_err());
    }
}
