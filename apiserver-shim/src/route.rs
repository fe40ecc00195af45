//! What a request path names, parsed as kube-apiserver's RequestInfo does:
//! discovery documents, health checks, or a resource
//! (`/api/v1/namespaces/{ns}/{resource}/{name}/{subresource}`,
//! `/apis/{group}/{version}/...`, and the legacy `/watch/` paths).

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Version,
    /// /healthz, /livez, /readyz (and their /<check> sub-paths).
    Health,
    /// /api: the core group's versions.
    CoreVersions,
    /// /apis: every other group.
    Groups,
    /// /apis/{group}: one group.
    Group(String),
    /// /api/v1 or /apis/{group}/{version}: its resource list.
    Resources {
        group: String,
        version: String,
    },
    Resource(ResourcePath),
    /// /openapi/v2: the Swagger 2.0 document.
    OpenApiV2,
    /// /openapi/v3: the index of group-versions.
    OpenApiV3Index,
    /// /openapi/v3/api/v1, /openapi/v3/apis/{group}/{version}: "api/v1", ...
    OpenApiV3(String),
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// Came through /watch/: a watch whatever the query says.
    pub watch: bool,
}

/// Subresources of a namespace that are not resources in it.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

pub fn parse(path: &str) -> Route {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", rest @ ..] => Route::OpenApiV3(rest.join("/")),
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group(group.to_string()),
        ["api", version] => Route::Resources {
            group: String::new(),
            version: version.to_string(),
        },
        ["apis", group, version] => Route::Resources {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["api", version, rest @ ..] => resource("", version, rest),
        ["apis", group, version, rest @ ..] => resource(group, version, rest),
        _ => Route::Unknown,
    }
}

fn resource(group: &str, version: &str, mut rest: &[&str]) -> Route {
    let mut watch = false;
    if rest.first() == Some(&"watch") {
        watch = true;
        rest = &rest[1..];
    }
    let mut namespace = None;
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = Some(rest[1].to_string());
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest = &rest[2..];
        }
    }
    if rest.is_empty() || rest.len() > 3 || rest.iter().any(|p| p.is_empty()) {
        return Route::Unknown;
    }
    // /api/v1/namespaces/{ns} and /namespaces/{ns}/status name the namespace
    // itself, which is cluster-scoped.
    if rest[0] == "namespaces" {
        namespace = None;
    }
    Route::Resource(ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        resource: rest[0].to_string(),
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
        watch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match parse(path) {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_and_cluster_paths() {
        let r = res("/api/v1/namespaces/default/configmaps/c1");
        assert_eq!(
            (
                r.group.as_str(),
                r.namespace.as_deref(),
                r.resource.as_str(),
                r.name.as_deref()
            ),
            ("", Some("default"), "configmaps", Some("c1"))
        );
        let r = res("/apis/apps/v1/namespaces/ns1/deployments/web/scale");
        assert_eq!(
            (r.group.as_str(), r.subresource.as_deref()),
            ("apps", Some("scale"))
        );
        let r = res("/apis/apps/v1/deployments");
        assert_eq!((r.namespace, r.name), (None, None));
        let r = res("/api/v1/namespaces/default/pods");
        assert_eq!((r.namespace.as_deref(), r.name), (Some("default"), None));
    }

    #[test]
    fn a_namespace_is_a_cluster_scoped_object() {
        let r = res("/api/v1/namespaces/ns1");
        assert_eq!(
            (r.namespace, r.resource.as_str(), r.name.as_deref()),
            (None, "namespaces", Some("ns1"))
        );
        let r = res("/api/v1/namespaces/ns1/status");
        assert_eq!(
            (r.name.as_deref(), r.subresource.as_deref()),
            (Some("ns1"), Some("status"))
        );
        let r = res("/api/v1/namespaces");
        assert_eq!((r.resource.as_str(), r.name), ("namespaces", None));
    }

    #[test]
    fn watch_paths_and_discovery() {
        let r = res("/api/v1/watch/namespaces/default/pods");
        assert!(r.watch);
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(parse("/api"), Route::CoreVersions);
        assert_eq!(parse("/apis/"), Route::Groups);
        assert_eq!(parse("/healthz/etcd"), Route::Health);
        assert_eq!(
            parse("/apis/apps/v1"),
            Route::Resources {
                group: "apps".into(),
                version: "v1".into()
            }
        );
        assert_eq!(parse("/openapi/v2"), Route::OpenApiV2);
        assert_eq!(parse("/openapi/v3"), Route::OpenApiV3Index);
        assert_eq!(
            parse("/openapi/v3/apis/apps/v1"),
            Route::OpenApiV3("apis/apps/v1".into())
        );
        assert_eq!(parse("/api/v1/namespaces/a/pods/p/log/x"), Route::Unknown);
    }
}
