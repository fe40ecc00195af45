//! Sets of field paths, as server-side apply reasons about ownership
//! (structured-merge-diff's fieldpath), read from objects through their
//! schema and written as metadata.managedFields' FieldsV1 tries.
//!
//! A path steps through struct fields and map keys (`f:<name>`), items of
//! associative lists by their key fields (`k:{"name":"nginx"}`), items of
//! sets by value (`v:"example.com/fin"`) and items of atomic lists by index
//! (`i:0`). In FieldsV1 each path is a chain of nested objects; a path that
//! is itself in the set and has members below it carries a `"."` entry:
//! `{"f:metadata":{"f:labels":{".":{},"f:app":{}}}}` holds
//! `.metadata.labels` and `.metadata.labels.app`.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{json, Map, Value};

use crate::schema::Shape;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Element {
    Field(String),
    /// The key fields of an associative-list item, as a JSON object with
    /// sorted keys.
    Key(String),
    /// A set item, as JSON.
    Value(String),
    Index(usize),
}

pub type Path = Vec<Element>;
pub type Set = BTreeSet<Path>;

/// `.spec.template.spec.containers[name="nginx"].image`, as kube-apiserver
/// prints paths in conflicts.
pub struct Display<'a>(pub &'a [Element]);

impl fmt::Display for Display<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in self.0 {
            match e {
                Element::Field(n) => write!(f, ".{n}")?,
                Element::Index(i) => write!(f, "[{i}]")?,
                Element::Value(v) => write!(f, "[={v}]")?,
                Element::Key(k) => {
                    let fields: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                    let parts: Vec<String> =
                        fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    write!(f, "[{}]", parts.join(","))?
                }
            }
        }
        Ok(())
    }
}

/// How a list is merged and owned.
enum ListKind<'a> {
    Atomic,
    Set,
    Map(Vec<&'a str>),
}

/// The list type of a field: x-kubernetes-list-type, else what its patch
/// strategy implies (merge with a merge key: a map; merge of primitives: a
/// set), else atomic.
fn list_kind<'a>(shape: Option<Shape<'a>>, items: &[Value]) -> ListKind<'a> {
    let Some(shape) = shape else {
        return ListKind::Atomic;
    };
    let meta = shape.list();
    match meta.list_type {
        Some("map") if !meta.map_keys.is_empty() => ListKind::Map(meta.map_keys),
        Some("map") => meta
            .merge_key
            .map(|k| ListKind::Map(vec![k]))
            .unwrap_or(ListKind::Atomic),
        Some("set") => ListKind::Set,
        Some(_) => ListKind::Atomic,
        None if meta.merges() => match meta.merge_key {
            Some(k) if items.iter().all(Value::is_object) => ListKind::Map(vec![k]),
            _ => ListKind::Set,
        },
        None => ListKind::Atomic,
    }
}

fn key_of(item: &Value, keys: &[&str]) -> Element {
    let fields: Map<String, Value> = keys
        .iter()
        .filter_map(|k| item.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    Element::Key(Value::Object(fields).to_string())
}

fn child<'a>(shape: Option<Shape<'a>>, name: &str) -> Option<Shape<'a>> {
    shape.and_then(|s| s.field(name))
}

/// Which paths of an object [`paths`] gives.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Paths {
    /// What an apply configuration owns: leaves, and the items of sets and
    /// associative lists.
    Owned,
    /// Only the values compared whole: scalars, atomic lists and maps,
    /// empty objects.
    Leaves,
    /// Owned, plus the maps and lists an update creates (kube-apiserver's
    /// create compares with the kind's zero value, in which structs and
    /// required fields already exist: those are left out).
    Created,
}

/// The paths of `v` of the given sort.
pub fn paths(shape: Option<Shape<'_>>, v: &Value, which: Paths) -> Set {
    let mut out = Set::new();
    walk(shape, v, &mut Vec::new(), which, false, &mut out);
    out
}

