//! Linearizable reads share ReadIndex rounds, as etcd's read loop does:
//! every read that arrives while a round is in flight waits for the next
//! one, which answers all of them. A round that starts after a read arrived
//! confirms leadership after it, so its index covers every write the read
//! must see; one round per batch instead of one per read keeps a thousand
//! concurrent reads from being a thousand heartbeat rounds.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::error::EtcdError;

/// Why a round found no read index; cloned to every read of the round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum RoundError {
    /// No leader, or this one lost its quorum: the read may try again.
    NoLeader,
    /// The leader was asked but did not answer in time.
    TimedOut,
    Fatal(String),
}

impl From<RoundError> for EtcdError {
    fn from(e: RoundError) -> Self {
        match e {
            RoundError::NoLeader => EtcdError::NoLeader,
            RoundError::TimedOut => EtcdError::RequestTimedOut,
            RoundError::Fatal(message) => EtcdError::Storage(message),
        }
    }
}

type RoundResult = Result<u64, RoundError>;

/// Hands reads to the task that runs the rounds; the task ends when this is
/// dropped.
pub(super) struct ReadIndexBatcher {
    reads: mpsc::UnboundedSender<oneshot::Sender<RoundResult>>,
}

impl ReadIndexBatcher {
    /// Starts the task; `round` finds the read index once.
    pub(super) fn spawn<F, Fut>(round: F) -> Self
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = RoundResult> + Send,
    {
        let (reads, mut arrived) = mpsc::unbounded_channel::<oneshot::Sender<RoundResult>>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while let Some(first) = arrived.recv().await {
                batch.push(first);
                while let Ok(more) = arrived.try_recv() {
                    batch.push(more);
                }
                let result = round().await;
                for read in batch.drain(..) {
                    // A read whose caller gave up is simply dropped.
                    let _ = read.send(result.clone());
                }
            }
        });
        Self { reads }
    }

    /// The read index of a round that started after this call.
    pub(super) async fn read_index(&self) -> Result<u64, EtcdError> {
        let (tx, rx) = oneshot::channel();
        self.reads.send(tx).map_err(|_| EtcdError::NoLeader)?;
        rx.await
            .map_err(|_| EtcdError::NoLeader)?
            .map_err(EtcdError::from)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// Rounds that take 10 ms and answer their own sequence number.
    fn counting() -> (ReadIndexBatcher, Arc<AtomicU64>) {
        let rounds = Arc::new(AtomicU64::new(0));
        let counter = rounds.clone();
        let batcher = ReadIndexBatcher::spawn(move || {
            let started = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(started)
            }
        });
        (batcher, rounds)
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_reads_share_rounds() {
        let (batcher, rounds) = counting();
        let batcher = Arc::new(batcher);
        let reads: Vec<_> = (0..1000)
            .map(|_| {
                let b = batcher.clone();
                tokio::spawn(async move { b.read_index().await.unwrap() })
            })
            .collect();
        for read in reads {
            read.await.unwrap();
        }
        let rounds = rounds.load(Ordering::SeqCst);
        assert!((1..=3).contains(&rounds), "{rounds} rounds for 1000 reads");
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_never_joins_a_round_that_started_before_it() {
        let (batcher, rounds) = counting();
        let batcher = Arc::new(batcher);
        let first = {
            let b = batcher.clone();
            tokio::spawn(async move { b.read_index().await.unwrap() })
        };
        // Let round 1 start, then read while it is in flight.
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 1);
        let seen_before = rounds.load(Ordering::SeqCst);
        let late = batcher.read_index().await.unwrap();
        assert_eq!(first.await.unwrap(), 1);
        assert!(
            late > seen_before,
            "read got round {late}, started in round {seen_before}"
        );
    }

    #[tokio::test]
    async fn a_failed_round_fails_each_of_its_reads() {
        let batcher = ReadIndexBatcher::spawn(|| async { Err(RoundError::NoLeader) });
        assert!(matches!(
            batcher.read_index().await,
            Err(EtcdError::NoLeader)
        ));
        let batcher = ReadIndexBatcher::spawn(|| async { Err(RoundError::TimedOut) });
        assert!(matches!(
            batcher.read_index().await,
            Err(EtcdError::RequestTimedOut)
        ));
    }
}
