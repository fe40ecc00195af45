//! fieldValidation=Strict for kinds with a schema: fields the schema does not
//! declare are refused as kube-apiserver's strict decoding refuses them
//! (400, `strict decoding error: unknown field "spec.foo"`). A custom
//! resource's fields are checked against its CRD's structural schema: the
//! unknown ones are those pruning removes (which is what Ignore does with
//! them), its metadata's against ObjectMeta.
//!
//! Warn and Ignore drop such fields, as kube-apiserver's decoder does
//! ([`drop_unknown`]); Warn names each in a warning. Objects stored before
//! this server dropped them may still have some: so that such a field does
//! not make every later strict write of the object fail (or warn), a write
//! to an existing object is refused (or warned of) only for undeclared
//! fields the stored object lacks.

use serde_json::Value;

use super::{schemas, Shape};
use crate::error::ApiError;
use crate::registry::Kind;

/// The fields of `obj` that `shape` does not declare, named as
/// kube-apiserver names them: `spec.foo`, `spec.template.spec.containers[0].foo`.
pub fn unknown_fields(shape: Shape<'_>, obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(shape, obj, "", &mut out);
    out
}

fn walk(shape: Shape<'_>, v: &Value, path: &str, out: &mut Vec<String>) {
    if shape.open() {
        return;
    }
    match v {
        Value::Object(m) => {
            let Some(props) = shape.properties() else {
                // A map: each value against the value schema.
                for (k, v) in m {
                    if let Some(inner) = shape.field(k) {
                        walk(inner, v, &join(path, k), out);
                    }
                }
                return;
            };
            for (k, v) in m {
                match props.contains_key(k) {
                    true => {
                        if let Some(inner) = shape.field(k) {
                            walk(inner, v, &join(path, k), out);
                        }
                    }
                    false => out.push(join(path, k)),
                }
            }
        }
        Value::Array(items) => {
            if let Some(inner) = shape.items() {
                for (i, item) in items.iter().enumerate() {
                    walk(inner, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// The undeclared fields of `obj`, an object of `kind`.
fn undeclared(kind: &Kind, obj: &Value) -> Vec<String> {
    let Some(root) = schemas().root(kind) else {
        return Vec::new();
    };
    let Some(custom) = kind.custom else {
        return unknown_fields(root, obj);
    };
    let mut out = crate::crd::schema::unknown_fields(&custom.schema, obj);
    if let (Some(meta), Some(meta_shape)) = (obj.get("metadata"), root.field("metadata")) {
        out.extend(
            unknown_fields(meta_shape, meta)
                .into_iter()
                .map(|f| format!("metadata.{f}")),
        );
    }
    out.sort();
    out
}

/// Removes from `v` what `shape` does not declare (the built-in kinds'
/// schemas; the mirror of [`walk`]).
fn remove_unknown(shape: Shape<'_>, v: &mut Value) {
    if shape.open() {
        return;
    }
    match v {
        Value::Object(m) => {
            let props = shape.properties();
            m.retain(|k, _| props.is_none_or(|p| p.contains_key(k)));
            for (k, v) in m.iter_mut() {
                if let Some(inner) = shape.field(k) {
                    remove_unknown(inner, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(inner) = shape.items() {
                for item in items {
                    remove_unknown(inner, item);
                }
            }
        }
        _ => {}
    }
}

/// Drops the fields of `obj` that `kind`'s schema does not declare (a
/// custom resource: what its CRD's schema prunes, and its metadata's
/// unknown fields); returns those `stored` (the object it replaces) lacks,
/// for Warn's warnings.
pub fn drop_unknown(kind: &Kind, stored: Option<&Value>, obj: &mut Value) -> Vec<String> {
    let Some(root) = schemas().root(kind) else {
        return Vec::new();
    };
    let known_unknowns = stored.map(|s| undeclared(kind, s)).unwrap_or_default();
    let mut unknown = undeclared(kind, obj);
    unknown.retain(|f| !known_unknowns.contains(f));
    match kind.custom {
        None => remove_unknown(root, obj),
        Some(custom) => {
            crate::crd::schema::prune(&custom.schema, obj, true);
            if let (Some(meta), Some(shape)) = (obj.get_mut("metadata"), root.field("metadata")) {
                remove_unknown(shape, meta);
            }
        }
    }
    unknown
}

/// Refuses `obj` when it has fields `kind`'s schema does not declare and
/// `stored` (the object it replaces, if any) does not have.
pub fn strict(kind: &Kind, stored: Option<&Value>, obj: &Value) -> Result<(), ApiError> {
    let known_unknowns = stored.map(|s| undeclared(kind, s)).unwrap_or_default();
    let mut unknown = undeclared(kind, obj);
    unknown.retain(|f| !known_unknowns.contains(f));
    if unknown.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    Err(ApiError::BadRequest(format!(
        "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
        kind.kind,
        kind.version,
        kind.kind,
        list.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;
    use serde_json::json;

    /// The message of `strict`'s refusal (a 400) of `obj`.
    fn refusal(kind: &Kind, stored: Option<&Value>, obj: &Value) -> String {
        let err = strict(kind, stored, obj).unwrap_err();
        assert_eq!(err.code(), 400);
        err.to_string()
    }

    #[test]
    fn unknown_fields_are_dropped_and_named() {
        let d = find("apps", "v1", "deployments").unwrap();
        let mut obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "w", "labels": {"any": "thing"}, "bogus": 1},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "a", "image": "i", "imagePullPolcy": "Always"}]}}}});
        assert_eq!(
            drop_unknown(d, None, &mut obj),
            [
                "metadata.bogus",
                "spec.template.spec.containers[0].imagePullPolcy"
            ]
        );
        assert_eq!(
            obj,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "w", "labels": {"any": "thing"}},
                "spec": {"replicas": 1, "template": {"spec": {"containers": [
                    {"name": "a", "image": "i"}]}}}})
        );
        // Only what the stored object lacks is named.
        let stored = json!({"spec": {"old": 1}});
        let mut obj = json!({"spec": {"old": 1, "new": 2}});
        assert_eq!(drop_unknown(d, Some(&stored), &mut obj), ["spec.new"]);
        assert_eq!(obj, json!({"spec": {}}));
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let d = find("apps", "v1", "deployments").unwrap();
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "w", "labels": {"any": "thing"}, "bogus": 1},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "a", "image": "i", "imagePullPolcy": "Always"}]}}}});
        assert_eq!(
            refusal(d, None, &obj),
            "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: \
             unknown field \"metadata.bogus\", unknown field \"spec.template.spec.containers[0].imagePullPolcy\""
        );
        let mut good = obj.clone();
        good["metadata"].as_object_mut().unwrap().remove("bogus");
        good["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("imagePullPolcy");
        assert!(strict(d, None, &good).is_ok());
        // A field already stored (written under Ignore) does not fail a
        // later write; a new one does.
        let mut stored = good.clone();
        stored["metadata"]["bogus"] = json!(1);
        assert!(strict(d, Some(&stored), &stored).is_ok());
        let mut more = stored.clone();
        more["spec"]["bogus"] = json!(2);
        let err = refusal(d, Some(&stored), &more);
        assert!(
            err.ends_with("strict decoding error: unknown field \"spec.bogus\""),
            "{err}"
        );
    }

    #[test]
    fn a_custom_resources_unknown_fields_are_what_its_schema_prunes() {
        let crd = crate::crd::tests::crontab();
        let v1 = crate::crd::kinds(&crd)[0];
        let obj = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"name": "c", "labels": {"a": "b"}, "bogus": 1},
            "spec": {"cronSpec": "* * * * *", "x": 1}});
        assert_eq!(
            refusal(v1, None, &obj),
            "CronTab in version \"v1\" cannot be handled as a CronTab: strict decoding error: \
             unknown field \"metadata.bogus\", unknown field \"spec.x\""
        );
        let mut good = obj.clone();
        good["metadata"].as_object_mut().unwrap().remove("bogus");
        good["spec"].as_object_mut().unwrap().remove("x");
        assert!(strict(v1, None, &good).is_ok());
        // v1beta1 preserves unknown fields: nothing is unknown there.
        let beta = crate::crd::kinds(&crd)[1];
        let mut open = good.clone();
        open["spec"]["x"] = json!(1);
        assert!(strict(beta, None, &open).is_ok());
    }
}
