//! Streamed calls (Watch, LeaseKeepAlive, Observe, Snapshot) over HTTP/1.1:
//! request messages are read from the body as they arrive and fed to the
//! call; its responses go out as they come, one JSON object per line.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::Streaming;

use super::json::{DecodeError, MessageReader};
use super::reply;

/// Request messages waiting for the call to take them.
const REQUEST_BUFFER: usize = 16;

/// The request side of a bidirectional call: the first message is read
/// before the call starts (a body that does not start with one is refused,
/// as etcd does); the rest are pumped from the body while the call runs.
/// The stream ends (the client's CloseSend) when the body does.
pub async fn requests<T>(body: Body, limit: usize) -> Result<ReceiverStream<T>, DecodeError>
where
    T: DeserializeOwned + Send + 'static,
{
    let mut reader = MessageReader::new(body, limit);
    let (tx, rx) = mpsc::channel(REQUEST_BUFFER);
    let Some(first) = reader.next::<T>().await? else {
        return Ok(ReceiverStream::new(rx));
    };
    // The receiver is alive: it is returned below.
    let _ = tx.send(first).await;
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                next = reader.next::<T>() => next,
                // The call ended: nobody reads the rest of the body.
                _ = tx.closed() => return,
            };
            // A later bad message closes the request side, as etcd's gateway
            // does; the responses already under way go on.
            let Ok(Some(message)) = next else { return };
            if tx.send(message).await.is_err() {
                return;
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// The HTTP response of a call that answers with a stream. The status is
/// decided by the first message (an error before any result sets it), so
/// this waits for that message before answering, as grpc-gateway does.
pub async fn respond<T>(
    response: tonic::Response<Streaming<T>>,
    permit: Option<OwnedSemaphorePermit>,
) -> Response
where
    T: Serialize + Send + 'static,
{
    let (metadata, mut messages, _) = response.into_parts();
    let first = messages.message().await;
    let (status, first_chunk, more) = match first {
        Ok(Some(message)) => (StatusCode::OK, reply::result_line(&message), true),
        Ok(None) => (StatusCode::OK, Vec::new(), false),
        Err(status) => (
            reply::http_status(status.code()),
            reply::error_chunk(&status),
            false,
        ),
    };
    let lines = JsonLines {
        first: Some(Bytes::from(first_chunk)),
        messages: more.then_some(messages),
        _permit: permit,
    };
    reply::stream(status, &metadata, Body::from_stream(lines))
}

/// The response body: each message as a `{"result": ...}` line; an error
/// ends it with an `{"error": ...}` object. Holds the call's stream permit
/// until the client goes away or the call ends.
struct JsonLines<T> {
    first: Option<Bytes>,
    messages: Option<Streaming<T>>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<T: Serialize> Stream for JsonLines<T> {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        let Some(messages) = self.messages.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(messages).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(message))) => {
                Poll::Ready(Some(Ok(Bytes::from(reply::result_line(&message)))))
            }
            Poll::Ready(Some(Err(status))) => {
                self.messages = None;
                Poll::Ready(Some(Ok(Bytes::from(reply::error_chunk(&status)))))
            }
            Poll::Ready(None) => {
                self.messages = None;
                Poll::Ready(None)
            }
        }
    }
}

impl<T> Unpin for JsonLines<T> {}
