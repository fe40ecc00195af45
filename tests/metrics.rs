//! /metrics, read as Prometheus reads it: the real binary scraped on its
//! client port and on --listen-metrics-urls, the text parsed by a Prometheus
//! text-format parser that is not ours, each family etcd's dashboards and
//! alerts use checked by name and type, and the counters checked against
//! what the test did.

mod support;

use std::collections::HashMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use oxetcd_proto::etcdserverpb::watch_client::WatchClient;
use oxetcd_proto::etcdserverpb::{
    watch_request, DeleteRangeRequest, RangeRequest, WatchCreateRequest, WatchRequest,
};
use prometheus_parse::{Sample, Scrape, Value};
use support::{http_get, put_req, Server};

/// The kind of value a family holds, as its `# TYPE` line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every family this test requires, with etcd 3.4's type. A family that
/// disappears or changes type fails the test.
const FAMILIES: &[(&str, Kind)] = &[
    ("etcd_server_has_leader", Kind::Gauge),
    ("etcd_server_is_leader", Kind::Gauge),
    ("etcd_server_leader_changes_seen_total", Kind::Counter),
    ("etcd_server_proposals_committed_total", Kind::Gauge),
    ("etcd_server_proposals_applied_total", Kind::Gauge),
    ("etcd_server_proposals_pending", Kind::Gauge),
    ("etcd_server_proposals_failed_total", Kind::Counter),
    ("etcd_server_slow_apply_total", Kind::Counter),
    ("etcd_server_id", Kind::Gauge),
    ("etcd_server_version", Kind::Gauge),
    ("etcd_cluster_version", Kind::Gauge),
    ("etcd_disk_wal_fsync_duration_seconds", Kind::Histogram),
    ("etcd_disk_backend_commit_duration_seconds", Kind::Histogram),
    ("etcd_mvcc_db_total_size_in_bytes", Kind::Gauge),
    ("etcd_mvcc_db_total_size_in_use_in_bytes", Kind::Gauge),
    ("etcd_debugging_mvcc_keys_total", Kind::Gauge),
    ("etcd_mvcc_put_total", Kind::Counter),
    ("etcd_mvcc_delete_total", Kind::Counter),
    ("etcd_mvcc_range_total", Kind::Counter),
    ("etcd_mvcc_txn_total", Kind::Counter),
    (
        "etcd_network_client_grpc_received_bytes_total",
        Kind::Counter,
    ),
    ("etcd_network_client_grpc_sent_bytes_total", Kind::Counter),
    ("grpc_server_started_total", Kind::Counter),
    ("grpc_server_handled_total", Kind::Counter),
    ("grpc_server_handling_seconds", Kind::Histogram),
    ("process_resident_memory_bytes", Kind::Gauge),
    ("process_cpu_seconds_total", Kind::Counter),
    ("process_open_fds", Kind::Gauge),
    ("process_start_time_seconds", Kind::Gauge),
];

/// A scrape: every family's declared type, and the samples.
struct Metrics {
    types: HashMap<String, Kind>,
    samples: Vec<Sample>,
}

