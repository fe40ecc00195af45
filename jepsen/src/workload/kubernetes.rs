//! `kubernetes`: the traffic kube-apiserver sends its store
//! (../shared/reference/kubernetes-api.md), on pods under
//! `/registry/pods/<namespace>/`:
//!
//! - create: `Txn If mod_revision(key) == 0 Then Put`;
//! - update: `Txn If mod_revision(key) == rv Then Put Else Range(key)`;
//! - delete: `Txn If mod_revision(key) == rv Then DeleteRange Else Range(key)`;
//! - get: a Range of the key;
//! - list: a namespace in pages of [`PAGE`] keys, every page at the first
//!   page's revision; some lists at an older revision the client listed
//!   before (a list with an exact resourceVersion);
//! - one watch per client on `/registry/pods/` with `prev_kv` and
//!   `hasleader`, from the run's first revision, resuming at its last
//!   revision + 1 after a broken stream.
//!
//! Each client keeps what it last learned of each object (its own writes,
//! gets, the Else branch of a failed write), as kube-apiserver's
//! GuaranteedUpdate does: it updates or deletes the version it holds, and on
//! a conflict goes on with the version the Else branch returned. Values are
//! unique in the run, so a value names one version of one object.
//!
//! Checked by [`crate::check::kubernetes`] (per object, linearizable with the
//! mod_revision as the version; lists agree with the history at their
//! revision) and [`crate::check::watch`] (every watcher sees every change).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use oxetcd_proto::etcdserverpb::kv_client::KvClient;
use oxetcd_proto::etcdserverpb::TxnResponse;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::watch::Spec;
use crate::client::{self, AuthedChannel, Ctx};
use crate::history::{Call, Listed, Outcome, Seen, Version};

pub const PREFIX: &str = "/registry/pods/";
/// Written under the prefix when the faults are over; the watchers must
/// reach it.
pub const FENCE: &str = "/registry/pods/~fence";
/// Objects in play at once; the window slides every [`OPS_PER_WINDOW`]
/// operations, so that each object's history stays small for the search.
const OBJECTS_AT_ONCE: u64 = 4;
const OPS_PER_WINDOW: u64 = 150;
/// Objects go into a new namespace every so many, so that a list (of one
/// namespace) stays short however long the run.
const OBJECTS_PER_NAMESPACE: u64 = 40;
/// Keys per list page: small, so that lists take several pages.
pub const PAGE: i64 = 4;

/// The watchers: kube-apiserver's options.
pub const SPEC: Spec = Spec {
    prefix: PREFIX,
    require_leader: true,
    prev_kv: true,
};

fn namespace(n: u64) -> String {
    format!("{PREFIX}ns-{:04}/", n / OBJECTS_PER_NAMESPACE)
}

fn object_key(n: u64) -> String {
    format!("{}pod-{n:05}", namespace(n))
}

/// One client's loop, on `member`, until the run's deadline.
pub async fn client(
    ctx: Arc<Ctx>,
    counter: Arc<AtomicU64>,
    values: Arc<AtomicU64>,
    mut process: u32,
    member: usize,
    mut rng: ChaCha8Rng,
) {
    let mut kv = ctx.kv(member);
    // What this client last learned of each object; none: ask first.
    let mut known: HashMap<String, Seen> = HashMap::new();
    // Revisions this client listed at, for lists at an exact older one.
    let mut listed_at: Vec<i64> = Vec::new();
    while ctx.running() {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let object = n / OPS_PER_WINDOW + rng.random_range(0..OBJECTS_AT_ONCE);
        let key = object_key(object);
        let roll = rng.random_range(0..10);
        let (_, outcome, learned) = if roll < 2 {
            let at = match listed_at.last() {
                Some(&r) if rng.random_bool(0.3) => r,
                _ => 0,
            };
            let listed = list(&ctx, &mut kv, process, &namespace(object), at).await;
            if let Call::List {
                revision: Some(r), ..
            } = &listed.0
            {
                listed_at.push(*r);
            }
            listed
        } else {
            match known.get(&key).copied() {
                Some(_) if roll < 4 => get(&ctx, &mut kv, process, &key).await,
                None => get(&ctx, &mut kv, process, &key).await,
                Some(Seen::Absent) => {
                    let value = values.fetch_add(1, Ordering::Relaxed) as i64;
                    guarded(&ctx, &mut kv, process, &key, None, Some(value)).await
                }
                Some(Seen::Present { value, revision }) => {
                    let expect = Some(Version { value, revision });
                    let write = rng
                        .random_bool(0.75)
                        .then(|| values.fetch_add(1, Ordering::Relaxed) as i64);
                    guarded(&ctx, &mut kv, process, &key, expect, write).await
                }
            }
        };
        match learned {
            Learned::Nothing => {}
            Learned::Forget => {
                known.remove(&key);
            }
            Learned::Object(seen) => {
                known.insert(key, seen);
            }
        }
        if outcome == Outcome::Info {
            process += ctx.concurrency;
        }
        super::register::pace(&ctx, outcome).await;
    }
}

