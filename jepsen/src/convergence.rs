//! After the faults end, every member must hold the same history: a member
//! that applied the same log and holds other keys, or the same keys at other
//! revisions, diverged. The workloads' checkers see only what clients were
//! told; this asks the members themselves, as etcd's own functional tester
//! does (`etcdctl endpoint hashkv`).
//!
//! It waits until every member has applied the log as far as the furthest
//! member had when first asked, then asks each for HashKV at the lowest
//! revision any of them is at. Members whose HashKV differs there diverged (invalid). A
//! member that does not catch up in time, or cannot answer, leaves the check
//! unknown: slow is not wrong.

use std::time::Duration;

use oxetcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd_proto::etcdserverpb::{HashKvRequest, StatusRequest};

use crate::check::{Anomaly, Verdict};
use crate::client::{AuthedChannel, Ctx};

/// How long members get to catch up and agree.
pub const SETTLE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(200);

/// One member's answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Applied {
    applied: u64,
    revision: i64,
}

/// One member's HashKV at the common revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hashed {
    hash: u32,
    compact_revision: i64,
}

/// The verdict on whether the members agree, within [`SETTLE`].
pub async fn check(ctx: &Ctx, names: &[String]) -> Verdict {
    let deadline = tokio::time::Instant::now() + SETTLE;
    let mut clients: Vec<_> = (0..ctx.members()).map(|m| ctx.maintenance(m)).collect();
    let mut target = None;
    let mut last_problem = String::from("no member answered");
    while tokio::time::Instant::now() < deadline {
        match round(&mut clients, &mut target).await {
            Ok(Some((revision, hashes))) => return judge(names, revision, &hashes),
            Ok(None) => {}
            Err(problem) => last_problem = problem,
        }
        tokio::time::sleep(POLL).await;
    }
    Verdict::from_anomalies(
        "convergence",
        format!(
            "members did not settle within {} s: {last_problem}",
            SETTLE.as_secs()
        ),
        Vec::new(),
        true,
    )
}

/// One attempt: the members' HashKV at a revision all of them have applied,
/// once all have applied `target` (the highest applied index first seen);
/// None while some member is behind.
async fn round(
    clients: &mut [MaintenanceClient<AuthedChannel>],
    target: &mut Option<u64>,
) -> Result<Option<(i64, Vec<Hashed>)>, String> {
    let mut seen = Vec::with_capacity(clients.len());
    for (m, client) in clients.iter_mut().enumerate() {
        seen.push(
            status(client)
                .await
                .map_err(|e| format!("member {m}: {e}"))?,
        );
    }
    let goal = *target.get_or_insert_with(|| seen.iter().map(|s| s.applied).max().unwrap_or(0));
    if let Some((m, behind)) = seen.iter().enumerate().find(|(_, s)| s.applied < goal) {
        return Err(format!(
            "member {m} applied index {} of {goal}",
            behind.applied
        ));
    }
    let Some(revision) = seen.iter().map(|s| s.revision).min() else {
        return Ok(None);
    };
    let mut hashes = Vec::with_capacity(clients.len());
    for (m, client) in clients.iter_mut().enumerate() {
        let h = client
            .hash_kv(HashKvRequest { revision })
            .await
            .map_err(|e| format!("member {m}: HashKV at {revision}: {}", e.message()))?
            .into_inner();
        hashes.push(Hashed {
            hash: h.hash,
            compact_revision: h.compact_revision,
        });
    }
    // A compaction applied on some members and not yet on others changes
    // what HashKV covers: ask again once they agree on it.
    if hashes
        .windows(2)
        .any(|w| w[0].compact_revision != w[1].compact_revision)
    {
        return Ok(None);
    }
    Ok(Some((revision, hashes)))
}

async fn status(client: &mut MaintenanceClient<AuthedChannel>) -> Result<Applied, String> {
    let s = client
        .status(StatusRequest {})
        .await
        .map_err(|e| e.message().to_string())?
        .into_inner();
    Ok(Applied {
        applied: s.raft_applied_index,
        revision: s.header.map_or(0, |h| h.revision),
    })
}

/// Invalid unless every member's hash at `revision` is the first member's.
fn judge(names: &[String], revision: i64, hashes: &[Hashed]) -> Verdict {
    let name = |m: usize| {
        names
            .get(m)
            .cloned()
            .unwrap_or_else(|| format!("member {m}"))
    };
    let anomalies = match hashes.first() {
        Some(first) if hashes.iter().any(|h| h.hash != first.hash) => {
            let each = hashes
                .iter()
                .enumerate()
                .map(|(m, h)| format!("{}: {:08x}", name(m), h.hash))
                .collect::<Vec<_>>()
                .join(", ");
            vec![Anomaly {
                kind: "divergent-members".into(),
                explanation: format!(
                    "members applied the same log but hold different histories: HashKV at revision {revision}: {each}"
                ),
                ops: Vec::new(),
            }]
        }
        _ => Vec::new(),
    };
    let summary = format!(
        "{} members, HashKV at revision {revision} {}",
        hashes.len(),
        if anomalies.is_empty() {
            "agrees"
        } else {
            "differs"
        }
    );
    Verdict::from_anomalies("convergence", summary, anomalies, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Validity;

    fn names() -> Vec<String> {
        vec!["n1".into(), "n2".into(), "n3".into()]
    }

    fn hashed(hash: u32) -> Hashed {
        Hashed {
            hash,
            compact_revision: 1,
        }
    }

    #[test]
    fn members_with_one_hash_agree() {
        let verdict = judge(&names(), 7, &[hashed(5), hashed(5), hashed(5)]);
        assert_eq!(verdict.validity, Validity::Valid);
        assert!(verdict.summary.contains("revision 7 agrees"));
    }

    #[test]
    fn a_member_with_another_hash_diverged() {
        let verdict = judge(&names(), 7, &[hashed(5), hashed(6), hashed(5)]);
        assert_eq!(verdict.validity, Validity::Invalid);
        assert_eq!(verdict.anomalies[0].kind, "divergent-members");
        assert!(verdict.anomalies[0].explanation.contains("n2: 00000006"));
    }
}
