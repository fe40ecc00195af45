//! The watch cache against the real binary, with raw HTTPS watches (one
//! TLS connection each, read as a client-go watch reads them) and kube-rs
//! for writes and lists:
//! - one watch stops reading while 1,000 others go on: their delivery
//!   latency does not move, the stalled one is closed with 410 and, after
//!   relisting, has every object;
//! - reads from the cache see the client's acknowledged writes (consistent
//!   lists, NotOlderThan, resourceVersion "0" eventually) under concurrent
//!   writes;
//! - GETs with resourceVersion "0" or N are served by the cache (N once it
//!   has caught up), unset by the store;
//! - a watch from before the window gets 410 "too old resource version",
//!   and the window serves watches the store has compacted away;
//! - the cache rebuilds (list + watch) when its own store watch is lost and
//!   compacted away: its watches are closed with 410, new ones work.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use hyper::Method;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use oxetcd_apiserver::error::ApiError;
use oxetcd_apiserver::rest::{namespaces, Api as RestApi, Query, Reply, Request};
use oxetcd_apiserver::route::{self, Route};
use oxetcd_apiserver::store::embedded::Embedded;
use oxetcd_apiserver::store::{
    Claim, EventStream, Kv, Page, ProgressWatch, Store, StoreError, Written,
};
use serde_json::{json, Value};
use support::apiserver::Apiserver;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

mod support;

async fn client(server: &Apiserver) -> Client {
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

async fn namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

fn configmap(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": value}})).unwrap()
}

/// Creates `name` in `ns`; its resourceVersion.
async fn create(client: &Client, ns: &str, name: &str, value: &str) -> i64 {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &configmap(name, value))
        .await
        .unwrap();
    cm.metadata.resource_version.unwrap().parse().unwrap()
}

/// Raw HTTPS to the server: its CA and admin token from the kubeconfig.
#[derive(Clone)]
struct Raw {
    port: u16,
    token: String,
    tls: TlsConnector,
}

impl Raw {
    fn new(server: &Apiserver) -> Raw {
        let kubeconfig = std::fs::read_to_string(&server.kubeconfig).unwrap();
        let field = |name: &str| {
            kubeconfig
                .lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .unwrap()
                .trim()
                .trim_matches('"')
                .to_string()
        };
        let ca = base64::engine::general_purpose::STANDARD
            .decode(field("certificate-authority-data:"))
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types_pem(&ca) {
            roots.add(cert).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Raw {
            port: server.port,
            token: field("token:"),
            tls: TlsConnector::from(Arc::new(config)),
        }
    }

    /// Opens a watch of `path` (query included): the stream after the
    /// response headers. `recv_buffer`: a small socket receive buffer, so
    /// that a client that stops reading is soon felt by the server.
    async fn watch(&self, path: &str, recv_buffer: Option<u32>) -> Watch {
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let tcp = socket
            .connect(([127, 0, 0, 1], self.port).into())
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = self.tls.connect(name, tcp).await.unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\r\n",
            self.token
        );
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut r = BufReader::new(tls);
        let mut status = String::new();
        r.read_line(&mut status).await.unwrap();
        assert!(status.contains(" 200 "), "{path}: {status}");
        loop {
            let mut h = String::new();
            r.read_line(&mut h).await.unwrap();
            if h == "\r\n" {
                break;
            }
        }
        Watch {
            r,
            pending: Vec::new(),
        }
    }
}

/// The PEM certificates in `pem`.
fn rustls_pki_types_pem(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|c| c.unwrap())
        .collect()
}

/// How long `Watch::next` waits for a line before failing the test.
const WATCH_SILENCE_LIMIT: Duration = Duration::from_secs(60);

/// A watch's body: chunked, each chunk one or more JSON lines.
struct Watch {
    r: BufReader<TlsStream<tokio::net::TcpStream>>,
    pending: Vec<u8>,
}

