//! The nemesis: a random but seeded schedule of faults. It waits a while,
//! picks one of the enabled fault kinds and its targets with its own RNG,
//! holds the fault, ends it, and records the window. The same seed gives
//! the same choices (which member, which split), so a run can be replayed;
//! only "the leader" depends on what the cluster did.
//!
//! | kind | what |
//! |---|---|
//! | `kill` | kill -9 one member, a majority, or all; restarted when the window ends |
//! | `pause` | SIGSTOP one member or a majority (or the leader); SIGCONT at the end |
//! | `partition` | isolate one member or the leader, split majority/minority, a bridge (two halves joined by one member) or a ring (each member sees only its neighbours) |
//! | `member` | remove one member through the Cluster API (MemberRemove), kill it and set its data aside; add it back (MemberAdd, as a voter or as a learner then promoted with MemberPromote once it has caught up) and start it empty with `--initial-cluster-state existing` when the window ends |
//! | `compact` | compact the store at the current revision minus [`crate::cluster::maintenance::KEEP`] (physical) and defragment one member, under load |
//! | `wal` | kill -9 one member and damage the tail of its newest WAL file (a torn write, [`crate::cluster::wal`]); restarted when the window ends |
//! | `slow` | delay every chunk on the peer links into one member, or into all, by 20-400 ms plus jitter ([`crate::cluster::proxy`]) |
//! | `lossy` | make the peer links into one member, or into all, lose 5-40 % of their chunks: retransmission stalls and resets ([`crate::cluster::proxy`]) |
//! | `clock` | jump one member's wall clock by up to an hour either way ([`crate::cluster::clock`]); back to true time when the window ends |
//! | `power` | kill -9 one member or all, and cut the power of their disks: every write not fsynced, and every directory change whose directory was not fsynced, is lost; half the time a torn cut also leaves a prefix of each file's last unsynced write ([`crate::powerfs`], [`crate::cluster::power`]); restarted when the window ends |

use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::cluster::proxy::LinkFault;
use crate::cluster::{wal, Cluster};
use crate::error::JepsenError;
use crate::history::FaultWindow;

/// A kind of fault the schedule may pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    Kill,
    Pause,
    Partition,
    Wal,
    Member,
    Compact,
    Slow,
    Lossy,
    Clock,
    Power,
}

impl FaultKind {
    /// Link faults: the members' peer ports go behind proxies.
    pub fn needs_proxies(self) -> bool {
        matches!(self, FaultKind::Slow | FaultKind::Lossy)
    }

    /// Power cuts: the members' data dirs go on the power-loss file system.
    pub fn needs_power_fs(self) -> bool {
        self == FaultKind::Power
    }
}

impl FromStr for FaultKind {
    type Err = JepsenError;
    fn from_str(s: &str) -> Result<FaultKind, JepsenError> {
        match s {
            "kill" => Ok(FaultKind::Kill),
            "pause" => Ok(FaultKind::Pause),
            "partition" => Ok(FaultKind::Partition),
            "wal" => Ok(FaultKind::Wal),
            "member" => Ok(FaultKind::Member),
            "compact" => Ok(FaultKind::Compact),
            "slow" => Ok(FaultKind::Slow),
            "lossy" => Ok(FaultKind::Lossy),
            "clock" => Ok(FaultKind::Clock),
            "power" => Ok(FaultKind::Power),
            other => Err(JepsenError::Usage(format!(
                "unknown nemesis {other:?} (kill, pause, partition, member, wal, compact, slow, lossy, clock, power)"
            ))),
        }
    }
}

/// Timing of the schedule.
#[derive(Clone, Debug)]
pub struct NemesisConfig {
    pub kinds: Vec<FaultKind>,
    /// Quiet time between faults: uniformly in this range.
    pub interval: (Duration, Duration),
    /// How long a fault is held: uniformly in this range.
    pub hold: (Duration, Duration),
}

