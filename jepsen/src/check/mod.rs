//! Checkers: each reads a history and gives a [`Verdict`], with a small
//! counter-example for every anomaly it finds.
//!
//! - [`linear`]: linearizability by Wing-Gong-Lowe search over a [`linear::Model`],
//!   memoising (linearized set, state) as Porcupine and Knossos do.
//! - [`register`]: the register model (read, write, compare-and-set), checked per key.
//! - [`append`]: strict serializability of list-append transactions by cycles in
//!   their dependency graph, as Elle does.
//! - [`set`]: nothing acknowledged is missing from the final read.
//! - [`kubernetes`]: objects are linearizable with mod_revision as their
//!   version; lists agree with the history at their revision.
//! - [`lease`]: leased keys vanish only after expiry or revocation, and soon
//!   after the keep-alives stop.
//! - [`watch`]: every watcher sees the same events, in order, without gaps.

pub mod append;
pub mod cost;
pub mod kubernetes;
pub mod lease;
pub mod linear;
pub mod register;
pub mod set;
pub mod watch;

use serde::{Deserialize, Serialize};

use crate::history::Op;

/// Whether a history passed a checker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    Valid,
    Invalid,
    /// The checker gave up (search budget spent); neither proven nor refuted.
    Unknown,
}

/// One anomaly and the operations that show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// e.g. `nonlinearizable`, `lost`, `gap`, `G1c`.
    pub kind: String,
    pub explanation: String,
    /// A small counter-example: the operations that together show it.
    pub ops: Vec<Op>,
}

/// What one checker concluded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub checker: String,
    pub validity: Validity,
    pub summary: String,
    pub anomalies: Vec<Anomaly>,
    /// What the checker cost, for the checkers of the history
    /// ([`cost::measured`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<cost::CheckCost>,
}

impl Verdict {
    /// Valid unless there are anomalies; `unknown` wins over valid.
    pub fn from_anomalies(
        checker: &str,
        summary: String,
        anomalies: Vec<Anomaly>,
        unknown: bool,
    ) -> Verdict {
        let validity = if !anomalies.is_empty() {
            Validity::Invalid
        } else if unknown {
            Validity::Unknown
        } else {
            Validity::Valid
        };
        Verdict {
            checker: checker.to_owned(),
            validity,
            summary,
            anomalies,
            cost: None,
        }
    }
}
