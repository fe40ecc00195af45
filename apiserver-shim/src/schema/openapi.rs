//! The OpenAPI documents kube-apiserver serves (reference:
//! kubernetes-apiserver.md §7), for the kinds served now:
//!
//! - `/openapi/v3`: the index, one `serverRelativeURL` per group-version with
//!   a hash of its document (clients cache by that URL);
//! - `/openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`: the
//!   definitions the group-version's kinds use, and their paths. kubectl reads
//!   the PATCH operations: one tagged with a kind's
//!   x-kubernetes-group-version-kind that lists the `fieldValidation`
//!   parameter makes it leave validation to the server, and one whose request
//!   body takes `application/strategic-merge-patch+json` makes `kubectl apply`
//!   send a strategic merge patch computed with the schema's merge keys;
//! - `/openapi/v2`: the same definitions in Swagger 2.0 form, as JSON.
//!   client-go asks for the protobuf encoding, which is not served: that
//!   request gets 406, and kubectl uses v3.
//!
//! The built-in kinds' documents are built once and kept as bytes; a
//! group-version with custom resources is built when asked for, with each
//! custom kind under kube-apiserver's name for it
//! (`com.example.stable.v1.CronTab` for stable.example.com/v1 CronTab).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};

use super::{schemas, Schemas, V3_REF};
use crate::discovery::MINOR;
use crate::registry::{self, Kind};

/// The built-in kinds' documents.
struct Builtin {
    v2: Bytes,
    /// "api/v1", "apis/apps/v1" → the document and its hash.
    v3: BTreeMap<String, (Bytes, String)>,
}

static BUILTIN: LazyLock<Builtin> = LazyLock::new(|| {
    let s = schemas();
    let all: Vec<&'static Kind> = registry::KINDS.iter().collect();
    let v3 = group_versions(&all)
        .into_iter()
        .map(|(path, kinds)| {
            let doc = Bytes::from(group_version(s, &kinds).to_string());
            let hash = hex_upper(&Sha512::digest(&doc));
            (path, (doc, hash))
        })
        .collect();
    Builtin {
        v2: Bytes::from(swagger(s, &[]).to_string()),
        v3,
    }
});

