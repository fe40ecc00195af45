//! CustomResourceDefinitions as data (reference: kubernetes-apiserver.md §9):
//! what a CRD object must hold and what create fills in, the registry rows
//! of its served versions, and how a custom resource is read and written
//! (apiVersion of the version asked for, pruning, defaulting, validation).
//! The CRDs' life cycle (status conditions, refreshing the registry,
//! removing the custom resources of a deleted CRD) is `rest::crds`.
//!
//! A custom kind is a [`Kind`] row like the built-in ones, so every verb
//! serves it unchanged. Rows are `&'static` because the REST layer and the
//! errors borrow them for the whole request; a CRD's rows are interned: one
//! allocation per distinct definition for the life of the process, reused
//! when the same definition is seen again (bounded by the definitions a
//! cluster goes through, a few KiB each).

pub mod schema;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde_json::{json, Value};

use crate::error::{ApiError, Cause};
use crate::registry::{self, Kind, NameRule, StatusOnCreate};

pub const GROUP: &str = "apiextensions.k8s.io";
/// The finalizer a CRD's deletion waits on until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// What a custom resource's kind carries besides its registry row.
#[derive(Debug, PartialEq, Eq)]
pub struct Custom {
    /// The version objects are stored as (apiVersion in etcd).
    pub storage_version: String,
    /// This version's openAPIV3Schema.
    pub schema: Value,
    /// The same completed as an object's schema (`schema::custom_model`):
    /// what the OpenAPI documents, server-side apply and managedFields read.
    pub model: Value,
    /// additionalPrinterColumns of this version.
    pub columns: Vec<Column>,
    /// subresources.scale, when declared.
    pub scale: Option<ScalePaths>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// string, integer, number, boolean or date.
    pub kind: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// Where /scale reads and writes, as JSON paths (".spec.replicas").
#[derive(Debug, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

fn leak_list(v: Option<&Value>) -> &'static [&'static str] {
    let items: Vec<&'static str> = v
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(leak).collect())
        .unwrap_or_default();
    Box::leak(items.into_boxed_slice())
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Sort key of Kubernetes version names: GA before beta before alpha, then
/// the higher major and minor first; names not of that form last, by name.
pub fn version_priority(v: &str) -> (u8, u8, i64, i64, String) {
    let parse = || -> Option<(i64, u8, i64)> {
        let rest = v.strip_prefix('v')?;
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let major: i64 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        if tail.is_empty() {
            return Some((major, 0, 0));
        }
        let (stage, minor) = if let Some(m) = tail.strip_prefix("beta") {
            (1, m)
        } else if let Some(m) = tail.strip_prefix("alpha") {
            (2, m)
        } else {
            return None;
        };
        Some((major, stage, minor.parse().ok()?))
    };
    match parse() {
        Some((major, stage, minor)) => (0, stage, -major, -minor, String::new()),
        None => (1, 0, 0, 0, v.to_string()),
    }
}

/// The registry rows of `crd`'s served versions, sorted by version priority.
pub fn kinds(crd: &Value) -> Vec<&'static Kind> {
    static INTERNED: OnceLock<Mutex<HashMap<String, &'static Kind>>> = OnceLock::new();
    let Some(spec) = crd.get("spec") else {
        return Vec::new();
    };
    let storage = spec
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .map(|v| str_at(v, "/name").to_string())
        .unwrap_or_default();
    let mut out: Vec<&'static Kind> = Vec::new();
    for version in spec
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if version.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let key = json!([spec, version, storage]).to_string();
        let mut interned = INTERNED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let kind = *interned
            .entry(key)
            .or_insert_with(|| Box::leak(Box::new(row(spec, version, &storage))));
        out.push(kind);
    }
    out.sort_by_key(|k| version_priority(k.version));
    out
}

