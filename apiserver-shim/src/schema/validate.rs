//! fieldValidation=Strict for kinds with a schema: fields the schema does not
//! declare are refused as kube-apiserver's strict decoding refuses them
//! (400, `strict decoding error: unknown field "spec.foo"`).

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

/// Refuses `obj` when it has fields `kind`'s schema does not declare.
pub fn strict(kind: &Kind, obj: &Value) -> Result<(), ApiError> {
    let Some(root) = schemas().root(kind) else {
        return Ok(());
    };
    let unknown = unknown_fields(root, obj);
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

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let d = find("apps", "v1", "deployments").unwrap();
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "w", "labels": {"any": "thing"}, "bogus": 1},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "a", "image": "i", "imagePullPolcy": "Always"}]}}}});
        let err = strict(d, &obj).unwrap_err();
        assert_eq!(err.code(), 400);
        assert_eq!(
            err.to_string(),
            "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: \
             unknown field \"metadata.bogus\", unknown field \"spec.template.spec.containers[0].imagePullPolcy\""
        );
        let mut good = obj.clone();
        good["metadata"].as_object_mut().unwrap().remove("bogus");
        good["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("imagePullPolcy");
        assert!(strict(d, &good).is_ok());
    }
}
