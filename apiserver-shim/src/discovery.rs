//! Discovery documents (reference: kubernetes-apiserver.md §7), built from
//! the registry table: /version, /api, /apis, /apis/{group} and each
//! group-version's APIResourceList. Aggregated discovery (v2) is not served:
//! a client that also accepts application/json gets these, as from a
//! kube-apiserver without it, and one that accepts only v2 gets 406.

use serde_json::{json, Value};

use crate::registry::{self, Kind};

/// The verbs of every resource's main endpoint.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// The verbs of a status subresource.
pub const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

/// The Kubernetes minor version whose API this server speaks (kubectl warns
/// when its own differs by more than one).
pub const MINOR: &str = "32";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": MINOR,
        "gitVersion": format!("v1.{MINOR}.0-oxetcd-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, goarch()),
    })
}

fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": registry::versions(""),
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    })
}

fn group_doc(group: &str) -> Value {
    let versions: Vec<Value> = registry::versions(group)
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

pub fn groups() -> Value {
    let groups: Vec<Value> = registry::groups().into_iter().map(group_doc).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// /apis/{group}; None for a group not served.
pub fn group(group: &str) -> Option<Value> {
    if group.is_empty() || registry::versions(group).is_empty() {
        return None;
    }
    let mut doc = group_doc(group);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn resource_entries(k: &Kind) -> Vec<Value> {
    let mut main = json!({
        "name": k.resource,
        "singularName": k.singular,
        "namespaced": k.namespaced,
        "kind": k.kind,
        "verbs": VERBS,
    });
    if !k.short_names.is_empty() {
        main["shortNames"] = json!(k.short_names);
    }
    if !k.categories.is_empty() {
        main["categories"] = json!(k.categories);
    }
    let mut out = vec![main];
    if k.status {
        out.push(json!({
            "name": format!("{}/status", k.resource),
            "singularName": "",
            "namespaced": k.namespaced,
            "kind": k.kind,
            "verbs": STATUS_VERBS,
        }));
    }
    if k.scale {
        out.push(json!({
            "name": format!("{}/scale", k.resource),
            "singularName": "",
            "namespaced": k.namespaced,
            "group": "autoscaling",
            "version": "v1",
            "kind": "Scale",
            "verbs": STATUS_VERBS,
        }));
    }
    out
}

/// /api/v1 or /apis/{group}/{version}; None for a group-version not served.
pub fn resources(group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<&Kind> = registry::KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let resources: Vec<Value> = kinds.into_iter().flat_map(resource_entries).collect();
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_lists_carry_what_kubectl_reads() {
        let doc = resources("apps", "v1").unwrap();
        assert_eq!(doc["groupVersion"], "apps/v1");
        let res = doc["resources"].as_array().unwrap();
        let deploy = res.iter().find(|r| r["name"] == "deployments").unwrap();
        assert_eq!(deploy["kind"], "Deployment");
        assert_eq!(deploy["namespaced"], true);
        assert_eq!(deploy["shortNames"], json!(["deploy"]));
        assert!(deploy["verbs"]
            .as_array()
            .unwrap()
            .contains(&json!("watch")));
        assert!(res.iter().any(|r| r["name"] == "deployments/status"));
        let scale = res
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(
            (scale["group"].as_str(), scale["kind"].as_str()),
            (Some("autoscaling"), Some("Scale"))
        );
        assert!(!res.iter().any(|r| r["name"] == "daemonsets/scale"));
        let core = resources("", "v1").unwrap();
        let ns = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "namespaces")
            .cloned()
            .unwrap();
        assert_eq!(ns["namespaced"], false);
        assert!(resources("apps", "v2").is_none());
    }

    #[test]
    fn group_list_prefers_the_first_version() {
        let g = groups();
        let apps = g["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "apps")
            .cloned()
            .unwrap();
        assert_eq!(apps["preferredVersion"]["groupVersion"], "apps/v1");
        assert!(group("nosuch.example.com").is_none());
        assert_eq!(core_versions("127.0.0.1:6443")["versions"], json!(["v1"]));
    }
}
