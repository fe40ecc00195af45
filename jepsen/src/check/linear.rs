//! Linearizability by the Wing-Gong-Lowe search (Lowe, "Testing for
//! linearizability", 2016), as Porcupine does it.
//!
//! Every operation becomes a call event at its invocation and a return
//! event at its completion, in one list sorted by time. The search walks the
//! list: at a call it tries to linearize that operation now (the model must
//! accept it in the current state), removing its call and return from the
//! list; at a return it has met an operation that completed without having
//! been linearized, so it backtracks to the last choice. The list empties
//! exactly when every operation has been placed in an order that respects
//! real time and the model.
//!
//! Worked example, register initially absent: `w(1) [0,10]`, `r→1 [2,4]`,
//! `r→absent [5,6]`. Events: call w, call r1, ret r1, call r2, ret r2, ret w.
//! The search places w (state 1), then r1 (reads 1: accepted), then r2 wants
//! absent in state 1: refused; the return of r2 comes next with r2 not
//! placed, so it backtracks. Without w first r1 cannot read 1, and r2 cannot
//! move before r1 (r1 returned before r2 was invoked): every branch ends the
//! same way, the stack empties, and the history is not linearizable.
//!
//! **Memoisation.** Reaching the same (set of linearized operations, model
//! state) twice cannot lead anywhere new, so such a step is skipped; this
//! makes the search polynomial in practice for registers.
//!
//! **Indeterminate operations** (`info`) may take effect at any time after
//! their invocation, or never: their return is placed at infinity, so the
//! search may linearize them anywhere after the call; placing one after every
//! completed operation is the same as it never happening.

use std::collections::HashSet;
use std::hash::Hash;

use crate::history::{Op, Outcome};

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash;
    fn init(&self) -> Self::State;
    /// The state after `op` in `state`, or `None` if `op` (with what it
    /// observed, for an `ok` operation) cannot happen in `state`. An `info`
    /// operation observed nothing and must always be accepted.
    fn step(&self, state: &Self::State, op: &Op) -> Option<Self::State>;
    /// Whether an operation must be checked at all: reads that failed or are
    /// indeterminate observed nothing, and failed writes did nothing.
    fn relevant(&self, op: &Op) -> bool;
    /// Whether `op` only observed the state (a read, a compare that did not
    /// hold): such operations can be dropped from a counter-example.
    fn observation(&self, op: &Op) -> bool;
}

/// The result of one search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linearizable {
    Yes,
    No,
    /// The step budget ran out.
    Unknown,
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// A node of the doubly linked event list; node 0 is the head.
#[derive(Clone, Copy)]
struct Node {
    op: usize,
    is_call: bool,
    /// The call's return node (unused on returns).
    ret: usize,
    prev: usize,
    next: usize,
}

struct Events {
    nodes: Vec<Node>,
}

impl Events {
    fn new(ops: &[&Op]) -> Events {
        // (time, returns after calls at the same instant: such operations
        // count as concurrent, the permissive reading, op index)
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            let ret = if op.outcome == Outcome::Info {
                u64::MAX
            } else {
                op.complete
            };
            events.push((op.invoke, false, i));
            events.push((ret, true, i));
        }
        events.sort();
        let mut nodes = vec![Node {
            op: NIL,
            is_call: false,
            ret: NIL,
            prev: NIL,
            next: NIL,
        }];
        let mut call_of = vec![NIL; ops.len()];
        for (n, &(_, is_return, op)) in events.iter().enumerate() {
            let index = n + 1;
            nodes.push(Node {
                op,
                is_call: !is_return,
                ret: NIL,
                prev: index - 1,
                next: if n + 1 < events.len() { index + 1 } else { NIL },
            });
            nodes[index - 1].next = index;
            if is_return {
                nodes[call_of[op]].ret = index;
            } else {
                call_of[op] = index;
            }
        }
        Events { nodes }
    }

    fn unlink(&mut self, i: usize) {
        let Node { prev, next, .. } = self.nodes[i];
        self.nodes[prev].next = next;
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }

    fn relink(&mut self, i: usize) {
        let Node { prev, next, .. } = self.nodes[i];
        self.nodes[prev].next = i;
        if next != NIL {
            self.nodes[next].prev = i;
        }
    }

    /// Takes a call and its return out of the list (the operation is placed).
    fn lift(&mut self, call: usize) {
        let ret = self.nodes[call].ret;
        self.unlink(call);
        self.unlink(ret);
    }

    /// Undoes [`Events::lift`]; links are restored in reverse order.
    fn unlift(&mut self, call: usize) {
        let ret = self.nodes[call].ret;
        self.relink(ret);
        self.relink(call);
    }
}

