//! meta.k8s.io Table responses (reference: kubernetes-apiserver.md §8): what
//! `kubectl get` prints, asked for with `Accept: application/json;as=Table;
//! v=v1;g=meta.k8s.io`. Built-in kinds get kube-apiserver's printer columns
//! (`printers`), custom resources their CRD's additionalPrinterColumns
//! (`jsonpath`) or Age, other kinds Name and Created At. Every column is
//! always computed; priority 1 columns are the ones kubectl shows only with
//! -o wide.

mod jsonpath;
mod printers;

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::registry::Kind;
use crate::rest::Query;

/// What each row carries besides its cells (?includeObject=).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Include {
    None,
    /// A PartialObjectMetadata (the default): kubectl reads namespaces and
    /// labels from it.
    Metadata,
    Object,
}

/// A Table request: the meta.k8s.io version asked for and includeObject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Options {
    pub version: &'static str,
    pub include: Include,
}

impl Options {
    pub fn parse(version: &'static str, q: &Query) -> Result<Self, ApiError> {
        let include = match q.get("includeObject") {
            None | Some("Metadata") => Include::Metadata,
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "includeObject: Unsupported value: {other:?}: supported values: \"Metadata\", \"None\", \"Object\""
                )))
            }
        };
        Ok(Options { version, include })
    }
}

/// One column definition.
pub(crate) struct Column {
    pub name: String,
    /// string, integer, number, boolean or date.
    pub kind: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
}

impl Column {
    pub(crate) fn new(name: &str, kind: &str, priority: i64, description: &str) -> Self {
        Column {
            name: name.into(),
            kind: kind.into(),
            format: String::new(),
            description: description.into(),
            priority,
        }
    }

    fn name_column() -> Self {
        Column {
            format: "name".into(),
            ..Column::new(
                "Name",
                "string",
                0,
                "Name must be unique within a namespace. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
            )
        }
    }

    fn definition(&self) -> Value {
        json!({"name": self.name, "type": self.kind, "format": self.format,
               "description": self.description, "priority": self.priority})
    }
}

/// The cells of one object, as of a time (ages are relative to it).
pub(crate) type Cells = Box<dyn Fn(&Value, SystemTime) -> Vec<Value> + Send + Sync>;

/// The columns of `kind` and the cells of one object.
struct Printer {
    columns: Vec<Column>,
    cells: Cells,
}

fn printer(kind: &'static Kind) -> Printer {
    if let Some(custom) = kind.custom {
        let mut columns = vec![Column::name_column()];
        // (path, column type)
        let mut paths: Vec<(String, String)> = Vec::new();
        if custom.columns.is_empty() {
            // What CRD defaulting gives a version without columns.
            columns.push(Column::new("Age", "date", 0, ""));
            paths.push((".metadata.creationTimestamp".into(), "date".into()));
        }
        for c in &custom.columns {
            columns.push(Column {
                name: c.name.clone(),
                kind: c.kind.clone(),
                format: c.format.clone(),
                description: c.description.clone(),
                priority: c.priority,
            });
            paths.push((c.json_path.clone(), c.kind.clone()));
        }
        return Printer {
            columns,
            cells: Box::new(move |obj, now| {
                let mut cells = vec![json!(name(obj))];
                cells.extend(paths.iter().map(|(p, kind)| {
                    match (jsonpath::cell(obj, p), kind.as_str()) {
                        (Value::Null, _) => Value::Null,
                        // Dates become ages, as kube-apiserver's CR
                        // convertor prints them.
                        (v @ Value::String(_), "date") => json!(since(Some(&v), now)),
                        (v @ Value::String(_), _) => v,
                        // String columns print what they find.
                        (v, "string") => Value::String(v.to_string()),
                        (v, _) => v,
                    }
                }));
                cells
            }),
        };
    }
    match printers::built_in(kind) {
        Some((columns, cells)) => {
            let mut all = vec![Column::name_column()];
            all.extend(columns);
            Printer {
                columns: all,
                cells: Box::new(move |obj, now| {
                    let mut row = vec![json!(name(obj))];
                    row.extend(cells(obj, now));
                    row
                }),
            }
        }
        // kube-apiserver's default table convertor.
        None => Printer {
            columns: vec![
                Column::name_column(),
                Column::new(
                    "Created At",
                    "date",
                    0,
                    "CreationTimestamp is a timestamp representing the server time when this object was created.",
                ),
            ],
            cells: Box::new(|obj, _| {
                vec![
                    json!(name(obj)),
                    obj.pointer("/metadata/creationTimestamp")
                        .cloned()
                        .unwrap_or(Value::Null),
                ]
            }),
        },
    }
}

