//! Key writes that arrive together go into the log together: one entry, one
//! append and fsync, one replication message and one store batch for a whole
//! batch, instead of one of each per write. Raft's cost per entry (and
//! sled's per batch) is what bounded write throughput; a write's own cost is
//! small.
//!
//! One batch is in flight at a time. A write that arrives while none is
//! goes at once, alone: a lone client sees no delay. Under load, writes
//! gather while the batch in flight commits and applies, and the next batch
//! takes all of them:
//!
//! ```text
//! clients:  w1        w2 w3 w4       w5 w6 w7
//! log:      [w1]      [w2 w3 w4]     [w5 w6 w7]
//!           ^ alone   ^ waited for [w1] to apply
//! ```
//!
//! Why not more in flight: when this was measured, openraft's core waited
//! for the leader's fsync of an entry before replicating it (our patched
//! openraft no longer does: raft/vendor/openraft/OXETCD-PATCH.md), so a second
//! batch in flight only split the next one in two. Measured on 3 members
//! (put, 100 clients): 8,024 writes/s with one in flight, 7,118 with two,
//! 5,171 with eight; on one member 18,065 with one, 14,638 with two.
//!
//! Batches are handed to Raft in arrival order; each write of a batch gets
//! its own revision and its own result.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use openraft::error::{ClientWriteError, Fatal, RaftError};
use openraft::{BasicNode, Raft};
use oxetcd_raft::{NodeId, PeerError, TypeConfig};
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use crate::command::{Command, Outcomes};

/// A batch takes at most this many writes...
const MAX_BATCH_WRITES: usize = 512;
/// ...and stops growing past this many bytes of commands (a single bigger
/// write goes alone), keeping replication messages moderate.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// Why a write got no result.
#[derive(Clone, Debug, thiserror::Error)]
pub(super) enum WriteError {
    #[error("{0}")]
    Raft(Box<RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>),
    /// The batch's results did not match its writes: a bug, never retried.
    #[error("a batch's apply results do not match its writes: {0}")]
    Garbled(String),
}

impl From<RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>> for WriteError {
    fn from(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Self {
        WriteError::Raft(Box::new(e))
    }
}

impl From<WriteError> for PeerError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Raft(e) => (*e).into(),
            WriteError::Garbled(_) => PeerError::Rejected(e.to_string()),
        }
    }
}

/// A write's encoded `Outcome` once applied.
type Written = Result<Bytes, WriteError>;
type Pending = Pin<Box<dyn Future<Output = Written> + Send>>;

/// Where batches go: the Raft log, or a test's stand-in.
pub(super) trait Log: Send + Sync + 'static {
    /// Hands `command` to the log, in call order; the returned future
    /// resolves with the applied result.
    fn submit(&self, command: Bytes) -> impl Future<Output = Result<Pending, WriteError>> + Send;
}

impl Log for Raft<TypeConfig> {
    async fn submit(&self, command: Bytes) -> Result<Pending, WriteError> {
        let applied = self
            .client_write_ff(oxetcd_raft::Request(command))
            .await
            .map_err(|fatal| WriteError::from(RaftError::Fatal(fatal)))?;
        Ok(Box::pin(async move {
            match applied.await {
                Ok(Ok(written)) => Ok(written.data.0),
                Ok(Err(refused)) => Err(RaftError::APIError(refused).into()),
                // Raft dropped the write unanswered: it is stopping.
                Err(_) => Err(RaftError::Fatal(Fatal::Stopped).into()),
            }
        }))
    }
}

struct Proposal {
    command: Bytes,
    reply: oneshot::Sender<Written>,
}

/// Hands key writes to the task that batches them; the task ends when this
/// is dropped.
pub(super) struct Proposals {
    queue: mpsc::UnboundedSender<Proposal>,
}

impl Proposals {
    pub(super) fn spawn(log: impl Log) -> Self {
        let (queue, arrived) = mpsc::unbounded_channel();
        tokio::spawn(run(log, arrived));
        Self { queue }
    }

