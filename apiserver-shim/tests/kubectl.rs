//! The real binary with an embedded store on a temporary data dir, driven by
//! the real kubectl through the kubeconfig `oxetcd-apiserver kubeconfig`
//! prints. Every command's output is checked, not only its exit code.
//! Without kubectl the test is skipped, except under CI=true where it fails.

use std::thread::sleep;
use std::time::Duration;

use serde_json::Value;

mod support;
use support::etcd::{self, free_port, Etcd};
use support::kubectl::{kubectl_present, wait_ready, Kubectl, Server};

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n";
const CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: team-a
  labels:
    app: web
data:
  color: blue
";

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: team-a
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
status:
  replicas: 9
";

#[test]
fn kubectl_drives_the_api_over_an_embedded_store() {
    if !kubectl_present() {
        return;
    }
    scenario(None, 43000);
}

#[test]
fn kubectl_drives_the_api_over_etcd() {
    if !kubectl_present() {
        return;
    }
    if !etcd::present() {
        return;
    }
    let etcd = Etcd::start(43200);
    scenario(Some(&etcd.url), 43100);
    // What a real kube-apiserver would read: JSON at its key.
    let stored: Value = serde_json::from_slice(&etcd.get("/registry/namespaces/team-a")).unwrap();
    assert_eq!(stored["kind"], "Namespace");
    assert_eq!(stored["metadata"]["name"], "team-a");
    assert!(
        stored["metadata"].get("resourceVersion").is_none(),
        "never stored"
    );
}

