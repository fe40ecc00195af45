//! labelSelector and fieldSelector: parsing (kube-apiserver's grammar) and
//! matching against a JSON object.
//!
//! Label requirements: `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
//! `k notin (a,b)`, comma-separated (commas inside parentheses belong to the
//! set). Field requirements: `f=v`, `f==v`, `f!=v` over metadata.name,
//! metadata.namespace and the kind's own field labels.

use serde_json::Value;

use crate::error::ApiError;
use crate::registry::Kind;

#[derive(Clone, Debug, PartialEq)]
enum LabelOp {
    Exists,
    NotExists,
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
struct LabelRequirement {
    key: String,
    op: LabelOp,
}

/// Both selectors of a request; empty ones match everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selector {
    labels: Vec<LabelRequirement>,
    /// (field path, value, equal?)
    fields: Vec<(String, String, bool)>,
}

impl Selector {
    pub fn parse(
        kind: &Kind,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Self, ApiError> {
        let mut s = Selector::default();
        if let Some(l) = labels {
            for term in split_top_level(l) {
                let term = term.trim();
                if term.is_empty() {
                    continue;
                }
                s.labels.push(parse_label(term)?);
            }
        }
        if let Some(f) = fields {
            for term in f.split(',') {
                let term = term.trim();
                if term.is_empty() {
                    continue;
                }
                s.fields.push(parse_field(kind, term)?);
            }
        }
        Ok(s)
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|r| {
            let v = label(&r.key);
            match &r.op {
                LabelOp::Exists => v.is_some(),
                LabelOp::NotExists => v.is_none(),
                LabelOp::Equals(want) => v == Some(want.as_str()),
                LabelOp::NotEquals(want) => v != Some(want.as_str()),
                LabelOp::In(set) => v.is_some_and(|v| set.iter().any(|s| s == v)),
                LabelOp::NotIn(set) => !v.is_some_and(|v| set.iter().any(|s| s == v)),
            }
        });
        labels_ok
            && self
                .fields
                .iter()
                .all(|(path, want, eq)| (field_value(obj, path) == *want) == *eq)
    }

    /// The name when the field selector pins one (metadata.name=x): lists
    /// and watches then read only that key.
    pub fn pinned_name(&self) -> Option<&str> {
        self.field_equals("metadata.name")
    }

    /// The value the field selector requires `path` to equal, if it does
    /// (spec.nodeName=n1: the watch cache's index).
    /// A label the selected objects must carry with one value (`k=v`,
    /// `k==v` or `k in (v)`): what a watch can be indexed by.
    pub fn label_equals(&self) -> Option<(&str, &str)> {
        self.labels.iter().find_map(|r| match &r.op {
            LabelOp::Equals(v) => Some((r.key.as_str(), v.as_str())),
            LabelOp::In(vs) if vs.len() == 1 => Some((r.key.as_str(), vs[0].as_str())),
            _ => None,
        })
    }

    pub fn field_equals(&self, path: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(p, _, eq)| *eq && p == path)
            .map(|(_, v, _)| v.as_str())
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn bad_label(term: &str, why: &str) -> ApiError {
    ApiError::BadRequest(format!("unable to parse requirement: {why}: {term:?}"))
}

fn check_key(term: &str, key: &str) -> Result<String, ApiError> {
    let ok = !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(key.to_string())
    } else {
        Err(bad_label(term, "invalid label key"))
    }
}

fn check_value(term: &str, v: &str) -> Result<String, ApiError> {
    let v = v.trim();
    let ok = v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(v.to_string())
    } else {
        Err(bad_label(term, "invalid label value"))
    }
}

fn parse_label(term: &str) -> Result<LabelRequirement, ApiError> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(LabelRequirement {
            key: check_key(term, key.trim())?,
            op: LabelOp::NotExists,
        });
    }
    // Set-based: "<key> in (...)" / "<key> notin (...)".
    if let Some(open) = term.find('(') {
        let head = term[..open].trim();
        let close = term
            .rfind(')')
            .filter(|c| *c > open && term[c + 1..].trim().is_empty())
            .ok_or_else(|| bad_label(term, "expected ')'"))?;
        let (key, negate) = if let Some(k) = head.strip_suffix("notin") {
            (k, true)
        } else if let Some(k) = head.strip_suffix("in") {
            (k, false)
        } else {
            return Err(bad_label(term, "expected 'in' or 'notin'"));
        };
        if !key.ends_with(char::is_whitespace) {
            return Err(bad_label(term, "expected 'in' or 'notin'"));
        }
        let key = check_key(term, key.trim())?;
        let values = term[open + 1..close]
            .split(',')
            .map(|v| check_value(term, v))
            .collect::<Result<Vec<_>, _>>()?;
        let op = if negate {
            LabelOp::NotIn(values)
        } else {
            LabelOp::In(values)
        };
        return Ok(LabelRequirement { key, op });
    }
    let (key, op) = if let Some((k, v)) = term.split_once("!=") {
        (k, LabelOp::NotEquals(check_value(term, v)?))
    } else if let Some((k, v)) = term.split_once("==") {
        (k, LabelOp::Equals(check_value(term, v)?))
    } else if let Some((k, v)) = term.split_once('=') {
        (k, LabelOp::Equals(check_value(term, v)?))
    } else {
        (term, LabelOp::Exists)
    };
    Ok(LabelRequirement {
        key: check_key(term, key.trim())?,
        op,
    })
}

