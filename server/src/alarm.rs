//! Alarms: which member raised which alarm (etcd's AlarmStore).
//!
//! An alarm is replicated state: it is raised and disarmed by a command
//! through the log ([`Request::Alarm`](crate::command::Request)), applied on
//! every member in log order, and stored beside the data as a cluster record
//! (`alarm/<member>/<type>`), so it survives restarts and travels in
//! snapshots, as etcd keeps alarms in its backend. While one is active the
//! applier refuses what etcd's does (see `apply`): with NOSPACE, writes that
//! grow the store; with CORRUPT, every client write.
//!
//! The applier and the request path ask "is NOSPACE active?" on every write:
//! that is an atomic load; the set behind it is locked only by an alarm
//! command or a listing.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::alarm_request::AlarmAction;
use oxetcd_proto::etcdserverpb::{AlarmMember, AlarmRequest, AlarmResponse, AlarmType};
use oxetcd_storage::Store;
use parking_lot::Mutex;
use prost::Message;
use tracing::warn;

use crate::error::EtcdError;

/// Cluster records of alarms: `alarm/<member id, 16 hex digits>/<type>`.
const RECORD_PREFIX: &str = "alarm/";

fn record_key(member_id: u64, alarm: i32) -> String {
    format!("{RECORD_PREFIX}{member_id:016x}/{alarm}")
}

/// The alarms in force, as the last applied entry left them.
#[derive(Default)]
pub struct Alarms {
    /// (member ID, alarm type), in that order.
    active: Mutex<BTreeSet<(u64, i32)>>,
    no_space: AtomicBool,
    corrupt: AtomicBool,
}

impl Alarms {
    /// The alarms recorded in `store`.
    pub fn load(store: &Store) -> Result<Self, EtcdError> {
        let alarms = Alarms::default();
        alarms.reload(store)?;
        Ok(alarms)
    }

    /// Reads the alarms from `store` again (after a snapshot replaced it).
    pub fn reload(&self, store: &Store) -> Result<(), EtcdError> {
        let mut active = BTreeSet::new();
        for (key, raw) in store.cluster_records(RECORD_PREFIX)? {
            let member = AlarmMember::decode(raw)
                .map_err(|e| EtcdError::Storage(format!("alarm record {key}: {e}")))?;
            active.insert((member.member_id, member.alarm));
        }
        let mut set = self.active.lock();
        *set = active;
        self.publish_flags(&set);
        Ok(())
    }

    /// Whether a NOSPACE alarm is active (on any member).
    pub fn no_space(&self) -> bool {
        self.no_space.load(Ordering::Relaxed)
    }

    /// Whether a CORRUPT alarm is active (on any member).
    pub fn corrupt(&self) -> bool {
        self.corrupt.load(Ordering::Relaxed)
    }

    /// Whether `member_id` has raised `alarm`.
    pub fn has(&self, member_id: u64, alarm: AlarmType) -> bool {
        self.active.lock().contains(&(member_id, alarm as i32))
    }

    /// The active alarms of type `alarm`; every one for `AlarmType::None`.
    pub fn list(&self, alarm: AlarmType) -> Vec<AlarmMember> {
        self.active
            .lock()
            .iter()
            .filter(|(_, a)| alarm == AlarmType::None || *a == alarm as i32)
            .map(|&(member_id, alarm)| AlarmMember { member_id, alarm })
            .collect()
    }

