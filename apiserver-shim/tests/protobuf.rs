//! application/vnd.kubernetes.protobuf against the real binary, with
//! k8s-pb's prost types (kube-rs's bindings of the Kubernetes protos) on
//! the client side, so the wire format is checked by code that shares
//! nothing with the server's conversion: request bodies, object, list and
//! watch responses, DeleteOptions, the 406/415 answers for custom
//! resources, and (over Debian's etcd 3.4) objects kube-apiserver would
//! store in protobuf, written into etcd directly and then served.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Request;
use k8s_pb::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_pb::api::core::v1::{ConfigMap, ConfigMapList, Container, Pod, PodSpec};
use k8s_pb::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta, Status, WatchEvent};
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use prost::Message;
use serde_json::{json, Value};
use support::apiserver::Apiserver;
use support::etcd::{self, Etcd};

mod support;

const PB: &str = "application/vnd.kubernetes.protobuf";
const CMS: &str = "/api/v1/namespaces/default/configmaps";

/// `k8s\0` + runtime.Unknown around `raw`, as client-go sends it.
fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let mut out = b"k8s\0".to_vec();
    Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    }
    .encode(&mut out)
    .unwrap();
    out
}

/// The (apiVersion, kind) and message bytes of an enveloped body.
fn open(body: &[u8]) -> (String, String, Vec<u8>) {
    assert!(body.starts_with(b"k8s\0"), "no envelope: {body:?}");
    let u = Unknown::decode(&body[4..]).unwrap();
    let t = u.type_meta.unwrap();
    (t.api_version.unwrap(), t.kind.unwrap(), u.raw.unwrap())
}

