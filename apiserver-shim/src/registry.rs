//! Every kind the server serves: the built-in kinds in one static table, and
//! the custom resources of established CustomResourceDefinitions, added and
//! removed at run time ([`Registry`]). Each row says where the kind lives in
//! the URL space and in etcd, and the few behaviours that differ between
//! kinds. Discovery, routing, keys and the write paths all read it; no kind
//! has a module of its own.

use std::sync::{Arc, RwLock};

use crate::crd::Custom;

/// How a kind's metadata.name is checked on create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most kinds).
    Subdomain,
    /// RFC 1123 label (namespaces).
    Label,
    /// RFC 1035 label (services).
    Rfc1035Label,
}

/// What create does with a client-sent .status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusOnCreate {
    /// Kept as sent (kinds without a status subresource, and nodes).
    Keep,
    /// Dropped: the status subresource sets it.
    Clear,
    /// Replaced by {"phase": <this>}.
    Phase(&'static str),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    /// The plural resource name in URLs.
    pub resource: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// The key segment under --etcd-prefix when it is not `resource`
    /// (kube-apiserver's exceptions: nodes -> minions, services -> services/specs).
    pub storage: Option<&'static str>,
    /// Serves `<resource>/status`.
    pub status: bool,
    /// Serves `<resource>/scale` (autoscaling/v1 Scale over spec.replicas).
    pub scale: bool,
    /// metadata.generation is 1 on create and bumped on spec changes.
    pub generation: bool,
    pub status_on_create: StatusOnCreate,
    pub names: NameRule,
    /// DELETE answers the deleted object rather than a Status (pods,
    /// services, namespaces, persistent volumes and claims).
    pub delete_returns_object: bool,
    /// DELETE of a scheduled object waits out a grace period (pods: the
    /// kubelet finishes the deletion).
    pub graceful: bool,
    /// Fields a fieldSelector may name besides metadata.name and
    /// metadata.namespace (kube-apiserver's per-kind field label sets).
    pub fields: &'static [&'static str],
    /// A custom resource's schema, printer columns and scale paths (None
    /// for the built-in kinds).
    pub custom: Option<&'static Custom>,
}

impl Kind {
    /// "v1" or "apps/v1".
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The resource as Kubernetes names it in messages: "pods",
    /// "deployments.apps".
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// The kind as Kubernetes names it in Invalid messages: "Pod",
    /// "Deployment.apps".
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// Whether the kind is served in protobuf (every built-in kind; no
    /// custom resource).
    pub fn has_protobuf(&self) -> bool {
        self.custom.is_none() && proto_package(self.group, self.version).is_some()
    }

    pub fn storage_segment(&self) -> &'static str {
        self.storage.unwrap_or(self.resource)
    }
}

const ALL: &[&str] = &["all"];

