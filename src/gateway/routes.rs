//! The gateway's paths, each bound to its gRPC method: the table of etcd
//! 3.4's generated gateways (rpc.pb.gw.go, v3lock.pb.gw.go,
//! v3election.pb.gw.go), under `/v3/` and, as etcd 3.4 still answers them,
//! `/v3beta/`.

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post, MethodRouter};
use axum::Router;
use oxetcd_proto::etcdserverpb::auth_client::AuthClient;
use oxetcd_proto::etcdserverpb::cluster_client::ClusterClient;
use oxetcd_proto::etcdserverpb::kv_client::KvClient;
use oxetcd_proto::etcdserverpb::lease_client::LeaseClient;
use oxetcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd_proto::etcdserverpb::watch_client::WatchClient;
use oxetcd_proto::etcdserverpb::*;
use oxetcd_proto::v3electionpb::election_client::ElectionClient;
use oxetcd_proto::v3electionpb::{CampaignRequest, LeaderRequest, ProclaimRequest, ResignRequest};
use oxetcd_proto::v3lockpb::lock_client::LockClient;
use oxetcd_proto::v3lockpb::{LockRequest, UnlockRequest};

use super::{Gateway, Identity};

/// The API's path prefixes: etcd 3.4 rewrites `/v3beta/` to `/v3/`.
const PREFIXES: [&str; 2] = ["/v3", "/v3beta"];

/// A unary method: `unary!(Client, method, RequestType)`.
macro_rules! unary {
    ($client:ident, $method:ident, $request:ty) => {
        gateway_method(post(
            |State(gw): State<Gateway>, who: Identity, body: Bytes| async move {
                gw.unary(
                    who,
                    body,
                    |grpc, request: tonic::Request<$request>| async move {
                        $client::new(grpc)
                            .max_decoding_message_size(usize::MAX)
                            .$method(request)
                            .await
                    },
                )
                .await
            },
        ))
    };
}

/// A method with one request and a stream of responses.
macro_rules! server_streaming {
    ($client:ident, $method:ident, $request:ty) => {
        gateway_method(post(
            |State(gw): State<Gateway>, who: Identity, body: Bytes| async move {
                gw.server_streaming(
                    who,
                    body,
                    |grpc, request: tonic::Request<$request>| async move {
                        $client::new(grpc)
                            .max_decoding_message_size(usize::MAX)
                            .$method(request)
                            .await
                    },
                )
                .await
            },
        ))
    };
}

/// A method streaming both ways; its requests are read as they arrive.
macro_rules! bidi {
    ($client:ident, $method:ident, $request:ty) => {
        gateway_method(post(
            |State(gw): State<Gateway>, who: Identity, body: Body| async move {
                gw.bidi(who, body, |grpc, requests| async move {
                    $client::new(grpc)
                        .max_decoding_message_size(usize::MAX)
                        .$method(requests)
                        .await
                })
                .await
            },
        ))
    };
}

