//! Auto-compaction (--auto-compaction-mode, --auto-compaction-retention),
//! with etcd 3.4's semantics (its `etcdserver/api/v3compactor`): only the
//! leader compacts, and it compacts through the log exactly as a Compact
//! RPC does, so every member compacts at the same revision.
//!
//! - `revision` mode keeps the last N revisions: every 5 minutes, the leader
//!   compacts to `current revision - N` unless that is not above zero or is
//!   the revision it compacted to last time.
//! - `periodic` mode keeps a duration of history: every tenth of the
//!   retention (capped at 6 minutes, a tenth of an hour) it samples the
//!   current revision; once the first retention has passed, and every
//!   retention (at most every hour) after a success, it compacts to the
//!   revision sampled a retention ago.
//!
//! The decisions are plain state machines ([`RevisionPolicy`],
//! [`PeriodicPolicy`]) driven by the clock of [`run`], so that they are
//! tested without waiting for hours.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use openraft::metrics::RaftServerMetrics;
use openraft::ServerState;
use oxetcd_proto::etcdserverpb::CompactionRequest;
use oxetcd_storage::Store;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::command::Request;
use crate::error::EtcdError;
use crate::replication::Replication;

/// etcd's revInterval: how often revision mode looks.
pub const REVISION_CHECK_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// etcd's retryDivisor: periodic mode samples ten times per retention.
const RETRY_DIVISOR: u32 = 10;
const HOUR: Duration = Duration::from_secs(3600);

/// What --auto-compaction-mode and --auto-compaction-retention ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep this much history (etcd's periodic mode).
    Periodic(Duration),
    /// Keep this many revisions (etcd's revision mode).
    Revision(i64),
}

/// Revision mode's decision at each check.
#[derive(Debug)]
pub struct RevisionPolicy {
    retention: i64,
    /// The revision last compacted to (or found compacted already).
    prev: i64,
}

impl RevisionPolicy {
    pub fn new(retention: i64) -> Self {
        Self { retention, prev: 0 }
    }

    /// The revision to compact to now, at `current` revision.
    pub fn target(&self, current: i64) -> Option<i64> {
        let rev = current - self.retention;
        (rev > 0 && rev != self.prev).then_some(rev)
    }

    /// A compaction to `rev` succeeded (or `rev` was compacted already).
    pub fn compacted(&mut self, rev: i64) {
        self.prev = rev;
    }
}

/// Periodic mode's decision at each sample.
#[derive(Debug)]
pub struct PeriodicPolicy {
    period: Duration,
    /// Revisions sampled every retry interval, oldest first; the first is
    /// the revision about one period ago.
    revs: VecDeque<i64>,
    last_success: Instant,
    /// How long after a success the next compaction is due: the period
    /// before the first compaction, the compact interval after.
    base_interval: Duration,
}

impl PeriodicPolicy {
    pub fn new(period: Duration, now: Instant) -> Self {
        Self {
            period,
            revs: VecDeque::new(),
            last_success: now,
            base_interval: period,
        }
    }

    /// etcd: compact every period, but at least every hour.
    fn compact_interval(&self) -> Duration {
        self.period.min(HOUR)
    }

    /// How often a revision is sampled (and a compaction considered).
    pub fn retry_interval(&self) -> Duration {
        (self.compact_interval() / RETRY_DIVISOR).max(Duration::from_millis(1))
    }

    /// Samples kept: one period's worth, plus the current one.
    fn retentions(&self) -> usize {
        let per = self.retry_interval().as_nanos().max(1);
        usize::try_from(self.period.as_nanos() / per).unwrap_or(usize::MAX) + 1
    }

    /// Records the revision seen now (etcd samples before each wait).
    pub fn sample(&mut self, current: i64) {
        self.revs.push_back(current);
        while self.revs.len() > self.retentions() {
            self.revs.pop_front();
        }
    }

    /// After a wait: the revision to compact to now, if one is due.
    pub fn target(&mut self, now: Instant) -> Option<i64> {
        if now.duration_since(self.last_success) < self.base_interval {
            return None;
        }
        // The first compaction waits one whole period; later ones the
        // compact interval.
        self.base_interval = self.compact_interval();
        self.revs.front().copied()
    }

    pub fn compacted(&mut self, now: Instant) {
        self.last_success = now;
    }
}

pub(crate) type RoleWatch =
    tokio::sync::watch::Receiver<RaftServerMetrics<oxetcd_raft::NodeId, openraft::BasicNode>>;

pub(crate) fn leading(role: &RoleWatch) -> bool {
    role.borrow().state == ServerState::Leader
}

