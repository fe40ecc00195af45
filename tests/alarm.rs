//! The storage quota and the NOSPACE alarm, as an operator meets them: writes
//! past --quota-backend-bytes are refused with etcd's error while reads,
//! deletes and compactions work; the alarm is listed, survives a restart, and
//! disarming it after compact + defrag restores writes.

mod support;

use oxetcd_proto::etcdserverpb::alarm_request::AlarmAction;
use oxetcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxetcd_proto::etcdserverpb::lease_client::LeaseClient;
use oxetcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd_proto::etcdserverpb::request_op::Request as Op;
use oxetcd_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmType, CompactionRequest, Compare, DefragmentRequest,
    DeleteRangeRequest, LeaseGrantRequest, RequestOp, StatusRequest, TxnRequest,
};
use std::time::{Duration, Instant};

use support::cluster::{Cluster, ClusterOptions};
use support::{assert_status, b, get, http_get, put_req, Server};
use tonic::transport::Channel;
use tonic::Code;

const ERR_NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";
/// Small enough to fill in a few dozen writes, above a new store's size.
const QUOTA: u64 = 256 << 10;
const VALUE_BYTES: usize = 8 << 10;

async fn alarms(server: &Server) -> Vec<AlarmMember> {
    list(server.channel().await).await
}

async fn list(channel: Channel) -> Vec<AlarmMember> {
    MaintenanceClient::new(channel)
        .alarm(AlarmRequest {
            action: AlarmAction::Get as i32,
            member_id: 0,
            alarm: AlarmType::None as i32,
        })
        .await
        .expect("alarm list")
        .into_inner()
        .alarms
}

/// What `etcdctl alarm disarm` does: a DEACTIVATE for each listed alarm.
async fn disarm(server: &Server) {
    disarm_through(server.channel().await).await;
}

/// `disarm` through the member `channel` leads to.
async fn disarm_through(channel: Channel) {
    let mut maintenance = MaintenanceClient::new(channel.clone());
    for alarm in list(channel).await {
        maintenance
            .alarm(AlarmRequest {
                action: AlarmAction::Deactivate as i32,
                member_id: alarm.member_id,
                alarm: alarm.alarm,
            })
            .await
            .expect("disarm");
    }
}

#[tokio::test]
async fn writes_past_the_quota_are_refused_until_space_is_freed_and_the_alarm_disarmed() {
    let quota = QUOTA.to_string();
    let mut server = Server::start_with(&["--quota-backend-bytes", &quota]);
    let mut kv = server.kv().await;
    kv.put(put_req("keep", "small")).await.expect("a first put");
    let member_id = server
        .maintenance()
        .await
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner()
        .header
        .expect("header")
        .member_id;

    // Overwrite one key until the store is full: its history fills it.
    let value = "v".repeat(VALUE_BYTES);
    let mut accepted = 0;
    let refused = loop {
        match kv.put(put_req("fill", &value)).await {
            Ok(_) => accepted += 1,
            Err(status) => break status,
        }
        assert!(accepted < 1000, "never refused past a {QUOTA}-byte quota");
    };
    assert_eq!(
        (refused.code(), refused.message()),
        (Code::ResourceExhausted, ERR_NO_SPACE)
    );
    assert!(accepted > 0, "refused before the store was full");

    // The member raised NOSPACE for itself; Status lists it among its errors.
    let raised = alarms(&server).await;
    assert_eq!(
        raised,
        [AlarmMember {
            member_id,
            alarm: AlarmType::Nospace as i32
        }]
    );
    let status = server
        .maintenance()
        .await
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(
        status.errors.iter().any(|e| e.contains("alarm:NOSPACE")),
        "{:?}",
        status.errors
    );
    assert_eq!(status.db_size_quota, QUOTA as i64);
    // Unhealthy while an alarm is active, unless NOSPACE is excluded.
    let url = server.endpoint();
    assert_eq!(
        http_get(&url, "/health"),
        (503, r#"{"health":"false"}"#.to_string())
    );
    assert_eq!(http_get(&url, "/health?exclude=NOSPACE").0, 200);

    // What grows the store is refused, even small; reads and deletes work.
    assert_status(
        kv.put(put_req("small", "x")).await,
        Code::ResourceExhausted,
        ERR_NO_SPACE,
    );
    let txn_put = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Greater as i32,
            target: CompareTarget::Version as i32,
            key: b("keep"),
            target_union: Some(TargetUnion::Version(0)),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(Op::RequestPut(put_req("txn", "x"))),
        }],
        ..Default::default()
    };
    assert_status(
        kv.txn(txn_put.clone()).await,
        Code::ResourceExhausted,
        ERR_NO_SPACE,
    );
    let mut lease = LeaseClient::new(server.channel().await);
    assert_status(
        lease
            .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
            .await,
        Code::ResourceExhausted,
        ERR_NO_SPACE,
    );
    assert_eq!(
        get(&mut kv, "fill").await.expect("fill").value.len(),
        VALUE_BYTES
    );
    let deleted = kv
        .delete_range(DeleteRangeRequest {
            key: b("keep"),
            ..Default::default()
        })
        .await
        .expect("a delete while NOSPACE is raised")
        .into_inner();
    assert_eq!(deleted.deleted, 1);

    // Free the space: compact away the history, defragment.
    let latest = support::current_rev(&mut kv).await;
    kv.compact(CompactionRequest {
        revision: latest,
        physical: true,
    })
    .await
    .expect("compact while NOSPACE is raised");
    server
        .maintenance()
        .await
        .defragment(DefragmentRequest {})
        .await
        .expect("defragment while NOSPACE is raised");
    // The space is back, but the alarm stands until disarmed.
    assert_status(
        kv.put(put_req("small", "x")).await,
        Code::ResourceExhausted,
        ERR_NO_SPACE,
    );

    // The alarm is replicated state: it survives a restart.
    server.restart();
    let mut kv = server.kv().await;
    assert_eq!(alarms(&server).await, raised);
    assert_status(
        kv.put(put_req("small", "x")).await,
        Code::ResourceExhausted,
        ERR_NO_SPACE,
    );

    disarm(&server).await;
    assert!(alarms(&server).await.is_empty());
    assert_eq!(http_get(&server.endpoint(), "/health").0, 200);
    kv.put(put_req("small", "x"))
        .await
        .expect("a put after disarming");
    kv.txn(txn_put).await.expect("a txn after disarming");
}

