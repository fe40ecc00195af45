//! Strict serializability of list-append transactions, checked as Elle does
//! (Kingsbury and Alvaro, "Elle: inferring isolation anomalies from
//! experimental observations", 2020).
//!
//! Each key holds a list; transactions append unique values and read whole
//! lists. Because every value is appended once, a read of `[1, 2, 3]` tells
//! exactly which transactions wrote before it, and the longest read of a key
//! gives that key's version order. From it come the dependencies:
//!
//! - `ww`: the appender of `v_i` precedes the appender of `v_i+1`;
//! - `wr`: the appender of a read's last element precedes the reader;
//! - `rw`: a reader of `[v_1..v_i]` precedes the appender of `v_i+1`;
//! - `realtime`: a transaction that completed before another was invoked
//!   precedes it (strict serializability).
//!
//! A cycle means no serial order exists. Example: T1 appends 1 to x and
//! reads y = []; T2 appends 1 to y and reads x = []. T1 -rw(y)-> T2 and
//! T2 -rw(x)-> T1: a G2 cycle (write skew). Cycles are named by their edges,
//! searching the least permissive edge sets first: only ww (G0), ww+wr (G1c),
//! one rw (G-single), more (G2), `-realtime` when real-time order is needed.
//!
//! Also found directly: reads that are not prefixes of each other
//! (`incompatible-order`), an element twice in a list (`duplicate-elements`),
//! values of failed transactions that were read (`G1a`), a read that
//! contradicts its transaction's own earlier reads and appends of the key
//! (`internal`), and an
//! acknowledged append missing from the last read of its key, invoked after
//! the append's transaction completed (`lost-append`: e.g. a transaction
//! applied in part; its value is in no read, so no dependency names it).

use std::collections::{HashMap, VecDeque};

use super::{Anomaly, Verdict};
use crate::history::{Call, Mop, Op, Outcome};

/// A dependency between two transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Dep {
    Ww,
    Wr,
    Rw,
    Realtime,
}

impl Dep {
    fn name(self) -> &'static str {
        match self {
            Dep::Ww => "ww",
            Dep::Wr => "wr",
            Dep::Rw => "rw",
            Dep::Realtime => "realtime",
        }
    }
}

struct Edge {
    to: usize,
    dep: Dep,
    /// The key the dependency is about (empty for real time).
    key: String,
}

