//! One user's tokens, one per member: fetched with Authenticate when the
//! member has none, dropped when a server refuses one as stale, counted.
//!
//! A token is per member because simple tokens are: each member keeps them
//! in memory (etcd 3.4 and oxetcd give them to every member through the log,
//! but a member that restarts forgets them). Each client is bound to one
//! member, so a member's token serves every client bound to it; one
//! Authenticate at a time per member, the others wait for its token.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxetcd_proto::etcdserverpb::auth_client::AuthClient;
use oxetcd_proto::etcdserverpb::AuthenticateRequest;
use serde::Serialize;
use tonic::transport::Channel;

/// Starts the message of an error given to an operation whose request was
/// never sent, because no token could be had: it certainly did not happen.
pub const NOT_SENT: &str = "not sent:";

/// How often a user authenticated and why its tokens were dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AuthCounts {
    /// Authenticate calls that gave a token.
    pub authentications: u64,
    /// Authenticate calls that did not, by error.
    pub failed_authentications: BTreeMap<String, u64>,
    /// Tokens dropped because a server refused them, by the server's error
    /// (each is followed by an Authenticate at the next request).
    pub refreshes: BTreeMap<String, u64>,
}

impl AuthCounts {
    pub fn total_refreshes(&self) -> u64 {
        self.refreshes.values().sum()
    }
    pub fn total_failed_authentications(&self) -> u64 {
        self.failed_authentications.values().sum()
    }
}

/// A token as sent: `generation` tells a refusal of this token from one of
/// a token fetched since.
#[derive(Clone, Debug)]
pub struct Token {
    pub value: String,
    generation: u64,
}

/// A user's credentials at one member.
pub struct MemberToken {
    user: &'static str,
    password: &'static str,
    member: usize,
    /// The member, without any token: Authenticate needs none.
    channel: Channel,
    /// Deadline of one Authenticate.
    timeout: Duration,
    held: Mutex<Option<Token>>,
    /// Held while an Authenticate is under way.
    fetching: tokio::sync::Mutex<()>,
    generations: AtomicU64,
    counts: Arc<Mutex<AuthCounts>>,
}

impl MemberToken {
    fn held(&self) -> Option<Token> {
        self.held.lock().ok().and_then(|held| held.clone())
    }

    /// The token to send, authenticating first when there is none. An
    /// error is a Status starting with [`NOT_SENT`].
    pub async fn get(&self) -> Result<Token, tonic::Status> {
        if let Some(token) = self.held() {
            return Ok(token);
        }
        let _one = self.fetching.lock().await;
        // Another request may have fetched one while this one waited.
        if let Some(token) = self.held() {
            return Ok(token);
        }
        let value = self.authenticate().await?;
        let token = Token {
            value,
            generation: self.generations.fetch_add(1, Ordering::Relaxed),
        };
        if let Ok(mut held) = self.held.lock() {
            *held = Some(token.clone());
        }
        Ok(token)
    }

    async fn authenticate(&self) -> Result<String, tonic::Status> {
        let request = AuthenticateRequest {
            name: self.user.to_owned(),
            password: self.password.to_owned(),
        };
        let mut client = AuthClient::new(self.channel.clone());
        let answer = tokio::time::timeout(self.timeout, client.authenticate(request)).await;
        let failure = match answer {
            Ok(Ok(response)) => {
                self.count(|c| c.authentications += 1);
                return Ok(response.into_inner().token);
            }
            Ok(Err(status)) => status.message().to_owned(),
            Err(_) => "timeout".to_owned(),
        };
        self.count(|c| *c.failed_authentications.entry(failure.clone()).or_default() += 1);
        Err(tonic::Status::unavailable(format!(
            "{NOT_SENT} authenticating as {} at member {}: {failure}",
            self.user, self.member
        )))
    }

    /// A server refused `token` as stale (`reason`, etcd's text): the next
    /// request authenticates again, unless a newer token was fetched
    /// meanwhile.
    pub fn refused(&self, token: &Token, reason: &str) {
        let dropped = match self.held.lock() {
            Ok(mut held)
                if held
                    .as_ref()
                    .is_some_and(|h| h.generation == token.generation) =>
            {
                *held = None;
                true
            }
            _ => false,
        };
        if dropped {
            self.count(|c| *c.refreshes.entry(reason.to_owned()).or_default() += 1);
        }
    }

    fn count(&self, change: impl FnOnce(&mut AuthCounts)) {
        if let Ok(mut counts) = self.counts.lock() {
            change(&mut counts);
        }
    }
}

/// One user's tokens, member by member, and its counts.
pub struct Login {
    pub members: Vec<Arc<MemberToken>>,
    counts: Arc<Mutex<AuthCounts>>,
}

impl Login {
    /// `channels`: one per member, in member order, sending no token.
    pub fn new(
        user: &'static str,
        password: &'static str,
        channels: &[Channel],
        timeout: Duration,
    ) -> Login {
        let counts = Arc::new(Mutex::new(AuthCounts::default()));
        let members = channels
            .iter()
            .enumerate()
            .map(|(member, channel)| {
                Arc::new(MemberToken {
                    user,
                    password,
                    member,
                    channel: channel.clone(),
                    timeout,
                    held: Mutex::new(None),
                    fetching: tokio::sync::Mutex::new(()),
                    generations: AtomicU64::new(0),
                    counts: counts.clone(),
                })
            })
            .collect();
        Login { members, counts }
    }

    pub fn counts(&self) -> AuthCounts {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}
