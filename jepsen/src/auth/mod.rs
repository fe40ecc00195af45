//! Runs with etcd's auth enabled (`--auth`).
//!
//! Once the cluster has formed, the tester enables auth as an operator
//! would ([`setup`]): a `root` user holding the `root` role, a workload user
//! ([`USER`]) whose role ([`ROLE`]) is granted READWRITE on exactly the key
//! prefix the workload uses (not root, so every operation is checked
//! against its permissions), then AuthEnable. Every client then sends the
//! workload user's token in the `token` metadata header, as etcd's clients
//! do; the final HashKV of the convergence check is root's (maintenance
//! needs root).
//!
//! Tokens are per user and per member ([`tokens`]): simple tokens live in
//! each member's memory, so a killed member forgets them; a JWT expires.
//! A member's token is fetched with Authenticate when the member has none
//! and dropped when a server refuses it as stale ([`refusal`]); the next
//! request through that member authenticates again. [`channel`] does both
//! under the gRPC clients, so the workloads are the same with and without
//! auth. [`verdict`] counts authentications and refreshes, and makes the run
//! invalid when a server denies the workload user its own keys.

pub mod channel;
pub mod refusal;
pub mod setup;
pub mod tokens;
pub mod verdict;

use std::str::FromStr;

use oxetcd_proto::authpb::permission::Type as PermissionType;
use serde::Serialize;

use crate::error::JepsenError;

/// The workload's user and role.
pub const USER: &str = "jepsen";
pub const ROLE: &str = "jepsen";
pub const PASSWORD: &str = "jepsen-password";
/// etcd's administrator: the user and the role named `root`.
pub const ROOT: &str = "root";
pub const ROOT_PASSWORD: &str = "root-password";

/// What the workload user's role is granted on the workload's prefix:
/// READWRITE for a real run; READ or WRITE alone only to check that the
/// tester reports the permission errors that follow (the run must come out
/// invalid).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Granted {
    ReadWrite,
    Read,
    Write,
}

impl Granted {
    pub fn permission_type(self) -> PermissionType {
        match self {
            Granted::ReadWrite => PermissionType::Readwrite,
            Granted::Read => PermissionType::Read,
            Granted::Write => PermissionType::Write,
        }
    }
}

impl FromStr for Granted {
    type Err = JepsenError;
    fn from_str(s: &str) -> Result<Granted, JepsenError> {
        match s {
            "readwrite" => Ok(Granted::ReadWrite),
            "read" => Ok(Granted::Read),
            "write" => Ok(Granted::Write),
            other => Err(JepsenError::Usage(format!(
                "unknown permission {other:?} (readwrite, read, write)"
            ))),
        }
    }
}
