//! Health endpoints on the client URLs, as etcd serves them.
//!
//! - `/health` (etcd 3.4's answer, `{"health":"true"}`, 503 and "false" when
//!   not): unhealthy with an alarm active (`?exclude=NOSPACE` leaves that one
//!   out), without a leader, or when a linearizable read fails or takes over
//!   a second; `?serializable=true` reads locally and skips the leader check.
//!   The reason ("ALARM NOSPACE", "RAFT NO LEADER", "RANGE ERROR:...", etcd
//!   3.5's words) goes to the log, as etcd 3.4 keeps it out of the answer.
//! - `/livez` and `/readyz` (etcd 3.5's, Kubernetes' style): named checks,
//!   "ok" or 503 with each check's line; `?verbose` lists them on success,
//!   `?exclude=<check>` skips one. `/livez` asks only whether this member
//!   serves a local read, so that a member cut off from its peers is not
//!   restarted for it (etcd's choice); `/readyz` also wants no CORRUPT alarm
//!   and a linearizable read, which needs a leader.

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use oxetcd_proto::etcdserverpb::{AlarmType, RangeRequest};
use serde_json::json;
use tracing::warn;

use super::Shared;

/// How long a health read may take, as etcd's.
const READ_TIMEOUT: Duration = Duration::from_secs(1);

pub fn router(node: Shared) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(node)
}

/// The query's parameters that matter here.
#[derive(Default)]
struct Query {
    exclude: HashSet<String>,
    serializable: bool,
    verbose: bool,
}

impl Query {
    fn parse(raw: Option<&str>) -> Self {
        let mut q = Query::default();
        for pair in raw.unwrap_or_default().split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "exclude" => {
                    q.exclude.insert(value.to_string());
                }
                "serializable" => q.serializable = value == "true",
                "verbose" => q.verbose = true,
                _ => {}
            }
        }
        q
    }
}

fn alarm_name(alarm: i32) -> &'static str {
    AlarmType::try_from(alarm).map_or("UNKNOWN", |t| t.as_str_name())
}

/// One read of at most one key, linearizable unless `serializable`.
async fn read(node: &Shared, serializable: bool) -> Result<(), String> {
    let req = RangeRequest {
        key: "health".into(),
        keys_only: true,
        limit: 1,
        serializable,
        ..Default::default()
    };
    match tokio::time::timeout(READ_TIMEOUT, node.range(req)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("context deadline exceeded".to_string()),
    }
}

/// Why this member is unhealthy by /health's rules, if it is.
async fn unhealthy(node: &Shared, q: &Query) -> Option<String> {
    if let Some(alarm) = node
        .active_alarms()
        .iter()
        .find(|a| !q.exclude.contains(alarm_name(a.alarm)))
    {
        return Some(format!("ALARM {}", alarm_name(alarm.alarm)));
    }
    if !q.serializable && node.raft_metrics().current_leader.is_none() {
        return Some("RAFT NO LEADER".to_string());
    }
    read(node, q.serializable)
        .await
        .err()
        .map(|e| format!("RANGE ERROR:{e}"))
}

async fn health(State(node): State<Shared>, RawQuery(raw): RawQuery) -> Response {
    let q = Query::parse(raw.as_deref());
    match unhealthy(&node, &q).await {
        None => (StatusCode::OK, Json(json!({ "health": "true" }))).into_response(),
        Some(reason) => {
            warn!(reason, "serving /health false");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "health": "false" })),
            )
                .into_response()
        }
    }
}

/// The checks of /livez and /readyz.
#[derive(Clone, Copy)]
enum Check {
    DataCorruption,
    SerializableRead,
    LinearizableRead,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::DataCorruption => "data_corruption",
            Check::SerializableRead => "serializable_read",
            Check::LinearizableRead => "linearizable_read",
        }
    }

    async fn run(self, node: &Shared) -> Result<(), String> {
        match self {
            Check::DataCorruption => match node
                .active_alarms()
                .iter()
                .find(|a| a.alarm == AlarmType::Corrupt as i32)
            {
                Some(a) => Err(format!(
                    "alarm activated: memberID:{} alarm:CORRUPT",
                    a.member_id
                )),
                None => Ok(()),
            },
            Check::SerializableRead => read(node, true).await,
            Check::LinearizableRead => read(node, false).await,
        }
    }
}

async fn livez(State(node): State<Shared>, RawQuery(raw): RawQuery) -> Response {
    checks(&node, "livez", &[Check::SerializableRead], raw.as_deref()).await
}

async fn readyz(State(node): State<Shared>, RawQuery(raw): RawQuery) -> Response {
    let all = [
        Check::DataCorruption,
        Check::SerializableRead,
        Check::LinearizableRead,
    ];
    checks(&node, "readyz", &all, raw.as_deref()).await
}

/// Runs `list` and answers as etcd's (and Kubernetes') health registry.
async fn checks(node: &Shared, path: &str, list: &[Check], raw: Option<&str>) -> Response {
    let q = Query::parse(raw);
    let mut lines = String::new();
    let mut healthy = true;
    for check in list {
        let name = check.name();
        if q.exclude.contains(name) {
            lines.push_str(&format!("[+]{name} excluded: ok\n"));
            continue;
        }
        match check.run(node).await {
            Ok(()) => lines.push_str(&format!("[+]{name} ok\n")),
            Err(why) => {
                warn!(check = name, reason = %why, "serving /{path} false");
                lines.push_str(&format!("[-]{name} failed: {why}\n"));
                healthy = false;
            }
        }
    }
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !healthy {
        let body = format!("{lines}{path} check failed\n");
        return (StatusCode::SERVICE_UNAVAILABLE, text, body).into_response();
    }
    let body = if q.verbose {
        format!("{lines}{path} check passed\n")
    } else {
        "ok".to_string()
    };
    (StatusCode::OK, text, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_name_exclusions_serializability_and_verbosity() {
        let q = Query::parse(Some("exclude=NOSPACE&serializable=true&verbose"));
        assert!(q.exclude.contains("NOSPACE") && q.serializable && q.verbose);
        let q = Query::parse(Some("serializable=false&exclude=a&exclude=b"));
        assert!(!q.serializable && !q.verbose && q.exclude.len() == 2);
        assert!(Query::parse(None).exclude.is_empty());
    }
}
