//! Applying lease commands: grants and checkpoints store a record and make no
//! revision; a revocation deletes the lease's keys at one revision, as
//! etcd's applier does (ordinary deletes, so watchers see them).

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::{
    LeaseCheckpointRequest, LeaseCheckpointResponse, LeaseGrantRequest, LeaseGrantResponse,
    LeaseRevokeRequest, LeaseRevokeResponse,
};
use oxetcd_storage::{KeyRange, Store};
use prost::Message;

use super::header;
use crate::command::{ExpiredLeases, Response};
use crate::error::EtcdError;
use crate::lease::Lessor;

pub(super) fn grant(
    store: &Store,
    leases: &Lessor,
    applied: Option<&Bytes>,
    g: &LeaseGrantRequest,
) -> Result<Response, EtcdError> {
    let record = leases.grant(g.id, g.ttl)?;
    let mut txn = store.write();
    if let Some(applied) = applied {
        txn.set_applied_state(applied.clone());
    }
    txn.put_lease_record(record.id, record.encode_to_vec().into());
    let rev = txn.end()?;
    Ok(Response::LeaseGrant(LeaseGrantResponse {
        header: header(rev),
        id: record.id,
        ttl: record.ttl,
        error: String::new(),
    }))
}

pub(super) fn revoke(
    store: &Store,
    leases: &Lessor,
    applied: Option<&Bytes>,
    r: &LeaseRevokeRequest,
) -> Result<Response, EtcdError> {
    let rev = revoke_one(store, leases, applied, r.id)?.ok_or(EtcdError::LeaseNotFound)?;
    Ok(Response::LeaseRevoke(LeaseRevokeResponse {
        header: header(rev),
    }))
}

/// Revokes each lease still there, each in its own write (one revision per
/// lease with keys). The applied record goes with the last write only: a crash
/// before it replays the whole command, which skips what is already revoked.
pub(super) fn expire(
    store: &Store,
    leases: &Lessor,
    applied: Option<&Bytes>,
    e: &ExpiredLeases,
) -> Result<Response, EtcdError> {
    let mut revoked = Vec::new();
    for (i, id) in e.ids.iter().enumerate() {
        let last = i + 1 == e.ids.len();
        if revoke_one(store, leases, applied.filter(|_| last), *id)?.is_some() {
            revoked.push(*id);
        }
    }
    Ok(Response::LeaseExpire(ExpiredLeases {
        ids: revoked,
        term: e.term,
    }))
}

/// Deletes lease `id`'s keys and record in one write; `None` if there is no
/// such lease. Returns the store's revision after it.
fn revoke_one(
    store: &Store,
    leases: &Lessor,
    applied: Option<&Bytes>,
    id: i64,
) -> Result<Option<i64>, EtcdError> {
    let Some(keys) = leases.keys(id) else {
        return Ok(None);
    };
    let mut txn = store.write();
    if let Some(applied) = applied {
        txn.set_applied_state(applied.clone());
    }
    for key in &keys {
        txn.delete_range(KeyRange::new(key, b""));
    }
    // As etcd's lessor: one delete per key, in one txn.
    let mvcc = oxetcd_metrics::mvcc();
    mvcc.delete_total.inc_by(keys.len() as u64);
    if keys.len() > 1 {
        mvcc.txn_total.inc();
    }
    txn.delete_lease_record(id);
    leases.remove(id);
    Ok(Some(txn.end()?))
}

