//! The `kubernetes` workload's checkers: each object is a linearizable
//! register whose version is its mod_revision, and every list at revision R
//! holds exactly the objects the history had at R.
//!
//! **Versions.** Every value is written once in a run, so a value names one
//! version of one object, and the revision the server gave it must be one
//! and the same wherever it shows up: in the write's response, a get, the
//! Else branch of a failed write, a list, a watch event. A value seen at two
//! revisions, or two values at one revision of a key, is `version-mismatch`.
//! With that settled, "mod_revision == rv" is "value == the value written at
//! rv", and the search below works on values.
//!
//! **Linearizability, per object** ([`Object`], with [`linear::check`]):
//! a create holds when the object is absent, an update or delete when the
//! object is at the expected version; a failed one saw something else, and
//! its Else branch saw exactly the current version. Revisions must grow:
//! a write placed after another must have a larger revision. Example: create
//! v1 (revision 5) completes; a get invoked later sees absent: no order
//! explains it (`nonlinearizable`). Or: update v1 -> v2 succeeds at revision
//! 7 while create v1 was at revision 9: the revision went back.
//!
//! **Lists.** The history of the prefix is known from the acknowledged writes
//! and the watchers' events; it is complete up to the last revision a
//! watcher caught up to (the watch checker verifies that it missed nothing).
//! A list at R up to there must hold, for every object, the version of its
//! last change at or before R if that was a put, and nothing else:
//! `list-missing`, `list-extra` (deleted or not yet created at R),
//! `list-stale` (another version), `list-unordered` (keys not strictly
//! ascending: a page repeated or skipped back).

use std::collections::{BTreeMap, HashMap};

use super::linear::{self, Linearizable, Model};
use super::{Anomaly, Verdict};
use crate::history::{Call, Op, Outcome, Seen};

/// Search steps per object before the checker answers `unknown`.
pub const DEFAULT_BUDGET: u64 = 20_000_000;

/// The object's state: its value (`None`: absent) and the revision of the
/// change that made it so (0: not known).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub value: Option<i64>,
    pub revision: i64,
}

/// One object, its versions' revisions known from the whole history.
pub struct Object {
    /// value -> the revision that wrote it.
    revisions: HashMap<i64, i64>,
}

impl Object {
    fn revision_of(&self, value: Option<i64>, op: &Op) -> i64 {
        let known = value.and_then(|v| self.revisions.get(&v).copied());
        let answered = match &op.call {
            Call::Guarded {
                revision: Some(r), ..
            } if op.outcome == Outcome::Ok => Some(*r),
            _ => None,
        };
        known.or(answered).unwrap_or(0)
    }

    /// The state after `op` writes, if revisions still grow.
    fn after(&self, state: &State, write: Option<i64>, op: &Op) -> Option<State> {
        let revision = self.revision_of(write, op);
        if revision != 0 && state.revision != 0 && revision <= state.revision {
            return None;
        }
        Some(State {
            value: write,
            revision,
        })
    }
}

fn matches(state: &State, seen: Seen) -> bool {
    state.value == seen.value()
}

impl Model for Object {
    type State = State;

    fn init(&self) -> State {
        State {
            value: None,
            revision: 0,
        }
    }

    fn step(&self, state: &State, op: &Op) -> Option<State> {
        let known = op.outcome == Outcome::Ok;
        match &op.call {
            Call::Get { seen: Some(s), .. } if known => matches(state, *s).then_some(*state),
            Call::Guarded {
                expect,
                write,
                succeeded,
                current,
                ..
            } => {
                let holds = state.value == expect.map(|v| v.value);
                match (known, succeeded) {
                    (true, Some(true)) => holds.then(|| self.after(state, *write, op)).flatten(),
                    (true, Some(false)) => {
                        let saw = current.is_none_or(|c| matches(state, c));
                        (!holds && saw).then_some(*state)
                    }
                    // It may have run, where the compare held.
                    _ if holds => self.after(state, *write, op),
                    _ => Some(*state),
                }
            }
            _ => None,
        }
    }

    fn relevant(&self, op: &Op) -> bool {
        match op.outcome {
            Outcome::Ok => matches!(op.call, Call::Get { .. } | Call::Guarded { .. }),
            Outcome::Fail => false,
            Outcome::Info => matches!(op.call, Call::Guarded { .. }),
        }
    }

