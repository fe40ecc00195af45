//! The set checker: elements are added concurrently (each add is a put of a
//! key of its own), then read once at the end, after the faults have healed.
//! Every acknowledged add must be in the final read (`lost` otherwise);
//! nothing that was never attempted may be there (`unexpected`); a failed add
//! must be absent. Indeterminate adds may be either way, and are counted as
//! recovered when present.

use std::collections::{BTreeSet, HashMap};

use super::{Anomaly, Verdict};
use crate::history::{Call, Op, Outcome};

pub fn check(ops: &[Op]) -> Verdict {
    let mut adds: HashMap<i64, &Op> = HashMap::new();
    let mut final_read: Option<(&Op, BTreeSet<i64>)> = None;
    for op in ops {
        match &op.call {
            Call::Add { element } => {
                adds.insert(*element, op);
            }
            Call::ReadSet {
                elements: Some(elements),
            } if op.outcome == Outcome::Ok => {
                let later = final_read
                    .as_ref()
                    .is_none_or(|(r, _)| op.invoke > r.invoke);
                if later {
                    final_read = Some((op, elements.iter().copied().collect()));
                }
            }
            _ => {}
        }
    }
    let Some((read, seen)) = final_read else {
        return Verdict::from_anomalies("set", "no successful final read".into(), Vec::new(), true);
    };
    let mut anomalies = Vec::new();
    let (mut ok, mut recovered) = (0, 0);
    let mut lost: Vec<&Op> = Vec::new();
    let mut failed_present: Vec<&Op> = Vec::new();
    let mut by_element: Vec<(&i64, &&Op)> = adds.iter().collect();
    by_element.sort_by_key(|(e, _)| **e);
    for (element, add) in by_element {
        let present = seen.contains(element);
        match add.outcome {
            Outcome::Ok if present => ok += 1,
            Outcome::Ok => lost.push(add),
            Outcome::Fail if present => failed_present.push(add),
            Outcome::Info if present => recovered += 1,
            _ => {}
        }
    }
    let unexpected: Vec<i64> = seen
        .iter()
        .filter(|e| !adds.contains_key(e))
        .copied()
        .collect();
    let with_read = |ops: Vec<&Op>| -> Vec<Op> {
        let mut ops: Vec<Op> = ops.into_iter().cloned().collect();
        ops.push(read.clone());
        ops
    };
    if !lost.is_empty() {
        anomalies.push(Anomaly {
            kind: "lost".into(),
            explanation: format!(
                "{} acknowledged adds are missing from the final read",
                lost.len()
            ),
            ops: with_read(lost.iter().take(5).copied().collect()),
        });
    }
    if !failed_present.is_empty() {
        anomalies.push(Anomaly {
            kind: "failed-present".into(),
            explanation: format!(
                "{} adds that failed are in the final read",
                failed_present.len()
            ),
            ops: with_read(failed_present.iter().take(5).copied().collect()),
        });
    }
    if !unexpected.is_empty() {
        anomalies.push(Anomaly {
            kind: "unexpected".into(),
            explanation: format!("the final read has elements never added: {unexpected:?}"),
            ops: with_read(Vec::new()),
        });
    }
    let summary = format!(
        "{} adds: {ok} acknowledged and present, {recovered} indeterminate and present, \
         {} lost, {} unexpected",
        adds.len(),
        lost.len(),
        unexpected.len()
    );
    Verdict::from_anomalies("set", summary, anomalies, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Validity;
    use crate::history::build::op;

    fn add(element: i64, outcome: Outcome) -> Op {
        op(
            0,
            element as u64,
            element as u64 + 1,
            outcome,
            Call::Add { element },
        )
    }
    fn read_set(elements: &[i64]) -> Op {
        let elements = Some(elements.to_vec());
        op(1, 100, 101, Outcome::Ok, Call::ReadSet { elements })
    }

    #[test]
    fn all_acknowledged_present_is_valid() {
        let ops = vec![
            add(1, Outcome::Ok),
            add(2, Outcome::Info),
            add(3, Outcome::Info),
            add(4, Outcome::Fail),
            read_set(&[1, 2]),
        ];
        let v = check(&ops);
        assert_eq!(v.validity, Validity::Valid, "{v:?}");
        assert!(v.summary.contains("1 indeterminate and present"));
    }

    #[test]
    fn lost_add_is_caught() {
        let ops = vec![add(1, Outcome::Ok), add(2, Outcome::Ok), read_set(&[1])];
        let v = check(&ops);
        assert_eq!(v.validity, Validity::Invalid);
        assert_eq!(v.anomalies[0].kind, "lost");
        assert_eq!(v.anomalies[0].ops[0], ops[1]);
    }

    #[test]
    fn unexpected_and_failed_elements_are_caught() {
        let ops = vec![add(1, Outcome::Fail), read_set(&[1, 9])];
        let kinds: Vec<String> = check(&ops).anomalies.into_iter().map(|a| a.kind).collect();
        assert_eq!(kinds, ["failed-present", "unexpected"]);
    }

    #[test]
    fn no_final_read_is_unknown() {
        assert_eq!(check(&[add(1, Outcome::Ok)]).validity, Validity::Unknown);
    }
}
