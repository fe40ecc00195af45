//! The `auth` verdict of a run with `--auth`: how often the workload user
//! authenticated and had its tokens refreshed, and two anomalies, each a
//! server refusing what it must allow:
//!
//! - `permission-denied`: an operation on the workload's keys refused with
//!   "permission denied", though the user's role holds READWRITE on them;
//! - `authentication-refused`: Authenticate refused the workload user's
//!   right password ("authentication failed"). Both servers check the
//!   password against a state at least as new as the request (etcd 3.4
//!   waits for a linearizable read first), and the user exists from before
//!   the first request, so a refusal is a server that forgot or never saw
//!   the user.
//!
//! A run with no authentication at all is unknown: nothing was checked.

use std::fmt::Write as _;

use super::refusal::PERMISSION_DENIED;
use super::tokens::AuthCounts;
use crate::check::{Anomaly, Verdict};
use crate::history::Op;

/// etcd's answer to a wrong password (or an unknown user).
const AUTHENTICATION_FAILED: &str = "etcdserver: authentication failed";
/// Operations shown per anomaly.
const EXAMPLES: usize = 5;

/// The verdict on `ops` (the history) and the workload user's `counts`.
pub fn check(ops: &[Op], counts: &AuthCounts) -> Verdict {
    let mut anomalies = Vec::new();
    let kinds = [
        (
            "permission-denied",
            PERMISSION_DENIED,
            "operations on the workload's own keys were denied permission, though its role holds them",
        ),
        (
            "authentication-refused",
            AUTHENTICATION_FAILED,
            "operations were not sent: Authenticate refused the workload user's right password",
        ),
    ];
    for (kind, text, what) in kinds {
        let refused: Vec<&Op> = ops
            .iter()
            .filter(|op| op.error.as_deref().is_some_and(|e| e.contains(text)))
            .collect();
        if !refused.is_empty() {
            anomalies.push(Anomaly {
                kind: kind.into(),
                explanation: format!("{} {what} (the first {EXAMPLES} shown)", refused.len()),
                ops: refused.into_iter().take(EXAMPLES).cloned().collect(),
            });
        }
    }
    Verdict::from_anomalies(
        "auth",
        summary(counts, &anomalies),
        anomalies,
        counts.authentications == 0,
    )
}

fn summary(counts: &AuthCounts, anomalies: &[Anomaly]) -> String {
    let by_reason = |map: &std::collections::BTreeMap<String, u64>| {
        map.iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!(
        "{} authentications, {} tokens refreshed",
        counts.authentications,
        counts.total_refreshes()
    );
    if !counts.refreshes.is_empty() {
        let _ = write!(text, " ({})", by_reason(&counts.refreshes));
    }
    let _ = write!(
        text,
        ", {} authentications failed",
        counts.total_failed_authentications()
    );
    if !counts.failed_authentications.is_empty() {
        let _ = write!(text, " ({})", by_reason(&counts.failed_authentications));
    }
    if anomalies.is_empty() {
        text.push_str("; no operation denied");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Validity;
    use crate::history::{Call, Outcome};

    fn op(error: Option<&str>) -> Op {
        Op {
            process: 0,
            invoke: 0,
            complete: 1,
            outcome: if error.is_some() {
                Outcome::Fail
            } else {
                Outcome::Ok
            },
            call: Call::Write {
                key: "jepsen/r/0".into(),
                value: 1,
            },
            error: error.map(str::to_owned),
        }
    }

    fn counts(authentications: u64) -> AuthCounts {
        let mut counts = AuthCounts {
            authentications,
            ..Default::default()
        };
        counts
            .refreshes
            .insert("etcdserver: invalid auth token".into(), 2);
        counts
    }

    #[test]
    fn refreshed_tokens_are_counted_and_valid() {
        let ops = [
            op(None),
            op(Some("Unauthenticated: etcdserver: invalid auth token")),
        ];
        let verdict = check(&ops, &counts(3));
        assert_eq!(verdict.validity, Validity::Valid);
        assert!(
            verdict.summary.starts_with(
                "3 authentications, 2 tokens refreshed (2 etcdserver: invalid auth token)"
            ),
            "{}",
            verdict.summary
        );
    }

    #[test]
    fn a_denied_operation_or_a_refused_password_is_an_anomaly() {
        let ops = [
            op(None),
            op(Some("PermissionDenied: etcdserver: permission denied")),
        ];
        let verdict = check(&ops, &counts(3));
        assert_eq!(verdict.validity, Validity::Invalid);
        assert_eq!(verdict.anomalies[0].kind, "permission-denied");
        assert_eq!(verdict.anomalies[0].ops.len(), 1);
        let refused = "Unavailable: not sent: authenticating as jepsen at member 1: \
                       etcdserver: authentication failed, invalid user ID or password";
        let verdict = check(&[op(Some(refused))], &counts(3));
        assert_eq!(verdict.anomalies[0].kind, "authentication-refused");
    }

    #[test]
    fn no_authentication_is_unknown() {
        assert_eq!(check(&[op(None)], &counts(0)).validity, Validity::Unknown);
    }
}
