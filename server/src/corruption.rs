//! Corruption checks, as etcd's `corrupt.go`: members compare their hashes of
//! the key-value history (HashKV) at the same revision, and a difference at
//! the same compacted revision means some member's data is not what the log
//! made it.
//!
//! - [`check_initial`] (`--experimental-initial-corrupt-check`): a member
//!   restarting on its data compares, before it serves clients, its hash at
//!   its current revision with each peer's at that revision. A peer with the
//!   same compacted revision and another hash stops the start with etcd's
//!   error, "<member id> found data inconsistency with peers". Peers that
//!   cannot answer, have not reached the revision, or compacted past it are
//!   skipped with a warning, as etcd skips them.
//! - [`run_periodic`] (`--experimental-corrupt-check-time`): every interval
//!   the leader hashes at its current revision, asks every member for its
//!   hash at that revision, confirms with a read barrier that it has applied
//!   everything committed, hashes again, and raises the CORRUPT alarm through
//!   the log for each member that fails etcd's rules ([`suspects`]). While
//!   CORRUPT is active every member refuses client writes (see `apply`), and
//!   the health endpoints report it.
//!
//! Members ask each other over the peer service's `HashKV` call (the gRPC
//! service on the peer URLs that already carries Raft), where etcd serves
//! `/members/hashkv` on its peer HTTP handler: it is the one channel members
//! have to each other, with the peer TLS, the cluster-ID check and the
//! connection Raft keeps open, and it needs no client credentials (a
//! Maintenance.HashKV on the client URLs would need auth's root role).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use oxetcd_proto::etcdserverpb::alarm_request::AlarmAction;
use oxetcd_proto::etcdserverpb::{AlarmRequest, AlarmType};
use oxetcd_raft::{KvHash, NodeId, PeerError};
use oxetcd_storage::Store;
use tracing::{info, warn};

use crate::alarm::Alarms;
use crate::auto_compaction::{leading, wait};
use crate::command::Request;
use crate::error::EtcdError;
use crate::replication::Replication;

/// Why a corruption check stops a member from starting.
#[derive(Debug, thiserror::Error)]
pub enum CorruptionError {
    /// A peer with the same compacted revision hashed the same revision
    /// differently (etcd's words).
    #[error("{member:016x} found data inconsistency with peers")]
    Inconsistent { member: u64 },
    /// This member could not hash its own store.
    #[error("{member:016x} failed to fetch hash ({source})")]
    Hash { member: u64, source: EtcdError },
}

/// This member's hash at `revision` (0: its current revision), with its
/// current revision as it started hashing: what the peer service answers
/// another member's check with, and what the checks compare. Off the async
/// workers: hashing reads the whole history.
pub(crate) async fn hash_here(store: &Arc<Store>, revision: i64) -> Result<KvHash, EtcdError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let current = store.current_revision();
        let h = store.hash_kv(revision)?;
        Ok(KvHash {
            hash: h.hash,
            compact_revision: h.compact_revision,
            // A write between the two reads only makes the hash's revision
            // the later one: the current revision is never past it.
            revision: current.max(h.hash_revision),
            hash_revision: h.hash_revision,
        })
    })
    .await
    .map_err(|e| EtcdError::Storage(format!("hashing the store: {e}")))?
}

/// One peer's answer to a HashKV ask.
struct PeerAnswer {
    id: NodeId,
    addr: String,
    answer: Result<KvHash, PeerError>,
}

/// Asks every other member of the membership for its hash at `revision`,
/// all at once; a failed ask is logged as etcd logs it.
async fn ask_peers(replication: &Replication, me: NodeId, revision: i64) -> Vec<PeerAnswer> {
    let members: Vec<(NodeId, openraft::BasicNode)> = replication
        .metrics()
        .membership_config
        .membership()
        .nodes()
        .filter(|(id, _)| **id != me)
        .map(|(id, node)| (*id, node.clone()))
        .collect();
    let asks = members.into_iter().map(|(id, node)| async move {
        let answer = replication.peer_hash_kv(id, &node, revision).await;
        if let Err(e) = &answer {
            warn!(
                local_member_id = %format!("{me:x}"),
                requested_revision = revision,
                remote_peer_endpoint = %node.addr,
                error = %e,
                "failed hash kv request"
            );
        }
        PeerAnswer {
            id,
            addr: node.addr,
            answer,
        }
    });
    futures_util::future::join_all(asks).await
}

/// Whether a peer's refusal is the store error `e` (the peer sends the
/// error's text, as etcd's `/members/hashkv` does).
fn refused_with(answer: &Result<KvHash, PeerError>, e: EtcdError) -> bool {
    matches!(answer, Err(PeerError::Rejected(why)) if *why == e.to_string())
}

