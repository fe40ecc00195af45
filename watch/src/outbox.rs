//! A stream's queue of deliveries: the hub puts, the stream takes. Putting
//! never blocks, so the write path never waits for a stream; the queue's
//! length is visible to the hub ([`Outbox::has_room`]) so that it can see a
//! stream fall behind and move its watchers to catch-up instead of queueing
//! more.
//!
//! A mutex-guarded `VecDeque` and the reader's waker, rather than tokio's
//! unbounded channel: one put is a short lock, a push and (when the reader
//! waits) one wake; fan-out does this for every watcher of every event.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use crate::delivery::Delivery;

#[derive(Debug, Default)]
struct Queue {
    /// The deliveries and the waker of a reader waiting for one. Held for a
    /// push or a pop only; never while waking. The hub puts while holding its
    /// own lock, so this one is taken after the hub's, never before it.
    state: Mutex<State>,
    /// `state.items.len()`, readable without the lock.
    len: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Delivery>,
    reader: Option<Waker>,
}

/// The hub's end. Cheap to clone: every watcher of a stream holds one, so
/// that fan-out reaches the stream without looking it up.
#[derive(Clone, Debug)]
pub(crate) struct Outbox {
    queue: Arc<Queue>,
}

/// The stream's end.
#[derive(Debug)]
pub(crate) struct Inbox {
    queue: Arc<Queue>,
}

pub(crate) fn channel() -> (Outbox, Inbox) {
    let queue = Arc::new(Queue::default());
    (
        Outbox {
            queue: queue.clone(),
        },
        Inbox { queue },
    )
}

impl Outbox {
    pub(crate) fn send(&self, d: Delivery) {
        let reader = {
            let mut state = self.queue.state.lock();
            state.items.push_back(d);
            self.queue.len.store(state.items.len(), Ordering::Release);
            state.reader.take()
        };
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    /// Fewer than `limit` deliveries wait in the queue.
    pub(crate) fn has_room(&self, limit: usize) -> bool {
        self.queue.len.load(Ordering::Acquire) < limit
    }
}

impl Inbox {
    /// The next delivery, and how many were queued before it was taken;
    /// `Pending` (and `cx` woken by the next put) while the queue is empty.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<(Delivery, usize)> {
        let mut state = self.queue.state.lock();
        let before = state.items.len();
        match state.items.pop_front() {
            Some(d) => {
                self.queue.len.store(before - 1, Ordering::Release);
                Poll::Ready((d, before))
            }
            None => {
                match &mut state.reader {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    reader => *reader = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

/// An outbox whose stream is gone: for tests of the parts that only hold one.
#[cfg(test)]
pub(crate) fn detached() -> Outbox {
    channel().0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::DeliveryKind;
    use std::sync::atomic::AtomicBool;
    use std::task::Wake;

    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn delivery(watch_id: i64) -> Delivery {
        Delivery {
            watch_id,
            revision: 1,
            kind: DeliveryKind::Progress,
            prev_kv: false,
            fragment: false,
        }
    }

    #[test]
    fn deliveries_come_out_in_order_and_a_waiting_reader_is_woken() {
        let (outbox, mut inbox) = channel();
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(inbox.poll_recv(&mut cx).is_pending());
        outbox.send(delivery(1));
        assert!(flag.0.load(Ordering::SeqCst), "the reader was woken");
        outbox.send(delivery(2));
        assert!(outbox.has_room(3) && !outbox.has_room(2));
        let Poll::Ready((first, before)) = inbox.poll_recv(&mut cx) else {
            panic!("a delivery is queued");
        };
        assert_eq!((first.watch_id, before), (1, 2));
        let Poll::Ready((second, before)) = inbox.poll_recv(&mut cx) else {
            panic!("a delivery is queued");
        };
        assert_eq!((second.watch_id, before), (2, 1));
        assert!(outbox.has_room(1));
        assert!(inbox.poll_recv(&mut cx).is_pending());
    }
}
