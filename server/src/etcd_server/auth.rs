//! The Auth service's calls on the member: changes go through the log as
//! `Request::Auth`, reads answer from the applied auth state after a read
//! barrier. Password hashing and checking (bcrypt, slow on purpose) run on
//! tokio's blocking threads, never on the request threads.

use oxetcd_proto::authpb::Permission;
use oxetcd_proto::etcdserverpb::*;

use std::time::Instant;

use super::{EtcdServer, AUTH_RETRIES};
use crate::auth::{self, Caller, Login, Need, SimpleTokens};
use crate::command::{AuthApplied, AuthChange, AuthCommand, SimpleToken};
use crate::error::EtcdError;

/// Runs a slow password computation off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, EtcdError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EtcdError::Storage(format!("password hashing task: {e}")))
}

impl EtcdServer {
    /// The auth state as this member applied it.
    pub fn auth(&self) -> &auth::AuthStore {
        &self.auth
    }

    /// The caller of a request carrying `token` and, from a verified client
    /// certificate, `common_name` (see `AuthStore::caller`).
    pub fn caller(
        &self,
        token: Option<&str>,
        common_name: Option<&str>,
    ) -> Result<Caller, EtcdError> {
        self.auth.caller(token, common_name)
    }

    /// Checks `caller` for `needs` (see `AuthStore::check`).
    pub fn check(&self, caller: &Caller, needs: &[Need<'_>]) -> Result<(), EtcdError> {
        self.auth.check(caller, needs)
    }

    /// Proposes an auth change for `caller`, who must be root once auth is
    /// enabled. As etcd checks admin calls when it applies them, against the
    /// users and roles of that moment: the change carries the auth revision
    /// it was checked at, and one refused because users or roles changed
    /// meanwhile is checked again against the new state and proposed again.
    async fn change_auth(
        &self,
        caller: &Caller,
        change: AuthChange,
    ) -> Result<AuthApplied, EtcdError> {
        let mut tries = 0;
        loop {
            // Read before the check: a change between them makes the
            // proposal stale, never a check of one state applied at another.
            let revision = self.auth.revision();
            self.auth.check(caller, &[Need::Admin])?;
            let proposal = AuthCommand {
                change: Some(change.clone()),
            };
            match self
                .propose_as(&caller.checked_now(revision), proposal)
                .await
            {
                Err(EtcdError::AuthOldRevision) if tries < AUTH_RETRIES => tries += 1,
                result => return result,
            }
        }
    }

    /// For a read of the auth state by `caller`, who must have `need` (root,
    /// or for a user or role, that user or a holder of that role):
    /// waits until this member has applied every change committed before.
    async fn read_auth(&self, caller: &Caller, need: Need<'_>) -> Result<(), EtcdError> {
        self.auth.check(caller, &[need])?;
        self.read_barrier().await
    }

    /// Enables auth. While it is off anyone may (etcd refuses it only
    /// without a root user holding the root role); once it is on, as in
    /// etcd, only root may ask again.
    pub async fn auth_enable(&self, caller: &Caller) -> Result<AuthEnableResponse, EtcdError> {
        self.auth.check(caller, &[Need::Admin])?;
        self.propose(AuthCommand {
            change: Some(AuthChange::Enable(AuthEnableRequest {})),
        })
        .await?;
        Ok(AuthEnableResponse {
            header: self.current_header(),
        })
    }

    pub async fn auth_disable(&self, caller: &Caller) -> Result<AuthDisableResponse, EtcdError> {
        self.change_auth(caller, AuthChange::Disable(AuthDisableRequest {}))
            .await?;
        Ok(AuthDisableResponse {
            header: self.current_header(),
        })
    }

    pub async fn auth_status(&self) -> Result<AuthStatusResponse, EtcdError> {
        self.read_barrier().await?;
        Ok(AuthStatusResponse {
            header: self.current_header(),
            enabled: self.auth.enabled(),
            auth_revision: self.auth.revision(),
        })
    }

    /// Waits until this member has applied everything committed before the
    /// request (etcd 3.4's linearizable read: a member that is behind would
    /// answer from users, passwords and an enabled flag that are gone),
    /// checks the password (bcrypt, off the request threads; after failures
    /// on the same name, only once its backoff allows: see
    /// `auth::LoginBackoff`), then gives
    /// the user a fresh simple token through the log, so that every member
    /// knows it. The grant is checked against the auth revision the
    /// password was read at: a password changed meanwhile refuses it.
    pub async fn authenticate(
        &self,
        req: AuthenticateRequest,
    ) -> Result<AuthenticateResponse, EtcdError> {
        self.read_barrier().await?;
        if !self.auth.enabled() {
            return Err(EtcdError::AuthNotEnabled);
        }
        let login = if self.auth.user_exists(&req.name) {
            Login::User(&req.name)
        } else {
            Login::Unknown
        };
        // A timer, not a thread: other logins and requests go on meanwhile.
        let slot = self.login_backoff.slot(login, Instant::now());
        tokio::time::sleep_until(slot.into()).await;
        let password = req.password;
        let matches = match self.auth.password_hash(&req.name) {
            Ok((hash, revision)) => blocking(move || auth::password_matches(&password, &hash))
                .await?
                .then_some(revision),
            Err(_) => None,
        };
        let Some(revision) = matches else {
            self.login_backoff.failed(login, Instant::now());
            return Err(EtcdError::AuthFailed);
        };
        self.login_backoff.succeeded(&req.name);
        if let Some(jwt) = self.auth.jwt() {
            // Nothing to replicate: any member checks it with the public key.
            return Ok(AuthenticateResponse {
                header: self.current_header(),
                token: jwt.sign(&req.name, revision)?,
            });
        }
        let token = SimpleTokens::generate(self.lease_ids.next());
        let as_checked = Caller::User(auth::AuthInfo {
            name: req.name.clone(),
            revision,
            fixed_revision: true,
        });
        let grant = AuthCommand {
            change: Some(AuthChange::Authenticate(SimpleToken {
                name: req.name,
                token: token.clone(),
            })),
        };
        self.propose_as(&as_checked, grant).await?;
        Ok(AuthenticateResponse {
            header: self.current_header(),
            token,
        })
    }

    /// A bcrypt hash of `password` at --bcrypt-cost, off the request threads.
    async fn hash(&self, password: String) -> Result<String, EtcdError> {
        let cost = self.config.bcrypt_cost;
        blocking(move || auth::hash_password(&password, cost)).await?
    }

    pub async fn user_add(
        &self,
        caller: &Caller,
        mut req: AuthUserAddRequest,
    ) -> Result<AuthUserAddResponse, EtcdError> {
        self.auth.check(caller, &[Need::Admin])?;
        let no_password = req.options.as_ref().is_some_and(|o| o.no_password);
        if !no_password && req.hashed_password.is_empty() {
            req.hashed_password = self.hash(std::mem::take(&mut req.password)).await?;
        }
        req.password.clear();
        self.change_auth(caller, AuthChange::UserAdd(req)).await?;
        Ok(AuthUserAddResponse {
            header: self.current_header(),
        })
    }

    pub async fn user_get(
        &self,
        caller: &Caller,
        req: AuthUserGetRequest,
    ) -> Result<AuthUserGetResponse, EtcdError> {
        self.read_auth(caller, Need::AdminOrUser(&req.name)).await?;
        Ok(AuthUserGetResponse {
            header: self.current_header(),
            roles: self.auth.user_roles(&req.name)?,
        })
    }

    pub async fn user_list(&self, caller: &Caller) -> Result<AuthUserListResponse, EtcdError> {
        self.read_auth(caller, Need::Admin).await?;
        Ok(AuthUserListResponse {
            header: self.current_header(),
            users: self.auth.user_names(),
        })
    }

    pub async fn user_delete(
        &self,
        caller: &Caller,
        req: AuthUserDeleteRequest,
    ) -> Result<AuthUserDeleteResponse, EtcdError> {
        self.change_auth(caller, AuthChange::UserDelete(req))
            .await?;
        Ok(AuthUserDeleteResponse {
            header: self.current_header(),
        })
    }

    pub async fn user_change_password(
        &self,
        caller: &Caller,
        mut req: AuthUserChangePasswordRequest,
    ) -> Result<AuthUserChangePasswordResponse, EtcdError> {
        self.auth.check(caller, &[Need::Admin])?;
        if req.hashed_password.is_empty() {
            req.hashed_password = self.hash(std::mem::take(&mut req.password)).await?;
        }
        req.password.clear();
        self.change_auth(caller, AuthChange::UserChangePassword(req))
            .await?;
        Ok(AuthUserChangePasswordResponse {
            header: self.current_header(),
        })
    }

    pub async fn user_grant_role(
        &self,
        caller: &Caller,
        req: AuthUserGrantRoleRequest,
    ) -> Result<AuthUserGrantRoleResponse, EtcdError> {
        self.change_auth(caller, AuthChange::UserGrantRole(req))
            .await?;
        Ok(AuthUserGrantRoleResponse {
            header: self.current_header(),
        })
    }

    pub async fn user_revoke_role(
        &self,
        caller: &Caller,
        req: AuthUserRevokeRoleRequest,
    ) -> Result<AuthUserRevokeRoleResponse, EtcdError> {
        self.change_auth(caller, AuthChange::UserRevokeRole(req))
            .await?;
        Ok(AuthUserRevokeRoleResponse {
            header: self.current_header(),
        })
    }

    pub async fn role_add(
        &self,
        caller: &Caller,
        req: AuthRoleAddRequest,
    ) -> Result<AuthRoleAddResponse, EtcdError> {
        self.change_auth(caller, AuthChange::RoleAdd(req)).await?;
        Ok(AuthRoleAddResponse {
            header: self.current_header(),
        })
    }

    pub async fn role_get(
        &self,
        caller: &Caller,
        req: AuthRoleGetRequest,
    ) -> Result<AuthRoleGetResponse, EtcdError> {
        self.read_auth(caller, Need::AdminOrRole(&req.role)).await?;
        let perm: Vec<Permission> = self.auth.role_permissions(&req.role)?;
        Ok(AuthRoleGetResponse {
            header: self.current_header(),
            perm,
        })
    }

    pub async fn role_list(&self, caller: &Caller) -> Result<AuthRoleListResponse, EtcdError> {
        self.read_auth(caller, Need::Admin).await?;
        Ok(AuthRoleListResponse {
            header: self.current_header(),
            roles: self.auth.role_names(),
        })
    }

    pub async fn role_delete(
        &self,
        caller: &Caller,
        req: AuthRoleDeleteRequest,
    ) -> Result<AuthRoleDeleteResponse, EtcdError> {
        self.change_auth(caller, AuthChange::RoleDelete(req))
            .await?;
        Ok(AuthRoleDeleteResponse {
            header: self.current_header(),
        })
    }

    pub async fn role_grant_permission(
        &self,
        caller: &Caller,
        req: AuthRoleGrantPermissionRequest,
    ) -> Result<AuthRoleGrantPermissionResponse, EtcdError> {
        self.change_auth(caller, AuthChange::RoleGrantPermission(req))
            .await?;
        Ok(AuthRoleGrantPermissionResponse {
            header: self.current_header(),
        })
    }

    pub async fn role_revoke_permission(
        &self,
        caller: &Caller,
        req: AuthRoleRevokePermissionRequest,
    ) -> Result<AuthRoleRevokePermissionResponse, EtcdError> {
        self.change_auth(caller, AuthChange::RoleRevokePermission(req))
            .await?;
        Ok(AuthRoleRevokePermissionResponse {
            header: self.current_header(),
        })
    }
}
