//! The kinds' schemas. The built-in kinds' are built once (on first use)
//! from k8s-openapi's schemars impls, with the struct tags kube-apiserver's
//! OpenAPI carries added from [`tags`]; a custom resource's is its CRD's
//! schema as [`custom_model`] completes it, carried by its registry row.
//! One set of definitions serves three readers: the OpenAPI documents
//! ([`openapi`]), strategic merge patch and server-side apply (through
//! [`Shape`], which tells a field's patch strategy, merge key and list type),
//! and fieldValidation ([`validate`]).

pub mod openapi;
mod tags;
pub mod validate;

use std::sync::LazyLock;

use k8s_openapi::api::{apps, batch, coordination, core, discovery};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::registry::{self, Kind};

/// Where definitions live in OpenAPI v3 documents (and in `$ref`s).
pub const V3_REF: &str = "#/components/schemas/";

/// A kind as (group, version, kind).
type Gvk = (&'static str, &'static str, &'static str);

fn gvk(kind: &Kind) -> Gvk {
    (kind.group, kind.version, kind.kind)
}

pub struct Schemas {
    /// Every definition by OpenAPI name, `$ref`s pointing at [`V3_REF`].
    defs: Map<String, Value>,
    /// Each built-in kind's definition name.
    kinds: Vec<(Gvk, String)>,
}

static SCHEMAS: LazyLock<Schemas> = LazyLock::new(Schemas::build);

/// The schemas, built on first use.
pub fn schemas() -> &'static Schemas {
    &SCHEMAS
}

/// Adds `T`'s definition (and every one it refers to); returns its name.
fn def<T: JsonSchema>(gen: &mut SchemaGenerator) -> String {
    gen.subschema_for::<T>();
    T::schema_name().into_owned()
}

/// The k8s-openapi type of a built-in kind.
fn generate(gen: &mut SchemaGenerator, kind: Gvk) -> Option<String> {
    Some(match kind {
        ("", "v1", "Namespace") => def::<core::v1::Namespace>(gen),
        ("", "v1", "Pod") => def::<core::v1::Pod>(gen),
        ("", "v1", "Service") => def::<core::v1::Service>(gen),
        ("", "v1", "Endpoints") => def::<core::v1::Endpoints>(gen),
        ("", "v1", "ConfigMap") => def::<core::v1::ConfigMap>(gen),
        ("", "v1", "Secret") => def::<core::v1::Secret>(gen),
        ("", "v1", "Node") => def::<core::v1::Node>(gen),
        ("", "v1", "Event") => def::<core::v1::Event>(gen),
        ("", "v1", "ServiceAccount") => def::<core::v1::ServiceAccount>(gen),
        ("", "v1", "PersistentVolume") => def::<core::v1::PersistentVolume>(gen),
        ("", "v1", "PersistentVolumeClaim") => def::<core::v1::PersistentVolumeClaim>(gen),
        ("apps", "v1", "Deployment") => def::<apps::v1::Deployment>(gen),
        ("apps", "v1", "ReplicaSet") => def::<apps::v1::ReplicaSet>(gen),
        ("apps", "v1", "StatefulSet") => def::<apps::v1::StatefulSet>(gen),
        ("apps", "v1", "DaemonSet") => def::<apps::v1::DaemonSet>(gen),
        ("batch", "v1", "Job") => def::<batch::v1::Job>(gen),
        ("batch", "v1", "CronJob") => def::<batch::v1::CronJob>(gen),
        ("coordination.k8s.io", "v1", "Lease") => def::<coordination::v1::Lease>(gen),
        ("discovery.k8s.io", "v1", "EndpointSlice") => def::<discovery::v1::EndpointSlice>(gen),
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => {
            def::<apiextensions::v1::CustomResourceDefinition>(gen)
        }
        _ => return None,
    })
}

