//! Bad requests to the binary over Debian's etcd 3.4: each answered with
//! kube-apiserver's Status (code, reason, message), and nothing of it
//! stored, as etcdctl reads the store around the API. Requests go raw
//! through kube-rs's client (its TLS and token from the kubeconfig).
//! Without etcd the test skips, except under CI=true.

use http_body_util::BodyExt;
use hyper::Request;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{json, Value};
use support::apiserver::Apiserver;
use support::etcd::{self, Etcd};

mod support;

const CMS: &str = "/api/v1/namespaces/default/configmaps";

/// Sends `body` with `content_type`; the status code and the JSON answer.
async fn send(
    client: &Client,
    method: &str,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (code, body)
}

/// Asserts a Failure Status with this code, reason and message (a prefix:
/// decoder messages go on with the decoder's own words).
fn assert_status(got: &(u16, Value), code: u16, reason: &str, message: &str) {
    let (http, s) = got;
    assert_eq!(*http, code, "{s}");
    assert_eq!(
        (s["kind"].as_str(), s["apiVersion"].as_str()),
        (Some("Status"), Some("v1")),
        "{s}"
    );
    assert_eq!(s["status"], "Failure", "{s}");
    assert_eq!(s["code"], code, "{s}");
    assert_eq!(s["reason"], reason, "{s}");
    let m = s["message"].as_str().unwrap();
    assert!(m.starts_with(message), "message {m:?}, wanted {message:?}…");
}

fn cm(name: &str, data: Value) -> Vec<u8> {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn bad_input_is_a_status_and_stores_nothing() {
    if !etcd::present() {
        return;
    }
    let etcd = Etcd::start(43800);
    let server = Apiserver::start(43900, &[format!("--etcd-servers={}", etcd.url)]);
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let json_ct = "application/json";

    // Malformed JSON and YAML.
    let r = send(
        &client,
        "POST",
        CMS,
        json_ct,
        b"{\"metadata\": {\"name\": \"j\"".to_vec(),
    )
    .await;
    assert_status(
        &r,
        400,
        "BadRequest",
        "the object provided is unrecognized: ",
    );
    let r = send(&client, "POST", CMS, json_ct, b"[\"a list\"]".to_vec()).await;
    assert_status(
        &r,
        400,
        "BadRequest",
        "the object provided is unrecognized: not a JSON object",
    );
    let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n data: [".to_vec();
    let r = send(&client, "POST", CMS, "application/yaml", yaml).await;
    assert_status(
        &r,
        400,
        "BadRequest",
        "the object provided is unrecognized: ",
    );
    // (Well-formed YAML is taken.)
    let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: b\n";
    let r = send(&client, "POST", CMS, "application/yaml", yaml.to_vec()).await;
    assert_eq!((r.0, &r.1["data"]["a"]), (201, &json!("b")), "{}", r.1);

    // A kind or apiVersion the URL does not name.
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
    let r = send(
        &client,
        "POST",
        CMS,
        json_ct,
        secret.to_string().into_bytes(),
    )
    .await;
    assert_status(
        &r,
        400,
        "BadRequest",
        "the kind in the data (Secret) does not match the expected kind (ConfigMap)",
    );
    let apps = json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "a"}});
    let r = send(&client, "POST", CMS, json_ct, apps.to_string().into_bytes()).await;
    assert_status(
        &r,
        400,
        "BadRequest",
        "the API version in the data (apps/v1) does not match the expected API version (v1)",
    );

    // Invalid names: 422 Invalid with the field's cause.
    let r = send(&client, "POST", CMS, json_ct, cm("Bad_Name", json!({}))).await;
    assert_status(&r, 422, "Invalid", "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain");
    assert_eq!(r.1["details"]["causes"][0]["field"], "metadata.name");
    assert_eq!(r.1["details"]["causes"][0]["reason"], "FieldValueInvalid");
    let long = "a".repeat(254);
    let r = send(&client, "POST", CMS, json_ct, cm(&long, json!({}))).await;
    assert_status(
        &r,
        422,
        "Invalid",
        &format!("ConfigMap \"{long}\" is invalid: metadata.name: "),
    );

    // Objects over etcd's 1.5 MiB request limit (under the 3 MiB body cap):
    // etcd refuses them, as kube-apiserver reports it.
    // (etcd's gRPC cap, 2 MiB, is met first by the larger ones.)
    for (name, size) in [("big", 1800 * 1024), ("bigger", 2560 * 1024)] {
        let big = "x".repeat(size);
        let r = send(&client, "POST", CMS, json_ct, cm(name, json!({"x": big}))).await;
        assert_status(
            &r,
            500,
            "InternalError",
            "Internal error occurred: etcdserver: request is too large",
        );
    }
    // Bodies over 3 MiB: refused before they are read whole.
    let huge = "x".repeat(4 * 1024 * 1024);
    let r = send(
        &client,
        "POST",
        CMS,
        json_ct,
        cm("huge", json!({"x": huge})),
    )
    .await;
    assert_status(
        &r,
        413,
        "RequestEntityTooLarge",
        "Request entity too large: limit is 3145728",
    );

    // A stale update: 409 Conflict; the stored object is the fresh one.
    let (code, created) = send(&client, "POST", CMS, json_ct, cm("c", json!({"v": "1"}))).await;
    assert_eq!(code, 201, "{created}");
    let mut fresh = created.clone();
    fresh["data"]["v"] = json!("2");
    let c_uri = format!("{CMS}/c");
    let (code, updated) = send(
        &client,
        "PUT",
        &c_uri,
        json_ct,
        fresh.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 200, "{updated}");
    let mut stale = created.clone();
    stale["data"]["v"] = json!("stale");
    let r = send(
        &client,
        "PUT",
        &c_uri,
        json_ct,
        stale.to_string().into_bytes(),
    )
    .await;
    assert_status(&r, 409, "Conflict", "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again");
    assert_eq!(r.1["details"], json!({"name": "c", "kind": "configmaps"}));

    // fieldValidation=Strict refuses a field the kind's schema lacks, as
    // kube-apiserver's strict decoding (Warn and Ignore drop it:
    // tests/kubectl_writes.rs).
    let unknown = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "u"}, "spec": {"foo": 1}});
    let r = send(
        &client,
        "POST",
        &format!("{CMS}?fieldValidation=Strict"),
        json_ct,
        unknown.to_string().into_bytes(),
    )
    .await;
    assert_status(
        &r,
        400,
        "BadRequest",
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"spec\"",
    );

    // In the store: only what was accepted.
    let keys = etcd.etcdctl(&[
        "get",
        "/registry/configmaps/default/",
        "--prefix",
        "--keys-only",
    ]);
    let keys: Vec<&str> = std::str::from_utf8(&keys)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        keys,
        [
            "/registry/configmaps/default/c",
            "/registry/configmaps/default/from-yaml"
        ]
    );
    let stored: Value =
        serde_json::from_slice(&etcd.get("/registry/configmaps/default/c")).unwrap();
    assert_eq!(stored["data"]["v"], "2");
    let secrets = etcd.etcdctl(&["get", "/registry/secrets/", "--prefix", "--keys-only"]);
    assert!(
        secrets.iter().all(|b| b.is_ascii_whitespace()),
        "{}",
        String::from_utf8_lossy(&secrets)
    );
}