/// A row with the common defaults; the table below overrides what differs.
const fn row(
    group: &'static str,
    resource: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> Kind {
    Kind {
        group,
        version: "v1",
        resource,
        singular,
        kind,
        namespaced,
        short_names: &[],
        categories: &[],
        storage: None,
        status: false,
        scale: false,
        generation: false,
        status_on_create: StatusOnCreate::Keep,
        names: NameRule::Subdomain,
        delete_returns_object: false,
        graceful: false,
        fields: &[],
        custom: None,
    }
}

/// The table. Order within a group is the order discovery lists.
pub static KINDS: &[Kind] = &[
    // core/v1
    Kind {
        short_names: &["ns"],
        status: true,
        status_on_create: StatusOnCreate::Phase("Active"),
        names: NameRule::Label,
        fields: &["status.phase"],
        delete_returns_object: true,
        ..row("", "namespaces", "namespace", "Namespace", false)
    },
    Kind {
        short_names: &["po"],
        categories: ALL,
        status: true,
        status_on_create: StatusOnCreate::Phase("Pending"),
        delete_returns_object: true,
        graceful: true,
        fields: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ..row("", "pods", "pod", "Pod", true)
    },
    Kind {
        short_names: &["svc"],
        categories: ALL,
        storage: Some("services/specs"),
        status: true,
        status_on_create: StatusOnCreate::Clear,
        names: NameRule::Rfc1035Label,
        delete_returns_object: true,
        ..row("", "services", "service", "Service", true)
    },
    Kind {
        short_names: &["ep"],
        storage: Some("services/endpoints"),
        ..row("", "endpoints", "endpoints", "Endpoints", true)
    },
    Kind {
        short_names: &["cm"],
        ..row("", "configmaps", "configmap", "ConfigMap", true)
    },
    Kind {
        fields: &["type"],
        ..row("", "secrets", "secret", "Secret", true)
    },
    Kind {
        short_names: &["no"],
        storage: Some("minions"),
        status: true,
        fields: &["spec.unschedulable"],
        ..row("", "nodes", "node", "Node", false)
    },
    Kind {
        short_names: &["ev"],
        fields: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "type",
        ],
        ..row("", "events", "event", "Event", true)
    },
    Kind {
        short_names: &["sa"],
        ..row(
            "",
            "serviceaccounts",
            "serviceaccount",
            "ServiceAccount",
            true,
        )
    },
    Kind {
        short_names: &["pv"],
        status: true,
        status_on_create: StatusOnCreate::Phase("Pending"),
        delete_returns_object: true,
        ..row(
            "",
            "persistentvolumes",
            "persistentvolume",
            "PersistentVolume",
            false,
        )
    },
    Kind {
        short_names: &["pvc"],
        status: true,
        status_on_create: StatusOnCreate::Phase("Pending"),
        delete_returns_object: true,
        ..row(
            "",
            "persistentvolumeclaims",
            "persistentvolumeclaim",
            "PersistentVolumeClaim",
            true,
        )
    },
    // apps/v1
    Kind {
        scale: true,
        short_names: &["deploy"],
        categories: ALL,
        status: true,
        generation: true,
        status_on_create: StatusOnCreate::Clear,
        ..row("apps", "deployments", "deployment", "Deployment", true)
    },
    Kind {
        scale: true,
        short_names: &["rs"],
        categories: ALL,
        status: true,
        generation: true,
        status_on_create: StatusOnCreate::Clear,
        ..row("apps", "replicasets", "replicaset", "ReplicaSet", true)
    },
    Kind {
        scale: true,
        short_names: &["sts"],
        categories: ALL,
        status: true,
        generation: true,
        status_on_create: StatusOnCreate::Clear,
        ..row("apps", "statefulsets", "statefulset", "StatefulSet", true)
    },
    Kind {
        short_names: &["ds"],
        categories: ALL,
        status: true,
        generation: true,
        status_on_create: StatusOnCreate::Clear,
        ..row("apps", "daemonsets", "daemonset", "DaemonSet", true)
    },
    // batch/v1
    Kind {
        categories: ALL,
        status: true,
        generation: true,
        status_on_create: StatusOnCreate::Clear,
        fields: &["status.successful"],
        ..row("batch", "jobs", "job", "Job", true)
    },
    Kind {
        short_names: &["cj"],
        categories: ALL,
        status: true,
        generation: true,
        status_on_create: StatusOnCreate::Clear,
        ..row("batch", "cronjobs", "cronjob", "CronJob", true)
    },
    // coordination.k8s.io/v1
    row("coordination.k8s.io", "leases", "lease", "Lease", true),
    // discovery.k8s.io/v1
    Kind {
        generation: true,
        ..row(
            "discovery.k8s.io",
            "endpointslices",
            "endpointslice",
            "EndpointSlice",
            true,
        )
    },
    // apiextensions.k8s.io/v1 (kube-apiserver's extension server keys its
    // objects under <group>/<resource>).
    Kind {
        short_names: &["crd", "crds"],
        categories: &["api-extensions"],
        storage: Some("apiextensions.k8s.io/customresourcedefinitions"),
        status: true,
        generation: true,
        status_on_create: StatusOnCreate::Clear,
        ..row(
            crate::crd::GROUP,
            "customresourcedefinitions",
            "customresourcedefinition",
            "CustomResourceDefinition",
            false,
        )
    },
];

/// The package of the vendored Kubernetes protos (proto/) that holds the
/// messages of (group, version): None for a group with no built-in kind
/// here, and so for every custom resource, which has no protobuf form.
pub fn proto_package(group: &str, version: &str) -> Option<&'static str> {
    Some(match (group, version) {
        ("", "v1") => "api.core.v1",
        ("apps", "v1") => "api.apps.v1",
        ("batch", "v1") => "api.batch.v1",
        ("autoscaling", "v1") => "api.autoscaling.v1",
        ("coordination.k8s.io", "v1") => "api.coordination.v1",
        ("discovery.k8s.io", "v1") => "api.discovery.v1",
        ("apiextensions.k8s.io", "v1") => "apiextensions_apiserver.pkg.apis.apiextensions.v1",
        ("meta.k8s.io", "v1") => "apimachinery.pkg.apis.meta.v1",
        _ => return None,
    })
}

