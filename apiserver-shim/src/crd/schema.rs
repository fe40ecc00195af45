//! Structural schemas (reference: kubernetes-apiserver.md §9): pruning,
//! defaulting and validation of custom resources, and the structural check
//! of a CRD's schemas, with kube-apiserver's field paths and messages.
//!
//! Our own rather than a JSON Schema crate: Kubernetes' semantics are not
//! JSON Schema's. Unknown fields are removed, not refused;
//! `x-kubernetes-preserve-unknown-fields`, `x-kubernetes-int-or-string` and
//! `x-kubernetes-embedded-resource` change what a node accepts; `default`
//! is applied, `nullable` decides whether a null is a value; and the errors
//! must read as kube-apiserver's (`spec.replicas: Invalid value: "string":
//! spec.replicas in body must be of type integer: "string"`), field paths in
//! its `a.b[0][key]` form.
//!
//! At the root, apiVersion, kind and metadata are the server's, never
//! pruned nor checked against the schema.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use serde_json::{Map, Value};

use crate::error::Cause;

const ROOT_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

fn flag(s: &Value, name: &str) -> bool {
    s.get(name).and_then(Value::as_bool) == Some(true)
}

fn preserves(s: &Value) -> bool {
    flag(s, "x-kubernetes-preserve-unknown-fields")
}

/// Removes, in place, the fields `schema` does not declare.
pub fn prune(schema: &Value, obj: &mut Value, root: bool) {
    prune_at(schema, obj, root, "", &mut Vec::new());
}

/// The fields of `obj` that pruning would remove, as kube-apiserver's strict
/// decoding names them (`spec.x`, `spec.items[0].x`, sorted): what
/// fieldValidation=Strict refuses.
pub fn unknown_fields(schema: &Value, obj: &Value) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_at(schema, &mut obj.clone(), true, "", &mut pruned);
    pruned.sort();
    pruned
}