fn scenario(etcd: Option<&str>, ports: u16) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let port = free_port(ports);
    let mut server = Server::start(&data_dir, port, etcd);
    let k = Kubectl {
        kubeconfig: dir.path().join("kubeconfig"),
        cache: dir.path().join("cache"),
    };
    // The kubeconfig (CA and token) is written while the server starts.
    server.kubeconfig(&k.kubeconfig);
    wait_ready(&k);

    // Discovery: kubectl api-resources lists the table's kinds.
    let resources = k.ok(&["api-resources"], None);
    let row = |name: &str| -> Vec<String> {
        let line = resources
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{resources}"));
        line.split_whitespace().map(String::from).collect()
    };
    assert_eq!(
        row("configmaps"),
        ["configmaps", "cm", "v1", "true", "ConfigMap"]
    );
    assert_eq!(
        row("deployments"),
        ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
    assert_eq!(
        row("namespaces"),
        ["namespaces", "ns", "v1", "false", "Namespace"]
    );
    assert_eq!(
        row("leases"),
        ["leases", "coordination.k8s.io/v1", "true", "Lease"]
    );
    assert_eq!(row("endpointslices")[1], "discovery.k8s.io/v1");
    assert_eq!(row("cronjobs")[..3], ["cronjobs", "cj", "batch/v1"]);

    // The default namespaces exist from the start.
    let ns = k.ok(&["get", "ns", "-o", "name"], None);
    for want in ["namespace/default", "namespace/kube-system"] {
        assert!(ns.lines().any(|l| l == want), "{want} in {ns}");
    }

    // Create a namespace and a ConfigMap from YAML (validation off here;
    // the apply section below runs with kubectl's default, strict).
    let out = k.ok(&["create", "--validate=false", "-f", "-"], Some(NAMESPACE));
    assert_eq!(out.trim(), "namespace/team-a created");
    let ns = k.json(&["get", "ns", "team-a"]);
    assert_eq!(ns["status"]["phase"], "Active");
    assert_eq!(ns["spec"]["finalizers"][0], "kubernetes");
    let out = k.ok(&["create", "--validate=false", "-f", "-"], Some(CONFIGMAP));
    assert_eq!(out.trim(), "configmap/settings created");

    // get -o json: what create filled in.
    let cm = k.json(&["get", "cm", "settings", "-n", "team-a"]);
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["apiVersion"], "v1");
    assert_eq!(cm["data"]["color"], "blue");
    assert_eq!(cm["metadata"]["namespace"], "team-a");
    assert_eq!(cm["metadata"]["labels"]["app"], "web");
    assert_eq!(cm["metadata"]["uid"].as_str().unwrap().len(), 36);
    assert!(cm["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    let rv1: i64 = cm["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // Creating it again: AlreadyExists, in kubectl's words.
    let err = k.fails(&["create", "--validate=false", "-f", "-"], Some(CONFIGMAP));
    assert!(
        err.contains("Error from server (AlreadyExists): error when creating \"STDIN\": configmaps \"settings\" already exists"),
        "{err}"
    );

    // Selectors.
    let names = |args: &[&str]| {
        let mut all = vec!["get", "cm", "-n", "team-a", "-o", "name"];
        all.extend(args);
        k.ok(&all, None).trim().to_string()
    };
    assert_eq!(names(&["-l", "app=web"]), "configmap/settings");
    assert_eq!(names(&["-l", "app in (web,db)"]), "configmap/settings");
    assert_eq!(names(&["-l", "app=db"]), "");
    assert_eq!(names(&["-l", "app notin (web)"]), "");
    assert_eq!(
        names(&["--field-selector", "metadata.name=settings"]),
        "configmap/settings"
    );
    assert_eq!(names(&["--field-selector", "metadata.name!=settings"]), "");

    // Watch (kubectl get -w) from here on, events printed as they come.
    let watch = k.spawn(
        &[
            "get",
            "cm",
            "-n",
            "team-a",
            "-w",
            "--output-watch-events",
            "-o",
            "json",
        ],
        false,
    );
    sleep(Duration::from_millis(1500));

    // label, merge patch, JSON patch.
    let out = k.ok(
        &["label", "cm", "settings", "-n", "team-a", "tier=fe"],
        None,
    );
    assert_eq!(out.trim(), "configmap/settings labeled");
    let out = k.ok(
        &[
            "patch",
            "cm",
            "settings",
            "-n",
            "team-a",
            "--type=merge",
            "-p",
            r#"{"data":{"size":"L"}}"#,
        ],
        None,
    );
    assert_eq!(out.trim(), "configmap/settings patched");
    let out = k.ok(
        &[
            "patch",
            "cm",
            "settings",
            "-n",
            "team-a",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/data/color","value":"red"}]"#,
        ],
        None,
    );
    assert_eq!(out.trim(), "configmap/settings patched");
    let cm = k.json(&["get", "cm", "settings", "-n", "team-a"]);
    assert_eq!(cm["metadata"]["labels"]["tier"], "fe");
    assert_eq!(cm["data"]["size"], "L");
    assert_eq!(cm["data"]["color"], "red");
    let rv2: i64 = cm["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1, "resourceVersion {rv2} after {rv1}");

    // A JSON patch whose test fails: 422, nothing written.
    let err = k.fails(
        &[
            "patch",
            "cm",
            "settings",
            "-n",
            "team-a",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/data/color","value":"green"}]"#,
        ],
        None,
    );
    assert!(
        err.contains("The request is invalid")
            && err.contains("'/data/color': value did not match"),
        "{err}"
    );
    let same = k.json(&["get", "cm", "settings", "-n", "team-a"]);
    assert_eq!(
        same["metadata"]["resourceVersion"],
        cm["metadata"]["resourceVersion"]
    );

    // A replace based on the first version: 409 Conflict.
    let mut stale = cm.clone();
    stale["metadata"]["resourceVersion"] = Value::from(rv1.to_string());
    stale["data"]["color"] = Value::from("green");
    let err = k.fails(
        &["replace", "--validate=false", "-f", "-"],
        Some(&stale.to_string()),
    );
    assert!(
        err.contains("Error from server (Conflict)")
            && err.contains("the object has been modified; please apply your changes to the latest version and try again"),
        "{err}"
    );

    // Bad input: a name that is not DNS-1123, a missing namespace.
    let bad = CONFIGMAP.replace("name: settings", "name: Bad_Name");
    let err = k.fails(&["create", "--validate=false", "-f", "-"], Some(&bad));
    assert!(
        err.contains("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"),
        "{err}"
    );
    let elsewhere = CONFIGMAP.replace("namespace: team-a", "namespace: nope");
    let err = k.fails(&["create", "--validate=false", "-f", "-"], Some(&elsewhere));
    assert!(
        err.contains("Error from server (NotFound)")
            && err.contains("namespaces \"nope\" not found"),
        "{err}"
    );

    // A Deployment scaled through /scale: spec.replicas and generation move,
    // status is the status subresource's and stays as it was.
    let out = k.ok(&["create", "--validate=false", "-f", "-"], Some(DEPLOYMENT));
    assert_eq!(out.trim(), "deployment.apps/web created");
    let d = k.json(&["get", "deploy", "web", "-n", "team-a"]);
    assert_eq!(
        (
            d["spec"]["replicas"].as_i64(),
            d["metadata"]["generation"].as_i64()
        ),
        (Some(1), Some(1))
    );
    assert!(d.get("status").is_none(), "status dropped on create: {d}");
    let out = k.ok(
        &["scale", "deploy", "web", "-n", "team-a", "--replicas=3"],
        None,
    );
    assert_eq!(out.trim(), "deployment.apps/web scaled");
    let d = k.json(&["get", "deploy", "web", "-n", "team-a"]);
    assert_eq!(
        (
            d["spec"]["replicas"].as_i64(),
            d["metadata"]["generation"].as_i64()
        ),
        (Some(3), Some(2))
    );
    let err = k.fails(
        &["scale", "deploy", "web", "-n", "team-a", "--replicas=-1"],
        None,
    );
    assert!(err.contains("must be greater than or equal to 0"), "{err}");
    let err = k.fails(
        &["scale", "cm", "settings", "-n", "team-a", "--replicas=2"],
        None,
    );
    assert!(
        err.contains("could not find the requested resource") || err.contains("NotFound"),
        "{err}"
    );

    explain(&k);
    client_side_apply_and_strategic_patches(&k);
    server_side_apply_conflicts(&k);

    // delete, then it is gone.
    let out = k.ok(&["delete", "cm", "settings", "-n", "team-a"], None);
    assert_eq!(out.trim(), "configmap \"settings\" deleted");
    let err = k.fails(&["get", "cm", "settings", "-n", "team-a"], None);
    assert!(
        err.contains("Error from server (NotFound): configmaps \"settings\" not found"),
        "{err}"
    );

    // The watch saw every change, in order, with rising resourceVersions.
    sleep(Duration::from_millis(500));
    let mut watch = watch;
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let events: Vec<Value> = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map(|v| v.unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED", "DELETED"],
        "{text}"
    );
    assert_eq!(events[1]["object"]["metadata"]["labels"]["tier"], "fe");
    assert_eq!(events[3]["object"]["data"]["color"], "red");
    let rvs: Vec<i64> = events
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{rvs:?}");

    output_formats_and_annotations(&k);
    delete_waits_for_finalizers(&k);

    // A wrong token: 401, as kubectl reports it.
    let err = k.fails(&["get", "ns", "--token=not-a-token"], None);
    assert!(
        err.contains("You must be logged in to the server (Unauthorized)"),
        "{err}"
    );

    // Deleting the namespace empties and removes it (kubectl waits for it).
    k.ok(&["create", "--validate=false", "-f", "-"], Some(CONFIGMAP));
    let out = k.ok(&["delete", "ns", "team-a", "--timeout=30s"], None);
    assert_eq!(out.trim(), "namespace \"team-a\" deleted");
    let err = k.fails(&["get", "ns", "team-a"], None);
    assert!(err.contains("namespaces \"team-a\" not found"), "{err}");

    // After a restart the same kubeconfig (CA, token) still works and the
    // data is still there.
    k.ok(&["create", "--validate=false", "-f", "-"], Some(NAMESPACE));
    server.stop();
    let _server = Server::start(&data_dir, port, server.etcd.as_deref());
    wait_ready(&k);
    let ns = k.json(&["get", "ns", "team-a"]);
    assert_eq!(ns["metadata"]["name"], "team-a");
}

/// A Service and a ConfigMap through kubectl's printers: -o yaml, -o wide
/// (the server's Table with its wide columns), -o custom-columns; and
/// `kubectl annotate`.
fn output_formats_and_annotations(k: &Kubectl) {
    let service = "apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: team-a
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
";
    let out = k.ok(&["apply", "-f", "-"], Some(service));
    assert_eq!(out.trim(), "service/web created");
    let wide = k.ok(&["get", "svc", "web", "-n", "team-a", "-o", "wide"], None);
    // (The header's columns are kubectl_crd.rs's to check.)
    let mut lines = wide.lines().skip(1);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        (row[0], row[1], row[3]),
        ("web", "ClusterIP", "<none>"),
        "{wide}"
    );
    assert_eq!((row[4], row[6]), ("80/TCP", "app=web"), "{wide}");

    let cm = CONFIGMAP.replace("name: settings", "name: shown");
    k.ok(&["create", "-f", "-"], Some(&cm));
    let yaml = k.ok(&["get", "cm", "shown", "-n", "team-a", "-o", "yaml"], None);
    for want in [
        "apiVersion: v1",
        "kind: ConfigMap",
        "  color: blue",
        "  name: shown",
        "  namespace: team-a",
    ] {
        assert!(yaml.lines().any(|l| l == want), "{want:?} in\n{yaml}");
    }
    let columns = k.ok(
        &[
            "get",
            "cm",
            "-n",
            "team-a",
            "-l",
            "app=web",
            "-o",
            "custom-columns=NAME:.metadata.name,COLOR:.data.color,APP:.metadata.labels.app",
        ],
        None,
    );
    let rows: Vec<Vec<&str>> = columns
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [vec!["NAME", "COLOR", "APP"], vec!["shown", "blue", "web"]],
        "{columns}"
    );

    let out = k.ok(
        &["annotate", "cm", "shown", "-n", "team-a", "owner=team-a"],
        None,
    );
    assert_eq!(out.trim(), "configmap/shown annotated");
    let got = k.json(&["get", "cm", "shown", "-n", "team-a"]);
    assert_eq!(got["metadata"]["annotations"]["owner"], "team-a");
    let out = k.ok(&["annotate", "cm", "shown", "-n", "team-a", "owner-"], None);
    assert_eq!(out.trim(), "configmap/shown annotated");
    let got = k.json(&["get", "cm", "shown", "-n", "team-a"]);
    assert!(
        got["metadata"]
            .get("annotations")
            .is_none_or(|a| a.get("owner").is_none()),
        "{got}"
    );
}