    fn observation(&self, op: &Op) -> bool {
        op.outcome == Outcome::Ok
            && matches!(
                op.call,
                Call::Get { .. }
                    | Call::Guarded {
                        succeeded: Some(false),
                        ..
                    }
            )
    }
}

fn object_key(op: &Op) -> Option<&str> {
    match &op.call {
        Call::Get { key, .. } | Call::Guarded { key, .. } => Some(key),
        _ => None,
    }
}

/// Every (key, value, revision) a history shows, with the operation.
fn versions(ops: &[Op]) -> Vec<(&str, i64, i64, &Op)> {
    let mut out = Vec::new();
    for op in ops {
        if let Some((revision, key, Some(value))) = op.change() {
            out.push((key, value, revision, op));
        }
        if op.outcome != Outcome::Ok {
            continue;
        }
        match &op.call {
            Call::Get {
                key,
                seen: Some(Seen::Present { value, revision }),
            }
            | Call::Guarded {
                key,
                current: Some(Seen::Present { value, revision }),
                ..
            } => out.push((key, *value, *revision, op)),
            Call::List {
                objects: Some(objects),
                ..
            } => out.extend(objects.iter().map(|o| (&*o.key, o.value, o.revision, op))),
            Call::WatchLog { events, .. } => out.extend(
                events
                    .iter()
                    .filter_map(|e| Some((&*e.key, e.value?, e.revision, op))),
            ),
            _ => {}
        }
    }
    out
}

/// The linearizability of every object, after checking that each version
/// has one revision.
pub fn check(ops: &[Op], budget: u64) -> Verdict {
    let mut anomalies = Vec::new();
    // key -> value -> (revision, source); key -> revision -> (value, source)
    let mut by_value: BTreeMap<&str, HashMap<i64, (i64, &Op)>> = BTreeMap::new();
    let mut by_revision: HashMap<(&str, i64), (i64, &Op)> = HashMap::new();
    for (key, value, revision, op) in versions(ops) {
        let known = by_value.entry(key).or_default();
        match known.get(&value) {
            Some(&(r, source)) if r != revision => anomalies.push(Anomaly {
                kind: "version-mismatch".into(),
                explanation: format!(
                    "key {key}: value {value} at revision {r} in one operation and {revision} in another"
                ),
                ops: vec![source.clone(), op.clone()],
            }),
            Some(_) => {}
            None => {
                known.insert(value, (revision, op));
            }
        }
        match by_revision.get(&(key, revision)) {
            Some(&(v, source)) if v != value => anomalies.push(Anomaly {
                kind: "version-mismatch".into(),
                explanation: format!(
                    "key {key}: revision {revision} holds {v} in one operation and {value} in another"
                ),
                ops: vec![source.clone(), op.clone()],
            }),
            Some(_) => {}
            None => {
                by_revision.insert((key, revision), (value, op));
            }
        }
    }
    let mut objects: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        if let Some(key) = object_key(op) {
            objects.entry(key).or_default().push(op);
        }
    }
    let mut unknown = Vec::new();
    let mut checked = 0;
    for (key, key_ops) in &objects {
        let model = Object {
            revisions: by_value
                .get(key)
                .map(|m| m.iter().map(|(v, (r, _))| (*v, *r)).collect())
                .unwrap_or_default(),
        };
        let relevant: Vec<&Op> = key_ops
            .iter()
            .copied()
            .filter(|op| model.relevant(op))
            .collect();
        checked += relevant.len();
        match linear::check(&model, &relevant, budget) {
            Linearizable::Yes => {}
            Linearizable::Unknown => unknown.push(*key),
            Linearizable::No => anomalies.push(Anomaly {
                kind: "nonlinearizable".into(),
                explanation: format!(
                    "object {key}: no order of its {} operations respects real time, the \
                     guards and growing revisions; the operations below (a shortest failing \
                     prefix without the reads that do not matter) already have none",
                    relevant.len()
                ),
                ops: linear::shrink(&model, &relevant, budget),
            }),
        }
    }
    let mut summary = format!(
        "{} objects, {} operations checked: {} anomalies",
        objects.len(),
        checked,
        anomalies.len()
    );
    if !unknown.is_empty() {
        summary.push_str(&format!(
            "; search budget spent on {} objects ({})",
            unknown.len(),
            unknown.join(", ")
        ));
    }
    Verdict::from_anomalies(
        "kubernetes-objects",
        summary,
        anomalies,
        !unknown.is_empty() || objects.is_empty(),
    )
}

