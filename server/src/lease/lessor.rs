//! The lessor: every lease, the keys attached to it, and, on the leader only,
//! when each expires.
//!
//! Two kinds of callers, as in etcd's `lessor`:
//! - the applier (every member, in log order): grant, revoke, attach and
//!   detach keys, checkpoints. What it changes is the same on every member.
//! - the leader's own duties (not replicated): renew, time-to-live, and
//!   finding expired leases, whose revocation it then proposes through the
//!   log. Followers keep no expiry at all; a new leader gives every lease its
//!   full remaining TTL again plus an election timeout (`promote`), so a
//!   leader change extends leases and never shortens them.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use prost::Message;
use tokio::time::Instant;

use crate::error::EtcdError;

/// etcd's MaxLeaseTTL: larger TTLs are refused.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// etcd's expiredLeaseRetryInterval: an expired lease whose revocation was
/// proposed is offered again after this long if it is still there.
const EXPIRED_RETRY: Duration = Duration::from_secs(3);

/// What is stored of a lease (the keys are found from the key-values' own
/// lease field on recovery).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseRecord {
    #[prost(int64, tag = "1")]
    pub id: i64,
    /// The TTL granted, in seconds.
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    /// The remaining TTL at the last checkpoint; 0 = none.
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

#[derive(Debug)]
struct Lease {
    ttl: i64,
    remaining_ttl: i64,
    keys: BTreeSet<Bytes>,
    /// When it expires; `None` on followers (and on a leader not yet
    /// promoted): only the primary lessor expires leases.
    expiry: Option<Instant>,
    /// Expired, its revocation proposed: never renewed again by this
    /// leader, even while `expiry` holds the time to propose it again (the
    /// proposal may still commit after a renewal would have answered).
    revoking: bool,
}

impl Lease {
    /// What a newly promoted leader gives the lease: the checkpointed
    /// remaining TTL if there is one, else the full TTL.
    fn refreshed_ttl(&self) -> i64 {
        if self.remaining_ttl > 0 {
            self.remaining_ttl
        } else {
            self.ttl
        }
    }
}

#[derive(Debug, Default)]
struct Leases {
    by_id: HashMap<i64, Lease>,
    /// Which lease each leased key is attached to.
    key_lease: HashMap<Bytes, i64>,
    /// Expiry order, for the primary: (expiry, lease ID).
    queue: BTreeSet<(Instant, i64)>,
    primary: bool,
}

impl Leases {
    fn set_expiry(&mut self, id: i64, expiry: Option<Instant>) {
        let Some(lease) = self.by_id.get_mut(&id) else {
            return;
        };
        if let Some(old) = lease.expiry.take() {
            self.queue.remove(&(old, id));
        }
        if let Some(new) = expiry {
            self.queue.insert((new, id));
        }
        lease.expiry = expiry;
    }

    fn detach(&mut self, key: &Bytes) {
        if let Some(id) = self.key_lease.remove(key) {
            if let Some(lease) = self.by_id.get_mut(&id) {
                lease.keys.remove(key);
            }
        }
    }

    fn attach(&mut self, key: Bytes, id: i64) {
        self.detach(&key);
        if let Some(lease) = self.by_id.get_mut(&id) {
            // Kept as long as the lease: a copy, so that the request buffer
            // the key is a slice of is not kept with it.
            let key = Bytes::copy_from_slice(&key);
            lease.keys.insert(key.clone());
            self.key_lease.insert(key, id);
        }
    }
}

/// A lease's state for LeaseTimeToLive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeToLive {
    /// Seconds left; -1 once expired.
    pub remaining: i64,
    pub granted: i64,
    pub keys: Vec<Bytes>,
}

/// How a key's lease changed in one applied write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyChange {
    /// Put with this lease (0: none).
    Put(Bytes, i64),
    Deleted(Bytes),
}

/// All leases of this member.
#[derive(Debug)]
pub struct Lessor {
    leases: Mutex<Leases>,
    /// Granted TTLs are raised to this (seconds), as etcd does, so a lease
    /// outlives a leader election.
    min_ttl: i64,
    /// --experimental-enable-lease-checkpoint: remaining TTLs are
    /// checkpointed through the log, so renewals must clear them.
    checkpointing: bool,
    /// Bumped when a lease is removed or this member stops being primary:
    /// what a renewal of an expired lease waits for.
    changed: tokio::sync::watch::Sender<()>,
    /// Test-only failpoint (OXETCD_FAILPOINT_LEASE_EXPIRE_EARLY): the
    /// primary expires each lease after half its TTL.
    expire_early: bool,
}