impl Watch {
    /// The next event; None at the end of the stream. A stream that stays
    /// silent for `WATCH_SILENCE_LIMIT` fails the test rather than hanging it
    /// (a missing 410 or event would otherwise wait forever).
    async fn next(&mut self) -> Option<Value> {
        tokio::time::timeout(WATCH_SILENCE_LIMIT, self.next_unbounded())
            .await
            .unwrap_or_else(|_| panic!("no event and no end within {WATCH_SILENCE_LIMIT:?}"))
    }

    async fn next_unbounded(&mut self) -> Option<Value> {
        loop {
            if let Some(nl) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=nl).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            let mut size = String::new();
            if self.r.read_line(&mut size).await.unwrap_or(0) == 0 {
                return None;
            }
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                return None;
            }
            let mut chunk = vec![0; n + 2];
            self.r.read_exact(&mut chunk).await.ok()?;
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

/// Writes `names` in `ns` one after another; when each write started.
async fn timed_writes(client: &Client, ns: &str, names: &[String]) -> HashMap<String, Instant> {
    let mut started = HashMap::new();
    for n in names {
        started.insert(n.clone(), Instant::now());
        create(client, ns, n, "x").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started
}

/// Waits until every watch has seen every one of `names`; the delivery
/// latencies (seen - write started).
async fn latencies(
    seen: &Arc<Mutex<HashMap<String, Vec<Instant>>>>,
    started: &HashMap<String, Instant>,
    watches: usize,
) -> Vec<Duration> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = {
            let seen = seen.lock().unwrap();
            started
                .keys()
                .all(|n| seen.get(n).is_some_and(|v| v.len() == watches))
        };
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every watch saw every write within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = seen.lock().unwrap();
    started
        .iter()
        .flat_map(|(n, t0)| seen[n].iter().map(move |t| t.duration_since(*t0)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_watch_is_closed_and_slows_no_other() {
    const WATCHES: usize = 1000;
    const BULK: usize = 3000;
    let server = Apiserver::start(25000, &[]);
    let client = client(&server).await;
    namespace(&client, "fast").await;
    namespace(&client, "bulk").await;
    let raw = Raw::new(&server);
    let all = Api::<ConfigMap>::all(client.clone());
    let rv = all
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();

    // 1,000 watches of namespace fast, each recording when it saw what.
    let seen: Arc<Mutex<HashMap<String, Vec<Instant>>>> = Arc::default();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(WATCHES);
    for _ in 0..WATCHES {
        let (raw, seen, ready) = (raw.clone(), seen.clone(), ready_tx.clone());
        let path = format!("/api/v1/namespaces/fast/configmaps?watch=1&resourceVersion={rv}");
        tokio::spawn(async move {
            let mut w = raw.watch(&path, None).await;
            ready.send(()).await.unwrap();
            while let Some(e) = w.next().await {
                let at = Instant::now();
                if let Some(name) = e["object"]["metadata"]["name"].as_str() {
                    seen.lock()
                        .unwrap()
                        .entry(name.to_string())
                        .or_default()
                        .push(at);
                }
            }
        });
    }
    for _ in 0..WATCHES {
        ready_rx.recv().await.unwrap();
    }
    // And one of every configmap, with a small receive buffer, that will
    // stop reading.
    let mut stalled = raw
        .watch(
            &format!("/api/v1/configmaps?watch=1&resourceVersion={rv}"),
            Some(4096),
        )
        .await;

    let names = |prefix: &str| (0..30).map(|i| format!("{prefix}-{i}")).collect::<Vec<_>>();
    let before = names("before");
    let started = timed_writes(&client, "fast", &before).await;
    let p99_before = p99(latencies(&seen, &started, WATCHES).await);

    // The stalled watch is sent 3,000 events of 8 KiB it does not read:
    // more than its socket buffers and its queue hold.
    let big = "x".repeat(8 * 1024);
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, big) = (client.clone(), big.clone());
        writers.push(tokio::spawn(async move {
            for i in (w..BULK).step_by(8) {
                create(&client, "bulk", &format!("bulk-{i}"), &big).await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }

    let after = names("after");
    let started = timed_writes(&client, "fast", &after).await;
    let p99_after = p99(latencies(&seen, &started, WATCHES).await);
    println!(
        "delivery p99 to {WATCHES} watches: before the stall {p99_before:?}, after {p99_after:?}"
    );
    assert!(
        p99_after <= p99_before * 4 + Duration::from_millis(500),
        "delivery p99 moved: before the stall {p99_before:?}, after {p99_after:?}"
    );

    // The stalled watch, read again: what its socket held, then one ERROR
    // 410 Expired, then the end, well before the 3,000 events.
    let mut events = 0;
    let error = loop {
        let e = tokio::time::timeout(Duration::from_secs(30), stalled.next())
            .await
            .expect("the stalled watch ends")
            .expect("an ERROR event before the end");
        if e["type"] == "ERROR" {
            break e;
        }
        events += 1;
    };
    assert!(events < BULK, "the stalled watch was sent {events} events");
    assert_eq!(error["object"]["code"], 410, "{error}");
    assert_eq!(error["object"]["reason"], "Expired", "{error}");
    assert!(
        stalled.next().await.is_none(),
        "the stream ends after the ERROR"
    );

    // Its relist (what client-go does on 410) has every object.
    let listed: BTreeSet<String> = all
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    let written = before
        .iter()
        .chain(&after)
        .cloned()
        .chain((0..BULK).map(|i| format!("bulk-{i}")));
    for name in written {
        assert!(listed.contains(&name), "{name} missing from the relist");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_the_cache_see_the_clients_writes() {
    let server = Apiserver::start(25100, &[]);
    let client = client(&server).await;
    namespace(&client, "ryw").await;
    namespace(&client, "noise").await;
    // Writes elsewhere all along, so that the cache always has events
    // coming.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut noise = Vec::new();
    for w in 0..3 {
        let (client, stop) = (client.clone(), stop.clone());
        noise.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                create(&client, "noise", &format!("n{w}-{i}"), "x").await;
                i += 1;
            }
        }));
    }
    let cms = Api::<ConfigMap>::namespaced(client.clone(), "ryw");
    let names = |list: &kube::api::ObjectList<ConfigMap>| -> BTreeSet<String> {
        list.items
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect()
    };
    let rv_of = |list: &kube::api::ObjectList<ConfigMap>| -> i64 {
        list.metadata
            .resource_version
            .as_deref()
            .unwrap()
            .parse()
            .unwrap()
    };
    let mut slowest = Duration::ZERO;
    for i in 0..100 {
        let name = format!("c{i}");
        let rv = create(&client, "ryw", &name, "1").await;
        // Consistent (resourceVersion unset): served once the cache has
        // caught up with the store.
        let t0 = Instant::now();
        let list = cms.list(&ListParams::default()).await.unwrap();
        slowest = slowest.max(t0.elapsed());
        assert!(
            names(&list).contains(&name),
            "consistent list {i} without {name}"
        );
        assert!(
            rv_of(&list) >= rv,
            "consistent list {i} at {} < {rv}",
            rv_of(&list)
        );
        // NotOlderThan the write.
        let list = cms
            .list(
                &ListParams::default()
                    .at(&rv.to_string())
                    .matching(kube::api::VersionMatch::NotOlderThan),
            )
            .await
            .unwrap();
        assert!(
            names(&list).contains(&name),
            "NotOlderThan list {i} without {name}"
        );
    }
    // The cache caught up each time, well before the store fallback (3 s).
    assert!(
        slowest < Duration::from_secs(2),
        "a consistent list took {slowest:?}"
    );
    // resourceVersion "0": any state the cache has, which soon has it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = cms
            .list(
                &ListParams::default()
                    .at("0")
                    .matching(kube::api::VersionMatch::NotOlderThan),
            )
            .await
            .unwrap();
        if names(&list).contains("c99") {
            break;
        }
        assert!(Instant::now() < deadline, "resourceVersion=0 never had c99");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for n in noise {
        n.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_before_the_window_get_410_and_the_window_outlives_compaction() {
    // Windows of 1 to 1,024 events; the store compacted every second.
    let server = Apiserver::start(
        25200,
        &[
            "--default-watch-cache-size=1".to_string(),
            "--etcd-compaction-interval=1s".to_string(),
        ],
    );
    let client = client(&server).await;
    let raw = Raw::new(&server);
    let cms = "/api/v1/namespaces/default/configmaps";

    // Before the cache's start (it listed after the default namespaces).
    let mut w = raw
        .watch(&format!("{cms}?watch=1&resourceVersion=1"), None)
        .await;
    let e = w.next().await.unwrap();
    assert_eq!(e["type"], "ERROR", "{e}");
    assert_eq!(e["object"]["code"], 410);
    let msg = e["object"]["message"].as_str().unwrap();
    assert!(msg.starts_with("too old resource version: 1 ("), "{msg}");
    assert!(w.next().await.is_none());

    // A write the store compacts away is still in the window: a watch from
    // before it gets it.
    let first = create(&client, "default", "first", "1").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let list = Api::<ConfigMap>::namespaced(client.clone(), "default");
    for tick in 0.. {
        // Writes elsewhere move the store on for the compactor.
        create(&client, "kube-system", &format!("tick-{tick}"), "x").await;
        let exact = ListParams::default()
            .limit(1)
            .at(&first.to_string())
            .matching(kube::api::VersionMatch::Exact);
        if list.list(&exact).await.is_err() {
            break; // 410 from the store: compacted past `first`.
        }
        assert!(Instant::now() < deadline, "the store was not compacted");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut w = raw
        .watch(
            &format!("{cms}?watch=1&resourceVersion={}", first - 1),
            None,
        )
        .await;
    let e = w.next().await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("first")),
        "{e}"
    );

    // 1,100 more events: `first` leaves the window, its watch gets 410.
    let mut writers = Vec::new();
    for k in 0..4 {
        let client = client.clone();
        writers.push(tokio::spawn(async move {
            for i in (k..1100).step_by(4) {
                create(&client, "default", &format!("more-{i}"), "x").await;
            }
        }));
    }
    for wr in writers {
        wr.await.unwrap();
    }
    let mut w = raw
        .watch(&format!("{cms}?watch=1&resourceVersion={first}"), None)
        .await;
    let e = w.next().await.unwrap();
    assert_eq!(e["type"], "ERROR", "{e}");
    assert_eq!(e["object"]["code"], 410);
    let msg = e["object"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!("too old resource version: {first} (")),
        "{msg}"
    );

    // A new watch from a fresh list works.
    let rv = list
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut w = raw
        .watch(&format!("{cms}?watch=1&resourceVersion={rv}"), None)
        .await;
    create(&client, "default", "last", "1").await;
    let e = w.next().await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("last")),
        "{e}"
    );
}

/// A store whose watches the test can cut, and whose watches then wait
/// to be reopened until the test lets them; `delay` holds back every item
/// of a watch (a slow store watch, so that the cache lags the store).
struct Cuttable {
    inner: Arc<Embedded>,
    cut: tokio::sync::watch::Sender<u64>,
    open: tokio::sync::watch::Sender<bool>,
    delay: Duration,
}

#[async_trait::async_trait]
impl Store for Cuttable {
    async fn get(&self, key: &[u8]) -> Result<(Option<Kv>, i64), StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, s: &[u8], e: &[u8], l: i64, r: i64) -> Result<Page, StoreError> {
        self.inner.list(s, e, l, r).await
    }
    async fn create(&self, k: &[u8], v: Bytes, lease: i64) -> Result<Written, StoreError> {
        self.inner.create(k, v, lease).await
    }
    async fn update(&self, k: &[u8], v: Bytes, x: i64, l: i64) -> Result<Written, StoreError> {
        self.inner.update(k, v, x, l).await
    }
    async fn grant_lease(&self, ttl: i64) -> Result<i64, StoreError> {
        self.inner.grant_lease(ttl).await
    }
    async fn delete(&self, k: &[u8], x: i64) -> Result<Written, StoreError> {
        self.inner.delete(k, x).await
    }
    async fn watch(&self, s: &[u8], e: &[u8], from: i64) -> Result<EventStream, StoreError> {
        self.inner.watch(s, e, from).await
    }
    async fn watch_progress(
        &self,
        s: &[u8],
        e: &[u8],
        from: i64,
    ) -> Result<ProgressWatch, StoreError> {
        let mut open = self.open.subscribe();
        open.wait_for(|o| *o).await.unwrap();
        let w = self.inner.watch_progress(s, e, from).await?;
        let mut cut = self.cut.subscribe();
        cut.borrow_and_update();
        let until_cut = async move {
            let _ = cut.changed().await;
        };
        let lost = futures_util::stream::once(async {
            Err(StoreError::Unavailable("cut by the test".into()))
        });
        // Each item is held `delay` from when the store sent it (latency,
        // not a queue: later items are not held behind earlier ones' waits).
        let delay = self.delay;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut inner = w.items;
        tokio::spawn(async move {
            while let Some(item) = inner.next().await {
                if tx
                    .send((tokio::time::Instant::now() + delay, item))
                    .is_err()
                {
                    return;
                }
            }
        });
        let items = futures_util::stream::unfold(rx, |mut rx| async move {
            let (due, item) = rx.recv().await?;
            tokio::time::sleep_until(due).await;
            Some((item, rx))
        });
        Ok(ProgressWatch {
            items: Box::pin(items.take_until(until_cut).chain(lost)),
            request_progress: w.request_progress,
        })
    }
    async fn progress_is_ordered(&self) -> bool {
        true
    }
    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        self.inner.compact(revision).await
    }
    async fn claim_compaction(&self, k: &[u8], v: i64, r: i64) -> Result<Claim, StoreError> {
        self.inner.claim_compaction(k, v, r).await
    }
}

