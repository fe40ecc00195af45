//! The garbage collector's part of a deletion (reference:
//! kubernetes-apiserver.md §10), which kube-controller-manager carries out
//! next to kube-apiserver and the shim carries out itself, since it runs no
//! controllers. A DELETE's propagationPolicy:
//!
//! - Background: the owner goes now; then its dependents (the objects whose
//!   metadata.ownerReferences name its uid) are deleted, and theirs in
//!   turn. A dependent with other owners only loses the reference (its
//!   other owners are taken to exist). A DELETE naming no policy is
//!   Background for the owner, but its dependents are not looked for
//!   (`DeleteOptions::names_a_policy`): without the controller's in-memory
//!   graph of owners, each look is a scan of the namespace in every kind.
//! - Foreground: the owner gets deletionTimestamp and the
//!   `foregroundDeletion` finalizer (by `delete::mark`); its dependents are
//!   deleted the same way, depth first; once none with blockOwnerDeletion is
//!   left, the finalizer is removed and the owner goes.
//! - Orphan (or orphanDependents=true): the owner gets the `orphan`
//!   finalizer; the references to it are removed from its dependents, then
//!   the finalizer, and the owner goes.
//!
//! The work runs in a task after the DELETE is answered, as the controller
//! would; a DELETE of an owner still carrying one of these finalizers (a
//! server restarted meanwhile) starts it again. Every step is a guarded
//! update or delete, so running it twice does no harm.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::delete::{delete_object, DeleteOptions};
use super::object;
use super::update::{guaranteed_update, Scope};
use super::Api;
use crate::error::ApiError;
use crate::registry::Kind;
use crate::store::prefix_end;

pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

/// How long a foreground deletion waits for blocking dependents that
/// another finalizer (or a pod's grace period) holds; after that the owner
/// keeps its finalizer until a new DELETE starts the wait again.
const BLOCKING_WAIT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Background,
    Foreground,
    Orphan,
}

impl Policy {
    /// The finalizer that holds an owner while its dependents are handled.
    pub fn finalizer(self) -> Option<&'static str> {
        match self {
            Policy::Background => None,
            Policy::Foreground => Some(FOREGROUND),
            Policy::Orphan => Some(ORPHAN),
        }
    }
}

/// An object naming the owner among its metadata.ownerReferences.
struct Dependent {
    kind: &'static Kind,
    namespace: Option<String>,
    name: String,
    /// Its reference to the owner has blockOwnerDeletion: true.
    blocks: bool,
    /// It names other owners too.
    other_owners: bool,
}

/// Starts what a DELETE of `owner` (its state after the delete: `gone` or
/// marked) leaves for the garbage collector.
pub fn start(api: &Api, kind: &'static Kind, owner: &Value, gone: bool, policy: Policy) {
    let held_by = |f: &str| object::finalizers(owner).iter().any(|x| x == f);
    let run = match policy {
        Policy::Background => gone,
        Policy::Foreground => !gone && held_by(FOREGROUND),
        Policy::Orphan => !gone && held_by(ORPHAN),
    };
    if !run || object::meta_str(owner, "uid").is_none() {
        return;
    }
    let (api, owner) = (api.clone(), owner.clone());
    tokio::spawn(async move {
        let name = object::name(&owner).to_string();
        if let Err(e) = collect(api, kind, owner, policy).await {
            tracing::warn!(
                "garbage collection after deleting {} {name}: {e}",
                kind.qualified_resource()
            );
        }
    });
}

type Work = Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send>>;

