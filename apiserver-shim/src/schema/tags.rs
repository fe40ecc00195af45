//! The Kubernetes struct tags that k8s-openapi's schemas lack, attached to
//! the generated definitions as kube-apiserver's OpenAPI writes them:
//! `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`,
//! `x-kubernetes-list-type`, `x-kubernetes-list-map-keys` on fields and
//! `x-kubernetes-map-type` on fields and atomic structs.
//!
//! tags.txt holds them, one line per field (or `.` for the struct itself):
//! `io.k8s.api.core.v1.PodSpec containers patchMergeKey=name patchStrategy=merge listType=map listMapKey=name`.
//! It is written by tools/schema-tags.py from the k8s-pb crate's doc
//! comments, which carry the Go types' tags; field names there are prost's
//! snake_case, matched here to the schema's JSON names with case and
//! underscores ignored (`host_ipc` is `hostIPC`). `embeds=<definition>` marks
//! a Go struct embedded inline: when the schema has no property of that name,
//! the embedded struct's field tags apply to this definition.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

const TAGS: &str = include_str!("tags.txt");

#[derive(Default)]
struct FieldTags {
    patch_strategy: Option<String>,
    merge_key: Option<String>,
    list_type: Option<String>,
    map_keys: Vec<String>,
    map_type: Option<String>,
    embeds: Option<String>,
}

/// The tags of one definition: per normalized field name, and its own.
#[derive(Default)]
struct DefTags {
    fields: Vec<(String, FieldTags)>,
    struct_type: Option<String>,
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

fn parse() -> HashMap<&'static str, DefTags> {
    let mut out: HashMap<&'static str, DefTags> = HashMap::new();
    for line in TAGS.lines().filter(|l| !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        let (Some(def), Some(field)) = (words.next(), words.next()) else {
            continue;
        };
        let entry = out.entry(def).or_default();
        let mut tags = FieldTags::default();
        for word in words {
            let Some((k, v)) = word.split_once('=') else {
                continue;
            };
            match k {
                "patchStrategy" => tags.patch_strategy = Some(v.into()),
                "patchMergeKey" => tags.merge_key = Some(v.into()),
                "listType" => tags.list_type = Some(v.into()),
                "listMapKey" => tags.map_keys.push(v.into()),
                "mapType" => tags.map_type = Some(v.into()),
                "structType" => entry.struct_type = Some(v.into()),
                "embeds" => tags.embeds = Some(v.into()),
                _ => {}
            }
        }
        if field != "." {
            entry.fields.push((normalize(field), tags));
        }
    }
    out
}

/// Adds the extensions to every definition in `defs` (keyed by OpenAPI
/// definition name).
pub(super) fn attach(defs: &mut Map<String, Value>) {
    let tags = parse();
    for (name, def) in defs.iter_mut() {
        let Some(def) = def.as_object_mut() else {
            continue;
        };
        if let Some(t) = tags.get(name.as_str()) {
            if let Some(st) = &t.struct_type {
                def.insert("x-kubernetes-map-type".into(), json!(st));
            }
        }
        let Some(props) = def.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        attach_fields(&tags, name, props, 0);
    }
}

fn attach_fields(
    tags: &HashMap<&'static str, DefTags>,
    def: &str,
    props: &mut Map<String, Value>,
    depth: usize,
) {
    let Some(t) = tags.get(def) else {
        return;
    };
    for (field, ft) in &t.fields {
        let prop = props
            .iter_mut()
            .find(|(k, _)| normalize(k) == *field)
            .and_then(|(_, v)| v.as_object_mut());
        match prop {
            Some(p) => {
                let mut put = |k: &str, v: &Option<String>| {
                    if let Some(v) = v {
                        p.insert(k.into(), json!(v));
                    }
                };
                put("x-kubernetes-patch-strategy", &ft.patch_strategy);
                put("x-kubernetes-patch-merge-key", &ft.merge_key);
                put("x-kubernetes-list-type", &ft.list_type);
                put("x-kubernetes-map-type", &ft.map_type);
                if !ft.map_keys.is_empty() {
                    p.insert("x-kubernetes-list-map-keys".into(), json!(ft.map_keys));
                }
            }
            // An inlined struct: its fields are this definition's.
            None => {
                if let Some(inner) = &ft.embeds {
                    if depth < 4 {
                        attach_fields(tags, inner, props, depth + 1);
                    }
                }
            }
        }
    }
}