async fn call(api: &RestApi, method: Method, uri: &str, body: Value) -> Reply {
    try_call(api, method, uri, body).await.unwrap()
}

async fn try_call(
    api: &RestApi,
    method: Method,
    uri: &str,
    body: Value,
) -> Result<Reply, ApiError> {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let Route::Resource(path) = route::parse(path) else {
        panic!("{uri}")
    };
    api.handle(Request {
        method,
        path,
        query: Query::parse(Some(query)),
        content_type: Some("application/json".into()),
        user_agent: None,
        body: if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(body.to_string())
        },
        warnings: Default::default(),
    })
    .await
}

/// The answer of a call that is not a watch: a value, or a list streamed
/// from the cache, read to its end.
async fn json_of(api: &RestApi, method: Method, uri: &str, body: Value) -> Value {
    match call(api, method, uri, body).await {
        Reply::Json { body, .. } => body,
        Reply::Stream(mut rx) => {
            let mut all = Vec::new();
            while let Some(chunk) = rx.recv().await {
                all.extend_from_slice(&chunk);
            }
            serde_json::from_slice(&all).unwrap_or_else(|e| panic!("{uri}: {e}"))
        }
    }
}

async fn next_line(rx: &mut tokio::sync::mpsc::Receiver<Bytes>) -> Option<Value> {
    let line = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a watch line within 20 s")?;
    Some(serde_json::from_slice(&line).unwrap())
}

