//! The real binary with an embedded store on a temporary data dir, driven by
//! the real kubectl through the kubeconfig `oxetcd-apiserver kubeconfig`
//! prints. Every command's output is checked, not only its exit code.
//! Without kubectl the test is skipped, except under CI=true where it fails.

use std::process::{Command, Stdio};
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

    // Create a namespace and a ConfigMap from YAML. (No OpenAPI documents
    // yet: client-side validation is off.)
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
    let watch = Command::new("kubectl")
        .env("KUBECONFIG", &k.kubeconfig)
        .arg(format!("--cache-dir={}", k.cache.display()))
        .args([
            "get",
            "cm",
            "-n",
            "team-a",
            "-w",
            "--output-watch-events",
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
