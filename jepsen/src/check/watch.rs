//! The watch checker: every watcher of one prefix must see the same events
//! in revision order, each once, with no gaps, across reconnections (a
//! watcher resumes at its last revision + 1 on another member).
//!
//! The revisions that exist are those of acknowledged writes (their
//! response header's revision, [`Op::change`]) and those any watcher reported. A watcher that asked
//! for events from `from` and caught up to `until` (the fence put written
//! when the faults are over) must report every existing revision in
//! `[from, until]`, with the same key and value as every other source.
//!
//! Example: puts at revisions 5, 6, 7 acknowledged; watcher A saw 5, 6, 7;
//! watcher B saw 5, 7. B has a gap at 6. Had B seen 5, 7, 6 it would be
//! reordered; 5, 6, 6, 7 duplicated.

use std::collections::{BTreeMap, BTreeSet};

use super::{Anomaly, Verdict};
use crate::history::{Call, Op, WatchEvent};

pub fn check(ops: &[Op]) -> Verdict {
    let mut anomalies = Vec::new();
    // revision -> key -> (value, the operation that says so)
    let mut truth: BTreeMap<i64, BTreeMap<&str, (Option<i64>, &Op)>> = BTreeMap::new();
    let mut logs = Vec::new();
    for op in ops {
        if let Some((revision, key, value)) = op.change() {
            record(&mut truth, &mut anomalies, revision, key, value, op);
        }
        if let Call::WatchLog { events, .. } = &op.call {
            logs.push(op);
            for e in events {
                record(&mut truth, &mut anomalies, e.revision, &e.key, e.value, op);
            }
        }
    }
    let mut stalled = 0;
    for log in &logs {
        let Call::WatchLog {
            watcher,
            from,
            until,
            events,
            ..
        } = &log.call
        else {
            continue;
        };
        let mut flag = |kind: &str, explanation: String, around: &[WatchEvent]| {
            anomalies.push(Anomaly {
                kind: kind.into(),
                explanation: format!("watcher {watcher}: {explanation}"),
                ops: vec![excerpt(log, around)],
            });
        };
        let mut seen: BTreeSet<(i64, &str)> = BTreeSet::new();
        for (i, pair) in events.windows(2).enumerate() {
            let (a, b) = (&pair[0], &pair[1]);
            if (b.revision, &b.key) == (a.revision, &a.key) {
                flag(
                    "duplicate",
                    format!("event at revision {} twice", b.revision),
                    &events[i..i + 2],
                );
            } else if b.revision < a.revision {
                flag(
                    "reordered",
                    format!("revision {} after {}", b.revision, a.revision),
                    &events[i..i + 2],
                );
            }
        }
        for (i, e) in events.iter().enumerate() {
            if e.revision < *from {
                flag(
                    "before-start",
                    format!("revision {} before its start {from}", e.revision),
                    &events[i..=i],
                );
            }
            let adjacent =
                i > 0 && (events[i - 1].revision, &events[i - 1].key) == (e.revision, &e.key);
            // Adjacent repeats were reported above.
            if !seen.insert((e.revision, &e.key)) && !adjacent {
                flag(
                    "duplicate",
                    format!("revision {} again", e.revision),
                    &events[i..=i],
                );
            }
        }
        let Some(until) = until else {
            stalled += 1;
            flag(
                "stalled",
                format!(
                    "never caught up with the final fence (last event {:?})",
                    events.last().map(|e| e.revision)
                ),
                &events[events.len().saturating_sub(3)..],
            );
            continue;
        };
        for (revision, keys) in truth.range(*from..=*until) {
            for (key, (_, source)) in keys {
                if !seen.contains(&(*revision, *key)) {
                    let at = events.partition_point(|e| e.revision < *revision);
                    let around = &events[at.saturating_sub(2)..(at + 2).min(events.len())];
                    anomalies.push(Anomaly {
                        kind: "gap".into(),
                        explanation: format!(
                            "watcher {watcher}: missed revision {revision} (key {key}) \
                             between {from} and {until}"
                        ),
                        ops: vec![(*source).clone(), excerpt(log, around)],
                    });
                }
            }
        }
    }
    let summary = format!(
        "{} watchers, {} revisions: {} anomalies ({} stalled)",
        logs.len(),
        truth.len(),
        anomalies.len(),
        stalled
    );
    Verdict::from_anomalies("watch", summary, anomalies, logs.is_empty())
}

