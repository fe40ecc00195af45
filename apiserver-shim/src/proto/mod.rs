//! `application/vnd.kubernetes.protobuf`, kube-apiserver's wire and storage
//! format for the built-in kinds: the 4 bytes `k8s\0`, then a runtime.Unknown
//! {typeMeta{apiVersion, kind}, raw = the object's message, contentEncoding,
//! contentType}. Watch streams are 4-byte big-endian length-prefixed frames,
//! each a bare meta/v1 WatchEvent (no envelope) whose object.raw is the
//! object in the envelope, as client-go's protobuf stream decoder reads them.
//!
//! Objects are converted between the JSON the shim stores and their message
//! by the descriptors of the vendored Kubernetes protos (`convert`); which
//! message a kind is comes from its registry row
//! ([`registry::proto_package`](crate::registry::proto_package)). Custom
//! resources have no protobuf form.

mod convert;

use std::sync::OnceLock;

use bytes::Bytes;
use k8s_pb::apimachinery::pkg::apis::meta::v1::WatchEvent;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::registry;

/// The media type, as in Accept and Content-Type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The Content-Type of a protobuf watch.
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";
/// The envelope's first bytes.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// The package of meta/v1 (Status, DeleteOptions, WatchEvent...).
const META: &str = "apimachinery.pkg.apis.meta.v1";

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // Built from the protos under proto/ by build.rs: a decode failure
        // is a broken build, caught by the first test that converts.
        DescriptorPool::decode(&include_bytes!(concat!(env!("OUT_DIR"), "/k8s.bin"))[..])
            .unwrap_or_else(|e| panic!("the compiled Kubernetes descriptors do not decode: {e}"))
    })
}

/// The message of (apiVersion, kind): the kind in its group's package, else
/// in meta/v1 (Status, DeleteOptions: every group serves those).
fn message(api_version: &str, kind: &str) -> Option<MessageDescriptor> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    registry::proto_package(group, version)
        .and_then(|pkg| pool().get_message_by_name(&format!("{pkg}.{kind}")))
        .or_else(|| pool().get_message_by_name(&format!("{META}.{kind}")))
}

/// Whether a stored value or body is in the envelope.
pub fn is_enveloped(data: &[u8]) -> bool {
    data.starts_with(MAGIC)
}

/// An enveloped object as JSON (apiVersion and kind from its typeMeta).
pub fn decode(data: &[u8]) -> Result<Value, String> {
    let rest = data
        .strip_prefix(MAGIC.as_slice())
        .ok_or("no k8s\\0 envelope")?;
    let unknown = Unknown::decode(rest).map_err(|e| format!("runtime.Unknown: {e}"))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    if !matches!(unknown.content_encoding.as_deref(), None | Some("")) {
        return Err(format!(
            "content encoding {:?} is not read",
            unknown.content_encoding.unwrap_or_default()
        ));
    }
    let desc = message(&api_version, &kind)
        .ok_or_else(|| format!("no kind {kind:?} is registered for version {api_version:?}"))?;
    let msg = DynamicMessage::decode(desc, unknown.raw.as_deref().unwrap_or_default())
        .map_err(|e| format!("{kind}: {e}"))?;
    let mut obj = convert::to_json(&msg)?;
    if let Some(m) = obj.as_object_mut() {
        // apiVersion and kind first, as Kubernetes writes them.
        let mut out = serde_json::Map::new();
        out.insert("apiVersion".into(), json!(api_version));
        out.insert("kind".into(), json!(kind));
        out.append(m);
        obj = Value::Object(out);
    }
    Ok(obj)
}

/// A request body in protobuf as JSON.
pub fn decode_body(data: &[u8]) -> Result<Value, ApiError> {
    decode(data)
        .map_err(|e| ApiError::BadRequest(format!("the object provided is unrecognized: {e}")))
}

/// A JSON object with apiVersion and kind, enveloped; None when the kind has
/// no protobuf message (a custom resource).
pub fn encode(obj: &Value) -> Option<Result<Vec<u8>, String>> {
    let api_version = obj.get("apiVersion")?.as_str()?;
    let kind = obj.get("kind")?.as_str()?;
    let desc = message(api_version, kind)?;
    Some(
        convert::to_message(&desc, obj).map(|msg| envelope(api_version, kind, msg.encode_to_vec())),
    )
}

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = MAGIC.to_vec();
    unknown
        .encode(&mut out)
        .unwrap_or_else(|_| unreachable!("a Vec grows"));
    out
}

/// A response body in protobuf; an object without a message is a 406, as
/// from kube-apiserver for a custom resource.
pub fn encode_response(obj: &Value) -> Result<Bytes, ApiError> {
    match encode(obj) {
        Some(Ok(b)) => Ok(Bytes::from(b)),
        Some(Err(e)) => Err(ApiError::Internal(format!("encoding protobuf: {e}"))),
        None => Err(ApiError::NotAcceptable),
    }
}

