//! The state machine's semantics: how each command changes the store and what
//! it answers, as etcd's applier (`applierV3backend`) does it.
//!
//! Requests arrive validated (`crate::validate`); what can only be checked
//! against the store (ignore_value on a missing key, a lease) is checked here,
//! before the first change.

mod lease;
mod range;
mod txn;

pub use range::{range, Reader};
pub use txn::{
    is_read_only as is_read_only_txn, is_serializable as is_serializable_txn, read_only_txn,
    set_half_applied_failpoint, set_reads_miss_own_writes_failpoint, set_stale_read_only_failpoint,
};

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::{
    CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    ResponseHeader,
};
use oxetcd_proto::mvccpb::event::EventType;
use oxetcd_proto::mvccpb::Event;
use oxetcd_storage::{KeyRange, RangeOptions, Store, WriteTxn};
use prost::Message;

use crate::alarm::Alarms;
use crate::auth::AuthStore;
use crate::command::{KeyWriteRef, Request, Response};
use crate::error::EtcdError;
use crate::lease::{KeyChange, Lessor};
use crate::quota;

/// The cluster record holding the cluster's ID (8 bytes, big-endian).
pub const CLUSTER_ID_RECORD: &str = "id";

/// The cluster ID recorded in `store`, if any.
pub fn recorded_cluster_id(store: &Store) -> Result<Option<u64>, EtcdError> {
    let records = store.cluster_records(CLUSTER_ID_RECORD)?;
    Ok(records
        .iter()
        .find(|(k, _)| k == CLUSTER_ID_RECORD)
        .and_then(|(_, v)| {
            let bytes: [u8; 8] = v.as_ref().try_into().ok()?;
            Some(u64::from_be_bytes(bytes))
        }))
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// Applies one command; `applied` (the state
/// machine's record of it) is stored atomically with the changes. An error
/// that `is_fatal` means the store can no longer be trusted; any other error
/// changed nothing.
pub fn apply(
    store: &Store,
    leases: &Lessor,
    alarms: &Alarms,
    auth: &AuthStore,
    applied: Option<&Bytes>,
    request: &Request,
) -> Result<Response, EtcdError> {
    if let Some(refused) = refused_by_alarms(alarms, request) {
        return Err(refused);
    }
    match request {
        Request::Auth(a) => {
            let change = a.change.as_ref().ok_or(EtcdError::InvalidAuthMgmt)?;
            let applied = auth.apply(store, change, applied.cloned())?;
            Ok(Response::Auth(applied))
        }
        // Checked against the auth state at `auth_revision`: refused on
        // every member if users or roles changed since (etcd's
        // ErrAuthOldRevision), applied as the request it holds otherwise.
        Request::Authorized(w) => {
            if w.auth_revision < auth.revision() {
                return Err(EtcdError::AuthOldRevision);
            }
            match w.command.as_deref().and_then(|c| c.request.as_ref()) {
                Some(Request::Authorized(_)) | None => Err(EtcdError::InvalidAuthMgmt),
                Some(inner) => apply(store, leases, alarms, auth, applied, inner),
            }
        }
        Request::Alarm(a) => {
            let mut response = alarms.apply(store, a)?;
            if let Some(applied) = applied {
                store.save_applied_state(applied.clone())?;
            }
            response.header = header(store.applied_revision());
            Ok(Response::Alarm(response))
        }
        Request::LeaseGrant(g) => lease::grant(store, leases, applied, g),
        Request::LeaseRevoke(r) => lease::revoke(store, leases, applied, r),
        Request::LeaseExpire(e) => lease::expire(store, leases, applied, e),
        Request::LeaseCheckpoint(c) => lease::checkpoint(store, leases, applied, c),
        Request::Compact(c) => {
            store.compact(c.revision)?;
            if let Some(applied) = applied {
                store.save_applied_state(applied.clone())?;
            }
            Ok(Response::Compact(CompactionResponse {
                header: header(store.applied_revision()),
            }))
        }
        Request::Publish(member) => {
            let key = format!("member/{:016x}", member.member_id);
            store.put_cluster_record(&key, Bytes::from(member.encode_to_vec()))?;
            if member.cluster_id != 0 && store.cluster_records(CLUSTER_ID_RECORD)?.is_empty() {
                let id = Bytes::copy_from_slice(&member.cluster_id.to_be_bytes());
                store.put_cluster_record(CLUSTER_ID_RECORD, id)?;
            }
            Ok(Response::Published(member.clone()))
        }
        Request::Put(p) => apply_lone_key_write(store, leases, applied, KeyWriteRef::Put(p)),
        Request::DeleteRange(d) => {
            apply_lone_key_write(store, leases, applied, KeyWriteRef::DeleteRange(d))
        }
        Request::Txn(t) => apply_lone_key_write(store, leases, applied, KeyWriteRef::Txn(t)),
    }
}

/// What etcd's capped applier (NOSPACE active) and corrupt applier (CORRUPT
/// active) refuse: with NOSPACE, what grows the store (a put, a txn with
/// puts, a lease grant); with CORRUPT, every client write. The alarms are
/// replicated state, so every member refuses the same commands. Commands of
/// the members themselves (expiries, checkpoints, publishes, alarms) pass.
fn refused_by_alarms(alarms: &Alarms, request: &Request) -> Option<EtcdError> {
    let client_write = matches!(
        request,
        Request::Put(_)
            | Request::DeleteRange(_)
            | Request::Txn(_)
            | Request::Compact(_)
            | Request::LeaseGrant(_)
            | Request::LeaseRevoke(_)
    );
    if client_write && alarms.corrupt() {
        return Some(EtcdError::Corrupt);
    }
    if alarms.no_space() && quota::cost(request) > 0 {
        return Some(EtcdError::NoSpace);
    }
    None
}

/// [`refused_by_alarms`] for a key write of a batch.
fn key_write_refused_by_alarms(alarms: &Alarms, write: KeyWriteRef<'_>) -> Option<EtcdError> {
    if alarms.corrupt() {
        return Some(EtcdError::Corrupt);
    }
    if alarms.no_space() && quota::key_write_cost(write) > 0 {
        return Some(EtcdError::NoSpace);
    }
    None
}

fn apply_lone_key_write(
    store: &Store,
    leases: &Lessor,
    applied: Option<&Bytes>,
    write: KeyWriteRef<'_>,
) -> Result<Response, EtcdError> {
    let mut txn = store.write();
    if let Some(applied) = applied {
        txn.set_applied_state(applied.clone());
    }
    let response = apply_key_write(&mut txn, leases, write)?;
    txn.end()?;
    Ok(response)
}

/// Applies the key writes of one log entry in one write txn:
/// each at its own revision, in order, and all of them with `applied` in one
/// backend batch, so after a crash the entry is in the store whole or not at
/// all. Returns each request's result; an error from this call (or a result
/// that `is_fatal`) means the store can no longer be trusted.
pub fn apply_key_writes<'r>(
    store: &Store,
    leases: &Lessor,
    alarms: &Alarms,
    applied: Option<&Bytes>,
    writes: impl IntoIterator<Item = KeyWriteRef<'r>>,
) -> Result<Vec<Result<Response, EtcdError>>, EtcdError> {
    let mut txn = store.write();
    if let Some(applied) = applied {
        txn.set_applied_state(applied.clone());
    }
    let mut results = Vec::new();
    for write in writes {
        if let Some(refused) = key_write_refused_by_alarms(alarms, write) {
            results.push(Err(refused));
            continue;
        }
        match apply_key_write(&mut txn, leases, write) {
            Err(e) if e.is_fatal() => return Err(e),
            result => results.push(result),
        }
    }
    txn.end()?;
    Ok(results)
}

