//! A follower's read-index asks to the leader, over one standing
//! `ReadIndexStream` per leader rather than a unary call each.
//!
//! Every linearizable read on a follower needs one ask (a batch of reads
//! shares it). A unary call would open an HTTP/2 stream per ask: headers and
//! data in two writes (hyper sends a new stream's headers before it may send
//! data), a task spawned on the leader, and the trailers back. On a standing
//! stream an ask and its answer are one DATA frame each. Answers may come out
//! of order; each carries its ask's id.
//!
//! The stream is opened on first use and replaced when the leader changes,
//! or when it ends or fails (the connection dropped, the leader restarted);
//! the asks waiting on a failed stream fail with its error, and the next ask
//! opens a new one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;
use tonic::Status;

use super::cluster_tag::ClusterTag;
use super::error::CallError;
use super::pb::raft_client::RaftClient;
use super::pb::{ReadIndexAnswer, ReadIndexAsk, ReadIndexResponse};
use crate::types::NodeId;

type Answer = Result<ReadIndexResponse, CallError>;

/// The current stream, if any; one at a time (to the leader of the moment).
#[derive(Default)]
pub(super) struct ReadStreams {
    current: Mutex<Option<Arc<ReadStream>>>,
}

impl ReadStreams {
    /// Asks `leader` at `addr` for a read index and waits at most `timeout`
    /// for the answer. `client` opens a stream when there is no usable one.
    pub(super) async fn ask(
        &self,
        leader: NodeId,
        addr: &str,
        client: impl FnOnce() -> Result<RaftClient<Channel>, CallError>,
        cluster: &ClusterTag,
        timeout: Duration,
    ) -> Answer {
        let stream = self.stream_to(leader, addr, client, cluster)?;
        let id = stream.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        stream.waiting.register(id, answer)?;
        if stream.asks.send(ReadIndexAsk { id }).is_err() {
            stream.waiting.forget(id);
            return Err(closed().into());
        }
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(answer)) => answer,
            // The stream's task ended without failing the ask: cannot happen
            // (it fails every waiting ask), but is no answer either way.
            Ok(Err(_)) => Err(closed().into()),
            Err(_) => {
                stream.waiting.forget(id);
                Err(CallError::TimedOut(timeout))
            }
        }
    }

    /// The open stream to `leader` at `addr`, or a new one.
    fn stream_to(
        &self,
        leader: NodeId,
        addr: &str,
        client: impl FnOnce() -> Result<RaftClient<Channel>, CallError>,
        cluster: &ClusterTag,
    ) -> Result<Arc<ReadStream>, CallError> {
        let mut current = self.current.lock();
        if let Some(stream) = current.as_ref() {
            if stream.leader == leader && stream.addr == addr && !stream.waiting.is_closed() {
                return Ok(stream.clone());
            }
        }
        // Dropping the old stream's sender ends its request stream: the old
        // leader answers what it has and closes its side.
        let stream = Arc::new(ReadStream::open(leader, addr, client()?, cluster));
        *current = Some(stream.clone());
        Ok(stream)
    }

    /// Drops the stream to `leader`, if that is the current one: the member
    /// was removed from the cluster, or answered that its Raft stopped.
    pub(super) fn forget(&self, leader: NodeId) {
        let mut current = self.current.lock();
        if current.as_ref().is_some_and(|s| s.leader == leader) {
            *current = None;
        }
    }
}

/// One open `ReadIndexStream`: where asks go in, and who waits for which
/// answer. A task reads the answers (see [`read_answers`]).
struct ReadStream {
    leader: NodeId,
    addr: String,
    asks: mpsc::UnboundedSender<ReadIndexAsk>,
    next_id: AtomicU64,
    waiting: Arc<Waiting>,
}

impl ReadStream {
    fn open(
        leader: NodeId,
        addr: &str,
        client: RaftClient<Channel>,
        cluster: &ClusterTag,
    ) -> ReadStream {
        let (asks, outgoing) = mpsc::unbounded_channel();
        // No deadline on the request: the stream lives as long as the leader
        // leads; each ask has its own timeout.
        let mut request = tonic::Request::new(UnboundedReceiverStream::new(outgoing));
        cluster.stamp(&mut request);
        let waiting = Arc::new(Waiting::default());
        tokio::spawn(read_answers(client, request, waiting.clone()));
        ReadStream {
            leader,
            addr: addr.to_string(),
            asks,
            next_id: AtomicU64::new(0),
            waiting,
        }
    }
}

