//! What a server's auth errors mean for the token that was sent and for the
//! operation that carried it.
//!
//! **Stale tokens** ([`stale_token`]): the request's credential is no good
//! any more, and authenticating again fixes it:
//! - `etcdserver: invalid auth token`: a simple token the member does not
//!   hold (it restarted, or the token's TTL passed) or an expired JWT;
//! - `etcdserver: revision of auth store is old`: users or roles changed
//!   after the token's revision (a JWT carries the revision it was signed
//!   at);
//! - `etcdserver: user name is empty`: the member saw no token;
//! - `etcdserver: user name not found`: the token's user is unknown there.
//!
//! **Never applied** ([`never_applied`]): for each of these and for
//! `etcdserver: permission denied`, both servers guarantee that the request
//! changed nothing, so an operation that got one is `fail`, not `info`.
//! etcd 3.4 resolves the token before proposing a write
//! (`processInternalRaftRequestOnce` → `AuthInfoFromCtx`): an invalid token
//! is never proposed. The other checks run when the entry is applied
//! (`authApplierV3`), against the auth revision the request was checked at:
//! every member refuses the same entry, before the request it wraps is
//! applied, and the client's answer is that refusal. oxetcd checks before
//! proposing and, for the auth revision, again at apply
//! (server/src/auth/mod.rs), with the same result. A server that broke this
//! (applied a write and answered an auth error) would show as a write seen
//! by reads although it "failed": the checkers would report it.
//!
//! **Permission denied** on the workload's own keys is never retried or
//! hidden: the workload user holds READWRITE on them, so it is a server bug
//! (or a run made to check this, with less granted), and [`super::verdict`]
//! makes the run invalid.

/// The errors (etcd's texts) that say a token must be fetched again.
const STALE_TOKEN: [&str; 4] = [
    "etcdserver: invalid auth token",
    "etcdserver: revision of auth store is old",
    "etcdserver: user name is empty",
    "etcdserver: user name not found",
];

pub const PERMISSION_DENIED: &str = "etcdserver: permission denied";

/// The stale-token error `message` is, if it is one (etcd's text, which is
/// also the refresh's reason in the counts).
pub fn stale_token(message: &str) -> Option<&'static str> {
    STALE_TOKEN.into_iter().find(|text| message.contains(text))
}

/// Whether an error with this message guarantees the request was not
/// applied (see the module's comment).
pub fn never_applied(message: &str) -> bool {
    stale_token(message).is_some() || message.contains(PERMISSION_DENIED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_tokens_are_told_from_denials_and_other_errors() {
        assert_eq!(
            stale_token("etcdserver: invalid auth token"),
            Some("etcdserver: invalid auth token")
        );
        assert!(stale_token("etcdserver: revision of auth store is old").is_some());
        assert!(stale_token(PERMISSION_DENIED).is_none());
        assert!(stale_token("etcdserver: request timed out").is_none());
        assert!(never_applied(PERMISSION_DENIED));
        assert!(never_applied("etcdserver: user name is empty"));
        assert!(!never_applied("etcdserver: leader changed"));
        assert!(!never_applied("etcdserver: request timed out"));
    }
}