/// [`prune`] of the value at `path`, recording each removed field's path.
fn prune_at(schema: &Value, obj: &mut Value, root: bool, path: &str, pruned: &mut Vec<String>) {
    match obj {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let keep_unknown =
                preserves(schema) || additional.and_then(Value::as_bool) == Some(true);
            let embedded = flag(schema, "x-kubernetes-embedded-resource");
            map.retain(|k, _| {
                let kept = keep_unknown
                    || (root && ROOT_FIELDS.contains(&k.as_str()))
                    || (embedded && ROOT_FIELDS.contains(&k.as_str()))
                    || props.is_some_and(|p| p.contains_key(k))
                    || additional.is_some_and(Value::is_object);
                if !kept {
                    pruned.push(child_path(path, k));
                }
                kept
            });
            for (k, v) in map.iter_mut() {
                if root && ROOT_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let at = child_path(path, k);
                match props.and_then(|p| p.get(k)) {
                    Some(ps) => prune_at(ps, v, false, &at, pruned),
                    None => {
                        if let Some(ap) = additional.filter(|a| a.is_object()) {
                            prune_at(ap, v, false, &at, pruned);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_at(is, item, false, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

/// Applies, in place, the `default` of every absent field (and of every null
/// one that is not nullable), top-down: defaults inside a defaulted value
/// apply too.
pub fn default(schema: &Value, obj: &mut Value) {
    match obj {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, ps) in props {
                    let Some(d) = ps.get("default") else { continue };
                    let absent = match map.get(k) {
                        None => true,
                        Some(Value::Null) => !flag(ps, "nullable"),
                        Some(_) => false,
                    };
                    if absent {
                        map.insert(k.clone(), d.clone());
                    }
                }
            }
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, v) in map.iter_mut() {
                let child = schema
                    .get("properties")
                    .and_then(|p| p.get(k))
                    .or(additional);
                if let Some(cs) = child {
                    default(cs, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for item in items {
                    default(is, item);
                }
            }
        }
        _ => {}
    }
}

/// The JSON type name Kubernetes' messages use for `v`.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if is_integer(n) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Integers as Kubernetes decodes JSON: whole numbers, also written 1.0.
fn is_integer(n: &serde_json::Number) -> bool {
    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
}

fn type_ok(want: &str, v: &Value) -> bool {
    match want {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "number" => v.is_number(),
        "integer" => matches!(v, Value::Number(n) if is_integer(n)),
        _ => true,
    }
}

fn cause(reason: &'static str, field: &str, message: String) -> Cause {
    Cause {
        reason,
        field: field.to_string(),
        message,
    }
}

fn compiled(pattern: &str) -> Result<Regex, regex::Error> {
    static CACHE: OnceLock<Mutex<HashMap<String, Regex>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(r) = cache.get(pattern) {
        return Ok(r.clone());
    }
    let r = Regex::new(pattern)?;
    cache.insert(pattern.to_string(), r.clone());
    Ok(r)
}

fn number(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// Every violation of `schema` by `obj` (empty when valid).
pub fn validate(schema: &Value, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    node(schema, obj, "", true, &mut out);
    out
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn node(s: &Value, v: &Value, path: &str, root: bool, out: &mut Vec<Cause>) {
    let at = if path.is_empty() { "<root>" } else { path };
    if v.is_null() {
        if flag(s, "nullable") {
            return;
        }
        if let Some(t) = s.get("type").and_then(Value::as_str) {
            out.push(cause(
                "FieldValueTypeInvalid",
                at,
                format!("Invalid value: \"null\": {at} in body must be of type {t}: \"null\""),
            ));
        }
        return;
    }
    if flag(s, "x-kubernetes-int-or-string") {
        if !(v.is_string() || type_ok("integer", v)) {
            out.push(cause(
                "FieldValueTypeInvalid",
                at,
                format!(
                    "Invalid value: \"{t}\": {at} in body must be of type integer-or-string: \"{t}\"",
                    t = type_name(v)
                ),
            ));
            return;
        }
    } else if let Some(t) = s.get("type").and_then(Value::as_str) {
        if !type_ok(t, v) {
            out.push(cause(
                "FieldValueTypeInvalid",
                at,
                format!(
                    "Invalid value: \"{g}\": {at} in body must be of type {t}: \"{g}\"",
                    g = type_name(v)
                ),
            ));
            return;
        }
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            out.push(cause(
                "FieldValueNotSupported",
                at,
                format!(
                    "Unsupported value: {v}: supported values: {}",
                    list.join(", ")
                ),
            ));
        }
    }
    match v {
        Value::String(text) => string(s, text, v, at, out),
        Value::Number(_) => numeric(s, v, at, out),
        Value::Array(items) => array(s, items, v, path, at, out),
        Value::Object(map) => object(s, map, path, root, out),
        _ => {}
    }
    combinators(s, v, path, at, out);
}

fn string(s: &Value, text: &str, v: &Value, at: &str, out: &mut Vec<Cause>) {
    let chars = text.chars().count() as u64;
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
        if chars > max {
            out.push(cause(
                "FieldValueTooLong",
                at,
                format!("Too long: may not be more than {max} bytes"),
            ));
        }
    }
    if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
        if chars < min {
            out.push(cause(
                "FieldValueInvalid",
                at,
                format!("Invalid value: {v}: {at} in body should be at least {min} chars long"),
            ));
        }
    }
    if let Some(p) = s.get("pattern").and_then(Value::as_str) {
        // An uncompilable pattern is refused when the CRD is written.
        if compiled(p).is_ok_and(|r| !r.is_match(text)) {
            out.push(cause(
                "FieldValueInvalid",
                at,
                format!("Invalid value: {v}: {at} in body should match '{p}'"),
            ));
        }
    }
}

fn numeric(s: &Value, v: &Value, at: &str, out: &mut Vec<Cause>) {
    let Some(x) = number(v) else { return };
    if let Some(min) = s.get("minimum") {
        let exclusive = flag(s, "exclusiveMinimum");
        if number(min).is_some_and(|m| if exclusive { x <= m } else { x < m }) {
            let rel = if exclusive { "" } else { " or equal to" };
            out.push(cause(
                "FieldValueInvalid",
                at,
                format!("Invalid value: {v}: {at} in body should be greater than{rel} {min}"),
            ));
        }
    }
    if let Some(max) = s.get("maximum") {
        let exclusive = flag(s, "exclusiveMaximum");
        if number(max).is_some_and(|m| if exclusive { x >= m } else { x > m }) {
            let rel = if exclusive { "" } else { " or equal to" };
            out.push(cause(
                "FieldValueInvalid",
                at,
                format!("Invalid value: {v}: {at} in body should be less than{rel} {max}"),
            ));
        }
    }
    if let Some(m) = s.get("multipleOf") {
        if number(m).is_some_and(|m| m != 0.0 && (x / m).fract() != 0.0) {
            out.push(cause(
                "FieldValueInvalid",
                at,
                format!("Invalid value: {v}: {at} in body should be a multiple of {m}"),
            ));
        }
    }
}

fn array(s: &Value, items: &[Value], v: &Value, path: &str, at: &str, out: &mut Vec<Cause>) {
    let n = items.len() as u64;
    if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
        if n > max {
            out.push(cause(
                "FieldValueTooMany",
                at,
                format!("Too many: {n}: must have at most {max} items"),
            ));
        }
    }
    if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
        if n < min {
            out.push(cause(
                "FieldValueInvalid",
                at,
                format!("Invalid value: {v}: {at} in body should have at least {min} items"),
            ));
        }
    }
    if flag(s, "uniqueItems") {
        for (i, item) in items.iter().enumerate() {
            if items[..i].contains(item) {
                out.push(cause(
                    "FieldValueDuplicate",
                    &format!("{path}[{i}]"),
                    format!("Duplicate value: {item}"),
                ));
            }
        }
    }
    if let Some(is) = s.get("items") {
        for (i, item) in items.iter().enumerate() {
            node(is, item, &format!("{path}[{i}]"), false, out);
        }
    }
}

fn object(s: &Value, map: &Map<String, Value>, path: &str, root: bool, out: &mut Vec<Cause>) {
    for r in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let servers = root && ROOT_FIELDS.contains(&r);
        if !map.contains_key(r) && !servers {
            out.push(cause(
                "FieldValueRequired",
                &child_path(path, r),
                "Required value".into(),
            ));
        }
    }
    let props = s.get("properties").and_then(Value::as_object);
    let additional = s.get("additionalProperties").filter(|a| a.is_object());
    for (k, v) in map {
        if root && ROOT_FIELDS.contains(&k.as_str()) {
            continue;
        }
        if let Some(ps) = props.and_then(|p| p.get(k)) {
            node(ps, v, &child_path(path, k), false, out);
        } else if let Some(ap) = additional {
            node(ap, v, &format!("{path}[{k}]"), false, out);
        }
    }
}

fn combinators(s: &Value, v: &Value, path: &str, at: &str, out: &mut Vec<Cause>) {
    let failing = |sub: &Value| {
        let mut errs = Vec::new();
        node(sub, v, path, false, &mut errs);
        errs
    };
    let list = |name: &str| -> Vec<Value> {
        s.get(name)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for sub in list("allOf") {
        out.extend(failing(&sub));
    }
    let any = list("anyOf");
    if !any.is_empty() && any.iter().all(|sub| !failing(sub).is_empty()) {
        out.push(cause(
            "FieldValueInvalid",
            at,
            format!("Invalid value: {v}: {at} in body must validate at least one schema (anyOf)"),
        ));
    }
    let one = list("oneOf");
    if !one.is_empty() && one.iter().filter(|sub| failing(sub).is_empty()).count() != 1 {
        out.push(cause(
            "FieldValueInvalid",
            at,
            format!(
                "Invalid value: {v}: {at} in body must validate one and only one schema (oneOf)"
            ),
        ));
    }
    if let Some(not) = s.get("not") {
        if failing(not).is_empty() {
            out.push(cause(
                "FieldValueInvalid",
                at,
                format!("Invalid value: {v}: {at} in body must not validate the schema (not)"),
            ));
        }
    }
}

/// Why `schema` (at `path` in the CRD) is not structural, or uses a pattern
/// that does not compile. Empty when it is fine.
pub fn structural(schema: &Value, path: &str, root: bool) -> Vec<Cause> {
    let mut out = Vec::new();
    check(schema, path, root, &mut out);
    out
}

fn check(s: &Value, path: &str, root: bool, out: &mut Vec<Cause>) {
    if !s.is_object() {
        out.push(cause(
            "FieldValueInvalid",
            path,
            format!("Invalid value: {s}: must be a schema object"),
        ));
        return;
    }
    let typed = s
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    if !typed && !preserves(s) && !flag(s, "x-kubernetes-int-or-string") {
        let why = if root {
            "must not be empty at the root"
        } else {
            "must not be empty for specified object fields"
        };
        out.push(cause(
            "FieldValueRequired",
            &format!("{path}.type"),
            format!("Required value: {why}"),
        ));
    }
    if root && typed && s.get("type").and_then(Value::as_str) != Some("object") {
        out.push(cause(
            "FieldValueInvalid",
            &format!("{path}.type"),
            format!("Invalid value: {}: must be object at the root", s["type"]),
        ));
    }
    let props = s.get("properties").and_then(Value::as_object);
    if props.is_some()
        && s.get("additionalProperties")
            .is_some_and(|a| a != &Value::Bool(false))
    {
        out.push(cause(
            "FieldValueForbidden",
            &format!("{path}.additionalProperties"),
            "Forbidden: additionalProperties and properties are mutual exclusive".into(),
        ));
    }
    if let Some(p) = s.get("pattern").and_then(Value::as_str) {
        if let Err(e) = compiled(p) {
            out.push(cause(
                "FieldValueInvalid",
                &format!("{path}.pattern"),
                format!(
                    "Invalid value: {}: must be a valid regular expression, but isn't: {e}",
                    Value::from(p)
                ),
            ));
        }
    }
    for (k, ps) in props.into_iter().flatten() {
        check(ps, &format!("{path}.properties[{k}]"), false, out);
    }
    if let Some(is) = s.get("items") {
        check(is, &format!("{path}.items"), false, out);
    }
    if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
        check(ap, &format!("{path}.additionalProperties"), false, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "required": ["spec"], "properties": {
            "spec": {"type": "object", "required": ["cronSpec"], "properties": {
                "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                "image": {"type": "string", "maxLength": 10},
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                "color": {"type": "string", "enum": ["red", "green"]},
                "port": {"x-kubernetes-int-or-string": true},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                "limits": {"type": "object", "default": {}, "properties": {
                    "cpu": {"type": "string", "default": "100m"}}},
                "note": {"type": "string", "nullable": true}}},
            "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}})
    }

    fn messages(obj: &Value) -> Vec<String> {
        validate(&schema(), obj)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn unknown_fields_are_pruned_except_where_preserved() {
        let mut o = json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "x"},
            "junk": 1, "spec": {"cronSpec": "* * * * *", "bogus": true,
            "extra": {"anything": {"deep": 1}}, "labels": {"a": "b"}}});
        prune(&schema(), &mut o, true);
        assert_eq!(
            o,
            json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "x"},
            "spec": {"cronSpec": "* * * * *", "extra": {"anything": {"deep": 1}},
                     "labels": {"a": "b"}}})
        );
    }

    #[test]
    fn unknown_fields_are_the_pruned_paths() {
        let o = json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "x"},
            "junk": 1, "spec": {"cronSpec": "* * * * *", "bogus": true, "tags": ["a"],
            "extra": {"anything": 1}, "limits": {"cpu": "1", "gpu": "2"}}});
        assert_eq!(
            unknown_fields(&schema(), &o),
            ["junk", "spec.bogus", "spec.limits.gpu"]
        );
        let items = json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"ports": {"type": "array", "items": {"type": "object",
                "properties": {"port": {"type": "integer"}}}}}}}});
        let o = json!({"spec": {"ports": [{"port": 1}, {"port": 2, "name": "b"}]}});
        assert_eq!(unknown_fields(&items, &o), ["spec.ports[1].name"]);
    }

    #[test]
    fn defaults_fill_absent_fields_top_down() {
        let mut o = json!({"spec": {"cronSpec": "x", "note": null}});
        default(&schema(), &mut o);
        assert_eq!(o["spec"]["replicas"], 1);
        assert_eq!(o["spec"]["limits"], json!({"cpu": "100m"}));
        assert_eq!(o["spec"]["note"], Value::Null, "nullable nulls stay");
        let mut set = json!({"spec": {"replicas": 3}});
        default(&schema(), &mut set);
        assert_eq!(set["spec"]["replicas"], 3);
    }

    #[test]
    fn violations_read_as_kube_apiservers() {
        let bad = json!({"spec": {"cronSpec": "often", "replicas": "3", "color": "blue",
            "image": "a-very-long-image", "port": true, "labels": {"a": 1},
            "tags": ["a", "b", "c"]}});
        let m = messages(&bad);
        for want in [
            "spec.cronSpec: Invalid value: \"often\": spec.cronSpec in body should match '^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'",
            "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
            "spec.color: Unsupported value: \"blue\": supported values: \"red\", \"green\"",
            "spec.image: Too long: may not be more than 10 bytes",
            "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer-or-string: \"boolean\"",
            "spec.labels[a]: Invalid value: \"integer\": spec.labels[a] in body must be of type string: \"integer\"",
            "spec.tags: Too many: 3: must have at most 2 items",
        ] {
            assert!(m.contains(&want.to_string()), "{want}\nnot in {m:#?}");
        }
        assert_eq!(messages(&json!({})), ["spec: Required value"]);
        assert_eq!(
            messages(&json!({"spec": {}})),
            ["spec.cronSpec: Required value"]
        );
        assert_eq!(
            messages(&json!({"spec": {"cronSpec": "* * * * *", "replicas": 11}})),
            ["spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"]
        );
        assert_eq!(
            messages(&json!({"spec": {"cronSpec": "* * * * *", "replicas": -1}})),
            ["spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"]
        );
        assert!(
            messages(&json!({"spec": {"cronSpec": "*/5 * * * *", "replicas": 2.0,
            "port": "http", "note": null}}))
            .is_empty()
        );
    }

    #[test]
    fn non_structural_schemas_are_named() {
        let s = json!({"type": "object", "properties": {"spec": {"properties": {
            "a": {"type": "string", "pattern": "("}}}}});
        let causes: Vec<String> = structural(&s, "spec.versions[0].schema.openAPIV3Schema", true)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(causes.len(), 2, "{causes:?}");
        assert_eq!(causes[0], "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields");
        assert!(causes[1].starts_with("spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[a].pattern: Invalid value: \"(\": must be a valid regular expression"));
        assert!(structural(&schema(), "x", true).is_empty());
    }
}