/// One served version as a registry row.
fn row(spec: &Value, version: &Value, storage: &str) -> Kind {
    let group = str_at(spec, "/group");
    let plural = str_at(spec, "/names/plural");
    let kind = str_at(spec, "/names/kind");
    let singular = match str_at(spec, "/names/singular") {
        "" => kind.to_ascii_lowercase(),
        s => s.to_string(),
    };
    let subresources = version.get("subresources");
    let status = subresources.and_then(|s| s.get("status")).is_some();
    let scale = subresources
        .and_then(|s| s.get("scale"))
        .map(|s| ScalePaths {
            spec_replicas: str_at(s, "/specReplicasPath").to_string(),
            status_replicas: str_at(s, "/statusReplicasPath").to_string(),
            label_selector: s
                .get("labelSelectorPath")
                .and_then(Value::as_str)
                .map(String::from),
        });
    let columns = version
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| Column {
            name: str_at(c, "/name").to_string(),
            kind: str_at(c, "/type").to_string(),
            format: str_at(c, "/format").to_string(),
            description: str_at(c, "/description").to_string(),
            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
            json_path: str_at(c, "/jsonPath").to_string(),
        })
        .collect();
    let schema = version
        .pointer("/schema/openAPIV3Schema")
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    let version_name = str_at(version, "/name");
    let custom = Custom {
        storage_version: storage.to_string(),
        model: crate::schema::custom_model(group, version_name, kind, &schema),
        schema,
        columns,
        scale,
    };
    Kind {
        group: leak(group),
        version: leak(version_name),
        resource: leak(plural),
        singular: leak(&singular),
        kind: leak(kind),
        namespaced: str_at(spec, "/scope") == "Namespaced",
        short_names: leak_list(spec.pointer("/names/shortNames")),
        categories: leak_list(spec.pointer("/names/categories")),
        storage: Some(leak(&format!("{group}/{plural}"))),
        status,
        scale: custom.scale.is_some(),
        // Custom resources always count generations.
        generation: true,
        status_on_create: if status {
            StatusOnCreate::Clear
        } else {
            StatusOnCreate::Keep
        },
        names: NameRule::Subdomain,
        delete_returns_object: false,
        graceful: false,
        fields: &[],
        custom: Some(Box::leak(Box::new(custom))),
    }
}

/// A JSON path of a CRD (".spec.replicas") as a JSON pointer ("/spec/replicas").
pub fn pointer(path: &str) -> String {
    path.split('.')
        .filter(|p| !p.is_empty())
        .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// A custom resource read from the store (or about to be answered) as
/// `kind`'s version serves it: that apiVersion (conversion None), unknown
/// fields pruned, defaults applied. Built-in kinds are left as they are.
pub fn serve(kind: &Kind, obj: &mut Value) {
    let Some(custom) = kind.custom else { return };
    if obj.is_object() {
        obj["apiVersion"] = json!(kind.api_version());
    }
    schema::prune(&custom.schema, obj, true);
    schema::default(&custom.schema, obj);
}

/// The form a custom resource is stored in: apiVersion of the storage
/// version. Built-in kinds are stored as served.
pub fn stored(kind: &Kind, obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(custom) = kind.custom {
        if out.is_object() {
            out["apiVersion"] = json!(format!("{}/{}", kind.group, custom.storage_version));
        }
    }
    out
}

/// What a create or update must pass before it is written: a custom
/// resource is pruned, defaulted and validated against its schema; a CRD is
/// defaulted and checked as kube-apiserver checks definitions.
pub fn admit(kind: &Kind, obj: &mut Value) -> Result<(), ApiError> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let causes = if let Some(custom) = kind.custom {
        serve(kind, obj);
        schema::validate(&custom.schema, obj)
    } else if std::ptr::eq(kind, registry::crds()) {
        default_definition(obj);
        check_definition(obj)
    } else {
        return Ok(());
    };
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(kind, &name, causes))
    }
}