/// A set of operation indexes, hashable for the memo.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Whether `ops` (already filtered by [`Model::relevant`]) are
/// linearizable, giving up after `budget` search steps.
pub fn check<M: Model>(model: &M, ops: &[&Op], budget: u64) -> Linearizable {
    let mut events = Events::new(ops);
    let mut state = model.init();
    let mut placed = Bits::new(ops.len());
    let mut memo: HashSet<(Bits, M::State)> = HashSet::new();
    // The calls linearized so far, with the state before each.
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut entry = events.nodes[HEAD].next;
    let mut steps = 0u64;
    while events.nodes[HEAD].next != NIL {
        steps += 1;
        if steps > budget {
            return Linearizable::Unknown;
        }
        let node = events.nodes[entry];
        if node.is_call {
            if let Some(next) = model.step(&state, ops[node.op]) {
                let mut with = placed.clone();
                with.set(node.op);
                if memo.insert((with.clone(), next.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, next)));
                    placed = with;
                    events.lift(entry);
                    entry = events.nodes[HEAD].next;
                    continue;
                }
            }
            entry = node.next;
        } else {
            // This operation completed and was not placed before: undo the
            // last choice and try the next candidate after it.
            let Some((call, before)) = stack.pop() else {
                return Linearizable::No;
            };
            let op = events.nodes[call].op;
            placed.clear(op);
            state = before;
            events.unlift(call);
            entry = events.nodes[call].next;
        }
    }
    Linearizable::Yes
}

/// A smaller history that is still not linearizable: the shortest prefix by
/// completion time that fails (operations still running at its end become
/// indeterminate), then without every read whose removal keeps it failing.
/// Removing a read or turning an operation indeterminate only relaxes the
/// constraints, so the result fails only if the original did.
pub fn shrink<M: Model>(model: &M, ops: &[&Op], budget: u64) -> Vec<Op> {
    let fails = |ops: &[Op]| {
        let refs: Vec<&Op> = ops.iter().filter(|op| model.relevant(op)).collect();
        check(model, &refs, budget) == Linearizable::No
    };
    let mut ends: Vec<u64> = ops
        .iter()
        .filter(|op| op.outcome == Outcome::Ok)
        .map(|op| op.complete)
        .collect();
    ends.sort_unstable();
    ends.dedup();
    let prefix = |t: u64| -> Vec<Op> {
        ops.iter()
            .filter(|op| op.invoke <= t)
            .map(|&op| {
                let mut op = op.clone();
                if op.outcome == Outcome::Ok && op.complete > t {
                    op.outcome = Outcome::Info;
                }
                op
            })
            .collect()
    };
    // Failing is monotone in the prefix's end, so bisect.
    let (mut lo, mut hi) = (0usize, ends.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fails(&prefix(ends[mid])) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let mut kept = match ends.get(lo) {
        Some(&t) => prefix(t),
        None => ops.iter().map(|&op| op.clone()).collect(),
    };
    kept.retain(|op| model.relevant(op));
    let mut i = 0;
    while i < kept.len() {
        if model.observation(&kept[i]) {
            let removed = kept.remove(i);
            if fails(&kept) {
                continue;
            }
            kept.insert(i, removed);
        }
        i += 1;
    }
    kept
}