/// What a renewal on the primary found.
#[derive(Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Kept alive for `ttl` seconds from now; `clear_checkpoint`: a
    /// checkpointed remaining TTL must now be cleared cluster-wide.
    Renewed { ttl: i64, clear_checkpoint: bool },
    /// Expired by this leader's clock, its revocation not applied yet: its
    /// keys are still there, so "not found" must wait (etcd's Renew waits
    /// for the revocation too).
    Expiring,
}

impl Lessor {
    /// `min_ttl` in seconds: etcd's is 1.5 election timeouts, rounded up.
    pub fn new(min_ttl: i64, checkpointing: bool) -> Self {
        Self {
            leases: Mutex::new(Leases::default()),
            min_ttl: min_ttl.max(1),
            checkpointing,
            changed: tokio::sync::watch::channel(()).0,
            expire_early: false,
        }
    }

    /// With `on`, the failpoint's bug: the primary expires every lease
    /// after half its TTL (while granting and renewing the full TTL).
    pub fn with_early_expiry(mut self, on: bool) -> Self {
        self.expire_early = on;
        self
    }

    /// How long a lease of `ttl` seconds lives on the primary.
    fn lifetime(&self, ttl: i64) -> Duration {
        if self.expire_early {
            secs(ttl) / 2
        } else {
            secs(ttl)
        }
    }

    /// Wakes when a lease is removed or this member is demoted; subscribe
    /// before looking, so no change between the look and the wait is missed.
    pub fn subscribe_changes(&self) -> tokio::sync::watch::Receiver<()> {
        self.changed.subscribe()
    }

    pub fn checkpointing(&self) -> bool {
        self.checkpointing
    }

    /// etcd's minimum lease TTL for an election timeout: ceil(1.5 × it).
    pub fn min_ttl_for(election_timeout: Duration) -> i64 {
        (election_timeout.as_millis() as u64 * 3 / 2).div_ceil(1000) as i64
    }

    // ---- the applier's side: deterministic, in log order ----

    pub fn exists(&self, id: i64) -> bool {
        self.leases.lock().by_id.contains_key(&id)
    }