pub fn check(ops: &[Op]) -> Verdict {
    let txns: Vec<(&Op, &Vec<Mop>)> = ops
        .iter()
        .filter_map(|op| match &op.call {
            Call::Txn { mops } => Some((op, mops)),
            _ => None,
        })
        .collect();
    let mut anomalies = Vec::new();
    // (key, value) -> the transaction that appended it.
    let mut writer: HashMap<(&str, i64), usize> = HashMap::new();
    let mut failed: HashMap<(&str, i64), usize> = HashMap::new();
    for (i, (op, mops)) in txns.iter().enumerate() {
        for mop in mops.iter() {
            if let Mop::Append { key, value } = mop {
                let map = if op.outcome == Outcome::Fail {
                    &mut failed
                } else {
                    &mut writer
                };
                map.insert((key.as_str(), *value), i);
            }
        }
    }
    // External reads: a key's first read in a transaction, before any of
    // its own appends to the key. Later reads are held to what the
    // transaction already knows (`internal`).
    let mut reads: Vec<(usize, &str, &Vec<i64>)> = Vec::new();
    for (i, (op, mops)) in txns.iter().enumerate() {
        if op.outcome != Outcome::Ok {
            continue;
        }
        if let Some(explanation) = internal_reads(mops, |key, list| reads.push((i, key, list))) {
            anomalies.push(Anomaly {
                kind: "internal".into(),
                explanation,
                ops: vec![(*op).clone()],
            });
        }
    }
    // The last read of each key (by invocation): every append acknowledged
    // before it was invoked must be in it.
    let mut last_read: HashMap<&str, (usize, &Vec<i64>)> = HashMap::new();
    for &(i, key, list) in &reads {
        let last = last_read.entry(key).or_insert((i, list));
        if txns[i].0.invoke > txns[last.0].0.invoke {
            *last = (i, list);
        }
    }
    for (&(key, value), &w) in &writer {
        let (appender, _) = txns[w];
        let Some(&(r, list)) = last_read.get(key) else {
            continue;
        };
        if appender.outcome == Outcome::Ok
            && appender.complete < txns[r].0.invoke
            && !list.contains(&value)
        {
            anomalies.push(Anomaly {
                kind: "lost-append".into(),
                explanation: format!(
                    "{value} appended to {key} (acknowledged) is missing from {key} = {list:?}, \
                     read after"
                ),
                ops: vec![appender.clone(), txns[r].0.clone()],
            });
        }
    }
    // Version order per key: the longest read, which all others must prefix.
    let mut order: HashMap<&str, &Vec<i64>> = HashMap::new();
    for &(i, key, list) in &reads {
        let mut sorted = list.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            anomalies.push(Anomaly {
                kind: "duplicate-elements".into(),
                explanation: format!("{key} = {list:?} holds an element twice"),
                ops: vec![txns[i].0.clone()],
            });
        }
        for v in list {
            if let Some(&f) = failed.get(&(key, *v)) {
                anomalies.push(Anomaly {
                    kind: "G1a".into(),
                    explanation: format!("read {v} in {key}, appended by a failed transaction"),
                    ops: vec![txns[f].0.clone(), txns[i].0.clone()],
                });
            }
        }
        let longest = order.entry(key).or_insert(list);
        if list.len() > longest.len() {
            *longest = list;
        }
    }
    let mut incompatible = false;
    for &(i, key, list) in &reads {
        let longest = order[key];
        if !longest.starts_with(list) {
            incompatible = true;
            let other = reads
                .iter()
                .find(|(_, k, l)| *k == key && std::ptr::eq(*l, longest))
                .map(|(j, _, _)| txns[*j].0.clone());
            anomalies.push(Anomaly {
                kind: "incompatible-order".into(),
                explanation: format!("{key} read as {list:?} and as {longest:?}"),
                ops: std::iter::once(txns[i].0.clone()).chain(other).collect(),
            });
        }
    }
    // The dependency graph over ok and info transactions.
    let mut graph: Vec<Vec<Edge>> = (0..txns.len()).map(|_| Vec::new()).collect();
    let mut add = |from: usize, to: usize, dep: Dep, key: &str| {
        if from != to {
            graph[from].push(Edge {
                to,
                dep,
                key: key.to_owned(),
            });
        }
    };
    for (key, versions) in &order {
        let appenders: Vec<Option<usize>> = versions
            .iter()
            .map(|v| writer.get(&(*key, *v)).copied())
            .collect();
        for pair in appenders.windows(2) {
            if let [Some(a), Some(b)] = pair {
                add(*a, *b, Dep::Ww, key);
            }
        }
    }
    for &(reader, key, list) in &reads {
        if let Some(&w) = list.last().and_then(|v| writer.get(&(key, *v))) {
            add(w, reader, Dep::Wr, key);
        }
        let versions = order[key];
        if versions.starts_with(list) {
            if let Some(&next) = versions
                .get(list.len())
                .and_then(|v| writer.get(&(key, *v)))
            {
                add(reader, next, Dep::Rw, key);
            }
        }
    }
    for (from, to) in realtime_edges(&txns) {
        add(from, to, Dep::Realtime, "");
    }
    let mut cycles = 0;
    for component in strongly_connected(&graph) {
        if component.len() < 2 {
            continue;
        }
        cycles += 1;
        let allowed: [&[Dep]; 4] = [
            &[Dep::Ww],
            &[Dep::Ww, Dep::Wr],
            &[Dep::Ww, Dep::Wr, Dep::Rw],
            &[Dep::Ww, Dep::Wr, Dep::Rw, Dep::Realtime],
        ];
        let cycle = allowed
            .iter()
            .find_map(|deps| shortest_cycle(&graph, &component, deps));
        if let Some(cycle) = cycle {
            anomalies.push(describe(&txns, &cycle));
        }
    }
    let summary = format!(
        "{} transactions, {} keys: {} cycles{}",
        txns.len(),
        order.len(),
        cycles,
        if incompatible {
            ", incompatible version orders"
        } else {
            ""
        }
    );
    Verdict::from_anomalies("elle-append", summary, anomalies, false)
}

