//! Real Kubernetes clients against the binary:
//! - the Python `kubernetes` client from PyPI doing what an informer does
//!   (tests/python/informer.py: list, watch, 410 once the watch cache's
//!   window has moved past it, relist);
//! - kube-rs's `watcher` and `reflector` keeping a store in sync while
//!   objects are created, changed and deleted.
//!
//! The Python test needs a python with the `kubernetes` package: the
//! virtualenv .ci/run makes (target/py-venv, or $OXETCD_PYTHON). Without
//! it the test skips, except under CI=true where it fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client, Config};
use serde_json::json;
use support::apiserver::Apiserver;
use support::tools;

mod support;

/// The python that has the `kubernetes` package: $OXETCD_PYTHON, else the
/// virtualenv .ci/run makes in the workspace's target/.
fn python() -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/py-venv/bin/python");
    let python = std::env::var_os("OXETCD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or(venv);
    let python_str = python.to_string_lossy().to_string();
    tools::present(&python_str, &["-c", "import kubernetes"]).then_some(python)
}

#[test]
fn python_informer_lists_watches_and_relists_after_a_410() {
    let Some(python) = python() else {
        return;
    };
    // The smallest watch cache (windows of 1 to 1,024 events): the writes
    // elsewhere push the informer's resourceVersion out of the window.
    let server = Apiserver::start(
        43600,
        &[
            "--etcd-compaction-interval=1s".to_string(),
            "--default-watch-cache-size=1".to_string(),
        ],
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/informer.py");
    let out = Command::new(python)
        .arg(script)
        .arg(&server.kubeconfig)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("informer: ok"),
        "{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}

async fn client(server: &Apiserver) -> Client {
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn configmap(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "data": {"v": value},
    }))
    .unwrap()
}

/// name -> (resourceVersion, data) of configmaps.
fn summary<'a>(cms: impl IntoIterator<Item = &'a ConfigMap>) -> BTreeMap<String, (String, String)> {
    cms.into_iter()
        .map(|c| {
            let v = c
                .data
                .as_ref()
                .and_then(|d| d.get("v"))
                .cloned()
                .unwrap_or_default();
            (
                c.metadata.name.clone().unwrap(),
                (c.metadata.resource_version.clone().unwrap(), v),
            )
        })
        .collect()
}

#[tokio::test]
async fn kube_rs_reflector_keeps_a_store_in_sync() {
    let server = Apiserver::start(43700, &[]);
    let client = client(&server).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "kube-rs"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, "kube-rs");
    // Some objects before the watcher's first list, more after.
    for i in 0..3 {
        cms.create(
            &PostParams::default(),
            &configmap(&format!("early-{i}"), "0"),
        )
        .await
        .unwrap();
    }

    let (reader, writer) = reflector::store();
    let events = reflector(writer, watcher(cms.clone(), watcher::Config::default()))
        .applied_objects()
        .boxed();
    let consumer = tokio::spawn(async move {
        let mut events = events;
        while let Some(e) = events.next().await {
            e.expect("the watcher stream has no errors");
        }
    });
    tokio::time::timeout(Duration::from_secs(20), reader.wait_until_ready())
        .await
        .expect("the reflector's first list within 20 s")
        .unwrap();
    assert_eq!(reader.state().len(), 3);

    // Creates, changes (merge patch, JSON patch, replace) and deletes,
    // interleaved.
    for i in 0..10 {
        cms.create(&PostParams::default(), &configmap(&format!("cm-{i}"), "1"))
            .await
            .unwrap();
        if i % 2 == 0 {
            let patch = Patch::Merge(json!({"data": {"v": "2"}}));
            cms.patch(&format!("cm-{i}"), &PatchParams::default(), &patch)
                .await
                .unwrap();
        }
        if i % 3 == 0 {
            cms.delete(&format!("cm-{i}"), &DeleteParams::default())
                .await
                .unwrap();
        }
    }
    let p: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/data/v", "value": "3"}]))
            .unwrap();
    cms.patch("early-0", &PatchParams::default(), &Patch::Json::<()>(p))
        .await
        .unwrap();
    let mut early1 = cms.get("early-1").await.unwrap();
    early1.data = Some([("v".to_string(), "4".to_string())].into());
    cms.replace("early-1", &PostParams::default(), &early1)
        .await
        .unwrap();
    cms.delete("early-2", &DeleteParams::default())
        .await
        .unwrap();

    // The store converges on what a fresh list says: same names, versions
    // and data.
    let want = summary(&cms.list(&ListParams::default()).await.unwrap().items);
    assert_eq!(want.len(), 2 + 10 - 4, "{want:?}");
    assert_eq!(want["early-0"].1, "3");
    assert_eq!(want["early-1"].1, "4");
    assert_eq!(want["cm-2"].1, "2");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = reader.state();
        let got = summary(state.iter().map(|c| c.as_ref()));
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reflector store {got:?}\n!= list {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!consumer.is_finished(), "the watcher is still running");
    consumer.abort();
}
