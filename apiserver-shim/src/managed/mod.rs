//! metadata.managedFields and server-side apply, as kube-apiserver's field
//! manager keeps them (structured-merge-diff; reference:
//! kubernetes-apiserver.md §5).
//!
//! Each entry is one manager's set of fields for one operation (and
//! subresource). An Update (create, PUT, any non-apply PATCH) takes the
//! fields it added or changed from everyone and never conflicts; fields it
//! removed leave every set. An Apply merges the applied configuration into
//! the object by the schema's list types and keys, owns exactly the fields
//! it sent, refuses (409) to change a field another manager owns unless
//! forced (force moves it), and removes the fields it stopped sending that
//! nobody else owns.
//!
//! Example: `kubectl apply --server-side` of a Deployment with replicas 1
//! makes manager "kubectl" (Apply) own `.spec.replicas`; `kubectl scale
//! --replicas=3` (an Update through /scale) then takes it; applying the same
//! manifest again would set it back to 1, so it fails with
//! `Apply failed with 1 conflict: conflict with "kubectl" with subresource
//! "scale" using apps/v1: .spec.replicas`, and with force the applier owns
//! it again and the value is 1.

pub mod fieldset;

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use self::fieldset::{
    paths, remove_at, to_fields_v1, value_at, Display, Element, Path, Paths, Set,
};
use crate::error::ApiError;
use crate::schema::Shape;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who writes: the manager entry a write updates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Writer {
    pub manager: String,
    pub operation: Operation,
    /// "status", "scale", or none for the main resource.
    pub subresource: Option<String>,
    /// The group-version the write used ("apps/v1").
    pub api_version: String,
}

/// One decoded managedFields entry.
#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: Operation,
    subresource: Option<String>,
    api_version: String,
    time: Option<String>,
    set: Set,
}

impl Entry {
    fn same_writer(&self, w: &Writer) -> bool {
        self.manager == w.manager
            && self.operation == w.operation
            && self.subresource == w.subresource
            // Update entries are per version; an applier is one entry.
            && (self.operation == Operation::Apply || self.api_version == w.api_version)
    }

    /// How conflicts name the manager (kube-apiserver's printManager).
    fn printed(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn encode(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation.as_str()));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), to_fields_v1(&self.set));
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), json!(s));
        }
        Value::Object(m)
    }
}

fn decode(obj: &Value) -> Vec<Entry> {
    let Some(list) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|e| {
            let operation = match e.get("operation")?.as_str()? {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                _ => return None,
            };
            Some(Entry {
                manager: e.get("manager")?.as_str()?.to_string(),
                operation,
                subresource: e
                    .get("subresource")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
                api_version: e.get("apiVersion")?.as_str().unwrap_or("").to_string(),
                time: e.get("time").and_then(Value::as_str).map(String::from),
                set: fieldset::from_fields_v1(e.get("fieldsV1").unwrap_or(&Value::Null)),
            })
        })
        .collect()
}

/// Writes `entries` into `obj`, sorted as kube-apiserver sorts them
/// (operation, time, manager), empty ones dropped.
fn store(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.set.is_empty());
    entries.sort_by(|a, b| {
        (
            a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let meta = crate::rest::object::metadata_mut(obj);
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Value::Array(entries.iter().map(Entry::encode).collect()),
        );
    }
}

/// Which fields a write through `subresource` can own: not the object's
/// identity and system metadata (kube-apiserver's stripped fields), not
/// status through the main resource of a kind with a status subresource,
/// only status through /status.
#[derive(Clone, Copy)]
pub struct Ownable {
    pub status_subresource: bool,
    pub through_status: bool,
}

impl Ownable {
    fn keeps(&self, p: &Path) -> bool {
        let f = |i: usize| match p.get(i) {
            Some(Element::Field(n)) => Some(n.as_str()),
            _ => None,
        };
        let top = f(0);
        if self.through_status {
            return top == Some("status");
        }
        if self.status_subresource && top == Some("status") {
            return false;
        }
        match (top, p.len()) {
            (Some("apiVersion" | "kind" | "metadata"), 1) => false,
            (Some("metadata"), _) => !matches!(
                f(1),
                Some(
                    "name"
                        | "namespace"
                        | "creationTimestamp"
                        | "selfLink"
                        | "uid"
                        | "generation"
                        | "resourceVersion"
                        | "managedFields"
                        | "deletionTimestamp"
                        | "deletionGracePeriodSeconds"
                )
            ),
            _ => true,
        }
    }

