//! CustomResourceDefinitions, Table output and aggregated discovery, driven
//! by the real kubectl against the real binary, over the embedded store and
//! over Debian's etcd 3.4 (where a second server over the same etcd must
//! serve a CRD the first one created). Every command's output is checked.
//! Without kubectl (or etcd) the tests are skipped, except under CI=true.

use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::etcd::{self, free_port, Etcd};
use support::kubectl::{kubectl_present, wait_ready, Kubectl, Server};

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Phase
      type: string
      jsonPath: .status.phase
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [cronSpec]
            properties:
              cronSpec:
                type: string
                pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'
              image:
                type: string
              replicas:
                type: integer
                minimum: 0
                default: 1
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    port: {type: integer}
              tags:
                type: array
                items: {type: string}
          status:
            type: object
            properties:
              replicas:
                type: integer
              phase:
                type: string
"#;

const CRONTAB: &str = r#"apiVersion: stable.example.com/v1
kind: CronTab
metadata:
  name: my-cron
  namespace: default
spec:
  cronSpec: "*/5 * * * *"
  image: my-cron-image
  unknownField: pruned
"#;

const BUILT_INS: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: default}
spec:
  nodeName: node-a
  containers: [{name: nginx, image: "nginx:1.27"}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: nginx, image: "nginx:1.27"}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  clusterIP: 10.96.0.20
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: default}
data: {color: blue, size: L}
---
apiVersion: v1
kind: Secret
metadata: {name: token, namespace: default}
type: Opaque
data: {key: dmFsdWU=}
"#;

/// kubectl's table output as rows of cells (columns are two or more
/// spaces apart; cells such as "*/5 * * * *" keep their single spaces).
fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

/// An age cell of something just made: "0s" .. "59s".
fn is_fresh_age(cell: &str) -> bool {
    cell.strip_suffix('s')
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n < 60)
}

fn row<'a>(rows: &'a [Vec<String>], first: &str) -> &'a [String] {
    rows.iter()
        .find(|r| r.first().map(String::as_str) == Some(first))
        .unwrap_or_else(|| panic!("no row {first} in {rows:?}"))
}

fn start(dir: &std::path::Path, name: &str, ports: u16, etcd: Option<&str>) -> (Server, Kubectl) {
    let data_dir = dir.join(name);
    std::fs::create_dir_all(&data_dir).unwrap();
    let server = Server::start(&data_dir, free_port(ports), etcd);
    let k = Kubectl {
        kubeconfig: dir.join(format!("{name}.kubeconfig")),
        cache: dir.join(format!("{name}.cache")),
    };
    server.kubeconfig(&k.kubeconfig);
    wait_ready(&k);
    (server, k)
}

#[test]
fn crds_tables_and_discovery_over_an_embedded_store() {
    if !kubectl_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_server, k) = start(dir.path(), "a", 42100, None);
    crd_scenario(&k);
    tables_of_built_in_kinds(&k);
    // Deleting the CRD deletes its resources: defined again, it has none.
    delete_crd(&k);
    k.ok(&["apply", "-f", "-"], Some(CRD));
    k.ok(
        &[
            "wait",
            "--for",
            "condition=established",
            "crd/crontabs.stable.example.com",
        ],
        None,
    );
    let out = k.run(&["get", "crontabs"], None);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "No resources found in default namespace."
    );
}

