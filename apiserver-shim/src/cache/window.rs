//! The window of recent events a watch cache keeps, bounded as
//! kube-apiserver's watchCache bounds it: at most `max` events; above `min`
//! only while they are younger than [`FRESH`] (its eventFreshDuration), so
//! that a quiet resource keeps a short tail and a busy one at least 75 s of
//! history, up to `max`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::event::CachedEvent;

/// kube-apiserver's eventFreshDuration: events this young are kept while
/// the window has room.
pub const FRESH: Duration = Duration::from_secs(75);

pub struct Window {
    events: VecDeque<Arc<CachedEvent>>,
    /// Every event after this revision is in the window (the list revision
    /// the cache was built at, or the last evicted event's).
    start: i64,
    min: usize,
    max: usize,
}

/// A watch from before the window: `start` is the oldest revision a watch
/// may still start from.
#[derive(Debug, PartialEq)]
pub struct TooOld {
    pub start: i64,
}

impl Window {
    /// An empty window of a cache built at `revision`.
    pub fn new(revision: i64, min: usize, max: usize) -> Self {
        Self {
            events: VecDeque::new(),
            start: revision,
            min,
            max: max.max(min),
        }
    }

    pub fn push(&mut self, event: Arc<CachedEvent>, now: Instant) {
        self.events.push_back(event);
        while let Some(oldest) = self.events.front() {
            let over = self.events.len() > self.max
                || (self.events.len() > self.min && now.duration_since(oldest.at) > FRESH);
            if !over {
                break;
            }
            self.start = oldest.revision;
            self.events.pop_front();
        }
    }

    /// The events after `revision`, oldest first.
    pub fn since(&self, revision: i64) -> Result<Vec<Arc<CachedEvent>>, TooOld> {
        if revision < self.start {
            return Err(TooOld { start: self.start });
        }
        let first = self.events.partition_point(|e| e.revision <= revision);
        Ok(self.events.iter().skip(first).cloned().collect())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(revision: i64, at: Instant) -> Arc<CachedEvent> {
        Arc::new(CachedEvent::deleted_for_test(revision, at))
    }

    #[test]
    fn the_window_keeps_max_events_and_says_where_it_starts() {
        let now = Instant::now();
        let mut w = Window::new(10, 2, 3);
        for r in 11..=15 {
            w.push(ev(r, now), now);
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.since(11).err(), Some(TooOld { start: 12 }));
        let revs: Vec<i64> = w.since(12).unwrap().iter().map(|e| e.revision).collect();
        assert_eq!(revs, [13, 14, 15]);
        assert!(w.since(15).unwrap().is_empty());
        // A future revision has nothing to replay (yet).
        assert!(w.since(99).unwrap().is_empty());
    }

    #[test]
    fn events_above_min_go_when_older_than_fresh() {
        let old = Instant::now();
        let later = old + FRESH + Duration::from_secs(1);
        let mut w = Window::new(0, 1, 100);
        w.push(ev(1, old), old);
        w.push(ev(2, old), old);
        assert_eq!(w.len(), 2);
        w.push(ev(3, later), later);
        // Both stale events go; the fresh one stays.
        assert_eq!(w.len(), 1);
        assert_eq!(w.since(1).err(), Some(TooOld { start: 2 }));
        assert!(w.since(2).is_ok());
    }
}