#[tokio::test]
async fn a_cache_whose_watch_is_compacted_away_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Arc::new(Embedded::start(dir.path()).await.unwrap());
    let store = Arc::new(Cuttable {
        inner: embedded.clone(),
        cut: tokio::sync::watch::channel(0).0,
        open: tokio::sync::watch::channel(true).0,
        delay: Duration::ZERO,
    });
    let api = RestApi::new(store.clone(), "/registry")
        .with_watch_cache(oxetcd_apiserver::cache::Config { window_min: 100 });
    namespaces::bootstrap(&api).await.unwrap();
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm = |name: &str| json!({"metadata": {"name": name}});
    json_of(&api, Method::POST, cms, cm("a")).await;
    let list = json_of(&api, Method::GET, cms, Value::Null).await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let Reply::Stream(mut old) = call(
        &api,
        Method::GET,
        &format!("{cms}?watch=1&resourceVersion={rv}"),
        Value::Null,
    )
    .await
    else {
        panic!("a watch")
    };

    // The cache's store watch is lost; while it is down, writes, and a
    // compaction past them.
    store.open.send_replace(false);
    store.cut.send_modify(|n| *n += 1);
    json_of(&api, Method::POST, cms, cm("b")).await;
    let c = json_of(&api, Method::POST, cms, cm("c")).await;
    let c_rv: i64 = c["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    embedded.compact(c_rv).await.unwrap();
    store.open.send_replace(true);

    // Reopened where it stopped, the watch is compacted: the cache lists
    // again and closes its watches with 410, which relist.
    let e = next_line(&mut old).await.unwrap();
    assert_eq!(e["type"], "ERROR", "{e}");
    assert_eq!(e["object"]["code"], 410, "{e}");
    assert!(next_line(&mut old).await.is_none(), "then the watch ends");
    let list = json_of(&api, Method::GET, cms, Value::Null).await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap();
    let Reply::Stream(mut new) = call(
        &api,
        Method::GET,
        &format!("{cms}?watch=1&resourceVersion={rv}"),
        Value::Null,
    )
    .await
    else {
        panic!("a watch")
    };
    json_of(&api, Method::POST, cms, cm("d")).await;
    let e = next_line(&mut new).await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("d")),
        "{e}"
    );
    embedded.stop().await;
}

