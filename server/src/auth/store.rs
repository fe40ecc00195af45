//! The auth state (etcd's AuthStore): users, roles, the enabled flag and the
//! auth revision, changed only by applying [`AuthChange`]s from the log and
//! kept as cluster records beside the data (`auth/...`), so it survives
//! restarts and travels in snapshots.
//!
//! Records: `auth/enabled` (one byte, 1 when enabled), `auth/revision` (u64
//! big-endian), `auth/users/<name>` (an encoded `authpb.User`, the password
//! as its bcrypt hash), `auth/roles/<name>` (an encoded `authpb.Role`). Each
//! change is written in one batch with the state machine's applied record.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use oxetcd_proto::authpb::{Permission, Role, User};
use oxetcd_storage::Store;
use parking_lot::RwLock;
use prost::Message;

use super::jwt::JwtTokens;
use super::perms::{self, Access};
use super::tokens::SimpleTokens;
use crate::command::{AuthApplied, AuthChange};
use crate::error::EtcdError;

pub(super) const PREFIX: &str = "auth/";
pub(super) const ENABLED: &str = "auth/enabled";
pub(super) const REVISION: &str = "auth/revision";
pub(super) const USERS: &str = "auth/users/";
pub(super) const ROLES: &str = "auth/roles/";

/// The role that may do everything, and the user that must hold it before
/// auth can be enabled.
pub const ROOT: &str = "root";

#[derive(Clone, Default, Debug, PartialEq)]
pub(crate) struct AuthState {
    pub enabled: bool,
    pub revision: u64,
    pub users: BTreeMap<String, User>,
    pub roles: BTreeMap<String, Role>,
}

impl AuthState {
    fn load(store: &Store) -> Result<Self, EtcdError> {
        let mut state = AuthState::default();
        for (key, raw) in store.cluster_records(PREFIX)? {
            let corrupt = |e: &dyn std::fmt::Display| EtcdError::Storage(format!("{key}: {e}"));
            if key == ENABLED {
                state.enabled = raw.first() == Some(&1);
            } else if key == REVISION {
                let b: [u8; 8] = raw
                    .as_ref()
                    .try_into()
                    .map_err(|_| corrupt(&"not 8 bytes"))?;
                state.revision = u64::from_be_bytes(b);
            } else if let Some(name) = key.strip_prefix(USERS) {
                let user = User::decode(raw).map_err(|e| corrupt(&e))?;
                state.users.insert(name.to_string(), user);
            } else if let Some(name) = key.strip_prefix(ROLES) {
                let role = Role::decode(raw).map_err(|e| corrupt(&e))?;
                state.roles.insert(name.to_string(), role);
            }
        }
        Ok(state)
    }

    fn user_record(name: &str, user: Option<&User>) -> (String, Option<Bytes>) {
        (
            format!("{USERS}{name}"),
            user.map(|u| Bytes::from(u.encode_to_vec())),
        )
    }

    fn role_record(name: &str, role: Option<&Role>) -> (String, Option<Bytes>) {
        (
            format!("{ROLES}{name}"),
            role.map(|r| Bytes::from(r.encode_to_vec())),
        )
    }

    fn has_root_role(&self, name: &str) -> bool {
        self.users
            .get(name)
            .is_some_and(|u| u.roles.iter().any(|r| r == ROOT))
    }

