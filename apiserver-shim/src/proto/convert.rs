//! JSON <-> protobuf for any message of the Kubernetes protos, by walking its
//! descriptor. Field names in the Kubernetes protos are the JSON names, so
//! most of the walk is mechanical; what is not:
//!
//! - the types whose JSON is not their message (Time, MicroTime, Quantity,
//!   IntOrString, RawExtension, FieldsV1, apiextensions' JSON and the
//!   JSONSchemaPropsOr* unions), converted by hand ([`special`]);
//! - Go's embedded structs (`json:",inline"`), which are one JSON object but a
//!   nested message in protobuf ([`INLINE`]);
//! - JSONSchemaProps' `$ref`, `$schema` and `x-kubernetes-*` names.
//!
//! Go's protobuf encoder writes every non-pointer field, so a message decoded
//! from a Go client has empty strings for fields the client left unset: those
//! are left out of the JSON, as Go's `omitempty` does, except where an empty
//! string means something ([`KEEP_EMPTY`]). Zero numbers and false are kept:
//! for a Go reader they are the same as absent, and for pointer fields
//! (spec.replicas: 0) they are the value.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind as FieldKind, MapKey, MessageDescriptor, ReflectMessage,
    Value as PValue,
};
use serde_json::{json, Map, Number, Value};

const APIEXT: &str = "apiextensions_apiserver.pkg.apis.apiextensions.v1";

/// (message, field) pairs that are Go embedded structs: their fields sit in
/// the enclosing JSON object.
const INLINE: &[(&str, &str)] = &[
    ("api.core.v1.Probe", "handler"),
    ("api.core.v1.Volume", "volumeSource"),
    ("api.core.v1.PersistentVolumeSpec", "persistentVolumeSource"),
    ("api.core.v1.EphemeralContainer", "ephemeralContainerCommon"),
    ("api.core.v1.VolumeMountStatus", "volumeStatus"),
    ("api.core.v1.ConfigMapEnvSource", "localObjectReference"),
    ("api.core.v1.ConfigMapKeySelector", "localObjectReference"),
    ("api.core.v1.ConfigMapProjection", "localObjectReference"),
    ("api.core.v1.ConfigMapVolumeSource", "localObjectReference"),
    ("api.core.v1.SecretEnvSource", "localObjectReference"),
    ("api.core.v1.SecretKeySelector", "localObjectReference"),
    ("api.core.v1.SecretProjection", "localObjectReference"),
];

/// String fields where "" is a value, not "unset" (a claim with
/// storageClassName "" asks for no class at all).
const KEEP_EMPTY: &[&str] = &["storageClassName"];

/// The JSON name of a field.
fn json_name(msg: &MessageDescriptor, field: &FieldDescriptor) -> String {
    let name = field.name();
    if msg.full_name() == format!("{APIEXT}.JSONSchemaProps") {
        match name {
            "ref" => return "$ref".into(),
            "schema" => return "$schema".into(),
            n if n.starts_with("xKubernetes") => {
                let mut out = String::from("x");
                for c in n[1..].chars() {
                    if c.is_ascii_uppercase() {
                        out.push('-');
                        out.push(c.to_ascii_lowercase());
                    } else {
                        out.push(c);
                    }
                }
                return out;
            }
            _ => {}
        }
    }
    name.to_string()
}

fn is_inline(msg: &MessageDescriptor, field: &FieldDescriptor) -> bool {
    INLINE
        .iter()
        .any(|(m, f)| *m == msg.full_name() && *f == field.name())
}

/// A JSON object as a message of type `desc`. Fields the message lacks are
/// dropped (protobuf cannot carry them); a value of the wrong JSON type is
/// an error naming its path.
pub fn to_message(desc: &MessageDescriptor, v: &Value) -> Result<DynamicMessage, String> {
    to_message_at(desc, v, "")
}

