//! The real kubectl against the real binary (embedded store) for what its
//! writes send beyond JSON: typed `kubectl create` in protobuf. Without
//! kubectl the tests skip, except under CI=true where they fail.

mod support;
use support::etcd::free_port;
use support::kubectl::{kubectl_present, wait_ready, Kubectl, Server};

/// A server and a kubectl for it; the tempdir holds both.
fn start(ports: u16) -> (tempfile::TempDir, Server, Kubectl) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let server = Server::start(&data_dir, free_port(ports), None);
    let k = Kubectl {
        kubeconfig: dir.path().join("kubeconfig"),
        cache: dir.path().join("cache"),
    };
    server.kubeconfig(&k.kubeconfig);
    wait_ready(&k);
    (dir, server, k)
}

#[test]
fn typed_kubectl_create_speaks_protobuf() {
    if !kubectl_present() {
        return;
    }
    let (_dir, _server, k) = start(36400);
    // kubectl's typed create commands post protobuf and accept it back.
    let out = k.run(
        &[
            "create",
            "configmap",
            "pb",
            "--from-literal=color=blue",
            "-v=8",
        ],
        None,
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "kubectl did not send protobuf:\n{log}"
    );
    assert!(log.contains("201 Created"), "{log}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configmap/pb created"
    );
    let cm = k.json(&["get", "cm", "pb"]);
    assert_eq!(cm["data"]["color"], "blue");

    // A Deployment with replicas 0 (a pointer in Go: zero is kept), a
    // Secret's bytes, a Service's IntOrString target port.
    let out = k.ok(
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=0",
        ],
        None,
    );
    assert_eq!(out.trim(), "deployment.apps/web created");
    let d = k.json(&["get", "deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 0, "{d}");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert_eq!(d["metadata"]["generation"], 1);
    k.ok(
        &["create", "secret", "generic", "s", "--from-literal=k=v"],
        None,
    );
    let s = k.json(&["get", "secret", "s"]);
    assert_eq!(s["data"]["k"], "dg==");
    k.ok(
        &["create", "service", "clusterip", "svc", "--tcp=80:8080"],
        None,
    );
    let svc = k.json(&["get", "svc", "svc"]);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    let out = k.ok(&["get", "cm,deploy,secret,svc", "-o", "name"], None);
    for want in [
        "configmap/pb",
        "deployment.apps/web",
        "secret/s",
        "service/svc",
    ] {
        assert!(out.lines().any(|l| l == want), "{want} in {out}");
    }
}

#[test]
fn field_validation_warn_and_ignore_drop_unknown_fields() {
    if !kubectl_present() {
        return;
    }
    let (dir, _server, k) = start(36500);
    let cm = |name: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  bogus: 1\ndata:\n  a: b\nspec:\n  foo: 1\n"
        )
    };
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).to_string();

    // Warn (kubectl --validate=warn sends fieldValidation=Warn): created,
    // each unknown field a `Warning: 299` header kubectl prints, and dropped.
    let out = k.run(&["create", "--validate=warn", "-f", "-"], Some(&cm("warn")));
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Warning: unknown field \"metadata.bogus\""),
        "{err}"
    );
    assert!(err.contains("Warning: unknown field \"spec\""), "{err}");
    let got = k.json(&["get", "cm", "warn"]);
    assert!(got.get("spec").is_none(), "{got}");
    assert!(got["metadata"].get("bogus").is_none(), "{got}");
    assert_eq!(got["data"]["a"], "b");

    // Ignore (--validate=false): dropped without a word.
    let out = k.run(
        &["create", "--validate=false", "-f", "-"],
        Some(&cm("ignore")),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("Warning"), "{}", stderr(&out));
    let got = k.json(&["get", "cm", "ignore"]);
    assert!(got.get("spec").is_none(), "{got}");

    // Strict (kubectl's default): refused.
    let err = k.fails(&["create", "-f", "-"], Some(&cm("strict")));
    assert!(
        err.contains(
            r#"strict decoding error: unknown field "metadata.bogus", unknown field "spec""#
        ),
        "{err}"
    );

    // Updates too: apply --validate=warn of an unknown field warns and
    // keeps the object clean.
    let out = k.run(
        &["apply", "--validate=warn", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: warn\ndata:\n  a: c\nextra: 1\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Warning: unknown field \"extra\""),
        "{}",
        stderr(&out)
    );
    let got = k.json(&["get", "cm", "warn"]);
    assert_eq!(got["data"]["a"], "c");
    assert!(got.get("extra").is_none(), "{got}");

    // Duplicate keys in a JSON body (sent as is with --raw): the last one
    // wins, with a warning under Warn; Strict refuses the body.
    let file = dir.path().join("dup.json");
    std::fs::write(
        &file,
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup"},"data":{"a":"1"},"data":{"a":"2"}}"#,
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let cms = "/api/v1/namespaces/default/configmaps";
    let err = k.fails(
        &[
            "create",
            "--raw",
            &format!("{cms}?fieldValidation=Strict"),
            "-f",
            path,
        ],
        None,
    );
    assert!(
        err.contains(r#"strict decoding error: duplicate field "data""#),
        "{err}"
    );
    let out = k.run(
        &[
            "create",
            "--raw",
            &format!("{cms}?fieldValidation=Warn"),
            "-f",
            path,
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Warning: duplicate field \"data\""),
        "{}",
        stderr(&out)
    );
    assert_eq!(k.json(&["get", "cm", "dup"])["data"]["a"], "2");
}

/// A Deployment `name`, a ReplicaSet it owns and two Pods the ReplicaSet
/// owns (controller references with blockOwnerDeletion, as the controllers
/// write them); pod `<name>-0` also carries `hold` finalizers. Returns the
/// uids of the Deployment and the ReplicaSet.
fn chain(k: &Kubectl, name: &str, hold: &[&str]) -> (String, String) {
    let owner_ref = |kind: &str, api: &str, n: &str, uid: &str| {
        format!(
            "  ownerReferences:\n  - apiVersion: {api}\n    kind: {kind}\n    name: {n}\n    uid: {uid}\n    controller: true\n    blockOwnerDeletion: true\n"
        )
    };
    let labels = format!("  labels:\n    app: {name}\n");
    let template = format!(
        "  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n      - name: c\n        image: nginx\n"
    );
    k.ok(
        &["create", "-f", "-"],
        Some(&format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n{labels}spec:\n  replicas: 2\n{template}"
        )),
    );
    let d_uid = k.json(&["get", "deploy", name])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let rs = format!("{name}-rs");
    k.ok(
        &["create", "-f", "-"],
        Some(&format!(
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: {rs}\n{labels}{}spec:\n  replicas: 2\n{template}",
            owner_ref("Deployment", "apps/v1", name, &d_uid)
        )),
    );
    let rs_uid = k.json(&["get", "rs", &rs])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 0..2 {
        let finalizers = if i == 0 && !hold.is_empty() {
            format!("  finalizers: [{}]\n", hold.join(", "))
        } else {
            String::new()
        };
        k.ok(
            &["create", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}-{i}\n{labels}{finalizers}{}spec:\n  containers:\n  - name: c\n    image: nginx\n",
                owner_ref("ReplicaSet", "apps/v1", &rs, &rs_uid)
            )),
        );
    }
    (d_uid, rs_uid)
}