pub(super) fn checkpoint(
    store: &Store,
    leases: &Lessor,
    applied: Option<&Bytes>,
    c: &LeaseCheckpointRequest,
) -> Result<Response, EtcdError> {
    let mut txn = store.write();
    if let Some(applied) = applied {
        txn.set_applied_state(applied.clone());
    }
    for cp in &c.checkpoints {
        if let Some(record) = leases.checkpoint(cp.id, cp.remaining_ttl) {
            txn.put_lease_record(record.id, record.encode_to_vec().into());
        }
    }
    let rev = txn.end()?;
    Ok(Response::LeaseCheckpoint(LeaseCheckpointResponse {
        header: header(rev),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarm::Alarms;
    use crate::apply::apply;
    use crate::auth::AuthStore;
    use crate::command::Request;
    use crate::lease::{self, Lessor};
    use oxetcd_proto::etcdserverpb::{LeaseCheckpoint, PutRequest};
    use oxetcd_storage::{RangeOptions, SledBackend};

    fn open(dir: &std::path::Path) -> Store {
        Store::open(Box::new(SledBackend::open(dir, 8 << 20).unwrap())).unwrap()
    }

    fn put(key: &str, lease: i64) -> Request {
        Request::Put(PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::from_static(b"v"),
            lease,
            ..Default::default()
        })
    }

    fn keys(store: &Store) -> Vec<Bytes> {
        store
            .range(KeyRange::new(b"\0", &[0]), &RangeOptions::default())
            .unwrap()
            .kvs
            .into_iter()
            .map(|kv| kv.key)
            .collect()
    }

    #[test]
    fn expiry_revokes_each_lease_at_its_own_revision_and_replays_harmlessly() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let leases = Lessor::new(1, false);
        let run = |r: Request| {
            apply(
                &store,
                &leases,
                &Alarms::default(),
                &AuthStore::default(),
                None,
                &r,
            )
        };
        for id in [10, 20] {
            run(Request::LeaseGrant(LeaseGrantRequest { ttl: 5, id })).unwrap();
        }
        assert_eq!(store.applied_revision(), 1, "a grant makes no revision");
        run(put("a", 10)).unwrap();
        run(put("b", 10)).unwrap();
        run(put("c", 20)).unwrap();
        assert!(matches!(run(put("d", 30)), Err(EtcdError::LeaseNotFound)));
        let expire = Request::LeaseExpire(ExpiredLeases {
            ids: vec![99, 10, 20],
            term: 1,
        });
        let Response::LeaseExpire(done) = run(expire.clone()).unwrap() else {
            panic!("wrong response");
        };
        assert_eq!(done.ids, vec![10, 20], "the unknown lease is skipped");
        // Lease 10's two keys at revision 5, lease 20's key at 6.
        let committed = store.commit().unwrap();
        let revs: Vec<(Bytes, i64)> = committed
            .events
            .iter()
            .filter_map(|e| e.kv.as_ref().map(|kv| (kv.key.clone(), kv.mod_revision)))
            .filter(|(_, rev)| *rev >= 5)
            .collect();
        assert_eq!(
            revs,
            vec![
                (Bytes::from_static(b"a"), 5),
                (Bytes::from_static(b"b"), 5),
                (Bytes::from_static(b"c"), 6)
            ]
        );
        assert!(keys(&store).is_empty());
        // Applied again (a replay after a crash midway): nothing more changes.
        let Response::LeaseExpire(again) = run(expire).unwrap() else {
            panic!("wrong response");
        };
        assert!(again.ids.is_empty());
        assert_eq!(store.applied_revision(), 6);
        assert!(store.lease_records().unwrap().is_empty());
    }

    #[test]
    fn revoke_and_checkpoint_are_stored_and_recovered() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            let leases = Lessor::new(1, true);
            let run = |r: Request| {
                apply(
                    &store,
                    &leases,
                    &Alarms::default(),
                    &AuthStore::default(),
                    None,
                    &r,
                )
            };
            run(Request::LeaseGrant(LeaseGrantRequest { ttl: 100, id: 7 })).unwrap();
            run(Request::LeaseGrant(LeaseGrantRequest { ttl: 100, id: 8 })).unwrap();
            run(put("kept", 7)).unwrap();
            run(put("gone", 8)).unwrap();
            let cp = LeaseCheckpointRequest {
                checkpoints: vec![LeaseCheckpoint {
                    id: 7,
                    remaining_ttl: 42,
                }],
            };
            run(Request::LeaseCheckpoint(cp)).unwrap();
            run(Request::LeaseRevoke(LeaseRevokeRequest { id: 8 })).unwrap();
            assert!(matches!(
                run(Request::LeaseRevoke(LeaseRevokeRequest { id: 8 })),
                Err(EtcdError::LeaseNotFound)
            ));
            let _ = store.commit().unwrap();
        }
        let store = open(dir.path());
        let leases = Lessor::new(1, true);
        lease::recover(&leases, &store).unwrap();
        assert_eq!(leases.ids(), vec![7]);
        assert_eq!(leases.keys(7).unwrap(), vec![Bytes::from_static(b"kept")]);
        assert_eq!(keys(&store), vec![Bytes::from_static(b"kept")]);
        // The checkpointed TTL is what a new leader resumes from.
        leases.promote(std::time::Duration::ZERO);
        let ttl = leases.time_to_live(7, false).unwrap();
        assert!((41..=42).contains(&ttl.remaining), "{ttl:?}");
    }
}