/// Runs auto-compaction for the life of Raft. `revision_check_interval`
/// replaces revision mode's 5 minutes; only tests set it (see
/// `ServerConfig::test_auto_compaction_interval`).
pub(crate) async fn run(
    policy: AutoCompaction,
    replication: Arc<Replication>,
    store: Arc<Store>,
    revision_check_interval: Option<Duration>,
) {
    let mut role = replication.subscribe_role();
    match policy {
        AutoCompaction::Revision(retention) => {
            let interval = revision_check_interval.unwrap_or(REVISION_CHECK_INTERVAL);
            let mut decide = RevisionPolicy::new(retention);
            loop {
                if !wait(&mut role, interval).await {
                    return;
                }
                if !leading(&role) {
                    continue;
                }
                let Some(rev) = decide.target(store.current_revision()) else {
                    continue;
                };
                info!(
                    revision = rev,
                    revision_compaction_retention = retention,
                    "starting auto revision compaction"
                );
                if compact(&replication, rev).await {
                    decide.compacted(rev);
                    info!(revision = rev, "completed auto revision compaction");
                } else {
                    warn!(retry_after = ?interval, "failed auto revision compaction");
                }
            }
        }
        AutoCompaction::Periodic(period) => {
            let mut decide = PeriodicPolicy::new(period, Instant::now());
            let interval = decide.retry_interval();
            loop {
                decide.sample(store.current_revision());
                if !wait(&mut role, interval).await {
                    return;
                }
                // etcd pauses the compactor on followers.
                if !leading(&role) {
                    continue;
                }
                let Some(rev) = decide.target(Instant::now()) else {
                    continue;
                };
                info!(revision = rev, compact_period = ?period, "starting auto periodic compaction");
                if compact(&replication, rev).await {
                    decide.compacted(Instant::now());
                    info!(revision = rev, "completed auto periodic compaction");
                } else {
                    warn!(retry_after = ?interval, "failed auto periodic compaction");
                }
            }
        }
    }
}

/// Sleeps `interval`; false once Raft has stopped.
pub(crate) async fn wait(role: &mut RoleWatch, interval: Duration) -> bool {
    let until = Instant::now() + interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return true,
            changed = role.changed() => if changed.is_err() { return false },
        }
    }
}

/// Compacts to `rev` through the log, as the Compact RPC does; true when it
/// is compacted (now or already, which etcd counts as a success).
async fn compact(replication: &Replication, rev: i64) -> bool {
    let request = Request::Compact(CompactionRequest {
        revision: rev,
        physical: false,
    });
    match replication.propose(request).await {
        Ok(_) | Err(EtcdError::Compacted) => true,
        Err(e) => {
            warn!(revision = rev, error = %e, "auto compaction failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_mode_keeps_the_last_n_revisions_and_skips_repeats() {
        let mut p = RevisionPolicy::new(10);
        assert_eq!(p.target(10), None, "nothing older than the last 10");
        assert_eq!(p.target(25), Some(15));
        p.compacted(15);
        assert_eq!(p.target(25), None, "15 is compacted already");
        assert_eq!(p.target(26), Some(16));
    }

    #[test]
    fn periodic_mode_compacts_to_the_revision_seen_a_retention_ago() {
        let start = Instant::now();
        let period = Duration::from_secs(600);
        let mut p = PeriodicPolicy::new(period, start);
        assert_eq!(p.retry_interval(), Duration::from_secs(60));
        // One sample a minute, revision 100 per minute.
        let mut now = start;
        let mut first = None;
        for minute in 1..=10 {
            p.sample(minute * 100);
            now += Duration::from_secs(60);
            let t = p.target(now);
            if minute < 10 {
                assert_eq!(t, None, "minute {minute}: before the first period");
            } else {
                first = t;
            }
        }
        // At 10 minutes: the revision seen 10 minutes before (the first sample).
        assert_eq!(first, Some(100));
        p.compacted(now);
        // The next one is due a compact interval (the period) later, at the
        // oldest of the 11 samples kept (as etcd's slice of revisions).
        for minute in 11..=20 {
            p.sample(minute * 100);
            now += Duration::from_secs(60);
            let t = p.target(now);
            if minute < 20 {
                assert_eq!(t, None, "minute {minute}");
            } else {
                assert_eq!(t, Some(1000));
            }
        }
    }

    #[test]
    fn periodic_mode_over_an_hour_compacts_hourly() {
        let start = Instant::now();
        let mut p = PeriodicPolicy::new(Duration::from_secs(5 * 3600), start);
        assert_eq!(p.retry_interval(), Duration::from_secs(360));
        assert_eq!(p.retentions(), 51);
        // The first compaction waits the whole 5 hours.
        p.sample(1);
        assert_eq!(p.target(start + Duration::from_secs(4 * 3600)), None);
        assert_eq!(p.target(start + Duration::from_secs(5 * 3600)), Some(1));
        p.compacted(start + Duration::from_secs(5 * 3600));
        assert_eq!(p.target(start + Duration::from_secs(6 * 3600 - 1)), None);
        assert_eq!(p.target(start + Duration::from_secs(6 * 3600)), Some(1));
    }
}
