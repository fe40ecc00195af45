//! What a watch cache holds: objects decoded once (and encoded as JSON at
//! most once: lists and watch lines share the bytes), and events whose wire
//! lines are encoded once per (line, version, format or Table form) and
//! shared, as `Bytes`, by every client watch that is sent them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;

use crate::error::ApiError;
use crate::registry::Kind;
use crate::rest::object;
use crate::store::Kv;
use crate::table;

/// One stored object, decoded.
pub struct Object {
    pub key: Bytes,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// metadata.namespace ("" for cluster-scoped kinds).
    pub namespace: String,
    /// spec.nodeName (pods: the index kubelets' watches use), "" when unset.
    pub node: String,
    /// metadata.labels (the index of label-selected watches).
    pub labels: Vec<(String, String)>,
    /// The object served (resourceVersion = mod_revision), or why it is
    /// unreadable (a list of it fails as a list from the store would).
    pub value: Result<Value, ApiError>,
    /// `value` as JSON, encoded on first use (built-in kinds: they are
    /// served as stored). A list of 100,000 pods is then a copy of bytes,
    /// not 100,000 serializations.
    pub(super) json: OnceLock<Option<Bytes>>,
}

impl Object {
    pub fn decode(kv: &Kv) -> Self {
        let value = object::decode(kv);
        let field = |v: &Value, p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (namespace, node) = match &value {
            Ok(v) => (field(v, "/metadata/namespace"), field(v, "/spec/nodeName")),
            Err(_) => Default::default(),
        };
        let labels = value
            .as_ref()
            .ok()
            .and_then(|v| v.pointer("/metadata/labels"))
            .and_then(Value::as_object)
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Object {
            key: kv.key.clone(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            namespace,
            node,
            labels,
            value,
            json: OnceLock::new(),
        }
    }

    /// The object as `kind` serves it, as JSON (None: unreadable). A
    /// built-in kind's is encoded once and shared; a custom resource's
    /// depends on the version asked for.
    pub fn json(&self, kind: &Kind) -> Option<Bytes> {
        if kind.custom.is_some() {
            return serde_json::to_vec(&self.served(kind)?)
                .ok()
                .map(Bytes::from);
        }
        self.json
            .get_or_init(|| {
                let value = self.value.as_ref().ok()?;
                serde_json::to_vec(value).ok().map(Bytes::from)
            })
            .clone()
    }

    /// The object as `kind` serves it (a custom resource in its version).
    pub fn served(&self, kind: &Kind) -> Option<Value> {
        let mut v = self.value.as_ref().ok()?.clone();
        crate::crd::serve(kind, &mut v);
        Some(v)
    }
}

/// The type of a watch line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LineType {
    Added,
    Modified,
    /// The object's state before the event, at the event's revision (a
    /// deletion, or an update out of a selection).
    Deleted,
}

impl LineType {
    fn name(self) -> &'static str {
        match self {
            LineType::Added => "ADDED",
            LineType::Modified => "MODIFIED",
            LineType::Deleted => "DELETED",
        }
    }
}

/// The wire format of a watch's lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `{"type","object"}\n`
    Json,
    /// Length-prefixed meta/v1 WatchEvent frames.
    Protobuf,
}

/// One line of `t` with `obj`, in `format`; None when the object has no
/// protobuf form (logged: the watch goes on without it).
pub fn encode(t: &str, obj: &Value, format: Format) -> Option<Bytes> {
    match format {
        Format::Json => serde_json::to_vec(obj)
            .map(|object| json_line(t, &object))
            .ok(),
        Format::Protobuf => match crate::proto::watch_event_frame(t, obj) {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!("protobuf watch event: {e}");
                None
            }
        },
    }
}

