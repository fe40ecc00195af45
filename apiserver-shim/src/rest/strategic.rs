//! Strategic merge patch (application/strategic-merge-patch+json), as
//! kube-apiserver applies it to an object of a built-in kind
//! (apimachinery's strategicpatch, with MergeParallelList and
//! IgnoreUnmatchedNulls; reference: kubernetes-apiserver.md §4).
//!
//! Maps merge key by key, `null` deleting; lists are replaced unless their
//! field's patch strategy is `merge`: then lists of maps merge item by item
//! on the field's merge key, and lists of primitives are merged as ordered
//! sets. The directives kubectl sends:
//!
//! - `"$patch": "replace"` in a map replaces the map; `"$patch": "delete"`
//!   deletes it; `"$patch": "merge"` is the default. As a list item,
//!   `{"$patch": "replace"}` replaces the whole list with the other items
//!   and `{"<key>": v, "$patch": "delete"}` deletes the items with that key;
//! - `"$setElementOrder/<field>": [...]` orders the merged list: the listed
//!   items in that order, items only on the server kept at their places;
//! - `"$deleteFromPrimitiveList/<field>": [...]` removes values from a
//!   primitive list;
//! - `"$retainKeys": [...]` in a map of a `retainKeys` field drops every key
//!   of the original not listed (a volume switching source).
//!
//! The schema ([`Shape`]) gives the strategy and merge key of each field;
//! a field it does not know merges as plain JSON (maps merged, lists
//! replaced).

use serde_json::{Map, Value};

use crate::schema::Shape;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

/// Why a patch could not be applied (kube-apiserver answers 422 with it).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(String);

fn err<T>(msg: impl Into<String>) -> Result<T, PatchError> {
    Err(PatchError(msg.into()))
}

/// `original` with `patch` applied; `shape` is the object's schema.
pub fn apply(
    original: &Value,
    patch: &Value,
    shape: Option<Shape<'_>>,
) -> Result<Value, PatchError> {
    let (Value::Object(o), Value::Object(p)) = (original, patch) else {
        return err("a strategic merge patch must be a JSON object");
    };
    merge_map(o.clone(), p.clone(), shape).map(Value::Object)
}

fn field<'a>(shape: Option<Shape<'a>>, name: &str) -> Option<Shape<'a>> {
    shape.and_then(|s| s.field(name))
}

/// Strategy and merge key of a field (none: replace lists).
fn list_meta(shape: Option<Shape<'_>>) -> (bool, Option<String>) {
    match shape {
        Some(s) => {
            let m = s.list();
            (m.merges(), m.merge_key.map(String::from))
        }
        None => (false, None),
    }
}

fn replaces_map(shape: Option<Shape<'_>>) -> bool {
    shape.is_some_and(|s| s.list().patch_strategy.contains(&"replace"))
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    shape: Option<Shape<'_>>,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(d) = patch.remove(DIRECTIVE) {
        match d.as_str() {
            Some("replace") => return Ok(patch),
            Some("delete") => return Ok(Map::new()),
            Some("merge") => {}
            _ => {
                return err(format!(
                    "Unknown patch type: {d} in map: {}",
                    Value::Object(patch)
                ))
            }
        }
    }
    if let Some(keep) = patch.remove(RETAIN_KEYS) {
        let Value::Array(keep) = keep else {
            return err("$retainKeys must be a list of strings");
        };
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        original.retain(|k, _| keep.contains(&k.as_str()));
    }
    set_element_orders(&mut original, &mut patch, shape)?;
    for (key, value) in patch {
        let (key, delete_list) = match key.strip_prefix(DELETE_FROM) {
            Some(k) => (k.to_string(), true),
            None => (key, false),
        };
        if value.is_null() {
            original.remove(&key);
            continue;
        }
        let sub = field(shape, &key);
        let Some(current) = original.remove(&key) else {
            if !delete_list {
                original.insert(key, without_nulls(value));
            }
            continue;
        };
        let merged = match (current, value) {
            (Value::Object(c), Value::Object(p)) if !replaces_map(sub) => {
                Value::Object(merge_map(c, p, sub)?)
            }
            (Value::Array(c), Value::Array(p)) => {
                let (merges, key_name) = list_meta(sub);
                if merges || delete_list {
                    Value::Array(merge_list(c, p, sub, key_name.as_deref(), delete_list)?)
                } else {
                    Value::Array(p)
                }
            }
            (current, value) => {
                if delete_list {
                    current
                } else {
                    value
                }
            }
        };
        original.insert(key, merged);
    }
    Ok(original)
}

/// Drops `null`s from a value taken whole (nothing to delete under it).
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// An item's identity in a list: its merge key's value, or itself for
/// primitives.
fn identity<'v>(item: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match (item, key) {
        (Value::Object(m), Some(k)) => m.get(k),
        (Value::Object(_), None) => None,
        (v, _) => Some(v),
    }
}

