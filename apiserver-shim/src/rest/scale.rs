//! The /scale subresource of deployments, replica sets and stateful sets:
//! an autoscaling/v1 Scale view of spec.replicas, status.replicas and the
//! selector (what `kubectl scale` and autoscalers read and write). A write
//! changes only spec.replicas, through the guarded update.

use serde_json::{json, Value};

use super::patch::{self, Patch};
use super::update::{self, check_fresh, Scope};
use super::{object, read, require_json, Api, Request, Target};
use crate::error::{ApiError, Cause};
use crate::managed::Operation;

/// The Scale of `obj`.
fn scale_of(obj: &Value) -> Value {
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
    let replicas = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let current = obj
        .pointer("/status/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut status = json!({"replicas": current});
    if let Some(sel) = obj.pointer("/spec/selector").map(selector_string) {
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
    Ok(scale_of(&read::get(api, t, name).await?))
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
        require_json(req)?;
        Change::Replace(object::parse_body(&req.body)?)
    } else {
        // Scale is a built-in type: strategic merge patch applies (it has
        // no lists, so it merges as a merge patch does).
        Change::Patch(patch::parse(req, true, false)?)
    };
    let kind = t.kind;
    let writer = patch::writer(req, kind, Some("scale"), Operation::Update)?;
    let obj = update::write(api, t, name, Scope::Main, dry_run, &writer, |current| {
        let before = scale_of(current);
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
        if !next.get("spec").is_some_and(Value::is_object) {
            next["spec"] = json!({});
        }
        next["spec"]["replicas"] = json!(n);
        Ok(next)
    })
    .await?;
    Ok(scale_of(&obj))
}

enum Change {
    Replace(Value),
    Patch(Patch),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_as_a_scale() {
        let d = json!({"metadata": {"name": "web", "namespace": "d", "resourceVersion": "5", "labels": {"x": "y"}},
                       "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "a": "b"},
                                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]}},
                       "status": {"replicas": 2}});
        let s = scale_of(&d);
        assert_eq!(s["apiVersion"], "autoscaling/v1");
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "a=b,app=web,tier in (fe,be)");
        assert_eq!(s["metadata"]["resourceVersion"], "5");
        assert!(s["metadata"].get("labels").is_none());
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