    /// Applies an alarm command, as etcd's applier: GET lists, ACTIVATE
    /// raises (and answers the alarm, new or not), DEACTIVATE disarms and
    /// answers what it disarmed. A member ID of 0 in a DEACTIVATE means every
    /// member, and the type NONE every type (etcdctl's `alarm disarm` sends
    /// one DEACTIVATE per listed alarm; other clients may send one for all).
    pub(crate) fn apply(
        &self,
        store: &Store,
        req: &AlarmRequest,
    ) -> Result<AlarmResponse, EtcdError> {
        let alarm = AlarmType::try_from(req.alarm).unwrap_or(AlarmType::None);
        let mut set = self.active.lock();
        let alarms = match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Get) => {
                drop(set);
                return Ok(AlarmResponse {
                    header: None,
                    alarms: self.list(alarm),
                });
            }
            Ok(AlarmAction::Activate) if alarm != AlarmType::None => {
                let member = AlarmMember {
                    member_id: req.member_id,
                    alarm: req.alarm,
                };
                if !set.contains(&(req.member_id, req.alarm)) {
                    store.put_cluster_record(
                        &record_key(req.member_id, req.alarm),
                        Bytes::from(member.encode_to_vec()),
                    )?;
                    if !set.iter().any(|(_, a)| *a == req.alarm) {
                        warn!(alarm = alarm.as_str_name(), from = %format!("{:x}", req.member_id), "alarm raised");
                    }
                    set.insert((req.member_id, req.alarm));
                }
                vec![member]
            }
            Ok(AlarmAction::Activate) => Vec::new(),
            Ok(AlarmAction::Deactivate) => {
                let matching: Vec<(u64, i32)> = set
                    .iter()
                    .filter(|(m, a)| {
                        (req.member_id == 0 || *m == req.member_id)
                            && (alarm == AlarmType::None || *a == req.alarm)
                    })
                    .copied()
                    .collect();
                for &(member_id, a) in &matching {
                    store.delete_cluster_record(&record_key(member_id, a))?;
                    set.remove(&(member_id, a));
                    if !set.iter().any(|(_, left)| *left == a) {
                        let name = AlarmType::try_from(a).map_or("UNKNOWN", |t| t.as_str_name());
                        warn!(alarm = name, from = %format!("{member_id:x}"), "alarm disarmed");
                    }
                }
                matching
                    .into_iter()
                    .map(|(member_id, alarm)| AlarmMember { member_id, alarm })
                    .collect()
            }
            Err(_) => return Err(EtcdError::UnknownAlarmAction),
        };
        self.publish_flags(&set);
        Ok(AlarmResponse {
            header: None,
            alarms,
        })
    }

    fn publish_flags(&self, set: &BTreeSet<(u64, i32)>) {
        let any = |t: AlarmType| set.iter().any(|(_, a)| *a == t as i32);
        self.no_space
            .store(any(AlarmType::Nospace), Ordering::Relaxed);
        self.corrupt
            .store(any(AlarmType::Corrupt), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxetcd_storage::SledBackend;

    fn store(dir: &std::path::Path) -> Store {
        Store::open(Box::new(SledBackend::open(dir, 1 << 20).unwrap())).unwrap()
    }

    fn req(action: AlarmAction, member_id: u64, alarm: AlarmType) -> AlarmRequest {
        AlarmRequest {
            action: action as i32,
            member_id,
            alarm: alarm as i32,
        }
    }

    #[test]
    fn alarms_are_raised_listed_disarmed_and_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let alarms = Alarms::load(&store).unwrap();
        assert!(!alarms.no_space());
        let raised = alarms
            .apply(&store, &req(AlarmAction::Activate, 7, AlarmType::Nospace))
            .unwrap();
        assert_eq!(raised.alarms.len(), 1);
        alarms
            .apply(&store, &req(AlarmAction::Activate, 9, AlarmType::Nospace))
            .unwrap();
        alarms
            .apply(&store, &req(AlarmAction::Activate, 9, AlarmType::Corrupt))
            .unwrap();
        assert!(alarms.no_space() && alarms.corrupt());
        assert_eq!(alarms.list(AlarmType::Nospace).len(), 2);
        assert_eq!(alarms.list(AlarmType::None).len(), 3);

        // Stored: a reload (a restart) finds them.
        let again = Alarms::load(&store).unwrap();
        assert_eq!(again.list(AlarmType::None), alarms.list(AlarmType::None));
        assert!(again.no_space());

        // One member's alarm, then every member's (member 0).
        let one = alarms
            .apply(&store, &req(AlarmAction::Deactivate, 7, AlarmType::Nospace))
            .unwrap();
        assert_eq!(one.alarms[0].member_id, 7);
        assert!(alarms.no_space(), "member 9's NOSPACE is still active");
        let all = alarms
            .apply(&store, &req(AlarmAction::Deactivate, 0, AlarmType::Nospace))
            .unwrap();
        assert_eq!(all.alarms.len(), 1);
        assert!(!alarms.no_space() && alarms.corrupt());
        assert_eq!(Alarms::load(&store).unwrap().list(AlarmType::None).len(), 1);
        // Activating NONE raises nothing, as in etcd.
        let none = alarms
            .apply(&store, &req(AlarmAction::Activate, 7, AlarmType::None))
            .unwrap();
        assert!(none.alarms.is_empty());
    }
}
