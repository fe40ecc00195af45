//! `authenticate`: each operation is one Authenticate call with `--user`'s
//! name and (right) password, so the server checks the password (bcrypt at
//! its --bcrypt-cost) and issues a token, as a client logging in does. The
//! calls go on the connections without a token; the pool's own login before
//! the run (one per connection) is not measured, and a wrong password stops
//! the tool there (exit status 2) rather than measuring refusals.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use super::Env;
use crate::loadgen::auth::Credentials;
use crate::loadgen::error::BenchError;
use crate::loadgen::runner::Client;
use crate::loadgen::stats::{Stats, Summary};

struct LoginClient {
    channel: Channel,
    credentials: Credentials,
    stats: Arc<Stats>,
    timeout: Duration,
}

impl Client for LoginClient {
    async fn op(&mut self, start: Instant) -> bool {
        let result = self
            .credentials
            .authenticate(self.channel.clone(), self.timeout)
            .await
            .map(|_| ());
        self.stats.outcome("authenticate", start, result)
    }
}

pub async fn run(env: &Env) -> Result<Summary, BenchError> {
    let Some(credentials) = &env.credentials else {
        return Err(BenchError::Usage(
            "authenticate needs --user NAME:PASSWORD".into(),
        ));
    };
    let clients = (0..env.plan.clients)
        .map(|i| LoginClient {
            channel: env.pool.channel(i),
            credentials: credentials.clone(),
            stats: env.stats.clone(),
            timeout: env.timeout,
        })
        .collect();
    let outcome = env.run(clients).await?;
    Ok(env.summary("authenticate", outcome, outcome.elapsed))
}
