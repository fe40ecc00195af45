//! Who leads, in the log, in etcd's words ("8e9e05c52164694d became leader
//! at term 2", "... elected leader 91bc3c398fb3c146 at term 3", "... lost
//! leader ... at term 4"): what an operator looks for after a failover.

use oxetcd_raft::NodeId;

/// The leader this member knew of last, and in which term.
#[derive(Debug, Default)]
pub struct LeaderSeen {
    leader: Option<NodeId>,
    term: u64,
    /// Changes to a leader other than the last known one (none counts as
    /// unknown), as etcd counts etcd_server_leader_changes_seen_total.
    changes_seen: u64,
}

impl LeaderSeen {
    /// The line to log when `leader` or `term` differ from what was seen
    /// last by member `me`; None when nothing worth a line changed (a term
    /// passing without a leader known before or after).
    pub fn update(&mut self, me: NodeId, leader: Option<NodeId>, term: u64) -> Option<String> {
        if leader == self.leader && term == self.term {
            return None;
        }
        if leader.is_some() && leader != self.leader {
            self.changes_seen += 1;
            oxetcd_metrics::server().leader_changes_seen_total.inc();
        }
        let changes_seen = self.changes_seen;
        let before = std::mem::replace(
            self,
            LeaderSeen {
                leader,
                term,
                changes_seen,
            },
        );
        match (before.leader, leader) {
            (_, Some(l)) if l == me => Some(format!("{me:x} became leader at term {term}")),
            (_, Some(l)) => Some(format!("{me:x} elected leader {l:x} at term {term}")),
            (Some(old), None) => Some(format!("{me:x} lost leader {old:x} at term {term}")),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_each_change_of_leader_or_term_once() {
        let mut seen = LeaderSeen::default();
        assert_eq!(seen.update(0xa, None, 1), None, "no leader yet");
        assert_eq!(
            seen.update(0xa, Some(0xb), 1).as_deref(),
            Some("a elected leader b at term 1")
        );
        assert_eq!(seen.update(0xa, Some(0xb), 1), None, "nothing changed");
        assert_eq!(
            seen.update(0xa, None, 2).as_deref(),
            Some("a lost leader b at term 2")
        );
        assert_eq!(seen.update(0xa, None, 3), None, "another term, no leader");
        assert_eq!(
            seen.update(0xa, Some(0xa), 3).as_deref(),
            Some("a became leader at term 3")
        );
        assert_eq!(
            seen.update(0xa, Some(0xa), 5).as_deref(),
            Some("a became leader at term 5"),
            "re-elected in a later term"
        );
        // b, then a after none known: a re-election of the same leader in a
        // later term is not a change.
        assert_eq!(seen.changes_seen, 2);
    }
}
