//! CustomResourceDefinitions' life cycle, which kube-apiserver leaves to its
//! apiextensions controllers (naming, establishing, finalizing): one
//! reconciliation reads every stored CRD and
//! - sets its status as those controllers do: acceptedNames, storedVersions,
//!   conditions NamesAccepted (False when another CRD of the group already
//!   holds a name) and Established;
//! - for a CRD being deleted, deletes its custom resources, then drops the
//!   cleanup finalizer, which removes the CRD;
//! - refreshes the registry: the served versions of every CRD whose names
//!   are accepted.
//!
//! It runs at start-up, after every CRD write through this server, and on
//! every change a watch of the CRD prefix sees, so that a CRD created through
//! another server over the same store is served here too. A reconciliation
//! that finds nothing to change writes nothing, so servers sharing a store
//! agree without fighting.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tracing::warn;

use super::delete::{delete_object, DeleteOptions};
use super::update::{guaranteed_update, Scope};
use super::{object, Api};
use crate::crd::{self, CLEANUP_FINALIZER};
use crate::error::ApiError;
use crate::registry::{self, Kind};
use crate::store::prefix_end;

/// How long the CRD watch waits before starting again after an error.
const RETRY: Duration = Duration::from_secs(1);

/// What a CRD's first DELETE writes: deletionTimestamp, the cleanup
/// finalizer and the Terminating condition.
pub(super) fn mark_deleted(cur: &Value) -> Value {
    let mut m = cur.clone();
    let meta = object::metadata_mut(&mut m);
    meta.insert("deletionTimestamp".into(), json!(object::now()));
    meta.insert("deletionGracePeriodSeconds".into(), json!(0));
    let finalizers = meta.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(f) = finalizers.as_array_mut() {
        if !f.iter().any(|v| v == CLEANUP_FINALIZER) {
            f.push(json!(CLEANUP_FINALIZER));
        }
    }
    set_condition(
        &mut m,
        "Terminating",
        "True",
        "InstanceDeletionPending",
        "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
    );
    m
}

/// Sets condition `kind` in status.conditions, keeping its
/// lastTransitionTime when its status does not change.
fn set_condition(crd: &mut Value, kind: &str, status: &str, reason: &str, message: &str) {
    if !crd.get("status").is_some_and(Value::is_object) {
        crd["status"] = json!({});
    }
    if !crd["status"].get("conditions").is_some_and(Value::is_array) {
        crd["status"]["conditions"] = json!([]);
    }
    let Some(conditions) = crd["status"]["conditions"].as_array_mut() else {
        return;
    };
    let time = match conditions.iter().find(|c| c["type"] == kind) {
        Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
        _ => json!(object::now()),
    };
    let wanted = json!({"type": kind, "status": status, "lastTransitionTime": time,
                        "reason": reason, "message": message});
    match conditions.iter_mut().find(|c| c["type"] == kind) {
        Some(c) => *c = wanted,
        None => conditions.push(wanted),
    }
}

fn condition_true(crd: &Value, kind: &str) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == kind && c["status"] == "True")
        })
}

/// The names a CRD claims in its group.
fn claimed(crd: &Value) -> Vec<String> {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(Value::Null);
    let mut out: Vec<String> = ["plural", "singular", "kind", "listKind"]
        .iter()
        .filter_map(|f| names.get(*f).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    out.extend(
        names
            .get("shortNames")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from),
    );
    out
}

