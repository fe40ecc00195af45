//! update (PUT) and its /status form, and the guarded update loop every
//! write shares (PATCH in [`super::patch`], /scale, deletion marks),
//! kube-apiserver's GuaranteedUpdate: take the object (the watch cache's
//! copy first, see [`super::current`]), compute the new one, write it with
//! Txn If(mod_revision == taken) Then(Put) Else(Range), and on a lost race
//! recompute from the state the Txn returned. Unchanged bytes write nothing. A client's write
//! also records its manager in metadata.managedFields.

use serde_json::{json, Value};

use super::current::Current;
use super::{object, require_object_body, Api, Request, Target};
use crate::error::{ApiError, Cause};
use crate::managed::{self, Operation, Ownable, Writer};
use crate::registry::{self, Kind};
use crate::schema::schemas;
use crate::store::Written;

/// Rounds of the guarded update before giving up with a Conflict.
pub(super) const MAX_TRIES: usize = 32;

/// Which part of the object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The main endpoint: everything but status (for kinds with a status
    /// subresource) and system metadata.
    Main,
    /// /status: only status.
    Status,
    /// The server's own writes (deletion marks, namespace termination): the
    /// object as the caller made it.
    System,
}

impl Scope {
    pub(super) fn of(sub: Option<&str>) -> Self {
        match sub {
            Some("status") => Scope::Status,
            _ => Scope::Main,
        }
    }
}

/// [`guaranteed_update`] of the object a request names, by its manager.
pub(super) async fn write<F>(
    api: &Api,
    t: &Target<'_>,
    name: &str,
    scope: Scope,
    dry_run: bool,
    writer: &Writer,
    mutate: F,
) -> Result<Value, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    let (kind, ns) = (t.kind, t.namespace);
    guaranteed_update(api, kind, ns, name, scope, dry_run, Some(writer), mutate).await
}

/// What a write through `scope` can own in metadata.managedFields.
pub(super) fn ownable(kind: &Kind, scope: Scope) -> Ownable {
    Ownable {
        status_subresource: kind.status,
        through_status: scope == Scope::Status,
    }
}

/// The guarded update loop. `mutate` gets the current object (with its
/// resourceVersion; first the watch cache's copy, see [`Current`]) and
/// returns the wanted one; it refuses a stale resourceVersion itself. An Update `writer` (none for the server's own
/// writes) is recorded in managedFields
/// here (an Apply's `mutate` records itself). Returns the object as written
/// (or as it was when nothing changed); when the write leaves an object
/// being deleted with no finalizers left, the key is then deleted and the
/// last state returned.
#[allow(clippy::too_many_arguments)]
pub(super) async fn guaranteed_update<F>(
    api: &Api,
    kind: &'static Kind,
    namespace: Option<&str>,
    name: &str,
    scope: Scope,
    dry_run: bool,
    writer: Option<&Writer>,
    mut mutate: F,
) -> Result<Value, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    let key = api.key(kind, namespace, name);
    let mut known = Current::cached(api, kind, &key);
    for _ in 0..MAX_TRIES {
        let current = match known.take() {
            Some(current) => current,
            None => Current::stored(api, kind, name, &key).await?,
        };
        let new = match updated(kind, scope, writer, &mut mutate, &current) {
            // A stale guess may refuse what the store's state allows.
            Err(_) if !current.authoritative => continue,
            Err(e) => return Err(e),
            Ok(new) => new,
        };
        if new == current.value || dry_run {
            if current.authoritative {
                return Ok(if dry_run { new } else { current.value });
            }
            // Nothing written checks a guess: ask the store.
            continue;
        }
        let lease = api.lease(kind).await?;
        match api
            .store
            .update(
                key.as_bytes(),
                object::encode_as(kind, &new),
                current.mod_revision,
                lease,
            )
            .await?
        {
            Written::Conflict { current } => known = Some(Current::from_kv(kind, name, current)?),
            Written::Done { revision } => {
                let mut new = new;
                object::set_resource_version(&mut new, revision);
                if deletion_complete(kind, &new) {
                    if let Written::Done { revision } =
                        api.store.delete(key.as_bytes(), revision).await?
                    {
                        object::set_resource_version(&mut new, revision);
                    }
                }
                return Ok(new);
            }
        }
    }
    Err(ApiError::stale(kind, name))
}