impl Metrics {
    fn scrape(endpoint: &str) -> Metrics {
        let (status, body) = http_get(endpoint, "/metrics");
        assert_eq!(status, 200, "{body}");
        let types = body
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| {
                let (name, kind) = l.split_once(' ')?;
                let kind = match kind {
                    "counter" => Kind::Counter,
                    "gauge" => Kind::Gauge,
                    "histogram" => Kind::Histogram,
                    _ => return None,
                };
                Some((name.to_string(), kind))
            })
            .collect();
        let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
            .expect("a Prometheus text-format parser reads /metrics");
        Metrics {
            types,
            samples: scrape.samples,
        }
    }

    /// The samples of `name` whose labels include `labels`.
    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .collect()
    }

    /// The one value of a counter or gauge.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.find(name, labels).as_slice() {
            [one] => match one.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                ref other => panic!("{name} is {other:?}"),
            },
            many => panic!("{name}{labels:?}: {} samples", many.len()),
        }
    }

    /// How many observations the histogram `name` holds (its +Inf bucket).
    fn observations(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.find(name, labels).as_slice() {
            [one] => match &one.value {
                Value::Histogram(buckets) => buckets
                    .iter()
                    .find(|b| b.less_than == f64::INFINITY)
                    .map_or(0.0, |b| b.count),
                other => panic!("{name} is {other:?}"),
            },
            many => panic!("{name}{labels:?}: {} samples", many.len()),
        }
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

/// Scrapes until `ready` holds (gauges follow their events within a flush
/// or a Raft round); fails after a few seconds.
fn scrape_until(endpoint: &str, ready: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = Metrics::scrape(endpoint);
        if ready(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "metrics never got there");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const PUT: &[(&str, &str)] = &[
    ("grpc_service", "etcdserverpb.KV"),
    ("grpc_method", "Put"),
    ("grpc_type", "unary"),
];

#[tokio::test]
async fn every_family_dashboards_use_is_served_with_etcds_type_and_true_counts() {
    let metrics_url = format!("http://127.0.0.1:{}", free_port());
    let server = Server::start_with(&[
        "--metrics",
        "extensive",
        "--listen-metrics-urls",
        &metrics_url,
    ]);
    let mut kv = server.kv().await;
    for k in ["a", "b", "c"] {
        kv.put(put_req(k, "v")).await.expect("put");
    }
    kv.delete_range(DeleteRangeRequest {
        key: "a".into(),
        ..Default::default()
    })
    .await
    .expect("delete");
    kv.range(RangeRequest {
        key: "b".into(),
        ..Default::default()
    })
    .await
    .expect("range");
    // A future revision: the RPC ends with an error status, counted as such.
    let refused = kv
        .range(RangeRequest {
            key: "b".into(),
            revision: 1_000_000,
            ..Default::default()
        })
        .await;
    assert!(refused.is_err());

    let m = scrape_until(&server.endpoint(), |m| {
        m.observations("etcd_disk_backend_commit_duration_seconds", &[]) > 0.0
    });
    for (name, kind) in FAMILIES {
        assert_eq!(m.types.get(*name), Some(kind), "family {name}");
    }
    assert_eq!(m.value("etcd_server_has_leader", &[]), 1.0);
    assert_eq!(m.value("etcd_server_is_leader", &[]), 1.0);
    assert_eq!(m.value("etcd_server_leader_changes_seen_total", &[]), 1.0);
    assert_eq!(m.value("etcd_server_proposals_pending", &[]), 0.0);
    assert_eq!(m.value("etcd_server_proposals_failed_total", &[]), 0.0);
    let applied = m.value("etcd_server_proposals_applied_total", &[]);
    assert!(applied >= 4.0, "4 writes applied, index {applied}");
    assert!(m.value("etcd_server_proposals_committed_total", &[]) >= applied);
    assert_eq!(m.value("etcd_mvcc_put_total", &[]), 3.0);
    assert_eq!(m.value("etcd_mvcc_delete_total", &[]), 1.0);
    // The served range, and the refused one (the store refuses a future
    // revision once asked, as etcd's).
    assert_eq!(m.value("etcd_mvcc_range_total", &[]), 2.0);
    assert_eq!(m.value("etcd_debugging_mvcc_keys_total", &[]), 2.0);
    assert!(m.value("etcd_mvcc_db_total_size_in_bytes", &[]) > 0.0);
    assert!(m.value("etcd_mvcc_db_total_size_in_use_in_bytes", &[]) > 0.0);
    assert!(m.observations("etcd_disk_wal_fsync_duration_seconds", &[]) >= 4.0);
    assert_eq!(m.value("grpc_server_started_total", PUT), 3.0);
    let ok = [PUT, &[("grpc_code", "OK")]].concat();
    assert_eq!(m.value("grpc_server_handled_total", &ok), 3.0);
    assert_eq!(m.observations("grpc_server_handling_seconds", PUT), 3.0);
    let out_of_range = [("grpc_method", "Range"), ("grpc_code", "OutOfRange")];
    assert_eq!(m.value("grpc_server_handled_total", &out_of_range), 1.0);
    // Every method's series exist from the start, as etcd's.
    let compact = [("grpc_method", "Compact"), ("grpc_code", "OK")];
    assert_eq!(m.value("grpc_server_handled_total", &compact), 0.0);
    assert!(m.value("etcd_network_client_grpc_received_bytes_total", &[]) > 0.0);
    assert!(m.value("etcd_network_client_grpc_sent_bytes_total", &[]) > 0.0);
    let id = format!("{:x}", member_id(&server).await);
    assert_eq!(m.value("etcd_server_id", &[("server_id", &id)]), 1.0);
    assert!(m.value("process_resident_memory_bytes", &[]) > 0.0);
    assert!(m.value("process_open_fds", &[]) > 0.0);

    // The metrics URL serves the same registry, and the health endpoints.
    let there = Metrics::scrape(&metrics_url);
    assert_eq!(there.value("etcd_mvcc_put_total", &[]), 3.0);
    assert_eq!(http_get(&metrics_url, "/health").0, 200);
    assert_eq!(http_get(&metrics_url, "/no-such-page").0, 404);
}

async fn member_id(server: &Server) -> u64 {
    let mut kv = server.kv().await;
    let r = kv
        .range(RangeRequest {
            key: "x".into(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    r.header.expect("header").member_id
}

// Multi-threaded: the client's connection task must run (to reset the
// stream) while the test thread waits in blocking scrapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_whose_client_goes_away_is_counted_canceled_and_basic_has_no_histogram() {
    let server = Server::start();
    let watch = [
        ("grpc_service", "etcdserverpb.Watch"),
        ("grpc_method", "Watch"),
        ("grpc_type", "bidi_stream"),
        ("grpc_code", "Canceled"),
    ];
    let before = Metrics::scrape(&server.endpoint());
    assert!(
        !before.types.contains_key("grpc_server_handling_seconds"),
        "basic metrics have no handling histogram"
    );
    assert_eq!(before.value("grpc_server_handled_total", &watch), 0.0);
    {
        let mut client = WatchClient::new(server.channel().await);
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: "k".into(),
                    ..Default::default()
                },
            )),
        })
        .await
        .expect("queue the create");
        let mut stream = client
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("watch")
            .into_inner();
        stream
            .message()
            .await
            .expect("created")
            .expect("a response");
        // The client, its stream and its connection go away here.
    }
    scrape_until(&server.endpoint(), |m| {
        m.value("grpc_server_handled_total", &watch) == 1.0
    });
}

