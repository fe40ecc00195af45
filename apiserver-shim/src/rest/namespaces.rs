//! Namespaces' life cycle, which kube-apiserver leaves to controllers this
//! server does not have: the default namespaces exist from the start, and a
//! deleted namespace is emptied here (kube-controller-manager's namespace
//! controller), then finalized and removed from the store.

use std::time::Duration;

use serde_json::{json, Value};
use tracing::{info, warn};

use super::create::prepare;
use super::delete::{delete_object, DeleteOptions};
use super::update::{guaranteed_update, Scope};
use super::{object, Api, Target};
use crate::error::ApiError;
use crate::registry;
use crate::store::{prefix_end, Written};

/// kube-apiserver's system namespaces.
pub const DEFAULT_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// How long termination waits before looking again at what is left (objects
/// held by finalizers).
const RETRY: Duration = Duration::from_secs(1);

/// Creates the default namespaces that do not exist, and resumes the
/// termination of namespaces that were being deleted when the server stopped.
pub async fn bootstrap(api: &Api) -> Result<(), ApiError> {
    let ns_kind = registry::namespaces();
    let target = Target {
        kind: ns_kind,
        namespace: None,
        name: None,
    };
    for name in DEFAULT_NAMESPACES {
        let mut obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        prepare(&target, &mut obj)?;
        let key = api.key(ns_kind, None, name);
        if let Written::Done { .. } = api
            .store
            .create(key.as_bytes(), object::encode(&obj), 0)
            .await?
        {
            info!(namespace = name, "created");
        }
    }
    let prefix = api.collection(ns_kind, None);
    let page = api
        .store
        .list(prefix.as_bytes(), &prefix_end(prefix.as_bytes()), 0, 0)
        .await?;
    for kv in &page.kvs {
        let ns = object::decode(kv)?;
        if object::is_deleting(&ns) {
            spawn_termination(api.clone(), object::name(&ns).to_string());
        }
    }
    Ok(())
}

/// Empties namespace `ns` in the background, then removes it.
pub fn spawn_termination(api: Api, ns: String) {
    tokio::spawn(async move {
        loop {
            match terminate_once(&api, &ns).await {
                Ok(true) => {
                    info!(namespace = %ns, "namespace deleted");
                    return;
                }
                Ok(false) => {}
                Err(ApiError::NotFound { .. }) => return,
                Err(e) => warn!(namespace = %ns, "namespace termination: {e}"),
            }
            tokio::time::sleep(RETRY).await;
        }
    });
}

/// One round: deletes every object in `ns`; once none is left, drops the
/// "kubernetes" finalizer, which deletes the namespace. True when it is gone.
async fn terminate_once(api: &Api, ns: &str) -> Result<bool, ApiError> {
    let mut left = 0usize;
    // Every namespaced kind, custom resources included; the versions of one
    // custom resource share their keys, so each storage prefix is read once.
    let mut seen: Vec<&str> = Vec::new();
    for kind in api.registry().kinds().into_iter().filter(|k| k.namespaced) {
        if seen.contains(&kind.storage_segment()) {
            continue;
        }
        seen.push(kind.storage_segment());
        let prefix = api.collection(kind, Some(ns));
        let page = api
            .store
            .list(prefix.as_bytes(), &prefix_end(prefix.as_bytes()), 0, 0)
            .await?;
        for kv in &page.kvs {
            let name = String::from_utf8_lossy(&kv.key[prefix.len()..]).to_string();
            match delete_object(api, kind, Some(ns), &name, &DeleteOptions::immediate()).await {
                Ok((_, true)) | Err(ApiError::NotFound { .. }) => {}
                Ok((_, false)) => left += 1,
                Err(e) => return Err(e),
            }
        }
    }
    if left > 0 {
        return Ok(false);
    }
    let ns_kind = registry::namespaces();
    guaranteed_update(api, ns_kind, None, ns, Scope::System, false, None, |cur| {
        let mut next = cur.clone();
        if let Some(f) = next
            .pointer_mut("/spec/finalizers")
            .and_then(Value::as_array_mut)
        {
            f.retain(|v| v != "kubernetes");
        }
        Ok(next)
    })
    .await?;
    // Gone unless other finalizers still hold it.
    let key = api.key(ns_kind, None, ns);
    let (kv, _) = api.store.get(key.as_bytes()).await?;
    Ok(kv.is_none())
}