/// The object `mutate` wants written over `current`, with the update's
/// rules and managedFields applied and `current`'s resourceVersion.
fn updated<F>(
    kind: &'static Kind,
    scope: Scope,
    writer: Option<&Writer>,
    mutate: &mut F,
    current: &Current,
) -> Result<Value, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    let wanted = mutate(&current.value)?;
    let mut new = merge_rules(kind, scope, &current.value, wanted)?;
    if let Some(w) = writer.filter(|w| w.operation == Operation::Update) {
        managed::record_update(
            schemas().root(kind),
            ownable(kind, scope),
            w,
            &object::now(),
            &current.value,
            &mut new,
        );
    }
    object::set_resource_version(&mut new, current.mod_revision);
    Ok(new)
}

/// True when an object being deleted has nothing left to wait for: no
/// finalizers (and for a namespace, no spec.finalizers), no grace period.
pub(super) fn deletion_complete(kind: &Kind, obj: &Value) -> bool {
    let grace = obj
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let spec_finalizers = std::ptr::eq(kind, registry::namespaces())
        && obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
    object::is_deleting(obj) && object::finalizers(obj).is_empty() && grace == 0 && !spec_finalizers
}

fn immutable(kind: &Kind, name: &str, field: &str, value: &Value) -> ApiError {
    ApiError::invalid(
        kind,
        name,
        vec![Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {value}: field is immutable"),
        }],
    )
}