/// An object with a finalizer is only marked by a delete; `kubectl wait
/// --for=delete` returns once the finalizer is removed and the object goes.
fn delete_waits_for_finalizers(k: &Kubectl) {
    let held = CONFIGMAP.replace("name: settings", "name: held").replace(
        "  labels:\n",
        "  finalizers:\n  - example.com/hold\n  labels:\n",
    );
    k.ok(&["create", "-f", "-"], Some(&held));
    let out = k.ok(
        &["delete", "cm", "held", "-n", "team-a", "--wait=false"],
        None,
    );
    assert_eq!(out.trim(), "configmap \"held\" deleted");
    let marked = k.json(&["get", "cm", "held", "-n", "team-a"]);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "still there, marked: {marked}"
    );
    assert_eq!(marked["metadata"]["finalizers"][0], "example.com/hold");
    let out = k.run(
        &[
            "wait",
            "--for=delete",
            "cm/held",
            "-n",
            "team-a",
            "--timeout=2s",
        ],
        None,
    );
    assert!(!out.status.success(), "waited past a finalizer: {out:?}");
    let waiter = k.spawn(
        &[
            "wait",
            "--for=delete",
            "cm/held",
            "-n",
            "team-a",
            "--timeout=30s",
        ],
        true,
    );
    sleep(Duration::from_millis(500));
    k.ok(
        &[
            "patch",
            "cm",
            "held",
            "-n",
            "team-a",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ],
        None,
    );
    let out = waiter.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configmap/held condition met"
    );
    let err = k.fails(&["get", "cm", "held", "-n", "team-a"], None);
    assert!(err.contains("configmaps \"held\" not found"), "{err}");
}