/// `marks`: the path itself counts as created when it holds members.
fn walk(
    shape: Option<Shape<'_>>,
    v: &Value,
    at: &mut Path,
    which: Paths,
    marks: bool,
    out: &mut Set,
) {
    let created = which == Paths::Created && marks;
    match v {
        Value::Object(m) if !m.is_empty() && !shape.is_some_and(|s| s.atomic_map()) => {
            if created {
                out.insert(at.clone());
            }
            for (k, v) in m {
                let sub = child(shape, k);
                let marks = sub.is_none_or(|s| s.properties().is_none())
                    && !shape.is_some_and(|s| s.required(k));
                at.push(Element::Field(k.clone()));
                walk(sub, v, at, which, marks, out);
                at.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let items_shape = shape.and_then(|s| s.items());
            let owned_items = which != Paths::Leaves;
            match list_kind(shape, items) {
                ListKind::Atomic => {
                    out.insert(at.clone());
                }
                ListKind::Set => {
                    if created {
                        out.insert(at.clone());
                    }
                    for item in items {
                        at.push(Element::Value(item.to_string()));
                        if owned_items {
                            out.insert(at.clone());
                        }
                        at.pop();
                    }
                }
                ListKind::Map(keys) => {
                    if created {
                        out.insert(at.clone());
                    }
                    for item in items {
                        at.push(key_of(item, &keys));
                        if owned_items {
                            out.insert(at.clone());
                        }
                        if let Value::Object(m) = item {
                            for (k, v) in m {
                                let sub = child(items_shape, k);
                                at.push(Element::Field(k.clone()));
                                walk(sub, v, at, which, true, out);
                                at.pop();
                            }
                        }
                        at.pop();
                    }
                }
            }
        }
        _ => {
            if !at.is_empty() {
                out.insert(at.clone());
            }
        }
    }
}

fn matches(item: &Value, e: &Element) -> bool {
    match e {
        Element::Key(k) => {
            let fields: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            !fields.is_empty() && fields.iter().all(|(k, v)| item.get(k) == Some(v))
        }
        Element::Value(v) => serde_json::from_str::<Value>(v).is_ok_and(|v| v == *item),
        _ => false,
    }
}

/// The value at `path` in `v`, if there is one.
pub fn value_at<'v>(v: &'v Value, path: &[Element]) -> Option<&'v Value> {
    let mut at = v;
    for e in path {
        at = match (e, at) {
            (Element::Field(n), Value::Object(m)) => m.get(n)?,
            (Element::Index(i), Value::Array(a)) => a.get(*i)?,
            (_, Value::Array(a)) => a.iter().find(|item| matches(item, e))?,
            _ => return None,
        };
    }
    Some(at)
}

/// Removes what `path` names from `v` (a field, a list item); no-op when
/// absent.
pub fn remove_at(v: &mut Value, path: &[Element]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut at = v;
    for e in parent {
        let next = match (e, at) {
            (Element::Field(n), Value::Object(m)) => m.get_mut(n),
            (Element::Index(i), Value::Array(a)) => a.get_mut(*i),
            (_, Value::Array(a)) => a.iter_mut().find(|item| matches(item, e)),
            _ => None,
        };
        match next {
            Some(n) => at = n,
            None => return,
        }
    }
    match (last, at) {
        (Element::Field(n), Value::Object(m)) => {
            m.remove(n);
        }
        (Element::Index(i), Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
        }
        (e, Value::Array(a)) => a.retain(|item| !matches(item, e)),
        _ => {}
    }
}

fn element_key(e: &Element) -> String {
    match e {
        Element::Field(n) => format!("f:{n}"),
        Element::Key(k) => format!("k:{k}"),
        Element::Value(v) => format!("v:{v}"),
        Element::Index(i) => format!("i:{i}"),
    }
}