fn position(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    let id = identity(item, key)?;
    list.iter().position(|x| identity(x, key) == Some(id))
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    shape: Option<Shape<'_>>,
    key: Option<&str>,
    delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let maps = original.iter().chain(&patch).any(Value::is_object);
    let merged;
    let (original_order, patch_order);
    if !maps {
        if delete_list {
            return Ok(original
                .into_iter()
                .filter(|v| !patch.contains(v))
                .collect());
        }
        let mut all = original.clone();
        for v in &patch {
            if !all.contains(v) {
                all.push(v.clone());
            }
        }
        merged = all;
        original_order = original;
        patch_order = patch;
    } else {
        let Some(key) = key else {
            return err("cannot merge lists without merge key");
        };
        let items = shape.and_then(|s| s.items());
        let (mut base, rest) = special_items(original.clone(), patch, key)?;
        for item in &rest {
            let Some(id) = item.get(key) else {
                return err(format!(
                    "map: {item} does not contain declared merge key: {key}"
                ));
            };
            match base.iter().position(|x| x.get(key) == Some(id)) {
                Some(i) => {
                    let (Value::Object(c), Value::Object(p)) = (base[i].take(), item.clone())
                    else {
                        return err("list items to merge must be maps");
                    };
                    base[i] = Value::Object(merge_map(c, p, items)?);
                }
                None => base.push(item.clone()),
            }
        }
        merged = base;
        original_order = original;
        patch_order = rest;
    }
    Ok(enforce_order(merged, &patch_order, &original_order, key))
}

/// Applies the `$patch` items of a merging list of maps: deletions by key
/// (from the original), or a replacement of the whole list. Returns the base
/// to merge into and the plain items.
fn special_items(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::new();
    let mut replace = false;
    for item in patch {
        match item.get(DIRECTIVE).map(|d| d.as_str()) {
            None => plain.push(item),
            Some(Some("delete")) => {
                let Some(id) = item.get(key) else {
                    return err(format!(
                        "map: {item} does not contain declared merge key: {key}"
                    ));
                };
                original.retain(|x| x.get(key) != Some(id));
            }
            Some(Some("replace")) => replace = true,
            Some(Some("merge")) => {
                return err("merging lists cannot yet be specified in the patch")
            }
            Some(_) => return err(format!("Unknown patch type in list item: {item}")),
        }
    }
    if replace {
        return Ok((plain, Vec::new()));
    }
    Ok((original, plain))
}

/// The patch's items in the patch's order, the server-only items at their
/// places in the original (apimachinery's normalizeElementOrder).
fn enforce_order(
    merged: Vec<Value>,
    patch_order: &[Value],
    original_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let (mut patched, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| position(patch_order, v, key).is_some());
    let rank = |list: &[Value], v: &Value| position(list, v, key).unwrap_or(usize::MAX);
    patched.sort_by_key(|v| rank(patch_order, v));
    server_only.sort_by_key(|v| rank(original_order, v));
    let mut out = Vec::with_capacity(patched.len() + server_only.len());
    let (mut s, mut p) = (
        server_only.into_iter().peekable(),
        patched.into_iter().peekable(),
    );
    loop {
        match (s.peek(), p.peek()) {
            (Some(a), Some(b)) => {
                let (ia, ib) = (
                    position(original_order, a, key),
                    position(original_order, b, key),
                );
                let server_first = matches!((ia, ib), (Some(x), Some(y)) if x < y);
                out.extend(if server_first { s.next() } else { p.next() });
            }
            (Some(_), None) => out.extend(s.next()),
            (None, Some(_)) => out.extend(p.next()),
            (None, None) => break,
        }
    }
    out
}

/// Handles every `$setElementOrder/<field>` of a map: merges that field's
/// list (if patched) and orders it as the directive says. The directive and
/// the list are consumed from `patch`.
fn set_element_orders(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    shape: Option<Shape<'_>>,
) -> Result<(), PatchError> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ORDER))
        .cloned()
        .collect();
    for directive in directives {
        let Some(Value::Array(order)) = patch.remove(&directive) else {
            return err(format!("{directive} must be a list"));
        };
        let name = &directive[SET_ORDER.len()..];
        let sub = field(shape, name);
        let (merges, key) = list_meta(sub);
        let key = key.as_deref();
        let current = match original.get(name) {
            Some(Value::Array(a)) => Some(a.clone()),
            Some(_) => return err(format!("{name} is not a list")),
            None => None,
        };
        let patched = match patch.remove(name) {
            Some(Value::Array(a)) => Some(a),
            Some(Value::Null) => {
                original.remove(name);
                continue;
            }
            Some(_) => return err(format!("{name} is not a list")),
            None => None,
        };
        let merged = match (current.clone(), patched) {
            (Some(c), None) => c,
            (None, Some(p)) => strip_directives(p),
            (Some(c), Some(p)) if merges => merge_list(c, p, sub, key, false)?,
            (Some(_), Some(p)) => p,
            (None, None) => continue,
        };
        let order: Vec<Value> = order
            .into_iter()
            .filter(|o| o.get(DIRECTIVE).is_none())
            .collect();
        let ordered = enforce_order(merged, &order, current.as_deref().unwrap_or(&[]), key);
        original.insert(name.to_string(), Value::Array(ordered));
    }
    Ok(())
}