/// The default quiet time between faults and hold of a fault, in ms.
pub const DEFAULT_INTERVAL_MS: (u64, u64) = (2000, 5000);
pub const DEFAULT_HOLD_MS: (u64, u64) = (2000, 6000);

impl NemesisConfig {
    /// `kinds`, with quiet times and holds drawn from these ranges (ms).
    pub fn new(kinds: Vec<FaultKind>, interval_ms: (u64, u64), hold_ms: (u64, u64)) -> Self {
        let range = |(lo, hi): (u64, u64)| (Duration::from_millis(lo), Duration::from_millis(hi));
        NemesisConfig {
            kinds,
            interval: range(interval_ms),
            hold: range(hold_ms),
        }
    }
}

impl Default for NemesisConfig {
    fn default() -> Self {
        NemesisConfig::new(Vec::new(), DEFAULT_INTERVAL_MS, DEFAULT_HOLD_MS)
    }
}

/// A fault picked by the schedule, before it is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    Kill(Vec<usize>),
    Pause(Vec<usize>),
    /// The leader at the time it is applied (kind `pause` or `partition`).
    PauseLeader,
    Partition {
        name: String,
        groups: Vec<Vec<usize>>,
    },
    IsolateLeader,
    /// Links to cut, for shapes that are not groups (ring, bridge).
    Cut {
        name: String,
        links: Vec<(usize, usize)>,
    },
    /// Remove a member from the cluster; it is added back at the end, as
    /// a learner to be promoted or straight as a voter.
    RemoveMember {
        member: usize,
        as_learner: bool,
    },
    /// Compact, and defragment this member.
    Compact(usize),
    /// Kill a member and damage its WAL's tail.
    DamageWal {
        member: usize,
        damage: wal::Damage,
    },
    /// Delay the peer links into these members.
    SlowLinks {
        members: Vec<usize>,
        delay_ms: u64,
        jitter_ms: u64,
    },
    /// Make the peer links into these members lose chunks.
    LossyLinks {
        members: Vec<usize>,
        loss_pct: u32,
    },
    /// Set a member's wall clock this far from the true time.
    ShiftClock {
        member: usize,
        offset_s: i64,
    },
    /// Kill these members and cut the power of their disks.
    PowerCut {
        members: Vec<usize>,
        tear: bool,
    },
}

/// Picks the next fault of `kind` for an `n`-member cluster.
pub fn pick(kind: FaultKind, n: usize, rng: &mut ChaCha8Rng) -> Fault {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let majority = n / 2 + 1;
    match kind {
        FaultKind::Kill => match rng.random_range(0..4) {
            0 | 1 => Fault::Kill(order[..1].to_vec()),
            2 => Fault::Kill(order[..majority].to_vec()),
            _ => Fault::Kill(order),
        },
        FaultKind::Pause => match rng.random_range(0..3) {
            0 => Fault::Pause(order[..1].to_vec()),
            1 => Fault::Pause(order[..majority].to_vec()),
            _ => Fault::PauseLeader,
        },
        FaultKind::Member => Fault::RemoveMember {
            member: order[0],
            as_learner: rng.random_bool(0.5),
        },
        FaultKind::Slow => {
            let delay_ms = rng.random_range(20..=400);
            Fault::SlowLinks {
                members: one_or_all(order, rng),
                delay_ms,
                jitter_ms: delay_ms / 2,
            }
        }
        FaultKind::Lossy => Fault::LossyLinks {
            loss_pct: rng.random_range(5..=40),
            members: one_or_all(order, rng),
        },
        FaultKind::Clock => {
            let seconds: i64 = rng.random_range(1..=3600);
            Fault::ShiftClock {
                member: order[0],
                offset_s: if rng.random_bool(0.5) {
                    seconds
                } else {
                    -seconds
                },
            }
        }
        FaultKind::Compact => Fault::Compact(order[0]),
        FaultKind::Power => Fault::PowerCut {
            members: one_or_all(order, rng),
            tear: rng.random_bool(0.5),
        },
        FaultKind::Wal => Fault::DamageWal {
            member: order[0],
            damage: wal::Damage {
                cut: rng.random_range(0..=wal::MAX_CUT),
                garbage: (0..rng.random_range(0..=24))
                    .map(|_| rng.random())
                    .collect(),
            },
        },
        // Three members in a ring are all neighbours: nothing to cut, so a
        // bridge instead.
        FaultKind::Partition => match rng.random_range(0..5) {
            4 if n < 4 => bridge(&order),
            0 => Fault::Partition {
                name: "isolate".into(),
                groups: vec![order[..1].to_vec(), order[1..].to_vec()],
            },
            1 => Fault::IsolateLeader,
            2 => Fault::Partition {
                name: "majority-minority".into(),
                groups: vec![order[..majority].to_vec(), order[majority..].to_vec()],
            },
            3 => bridge(&order),
            _ => {
                // A ring in `order`: cut every pair that is not adjacent.
                let mut links = Vec::new();
                for i in 0..n {
                    for j in i + 1..n {
                        let adjacent = j == i + 1 || (i == 0 && j == n - 1);
                        if !adjacent {
                            links.push((order[i], order[j]));
                        }
                    }
                }
                Fault::Cut {
                    name: "ring".into(),
                    links,
                }
            }
        },
    }
}

