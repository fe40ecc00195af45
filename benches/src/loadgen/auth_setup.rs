//! `auth-setup`: prepares a fresh server (auth still off) for runs with
//! `--user NAME:PASSWORD`, with the calls etcdctl makes for
//! `user add root`, `user grant-role root root`, `user add NAME`,
//! `role add NAME`, `role grant-permission NAME readwrite --prefix PREFIX`,
//! `user grant-role NAME NAME` and `auth enable`. The same calls work on
//! oxetcd and etcd, so both are set up alike.

use std::time::Duration;

use bytes::Bytes;
use oxetcd_proto::authpb::{permission, Permission};
use oxetcd_proto::etcdserverpb::auth_client::AuthClient;
use oxetcd_proto::etcdserverpb::{
    AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest,
    AuthUserGrantRoleRequest,
};
use tonic::transport::Channel;

use super::auth::Credentials;
use super::cli::AuthSetupArgs;
use super::error::{BenchError, OpError};
use super::keys::prefix_end;
use super::requests::call;

/// The user and role etcd requires before auth can be enabled.
const ROOT: &str = "root";

/// Sets up `user` and root on the server behind `channel` and enables auth;
/// what was done, in one line.
pub async fn run(
    channel: Channel,
    user: &Credentials,
    args: &AuthSetupArgs,
    timeout: Duration,
) -> Result<String, BenchError> {
    if user.name == ROOT {
        return Err(BenchError::Usage(
            "auth-setup: --user names the benchmark user, not root".into(),
        ));
    }
    let mut auth = AuthClient::new(channel);
    let step = |what: &str| {
        let what = what.to_owned();
        move |error: OpError| BenchError::Setup { what, error }
    };
    let user_add = |name: &str, password: &str| AuthUserAddRequest {
        name: name.to_owned(),
        password: password.to_owned(),
        ..Default::default()
    };
    let grant_role = |name: &str| AuthUserGrantRoleRequest {
        user: name.to_owned(),
        role: name.to_owned(),
    };
    call(timeout, auth.user_add(user_add(ROOT, &args.root_password)))
        .await
        .map_err(step("adding user root"))?;
    call(
        timeout,
        auth.role_add(AuthRoleAddRequest {
            name: ROOT.to_owned(),
        }),
    )
    .await
    .map_err(step("adding role root"))?;
    call(timeout, auth.user_grant_role(grant_role(ROOT)))
        .await
        .map_err(step("granting role root to root"))?;
    call(timeout, auth.user_add(user_add(&user.name, &user.password)))
        .await
        .map_err(step("adding the --user user"))?;
    call(
        timeout,
        auth.role_add(AuthRoleAddRequest {
            name: user.name.clone(),
        }),
    )
    .await
    .map_err(step("adding the --user user's role"))?;
    let prefix = Bytes::from(args.prefix.clone());
    let grant = AuthRoleGrantPermissionRequest {
        name: user.name.clone(),
        perm: Some(Permission {
            perm_type: permission::Type::Readwrite as i32,
            range_end: prefix_end(&prefix),
            key: prefix,
        }),
    };
    call(timeout, auth.role_grant_permission(grant))
        .await
        .map_err(step("granting read-write on the prefix"))?;
    call(timeout, auth.user_grant_role(grant_role(&user.name)))
        .await
        .map_err(step("granting the --user user its role"))?;
    call(timeout, auth.auth_enable(AuthEnableRequest {}))
        .await
        .map_err(step("enabling auth"))?;
    Ok(format!(
        "auth enabled: user root (role root), user {} (role {}: read-write on prefix {:?})\n",
        user.name, user.name, args.prefix
    ))
}