fn to_message_at(
    desc: &MessageDescriptor,
    v: &Value,
    path: &str,
) -> Result<DynamicMessage, String> {
    if let Some(m) = special_to_message(desc, v, path)? {
        return Ok(m);
    }
    let obj = v
        .as_object()
        .ok_or_else(|| format!("{}: expected an object", shown(path)))?;
    let mut msg = DynamicMessage::new(desc.clone());
    for field in desc.fields() {
        if is_inline(desc, &field) {
            if let FieldKind::Message(sub) = field.kind() {
                let inner = to_message_at(&sub, v, path)?;
                if inner.fields().next().is_some() {
                    msg.set_field(&field, PValue::Message(inner));
                }
            }
            continue;
        }
        let name = json_name(desc, &field);
        let Some(value) = obj.get(&name).filter(|x| !x.is_null()) else {
            continue;
        };
        let at = format!("{path}.{name}");
        let pv = if field.is_map() {
            map_to_proto(&field, value, &at)?
        } else if field.is_list() {
            let items = value
                .as_array()
                .ok_or_else(|| format!("{}: expected an array", shown(&at)))?;
            PValue::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| scalar_to_proto(&field.kind(), x, &format!("{at}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )
        } else {
            scalar_to_proto(&field.kind(), value, &at)?
        };
        msg.set_field(&field, pv);
    }
    Ok(msg)
}

fn shown(path: &str) -> &str {
    path.strip_prefix('.')
        .unwrap_or(if path.is_empty() { "object" } else { path })
}

fn map_to_proto(field: &FieldDescriptor, v: &Value, at: &str) -> Result<PValue, String> {
    let FieldKind::Message(entry) = field.kind() else {
        return Err(format!("{}: not a map field", shown(at)));
    };
    let value_kind = entry.map_entry_value_field().kind();
    let obj = v
        .as_object()
        .ok_or_else(|| format!("{}: expected an object", shown(at)))?;
    let mut out = HashMap::new();
    for (k, x) in obj {
        if x.is_null() {
            continue;
        }
        out.insert(
            MapKey::String(k.clone()),
            scalar_to_proto(&value_kind, x, &format!("{at}.{k}"))?,
        );
    }
    Ok(PValue::Map(out))
}

fn scalar_to_proto(kind: &FieldKind, v: &Value, at: &str) -> Result<PValue, String> {
    let bad = |what: &str| format!("{}: expected {what}, got {v}", shown(at));
    Ok(match kind {
        FieldKind::Message(m) => PValue::Message(to_message_at(m, v, at)?),
        FieldKind::String => PValue::String(v.as_str().ok_or_else(|| bad("a string"))?.into()),
        FieldKind::Bool => PValue::Bool(v.as_bool().ok_or_else(|| bad("a boolean"))?),
        FieldKind::Int32 | FieldKind::Sint32 | FieldKind::Sfixed32 => PValue::I32(
            v.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| bad("a 32-bit integer"))?,
        ),
        FieldKind::Int64 | FieldKind::Sint64 | FieldKind::Sfixed64 => {
            PValue::I64(v.as_i64().ok_or_else(|| bad("an integer"))?)
        }
        FieldKind::Uint32 | FieldKind::Fixed32 => PValue::U32(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad("an unsigned integer"))?,
        ),
        FieldKind::Uint64 | FieldKind::Fixed64 => {
            PValue::U64(v.as_u64().ok_or_else(|| bad("an unsigned integer"))?)
        }
        FieldKind::Double => PValue::F64(v.as_f64().ok_or_else(|| bad("a number"))?),
        FieldKind::Float => PValue::F32(v.as_f64().ok_or_else(|| bad("a number"))? as f32),
        FieldKind::Bytes => PValue::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().ok_or_else(|| bad("base64 data"))?)
                .map_err(|e| format!("{}: {e}", shown(at)))?
                .into(),
        ),
        FieldKind::Enum(_) => return Err(bad("no enum (the Kubernetes protos have none)")),
    })
}