/// Every gateway path of etcd 3.4 (its Auth paths reach the Auth service,
/// which answers Unimplemented while oxetcd has no auth).
fn methods() -> Vec<(&'static str, MethodRouter<Gateway>)> {
    vec![
        ("/kv/range", unary!(KvClient, range, RangeRequest)),
        ("/kv/put", unary!(KvClient, put, PutRequest)),
        (
            "/kv/deleterange",
            unary!(KvClient, delete_range, DeleteRangeRequest),
        ),
        ("/kv/txn", unary!(KvClient, txn, TxnRequest)),
        (
            "/kv/compaction",
            unary!(KvClient, compact, CompactionRequest),
        ),
        ("/watch", bidi!(WatchClient, watch, WatchRequest)),
        (
            "/lease/grant",
            unary!(LeaseClient, lease_grant, LeaseGrantRequest),
        ),
        (
            "/lease/revoke",
            unary!(LeaseClient, lease_revoke, LeaseRevokeRequest),
        ),
        (
            "/kv/lease/revoke",
            unary!(LeaseClient, lease_revoke, LeaseRevokeRequest),
        ),
        (
            "/lease/keepalive",
            bidi!(LeaseClient, lease_keep_alive, LeaseKeepAliveRequest),
        ),
        (
            "/lease/timetolive",
            unary!(LeaseClient, lease_time_to_live, LeaseTimeToLiveRequest),
        ),
        (
            "/kv/lease/timetolive",
            unary!(LeaseClient, lease_time_to_live, LeaseTimeToLiveRequest),
        ),
        (
            "/lease/leases",
            unary!(LeaseClient, lease_leases, LeaseLeasesRequest),
        ),
        (
            "/kv/lease/leases",
            unary!(LeaseClient, lease_leases, LeaseLeasesRequest),
        ),
        (
            "/cluster/member/add",
            unary!(ClusterClient, member_add, MemberAddRequest),
        ),
        (
            "/cluster/member/remove",
            unary!(ClusterClient, member_remove, MemberRemoveRequest),
        ),
        (
            "/cluster/member/update",
            unary!(ClusterClient, member_update, MemberUpdateRequest),
        ),
        (
            "/cluster/member/list",
            unary!(ClusterClient, member_list, MemberListRequest),
        ),
        (
            "/cluster/member/promote",
            unary!(ClusterClient, member_promote, MemberPromoteRequest),
        ),
        (
            "/maintenance/alarm",
            unary!(MaintenanceClient, alarm, AlarmRequest),
        ),
        (
            "/maintenance/status",
            unary!(MaintenanceClient, status, StatusRequest),
        ),
        (
            "/maintenance/defragment",
            unary!(MaintenanceClient, defragment, DefragmentRequest),
        ),
        // Hash and HashKV share this path in etcd; Hash is registered first
        // and wins, so HashKV is not reachable through the gateway.
        (
            "/maintenance/hash",
            unary!(MaintenanceClient, hash, HashRequest),
        ),
        (
            "/maintenance/snapshot",
            server_streaming!(MaintenanceClient, snapshot, SnapshotRequest),
        ),
        (
            "/maintenance/transfer-leadership",
            unary!(MaintenanceClient, move_leader, MoveLeaderRequest),
        ),
        (
            "/auth/enable",
            unary!(AuthClient, auth_enable, AuthEnableRequest),
        ),
        (
            "/auth/disable",
            unary!(AuthClient, auth_disable, AuthDisableRequest),
        ),
        (
            "/auth/authenticate",
            unary!(AuthClient, authenticate, AuthenticateRequest),
        ),
        (
            "/auth/user/add",
            unary!(AuthClient, user_add, AuthUserAddRequest),
        ),
        (
            "/auth/user/get",
            unary!(AuthClient, user_get, AuthUserGetRequest),
        ),
        (
            "/auth/user/list",
            unary!(AuthClient, user_list, AuthUserListRequest),
        ),
        (
            "/auth/user/delete",
            unary!(AuthClient, user_delete, AuthUserDeleteRequest),
        ),
        (
            "/auth/user/changepw",
            unary!(
                AuthClient,
                user_change_password,
                AuthUserChangePasswordRequest
            ),
        ),
        (
            "/auth/user/grant",
            unary!(AuthClient, user_grant_role, AuthUserGrantRoleRequest),
        ),
        (
            "/auth/user/revoke",
            unary!(AuthClient, user_revoke_role, AuthUserRevokeRoleRequest),
        ),
        (
            "/auth/role/add",
            unary!(AuthClient, role_add, AuthRoleAddRequest),
        ),
        (
            "/auth/role/get",
            unary!(AuthClient, role_get, AuthRoleGetRequest),
        ),
        (
            "/auth/role/list",
            unary!(AuthClient, role_list, AuthRoleListRequest),
        ),
        (
            "/auth/role/delete",
            unary!(AuthClient, role_delete, AuthRoleDeleteRequest),
        ),
        (
            "/auth/role/grant",
            unary!(
                AuthClient,
                role_grant_permission,
                AuthRoleGrantPermissionRequest
            ),
        ),
        (
            "/auth/role/revoke",
            unary!(
                AuthClient,
                role_revoke_permission,
                AuthRoleRevokePermissionRequest
            ),
        ),
        (
            "/election/campaign",
            unary!(ElectionClient, campaign, CampaignRequest),
        ),
        (
            "/election/proclaim",
            unary!(ElectionClient, proclaim, ProclaimRequest),
        ),
        (
            "/election/leader",
            unary!(ElectionClient, leader, LeaderRequest),
        ),
        (
            "/election/observe",
            server_streaming!(ElectionClient, observe, LeaderRequest),
        ),
        (
            "/election/resign",
            unary!(ElectionClient, resign, ResignRequest),
        ),
        ("/lock/lock", unary!(LockClient, lock, LockRequest)),
        ("/lock/unlock", unary!(LockClient, unlock, UnlockRequest)),
    ]
}

/// The gateway's paths, to merge into the client port's router.
pub fn router(gateway: Gateway) -> Router {
    let body_limit = gateway.body_limit;
    let mut router = Router::new();
    for (path, method) in methods() {
        for prefix in PREFIXES {
            router = router.route(&format!("{prefix}{path}"), method.clone());
        }
    }
    for prefix in PREFIXES {
        // Other paths under the API prefix: the gateway's own 404.
        router = router.route(&format!("{prefix}/{{*rest}}"), any(not_found));
    }
    router
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(gateway)
}

/// A gateway method: POST; a CORS preflight (etcd answers every origin);
/// anything else is refused as grpc-gateway does.
fn gateway_method(method: MethodRouter<Gateway>) -> MethodRouter<Gateway> {
    method
        .options(|| async { with_cors(StatusCode::OK.into_response()) })
        .fallback(|| async { text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n") })
        .layer(axum::middleware::map_response(
            |response: Response| async move { with_cors(response) },
        ))
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "Not Found\n")
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// etcd's CORS headers (it allows every origin unless --cors says otherwise).
fn with_cors(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("accept, content-type, authorization"),
    );
    response
}
