//! Periodic full lists of the namespace's pods, as controllers' informers
//! and `kubectl get pods` make them: every `--list-interval`, one paged
//! list (`limit=--list-limit`, followed by `continue` to the end: kind
//! `list-paged`, each page `list-page`) and one unpaged list
//! (`list-unpaged`). Both are consistent reads (no resourceVersion). They
//! are measured beside the mutations (role `detail`), not counted as ops.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::api::{query_escape, Conn};
use crate::loadgen::error::OpError;
use crate::loadgen::stats::{Role, Stats};

pub struct Lister {
    pub conn: Conn,
    pub stats: Arc<Stats>,
    pub namespace: String,
    pub interval: Duration,
    pub limit: usize,
}

impl Lister {
    fn path(&self) -> String {
        format!("/api/v1/namespaces/{}/pods", self.namespace)
    }

    async fn paged(&self) -> Result<u64, OpError> {
        let mut total = 0;
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("{}?limit={}", self.path(), self.limit);
            if let Some(token) = &token {
                path.push_str("&continue=");
                path.push_str(&query_escape(token));
            }
            let start = Instant::now();
            let page = self.conn.get_list(&path).await?;
            self.stats
                .record("list-page", Role::Detail, start.elapsed());
            total += page.items;
            token = page.continue_token;
            if token.is_none() {
                return Ok(total);
            }
        }
    }

    async fn unpaged(&self) -> Result<u64, OpError> {
        Ok(self.conn.get_list(&self.path()).await?.items)
    }

    fn outcome(&self, kind: &'static str, start: Instant, result: Result<u64, OpError>) {
        match result {
            Ok(n) => {
                self.stats.record(kind, Role::Detail, start.elapsed());
                self.stats.count("list-items", n);
            }
            Err(e) => self.stats.record_errors(kind, Role::Detail, &e, 1),
        }
    }

    /// Lists every interval (the first one interval after the start) until aborted.
    pub async fn run(self) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let start = Instant::now();
            let paged = self.paged().await;
            self.outcome("list-paged", start, paged);
            let start = Instant::now();
            let unpaged = self.unpaged().await;
            self.outcome("list-unpaged", start, unpaged);
        }
    }
}
