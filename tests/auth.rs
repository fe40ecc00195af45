//! Auth as an attacker meets it, against the real binary over gRPC and the
//! JSON gateway: a request without a token, with a forged token, with a
//! wrong password, with a deleted user's token, with a token from before a
//! password change, and as a user lacking the permission (for each KV call,
//! Txn compares, Watch, Lease revoke, Lock, admin calls) is refused with
//! etcd's error, and reading back as root shows nothing changed. The auth
//! state survives a restart.

mod support;

#[path = "auth/refusals.rs"]
mod refusals;

use oxetcd_proto::authpb::permission::Type as PermType;
use oxetcd_proto::authpb::Permission;
use oxetcd_proto::etcdserverpb::auth_client::AuthClient;
use oxetcd_proto::etcdserverpb::cluster_client::ClusterClient;
use oxetcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxetcd_proto::etcdserverpb::lease_client::LeaseClient;
use oxetcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd_proto::etcdserverpb::request_op::Request as Op;
use oxetcd_proto::etcdserverpb::watch_client::WatchClient;
use oxetcd_proto::etcdserverpb::watch_request::RequestUnion;
use oxetcd_proto::etcdserverpb::*;
use oxetcd_proto::v3lockpb::lock_client::LockClient;
use oxetcd_proto::v3lockpb::LockRequest;
use support::{b, get_req, put_req, Server};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const DENIED: &str = "etcdserver: permission denied";
const BAD_TOKEN: &str = "etcdserver: invalid auth token";
const NO_USER: &str = "etcdserver: user name is empty";
const AUTH_FAILED: &str = "etcdserver: authentication failed, invalid user ID or password";

/// `message` carrying `token` as etcd's clients send it.
fn with<T>(token: Option<&str>, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        let value = MetadataValue::try_from(token).expect("ascii token");
        request.metadata_mut().insert("token", value);
    }
    request
}

fn refused<T: std::fmt::Debug>(result: Result<T, Status>, message: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.message(), message, "{status:?}");
    let code = match message {
        DENIED => Code::PermissionDenied,
        BAD_TOKEN => Code::Unauthenticated,
        _ => Code::InvalidArgument,
    };
    assert_eq!(status.code(), code, "{status:?}");
}

async fn login(
    auth: &mut AuthClient<Channel>,
    name: &str,
    password: &str,
) -> Result<String, Status> {
    Ok(auth
        .authenticate(AuthenticateRequest {
            name: name.into(),
            password: password.into(),
        })
        .await?
        .into_inner()
        .token)
}

fn perm(key: &str, range_end: &str, t: PermType) -> Option<Permission> {
    Some(Permission {
        perm_type: t as i32,
        key: b(key),
        range_end: b(range_end),
    })
}

/// root (root role), and alice with role `rw-a` (read and write under `a/`).
async fn set_up(channel: &Channel) {
    let mut auth = AuthClient::new(channel.clone());
    for (name, password) in [("root", "rootpw"), ("alice", "alicepw")] {
        auth.user_add(AuthUserAddRequest {
            name: name.into(),
            password: password.into(),
            ..Default::default()
        })
        .await
        .expect("user add");
    }
    auth.role_add(AuthRoleAddRequest {
        name: "rw-a".into(),
    })
    .await
    .expect("role add");
    auth.role_grant_permission(AuthRoleGrantPermissionRequest {
        name: "rw-a".into(),
        perm: perm("a/", "a0", PermType::Readwrite),
    })
    .await
    .expect("grant");
    for (user, role) in [("root", "root"), ("alice", "rw-a")] {
        auth.user_grant_role(AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        })
        .await
        .expect("grant role");
    }
    auth.auth_enable(AuthEnableRequest {})
        .await
        .expect("enable");
}

/// Every key and value, read as root.
async fn everything(channel: &Channel, root: &str) -> Vec<(String, String)> {
    let mut kv = support::kv_client(channel.clone());
    let all = kv
        .range(with(Some(root), support::all_req()))
        .await
        .expect("root reads everything")
        .into_inner();
    all.kvs
        .iter()
        .map(|kv| (support::key_str(kv), support::value_str(kv)))
        .collect()
}

/// A request over the JSON gateway with an optional Authorization header.
fn gateway_post(endpoint: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: {t}\r\n"));
    let headers = format!("Content-Type: application/json\r\n{auth}");
    support::http_request(endpoint, "POST", path, &headers, body)
}