impl Schemas {
    fn build() -> Self {
        let mut gen = SchemaSettings::openapi3()
            .with(|s| s.meta_schema = None)
            .into_generator();
        let kinds: Vec<(Gvk, String)> = registry::KINDS
            .iter()
            .filter_map(|k| generate(&mut gen, gvk(k)).map(|name| (gvk(k), name)))
            .collect();
        let mut defs = gen.take_definitions(true);
        tags::attach(&mut defs);
        for ((group, version, kind), name) in &kinds {
            if let Some(d) = defs.get_mut(name).and_then(Value::as_object_mut) {
                d.insert(
                    "x-kubernetes-group-version-kind".into(),
                    json!([{"group": group, "version": version, "kind": kind}]),
                );
            }
        }
        Schemas { defs, kinds }
    }

    pub fn definitions(&self) -> &Map<String, Value> {
        &self.defs
    }

    /// The definition name of a built-in kind, if it has a schema (custom
    /// kinds' schemas are not among the definitions: see [`custom_model`]).
    pub fn definition_of(&self, kind: &Kind) -> Option<&str> {
        if kind.custom.is_some() {
            return None;
        }
        self.kinds
            .iter()
            .find(|(k, _)| *k == gvk(kind))
            .map(|(_, n)| n.as_str())
    }

    /// The schema of a whole object of `kind`.
    pub fn root(&self, kind: &Kind) -> Option<Shape<'_>> {
        let node = match kind.custom {
            Some(custom) => &custom.model,
            None => self.defs.get(self.definition_of(kind)?)?,
        };
        Some(Shape {
            schemas: self,
            node,
        })
    }

    /// The declarations of apiVersion, kind and metadata every kind shares
    /// (taken from Namespace's definition).
    fn object_fields(&self) -> Option<&Map<String, Value>> {
        let name = self.definition_of(registry::namespaces())?;
        self.defs.get(name)?.get("properties")?.as_object()
    }

    /// The schema at `path` (field names; lists are stepped through to their
    /// items) in an object of `kind`: the lookup strategic merge patch and
    /// server-side apply make, e.g. `["spec", "template", "spec",
    /// "containers"]` of a Deployment is a list merged by `name`.
    pub fn lookup(&self, kind: &Kind, path: &[&str]) -> Option<Shape<'_>> {
        let mut at = self.root(kind)?;
        for field in path {
            at = at.field(field)?;
        }
        Some(at)
    }
}

/// The schema of a custom resource's version, as the OpenAPI documents
/// publish it and as server-side apply reads it (kube-apiserver's CRD
/// OpenAPI builder): the CRD's openAPIV3Schema with apiVersion, kind and
/// metadata (ObjectMeta) declared as on every built-in kind, tagged with its
/// group-version-kind. Patch strategies are not custom resources' (they have
/// no strategic merge patch) and are dropped, so that their lists merge by
/// x-kubernetes-list-type alone: a list without one is atomic.
pub fn custom_model(group: &str, version: &str, kind: &str, schema: &Value) -> Value {
    let mut model = schema.clone();
    drop_patch_strategies(&mut model);
    if !model.is_object() {
        model = json!({"type": "object"});
    }
    if !model.get("properties").is_some_and(Value::is_object) {
        model["properties"] = json!({});
    }
    if let (Some(props), Some(common)) = (
        model["properties"].as_object_mut(),
        schemas().object_fields(),
    ) {
        for field in ["apiVersion", "kind", "metadata"] {
            if let Some(v) = common.get(field) {
                props.insert(field.into(), v.clone());
            }
        }
    }
    model["x-kubernetes-group-version-kind"] =
        json!([{"group": group, "version": version, "kind": kind}]);
    model
}

fn drop_patch_strategies(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("x-kubernetes-patch-strategy");
            m.remove("x-kubernetes-patch-merge-key");
            m.values_mut().for_each(drop_patch_strategies);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_patch_strategies),
        _ => {}
    }
}