    /// Proposes `command` (an encoded `Command` holding one key write) and
    /// returns its encoded `Outcome` once applied.
    pub(super) async fn write(&self, command: Bytes) -> Written {
        let (reply, result) = oneshot::channel();
        let stopped = || WriteError::from(RaftError::Fatal(Fatal::Stopped));
        self.queue
            .send(Proposal { command, reply })
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

async fn run<L: Log>(log: L, mut arrived: mpsc::UnboundedReceiver<Proposal>) {
    while let Some(first) = arrived.recv().await {
        let batch = gather(first, &mut arrived);
        if batch.is_empty() {
            continue;
        }
        let written = match log.submit(encode(&batch)).await {
            Ok(pending) => pending.await,
            Err(e) => Err(e),
        };
        deliver(batch, written);
    }
}

/// `first` and what else has arrived, within the limits. Writes whose caller
/// gave up are left out: never proposed, they never happen.
fn gather(first: Proposal, arrived: &mut mpsc::UnboundedReceiver<Proposal>) -> Vec<Proposal> {
    let mut bytes = first.command.len();
    let mut batch = Vec::new();
    if !first.reply.is_closed() {
        batch.push(first);
    }
    while batch.len() < MAX_BATCH_WRITES && bytes < MAX_BATCH_BYTES {
        let Ok(next) = arrived.try_recv() else {
            break;
        };
        if next.reply.is_closed() {
            continue;
        }
        bytes += next.command.len();
        batch.push(next);
    }
    batch
}

/// A lone write is logged as itself; several as one batch command.
fn encode(batch: &[Proposal]) -> Bytes {
    match batch {
        [one] => one.command.clone(),
        _ => Command {
            request: None,
            batch: batch.iter().map(|p| p.command.clone()).collect(),
        }
        .encode_to_vec()
        .into(),
    }
}

fn deliver(batch: Vec<Proposal>, written: Written) {
    if batch.len() == 1 {
        if let Some(p) = batch.into_iter().next() {
            let _ = p.reply.send(written);
        }
        return;
    }
    let outcomes = written.and_then(|raw| {
        let outcomes = Outcomes::decode(raw)
            .map_err(|e| WriteError::Garbled(e.to_string()))?
            .outcomes;
        if outcomes.len() == batch.len() {
            Ok(outcomes)
        } else {
            Err(WriteError::Garbled(format!(
                "{} results for {} writes",
                outcomes.len(),
                batch.len()
            )))
        }
    });
    match outcomes {
        Ok(outcomes) => {
            for (p, outcome) in batch.into_iter().zip(outcomes) {
                // A caller that gave up is simply not answered.
                let _ = p.reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            for p in batch {
                let _ = p.reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use oxetcd_proto::etcdserverpb::PutRequest;
    use parking_lot::Mutex;

    use super::*;
    use crate::command::{Outcome, Request};

    /// Each command submitted, with its answer channel until taken.
    type Submitted = Vec<(Bytes, Option<oneshot::Sender<Written>>)>;

    /// Stands in for Raft: records what was submitted and answers only when
    /// the test says so.
    #[derive(Clone, Default)]
    struct FakeLog {
        submitted: Arc<Mutex<Submitted>>,
    }

    impl Log for FakeLog {
        async fn submit(&self, command: Bytes) -> Result<Pending, WriteError> {
            let (tx, rx) = oneshot::channel();
            self.submitted.lock().push((command, Some(tx)));
            Ok(Box::pin(async move {
                rx.await
                    .unwrap_or(Err(WriteError::Garbled("dropped".to_string())))
            }))
        }
    }

    impl FakeLog {
        /// Waits until `n` commands were submitted; returns the last one's
        /// writes (a lone write is its own list) and its answer channel.
        async fn nth(&self, n: usize) -> (Vec<Bytes>, oneshot::Sender<Written>) {
            loop {
                {
                    let mut submitted = self.submitted.lock();
                    if let Some((command, answer)) = submitted.get_mut(n - 1) {
                        let answer = answer.take().expect("each answer is taken once");
                        let command = command.clone();
                        let decoded = Command::decode(command.clone()).unwrap();
                        let writes = if decoded.batch.is_empty() {
                            vec![command]
                        } else {
                            decoded.batch
                        };
                        return (writes, answer);
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    fn put(key: &str) -> Bytes {
        Command::from(Request::Put(PutRequest {
            key: Bytes::from(key.to_string()),
            ..Default::default()
        }))
        .encode_to_vec()
        .into()
    }

    /// What the state machine answers for `writes`: each write's own bytes
    /// as its "outcome", so the test sees who got what.
    fn echo(writes: &[Bytes]) -> Bytes {
        Outcomes {
            outcomes: writes.to_vec(),
        }
        .encode_to_vec()
        .into()
    }

    fn spawn_write(p: &Arc<Proposals>, command: Bytes) -> tokio::task::JoinHandle<Written> {
        let p = p.clone();
        tokio::spawn(async move { p.write(command).await })
    }

    #[tokio::test]
    async fn a_lone_write_goes_alone_and_writes_meanwhile_go_together_in_order() {
        let log = FakeLog::default();
        let proposals = Arc::new(Proposals::spawn(log.clone()));
        let first = spawn_write(&proposals, put("a"));
        let (writes, answer) = log.nth(1).await;
        assert_eq!(writes, vec![put("a")], "logged as itself");
        // These arrive while "a" is in flight: they wait, then go as one.
        let rest: Vec<_> = ["b", "c", "d"]
            .iter()
            .map(|k| {
                let h = spawn_write(&proposals, put(k));
                std::thread::sleep(Duration::from_millis(5));
                h
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            log.submitted.lock().len(),
            1,
            "nothing more while one is in flight"
        );
        let lone = Outcome::default().encode_to_vec();
        answer.send(Ok(lone.clone().into())).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), Bytes::from(lone));
        let (writes, answer) = log.nth(2).await;
        assert_eq!(writes, vec![put("b"), put("c"), put("d")]);
        answer.send(Ok(echo(&writes))).unwrap();
        for (h, k) in rest.into_iter().zip(["b", "c", "d"]) {
            assert_eq!(
                h.await.unwrap().unwrap(),
                put(k),
                "each gets its own outcome"
            );
        }
    }

    #[tokio::test]
    async fn a_refusal_or_a_garbled_answer_reaches_every_write_of_the_batch() {
        let log = FakeLog::default();
        let proposals = Arc::new(Proposals::spawn(log.clone()));
        let first = spawn_write(&proposals, put("a"));
        let (_, answer) = log.nth(1).await;
        let waiting: Vec<_> = ["b", "c"]
            .iter()
            .map(|k| spawn_write(&proposals, put(k)))
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        answer
            .send(Err(RaftError::Fatal(Fatal::Stopped).into()))
            .unwrap();
        assert!(matches!(first.await.unwrap(), Err(WriteError::Raft(_))));
        let (writes, answer) = log.nth(2).await;
        assert_eq!(writes.len(), 2);
        // One outcome for two writes: nobody may get someone else's.
        answer.send(Ok(echo(&writes[..1]))).unwrap();
        for h in waiting {
            assert!(matches!(h.await.unwrap(), Err(WriteError::Garbled(_))));
        }
    }

    #[tokio::test]
    async fn a_write_whose_caller_gave_up_is_never_proposed() {
        let log = FakeLog::default();
        let proposals = Arc::new(Proposals::spawn(log.clone()));
        let first = spawn_write(&proposals, put("a"));
        let (_, answer) = log.nth(1).await;
        let abandoned = spawn_write(&proposals, put("gone"));
        let kept = spawn_write(&proposals, put("kept"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        abandoned.abort();
        let _ = abandoned.await;
        answer.send(Ok(Bytes::new())).unwrap();
        first.await.unwrap().unwrap();
        let (writes, answer) = log.nth(2).await;
        assert_eq!(writes, vec![put("kept")]);
        answer.send(Ok(Bytes::from_static(b"k"))).unwrap();
        assert_eq!(kept.await.unwrap().unwrap(), Bytes::from_static(b"k"));
    }

    #[tokio::test]
    async fn a_batch_stops_at_its_write_and_byte_limits() {
        let log = FakeLog::default();
        let proposals = Arc::new(Proposals::spawn(log.clone()));
        let first = spawn_write(&proposals, put("a"));
        let (_, answer) = log.nth(1).await;
        let many: Vec<_> = (0..MAX_BATCH_WRITES + 3)
            .map(|i| spawn_write(&proposals, put(&format!("k{i}"))))
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        answer.send(Ok(Bytes::new())).unwrap();
        first.await.unwrap().unwrap();
        let (writes, answer) = log.nth(2).await;
        assert_eq!(writes.len(), MAX_BATCH_WRITES);
        answer.send(Ok(echo(&writes))).unwrap();
        let (writes, answer) = log.nth(3).await;
        assert_eq!(writes.len(), 3, "the rest goes next");
        answer.send(Ok(echo(&writes))).unwrap();
        for h in many {
            h.await.unwrap().unwrap();
        }
        // Big writes: the batch closes once it passes the byte limit.
        let big = |k: &str| -> Bytes {
            Command::from(Request::Put(PutRequest {
                key: Bytes::from(k.to_string()),
                value: Bytes::from(vec![b'v'; MAX_BATCH_BYTES / 2]),
                ..Default::default()
            }))
            .encode_to_vec()
            .into()
        };
        let first = spawn_write(&proposals, put("z"));
        let (_, answer) = log.nth(4).await;
        let bigs: Vec<_> = ["x", "y", "w"]
            .iter()
            .map(|k| spawn_write(&proposals, big(k)))
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        answer.send(Ok(Bytes::new())).unwrap();
        first.await.unwrap().unwrap();
        let (writes, answer) = log.nth(5).await;
        assert_eq!(writes.len(), 2, "two halves reach the limit");
        answer.send(Ok(echo(&writes))).unwrap();
        let (writes, answer) = log.nth(6).await;
        assert_eq!(writes.len(), 1);
        answer.send(Ok(echo(&writes))).unwrap();
        for h in bigs {
            h.await.unwrap().unwrap();
        }
    }
}
