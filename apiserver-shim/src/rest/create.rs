//! create (POST): kube-apiserver's BeforeCreate rules, then
//! Txn If(mod_revision == 0) Then(Put).

use serde_json::{json, Value};

use super::{object, require_object_body, Api, Request, Target};
use crate::error::{ApiError, Cause};
use crate::managed::{self, Operation};
use crate::names;
use crate::registry::{self, Kind, StatusOnCreate};
use crate::schema::schemas;
use crate::store::Written;

pub async fn create(api: &Api, t: &Target<'_>, req: &Request) -> Result<Value, ApiError> {
    require_object_body(t.kind, req)?;
    let dry_run = req.query.dry_run()?;
    let mut obj = object::parse_body(&req.body, req.content_type.as_deref())?;
    object::check_type(t.kind, &mut obj)?;
    super::check_fields(t.kind, req, None, &mut obj)?;
    let writer = super::patch::writer(req, t.kind, None, Operation::Update)?;
    managed::record_update(
        schemas().root(t.kind),
        super::update::ownable(t.kind, super::update::Scope::Main),
        &writer,
        &object::now(),
        &Value::Null,
        &mut obj,
    );
    insert(api, t, obj, dry_run).await
}

/// Creates `obj` (create, and server-side apply of a missing object):
/// BeforeCreate's rules, the namespace check, then the guarded put.
pub(super) async fn insert(
    api: &Api,
    t: &Target<'_>,
    mut obj: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    prepare(t, &mut obj)?;
    crate::crd::admit(t.kind, &mut obj)?;
    let name = object::name(&obj).to_string();
    if let Some(ns) = t.namespace {
        namespace_accepts(api, t.kind, ns, &name).await?;
    }
    let key = api.key(t.kind, t.namespace, &name);
    if dry_run {
        return match api.store.get(key.as_bytes()).await? {
            (Some(_), _) => Err(ApiError::already_exists(t.kind, &name)),
            (None, _) => Ok(obj),
        };
    }
    let lease = api.lease(t.kind).await?;
    match api
        .store
        .create(key.as_bytes(), object::encode_as(t.kind, &obj), lease)
        .await?
    {
        Written::Done { revision } => {
            object::set_resource_version(&mut obj, revision);
            Ok(obj)
        }
        Written::Conflict { .. } => Err(already_exists(api, t.kind, &key, &name).await),
    }
}

/// AlreadyExists, prefixed when the name is still being deleted.
async fn already_exists(api: &Api, kind: &Kind, key: &str, name: &str) -> ApiError {
    let mut e = ApiError::already_exists(kind, name);
    if let Ok((Some(kv), _)) = api.store.get(key.as_bytes()).await {
        if object::decode(&kv).is_ok_and(|o| object::is_deleting(&o)) {
            if let ApiError::AlreadyExists { prefix, .. } = &mut e {
                *prefix = "object is being deleted: ";
            }
        }
    }
    e
}

/// The object's namespace exists and is not terminating.
async fn namespace_accepts(api: &Api, kind: &Kind, ns: &str, name: &str) -> Result<(), ApiError> {
    let namespaces = registry::namespaces();
    let key = api.key(namespaces, None, ns);
    let (kv, _) = api.store.get(key.as_bytes()).await?;
    let kv = kv.ok_or_else(|| ApiError::not_found(namespaces, ns))?;
    if object::is_deleting(&object::decode(&kv)?) {
        return Err(ApiError::Forbidden {
            group: kind.group,
            resource: kind.qualified_resource(),
            name: name.to_string(),
            why: format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        });
    }
    Ok(())
}

