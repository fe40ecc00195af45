//! Discovery documents (reference: kubernetes-apiserver.md §7), built from
//! the kinds served now (built-in and custom): /version, /api, /apis,
//! /apis/{group}, each group-version's APIResourceList, and the aggregated
//! documents (apidiscovery.k8s.io v2 and v2beta1 APIGroupDiscoveryList) that
//! /api and /apis answer to clients asking for them, as kubectl 1.32 does.

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

pub fn core_versions(kinds: &[&'static Kind], server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": registry::versions(kinds, ""),
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    })
}

fn group_doc(kinds: &[&'static Kind], group: &str) -> Value {
    let versions: Vec<Value> = registry::versions(kinds, group)
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

pub fn groups(kinds: &[&'static Kind]) -> Value {
    let groups: Vec<Value> = registry::groups(kinds)
        .into_iter()
        .map(|g| group_doc(kinds, g))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// /apis/{group}; None for a group not served.
pub fn group(kinds: &[&'static Kind], group: &str) -> Option<Value> {
    if group.is_empty() || registry::versions(kinds, group).is_empty() {
        return None;
    }
    let mut doc = group_doc(kinds, group);
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
pub fn resources(kinds: &[&'static Kind], group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<&Kind> = kinds
        .iter()
        .copied()
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

/// One resource of an aggregated document, its subresources within.
fn aggregated_resource(k: &Kind) -> Value {
    let response = |group: &str, version: &str, kind: &str| json!({"group": group, "version": version, "kind": kind});
    let mut subresources = Vec::new();
    if k.scale {
        subresources.push(json!({
            "subresource": "scale",
            "responseKind": response("autoscaling", "v1", "Scale"),
            "verbs": STATUS_VERBS,
        }));
    }
    if k.status {
        subresources.push(json!({
            "subresource": "status",
            "responseKind": response(k.group, k.version, k.kind),
            "verbs": STATUS_VERBS,
        }));
    }
    let mut r = json!({
        "resource": k.resource,
        "responseKind": response(k.group, k.version, k.kind),
        "scope": if k.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": k.singular,
        "verbs": VERBS,
    });
    if !k.short_names.is_empty() {
        r["shortNames"] = json!(k.short_names);
    }
    if !k.categories.is_empty() {
        r["categories"] = json!(k.categories);
    }
    if !subresources.is_empty() {
        r["subresources"] = json!(subresources);
    }
    r
}

/// The aggregated discovery document (APIGroupDiscoveryList) of the core
/// group (`core`: what /api answers) or of every other group (/apis), in
/// apidiscovery.k8s.io/`version` (v2 or v2beta1, the same shape).
pub fn aggregated(kinds: &[&'static Kind], core: bool, version: &str) -> Value {
    let groups: Vec<&str> = if core {
        vec![""]
    } else {
        registry::groups(kinds)
    };
    let items: Vec<Value> = groups
        .into_iter()
        .map(|group| {
            let versions: Vec<Value> = registry::versions(kinds, group)
                .into_iter()
                .map(|v| {
                    let resources: Vec<Value> = kinds
                        .iter()
                        .filter(|k| k.group == group && k.version == v)
                        .map(|k| aggregated_resource(k))
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<&'static Kind> {
        registry::KINDS.iter().collect()
    }

    #[test]
    fn aggregated_documents_list_groups_versions_and_subresources() {
        let apis = aggregated(&all(), false, "v2");
        assert_eq!(apis["apiVersion"], "apidiscovery.k8s.io/v2");
        let items = apis["items"].as_array().unwrap();
        assert!(items.iter().all(|i| i["metadata"]["name"] != ""));
        let apps = items
            .iter()
            .find(|i| i["metadata"]["name"] == "apps")
            .unwrap();
        assert_eq!(apps["versions"][0]["version"], "v1");
        let d = apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap();
        assert_eq!(d["scope"], "Namespaced");
        assert_eq!(
            d["responseKind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        assert_eq!(d["subresources"][0]["subresource"], "scale");
        assert_eq!(d["subresources"][0]["responseKind"]["group"], "autoscaling");
        assert_eq!(d["subresources"][1]["subresource"], "status");
        let core = aggregated(&all(), true, "v2beta1");
        assert_eq!(core["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        assert_eq!(core["items"][0]["metadata"]["name"], "");
        let ns = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "namespaces")
            .unwrap();
        assert_eq!(
            (ns["scope"].as_str(), ns["shortNames"][0].as_str()),
            (Some("Cluster"), Some("ns"))
        );
    }

    #[test]
    fn resource_lists_carry_what_kubectl_reads() {
        let doc = resources(&all(), "apps", "v1").unwrap();
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
        let core = resources(&all(), "", "v1").unwrap();
        let ns = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "namespaces")
            .cloned()
            .unwrap();
        assert_eq!(ns["namespaced"], false);
        assert!(resources(&all(), "apps", "v2").is_none());
    }

    #[test]
    fn group_list_prefers_the_first_version() {
        let g = groups(&all());
        let apps = g["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "apps")
            .cloned()
            .unwrap();
        assert_eq!(apps["preferredVersion"]["groupVersion"], "apps/v1");
        assert!(group(&all(), "nosuch.example.com").is_none());
        assert_eq!(
            core_versions(&all(), "127.0.0.1:6443")["versions"],
            json!(["v1"])
        );
    }
}