/// The JSON line `{"type":t,"object":object}\n` around an encoded object.
pub fn json_line(t: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + t.len() + 24);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(t.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

/// One change of the cache's resource.
pub struct CachedEvent {
    pub revision: i64,
    /// The object after the event; None: deleted.
    pub new: Option<Arc<Object>>,
    /// The object before the event; None: created (or unknown).
    pub old: Option<Arc<Object>>,
    /// When the cache saw it (the window's age bound).
    pub at: Instant,
    /// `old` with resourceVersion = `revision` (DELETED lines).
    old_at_revision: OnceLock<Option<Value>>,
    /// Lines encoded so far, by (type, kind served, how written).
    lines: Mutex<HashMap<(LineType, usize, LineFormat), Option<Bytes>>>,
}

impl CachedEvent {
    pub fn new(revision: i64, new: Option<Arc<Object>>, old: Option<Arc<Object>>) -> Self {
        CachedEvent {
            revision,
            new,
            old,
            at: Instant::now(),
            old_at_revision: OnceLock::new(),
            lines: Mutex::default(),
        }
    }

    #[cfg(test)]
    pub fn deleted_for_test(revision: i64, at: Instant) -> Self {
        CachedEvent {
            at,
            ..CachedEvent::new(revision, None, None)
        }
    }

    /// What a watch with `matches` as its selection sees of this event.
    pub fn line_type(&self, matches: impl Fn(&Value) -> bool) -> Option<LineType> {
        let in_sel = |o: &Option<Arc<Object>>| {
            o.as_ref()
                .and_then(|o| o.value.as_ref().ok())
                .is_some_and(&matches)
        };
        let (now_in, was_in) = (in_sel(&self.new), in_sel(&self.old));
        let created = self
            .new
            .as_ref()
            .is_some_and(|n| n.create_revision == n.mod_revision);
        match (now_in, was_in) {
            (true, true) if !created => Some(LineType::Modified),
            (true, _) => Some(LineType::Added),
            (false, true) => Some(LineType::Deleted),
            (false, false) => None,
        }
    }

    /// The object a line of type `t` carries, as `kind` serves it.
    pub fn object(&self, t: LineType, kind: &Kind) -> Option<Value> {
        match t {
            LineType::Added | LineType::Modified => self.new.as_ref()?.served(kind),
            LineType::Deleted => {
                let mut v = self
                    .old_at_revision
                    .get_or_init(|| {
                        let mut v = self.old.as_ref()?.value.as_ref().ok()?.clone();
                        object::set_resource_version(&mut v, self.revision);
                        Some(v)
                    })
                    .clone()?;
                crate::crd::serve(kind, &mut v);
                Some(v)
            }
        }
    }

    /// The line of type `t` for `kind` in `format`, encoded on first use
    /// and shared after.
    pub fn line(&self, t: LineType, kind: &'static Kind, format: Format) -> Option<Bytes> {
        self.shared_line(t, kind, LineFormat::Plain(format))
    }

    /// The one-row Table line of type `t` for `kind` (kubectl get -w),
    /// `columns` the one that carries the column definitions (a watch's
    /// first); encoded on first use and shared after.
    pub fn table_line(
        &self,
        t: LineType,
        kind: &'static Kind,
        opts: table::Options,
        columns: bool,
    ) -> Option<Bytes> {
        self.shared_line(t, kind, LineFormat::Table { opts, columns })
    }

    fn shared_line(&self, t: LineType, kind: &'static Kind, how: LineFormat) -> Option<Bytes> {
        let key = (t, kind as *const Kind as usize, how);
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = lines.get(&key) {
            return b.clone();
        }
        let line = match (t, how) {
            // The object's own JSON, shared with lists and other lines.
            (LineType::Added | LineType::Modified, LineFormat::Plain(Format::Json)) => self
                .new
                .as_ref()
                .and_then(|o| o.json(kind))
                .map(|object| json_line(t.name(), &object)),
            (_, LineFormat::Plain(format)) => self
                .object(t, kind)
                .and_then(|o| encode(t.name(), &o, format)),
            (_, LineFormat::Table { opts, columns }) => self
                .object(t, kind)
                .and_then(|o| encode(t.name(), &table::one(kind, &o, opts, columns), Format::Json)),
        };
        lines.insert(key, line.clone());
        line
    }
}

/// How a shared line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum LineFormat {
    Plain(Format),
    /// A one-row Table, in JSON, with or without its column definitions.
    Table {
        opts: table::Options,
        columns: bool,
    },
}

/// The name of a line type, for lines encoded outside the shared cache
/// (a snapshot's initial lines).
pub fn type_name(t: LineType) -> &'static str {
    t.name()
}