/// The first member of a shuffled `order`, or all of them.
fn one_or_all(mut order: Vec<usize>, rng: &mut ChaCha8Rng) -> Vec<usize> {
    if rng.random_bool(0.5) {
        order.truncate(1);
    }
    order
}

/// `order[0]` is the bridge; the rest split in two halves that only reach
/// each other through it.
fn bridge(order: &[usize]) -> Fault {
    let rest = &order[1..];
    let (left, right) = rest.split_at(rest.len() / 2);
    let links = left
        .iter()
        .flat_map(|&a| right.iter().map(move |&b| (a, b)))
        .collect();
    Fault::Cut {
        name: format!("bridge via n{}", order[0] + 1),
        links,
    }
}

fn names(members: &[usize]) -> String {
    members
        .iter()
        .map(|m| format!("n{}", m + 1))
        .collect::<Vec<_>>()
        .join(",")
}

fn groups_name(groups: &[Vec<usize>]) -> String {
    groups
        .iter()
        .map(|g| names(g))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Applies a fault; returns its kind and target for the record.
async fn apply(cluster: &mut Cluster, fault: &Fault) -> Result<(String, String), JepsenError> {
    Ok(match fault {
        Fault::Kill(members) => {
            for &m in members {
                cluster.kill(m)?;
            }
            ("kill".into(), names(members))
        }
        Fault::Pause(members) => {
            for &m in members {
                cluster.pause(m)?;
            }
            ("pause".into(), names(members))
        }
        Fault::PauseLeader => match cluster.leader().await {
            Some(l) => {
                cluster.pause(l)?;
                ("pause".into(), format!("leader {}", names(&[l])))
            }
            None => ("pause".into(), "no leader found".into()),
        },
        Fault::Partition { name, groups } => {
            cluster.partition(groups)?;
            (
                "partition".into(),
                format!("{name}: {}", groups_name(groups)),
            )
        }
        Fault::IsolateLeader => match cluster.leader().await {
            Some(l) => {
                let rest = (0..cluster.members.len()).filter(|&m| m != l).collect();
                let groups = vec![vec![l], rest];
                cluster.partition(&groups)?;
                (
                    "partition".into(),
                    format!("isolate leader: {}", groups_name(&groups)),
                )
            }
            None => ("partition".into(), "no leader found".into()),
        },
        Fault::RemoveMember { member, as_learner } => (
            "member".into(),
            cluster.remove_member(*member, *as_learner).await?,
        ),
        Fault::Compact(member) => ("compact".into(), cluster.compact(*member).await),
        Fault::DamageWal { member, damage } => ("wal".into(), cluster.damage_wal(*member, damage)?),
        Fault::SlowLinks {
            members,
            delay_ms,
            jitter_ms,
        } => {
            let fault = LinkFault::Slow {
                delay: Duration::from_millis(*delay_ms),
                jitter: Duration::from_millis(*jitter_ms),
            };
            cluster.fault_links(members, &fault)?;
            let target = format!(
                "into {}: {delay_ms} ms + up to {jitter_ms} ms",
                names(members)
            );
            ("slow".into(), target)
        }
        Fault::LossyLinks { members, loss_pct } => {
            let fault = LinkFault::Lossy {
                loss: f64::from(*loss_pct) / 100.0,
            };
            cluster.fault_links(members, &fault)?;
            let target = format!("into {}: {loss_pct} % lost", names(members));
            ("lossy".into(), target)
        }
        Fault::ShiftClock { member, offset_s } => {
            cluster.shift_clock(*member, *offset_s)?;
            let target = format!("{}: {offset_s:+} s", names(&[*member]));
            ("clock".into(), target)
        }
        Fault::PowerCut { members, tear } => {
            let said = cluster.power_cut(members, *tear)?;
            let how = if *tear { "torn cut" } else { "cut" };
            ("power".into(), format!("{how} {}: {said}", names(members)))
        }
        Fault::Cut { name, links } => {
            cluster.cut(links)?;
            let cut: Vec<String> = links
                .iter()
                .map(|(a, b)| format!("n{}-n{}", a + 1, b + 1))
                .collect();
            ("partition".into(), format!("{name}: cut {}", cut.join(" ")))
        }
    })
}

fn between(rng: &mut ChaCha8Rng, (lo, hi): (Duration, Duration)) -> Duration {
    if hi <= lo {
        return lo;
    }
    Duration::from_millis(rng.random_range(lo.as_millis() as u64..=hi.as_millis() as u64))
}

/// The next step of the schedule: quiet time, hold time, fault. `run`
/// draws exactly this from its RNG, so [`preview`] shows a seed's schedule.
fn next(config: &NemesisConfig, n: usize, rng: &mut ChaCha8Rng) -> (Duration, Duration, Fault) {
    let quiet = between(rng, config.interval);
    let hold = between(rng, config.hold);
    let kind = config.kinds[rng.random_range(0..config.kinds.len())];
    (quiet, hold, pick(kind, n, rng))
}

/// The first `count` faults a seed gives (with `kinds` not empty).
pub fn preview(config: &NemesisConfig, n: usize, seed: u64, count: usize) -> Vec<Fault> {
    use rand::SeedableRng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count).map(|_| next(config, n, &mut rng).2).collect()
}

