//! Auth (etcd's `auth` package): users, roles and key-range permissions as
//! replicated state ([`AuthStore`]), simple tokens, and the one place that
//! decides whether a caller may do what it asks ([`AuthStore::check`]).
//!
//! How a request is checked, as etcd does it: the front end turns the
//! request's token (gRPC metadata `token`, or `authorization` from the JSON
//! gateway) or its client certificate's CommonName into a [`Caller`]; the
//! member checks what the request needs ([`needs`]) against the caller's
//! roles, and a write goes through the log wrapped with the auth revision it
//! was checked at (`command::Authorized`): if users or roles changed before
//! it is applied, every member refuses it ("revision of auth store is old"),
//! so a revoked permission is never used after the revoke is applied.
//!
//! The state moves in etcd's database layout too ([`etcd_buckets`],
//! [`records_from_etcd`]): snapshots for etcd carry it, etcd's data dirs
//! bring theirs.
//!
//! Tokens are simple tokens ([`SimpleTokens`], given through the log so
//! every member knows them) or, with --auth-token=jwt, JWTs ([`JwtTokens`],
//! checked with the public key, carrying the auth revision they were signed
//! at).

mod backoff;
mod etcd_db;
mod jwt;
pub mod needs;
mod perms;
mod store;
mod tokens;

pub use backoff::{delay as login_delay, Login, LoginBackoff, MAX_DELAY as MAX_LOGIN_DELAY};
pub use etcd_db::{etcd_buckets, records_from_etcd};
pub use jwt::{JwtConfig, JwtTokens};
pub use needs::Need;
pub use perms::Access;
pub use store::{AuthStore, DEFAULT_TOKEN_TTL, ROOT};
pub use tokens::SimpleTokens;

use crate::error::EtcdError;

/// A user and the auth revision its permissions were looked up at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthInfo {
    pub name: String,
    pub revision: u64,
    /// The revision is the credential's own (a JWT's claim, a password
    /// checked at it): looking the user up again cannot refresh it.
    pub fixed_revision: bool,
}

/// Who sends a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Auth is disabled, or the caller is in-process (an embedder, the lock
    /// and election services acting for a checked client): nothing to check.
    Unchecked,
    /// Auth is enabled and the request names no user.
    Anonymous,
    User(AuthInfo),
}

impl Caller {
    /// The same caller looked up again at auth revision `revision`, when its
    /// credential allows it (a simple token or a certificate does, a JWT
    /// does not).
    pub fn refreshed(&self, revision: u64) -> Option<Caller> {
        match self {
            Caller::User(info) if !info.fixed_revision => Some(Caller::User(AuthInfo {
                revision,
                ..info.clone()
            })),
            _ => None,
        }
    }

    /// The caller as checked against the auth state at `revision`, whatever
    /// its credential's own revision: for admin calls, which are checked
    /// against the current state (see `AuthStore::check`).
    pub fn checked_now(&self, revision: u64) -> Caller {
        match self {
            Caller::User(info) => Caller::User(AuthInfo {
                revision,
                ..info.clone()
            }),
            other => other.clone(),
        }
    }

    /// The auth revision a write must be applied at, when it was checked.
    pub fn checked_at(&self) -> Option<u64> {
        match self {
            Caller::User(info) => Some(info.revision),
            _ => None,
        }
    }
}

impl AuthStore {
    /// The caller of a request carrying `token` and, from a verified client
    /// certificate, `common_name` (used only when there is no token, as
    /// etcd's --client-cert-auth). An unknown or expired token is refused.
    pub fn caller(
        &self,
        token: Option<&str>,
        common_name: Option<&str>,
    ) -> Result<Caller, EtcdError> {
        if !self.enabled() {
            return Ok(Caller::Unchecked);
        }
        let revision = self.revision();
        let (name, revision, fixed_revision) = match (token, common_name) {
            // A JWT carries the auth revision it was signed at.
            (Some(token), _) => match self.jwt() {
                Some(jwt) => {
                    let (name, signed_at) = jwt.verify(token).ok_or(EtcdError::InvalidAuthToken)?;
                    (name, signed_at, true)
                }
                None => (
                    self.token_user(token).ok_or(EtcdError::InvalidAuthToken)?,
                    revision,
                    false,
                ),
            },
            (None, Some(cn)) if !cn.is_empty() => (cn.to_string(), revision, false),
            (None, _) => return Ok(Caller::Anonymous),
        };
        Ok(Caller::User(AuthInfo {
            name,
            revision,
            fixed_revision,
        }))
    }