/// An apiserver with a watch cache over an embedded store whose events
/// reach the cache `delay` late.
async fn lagging_api(delay: Duration) -> (tempfile::TempDir, Arc<Embedded>, RestApi) {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Arc::new(Embedded::start(dir.path()).await.unwrap());
    let store = Arc::new(Cuttable {
        inner: embedded.clone(),
        cut: tokio::sync::watch::channel(0).0,
        open: tokio::sync::watch::channel(true).0,
        delay,
    });
    let api = RestApi::new(store, "/registry")
        .with_watch_cache(oxetcd_apiserver::cache::Config { window_min: 100 });
    namespaces::bootstrap(&api).await.unwrap();
    (dir, embedded, api)
}

#[tokio::test]
async fn consistent_lists_wait_for_a_lagging_cache() {
    // Every event and progress notification reaches the cache 300 ms late.
    let (_dir, embedded, api) = lagging_api(Duration::from_millis(300)).await;
    let cms = "/api/v1/namespaces/default/configmaps";
    for i in 0..5 {
        let cm = json_of(
            &api,
            Method::POST,
            cms,
            json!({"metadata": {"name": format!("c{i}")}}),
        )
        .await;
        let rv: i64 = cm["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let t0 = std::time::Instant::now();
        let list = json_of(&api, Method::GET, cms, Value::Null).await;
        let took = t0.elapsed();
        let names: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&format!("c{i}").as_str()),
            "list after c{i}: {names:?}"
        );
        let list_rv: i64 = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(list_rv >= rv, "list at {list_rv} < the write's {rv}");
        // Served by the cache once caught up, not by the store after the
        // 3 s it waits at most.
        assert!(took < Duration::from_secs(2), "the list took {took:?}");
    }
    embedded.stop().await;
}