/// One watch event (a JSON line `{"type","object"}` as the watch writes it)
/// as a protobuf watch frame.
pub fn watch_frame(line: &[u8]) -> Result<Bytes, String> {
    let event: Value = serde_json::from_slice(line).map_err(|e| format!("watch event: {e}"))?;
    let t = event["type"].as_str().unwrap_or_default();
    watch_event_frame(t, &event["object"])
}

/// The protobuf watch frame of an event of type `t` carrying `obj`.
pub fn watch_event_frame(t: &str, obj: &Value) -> Result<Bytes, String> {
    let object = encode(obj).ok_or("the event's object has no protobuf message")??;
    let event = WatchEvent {
        r#type: Some(t.to_string()),
        object: Some(RawExtension { raw: Some(object) }),
    };
    let body = event.encode_to_vec();
    let len = u32::try_from(body.len()).map_err(|_| "watch event over 4 GiB")?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(obj: Value) -> Value {
        decode(&encode(&obj).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn a_deployment_survives_the_round_trip() {
        let d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                "creationTimestamp": "2024-05-01T10:00:00Z", "generation": 2,
                "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "u", "blockOwnerDeletion": true}],
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:replicas": {}}}, "time": "2024-05-01T10:00:00Z"}]},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                    "containers": [{"name": "c", "image": "nginx",
                        "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}},
                        "env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}],
                        "livenessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 5}}],
                    "volumes": [{"name": "v", "emptyDir": {}}, {"name": "s", "secret": {"secretName": "x"}}]}}}
        });
        assert_eq!(roundtrip(d.clone()), d);
    }

    #[test]
    fn secrets_bytes_leases_micro_times_and_crd_schemas_convert() {
        let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"k": "aGVsbG8="}, "type": "Opaque"});
        assert_eq!(roundtrip(s.clone()), s);
        let l = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
            "spec": {"holderIdentity": "a", "renewTime": "2024-05-01T10:00:00.123456Z"}});
        assert_eq!(roundtrip(l.clone()), l);
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "a.b.c"},
            "spec": {"group": "b.c", "scope": "Namespaced", "names": {"plural": "a", "kind": "A"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object", "x-kubernetes-preserve-unknown-fields": true,
                    "properties": {"spec": {"type": "object", "additionalProperties": {"type": "string"},
                        "default": {"a": 1}, "required": ["a"]}}}}}]}});
        assert_eq!(roundtrip(crd.clone()), crd);
    }

    #[test]
    fn go_empty_strings_and_zero_times_are_left_out() {
        let desc = message("v1", "ConfigMap").unwrap();
        let mut msg = DynamicMessage::new(desc);
        let mut meta = DynamicMessage::new(message("v1", "ObjectMeta").unwrap());
        meta.set_field_by_name("name", prost_reflect::Value::String("c".into()));
        meta.set_field_by_name("namespace", prost_reflect::Value::String(String::new()));
        let mut t = DynamicMessage::new(message("v1", "Time").unwrap());
        t.set_field_by_name("seconds", prost_reflect::Value::I64(convert::GO_ZERO_TIME));
        t.set_field_by_name("nanos", prost_reflect::Value::I32(0));
        meta.set_field_by_name("creationTimestamp", prost_reflect::Value::Message(t));
        msg.set_field_by_name("metadata", prost_reflect::Value::Message(meta));
        let raw = envelope("v1", "ConfigMap", msg.encode_to_vec());
        assert_eq!(
            decode(&raw).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
        );
    }

    #[test]
    fn every_built_in_kind_and_its_list_has_a_message() {
        for k in registry::KINDS {
            assert!(k.has_protobuf(), "{}", k.kind);
            for kind in [k.kind.to_string(), format!("{}List", k.kind)] {
                assert!(message(&k.api_version(), &kind).is_some(), "{kind}");
            }
        }
        assert!(message("autoscaling/v1", "Scale").is_some());
        assert!(message("v1", "Status").is_some());
    }

    #[test]
    fn custom_resources_and_garbage_are_refused() {
        let cr = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {}});
        assert!(encode(&cr).is_none());
        assert_eq!(encode_response(&cr).unwrap_err().code(), 406);
        assert!(decode(b"k8s\0\xff\xff").is_err());
        assert!(decode(b"{}").is_err());
    }

    #[test]
    fn watch_frames_are_length_prefixed_watch_events() {
        let line = br#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}}"#;
        let frame = watch_frame(line).unwrap();
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        let ev = WatchEvent::decode(&frame[4..]).unwrap();
        assert_eq!(ev.r#type.as_deref(), Some("ADDED"));
        let obj = decode(ev.object.unwrap().raw.as_deref().unwrap()).unwrap();
        assert_eq!(obj["metadata"]["name"], "c");
    }
}
