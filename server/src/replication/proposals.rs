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
//! Batches are handed to Raft in arrival order, each as one
//! [`Command::batch`] (a lone write is a batch of one); each write of a batch
//! gets its own revision and its own result.

use std::future::Future;
use std::pin::Pin;

use openraft::error::{ClientWriteError, Fatal, RaftError};
use openraft::{BasicNode, Raft};
use oxetcd_raft::NodeId;
use tokio::sync::{mpsc, oneshot};

use bytes::Bytes;

use super::TypeConfig;
use crate::command::{Applied, Command, KeyWrite, LogCommand, Response, BATCH_TAG};
use crate::error::EtcdError;

/// A batch takes at most this many writes...
const MAX_BATCH_WRITES: usize = 512;
/// ...and stops growing past this many bytes of commands (a single bigger
/// write goes alone), keeping replication messages moderate.
const MAX_BATCH_BYTES: usize = 1 << 20;

type RaftWriteError = RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>;

/// Why a write got no result.
#[derive(Debug)]
pub(super) enum WriteError {
    /// Not proposed: this member does not lead. The write comes back
    /// untouched, for the router to send where the leader is.
    NotLeader(KeyWrite),
    /// Raft failed (it stopped, or its storage did): the write's fate is
    /// unknown to this member.
    Failed(String),
}

impl WriteError {
    fn of(e: &RaftWriteError, write: KeyWrite) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                WriteError::NotLeader(write)
            }
            other => WriteError::Failed(other.to_string()),
        }
    }
}

/// A write's result once applied.
type Written = Result<Result<Response, EtcdError>, WriteError>;
type Pending = Pin<Box<dyn Future<Output = Result<Applied, RaftWriteError>> + Send>>;

/// Where batches go: the Raft log, or a test's stand-in.
pub(super) trait Log: Send + Sync + 'static {
    /// Hands `command` to the log, in call order; the returned future
    /// resolves with what applying it answered.
    fn submit(
        &self,
        command: LogCommand,
    ) -> impl Future<Output = Result<Pending, RaftWriteError>> + Send;
}

impl Log for Raft<TypeConfig> {
    async fn submit(&self, command: LogCommand) -> Result<Pending, RaftWriteError> {
        let applied = self
            .client_write_ff(command)
            .await
            .map_err(RaftError::Fatal)?;
        Ok(Box::pin(async move {
            match applied.await {
                Ok(Ok(written)) => Ok(written.data),
                Ok(Err(refused)) => Err(RaftError::APIError(refused)),
                // Raft dropped the write unanswered: it is stopping.
                Err(_) => Err(RaftError::Fatal(Fatal::Stopped)),
            }
        }))
    }
}

struct Proposal {
    write: KeyWrite,
    /// `write` encoded, by the proposer's own task: writes are encoded in
    /// parallel, and the batch's encoding is theirs put together. `write`'s
    /// fields share this buffer (see `KeyWrite::compact`).
    encoded: Bytes,
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

    /// Proposes `write` and returns its result once applied.
    pub(super) async fn write(&self, write: KeyWrite) -> Written {
        match write.compact() {
            Ok((write, encoded)) => self.write_compact(write, encoded).await,
            Err(e) => Err(WriteError::Failed(format!("a write does not decode: {e}"))),
        }
    }

