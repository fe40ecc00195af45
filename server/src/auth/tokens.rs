//! Simple tokens (etcd's `--auth-token=simple`): random strings naming a
//! user, kept in memory by every member (each learns them by applying the
//! Authenticate that made them), valid for a TTL from their last use.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::distr::{Alphanumeric, SampleString};

/// etcd's simple tokens: 16 random letters, a dot, and a sequence number.
const RANDOM_CHARS: usize = 16;

pub struct SimpleTokens {
    ttl: Duration,
    tokens: Mutex<HashMap<String, Held>>,
}

struct Held {
    user: String,
    expires: Instant,
}

impl SimpleTokens {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// A fresh token, unguessable: `sequence` (the log index of nothing in
    /// particular, only for etcd's format) follows the random part.
    pub fn generate(sequence: u64) -> String {
        let random = Alphanumeric.sample_string(&mut rand::rng(), RANDOM_CHARS);
        format!("{random}.{sequence}")
    }

    /// Makes `token` name `user` from `now` for the TTL. Expired tokens are
    /// dropped here, so the table holds only live ones.
    pub fn assign(&self, token: &str, user: &str, now: Instant) {
        let mut tokens = self.tokens.lock();
        tokens.retain(|_, held| held.expires > now);
        tokens.insert(
            token.to_string(),
            Held {
                user: user.to_string(),
                expires: now + self.ttl,
            },
        );
    }

    /// The user `token` names, if it is live at `now`; its TTL starts again
    /// (etcd's simple tokens are kept alive by use).
    pub fn user(&self, token: &str, now: Instant) -> Option<String> {
        let mut tokens = self.tokens.lock();
        let held = tokens.get_mut(token)?;
        if held.expires <= now {
            tokens.remove(token);
            return None;
        }
        held.expires = now + self.ttl;
        Some(held.user.clone())
    }

    /// Drops every token of `user` (deleted, or its password changed).
    pub fn revoke_user(&self, user: &str) {
        self.tokens.lock().retain(|_, held| held.user != user);
    }

    /// Drops every token (auth disabled).
    pub fn clear(&self) {
        self.tokens.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_user_until_unused_for_the_ttl() {
        let tokens = SimpleTokens::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let token = SimpleTokens::generate(1);
        assert_ne!(token, SimpleTokens::generate(1), "random");
        tokens.assign(&token, "alice", t0);
        assert_eq!(
            tokens.user(&token, t0 + Duration::from_secs(9)),
            Some("alice".into())
        );
        // Used at 9 s: alive until 19 s.
        assert_eq!(
            tokens.user(&token, t0 + Duration::from_secs(18)),
            Some("alice".into())
        );
        assert_eq!(tokens.user(&token, t0 + Duration::from_secs(29)), None);
        assert_eq!(tokens.user(&token, t0), None, "an expired token is gone");
        assert_eq!(tokens.user("forged.1", t0), None);
    }

    #[test]
    fn revoking_a_user_drops_its_tokens_only() {
        let tokens = SimpleTokens::new(Duration::from_secs(10));
        let now = Instant::now();
        tokens.assign("a.1", "alice", now);
        tokens.assign("b.2", "bob", now);
        tokens.revoke_user("alice");
        assert_eq!(tokens.user("a.1", now), None);
        assert_eq!(tokens.user("b.2", now), Some("bob".into()));
        tokens.clear();
        assert_eq!(tokens.user("b.2", now), None);
    }
}