/// How a list merges, from its field's tags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListMeta<'a> {
    /// x-kubernetes-patch-strategy, split at commas: "merge", "retainKeys",
    /// "replace".
    pub patch_strategy: Vec<&'a str>,
    /// x-kubernetes-patch-merge-key.
    pub merge_key: Option<&'a str>,
    /// x-kubernetes-list-type: "atomic", "set" or "map".
    pub list_type: Option<&'a str>,
    /// x-kubernetes-list-map-keys.
    pub map_keys: Vec<&'a str>,
}

impl ListMeta<'_> {
    pub fn merges(&self) -> bool {
        self.patch_strategy.contains(&"merge")
    }

    pub fn retains_keys(&self) -> bool {
        self.patch_strategy.contains(&"retainKeys")
    }
}

/// One place in a schema: a field's own schema (with its tags) and what it
/// refers to. Cheap to copy.
#[derive(Clone, Copy)]
pub struct Shape<'a> {
    schemas: &'a Schemas,
    node: &'a Value,
}

impl<'a> Shape<'a> {
    fn at(&self, node: &'a Value) -> Shape<'a> {
        Shape {
            schemas: self.schemas,
            node,
        }
    }

    /// The definition this node names through `$ref` (alone or as the one
    /// entry of `allOf`), else the node itself.
    fn resolved(&self) -> &'a Value {
        let mut node = self.node;
        for _ in 0..8 {
            let reference = node.get("$ref").or_else(|| {
                node.get("allOf")
                    .and_then(Value::as_array)
                    .filter(|a| a.len() == 1)
                    .and_then(|a| a[0].get("$ref"))
            });
            let Some(name) = reference
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix(V3_REF))
            else {
                break;
            };
            match self.schemas.defs.get(name) {
                Some(d) => node = d,
                None => break,
            }
        }
        node
    }

    fn ext(&self, key: &str) -> Option<&'a str> {
        self.node
            .get(key)
            .or_else(|| self.resolved().get(key))
            .and_then(Value::as_str)
    }

    /// The schema's type ("object", "array", "string", ...), if it says.
    pub fn type_name(&self) -> Option<&'a str> {
        self.resolved().get("type").and_then(Value::as_str)
    }

    pub fn is_list(&self) -> bool {
        self.type_name() == Some("array")
    }

    /// The declared fields of an object, if it declares any.
    pub fn properties(&self) -> Option<&'a Map<String, Value>> {
        self.resolved().get("properties").and_then(Value::as_object)
    }

    /// A field of an object: a declared property, or a map's value schema.
    /// On a list, the field of its items.
    pub fn field(&self, name: &str) -> Option<Shape<'a>> {
        if self.is_list() {
            return self.items()?.field(name);
        }
        let node = self.resolved();
        if let Some(p) = node.get("properties").and_then(|p| p.get(name)) {
            return Some(self.at(p));
        }
        node.get("additionalProperties")
            .filter(|a| a.is_object())
            .map(|a| self.at(a))
    }

    /// Whether an object's schema lists `name` as required.
    pub fn required(&self, name: &str) -> bool {
        self.resolved()
            .get("required")
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|f| f == name))
    }

    /// A list's item schema.
    pub fn items(&self) -> Option<Shape<'a>> {
        self.resolved().get("items").map(|i| self.at(i))
    }

    /// A map (additionalProperties) rather than a struct.
    pub fn is_map(&self) -> bool {
        let node = self.resolved();
        node.get("properties").is_none() && node.get("additionalProperties").is_some()
    }

    /// Anything goes: no declared fields nor value schema (RawExtension,
    /// JSON, x-kubernetes-preserve-unknown-fields).
    pub fn open(&self) -> bool {
        let node = self.resolved();
        node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
            || (node.get("properties").is_none()
                && node.get("additionalProperties").is_none()
                && node.get("items").is_none()
                && matches!(
                    node.get("type").and_then(Value::as_str),
                    None | Some("object")
                ))
    }

    /// x-kubernetes-map-type atomic: replaced whole by apply.
    pub fn atomic_map(&self) -> bool {
        self.ext("x-kubernetes-map-type") == Some("atomic")
    }

    /// The list tags of this field.
    pub fn list(&self) -> ListMeta<'a> {
        let keys = self
            .node
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        ListMeta {
            patch_strategy: self
                .ext("x-kubernetes-patch-strategy")
                .map(|s| s.split(',').collect())
                .unwrap_or_default(),
            merge_key: self.ext("x-kubernetes-patch-merge-key"),
            list_type: self.ext("x-kubernetes-list-type"),
            map_keys: keys,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    #[test]
    fn a_deployments_containers_merge_by_name() {
        let d = find("apps", "v1", "deployments").unwrap();
        let s = schemas();
        let containers = s
            .lookup(d, &["spec", "template", "spec", "containers"])
            .unwrap();
        assert!(containers.is_list());
        let meta = containers.list();
        assert!(meta.merges());
        assert_eq!(meta.merge_key, Some("name"));
        assert_eq!((meta.list_type, meta.map_keys), (Some("map"), vec!["name"]));
        // Through the list to its items' fields.
        let ports = s
            .lookup(d, &["spec", "template", "spec", "containers", "ports"])
            .unwrap()
            .list();
        assert_eq!(ports.merge_key, Some("containerPort"));
        assert_eq!(ports.map_keys, vec!["containerPort", "protocol"]);
        let volumes = s
            .lookup(d, &["spec", "template", "spec", "volumes"])
            .unwrap();
        assert!(volumes.list().retains_keys());
        let tolerations = s
            .lookup(d, &["spec", "template", "spec", "tolerations"])
            .unwrap()
            .list();
        assert!(!tolerations.merges());
        assert_eq!(tolerations.list_type, Some("atomic"));
        let strategy = s.lookup(d, &["spec", "strategy"]).unwrap().list();
        assert_eq!(strategy.patch_strategy, vec!["retainKeys"]);
    }

    #[test]
    fn metadata_and_maps() {
        let cm = find("", "v1", "configmaps").unwrap();
        let s = schemas();
        let fin = s.lookup(cm, &["metadata", "finalizers"]).unwrap().list();
        assert!(fin.merges());
        assert_eq!(fin.list_type, Some("set"));
        let labels = s.lookup(cm, &["metadata", "labels"]).unwrap();
        assert!(labels.is_map());
        assert_eq!(labels.field("app").unwrap().type_name(), Some("string"));
        let owners = s
            .lookup(cm, &["metadata", "ownerReferences"])
            .unwrap()
            .list();
        assert_eq!(owners.merge_key, Some("uid"));
        assert!(s.lookup(cm, &["data", "x"]).is_some());
        assert!(s.lookup(cm, &["nope"]).is_none());
    }

    #[test]
    fn inlined_structs_carry_their_tags_and_atomic_structs_are_marked() {
        let pod = find("", "v1", "pods").unwrap();
        let s = schemas();
        let env = s
            .lookup(pod, &["spec", "ephemeralContainers", "env"])
            .unwrap()
            .list();
        assert_eq!(env.merge_key, Some("name"));
        let selector = s
            .lookup(
                find("apps", "v1", "deployments").unwrap(),
                &["spec", "selector"],
            )
            .unwrap();
        assert!(selector.atomic_map());
    }

    #[test]
    fn every_kind_has_a_schema_tagged_with_its_group_version_kind() {
        let s = schemas();
        for kind in registry::KINDS {
            let name = s
                .definition_of(kind)
                .unwrap_or_else(|| panic!("{}", kind.kind));
            let gvk = &s.defs[name]["x-kubernetes-group-version-kind"][0];
            assert_eq!(
                (gvk["group"].as_str(), gvk["kind"].as_str()),
                (Some(kind.group), Some(kind.kind))
            );
        }
    }
}