/// etcd's `CheckInitialHashKV`: compares this member's hash at its current
/// revision with each peer's at that revision; an error when one with the
/// same compacted revision differs.
pub(crate) async fn check_initial(
    replication: &Replication,
    store: &Arc<Store>,
    me: NodeId,
) -> Result<(), CorruptionError> {
    let local_member_id = format!("{me:x}");
    info!(local_member_id, "starting initial corruption check");
    let local = hash_here(store, 0)
        .await
        .map_err(|source| CorruptionError::Hash { member: me, source })?;
    let mut mismatches = 0;
    for p in ask_peers(replication, me, local.hash_revision).await {
        let remote_peer_id = format!("{:x}", p.id);
        match &p.answer {
            Ok(peer) if peer.hash != local.hash => {
                let same_compaction = peer.compact_revision == local.compact_revision;
                let what = if same_compaction {
                    mismatches += 1;
                    "found different hash values from remote peer"
                } else {
                    "found different compact revision values from remote peer"
                };
                warn!(
                    local_member_id,
                    local_member_revision = local.hash_revision,
                    local_member_compact_revision = local.compact_revision,
                    local_member_hash = local.hash,
                    remote_peer_id,
                    remote_peer_endpoints = %p.addr,
                    remote_peer_revision = peer.revision,
                    remote_peer_compact_revision = peer.compact_revision,
                    remote_peer_hash = peer.hash,
                    "{what}"
                );
            }
            Ok(_) => {}
            answer if refused_with(answer, EtcdError::FutureRevision) => warn!(
                local_member_id,
                local_member_revision = local.hash_revision,
                remote_peer_id,
                remote_peer_endpoints = %p.addr,
                "cannot fetch hash from slow remote peer"
            ),
            answer if refused_with(answer, EtcdError::Compacted) => warn!(
                local_member_id,
                local_member_revision = local.hash_revision,
                remote_peer_id,
                remote_peer_endpoints = %p.addr,
                "cannot fetch hash from remote peer; local member is behind"
            ),
            // Unreachable and the like: logged by `ask_peers`.
            Err(_) => {}
        }
    }
    if mismatches > 0 {
        return Err(CorruptionError::Inconsistent { member: me });
    }
    info!(
        local_member_id,
        "initial corruption checking passed; no corruption"
    );
    Ok(())
}

/// What the leader needs for the periodic check.
pub(crate) struct PeriodicCheck {
    pub(crate) replication: Arc<Replication>,
    pub(crate) store: Arc<Store>,
    pub(crate) alarms: Arc<Alarms>,
    pub(crate) member_id: NodeId,
    pub(crate) interval: Duration,
}

/// etcd's `monitorKVHash`: every interval, on the leader only, a check of
/// every member; for the life of Raft.
pub(crate) async fn run_periodic(c: PeriodicCheck) {
    info!(
        local_member_id = %format!("{:x}", c.member_id),
        interval = ?c.interval,
        "enabled corruption checking"
    );
    let mut role = c.replication.subscribe_role();
    loop {
        if !wait(&mut role, c.interval).await {
            return;
        }
        if !leading(&role) {
            continue;
        }
        if let Err(e) = check_members(&c).await {
            warn!(error = %e, "failed to check hash KV");
        }
    }
}

/// etcd's `checkHashKV`, run by the leader.
async fn check_members(c: &PeriodicCheck) -> Result<(), EtcdError> {
    let first = hash_here(&c.store, 0).await?;
    let answers = ask_peers(&c.replication, c.member_id, first.hash_revision).await;
    // Everything committed before the asks applied here: no member can have
    // applied more than the leader has after this.
    c.replication.read_barrier().await?;
    let second = hash_here(&c.store, 0).await?;
    let peers: BTreeMap<NodeId, KvHash> = answers
        .into_iter()
        .filter_map(|p| Some((p.id, p.answer.ok()?)))
        .collect();
    for id in suspects(c.member_id, &first, &second, &peers) {
        if !c.alarms.has(id, AlarmType::Corrupt) {
            raise_corrupt(&c.replication, id).await;
        }
    }
    info!(
        number_of_peers_checked = peers.len(),
        "finished peer corruption check"
    );
    Ok(())
}

