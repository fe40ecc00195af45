//! The simulated kubelets' watches: `GET /api/v1/pods?watch=1&
//! fieldSelector=spec.nodeName=<node>&resourceVersion=<rv>`, across all
//! namespaces as a kubelet asks, from the resourceVersion the setup ended
//! at (only the run's changes arrive).
//!
//! Each event is checked and timed: a pod of another node is an error
//! (`WrongNode`: the server's field selector let it through); the
//! mutation that wrote it is found ([`super::pod::written_by`], or by name
//! for a DELETED event) and its delivery recorded in the
//! [`Ledger`](super::ledger::Ledger), as `watch-event` latency from the
//! mutation's send time. A stream the server ends is reopened from the last
//! resourceVersion seen (counter `watch-reopens`); a failed one is an error
//! of kind `watch`, and reopened after a pause.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Method;
use serde_json::Value;
use tokio::sync::oneshot;

use super::api::{http_error, query_escape, Conn};
use super::ledger::{Ledger, Receipt};
use super::pod::{resource_version, written_by};
use crate::loadgen::connect::error_chain;
use crate::loadgen::error::OpError;
use crate::loadgen::stats::{Role, Stats};

/// Pause before reopening a watch that failed.
const REOPEN_BACKOFF: Duration = Duration::from_millis(200);

/// One simulated kubelet's watch.
pub struct NodeWatch {
    pub id: u32,
    pub node: String,
    pub conn: Conn,
    pub stats: Arc<Stats>,
    pub ledger: Arc<Ledger>,
    /// Where the stream starts: the setup's resourceVersion.
    pub rv: String,
    /// Used when the server says the resourceVersion is too old (410):
    /// where to start again (events in between are lost, and counted as
    /// missing at the end).
    pub namespace: String,
}

/// Why a stream ended.
enum End {
    /// The server closed it (a watch timeout): reopen from the last rv.
    Closed,
    Failed(OpError),
    /// 410 Gone / Expired: the rv is compacted away.
    Expired,
}

impl NodeWatch {
    fn path(&self) -> String {
        format!(
            "/api/v1/pods?watch=1&fieldSelector={}&resourceVersion={}",
            query_escape(&format!("spec.nodeName={}", self.node)),
            query_escape(&self.rv),
        )
    }

    /// Opens the stream: its headers, 2xx.
    async fn open(&self) -> Result<Incoming, OpError> {
        let response = self
            .conn
            .send(Method::GET, &self.path(), "", Bytes::new())
            .await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response.into_body());
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Err(http_error(status, &body))
    }

    /// Runs until aborted; `opened` is told whether the first open worked.
    pub async fn run(mut self, opened: oneshot::Sender<Result<(), OpError>>) {
        let mut opened = Some(opened);
        loop {
            let body = match self.open().await {
                Ok(body) => body,
                Err(e) => {
                    match opened.take() {
                        Some(tx) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                        None => self.stats.record_errors("watch", Role::Detail, &e, 1),
                    }
                    tokio::time::sleep(REOPEN_BACKOFF).await;
                    continue;
                }
            };
            if let Some(tx) = opened.take() {
                let _ = tx.send(Ok(()));
            }
            match self.read(body).await {
                End::Closed => self.stats.count("watch-reopens", 1),
                End::Failed(e) => {
                    self.stats.record_errors("watch", Role::Detail, &e, 1);
                    tokio::time::sleep(REOPEN_BACKOFF).await;
                }
                End::Expired => {
                    let e = OpError::Http {
                        status: 410,
                        message: "watch resourceVersion expired; restarted from now".into(),
                    };
                    self.stats.record_errors("watch", Role::Detail, &e, 1);
                    self.restart_from_now().await;
                }
            }
        }
    }

    /// After a 410: the current resourceVersion, from a one-item list.
    async fn restart_from_now(&mut self) {
        loop {
            let path = format!("/api/v1/namespaces/{}/pods?limit=1", self.namespace);
            match self.conn.get(&path).await {
                Ok(list) => {
                    if let Some(rv) = resource_version(&list) {
                        self.rv = rv.to_owned();
                        return;
                    }
                }
                Err(e) => self.stats.record_errors("watch", Role::Detail, &e, 1),
            }
            tokio::time::sleep(REOPEN_BACKOFF).await;
        }
    }

    /// Reads events (one JSON object each, concatenated or on lines) to the
    /// stream's end.
    async fn read(&mut self, mut body: Incoming) -> End {
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let frame = match body.frame().await {
                None => return End::Closed,
                Some(Err(e)) => return End::Failed(OpError::Transport(error_chain(&e))),
                Some(Ok(frame)) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            buf.extend_from_slice(&data);
            let mut events = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
            let mut end = None;
            for event in events.by_ref() {
                match event {
                    Ok(event) => {
                        if let Some(e) = self.event(&event) {
                            end = Some(e);
                            break;
                        }
                    }
                    Err(e) if e.is_eof() => break,
                    Err(e) => {
                        end = Some(End::Failed(OpError::Unexpected(format!(
                            "watch event is not JSON: {e}"
                        ))));
                        break;
                    }
                }
            }
            let used = events.byte_offset();
            if let Some(end) = end {
                return end;
            }
            buf.drain(..used);
        }
    }

    /// Handles one event; `Some` ends the stream.
    fn event(&mut self, event: &Value) -> Option<End> {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let object = event.get("object").unwrap_or(&Value::Null);
        match kind {
            "ADDED" | "MODIFIED" | "DELETED" => {}
            "BOOKMARK" => {
                if let Some(rv) = resource_version(object) {
                    self.rv = rv.to_owned();
                }
                return None;
            }
            "ERROR" => {
                let code = object.get("code").and_then(Value::as_u64).unwrap_or(0);
                if code == 410 {
                    return Some(End::Expired);
                }
                let message = object
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("ERROR event")
                    .to_owned();
                return Some(End::Failed(OpError::Http {
                    status: u16::try_from(code).unwrap_or(0),
                    message,
                }));
            }
            other => {
                return Some(End::Failed(OpError::Unexpected(format!(
                    "watch event of type {other:?}"
                ))))
            }
        }
        if let Some(rv) = resource_version(object) {
            self.rv = rv.to_owned();
        }
        let node = object.pointer("/spec/nodeName").and_then(Value::as_str);
        if node != Some(self.node.as_str()) {
            // One message for every node, so that the errors group together.
            let e = OpError::Unexpected(
                "WrongNode: a watch by spec.nodeName got a pod of another node".into(),
            );
            self.stats.record_errors("watch-event", Role::Detail, &e, 1);
            return None;
        }
        let seq = if kind == "DELETED" {
            let name = object.pointer("/metadata/name").and_then(Value::as_str);
            name.and_then(|n| self.ledger.delete_of(n)).unwrap_or(0)
        } else {
            written_by(object)
        };
        match self.ledger.received(seq, self.id) {
            Receipt::First(latency) => self.stats.record("watch-event", Role::Detail, latency),
            Receipt::Duplicate => {
                let e = OpError::Unexpected(format!("duplicate {kind} event"));
                self.stats.record_errors("watch-event", Role::Detail, &e, 1);
            }
            Receipt::Unknown => self.stats.count("events-unknown", 1),
        }
        None
    }
}
