//! The compactor, as kube-apiserver runs it (reference:
//! kubernetes-apiserver.md §2, from its etcd3/compact.go), for either store.
//!
//! Every interval (--etcd-compaction-interval) a round claims the key
//! `compact_rev_key` (at the root of the keyspace, outside --etcd-prefix):
//! Txn If(version(compact_rev_key) == t) Then(Put compact_rev_key = R)
//! Else(Range compact_rev_key), where t is the version this server saw last
//! and R the revision it recorded last round. The winner compacts to R, so
//! one to two intervals of history survive; losers adopt the key's version
//! and try again next round. A worked example, one server, interval 5 m:
//!
//! ```text
//! round  claim              header rev  compacts to  state after (t, R)
//! 0:00   v==0 -> put "0"    100         - (first)    (1, 100)
//! 0:05   v==1 -> put "100"  180         100          (2, 180)
//! 0:10   v==2 -> put "180"  260         180          (3, 260)
//! ```
//!
//! A second server starting at 0:07 with t = 0 loses (the version is 2),
//! adopts t = 2 and R = its header revision, and from then on the two race
//! for each round; whoever wins compacts to the revision it recorded.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use super::{Store, StoreError};

/// kube-apiserver's key, outside any --etcd-prefix, shared by every API
/// server on the store.
pub const COMPACT_REV_KEY: &str = "compact_rev_key";

/// What this server carries between rounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compactor {
    /// The version of compact_rev_key this server expects.
    pub version: i64,
    /// The revision recorded last round, compacted to on the next win.
    pub revision: i64,
}

impl Compactor {
    /// One round: claim, and compact if this server won and had recorded a
    /// revision. Returns the revision compacted to, if any. On an error the
    /// state moves as kube-apiserver's does: not at all if the claim failed,
    /// to the claim's outcome if the compaction after it did.
    pub async fn round(&mut self, store: &dyn Store) -> Result<Option<i64>, StoreError> {
        let claim = store
            .claim_compaction(COMPACT_REV_KEY.as_bytes(), self.version, self.revision)
            .await?;
        let previous = self.revision;
        *self = Compactor {
            version: claim.version,
            revision: claim.revision,
        };
        if !claim.won || previous == 0 {
            // Lost the round, or the first round: it only records.
            return Ok(None);
        }
        store.compact(previous).await?;
        Ok(Some(previous))
    }
}

/// Runs a round every `interval` until the task is dropped.
pub async fn run(store: Arc<dyn Store>, interval: Duration) {
    let mut compactor = Compactor::default();
    loop {
        tokio::time::sleep(interval).await;
        match compactor.round(store.as_ref()).await {
            Ok(Some(rev)) => debug!(revision = rev, "compacted the store"),
            Ok(None) => {}
            Err(e) => warn!("compaction: {e}"),
        }
    }
}