    /// Whether `caller` may do everything in `needs`: `UserEmpty` without a
    /// user, `AuthOldRevision` when the auth state changed since the caller
    /// was identified (not for admin calls, see below), `PermissionDenied`
    /// when a need is not granted.
    pub fn check(&self, caller: &Caller, needs: &[Need<'_>]) -> Result<(), EtcdError> {
        let info = match caller {
            Caller::Unchecked => return Ok(()),
            Caller::Anonymous => return Err(EtcdError::UserEmpty),
            Caller::User(info) => info,
        };
        if !self.enabled() {
            return Ok(());
        }
        // etcd asks the admin calls only for a user holding root, so a
        // credential of a user deleted since (a JWT) is a missing user there,
        // not a stale revision.
        let admin = needs
            .iter()
            .any(|n| matches!(n, Need::Admin | Need::AdminOrUser(_) | Need::AdminOrRole(_)));
        if admin && !self.user_exists(&info.name) {
            return Err(EtcdError::UserNotFound);
        }
        // etcd's IsAdminPermitted looks at the user as it is now, whatever
        // the revision its token was issued at: a JWT from before a change
        // still works for root, and gets "permission denied" for anyone else.
        if !admin && info.revision < self.revision() {
            return Err(EtcdError::AuthOldRevision);
        }
        for need in needs {
            let granted = match need {
                Need::Admin => self.is_root(&info.name),
                Need::AdminOrUser(user) => self.is_root(&info.name) || info.name == *user,
                Need::AdminOrRole(role) => {
                    self.is_root(&info.name) || self.has_role(&info.name, role)
                }
                Need::Range {
                    key,
                    range_end,
                    access,
                } => self.permitted(&info.name, key, range_end, *access),
            };
            if !granted {
                return Err(EtcdError::PermissionDenied);
            }
        }
        Ok(())
    }
}

/// A bcrypt hash of `password` at `cost` (etcd's --bcrypt-cost). Slow on
/// purpose: call it off the async threads.
pub fn hash_password(password: &str, cost: u32) -> Result<String, EtcdError> {
    bcrypt::hash(password, cost).map_err(|e| EtcdError::Storage(format!("bcrypt: {e}")))
}

/// Whether `password` matches `hash`. Slow on purpose, as [`hash_password`].
pub fn password_matches(password: &str, hash: &str) -> bool {
    bcrypt::verify(password, hash).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use oxetcd_proto::etcdserverpb::{
        AuthEnableRequest, AuthUserAddRequest, AuthUserGrantRoleRequest,
    };
    use oxetcd_storage::{SledBackend, Store};

    use super::*;
    use crate::command::{AuthChange, SimpleToken};

    #[test]
    fn callers_are_named_by_token_then_certificate_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(Box::new(SledBackend::open(dir.path(), 1 << 20).unwrap())).unwrap();
        let auth =
            AuthStore::load(&store, SimpleTokens::new(Duration::from_secs(60)), None).unwrap();
        assert_eq!(
            auth.caller(Some("anything"), None).unwrap(),
            Caller::Unchecked
        );
        for change in [
            AuthChange::UserAdd(AuthUserAddRequest {
                name: ROOT.into(),
                hashed_password: "h".into(),
                ..Default::default()
            }),
            AuthChange::UserAdd(AuthUserAddRequest {
                name: "bob".into(),
                hashed_password: "h".into(),
                ..Default::default()
            }),
            AuthChange::UserGrantRole(AuthUserGrantRoleRequest {
                user: ROOT.into(),
                role: ROOT.into(),
            }),
            AuthChange::Enable(AuthEnableRequest {}),
            AuthChange::Authenticate(SimpleToken {
                name: "bob".into(),
                token: "t.1".into(),
            }),
        ] {
            auth.apply(&store, &change, None).unwrap();
        }
        let needs = [Need::Range {
            key: b"k",
            range_end: b"",
            access: Access::Read,
        }];
        assert_eq!(auth.caller(None, None).unwrap(), Caller::Anonymous);
        assert_eq!(
            auth.check(&Caller::Anonymous, &needs)
                .unwrap_err()
                .to_string(),
            "etcdserver: user name is empty"
        );
        assert_eq!(
            auth.caller(Some("forged.1"), None).unwrap_err().to_string(),
            "etcdserver: invalid auth token"
        );
        let bob = auth.caller(Some("t.1"), Some(ROOT)).unwrap();
        assert_eq!(bob.checked_at(), Some(auth.revision()));
        assert_eq!(
            auth.check(&bob, &needs).unwrap_err().to_string(),
            "etcdserver: permission denied"
        );
        assert_eq!(
            auth.check(&bob, &[Need::Admin]).unwrap_err().to_string(),
            "etcdserver: permission denied"
        );
        auth.check(&bob, &[Need::AdminOrUser("bob")]).unwrap();
        assert!(auth.check(&bob, &[Need::AdminOrUser(ROOT)]).is_err());
        assert!(auth.check(&bob, &[Need::AdminOrRole(ROOT)]).is_err());
        let root = auth.caller(None, Some(ROOT)).unwrap();
        auth.check(&root, &needs).unwrap();
        auth.check(&root, &[Need::Admin]).unwrap();
        // A change of the auth state makes callers identified before it
        // stale; one named by a token or certificate can be looked up again.
        auth.apply(
            &store,
            &AuthChange::UserAdd(AuthUserAddRequest {
                name: "carol".into(),
                hashed_password: "h".into(),
                ..Default::default()
            }),
            None,
        )
        .unwrap();
        assert_eq!(
            auth.check(&root, &needs).unwrap_err().to_string(),
            "etcdserver: revision of auth store is old"
        );
        auth.check(&root.refreshed(auth.revision()).unwrap(), &needs)
            .unwrap();
        // Admin calls look at the user as it is now, as etcd's
        // IsAdminPermitted: a JWT signed before the change still serves root,
        // and anyone else is denied, not told the revision is old.
        let jwt = |name: &str| {
            Caller::User(AuthInfo {
                name: name.into(),
                revision: auth.revision() - 1,
                fixed_revision: true,
            })
        };
        auth.check(&jwt(ROOT), &[Need::Admin]).unwrap();
        assert_eq!(
            auth.check(&jwt("bob"), &[Need::Admin])
                .unwrap_err()
                .to_string(),
            "etcdserver: permission denied"
        );
        assert_eq!(
            auth.check(&jwt(ROOT), &needs).unwrap_err().to_string(),
            "etcdserver: revision of auth store is old"
        );
    }

    #[test]
    fn passwords_are_hashed_with_bcrypt_and_checked() {
        let hash = hash_password("secret", 4).unwrap();
        assert!(hash.starts_with("$2"), "{hash}");
        assert!(password_matches("secret", &hash));
        assert!(!password_matches("Secret", &hash));
        assert!(!password_matches("secret", "not a hash"));
    }
}
