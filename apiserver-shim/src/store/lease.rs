//! Leases for objects with a TTL (events, --event-ttl), shared as
//! kube-apiserver's etcd3/lease_manager.go shares them: a lease is granted
//! for ttl plus a reuse window (5% of ttl, at most 60 s) and handed to every
//! object written while it still outlives now + ttl, up to 1000 objects, so
//! a burst of events costs one LeaseGrant, not one each. An object then
//! lives between ttl and ttl + window.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::{Store, StoreError};

/// kube-apiserver's defaults (storagebackend/config.go).
const REUSE_PERCENT: f64 = 0.05;
const REUSE_MAX_SECONDS: i64 = 60;
const MAX_ATTACHED: u32 = 1000;

/// The lease last granted.
#[derive(Debug)]
struct Current {
    id: i64,
    expires: Instant,
    attached: u32,
}

/// Hands out leases; one per API server.
#[derive(Debug, Default)]
pub struct Leases {
    /// The lease being reused. Held across a grant, so that concurrent
    /// writers wait for one grant rather than each asking for its own.
    current: Mutex<Option<Current>>,
}

/// The lease's extra life beyond `ttl`.
fn reuse_window(ttl: i64) -> i64 {
    ((REUSE_PERCENT * ttl as f64) as i64).min(REUSE_MAX_SECONDS)
}

impl Leases {
    /// A lease ID for an object that must live `ttl`.
    pub async fn lease(&self, store: &dyn Store, ttl: Duration) -> Result<i64, StoreError> {
        let ttl = ttl.as_secs() as i64;
        let now = Instant::now();
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_mut() {
            let valid = now + Duration::from_secs(ttl as u64) < c.expires;
            if valid && c.attached <= MAX_ATTACHED {
                c.attached += 1;
                return Ok(c.id);
            }
        }
        let granted = ttl + reuse_window(ttl);
        let id = store.grant_lease(granted).await?;
        *current = Some(Current {
            id,
            expires: now + Duration::from_secs(granted as u64),
            attached: 1,
        });
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reuse_window_is_five_percent_up_to_a_minute() {
        assert_eq!(reuse_window(3600), 60);
        assert_eq!(reuse_window(600), 30);
        assert_eq!(reuse_window(10), 0);
    }
}
