//! Slowing password guessing: a name whose logins failed waits before its
//! next password check, longer after each failure, so an attacker gets few
//! guesses per second per name however many requests it sends at once.
//!
//! etcd only pays bcrypt's cost per attempt (and nothing for an unknown
//! name); oxetcd adds this on top. The waiting is a timer on the async
//! runtime, not a thread: other names' logins and every other request go on
//! meanwhile. A correct password clears the name's record.
//!
//! An attempt takes a slot: the later of now and the user's next allowed
//! time, which then moves one delay further, so concurrent attempts on one
//! user are spaced out, not let through together. The delay after `n`
//! consecutive failures is `FIRST_DELAY * 2^(n-1)`, at most `MAX_DELAY`.
//! Names that are no user share one record (the global backoff): guessing
//! made-up names is slowed as a whole, and no real user waits for it. A
//! record quiet for `FORGET_AFTER` starts afresh.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The wait after a user's first failure.
pub const FIRST_DELAY: Duration = Duration::from_millis(50);
/// The longest wait between two attempts on one user.
pub const MAX_DELAY: Duration = Duration::from_secs(1);
/// A record with no attempt for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(60);
/// Records kept before quiet ones are dropped (users deleted after failing
/// leave theirs behind).
const PRUNE_ABOVE: usize = 1024;

#[derive(Clone, Copy, Debug)]
struct Record {
    /// Consecutive failures.
    failures: u32,
    /// No attempt is checked before this.
    next: Instant,
}

impl Record {
    fn fresh(now: Instant) -> Record {
        Record {
            failures: 0,
            next: now,
        }
    }

    fn quiet_since(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.next) >= FORGET_AFTER
    }
}

/// Who a login names: a user, or a name that is no user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Login<'a> {
    User(&'a str),
    Unknown,
}

/// Failed logins (see the module doc).
#[derive(Default)]
pub struct LoginBackoff {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    users: HashMap<String, Record>,
    /// Shared by every name that is no user.
    unknown: Option<Record>,
}

/// The wait after `failures` consecutive failures.
pub fn delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let doublings = (failures - 1).min(16);
    (FIRST_DELAY * (1u32 << doublings)).min(MAX_DELAY)
}

impl LoginBackoff {
    /// When an attempt on `login`, arriving at `now`, may have its password
    /// checked. Taking the slot moves the next one a delay further.
    pub fn slot(&self, login: Login<'_>, now: Instant) -> Instant {
        let mut inner = self.inner.lock();
        let record = match login {
            Login::User(name) => inner.users.get_mut(name),
            Login::Unknown => inner.unknown.as_mut(),
        };
        let Some(record) = record else {
            return now;
        };
        if record.quiet_since(now) {
            *record = Record::fresh(now);
            return now;
        }
        let at = record.next.max(now);
        record.next = at + delay(record.failures);
        at
    }

    /// A failed attempt on `login` at `now`: the next one waits longer.
    pub fn failed(&self, login: Login<'_>, now: Instant) {
        let mut inner = self.inner.lock();
        let record = match login {
            Login::User(name) => {
                if inner.users.len() >= PRUNE_ABOVE {
                    inner.users.retain(|_, r| !r.quiet_since(now));
                }
                inner
                    .users
                    .entry(name.to_string())
                    .or_insert_with(|| Record::fresh(now))
            }
            Login::Unknown => inner.unknown.get_or_insert_with(|| Record::fresh(now)),
        };
        record.failures = record.failures.saturating_add(1);
        record.next = record.next.max(now + delay(record.failures));
    }

    /// A correct password for user `name`: its failures are forgotten.
    pub fn succeeded(&self, name: &str) {
        self.inner.lock().users.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_up_to_its_cap() {
        assert_eq!(delay(0), Duration::ZERO);
        assert_eq!(delay(1), FIRST_DELAY);
        assert_eq!(delay(2), FIRST_DELAY * 2);
        assert_eq!(delay(5), FIRST_DELAY * 16);
        assert_eq!(delay(6), MAX_DELAY);
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn failures_space_out_one_users_attempts_and_no_other_users() {
        let b = LoginBackoff::default();
        let (bob, alice) = (Login::User("bob"), Login::User("alice"));
        let t0 = Instant::now();
        assert_eq!(b.slot(bob, t0), t0);
        b.failed(bob, t0);
        b.failed(bob, t0);
        // Two concurrent attempts after two failures: one delay apart.
        let first = b.slot(bob, t0);
        let second = b.slot(bob, t0);
        assert_eq!(first, t0 + delay(2));
        assert_eq!(second, first + delay(2));
        assert_eq!(b.slot(alice, t0), t0, "another user does not wait");
        b.succeeded("bob");
        assert_eq!(b.slot(bob, t0), t0);
        // A record quiet for long enough starts afresh.
        b.failed(alice, t0);
        let later = t0 + FORGET_AFTER + MAX_DELAY;
        assert_eq!(b.slot(alice, later), later);
    }

    #[test]
    fn names_that_are_no_user_share_one_record() {
        let b = LoginBackoff::default();
        let t0 = Instant::now();
        b.failed(Login::Unknown, t0);
        b.failed(Login::Unknown, t0);
        assert_eq!(b.slot(Login::Unknown, t0), t0 + delay(2));
        assert_eq!(b.slot(Login::User("alice"), t0), t0);
    }
}