/// What an update may not change, kept from `current`: identity and system
/// metadata, status on the main endpoint (everything but status on /status),
/// a namespace's spec; generation bumped when the spec changed.
fn merge_rules(
    kind: &'static Kind,
    scope: Scope,
    current: &Value,
    mut new: Value,
) -> Result<Value, ApiError> {
    object::check_type(kind, &mut new)?;
    let name = object::name(current).to_string();
    if scope == Scope::System {
        return Ok(new);
    }
    if scope == Scope::Status {
        let mut out = current.clone();
        match new.get("status") {
            Some(s) => out["status"] = s.clone(),
            None => {
                if let Some(m) = out.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        crate::crd::admit(kind, &mut out)?;
        return Ok(out);
    }
    for field in ["name", "uid"] {
        let (old, now) = (
            object::meta_str(current, field),
            object::meta_str(&new, field),
        );
        if let (Some(old), Some(now)) = (old, now) {
            if !now.is_empty() && old != now {
                return Err(immutable(
                    kind,
                    &name,
                    &format!("metadata.{field}"),
                    &json!(now),
                ));
            }
        }
    }
    let deleting = object::is_deleting(current);
    if deleting {
        let old = object::finalizers(current);
        let added: Vec<String> = object::finalizers(&new)
            .into_iter()
            .filter(|f| !old.contains(f))
            .collect();
        if !added.is_empty() {
            return Err(ApiError::invalid(
                kind,
                &name,
                vec![Cause {
                    reason: "FieldValueForbidden",
                    field: "metadata.finalizers".into(),
                    message: format!(
                        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    ),
                }],
            ));
        }
    }
    let old_meta = current
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let meta = object::metadata_mut(&mut new);
    for kept in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(kept) {
            Some(v) => meta.insert(kept.into(), v.clone()),
            None => meta.remove(kept),
        };
    }
    meta.remove("selfLink");
    if kind.status || std::ptr::eq(kind, registry::namespaces()) {
        match current.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    if std::ptr::eq(kind, registry::namespaces()) {
        // spec.finalizers change only through /finalize and termination.
        match current.get("spec") {
            Some(s) => new["spec"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("spec");
                }
            }
        }
    }
    crate::crd::admit(kind, &mut new)?;
    if kind.generation && object::spec_part(kind, current) != object::spec_part(kind, &new) {
        let generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        object::metadata_mut(&mut new).insert("generation".into(), json!(generation + 1));
    }
    Ok(new)
}

/// Refuses a write based on an older resourceVersion than `current`'s.
pub(super) fn check_fresh(kind: &Kind, current: &Value, wanted: &Value) -> Result<(), ApiError> {
    let name = object::name(current);
    match (
        object::resource_version(wanted)?,
        object::resource_version(current)?,
    ) {
        (Some(w), Some(c)) if w != c => Err(ApiError::stale(kind, name)),
        _ => Ok(()),
    }
}

pub async fn put(
    api: &Api,
    t: &Target<'_>,
    name: &str,
    sub: Option<&str>,
    req: &Request,
) -> Result<Value, ApiError> {
    require_object_body(t.kind, req)?;
    let dry_run = req.query.dry_run()?;
    let mut body = object::parse_body(&req.body, req.content_type.as_deref())?;
    object::check_type(t.kind, &mut body)?;
    let in_body = object::name(&body).to_string();
    if !in_body.is_empty() && in_body != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({in_body}) does not match the name on the URL ({name})"
        )));
    }
    if let (Some(url), Some(ns)) = (t.namespace, object::meta_str(&body, "namespace")) {
        if !ns.is_empty() && ns != url {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request"
                    .into(),
            ));
        }
    }
    let kind = t.kind;
    let writer = super::patch::writer(req, kind, sub, Operation::Update)?;
    write(api, t, name, Scope::of(sub), dry_run, &writer, |current| {
        check_fresh(kind, current, &body)?;
        let mut body = body.clone();
        super::check_fields(kind, req, Some(current), &mut body)?;
        Ok(body)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "d", "uid": "u1", "generation": 3,
                            "creationTimestamp": "2024-01-01T00:00:00Z", "resourceVersion": "9"},
               "spec": {"replicas": 1}, "status": {"replicas": 1}})
    }

    /// The deployment, and a copy with `edit` made and `spec.replicas` and
    /// `status.replicas` set to `replicas`.
    fn edited(replicas: i64, edit: impl FnOnce(&mut Value)) -> (Value, Value) {
        let cur = deployment();
        let mut wanted = cur.clone();
        wanted["spec"]["replicas"] = json!(replicas);
        wanted["status"]["replicas"] = json!(replicas);
        edit(&mut wanted);
        (cur, wanted)
    }

    #[test]
    fn the_main_endpoint_keeps_status_and_system_fields_and_bumps_generation() {
        let d = find("apps", "v1", "deployments").unwrap();
        let (cur, wanted) = edited(3, |w| {
            w["status"]["replicas"] = json!(7);
            w["metadata"]["creationTimestamp"] = json!("2030-01-01T00:00:00Z");
        });
        let new = merge_rules(d, Scope::Main, &cur, wanted).unwrap();
        assert_eq!(new["spec"]["replicas"], 3);
        assert_eq!(new["status"]["replicas"], 1);
        assert_eq!(new["metadata"]["generation"], 4);
        assert_eq!(new["metadata"]["creationTimestamp"], "2024-01-01T00:00:00Z");
        // Metadata-only changes leave the generation alone.
        let mut labelled = cur.clone();
        labelled["metadata"]["labels"] = json!({"a": "b"});
        let new = merge_rules(d, Scope::Main, &cur, labelled).unwrap();
        assert_eq!(new["metadata"]["generation"], 3);
    }

    #[test]
    fn the_status_endpoint_changes_only_status() {
        let d = find("apps", "v1", "deployments").unwrap();
        let (cur, wanted) = edited(5, |_| {});
        let new = merge_rules(d, Scope::Status, &cur, wanted).unwrap();
        assert_eq!(
            (
                new["spec"]["replicas"].as_i64(),
                new["status"]["replicas"].as_i64()
            ),
            (Some(1), Some(5))
        );
    }

    #[test]
    fn identity_is_immutable_and_deleting_objects_gain_no_finalizers() {
        let d = find("apps", "v1", "deployments").unwrap();
        let cur = deployment();
        let refused = |cur: &Value, wanted: Value| {
            merge_rules(d, Scope::Main, cur, wanted).unwrap_err().code()
        };
        let mut renamed = cur.clone();
        renamed["metadata"]["name"] = json!("other");
        assert_eq!(refused(&cur, renamed), 422);
        let mut deleting = cur.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        deleting["metadata"]["finalizers"] = json!(["a"]);
        let mut more = deleting.clone();
        more["metadata"]["finalizers"] = json!(["a", "b"]);
        assert_eq!(refused(&deleting, more), 422);
        let mut fewer = deleting.clone();
        fewer["metadata"]["finalizers"] = json!([]);
        let new = merge_rules(d, Scope::Main, &deleting, fewer).unwrap();
        assert!(deletion_complete(d, &new));
        assert!(!deletion_complete(d, &deleting));
    }

    #[test]
    fn a_stale_resource_version_is_refused() {
        let cm = find("", "v1", "configmaps").unwrap();
        let cur = json!({"metadata": {"name": "c", "resourceVersion": "9"}});
        let stale = json!({"metadata": {"name": "c", "resourceVersion": "8"}});
        assert_eq!(check_fresh(cm, &cur, &stale).unwrap_err().code(), 409);
        let unconditional = json!({"metadata": {"name": "c"}});
        assert!(check_fresh(cm, &cur, &unconditional).is_ok());
    }
}
