//! The lease checker: a key attached to a lease vanishes only after the
//! lease expired or was revoked, and not long after.
//!
//! For each lease, the history gives a time before which it cannot have
//! expired, `alive_until`: the grant's invocation + its TTL (the server
//! starts the TTL when it applies the grant, which is after the client sent
//! it, and a new leader only ever extends leases), raised by every
//! keep-alive answered with a TTL > 0 to that keep-alive's invocation + the
//! TTL. Then, for a lease whose key was put (acknowledged):
//!
//! - `vanished-early`: a read invoked after the put completed and completed
//!   before `alive_until` (and before any revoke of the lease was sent) does
//!   not show the key;
//! - `expired-early`: a keep-alive answered "gone" (TTL <= 0) before
//!   `alive_until`, with no revoke sent;
//! - `resurrected`: a read invoked after the key was seen gone (a read
//!   without it, a completed revoke) shows it;
//! - `outlived-lease`: a read invoked after a keep-alive answered "gone"
//!   shows the key (etcd answers "gone" only once the revoke, which deletes
//!   the keys, is applied);
//! - `lingering`: at the end, with the faults over since the sweep began at
//!   F and no keep-alive sent since, a sweep read invoked after
//!   F + TTL + [`SLACK`] still shows the key (a new leader may extend leases
//!   by an election timeout; expiry and the revoke through the log take a
//!   moment more);
//! - `unexpected-key`: a key under the prefix that no client ever put.
//!
//! Example, TTL 3 s: grant invoked at 0 s, put acknowledged at 0.1 s,
//! keep-alives answered TTL 3 at 1 s and 2 s (invoked then): alive_until is
//! 5 s. A read over [4 s, 4.2 s] without the key is `vanished-early`; one over
//! [4.5 s, 5.5 s] may miss it (the lease may have expired at 5 s).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use super::{Anomaly, Verdict};
use crate::history::{Call, Op, Outcome};

/// How long after F + TTL (see above) a lease's key may still be there.
pub const SLACK: Duration = Duration::from_secs(5);

const SECOND: u64 = 1_000_000_000;