#[tokio::test]
async fn members_time_their_round_trips_to_each_peer() {
    let cluster = support::cluster::Cluster::start(3).await;
    // The leader sends the heartbeats that are timed.
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let url = cluster.member(leader).client_url();
    let peers: Vec<String> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| format!("{:x}", cluster.member(i).id()))
        .collect();
    let m = scrape_until(&url, |m| {
        peers.iter().all(|p| {
            !m.find("etcd_network_peer_round_trip_time_seconds", &[("To", p)])
                .is_empty()
        })
    });
    assert_eq!(
        m.types.get("etcd_network_peer_round_trip_time_seconds"),
        Some(&Kind::Histogram)
    );
    for peer in &peers {
        let timed = m.observations("etcd_network_peer_round_trip_time_seconds", &[("To", peer)]);
        assert!(timed > 0.0, "no round trip to {peer}");
    }
}

/// --experimental-warning-apply-duration: applies slower than it are logged
/// with etcd's words and counted; at etcd's default (100 ms) a lone put on an
/// idle member is neither. etcd takes zero (and below) too: every apply is
/// then slow.
#[tokio::test]
async fn applies_slower_than_the_warning_duration_are_logged_and_counted() {
    const WARNING: &str = "apply request took too long";
    let strict = Server::start_with(&["--experimental-warning-apply-duration", "0s"]);
    let mut kv = strict.kv().await;
    kv.put(put_req("k", "v")).await.expect("put");
    let m = scrape_until(&strict.endpoint(), |m| {
        m.value("etcd_server_slow_apply_total", &[]) >= 1.0
    });
    assert!(m.value("etcd_server_slow_apply_total", &[]) >= 1.0);
    let deadline = Instant::now() + Duration::from_secs(5);
    // Puts reach the log in batches of key writes.
    while !strict.logs().contains(r#""request":"batch of key writes""#) {
        assert!(
            Instant::now() < deadline,
            "no warning for the put:\n{}",
            strict.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(strict.logs().contains(WARNING), "{}", strict.logs());

    let default = Server::start();
    let mut kv = default.kv().await;
    kv.put(put_req("k", "v")).await.expect("put");
    let m = Metrics::scrape(&default.endpoint());
    assert_eq!(m.value("etcd_server_slow_apply_total", &[]), 0.0);
    assert!(!default.logs().contains(WARNING), "{}", default.logs());
}