/// Whole-message conversions for types whose JSON is not their message.
fn special_to_message(
    desc: &MessageDescriptor,
    v: &Value,
    at: &str,
) -> Result<Option<DynamicMessage>, String> {
    let name = desc.full_name();
    let mut msg = DynamicMessage::new(desc.clone());
    let bad = |what: &str| format!("{}: expected {what}, got {v}", shown(at));
    let set = |msg: &mut DynamicMessage, field: &str, value: PValue| {
        msg.set_field_by_name(field, value);
    };
    let raw_json = |v: &Value| PValue::Bytes(v.to_string().into_bytes().into());
    match name.strip_prefix("apimachinery.pkg.") {
        Some("apis.meta.v1.Time" | "apis.meta.v1.MicroTime") => {
            let s = v.as_str().ok_or_else(|| bad("an RFC 3339 time"))?;
            let t = humantime::parse_rfc3339_weak(s).map_err(|e| bad(&e.to_string()))?;
            let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
                Ok(d) => (d.as_secs() as i64, d.subsec_nanos() as i32),
                Err(e) => {
                    let d = e.duration();
                    let mut secs = -(d.as_secs() as i64);
                    let mut nanos = d.subsec_nanos() as i32;
                    if nanos > 0 {
                        secs -= 1;
                        nanos = 1_000_000_000 - nanos;
                    }
                    (secs, nanos)
                }
            };
            set(&mut msg, "seconds", PValue::I64(secs));
            set(&mut msg, "nanos", PValue::I32(nanos));
        }
        Some("api.resource.Quantity") => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(bad("a quantity")),
            };
            set(&mut msg, "string", PValue::String(s));
        }
        Some("util.intstr.IntOrString") => match v {
            Value::Number(n) => {
                let n = n
                    .as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| bad("an int or a string"))?;
                set(&mut msg, "type", PValue::I64(0));
                set(&mut msg, "intVal", PValue::I32(n));
            }
            Value::String(s) => {
                set(&mut msg, "type", PValue::I64(1));
                set(&mut msg, "strVal", PValue::String(s.clone()));
            }
            _ => return Err(bad("an int or a string")),
        },
        Some("runtime.RawExtension") => set(&mut msg, "raw", raw_json(v)),
        Some("apis.meta.v1.FieldsV1") => set(&mut msg, "Raw", raw_json(v)),
        _ => match name.strip_prefix(APIEXT).and_then(|n| n.strip_prefix('.')) {
            Some("JSON") => set(&mut msg, "raw", raw_json(v)),
            Some("JSONSchemaPropsOrBool") => match v {
                Value::Bool(b) => set(&mut msg, "allows", PValue::Bool(*b)),
                _ => {
                    set(&mut msg, "allows", PValue::Bool(true));
                    set_schema(&mut msg, v, at)?;
                }
            },
            Some("JSONSchemaPropsOrArray") => match v {
                Value::Array(items) => {
                    let field = field_of(desc, "jSONSchemas")?;
                    let FieldKind::Message(props) = field.kind() else {
                        return Err("jSONSchemas is not a message field".into());
                    };
                    let list = items
                        .iter()
                        .map(|x| to_message_at(&props, x, at).map(PValue::Message))
                        .collect::<Result<_, _>>()?;
                    msg.set_field(&field, PValue::List(list));
                }
                _ => set_schema(&mut msg, v, at)?,
            },
            Some("JSONSchemaPropsOrStringArray") => match v {
                Value::Array(items) => {
                    let list = items
                        .iter()
                        .map(|x| {
                            x.as_str()
                                .map(|s| PValue::String(s.into()))
                                .ok_or_else(|| bad("a list of strings"))
                        })
                        .collect::<Result<_, _>>()?;
                    set(&mut msg, "property", PValue::List(list));
                }
                _ => set_schema(&mut msg, v, at)?,
            },
            _ => return Ok(None),
        },
    }
    Ok(Some(msg))
}

fn field_of(desc: &MessageDescriptor, name: &str) -> Result<FieldDescriptor, String> {
    desc.get_field_by_name(name)
        .ok_or_else(|| format!("{} has no field {name}", desc.full_name()))
}

fn set_schema(msg: &mut DynamicMessage, v: &Value, at: &str) -> Result<(), String> {
    let field = field_of(&msg.descriptor(), "schema")?;
    let FieldKind::Message(props) = field.kind() else {
        return Err("schema is not a message field".into());
    };
    let inner = to_message_at(&props, v, at)?;
    msg.set_field(&field, PValue::Message(inner));
    Ok(())
}

/// A message as JSON (see the module doc for what is left out).
pub fn to_json(msg: &DynamicMessage) -> Result<Value, String> {
    if let Some(v) = special_to_json(msg)? {
        return Ok(v);
    }
    let desc = msg.descriptor();
    let mut out = Map::new();
    for (field, value) in msg.fields() {
        if is_inline(&desc, &field) {
            if let PValue::Message(inner) = value {
                if let Value::Object(m) = to_json(inner)? {
                    out.extend(m);
                }
            }
            continue;
        }
        let name = json_name(&desc, &field);
        let v = match value {
            PValue::String(s) if s.is_empty() && !KEEP_EMPTY.contains(&field.name()) => continue,
            PValue::List(items) if items.is_empty() => continue,
            PValue::Map(m) if m.is_empty() => continue,
            other => value_to_json(other)?,
        };
        if !v.is_null() {
            out.insert(name, v);
        }
    }
    Ok(Value::Object(out))
}