/// What the history says about one lease.
struct Lease<'a> {
    grant: &'a Op,
    /// The longer of the TTL asked for and the TTL granted, in ns.
    ttl: u64,
    /// No expiry before this (ns), and the operation that shows it.
    alive_until: (u64, &'a Op),
    /// The acknowledged put of its key.
    put: Option<&'a Op>,
    /// A put of its key was sent (acknowledged or not).
    put_sent: bool,
    key: Option<&'a str>,
    /// The first revoke sent (it may apply any time after).
    revoke_sent: Option<&'a Op>,
    /// The earliest moment the key was known gone, and how.
    gone: Option<(u64, &'a Op)>,
}

impl<'a> Lease<'a> {
    fn revoked_before(&self, t: u64) -> bool {
        self.revoke_sent.is_some_and(|r| r.invoke < t)
    }
    fn mark_gone(&mut self, at: u64, op: &'a Op) {
        if self.gone.is_none_or(|(t, _)| at < t) {
            self.gone = Some((at, op));
        }
    }
}

pub fn check(ops: &[Op]) -> Verdict {
    let mut leases: BTreeMap<i64, Lease> = BTreeMap::new();
    for op in ops {
        if let Call::Grant {
            lease,
            ttl,
            granted,
        } = &op.call
        {
            if op.outcome == Outcome::Fail {
                continue;
            }
            let ttl = (*ttl).max(granted.unwrap_or(0)).max(0) as u64 * SECOND;
            leases.insert(
                *lease,
                Lease {
                    grant: op,
                    ttl,
                    alive_until: (op.invoke + ttl, op),
                    put: None,
                    put_sent: false,
                    key: None,
                    revoke_sent: None,
                    gone: None,
                },
            );
        }
    }
    let mut anomalies = Vec::new();
    // The reads in a counter-example keep only the key it is about.
    let mut flag = |kind: &str, explanation: String, ops: Vec<&Op>, key: &str| {
        anomalies.push(Anomaly {
            kind: kind.into(),
            explanation,
            ops: ops.into_iter().map(|op| only_key(op, key)).collect(),
        })
    };
    // Puts, revokes and keep-alives first: they set the bounds the reads
    // are judged by.
    for op in ops {
        match &op.call {
            Call::PutLeased { key, lease } if op.outcome != Outcome::Fail => {
                if let Some(l) = leases.get_mut(lease) {
                    l.key = Some(key);
                    l.put_sent = true;
                    if op.outcome == Outcome::Ok {
                        l.put = Some(op);
                    }
                }
            }
            Call::Revoke { lease } if op.outcome != Outcome::Fail => {
                if let Some(l) = leases.get_mut(lease) {
                    if l.revoke_sent.is_none_or(|r| op.invoke < r.invoke) {
                        l.revoke_sent = Some(op);
                    }
                    if op.outcome == Outcome::Ok {
                        l.mark_gone(op.complete, op);
                    }
                }
            }
            Call::KeepAlive {
                lease,
                ttl: Some(ttl),
            } if op.outcome == Outcome::Ok && *ttl > 0 => {
                if let Some(l) = leases.get_mut(lease) {
                    let until = op.invoke + *ttl as u64 * SECOND;
                    if until > l.alive_until.0 {
                        l.alive_until = (until, op);
                    }
                }
            }
            _ => {}
        }
    }
    for op in ops {
        if let Call::KeepAlive {
            lease,
            ttl: Some(ttl),
        } = &op.call
        {
            let Some(l) = leases.get_mut(lease) else {
                continue;
            };
            if op.outcome != Outcome::Ok || *ttl > 0 {
                continue;
            }
            if op.complete < l.alive_until.0 && !l.revoked_before(op.complete) {
                flag(
                    "expired-early",
                    format!(
                        "lease {lease:#x}: a keep-alive answered \"gone\" {:.2} s before the \
                         lease could have expired",
                        (l.alive_until.0 - op.complete) as f64 / 1e9
                    ),
                    vec![l.grant, l.alive_until.1, op],
                    "",
                );
            }
            // Keys go with the lease, in the same revision.
            l.mark_gone(op.complete, op);
        }
    }
    // Every key gets a number, and a read's keys are a sorted list of
    // them: 4 bytes a key, found by binary search, where a set of strings
    // cost 5 times the memory and a hash of the key on every lookup (the
    // campaign's 1-hour lease run: 350,160 reads, hundreds of keys each).
    let mut names = KeyNames::default();
    let leased: Vec<(u32, i64)> = leases
        .iter()
        .filter_map(|(id, l)| Some((names.id(l.key?), *id)))
        .collect();
    let reads: Vec<(&Op, Vec<u32>, bool)> = ops
        .iter()
        .filter(|op| op.outcome == Outcome::Ok)
        .filter_map(|op| match &op.call {
            Call::ReadKeys {
                keys: Some(keys),
                sweep,
                ..
            } => {
                let mut ids: Vec<u32> = keys.iter().map(|k| names.id(k)).collect();
                ids.sort_unstable();
                ids.dedup();
                Some((op, ids, *sweep))
            }
            _ => None,
        })
        .collect();
    // The lease whose key each key is, if any.
    let mut lease_of: Vec<Option<i64>> = vec![None; names.len()];
    for (k, id) in leased {
        lease_of[k as usize] = Some(id);
    }
    let mut unexpected = HashSet::new();
    for (read, keys, _) in &reads {
        for &k in keys {
            if lease_of[k as usize].is_none() && unexpected.insert(k) {
                let key = names.name(k);
                flag(
                    "unexpected-key",
                    format!("{key} was never put"),
                    vec![*read],
                    key,
                );
            }
        }
    }
    // Each lease against the reads invoked after its put completed, in
    // invocation order, only as far as they can still matter: a read
    // invoked at or after `alive_until` cannot complete before it, and one
    // invoked after the key was known gone (a read without it, a revoke, a
    // keep-alive's "gone") cannot show it gone any earlier. So a lease
    // costs the reads of its lifetime, not all of them (every lease against
    // every read took over ten minutes on a 1-hour history).
    let mut by_invoke: Vec<usize> = (0..reads.len()).collect();
    by_invoke.sort_by_key(|&i| reads[i].0.invoke);
    for l in leases.values_mut() {
        let (Some(put), Some(key)) = (l.put, l.key) else {
            continue;
        };
        let k = names.known(key);
        let first = by_invoke.partition_point(|&i| reads[i].0.invoke <= put.complete);
        for &i in &by_invoke[first..] {
            let (read, keys, _) = &reads[i];
            if read.invoke >= l.alive_until.0 && l.gone.is_some_and(|(t, _)| read.invoke >= t) {
                break;
            }
            if keys.binary_search(&k).is_ok() {
                continue;
            }
            if read.complete < l.alive_until.0 && !l.revoked_before(read.complete) {
                flag(
                    "vanished-early",
                    format!(
                        "{key}: missing from a read {:.2} s before its lease could have expired",
                        (l.alive_until.0 - read.complete) as f64 / 1e9
                    ),
                    vec![l.grant, put, l.alive_until.1, *read],
                    key,
                );
            }
            l.mark_gone(read.complete, read);
        }
    }
    for (read, keys, _) in &reads {
        for &k in keys {
            let Some(l) = lease_of[k as usize].and_then(|id| leases.get(&id)) else {
                continue;
            };
            let key = names.name(k);
            if let Some((at, how)) = l.gone {
                if read.invoke > at {
                    let (kind, gone) = match how.call {
                        Call::KeepAlive { .. } => (
                            "outlived-lease",
                            "a keep-alive answered that its lease was gone",
                        ),
                        _ => ("resurrected", "it was gone"),
                    };
                    flag(
                        kind,
                        format!(
                            "{key}: read {:.2} s after {gone}",
                            (read.invoke - at) as f64 / 1e9
                        ),
                        vec![l.grant, how, *read],
                        key,
                    );
                }
            }
        }
    }
    // The sweep: every key gone by F + TTL + SLACK.
    let sweep: Vec<&(&Op, Vec<u32>, bool)> = reads.iter().filter(|r| r.2).collect();
    let sweep_start = ops
        .iter()
        .filter(|op| matches!(op.call, Call::ReadKeys { sweep: true, .. }))
        .map(|op| op.invoke)
        .min();
    let mut undecided = false;
    if let Some(f) = sweep_start {
        let slack = SLACK.as_nanos() as u64;
        for (id, l) in &leases {
            let Some(key) = l.key.filter(|_| l.put_sent) else {
                continue;
            };
            let k = names.known(key);
            let deadline = f + l.ttl + slack;
            match sweep
                .iter()
                .find(|(read, keys, _)| read.invoke > deadline && keys.binary_search(&k).is_ok())
            {
                Some((read, _, _)) => flag(
                    "lingering",
                    format!(
                        "{key}: still there {:.2} s after the sweep began, its lease \
                         {id:#x} (TTL {} s) no longer kept alive",
                        (read.invoke - f) as f64 / 1e9,
                        l.ttl / SECOND
                    ),
                    vec![l.grant, *read],
                    key,
                ),
                None => {
                    // Known gone, or seen gone by a read after the deadline.
                    let decided = l.gone.is_some()
                        || sweep.iter().any(|(read, keys, _)| {
                            read.invoke > deadline || keys.binary_search(&k).is_err()
                        });
                    undecided |= !decided;
                }
            }
        }
    }
    let kept_alive: HashSet<i64> = ops
        .iter()
        .filter_map(|op| match op.call {
            Call::KeepAlive { lease, .. } => Some(lease),
            _ => None,
        })
        .collect();
    let kept = leases.keys().filter(|id| kept_alive.contains(id)).count();
    let revoked = leases.values().filter(|l| l.revoke_sent.is_some()).count();
    let summary = format!(
        "{} leases ({kept} kept alive, {revoked} revoked), {} reads ({} in the final sweep): {} anomalies{}",
        leases.len(),
        reads.len(),
        sweep.len(),
        anomalies.len(),
        if sweep_start.is_none() {
            "; no final sweep"
        } else if undecided {
            "; the sweep ended before some keys' deadlines"
        } else {
            ""
        }
    );
    let unknown = leases.is_empty() || sweep_start.is_none() || undecided;
    Verdict::from_anomalies("lease", summary, anomalies, unknown)
}

/// The keys of a history, numbered in the order first seen.
#[derive(Default)]
struct KeyNames<'a> {
    ids: HashMap<&'a str, u32>,
    names: Vec<&'a str>,
}

