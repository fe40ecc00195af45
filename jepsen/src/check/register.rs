//! The register model, checked for linearizability one key at a time (each
//! key is an independent register, so the search stays small).
//!
//! A register holds a value or nothing. Reads see the current value; writes
//! replace it; a compare-and-set with `swapped: true` saw `from` and left
//! `to`, with `swapped: false` saw something else and changed nothing.
//! (`from: None` is create-if-absent, `to: None` a delete.)

use std::collections::BTreeMap;

use super::linear::{self, Linearizable, Model};
use super::{Anomaly, Verdict};
use crate::history::{Call, Op, Outcome};

/// Search steps per key before the checker answers `unknown`.
pub const DEFAULT_BUDGET: u64 = 20_000_000;

/// A register per key, initially absent.
pub struct Register;

impl Model for Register {
    type State = Option<i64>;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(&self, state: &Option<i64>, op: &Op) -> Option<Option<i64>> {
        let known = op.outcome == Outcome::Ok;
        match &op.call {
            Call::Read { value, .. } => (!known || value == state).then_some(*state),
            Call::Write { value, .. } => Some(Some(*value)),
            Call::Cas {
                from, to, swapped, ..
            } => {
                let holds = state == from;
                match (known, swapped) {
                    (true, Some(true)) => holds.then_some(*to),
                    (true, Some(false)) => (!holds).then_some(*state),
                    // It may have run: if the compare held it swapped.
                    _ => Some(if holds { *to } else { *state }),
                }
            }
            _ => None,
        }
    }

    fn relevant(&self, op: &Op) -> bool {
        match op.outcome {
            Outcome::Ok => true,
            Outcome::Fail => false,
            Outcome::Info => !matches!(op.call, Call::Read { .. }),
        }
    }

    /// Reads and compare-and-sets that did not swap: they changed nothing.
    fn observation(&self, op: &Op) -> bool {
        op.outcome == Outcome::Ok
            && matches!(
                op.call,
                Call::Read { .. }
                    | Call::Cas {
                        swapped: Some(false),
                        ..
                    }
            )
    }
}