/// Adds what `op` says happened at `revision`; a second source that
/// disagrees on the value is an anomaly.
fn record<'a>(
    truth: &mut BTreeMap<i64, BTreeMap<&'a str, (Option<i64>, &'a Op)>>,
    anomalies: &mut Vec<Anomaly>,
    revision: i64,
    key: &'a str,
    value: Option<i64>,
    op: &'a Op,
) {
    let at = truth.entry(revision).or_default();
    match at.get(key) {
        None => {
            at.insert(key, (value, op));
        }
        Some((known, source)) if *known != value => anomalies.push(Anomaly {
            kind: "divergent".into(),
            explanation: format!(
                "revision {revision} of key {key} is {known:?} in one source and {value:?} in another"
            ),
            ops: vec![(*source).clone(), op.clone()],
        }),
        Some(_) => {}
    }
}

/// A watcher's log with only the events around an anomaly, for the report.
/// Built without cloning the whole log: a watcher with thousands of gaps
/// would otherwise hold thousands of copies of its log (a run's checker
/// once grew to 24 GiB and was killed).
fn excerpt(log: &Op, around: &[WatchEvent]) -> Op {
    let call = match &log.call {
        Call::WatchLog {
            watcher,
            from,
            until,
            resumes,
            ..
        } => Call::WatchLog {
            watcher: *watcher,
            from: *from,
            until: *until,
            events: around.to_vec(),
            resumes: resumes.clone(),
        },
        other => other.clone(),
    };
    Op {
        process: log.process,
        invoke: log.invoke,
        complete: log.complete,
        outcome: log.outcome,
        call,
        error: log.error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Validity;
    use crate::history::build::op;
    use crate::history::Outcome;

    fn put(value: i64, revision: i64) -> Op {
        let call = Call::Put {
            key: format!("w{value}"),
            value,
            revision: Some(revision),
        };
        op(0, revision as u64, revision as u64 + 1, Outcome::Ok, call)
    }
    fn ev(value: i64, revision: i64) -> WatchEvent {
        WatchEvent {
            revision,
            key: format!("w{value}"),
            value: Some(value),
        }
    }
    fn log(watcher: u32, from: i64, until: Option<i64>, events: Vec<WatchEvent>) -> Op {
        let call = Call::WatchLog {
            watcher,
            from,
            until,
            events,
            resumes: Vec::new(),
        };
        op(10 + watcher, 0, 100, Outcome::Ok, call)
    }
    fn puts() -> Vec<Op> {
        vec![put(1, 5), put(2, 6), put(3, 7)]
    }
    fn kinds(ops: &[Op]) -> Vec<String> {
        check(ops).anomalies.into_iter().map(|a| a.kind).collect()
    }

    #[test]
    fn identical_complete_logs_are_valid() {
        let mut ops = puts();
        ops.push(log(0, 5, Some(7), vec![ev(1, 5), ev(2, 6), ev(3, 7)]));
        ops.push(log(1, 6, Some(7), vec![ev(2, 6), ev(3, 7)]));
        assert_eq!(check(&ops).validity, Validity::Valid);
    }

    #[test]
    fn missing_event_is_a_gap() {
        let mut ops = puts();
        ops.push(log(0, 5, Some(7), vec![ev(1, 5), ev(2, 6), ev(3, 7)]));
        ops.push(log(1, 5, Some(7), vec![ev(1, 5), ev(3, 7)]));
        assert_eq!(kinds(&ops), ["gap"]);
        // Even when no watcher saw it, an acknowledged put must be there.
        let mut ops = puts();
        ops.push(log(0, 5, Some(7), vec![ev(1, 5), ev(3, 7)]));
        assert_eq!(kinds(&ops), ["gap"]);
    }

    #[test]
    fn duplicated_event_is_caught() {
        let mut ops = puts();
        ops.push(log(
            0,
            5,
            Some(7),
            vec![ev(1, 5), ev(2, 6), ev(2, 6), ev(3, 7)],
        ));
        assert_eq!(kinds(&ops), ["duplicate"]);
    }

    #[test]
    fn reordered_events_are_caught() {
        let mut ops = puts();
        ops.push(log(0, 5, Some(7), vec![ev(1, 5), ev(3, 7), ev(2, 6)]));
        assert_eq!(kinds(&ops), ["reordered"]);
    }

    #[test]
    fn divergent_values_and_stalls_are_caught() {
        let mut ops = puts();
        let mut wrong = ev(2, 6);
        wrong.value = Some(99);
        ops.push(log(0, 5, Some(7), vec![ev(1, 5), wrong, ev(3, 7)]));
        assert_eq!(kinds(&ops), ["divergent"]);
        let mut ops = puts();
        ops.push(log(0, 5, None, vec![ev(1, 5)]));
        assert_eq!(kinds(&ops), ["stalled"]);
    }

    #[test]
    fn events_before_the_start_are_caught() {
        let mut ops = puts();
        ops.push(log(0, 6, Some(7), vec![ev(1, 5), ev(2, 6), ev(3, 7)]));
        assert_eq!(kinds(&ops), ["before-start"]);
    }
}