fn parse_field(kind: &Kind, term: &str) -> Result<(String, String, bool), ApiError> {
    let (path, value, eq) = if let Some((p, v)) = term.split_once("!=") {
        (p, v, false)
    } else if let Some((p, v)) = term.split_once("==") {
        (p, v, true)
    } else if let Some((p, v)) = term.split_once('=') {
        (p, v, true)
    } else {
        return Err(ApiError::BadRequest(format!(
            "invalid selector: '{term}'; can't understand '{term}'"
        )));
    };
    let path = path.trim();
    let known =
        path == "metadata.name" || path == "metadata.namespace" || kind.fields.contains(&path);
    if !known {
        return Err(ApiError::BadRequest(format!(
            "field label not supported: {path}"
        )));
    }
    Ok((path.to_string(), value.trim().to_string(), eq))
}

/// A field's value as field selectors compare it: strings as they are,
/// booleans and numbers printed, absent as "".
fn field_value(obj: &Value, path: &str) -> String {
    let mut v = obj;
    for part in path.split('.') {
        match v.get(part) {
            Some(next) => v = next,
            None => return String::new(),
        }
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;
    use serde_json::json;

    fn pods() -> &'static Kind {
        find("", "v1", "pods").unwrap()
    }

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "p1", "namespace": "ns1", "labels": labels},
               "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    fn sel(l: &str) -> Selector {
        Selector::parse(pods(), Some(l), None).unwrap()
    }

    #[test]
    fn equality_requirements() {
        let o = obj(json!({"app": "web", "tier": "fe"}));
        assert!(sel("app=web").matches(&o));
        assert!(sel("app==web,tier=fe").matches(&o));
        assert!(!sel("app=db").matches(&o));
        assert!(sel("app!=db").matches(&o));
        assert!(!sel("app!=web").matches(&o));
        // != matches objects without the label.
        assert!(sel("missing!=x").matches(&o));
    }

    #[test]
    fn set_based_requirements() {
        let o = obj(json!({"app": "web"}));
        assert!(sel("app in (web, db)").matches(&o));
        assert!(!sel("app in (db,cache)").matches(&o));
        assert!(sel("app notin (db,cache)").matches(&o));
        assert!(!sel("app notin (web)").matches(&o));
        assert!(sel("missing notin (web)").matches(&o));
        assert!(sel("app").matches(&o));
        assert!(!sel("!app").matches(&o));
        assert!(sel("!missing,app in (web),app").matches(&o));
    }

    #[test]
    fn malformed_label_selectors_are_bad_requests() {
        for bad in ["app in web", "app in (web", "a b=c", "app=(x)"] {
            let e = Selector::parse(pods(), Some(bad), None).unwrap_err();
            assert_eq!(e.code(), 400, "{bad}");
        }
    }

    #[test]
    fn field_selectors_know_metadata_and_the_kinds_fields() {
        let o = obj(json!({}));
        let f = |s: &str| Selector::parse(pods(), None, Some(s));
        assert!(f("metadata.name=p1").unwrap().matches(&o));
        assert!(!f("metadata.name=p2").unwrap().matches(&o));
        assert!(f("metadata.namespace==ns1,spec.nodeName=n1")
            .unwrap()
            .matches(&o));
        assert!(f("status.phase!=Pending").unwrap().matches(&o));
        assert_eq!(f("metadata.name=p1").unwrap().pinned_name(), Some("p1"));
        let cm = find("", "v1", "configmaps").unwrap();
        let e = Selector::parse(cm, None, Some("spec.nodeName=n1")).unwrap_err();
        assert_eq!(e.to_string(), "field label not supported: spec.nodeName");
    }
}