/// The status `crd` should have, given the first of its names already held
/// by another CRD of its group (None: all free).
fn wanted_status(crd: &Value, conflict: Option<&str>) -> Value {
    let mut next = crd.clone();
    match conflict {
        None => {
            set_condition(
                &mut next,
                "NamesAccepted",
                "True",
                "NoConflicts",
                "no conflicts found",
            );
            set_condition(
                &mut next,
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            );
            next["status"]["acceptedNames"] = crd
                .pointer("/spec/names")
                .cloned()
                .unwrap_or_else(|| json!({}));
        }
        Some(name) => {
            set_condition(
                &mut next,
                "NamesAccepted",
                "False",
                "NameConflict",
                &format!("{name:?} is already in use"),
            );
            if !condition_true(crd, "Established") {
                set_condition(
                    &mut next,
                    "Established",
                    "False",
                    "NotAccepted",
                    "not all names are accepted",
                );
            }
            if next["status"].get("acceptedNames").is_none() {
                next["status"]["acceptedNames"] = json!({"plural": "", "kind": ""});
            }
        }
    }
    let storage = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|v| v["storage"] == true)
        .and_then(|v| v["name"].as_str())
        .map(String::from);
    let mut stored: Vec<Value> = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(v) = storage {
        if !stored.contains(&json!(v)) {
            stored.push(json!(v));
        }
    }
    next["status"]["storedVersions"] = json!(stored);
    next
}