#[test]
fn crds_tables_and_discovery_over_etcd() {
    if !kubectl_present() {
        return;
    }
    if !etcd::present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(42300);
    let url = etcd.url.clone();
    let (_a, k) = start(dir.path(), "a", 42400, Some(&url));
    // A second server over the same etcd, started before the CRD exists.
    let (_b, other) = start(dir.path(), "b", 42500, Some(&url));
    crd_scenario(&k);

    // The other server learnt of the CRD through its watch of the CRD
    // prefix, and serves its resources.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = other.run(&["get", "crontabs", "-o", "name"], None);
        if out.status.success()
            && String::from_utf8_lossy(&out.stdout).trim() == "crontab.stable.example.com/my-cron"
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server b never served crontabs: {out:?}"
        );
        sleep(Duration::from_millis(300));
    }

    // What kube-apiserver would read: JSON at its keys, in the storage version.
    let etcdctl =
        |key: &str| -> Value { serde_json::from_slice(&etcd.get(key)).unwrap_or(Value::Null) };
    let crd = etcdctl(
        "/registry/apiextensions.k8s.io/customresourcedefinitions/crontabs.stable.example.com",
    );
    assert_eq!(crd["kind"], "CustomResourceDefinition");
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "CronTab");
    let cr = etcdctl("/registry/stable.example.com/crontabs/default/my-cron");
    assert_eq!(cr["apiVersion"], "stable.example.com/v1");
    assert_eq!(cr["spec"]["replicas"], 3);
    assert!(cr["metadata"].get("resourceVersion").is_none());

    tables_of_built_in_kinds(&k);
    delete_crd(&k);
    assert_eq!(
        etcdctl("/registry/stable.example.com/crontabs/default/my-cron"),
        Value::Null,
        "the custom resource is deleted with its CRD"
    );
    // And the other server stops serving it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while other
        .run(&["get", "--raw", "/apis/stable.example.com/v1"], None)
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "server b still serves the deleted CRD"
        );
        sleep(Duration::from_millis(300));
    }
}