/// The work for one owner (boxed: foreground and background recurse).
fn collect(api: Api, kind: &'static Kind, owner: Value, policy: Policy) -> Work {
    Box::pin(async move {
        let uid = object::meta_str(&owner, "uid").unwrap_or("").to_string();
        let namespace = object::meta_str(&owner, "namespace").map(String::from);
        let name = object::name(&owner).to_string();
        for dep in dependents(&api, kind, &owner).await? {
            if policy == Policy::Orphan || dep.other_owners {
                remove_owner(&api, &dep, &uid).await?;
                continue;
            }
            let opts = DeleteOptions::with_policy(policy);
            let ns = dep.namespace.as_deref();
            match delete_object(&api, dep.kind, ns, &dep.name, &opts).await {
                Ok((obj, gone)) => {
                    let next = match (policy, gone) {
                        (Policy::Background, true) => true,
                        (Policy::Foreground, false) => {
                            object::finalizers(&obj).iter().any(|f| f == FOREGROUND)
                        }
                        _ => false,
                    };
                    if next {
                        collect(api.clone(), dep.kind, obj, policy).await?;
                    }
                }
                Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let Some(finalizer) = policy.finalizer() else {
            return Ok(());
        };
        if policy == Policy::Foreground {
            let deadline = Instant::now() + BLOCKING_WAIT;
            while dependents(&api, kind, &owner)
                .await?
                .iter()
                .any(|d| d.blocks)
            {
                if Instant::now() > deadline {
                    return Err(ApiError::Internal(format!(
                        "dependents with blockOwnerDeletion still exist after {BLOCKING_WAIT:?}"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        remove_finalizer(&api, kind, namespace.as_deref(), &name, &uid, finalizer).await
    })
}

fn owner_uids(obj: &Value) -> Vec<(String, bool)> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| {
                    let uid = r.get("uid")?.as_str()?.to_string();
                    let blocks = r.get("blockOwnerDeletion") == Some(&Value::Bool(true));
                    Some((uid, blocks))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The objects that name `owner` as an owner: in its namespace for a
/// namespaced owner (dependents live beside their owner), anywhere for a
/// cluster-scoped one.
async fn dependents(
    api: &Api,
    owner_kind: &Kind,
    owner: &Value,
) -> Result<Vec<Dependent>, ApiError> {
    let uid = object::meta_str(owner, "uid").unwrap_or("");
    let namespace = object::meta_str(owner, "namespace").filter(|_| owner_kind.namespaced);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for kind in api.registry().kinds() {
        if owner_kind.namespaced && !kind.namespaced {
            continue;
        }
        let prefix = api.collection(kind, namespace);
        let page = api
            .store
            .list(prefix.as_bytes(), &prefix_end(prefix.as_bytes()), 0, 0)
            .await?;
        for kv in &page.kvs {
            // The versions of a custom resource share their keys.
            if !seen.insert(kv.key.clone()) {
                continue;
            }
            let Ok(obj) = object::decode_as(kind, kv) else {
                continue;
            };
            let owners = owner_uids(&obj);
            let Some((_, blocks)) = owners.iter().find(|(u, _)| u == uid) else {
                continue;
            };
            out.push(Dependent {
                kind,
                namespace: object::meta_str(&obj, "namespace").map(String::from),
                name: object::name(&obj).to_string(),
                blocks: *blocks,
                other_owners: owners.iter().any(|(u, _)| u != uid),
            });
        }
    }
    Ok(out)
}

/// Drops the reference to `uid` from a dependent's ownerReferences.
async fn remove_owner(api: &Api, dep: &Dependent, uid: &str) -> Result<(), ApiError> {
    let ns = dep.namespace.as_deref();
    let r = guaranteed_update(
        api,
        dep.kind,
        ns,
        &dep.name,
        Scope::System,
        false,
        None,
        |cur| {
            let mut new = cur.clone();
            let meta = object::metadata_mut(&mut new);
            if let Some(Value::Array(refs)) = meta.get_mut("ownerReferences") {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
                if refs.is_empty() {
                    meta.remove("ownerReferences");
                }
            }
            Ok(new)
        },
    )
    .await;
    match r {
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes `finalizer` from the owner (still the one with `uid`), which
/// deletes it when it was the last.
async fn remove_finalizer(
    api: &Api,
    kind: &'static Kind,
    namespace: Option<&str>,
    name: &str,
    uid: &str,
    finalizer: &str,
) -> Result<(), ApiError> {
    let r = guaranteed_update(
        api,
        kind,
        namespace,
        name,
        Scope::System,
        false,
        None,
        |cur| {
            let mut new = cur.clone();
            if object::meta_str(cur, "uid") != Some(uid) {
                // Deleted and created again meanwhile: not ours to finish.
                return Ok(new);
            }
            let meta = object::metadata_mut(&mut new);
            if let Some(Value::Array(fs)) = meta.get_mut("finalizers") {
                fs.retain(|f| f.as_str() != Some(finalizer));
                if fs.is_empty() {
                    meta.remove("finalizers");
                }
            }
            Ok(new)
        },
    )
    .await;
    match r {
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