/// One key write in `txn`, at its own revision, stamped on the response.
fn apply_key_write(
    txn: &mut WriteTxn<'_>,
    leases: &Lessor,
    write: KeyWriteRef<'_>,
) -> Result<Response, EtcdError> {
    match write {
        KeyWriteRef::Put(p) => in_revision(txn, leases, |txn| {
            check_put(txn, leases, p)?;
            put(txn, p).map(Response::Put)
        }),
        KeyWriteRef::DeleteRange(d) => in_revision(txn, leases, |txn| {
            delete_range(txn, d).map(Response::DeleteRange)
        }),
        KeyWriteRef::Txn(t) => in_revision(txn, leases, |txn| {
            txn::apply_txn(txn, leases, t).map(Response::Txn)
        }),
    }
}

/// Runs `f` as one request of `txn` and stamps the revision after it on the
/// response; the lessor follows the keys it put and deleted. A request that
/// fails has changed nothing (every check runs before the first change).
fn in_revision(
    txn: &mut WriteTxn<'_>,
    leases: &Lessor,
    f: impl FnOnce(&mut WriteTxn<'_>) -> Result<Response, EtcdError>,
) -> Result<Response, EtcdError> {
    let mut response = f(txn)?;
    leases.track(key_changes(txn.events()));
    let rev = txn.finish_revision();
    let top = match &mut response {
        Response::Put(r) => &mut r.header,
        Response::DeleteRange(r) => &mut r.header,
        Response::Txn(r) => &mut r.header,
        Response::Compact(r) => &mut r.header,
        Response::LeaseGrant(r) => &mut r.header,
        Response::LeaseRevoke(r) => &mut r.header,
        Response::LeaseCheckpoint(r) => &mut r.header,
        Response::Published(_)
        | Response::LeaseExpire(_)
        | Response::Alarm(_)
        | Response::Auth(_) => return Ok(response),
    };
    *top = header(rev);
    Ok(response)
}

/// The key-value a put replaces, if it must be read (prev_kv, ignore_*).
fn previous(
    reader: &impl Reader,
    p: &PutRequest,
) -> Result<Option<oxetcd_proto::mvccpb::KeyValue>, EtcdError> {
    if !(p.prev_kv || p.ignore_value || p.ignore_lease) {
        return Ok(None);
    }
    oxetcd_metrics::mvcc().range_total.inc();
    let res = reader.read(KeyRange::new(&p.key, b""), &RangeOptions::default())?;
    Ok(res.kvs.into_iter().next())
}

/// What a put needs before any change: the key for ignore_value /
/// ignore_lease, and its lease.
pub(crate) fn check_put(
    txn: &WriteTxn<'_>,
    leases: &Lessor,
    p: &PutRequest,
) -> Result<(), EtcdError> {
    if (p.ignore_value || p.ignore_lease) && previous(txn, p)?.is_none() {
        return Err(EtcdError::KeyNotFound);
    }
    if p.lease != 0 && !leases.exists(p.lease) {
        return Err(EtcdError::LeaseNotFound);
    }
    Ok(())
}

/// How a write's events change keys' leases.
fn key_changes(events: &[Event]) -> impl Iterator<Item = KeyChange> + '_ {
    events.iter().filter_map(|e| {
        let kv = e.kv.as_ref()?;
        Some(if e.r#type == EventType::Delete as i32 {
            KeyChange::Deleted(kv.key.clone())
        } else {
            KeyChange::Put(kv.key.clone(), kv.lease)
        })
    })
}

