//! Every RPC and every unary JSON gateway path, tried with every bad
//! credential an attacker may hold, against a server with auth enabled:
//!
//! - no token; a made-up token; an expired simple token; the token of a
//!   user deleted since; a token from before its user's password changed;
//!   a user lacking the permission (and one whose role was revoked);
//! - with --auth-token=jwt: a JWT signed with another key, one with
//!   `alg: none`, one whose claims were changed (alice made root), an
//!   expired one, the JWT of a user deleted since, and a user lacking the
//!   permission.
//!
//! Each attempt must get etcd 3.4's answer ([`expected`]: refused with its
//! code and words, or let through where etcd lets it through), and the
//! state read back as root (keys, users, roles, members, alarms, whether
//! auth is on) must be as before. The expectations were read from etcd
//! 3.4.23 running side by side: the same test passes against it with
//! `OXETCD_TEST_SERVER=/usr/bin/etcd`. A table of what was tried is printed.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::{Buf, BufMut};
use oxetcd_proto::v3electionpb::{
    CampaignRequest, LeaderKey, LeaderRequest, ProclaimRequest, ResignRequest,
};
use oxetcd_proto::v3lockpb::UnlockRequest;
use prost::Message;
use tokio_stream::StreamExt;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;

use super::*;

const OLD_REVISION: &str = "etcdserver: revision of auth store is old";
const USER_NOT_FOUND: &str = "etcdserver: user name not found";

/// Passes request and response bytes through as they are: one client for
/// every RPC, each request encoded by its own prost type.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// How etcd 3.4 guards a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Guard {
    /// A key permission (KV, Lease revoke of a lease with keys).
    Key,
    /// Root (membership changes, auth administration).
    Admin,
    /// Root, answered by etcd's maintenance server: code Unknown, "auth: ...".
    MaintenanceAdmin,
    /// A key permission, through etcd's lock and election servers: code
    /// Unknown, etcd's words.
    Client,
    /// A watch: created canceled, the reason naming the refusal.
    Watch,
    /// A token given must be valid; nothing else is checked (Compact,
    /// LeaseGrant).
    TokenOnly,
    /// As `TokenOnly`, with the maintenance server's words (Alarm).
    MaintenanceTokenOnly,
    /// Nothing is checked (Status, MemberList, lease reads, AuthStatus).
    Open,
}

/// What an attacker holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    NoToken,
    /// A token no member accepts: made up, expired, forged, revoked.
    Invalid,
    /// A JWT still well signed, of a user deleted since.
    StaleJwt,
    /// A JWT still well signed, of a user without the permission, from
    /// before users or roles changed.
    StaleLackingJwt,
    /// A valid token of a user without the permission.
    Lacking,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// Let through: an answer, or an error that is no auth refusal.
    Through,
    Refused(Code, String),
}

fn refused_with(code: Code, words: &str) -> Outcome {
    Outcome::Refused(code, words.to_string())
}

/// etcd 3.4.23's answer to `held` on a call guarded by `guard`.
fn expected(guard: Guard, held: Held) -> Outcome {
    use Guard::*;
    use Held::*;
    match (guard, held) {
        (Open, _)
        | (TokenOnly | MaintenanceTokenOnly, NoToken | StaleJwt | StaleLackingJwt | Lacking) => {
            Outcome::Through
        }
        (TokenOnly, Invalid) => refused_with(Code::Unauthenticated, BAD_TOKEN),
        (MaintenanceTokenOnly, Invalid) => refused_with(Code::Unknown, "auth: invalid auth token"),
        (Key | Admin, NoToken) => refused_with(Code::InvalidArgument, NO_USER),
        (Key | Admin, Invalid) => refused_with(Code::Unauthenticated, BAD_TOKEN),
        (Key | Admin, Lacking) => refused_with(Code::PermissionDenied, DENIED),
        (Key, StaleJwt | StaleLackingJwt) => refused_with(Code::InvalidArgument, OLD_REVISION),
        (Admin, StaleJwt) => refused_with(Code::FailedPrecondition, USER_NOT_FOUND),
        // etcd asks admin calls only whether the user holds root now.
        (Admin, StaleLackingJwt) => refused_with(Code::PermissionDenied, DENIED),
        (MaintenanceAdmin, NoToken) => refused_with(Code::Unknown, "auth: user name is empty"),
        (MaintenanceAdmin, Invalid) => refused_with(Code::Unknown, "auth: invalid auth token"),
        (MaintenanceAdmin, Lacking) => refused_with(Code::Unknown, "auth: permission denied"),
        (MaintenanceAdmin, StaleJwt) => refused_with(Code::Unknown, "auth: user not found"),
        (MaintenanceAdmin, StaleLackingJwt) => {
            refused_with(Code::Unknown, "auth: permission denied")
        }
        (Client, NoToken) => refused_with(Code::Unknown, NO_USER),
        (Client, Invalid) => refused_with(Code::Unknown, BAD_TOKEN),
        (Client, Lacking) => refused_with(Code::Unknown, DENIED),
        (Client, StaleJwt | StaleLackingJwt) => refused_with(Code::Unknown, OLD_REVISION),
        // The reason carries the error a Range would get, as Go prints it.
        (Watch, held) => match expected(Key, held) {
            Outcome::Refused(code, words) => refused_with(
                Code::Cancelled,
                &format!("rpc error: code = {code:?} desc = {words}"),
            ),
            Outcome::Through => Outcome::Through,
        },
    }
}