impl<'a> KeyNames<'a> {
    fn id(&mut self, key: &'a str) -> u32 {
        let next = self.names.len() as u32;
        let id = *self.ids.entry(key).or_insert(next);
        if id == next {
            self.names.push(key);
        }
        id
    }

    /// The number of a key already seen (every lease's key is, first).
    fn known(&self, key: &str) -> u32 {
        self.ids[key]
    }

    fn name(&self, id: u32) -> &'a str {
        self.names[id as usize]
    }

    fn len(&self) -> usize {
        self.names.len()
    }
}

/// `op`, and if it is a read of the prefix, with only `key` of its keys.
fn only_key(op: &Op, key: &str) -> Op {
    let mut op = op.clone();
    if let Call::ReadKeys {
        keys: Some(keys), ..
    } = &mut op.call
    {
        keys.retain(|k| k == key);
    }
    op
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Validity;
    use crate::history::build::op;

    const S: u64 = SECOND;
    const KEY: &str = "jepsen/l/1";

    fn grant(at: u64, ttl: i64) -> Op {
        let call = Call::Grant {
            lease: 1,
            ttl,
            granted: Some(ttl),
        };
        op(0, at, at + S / 100, Outcome::Ok, call)
    }
    fn put(at: u64) -> Op {
        let call = Call::PutLeased {
            key: KEY.into(),
            lease: 1,
        };
        op(0, at, at + S / 100, Outcome::Ok, call)
    }
    fn keep_alive(at: u64, ttl: i64) -> Op {
        let call = Call::KeepAlive {
            lease: 1,
            ttl: Some(ttl),
        };
        op(5, at, at + S / 100, Outcome::Ok, call)
    }
    fn revoke(at: u64) -> Op {
        op(0, at, at + S / 100, Outcome::Ok, Call::Revoke { lease: 1 })
    }
    fn read(at: u64, present: bool, sweep: bool) -> Op {
        let keys = if present {
            vec![KEY.to_owned()]
        } else {
            vec![]
        };
        let call = Call::ReadKeys {
            prefix: "jepsen/l/".into(),
            keys: Some(keys),
            sweep,
        };
        op(1, at, at + S / 10, Outcome::Ok, call)
    }
    /// A lease of 3 s, granted at 0, its key put at 0.1 s.
    fn start() -> Vec<Op> {
        vec![grant(0, 3), put(S / 10)]
    }
    fn kinds(ops: &[Op]) -> Vec<String> {
        check(ops).anomalies.into_iter().map(|a| a.kind).collect()
    }

    #[test]
    fn a_key_that_expires_after_its_ttl_is_valid() {
        let mut ops = start();
        ops.extend([read(S, true, false), read(2 * S, true, false)]);
        ops.extend([read(4 * S, true, true), read(5 * S, false, true)]);
        let v = check(&ops);
        assert_eq!(v.validity, Validity::Valid, "{v:#?}");
    }

    #[test]
    fn a_key_gone_before_its_ttl_is_caught() {
        let mut ops = start();
        ops.extend([read(2 * S, false, false), read(4 * S, false, true)]);
        assert_eq!(kinds(&ops), ["vanished-early"]);
    }

    #[test]
    fn keep_alives_extend_the_lease() {
        let mut ops = start();
        ops.extend([keep_alive(2 * S, 3), keep_alive(4 * S, 3)]);
        // Past the TTL from the grant, within the TTL from a keep-alive.
        ops.push(read(6 * S, false, false));
        ops.push(read(8 * S, false, true));
        assert_eq!(kinds(&ops), ["vanished-early"]);
        // Within the TTL of the last keep-alive, the lease said "gone".
        let mut ops = start();
        ops.extend([keep_alive(2 * S, 3), keep_alive(4 * S, 0)]);
        ops.push(read(8 * S, false, true));
        assert_eq!(kinds(&ops), ["expired-early"]);
    }

    #[test]
    fn a_revoke_may_remove_the_key_at_once() {
        let mut ops = start();
        ops.extend([
            revoke(S),
            read(S + S / 50, false, false),
            read(4 * S, false, true),
        ]);
        let v = check(&ops);
        assert_eq!(v.validity, Validity::Valid, "{v:#?}");
    }

    #[test]
    fn a_key_back_after_it_was_gone_is_caught() {
        let mut ops = start();
        ops.extend([read(4 * S, false, false), read(5 * S, true, false)]);
        ops.push(read(6 * S, false, true));
        assert_eq!(kinds(&ops), ["resurrected"]);
        let mut ops = start();
        ops.extend([
            revoke(S),
            read(2 * S, true, false),
            read(4 * S, false, true),
        ]);
        assert_eq!(kinds(&ops), ["resurrected"]);
    }

    #[test]
    fn keys_seen_after_a_keep_alive_said_gone_are_caught() {
        let mut ops = start();
        ops.extend([keep_alive(4 * S, 0), read(4 * S + S / 2, true, false)]);
        ops.push(read(6 * S, false, true));
        assert_eq!(kinds(&ops), ["outlived-lease"]);
    }

    #[test]
    fn a_key_that_outlives_its_lease_is_caught() {
        // The sweep began at 10 s: by 10 + 3 + SLACK s the key must be gone.
        let mut ops = start();
        let late = 10 * S + 3 * S + SLACK.as_nanos() as u64 + S;
        ops.extend([read(10 * S, true, true), read(late, true, true)]);
        assert_eq!(kinds(&ops), ["lingering"]);
        // A sweep that stopped too early decides nothing.
        let mut ops = start();
        ops.push(read(10 * S, true, true));
        assert_eq!(check(&ops).validity, Validity::Unknown);
    }

    #[test]
    fn counter_examples_show_only_the_key_in_question() {
        let mut ops = start();
        let mut early = read(2 * S, false, false);
        if let Call::ReadKeys { keys, .. } = &mut early.call {
            *keys = Some(vec!["jepsen/l/other".into()]);
        }
        ops.extend([early, read(4 * S, false, true)]);
        let v = check(&ops);
        let early = v.anomalies.iter().find(|a| a.kind == "vanished-early");
        let read = early.unwrap().ops.last().unwrap();
        assert!(
            matches!(&read.call, Call::ReadKeys { keys: Some(k), .. } if k.is_empty()),
            "{read:?}"
        );
    }

    #[test]
    fn keys_nobody_put_are_caught() {
        let mut ops = start();
        let mut stray = read(S, true, false);
        if let Call::ReadKeys { keys, .. } = &mut stray.call {
            keys.as_mut().unwrap().push("jepsen/l/zz".into());
        }
        ops.extend([stray, read(4 * S, false, true)]);
        assert_eq!(kinds(&ops), ["unexpected-key"]);
    }
}