    /// Applies `change` to this state; the records it changed (the
    /// revision's included when it moved), or why it is refused (then the
    /// state is as it was: every check runs before the first change).
    fn change(&mut self, change: &AuthChange) -> Result<Vec<(String, Option<Bytes>)>, EtcdError> {
        let mut records = Vec::new();
        // Whether the change moves the revision: as etcd 3.4, every change
        // of users or roles, and enabling auth when it was off (so nothing
        // checked before it passes after it); disabling does not.
        let mut bump = true;
        match change {
            AuthChange::Enable(_) => {
                bump = !self.enabled;
                if !self.enabled {
                    if !self.users.contains_key(ROOT) {
                        return Err(EtcdError::RootUserNotExist);
                    }
                    if !self.has_root_role(ROOT) {
                        return Err(EtcdError::RootRoleNotExist);
                    }
                    self.enabled = true;
                    records.push((ENABLED.to_string(), Some(Bytes::from_static(&[1]))));
                }
            }
            AuthChange::Disable(_) => {
                bump = false;
                if self.enabled {
                    self.enabled = false;
                    records.push((ENABLED.to_string(), Some(Bytes::from_static(&[0]))));
                }
            }
            AuthChange::Authenticate(t) => {
                bump = false;
                let user = self.users.get(&t.name).ok_or(EtcdError::AuthFailed)?;
                if user.options.as_ref().is_some_and(|o| o.no_password) {
                    return Err(EtcdError::AuthFailed);
                }
            }
            AuthChange::UserAdd(r) => {
                if r.name.is_empty() {
                    return Err(EtcdError::UserEmpty);
                }
                if self.users.contains_key(&r.name) {
                    return Err(EtcdError::UserAlreadyExist);
                }
                let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
                let user = User {
                    name: Bytes::from(r.name.clone().into_bytes()),
                    password: if no_password {
                        Bytes::new()
                    } else {
                        Bytes::from(r.hashed_password.clone().into_bytes())
                    },
                    roles: Vec::new(),
                    options: r.options,
                };
                records.push(Self::user_record(&r.name, Some(&user)));
                self.users.insert(r.name.clone(), user);
            }
            AuthChange::UserDelete(r) => {
                if self.enabled && r.name == ROOT {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                if self.users.remove(&r.name).is_none() {
                    return Err(EtcdError::UserNotFound);
                }
                records.push(Self::user_record(&r.name, None));
            }
            AuthChange::UserChangePassword(r) => {
                let user = self.users.get_mut(&r.name).ok_or(EtcdError::UserNotFound)?;
                user.password = Bytes::from(r.hashed_password.clone().into_bytes());
                records.push(Self::user_record(&r.name, Some(user)));
            }
            AuthChange::UserGrantRole(r) => {
                if !self.users.contains_key(&r.user) {
                    return Err(EtcdError::UserNotFound);
                }
                if r.role != ROOT && !self.roles.contains_key(&r.role) {
                    return Err(EtcdError::RoleNotFound);
                }
                let user = self.users.get_mut(&r.user).ok_or(EtcdError::UserNotFound)?;
                match user.roles.binary_search(&r.role) {
                    // Granted already: etcd answers success and changes nothing.
                    Ok(_) => bump = false,
                    Err(at) => {
                        user.roles.insert(at, r.role.clone());
                        records.push(Self::user_record(&r.user, Some(user)));
                    }
                }
            }
            AuthChange::UserRevokeRole(r) => {
                if self.enabled && r.name == ROOT && r.role == ROOT {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                let user = self.users.get_mut(&r.name).ok_or(EtcdError::UserNotFound)?;
                let at = user
                    .roles
                    .iter()
                    .position(|role| *role == r.role)
                    .ok_or(EtcdError::RoleNotGranted)?;
                user.roles.remove(at);
                records.push(Self::user_record(&r.name, Some(user)));
            }
            AuthChange::RoleAdd(r) => {
                if r.name.is_empty() {
                    return Err(EtcdError::RoleEmpty);
                }
                if self.roles.contains_key(&r.name) {
                    return Err(EtcdError::RoleAlreadyExist);
                }
                let role = Role {
                    name: Bytes::from(r.name.clone().into_bytes()),
                    key_permission: Vec::new(),
                };
                records.push(Self::role_record(&r.name, Some(&role)));
                self.roles.insert(r.name.clone(), role);
            }
            AuthChange::RoleDelete(r) => {
                if self.enabled && r.role == ROOT {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                if self.roles.remove(&r.role).is_none() {
                    return Err(EtcdError::RoleNotFound);
                }
                records.push(Self::role_record(&r.role, None));
                // As etcd: the role leaves every user that had it.
                for (name, user) in self.users.iter_mut() {
                    if let Some(at) = user.roles.iter().position(|role| *role == r.role) {
                        user.roles.remove(at);
                        records.push(Self::user_record(name, Some(user)));
                    }
                }
            }
            AuthChange::RoleGrantPermission(r) => {
                let perm = r.perm.clone().ok_or(EtcdError::PermissionNotGiven)?;
                let role = self.roles.get_mut(&r.name).ok_or(EtcdError::RoleNotFound)?;
                grant(role, perm);
                records.push(Self::role_record(&r.name, Some(role)));
            }
            AuthChange::RoleRevokePermission(r) => {
                let role = self.roles.get_mut(&r.role).ok_or(EtcdError::RoleNotFound)?;
                let at = role
                    .key_permission
                    .iter()
                    .position(|p| p.key == r.key && p.range_end == r.range_end)
                    .ok_or(EtcdError::PermissionNotGranted)?;
                role.key_permission.remove(at);
                records.push(Self::role_record(&r.role, Some(role)));
            }
        }
        if bump {
            self.revision += 1;
            records.push((
                REVISION.to_string(),
                Some(Bytes::copy_from_slice(&self.revision.to_be_bytes())),
            ));
        }
        Ok(records)
    }
}

/// Grants `perm` to `role`: a permission on the same range changes type,
/// a new one joins the list in key order (as etcd keeps it).
fn grant(role: &mut Role, perm: Permission) {
    match role
        .key_permission
        .iter_mut()
        .find(|p| p.key == perm.key && p.range_end == perm.range_end)
    {
        Some(same) => same.perm_type = perm.perm_type,
        None => {
            let at = role
                .key_permission
                .partition_point(|p| (&p.key, &p.range_end) < (&perm.key, &perm.range_end));
            role.key_permission.insert(at, perm);
        }
    }
}

/// The auth state and this member's tokens.
pub struct AuthStore {
    state: RwLock<AuthState>,
    tokens: SimpleTokens,
    /// Set with --auth-token=jwt: tokens are JWTs, not simple tokens.
    jwt: Option<JwtTokens>,
}

/// etcd's --auth-token-ttl default.
pub const DEFAULT_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// No users, no roles, auth disabled; tokens live etcd's default TTL.
impl Default for AuthStore {
    fn default() -> Self {
        Self {
            state: RwLock::default(),
            tokens: SimpleTokens::new(DEFAULT_TOKEN_TTL),
            jwt: None,
        }
    }
}

impl AuthStore {
    /// The auth state recorded in `store`.
    pub fn load(
        store: &Store,
        tokens: SimpleTokens,
        jwt: Option<JwtTokens>,
    ) -> Result<Self, EtcdError> {
        Ok(Self {
            state: RwLock::new(AuthState::load(store)?),
            tokens,
            jwt,
        })
    }

    /// JWT tokens, when --auth-token=jwt.
    pub fn jwt(&self) -> Option<&JwtTokens> {
        self.jwt.as_ref()
    }

    /// Reads the state from `store` again (after a snapshot replaced it).
    /// Tokens of users that are gone are dropped.
    pub fn reload(&self, store: &Store) -> Result<(), EtcdError> {
        let fresh = AuthState::load(store)?;
        let mut state = self.state.write();
        for name in state.users.keys() {
            if !fresh.users.contains_key(name) {
                self.tokens.revoke_user(name);
            }
        }
        if !fresh.enabled {
            self.tokens.clear();
        }
        *state = fresh;
        Ok(())
    }

    /// Applies one change from the log; its records are stored with
    /// `applied` in one batch. A refused change changes nothing.
    pub(crate) fn apply(
        &self,
        store: &Store,
        change: &AuthChange,
        applied: Option<Bytes>,
    ) -> Result<AuthApplied, EtcdError> {
        let mut state = self.state.write();
        let mut next = state.clone();
        let records = next.change(change)?;
        if !records.is_empty() {
            store.change_cluster_records(records, applied)?;
        }
        match change {
            AuthChange::Authenticate(t) => self.tokens.assign(&t.token, &t.name, Instant::now()),
            AuthChange::Disable(_) => self.tokens.clear(),
            // A user deleted or given a new password loses its tokens.
            AuthChange::UserDelete(r) => self.tokens.revoke_user(&r.name),
            AuthChange::UserChangePassword(r) => self.tokens.revoke_user(&r.name),
            _ => {}
        }
        *state = next;
        Ok(AuthApplied {
            auth_revision: state.revision,
        })
    }

    pub fn enabled(&self) -> bool {
        self.state.read().enabled
    }

    pub fn revision(&self) -> u64 {
        self.state.read().revision
    }

    /// The user a live token names.
    pub fn token_user(&self, token: &str) -> Option<String> {
        self.tokens.user(token, Instant::now())
    }

    /// The password hash of `name` and the auth revision it was read at;
    /// `AuthFailed` for a missing user or one without a password.
    pub fn password_hash(&self, name: &str) -> Result<(String, u64), EtcdError> {
        let state = self.state.read();
        let user = state.users.get(name).ok_or(EtcdError::AuthFailed)?;
        if user.options.as_ref().is_some_and(|o| o.no_password) || user.password.is_empty() {
            return Err(EtcdError::AuthFailed);
        }
        let hash = String::from_utf8(user.password.to_vec()).map_err(|_| EtcdError::AuthFailed)?;
        Ok((hash, state.revision))
    }

    /// Whether `name` holds the root role (may do everything).
    pub fn is_root(&self, name: &str) -> bool {
        self.state.read().has_root_role(name)
    }

    /// Whether user `name` holds `role`.
    pub fn has_role(&self, name: &str, role: &str) -> bool {
        self.state
            .read()
            .users
            .get(name)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    /// Whether `name` exists.
    pub fn user_exists(&self, name: &str) -> bool {
        self.state.read().users.contains_key(name)
    }

    /// Whether `name` may have `access` on `[key, range_end)`: root may do
    /// everything, anyone else what its roles grant.
    pub fn permitted(&self, name: &str, key: &[u8], range_end: &[u8], access: Access) -> bool {
        let state = self.state.read();
        let Some(user) = state.users.get(name) else {
            return false;
        };
        if user.roles.iter().any(|r| r == ROOT) {
            return true;
        }
        let roles = user.roles.iter().filter_map(|r| state.roles.get(r));
        perms::covers(roles, key, range_end, access)
    }

    pub fn user_roles(&self, name: &str) -> Result<Vec<String>, EtcdError> {
        let state = self.state.read();
        let user = state.users.get(name).ok_or(EtcdError::UserNotFound)?;
        Ok(user.roles.clone())
    }

    pub fn user_names(&self) -> Vec<String> {
        self.state.read().users.keys().cloned().collect()
    }

    /// A role's permissions. The root role, granted without being added, has
    /// none listed unless it was added.
    pub fn role_permissions(&self, name: &str) -> Result<Vec<Permission>, EtcdError> {
        let state = self.state.read();
        match state.roles.get(name) {
            Some(role) => Ok(role.key_permission.clone()),
            None => Err(EtcdError::RoleNotFound),
        }
    }

    pub fn role_names(&self) -> Vec<String> {
        self.state.read().roles.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use oxetcd_proto::authpb::permission::Type as PermType;
    use oxetcd_proto::etcdserverpb::*;
    use oxetcd_storage::SledBackend;

    fn store(dir: &std::path::Path) -> Store {
        Store::open(Box::new(SledBackend::open(dir, 1 << 20).unwrap())).unwrap()
    }

    fn auth(store: &Store) -> AuthStore {
        AuthStore::load(store, SimpleTokens::new(Duration::from_secs(60)), None).unwrap()
    }

    fn user_add(name: &str) -> AuthChange {
        AuthChange::UserAdd(AuthUserAddRequest {
            name: name.into(),
            hashed_password: format!("hash-of-{name}"),
            ..Default::default()
        })
    }

    fn grant_role(user: &str, role: &str) -> AuthChange {
        AuthChange::UserGrantRole(AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        })
    }

    fn grant_perm(role: &str, key: &str, end: &str, t: PermType) -> AuthChange {
        AuthChange::RoleGrantPermission(AuthRoleGrantPermissionRequest {
            name: role.into(),
            perm: Some(Permission {
                perm_type: t as i32,
                key: key.as_bytes().to_vec().into(),
                range_end: end.as_bytes().to_vec().into(),
            }),
        })
    }

    fn err(r: Result<AuthApplied, EtcdError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn enabling_needs_root_with_the_root_role() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let a = auth(&store);
        let enable = AuthChange::Enable(AuthEnableRequest {});
        assert_eq!(
            err(a.apply(&store, &enable, None)),
            "etcdserver: root user does not exist"
        );
        a.apply(&store, &user_add(ROOT), None).unwrap();
        assert_eq!(
            err(a.apply(&store, &enable, None)),
            "etcdserver: root user does not have root role"
        );
        a.apply(&store, &grant_role(ROOT, ROOT), None).unwrap();
        a.apply(&store, &enable, None).unwrap();
        assert!(a.enabled());
        // Root cannot lose root, nor be deleted, while auth is on.
        let revoke = AuthChange::UserRevokeRole(AuthUserRevokeRoleRequest {
            name: ROOT.into(),
            role: ROOT.into(),
        });
        assert_eq!(
            err(a.apply(&store, &revoke, None)),
            "etcdserver: invalid auth management"
        );
        let delete = AuthChange::UserDelete(AuthUserDeleteRequest { name: ROOT.into() });
        assert_eq!(
            err(a.apply(&store, &delete, None)),
            "etcdserver: invalid auth management"
        );
        assert!(a.user_exists(ROOT) && a.is_root(ROOT));
    }

    #[test]
    fn changes_bump_the_revision_survive_a_reload_and_refusals_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let a = auth(&store);
        a.apply(&store, &user_add("alice"), None).unwrap();
        assert_eq!(a.revision(), 1);
        assert_eq!(
            err(a.apply(&store, &user_add("alice"), None)),
            "etcdserver: user name already exists"
        );
        assert_eq!(
            err(a.apply(&store, &grant_role("alice", "reader"), None)),
            "etcdserver: role name not found"
        );
        assert_eq!(a.revision(), 1, "refusals change nothing");
        a.apply(
            &store,
            &AuthChange::RoleAdd(AuthRoleAddRequest {
                name: "reader".into(),
            }),
            None,
        )
        .unwrap();
        a.apply(
            &store,
            &grant_perm("reader", "a", "c", PermType::Read),
            None,
        )
        .unwrap();
        a.apply(&store, &grant_role("alice", "reader"), None)
            .unwrap();
        assert_eq!(a.revision(), 4);
        assert!(a.permitted("alice", b"b", b"", Access::Read));
        assert!(!a.permitted("alice", b"b", b"", Access::Write));
        assert!(!a.permitted("bob", b"b", b"", Access::Read));

        let again = auth(&store);
        assert_eq!(*again.state.read(), *a.state.read(), "stored whole");

        // Deleting the role takes it from alice.
        a.apply(
            &store,
            &AuthChange::RoleDelete(AuthRoleDeleteRequest {
                role: "reader".into(),
            }),
            None,
        )
        .unwrap();
        assert!(a.user_roles("alice").unwrap().is_empty());
        assert!(!a.permitted("alice", b"b", b"", Access::Read));
        assert_eq!(*auth(&store).state.read(), *a.state.read());
    }

    /// The auth revision after each step of a session run against etcd
    /// 3.4.23 (each number read from a root JWT's `revision` claim there).
    #[test]
    fn the_revision_moves_as_etcds() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let a = auth(&store);
        let enable = AuthChange::Enable(AuthEnableRequest {});
        let disable = AuthChange::Disable(AuthDisableRequest {});
        let steps = [
            (user_add(ROOT), 1),
            (grant_role(ROOT, ROOT), 2),
            (enable.clone(), 3),
            (
                AuthChange::RoleAdd(AuthRoleAddRequest { name: "r1".into() }),
                4,
            ),
            (grant_perm("r1", "a", "", PermType::Read), 5),
            (user_add("u1"), 6),
            (grant_role("u1", "r1"), 7),
            // Granted already: no change.
            (grant_role("u1", "r1"), 7),
            (disable.clone(), 7),
            (user_add("u2"), 8),
            (enable.clone(), 9),
            // Enabled already: no change.
            (enable.clone(), 9),
            (disable, 9),
            (enable, 10),
        ];
        for (i, (change, want)) in steps.iter().enumerate() {
            a.apply(&store, change, None).unwrap();
            assert_eq!(a.revision(), *want, "after step {i}: {change:?}");
        }
        assert_eq!(auth(&store).revision(), 10, "stored");
    }

    #[test]
    fn permissions_are_granted_updated_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let a = auth(&store);
        a.apply(
            &store,
            &AuthChange::RoleAdd(AuthRoleAddRequest { name: "r".into() }),
            None,
        )
        .unwrap();
        a.apply(&store, &grant_perm("r", "k", "", PermType::Read), None)
            .unwrap();
        a.apply(&store, &grant_perm("r", "k", "", PermType::Readwrite), None)
            .unwrap();
        a.apply(&store, &grant_perm("a", "", "", PermType::Read), None)
            .unwrap_err();
        let perms = a.role_permissions("r").unwrap();
        assert_eq!(perms.len(), 1);
        assert_eq!(perms[0].perm_type, PermType::Readwrite as i32);
        let revoke = |key: &str| {
            AuthChange::RoleRevokePermission(AuthRoleRevokePermissionRequest {
                role: "r".into(),
                key: key.as_bytes().to_vec().into(),
                range_end: Default::default(),
            })
        };
        assert_eq!(
            err(a.apply(&store, &revoke("other"), None)),
            "etcdserver: permission is not granted to the role"
        );
        a.apply(&store, &revoke("k"), None).unwrap();
        assert!(a.role_permissions("r").unwrap().is_empty());
    }

    #[test]
    fn a_deleted_user_or_new_password_ends_its_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let a = auth(&store);
        a.apply(&store, &user_add("alice"), None).unwrap();
        let login = |token: &str| {
            AuthChange::Authenticate(crate::command::SimpleToken {
                name: "alice".into(),
                token: token.into(),
            })
        };
        a.apply(&store, &login("t.1"), None).unwrap();
        assert_eq!(a.token_user("t.1").as_deref(), Some("alice"));
        let new_password = AuthChange::UserChangePassword(AuthUserChangePasswordRequest {
            name: "alice".into(),
            hashed_password: "new".into(),
            ..Default::default()
        });
        a.apply(&store, &new_password, None).unwrap();
        assert_eq!(a.token_user("t.1"), None);
        a.apply(&store, &login("t.2"), None).unwrap();
        a.apply(
            &store,
            &AuthChange::UserDelete(AuthUserDeleteRequest {
                name: "alice".into(),
            }),
            None,
        )
        .unwrap();
        assert_eq!(a.token_user("t.2"), None);
        assert_eq!(
            err(a.apply(&store, &login("t.3"), None)),
            "etcdserver: authentication failed, invalid user ID or password"
        );
    }
}