#[tokio::test]
async fn a_member_past_the_quota_raises_nospace_and_every_member_refuses_writes() {
    let options = ClusterOptions {
        extra_args: vec!["--quota-backend-bytes".into(), QUOTA.to_string()],
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start_with(3, options).await;
    let mut kv = cluster.kv(0);
    let value = "v".repeat(VALUE_BYTES);
    let mut accepted = 0;
    while kv.put(put_req("fill", &value)).await.is_ok() {
        accepted += 1;
        assert!(accepted < 1000, "never refused past a {QUOTA}-byte quota");
    }

    // A member whose store went past the quota raised NOSPACE for itself
    // (each checks its own, as etcd's do); the alarm is replicated state,
    // so every member lists the same alarms and refuses what grows the store.
    let ids: Vec<u64> = (0..3).map(|i| cluster.member(i).id()).collect();
    let started = Instant::now();
    let raised = loop {
        let mut seen = Vec::new();
        for i in 0..3 {
            seen.push(list(cluster.channel(i)).await);
        }
        if !seen[0].is_empty() && seen.iter().all(|s| *s == seen[0]) {
            break seen.swap_remove(0);
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "members list different alarms: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        raised
            .iter()
            .all(|a| a.alarm == AlarmType::Nospace as i32 && ids.contains(&a.member_id)),
        "{raised:?} (members {ids:x?})"
    );
    for i in 0..3 {
        assert_status(
            cluster.kv(i).put(put_req("small", "x")).await,
            Code::ResourceExhausted,
            ERR_NO_SPACE,
        );
    }

    // Free the space on every member, disarm through one: writes come back
    // on all.
    let latest = support::current_rev(&mut kv).await;
    kv.compact(CompactionRequest {
        revision: latest,
        physical: true,
    })
    .await
    .expect("compact");
    for i in 0..3 {
        while cluster.local_revision(i).await.expect("revision") < latest {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        cluster
            .maintenance(i)
            .defragment(DefragmentRequest {})
            .await
            .expect("defragment");
    }
    disarm_through(cluster.channel(2)).await;
    for i in 0..3 {
        cluster
            .kv(i)
            .put(put_req("small", "x"))
            .await
            .unwrap_or_else(|e| panic!("a put through m{i} after disarming: {e}"));
    }
    assert!(list(cluster.channel(0)).await.is_empty());
}