/// The asks sent and not yet answered, by id; closed once the stream ended.
#[derive(Default)]
struct Waiting(Mutex<WaitingAsks>);

#[derive(Default)]
struct WaitingAsks {
    asks: HashMap<u64, oneshot::Sender<Answer>>,
    closed: bool,
}

impl Waiting {
    fn register(&self, id: u64, answer: oneshot::Sender<Answer>) -> Result<(), CallError> {
        let mut waiting = self.0.lock();
        if waiting.closed {
            return Err(closed().into());
        }
        waiting.asks.insert(id, answer);
        Ok(())
    }

    fn forget(&self, id: u64) {
        self.0.lock().asks.remove(&id);
    }

    fn answer(&self, answer: ReadIndexAnswer) {
        let waiter = self.0.lock().asks.remove(&answer.id);
        if let Some(waiter) = waiter {
            // An ask whose caller gave up is simply dropped.
            let _ = waiter.send(answer.response.ok_or(CallError::Empty));
        }
    }

    fn is_closed(&self) -> bool {
        self.0.lock().closed
    }

    /// Fails every waiting ask with `status`; later asks fail at once.
    fn close(&self, status: Status) {
        let asks = {
            let mut waiting = self.0.lock();
            waiting.closed = true;
            std::mem::take(&mut waiting.asks)
        };
        for (_, waiter) in asks {
            let _ = waiter.send(Err(status.clone().into()));
        }
    }
}

fn closed() -> Status {
    Status::unavailable("the read-index stream to the leader closed")
}

/// Opens the stream and hands each answer to its ask until the stream ends.
async fn read_answers(
    mut client: RaftClient<Channel>,
    request: tonic::Request<UnboundedReceiverStream<ReadIndexAsk>>,
    waiting: Arc<Waiting>,
) {
    let ended = match client.read_index_stream(request).await {
        Ok(response) => {
            let mut answers = response.into_inner();
            loop {
                match answers.message().await {
                    Ok(Some(answer)) => waiting.answer(answer),
                    Ok(None) => break closed(),
                    Err(status) => break status,
                }
            }
        }
        Err(status) => status,
    };
    tracing::debug!(status = %ended, "read-index stream ended");
    waiting.close(ended);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: u64, index: u64) -> ReadIndexAnswer {
        use super::super::pb::read_index_response::Result as R;
        ReadIndexAnswer {
            id,
            response: Some(ReadIndexResponse {
                result: Some(R::Index(index)),
            }),
        }
    }

    #[tokio::test]
    async fn answers_reach_their_asks_and_a_closed_stream_fails_the_rest() {
        let waiting = Waiting::default();
        let (a1, r1) = oneshot::channel();
        let (a2, r2) = oneshot::channel();
        let (a3, r3) = oneshot::channel();
        waiting.register(1, a1).unwrap();
        waiting.register(2, a2).unwrap();
        waiting.register(3, a3).unwrap();
        // Out of order, and one for an ask nobody waits for any more.
        waiting.answer(answer(2, 20));
        waiting.answer(answer(9, 90));
        waiting.answer(answer(1, 10));
        let index = |r: ReadIndexResponse| format!("{:?}", r.result);
        assert_eq!(index(r1.await.unwrap().unwrap()), "Some(Index(10))");
        assert_eq!(index(r2.await.unwrap().unwrap()), "Some(Index(20))");

        waiting.close(Status::unavailable("gone"));
        match r3.await.unwrap() {
            Err(CallError::Status(s)) => assert_eq!(s.message(), "gone"),
            other => panic!("{other:?}"),
        }
        let (a4, _r4) = oneshot::channel();
        assert!(
            waiting.register(4, a4).is_err(),
            "a closed stream takes no asks"
        );
    }
}
