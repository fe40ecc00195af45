//! The watch checker: every watcher of one prefix must see the same events
//! in revision order, each once, with no gaps, across reconnections (a
//! watcher resumes at its last revision + 1 on another member).
//!
//! The revisions that exist are those of acknowledged writes (their
//! response header's revision, [`Op::change`]), those any watcher
//! reported, and those of the record ([`Call::WatchRecord`]): one watch
//! stream of the prefix read at the end, from the watchers' start to the
//! fence, when every change is in the store. A watcher that asked for
//! events from `from` and caught up to `until` (the fence put written when
//! the faults are over) must report every existing revision in
//! `[from, until]`, with the same key and value as every other source.
//!
//! The record makes the watchers' streams exact: inside the record's
//! range, every event any source reports must be in the record
//! (`not-in-record`), and a change only the record knows, that no client
//! acknowledged and no watcher reported although some watcher was
//! watching then, is `missed-by-all` (reported once, not as each
//! watcher's gap). When the range was compacted before the record was
//! read, the record starts after the compact revision and only that part
//! is checked against it.
//!
//! Example: puts at revisions 5, 6, 7 acknowledged; watcher A saw 5, 6, 7;
//! watcher B saw 5, 7. B has a gap at 6. Had B seen 5, 7, 6 it would be
//! reordered; 5, 6, 6, 7 duplicated. Had the put at 6 timed out and A seen
//! 5, 7 too, the record (5, 6, 7) shows 6 as missed by all.

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
    // The record goes in last, so that a change whose first source is the
    // record is one no client and no watcher reported.
    let the_record = Record::find(ops);
    if let Some(r) = &the_record {
        for e in r.events {
            record(
                &mut truth,
                &mut anomalies,
                e.revision,
                &e.key,
                e.value,
                r.op,
            );
        }
        anomalies.extend(r.not_in_record(&truth));
    }
    // (revision, key) -> the watchers that missed it, for changes only the
    // record knows.
    let mut missed_by_all: BTreeMap<(i64, &str), Vec<u32>> = BTreeMap::new();
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
                    if the_record
                        .as_ref()
                        .is_some_and(|r| std::ptr::eq(*source, r.op))
                    {
                        missed_by_all
                            .entry((*revision, *key))
                            .or_default()
                            .push(*watcher);
                        continue;
                    }
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
    if let Some(r) = &the_record {
        for ((revision, key), watchers) in missed_by_all {
            let at = r.events.partition_point(|e| e.revision < revision);
            let around = &r.events[at.saturating_sub(2)..(at + 3).min(r.events.len())];
            anomalies.push(Anomaly {
                kind: "missed-by-all".into(),
                explanation: format!(
                    "revision {revision} (key {key}) is in the record, but no client \
                     acknowledged it and no watcher reported it (watchers {watchers:?} \
                     were watching then)"
                ),
                ops: vec![excerpt(r.op, around)],
            });
        }
    }
    let record_summary = match &the_record {
        None => "no record".to_owned(),
        Some(r) => format!(
            "record of revisions {}..={} ({} revisions with a change of the range){}",
            r.from,
            r.until,
            r.revisions(),
            r.compacted
                .map(|c| format!(" (compacted at {c}: checked from {} on)", r.from))
                .unwrap_or_default()
        ),
    };
    let summary = format!(
        "{} watchers, {} revisions, {record_summary}: {} anomalies ({} stalled)",
        logs.len(),
        truth.len(),
        anomalies.len(),
        stalled
    );
    Verdict::from_anomalies("watch", summary, anomalies, logs.is_empty())
}

/// The watched range's history read at the end ([`Call::WatchRecord`]),
/// when it reached the fence.
struct Record<'a> {
    op: &'a Op,
    from: i64,
    until: i64,
    compacted: Option<i64>,
    events: &'a [WatchEvent],
}

