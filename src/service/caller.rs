//! Who sends a gRPC request, for the member's auth checks: the token in the
//! metadata (`token` from etcd's clients, `authorization` from the JSON
//! gateway, as etcd reads both), else, with --client-cert-auth, the client
//! certificate's CommonName (etcd's `AuthInfoFromTLS`).

use oxetcd_server::auth::{Access, Caller, Need};
use oxetcd_server::{EtcdError, EtcdServer};
use tonic::{Request, Status};

use crate::listener::ConnInfo;

/// The metadata keys a token comes in, in etcd's order of preference.
const TOKEN_KEYS: [&str; 2] = ["token", "authorization"];

/// What a request carries to name its user: kept by a stream, whose every
/// message is checked against the auth state of its time.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    token: Option<String>,
    common_name: Option<String>,
}

impl Credentials {
    pub fn of<T>(node: &EtcdServer, request: &Request<T>) -> Self {
        let token = TOKEN_KEYS
            .iter()
            .find_map(|key| request.metadata().get(*key))
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let common_name = if node.config().client_cert_auth {
            request
                .extensions()
                .get::<ConnInfo>()
                .and_then(|conn| conn.common_name.clone())
        } else {
            None
        };
        Self { token, common_name }
    }

    /// The caller these credentials name now.
    pub fn caller(&self, node: &EtcdServer) -> Result<Caller, Status> {
        Ok(node.caller(self.token.as_deref(), self.common_name.as_deref())?)
    }
}

pub fn caller<T>(node: &EtcdServer, request: &Request<T>) -> Result<Caller, Status> {
    Credentials::of(node, request).caller(node)
}

/// [`require_admin`] for the maintenance calls: etcd's maintenance server
/// answers its auth store's own error, code Unknown and words "auth: ..."
/// (e.g. "auth: permission denied").
pub fn require_maintenance_admin<T>(node: &EtcdServer, request: &Request<T>) -> Result<(), Status> {
    require_admin(node, request).map_err(as_maintenance_error)
}

/// [`caller`] for the maintenance calls that need no permission (Alarm):
/// an invalid token is refused with etcd's maintenance words.
pub fn maintenance_caller<T>(node: &EtcdServer, request: &Request<T>) -> Result<Caller, Status> {
    caller(node, request).map_err(as_maintenance_error)
}

fn as_maintenance_error(status: Status) -> Status {
    // etcd's auth store names a missing user in its own words.
    if status.message() == EtcdError::UserNotFound.to_string() {
        return Status::unknown("auth: user not found");
    }
    let words = status.message();
    Status::unknown(format!(
        "auth: {}",
        words.strip_prefix("etcdserver: ").unwrap_or(words)
    ))
}

/// Refuses a request whose caller is not root, once auth is enabled: for
/// membership changes and the maintenance calls etcd reserves to admins
/// (Defragment, Hash, HashKV, Snapshot).
pub fn require_admin<T>(node: &EtcdServer, request: &Request<T>) -> Result<(), Status> {
    let caller = caller(node, request)?;
    Ok(node.check(&caller, &[Need::Admin])?)
}

/// Refuses a request whose caller lacks any of `needs` (the lock and
/// election services, which act on keys for their callers).
pub fn require<T>(
    node: &EtcdServer,
    request: &Request<T>,
    needs: &[Need<'_>],
) -> Result<(), Status> {
    // etcd's lock and election servers call the KV API through a client and
    // pass its errors on as plain errors: code Unknown, etcd's words (an
    // invalid token's included).
    let caller = caller(node, request).map_err(|status| Status::unknown(status.message()))?;
    node.check(&caller, needs)
        .map_err(|e| Status::unknown(e.to_string()))
}

/// Reading and writing every key under `prefix`: what a lock or a campaign
/// does to its name's keys.
pub fn prefix_needs<'a>(prefix: &'a [u8], end: &'a [u8]) -> [Need<'a>; 2] {
    [Access::Read, Access::Write].map(|access| Need::Range {
        key: prefix,
        range_end: end,
        access,
    })
}

/// Writing `key` alone: unlocking, resigning, proclaiming.
pub fn key_write(key: &[u8]) -> [Need<'_>; 1] {
    [Need::Range {
        key,
        range_end: b"",
        access: Access::Write,
    }]
}
