//! delete and deletecollection (reference: kubernetes-apiserver.md §10):
//! objects with finalizers get deletionTimestamp and stay until the last
//! finalizer goes; scheduled pods wait out their grace period; a namespace
//! turns Terminating and is emptied (`namespaces`); everything else is
//! deleted with Txn If(mod_revision == taken) Then(DeleteRange) Else(Range),
//! the state taken first from the watch cache's copy (`super::current`).

use serde::Deserialize;
use serde_json::{json, Value};

use super::current::Current;
use super::update::MAX_TRIES;
use super::{crds, gc, namespaces, object, read, Api, Query, Request, Target};
use crate::error::ApiError;
use crate::registry::{self, Kind};
use crate::store::Written;

/// A pod's grace period when neither the request nor the pod gives one.
const DEFAULT_GRACE_SECONDS: i64 = 30;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    uid: Option<String>,
    resource_version: Option<String>,
}

/// The parts of metav1.DeleteOptions this server acts on.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeleteOptions {
    grace_period_seconds: Option<i64>,
    preconditions: Option<Preconditions>,
    propagation_policy: Option<String>,
    orphan_dependents: Option<bool>,
    #[serde(default)]
    dry_run: Vec<String>,
}

impl DeleteOptions {
    /// From the body (a DeleteOptions object, possibly empty) and the query.
    pub(super) fn parse(body: &[u8], q: &Query) -> Result<Self, ApiError> {
        let mut o: DeleteOptions = if body.iter().all(u8::is_ascii_whitespace) {
            DeleteOptions::default()
        } else if crate::proto::is_enveloped(body) {
            // client-go's protobuf clients send DeleteOptions in protobuf.
            serde_json::from_value(crate::proto::decode_body(body)?)
                .map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?
        };
        if let Some(g) = q.int("gracePeriodSeconds")? {
            o.grace_period_seconds = Some(g);
        }
        if let Some(p) = q.get("propagationPolicy") {
            o.propagation_policy = Some(p.to_string());
        }
        if q.dry_run()? {
            o.dry_run = vec!["All".into()];
        }
        match o.propagation_policy.as_deref() {
            None | Some("Background" | "Orphan" | "Foreground") => {}
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                )))
            }
        }
        if o.orphan_dependents.is_some() && o.propagation_policy.is_some() {
            return Err(ApiError::Unprocessable(
                "DeleteOptions: Invalid value: \"\": OrphanDependents and DeletionPropagation cannot be both set".into(),
            ));
        }
        if o.dry_run.iter().any(|d| d != "All") {
            return Err(ApiError::BadRequest(
                "dryRun: Unsupported value: supported values: \"All\"".into(),
            ));
        }
        Ok(o)
    }

    /// What the garbage collector deletes dependents with.
    pub(super) fn with_policy(policy: gc::Policy) -> Self {
        let name = match policy {
            gc::Policy::Background => "Background",
            gc::Policy::Foreground => "Foreground",
            gc::Policy::Orphan => "Orphan",
        };
        DeleteOptions {
            propagation_policy: Some(name.into()),
            ..Default::default()
        }
    }

    /// The propagation policy (orphanDependents: the older spelling of
    /// Orphan and Background); Background when none is given, as for every
    /// kind served here in kube-apiserver.
    pub(super) fn policy(&self) -> gc::Policy {
        match (self.propagation_policy.as_deref(), self.orphan_dependents) {
            (Some("Orphan"), _) | (None, Some(true)) => gc::Policy::Orphan,
            (Some("Foreground"), _) => gc::Policy::Foreground,
            _ => gc::Policy::Background,
        }
    }

    /// Whether the client named a policy (kubectl always does). Only then
    /// does the shim look for dependents: finding them is a scan of the
    /// owner's namespace in every kind, which deleting objects nobody owns
    /// at a high rate (a controller's pod churn, with no policy) must not pay.
    pub(super) fn names_a_policy(&self) -> bool {
        self.propagation_policy.is_some() || self.orphan_dependents.is_some()
    }

    /// What the server's own deletions use (namespace termination): at once.
    pub(super) fn immediate() -> Self {
        DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        }
    }

    fn dry_run(&self) -> bool {
        !self.dry_run.is_empty()
    }
}

fn check_preconditions(kind: &Kind, cur: &Value, p: &Preconditions) -> Result<(), ApiError> {
    let name = object::name(cur);
    if let Some(uid) = &p.uid {
        let have = object::meta_str(cur, "uid").unwrap_or("");
        if uid != have {
            return Err(ApiError::conflict(
                kind,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                ),
            ));
        }
    }
    if let Some(rv) = &p.resource_version {
        let have = object::meta_str(cur, "resourceVersion").unwrap_or("");
        if rv != have {
            return Err(ApiError::conflict(
                kind,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {have}"
                ),
            ));
        }
    }
    Ok(())
}