/// Every list against the history of the prefix at its revision.
pub fn check_lists(ops: &[Op]) -> Verdict {
    // key -> revision -> value put (None: deleted)
    let mut changes: BTreeMap<&str, BTreeMap<i64, Option<i64>>> = BTreeMap::new();
    let mut complete_until = 0;
    for op in ops {
        if let Some((revision, key, value)) = op.change() {
            changes.entry(key).or_default().insert(revision, value);
        }
        // A watcher's log, or the record: one fresh watch of the prefix read
        // at the end from the member's history, complete whatever the
        // watchers missed (the watch checker holds both to each other).
        let (from, until, events) = match &op.call {
            Call::WatchLog {
                from,
                until,
                events,
                ..
            }
            | Call::WatchRecord {
                from,
                until,
                events,
                ..
            } => (*from, *until, events),
            _ => continue,
        };
        for e in events {
            changes
                .entry(&e.key)
                .or_default()
                .insert(e.revision, e.value);
        }
        // A watch that started before the first write to the (fresh) prefix
        // saw all of its history up to `until`.
        if first_change(ops).is_none_or(|first| from <= first) {
            complete_until = complete_until.max(until.unwrap_or(0));
        }
    }
    let mut anomalies = Vec::new();
    let (mut lists, mut checked) = (0, 0);
    for op in ops {
        let Call::List {
            prefix,
            revision: Some(at),
            objects: Some(objects),
            ..
        } = &op.call
        else {
            continue;
        };
        if op.outcome != Outcome::Ok {
            continue;
        }
        lists += 1;
        if *at > complete_until {
            continue;
        }
        checked += 1;
        let mut flag = |kind: &str, explanation: String| {
            anomalies.push(Anomaly {
                kind: kind.into(),
                explanation: format!("list of {prefix} at revision {at}: {explanation}"),
                ops: vec![op.clone()],
            })
        };
        for pair in objects.windows(2) {
            if pair[0].key >= pair[1].key {
                flag(
                    "list-unordered",
                    format!("{} before {}", pair[0].key, pair[1].key),
                );
            }
        }
        let listed: BTreeMap<&str, (i64, i64)> = objects
            .iter()
            .map(|o| (&*o.key, (o.value, o.revision)))
            .collect();
        for (key, history) in changes.range(prefix.as_str()..) {
            if !key.starts_with(prefix.as_str()) {
                break;
            }
            let expected = history
                .range(..=*at)
                .next_back()
                .and_then(|(r, v)| v.map(|v| (v, *r)));
            match (expected, listed.get(key)) {
                (Some(e), Some(l)) if e != *l => flag(
                    "list-stale",
                    format!(
                        "{key} is value {} at revision {}, the history has {} at {}",
                        l.0, l.1, e.0, e.1
                    ),
                ),
                (Some(e), None) => flag(
                    "list-missing",
                    format!("{key} (value {} at revision {}) is missing", e.0, e.1),
                ),
                _ => {}
            }
        }
        for (key, (value, revision)) in &listed {
            let exists = changes
                .get(key)
                .and_then(|h| h.range(..=*at).next_back())
                .is_some_and(|(_, v)| v.is_some());
            if !exists {
                flag(
                    "list-extra",
                    format!(
                        "{key} (value {value} at revision {revision}) did not exist at the list's revision"
                    ),
                );
            }
        }
    }
    let summary = format!(
        "{lists} lists, {checked} at revisions the watchers covered: {} anomalies",
        anomalies.len()
    );
    Verdict::from_anomalies("kubernetes-lists", summary, anomalies, checked == 0)
}