/// What kube-apiserver fills in on a CRD: singular, listKind, the
/// conversion strategy.
fn default_definition(crd: &mut Value) {
    let Some(spec) = crd.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    let kind = str_at(spec, "/names/kind").to_string();
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        if !kind.is_empty() {
            names
                .entry("singular")
                .or_insert_with(|| json!(kind.to_ascii_lowercase()));
            names
                .entry("listKind")
                .or_insert_with(|| json!(format!("{kind}List")));
        }
    }
    if spec.get("conversion").is_none() {
        spec["conversion"] = json!({"strategy": "None"});
    }
}

fn required(field: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired",
        field: field.to_string(),
        message: "Required value".into(),
    }
}

fn invalid(field: &str, value: &Value, why: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field: field.to_string(),
        message: format!("Invalid value: {value}: {why}"),
    }
}

/// kube-apiserver's checks of a v1 CRD that this server relies on.
fn check_definition(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let group = str_at(&spec, "/group");
    let plural = str_at(&spec, "/names/plural");
    let name = str_at(crd, "/metadata/name");
    if name != format!("{plural}.{group}") {
        causes.push(invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if group.is_empty() {
        causes.push(required("spec.group"));
    } else if !group.contains('.') {
        causes.push(invalid(
            "spec.group",
            &json!(group),
            "should be a domain with at least one dot",
        ));
    }
    for (field, value) in [
        ("plural", plural),
        ("singular", str_at(&spec, "/names/singular")),
    ] {
        if !value.is_empty() && !crate::names::check(NameRule::Label, value).is_empty() {
            causes.push(invalid(
                &format!("spec.names.{field}"),
                &json!(value),
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ));
        }
    }
    if plural.is_empty() {
        causes.push(required("spec.names.plural"));
    }
    if str_at(&spec, "/names/kind").is_empty() {
        causes.push(required("spec.names.kind"));
    }
    match str_at(&spec, "/scope") {
        "Namespaced" | "Cluster" => {}
        "" => causes.push(required("spec.scope")),
        other => causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: "spec.scope".into(),
            message: format!(
                "Unsupported value: {}: supported values: \"Cluster\", \"Namespaced\"",
                json!(other)
            ),
        }),
    }
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(invalid(
            "spec.versions",
            &json!([]),
            "must have exactly one version marked as storage version",
        ));
    } else {
        let storage = versions
            .iter()
            .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .count();
        if storage != 1 {
            causes.push(invalid(
                "spec.versions",
                &Value::Array(versions.clone()),
                "must have exactly one version marked as storage version",
            ));
        }
        if !versions
            .iter()
            .any(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        {
            causes.push(invalid(
                "spec.versions",
                &Value::Array(versions.clone()),
                "must have at least one version marked as served",
            ));
        }
    }
    for (i, v) in versions.iter().enumerate() {
        let at = format!("spec.versions[{i}]");
        if str_at(v, "/name").is_empty() {
            causes.push(required(&format!("{at}.name")));
        }
        match v.pointer("/schema/openAPIV3Schema") {
            None => causes.push(Cause {
                reason: "FieldValueRequired",
                field: format!("{at}.schema.openAPIV3Schema"),
                message: "Required value: schemas are required".into(),
            }),
            Some(s) => causes.extend(schema::structural(
                s,
                &format!("{at}.schema.openAPIV3Schema"),
                true,
            )),
        }
        if let Some(scale) = v.pointer("/subresources/scale") {
            for field in ["specReplicasPath", "statusReplicasPath"] {
                let path = str_at(scale, &format!("/{field}"));
                if !path.starts_with('.') || path.len() < 2 {
                    causes.push(invalid(
                        &format!("{at}.subresources.scale.{field}"),
                        &json!(path),
                        "should be a JSON path under .spec or .status",
                    ));
                }
            }
        }
    }
    causes
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A CRD of two versions: v1beta1 keeps unknown fields, v1 has a schema,
    /// status and scale (also used by the schema module's tests).
    pub(crate) fn crontab() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {
                "group": "stable.example.com",
                "scope": "Namespaced",
                "names": {"plural": "crontabs", "kind": "CronTab", "shortNames": ["ct"]},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object",
                        "x-kubernetes-preserve-unknown-fields": true}}},
                    {"name": "v1", "served": true, "storage": true,
                     "subresources": {"status": {}, "scale": {
                        "specReplicasPath": ".spec.replicas",
                        "statusReplicasPath": ".status.replicas"}},
                     "additionalPrinterColumns": [
                        {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"}],
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {
                            "cronSpec": {"type": "string"},
                            "replicas": {"type": "integer", "default": 1}}},
                        "status": {"type": "object", "properties": {
                            "replicas": {"type": "integer"}}}}}}}
                ]
            }
        })
    }

    #[test]
    fn served_versions_become_rows_preferred_first() {
        let ks = kinds(&crontab());
        let versions: Vec<&str> = ks.iter().map(|k| k.version).collect();
        assert_eq!(versions, ["v1", "v1beta1"]);
        let v1 = ks[0];
        assert_eq!(
            (v1.group, v1.resource, v1.kind, v1.singular),
            ("stable.example.com", "crontabs", "CronTab", "crontab")
        );
        assert!(v1.namespaced && v1.status && v1.scale && v1.generation);
        assert_eq!(v1.storage_segment(), "stable.example.com/crontabs");
        assert_eq!(v1.short_names, ["ct"]);
        assert_eq!(v1.custom.unwrap().columns[0].json_path, ".spec.cronSpec");
        assert!(!ks[1].status, "subresources are per version");
        // The same definition is interned once.
        assert!(std::ptr::eq(kinds(&crontab())[0], v1));
    }

    #[test]
    fn versions_sort_as_kubernetes_sorts_them() {
        let mut v = vec!["v1alpha1", "foo", "v2beta1", "v1", "v2", "v1beta2", "v10"];
        v.sort_by_key(|s| version_priority(s));
        assert_eq!(
            v,
            ["v10", "v2", "v1", "v2beta1", "v1beta2", "v1alpha1", "foo"]
        );
    }

    #[test]
    fn resources_are_stored_as_the_storage_version_and_served_as_asked() {
        let ks = kinds(&crontab());
        let beta = ks[1];
        let mut obj = json!({"apiVersion": "stable.example.com/v1beta1", "kind": "CronTab",
                             "metadata": {"name": "a"}, "spec": {"x": 1}});
        assert_eq!(stored(beta, &obj)["apiVersion"], "stable.example.com/v1");
        serve(ks[0], &mut obj);
        assert_eq!(obj["apiVersion"], "stable.example.com/v1");
        // v1's schema prunes the unknown field and defaults replicas.
        assert_eq!(obj["spec"], json!({"replicas": 1}));
    }

    #[test]
    fn definitions_are_defaulted_and_checked() {
        let crds = registry::crds();
        let mut ok = crontab();
        admit(crds, &mut ok).unwrap();
        assert_eq!(ok["spec"]["names"]["singular"], "crontab");
        assert_eq!(ok["spec"]["names"]["listKind"], "CronTabList");
        assert_eq!(ok["spec"]["conversion"]["strategy"], "None");

        let mut bad = crontab();
        bad["metadata"]["name"] = json!("crontab.stable.example.com");
        bad["spec"]["versions"][0]["storage"] = json!(true);
        let e = admit(crds, &mut bad).unwrap_err().to_string();
        assert!(e.starts_with("CustomResourceDefinition.apiextensions.k8s.io \"crontab.stable.example.com\" is invalid: [metadata.name: Invalid value: \"crontab.stable.example.com\": must be spec.names.plural+\".\"+spec.group, spec.versions: Invalid value: "), "{e}");
        assert!(
            e.ends_with("must have exactly one version marked as storage version]"),
            "{e}"
        );

        let mut no_schema = crontab();
        no_schema["spec"]["versions"][1]
            .as_object_mut()
            .unwrap()
            .remove("schema");
        let e = admit(crds, &mut no_schema).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "spec.versions[1].schema.openAPIV3Schema: Required value: schemas are required"
            ),
            "{e}"
        );
    }
}