    /// Grants lease `id`; returns the record to store (TTL raised to the
    /// minimum). Changes nothing on error.
    pub fn grant(&self, id: i64, ttl: i64) -> Result<LeaseRecord, EtcdError> {
        if ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge);
        }
        let mut leases = self.leases.lock();
        if leases.by_id.contains_key(&id) {
            return Err(EtcdError::LeaseExists);
        }
        let ttl = ttl.max(self.min_ttl);
        leases.by_id.insert(
            id,
            Lease {
                ttl,
                remaining_ttl: 0,
                keys: BTreeSet::new(),
                expiry: None,
                revoking: false,
            },
        );
        if leases.primary {
            leases.set_expiry(id, Some(Instant::now() + self.lifetime(ttl)));
        }
        Ok(LeaseRecord {
            id,
            ttl,
            remaining_ttl: 0,
        })
    }

    /// The keys attached to lease `id`, in key order, if it exists.
    pub fn keys(&self, id: i64) -> Option<Vec<Bytes>> {
        let leases = self.leases.lock();
        leases
            .by_id
            .get(&id)
            .map(|l| l.keys.iter().cloned().collect())
    }

    /// Forgets lease `id` and its attachments (its keys are being deleted).
    pub fn remove(&self, id: i64) {
        let mut leases = self.leases.lock();
        leases.set_expiry(id, None);
        if let Some(lease) = leases.by_id.remove(&id) {
            for key in lease.keys {
                leases.key_lease.remove(&key);
            }
        }
        drop(leases);
        self.changed.send_replace(());
    }

    /// Follows one write's changes: a put attaches its key to its lease (and
    /// detaches it from any other), a delete detaches it.
    pub fn track(&self, changes: impl IntoIterator<Item = KeyChange>) {
        let mut leases = self.leases.lock();
        for change in changes {
            match change {
                KeyChange::Put(key, 0) | KeyChange::Deleted(key) => leases.detach(&key),
                KeyChange::Put(key, id) => leases.attach(key, id),
            }
        }
    }

    /// Records a checkpointed remaining TTL; returns the record to store.
    pub fn checkpoint(&self, id: i64, remaining_ttl: i64) -> Option<LeaseRecord> {
        let mut leases = self.leases.lock();
        let lease = leases.by_id.get_mut(&id)?;
        lease.remaining_ttl = remaining_ttl;
        Some(LeaseRecord {
            id,
            ttl: lease.ttl,
            remaining_ttl,
        })
    }

    /// Replaces everything with what a store holds: lease records, and the
    /// leases of its live keys. Expiries restart from now if primary.
    pub fn recover(
        &self,
        records: impl IntoIterator<Item = (i64, Bytes)>,
        leased_keys: impl IntoIterator<Item = (Bytes, i64)>,
    ) -> Result<(), EtcdError> {
        let mut fresh = Leases::default();
        for (id, raw) in records {
            let record = LeaseRecord::decode(raw)
                .map_err(|e| EtcdError::Storage(format!("bad lease record {id:x}: {e}")))?;
            fresh.by_id.insert(
                id,
                Lease {
                    ttl: record.ttl,
                    remaining_ttl: record.remaining_ttl,
                    keys: BTreeSet::new(),
                    expiry: None,
                    revoking: false,
                },
            );
        }
        for (key, id) in leased_keys {
            fresh.attach(key, id);
        }
        let mut leases = self.leases.lock();
        fresh.primary = leases.primary;
        *leases = fresh;
        if leases.primary {
            refresh_all(&mut leases, Duration::ZERO, |ttl| self.lifetime(ttl));
        }
        Ok(())
    }

    // ---- the leader's side ----

    /// This member became the leader and has applied everything committed
    /// before: from now on it expires leases. Each gets its remaining TTL
    /// anew plus `extend` (an election timeout), never less than it had.
    pub fn promote(&self, extend: Duration) {
        let mut leases = self.leases.lock();
        leases.primary = true;
        refresh_all(&mut leases, extend, |ttl| self.lifetime(ttl));
    }

    /// This member is no longer the leader: it expires nothing.
    pub fn demote(&self) {
        let mut leases = self.leases.lock();
        leases.primary = false;
        leases.queue.clear();
        for lease in leases.by_id.values_mut() {
            lease.expiry = None;
            lease.revoking = false;
        }
        drop(leases);
        self.changed.send_replace(());
    }

    pub fn is_primary(&self) -> bool {
        self.leases.lock().primary
    }

    /// Keeps lease `id` alive for its TTL from now. An expired lease is not
    /// renewed: it is being revoked.
    pub fn renew(&self, id: i64) -> Result<Renewal, EtcdError> {
        let mut leases = self.leases.lock();
        if !leases.primary {
            return Err(EtcdError::NotLeader);
        }
        let now = Instant::now();
        let Some(lease) = leases.by_id.get_mut(&id) else {
            return Err(EtcdError::LeaseNotFound);
        };
        if lease.revoking || lease.expiry.is_some_and(|e| e <= now) {
            return Ok(Renewal::Expiring);
        }
        let ttl = lease.ttl;
        let had_checkpoint = std::mem::take(&mut lease.remaining_ttl) > 0;
        leases.set_expiry(id, Some(now + self.lifetime(ttl)));
        Ok(Renewal::Renewed {
            ttl,
            clear_checkpoint: had_checkpoint && self.checkpointing,
        })
    }

    /// Lease `id`'s remaining and granted TTL (and keys, if asked).
    pub fn time_to_live(&self, id: i64, with_keys: bool) -> Result<TimeToLive, EtcdError> {
        let leases = self.leases.lock();
        if !leases.primary {
            return Err(EtcdError::NotLeader);
        }
        let lease = leases.by_id.get(&id).ok_or(EtcdError::LeaseNotFound)?;
        let remaining = match lease.expiry {
            Some(_) if lease.revoking => -1,
            Some(e) => {
                let left = e.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    -1
                } else {
                    left.as_secs() as i64
                }
            }
            None => lease.refreshed_ttl(),
        };
        Ok(TimeToLive {
            remaining,
            granted: lease.ttl,
            keys: if with_keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }

    /// Up to `max` leases that have expired and whose revocation is not in
    /// flight; they are offered again after `EXPIRED_RETRY` if still there.
    pub fn take_expired(&self, max: usize) -> Vec<i64> {
        let mut leases = self.leases.lock();
        if !leases.primary {
            return Vec::new();
        }
        let now = Instant::now();
        let expired: Vec<i64> = leases
            .queue
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(max)
            .map(|(_, id)| *id)
            .collect();
        for id in &expired {
            leases.set_expiry(*id, Some(now + EXPIRED_RETRY));
            if let Some(lease) = leases.by_id.get_mut(id) {
                lease.revoking = true;
            }
        }
        expired
    }

    /// When the next lease expires, if this member expires leases.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.leases.lock().queue.first().map(|(at, _)| *at)
    }

    /// Remaining TTLs of leases with more than `min_left` to go, for a
    /// checkpoint (so a leader change does not restart them from full).
    pub fn remaining_ttls(&self, min_left: Duration) -> Vec<(i64, i64)> {
        let leases = self.leases.lock();
        let now = Instant::now();
        leases
            .by_id
            .iter()
            .filter_map(|(id, l)| {
                let left = l.expiry?.saturating_duration_since(now);
                (left > min_left).then(|| (*id, left.as_secs_f64().ceil() as i64))
            })
            .collect()
    }

    /// Every lease ID, ascending.
    pub fn ids(&self) -> Vec<i64> {
        let leases = self.leases.lock();
        let mut ids: Vec<i64> = leases.by_id.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

/// Restarts every lease's expiry from now: `extend` plus its `lifetime`.
fn refresh_all(leases: &mut Leases, extend: Duration, lifetime: impl Fn(i64) -> Duration) {
    let now = Instant::now();
    let ids: Vec<(i64, i64)> = leases
        .by_id
        .iter()
        .map(|(id, l)| (*id, l.refreshed_ttl()))
        .collect();
    leases.queue.clear();
    for (id, ttl) in ids {
        if let Some(lease) = leases.by_id.get_mut(&id) {
            lease.expiry = None;
            lease.revoking = false;
        }
        leases.set_expiry(id, Some(now + extend + lifetime(ttl)));
    }
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Bytes {
        Bytes::copy_from_slice(k.as_bytes())
    }

    #[test]
    fn grant_raises_ttl_to_the_minimum_and_refuses_duplicates_and_huge_ttls() {
        let lessor = Lessor::new(2, false);
        assert_eq!(lessor.grant(1, 1).unwrap().ttl, 2);
        assert_eq!(lessor.grant(2, 60).unwrap().ttl, 60);
        assert!(matches!(lessor.grant(1, 5), Err(EtcdError::LeaseExists)));
        assert!(matches!(
            lessor.grant(3, MAX_LEASE_TTL + 1),
            Err(EtcdError::LeaseTtlTooLarge)
        ));
        assert_eq!(lessor.ids(), vec![1, 2]);
    }

    #[test]
    fn min_ttl_is_one_and_a_half_election_timeouts_rounded_up() {
        assert_eq!(Lessor::min_ttl_for(Duration::from_millis(1000)), 2);
        assert_eq!(Lessor::min_ttl_for(Duration::from_millis(500)), 1);
        assert_eq!(Lessor::min_ttl_for(Duration::from_millis(3000)), 5);
    }

    #[test]
    fn keys_follow_puts_and_deletes() {
        let lessor = Lessor::new(1, false);
        lessor.grant(1, 10).unwrap();
        lessor.grant(2, 10).unwrap();
        lessor.track([KeyChange::Put(key("b"), 1), KeyChange::Put(key("a"), 1)]);
        assert_eq!(lessor.keys(1).unwrap(), vec![key("a"), key("b")]);
        // Moving a key to another lease, or to none, detaches it.
        lessor.track([KeyChange::Put(key("a"), 2), KeyChange::Put(key("b"), 0)]);
        assert_eq!(lessor.keys(1).unwrap(), Vec::<Bytes>::new());
        assert_eq!(lessor.keys(2).unwrap(), vec![key("a")]);
        lessor.track([KeyChange::Deleted(key("a"))]);
        assert_eq!(lessor.keys(2).unwrap(), Vec::<Bytes>::new());
        lessor.track([KeyChange::Put(key("c"), 2)]);
        lessor.remove(2);
        assert!(lessor.keys(2).is_none());
        assert!(!lessor.exists(2));
    }

    fn renewed(ttl: i64, clear_checkpoint: bool) -> Renewal {
        Renewal::Renewed {
            ttl,
            clear_checkpoint,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_of_an_expiring_lease_wakes_when_it_is_removed_or_on_demotion() {
        let lessor = Lessor::new(1, false);
        lessor.promote(Duration::ZERO);
        lessor.grant(1, 1).unwrap();
        lessor.grant(2, 1).unwrap();
        tokio::time::advance(Duration::from_millis(1001)).await;
        let mut changes = lessor.subscribe_changes();
        assert_eq!(lessor.renew(1).unwrap(), Renewal::Expiring);
        lessor.remove(1);
        changes.changed().await.unwrap();
        assert!(matches!(lessor.renew(1), Err(EtcdError::LeaseNotFound)));
        let mut changes = lessor.subscribe_changes();
        assert_eq!(lessor.renew(2).unwrap(), Renewal::Expiring);
        lessor.demote();
        changes.changed().await.unwrap();
        assert!(matches!(lessor.renew(2), Err(EtcdError::NotLeader)));
    }

    #[test]
    fn only_the_primary_renews_and_expires() {
        let lessor = Lessor::new(1, false);
        lessor.grant(1, 10).unwrap();
        assert!(matches!(lessor.renew(1), Err(EtcdError::NotLeader)));
        assert!(lessor.take_expired(10).is_empty());
        lessor.promote(Duration::ZERO);
        assert_eq!(lessor.renew(1).unwrap(), renewed(10, false));
        assert!(matches!(lessor.renew(9), Err(EtcdError::LeaseNotFound)));
        let ttl = lessor.time_to_live(1, false).unwrap();
        assert_eq!(ttl.granted, 10);
        assert!((9..=10).contains(&ttl.remaining), "{ttl:?}");
        lessor.demote();
        assert!(matches!(lessor.renew(1), Err(EtcdError::NotLeader)));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_leases_are_offered_once_then_again_after_the_retry_interval() {
        let lessor = Lessor::new(1, false);
        lessor.promote(Duration::ZERO);
        lessor.grant(1, 1).unwrap();
        lessor.grant(2, 5).unwrap();
        assert_eq!(
            lessor.next_expiry(),
            Some(Instant::now() + Duration::from_secs(1))
        );
        assert!(lessor.take_expired(10).is_empty());
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(lessor.time_to_live(1, false).unwrap().remaining, -1);
        // Expired, its keys still there: not "not found" until revoked.
        assert_eq!(lessor.renew(1).unwrap(), Renewal::Expiring);
        assert_eq!(lessor.take_expired(10), vec![1]);
        assert!(lessor.take_expired(10).is_empty(), "revocation in flight");
        // Its revocation may still commit: never renewed meanwhile.
        assert_eq!(lessor.renew(1).unwrap(), Renewal::Expiring);
        assert_eq!(lessor.time_to_live(1, false).unwrap().remaining, -1);
        tokio::time::advance(EXPIRED_RETRY).await;
        assert_eq!(lessor.take_expired(10), vec![1]);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(lessor.take_expired(1).len(), 1, "bounded by max");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_leader_extends_leases_and_never_shortens_them() {
        let lessor = Lessor::new(1, true);
        lessor.grant(1, 10).unwrap();
        lessor.checkpoint(1, 4).unwrap();
        lessor.grant(2, 10).unwrap();
        lessor.promote(Duration::from_secs(1));
        // Lease 1 resumes from its checkpoint, lease 2 from its full TTL.
        tokio::time::advance(Duration::from_millis(4500)).await;
        assert!(lessor.take_expired(10).is_empty());
        tokio::time::advance(Duration::from_millis(600)).await;
        assert_eq!(lessor.take_expired(10), vec![1]);
        // A renewal clears the checkpoint.
        lessor.grant(3, 10).unwrap();
        lessor.checkpoint(3, 2).unwrap();
        assert_eq!(lessor.renew(3).unwrap(), renewed(10, true));
        lessor.demote();
        lessor.promote(Duration::ZERO);
        assert_eq!(lessor.time_to_live(3, false).unwrap().remaining, 10);
    }

    #[test]
    fn recover_rebuilds_leases_and_attachments() {
        let lessor = Lessor::new(1, false);
        lessor.grant(99, 5).unwrap();
        let record = LeaseRecord {
            id: 7,
            ttl: 30,
            remaining_ttl: 0,
        };
        lessor
            .recover(
                [(7, Bytes::from(record.encode_to_vec()))],
                [(key("x"), 7), (key("orphan"), 8)],
            )
            .unwrap();
        assert_eq!(lessor.ids(), vec![7]);
        assert_eq!(lessor.keys(7).unwrap(), vec![key("x")]);
        assert!(lessor
            .recover([(1, Bytes::from_static(b"\xff"))], [])
            .is_err());
    }

    #[test]
    fn a_key_attached_to_a_lease_does_not_keep_its_buffer() {
        let lessor = Lessor::new(1, false);
        lessor.grant(1, 60).unwrap();
        // An applied put's key is a slice of its request or log buffer.
        let buffer = Bytes::from(vec![b'k'; 4096]);
        lessor.track([KeyChange::Put(buffer.slice(0..4), 1)]);
        assert!(buffer.is_unique(), "the lessor holds a slice of the buffer");
        assert_eq!(lessor.keys(1).unwrap(), [Bytes::from_static(b"kkkk")]);
    }
}