/// Fills in and checks what create decides: namespace, name (generateName),
/// uid, creationTimestamp, generation, status; refuses a resourceVersion.
pub(super) fn prepare(t: &Target<'_>, obj: &mut Value) -> Result<(), ApiError> {
    let kind = t.kind;
    if object::resource_version(obj)?.is_some() {
        return Err(ApiError::BadRequest(
            "resourceVersion should not be set on objects to be created".into(),
        ));
    }
    let meta = object::metadata_mut(obj);
    match (t.namespace, meta.get("namespace").and_then(Value::as_str)) {
        (Some(url), Some(body)) if !body.is_empty() && body != url => {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request"
                    .into(),
            ))
        }
        (Some(url), _) => {
            meta.insert("namespace".into(), json!(url));
        }
        (None, _) => {
            meta.remove("namespace");
        }
    }
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let generate = meta
        .get("generateName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = match (name.is_empty(), generate.is_empty()) {
        (false, _) => name,
        (true, false) => names::generate(&generate),
        (true, true) => {
            return Err(ApiError::invalid(
                kind,
                "",
                vec![Cause {
                    reason: "FieldValueRequired",
                    field: "metadata.name".into(),
                    message: "Required value: name or generateName is required".into(),
                }],
            ))
        }
    };
    let causes = names::check(kind.names, &name);
    if !causes.is_empty() {
        return Err(ApiError::invalid(kind, &name, causes));
    }
    meta.insert("name".into(), json!(name));
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(object::now()));
    for system in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(system);
    }
    if kind.generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    if std::ptr::eq(kind, registry::namespaces()) {
        // What kube-apiserver's namespace strategy and admission add.
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
    }
    match kind.status_on_create {
        StatusOnCreate::Keep => {}
        StatusOnCreate::Clear => {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        StatusOnCreate::Phase(phase) => obj["status"] = json!({"phase": phase}),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    fn target(resource: &str, group: &str, ns: Option<&'static str>) -> Target<'static> {
        Target {
            kind: find(group, "v1", resource).unwrap(),
            namespace: ns,
            name: None,
        }
    }

    #[test]
    fn sets_what_kube_apiserver_sets() {
        let t = target("deployments", "apps", Some("ns1"));
        let mut o = json!({"metadata": {"generateName": "web-"}, "spec": {"replicas": 1},
                           "status": {"replicas": 9}});
        prepare(&t, &mut o).unwrap();
        let m = &o["metadata"];
        assert!(m["name"].as_str().unwrap().starts_with("web-"));
        assert_eq!(m["namespace"], "ns1");
        assert_eq!(m["generation"], 1);
        assert_eq!(m["uid"].as_str().unwrap().len(), 36);
        assert!(m["creationTimestamp"].as_str().unwrap().ends_with('Z'));
        assert!(
            o.get("status").is_none(),
            "status is the status subresource's"
        );
    }

    #[test]
    fn namespaces_get_their_finalizer_phase_and_label() {
        let t = target("namespaces", "", None);
        let mut o = json!({"metadata": {"name": "team-a"}});
        prepare(&t, &mut o).unwrap();
        assert_eq!(o["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(o["status"]["phase"], "Active");
        assert_eq!(
            o["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team-a"
        );
        assert!(o["metadata"].get("generation").is_none());
    }

    #[test]
    fn refuses_bad_names_versions_and_namespaces() {
        let t = target("configmaps", "", Some("ns1"));
        let e = prepare(&t, &mut json!({"metadata": {"name": "Bad_Name"}})).unwrap_err();
        assert_eq!((e.code(), e.reason()), (422, "Invalid"));
        let e = prepare(&t, &mut json!({"metadata": {}})).unwrap_err();
        assert!(e.to_string().contains("name or generateName is required"));
        let e = prepare(
            &t,
            &mut json!({"metadata": {"name": "c", "resourceVersion": "5"}}),
        )
        .unwrap_err();
        assert_eq!(e.code(), 400);
        let e = prepare(
            &t,
            &mut json!({"metadata": {"name": "c", "namespace": "other"}}),
        )
        .unwrap_err();
        assert_eq!(e.code(), 400);
    }
}