    fn filter(&self, set: Set) -> Set {
        set.into_iter().filter(|p| self.keeps(p)).collect()
    }
}

/// The object without managedFields (what sets are computed over).
fn bare(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
    o
}

/// What changed from `old` to `new`: the paths added or modified, and the
/// paths removed.
fn compare(shape: Option<Shape<'_>>, old: &Value, new: &Value) -> (Set, Set) {
    let old_paths = paths(shape, old, Paths::Created);
    let new_paths = paths(shape, new, Paths::Created);
    let leaves = paths(shape, new, Paths::Leaves);
    let changed = new_paths
        .iter()
        .filter(|p| {
            !old_paths.contains(*p) || (leaves.contains(*p) && value_at(old, p) != value_at(new, p))
        })
        .cloned()
        .collect();
    let removed = old_paths.difference(&new_paths).cloned().collect();
    (changed, removed)
}

/// Records an Update by `writer` that turned `old` into `new` (old is
/// `Value::Null` for a create): sets `new`'s managedFields. A body that
/// brought managedFields of its own different from the stored ones has them
/// taken as they are (how clients reset ownership).
pub fn record_update(
    shape: Option<Shape<'_>>,
    ownable: Ownable,
    writer: &Writer,
    now: &str,
    old: &Value,
    new: &mut Value,
) {
    let sent = new.pointer("/metadata/managedFields").cloned();
    let stored = old.pointer("/metadata/managedFields").cloned();
    let mut entries = match (&sent, &stored) {
        (Some(s), st) if Some(s) != st.as_ref() => decode(new),
        _ => decode(old),
    };
    let (changed, removed) = compare(shape, &bare(old), &bare(new));
    let changed = ownable.filter(changed);
    let removed = ownable.filter(removed);
    if changed.is_empty() && removed.is_empty() {
        store(new, entries);
        return;
    }
    for e in entries.iter_mut().filter(|e| !e.same_writer(writer)) {
        e.set
            .retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    let mine = take_entry(&mut entries, writer);
    let mut set: Set = mine.map(|e| e.set).unwrap_or_default();
    set.extend(changed);
    set.retain(|p| !removed.contains(p));
    entries.push(Entry {
        manager: writer.manager.clone(),
        operation: writer.operation,
        subresource: writer.subresource.clone(),
        api_version: writer.api_version.clone(),
        time: Some(now.to_string()),
        set,
    });
    store(new, entries);
}

fn take_entry(entries: &mut Vec<Entry>, writer: &Writer) -> Option<Entry> {
    let i = entries.iter().position(|e| e.same_writer(writer))?;
    Some(entries.remove(i))
}

/// Server-side apply of `config` by `writer` over `live` (`Value::Null`
/// when the object does not exist yet): the merged object with its
/// managedFields, or the conflicts with other managers as a 409.
pub fn apply(
    shape: Option<Shape<'_>>,
    ownable: Ownable,
    writer: &Writer,
    now: &str,
    force: bool,
    live: &Value,
    config: &Value,
) -> Result<Value, ApiError> {
    let config = without_nulls(config);
    let live_bare = bare(live);
    let mut entries = decode(live);
    let previous = take_entry(&mut entries, writer).map(|e| e.set);
    let mut merged = merge(shape, &live_bare, &config);
    let applied = ownable.filter(paths(shape, &config, Paths::Owned));
    // Prune what this applier stopped sending and nobody else owns.
    if let Some(prev) = &previous {
        for p in prev.difference(&applied) {
            let owned = entries.iter().any(|e| e.set.contains(p));
            if !owned {
                remove_at(&mut merged, p);
            }
        }
    }
    let (changed, removed) = compare(shape, &live_bare, &merged);
    let changed = ownable.filter(changed);
    let mut conflicts: Vec<(String, Path)> = Vec::new();
    for e in &entries {
        for p in e.set.intersection(&changed) {
            conflicts.push((e.printed(), p.clone()));
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(conflicts));
    }
    for e in entries.iter_mut() {
        e.set
            .retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    // A no-op apply by the same owner keeps its entry's time.
    let time = match (&previous, live_bare == merged) {
        (Some(prev), true) if *prev == applied => live
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .and_then(|l| {
                l.iter().find(|e| {
                    e["manager"] == json!(writer.manager) && e["operation"] == json!("Apply")
                })
            })
            .and_then(|e| e["time"].as_str())
            .unwrap_or(now)
            .to_string(),
        _ => now.to_string(),
    };
    entries.push(Entry {
        manager: writer.manager.clone(),
        operation: Operation::Apply,
        subresource: writer.subresource.clone(),
        api_version: writer.api_version.clone(),
        time: Some(time),
        set: applied,
    });
    store(&mut merged, entries);
    Ok(merged)
}

fn conflict_error(conflicts: Vec<(String, Path)>) -> ApiError {
    let causes: Vec<(String, String)> = conflicts
        .iter()
        .map(|(m, p)| (format!("conflict with {m}"), Display(p).to_string()))
        .collect();
    let message = if conflicts.len() == 1 {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            conflicts[0].0,
            Display(&conflicts[0].1)
        )
    } else {
        let mut by_manager: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (m, p) in &conflicts {
            by_manager
                .entry(m.as_str())
                .or_default()
                .push(Display(p).to_string());
        }
        let mut lines = Vec::new();
        for (m, ps) in by_manager {
            lines.push(format!("conflicts with {m}:"));
            lines.extend(ps.into_iter().map(|p| format!("- {p}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    ApiError::ApplyConflict { message, causes }
}

/// An applied configuration's `null`s say nothing (they are not sent).
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// `config` merged into `live` by the schema: structs and maps field by
/// field (atomic ones replaced), associative lists item by item on their
/// keys, sets as unions, anything else replaced.
fn merge(shape: Option<Shape<'_>>, live: &Value, config: &Value) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) if !shape.is_some_and(|s| s.atomic_map()) => {
            let mut out = l.clone();
            for (k, cv) in c {
                let sub = shape.and_then(|s| s.field(k));
                let merged = match l.get(k) {
                    Some(lv) => merge(sub, lv, cv),
                    None => cv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(c)) => {
            let sample: Vec<Value> = l.iter().chain(c).cloned().collect();
            let meta = shape.map(|s| s.list());
            let keys: Option<Vec<&str>> = meta.as_ref().and_then(|m| match m.list_type {
                Some("map") if !m.map_keys.is_empty() => Some(m.map_keys.clone()),
                Some("map") => m.merge_key.map(|k| vec![k]),
                None if m.merges() && sample.iter().all(Value::is_object) => {
                    m.merge_key.map(|k| vec![k])
                }
                _ => None,
            });
            let set = meta.as_ref().is_some_and(|m| {
                m.list_type == Some("set")
                    || (m.list_type.is_none() && m.merges() && keys.is_none())
            });
            if let Some(keys) = keys {
                let items = shape.and_then(|s| s.items());
                let same = |a: &Value, b: &Value| keys.iter().all(|k| a.get(*k) == b.get(*k));
                let mut out = l.clone();
                for ci in c {
                    match out.iter().position(|li| same(li, ci)) {
                        Some(i) => out[i] = merge(items, &out[i], ci),
                        None => out.push(ci.clone()),
                    }
                }
                Value::Array(out)
            } else if set {
                let mut out = l.clone();
                for ci in c {
                    if !out.contains(ci) {
                        out.push(ci.clone());
                    }
                }
                Value::Array(out)
            } else {
                config.clone()
            }
        }
        _ => config.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;
    use crate::schema::schemas;

    fn shape() -> Option<Shape<'static>> {
        schemas().root(find("apps", "v1", "deployments").unwrap())
    }

    const OWN: Ownable = Ownable {
        status_subresource: true,
        through_status: false,
    };

    fn writer(m: &str, op: Operation, sub: Option<&str>) -> Writer {
        Writer {
            manager: m.into(),
            operation: op,
            subresource: sub.map(String::from),
            api_version: "apps/v1".into(),
        }
    }

    fn deployment(replicas: i64, containers: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "d"},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": containers}}}})
    }

    #[test]
    fn apply_creates_owns_and_prunes_what_it_stops_sending() {
        let me = writer("kubectl", Operation::Apply, None);
        let first = deployment(
            1,
            json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]),
        );
        let live = apply(shape(), OWN, &me, "t1", false, &Value::Null, &first).unwrap();
        let mf = &live["metadata"]["managedFields"][0];
        assert_eq!(
            (mf["manager"].as_str(), mf["operation"].as_str()),
            (Some("kubectl"), Some("Apply"))
        );
        assert!(
            mf["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"b\"}"]
                ["f:image"]
                .is_object()
        );
        assert!(
            mf["fieldsV1"]["f:metadata"].is_null(),
            "name and namespace are not owned"
        );
        // Dropping container b and adding c: b is pruned, a kept, c appended.
        let second = deployment(
            1,
            json!([{"name": "a", "image": "a"}, {"name": "c", "image": "c"}]),
        );
        let live = apply(shape(), OWN, &me, "t2", false, &live, &second).unwrap();
        let names: Vec<&str> = live["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "c"]);
    }

    #[test]
    fn a_field_another_manager_changed_conflicts_until_forced() {
        let me = writer("kubectl", Operation::Apply, None);
        let config = deployment(1, json!([{"name": "a", "image": "a"}]));
        let live = apply(shape(), OWN, &me, "t1", false, &Value::Null, &config).unwrap();
        // kubectl scale: an Update through /scale.
        let scaler = writer("kubectl", Operation::Update, Some("scale"));
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(3);
        record_update(shape(), OWN, &scaler, "t2", &live, &mut scaled);
        let entries = scaled["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[1]["fieldsV1"],
            json!({"f:spec": {"f:replicas": {}}})
        );
        assert!(entries[0]["fieldsV1"]["f:spec"].get("f:replicas").is_none());
        let err = apply(shape(), OWN, &me, "t3", false, &scaled, &config).unwrap_err();
        assert_eq!(err.code(), 409);
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"
        );
        let status = err.status();
        assert_eq!(
            status["details"]["causes"][0]["reason"],
            "FieldManagerConflict"
        );
        assert_eq!(status["details"]["causes"][0]["field"], ".spec.replicas");
        // The same value is shared ownership, not a conflict.
        let mut same = config.clone();
        same["spec"]["replicas"] = json!(3);
        assert!(apply(shape(), OWN, &me, "t3", false, &scaled, &same).is_ok());
        // Forced: the applier takes the field back and sets it.
        let forced = apply(shape(), OWN, &me, "t3", true, &scaled, &config).unwrap();
        assert_eq!(forced["spec"]["replicas"], 1);
        assert_eq!(
            forced["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn updates_own_what_they_change_and_status_is_not_owned_through_the_main_resource() {
        let creator = writer("kubectl-create", Operation::Update, None);
        let mut obj = deployment(1, json!([{"name": "a", "image": "a"}]));
        obj["status"] = json!({"replicas": 1});
        record_update(shape(), OWN, &creator, "t1", &Value::Null, &mut obj);
        let fields = &obj["metadata"]["managedFields"][0]["fieldsV1"];
        assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
        // Structs and required fields exist before a create: no ".".
        assert!(fields["f:spec"].get(".").is_none());
        assert!(fields["f:spec"]["f:template"]["f:spec"]["f:containers"]
            .get(".")
            .is_none());
        assert_eq!(
            fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"a\"}"]["."],
            json!({})
        );
        assert!(fields.get("f:status").is_none());
        let labeller = writer("kubectl-label", Operation::Update, None);
        let mut labelled = obj.clone();
        labelled["metadata"]["labels"] = json!({"a": "b"});
        record_update(shape(), OWN, &labeller, "t2", &obj, &mut labelled);
        let entries = labelled["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries[1]["manager"], "kubectl-label");
        assert_eq!(
            entries[1]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {".": {}, "f:a": {}}}})
        );
    }
}
