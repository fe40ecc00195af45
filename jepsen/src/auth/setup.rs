//! Enabling auth on the formed cluster, as an operator would with etcdctl:
//! `user add root`, `role add root`, `user grant-role root root`, `user add
//! jepsen`, `role add jepsen`, `role grant-permission jepsen readwrite
//! --prefix <workload prefix>`, `user grant-role jepsen jepsen`, `auth
//! enable`.
//!
//! Each step is retried (on the next member) until it is done or the
//! patience runs out: the cluster may still be electing. A step retried
//! after a timeout may find its work done ("already exists"), which counts
//! as done.

use std::time::{Duration, Instant};

use bytes::Bytes;
use oxetcd_proto::authpb::Permission;
use oxetcd_proto::etcdserverpb::auth_client::AuthClient;
use oxetcd_proto::etcdserverpb::{
    AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest,
    AuthUserGrantRoleRequest,
};
use tonic::transport::Channel;

use super::{Granted, PASSWORD, ROLE, ROOT, ROOT_PASSWORD, USER};
use crate::client::prefix_end;
use crate::error::JepsenError;

/// How long the whole setup may take.
const PATIENCE: Duration = Duration::from_secs(60);
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Errors that say a step's work is already done.
const ALREADY: [&str; 2] = [
    "etcdserver: user name already exists",
    "etcdserver: role name already exists",
];

/// One etcdctl-like step.
#[derive(Clone, Debug)]
enum Step {
    UserAdd(&'static str, &'static str),
    RoleAdd(&'static str),
    GrantRole {
        user: &'static str,
        role: &'static str,
    },
    GrantPermission {
        role: &'static str,
        permission: Permission,
    },
    Enable,
}

/// The steps, in order, for a workload writing under `prefix`.
fn steps(prefix: &str, granted: Granted) -> Vec<Step> {
    let permission = Permission {
        perm_type: granted.permission_type() as i32,
        key: Bytes::from(prefix.to_owned()),
        range_end: prefix_end(prefix),
    };
    vec![
        Step::UserAdd(ROOT, ROOT_PASSWORD),
        Step::RoleAdd(ROOT),
        Step::GrantRole {
            user: ROOT,
            role: ROOT,
        },
        Step::UserAdd(USER, PASSWORD),
        Step::RoleAdd(ROLE),
        Step::GrantPermission {
            role: ROLE,
            permission,
        },
        Step::GrantRole {
            user: USER,
            role: ROLE,
        },
        Step::Enable,
    ]
}

async fn send(client: &mut AuthClient<Channel>, step: Step) -> Result<(), tonic::Status> {
    match step {
        Step::UserAdd(name, password) => client
            .user_add(AuthUserAddRequest {
                name: name.into(),
                password: password.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        Step::RoleAdd(name) => client
            .role_add(AuthRoleAddRequest { name: name.into() })
            .await
            .map(drop),
        Step::GrantRole { user, role } => client
            .user_grant_role(AuthUserGrantRoleRequest {
                user: user.into(),
                role: role.into(),
            })
            .await
            .map(drop),
        Step::GrantPermission { role, permission } => client
            .role_grant_permission(AuthRoleGrantPermissionRequest {
                name: role.into(),
                perm: Some(permission),
            })
            .await
            .map(drop),
        Step::Enable => client.auth_enable(AuthEnableRequest {}).await.map(drop),
    }
}

/// Enables auth with the workload user granted `granted` on `prefix`.
/// `channels`: one per member, sending no token (auth is still off).
pub async fn enable(
    channels: &[Channel],
    prefix: &str,
    granted: Granted,
    call_timeout: Duration,
) -> Result<(), JepsenError> {
    let deadline = Instant::now() + PATIENCE;
    let mut member = 0;
    for step in steps(prefix, granted) {
        loop {
            let mut client = AuthClient::new(channels[member % channels.len()].clone());
            let problem = match tokio::time::timeout(call_timeout, send(&mut client, step.clone()))
                .await
            {
                Ok(Ok(())) => break,
                Ok(Err(status)) if ALREADY.iter().any(|a| status.message().contains(a)) => break,
                Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
                Err(_) => "timeout".to_owned(),
            };
            if Instant::now() >= deadline {
                return Err(JepsenError::NotReady(format!(
                    "enabling auth: {step:?} at member {}: {problem}",
                    member % channels.len()
                )));
            }
            member += 1;
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
    Ok(())
}
