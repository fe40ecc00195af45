//! Log purges held back until the state machine is durable past them.
//!
//! openraft purges the log up to a snapshot's last entry once it has the
//! snapshot. A follower that installs one from its leader is told to purge
//! while the install is still running (openraft 0.9 pushes `PurgeLog` right
//! behind the state machine's install command and runs it without waiting for
//! it). oxetcd's state machine is the store itself, durable at its last flush:
//! a power cut before the install's flush leaves the old store beside a log
//! already purged past it, and the member cannot start (it must re-apply
//! entries that are gone: "Failed to get log entries, expected index: [0,
//! 64)", found by the Jepsen power-cut test).
//!
//! So the log store purges only up to the store's durable point, which the
//! state machine reports after each flush that moves it (start-up, a snapshot
//! build, a snapshot install). A purge past it is remembered and runs when the
//! durable point reaches it, before the state machine's report returns: after
//! an install, that is before the follower answers its leader, so before any
//! entry that follows the snapshot is appended. Until then openraft reads no
//! entry below its purge point, and the entries left in the log are only
//! re-applied (harmlessly) if the member restarts first.

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::types::{LogId, Payload};
use crate::wal::{Wal, WalError};

/// Where the log may be purged to: shared by the log store, which purges, and
/// the state machine, which reports its durable point.
pub struct PurgeGate<P: Payload> {
    wal: Wal<P>,
    /// Held across the WAL's purge, so that purges reach it in order.
    state: Mutex<GateState>,
}

struct GateState {
    /// The last log index the state machine holds durably; `u64::MAX` for a
    /// state machine durable at every apply.
    durable: Option<u64>,
    /// The furthest purge asked for past `durable`, not done yet.
    pending: Option<LogId>,
}

impl<P: Payload> std::fmt::Debug for PurgeGate<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurgeGate").finish_non_exhaustive()
    }
}

impl<P: Payload> PurgeGate<P> {
    /// A gate for `wal` whose state machine holds the entries up to `durable`
    /// durably now (`None`: none).
    pub fn new(wal: Wal<P>, durable: Option<LogId>) -> Arc<Self> {
        Arc::new(PurgeGate {
            wal,
            state: Mutex::new(GateState {
                durable: durable.map(|d| d.index),
                pending: None,
            }),
        })
    }

    /// A gate that never holds a purge back: for a state machine that is
    /// durable at every apply (openraft's storage test suite).
    pub fn unchecked(wal: Wal<P>) -> Arc<Self> {
        Arc::new(PurgeGate {
            wal,
            state: Mutex::new(GateState {
                durable: Some(u64::MAX),
                pending: None,
            }),
        })
    }

    /// The WAL it purges.
    pub fn wal(&self) -> &Wal<P> {
        &self.wal
    }

    /// Purges the log up to `upto` if the state machine holds it durably;
    /// otherwise remembers it for [`PurgeGate::durable_at`].
    pub(crate) async fn purge(&self, upto: LogId) -> Result<(), WalError> {
        let mut state = self.state.lock().await;
        if state.durable.is_some_and(|d| upto.index <= d) {
            return self.wal.purge(upto).await;
        }
        if state.pending.is_none_or(|p| p.index < upto.index) {
            state.pending = Some(upto);
        }
        Ok(())
    }

    /// The state machine holds the entries up to `applied` durably: runs the
    /// purge waiting for that, and returns once it is durable.
    pub async fn durable_at(&self, applied: Option<LogId>) -> Result<(), WalError> {
        let Some(applied) = applied else {
            return Ok(());
        };
        let mut state = self.state.lock().await;
        state.durable = state.durable.max(Some(applied.index));
        match state.pending {
            Some(upto) if upto.index <= applied.index => {
                state.pending = None;
                self.wal.purge(upto).await
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::types::{Entry, Request};
    use crate::wal::WalOptions;

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    async fn wal_with(dir: &std::path::Path, last: u64) -> Wal<Request> {
        let wal = Wal::open(dir, WalOptions::default()).unwrap();
        let entries = (1..=last).map(|index| Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(Request::from(b"put".to_vec())),
        });
        wal.append(entries).unwrap().await.unwrap();
        wal
    }

    fn purged(wal: &Wal<Request>) -> Option<u64> {
        wal.log_state().0.map(|p| p.index)
    }

    #[tokio::test]
    async fn a_purge_past_the_durable_point_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let wal = wal_with(dir.path(), 10).await;
        let gate = PurgeGate::new(wal.clone(), Some(log_id(3)));

        gate.purge(log_id(2)).await.unwrap();
        assert_eq!(purged(&wal), Some(2), "below the durable point: at once");

        gate.purge(log_id(8)).await.unwrap();
        assert_eq!(purged(&wal), Some(2), "past it: held back");
        assert_eq!(wal.entries(3..=10).unwrap().len(), 8);

        gate.durable_at(Some(log_id(6))).await.unwrap();
        assert_eq!(purged(&wal), Some(2), "still short of the purge");

        gate.durable_at(Some(log_id(9))).await.unwrap();
        assert_eq!(purged(&wal), Some(8), "run once the store is durable");
        drop((gate, wal));
        let reopened: Wal<Request> = Wal::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(purged(&reopened), Some(8), "and durable itself");
    }

    #[tokio::test]
    async fn a_state_machine_with_nothing_durable_holds_back_every_purge() {
        let dir = tempfile::tempdir().unwrap();
        let wal = wal_with(dir.path(), 5).await;
        let gate = PurgeGate::new(wal.clone(), None);
        gate.purge(log_id(1)).await.unwrap();
        gate.durable_at(None).await.unwrap();
        assert_eq!(purged(&wal), None);
        gate.durable_at(Some(log_id(1))).await.unwrap();
        assert_eq!(purged(&wal), Some(1));
    }

    #[tokio::test]
    async fn an_unchecked_gate_purges_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let wal = wal_with(dir.path(), 5).await;
        let gate = PurgeGate::unchecked(wal.clone());
        gate.purge(log_id(4)).await.unwrap();
        assert_eq!(purged(&wal), Some(4));
    }
}