/// GET with resourceVersion "0" is served by the cache (possibly behind the
/// store, as kube-apiserver's), with resourceVersion N by the cache once it
/// has N, unset by the store; N beyond the store's revision is a 504.
#[tokio::test]
async fn gets_with_a_resource_version_are_served_by_the_cache() {
    // Every event reaches the cache 500 ms late.
    let (_dir, embedded, api) = lagging_api(Duration::from_millis(500)).await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm = |v: &str| json!({"metadata": {"name": "g"}, "data": {"v": v}});
    json_of(&api, Method::POST, cms, cm("1")).await;
    let uri = format!("{cms}/g");
    // Wait until the cache has the object.
    let deadline = Instant::now() + Duration::from_secs(10);
    while json_of(
        &api,
        Method::GET,
        &format!("{uri}?resourceVersion=0"),
        Value::Null,
    )
    .await["data"]["v"]
        != "1"
    {
        assert!(Instant::now() < deadline, "the cache never saw the object");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let updated = json_of(&api, Method::PUT, &uri, cm("2")).await;
    let rv = updated["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    // Right after the write: the cache (500 ms behind) still has the old state.
    let any = json_of(
        &api,
        Method::GET,
        &format!("{uri}?resourceVersion=0"),
        Value::Null,
    )
    .await;
    assert_eq!(
        any["data"]["v"], "1",
        "resourceVersion=0 from the cache: {any}"
    );
    // Not older than the write: the cache, once it has it.
    let t0 = Instant::now();
    let fresh = json_of(
        &api,
        Method::GET,
        &format!("{uri}?resourceVersion={rv}"),
        Value::Null,
    )
    .await;
    assert_eq!(fresh["data"]["v"], "2", "{fresh}");
    assert_eq!(fresh["metadata"]["resourceVersion"], rv.as_str());
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "waited {:?}",
        t0.elapsed()
    );
    // Unset: the store.
    json_of(
        &api,
        Method::PUT,
        &uri,
        json!({"metadata": {"name": "g", "resourceVersion": rv}, "data": {"v": "3"}}),
    )
    .await;
    let latest = json_of(&api, Method::GET, &uri, Value::Null).await;
    assert_eq!(latest["data"]["v"], "3", "{latest}");
    // Missing objects and bad versions.
    let error = |uri: String| {
        let api = &api;
        async move {
            match try_call(api, Method::GET, &uri, Value::Null).await {
                Err(e) => e,
                Ok(_) => panic!("{uri}: an answer"),
            }
        }
    };
    let missing = error(format!("{cms}/none?resourceVersion=0")).await;
    assert!(matches!(missing, ApiError::NotFound { .. }), "{missing:?}");
    let bad = error(format!("{uri}?resourceVersion=x")).await;
    assert!(matches!(bad, ApiError::BadRequest(_)), "{bad:?}");
    let future = error(format!("{uri}?resourceVersion=99999999")).await;
    assert!(
        matches!(&future, ApiError::Timeout(m) if m.contains("Too large resource version")),
        "{future:?}"
    );
    embedded.stop().await;
}

/// Updates and deletes start from the cache's copy of the object (no read
/// of the store), as kube-apiserver's: a stale copy loses the Txn's compare
/// and the write is recomputed from the store's state; what a stale copy
/// alone would decide (a no-op, a failed precondition) is asked of the
/// store again. Nothing written is lost.
#[tokio::test]
async fn writes_from_a_stale_cache_copy_lose_nothing() {
    // Every event reaches the cache 500 ms late.
    let (_dir, embedded, api) = lagging_api(Duration::from_millis(500)).await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let uri = format!("{cms}/s");
    let cm = |v: &str| json!({"metadata": {"name": "s"}, "data": {"v": v}});
    let rv = |obj: &Value| {
        obj["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    json_of(&api, Method::POST, cms, cm("1")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let cached = format!("{uri}?resourceVersion=0");
    while json_of(&api, Method::GET, &cached, Value::Null).await["data"]["v"] != "1" {
        assert!(Instant::now() < deadline, "the cache never saw the object");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each write below starts from the cache's v=1, now stale.
    let two = json_of(&api, Method::PUT, &uri, cm("2")).await;
    let three = json_of(&api, Method::PUT, &uri, cm("3")).await;
    assert_eq!(three["data"]["v"], "3", "{three}");
    assert!(rv(&three).parse::<i64>().unwrap() > rv(&two).parse::<i64>().unwrap());
    // A no-op against the stale copy, not against the store.
    let one = json_of(&api, Method::PUT, &uri, cm("1")).await;
    assert_eq!(one["data"]["v"], "1", "{one}");
    let stored = json_of(&api, Method::GET, &uri, Value::Null).await;
    assert_eq!(
        stored["data"]["v"], "1",
        "the store after the writes: {stored}"
    );
    assert_eq!(rv(&stored), rv(&one));
    assert_eq!(
        json_of(&api, Method::GET, &cached, Value::Null).await["data"]["v"],
        "1",
        "the cache's copy still predates the writes"
    );
    // A precondition the stale copy fails and the store's state meets.
    let deleted = json_of(
        &api,
        Method::DELETE,
        &uri,
        json!({"preconditions": {"resourceVersion": rv(&one)}}),
    )
    .await;
    assert_eq!(deleted["status"], "Success", "{deleted}");
    match try_call(&api, Method::GET, &uri, Value::Null).await {
        Err(ApiError::NotFound { .. }) => {}
        other => panic!("after the delete: {:?}", other.map(|_| "an answer")),
    }
    embedded.stop().await;
}

/// A paged list is served from the cache's snapshot: every page at the
/// first page's revision whatever is written meanwhile, with continue
/// tokens and remainingItemCount as the store's pages, and its continue
/// pages still answered after the store compacted that revision away (the
/// store would answer 410).
#[tokio::test]
async fn paged_lists_read_one_snapshot_of_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Arc::new(Embedded::start(dir.path()).await.unwrap());
    let api = RestApi::new(embedded.clone(), "/registry")
        .with_watch_cache(oxetcd_apiserver::cache::Config { window_min: 100 });
    namespaces::bootstrap(&api).await.unwrap();
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm = |name: &str| json!({"metadata": {"name": name}});
    for i in 0..7 {
        json_of(&api, Method::POST, cms, cm(&format!("c{i}"))).await;
    }
    let first = json_of(&api, Method::GET, &format!("{cms}?limit=3"), Value::Null).await;
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&first), ["c0", "c1", "c2"], "{first}");
    assert_eq!(first["metadata"]["remainingItemCount"], 4, "{first}");
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    // Changes after the first page, then the revision compacted away.
    json_of(&api, Method::DELETE, &format!("{cms}/c4"), Value::Null).await;
    let last = json_of(&api, Method::POST, cms, cm("c9")).await;
    let now: i64 = last["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    embedded.compact(now).await.unwrap();
    let mut all = names(&first);
    let mut token = first["metadata"]["continue"].as_str().unwrap().to_owned();
    loop {
        let page = json_of(
            &api,
            Method::GET,
            &format!("{cms}?limit=3&continue={token}"),
            Value::Null,
        )
        .await;
        assert_eq!(page["metadata"]["resourceVersion"], rv.as_str(), "{page}");
        all.extend(names(&page));
        match page["metadata"]["continue"].as_str() {
            Some(t) if !t.is_empty() => {
                assert_eq!(page["metadata"]["remainingItemCount"], 1, "{page}");
                token = t.to_owned();
            }
            _ => break,
        }
    }
    assert_eq!(all, ["c0", "c1", "c2", "c3", "c4", "c5", "c6"]);
    // A new paged list sees the changes.
    let fresh = json_of(&api, Method::GET, &format!("{cms}?limit=10"), Value::Null).await;
    assert_eq!(
        names(&fresh),
        ["c0", "c1", "c2", "c3", "c5", "c6", "c9"],
        "{fresh}"
    );
    assert!(fresh["metadata"].get("continue").is_none(), "{fresh}");
    embedded.stop().await;
}