/// Deletes one object, or marks it for deletion. Returns its last state and
/// whether it is gone from the store.
pub(super) async fn delete_object(
    api: &Api,
    kind: &'static Kind,
    namespace: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<(Value, bool), ApiError> {
    let key = api.key(kind, namespace, name);
    // The watch cache's copy first (see `Current`): a stale one fails the
    // Txn's compare, and what it alone decides is asked of the store again.
    let mut known = Current::cached(api, kind, &key);
    for _ in 0..MAX_TRIES {
        let current = match known.take() {
            Some(current) => current,
            None => Current::stored(api, kind, name, &key).await?,
        };
        let cur = &current.value;
        let marked = match &opts.preconditions {
            Some(p) => check_preconditions(kind, cur, p).map(|()| mark(kind, cur, opts)),
            None => Ok(mark(kind, cur, opts)),
        };
        let marked = match marked {
            Err(_) if !current.authoritative => continue,
            Err(e) => return Err(e),
            Ok(marked) => marked,
        };
        let writes = !opts.dry_run() && !matches!(marked, Some(None));
        if !writes && !current.authoritative {
            // Nothing written checks a guess: ask the store.
            continue;
        }
        let Some(marked) = marked else {
            // Nothing to wait for: delete now.
            if opts.dry_run() {
                return Ok((current.value, true));
            }
            match api
                .store
                .delete(key.as_bytes(), current.mod_revision)
                .await?
            {
                Written::Done { revision } => {
                    let mut gone = current.value;
                    object::set_resource_version(&mut gone, revision);
                    return Ok((gone, true));
                }
                Written::Conflict { current } => {
                    known = Some(Current::from_kv(kind, name, current)?);
                    continue;
                }
            }
        };
        let Some(mut marked) = marked else {
            // Already marked: unchanged.
            return Ok((current.value, false));
        };
        if opts.dry_run() {
            return Ok((marked, false));
        }
        let lease = api.lease(kind).await?;
        match api
            .store
            .update(
                key.as_bytes(),
                object::encode_as(kind, &marked),
                current.mod_revision,
                lease,
            )
            .await?
        {
            Written::Done { revision } => {
                object::set_resource_version(&mut marked, revision);
                if std::ptr::eq(kind, registry::namespaces()) {
                    namespaces::spawn_termination(api.clone(), name.to_string());
                }
                return Ok((marked, false));
            }
            Written::Conflict { current } => known = Some(Current::from_kv(kind, name, current)?),
        }
    }
    Err(ApiError::stale(kind, name))
}

/// How a DELETE changes `cur` instead of deleting it: None = delete now;
/// Some(None) = already marked, leave it; Some(Some(obj)) = write obj.
fn mark(kind: &Kind, cur: &Value, opts: &DeleteOptions) -> Option<Option<Value>> {
    let deleting = object::is_deleting(cur);
    if std::ptr::eq(kind, registry::namespaces()) {
        if deleting {
            return Some(None);
        }
        let mut m = cur.clone();
        object::metadata_mut(&mut m).insert("deletionTimestamp".into(), json!(object::now()));
        m["status"] = json!({"phase": "Terminating"});
        return Some(Some(m));
    }
    if std::ptr::eq(kind, registry::crds()) && !deleting {
        return Some(Some(crds::mark_deleted(cur)));
    }
    // Orphan and Foreground hold the object with their finalizer while its
    // dependents are handled (`gc`), as kube-apiserver does for the garbage
    // collector.
    if let Some(f) = opts.policy().finalizer() {
        if deleting {
            return Some(None);
        }
        let mut m = cur.clone();
        let meta = object::metadata_mut(&mut m);
        let mut finalizers = object::finalizers(cur);
        if !finalizers.iter().any(|x| x == f) {
            finalizers.push(f.to_string());
        }
        meta.insert("finalizers".into(), json!(finalizers));
        meta.insert("deletionTimestamp".into(), json!(object::now()));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        return Some(Some(m));
    }
    if !object::finalizers(cur).is_empty() {
        if deleting {
            return Some(None);
        }
        let mut m = cur.clone();
        let meta = object::metadata_mut(&mut m);
        meta.insert("deletionTimestamp".into(), json!(object::now()));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        return Some(Some(m));
    }
    if kind.graceful {
        let scheduled = cur
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let grace = opts
            .grace_period_seconds
            .or_else(|| {
                cur.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(DEFAULT_GRACE_SECONDS)
            .max(0);
        if scheduled && grace > 0 {
            let marked_grace = cur
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            if deleting && marked_grace.is_some_and(|g| g <= grace) {
                return Some(None);
            }
            let mut m = cur.clone();
            let meta = object::metadata_mut(&mut m);
            meta.insert(
                "deletionTimestamp".into(),
                json!(object::in_seconds(grace as u64)),
            );
            meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            return Some(Some(m));
        }
    }
    None
}

/// kube-apiserver's answer to a completed delete of most kinds.
fn success_status(kind: &Kind, obj: &Value) -> Value {
    let mut details = json!({
        "name": object::name(obj),
        "kind": kind.resource,
        "uid": object::meta_str(obj, "uid").unwrap_or(""),
    });
    if !kind.group.is_empty() {
        details["group"] = json!(kind.group);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

pub async fn delete(
    api: &Api,
    t: &Target<'_>,
    name: &str,
    req: &Request,
) -> Result<Value, ApiError> {
    let opts = DeleteOptions::parse(&req.body, &req.query)?;
    let (obj, gone) = delete_object(api, t.kind, t.namespace, name, &opts).await?;
    if !opts.dry_run() && opts.names_a_policy() {
        gc::start(api, t.kind, &obj, gone, opts.policy());
    }
    if gone && !t.kind.delete_returns_object {
        Ok(success_status(t.kind, &obj))
    } else {
        Ok(obj)
    }
}

/// DELETE on a collection: every object the selectors match; answers the
/// list of them as deleted (or marked).
pub async fn delete_collection(
    api: &Api,
    t: &Target<'_>,
    req: &Request,
) -> Result<Value, ApiError> {
    let opts = DeleteOptions::parse(&req.body, &req.query)?;
    let mut list = read::list(api, t, &req.query).await?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let ns = object::meta_str(&item, "namespace").map(String::from);
        match delete_object(api, t.kind, ns.as_deref(), object::name(&item), &opts).await {
            Ok((obj, gone)) => {
                if !opts.dry_run() && opts.names_a_policy() {
                    gc::start(api, t.kind, &obj, gone, opts.policy());
                }
                out.push(obj)
            }
            // Deleted meanwhile by someone else: nothing left to do.
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    list["items"] = json!(out);
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    fn opts(q: &str) -> Result<DeleteOptions, ApiError> {
        DeleteOptions::parse(b"", &Query::parse(Some(q)))
    }

    #[test]
    fn finalizers_and_scheduled_pods_are_marked_not_deleted() {
        let cm = find("", "v1", "configmaps").unwrap();
        let plain = json!({"metadata": {"name": "c"}});
        assert!(mark(cm, &plain, &opts("").unwrap()).is_none());
        let held = json!({"metadata": {"name": "c", "finalizers": ["x/y"]}});
        let m = mark(cm, &held, &opts("").unwrap()).unwrap().unwrap();
        assert!(object::is_deleting(&m));
        assert!(
            mark(cm, &m, &opts("").unwrap()).unwrap().is_none(),
            "marked once"
        );

        let pods = find("", "v1", "pods").unwrap();
        let unscheduled = json!({"metadata": {"name": "p"}, "spec": {}});
        assert!(mark(pods, &unscheduled, &opts("").unwrap()).is_none());
        let scheduled = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}});
        let m = mark(pods, &scheduled, &opts("").unwrap()).unwrap().unwrap();
        assert_eq!(m["metadata"]["deletionGracePeriodSeconds"], 30);
        assert!(
            mark(pods, &m, &opts("gracePeriodSeconds=0").unwrap()).is_none(),
            "grace 0 deletes"
        );
    }

    #[test]
    fn namespaces_turn_terminating() {
        let ns = registry::namespaces();
        let m = mark(ns, &json!({"metadata": {"name": "a"}}), &opts("").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(m["status"]["phase"], "Terminating");
        assert!(object::is_deleting(&m));
    }

    #[test]
    fn propagation_policies_and_preconditions() {
        assert_eq!(opts("").unwrap().policy(), gc::Policy::Background);
        assert!(!opts("").unwrap().names_a_policy());
        assert!(opts("propagationPolicy=Background")
            .unwrap()
            .names_a_policy());
        assert_eq!(
            opts("propagationPolicy=Orphan").unwrap().policy(),
            gc::Policy::Orphan
        );
        assert_eq!(
            opts("propagationPolicy=Foreground").unwrap().policy(),
            gc::Policy::Foreground
        );
        assert_eq!(opts("propagationPolicy=Later").unwrap_err().code(), 400);
        let orphan = DeleteOptions::parse(br#"{"orphanDependents":true}"#, &Query::default());
        assert_eq!(orphan.unwrap().policy(), gc::Policy::Orphan);
        let both = br#"{"orphanDependents":true,"propagationPolicy":"Foreground"}"#;
        assert_eq!(
            DeleteOptions::parse(both, &Query::default())
                .unwrap_err()
                .code(),
            422
        );
        // Orphan and Foreground hold the object with their finalizer.
        let cm = find("", "v1", "configmaps").unwrap();
        let plain = json!({"metadata": {"name": "c", "finalizers": ["x/y"]}});
        let m = mark(cm, &plain, &opts("propagationPolicy=Foreground").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            m["metadata"]["finalizers"],
            json!(["x/y", "foregroundDeletion"])
        );
        assert!(object::is_deleting(&m));
        let body = br#"{"kind":"DeleteOptions","apiVersion":"v1","preconditions":{"uid":"u2"}}"#;
        let o = DeleteOptions::parse(body, &Query::default()).unwrap();
        let cm = find("", "v1", "configmaps").unwrap();
        let cur = json!({"metadata": {"name": "c", "uid": "u1"}});
        let e = check_preconditions(cm, &cur, o.preconditions.as_ref().unwrap()).unwrap_err();
        assert_eq!(e.code(), 409);
        assert!(e
            .to_string()
            .contains("Precondition failed: UID in precondition: u2"));
    }
}
