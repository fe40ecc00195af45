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