/// The kinds among `kinds` by the path of their group-version's document
/// ("api/v1", "apis/apps/v1"), core first, then groups as discovery lists
/// them.
fn group_versions(kinds: &[&'static Kind]) -> Vec<(String, Vec<&'static Kind>)> {
    let mut groups = vec![""];
    groups.extend(registry::groups(kinds));
    let mut out = Vec::new();
    for group in groups {
        for version in registry::versions(kinds, group) {
            let path = if group.is_empty() {
                format!("api/{version}")
            } else {
                format!("apis/{group}/{version}")
            };
            let members = kinds
                .iter()
                .copied()
                .filter(|k| k.group == group && k.version == version)
                .collect();
            out.push((path, members));
        }
    }
    out
}

/// The v3 document at `path` and its hash: built-in group-versions' as
/// built at start, others now.
fn v3_document(path: &str, kinds: &[&'static Kind]) -> (Bytes, String) {
    match BUILTIN.v3.get(path) {
        Some(built) if kinds.iter().all(|k| k.custom.is_none()) => built.clone(),
        _ => {
            let doc = Bytes::from(group_version(schemas(), kinds).to_string());
            let hash = hex_upper(&Sha512::digest(&doc));
            (doc, hash)
        }
    }
}

/// `/openapi/v3`: every group-version of `kinds` (the kinds served).
pub fn v3_index(kinds: &[&'static Kind]) -> Bytes {
    let mut index = Map::new();
    for (path, members) in group_versions(kinds) {
        let (_, hash) = v3_document(&path, &members);
        index.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
        );
    }
    Bytes::from(json!({ "paths": index }).to_string())
}

/// `/openapi/v3/<path>` ("apis/apps/v1"), if `kinds` has that group-version.
pub fn v3(kinds: &[&'static Kind], path: &str) -> Option<Bytes> {
    group_versions(kinds)
        .into_iter()
        .find(|(p, _)| p == path)
        .map(|(p, members)| v3_document(&p, &members).0)
}

/// `/openapi/v2`: the built-in definitions and those of the custom kinds
/// among `kinds`.
pub fn v2(kinds: &[&'static Kind]) -> Bytes {
    let custom: Vec<&'static Kind> = kinds
        .iter()
        .copied()
        .filter(|k| k.custom.is_some())
        .collect();
    if custom.is_empty() {
        BUILTIN.v2.clone()
    } else {
        Bytes::from(swagger(schemas(), &custom).to_string())
    }
}

/// kube-apiserver's definition name of a custom kind: the group's labels
/// reversed, the version, the kind.
fn custom_name(kind: &Kind) -> String {
    let mut group: Vec<&str> = kind.group.split('.').collect();
    group.reverse();
    format!("{}.{}.{}", group.join("."), kind.version, kind.kind)
}

/// A kind's definition name and schema, if it has one.
fn definition(s: &Schemas, kind: &Kind) -> Option<(String, Value)> {
    match kind.custom {
        Some(c) => Some((custom_name(kind), c.model.clone())),
        None => {
            let name = s.definition_of(kind)?;
            Some((name.to_string(), s.defs.get(name)?.clone()))
        }
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn info() -> Value {
    json!({"title": "Kubernetes", "version": format!("v1.{MINOR}.0")})
}

/// The names in `todo` and every definition they refer to, transitively.
fn closure(s: &Schemas, mut todo: Vec<String>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    while let Some(name) = todo.pop() {
        if seen.contains(&name) {
            continue;
        }
        if let Some(def) = s.defs.get(&name) {
            refs(def, &mut todo);
        }
        seen.push(name);
    }
    seen.sort();
    seen
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v.as_str().and_then(|r| r.strip_prefix(V3_REF))) {
                    ("$ref", Some(name)) => out.push(name.to_string()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// The v3 document of one group-version's `kinds`.
fn group_version(s: &Schemas, kinds: &[&'static Kind]) -> Value {
    let kinds: Vec<(&Kind, String, Value)> = kinds
        .iter()
        .filter_map(|k| definition(s, k).map(|(name, def)| (*k, name, def)))
        .collect();
    let mut components = Map::new();
    let mut referred = Vec::new();
    for (_, name, def) in &kinds {
        refs(def, &mut referred);
        components.insert(name.clone(), def.clone());
    }
    for name in closure(s, referred) {
        if let Some(d) = s.defs.get(&name) {
            components.insert(name, d.clone());
        }
    }
    let mut paths = Map::new();
    for (kind, def, _) in &kinds {
        let (collection, item) = kind_paths(kind);
        paths.insert(collection, collection_ops(kind, def));
        paths.insert(item, item_ops(kind, def));
    }
    json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": {"schemas": components},
    })
}

/// The collection and item paths of a kind.
fn kind_paths(kind: &Kind) -> (String, String) {
    let root = if kind.group.is_empty() {
        format!("/api/{}", kind.version)
    } else {
        format!("/apis/{}/{}", kind.group, kind.version)
    };
    let collection = if kind.namespaced {
        format!("{root}/namespaces/{{namespace}}/{}", kind.resource)
    } else {
        format!("{root}/{}", kind.resource)
    };
    let item = format!("{collection}/{{name}}");
    (collection, item)
}

fn query(name: &str, description: &str, ty: &str) -> Value {
    json!({"name": name, "in": "query", "description": description,
           "schema": {"type": ty, "uniqueItems": true}})
}

fn dry_run() -> Value {
    query(
        "dryRun",
        "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
        "string",
    )
}

fn field_manager() -> Value {
    query(
        "fieldManager",
        "fieldManager is a name associated with the actor or entity that is making these changes.",
        "string",
    )
}

fn field_validation() -> Value {
    query(
        "fieldValidation",
        "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict",
        "string",
    )
}

fn gvk(kind: &Kind) -> Value {
    json!({"group": kind.group, "version": kind.version, "kind": kind.kind})
}

fn reply(def: &str) -> Value {
    json!({"content": {"application/json": {"schema": {"$ref": format!("{V3_REF}{def}")}}},
           "description": "OK"})
}

/// A name for an operation in kube-apiserver's style:
/// `patchAppsV1NamespacedDeployment`.
fn operation_id(verb: &str, kind: &Kind) -> String {
    let mut group = String::new();
    for part in kind.group.split('.').take(1) {
        let mut c = part.chars();
        if let Some(f) = c.next() {
            group.push(f.to_ascii_uppercase());
            group.push_str(c.as_str());
        }
    }
    let version = {
        let mut c = kind.version.chars();
        c.next()
            .map(|f| format!("{}{}", f.to_ascii_uppercase(), c.as_str()))
            .unwrap_or_default()
    };
    let scope = if kind.namespaced { "Namespaced" } else { "" };
    let core = if kind.group.is_empty() { "Core" } else { "" };
    format!("{verb}{core}{group}{version}{scope}{}", kind.kind)
}

/// One operation. `verb` names it (`patchAppsV1NamespacedDeployment`),
/// `action` is its x-kubernetes-action.
struct Op<'a> {
    action: &'a str,
    verb: &'a str,
    description: String,
    parameters: Vec<Value>,
    body: Option<Value>,
    responses: Value,
}

impl Op<'_> {
    fn build(self, kind: &Kind) -> Value {
        let mut m = Map::new();
        m.insert("description".into(), json!(self.description));
        m.insert("operationId".into(), json!(operation_id(self.verb, kind)));
        if !self.parameters.is_empty() {
            m.insert("parameters".into(), Value::Array(self.parameters));
        }
        if let Some(b) = self.body {
            m.insert("requestBody".into(), b);
        }
        m.insert("responses".into(), self.responses);
        m.insert("x-kubernetes-action".into(), json!(self.action));
        m.insert("x-kubernetes-group-version-kind".into(), gvk(kind));
        Value::Object(m)
    }
}

fn path_parameters(kind: &Kind, item: bool) -> Value {
    let mut params = Vec::new();
    if item {
        params.push(json!({"name": "name", "in": "path", "required": true,
            "description": format!("name of the {}", kind.kind), "schema": {"type": "string", "uniqueItems": true}}));
    }
    if kind.namespaced {
        params.push(json!({"name": "namespace", "in": "path", "required": true,
            "description": "object name and auth scope, such as for teams and projects",
            "schema": {"type": "string", "uniqueItems": true}}));
    }
    Value::Array(params)
}

/// A request body of the given media types, each with `schema`.
fn body(types: &[&str], schema: Value) -> Value {
    let content: Map<String, Value> = types
        .iter()
        .map(|t| (t.to_string(), json!({ "schema": schema })))
        .collect();
    json!({"content": content, "required": true})
}

fn collection_ops(kind: &Kind, def: &str) -> Value {
    let whole = json!({"$ref": format!("{V3_REF}{def}")});
    let list = Op {
        action: "list",
        verb: "list",
        description: format!("list or watch objects of kind {}", kind.kind),
        parameters: Vec::new(),
        body: None,
        responses: json!({"200": {"description": "OK"}}),
    };
    let post = Op {
        action: "post",
        verb: "create",
        description: format!("create a {}", kind.kind),
        parameters: vec![dry_run(), field_manager(), field_validation()],
        body: Some(body(&["application/json"], whole)),
        responses: json!({"200": reply(def), "201": reply(def)}),
    };
    json!({"get": list.build(kind), "post": post.build(kind),
           "parameters": path_parameters(kind, false)})
}

/// The patch media types of `kind`: custom resources take no strategic
/// merge patch (so `kubectl apply` sends them merge patches).
fn patch_types(kind: &Kind) -> &'static [&'static str] {
    const ALL: &[&str] = &[
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    ];
    match kind.custom {
        Some(_) => &ALL[..3],
        None => ALL,
    }
}

fn item_ops(kind: &Kind, def: &str) -> Value {
    let whole = json!({"$ref": format!("{V3_REF}{def}")});
    let force = query(
        "force",
        "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people.",
        "boolean",
    );
    let ops = [
        Op {
            action: "get",
            verb: "read",
            description: format!("read the specified {}", kind.kind),
            parameters: Vec::new(),
            body: None,
            responses: json!({"200": reply(def)}),
        },
        Op {
            action: "put",
            verb: "replace",
            description: format!("replace the specified {}", kind.kind),
            parameters: vec![dry_run(), field_manager(), field_validation()],
            body: Some(body(&["application/json"], whole)),
            responses: json!({"200": reply(def), "201": reply(def)}),
        },
        Op {
            action: "patch",
            verb: "patch",
            description: format!("partially update the specified {}", kind.kind),
            parameters: vec![dry_run(), field_manager(), field_validation(), force],
            body: Some(body(patch_types(kind), json!({"type": "object"}))),
            responses: json!({"200": reply(def), "201": reply(def)}),
        },
        Op {
            action: "delete",
            verb: "delete",
            description: format!("delete a {}", kind.kind),
            parameters: vec![dry_run()],
            body: None,
            responses: json!({"200": {"description": "OK"}}),
        },
    ];
    let mut m = Map::new();
    for op in ops {
        let method = match op.action {
            "get" => "get",
            "put" => "put",
            "patch" => "patch",
            _ => "delete",
        };
        m.insert(method.into(), op.build(kind));
    }
    m.insert("parameters".into(), path_parameters(kind, true));
    Value::Object(m)
}

/// Swagger 2.0: the same definitions (those of the built-in kinds and of
/// `custom`), referred to under #/definitions/.
fn swagger(s: &Schemas, custom: &[&'static Kind]) -> Value {
    let mut defs = s.defs.clone();
    defs.extend(custom.iter().filter_map(|k| definition(s, k)));
    let mut defs = Value::Object(defs);
    rebase_refs(&mut defs);
    json!({"swagger": "2.0", "info": info(), "paths": {}, "definitions": defs})
}

fn rebase_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                match v {
                    Value::String(r) if k == "$ref" => {
                        if let Some(name) = r.strip_prefix(V3_REF) {
                            *r = format!("#/definitions/{name}");
                        }
                    }
                    _ => rebase_refs(v),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(rebase_refs),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> Vec<&'static Kind> {
        registry::KINDS.iter().collect()
    }

    fn doc(path: &str) -> Value {
        serde_json::from_slice(&v3(&builtin(), path).unwrap()).unwrap()
    }

    #[test]
    fn the_index_names_each_group_version_with_a_hash() {
        let index: Value = serde_json::from_slice(&v3_index(&builtin())).unwrap();
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
        assert_eq!(url.len(), "/openapi/v3/apis/apps/v1?hash=".len() + 128);
        assert!(index["paths"]["api/v1"].is_object());
        assert!(index["paths"]["apis/discovery.k8s.io/v1"].is_object());
    }

    #[test]
    fn a_group_version_document_has_its_kinds_and_their_patch_operations() {
        let d = doc("apis/apps/v1");
        let schemas = &d["components"]["schemas"];
        let deploy = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deploy["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        // Everything it refers to is in the document.
        assert!(schemas["io.k8s.api.core.v1.Container"].is_object());
        assert!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        let patch = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(
            patch["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object()
        );
        let params: Vec<&str> = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(params.contains(&"fieldValidation") && params.contains(&"force"));
        // A cluster-scoped kind's paths have no namespace.
        let core = doc("api/v1");
        assert!(core["paths"]["/api/v1/nodes/{name}"]["patch"].is_object());
        assert!(core["paths"]["/api/v1/namespaces/{namespace}/pods"]["post"].is_object());
    }

    #[test]
    fn swagger_refers_to_its_definitions() {
        let v2: Value = serde_json::from_slice(&v2(&builtin())).unwrap();
        let meta = &v2["definitions"]["io.k8s.api.apps.v1.Deployment"]["properties"]["metadata"];
        assert_eq!(
            meta["allOf"][0]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert_eq!(v2["swagger"], "2.0");
    }

    #[test]
    fn custom_resources_are_published_in_their_group_version() {
        let mut kinds = builtin();
        kinds.extend(crate::crd::kinds(&crate::crd::tests::crontab()));
        let index: Value = serde_json::from_slice(&v3_index(&kinds)).unwrap();
        let url = index["paths"]["apis/stable.example.com/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/stable.example.com/v1?hash="));
        assert!(index["paths"]["apis/stable.example.com/v1beta1"].is_object());
        // Built-in group-versions keep the document (and hash) built at start.
        assert_eq!(
            index["paths"]["apis/apps/v1"],
            serde_json::from_slice::<Value>(&v3_index(&builtin())).unwrap()["paths"]
                ["apis/apps/v1"]
        );
        let d: Value =
            serde_json::from_slice(&v3(&kinds, "apis/stable.example.com/v1").unwrap()).unwrap();
        let schemas = &d["components"]["schemas"];
        let crontab = &schemas["com.example.stable.v1.CronTab"];
        assert_eq!(
            crontab["x-kubernetes-group-version-kind"][0],
            json!({"group": "stable.example.com", "version": "v1", "kind": "CronTab"})
        );
        assert_eq!(
            crontab["properties"]["spec"]["properties"]["cronSpec"]["type"],
            "string"
        );
        assert_eq!(
            crontab["properties"]["metadata"]["allOf"][0]["$ref"],
            format!("{V3_REF}io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        );
        assert!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
        let patch = &d["paths"]
            ["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "CronTab");
        let content = &patch["requestBody"]["content"];
        assert!(content["application/apply-patch+yaml"].is_object());
        assert!(content["application/strategic-merge-patch+json"].is_null());
        let v2: Value = serde_json::from_slice(&v2(&kinds)).unwrap();
        assert!(v2["definitions"]["com.example.stable.v1.CronTab"].is_object());
    }
}
