//! The /scale subresource of deployments, replica sets, stateful sets and
//! custom resources that declare one: an autoscaling/v1 Scale view of the
//! spec and status replicas and the selector (what `kubectl scale` and
//! autoscalers read and write). Built-in kinds keep them at spec.replicas,
//! status.replicas and spec.selector (a LabelSelector); a CRD names its own
//! paths (the selector there is already a string). A write changes only the
//! spec replicas, through the guarded update.

use serde_json::{json, Value};

use super::patch::{self, Patch};
use super::update::{self, check_fresh, Scope};
use super::{object, read, require_object_body, Api, Request, Target};
use crate::crd::pointer;
use crate::error::{ApiError, Cause};
use crate::managed::Operation;
use crate::registry::Kind;

/// Where `kind` keeps what a Scale shows, as JSON pointers.
struct Paths {
    spec_replicas: String,
    status_replicas: String,
    /// The selector string (custom resources).
    selector_string: Option<String>,
    /// The LabelSelector object (built-in kinds).
    selector_object: Option<&'static str>,
}

fn paths(kind: &Kind) -> Paths {
    match kind.custom.and_then(|c| c.scale.as_ref()) {
        Some(s) => Paths {
            spec_replicas: pointer(&s.spec_replicas),
            status_replicas: pointer(&s.status_replicas),
            selector_string: s.label_selector.as_deref().map(pointer),
            selector_object: None,
        },
        None => Paths {
            spec_replicas: "/spec/replicas".into(),
            status_replicas: "/status/replicas".into(),
            selector_string: None,
            selector_object: Some("/spec/selector"),
        },
    }
}

/// Sets the value at JSON pointer `at`, making the objects on the way.
fn set_at(obj: &mut Value, at: &str, value: Value) {
    let mut cur = obj;
    for part in at.split('/').skip(1) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = &mut cur[part.as_str()];
    }
    *cur = value;
}

/// The Scale of `obj`.
fn scale_of(kind: &Kind, obj: &Value) -> Value {
    let p = paths(kind);
    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut m = json!({});
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(f) {
            m[f] = v.clone();
        }
    }
    // Built-in kinds default replicas to 1; a custom resource has what it says.
    let unset = if kind.custom.is_some() { 0 } else { 1 };
    let replicas = obj
        .pointer(&p.spec_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(unset);
    let current = obj
        .pointer(&p.status_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut status = json!({"replicas": current});
    let selector = match (&p.selector_string, p.selector_object) {
        (Some(at), _) => obj.pointer(at).and_then(Value::as_str).map(String::from),
        (None, Some(at)) => obj.pointer(at).map(selector_string),
        (None, None) => None,
    };
    if let Some(sel) = selector {
        status["selector"] = json!(sel);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": m,
        "spec": {"replicas": replicas},
        "status": status,
    })
}