/// The built-in kind at (group, version, resource), if any.
pub fn find(group: &str, version: &str, resource: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.resource == resource)
}

/// The groups other than core among `kinds`, in order, each once.
pub fn groups(kinds: &[&'static Kind]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for k in kinds.iter().filter(|k| !k.group.is_empty()) {
        if !out.contains(&k.group) {
            out.push(k.group);
        }
    }
    out
}

/// The versions of `group` among `kinds`, preferred first (the order of
/// `kinds`, which [`Registry`] keeps sorted by version priority).
pub fn versions(kinds: &[&'static Kind], group: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for k in kinds.iter().filter(|k| k.group == group) {
        if !out.contains(&k.version) {
            out.push(k.version);
        }
    }
    out
}

pub fn namespaces() -> &'static Kind {
    // The table's first row; the test below keeps it so.
    &KINDS[0]
}

pub fn crds() -> &'static Kind {
    // The table's last row; the test below keeps it so.
    &KINDS[KINDS.len() - 1]
}

/// The kinds served now: the static table, then the custom resources of the
/// CRDs whose names are accepted (set by `rest::crds` whenever a CRD
/// changes, here or through another server over the same store). Clones
/// share one set; readers take a snapshot and never wait for a refresh.
#[derive(Clone, Default)]
pub struct Registry {
    /// The custom kinds, sorted by group and then version priority. The lock
    /// guards only the swap of the snapshot.
    custom: Arc<RwLock<Arc<Vec<&'static Kind>>>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    fn custom(&self) -> Arc<Vec<&'static Kind>> {
        self.custom
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Every kind served, built-in first.
    pub fn kinds(&self) -> Vec<&'static Kind> {
        KINDS.iter().chain(self.custom().iter().copied()).collect()
    }

    /// The kind served at (group, version, resource), if any.
    pub fn find(&self, group: &str, version: &str, resource: &str) -> Option<&'static Kind> {
        find(group, version, resource).or_else(|| {
            self.custom()
                .iter()
                .copied()
                .find(|k| k.group == group && k.version == version && k.resource == resource)
        })
    }

    /// Replaces the custom kinds.
    pub fn set_custom(&self, kinds: Vec<&'static Kind>) {
        *self
            .custom
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(kinds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_apiservers_storage_exceptions_are_in_the_table() {
        assert_eq!(
            find("", "v1", "services").unwrap().storage_segment(),
            "services/specs"
        );
        assert_eq!(
            find("", "v1", "endpoints").unwrap().storage_segment(),
            "services/endpoints"
        );
        assert_eq!(
            find("", "v1", "nodes").unwrap().storage_segment(),
            "minions"
        );
        assert_eq!(
            find("apps", "v1", "deployments").unwrap().storage_segment(),
            "deployments"
        );
    }

    #[test]
    fn names_are_unique_and_namespaces_come_first() {
        assert_eq!(namespaces().resource, "namespaces");
        assert_eq!(crds().resource, "customresourcedefinitions");
        for (i, a) in KINDS.iter().enumerate() {
            for b in &KINDS[i + 1..] {
                assert!(
                    (a.group, a.version, a.resource) != (b.group, b.version, b.resource),
                    "{} twice",
                    a.resource
                );
                for s in a.short_names {
                    assert!(!b.short_names.contains(s), "short name {s} twice");
                }
            }
        }
    }

    #[test]
    fn messages_qualify_non_core_resources_with_their_group() {
        let d = find("apps", "v1", "deployments").unwrap();
        assert_eq!(d.qualified_resource(), "deployments.apps");
        assert_eq!(d.qualified_kind(), "Deployment.apps");
        assert_eq!(d.api_version(), "apps/v1");
        assert_eq!(find("", "v1", "pods").unwrap().qualified_resource(), "pods");
        let all: Vec<&'static Kind> = KINDS.iter().collect();
        assert_eq!(
            groups(&all),
            [
                "apps",
                "batch",
                "coordination.k8s.io",
                "discovery.k8s.io",
                "apiextensions.k8s.io"
            ]
        );
    }
}
