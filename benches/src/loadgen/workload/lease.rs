//! `lease-keepalive`: each client grants itself a lease (`--ttl` seconds;
//! the `grant` row), opens a LeaseKeepAlive stream, and then each operation
//! is one keepalive round trip on it (`keepalive`). A failed grant fails that
//! operation and is retried by the next one; a broken stream is re-opened;
//! an answer with TTL <= 0 (lease gone) makes the client grant a new lease.
//! A failed grant is one error (under `grant`) and one failed operation.
//! A server without leases answers `Unimplemented`, which is counted like any
//! other error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oxetcd_proto::etcdserverpb::lease_client::LeaseClient;
use oxetcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::codec::Streaming;

use super::Env;
use crate::loadgen::auth::Conn;
use crate::loadgen::cli::LeaseArgs;
use crate::loadgen::error::{BenchError, OpError};
use crate::loadgen::requests::call;
use crate::loadgen::runner::Client;
use crate::loadgen::stats::{Role, Stats, Summary};

struct KeepAlive {
    requests: mpsc::UnboundedSender<LeaseKeepAliveRequest>,
    responses: Streaming<LeaseKeepAliveResponse>,
}

struct LeaseKeeper {
    lease: LeaseClient<Conn>,
    stats: Arc<Stats>,
    timeout: Duration,
    ttl: i64,
    id: Option<i64>,
    stream: Option<KeepAlive>,
}

impl LeaseKeeper {
    async fn grant(&mut self) -> Result<i64, OpError> {
        let start = Instant::now();
        let request = LeaseGrantRequest {
            ttl: self.ttl,
            id: 0,
        };
        match call(self.timeout, self.lease.lease_grant(request)).await {
            Ok(granted) if granted.error.is_empty() => {
                self.stats.record("grant", Role::Detail, start.elapsed());
                Ok(granted.id)
            }
            Ok(granted) => Err(OpError::Unexpected(format!(
                "lease grant: {}",
                granted.error
            ))),
            Err(error) => Err(error),
        }
    }

    async fn keep_alive(&mut self, id: i64) -> Result<(), OpError> {
        let request = LeaseKeepAliveRequest { id };
        let stream = match self.stream.take() {
            Some(stream) if stream.requests.send(request).is_ok() => stream,
            _ => {
                // (Re)open: queue the first request before the call, which
                // returns only once the server answers it.
                let (requests, rx) = mpsc::unbounded_channel();
                requests
                    .send(request)
                    .map_err(|_| OpError::StreamEnded("lease keepalive"))?;
                let responses = call(
                    self.timeout,
                    self.lease
                        .lease_keep_alive(UnboundedReceiverStream::new(rx)),
                )
                .await?;
                KeepAlive {
                    requests,
                    responses,
                }
            }
        };
        let mut stream = stream;
        let answer = match tokio::time::timeout(self.timeout, stream.responses.message()).await {
            Ok(Ok(Some(answer))) => answer,
            Ok(Ok(None)) => return Err(OpError::StreamEnded("lease keepalive")),
            Ok(Err(status)) => return Err(OpError::Grpc(status)),
            Err(_) => return Err(OpError::Timeout(self.timeout)),
        };
        self.stream = Some(stream);
        if answer.ttl <= 0 {
            self.id = None;
            return Err(OpError::Unexpected(format!(
                "lease {id:x} expired or not found (keepalive TTL {})",
                answer.ttl
            )));
        }
        Ok(())
    }
}

impl Client for LeaseKeeper {
    async fn op(&mut self, start: Instant) -> bool {
        let id = match self.id {
            Some(id) => id,
            None => match self.grant().await {
                Ok(id) => {
                    self.id = Some(id);
                    id
                }
                Err(error) => {
                    // The operation failed at its first step: one error,
                    // under the request that failed.
                    self.stats.record_errors("grant", Role::Detail, &error, 1);
                    return false;
                }
            },
        };
        let result = self.keep_alive(id).await;
        self.stats.outcome("keepalive", start, result)
    }
}

pub async fn run(env: &Env, args: &LeaseArgs) -> Result<Summary, BenchError> {
    if args.ttl <= 0 {
        return Err(BenchError::Usage("--ttl must be positive".into()));
    }
    let clients = (0..env.plan.clients)
        .map(|i| LeaseKeeper {
            lease: env.pool.lease(i),
            stats: env.stats.clone(),
            timeout: env.timeout,
            ttl: args.ttl,
            id: None,
            stream: None,
        })
        .collect();
    let outcome = env.run(clients).await?;
    Ok(env.summary("lease-keepalive", outcome, outcome.elapsed))
}