/// Real-time order of the ok transactions, transitively reduced: each
/// transaction gets edges from the "frontier" (the completed transactions
/// not yet followed by another completed one) as it was at its invocation.
fn realtime_edges(txns: &[(&Op, &Vec<Mop>)]) -> Vec<(usize, usize)> {
    // Invocations sort before completions at the same instant: concurrent.
    let mut events: Vec<(u64, bool, usize)> = Vec::new();
    for (i, (op, _)) in txns.iter().enumerate() {
        if op.outcome == Outcome::Ok {
            events.push((op.invoke, false, i));
            events.push((op.complete, true, i));
        }
    }
    events.sort_unstable();
    let mut frontier: Vec<usize> = Vec::new();
    let mut preds: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut edges = Vec::new();
    for (_, completes, i) in events {
        if completes {
            let before = preds.remove(&i).unwrap_or_default();
            frontier.retain(|f| !before.contains(f));
            frontier.push(i);
        } else {
            edges.extend(frontier.iter().map(|&f| (f, i)));
            preds.insert(i, frontier.clone());
        }
    }
    edges
}

/// Tarjan's strongly connected components, iteratively.
fn strongly_connected(graph: &[Vec<Edge>]) -> Vec<Vec<usize>> {
    let n = graph.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut components = Vec::new();
    let mut next = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, next edge to look at)
        let mut work = vec![(root, 0usize)];
        while let Some(&mut (v, ref mut e)) = work.last_mut() {
            if *e == 0 {
                index[v] = next;
                low[v] = next;
                next += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(edge) = graph[v].get(*e) {
                *e += 1;
                let w = edge.to;
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                components.push(component);
            }
        }
    }
    components
}

/// The shortest cycle through the component's nodes using only `deps`, as
/// the list of edges (from, dep, key).
fn shortest_cycle(
    graph: &[Vec<Edge>],
    component: &[usize],
    deps: &[Dep],
) -> Option<Vec<(usize, Dep, String)>> {
    let inside: std::collections::HashSet<usize> = component.iter().copied().collect();
    let mut best: Option<Vec<(usize, Dep, String)>> = None;
    for &start in component {
        // BFS from start back to start.
        let mut came: HashMap<usize, (usize, Dep, &str)> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        let mut found = false;
        while let Some(v) = queue.pop_front() {
            for edge in &graph[v] {
                if !deps.contains(&edge.dep) || !inside.contains(&edge.to) {
                    continue;
                }
                if edge.to == start {
                    came.insert(start, (v, edge.dep, &edge.key));
                    found = true;
                    break;
                }
                if let std::collections::hash_map::Entry::Vacant(slot) = came.entry(edge.to) {
                    slot.insert((v, edge.dep, &edge.key));
                    queue.push_back(edge.to);
                }
            }
            if found {
                break;
            }
        }
        if !found {
            continue;
        }
        let mut cycle = Vec::new();
        let mut at = start;
        loop {
            let (from, dep, key) = came[&at];
            cycle.push((from, dep, key.to_owned()));
            at = from;
            if at == start {
                break;
            }
        }
        cycle.reverse();
        if best.as_ref().is_none_or(|b| cycle.len() < b.len()) {
            best = Some(cycle);
        }
        // A component's first cycle is short enough for a report.
        if best.as_ref().is_some_and(|b| b.len() <= 3) {
            break;
        }
    }
    best
}

fn describe(txns: &[(&Op, &Vec<Mop>)], cycle: &[(usize, Dep, String)]) -> Anomaly {
    let rw = cycle.iter().filter(|(_, d, _)| *d == Dep::Rw).count();
    let realtime = cycle.iter().any(|(_, d, _)| *d == Dep::Realtime);
    let wr = cycle.iter().any(|(_, d, _)| *d == Dep::Wr);
    let base = match rw {
        0 if wr => "G1c",
        0 if realtime => "cycle",
        0 => "G0",
        1 => "G-single",
        _ => "G2",
    };
    let kind = if realtime {
        format!("{base}-realtime")
    } else {
        base.to_owned()
    };
    let steps: Vec<String> = cycle
        .iter()
        .enumerate()
        .map(|(n, (from, dep, key))| {
            let to = cycle[(n + 1) % cycle.len()].0;
            let on = if key.is_empty() {
                String::new()
            } else {
                format!("({key})")
            };
            format!("T{from} -{}{on}-> T{to}", dep.name())
        })
        .collect();
    Anomaly {
        kind,
        explanation: format!("dependency cycle: {}", steps.join(", ")),
        ops: cycle.iter().map(|(t, _, _)| txns[*t].0.clone()).collect(),
    }
}