async fn client(server: &Apiserver) -> Client {
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// One request; the status, the response Content-Type and body.
async fn send(
    client: &Client,
    method: &str,
    uri: &str,
    content_type: &str,
    accept: &str,
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .header("accept", accept)
        .body(body)
        .unwrap();
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (code, ct, bytes)
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

fn configmap(name: &str, k: &str, v: &str) -> ConfigMap {
    ConfigMap {
        metadata: Some(ObjectMeta {
            name: Some(name.into()),
            // What Go's encoder writes for fields a client leaves unset.
            namespace: Some(String::new()),
            generate_name: Some(String::new()),
            ..Default::default()
        }),
        data: [(k.to_string(), v.to_string())].into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn protobuf_requests_and_responses() {
    let server = Apiserver::start(36100, &[]);
    let client = client(&server).await;

    // Create in protobuf, answered in protobuf.
    let body = envelope("v1", "ConfigMap", configmap("pb", "a", "1").encode_to_vec());
    let (code, ct, resp) = send(&client, "POST", CMS, PB, PB, body).await;
    assert_eq!(
        (code, ct.as_str()),
        (201, PB),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    let (api_version, kind, raw) = open(&resp);
    assert_eq!((api_version.as_str(), kind.as_str()), ("v1", "ConfigMap"));
    let created = ConfigMap::decode(raw.as_slice()).unwrap();
    let meta = created.metadata.unwrap();
    assert_eq!(meta.name.as_deref(), Some("pb"));
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    assert!(meta.uid.is_some_and(|u| !u.is_empty()));
    assert!(meta
        .creation_timestamp
        .is_some_and(|t| t.seconds.unwrap_or(0) > 0));
    assert_eq!(created.data["a"], "1");

    // Stored as JSON (what the shim and kube-apiserver both read), without
    // the empty strings Go's encoder sent.
    let (code, _, resp) = send(
        &client,
        "GET",
        &format!("{CMS}/pb"),
        "",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    let got = json_of(&resp);
    assert_eq!(got["data"], json!({"a": "1"}));
    assert!(got["metadata"].get("generateName").is_none(), "{got}");

    // A list in protobuf: ConfigMapList with its ListMeta.
    let (code, ct, resp) = send(&client, "GET", CMS, "", &format!("{PB}, */*"), vec![]).await;
    assert_eq!((code, ct.as_str()), (200, PB));
    let (_, kind, raw) = open(&resp);
    assert_eq!(kind, "ConfigMapList");
    let list = ConfigMapList::decode(raw.as_slice()).unwrap();
    assert!(list
        .metadata
        .unwrap()
        .resource_version
        .is_some_and(|rv| rv.parse::<i64>().unwrap() > 0));
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].data["a"], "1");

    // A Deployment with replicas 0 (a pointer in Go: 0 is a value) and an
    // IntOrString and a Quantity in it.
    let d = Deployment {
        metadata: Some(ObjectMeta {
            name: Some("web".into()),
            ..Default::default()
        }),
        spec: Some(DeploymentSpec {
            replicas: Some(0),
            selector: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            template: Some(k8s_pb::api::core::v1::PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: [("app".to_string(), "web".to_string())].into(),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: Some("c".into()),
                        image: Some("nginx".into()),
                        resources: Some(k8s_pb::api::core::v1::ResourceRequirements {
                            limits: [(
                                "cpu".to_string(),
                                k8s_pb::apimachinery::pkg::api::resource::Quantity {
                                    string: Some("250m".into()),
                                },
                            )]
                            .into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            strategy: Some(k8s_pb::api::apps::v1::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(k8s_pb::api::apps::v1::RollingUpdateDeployment {
                    max_surge: Some(k8s_pb::apimachinery::pkg::util::intstr::IntOrString {
                        r#type: Some(1),
                        int_val: None,
                        str_val: Some("30%".into()),
                    }),
                    max_unavailable: None,
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let deployments = "/apis/apps/v1/namespaces/default/deployments";
    let body = envelope("apps/v1", "Deployment", d.encode_to_vec());
    let (code, _, resp) = send(&client, "POST", deployments, PB, "application/json", body).await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&resp));
    let got = json_of(&resp);
    assert_eq!(got["spec"]["replicas"], 0, "{got}");
    assert_eq!(got["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "30%");
    assert_eq!(
        got["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"],
        "250m"
    );
    // And back: the scale subresource in protobuf is an autoscaling/v1 Scale.
    let (code, ct, resp) = send(
        &client,
        "GET",
        &format!("{deployments}/web/scale"),
        "",
        PB,
        vec![],
    )
    .await;
    assert_eq!((code, ct.as_str()), (200, PB));
    let (api_version, kind, raw) = open(&resp);
    assert_eq!(
        (api_version.as_str(), kind.as_str()),
        ("autoscaling/v1", "Scale")
    );
    let scale = k8s_pb::api::autoscaling::v1::Scale::decode(raw.as_slice()).unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(0));

    // A watch in protobuf: length-prefixed WatchEvent frames whose object
    // is enveloped.
    let watch_client = client.clone();
    let watch = tokio::spawn(async move {
        let req = Request::builder()
            .uri(format!("{CMS}?watch=1&resourceVersion=0"))
            .header("accept", PB)
            .body(Vec::new())
            .unwrap();
        let resp = watch_client
            .send(req.map(kube::client::Body::from))
            .await
            .unwrap();
        assert_eq!(
            resp.headers()["content-type"],
            "application/vnd.kubernetes.protobuf;stream=watch"
        );
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        let mut events = Vec::new();
        while events.len() < 2 {
            let frame = body.frame().await.unwrap().unwrap();
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
            }
            while buf.len() >= 4 {
                let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
                if buf.len() < 4 + len {
                    break;
                }
                let ev = WatchEvent::decode(&buf[4..4 + len]).unwrap();
                buf.drain(..4 + len);
                let (_, kind, raw) = open(ev.object.unwrap().raw.as_deref().unwrap());
                assert_eq!(kind, "ConfigMap");
                let cm = ConfigMap::decode(raw.as_slice()).unwrap();
                events.push((ev.r#type.unwrap(), cm.metadata.unwrap().name.unwrap()));
            }
        }
        events
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body = envelope(
        "v1",
        "ConfigMap",
        configmap("later", "b", "2").encode_to_vec(),
    );
    let (code, _, _) = send(&client, "POST", CMS, PB, PB, body).await;
    assert_eq!(code, 201);
    let events = tokio::time::timeout(Duration::from_secs(20), watch)
        .await
        .expect("two watch events within 20 s")
        .unwrap();
    assert_eq!(
        events,
        [
            ("ADDED".to_string(), "pb".to_string()),
            ("ADDED".to_string(), "later".to_string())
        ]
    );

    // DELETE with DeleteOptions in protobuf (client-go's protobuf clients):
    // a precondition on a wrong uid is honoured, so the options were read.
    let opts = DeleteOptions {
        preconditions: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let body = envelope("meta.k8s.io/v1", "DeleteOptions", opts.encode_to_vec());
    let (code, ct, resp) = send(&client, "DELETE", &format!("{CMS}/pb"), PB, PB, body).await;
    assert_eq!(code, 409, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(ct, "application/json");
    assert!(json_of(&resp)["message"]
        .as_str()
        .unwrap()
        .contains("UID in precondition"));
    let body = envelope(
        "meta.k8s.io/v1",
        "DeleteOptions",
        DeleteOptions::default().encode_to_vec(),
    );
    let (code, ct, resp) = send(&client, "DELETE", &format!("{CMS}/pb"), PB, PB, body).await;
    assert_eq!((code, ct.as_str()), (200, PB));
    let (_, kind, raw) = open(&resp);
    assert_eq!(kind, "Status");
    assert_eq!(
        Status::decode(raw.as_slice()).unwrap().status.as_deref(),
        Some("Success")
    );

    // Garbage in protobuf: a 400 Status.
    let (code, _, resp) = send(&client, "POST", CMS, PB, PB, b"k8s\0\xff\xff\xff".to_vec()).await;
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&resp));

    // Custom resources have no protobuf: 415 for a body, 406 when only
    // protobuf is acceptable, JSON when the client also takes */*.
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.pb.example.com"},
        "spec": {"group": "pb.example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let (code, _, resp) = send(
        &client,
        "POST",
        crds,
        "application/json",
        PB,
        crd.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&resp));
    let widgets = "/apis/pb.example.com/v1/namespaces/default/widgets";
    let mut listed = (0, String::new(), Vec::new());
    for _ in 0..50 {
        listed = send(&client, "GET", widgets, "", &format!("{PB}, */*"), vec![]).await;
        if listed.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!((listed.0, listed.1.as_str()), (200, "application/json"));
    let (code, _, resp) = send(&client, "GET", widgets, "", PB, vec![]).await;
    assert_eq!(code, 406, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(json_of(&resp)["reason"], "NotAcceptable");
    let body = envelope("pb.example.com/v1", "Widget", vec![]);
    let (code, _, resp) = send(&client, "POST", widgets, PB, "application/json", body).await;
    assert_eq!(code, 415, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(json_of(&resp)["reason"], "UnsupportedMediaType");
}

/// etcdctl put with the value on stdin (it may hold any byte).
fn put(etcd: &Etcd, key: &str, value: &[u8]) {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([&format!("--endpoints={}", etcd.url), "put", key])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(value).unwrap();
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn a_store_kube_apiserver_wrote_in_protobuf_is_served() {
    if !etcd::present() {
        return;
    }
    let etcd = Etcd::start(36200);
    let server = Apiserver::start(36300, &[format!("--etcd-servers={}", etcd.url)]);
    let client = client(&server).await;
    // A pod as kube-apiserver stores it: enveloped protobuf, no
    // resourceVersion, Go's zero values written out.
    let pod = Pod {
        metadata: Some(ObjectMeta {
            name: Some("old".into()),
            namespace: Some("default".into()),
            uid: Some("3d1c0b8e-0000-4000-8000-000000000001".into()),
            creation_timestamp: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::Time {
                seconds: Some(1_700_000_000),
                nanos: Some(0),
            }),
            generate_name: Some(String::new()),
            labels: [("app".to_string(), "legacy".to_string())].into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: Some("c".into()),
                image: Some("nginx".into()),
                ..Default::default()
            }],
            node_name: Some("node-1".into()),
            ..Default::default()
        }),
        status: Some(k8s_pb::api::core::v1::PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        }),
    };
    put(
        &etcd,
        "/registry/pods/default/old",
        &envelope("v1", "Pod", pod.encode_to_vec()),
    );

    let pods = "/api/v1/namespaces/default/pods";
    let (code, _, resp) = send(
        &client,
        "GET",
        &format!("{pods}/old"),
        "",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&resp));
    let got = json_of(&resp);
    assert_eq!(got["kind"], "Pod");
    assert_eq!(got["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(got["metadata"]["labels"]["app"], "legacy");
    assert_eq!(got["spec"]["nodeName"], "node-1");
    assert_eq!(got["status"]["phase"], "Running");
    assert!(got["metadata"].get("generateName").is_none(), "{got}");

    // Listed with a field selector, and then changed: the write stores JSON.
    let (code, _, resp) = send(
        &client,
        "GET",
        &format!("{pods}?fieldSelector=spec.nodeName%3Dnode-1"),
        "",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(json_of(&resp)["items"][0]["metadata"]["name"], "old");
    let patch = json!({"metadata": {"labels": {"app": "moved"}}})
        .to_string()
        .into_bytes();
    let (code, _, resp) = send(
        &client,
        "PATCH",
        &format!("{pods}/old"),
        "application/merge-patch+json",
        "application/json",
        patch,
    )
    .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&resp));
    let stored = etcd.get("/registry/pods/default/old");
    let stored = json_of(&stored);
    assert_eq!(stored["metadata"]["labels"]["app"], "moved");
    assert_eq!(stored["spec"]["containers"][0]["image"], "nginx");
}