#[tokio::test]
async fn every_refused_request_is_refused_with_etcds_error_and_changes_nothing() {
    let mut server = Server::start_with(&["--bcrypt-cost", "4"]);
    let channel = server.channel().await;
    support::kv_client(channel.clone())
        .put(put_req("a/1", "v1"))
        .await
        .expect("put before auth");
    support::kv_client(channel.clone())
        .put(put_req("secret", "s1"))
        .await
        .expect("put before auth");
    set_up(&channel).await;
    let mut auth = AuthClient::new(channel.clone());
    let mut kv = support::kv_client(channel.clone());

    // Wrong password, unknown user.
    refused(login(&mut auth, "alice", "wrong").await, AUTH_FAILED);
    refused(login(&mut auth, "mallory", "alicepw").await, AUTH_FAILED);
    let root = login(&mut auth, "root", "rootpw")
        .await
        .expect("root logs in");
    let alice = login(&mut auth, "alice", "alicepw")
        .await
        .expect("alice logs in");
    let before = everything(&channel, &root).await;

    // No token, a forged token.
    refused(kv.put(with(None, put_req("a/1", "x"))).await, NO_USER);
    refused(kv.range(with(None, get_req("a/1"))).await, NO_USER);
    refused(
        kv.put(with(Some("forged.1"), put_req("a/1", "x"))).await,
        BAD_TOKEN,
    );
    refused(
        kv.put(with(Some(&format!("{alice}x")), put_req("a/1", "x")))
            .await,
        BAD_TOKEN,
    );

    // Alice inside her range works; outside it, every KV call is refused.
    kv.put(with(Some(&alice), put_req("a/2", "v2")))
        .await
        .expect("alice writes a/");
    let before = {
        let mut b = before;
        b.insert(1, ("a/2".into(), "v2".into()));
        b
    };
    refused(
        kv.put(with(Some(&alice), put_req("secret", "x"))).await,
        DENIED,
    );
    refused(
        kv.range(with(Some(&alice), get_req("secret"))).await,
        DENIED,
    );
    refused(
        kv.range(with(Some(&alice), support::all_req())).await,
        DENIED,
    );
    refused(
        kv.delete_range(with(
            Some(&alice),
            DeleteRangeRequest {
                key: b("a/"),
                range_end: b("b"),
                ..Default::default()
            },
        ))
        .await,
        DENIED,
    );
    // A txn is checked on its compares and on both branches.
    let compare_secret = Compare {
        key: b("secret"),
        result: CompareResult::Equal as i32,
        target: CompareTarget::Value as i32,
        target_union: Some(TargetUnion::Value(b("s1"))),
        ..Default::default()
    };
    let put_op = |k: &str| RequestOp {
        request: Some(Op::RequestPut(put_req(k, "x"))),
    };
    refused(
        kv.txn(with(
            Some(&alice),
            TxnRequest {
                compare: vec![compare_secret],
                success: vec![put_op("a/1")],
                failure: vec![],
            },
        ))
        .await,
        DENIED,
    );
    refused(
        kv.txn(with(
            Some(&alice),
            TxnRequest {
                compare: vec![],
                success: vec![put_op("a/1")],
                failure: vec![put_op("secret")],
            },
        ))
        .await,
        DENIED,
    );

    // A lease with a key alice may not write cannot be revoked by her.
    let mut leases = LeaseClient::new(channel.clone());
    let lease = leases
        .lease_grant(with(Some(&root), LeaseGrantRequest { ttl: 600, id: 0 }))
        .await
        .expect("grant")
        .into_inner()
        .id;
    let mut leased = put_req("secret-leased", "l");
    leased.lease = lease;
    kv.put(with(Some(&root), leased))
        .await
        .expect("root puts with the lease");
    let before = {
        let mut b = before;
        b.push(("secret-leased".into(), "l".into()));
        b
    };
    refused(
        leases
            .lease_revoke(with(Some(&alice), LeaseRevokeRequest { id: lease }))
            .await,
        DENIED,
    );

    // A watch outside her range is created canceled, with etcd's reason.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: b("secret"),
            ..Default::default()
        })),
    })
    .await
    .expect("queue");
    let mut watch = WatchClient::new(channel.clone())
        .watch(with(
            Some(&alice),
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .await
        .expect("watch stream")
        .into_inner();
    let first = watch.message().await.expect("a response").expect("one");
    assert!(first.created && first.canceled, "{first:?}");
    assert!(first.cancel_reason.contains(DENIED), "{first:?}");

    // Locks and admin calls.
    // etcd's lock service passes its inner client's error on: code Unknown.
    let lock = LockClient::new(channel.clone())
        .lock(with(
            Some(&alice),
            LockRequest {
                name: b("secret-lock"),
                lease: 0,
            },
        ))
        .await
        .expect_err("refused");
    assert_eq!((lock.code(), lock.message()), (Code::Unknown, DENIED));
    // etcd's maintenance server answers its auth store's own words.
    let defrag = MaintenanceClient::new(channel.clone())
        .defragment(with(Some(&alice), DefragmentRequest {}))
        .await
        .expect_err("refused");
    assert_eq!(
        (defrag.code(), defrag.message()),
        (Code::Unknown, "auth: permission denied")
    );
    refused(
        ClusterClient::new(channel.clone())
            .member_add(with(
                Some(&alice),
                MemberAddRequest {
                    peer_ur_ls: vec!["http://127.0.0.9:30999".into()],
                    is_learner: true,
                },
            ))
            .await,
        DENIED,
    );
    refused(
        auth.user_add(with(
            Some(&alice),
            AuthUserAddRequest {
                name: "mallory".into(),
                password: "m".into(),
                ..Default::default()
            },
        ))
        .await,
        DENIED,
    );
    refused(
        auth.user_grant_role(with(
            Some(&alice),
            AuthUserGrantRoleRequest {
                user: "alice".into(),
                role: "root".into(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        auth.auth_disable(with(Some(&alice), AuthDisableRequest {}))
            .await,
        DENIED,
    );

    // The JSON gateway: no token, and alice outside her range.
    let put_secret = r#"{"key":"c2VjcmV0","value":"eA=="}"#; // secret = x
    let (status, body) = gateway_post(&server.endpoint(), "/v3/kv/put", None, put_secret);
    assert!(status >= 400 && body.contains(NO_USER), "{status} {body}");
    let (status, body) = gateway_post(&server.endpoint(), "/v3/kv/put", Some(&alice), put_secret);
    assert!(status >= 400 && body.contains(DENIED), "{status} {body}");
    let put_a1 = r#"{"key":"YS8x","value":"djE="}"#; // a/1 = v1, as it is
    let (status, body) = gateway_post(&server.endpoint(), "/v3/kv/put", Some(&alice), put_a1);
    assert_eq!(status, 200, "alice writes a/ through the gateway: {body}");

    assert_eq!(everything(&channel, &root).await, before, "nothing changed");

    // A role revoked: alice loses the permission at once.
    auth.user_revoke_role(with(
        Some(&root),
        AuthUserRevokeRoleRequest {
            name: "alice".into(),
            role: "rw-a".into(),
        },
    ))
    .await
    .expect("revoke");
    let alice = login(&mut auth, "alice", "alicepw")
        .await
        .expect("alice logs in again");
    refused(
        kv.put(with(Some(&alice), put_req("a/1", "x"))).await,
        DENIED,
    );

    // A password change ends her tokens; so does deleting her.
    auth.user_change_password(with(
        Some(&root),
        AuthUserChangePasswordRequest {
            name: "alice".into(),
            password: "new".into(),
            ..Default::default()
        },
    ))
    .await
    .expect("change password");
    refused(
        kv.range(with(Some(&alice), get_req("a/1"))).await,
        BAD_TOKEN,
    );
    refused(login(&mut auth, "alice", "alicepw").await, AUTH_FAILED);
    let alice = login(&mut auth, "alice", "new")
        .await
        .expect("the new password works");
    auth.user_delete(with(
        Some(&root),
        AuthUserDeleteRequest {
            name: "alice".into(),
        },
    ))
    .await
    .expect("delete alice");
    refused(
        kv.range(with(Some(&alice), get_req("a/1"))).await,
        BAD_TOKEN,
    );
    refused(login(&mut auth, "alice", "new").await, AUTH_FAILED);
    assert_eq!(everything(&channel, &root).await, before, "nothing changed");

    // The auth state survives a restart: still enabled, root still root.
    server.restart();
    let channel = server.channel().await;
    let mut auth = AuthClient::new(channel.clone());
    let mut kv = support::kv_client(channel.clone());
    refused(kv.range(with(None, get_req("a/1"))).await, NO_USER);
    let root = login(&mut auth, "root", "rootpw")
        .await
        .expect("root after restart");
    let users = auth
        .user_list(with(Some(&root), AuthUserListRequest {}))
        .await
        .expect("list")
        .into_inner()
        .users;
    assert_eq!(users, vec!["root".to_string()]);
    assert_eq!(everything(&channel, &root).await, before);
}

/// Repeated wrong passwords for one user are slowed (`auth::LoginBackoff`):
/// N failed logins take at least the waits designed for them, while another
/// user logging in meanwhile is not delayed.
#[tokio::test]
async fn repeated_failed_logins_are_slowed_and_other_users_are_not() {
    if support::against_reference_server() {
        eprintln!("skipped: etcd does not slow repeated failures");
        return;
    }
    use oxetcd_server::auth::{login_delay, MAX_LOGIN_DELAY};
    use std::time::{Duration, Instant};
    const N: u32 = 7;
    let server = Server::start_with(&["--bcrypt-cost", "4"]);
    let channel = server.channel().await;
    set_up(&channel).await;
    let mut guesser = AuthClient::new(channel.clone());
    let started = Instant::now();
    let guesses = tokio::spawn(async move {
        for _ in 0..N {
            refused(login(&mut guesser, "alice", "guess").await, AUTH_FAILED);
        }
        started.elapsed()
    });
    let mut root = AuthClient::new(channel.clone());
    let (mut slowest, mut logins) = (Duration::ZERO, 0);
    while !guesses.is_finished() {
        let t = Instant::now();
        login(&mut root, "root", "rootpw")
            .await
            .expect("root logs in");
        slowest = slowest.max(t.elapsed());
        logins += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = guesses.await.expect("guesses");
    // The k-th guess waits the delay after k-1 failures.
    let designed: Duration = (1..N).map(login_delay).sum();
    println!(
        "{N} wrong passwords took {took:?} (designed at least {designed:?}); \
         {logins} root logins meanwhile, the slowest {slowest:?}"
    );
    assert!(took >= designed, "{took:?} < {designed:?}");
    assert!(
        slowest < MAX_LOGIN_DELAY / 2,
        "root waited {slowest:?} while alice was being guessed"
    );
    // Her right password still works (after the wait it is owed).
    login(&mut AuthClient::new(channel), "alice", "alicepw")
        .await
        .expect("alice logs in");
}

/// Authenticate answers from a state at least as new as the request, as
/// etcd 3.4's does (a linearizable read first): a follower that missed
/// AuthEnable and the users while it was stopped, asked right after it
/// resumes, still logs alice in, instead of answering from what it had
/// ("authentication is not enabled").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_on_a_follower_that_missed_auth_enable_waits_for_it() {
    use std::time::Duration;
    use support::cluster::{channel_to, Cluster, ClusterOptions};
    let mut cluster = Cluster::start_with(
        3,
        ClusterOptions {
            extra_args: vec!["--bcrypt-cost".into(), "4".into()],
            ..Default::default()
        },
    )
    .await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let timeout = Duration::from_secs(5);
    for round in 0..3 {
        let follower = (leader + 1 + round % 2) % 3;
        cluster.pause(follower);
        let leader_channel = channel_to(&cluster.member(leader).client_url(), timeout);
        if round == 0 {
            set_up(&leader_channel).await;
        } else {
            let root = login(
                &mut AuthClient::new(leader_channel.clone()),
                "root",
                "rootpw",
            )
            .await
            .expect("root logs in");
            let mut auth = AuthClient::new(leader_channel.clone());
            let name = format!("user-{round}");
            auth.user_add(with(
                Some(&root),
                AuthUserAddRequest {
                    name: name.clone(),
                    password: "pw".into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("user add");
        }
        cluster.resume(follower);
        let mut at_follower =
            AuthClient::new(channel_to(&cluster.member(follower).client_url(), timeout));
        let (name, password) = match round {
            0 => ("alice".to_owned(), "alicepw"),
            _ => (format!("user-{round}"), "pw"),
        };
        let logged_in = login(&mut at_follower, &name, password).await;
        assert!(logged_in.is_ok(), "round {round}: {logged_in:?}");
    }
}
