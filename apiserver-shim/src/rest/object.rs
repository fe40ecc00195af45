//! Objects as stored and as served: JSON at kube-apiserver's keys, with
//! metadata.resourceVersion taken from the store (never stored), and the
//! metadata rules every write follows.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::registry::Kind;
use crate::store::Kv;

/// Where objects of `kind` live: `<prefix>/<resource>/[<ns>/]`. The trailing
/// "/" keeps namespace "a" from matching "ab".
pub fn collection_prefix(prefix: &str, kind: &Kind, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if kind.namespaced => format!("{prefix}/{}/{ns}/", kind.storage_segment()),
        _ => format!("{prefix}/{}/", kind.storage_segment()),
    }
}

pub fn key(prefix: &str, kind: &Kind, namespace: Option<&str>, name: &str) -> String {
    format!("{}{name}", collection_prefix(prefix, kind, namespace))
}

/// A stored value served: its JSON with resourceVersion = mod_revision.
pub fn decode(kv: &Kv) -> Result<Value, ApiError> {
    decode_at(&kv.value, &kv.key, kv.mod_revision)
}

/// A stored value served with resourceVersion `revision` (a deletion's).
/// Values in kube-apiserver's protobuf envelope (a store it wrote) are read
/// as well as JSON; writes store JSON, which kube-apiserver reads too.
pub fn decode_at(value: &[u8], key: &[u8], revision: i64) -> Result<Value, ApiError> {
    let unreadable = |e: &dyn std::fmt::Display| {
        ApiError::Internal(format!(
            "the object at {} is unreadable: {e}",
            String::from_utf8_lossy(key)
        ))
    };
    let mut obj: Value = if crate::proto::is_enveloped(value) {
        crate::proto::decode(value).map_err(|e| unreadable(&e))?
    } else {
        serde_json::from_slice(value).map_err(|e| unreadable(&e))?
    };
    set_resource_version(&mut obj, revision);
    Ok(obj)
}

/// A stored value as `kind` serves it (a custom resource in the version
/// asked for, pruned and defaulted).
pub fn decode_as(kind: &Kind, kv: &Kv) -> Result<Value, ApiError> {
    let mut obj = decode(kv)?;
    crate::crd::serve(kind, &mut obj);
    Ok(obj)
}

/// The bytes to store for `kind` (a custom resource in its storage version).
pub fn encode_as(kind: &Kind, obj: &Value) -> Bytes {
    encode(&crate::crd::stored(kind, obj))
}

/// The bytes to store: the object without resourceVersion or selfLink.
pub fn encode(obj: &Value) -> Bytes {
    let mut stored = obj.clone();
    if let Some(m) = stored.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
    Bytes::from(stored.to_string())
}

pub fn set_resource_version(obj: &mut Value, revision: i64) {
    metadata_mut(obj).insert("resourceVersion".into(), json!(revision.to_string()));
}

/// metadata as a mutable map, created (or replaced, if not an object) when
/// needed.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let Some(map) = obj.as_object_mut() else {
        unreachable!("made an object above")
    };
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    match meta.as_object_mut() {
        Some(m) => m,
        None => unreachable!("made an object above"),
    }
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

/// metadata.resourceVersion as a revision; an unparsable one is a bad request.
pub fn resource_version(obj: &Value) -> Result<Option<i64>, ApiError> {
    match meta_str(obj, "resourceVersion") {
        None | Some("") => Ok(None),
        Some(rv) => rv
            .parse()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion: {rv:?}"))),
    }
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// RFC 3339 in whole seconds, UTC: how Kubernetes writes metadata times.
pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

pub fn now() -> String {
    timestamp(SystemTime::now())
}

pub fn in_seconds(seconds: u64) -> String {
    timestamp(SystemTime::now() + Duration::from_secs(seconds))
}

/// Parses a request body, JSON, (Content-Type application/yaml) YAML or
/// (application/vnd.kubernetes.protobuf) protobuf, into an object.
pub fn parse_body(body: &[u8], content_type: Option<&str>) -> Result<Value, ApiError> {
    let unrecognized = |e: &dyn std::fmt::Display| {
        ApiError::BadRequest(format!("the object provided is unrecognized: {e}"))
    };
    let v: Value = match content_type {
        Some("application/yaml") => serde_saphyr::from_slice(body).map_err(|e| unrecognized(&e))?,
        Some(crate::proto::MEDIA_TYPE) => crate::proto::decode_body(body)?,
        _ => serde_json::from_slice(body).map_err(|e| unrecognized(&e))?,
    };
    if !v.is_object() {
        return Err(ApiError::BadRequest(
            "the object provided is unrecognized: not a JSON object".into(),
        ));
    }
    Ok(v)
}

/// The keys a JSON body gives more than once, by path (`metadata.name`,
/// `spec.containers[0].image`), in order: serde_json keeps the last value,
/// as kube-apiserver does, and fieldValidation decides what is said about
/// them. Empty for a body that is not JSON.
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let seed = Duplicates {
        path: String::new(),
        out: &mut out,
    };
    match serde::de::DeserializeSeed::deserialize(seed, &mut de) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

struct Duplicates<'a> {
    path: String,
    out: &'a mut Vec<String>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Duplicates<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Duplicates<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                k.clone()
            } else {
                format!("{}.{k}", self.path)
            };
            if !seen.insert(k) {
                self.out.push(path.clone());
            }
            map.next_value_seed(Duplicates {
                path,
                out: &mut *self.out,
            })?;
        }
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(Duplicates {
                path: format!("{}[{i}]", self.path),
                out: &mut *self.out,
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Checks a body's apiVersion and kind against the URL's, filling them in
/// when absent (kube-apiserver defaults them from the URL).
pub fn check_type(kind: &Kind, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::BadRequest(
            "the object provided is unrecognized: not a JSON object".into(),
        ));
    }
    let want = kind.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {}
        Some(v) if v == want => {}
        Some(v) => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({want})"
            )))
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => {}
        Some(k) if k == kind.kind => {}
        Some(k) => {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                kind.kind
            )))
        }
    }
    obj["apiVersion"] = json!(want);
    obj["kind"] = json!(kind.kind);
    Ok(())
}