/// Checks every key's operations for linearizability.
pub fn check(ops: &[Op], budget: u64) -> Verdict {
    let model = Register;
    let mut keys: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        if let Some(key) = op.register_key() {
            keys.entry(key).or_default().push(op);
        }
    }
    let mut anomalies = Vec::new();
    let mut unknown = Vec::new();
    for (key, key_ops) in &keys {
        let relevant: Vec<&Op> = key_ops
            .iter()
            .copied()
            .filter(|op| model.relevant(op))
            .collect();
        match linear::check(&model, &relevant, budget) {
            Linearizable::Yes => {}
            Linearizable::Unknown => unknown.push(*key),
            Linearizable::No => anomalies.push(Anomaly {
                kind: "nonlinearizable".into(),
                explanation: format!(
                    "key {key}: no order of its {} operations respects both real time \
                     and a register; the operations below (a shortest failing prefix \
                     without the reads that do not matter) already have none",
                    relevant.len()
                ),
                ops: linear::shrink(&model, &relevant, budget),
            }),
        }
    }
    let mut summary = format!(
        "{} keys, {} operations: {} not linearizable",
        keys.len(),
        keys.values().map(Vec::len).sum::<usize>(),
        anomalies.len()
    );
    if !unknown.is_empty() {
        summary.push_str(&format!(
            "; search budget spent on {} keys ({})",
            unknown.len(),
            unknown.join(", ")
        ));
    }
    Verdict::from_anomalies(
        "linearizable-register",
        summary,
        anomalies,
        !unknown.is_empty(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Validity;
    use crate::history::build::*;

    fn verdict(ops: &[Op]) -> Verdict {
        check(ops, DEFAULT_BUDGET)
    }

    #[test]
    fn sequential_and_concurrent_histories_pass() {
        let ops = vec![
            write(0, 0, 10, 1),
            read(1, 2, 4, Some(1)),
            // Concurrent with the write: may see before or after.
            read(2, 1, 3, None),
            cas(0, 11, 12, 1, 2, true),
            cas(1, 13, 14, 1, 3, false),
            read(2, 15, 16, Some(2)),
        ];
        assert_eq!(verdict(&ops).validity, Validity::Valid);
    }

    #[test]
    fn stale_read_is_caught_and_shrunk() {
        let ops = vec![
            write(0, 0, 1, 1),
            read(1, 2, 3, Some(1)),
            write(0, 4, 5, 2),
            read(1, 5, 6, Some(2)),
            read(2, 6, 7, Some(1)), // stale: 2 was acknowledged before
            read(1, 8, 9, Some(2)),
        ];
        let v = verdict(&ops);
        assert_eq!(v.validity, Validity::Invalid);
        let shrunk = &v.anomalies[0].ops;
        // The later read is past the failure, the earlier ones do not matter.
        assert_eq!(shrunk.len(), 3, "{shrunk:?}");
        assert!(shrunk.contains(&ops[4]));
        assert!(!shrunk.contains(&ops[5]));
    }

    #[test]
    fn lost_write_is_caught() {
        // An acknowledged write that a later read does not see.
        let ops = vec![write(0, 0, 1, 1), write(1, 2, 3, 2), read(2, 4, 5, Some(1))];
        assert_eq!(verdict(&ops).validity, Validity::Invalid);
    }

    #[test]
    fn indeterminate_write_may_take_effect_late_or_never() {
        let late = vec![
            write_info(0, 0, 1, 7),
            read(1, 2, 3, None),
            read(1, 50, 51, Some(7)),
            read(1, 60, 61, Some(7)),
        ];
        assert_eq!(verdict(&late).validity, Validity::Valid);
        let never = vec![write_info(0, 0, 1, 7), read(1, 2, 3, None)];
        assert_eq!(verdict(&never).validity, Validity::Valid);
        // But it cannot take effect before it was invoked.
        let early = vec![read(1, 0, 1, Some(7)), write_info(0, 2, 3, 7)];
        assert_eq!(verdict(&early).validity, Validity::Invalid);
        // Nor flip back and forth: once seen, later reads cannot unsee it.
        let flip = vec![
            write(0, 0, 1, 1),
            write_info(0, 2, 3, 7),
            read(1, 4, 5, Some(7)),
            read(1, 6, 7, Some(1)),
        ];
        assert_eq!(verdict(&flip).validity, Validity::Invalid);
    }

    #[test]
    fn failed_compare_is_an_observation() {
        // The cas saw something other than 1, yet 1 was the only value.
        let ops = vec![write(0, 0, 1, 1), cas(1, 2, 3, 1, 2, false)];
        assert_eq!(verdict(&ops).validity, Validity::Invalid);
        // A duplicated cas: both cannot have swapped 1 -> 2.
        let twice = vec![
            write(0, 0, 1, 1),
            cas(1, 2, 3, 1, 2, true),
            cas(2, 4, 5, 1, 2, true),
        ];
        assert_eq!(verdict(&twice).validity, Validity::Invalid);
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut other = read(3, 2, 3, Some(9));
        if let Call::Read { key, .. } = &mut other.call {
            *key = "j".into();
        }
        let ops = vec![write(0, 0, 1, 1), read(1, 2, 3, Some(1)), other];
        let v = verdict(&ops);
        assert_eq!(v.validity, Validity::Invalid);
        assert!(v.anomalies[0].explanation.starts_with("key j"));
    }

    #[test]
    fn many_concurrent_operations_finish_within_budget() {
        // 8 clients, 400 operations, each write read back by its writer.
        let mut ops = Vec::new();
        let mut t = 0;
        for round in 0..50 {
            for p in 0..8u32 {
                let v = (round * 8 + p) as i64;
                ops.push(write(p, t + p as u64, t + 20 + p as u64, v));
            }
            t += 30;
            ops.push(read(9, t, t + 1, Some((round * 8 + 7) as i64)));
            t += 2;
        }
        assert_eq!(check(&ops, 5_000_000).validity, Validity::Valid);
    }
}