/// The names of the deployments, replica sets and pods labelled app=name.
fn left(k: &Kubectl, name: &str) -> Vec<String> {
    let out = k.ok(
        &[
            "get",
            "deploy,rs,pods",
            "-l",
            &format!("app={name}"),
            "-o",
            "name",
        ],
        None,
    );
    out.lines().map(String::from).collect()
}

fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what} within 20 s");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn cascading_deletes_orphan_foreground_and_background() {
    if !kubectl_present() {
        return;
    }
    let (_dir, _server, k) = start(36600);

    // Orphan: the Deployment goes; its ReplicaSet stays without the
    // reference to it; the Pods keep theirs to the ReplicaSet.
    let (d_uid, rs_uid) = chain(&k, "orphan", &[]);
    let out = k.ok(&["delete", "deploy", "orphan", "--cascade=orphan"], None);
    assert_eq!(out.trim(), "deployment.apps \"orphan\" deleted");
    eventually("the orphaned deployment's deletion", || {
        left(&k, "orphan") == ["replicaset.apps/orphan-rs", "pod/orphan-0", "pod/orphan-1"]
    });
    let rs = k.json(&["get", "rs", "orphan-rs"]);
    assert!(rs["metadata"].get("ownerReferences").is_none(), "{rs}");
    let pod = k.json(&["get", "pod", "orphan-0"]);
    assert_eq!(
        pod["metadata"]["ownerReferences"][0]["uid"],
        rs_uid.as_str()
    );
    assert_ne!(d_uid, rs_uid);

    // Background (kubectl's default): the Deployment goes at once, then the
    // ReplicaSet and the Pods.
    chain(&k, "bg", &[]);
    let out = k.ok(&["delete", "deploy", "bg", "--cascade=background"], None);
    assert_eq!(out.trim(), "deployment.apps \"bg\" deleted");
    eventually("the background deletion of the dependents", || {
        left(&k, "bg").is_empty()
    });

    // Foreground: the Deployment waits, marked with the foregroundDeletion
    // finalizer, while a Pod with blockOwnerDeletion is held by another
    // finalizer; the rest of the chain goes first. Once the Pod is
    // released, the ReplicaSet and then the Deployment go.
    chain(&k, "fg", &["example.com/hold"]);
    let out = k.ok(
        &[
            "delete",
            "deploy",
            "fg",
            "--cascade=foreground",
            "--wait=false",
        ],
        None,
    );
    assert_eq!(out.trim(), "deployment.apps \"fg\" deleted");
    eventually("the unheld pod's deletion", || {
        left(&k, "fg") == ["deployment.apps/fg", "replicaset.apps/fg-rs", "pod/fg-0"]
    });
    let d = k.json(&["get", "deploy", "fg"]);
    assert!(d["metadata"]["deletionTimestamp"].is_string(), "{d}");
    assert_eq!(
        d["metadata"]["finalizers"],
        serde_json::json!(["foregroundDeletion"])
    );
    let rs = k.json(&["get", "rs", "fg-rs"]);
    assert_eq!(
        rs["metadata"]["finalizers"],
        serde_json::json!(["foregroundDeletion"])
    );
    let pod = k.json(&["get", "pod", "fg-0"]);
    assert!(pod["metadata"]["deletionTimestamp"].is_string(), "{pod}");
    k.ok(
        &[
            "patch",
            "pod",
            "fg-0",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
        None,
    );
    eventually("the foreground deletion's end", || {
        left(&k, "fg").is_empty()
    });
}