/// The revision of the first acknowledged change.
fn first_change(ops: &[Op]) -> Option<i64> {
    ops.iter().filter_map(|op| op.change()).map(|c| c.0).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Validity;
    use crate::history::build::op;
    use crate::history::{Listed, Version, WatchEvent};

    const K: &str = "/registry/pods/ns-0000/a";

    fn create(p: u32, a: u64, b: u64, value: i64, revision: Option<i64>) -> Op {
        let call = Call::Guarded {
            key: K.into(),
            expect: None,
            write: Some(value),
            succeeded: Some(revision.is_some()),
            revision,
            current: None,
        };
        op(p, a, b, Outcome::Ok, call)
    }
    fn update(
        p: u32,
        a: u64,
        b: u64,
        from: (i64, i64),
        to: Option<i64>,
        result: Result<i64, Seen>,
    ) -> Op {
        let call = Call::Guarded {
            key: K.into(),
            expect: Some(Version {
                value: from.0,
                revision: from.1,
            }),
            write: to,
            succeeded: Some(result.is_ok()),
            revision: result.ok(),
            current: result.err(),
        };
        op(p, a, b, Outcome::Ok, call)
    }
    fn get(p: u32, a: u64, b: u64, seen: Seen) -> Op {
        op(
            p,
            a,
            b,
            Outcome::Ok,
            Call::Get {
                key: K.into(),
                seen: Some(seen),
            },
        )
    }
    fn present(value: i64, revision: i64) -> Seen {
        Seen::Present { value, revision }
    }
    fn verdict(ops: &[Op]) -> Verdict {
        check(ops, DEFAULT_BUDGET)
    }

    #[test]
    fn create_update_delete_in_order_is_valid() {
        let ops = vec![
            create(0, 0, 10, 1, Some(5)),
            get(1, 2, 3, Seen::Absent), // concurrent with the create
            update(1, 11, 12, (1, 5), Some(2), Ok(6)),
            // A stale update: its Else branch sees the current version.
            update(2, 13, 14, (1, 5), Some(3), Err(present(2, 6))),
            update(0, 15, 16, (2, 6), None, Ok(7)),
            get(1, 17, 18, Seen::Absent),
            create(2, 19, 20, 4, Some(8)),
            create(0, 21, 22, 5, None), // exists already
        ];
        let v = verdict(&ops);
        assert_eq!(v.validity, Validity::Valid, "{v:#?}");
    }

    #[test]
    fn a_read_that_misses_an_acknowledged_create_is_caught() {
        let ops = vec![create(0, 0, 1, 1, Some(5)), get(1, 2, 3, Seen::Absent)];
        let v = verdict(&ops);
        assert_eq!(v.validity, Validity::Invalid);
        assert_eq!(v.anomalies[0].kind, "nonlinearizable");
    }

    #[test]
    fn two_updates_from_one_version_cannot_both_succeed() {
        let ops = vec![
            create(0, 0, 1, 1, Some(5)),
            update(1, 2, 3, (1, 5), Some(2), Ok(6)),
            update(2, 4, 5, (1, 5), Some(3), Ok(7)),
        ];
        assert_eq!(verdict(&ops).validity, Validity::Invalid);
    }

    #[test]
    fn a_conflict_whose_else_branch_saw_an_old_version_is_caught() {
        let ops = vec![
            create(0, 0, 1, 1, Some(5)),
            update(0, 2, 3, (1, 5), Some(2), Ok(6)),
            // Failed, so the object was not at (1, 5)... yet Else saw it.
            update(1, 4, 5, (1, 5), Some(3), Err(present(1, 5))),
        ];
        assert_eq!(verdict(&ops).validity, Validity::Invalid);
    }

    #[test]
    fn revisions_that_go_back_are_caught() {
        // Update after create in real time, but at a smaller revision.
        let ops = vec![
            create(0, 0, 1, 1, Some(9)),
            update(0, 2, 3, (1, 9), Some(2), Ok(7)),
        ];
        let v = verdict(&ops);
        assert_eq!(v.validity, Validity::Invalid, "{v:#?}");
        // One value at two revisions.
        let ops = vec![create(0, 0, 1, 1, Some(5)), get(1, 2, 3, present(1, 6))];
        let kinds: Vec<String> = verdict(&ops)
            .anomalies
            .into_iter()
            .map(|a| a.kind)
            .collect();
        assert!(kinds.contains(&"version-mismatch".to_string()), "{kinds:?}");
    }

    #[test]
    fn an_indeterminate_update_may_apply_later_or_never() {
        let mut info = update(1, 2, 3, (1, 5), Some(2), Ok(6));
        info.outcome = Outcome::Info;
        if let Call::Guarded {
            succeeded,
            revision,
            ..
        } = &mut info.call
        {
            *succeeded = None;
            *revision = None;
        }
        let later = vec![
            create(0, 0, 1, 1, Some(5)),
            info.clone(),
            get(2, 4, 5, present(1, 5)),
            get(2, 10, 11, present(2, 6)),
        ];
        assert_eq!(verdict(&later).validity, Validity::Valid);
        let never = vec![
            create(0, 0, 1, 1, Some(5)),
            info,
            get(2, 4, 5, present(1, 5)),
        ];
        assert_eq!(verdict(&never).validity, Validity::Valid);
    }

    fn events(events: Vec<(i64, &str, Option<i64>)>) -> Vec<WatchEvent> {
        events
            .into_iter()
            .map(|(revision, key, value)| WatchEvent {
                revision,
                key: key.into(),
                value,
            })
            .collect()
    }
    fn watch_log(until: i64, seen: Vec<(i64, &str, Option<i64>)>) -> Op {
        let call = Call::WatchLog {
            watcher: 0,
            from: 1,
            until: Some(until),
            events: events(seen),
            resumes: Vec::new(),
        };
        op(100, 0, 100, Outcome::Ok, call)
    }
    /// [`history`] as the record read at the end instead of a watcher's log.
    fn record() -> Op {
        let Call::WatchLog { events, .. } = history().call else {
            unreachable!()
        };
        let call = Call::WatchRecord {
            from: 1,
            until: Some(6),
            compacted: None,
            events,
        };
        op(101, 100, 101, Outcome::Ok, call)
    }
    fn list(at: i64, objects: &[(&str, i64, i64)]) -> Op {
        let call = Call::List {
            prefix: "/registry/pods/ns-0000/".into(),
            limit: 2,
            revision: Some(at),
            objects: Some(
                objects
                    .iter()
                    .map(|&(key, value, revision)| Listed {
                        key: key.into(),
                        value,
                        revision,
                    })
                    .collect(),
            ),
        };
        op(7, 50, 51, Outcome::Ok, call)
    }
    fn list_kinds(ops: &[Op]) -> Vec<String> {
        check_lists(ops)
            .anomalies
            .into_iter()
            .map(|a| a.kind)
            .collect()
    }

    const A: &str = "/registry/pods/ns-0000/a";
    const B: &str = "/registry/pods/ns-0000/b";

    fn history() -> Op {
        // a: 1 at 2, 2 at 4, deleted at 5; b: 3 at 3.
        watch_log(
            6,
            vec![
                (2, A, Some(1)),
                (3, B, Some(3)),
                (4, A, Some(2)),
                (5, A, None),
                (6, "/registry/pods/~fence", Some(-1)),
            ],
        )
    }

    #[test]
    fn lists_that_match_the_history_at_their_revision_are_valid() {
        let ops = vec![
            history(),
            list(3, &[(A, 1, 2), (B, 3, 3)]),
            list(4, &[(A, 2, 4), (B, 3, 3)]),
            list(5, &[(B, 3, 3)]),
            list(1, &[]),
        ];
        let v = check_lists(&ops);
        assert_eq!(v.validity, Validity::Valid, "{v:#?}");
    }

    #[test]
    fn stale_missing_extra_and_unordered_lists_are_caught() {
        assert_eq!(
            list_kinds(&[history(), list(4, &[(A, 1, 2), (B, 3, 3)])]),
            ["list-stale"]
        );
        assert_eq!(
            list_kinds(&[history(), list(4, &[(A, 2, 4)])]),
            ["list-missing"]
        );
        assert_eq!(
            list_kinds(&[history(), list(5, &[(A, 2, 4), (B, 3, 3)])]),
            ["list-extra"]
        );
        assert_eq!(
            list_kinds(&[history(), list(2, &[(A, 1, 2), (B, 3, 3)])]),
            ["list-extra"]
        );
        assert_eq!(
            list_kinds(&[history(), list(3, &[(B, 3, 3), (A, 1, 2)])]),
            ["list-unordered"]
        );
    }

    #[test]
    fn the_record_judges_lists_the_watchers_did_not_cover() {
        // The only watcher stopped at revision 3; the record reaches 6.
        let short = watch_log(3, vec![(2, A, Some(1)), (3, B, Some(3))]);
        assert_eq!(
            list_kinds(&[short.clone(), record(), list(4, &[(A, 2, 4)])]),
            ["list-missing"]
        );
        let v = check_lists(&[short, record(), list(5, &[(B, 3, 3)])]);
        assert_eq!(v.validity, Validity::Valid, "{v:#?}");
    }

    #[test]
    fn lists_past_what_the_watchers_covered_are_not_judged() {
        let v = check_lists(&[history(), list(9, &[])]);
        assert_eq!(v.validity, Validity::Unknown);
    }
}