/// `kubectl explain` reads the OpenAPI v3 document of apps/v1.
fn explain(k: &Kubectl) {
    let out = k.ok(
        &["explain", "deployment.spec.template.spec.containers"],
        None,
    );
    for want in [
        "KIND:       Deployment",
        "FIELD: containers <[]Container>",
        "List of containers belonging to the pod.",
        "  image\t<string>",
        "  name\t<string> -required-",
        "  ports\t<[]ContainerPort>",
    ] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
}

/// A Deployment in team-a with the given containers (name, image).
fn deployment(name: &str, replicas: u32, containers: &[(&str, &str)]) -> String {
    let mut y = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: team-a\n\
         spec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {name}\n  \
         template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n"
    );
    for (n, i) in containers {
        y.push_str(&format!("      - name: {n}\n        image: {i}\n"));
    }
    y
}

/// The containers of a Deployment as "name=image".
fn containers(k: &Kubectl, name: &str) -> Vec<String> {
    let d = k.json(&["get", "deploy", name, "-n", "team-a"]);
    d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}={}",
                c["name"].as_str().unwrap(),
                c["image"].as_str().unwrap()
            )
        })
        .collect()
}

/// kubectl apply (client-side: last-applied annotation and a three-way
/// strategic merge patch computed from the OpenAPI v3 merge keys), then
/// kubectl patch with strategic merge patches.
fn client_side_apply_and_strategic_patches(k: &Kubectl) {
    let first = deployment(
        "api",
        1,
        &[("nginx", "nginx:1.27"), ("sidecar", "busybox:1")],
    );
    let out = k.ok(&["apply", "-f", "-"], Some(&first));
    assert_eq!(out.trim(), "deployment.apps/api created");
    // Edited: sidecar removed, metrics added, nginx's image changed.
    let second = deployment("api", 1, &[("nginx", "nginx:1.28"), ("metrics", "prom:3")]);
    let out = k.ok(&["apply", "-f", "-"], Some(&second));
    assert_eq!(out.trim(), "deployment.apps/api configured");
    assert_eq!(containers(k, "api"), ["nginx=nginx:1.28", "metrics=prom:3"]);
    let d = k.json(&["get", "deploy", "api", "-n", "team-a"]);
    let last = d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap();
    assert!(
        last.contains("\"metrics\"") && !last.contains("sidecar"),
        "{last}"
    );
    let out = k.ok(&["apply", "-f", "-"], Some(&second));
    assert_eq!(out.trim(), "deployment.apps/api unchanged");

    // kubectl patch defaults to strategic: containers merge by name (a
    // merge patch would have replaced the list with the one container).
    let patch = |p: &str| {
        k.ok(
            &[
                "patch",
                "deploy",
                "api",
                "-n",
                "team-a",
                "--type",
                "strategic",
                "-p",
                p,
            ],
            None,
        )
    };
    let out = patch(
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"metrics","image":"prom:4"}]}}}}"#,
    );
    assert_eq!(out.trim(), "deployment.apps/api patched");
    assert_eq!(containers(k, "api"), ["nginx=nginx:1.28", "metrics=prom:4"]);
    patch(r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","$patch":"delete"}]}}}}"#);
    assert_eq!(containers(k, "api"), ["metrics=prom:4"]);
    let d = k.json(&["get", "deploy", "api", "-n", "team-a"]);
    assert_eq!(d["metadata"]["generation"], 4, "{d}");

    // Strict validation (kubectl's default) by the server, from the schema.
    let bad = second.replace("  replicas: 1\n", "  replicas: 1\n  replica: 2\n");
    let err = k.fails(&["apply", "-f", "-"], Some(&bad));
    assert!(
        err.contains(r#"strict decoding error: unknown field "spec.replica""#),
        "{err}"
    );
}

/// The managers of a Deployment: (manager, operation, subresource, fields).
fn managers(k: &Kubectl, name: &str) -> Vec<(String, String, String, Value)> {
    let d = k.json(&[
        "get",
        "deploy",
        name,
        "-n",
        "team-a",
        "--show-managed-fields",
    ]);
    d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |f: &str| e[f].as_str().unwrap_or("").to_string();
            (
                s("manager"),
                s("operation"),
                s("subresource"),
                e["fieldsV1"].clone(),
            )
        })
        .collect()
}