fn value_to_json(v: &PValue) -> Result<Value, String> {
    Ok(match v {
        PValue::Bool(b) => json!(b),
        PValue::I32(n) => json!(n),
        PValue::I64(n) => json!(n),
        PValue::U32(n) => json!(n),
        PValue::U64(n) => json!(n),
        PValue::F32(n) => Number::from_f64(f64::from(*n)).map_or(Value::Null, Value::Number),
        PValue::F64(n) => Number::from_f64(*n).map_or(Value::Null, Value::Number),
        PValue::String(s) => json!(s),
        PValue::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        PValue::EnumNumber(n) => json!(n),
        PValue::Message(m) => to_json(m)?,
        PValue::List(items) => {
            Value::Array(items.iter().map(value_to_json).collect::<Result<_, _>>()?)
        }
        PValue::Map(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                let key = match k {
                    MapKey::String(s) => s.clone(),
                    MapKey::Bool(b) => b.to_string(),
                    MapKey::I32(n) => n.to_string(),
                    MapKey::I64(n) => n.to_string(),
                    MapKey::U32(n) => n.to_string(),
                    MapKey::U64(n) => n.to_string(),
                };
                out.insert(key, value_to_json(x)?);
            }
            Value::Object(out)
        }
    })
}

fn get<'a>(msg: &'a DynamicMessage, name: &str) -> Option<std::borrow::Cow<'a, PValue>> {
    let field = msg.descriptor().get_field_by_name(name)?;
    msg.has_field(&field).then(|| msg.get_field(&field))
}

fn raw_to_json(msg: &DynamicMessage, name: &str) -> Result<Value, String> {
    match get(msg, name).as_deref() {
        Some(PValue::Bytes(b)) if !b.is_empty() => serde_json::from_slice(b)
            .map_err(|e| format!("{}: not JSON: {e}", msg.descriptor().full_name())),
        _ => Ok(Value::Null),
    }
}

/// Go's zero time.Time (0001-01-01T00:00:00Z), which Go encodes for an
/// unset creationTimestamp and JSON writes as null.
pub(crate) const GO_ZERO_TIME: i64 = -62_135_596_800;

fn special_to_json(msg: &DynamicMessage) -> Result<Option<Value>, String> {
    let desc = msg.descriptor();
    let name = desc.full_name();
    let int = |f: &str| match get(msg, f).as_deref() {
        Some(PValue::I64(n)) => *n,
        Some(PValue::I32(n)) => i64::from(*n),
        _ => 0,
    };
    let string = |f: &str| match get(msg, f).as_deref() {
        Some(PValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    Ok(Some(match name.strip_prefix("apimachinery.pkg.") {
        Some(t @ ("apis.meta.v1.Time" | "apis.meta.v1.MicroTime")) => {
            let (secs, nanos) = (int("seconds"), int("nanos"));
            if (secs == 0 && nanos == 0) || secs == GO_ZERO_TIME {
                return Ok(Some(Value::Null));
            }
            let at = if secs >= 0 {
                UNIX_EPOCH + Duration::new(secs as u64, nanos as u32)
            } else {
                UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
                    + Duration::from_nanos(nanos as u64)
            };
            json!(time_string(at, t.ends_with("MicroTime")))
        }
        Some("api.resource.Quantity") => json!(string("string")),
        Some("util.intstr.IntOrString") => {
            if int("type") == 1 {
                json!(string("strVal"))
            } else {
                json!(int("intVal"))
            }
        }
        Some("runtime.RawExtension") => raw_to_json(msg, "raw")?,
        Some("apis.meta.v1.FieldsV1") => raw_to_json(msg, "Raw")?,
        _ => match name.strip_prefix(APIEXT).and_then(|n| n.strip_prefix('.')) {
            Some("JSON") => raw_to_json(msg, "raw")?,
            Some(
                union @ ("JSONSchemaPropsOrBool"
                | "JSONSchemaPropsOrArray"
                | "JSONSchemaPropsOrStringArray"),
            ) => {
                if let Some(PValue::Message(schema)) = get(msg, "schema").as_deref() {
                    to_json(schema)?
                } else {
                    match union {
                        "JSONSchemaPropsOrBool" => json!(matches!(
                            get(msg, "allows").as_deref(),
                            Some(PValue::Bool(true))
                        )),
                        "JSONSchemaPropsOrArray" => match get(msg, "jSONSchemas").as_deref() {
                            Some(v) => value_to_json(v)?,
                            None => json!([]),
                        },
                        _ => match get(msg, "property").as_deref() {
                            Some(v) => value_to_json(v)?,
                            None => json!([]),
                        },
                    }
                }
            }
            _ => return Ok(None),
        },
    }))
}

fn time_string(at: SystemTime, micros: bool) -> String {
    if micros {
        humantime::format_rfc3339_micros(at).to_string()
    } else {
        humantime::format_rfc3339_seconds(at).to_string()
    }
}
