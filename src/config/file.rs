//! `--config-file`: etcd's YAML configuration file. Its keys are the flags'
//! names (`name`, `data-dir`, `listen-client-urls`, ...), except the TLS
//! files and switches, which sit in two blocks as in etcd:
//! `client-transport-security` and `peer-transport-security`, each with
//! `cert-file`, `key-file`, `client-cert-auth`, `trusted-ca-file` and
//! `auto-tls`.
//!
//! Each key becomes the value of its flag, written as on a command line, so
//! the file goes through the same checks and policies as flags do. Types are
//! etcd's: booleans and numbers are YAML booleans and integers, durations
//! are integers of nanoseconds (Go's time.Duration in YAML) or, as an oxetcd
//! convenience, Go duration strings ("5m"), and lists (`log-outputs`,
//! `cipher-suites`, URLs) a string with commas or a YAML sequence.
//!
//! Unlike etcd, which skips keys it does not know, an unknown key is an
//! error: a misspelt key would otherwise leave a setting silently at its
//! default.

use serde_yaml_ng::Value;

use super::flags::{flag_spec, Kind};
use super::ConfigError;

/// etcd's nested security blocks: (block, key, the flag it sets).
const SECURITY_KEYS: &[(&str, &str, &str)] = &[
    ("client-transport-security", "cert-file", "cert-file"),
    ("client-transport-security", "key-file", "key-file"),
    (
        "client-transport-security",
        "client-cert-auth",
        "client-cert-auth",
    ),
    (
        "client-transport-security",
        "trusted-ca-file",
        "trusted-ca-file",
    ),
    ("client-transport-security", "auto-tls", "auto-tls"),
    ("peer-transport-security", "cert-file", "peer-cert-file"),
    ("peer-transport-security", "key-file", "peer-key-file"),
    (
        "peer-transport-security",
        "client-cert-auth",
        "peer-client-cert-auth",
    ),
    (
        "peer-transport-security",
        "trusted-ca-file",
        "peer-trusted-ca-file",
    ),
    ("peer-transport-security", "auto-tls", "peer-auto-tls"),
];

/// Flags with no key of their own in the file.
const NOT_KEYS: &[&str] = &["config-file", "version"];

/// One setting of the file: the flag it sets, its value as a flag's text,
/// and where it was (`name`, `client-transport-security.cert-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Setting {
    pub(super) flag: &'static str,
    pub(super) value: String,
    pub(super) key: String,
}

fn file_error(path: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::ConfigFile {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Reads the settings of the YAML file at `path`.
pub(super) fn read(path: &str) -> Result<Vec<Setting>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e.to_string()))?;
    parse(path, &text)
}

/// The settings of `text`, the content of `path`.
pub(super) fn parse(path: &str, text: &str) -> Result<Vec<Setting>, ConfigError> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| file_error(path, e.to_string()))?;
    let top = match doc {
        // An empty file sets nothing, as in etcd.
        Value::Null => return Ok(Vec::new()),
        Value::Mapping(m) => m,
        _ => return Err(file_error(path, "the top level is not a mapping of keys")),
    };
    let mut out = Vec::new();
    for (key, value) in top {
        let key = key_name(path, &key)?;
        if let Some(block) = SECURITY_KEYS.iter().find(|(b, _, _)| *b == key) {
            security_block(path, block.0, value, &mut out)?;
            continue;
        }
        let flag = match flag_spec(&key) {
            Some(f)
                if f.kind != Kind::Legacy
                    && !NOT_KEYS.contains(&f.name)
                    && !SECURITY_KEYS.iter().any(|(_, _, flag)| *flag == f.name) =>
            {
                f
            }
            Some(f) if SECURITY_KEYS.iter().any(|(_, _, flag)| *flag == f.name) => {
                let (block, nested, _) = SECURITY_KEYS
                    .iter()
                    .find(|(_, _, flag)| *flag == f.name)
                    .copied()
                    .unwrap_or_default();
                return Err(file_error(
                    path,
                    format!("unknown key {key:?}: TLS settings go under {block}: {nested}"),
                ));
            }
            _ => return Err(file_error(path, format!("unknown key {key:?}"))),
        };
        if let Some(value) = flag_text(path, &key, flag.kind, &value)? {
            out.push(Setting {
                flag: flag.name,
                value,
                key,
            });
        }
    }
    Ok(out)
}

fn key_name(path: &str, key: &Value) -> Result<String, ConfigError> {
    match key {
        Value::String(s) => Ok(s.clone()),
        other => Err(file_error(path, format!("key {other:?} is not a string"))),
    }
}

