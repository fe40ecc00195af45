//! Which mutation went to which node's watchers, and what they received:
//! the bookkeeping behind watch delivery latency and the count of events
//! missing at the end.
//!
//! A mutation is entered *before* its request is sent (its watch event may
//! arrive before its answer), with the send time and the pod's node; its
//! answer then marks it done or failed. A delete is also entered under the
//! pod's name, since its DELETED event carries the pod's last version, not
//! the delete's sequence number. Each watcher reports the sequence numbers
//! it receives; [`Ledger::tally`] compares, for every successful mutation,
//! the watchers of its node with those that got it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

struct Sent {
    at: Instant,
    node: usize,
    /// None while the request is in flight; then whether it succeeded.
    ok: Option<bool>,
    /// Watchers that received it.
    got: Vec<u32>,
}

#[derive(Default)]
struct Inner {
    sent: HashMap<u64, Sent>,
    /// First receipts so far, of any mutation.
    firsts: u64,
    /// pod name -> sequence number of its delete.
    deletes: HashMap<String, u64>,
}

/// The run's ledger (one lock: a few map operations per mutation and event).
#[derive(Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

/// What a watcher's event turned out to be.
#[derive(Debug, PartialEq)]
pub enum Receipt {
    /// Delivered for the first time to this watcher, this long after it was sent.
    First(Duration),
    /// This watcher had it already.
    Duplicate,
    /// Not a mutation of this run (or one whose request was not sent).
    Unknown,
}

/// The sums [`Ledger::tally`] gives.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Deliveries due: for each successful mutation, the watchers of its node.
    pub expected: u64,
    /// Of those, received.
    pub delivered: u64,
    /// Events received for mutations whose request failed (the server may
    /// have applied a request whose answer was lost).
    pub of_failed: u64,
}

impl Ledger {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enters mutation `seq` on a pod of `node`, sent now; `delete` names
    /// the pod a delete removes.
    pub fn send(&self, seq: u64, node: usize, delete: Option<&str>) {
        let mut inner = self.lock();
        inner.sent.insert(
            seq,
            Sent {
                at: Instant::now(),
                node,
                ok: None,
                got: Vec::new(),
            },
        );
        if let Some(name) = delete {
            inner.deletes.insert(name.to_owned(), seq);
        }
    }

    /// The answer of mutation `seq`.
    pub fn answered(&self, seq: u64, ok: bool) {
        if let Some(sent) = self.lock().sent.get_mut(&seq) {
            sent.ok = Some(ok);
        }
    }

    /// The delete of pod `name`, if this run sent one.
    pub fn delete_of(&self, name: &str) -> Option<u64> {
        self.lock().deletes.get(name).copied()
    }

    /// Watcher `watcher` received the event of mutation `seq`.
    pub fn received(&self, seq: u64, watcher: u32) -> Receipt {
        let mut inner = self.lock();
        let Some(sent) = inner.sent.get_mut(&seq) else {
            return Receipt::Unknown;
        };
        if sent.got.contains(&watcher) {
            return Receipt::Duplicate;
        }
        sent.got.push(watcher);
        let latency = sent.at.elapsed();
        inner.firsts += 1;
        Receipt::First(latency)
    }

    /// First receipts so far (cheap, for waiting on the last events).
    pub fn firsts(&self) -> u64 {
        self.lock().firsts
    }

    /// Sums up, with `watchers_of(node)` the watchers a node has.
    pub fn tally(&self, watchers_of: impl Fn(usize) -> u64) -> Tally {
        let inner = self.lock();
        let mut tally = Tally::default();
        for sent in inner.sent.values() {
            let got = sent.got.len() as u64;
            match sent.ok {
                Some(true) => {
                    let due = watchers_of(sent.node);
                    tally.expected += due;
                    tally.delivered += got.min(due);
                }
                _ => tally.of_failed += got,
            }
        }
        tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_are_counted_against_the_watchers_of_the_node() {
        let ledger = Ledger::default();
        ledger.send(1, 0, None);
        ledger.send(2, 1, Some("pod-a"));
        ledger.send(3, 1, None);
        assert!(matches!(ledger.received(1, 0), Receipt::First(_)));
        assert_eq!(ledger.received(1, 0), Receipt::Duplicate);
        assert_eq!(ledger.received(9, 0), Receipt::Unknown);
        assert_eq!(ledger.delete_of("pod-a"), Some(2));
        assert!(matches!(ledger.received(2, 1), Receipt::First(_)));
        assert!(matches!(ledger.received(3, 1), Receipt::First(_)));
        assert_eq!(ledger.firsts(), 3);
        ledger.answered(1, true);
        ledger.answered(2, true);
        ledger.answered(3, false);
        // Node 0 has two watchers, node 1 one.
        let tally = ledger.tally(|node| if node == 0 { 2 } else { 1 });
        assert_eq!(
            tally,
            Tally {
                expected: 3,
                delivered: 2,
                of_failed: 1
            }
        );
    }
}