/// A LabelSelector as the selector string Scale carries.
fn selector_string(sel: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(labels) = sel.get("matchLabels").and_then(Value::as_object) {
        let mut kv: Vec<_> = labels.iter().collect();
        kv.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in kv {
            parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match e.get("operator").and_then(Value::as_str) {
            Some("In") => parts.push(format!("{key} in ({})", values.join(","))),
            Some("NotIn") => parts.push(format!("{key} notin ({})", values.join(","))),
            Some("Exists") => parts.push(key.to_string()),
            Some("DoesNotExist") => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

pub async fn get(api: &Api, t: &Target<'_>, name: &str) -> Result<Value, ApiError> {
    Ok(scale_of(t.kind, &read::get(api, t, name).await?))
}

/// spec.replicas of a Scale a client sent, checked.
fn replicas(name: &str, scale: &Value) -> Result<i64, ApiError> {
    // kube-apiserver validates the Scale itself: the error names it.
    let invalid = |v: &Value, why: &str| ApiError::Invalid {
        group: "autoscaling",
        kind: "Scale.autoscaling".into(),
        name: name.to_string(),
        causes: vec![Cause {
            reason: "FieldValueInvalid",
            field: "spec.replicas".into(),
            message: format!("Invalid value: {v}: {why}"),
        }],
    };
    let v = scale.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
    match v.as_i64() {
        Some(n) if n >= 0 && n <= i32::MAX as i64 => Ok(n),
        Some(_) => Err(invalid(&v, "must be greater than or equal to 0")),
        None => Err(invalid(&v, "must be an integer")),
    }
}

/// PUT or PATCH of /scale.
pub async fn write(
    api: &Api,
    t: &Target<'_>,
    name: &str,
    req: &Request,
) -> Result<Value, ApiError> {
    let dry_run = req.query.dry_run()?;
    let change: Change = if req.method == hyper::Method::PUT {
        require_object_body(t.kind, req)?;
        Change::Replace(object::parse_body(&req.body, req.content_type.as_deref())?)
    } else {
        // Scale is a built-in type: strategic merge patch applies (it has
        // no lists, so it merges as a merge patch does), except on custom
        // resources, whose handler takes no strategic patches at all.
        Change::Patch(patch::parse(req, t.kind.custom.is_none(), false)?)
    };
    let kind = t.kind;
    let writer = patch::writer(req, kind, Some("scale"), Operation::Update)?;
    let obj = update::write(api, t, name, Scope::Main, dry_run, &writer, |current| {
        let before = scale_of(kind, current);
        let wanted = match &change {
            Change::Replace(s) => s.clone(),
            Change::Patch(p) => p.apply(&before, None)?,
        };
        if let Some(k) = wanted.get("kind").and_then(Value::as_str) {
            if k != "Scale" {
                return Err(ApiError::BadRequest(format!(
                    "the kind in the data ({k}) does not match the expected kind (Scale)"
                )));
            }
        }
        check_fresh(kind, &before, &wanted)?;
        let n = replicas(name, &wanted)?;
        let mut next = current.clone();
        set_at(&mut next, &paths(kind).spec_replicas, json!(n));
        Ok(next)
    })
    .await?;
    Ok(scale_of(kind, &obj))
}

enum Change {
    Replace(Value),
    Patch(Patch),
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::registry::find;

    #[test]
    fn a_deployment_as_a_scale() {
        let deployments = find("apps", "v1", "deployments").unwrap();
        let d = json!({"metadata": {"name": "web", "namespace": "d", "resourceVersion": "5", "labels": {"x": "y"}},
                       "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "a": "b"},
                                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]}},
                       "status": {"replicas": 2}});
        let s = scale_of(deployments, &d);
        assert_eq!(s["apiVersion"], "autoscaling/v1");
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "a=b,app=web,tier in (fe,be)");
        assert_eq!(s["metadata"]["resourceVersion"], "5");
        assert!(s["metadata"].get("labels").is_none());
    }

    #[test]
    fn custom_resources_scale_at_their_own_paths() {
        let crd = json!({"spec": {"group": "x.example.com", "scope": "Namespaced",
            "names": {"plural": "dbs", "kind": "Db"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"scale": {"specReplicasPath": ".spec.size",
                    "statusReplicasPath": ".status.ready",
                    "labelSelectorPath": ".status.selector"}}}]}});
        let kind = crate::crd::kinds(&crd)[0];
        let db = json!({"metadata": {"name": "a"}, "spec": {"size": 3},
                        "status": {"ready": 2, "selector": "app=db"}});
        let s = scale_of(kind, &db);
        assert_eq!(
            (
                &s["spec"]["replicas"],
                &s["status"]["replicas"],
                &s["status"]["selector"]
            ),
            (&json!(3), &json!(2), &json!("app=db"))
        );
        let mut empty = json!({"metadata": {"name": "b"}});
        assert_eq!(scale_of(kind, &empty)["spec"]["replicas"], 0);
        set_at(&mut empty, &paths(kind).spec_replicas, json!(5));
        assert_eq!(empty["spec"]["size"], 5);
    }

    #[test]
    fn negative_or_non_integer_replicas_are_invalid() {
        assert_eq!(
            replicas("web", &json!({"spec": {"replicas": 4}})).unwrap(),
            4
        );
        let e = replicas("web", &json!({"spec": {"replicas": -1}})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Scale.autoscaling \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            replicas("web", &json!({"spec": {"replicas": "x"}}))
                .unwrap_err()
                .code(),
            422
        );
    }
}
