//! Notices a writer that has been stuck on one group of commands for too long.
//!
//! sled 0.34 can deadlock inside its segment accountant under ordinary writes
//! (seen in our benchmarks; upstream spacejam/sled#1412). A member whose only
//! writer is stuck serves no write ever again, so the server's action is to
//! exit and let a supervisor restart it: every acknowledged write is already
//! durable, so nothing is lost. Started only for an engine whose writer may
//! hang (`Backend::writer_may_hang`: sled, not redb).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one group of commands may take before the writer counts as stuck.
/// Far beyond any healthy fsync; tests use shorter limits.
pub const STUCK_WRITER: Duration = Duration::from_secs(60);

pub struct Watchdog {
    epoch: Instant,
    /// Milliseconds since `epoch` when the current group started, plus one;
    /// 0 while the writer is idle.
    busy_since: AtomicU64,
}

/// Marks the writer busy until dropped.
pub struct Busy<'a>(&'a Watchdog);

impl Watchdog {
    /// Starts a thread that calls `on_stuck` (with how long the writer has been
    /// busy) once a group has taken longer than `limit`.
    pub fn start(
        limit: Duration,
        on_stuck: impl Fn(Duration) + Send + 'static,
    ) -> std::io::Result<Arc<Self>> {
        let dog = Arc::new(Self {
            epoch: Instant::now(),
            busy_since: AtomicU64::new(0),
        });
        let watched = dog.clone();
        let tick = (limit / 4).max(Duration::from_millis(10));
        std::thread::Builder::new()
            .name("oxetcd-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(tick);
                if let Some(busy) = watched.busy_for() {
                    if busy > limit {
                        on_stuck(busy);
                        return;
                    }
                }
            })?;
        Ok(dog)
    }

    pub fn busy(&self) -> Busy<'_> {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        self.busy_since.store(now, Ordering::Release);
        Busy(self)
    }

    fn busy_for(&self) -> Option<Duration> {
        match self.busy_since.load(Ordering::Acquire) {
            0 => None,
            since => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(since - 1)),
            ),
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy_since.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn fires_only_for_a_group_that_takes_too_long() {
        let (tx, rx) = mpsc::channel();
        let dog = Watchdog::start(Duration::from_millis(200), move |busy| {
            let _ = tx.send(busy);
        })
        .unwrap();
        for _ in 0..5 {
            let _busy = dog.busy();
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            rx.try_recv().is_err(),
            "short groups and idle time are fine"
        );
        let _stuck = dog.busy();
        let busy = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("a stuck writer is noticed");
        assert!(busy > Duration::from_millis(200));
    }
}
