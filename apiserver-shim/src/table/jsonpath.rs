//! The JSONPath of additionalPrinterColumns (`.spec.replicas`,
//! `.status.conditions[?(@.type=="Ready")].status`, `.spec.items[0].name`,
//! `.metadata.labels['app.kubernetes.io/name']`, `[*]`), evaluated as
//! kube-apiserver's CR table convertor does: the first result is the cell,
//! printed for string columns, as it is for the others; no result is an
//! empty (null) cell.

use serde_json::Value;

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    /// [?(@.a.b == "x")] (or !=): a relative path, the operator, the literal.
    Filter(Vec<Step>, bool, Value),
}

/// Parses a path; None when it is not of the forms above.
fn parse(path: &str) -> Option<Vec<Step>> {
    let s = path.trim();
    let s = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(s);
    let s = s.strip_prefix('$').unwrap_or(s);
    let s = s.strip_prefix('@').unwrap_or(s);
    let b = s.as_bytes();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' => {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && b[end] != b'.' && b[end] != b'[' {
                    end += 1;
                }
                if end > start {
                    steps.push(Step::Field(s[start..end].to_string()));
                }
                i = end;
            }
            b'[' => {
                let close = matching_bracket(s, i)?;
                let inner = s[i + 1..close].trim();
                steps.push(bracket(inner)?);
                i = close + 1;
            }
            _ => return None,
        }
    }
    Some(steps)
}

fn matching_bracket(s: &str, open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (j, c) in s[open..].char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + j);
                }
            }
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.trim();
    s.strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
}

fn bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::All);
    }
    if let Some(name) = unquote(inner) {
        return Some(Step::Field(name.to_string()));
    }
    if let Ok(n) = inner.parse::<i64>() {
        return Some(Step::Index(n));
    }
    let cond = inner.strip_prefix('?')?.trim();
    let cond = cond.strip_prefix('(')?.strip_suffix(')')?.trim();
    let (lhs, eq, rhs) = if let Some((l, r)) = cond.split_once("==") {
        (l, true, r)
    } else {
        let (l, r) = cond.split_once("!=")?;
        (l, false, r)
    };
    let lhs = parse(lhs.trim())?;
    let rhs = match unquote(rhs) {
        Some(text) => Value::String(text.to_string()),
        None => serde_json::from_str(rhs.trim()).ok()?,
    };
    Some(Step::Filter(lhs, eq, rhs))
}

fn eval<'a>(steps: &[Step], root: &'a Value) -> Vec<&'a Value> {
    let mut cur = vec![root];
    for step in steps {
        let mut next = Vec::new();
        for v in cur {
            match step {
                Step::Field(f) => next.extend(v.get(f.as_str())),
                Step::Index(n) => {
                    if let Some(a) = v.as_array() {
                        let at = if *n < 0 { a.len() as i64 + n } else { *n };
                        next.extend(usize::try_from(at).ok().and_then(|i| a.get(i)));
                    }
                }
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter(path, eq, want) => {
                    for item in v.as_array().into_iter().flatten() {
                        let got = eval(path, item);
                        if got.first().is_some_and(|g| (*g == want) == *eq) {
                            next.push(item);
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

/// The cell of a printer column over `obj`.
pub fn cell(obj: &Value, path: &str) -> Value {
    let Some(steps) = parse(path) else {
        return Value::Null;
    };
    eval(&steps, obj)
        .first()
        .map_or(Value::Null, |v| (*v).clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_indices_filters_and_quoted_keys() {
        let o = json!({"spec": {"replicas": 3, "items": [{"name": "a"}, {"name": "b"}]},
            "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
            "status": {"conditions": [{"type": "Synced", "status": "False"},
                                      {"type": "Ready", "status": "True"}]}});
        assert_eq!(cell(&o, ".spec.replicas"), json!(3));
        assert_eq!(cell(&o, ".spec.items[1].name"), json!("b"));
        assert_eq!(cell(&o, ".spec.items[-1].name"), json!("b"));
        assert_eq!(cell(&o, ".spec.items[*].name"), json!("a"));
        assert_eq!(
            cell(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            json!("True")
        );
        assert_eq!(
            cell(&o, ".status.conditions[?(@.type!='Synced')].type"),
            json!("Ready")
        );
        assert_eq!(
            cell(&o, ".metadata.labels['app.kubernetes.io/name']"),
            json!("web")
        );
        assert_eq!(cell(&o, ".spec.missing"), Value::Null);
        assert_eq!(cell(&o, "spec"), Value::Null, "not a path");
    }
}
