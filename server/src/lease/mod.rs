//! Leases: the lessor (what the applier and the leader keep of every lease)
//! and the leader's duty of expiring them through the log.

mod expiry;
mod lessor;

pub use expiry::run_leader_duties;
pub use lessor::{KeyChange, Lessor, Renewal, TimeToLive};

use bytes::Bytes;
use oxetcd_storage::{KeyRange, RangeOptions, Store};

use crate::error::EtcdError;

/// Keys read per step while recovering attachments.
const RECOVER_PAGE: usize = 10_000;

/// Rebuilds `lessor` from `store`: its lease records, and the lease of every
/// live key (the key-values carry it, as in etcd).
pub fn recover(lessor: &Lessor, store: &Store) -> Result<(), EtcdError> {
    let records = store.lease_records()?;
    let mut leased = Vec::new();
    if !records.is_empty() {
        let mut from = Bytes::from_static(b"\0");
        loop {
            let page = store.range(
                KeyRange::new(&from, &[0]),
                &RangeOptions {
                    limit: RECOVER_PAGE,
                    // Latest: nothing is applied while this runs.
                    rev: 0,
                    count_only: false,
                },
            )?;
            let Some(last) = page.kvs.last() else { break };
            let mut next = last.key.to_vec();
            next.push(0);
            let done = page.kvs.len() < RECOVER_PAGE;
            leased.extend(
                page.kvs
                    .into_iter()
                    .filter(|kv| kv.lease != 0)
                    .map(|kv| (kv.key, kv.lease)),
            );
            if done {
                break;
            }
            from = Bytes::from(next);
        }
    }
    lessor.recover(records, leased)
}