fn name(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn row(p: &Printer, obj: &Value, opts: Options, now: SystemTime) -> Value {
    let mut r = json!({"cells": (p.cells)(obj, now)});
    match opts.include {
        Include::None => {}
        Include::Metadata => {
            r["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": format!("meta.k8s.io/{}", opts.version),
                "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
            })
        }
        Include::Object => r["object"] = obj.clone(),
    }
    r
}

fn table(p: &Printer, rows: Vec<Value>, meta: Value, opts: Options, columns: bool) -> Value {
    let mut t = json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{}", opts.version),
        "metadata": meta,
        "rows": rows,
    });
    if columns {
        t["columnDefinitions"] =
            json!(p.columns.iter().map(Column::definition).collect::<Vec<_>>());
    }
    t
}

/// A list (as `rest` answers it) as a Table.
pub fn list(kind: &'static Kind, list: &Value, opts: Options) -> Value {
    let p = printer(kind);
    let now = SystemTime::now();
    let rows = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| row(&p, o, opts, now))
        .collect();
    let meta = list.get("metadata").cloned().unwrap_or_else(|| json!({}));
    table(&p, rows, meta, opts, true)
}

/// One object as a one-row Table; `columns`: with the column definitions
/// (a watch sends them in its first event only).
pub fn one(kind: &'static Kind, obj: &Value, opts: Options, columns: bool) -> Value {
    let p = printer(kind);
    let rv = obj
        .pointer("/metadata/resourceVersion")
        .cloned()
        .unwrap_or_else(|| json!(""));
    let r = row(&p, obj, opts, SystemTime::now());
    table(&p, vec![r], json!({"resourceVersion": rv}), opts, columns)
}

/// kube-apiserver's duration.HumanDuration: "5s", "3m20s", "5h", "3d4h".
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        return match secs % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            d => format!("{}y{d}d", hours / 24 / 365),
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The time since an RFC 3339 timestamp as kube-apiserver prints it;
/// "<unknown>" when absent, "<invalid>" when in the future.
pub fn since(ts: Option<&Value>, now: SystemTime) -> String {
    let Some(t) = ts
        .and_then(Value::as_str)
        .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
    else {
        return "<unknown>".into();
    };
    match now.duration_since(t) {
        Ok(d) => human_duration(d),
        // Two seconds of clock skew still read as now.
        Err(e) if e.duration() < Duration::from_secs(2) => "0s".into(),
        Err(_) => "<invalid>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    #[test]
    fn durations_read_as_kubectls() {
        let d = |s| human_duration(Duration::from_secs(s));
        assert_eq!(
            [
                d(5),
                d(119),
                d(200),
                d(600),
                d(3 * 3600 + 60),
                d(30 * 3600),
                d(3 * 86400 + 4 * 3600),
                d(40 * 86400)
            ],
            ["5s", "119s", "3m20s", "10m", "3h1m", "30h", "3d4h", "40d"]
        );
    }

    #[test]
    fn rows_carry_metadata_objects_or_nothing_as_asked() {
        let cm = find("", "v1", "configmaps").unwrap();
        let list_v = json!({"metadata": {"resourceVersion": "7"}, "items": [
            {"metadata": {"name": "a", "namespace": "d", "labels": {"x": "y"}}, "data": {"k": "v"}}]});
        let opts = |include| Options {
            version: "v1",
            include,
        };
        let t = list(cm, &list_v, opts(Include::Metadata));
        assert_eq!(
            (t["kind"].as_str(), t["apiVersion"].as_str()),
            (Some("Table"), Some("meta.k8s.io/v1"))
        );
        assert_eq!(t["metadata"]["resourceVersion"], "7");
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "Data", "Age"]);
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(t["rows"][0]["cells"][0], "a");
        assert_eq!(t["rows"][0]["cells"][1], 1);
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["labels"]["x"], "y");
        let t = list(cm, &list_v, opts(Include::None));
        assert!(t["rows"][0].get("object").is_none());
        let t = one(cm, &list_v["items"][0], opts(Include::Object), false);
        assert_eq!(t["rows"][0]["object"]["data"]["k"], "v");
        assert!(t.get("columnDefinitions").is_none());
        let q = Query::parse(Some("includeObject=Everything"));
        assert_eq!(Options::parse("v1", &q).unwrap_err().code(), 400);
    }
}