impl<'a> Record<'a> {
    fn find(ops: &'a [Op]) -> Option<Record<'a>> {
        ops.iter().find_map(|op| match &op.call {
            Call::WatchRecord {
                from,
                until: Some(until),
                compacted,
                events,
            } => Some(Record {
                op,
                from: *from,
                until: *until,
                compacted: *compacted,
                events,
            }),
            _ => None,
        })
    }

    /// How many revisions of the record's range changed the watched range:
    /// all of them when nothing else was written meanwhile, as in the
    /// `watch` and `kubernetes` workloads (etcd's revisions are dense).
    fn revisions(&self) -> usize {
        let mut revisions: Vec<i64> = self.events.iter().map(|e| e.revision).collect();
        revisions.dedup();
        revisions.len()
    }

    /// Every change any source reports inside the record's range must be
    /// in the record, and the record must be in order, each change once.
    fn not_in_record(
        &self,
        truth: &BTreeMap<i64, BTreeMap<&str, (Option<i64>, &Op)>>,
    ) -> Vec<Anomaly> {
        let mut anomalies = Vec::new();
        let mut recorded: BTreeSet<(i64, &str)> = BTreeSet::new();
        for (i, e) in self.events.iter().enumerate() {
            let ordered = i == 0 || self.events[i - 1].revision <= e.revision;
            let outside = e.revision < self.from || e.revision > self.until;
            if !recorded.insert((e.revision, &e.key)) || !ordered || outside {
                let around = &self.events[i.saturating_sub(1)..=i];
                anomalies.push(Anomaly {
                    kind: "record-disorder".into(),
                    explanation: format!(
                        "the record has revision {} (key {}) out of order, twice or outside \
                         {}..={}",
                        e.revision, e.key, self.from, self.until
                    ),
                    ops: vec![excerpt(self.op, around)],
                });
            }
        }
        for (revision, keys) in truth.range(self.from..=self.until) {
            for (key, (_, source)) in keys {
                if !recorded.contains(&(*revision, *key)) {
                    let at = self.events.partition_point(|e| e.revision < *revision);
                    let around =
                        &self.events[at.saturating_sub(2)..(at + 2).min(self.events.len())];
                    anomalies.push(Anomaly {
                        kind: "not-in-record".into(),
                        explanation: format!(
                            "revision {revision} (key {key}) is reported, but the record of \
                             {}..={} does not have it",
                            self.from, self.until
                        ),
                        ops: vec![(*source).clone(), excerpt(self.op, around)],
                    });
                }
            }
        }
        anomalies
    }
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
        Call::WatchRecord {
            from,
            until,
            compacted,
            ..
        } => Call::WatchRecord {
            from: *from,
            until: *until,
            compacted: *compacted,
            events: around.to_vec(),
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

    fn record(from: i64, until: i64, compacted: Option<i64>, events: Vec<WatchEvent>) -> Op {
        let call = Call::WatchRecord {
            from,
            until: Some(until),
            compacted,
            events,
        };
        op(20, 200, 300, Outcome::Ok, call)
    }
    /// Puts at 5 and 7 acknowledged; the put at 6 timed out (`info`), so
    /// only the record can tell that it happened.
    fn puts_with_one_unacknowledged() -> Vec<Op> {
        let mut timed_out = put(2, 6);
        timed_out.outcome = Outcome::Info;
        timed_out.call = Call::Put {
            key: "w2".into(),
            value: 2,
            revision: None,
        };
        vec![put(1, 5), timed_out, put(3, 7)]
    }

    #[test]
    fn a_revision_every_watcher_missed_is_caught_by_the_record() {
        let mut ops = puts_with_one_unacknowledged();
        ops.push(log(0, 5, Some(7), vec![ev(1, 5), ev(3, 7)]));
        ops.push(log(1, 5, Some(7), vec![ev(1, 5), ev(3, 7)]));
        // Without the record nothing says revision 6 happened.
        assert_eq!(check(&ops).validity, Validity::Valid);
        ops.push(record(5, 7, None, vec![ev(1, 5), ev(2, 6), ev(3, 7)]));
        let verdict = check(&ops);
        let kinds: Vec<&str> = verdict.anomalies.iter().map(|a| &*a.kind).collect();
        assert_eq!(kinds, ["missed-by-all"]);
        assert!(verdict.anomalies[0].explanation.contains("revision 6"));
    }

    #[test]
    fn watchers_that_match_the_record_are_valid() {
        let mut ops = puts_with_one_unacknowledged();
        ops.push(log(0, 5, Some(7), vec![ev(1, 5), ev(2, 6), ev(3, 7)]));
        ops.push(log(1, 6, Some(7), vec![ev(2, 6), ev(3, 7)]));
        ops.push(record(5, 7, None, vec![ev(1, 5), ev(2, 6), ev(3, 7)]));
        let verdict = check(&ops);
        assert_eq!(verdict.validity, Validity::Valid, "{verdict:?}");
        // One watcher saw 6: the other's miss is its own gap.
        let mut ops = puts_with_one_unacknowledged();
        ops.push(log(0, 5, Some(7), vec![ev(1, 5), ev(2, 6), ev(3, 7)]));
        ops.push(log(1, 5, Some(7), vec![ev(1, 5), ev(3, 7)]));
        ops.push(record(5, 7, None, vec![ev(1, 5), ev(2, 6), ev(3, 7)]));
        assert_eq!(kinds(&ops), ["gap"]);
    }

    #[test]
    fn an_event_the_record_lacks_or_disagrees_with_is_caught() {
        let mut ops = puts();
        ops.push(log(0, 5, Some(7), vec![ev(1, 5), ev(2, 6), ev(3, 7)]));
        ops.push(record(5, 7, None, vec![ev(1, 5), ev(3, 7)]));
        assert_eq!(kinds(&ops), ["not-in-record"]);
        let mut ops = puts();
        ops.push(log(0, 5, Some(7), vec![ev(1, 5), ev(2, 6), ev(3, 7)]));
        let mut wrong = ev(2, 6);
        wrong.value = Some(99);
        ops.push(record(5, 7, None, vec![ev(1, 5), wrong, ev(3, 7)]));
        assert_eq!(kinds(&ops), ["divergent"]);
    }

    #[test]
    fn a_compacted_record_is_checked_only_after_the_compaction() {
        // The range was compacted at 6 before the record was read: the
        // record starts at 7, so revisions 5 and 6 (the second one acked by
        // nobody and seen by no watcher) are not held against anyone.
        let mut ops = puts_with_one_unacknowledged();
        ops.push(log(0, 5, Some(7), vec![ev(1, 5), ev(3, 7)]));
        ops.push(record(7, 7, Some(6), vec![ev(3, 7)]));
        let verdict = check(&ops);
        assert_eq!(verdict.validity, Validity::Valid, "{verdict:?}");
        assert!(
            verdict.summary.contains("compacted at 6"),
            "{}",
            verdict.summary
        );
        // What the record does cover is still checked.
        let mut ops = puts_with_one_unacknowledged();
        ops.push(log(0, 5, Some(8), vec![ev(1, 5), ev(3, 7)]));
        ops.push(record(7, 8, Some(6), vec![ev(3, 7), ev(4, 8)]));
        assert_eq!(kinds(&ops), ["missed-by-all"]);
    }

    #[test]
    fn a_record_out_of_order_is_caught() {
        let mut ops = puts();
        ops.push(log(0, 5, Some(7), vec![ev(1, 5), ev(2, 6), ev(3, 7)]));
        ops.push(record(5, 7, None, vec![ev(1, 5), ev(3, 7), ev(2, 6)]));
        assert_eq!(kinds(&ops), ["record-disorder"]);
    }

    #[test]
    fn events_before_the_start_are_caught() {
        let mut ops = puts();
        ops.push(log(0, 6, Some(7), vec![ev(1, 5), ev(2, 6), ev(3, 7)]));
        assert_eq!(kinds(&ops), ["before-start"]);
    }
}