/// A list taken whole: its `$patch` items dropped.
fn strip_directives(list: Vec<Value>) -> Vec<Value> {
    list.into_iter()
        .filter(|v| v.get(DIRECTIVE).is_none())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;
    use crate::schema::schemas;
    use serde_json::json;

    fn deploy(patch: Value, original: Value) -> Value {
        let d = find("apps", "v1", "deployments").unwrap();
        apply(&original, &patch, schemas().root(d)).unwrap()
    }

    fn pod_spec(containers: Value) -> Value {
        json!({"spec": {"template": {"spec": {"containers": containers}}}})
    }

    fn names(v: &Value) -> Vec<&str> {
        v["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn maps_merge_and_null_deletes() {
        let out = deploy(
            json!({"metadata": {"labels": {"b": "2", "a": null}}, "spec": {"paused": null}}),
            json!({"metadata": {"labels": {"a": "1", "c": "3"}}, "spec": {"paused": true, "replicas": 1}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        assert_eq!(out["spec"], json!({"replicas": 1}));
    }

    #[test]
    fn merge_key_lists_merge_by_name_and_other_lists_are_replaced() {
        let original = pod_spec(json!([
            {"name": "a", "image": "a:1", "args": ["x", "y"]},
            {"name": "b", "image": "b:1"}
        ]));
        let out = deploy(
            pod_spec(json!([{"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"}])),
            original.clone(),
        );
        assert_eq!(names(&out), ["a", "b", "c"]);
        let c = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(
            (c[1]["image"].as_str(), c[0]["image"].as_str()),
            (Some("b:2"), Some("a:1"))
        );
        // args has no strategy: replaced, not merged.
        let out = deploy(pod_spec(json!([{"name": "a", "args": ["z"]}])), original);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["z"])
        );
    }

    #[test]
    fn patch_delete_and_replace_directives() {
        let original = pod_spec(json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]));
        let out = deploy(
            pod_spec(json!([{"name": "a", "$patch": "delete"}])),
            original.clone(),
        );
        assert_eq!(names(&out), ["b"]);
        let out = deploy(
            pod_spec(json!([{"name": "c", "image": "c"}, {"$patch": "replace"}])),
            original.clone(),
        );
        assert_eq!(names(&out), ["c"]);
        // In a map: replace swaps the map, delete removes it.
        let out = deploy(
            json!({"metadata": {"labels": {"z": "1", "$patch": "replace"}}}),
            json!({"metadata": {"labels": {"a": "1"}, "name": "w"}}),
        );
        assert_eq!(out["metadata"], json!({"labels": {"z": "1"}, "name": "w"}));
        let out = deploy(
            json!({"spec": {"template": {"$patch": "delete"}}}),
            original,
        );
        assert_eq!(out["spec"]["template"], json!({}));
    }

    #[test]
    fn set_element_order_orders_the_merged_list() {
        let original = pod_spec(json!([
            {"name": "a", "image": "a"}, {"name": "b", "image": "b"}, {"name": "c", "image": "c"}
        ]));
        // What kubectl apply sends to drop "b" and add "d" after "a".
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "d"}, {"name": "c"}],
            "containers": [{"name": "d", "image": "d"}, {"name": "b", "$patch": "delete"}]
        }}}});
        let out = deploy(patch, original.clone());
        assert_eq!(names(&out), ["a", "d", "c"]);
        // Reordering only.
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}]
        }}}});
        assert_eq!(names(&deploy(patch, original)), ["c", "b", "a"]);
    }

    #[test]
    fn primitive_lists_with_merge_strategy_are_ordered_sets() {
        let original = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = deploy(
            json!({"metadata": {"finalizers": ["b", "c"]}}),
            original.clone(),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let out = deploy(
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            original.clone(),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        let out = deploy(
            json!({"metadata": {"$setElementOrder/finalizers": ["c", "b", "a"], "finalizers": ["c"]}}),
            original,
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "b", "a"]));
    }

    #[test]
    fn retain_keys_clears_the_keys_not_listed() {
        let original = json!({"spec": {"strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1}}}});
        let out = deploy(
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            original,
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn nested_merge_keys_and_bad_patches() {
        let original = pod_spec(json!([{"name": "a", "env": [
            {"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]));
        let out = deploy(
            pod_spec(json!([{"name": "a", "env": [{"name": "Y", "value": "3"}]}])),
            original.clone(),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "X", "value": "1"}, {"name": "Y", "value": "3"}])
        );
        let d = find("apps", "v1", "deployments").unwrap();
        let no_key = pod_spec(json!([{"image": "x"}]));
        assert!(apply(&original, &no_key, schemas().root(d)).is_err());
        assert!(apply(&original, &json!({"$patch": "bogus"}), schemas().root(d)).is_err());
        let merged = apply(
            &original,
            &json!({"$patch": "merge", "x": 1}),
            schemas().root(d),
        );
        assert_eq!(merged.unwrap()["x"], 1);
        assert!(apply(&original, &json!([1]), schemas().root(d)).is_err());
    }
}