/// Whether an error is an auth refusal (anything else is an answer).
fn is_auth_refusal(words: &str) -> bool {
    [
        AUTH_FAILED,
        NO_USER,
        BAD_TOKEN,
        DENIED,
        OLD_REVISION,
        USER_NOT_FOUND,
        "auth: ",
    ]
    .iter()
    .any(|w| words.starts_with(w))
}

fn outcome_of(status: Status) -> Outcome {
    if is_auth_refusal(status.message()) {
        Outcome::Refused(status.code(), status.message().to_string())
    } else {
        Outcome::Through
    }
}

/// How a call is made over gRPC.
enum Call {
    Unary(Vec<u8>),
    /// The first response of a server stream (Snapshot, Observe); none
    /// within a second is a stream let through and waiting.
    ServerStream(Vec<u8>),
    /// The first response to one request on a bidirectional stream
    /// (Watch, LeaseKeepAlive).
    Bidi(Vec<u8>),
}

struct Row {
    /// gRPC method, e.g. `/etcdserverpb.KV/Range`.
    method: &'static str,
    call: Call,
    /// The JSON gateway's path and body for the same call, when it is
    /// unary there (streams are tried over gRPC only).
    gateway: Option<(&'static str, String)>,
    guard: Guard,
    /// Where oxetcd refuses on purpose what etcd 3.4.23 lets through: the
    /// credentials etcd lets through, and why oxetcd does not.
    etcd_differs: Option<(&'static [Held], &'static str)>,
}

impl Row {
    fn differs(mut self, held: &'static [Held], why: &'static str) -> Row {
        self.etcd_differs = Some((held, why));
        self
    }
}

/// What the server under test must answer: etcd's answer, except where
/// oxetcd refuses on purpose (`Row::etcd_differs`; etcd itself, under
/// OXETCD_TEST_SERVER, is held to its own answer).
fn wanted(r: &Row, held: Held) -> Outcome {
    match r.etcd_differs {
        Some((lets_through, _))
            if support::against_reference_server() && lets_through.contains(&held) =>
        {
            Outcome::Through
        }
        _ => expected(r.guard, held),
    }
}

fn row(
    method: &'static str,
    guard: Guard,
    req: impl Message,
    gateway: Option<(&'static str, &str)>,
) -> Row {
    Row {
        method,
        call: Call::Unary(req.encode_to_vec()),
        gateway: gateway.map(|(p, b)| (p, b.to_string())),
        guard,
        etcd_differs: None,
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Every call, each aimed at what the attacker may not touch: the key
/// `secret`, the lease `lease` (which holds `secret-leased`), root.
fn rows(lease: i64) -> Vec<Row> {
    use Guard::*;
    let secret = b64("secret");
    let put_secret = || put_req("secret", "x");
    let op = |r: Op| RequestOp { request: Some(r) };
    let compare_secret = Compare {
        key: b("secret"),
        result: CompareResult::Equal as i32,
        target: CompareTarget::Version as i32,
        target_union: Some(TargetUnion::Version(0)),
        ..Default::default()
    };
    let leader = || LeaderKey {
        name: b("secret-e"),
        key: b("secret-e/1"),
        rev: 1,
        lease: 1,
    };
    let json_leader = format!(
        r#"{{"name":"{}","key":"{}","rev":"1","lease":"1"}}"#,
        b64("secret-e"),
        b64("secret-e/1")
    );
    vec![
        row(
            "/etcdserverpb.KV/Range",
            Key,
            get_req("secret"),
            Some(("/v3/kv/range", &format!(r#"{{"key":"{secret}"}}"#))),
        ),
        row(
            "/etcdserverpb.KV/Put",
            Key,
            put_secret(),
            Some((
                "/v3/kv/put",
                &format!(r#"{{"key":"{secret}","value":"eA=="}}"#),
            )),
        ),
        row(
            "/etcdserverpb.KV/DeleteRange",
            Key,
            DeleteRangeRequest {
                key: b("secret"),
                ..Default::default()
            },
            Some(("/v3/kv/deleterange", &format!(r#"{{"key":"{secret}"}}"#))),
        ),
        row(
            "/etcdserverpb.KV/Txn",
            Key,
            TxnRequest {
                compare: vec![compare_secret.clone()],
                success: vec![],
                failure: vec![],
            },
            Some((
                "/v3/kv/txn",
                &format!(
                    r#"{{"compare":[{{"key":"{secret}","target":"VERSION","version":"0"}}]}}"#
                ),
            )),
        ),
        row(
            "/etcdserverpb.KV/Txn (success put)",
            Key,
            TxnRequest {
                compare: vec![],
                success: vec![op(Op::RequestPut(put_secret()))],
                failure: vec![],
            },
            Some((
                "/v3/kv/txn",
                &format!(r#"{{"success":[{{"requestPut":{{"key":"{secret}","value":"eA=="}}}}]}}"#),
            )),
        ),
        row(
            "/etcdserverpb.KV/Txn (failure delete)",
            Key,
            TxnRequest {
                compare: vec![],
                success: vec![],
                failure: vec![op(Op::RequestDeleteRange(DeleteRangeRequest {
                    key: b("secret"),
                    ..Default::default()
                }))],
            },
            None,
        ),
        row(
            "/etcdserverpb.KV/Txn (nested range)",
            Key,
            TxnRequest {
                compare: vec![],
                success: vec![op(Op::RequestTxn(TxnRequest {
                    success: vec![op(Op::RequestRange(get_req("secret")))],
                    ..Default::default()
                }))],
                failure: vec![],
            },
            None,
        )
        .differs(
            &[
                Held::NoToken,
                Held::StaleJwt,
                Held::StaleLackingJwt,
                Held::Lacking,
            ],
            "etcd 3.4.23 does not check the operations of a nested txn: anyone reads and writes any key that way",
        ),
        row(
            "/etcdserverpb.KV/Compact",
            TokenOnly,
            CompactionRequest {
                revision: 1,
                physical: false,
            },
            Some(("/v3/kv/compaction", r#"{"revision":"1"}"#)),
        ),
        Row {
            method: "/etcdserverpb.Watch/Watch",
            call: Call::Bidi(
                WatchRequest {
                    request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                        key: b("secret"),
                        ..Default::default()
                    })),
                }
                .encode_to_vec(),
            ),
            gateway: None,
            guard: Watch,
            etcd_differs: None,
        },
        row(
            "/etcdserverpb.Lease/LeaseGrant",
            TokenOnly,
            LeaseGrantRequest { ttl: 60, id: 0 },
            Some(("/v3/lease/grant", r#"{"TTL":"60"}"#)),
        ),
        row(
            "/etcdserverpb.Lease/LeaseRevoke",
            Key,
            LeaseRevokeRequest { id: lease },
            Some(("/v3/lease/revoke", &format!(r#"{{"ID":"{lease}"}}"#))),
        ),
        Row {
            method: "/etcdserverpb.Lease/LeaseKeepAlive",
            call: Call::Bidi(LeaseKeepAliveRequest { id: lease }.encode_to_vec()),
            gateway: None,
            guard: Open,
            etcd_differs: None,
        },
        row(
            "/etcdserverpb.Lease/LeaseTimeToLive",
            Open,
            LeaseTimeToLiveRequest {
                id: lease,
                keys: true,
            },
            Some((
                "/v3/lease/timetolive",
                &format!(r#"{{"ID":"{lease}","keys":true}}"#),
            )),
        ),
        row(
            "/etcdserverpb.Lease/LeaseLeases",
            Open,
            LeaseLeasesRequest {},
            Some(("/v3/lease/leases", "{}")),
        ),
        row(
            "/etcdserverpb.Cluster/MemberAdd",
            Admin,
            MemberAddRequest {
                peer_ur_ls: vec!["http://127.0.0.9:24999".into()],
                is_learner: true,
            },
            Some((
                "/v3/cluster/member/add",
                r#"{"peerURLs":["http://127.0.0.9:24999"],"isLearner":true}"#,
            )),
        ),
        row(
            "/etcdserverpb.Cluster/MemberRemove",
            Admin,
            MemberRemoveRequest { id: 1 },
            Some(("/v3/cluster/member/remove", r#"{"ID":"1"}"#)),
        ),
        row(
            "/etcdserverpb.Cluster/MemberUpdate",
            Admin,
            MemberUpdateRequest {
                id: 1,
                peer_ur_ls: vec!["http://127.0.0.9:24999".into()],
            },
            Some((
                "/v3/cluster/member/update",
                r#"{"ID":"1","peerURLs":["http://127.0.0.9:24999"]}"#,
            )),
        ),
        row(
            "/etcdserverpb.Cluster/MemberList",
            Open,
            MemberListRequest::default(),
            Some(("/v3/cluster/member/list", "{}")),
        ),
        row(
            "/etcdserverpb.Cluster/MemberPromote",
            Admin,
            MemberPromoteRequest { id: 1 },
            Some(("/v3/cluster/member/promote", r#"{"ID":"1"}"#)),
        ),
        row(
            "/etcdserverpb.Maintenance/Alarm (get)",
            MaintenanceTokenOnly,
            AlarmRequest {
                action: 0,
                member_id: 0,
                alarm: 0,
            },
            Some(("/v3/maintenance/alarm", r#"{"action":"GET"}"#)),
        ),
        row(
            "/etcdserverpb.Maintenance/Alarm (deactivate)",
            MaintenanceTokenOnly,
            AlarmRequest {
                action: 2,
                member_id: 1,
                alarm: 1,
            },
            Some((
                "/v3/maintenance/alarm",
                r#"{"action":"DEACTIVATE","memberID":"1","alarm":"NOSPACE"}"#,
            )),
        ),
        row(
            "/etcdserverpb.Maintenance/Status",
            Open,
            StatusRequest {},
            Some(("/v3/maintenance/status", "{}")),
        ),
        row(
            "/etcdserverpb.Maintenance/Defragment",
            MaintenanceAdmin,
            DefragmentRequest {},
            Some(("/v3/maintenance/defragment", "{}")),
        ),
        row(
            "/etcdserverpb.Maintenance/Hash",
            MaintenanceAdmin,
            HashRequest {},
            Some(("/v3/maintenance/hash", "{}")),
        ),
        row(
            "/etcdserverpb.Maintenance/HashKV",
            MaintenanceAdmin,
            HashKvRequest { revision: 0 },
            None,
        ),
        Row {
            method: "/etcdserverpb.Maintenance/Snapshot",
            call: Call::ServerStream(SnapshotRequest {}.encode_to_vec()),
            gateway: Some(("/v3/maintenance/snapshot", "{}".into())),
            guard: MaintenanceAdmin,
            etcd_differs: None,
        },
        // etcd 3.4 checks nothing for MoveLeader, not even a token.
        row(
            "/etcdserverpb.Maintenance/MoveLeader",
            Open,
            MoveLeaderRequest { target_id: 1 },
            Some(("/v3/maintenance/transfer-leadership", r#"{"targetID":"1"}"#)),
        ),
        row(
            "/etcdserverpb.Auth/AuthEnable",
            Admin,
            AuthEnableRequest {},
            Some(("/v3/auth/enable", "{}")),
        ),
        // Not in etcd 3.4 (Unimplemented there); 3.5 checks nothing.
        row(
            "/etcdserverpb.Auth/AuthStatus",
            Open,
            AuthStatusRequest {},
            None,
        ),
        row(
            "/etcdserverpb.Auth/AuthDisable",
            Admin,
            AuthDisableRequest {},
            Some(("/v3/auth/disable", "{}")),
        ),
        row(
            "/etcdserverpb.Auth/UserAdd",
            Admin,
            AuthUserAddRequest {
                name: "mallory".into(),
                password: "m".into(),
                ..Default::default()
            },
            Some(("/v3/auth/user/add", r#"{"name":"mallory","password":"m"}"#)),
        ),
        row(
            "/etcdserverpb.Auth/UserGet",
            Admin,
            AuthUserGetRequest {
                name: "root".into(),
            },
            Some(("/v3/auth/user/get", r#"{"name":"root"}"#)),
        ),
        row(
            "/etcdserverpb.Auth/UserList",
            Admin,
            AuthUserListRequest {},
            Some(("/v3/auth/user/list", "{}")),
        ),
        row(
            "/etcdserverpb.Auth/UserDelete",
            Admin,
            AuthUserDeleteRequest {
                name: "root".into(),
            },
            Some(("/v3/auth/user/delete", r#"{"name":"root"}"#)),
        ),
        row(
            "/etcdserverpb.Auth/UserChangePassword",
            Admin,
            AuthUserChangePasswordRequest {
                name: "root".into(),
                password: "owned".into(),
                ..Default::default()
            },
            Some((
                "/v3/auth/user/changepw",
                r#"{"name":"root","password":"owned"}"#,
            )),
        ),
        row(
            "/etcdserverpb.Auth/UserGrantRole",
            Admin,
            AuthUserGrantRoleRequest {
                user: "alice".into(),
                role: "root".into(),
            },
            Some(("/v3/auth/user/grant", r#"{"user":"alice","role":"root"}"#)),
        ),
        row(
            "/etcdserverpb.Auth/UserRevokeRole",
            Admin,
            AuthUserRevokeRoleRequest {
                name: "alice".into(),
                role: "rw-a".into(),
            },
            Some(("/v3/auth/user/revoke", r#"{"name":"alice","role":"rw-a"}"#)),
        ),
        row(
            "/etcdserverpb.Auth/RoleAdd",
            Admin,
            AuthRoleAddRequest {
                name: "evil".into(),
            },
            Some(("/v3/auth/role/add", r#"{"name":"evil"}"#)),
        ),
        row(
            "/etcdserverpb.Auth/RoleGet",
            Admin,
            AuthRoleGetRequest {
                role: "root".into(),
            },
            Some(("/v3/auth/role/get", r#"{"role":"root"}"#)),
        ),
        row(
            "/etcdserverpb.Auth/RoleList",
            Admin,
            AuthRoleListRequest {},
            Some(("/v3/auth/role/list", "{}")),
        ),
        row(
            "/etcdserverpb.Auth/RoleDelete",
            Admin,
            AuthRoleDeleteRequest {
                role: "rw-a".into(),
            },
            Some(("/v3/auth/role/delete", r#"{"role":"rw-a"}"#)),
        ),
        row(
            "/etcdserverpb.Auth/RoleGrantPermission",
            Admin,
            AuthRoleGrantPermissionRequest {
                name: "rw-a".into(),
                perm: perm("", "\0", PermType::Readwrite),
            },
            Some((
                "/v3/auth/role/grant",
                r#"{"name":"rw-a","perm":{"key":"AA==","range_end":"AA==","permType":"READWRITE"}}"#,
            )),
        ),
        row(
            "/etcdserverpb.Auth/RoleRevokePermission",
            Admin,
            AuthRoleRevokePermissionRequest {
                role: "rw-a".into(),
                key: b("a/"),
                range_end: b("a0"),
            },
            Some((
                "/v3/auth/role/revoke",
                r#"{"role":"rw-a","key":"YS8=","range_end":"YTA="}"#,
            )),
        ),
        row(
            "/v3lockpb.Lock/Lock",
            Client,
            LockRequest {
                name: b("secret-lock"),
                lease: 0,
            },
            Some((
                "/v3/lock/lock",
                &format!(r#"{{"name":"{}"}}"#, b64("secret-lock")),
            )),
        ),
        row(
            "/v3lockpb.Lock/Unlock",
            Client,
            UnlockRequest {
                key: b("secret-lock/1"),
            },
            Some((
                "/v3/lock/unlock",
                &format!(r#"{{"key":"{}"}}"#, b64("secret-lock/1")),
            )),
        ),
        row(
            "/v3electionpb.Election/Campaign",
            Client,
            CampaignRequest {
                name: b("secret-e"),
                lease: 0,
                value: b("v"),
            },
            Some((
                "/v3/election/campaign",
                &format!(r#"{{"name":"{}","value":"dg=="}}"#, b64("secret-e")),
            )),
        ),
        row(
            "/v3electionpb.Election/Proclaim",
            Client,
            ProclaimRequest {
                leader: Some(leader()),
                value: b("v"),
            },
            Some((
                "/v3/election/proclaim",
                &format!(r#"{{"leader":{json_leader},"value":"dg=="}}"#),
            )),
        ),
        row(
            "/v3electionpb.Election/Leader",
            Client,
            LeaderRequest {
                name: b("secret-e"),
            },
            Some((
                "/v3/election/leader",
                &format!(r#"{{"name":"{}"}}"#, b64("secret-e")),
            )),
        ),
        Row {
            method: "/v3electionpb.Election/Observe",
            call: Call::ServerStream(
                LeaderRequest {
                    name: b("secret-e"),
                }
                .encode_to_vec(),
            ),
            gateway: None,
            guard: Client,
            etcd_differs: None,
        }
        .differs(
            &[
                Held::NoToken,
                Held::Invalid,
                Held::StaleJwt,
                Held::StaleLackingJwt,
                Held::Lacking,
            ],
            "etcd 3.4 ends the stream without a word; oxetcd says why",
        ),
        row(
            "/v3electionpb.Election/Resign",
            Client,
            ResignRequest {
                leader: Some(leader()),
            },
            Some((
                "/v3/election/resign",
                &format!(r#"{{"leader":{json_leader}}}"#),
            )),
        ),
    ]
}

/// One gRPC attempt.
async fn try_grpc(channel: &Channel, token: Option<&str>, r: &Row) -> Outcome {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if let Err(e) = grpc.ready().await {
        panic!("{}: channel not ready: {e}", r.method);
    }
    let method = r.method.split(' ').next().unwrap_or(r.method);
    let path = PathAndQuery::try_from(method).expect("method path");
    match &r.call {
        Call::Unary(req) => match grpc.unary(with(token, req.clone()), path, Raw).await {
            Ok(_) => Outcome::Through,
            Err(status) => outcome_of(status),
        },
        Call::ServerStream(req) => {
            let first = async {
                let mut stream = grpc
                    .server_streaming(with(token, req.clone()), path, Raw)
                    .await?
                    .into_inner();
                stream.message().await
            };
            match tokio::time::timeout(Duration::from_secs(1), first).await {
                Err(_) | Ok(Ok(_)) => Outcome::Through,
                Ok(Err(status)) => outcome_of(status),
            }
        }
        Call::Bidi(req) => {
            let requests = tokio_stream::iter(vec![req.clone()]).chain(tokio_stream::pending());
            let first = async {
                let mut stream = grpc
                    .streaming(with(token, requests), path, Raw)
                    .await?
                    .into_inner();
                stream.message().await
            };
            match tokio::time::timeout(Duration::from_secs(2), first).await {
                Err(_) => Outcome::Through,
                Ok(Err(status)) => outcome_of(status),
                Ok(Ok(message)) => {
                    if r.guard != Guard::Watch {
                        return Outcome::Through;
                    }
                    let raw = message.unwrap_or_default();
                    let watch = WatchResponse::decode(raw.as_slice()).expect("a watch response");
                    if watch.canceled {
                        Outcome::Refused(Code::Cancelled, watch.cancel_reason)
                    } else {
                        Outcome::Through
                    }
                }
            }
        }
    }
}

/// One gateway attempt: etcd's gateway answers an error as
/// `{"error": words, "code": n, "message": words}` (unary) or
/// `{"error": {"grpc_code": n, "message": words}}` (streams).
fn try_gateway(endpoint: &str, token: Option<&str>, path: &str, body: &str) -> Outcome {
    let (_, reply) = gateway_post(endpoint, path, token, body);
    let first = reply
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("");
    let json: serde_json::Value = serde_json::from_str(first).unwrap_or(serde_json::Value::Null);
    let (code, words) = match json.get("error") {
        Some(serde_json::Value::String(words)) => {
            (json.get("code").and_then(|c| c.as_i64()), words.clone())
        }
        Some(e @ serde_json::Value::Object(_)) => (
            e.get("grpc_code").and_then(|c| c.as_i64()),
            e.get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .to_string(),
        ),
        _ => return Outcome::Through,
    };
    if !is_auth_refusal(&words) {
        return Outcome::Through;
    }
    Outcome::Refused(Code::from(code.unwrap_or(2) as i32), words)
}

/// What root sees: keys, users, roles, members, alarms, auth on or off.
async fn state(channel: &Channel, root: &str) -> String {
    let keys = everything(channel, root).await;
    let mut auth = AuthClient::new(channel.clone());
    let users = auth
        .user_list(with(Some(root), AuthUserListRequest {}))
        .await
        .expect("users")
        .into_inner()
        .users;
    let roles = auth
        .role_list(with(Some(root), AuthRoleListRequest {}))
        .await
        .expect("roles")
        .into_inner()
        .roles;
    let mut perms = BTreeMap::new();
    for role in &roles {
        let got = auth
            .role_get(with(Some(root), AuthRoleGetRequest { role: role.clone() }))
            .await
            .expect("role")
            .into_inner();
        perms.insert(role.clone(), format!("{:?}", got.perm));
    }
    let mut grants = BTreeMap::new();
    for user in &users {
        let got = auth
            .user_get(with(Some(root), AuthUserGetRequest { name: user.clone() }))
            .await
            .expect("user")
            .into_inner();
        grants.insert(user.clone(), got.roles);
    }
    let members = ClusterClient::new(channel.clone())
        .member_list(with(Some(root), MemberListRequest::default()))
        .await
        .expect("members")
        .into_inner()
        .members
        .len();
    let alarms = MaintenanceClient::new(channel.clone())
        .alarm(with(
            Some(root),
            AlarmRequest {
                action: 0,
                member_id: 0,
                alarm: 0,
            },
        ))
        .await
        .expect("alarms")
        .into_inner()
        .alarms
        .len();
    format!("keys {keys:?}\nusers {grants:?}\nroles {perms:?}\nmembers {members}\nalarms {alarms}")
}

/// The server under test's data and the credentials it was attacked with.
struct Target {
    server: Server,
    channel: Channel,
    lease: i64,
}

/// A server with auth on: root, alice (read-write on `a/`), `secret` and
/// `secret-leased` (on a lease) written by root.
async fn target(extra: &[&str]) -> Target {
    let mut args = vec!["--bcrypt-cost", "4"];
    args.extend_from_slice(extra);
    let server = Server::start_with(&args);
    let channel = server.channel().await;
    let mut kv = support::kv_client(channel.clone());
    kv.put(put_req("secret", "s")).await.expect("put");
    let lease = LeaseClient::new(channel.clone())
        .lease_grant(LeaseGrantRequest { ttl: 600, id: 0 })
        .await
        .expect("lease")
        .into_inner()
        .id;
    let mut leased = put_req("secret-leased", "l");
    leased.lease = lease;
    kv.put(leased).await.expect("put on lease");
    set_up(&channel).await;
    Target {
        server,
        channel,
        lease,
    }
}

/// A fresh root token (a JWT is refused once any auth change follows it).
async fn root_token(channel: &Channel) -> String {
    login(&mut AuthClient::new(channel.clone()), "root", "rootpw")
        .await
        .expect("root logs in")
}

/// A user `name` with role `rw-a`, logged in; returns the token.
async fn user_with_token(channel: &Channel, name: &str) -> String {
    let mut auth = AuthClient::new(channel.clone());
    let root = root_token(channel).await;
    auth.user_add(with(
        Some(&root),
        AuthUserAddRequest {
            name: name.into(),
            password: "pw".into(),
            ..Default::default()
        },
    ))
    .await
    .expect("user add");
    let root = root_token(channel).await;
    auth.user_grant_role(with(
        Some(&root),
        AuthUserGrantRoleRequest {
            user: name.into(),
            role: "rw-a".into(),
        },
    ))
    .await
    .expect("grant");
    login(&mut auth, name, "pw").await.expect("login")
}

/// Tries every row holding `token` (described as `what`).
async fn attack(t: &Target, what: &str, token: Option<&str>, held: Held, report: &mut Report) {
    let endpoint = t.server.endpoint();
    for r in &rows(t.lease) {
        let want = wanted(r, held);
        let got = try_grpc(&t.channel, token, r).await;
        report.record("grpc", r.method, what, got, &want);
        if let Some((path, body)) = &r.gateway {
            let got = try_gateway(&endpoint, token, path, body);
            report.record("gateway", path, what, got, &want);
        }
    }
}

/// A JWT like the members', made by hand: `header` and `claims` JSON,
/// signed by `sign` (none for `alg: none`).
fn jwt(header: &str, claims: &str, sign: Option<&Path>) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = match sign {
        None => String::new(),
        Some(key) => {
            let mut child = std::process::Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(key)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("openssl");
            std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), input.as_bytes())
                .expect("write");
            let out = child.wait_with_output().expect("openssl signs");
            assert!(out.status.success());
            URL_SAFE_NO_PAD.encode(out.stdout)
        }
    };
    format!("{input}.{signature}")
}

fn rsa_key(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let ok = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    ok(&["genrsa", "-out", private.to_str().unwrap(), "2048"]);
    ok(&[
        "rsa",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    (private, public)
}

fn claims_of(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("claims")
}

/// The attempts made and the answers that differ from etcd's.
#[derive(Default)]
struct Report {
    table: Vec<String>,
    wrong: Vec<String>,
}

impl Report {
    fn record(&mut self, via: &str, call: &str, what: &str, got: Outcome, want: &Outcome) {
        self.table
            .push(format!("{via:<8}{call:<48} {what:<42} {got:?}"));
        if got != *want {
            self.wrong.push(format!(
                "{call} with {what}: got {got:?}, etcd answers {want:?}"
            ));
        }
    }
}

/// Two wrong logins: a wrong password, a user that does not exist.
async fn wrong_passwords(auth: &mut AuthClient<Channel>, report: &mut Report) {
    let want = refused_with(Code::InvalidArgument, AUTH_FAILED);
    for (name, what) in [("alice", "a wrong password"), ("nobody", "an unknown user")] {
        let got = match login(auth, name, "guess").await {
            Ok(_) => Outcome::Through,
            Err(status) => outcome_of(status),
        };
        report.record("grpc", "/etcdserverpb.Auth/Authenticate", what, got, &want);
    }
}

#[tokio::test]
async fn every_rpc_and_gateway_path_refuses_every_bad_credential_as_etcd() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "openssl is needed"
        );
        eprintln!("skipped: needs openssl");
        return;
    }
    let mut report = Report::default();

    // Simple tokens, living 5 s unused.
    let t = target(&["--auth-token-ttl", "5"]).await;
    let mut auth = AuthClient::new(t.channel.clone());
    let expired = login(&mut auth, "alice", "alicepw").await.expect("alice");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let deleted = login_token_of_deleted(&t).await;
    let old_password = token_before_new_password(&t).await;
    let frank = user_with_token(&t.channel, "frank").await;
    let root = root_token(&t.channel).await;
    auth.user_revoke_role(with(
        Some(&root),
        AuthUserRevokeRoleRequest {
            name: "frank".into(),
            role: "rw-a".into(),
        },
    ))
    .await
    .expect("revoke");
    let root = root_token(&t.channel).await;
    let before = state(&t.channel, &root).await;
    wrong_passwords(&mut auth, &mut report).await;
    attack(&t, "no token", None, Held::NoToken, &mut report).await;
    attack(
        &t,
        "a made-up token",
        Some("forged.1"),
        Held::Invalid,
        &mut report,
    )
    .await;
    attack(
        &t,
        "an expired token",
        Some(&expired),
        Held::Invalid,
        &mut report,
    )
    .await;
    attack(
        &t,
        "a deleted user's token",
        Some(&deleted),
        Held::Invalid,
        &mut report,
    )
    .await;
    attack(
        &t,
        "a token from before a new password",
        Some(&old_password),
        Held::Invalid,
        &mut report,
    )
    .await;
    let frank = login(&mut auth, "frank", "pw").await.unwrap_or(frank);
    attack(
        &t,
        "a user whose role was revoked",
        Some(&frank),
        Held::Lacking,
        &mut report,
    )
    .await;
    let alice = login(&mut auth, "alice", "alicepw").await.expect("alice");
    attack(
        &t,
        "a user lacking the permission",
        Some(&alice),
        Held::Lacking,
        &mut report,
    )
    .await;
    let root = root_token(&t.channel).await;
    assert_eq!(
        state(&t.channel, &root).await,
        before,
        "nothing changed (simple tokens)"
    );
    drop(t);

    // JWTs, living 5 s.
    let keys = tempfile::tempdir().expect("dir");
    let (private, public) = rsa_key(keys.path(), "members");
    let (other, _) = rsa_key(keys.path(), "attacker");
    let spec = format!(
        "jwt,pub-key={},priv-key={},sign-method=RS256,ttl=5s",
        public.display(),
        private.display()
    );
    let t = target(&["--auth-token", &spec]).await;
    let mut auth = AuthClient::new(t.channel.clone());
    let expired = login(&mut auth, "alice", "alicepw").await.expect("alice");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let root = root_token(&t.channel).await;
    let before = state(&t.channel, &root).await;
    let deleted = user_with_token(&t.channel, "dave").await;
    let root = root_token(&t.channel).await;
    auth.user_delete(with(
        Some(&root),
        AuthUserDeleteRequest {
            name: "dave".into(),
        },
    ))
    .await
    .expect("delete");
    attack(
        &t,
        "a deleted user's JWT",
        Some(&deleted),
        Held::StaleJwt,
        &mut report,
    )
    .await;
    let alice = login(&mut auth, "alice", "alicepw").await.expect("alice");
    attack(
        &t,
        "a JWT of a user lacking the permission",
        Some(&alice),
        Held::Lacking,
        &mut report,
    )
    .await;
    // Made stale by a role added (and removed again after) right away: the
    // JWTs live 5 s.
    let stale_alice = login(&mut auth, "alice", "alicepw").await.expect("alice");
    let root = root_token(&t.channel).await;
    let later = || AuthRoleAddRequest {
        name: "later".into(),
    };
    auth.role_add(with(Some(&root), later()))
        .await
        .expect("role add");
    attack(
        &t,
        "a lacking user's JWT from before a change",
        Some(&stale_alice),
        Held::StaleLackingJwt,
        &mut report,
    )
    .await;
    let root = root_token(&t.channel).await;
    auth.role_delete(with(
        Some(&root),
        AuthRoleDeleteRequest { role: later().name },
    ))
    .await
    .expect("role delete");
    let mut claims = claims_of(&alice);
    let header = r#"{"alg":"RS256","typ":"JWT"}"#;
    let other_key = jwt(header, &claims.to_string(), Some(&other));
    let none = jwt(r#"{"alg":"none","typ":"JWT"}"#, &claims.to_string(), None);
    claims["username"] = "root".into();
    let signature = alice.rsplit('.').next().expect("signature");
    let tampered = format!("{}{signature}", jwt(header, &claims.to_string(), None));
    attack(
        &t,
        "a JWT signed with another key",
        Some(&other_key),
        Held::Invalid,
        &mut report,
    )
    .await;
    attack(
        &t,
        "a JWT with alg none",
        Some(&none),
        Held::Invalid,
        &mut report,
    )
    .await;
    attack(
        &t,
        "a JWT whose claims were changed",
        Some(&tampered),
        Held::Invalid,
        &mut report,
    )
    .await;
    attack(
        &t,
        "an expired JWT",
        Some(&expired),
        Held::Invalid,
        &mut report,
    )
    .await;
    let root = root_token(&t.channel).await;
    // dave was added and deleted as root: users as before.
    assert_eq!(
        state(&t.channel, &root).await,
        before,
        "nothing changed (JWT)"
    );

    println!("{}", report.table.join("\n"));
    for r in rows(0) {
        if let Some((held, why)) = r.etcd_differs {
            println!(
                "refused on purpose where etcd 3.4 lets {held:?} through: {}: {why}",
                r.method
            );
        }
    }
    let through = report
        .table
        .iter()
        .filter(|l| l.ends_with("Through"))
        .count();
    println!(
        "{} attempts: {} refused, {} let through as etcd 3.4 lets them through",
        report.table.len(),
        report.table.len() - through,
        through
    );
    assert!(
        report.wrong.is_empty(),
        "{} answers differ from etcd's:\n{}",
        report.wrong.len(),
        report.wrong.join("\n")
    );
}

/// The token of a user who is then deleted.
async fn login_token_of_deleted(t: &Target) -> String {
    let token = user_with_token(&t.channel, "gina").await;
    let root = root_token(&t.channel).await;
    AuthClient::new(t.channel.clone())
        .user_delete(with(
            Some(&root),
            AuthUserDeleteRequest {
                name: "gina".into(),
            },
        ))
        .await
        .expect("delete");
    token
}

/// The token of a user whose password then changes.
async fn token_before_new_password(t: &Target) -> String {
    let token = user_with_token(&t.channel, "hank").await;
    let root = root_token(&t.channel).await;
    AuthClient::new(t.channel.clone())
        .user_change_password(with(
            Some(&root),
            AuthUserChangePasswordRequest {
                name: "hank".into(),
                password: "new".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("change password");
    token
}