    /// Proposes `write`, whose fields share `encoded`, its encoding.
    pub(super) async fn write_compact(&self, write: KeyWrite, encoded: Bytes) -> Written {
        let (reply, result) = oneshot::channel();
        let stopped = || WriteError::Failed(RaftError::<NodeId>::Fatal(Fatal::Stopped).to_string());
        self.queue
            .send(Proposal {
                write,
                encoded,
                reply,
            })
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

async fn run<L: Log>(log: L, mut arrived: mpsc::UnboundedReceiver<Proposal>) {
    while let Some(first) = arrived.recv().await {
        let (writes, encoded, replies) = gather(first, &mut arrived);
        if writes.is_empty() {
            continue;
        }
        // Kept to give the writes back if Raft refuses them unproposed.
        let command = LogCommand::with_encoding(Command::batch(writes), encoded);
        let applied = counted(replies.len(), async {
            match log.submit(command.clone()).await {
                Ok(pending) => pending.await,
                Err(e) => Err(e),
            }
        })
        .await;
        deliver(command, replies, applied);
    }
}

/// Runs the proposal of `writes` writes, counted as etcd counts its
/// proposals: pending until answered, failed when Raft gave no result (a
/// refusal for want of leadership is not a failure: the write goes on to the
/// leader).
pub(super) async fn counted<T>(
    writes: usize,
    proposal: impl Future<Output = Result<T, RaftWriteError>>,
) -> Result<T, RaftWriteError> {
    /// Takes the writes off the pending gauge however the proposal ends,
    /// its caller's giving up (a dropped future) included.
    struct Pending(i64);
    impl Drop for Pending {
        fn drop(&mut self) {
            oxetcd_metrics::server().proposals_pending.sub(self.0);
        }
    }
    let server = oxetcd_metrics::server();
    let writes = i64::try_from(writes).unwrap_or(i64::MAX);
    server.proposals_pending.add(writes);
    let pending = Pending(writes);
    let result = proposal.await;
    drop(pending);
    if let Err(e) = &result {
        if !matches!(e, RaftError::APIError(ClientWriteError::ForwardToLeader(_))) {
            server.proposals_failed_total.inc_by(writes.unsigned_abs());
        }
    }
    result
}

/// `first` and what else has arrived, within the limits: the writes, the
/// batch command's encoding (each write's as a `batch` field, which is what
/// encoding `Command::batch(writes)` gives) and the answer channels. Writes
/// whose caller gave up are left out: never proposed, they never happen.
fn gather(
    first: Proposal,
    arrived: &mut mpsc::UnboundedReceiver<Proposal>,
) -> (Vec<KeyWrite>, Bytes, Vec<oneshot::Sender<Written>>) {
    let mut bytes = first.encoded.len();
    let (mut writes, mut encoded, mut replies) = (Vec::new(), Vec::new(), Vec::new());
    let mut take = |p: Proposal| {
        if !p.reply.is_closed() {
            prost::encoding::encode_key(
                BATCH_TAG,
                prost::encoding::WireType::LengthDelimited,
                &mut encoded,
            );
            prost::encoding::encode_varint(p.encoded.len() as u64, &mut encoded);
            encoded.extend_from_slice(&p.encoded);
            writes.push(p.write);
            replies.push(p.reply);
        }
    };
    take(first);
    let mut count = 1;
    while count < MAX_BATCH_WRITES && bytes < MAX_BATCH_BYTES {
        let Ok(next) = arrived.try_recv() else {
            break;
        };
        bytes += next.encoded.len();
        count += 1;
        take(next);
    }
    (writes, Bytes::from(encoded), replies)
}

/// Each write's own result; or, when the batch got none, the same error for
/// every write (each with its write back when Raft did not take them).
fn deliver(
    command: LogCommand,
    replies: Vec<oneshot::Sender<Written>>,
    applied: Result<Applied, RaftWriteError>,
) {
    match applied {
        Ok(Applied(results)) if results.len() == replies.len() => {
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that gave up is simply not answered.
                let _ = reply.send(Ok(result));
            }
        }
        Ok(Applied(results)) => {
            // A bug: nobody may get someone else's result.
            let why = format!(
                "a batch's apply results do not match its writes: {} results for {} writes",
                results.len(),
                replies.len()
            );
            for reply in replies {
                let _ = reply.send(Err(WriteError::Failed(why.clone())));
            }
        }
        Err(e) => {
            let writes = command.into_command().batch;
            for (reply, write) in replies.into_iter().zip(writes) {
                let _ = reply.send(Err(WriteError::of(&e, write)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use oxetcd_proto::etcdserverpb::{PutRequest, PutResponse, ResponseHeader};
    use parking_lot::Mutex;
    use prost::Message;

    use super::*;
    use crate::command::{KeyWriteRequest, Request};

    type Answer = oneshot::Sender<Result<Applied, RaftWriteError>>;
    /// Each command submitted, with its answer channel until taken.
    type Submitted = Vec<(LogCommand, Option<Answer>)>;

    /// Stands in for Raft: records what was submitted and answers only when
    /// the test says so.
    #[derive(Clone, Default)]
    struct FakeLog {
        submitted: Arc<Mutex<Submitted>>,
    }

    impl Log for FakeLog {
        async fn submit(&self, command: LogCommand) -> Result<Pending, RaftWriteError> {
            let (tx, rx) = oneshot::channel();
            self.submitted.lock().push((command, Some(tx)));
            Ok(Box::pin(async move {
                rx.await.unwrap_or(Err(RaftError::Fatal(Fatal::Stopped)))
            }))
        }
    }

    impl FakeLog {
        /// Waits until `n` commands were submitted; returns the last one's
        /// keys and its answer channel.
        async fn nth(&self, n: usize) -> (Vec<String>, Answer) {
            loop {
                {
                    let mut submitted = self.submitted.lock();
                    if let Some((command, answer)) = submitted.get_mut(n - 1) {
                        let answer = answer.take().expect("each answer is taken once");
                        return (keys(command.command()), answer);
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    fn keys(command: &Command) -> Vec<String> {
        assert!(command.request.is_none(), "key writes go as a batch");
        let mut encoded = Vec::new();
        oxetcd_raft::Payload::encode(&LogCommand::new(command.clone()), &mut encoded);
        assert_eq!(
            encoded,
            command.encode_to_vec(),
            "the batch's encoding is the command's"
        );
        command
            .batch
            .iter()
            .map(|w| match &w.request {
                Some(KeyWriteRequest::Put(p)) => String::from_utf8_lossy(&p.key).into_owned(),
                other => panic!("not a put: {other:?}"),
            })
            .collect()
    }

    fn put(key: &str) -> KeyWrite {
        put_sized(key, 0)
    }

    fn put_sized(key: &str, value_bytes: usize) -> KeyWrite {
        let request = Request::Put(PutRequest {
            key: Bytes::from(key.to_string()),
            value: Bytes::from(vec![b'v'; value_bytes]),
            ..Default::default()
        });
        request.into_key_write().expect("a put is a key write")
    }

    /// What the state machine answers for `keys`: a put response whose
    /// revision is the key's position + 1, so the test sees who got what.
    fn echo(keys: &[String]) -> Applied {
        Applied(
            (0..keys.len())
                .map(|i| {
                    Ok(Response::Put(PutResponse {
                        header: Some(ResponseHeader {
                            revision: i as i64 + 1,
                            ..Default::default()
                        }),
                        prev_kv: None,
                    }))
                })
                .collect(),
        )
    }

    fn revision(written: Written) -> i64 {
        match written {
            Ok(Ok(Response::Put(p))) => p.header.map_or(0, |h| h.revision),
            other => panic!("not a put result: {other:?}"),
        }
    }

    fn spawn_write(p: &Arc<Proposals>, write: KeyWrite) -> tokio::task::JoinHandle<Written> {
        let p = p.clone();
        tokio::spawn(async move { p.write(write).await })
    }

    #[tokio::test]
    async fn a_lone_write_goes_alone_and_writes_meanwhile_go_together_in_order() {
        let log = FakeLog::default();
        let proposals = Arc::new(Proposals::spawn(log.clone()));
        let first = spawn_write(&proposals, put("a"));
        let (keys, answer) = log.nth(1).await;
        assert_eq!(keys, vec!["a"], "a batch of one");
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
        answer.send(Ok(echo(&keys))).unwrap();
        assert_eq!(revision(first.await.unwrap()), 1);
        let (keys, answer) = log.nth(2).await;
        assert_eq!(keys, vec!["b", "c", "d"]);
        answer.send(Ok(echo(&keys))).unwrap();
        for (h, want) in rest.into_iter().zip(1..) {
            assert_eq!(revision(h.await.unwrap()), want, "each gets its own result");
        }
    }

    #[tokio::test]
    async fn a_refusal_or_a_short_answer_reaches_every_write_of_the_batch() {
        let log = FakeLog::default();
        let proposals = Arc::new(Proposals::spawn(log.clone()));
        let first = spawn_write(&proposals, put("a"));
        let (_, answer) = log.nth(1).await;
        let waiting: Vec<_> = ["b", "c"]
            .iter()
            .map(|k| spawn_write(&proposals, put(k)))
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        answer.send(Err(RaftError::Fatal(Fatal::Stopped))).unwrap();
        assert!(matches!(first.await.unwrap(), Err(WriteError::Failed(_))));
        let (keys, answer) = log.nth(2).await;
        assert_eq!(keys.len(), 2);
        // One result for two writes: nobody may get someone else's.
        answer.send(Ok(echo(&keys[..1]))).unwrap();
        for h in waiting {
            assert!(matches!(h.await.unwrap(), Err(WriteError::Failed(_))));
        }
    }

    #[tokio::test]
    async fn writes_refused_for_want_of_leadership_come_back_untouched() {
        let log = FakeLog::default();
        let proposals = Arc::new(Proposals::spawn(log.clone()));
        let first = spawn_write(&proposals, put("a"));
        let (_, answer) = log.nth(1).await;
        let refused = RaftError::APIError(ClientWriteError::ForwardToLeader(
            openraft::error::ForwardToLeader::new(7, BasicNode::new("http://leader:2380")),
        ));
        answer.send(Err(refused)).unwrap();
        match first.await.unwrap() {
            Err(WriteError::NotLeader(write)) => assert_eq!(write, put("a")),
            other => panic!("expected the write back: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_write_whose_caller_gave_up_is_never_proposed() {
        let log = FakeLog::default();
        let proposals = Arc::new(Proposals::spawn(log.clone()));
        let first = spawn_write(&proposals, put("a"));
        let (keys, answer) = log.nth(1).await;
        let abandoned = spawn_write(&proposals, put("gone"));
        let kept = spawn_write(&proposals, put("kept"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        abandoned.abort();
        let _ = abandoned.await;
        answer.send(Ok(echo(&keys))).unwrap();
        revision(first.await.unwrap());
        let (keys, answer) = log.nth(2).await;
        assert_eq!(keys, vec!["kept"]);
        answer.send(Ok(echo(&keys))).unwrap();
        assert_eq!(revision(kept.await.unwrap()), 1);
    }

    #[tokio::test]
    async fn a_batch_stops_at_its_write_and_byte_limits() {
        let log = FakeLog::default();
        let proposals = Arc::new(Proposals::spawn(log.clone()));
        let first = spawn_write(&proposals, put("a"));
        let (keys, answer) = log.nth(1).await;
        let many: Vec<_> = (0..MAX_BATCH_WRITES + 3)
            .map(|i| spawn_write(&proposals, put(&format!("k{i}"))))
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        answer.send(Ok(echo(&keys))).unwrap();
        revision(first.await.unwrap());
        let (keys, answer) = log.nth(2).await;
        assert_eq!(keys.len(), MAX_BATCH_WRITES);
        answer.send(Ok(echo(&keys))).unwrap();
        let (keys, answer) = log.nth(3).await;
        assert_eq!(keys.len(), 3, "the rest goes next");
        answer.send(Ok(echo(&keys))).unwrap();
        for h in many {
            revision(h.await.unwrap());
        }
        // Big writes: the batch closes once it passes the byte limit.
        let first = spawn_write(&proposals, put("z"));
        let (keys, answer) = log.nth(4).await;
        let bigs: Vec<_> = ["x", "y", "w"]
            .iter()
            .map(|k| spawn_write(&proposals, put_sized(k, MAX_BATCH_BYTES / 2)))
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        answer.send(Ok(echo(&keys))).unwrap();
        revision(first.await.unwrap());
        let (keys, answer) = log.nth(5).await;
        assert_eq!(keys.len(), 2, "two halves reach the limit");
        answer.send(Ok(echo(&keys))).unwrap();
        let (keys, answer) = log.nth(6).await;
        assert_eq!(keys.len(), 1);
        answer.send(Ok(echo(&keys))).unwrap();
        for h in bigs {
            revision(h.await.unwrap());
        }
    }
}