/// kubectl apply --server-side: conflicts with another applier and with
/// kubectl scale, refused until --force-conflicts takes the fields.
fn server_side_apply_conflicts(k: &Kubectl) {
    let first = deployment("ssa", 2, &[("app", "nginx:1.27"), ("log", "busybox:1")]);
    // Later applies drop the "log" container.
    let manifest = deployment("ssa", 2, &[("app", "nginx:1.27")]);
    let ssa = |extra: &[&str], yaml: &str| {
        let mut args = vec!["apply", "--server-side"];
        args.extend(extra);
        args.extend(["-f", "-"]);
        k.run(&args, Some(yaml))
    };
    let out = ssa(&[], &first);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "deployment.apps/ssa serverside-applied"
    );
    let m = managers(k, "ssa");
    assert_eq!((m[0].0.as_str(), m[0].1.as_str()), ("kubectl", "Apply"));
    assert!(
        m[0].3["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"]["f:image"]
            .is_object(),
        "{m:?}"
    );

    // Another applier changing the image: a conflict naming the owner.
    let other = manifest.replace("nginx:1.27", "nginx:1.28");
    let out = ssa(&["--field-manager=other"], &other);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(r#"Apply failed with 1 conflict: conflict with "kubectl": .spec.template.spec.containers[name="app"].image"#),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "{err}");

    // kubectl scale takes .spec.replicas; applying replicas 2 again conflicts.
    k.ok(
        &["scale", "deploy", "ssa", "-n", "team-a", "--replicas=5"],
        None,
    );
    let out = ssa(&[], &manifest);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(r#"Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas"#),
        "{err}"
    );
    let d = k.json(&["get", "deploy", "ssa", "-n", "team-a"]);
    assert_eq!(d["spec"]["replicas"], 5, "nothing written on conflict");

    // --force-conflicts: the applier owns replicas again, and the value is its.
    let out = ssa(&["--force-conflicts"], &manifest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = k.json(&["get", "deploy", "ssa", "-n", "team-a"]);
    assert_eq!(d["spec"]["replicas"], 2);
    // The container the applier stopped sending, owned by no one else, is gone.
    assert_eq!(containers(k, "ssa"), ["app=nginx:1.27"]);
    let m = managers(k, "ssa");
    let owners: Vec<&str> = m
        .iter()
        .filter(|e| e.3["f:spec"].get("f:replicas").is_some())
        .map(|e| e.0.as_str())
        .collect();
    assert_eq!(owners, ["kubectl"], "{m:?}");
    // The other applier, forced, takes the image.
    let out = ssa(&["--field-manager=other", "--force-conflicts"], &other);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(containers(k, "ssa"), ["app=nginx:1.28"]);
}