/// Deletes the custom resources of a CRD being deleted; true when none is
/// left (objects held by finalizers stay until theirs are gone).
async fn delete_resources(api: &Api, kind: &'static Kind) -> Result<bool, ApiError> {
    let prefix = api.collection(kind, None);
    let page = api
        .store
        .list(prefix.as_bytes(), &prefix_end(prefix.as_bytes()), 0, 0)
        .await?;
    let mut left = 0usize;
    for kv in &page.kvs {
        let rel = String::from_utf8_lossy(&kv.key[prefix.len()..]).to_string();
        let (ns, name) = match rel.split_once('/') {
            Some((ns, name)) if kind.namespaced => (Some(ns), name),
            _ => (None, rel.as_str()),
        };
        match delete_object(api, kind, ns, name, &DeleteOptions::immediate()).await {
            Ok((_, true)) | Err(ApiError::NotFound { .. }) => {}
            Ok((_, false)) => left += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(left == 0)
}

/// The server's own guarded write of the CRD `name` (no field manager).
async fn write_crd<F>(api: &Api, name: &str, mutate: F) -> Result<Value, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    let crds = registry::crds();
    guaranteed_update(api, crds, None, name, Scope::System, false, None, mutate).await
}

/// One reconciliation of every CRD (see the module comment). Returns the
/// store revision it read the CRDs at.
pub async fn reconcile(api: &Api) -> Result<i64, ApiError> {
    let _one_at_a_time = api.crd_lock.lock().await;
    let crds_kind = registry::crds();
    let prefix = api.collection(crds_kind, None);
    let page = api
        .store
        .list(prefix.as_bytes(), &prefix_end(prefix.as_bytes()), 0, 0)
        .await?;
    let mut crds = page
        .kvs
        .iter()
        .map(object::decode)
        .collect::<Result<Vec<Value>, _>>()?;
    // Older CRDs keep their names: kube-apiserver's naming controller
    // accepts names first come, first served.
    crds.sort_by(|a, b| {
        let key = |c: &Value| {
            (
                object::meta_str(c, "creationTimestamp")
                    .unwrap_or("")
                    .to_string(),
                object::name(c).to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    let mut taken: HashMap<String, HashSet<String>> = HashMap::new();
    let mut served: Vec<&'static Kind> = Vec::new();
    for crd in crds {
        let name = object::name(&crd).to_string();
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let held = taken.entry(group).or_default();
        let names = claimed(&crd);
        let conflict = names.iter().find(|n| held.contains(*n)).cloned();
        if conflict.is_none() {
            held.extend(names);
        }
        let kinds = crd::kinds(&crd);
        if object::is_deleting(&crd) {
            let Some(kind) = kinds.first().copied() else {
                continue;
            };
            if !delete_resources(api, kind).await? {
                served.extend(kinds);
                continue;
            }
            let gone = write_crd(api, &name, |cur| {
                let mut next = cur.clone();
                if let Some(f) = next
                    .pointer_mut("/metadata/finalizers")
                    .and_then(Value::as_array_mut)
                {
                    f.retain(|v| v != CLEANUP_FINALIZER);
                }
                Ok(next)
            })
            .await;
            match gone {
                Ok(_) | Err(ApiError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        let wanted = wanted_status(&crd, conflict.as_deref());
        if wanted != crd {
            let written = write_crd(api, &name, |cur| {
                Ok(wanted_status(cur, conflict.as_deref()))
            })
            .await;
            match written {
                Ok(_) => {}
                Err(ApiError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        if conflict.is_none() {
            served.extend(kinds);
        }
    }
    served.sort_by(|a, b| {
        (a.group, crd::version_priority(a.version), a.resource).cmp(&(
            b.group,
            crd::version_priority(b.version),
            b.resource,
        ))
    });
    api.registry.set_custom(served);
    Ok(page.revision)
}

/// Reconciles whenever a CRD changes in the store, until the process ends.
pub fn spawn_watch(api: Api) {
    tokio::spawn(async move {
        let crds_kind = registry::crds();
        let prefix = api.collection(crds_kind, None);
        let end = prefix_end(prefix.as_bytes());
        loop {
            if let Err(e) = watch_once(&api, prefix.as_bytes(), &end).await {
                warn!("CRD watch: {e}; starting again");
            }
            tokio::time::sleep(RETRY).await;
        }
    });
}

async fn watch_once(api: &Api, start: &[u8], end: &[u8]) -> Result<(), ApiError> {
    let revision = reconcile(api).await?;
    let mut events = api.store.watch(start, end, revision + 1).await?;
    while let Some(batch) = events.next().await {
        batch?;
        reconcile(api).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(names: Value) -> Value {
        json!({"metadata": {"name": "a.x.io"}, "spec": {"group": "x.io", "names": names,
               "versions": [{"name": "v1", "storage": true, "served": true}]}})
    }

    #[test]
    fn accepted_names_establish_the_crd() {
        let c = crd(json!({"plural": "as", "kind": "A"}));
        let s = wanted_status(&c, None);
        assert!(condition_true(&s, "NamesAccepted") && condition_true(&s, "Established"));
        assert_eq!(s["status"]["acceptedNames"]["plural"], "as");
        assert_eq!(s["status"]["storedVersions"], json!(["v1"]));
        let conds = s["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds[0]["reason"], "NoConflicts");
        assert_eq!(conds[1]["message"], "the initial names have been accepted");
        // Unchanged conditions keep their time: a second pass changes nothing.
        let mut old = s.clone();
        for c in old["status"]["conditions"].as_array_mut().unwrap() {
            c["lastTransitionTime"] = json!("2020-01-01T00:00:00Z");
        }
        assert_eq!(wanted_status(&old, None), old);
        // A condition that changes gets a new time.
        let conflicted = wanted_status(&old, Some("as"));
        assert_ne!(
            conflicted["status"]["conditions"][0]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
    }

    #[test]
    fn a_taken_name_is_a_conflict_and_not_established() {
        let c = crd(json!({"plural": "as", "kind": "A"}));
        let s = wanted_status(&c, Some("as"));
        assert!(!condition_true(&s, "NamesAccepted") && !condition_true(&s, "Established"));
        let cond = &s["status"]["conditions"][0];
        assert_eq!(
            (cond["reason"].as_str(), cond["message"].as_str()),
            (Some("NameConflict"), Some("\"as\" is already in use"))
        );
    }

    #[test]
    fn deletion_adds_the_cleanup_finalizer_and_terminating() {
        let m = mark_deleted(&crd(json!({"plural": "as", "kind": "A"})));
        assert!(object::is_deleting(&m));
        assert_eq!(object::finalizers(&m), [CLEANUP_FINALIZER]);
        assert!(condition_true(&m, "Terminating"));
    }
}