/// What an operation taught the client about its object.
enum Learned {
    Nothing,
    /// Its state is unknown now: get it before writing it.
    Forget,
    Object(Seen),
}

fn seen(kv: Option<&oxetcd_proto::mvccpb::KeyValue>) -> Seen {
    match kv.and_then(|kv| client::decode(kv).map(|v| (v, kv.mod_revision))) {
        Some((value, revision)) => Seen::Present { value, revision },
        None => Seen::Absent,
    }
}

async fn get(
    ctx: &Ctx,
    kv: &mut KvClient<AuthedChannel>,
    process: u32,
    key: &str,
) -> (Call, Outcome, Learned) {
    let call = Call::Get {
        key: key.to_owned(),
        seen: None,
    };
    let key = key.to_owned();
    let mut result = None;
    let outcome = ctx
        .invoke(process, call, false, async {
            let found = seen(client::get(kv, &key).await?.as_ref());
            result = Some(found);
            Ok(Call::Get {
                key: key.clone(),
                seen: Some(found),
            })
        })
        .await;
    let learned = match result {
        Some(found) if outcome == Outcome::Ok => Learned::Object(found),
        _ => Learned::Nothing,
    };
    (Call::Get { key, seen: result }, outcome, learned)
}

/// A create (`expect: None`), update (`write: Some`) or delete (`write:
/// None`) guarded by the object's mod_revision.
async fn guarded(
    ctx: &Ctx,
    kv: &mut KvClient<AuthedChannel>,
    process: u32,
    key: &str,
    expect: Option<Version>,
    write: Option<i64>,
) -> (Call, Outcome, Learned) {
    let pending = Call::Guarded {
        key: key.to_owned(),
        expect,
        write,
        succeeded: None,
        revision: None,
        current: None,
    };
    let mut done: Option<Call> = None;
    let outcome = ctx
        .invoke(process, pending.clone(), true, async {
            let compare = vec![client::compare_mod_revision(
                bytes::Bytes::from(key.to_owned()),
                expect.map_or(0, |v| v.revision),
            )];
            let then = vec![client::write_op(key, write)];
            // A create has no Else; an update or delete reads the object.
            let otherwise = match expect {
                None => Vec::new(),
                Some(_) => vec![client::range_op(key)],
            };
            let response = client::txn(kv, compare, then, otherwise).await?;
            let call = answered(key, expect, write, &response);
            done = Some(call.clone());
            Ok(call)
        })
        .await;
    let learned = match (&done, outcome) {
        (
            Some(Call::Guarded {
                succeeded: Some(true),
                revision: Some(revision),
                ..
            }),
            Outcome::Ok,
        ) => Learned::Object(match write {
            Some(value) => Seen::Present {
                value,
                revision: *revision,
            },
            None => Seen::Absent,
        }),
        (
            Some(Call::Guarded {
                current: Some(current),
                ..
            }),
            Outcome::Ok,
        ) => Learned::Object(*current),
        _ => Learned::Forget,
    };
    (done.unwrap_or(pending), outcome, learned)
}