pub(crate) fn put(txn: &mut WriteTxn<'_>, p: &PutRequest) -> Result<PutResponse, EtcdError> {
    let prev = previous(&*txn, p)?;
    let (value, lease) = match &prev {
        Some(old) => (
            if p.ignore_value {
                old.value.clone()
            } else {
                p.value.clone()
            },
            if p.ignore_lease { old.lease } else { p.lease },
        ),
        None => (p.value.clone(), p.lease),
    };
    txn.put(p.key.clone(), value, lease);
    oxetcd_metrics::mvcc().put_total.inc();
    Ok(PutResponse {
        header: header(txn.read_rev()),
        prev_kv: prev.filter(|_| p.prev_kv),
    })
}

pub(crate) fn delete_range(
    txn: &mut WriteTxn<'_>,
    d: &DeleteRangeRequest,
) -> Result<DeleteRangeResponse, EtcdError> {
    let range = KeyRange::new(&d.key, &d.range_end);
    let mvcc = oxetcd_metrics::mvcc();
    let prev_kvs = if d.prev_kv {
        mvcc.range_total.inc();
        txn.read(range, &RangeOptions::default())?.kvs
    } else {
        Vec::new()
    };
    let deleted = txn.delete_range(range).len() as i64;
    mvcc.delete_total.inc();
    Ok(DeleteRangeResponse {
        header: header(txn.read_rev()),
        deleted,
        prev_kvs,
    })
}

/// A store and the rest of what applying needs, on a temporary directory:
/// the unit tests' applier.
#[cfg(test)]
pub(crate) struct TestApplier {
    pub store: Store,
    leases: Lessor,
    alarms: Alarms,
    auth: AuthStore,
    _dir: tempfile::TempDir,
}

#[cfg(test)]
impl TestApplier {
    pub fn new() -> TestApplier {
        let dir = tempfile::tempdir().unwrap();
        let backend = oxetcd_storage::SledBackend::open(dir.path(), 1 << 20).unwrap();
        TestApplier {
            store: Store::open(Box::new(backend)).unwrap(),
            leases: Lessor::new(1, false),
            alarms: Alarms::default(),
            auth: AuthStore::default(),
            _dir: dir,
        }
    }

    pub fn apply(&self, request: &Request) -> Result<Response, EtcdError> {
        apply(
            &self.store,
            &self.leases,
            &self.alarms,
            &self.auth,
            None,
            request,
        )
    }
}

#[cfg(test)]
mod auth_tests {
    use super::*;
    use crate::command::{AuthChange, AuthCommand, Authorized, Command};
    use oxetcd_proto::etcdserverpb::AuthRoleAddRequest;

    #[test]
    fn a_write_checked_before_an_auth_change_is_refused_and_changes_nothing() {
        let applier = TestApplier::new();
        let store = &applier.store;
        let put = Request::Put(PutRequest {
            key: "k".into(),
            value: "v".into(),
            ..Default::default()
        });
        let checked_at = |auth_revision| {
            Request::Authorized(Authorized {
                auth_revision,
                command: Some(Box::new(Command::from(put.clone()))),
            })
        };
        let run = |r: &Request| applier.apply(r);
        run(&checked_at(0)).unwrap();
        let role_add = Request::Auth(AuthCommand {
            change: Some(AuthChange::RoleAdd(AuthRoleAddRequest { name: "r".into() })),
        });
        run(&role_add).unwrap();
        let revision = store.applied_revision();
        assert_eq!(
            run(&checked_at(0)).unwrap_err().to_string(),
            "etcdserver: revision of auth store is old"
        );
        assert_eq!(store.applied_revision(), revision, "nothing changed");
        run(&checked_at(1)).unwrap();
        assert_eq!(store.applied_revision(), revision + 1);
    }
}