fn parse_element(s: &str) -> Option<Element> {
    let (kind, rest) = s.split_at_checked(2)?;
    Some(match kind {
        "f:" => Element::Field(rest.to_string()),
        "k:" => Element::Key(serde_json::from_str::<Value>(rest).ok()?.to_string()),
        "v:" => Element::Value(serde_json::from_str::<Value>(rest).ok()?.to_string()),
        "i:" => Element::Index(rest.parse().ok()?),
        _ => return None,
    })
}

/// The FieldsV1 trie of a set.
pub fn to_fields_v1(set: &Set) -> Value {
    let mut root = json!({});
    for path in set {
        let mut node = &mut root;
        for e in path {
            node = node
                .as_object_mut()
                .map(|m| m.entry(element_key(e)).or_insert_with(|| json!({})))
                .unwrap_or_else(|| unreachable!("trie nodes are objects"));
        }
    }
    // A member with members below it says so with ".".
    for path in set {
        let mut node = &mut root;
        for e in path {
            node = &mut node[element_key(e)];
        }
        if let Some(m) = node.as_object_mut().filter(|m| !m.is_empty()) {
            m.insert(".".into(), json!({}));
        }
    }
    root
}

/// The set a FieldsV1 trie holds (entries it cannot read are skipped).
pub fn from_fields_v1(v: &Value) -> Set {
    let mut out = Set::new();
    read(v, &mut Vec::new(), &mut out);
    out
}

fn read(v: &Value, at: &mut Path, out: &mut Set) {
    let Some(m) = v.as_object() else {
        return;
    };
    if !at.is_empty() && (m.is_empty() || m.contains_key(".")) {
        out.insert(at.clone());
    }
    for (k, v) in m {
        if let Some(e) = parse_element(k) {
            at.push(e);
            read(v, at, out);
            at.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;
    use crate::schema::schemas;

    fn f(n: &str) -> Element {
        Element::Field(n.into())
    }

    #[test]
    fn an_applied_deployment_owns_its_leaves_and_container_items() {
        let d = find("apps", "v1", "deployments").unwrap();
        let obj = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx",
                "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}}});
        let set = paths(schemas().root(d), &obj, Paths::Owned);
        let fields = to_fields_v1(&set);
        assert_eq!(
            fields,
            json!({"f:metadata": {"f:labels": {"f:app": {}}},
                   "f:spec": {"f:replicas": {}, "f:selector": {},
                     "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                        ".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                            ".": {}, "f:containerPort": {}, "f:protocol": {}}}}}}}}})
        );
        assert_eq!(from_fields_v1(&fields), set);
        let image = vec![
            f("spec"),
            f("template"),
            f("spec"),
            f("containers"),
            Element::Key(r#"{"name":"nginx"}"#.into()),
            f("image"),
        ];
        assert!(set.contains(&image));
        assert_eq!(
            Display(&image).to_string(),
            ".spec.template.spec.containers[name=\"nginx\"].image"
        );
        assert_eq!(value_at(&obj, &image), Some(&json!("nginx")));
    }

    #[test]
    fn sets_and_removal() {
        let cm = find("", "v1", "configmaps").unwrap();
        let mut obj = json!({"metadata": {"finalizers": ["a", "b"]}, "data": {"x": "1"}});
        let all = paths(schemas().root(cm), &obj, Paths::Created);
        let b = vec![
            f("metadata"),
            f("finalizers"),
            Element::Value("\"b\"".into()),
        ];
        assert!(all.contains(&b) && all.contains(&vec![f("metadata"), f("finalizers")]));
        // A struct exists in the zero value: not created.
        assert!(!all.contains(&vec![f("metadata")]));
        assert_eq!(
            to_fields_v1(&all)["f:metadata"]["f:finalizers"],
            json!({".": {}, "v:\"a\"": {}, "v:\"b\"": {}})
        );
        remove_at(&mut obj, &b);
        remove_at(&mut obj, &[f("data"), f("x")]);
        assert_eq!(obj, json!({"metadata": {"finalizers": ["a"]}, "data": {}}));
    }
}
