//! The small, frequent calls between two members (a follower's read-index
//! asks, the leader's small append-entries) over one standing `Calls`
//! stream per peer rather than a unary call each.
//!
//! A unary call opens an HTTP/2 stream: headers and data in two writes (hyper
//! sends a new stream's headers before it may send data), a task spawned on
//! the callee, and the trailers back. On a standing stream a call and its
//! reply are one DATA frame each. Replies may come out of order; each carries
//! its call's id.
//!
//! A stream is opened on first use and replaced when the peer's address
//! changes, or once it ended or failed (the connection dropped, the peer
//! restarted or stopped its Raft); the calls waiting on a failed stream fail
//! with its error, and the next call opens a new one.

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
use super::pb::{call, reply, Call, Reply};
use crate::types::NodeId;

type Answer = Result<reply::Kind, CallError>;

/// The open stream to each peer called so far.
#[derive(Default)]
pub(super) struct CallStreams {
    open: Mutex<HashMap<NodeId, Arc<CallStream>>>,
}

impl CallStreams {
    /// Calls `target` at `addr` and waits at most `timeout` for its reply.
    /// `client` opens a stream when there is no usable one.
    pub(super) async fn call(
        &self,
        target: NodeId,
        addr: &str,
        client: impl FnOnce() -> Result<RaftClient<Channel>, CallError>,
        cluster: &ClusterTag,
        kind: call::Kind,
        timeout: Duration,
    ) -> Answer {
        let stream = self.stream_to(target, addr, client, cluster)?;
        let id = stream.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        stream.waiting.register(id, answer)?;
        let call = Call {
            id,
            kind: Some(kind),
        };
        if stream.calls.send(call).is_err() {
            stream.waiting.forget(id);
            return Err(closed().into());
        }
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(answer)) => answer,
            // The stream's task ended without failing the call: cannot
            // happen (it fails every waiting call), but is no answer either.
            Ok(Err(_)) => Err(closed().into()),
            Err(_) => {
                stream.waiting.forget(id);
                Err(CallError::TimedOut(timeout))
            }
        }
    }

    /// The open stream to `target` at `addr`, or a new one.
    fn stream_to(
        &self,
        target: NodeId,
        addr: &str,
        client: impl FnOnce() -> Result<RaftClient<Channel>, CallError>,
        cluster: &ClusterTag,
    ) -> Result<Arc<CallStream>, CallError> {
        let mut open = self.open.lock();
        if let Some(stream) = open.get(&target) {
            if stream.addr == addr && !stream.waiting.is_closed() {
                return Ok(stream.clone());
            }
        }
        // Dropping the old stream's sender ends its request stream: the peer
        // answers what it has and closes its side.
        let stream = Arc::new(CallStream::open(addr, client()?, cluster));
        open.insert(target, stream.clone());
        Ok(stream)
    }

    /// Drops the stream to `target` (removed from the cluster).
    pub(super) fn forget(&self, target: NodeId) {
        self.open.lock().remove(&target);
    }
}

/// One open `Calls` stream: where calls go in, and who waits for which
/// reply. A task reads the replies (see [`read_replies`]).
struct CallStream {
    addr: String,
    calls: mpsc::UnboundedSender<Call>,
    next_id: AtomicU64,
    waiting: Arc<Waiting>,
}

impl CallStream {
    fn open(addr: &str, client: RaftClient<Channel>, cluster: &ClusterTag) -> CallStream {
        let (calls, outgoing) = mpsc::unbounded_channel();
        // No deadline on the request: the stream lives as long as both
        // members do; each call has its own timeout.
        let mut request = tonic::Request::new(UnboundedReceiverStream::new(outgoing));
        cluster.stamp(&mut request);
        let waiting = Arc::new(Waiting::default());
        tokio::spawn(read_replies(client, request, waiting.clone()));
        CallStream {
            addr: addr.to_string(),
            calls,
            next_id: AtomicU64::new(0),
            waiting,
        }
    }
}

/// The calls sent and not yet answered, by id; closed once the stream ended.
#[derive(Default)]
struct Waiting(Mutex<WaitingCalls>);

#[derive(Default)]
struct WaitingCalls {
    calls: HashMap<u64, oneshot::Sender<Answer>>,
    closed: bool,
}

impl Waiting {
    fn register(&self, id: u64, answer: oneshot::Sender<Answer>) -> Result<(), CallError> {
        let mut waiting = self.0.lock();
        if waiting.closed {
            return Err(closed().into());
        }
        waiting.calls.insert(id, answer);
        Ok(())
    }

    fn forget(&self, id: u64) {
        self.0.lock().calls.remove(&id);
    }

    fn answer(&self, reply: Reply) {
        let waiter = self.0.lock().calls.remove(&reply.id);
        if let Some(waiter) = waiter {
            // A call whose caller gave up is simply dropped.
            let _ = waiter.send(reply.kind.ok_or(CallError::Empty));
        }
    }

    fn is_closed(&self) -> bool {
        self.0.lock().closed
    }

    /// Fails every waiting call with `status`; later calls fail at once.
    fn close(&self, status: Status) {
        let calls = {
            let mut waiting = self.0.lock();
            waiting.closed = true;
            std::mem::take(&mut waiting.calls)
        };
        for (_, waiter) in calls {
            let _ = waiter.send(Err(status.clone().into()));
        }
    }
}

fn closed() -> Status {
    Status::unavailable("the call stream to the peer closed")
}

/// Opens the stream and hands each reply to its call until the stream ends.
async fn read_replies(
    mut client: RaftClient<Channel>,
    request: tonic::Request<UnboundedReceiverStream<Call>>,
    waiting: Arc<Waiting>,
) {
    let ended = match client.calls(request).await {
        Ok(response) => {
            let mut replies = response.into_inner();
            loop {
                match replies.message().await {
                    Ok(Some(reply)) => waiting.answer(reply),
                    Ok(None) => break closed(),
                    Err(status) => break status,
                }
            }
        }
        Err(status) => status,
    };
    tracing::debug!(status = %ended, "call stream ended");
    waiting.close(ended);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(id: u64, index: u64) -> Reply {
        use super::super::pb::{read_index_response, ReadIndexResponse};
        Reply {
            id,
            kind: Some(reply::Kind::ReadIndex(ReadIndexResponse {
                result: Some(read_index_response::Result::Index(index)),
            })),
        }
    }

    #[tokio::test]
    async fn replies_reach_their_calls_and_a_closed_stream_fails_the_rest() {
        let waiting = Waiting::default();
        let (a1, r1) = oneshot::channel();
        let (a2, r2) = oneshot::channel();
        let (a3, r3) = oneshot::channel();
        waiting.register(1, a1).unwrap();
        waiting.register(2, a2).unwrap();
        waiting.register(3, a3).unwrap();
        // Out of order, and one for a call nobody waits for any more.
        waiting.answer(reply(2, 20));
        waiting.answer(reply(9, 90));
        waiting.answer(reply(1, 10));
        let index = |r: reply::Kind| format!("{r:?}");
        assert!(index(r1.await.unwrap().unwrap()).contains("Index(10)"));
        assert!(index(r2.await.unwrap().unwrap()).contains("Index(20)"));

        waiting.close(Status::unavailable("gone"));
        match r3.await.unwrap() {
            Err(CallError::Status(s)) => assert_eq!(s.message(), "gone"),
            other => panic!("{other:?}"),
        }
        let (a4, _r4) = oneshot::channel();
        assert!(
            waiting.register(4, a4).is_err(),
            "a closed stream takes no calls"
        );
    }
}
