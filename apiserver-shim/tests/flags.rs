//! The flags that reach past the REST layer, through the real binary:
//! - --etcd-servers=https://… with --etcd-cafile/--etcd-certfile/--etcd-keyfile
//!   against Debian's etcd 3.4 requiring client certificates;
//! - --client-ca-file: kubectl with a client-certificate kubeconfig is the
//!   certificate's CN with its O's as groups; another CA's is refused;
//! - --event-ttl: events carry a lease of that TTL and go when it ends;
//! - --etcd-compaction-interval: compact_rev_key rounds compact the etcd.
//!
//! Without etcd or kubectl the test skips, except under CI=true.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::apiserver::Apiserver;
use support::certs::Ca;
use support::etcd::{self, Etcd, Tls};
use support::tools;

mod support;

fn kubectl_with(kubeconfig: &Path, args: &[&str], stdin: &str) -> Output {
    let cache = kubeconfig.with_extension("cache");
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .arg(format!("--cache-dir={}", cache.display()))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    kubectl_with(kubeconfig, args, "")
}

fn kubectl_ok(kubeconfig: &Path, args: &[&str]) -> String {
    let out = kubectl(kubeconfig, args);
    assert!(out.status.success(), "kubectl {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn whoami(kubeconfig: &Path) -> (String, Vec<String>) {
    let review: Value =
        serde_json::from_str(&kubectl_ok(kubeconfig, &["auth", "whoami", "-o", "json"])).unwrap();
    let info = &review["status"]["userInfo"];
    let groups = info["groups"].as_array().unwrap();
    (
        info["username"].as_str().unwrap().to_string(),
        groups
            .iter()
            .map(|g| g.as_str().unwrap().to_string())
            .collect(),
    )
}

/// etcdctl get -w json: the key's KeyValue (None: absent) and the header
/// revision.
fn stored(etcd: &Etcd, key: &str) -> (Option<Value>, i64) {
    let resp: Value = serde_json::from_slice(&etcd.etcdctl(&["get", key, "-w", "json"])).unwrap();
    let kv = resp["kvs"].as_array().and_then(|k| k.first().cloned());
    (kv, resp["header"]["revision"].as_i64().unwrap())
}

const CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: c1
  namespace: default
data:
  a: b
";

const EVENT: &str = "apiVersion: v1
kind: Event
metadata:
  name: e1
  namespace: default
involvedObject:
  kind: ConfigMap
  name: c1
  namespace: default
reason: Tested
message: short-lived
type: Normal
";

#[test]
fn tls_etcd_client_certificates_event_ttl_and_compaction() {
    if !etcd::present() || !tools::present("kubectl", &["version", "--client"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let etcd_ca = Ca::new(d, "etcd-ca");
    let etcd_leaf = etcd_ca.issue(d, "etcd", &[]);
    let etcd_client = etcd_ca.issue(d, "apiserver-etcd-client", &[]);
    let etcd = Etcd::start_tls(
        43400,
        &Tls {
            ca: etcd_ca.file.clone(),
            cert: etcd_leaf.cert.clone(),
            key: etcd_leaf.key.clone(),
        },
    );
    let users = Ca::new(d, "users-ca");
    let jane = users.issue(d, "jane", &["dev", "ops"]);
    let mallory = Ca::new(d, "other-ca").issue(d, "mallory", &["system:masters"]);
    let server = Apiserver::start(
        43500,
        &[
            format!("--etcd-servers={}", etcd.url),
            format!("--etcd-cafile={}", etcd_ca.file.display()),
            format!("--etcd-certfile={}", etcd_client.cert.display()),
            format!("--etcd-keyfile={}", etcd_client.key.display()),
            format!("--client-ca-file={}", users.file.display()),
            "--event-ttl=2s".into(),
            "--etcd-compaction-interval=1s".into(),
        ],
    );

    // Client certificates: the CN is the user, the O's its groups; the
    // token still works beside them; another CA's certificate is refused.
    let jane_config = server.kubeconfig_with_certificate("jane.kubeconfig", &jane.cert, &jane.key);
    assert_eq!(
        whoami(&jane_config),
        (
            "jane".into(),
            vec!["dev".into(), "ops".into(), "system:authenticated".into()]
        )
    );
    assert_eq!(
        whoami(&server.kubeconfig),
        (
            "admin".into(),
            vec!["system:masters".into(), "system:authenticated".into()]
        )
    );
    let mallory_config =
        server.kubeconfig_with_certificate("mallory.kubeconfig", &mallory.cert, &mallory.key);
    let refused = kubectl(&mallory_config, &["get", "ns"]);
    assert!(!refused.status.success(), "{refused:?}");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("certificate"), "{err}");

    // Writes by jane land in the TLS etcd, at kube-apiserver's keys.
    let out = kubectl_with(
        &jane_config,
        &["create", "--validate=false", "-f", "-"],
        CONFIGMAP,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configmap/c1 created",
        "{out:?}"
    );
    let (cm, _) = stored(&etcd, "/registry/configmaps/default/c1");
    let cm = cm.expect("the configmap in etcd");
    assert_eq!(
        cm["lease"].as_i64().unwrap_or(0),
        0,
        "only events have a TTL"
    );
    let cm_created = cm["create_revision"].as_i64().unwrap();

    // --event-ttl: the event is written with a 2 s lease (2 s + kube-apiserver's
    // 5% reuse window, 0 s here) and is gone when it ends; the configmap
    // stays.
    let out = kubectl_with(
        &jane_config,
        &["create", "--validate=false", "-f", "-"],
        EVENT,
    );
    assert!(out.status.success(), "{out:?}");
    let (event, _) = stored(&etcd, "/registry/events/default/e1");
    let lease = event.expect("the event in etcd")["lease"].as_i64().unwrap();
    assert_ne!(lease, 0, "the event has a lease");
    let ttl = etcd.etcdctl(&["lease", "timetolive", &format!("{lease:x}")]);
    let ttl = String::from_utf8_lossy(&ttl);
    assert!(ttl.contains("granted with TTL(2s)"), "{ttl}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while stored(&etcd, "/registry/events/default/e1").0.is_some() {
        assert!(Instant::now() < deadline, "the event outlived its TTL");
        sleep(Duration::from_millis(200));
    }
    let gone = kubectl(&jane_config, &["get", "event", "e1"]);
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("events \"e1\" not found"),
        "{gone:?}"
    );
    assert!(stored(&etcd, "/registry/configmaps/default/c1").0.is_some());

    // --etcd-compaction-interval=1s: compact_rev_key counts the rounds, and
    // the history of the configmap's creation is compacted away.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let at = cm_created.to_string();
        let old = etcd.try_etcdctl(&["get", "/registry/configmaps/default/c1", "--rev", &at]);
        let err = String::from_utf8_lossy(&old.stderr);
        if !old.status.success() && err.contains("required revision has been compacted") {
            break;
        }
        assert!(Instant::now() < deadline, "not compacted: {old:?}");
        sleep(Duration::from_millis(200));
    }
    let (key, _) = stored(&etcd, "compact_rev_key");
    let key = key.expect("compact_rev_key at the root");
    assert!(key["version"].as_i64().unwrap() >= 2, "{key}");
}