/// A CRD applied, established, listed in discovery; a custom resource
/// created, defaulted, pruned, printed, status-patched, scaled, validated.
fn crd_scenario(k: &Kubectl) {
    let out = k.ok(&["apply", "-f", "-"], Some(CRD));
    assert_eq!(
        out.trim(),
        "customresourcedefinition.apiextensions.k8s.io/crontabs.stable.example.com created"
    );
    let out = k.ok(
        &[
            "wait",
            "--for",
            "condition=established",
            "crd/crontabs.stable.example.com",
            "--timeout=20s",
        ],
        None,
    );
    assert_eq!(
        out.trim(),
        "customresourcedefinition.apiextensions.k8s.io/crontabs.stable.example.com condition met"
    );
    let crd = k.json(&["get", "crd", "crontabs.stable.example.com"]);
    let conditions: Vec<(String, String, String)> = crd["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        conditions,
        [
            ("NamesAccepted".into(), "True".into(), "NoConflicts".into()),
            (
                "Established".into(),
                "True".into(),
                "InitialNamesAccepted".into()
            )
        ]
    );
    assert_eq!(crd["status"]["acceptedNames"]["listKind"], "CronTabList");
    assert_eq!(crd["status"]["storedVersions"], serde_json::json!(["v1"]));

    // Discovery: kubectl reads the aggregated (v2) documents, and only them.
    let fresh = Kubectl {
        kubeconfig: k.kubeconfig.clone(),
        cache: k.cache.with_extension("fresh"),
    };
    let out = fresh.run(&["api-resources", "-v=8"], None);
    assert!(out.status.success());
    let (stdout, log) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert_eq!(
        log.matches(
            "Content-Type: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        )
        .count(),
        2,
        "/api and /apis answered v2:\n{log}"
    );
    assert!(
        !log.contains("/apis/stable.example.com/v1"),
        "no per-group-version request:\n{log}"
    );
    let rows = table(&stdout);
    assert_eq!(
        row(&rows, "crontabs"),
        ["crontabs", "ct", "stable.example.com/v1", "true", "CronTab"]
    );
    assert_eq!(
        row(&rows, "customresourcedefinitions"),
        [
            "customresourcedefinitions",
            "crd,crds",
            "apiextensions.k8s.io/v1",
            "false",
            "CustomResourceDefinition"
        ]
    );

    // kubectl validates strictly by default, which the server does with the
    // CRD's schema: an unknown field is refused, and nothing is stored.
    let err = k.fails(&["create", "-f", "-"], Some(CRONTAB));
    assert!(
        err.contains(r#"CronTab in version "v1" cannot be handled as a CronTab: strict decoding error: unknown field "spec.unknownField""#),
        "{err}"
    );
    let err = k.fails(&["get", "ct", "my-cron"], None);
    assert!(err.contains("not found"), "{err}");

    // Create without validation: unknown fields pruned, replicas defaulted,
    // no status.
    let out = k.ok(&["create", "--validate=false", "-f", "-"], Some(CRONTAB));
    assert_eq!(out.trim(), "crontab.stable.example.com/my-cron created");
    let cr = k.json(&["get", "ct", "my-cron"]);
    assert_eq!(
        cr["spec"],
        serde_json::json!({"cronSpec": "*/5 * * * *", "image": "my-cron-image", "replicas": 1})
    );
    assert_eq!(cr["metadata"]["generation"], 1);
    assert!(cr.get("status").is_none(), "{cr}");

    // kubectl get: the CRD's printer columns.
    let rows = table(&k.ok(&["get", "crontabs"], None));
    assert_eq!(rows[0], ["NAME", "SPEC", "REPLICAS", "PHASE", "AGE"]);
    assert_eq!(rows[1][..3], ["my-cron", "*/5 * * * *", "1"]);
    assert!(is_fresh_age(&rows[1][3]), "{rows:?}");

    // /status through kubectl patch --subresource=status: only status moves.
    let out = k.ok(
        &[
            "patch",
            "crontab",
            "my-cron",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"replicas":2,"phase":"Running"},"spec":{"image":"ignored"}}"#,
        ],
        None,
    );
    assert_eq!(out.trim(), "crontab.stable.example.com/my-cron patched");
    let cr = k.json(&["get", "ct", "my-cron"]);
    assert_eq!(
        cr["status"],
        serde_json::json!({"replicas": 2, "phase": "Running"})
    );
    assert_eq!(cr["spec"]["image"], "my-cron-image");
    assert_eq!(cr["metadata"]["generation"], 1);
    let rows = table(&k.ok(&["get", "ct", "my-cron"], None));
    assert_eq!(rows[1][..4], ["my-cron", "*/5 * * * *", "1", "Running"]);
    // The main endpoint keeps status as it is.
    k.ok(
        &[
            "patch",
            "ct",
            "my-cron",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Lost"}}"#,
        ],
        None,
    );
    assert_eq!(
        k.json(&["get", "ct", "my-cron"])["status"]["phase"],
        "Running"
    );

    // Custom resources take no strategic merge patch (no patch strategies
    // in their schemas): 415, as from kube-apiserver.
    let err = k.fails(
        &[
            "patch",
            "ct",
            "my-cron",
            "--type=strategic",
            "-p",
            r#"{"spec":{"image":"other"}}"#,
        ],
        None,
    );
    assert!(
        err.contains("application/strategic-merge-patch+json is not supported by stable.example.com/v1, Kind=CronTab: the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"),
        "{err}"
    );

    // kubectl get -w prints the changes as Table rows.
    let watch = k.spawn(&["get", "crontabs", "-w"], false);
    sleep(Duration::from_millis(1500));

    // /scale at the CRD's paths.
    let out = k.ok(&["scale", "crontab", "my-cron", "--replicas=3"], None);
    assert_eq!(out.trim(), "crontab.stable.example.com/my-cron scaled");
    let cr = k.json(&["get", "ct", "my-cron"]);
    assert_eq!(
        (
            cr["spec"]["replicas"].as_i64(),
            cr["metadata"]["generation"].as_i64()
        ),
        (Some(3), Some(2))
    );
    sleep(Duration::from_millis(1000));
    let mut watch = watch;
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let rows = table(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        rows[0],
        ["NAME", "SPEC", "REPLICAS", "PHASE", "AGE"],
        "{rows:?}"
    );
    let replicas: Vec<&str> = rows[1..].iter().map(|r| r[2].as_str()).collect();
    assert_eq!(replicas, ["1", "3"], "{rows:?}");

    // Schema validation: kube-apiserver's Invalid, nothing stored.
    let valid = CRONTAB
        .replace("my-cron\n", "bad-cron\n")
        .replace("  unknownField: pruned\n", "");
    let bad = valid.replace("\"*/5 * * * *\"", "often");
    let err = k.fails(&["create", "-f", "-"], Some(&bad));
    assert!(
        err.contains(r#"The CronTab "bad-cron" is invalid: spec.cronSpec: Invalid value: "often": spec.cronSpec in body should match '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'"#),
        "{err}"
    );
    let bad = valid.replace("  cronSpec: \"*/5 * * * *\"\n", "  replicas: many\n");
    let err = k.fails(&["create", "-f", "-"], Some(&bad));
    assert!(
        err.contains(r#"The CronTab "bad-cron" is invalid: "#),
        "{err}"
    );
    assert!(
        err.contains(r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#)
            && err.contains("spec.cronSpec: Required value"),
        "{err}"
    );
    let err = k.fails(&["get", "ct", "bad-cron"], None);
    assert!(
        err.contains(
            r#"Error from server (NotFound): crontabs.stable.example.com "bad-cron" not found"#
        ),
        "{err}"
    );
    let err = k.fails(&["scale", "crontab", "my-cron", "--replicas=-1"], None);
    assert!(err.contains("must be greater than or equal to 0"), "{err}");

    // CRDs print as kube-apiserver's default table.
    let rows = table(&k.ok(&["get", "crd"], None));
    assert_eq!(rows[0], ["NAME", "CREATED AT"]);
    let crd_row = row(&rows, "crontabs.stable.example.com");
    assert!(
        crd_row[1].ends_with('Z') && crd_row[1].contains('T'),
        "{rows:?}"
    );

    // A CRD whose name does not match its names is refused.
    let wrong = CRD.replace(
        "name: crontabs.stable.example.com",
        "name: crons.stable.example.com",
    );
    let err = k.fails(&["create", "-f", "-"], Some(&wrong));
    assert!(
        err.contains(r#"metadata.name: Invalid value: "crons.stable.example.com": must be spec.names.plural+"."+spec.group"#),
        "{err}"
    );

    explain_custom_resource(k);
    server_side_apply_of_a_custom_resource(k);
}

/// `kubectl explain` of a custom kind reads its group-version's OpenAPI v3
/// document, built from the CRD's schema.
fn explain_custom_resource(k: &Kubectl) {
    let out = k.ok(&["explain", "crontab.spec"], None);
    for want in [
        "GROUP:      stable.example.com",
        "KIND:       CronTab",
        "VERSION:    v1",
        "FIELD: spec <Object>",
        "  cronSpec\t<string> -required-",
        "  ports\t<[]Object>",
        "  replicas\t<integer>",
    ] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
    let out = k.ok(&["explain", "crontab.metadata.labels"], None);
    assert!(out.contains("FIELD: labels <map[string]string>"), "{out}");
}

/// A CronTab named `name` with the given ports (name, port) and tags.
fn crontab(name: &str, ports: &[(&str, u16)], tags: &[&str]) -> String {
    let mut y = format!(
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: {name}\n  \
         namespace: default\nspec:\n  cronSpec: \"* * * * *\"\n  ports:\n"
    );
    for (n, p) in ports {
        y.push_str(&format!("  - name: {n}\n    port: {p}\n"));
    }
    y.push_str(&format!("  tags: [{}]\n", tags.join(", ")));
    y
}

/// kubectl apply --server-side of a custom resource, by the CRD's schema:
/// an associative list (x-kubernetes-list-type: map) merges item by item
/// between appliers, a list without a list type is atomic (a conflict when
/// another applier changes it), and unknown fields are refused under Strict.
fn server_side_apply_of_a_custom_resource(k: &Kubectl) {
    let ssa = |extra: &[&str], yaml: &str| {
        let mut args = vec!["apply", "--server-side"];
        args.extend(extra);
        args.extend(["-f", "-"]);
        k.run(&args, Some(yaml))
    };
    let spec = |name: &str| k.json(&["get", "ct", name])["spec"].clone();
    let out = ssa(&[], &crontab("ssa-cron", &[("http", 80)], &["a"]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "crontab.stable.example.com/ssa-cron serverside-applied",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cr = k.json(&["get", "ct", "ssa-cron", "--show-managed-fields"]);
    let fields = &cr["metadata"]["managedFields"][0];
    assert_eq!(
        (fields["manager"].as_str(), fields["operation"].as_str()),
        (Some("kubectl"), Some("Apply"))
    );
    assert!(
        fields["fieldsV1"]["f:spec"]["f:ports"]["k:{\"name\":\"http\"}"]["f:port"].is_object(),
        "{cr}"
    );
    assert_eq!(cr["spec"]["replicas"], 1, "defaulted");

    // Another applier adds a port: the ports merge by name. Its tags, a
    // list without a list type, would replace kubectl's whole: a conflict.
    let other = crontab("ssa-cron", &[("metrics", 9090)], &["b"]);
    let out = ssa(&["--field-manager=other"], &other);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(r#"Apply failed with 1 conflict: conflict with "kubectl": .spec.tags"#),
        "{err}"
    );
    let out = ssa(&["--field-manager=other", "--force-conflicts"], &other);
    assert!(out.status.success(), "{out:?}");
    let s = spec("ssa-cron");
    assert_eq!(
        s["ports"],
        serde_json::json!([{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}])
    );
    assert_eq!(s["tags"], serde_json::json!(["b"]));

    // Strict (kubectl's default): an unknown field is refused; without
    // validation it is pruned and nobody owns it.
    let unknown = crontab("ssa-cron", &[("http", 80)], &["a"])
        .replace("  cronSpec:", "  schedule: daily\n  cronSpec:");
    let out = ssa(&["--force-conflicts"], &unknown);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"strict decoding error: unknown field "spec.schedule""#),
        "{err}"
    );
    let out = ssa(&["--force-conflicts", "--validate=false"], &unknown);
    assert!(out.status.success(), "{out:?}");
    let cr = k.json(&["get", "ct", "ssa-cron", "--show-managed-fields"]);
    assert!(cr["spec"].get("schedule").is_none(), "{cr}");
    assert!(!cr["metadata"]["managedFields"]
        .to_string()
        .contains("schedule"));
    assert_eq!(cr["spec"]["tags"], serde_json::json!(["a"]));
    k.ok(&["delete", "ct", "ssa-cron"], None);
}

/// kubectl get's columns for built-in kinds, from the server's Tables.
fn tables_of_built_in_kinds(k: &Kubectl) {
    k.ok(&["create", "-f", "-"], Some(BUILT_INS));

    let rows = table(&k.ok(&["get", "pods"], None));
    assert_eq!(rows[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert_eq!(rows[1][..4], ["web-1", "0/1", "Pending", "0"]);
    assert!(is_fresh_age(&rows[1][4]), "{rows:?}");
    let rows = table(&k.ok(&["get", "pods", "-o", "wide"], None));
    assert_eq!(
        rows[0],
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ]
    );
    assert_eq!(rows[1][5..], ["<none>", "node-a", "<none>", "<none>"]);
    // -A adds NAMESPACE from each row's object metadata.
    let rows = table(&k.ok(&["get", "pods", "-A"], None));
    assert_eq!(rows[0][..2], ["NAMESPACE", "NAME"]);
    assert_eq!(rows[1][..2], ["default", "web-1"]);

    let rows = table(&k.ok(&["get", "deploy"], None));
    assert_eq!(rows[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert_eq!(rows[1][..4], ["web", "0/2", "0", "0"]);
    let rows = table(&k.ok(&["get", "deploy", "-o", "wide"], None));
    assert_eq!(rows[0][5..], ["CONTAINERS", "IMAGES", "SELECTOR"]);
    assert_eq!(rows[1][5..], ["nginx", "nginx:1.27", "app=web"]);

    let rows = table(&k.ok(&["get", "svc", "web", "-o", "wide"], None));
    assert_eq!(
        rows[0],
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
            "SELECTOR"
        ]
    );
    assert_eq!(
        rows[1][..5],
        ["web", "ClusterIP", "10.96.0.20", "<none>", "80/TCP"]
    );
    assert_eq!(rows[1][6], "app=web");

    let rows = table(&k.ok(&["get", "cm"], None));
    assert_eq!(rows[0], ["NAME", "DATA", "AGE"]);
    assert_eq!(row(&rows, "settings")[1], "2");
    let rows = table(&k.ok(&["get", "secrets"], None));
    assert_eq!(rows[0], ["NAME", "TYPE", "DATA", "AGE"]);
    assert_eq!(row(&rows, "token")[1..3], ["Opaque", "1"]);
    let rows = table(&k.ok(&["get", "ns"], None));
    assert_eq!(rows[0], ["NAME", "STATUS", "AGE"]);
    assert_eq!(row(&rows, "kube-system")[1], "Active");
}

fn delete_crd(k: &Kubectl) {
    let out = k.ok(
        &[
            "delete",
            "crd",
            "crontabs.stable.example.com",
            "--timeout=30s",
        ],
        None,
    );
    assert_eq!(
        out.trim(),
        r#"customresourcedefinition.apiextensions.k8s.io "crontabs.stable.example.com" deleted"#
    );
    let err = k.fails(&["get", "crd", "crontabs.stable.example.com"], None);
    assert!(err.contains("not found"), "{err}");
}