/// What a generation counts changes of: everything but metadata, and but
/// status when the kind has a status subresource.
pub fn spec_part(kind: &Kind, obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        if kind.status {
            m.remove("status");
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    #[test]
    fn keys_follow_kube_apiserver() {
        let svc = find("", "v1", "services").unwrap();
        assert_eq!(
            key("/registry", svc, Some("default"), "web"),
            "/registry/services/specs/default/web"
        );
        let ns = find("", "v1", "namespaces").unwrap();
        assert_eq!(
            key("/registry", ns, None, "ns1"),
            "/registry/namespaces/ns1"
        );
        let d = find("apps", "v1", "deployments").unwrap();
        assert_eq!(
            collection_prefix("/registry", d, None),
            "/registry/deployments/"
        );
        assert_eq!(collection_prefix("/r", d, Some("a")), "/r/deployments/a/");
    }

    #[test]
    fn resource_version_is_served_but_never_stored() {
        let kv = Kv {
            key: Bytes::from_static(b"/registry/configmaps/d/c"),
            value: Bytes::from_static(br#"{"metadata":{"name":"c"}}"#),
            create_revision: 3,
            mod_revision: 7,
        };
        let obj = decode(&kv).unwrap();
        assert_eq!(obj["metadata"]["resourceVersion"], "7");
        let stored: Value = serde_json::from_slice(&encode(&obj)).unwrap();
        assert_eq!(stored, json!({"metadata": {"name": "c"}}));
    }

    #[test]
    fn type_meta_must_match_the_url() {
        let cm = find("", "v1", "configmaps").unwrap();
        let mut o = json!({"metadata": {}});
        check_type(cm, &mut o).unwrap();
        assert_eq!(
            (o["apiVersion"].as_str(), o["kind"].as_str()),
            (Some("v1"), Some("ConfigMap"))
        );
        let mut wrong = json!({"apiVersion": "apps/v1", "kind": "ConfigMap"});
        assert_eq!(check_type(cm, &mut wrong).unwrap_err().code(), 400);
        let mut wrong = json!({"apiVersion": "v1", "kind": "Secret"});
        let e = check_type(cm, &mut wrong).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the kind in the data (Secret) does not match the expected kind (ConfigMap)"
        );
    }

    #[test]
    fn bodies_are_json_or_yaml() {
        let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n";
        let o = parse_body(yaml, Some("application/yaml")).unwrap();
        assert_eq!(o["metadata"]["name"], "c");
        assert_eq!(o["data"]["a"], "1");
        let e = parse_body(b"metadata: [unclosed", Some("application/yaml")).unwrap_err();
        assert_eq!(e.code(), 400);
        assert_eq!(parse_body(b"{\"a\":", None).unwrap_err().code(), 400);
        assert_eq!(parse_body(b"[1]", None).unwrap_err().code(), 400);
    }

    #[test]
    fn duplicate_keys_are_found_with_their_path() {
        let body = br#"{"metadata":{"name":"a","name":"b"},"spec":{"c":[{"x":1,"x":2},{"y":1}]},"spec":{}}"#;
        assert_eq!(
            duplicate_fields(body),
            ["metadata.name", "spec.c[0].x", "spec"]
        );
        assert!(duplicate_fields(br#"{"a":{"a":1}}"#).is_empty());
        assert!(duplicate_fields(b"not json").is_empty());
    }

    #[test]
    fn timestamps_are_whole_seconds_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        assert_eq!(timestamp(t), "2023-11-14T22:13:20Z");
    }
}