/// The record of an answered guarded write.
fn answered(
    key: &str,
    expect: Option<Version>,
    write: Option<i64>,
    response: &TxnResponse,
) -> Call {
    let revision = response.header.as_ref().map(|h| h.revision);
    let current = match (response.succeeded, expect) {
        (false, Some(_)) => client::range_kvs(response, 0).map(|kvs| seen(kvs.first())),
        _ => None,
    };
    Call::Guarded {
        key: key.to_owned(),
        expect,
        write,
        succeeded: Some(response.succeeded),
        revision: revision.filter(|_| response.succeeded),
        current,
    }
}

/// A paginated list of `prefix` at `at` (0: the latest).
async fn list(
    ctx: &Ctx,
    kv: &mut KvClient<AuthedChannel>,
    process: u32,
    prefix: &str,
    at: i64,
) -> (Call, Outcome, Learned) {
    let pending = Call::List {
        prefix: prefix.to_owned(),
        limit: PAGE,
        revision: (at != 0).then_some(at),
        objects: None,
    };
    let mut done = None;
    let outcome = ctx
        .invoke(process, pending.clone(), false, async {
            let (revision, kvs) = client::list(kv, prefix, PAGE, at).await?;
            let objects = kvs
                .iter()
                .filter_map(|kv| {
                    Some(Listed {
                        key: String::from_utf8(kv.key.to_vec()).ok()?,
                        value: client::decode(kv)?,
                        revision: kv.mod_revision,
                    })
                })
                .collect();
            let call = Call::List {
                prefix: prefix.to_owned(),
                limit: PAGE,
                revision: Some(revision),
                objects: Some(objects),
            };
            done = Some(call.clone());
            Ok(call)
        })
        .await;
    (done.unwrap_or(pending), outcome, Learned::Nothing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxetcd_proto::etcdserverpb::response_op::Response;
    use oxetcd_proto::etcdserverpb::{RangeResponse, ResponseHeader, ResponseOp};
    use oxetcd_proto::mvccpb::KeyValue;

    fn response(succeeded: bool, revision: i64, current: Option<(i64, i64)>) -> TxnResponse {
        let kvs = current
            .map(|(value, mod_revision)| KeyValue {
                value: client::encode(value),
                mod_revision,
                ..Default::default()
            })
            .into_iter()
            .collect();
        TxnResponse {
            header: Some(ResponseHeader {
                revision,
                ..Default::default()
            }),
            succeeded,
            responses: vec![ResponseOp {
                response: Some(Response::ResponseRange(RangeResponse {
                    kvs,
                    ..Default::default()
                })),
            }],
        }
    }

    #[test]
    fn objects_fill_namespaces_of_forty() {
        assert_eq!(object_key(0), "/registry/pods/ns-0000/pod-00000");
        assert_eq!(object_key(39), "/registry/pods/ns-0000/pod-00039");
        assert_eq!(object_key(40), "/registry/pods/ns-0001/pod-00040");
        assert!(object_key(41).starts_with(&namespace(41)));
    }

    #[test]
    fn a_failed_update_records_what_the_else_branch_read() {
        let expect = Some(Version {
            value: 1,
            revision: 5,
        });
        let call = answered("k", expect, Some(2), &response(false, 9, Some((7, 8))));
        let Call::Guarded {
            succeeded,
            revision,
            current,
            ..
        } = call
        else {
            panic!("{call:?}")
        };
        assert_eq!(succeeded, Some(false));
        assert_eq!(revision, None);
        assert_eq!(
            current,
            Some(Seen::Present {
                value: 7,
                revision: 8
            })
        );
        // Deleted meanwhile: the Else range finds nothing.
        let call = answered("k", expect, None, &response(false, 9, None));
        assert!(matches!(
            call,
            Call::Guarded {
                current: Some(Seen::Absent),
                ..
            }
        ));
    }

    #[test]
    fn a_successful_write_records_its_revision_and_a_failed_create_nothing_more() {
        let call = answered("k", None, Some(3), &response(true, 12, None));
        assert!(matches!(
            call,
            Call::Guarded {
                succeeded: Some(true),
                revision: Some(12),
                current: None,
                ..
            }
        ));
        let call = answered("k", None, Some(3), &response(false, 12, None));
        assert!(matches!(
            call,
            Call::Guarded {
                succeeded: Some(false),
                revision: None,
                current: None,
                ..
            }
        ));
    }
}