/// Runs the schedule until `until`, then ends every fault. Fault windows
/// are in ns since `start`.
pub async fn run(
    cluster: &mut Cluster,
    config: &NemesisConfig,
    rng: &mut ChaCha8Rng,
    start: Instant,
    until: Instant,
) -> Result<Vec<FaultWindow>, JepsenError> {
    let mut windows = Vec::new();
    let at = |t: Instant| t.duration_since(start).as_nanos() as u64;
    if config.kinds.is_empty() {
        tokio::time::sleep_until(until.into()).await;
        return Ok(windows);
    }
    loop {
        let (quiet, hold, fault) = next(config, cluster.members.len(), rng);
        if Instant::now() + quiet + hold > until {
            break;
        }
        tokio::time::sleep(quiet).await;
        let began = Instant::now();
        let (kind, target) = apply(cluster, &fault).await?;
        tokio::time::sleep(hold).await;
        cluster.recover().await?;
        windows.push(FaultWindow {
            kind,
            target,
            start: at(began),
            end: at(Instant::now()),
        });
    }
    tokio::time::sleep_until(until.into()).await;
    Ok(windows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_seed_reproduces_the_schedule() {
        let schedule = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..20)
                .map(|i| {
                    let kind = [FaultKind::Kill, FaultKind::Pause, FaultKind::Partition][i % 3];
                    pick(kind, 5, &mut rng)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(schedule(7), schedule(7));
        assert_ne!(schedule(7), schedule(8));
    }

    #[test]
    fn partitions_have_the_shapes_they_are_named_after() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            match pick(FaultKind::Partition, 5, &mut rng) {
                Fault::Partition { name, groups } => {
                    let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
                    match name.as_str() {
                        "isolate" => assert_eq!(sizes, [1, 4]),
                        _ => assert_eq!(sizes, [3, 2]),
                    }
                    seen.insert(name);
                }
                Fault::Cut { name, links } if name == "ring" => {
                    // 5 members, 10 links, a ring keeps 5.
                    assert_eq!(links.len(), 5);
                    seen.insert(name);
                }
                Fault::Cut { name, links } => {
                    // Halves of 2 and 2: 4 links cut, the bridge keeps its own.
                    assert_eq!(links.len(), 4);
                    let bridge: usize = name.trim_start_matches("bridge via n").parse().unwrap();
                    assert!(links
                        .iter()
                        .all(|&(a, b)| a + 1 != bridge && b + 1 != bridge));
                    seen.insert("bridge".into());
                }
                Fault::IsolateLeader => {
                    seen.insert("leader".into());
                }
                other => panic!("not a partition: {other:?}"),
            }
        }
        assert_eq!(seen.len(), 5, "{seen:?}");
    }

    #[test]
    fn wal_damage_is_one_member_and_bounded() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for _ in 0..50 {
            match pick(FaultKind::Wal, 3, &mut rng) {
                Fault::DamageWal { member, damage } => {
                    assert!(member < 3);
                    assert!(damage.cut <= wal::MAX_CUT && damage.garbage.len() <= 24);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn link_and_clock_faults_stay_in_their_bounds() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut targets = std::collections::BTreeSet::new();
        for _ in 0..100 {
            for kind in [FaultKind::Slow, FaultKind::Lossy, FaultKind::Clock] {
                match pick(kind, 3, &mut rng) {
                    Fault::SlowLinks {
                        members,
                        delay_ms,
                        jitter_ms,
                    } => {
                        assert!((20..=400).contains(&delay_ms) && jitter_ms <= delay_ms);
                        targets.insert(members.len());
                    }
                    Fault::LossyLinks { members, loss_pct } => {
                        assert!((5..=40).contains(&loss_pct));
                        targets.insert(members.len());
                    }
                    Fault::ShiftClock { member, offset_s } => {
                        assert!(member < 3 && offset_s != 0 && offset_s.abs() <= 3600);
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        // One member's links, or every member's.
        assert_eq!(targets, [1, 3].into_iter().collect());
    }

    #[test]
    fn removed_members_come_back_as_voters_or_learners() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let ways: std::collections::BTreeSet<bool> = (0..50)
            .map(|_| match pick(FaultKind::Member, 3, &mut rng) {
                Fault::RemoveMember { member, as_learner } => {
                    assert!(member < 3);
                    as_learner
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ways.len(), 2);
    }

    #[test]
    fn power_cuts_take_one_member_or_all_torn_or_not() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            match pick(FaultKind::Power, 3, &mut rng) {
                Fault::PowerCut { members, tear } => {
                    assert!(members.iter().all(|&m| m < 3));
                    seen.insert((members.len(), tear));
                }
                other => panic!("{other:?}"),
            }
        }
        let all: std::collections::BTreeSet<_> = [(1, false), (1, true), (3, false), (3, true)]
            .into_iter()
            .collect();
        assert_eq!(seen, all);
        assert_eq!("power".parse::<FaultKind>().unwrap(), FaultKind::Power);
    }

    #[test]
    fn kills_take_one_a_majority_or_all() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut sizes = std::collections::BTreeSet::new();
        for _ in 0..100 {
            if let Fault::Kill(members) = pick(FaultKind::Kill, 3, &mut rng) {
                let mut unique = members.clone();
                unique.sort();
                unique.dedup();
                assert_eq!(unique.len(), members.len());
                sizes.insert(members.len());
            }
        }
        assert_eq!(sizes, [1, 2, 3].into_iter().collect());
    }
}