/// The members whose data the leader `me` finds corrupt, from its hashes
/// before (`first`) and after (`second`) asking, and the answers of the
/// peers it reached (asked at `first.hash_revision`). etcd's rules:
///
/// - the leader's own hash changed while its revision and compacted
///   revision did not: the leader;
/// - a peer whose current revision or compacted revision is past the
///   leader's after its read barrier: that peer (it applied what was never
///   committed);
/// - a peer with the leader's compacted revision and another hash: that
///   peer, unless a majority of the members compared (the leader and those
///   peers) agree on a hash other than the leader's: then the leader is the
///   odd one out, and it is the leader. etcd 3.4 and 3.5 raise this alarm
///   with member ID 0 ("it isn't clear which member's data is corrupted");
///   with the majority rule (etcd 3.6's approach) the alarm names the member.
pub(crate) fn suspects(
    me: NodeId,
    first: &KvHash,
    second: &KvHash,
    peers: &BTreeMap<NodeId, KvHash>,
) -> BTreeSet<NodeId> {
    let mut found = BTreeSet::new();
    if second.hash != first.hash
        && second.hash_revision == first.hash_revision
        && second.compact_revision == first.compact_revision
    {
        warn!(
            revision_1 = first.hash_revision,
            compact_revision_1 = first.compact_revision,
            hash_1 = first.hash,
            revision_2 = second.hash_revision,
            compact_revision_2 = second.compact_revision,
            hash_2 = second.hash,
            "found hash mismatch"
        );
        found.insert(me);
    }
    // The members hashed at the leader's revision and compacted revision,
    // by hash: the leader first.
    let mut by_hash: BTreeMap<u32, Vec<NodeId>> = BTreeMap::new();
    by_hash.entry(first.hash).or_default().push(me);
    for (&id, peer) in peers {
        let follower_peer_id = format!("{id:x}");
        if peer.revision > second.hash_revision {
            warn!(
                leader_revision = second.hash_revision,
                follower_revision = peer.revision,
                follower_peer_id,
                "revision from follower must be less than or equal to leader's"
            );
            found.insert(id);
        }
        if peer.compact_revision > second.compact_revision {
            warn!(
                leader_compact_revision = second.compact_revision,
                follower_compact_revision = peer.compact_revision,
                follower_peer_id,
                "compact revision from follower must be less than or equal to leader's"
            );
            found.insert(id);
        }
        if peer.compact_revision == first.compact_revision
            && peer.hash_revision == first.hash_revision
        {
            by_hash.entry(peer.hash).or_default().push(id);
        }
    }
    let compared: usize = by_hash.values().map(Vec::len).sum();
    let majority = by_hash
        .iter()
        .find(|(_, members)| members.len() * 2 > compared)
        .map(|(&hash, _)| hash);
    // The hash taken as right: the majority's, else the leader's.
    let right = majority.unwrap_or(first.hash);
    for (&hash, members) in &by_hash {
        if hash == right {
            continue;
        }
        for &id in members {
            warn!(
                leader_compact_revision = first.compact_revision,
                revision = first.hash_revision,
                expected_hash = right,
                hash,
                member_id = %format!("{id:x}"),
                "same compact revision then hashes must match"
            );
            found.insert(id);
        }
    }
    found
}

/// Proposes CORRUPT for `member_id`. A failure is logged; the next check
/// tries again.
async fn raise_corrupt(replication: &Replication, member_id: NodeId) {
    let raise = Request::Alarm(AlarmRequest {
        action: AlarmAction::Activate as i32,
        member_id,
        alarm: AlarmType::Corrupt as i32,
    });
    warn!(member = %format!("{member_id:x}"), "raising the CORRUPT alarm");
    if let Err(e) = replication.propose(raise).await {
        warn!(error = %e, "cannot raise the CORRUPT alarm");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEADER: NodeId = 1;

    fn h(hash: u32, revision: i64, compact_revision: i64) -> KvHash {
        KvHash {
            hash,
            compact_revision,
            revision,
            hash_revision: revision,
        }
    }

    fn peers(list: &[(NodeId, KvHash)]) -> BTreeMap<NodeId, KvHash> {
        list.iter().cloned().collect()
    }

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn members_that_agree_are_not_suspected() {
        let me = h(7, 10, 3);
        let ps = peers(&[(2, h(7, 10, 3)), (3, h(7, 9, 3))]);
        assert!(suspects(LEADER, &me, &h(7, 10, 3), &ps).is_empty());
        // Another compacted revision: not compared (a compaction between
        // the hashes), and a follower behind is no suspect.
        let ps = peers(&[(2, h(9, 10, 5)), (3, h(7, 10, 3))]);
        assert!(suspects(LEADER, &me, &h(8, 12, 5), &ps).is_empty());
    }

    #[test]
    fn a_follower_that_differs_is_suspected() {
        let me = h(7, 10, 3);
        let ps = peers(&[(2, h(7, 10, 3)), (3, h(8, 10, 3))]);
        assert_eq!(suspects(LEADER, &me, &me, &ps), set(&[3]));
        // In a two-member cluster there is no majority: the leader's hash
        // is taken as right, as etcd does.
        let ps = peers(&[(3, h(8, 10, 3))]);
        assert_eq!(suspects(LEADER, &me, &me, &ps), set(&[3]));
    }

    #[test]
    fn a_leader_outvoted_by_the_majority_is_suspected() {
        let me = h(7, 10, 3);
        let ps = peers(&[(2, h(8, 10, 3)), (3, h(8, 10, 3))]);
        assert_eq!(suspects(LEADER, &me, &me, &ps), set(&[LEADER]));
    }

    #[test]
    fn followers_ahead_of_the_leader_are_suspected() {
        let me = h(7, 10, 3);
        let ps = peers(&[
            (2, h(7, 11, 3)),
            (
                3,
                KvHash {
                    revision: 10,
                    ..h(7, 10, 4)
                },
            ),
        ]);
        assert_eq!(suspects(LEADER, &me, &me, &ps), set(&[2, 3]));
    }

    #[test]
    fn a_leader_whose_hash_changed_under_it_is_suspected() {
        let me = h(7, 10, 3);
        assert_eq!(
            suspects(LEADER, &me, &h(8, 10, 3), &BTreeMap::new()),
            set(&[LEADER])
        );
        // A write in between changes the hash: no suspect.
        assert!(suspects(LEADER, &me, &h(8, 11, 3), &BTreeMap::new()).is_empty());
    }
}