/// What a transaction knows of a key from its own micro-operations.
enum Known {
    /// It read the key as this (with its appends since added).
    List(Vec<i64>),
    /// It has not read the key, but appended these to it.
    Appended(Vec<i64>),
}

/// Walks one committed transaction: hands each external read to `external`,
/// and explains the first read that contradicts the transaction's own
/// earlier reads and appends (Elle's internal consistency): after reading
/// `l` and appending `v`, the key reads `l + [v]`; after appending without
/// reading, it reads a list ending with those appends.
fn internal_reads<'a>(
    mops: &'a [Mop],
    mut external: impl FnMut(&'a str, &'a Vec<i64>),
) -> Option<String> {
    let mut known: HashMap<&str, Known> = HashMap::new();
    let mut contradiction = None;
    for mop in mops {
        match mop {
            Mop::Append { key, value } => match known.get_mut(key.as_str()) {
                Some(Known::List(list) | Known::Appended(list)) => list.push(*value),
                None => {
                    known.insert(key, Known::Appended(vec![*value]));
                }
            },
            Mop::Read {
                key,
                value: Some(list),
            } => {
                let expected = match known.get(key.as_str()) {
                    None => {
                        external(key, list);
                        None
                    }
                    Some(Known::List(expected)) => {
                        (list != expected).then(|| format!("{expected:?}"))
                    }
                    Some(Known::Appended(own)) => {
                        (!list.ends_with(own)).then(|| format!("a list ending in {own:?}"))
                    }
                };
                if let (Some(expected), None) = (expected, &contradiction) {
                    contradiction = Some(format!(
                        "read {key} = {list:?} where the transaction's own reads and appends \
                         give {expected}"
                    ));
                }
                known.insert(key, Known::List(list.clone()));
            }
            Mop::Read { value: None, .. } => {}
        }
    }
    contradiction
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Validity;
    use crate::history::build::op;

    fn append(key: &str, value: i64) -> Mop {
        Mop::Append {
            key: key.into(),
            value,
        }
    }
    fn r(key: &str, list: &[i64]) -> Mop {
        Mop::Read {
            key: key.into(),
            value: Some(list.to_vec()),
        }
    }
    fn txn(p: u32, a: u64, b: u64, mops: Vec<Mop>) -> Op {
        op(p, a, b, Outcome::Ok, Call::Txn { mops })
    }
    fn kinds(ops: &[Op]) -> Vec<String> {
        check(ops).anomalies.into_iter().map(|a| a.kind).collect()
    }

    #[test]
    fn serial_history_is_valid() {
        let ops = vec![
            txn(0, 0, 1, vec![append("x", 1), r("y", &[])]),
            txn(1, 2, 3, vec![r("x", &[1]), append("y", 1)]),
            txn(0, 4, 5, vec![append("x", 2), r("x", &[1, 2])]),
            txn(1, 6, 7, vec![r("x", &[1, 2]), r("y", &[1])]),
        ];
        let v = check(&ops);
        assert_eq!(v.validity, Validity::Valid, "{v:?}");
    }

    #[test]
    fn write_skew_is_g2() {
        // Concurrent, each reads the other's key empty.
        let ops = vec![
            txn(0, 0, 10, vec![append("x", 1), r("y", &[])]),
            txn(1, 0, 10, vec![append("y", 1), r("x", &[])]),
            txn(2, 20, 21, vec![r("x", &[1]), r("y", &[1])]),
        ];
        assert_eq!(kinds(&ops), ["G2"]);
    }

    #[test]
    fn circular_information_flow_is_g1c() {
        // Each sees the other's append: wr both ways.
        let ops = vec![
            txn(0, 0, 10, vec![append("x", 1), r("y", &[1])]),
            txn(1, 0, 10, vec![append("y", 1), r("x", &[1])]),
        ];
        assert_eq!(kinds(&ops), ["G1c"]);
    }

    #[test]
    fn write_cycle_is_g0() {
        // x says T0 then T1; y says T1 then T0.
        let ops = vec![
            txn(0, 0, 10, vec![append("x", 1), append("y", 2)]),
            txn(1, 0, 10, vec![append("x", 2), append("y", 1)]),
            txn(2, 20, 21, vec![r("x", &[1, 2]), r("y", &[1, 2])]),
        ];
        assert_eq!(kinds(&ops), ["G0"]);
    }

    #[test]
    fn stale_read_is_a_realtime_cycle() {
        // T1 completes its append before T2 starts, T2 does not see it.
        let ops = vec![
            txn(0, 0, 1, vec![append("x", 1)]),
            txn(1, 2, 3, vec![r("x", &[])]),
            txn(2, 4, 5, vec![r("x", &[1])]),
        ];
        assert_eq!(kinds(&ops), ["G-single-realtime"]);
    }

    #[test]
    fn direct_anomalies_are_caught() {
        let aborted = op(
            3,
            0,
            1,
            Outcome::Fail,
            Call::Txn {
                mops: vec![append("x", 9)],
            },
        );
        let ops = vec![
            aborted,
            txn(0, 2, 3, vec![r("x", &[9])]),
            txn(1, 4, 5, vec![append("y", 1), r("y", &[])]),
            txn(2, 6, 7, vec![r("z", &[1, 1])]),
            txn(0, 8, 9, vec![r("w", &[1, 2])]),
            txn(1, 8, 9, vec![r("w", &[2])]),
        ];
        let mut found = kinds(&ops);
        found.sort();
        assert_eq!(
            found,
            [
                "G1a",
                "duplicate-elements",
                "incompatible-order",
                "internal"
            ]
        );
    }

    #[test]
    fn a_transaction_must_read_its_own_reads_and_appends_back() {
        let valid = vec![
            txn(0, 0, 1, vec![append("x", 1), r("x", &[1])]),
            txn(1, 2, 3, vec![r("x", &[1]), append("x", 2), r("x", &[1, 2])]),
            txn(2, 4, 5, vec![r("x", &[1, 2]), r("x", &[1, 2])]),
        ];
        assert_eq!(check(&valid).validity, Validity::Valid);
        for broken in [
            // Its own append missing, with and without an earlier read.
            vec![r("x", &[1]), append("x", 2), r("x", &[1])],
            vec![append("x", 2), r("x", &[1])],
            // The list it read changed under it.
            vec![r("x", &[1]), append("x", 2), r("x", &[2])],
            vec![r("x", &[1]), r("x", &[1, 3])],
        ] {
            let ops = vec![
                txn(0, 0, 1, vec![append("x", 1)]),
                txn(1, 2, 3, broken.clone()),
            ];
            assert!(
                kinds(&ops).contains(&"internal".to_string()),
                "{broken:?}: {:?}",
                kinds(&ops)
            );
        }
    }

    #[test]
    fn an_acknowledged_append_missing_from_a_later_read_is_lost() {
        // T0 appends to x and y; y's append never took effect.
        let ops = vec![
            txn(0, 0, 1, vec![append("x", 1), append("y", 2)]),
            txn(1, 2, 3, vec![r("x", &[1]), r("y", &[])]),
        ];
        assert_eq!(kinds(&ops), ["lost-append"]);
        // Concurrent with the append, the read may come first.
        let ops = vec![
            txn(0, 0, 3, vec![append("y", 2)]),
            txn(1, 2, 4, vec![r("y", &[])]),
        ];
        assert_eq!(check(&ops).validity, Validity::Valid);
    }

    #[test]
    fn indeterminate_appends_count_when_read() {
        let maybe = op(
            3,
            0,
            1,
            Outcome::Info,
            Call::Txn {
                mops: vec![append("x", 1), r("y", &[])],
            },
        );
        let ops = vec![
            maybe,
            txn(1, 0, 10, vec![append("y", 1), r("x", &[1])]),
            txn(2, 20, 21, vec![r("y", &[1])]),
        ];
        // T1 read T0's append; T0 did not see T1's: a valid order T0, T1.
        assert_eq!(check(&ops).validity, Validity::Valid);
    }
}