fn security_block(
    path: &str,
    block: &str,
    value: Value,
    out: &mut Vec<Setting>,
) -> Result<(), ConfigError> {
    let map = match value {
        Value::Null => return Ok(()),
        Value::Mapping(m) => m,
        _ => {
            return Err(file_error(
                path,
                format!("{block} is not a mapping of keys"),
            ))
        }
    };
    for (key, value) in map {
        let key = key_name(path, &key)?;
        let Some((_, _, flag)) = SECURITY_KEYS
            .iter()
            .find(|(b, k, _)| *b == block && *k == key)
        else {
            return Err(file_error(path, format!("unknown key {block}.{key}")));
        };
        let full = format!("{block}.{key}");
        let kind = flag_spec(flag).map_or(Kind::Str, |f| f.kind);
        if let Some(text) = flag_text(path, &full, kind, &value)? {
            out.push(Setting {
                flag,
                value: text,
                key: full,
            });
        }
    }
    Ok(())
}

/// A YAML value as the text its flag would take; None for null (unset).
fn flag_text(
    path: &str,
    key: &str,
    kind: Kind,
    value: &Value,
) -> Result<Option<String>, ConfigError> {
    let wrong = |want: &str| file_error(path, format!("{key}: expected {want}, found {value:?}"));
    let text = match (kind, value) {
        (_, Value::Null) => return Ok(None),
        (Kind::Bool, Value::Bool(b)) => b.to_string(),
        (Kind::Bool, _) => return Err(wrong("a boolean")),
        (Kind::Uint(_) | Kind::Int(_), Value::Number(n)) if n.is_i64() || n.is_u64() => {
            n.to_string()
        }
        (Kind::Uint(_) | Kind::Int(_), _) => return Err(wrong("an integer")),
        (Kind::Duration, Value::Number(n)) if n.is_i64() || n.is_u64() => format!("{n}ns"),
        (Kind::Duration, Value::String(s)) => s.clone(),
        (Kind::Duration, _) => return Err(wrong("a duration")),
        (Kind::Str | Kind::Urls | Kind::Legacy, Value::Sequence(items)) => {
            let parts: Option<Vec<String>> = items.iter().map(scalar).collect();
            parts.ok_or_else(|| wrong("a list of strings"))?.join(",")
        }
        (Kind::Str | Kind::Urls | Kind::Legacy, v) => scalar(v).ok_or_else(|| wrong("a string"))?,
    };
    Ok(Some(text))
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Vec<(&'static str, String)> {
        parse("test.yml", text)
            .unwrap()
            .into_iter()
            .map(|s| (s.flag, s.value))
            .collect()
    }

    fn error(text: &str) -> String {
        parse("test.yml", text).unwrap_err().to_string()
    }

    #[test]
    fn keys_become_flag_values() {
        let got = settings(
            "name: infra1\n\
             heartbeat-interval: 100\n\
             strict-reconfig-check: false\n\
             listen-client-urls: http://127.0.0.1:2379,http://127.0.0.1:22379\n\
             log-outputs: [stderr, stdout]\n\
             experimental-corrupt-check-time: 60000000000\n\
             grpc-keepalive-min-time: 5s\n\
             auto-compaction-retention: 1\n\
             discovery:\n\
             client-transport-security:\n  cert-file: /c.pem\n  client-cert-auth: true\n\
             peer-transport-security:\n  auto-tls: true\n",
        );
        assert_eq!(
            got,
            vec![
                ("name", "infra1".to_string()),
                ("heartbeat-interval", "100".to_string()),
                ("strict-reconfig-check", "false".to_string()),
                (
                    "listen-client-urls",
                    "http://127.0.0.1:2379,http://127.0.0.1:22379".to_string()
                ),
                ("log-outputs", "stderr,stdout".to_string()),
                (
                    "experimental-corrupt-check-time",
                    "60000000000ns".to_string()
                ),
                ("grpc-keepalive-min-time", "5s".to_string()),
                ("auto-compaction-retention", "1".to_string()),
                ("cert-file", "/c.pem".to_string()),
                ("client-cert-auth", "true".to_string()),
                ("peer-auto-tls", "true".to_string()),
            ]
        );
        assert!(settings("").is_empty());
    }

    #[test]
    fn unknown_keys_bad_types_and_bad_yaml_are_errors() {
        assert_eq!(
            error("nmae: x\n"),
            "cannot load config file test.yml: unknown key \"nmae\""
        );
        assert_eq!(
            error("client-transport-security:\n  cert: x\n"),
            "cannot load config file test.yml: unknown key client-transport-security.cert"
        );
        assert_eq!(
            error("cert-file: /c.pem\n"),
            "cannot load config file test.yml: unknown key \"cert-file\": TLS settings go under client-transport-security: cert-file"
        );
        assert!(error("version: true\n").contains("unknown key \"version\""));
        assert!(
            error("heartbeat-interval: fast\n").contains("heartbeat-interval: expected an integer")
        );
        assert!(error("enable-pprof: yes please\n").contains("expected a boolean"));
        let bad = error("name: [unclosed\n");
        assert!(
            bad.starts_with("cannot load config file test.yml: "),
            "{bad}"
        );
        assert!(error("- a\n- b\n").contains("not a mapping"));
    }
}
