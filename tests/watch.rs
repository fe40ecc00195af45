//! The Watch API of the real `oxetcd` binary over gRPC: creation (key,
//! prefix, from-key, past start revision, filters, prev_kv, client-chosen and
//! duplicate IDs), cancel, compaction, many watches on one stream, progress
//! requests and progress_notify, fragments, a stalled reader next to a normal
//! one under a stream of writes, and resuming after kill -9.
//!
//! Every test starts its own server (see `support`); revisions are taken from
//! the responses of the test's own writes.

mod support;

use std::time::{Duration, Instant};

use oxetcd_proto::etcdserverpb::kv_client::KvClient;
use oxetcd_proto::etcdserverpb::request_op::Request as Op;
use oxetcd_proto::etcdserverpb::watch_client::WatchClient;
use oxetcd_proto::etcdserverpb::watch_create_request::FilterType;
use oxetcd_proto::etcdserverpb::watch_request::RequestUnion;
use oxetcd_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, RequestOp, TxnRequest, WatchCancelRequest,
    WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use oxetcd_proto::mvccpb::event::EventType;
use oxetcd_proto::mvccpb::Event;
use prost::Message;
use support::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::Streaming;

type Kv = KvClient<Channel>;

/// How long a test waits for a response it expects.
const WAIT: Duration = Duration::from_secs(10);

/// A channel of its own (its own HTTP/2 connection) with no request
/// deadline: watch streams live as long as the test needs them.
async fn own_channel(server: &Server, window: Option<u32>) -> Channel {
    Endpoint::from_shared(server.endpoint())
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .initial_stream_window_size(window)
        .initial_connection_window_size(window)
        .connect()
        .await
        .expect("connect")
}

/// One Watch call: the request side is an mpsc channel, the response side
/// the gRPC stream.
struct WatchStream {
    tx: mpsc::Sender<WatchRequest>,
    rx: Streaming<WatchResponse>,
}

impl WatchStream {
    async fn open(server: &Server) -> Self {
        Self::open_on(own_channel(server, None).await).await
    }

    async fn open_on(channel: Channel) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let mut client = WatchClient::new(channel).max_decoding_message_size(64 << 20);
        let rx = client
            .watch(ReceiverStream::new(rx))
            .await
            .expect("open a watch stream")
            .into_inner();
        Self { tx, rx }
    }

    async fn send(&self, req: RequestUnion) {
        self.tx
            .send(WatchRequest {
                request_union: Some(req),
            })
            .await
            .expect("request stream open");
    }

    async fn create(&self, req: WatchCreateRequest) {
        self.send(RequestUnion::CreateRequest(req)).await;
    }

    async fn cancel(&self, watch_id: i64) {
        self.send(RequestUnion::CancelRequest(WatchCancelRequest { watch_id }))
            .await;
    }

    async fn request_progress(&self) {
        self.send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
            .await;
    }

    /// The next response, failing the test after `WAIT`.
    async fn next(&mut self) -> WatchResponse {
        self.next_within(WAIT)
            .await
            .unwrap_or_else(|| panic!("no watch response within {WAIT:?}"))
    }

    /// The next response if one comes within `d`.
    async fn next_within(&mut self, d: Duration) -> Option<WatchResponse> {
        match tokio::time::timeout(d, self.rx.message()).await {
            Err(_) => None,
            Ok(Ok(Some(r))) => Some(r),
            Ok(Ok(None)) => panic!("watch stream ended"),
            Ok(Err(e)) => panic!("watch stream failed: {e}"),
        }
    }

    /// Creates a watch and returns its ID from the `created` response.
    async fn watch(&mut self, req: WatchCreateRequest) -> i64 {
        self.create(req).await;
        let r = self.next().await;
        assert!(
            r.created && !r.canceled && r.events.is_empty(),
            "expected a created response, got {r:?}"
        );
        r.watch_id
    }

    /// Reads until `n` events arrived; returns (watch_id, event) in order.
    /// Fails on any response that is not events.
    async fn events(&mut self, n: usize) -> Vec<(i64, Event)> {
        let mut out = Vec::new();
        while out.len() < n {
            let r = self.next().await;
            assert!(
                !r.created && !r.canceled && r.compact_revision == 0 && !r.events.is_empty(),
                "expected events, got {r:?} (after {} of {n} events)",
                out.len()
            );
            out.extend(r.events.into_iter().map(|e| (r.watch_id, e)));
        }
        assert_eq!(out.len(), n, "more events than expected: {out:?}");
        out
    }

    /// Asserts nothing arrives for a while.
    async fn assert_quiet(&mut self, d: Duration) {
        if let Some(r) = self.next_within(d).await {
            panic!("expected no response, got {r:?}");
        }
    }
}

fn create(key: &str, end: &[u8], start_revision: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: b(key),
        range_end: bytes::Bytes::copy_from_slice(end),
        start_revision,
        ..Default::default()
    }
}

fn prefix(p: &str) -> Vec<u8> {
    prefix_end(p).to_vec()
}

/// (type, key, value, mod_revision) of an event.
fn ev(e: &Event) -> (&'static str, String, String, i64) {
    let kv = e.kv.as_ref().expect("event has a kv");
    let kind = if e.r#type == EventType::Put as i32 {
        "put"
    } else {
        "del"
    };
    (kind, key_str(kv), value_str(kv), kv.mod_revision)
}

fn evs(events: &[(i64, Event)]) -> Vec<(&'static str, String, String, i64)> {
    events.iter().map(|(_, e)| ev(e)).collect()
}

fn put_ev(key: &str, value: &str, rev: i64) -> (&'static str, String, String, i64) {
    ("put", key.into(), value.into(), rev)
}

fn del_ev(key: &str, rev: i64) -> (&'static str, String, String, i64) {
    ("del", key.into(), String::new(), rev)
}

async fn put_rev(kv: &mut Kv, key: &str, value: &str) -> i64 {
    rev(&put(kv, key, value).await.header)
}

async fn delete_rev(kv: &mut Kv, key: &str) -> i64 {
    let req = DeleteRangeRequest {
        key: b(key),
        ..Default::default()
    };
    rev(&delete(kv, req).await.header)
}

async fn txn_puts(kv: &mut Kv, puts: &[(String, String)]) -> i64 {
    let success = puts
        .iter()
        .map(|(k, v)| RequestOp {
            request: Some(Op::RequestPut(put_req(k, v))),
        })
        .collect();
    let resp = kv
        .txn(TxnRequest {
            compare: Vec::new(),
            success,
            failure: Vec::new(),
        })
        .await
        .expect("txn")
        .into_inner();
    assert!(resp.succeeded);
    rev(&resp.header)
}

// ---------------------------------------------------------------------------
// Creating watches.

#[tokio::test]
async fn key_prefix_and_from_key_watches_get_exactly_their_events() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let mut w = WatchStream::open(&server).await;
    let key = w.watch(create("a", b"", 0)).await;
    let pre = w.watch(create("a", &prefix("a"), 0)).await;
    let from = w.watch(create("b", b"\0", 0)).await;
    assert!(key != pre && pre != from && key != from, "distinct IDs");

    let r1 = put_rev(&mut kv, "a", "1").await;
    let r2 = put_rev(&mut kv, "ab", "2").await;
    let r3 = put_rev(&mut kv, "b", "3").await;
    let r4 = put_rev(&mut kv, "zz", "4").await;
    let r5 = delete_rev(&mut kv, "a").await;
    let got = w.events(7).await;
    let of = |id: i64| -> Vec<_> {
        got.iter()
            .filter(|(w, _)| *w == id)
            .map(|(_, e)| ev(e))
            .collect()
    };
    assert_eq!(of(key), [put_ev("a", "1", r1), del_ev("a", r5)]);
    assert_eq!(
        of(pre),
        [put_ev("a", "1", r1), put_ev("ab", "2", r2), del_ev("a", r5)]
    );
    assert_eq!(of(from), [put_ev("b", "3", r3), put_ev("zz", "4", r4)]);
    // Revisions arrive in order on the stream.
    let revs: Vec<i64> = got.iter().map(|(_, e)| ev(e).3).collect();
    assert!(revs.windows(2).all(|w| w[0] <= w[1]), "{revs:?}");
    w.assert_quiet(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_past_start_revision_replays_history_then_goes_live() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(put_rev(&mut kv, "k", &i.to_string()).await);
    }
    let mut w = WatchStream::open(&server).await;
    let id = w.watch(create("k", b"", revs[1])).await;
    let replay = w.events(4).await;
    assert!(replay.iter().all(|(w, _)| *w == id));
    assert_eq!(
        evs(&replay),
        (1..5)
            .map(|i| put_ev("k", &i.to_string(), revs[i]))
            .collect::<Vec<_>>()
    );
    let live = put_rev(&mut kv, "k", "live").await;
    assert_eq!(evs(&w.events(1).await), [put_ev("k", "live", live)]);
}

#[tokio::test]
async fn noput_and_nodelete_filters() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let mut w = WatchStream::open(&server).await;
    let noput = w
        .watch(WatchCreateRequest {
            filters: vec![FilterType::Noput as i32],
            ..create("k", b"", 0)
        })
        .await;
    let nodel = w
        .watch(WatchCreateRequest {
            filters: vec![FilterType::Nodelete as i32],
            ..create("k", b"", 0)
        })
        .await;
    let p = put_rev(&mut kv, "k", "v").await;
    let d = delete_rev(&mut kv, "k").await;
    let got = w.events(2).await;
    assert_eq!(got[0].0, nodel);
    assert_eq!(ev(&got[0].1), put_ev("k", "v", p));
    assert_eq!(got[1].0, noput);
    assert_eq!(ev(&got[1].1), del_ev("k", d));
    w.assert_quiet(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn prev_kv_on_puts_and_deletes() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let first = put_rev(&mut kv, "k", "old").await;
    let mut w = WatchStream::open(&server).await;
    let with = w
        .watch(WatchCreateRequest {
            prev_kv: true,
            ..create("k", b"", 0)
        })
        .await;
    let without = w.watch(create("k", b"", 0)).await;
    let p = put_rev(&mut kv, "k", "new").await;
    let d = delete_rev(&mut kv, "k").await;
    let got = w.events(4).await;
    for (id, e) in &got {
        let prev = e.prev_kv.as_ref();
        if *id == without {
            assert!(prev.is_none(), "no prev_kv asked for: {e:?}");
            continue;
        }
        assert_eq!(*id, with);
        let prev = prev.expect("prev_kv");
        match ev(e).3 {
            r if r == p => {
                assert_eq!(
                    (value_str(prev), prev.mod_revision, prev.version),
                    ("old".into(), first, 1)
                );
            }
            r if r == d => {
                assert_eq!(
                    (value_str(prev), prev.mod_revision, prev.version),
                    ("new".into(), p, 2)
                );
            }
            r => panic!("unexpected revision {r}"),
        }
    }
}

#[tokio::test]
async fn client_chosen_watch_ids_and_the_duplicate_refusal() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let mut w = WatchStream::open(&server).await;
    let id = w
        .watch(WatchCreateRequest {
            watch_id: 7,
            ..create("k", b"", 0)
        })
        .await;
    assert_eq!(id, 7);
    w.create(WatchCreateRequest {
        watch_id: 7,
        ..create("other", b"", 0)
    })
    .await;
    let refused = w.next().await;
    assert!(refused.created && refused.canceled, "{refused:?}");
    assert_eq!(refused.watch_id, -1);
    assert_eq!(
        refused.cancel_reason,
        "mvcc: duplicate watch ID provided on the WatchStream"
    );
    // The first watch 7 is untouched; an auto ID does not collide with it.
    let auto = w.watch(create("k", b"", 0)).await;
    assert_ne!(auto, 7);
    let r = put_rev(&mut kv, "k", "v").await;
    let got = w.events(2).await;
    let mut ids: Vec<i64> = got.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    let mut want = vec![7, auto];
    want.sort_unstable();
    assert_eq!(ids, want);
    assert!(got.iter().all(|(_, e)| ev(e) == put_ev("k", "v", r)));
}

#[tokio::test]
async fn cancel_answers_canceled_and_stops_the_events() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let mut w = WatchStream::open(&server).await;
    let gone = w.watch(create("k", b"", 0)).await;
    let stays = w.watch(create("k", b"", 0)).await;
    w.cancel(gone).await;
    let r = w.next().await;
    assert!(r.canceled && !r.created, "{r:?}");
    assert_eq!(r.watch_id, gone);
    let p = put_rev(&mut kv, "k", "v").await;
    let got = w.events(1).await;
    assert_eq!(got[0].0, stays);
    assert_eq!(ev(&got[0].1), put_ev("k", "v", p));
    w.assert_quiet(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_compacted_start_revision_cancels_with_the_compact_revision() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let r1 = put_rev(&mut kv, "k", "1").await;
    put_rev(&mut kv, "k", "2").await;
    let r3 = delete_rev(&mut kv, "k").await;
    kv.compact(CompactionRequest {
        revision: r3,
        physical: true,
    })
    .await
    .expect("compact");
    let mut w = WatchStream::open(&server).await;
    let id = w.watch(create("k", b"", r1)).await;
    let r = w.next().await;
    assert_eq!(r.watch_id, id);
    assert!(r.canceled, "{r:?}");
    assert_eq!(r.compact_revision, r3);
    assert!(r.events.is_empty());
    // At the compaction revision itself: the delete made there.
    w.watch(create("k", b"", r3)).await;
    assert_eq!(evs(&w.events(1).await), [del_ev("k", r3)]);
}

#[tokio::test]
async fn many_watches_on_one_stream() {
    const N: usize = 100;
    let server = Server::start();
    let mut kv = server.kv().await;
    let mut w = WatchStream::open(&server).await;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(w.watch(create(&format!("m/{i:03}"), b"", 0)).await);
    }
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), N, "distinct watch IDs");
    let mut want = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let key = format!("m/{i:03}");
        want.push((*id, put_ev(&key, "v", put_rev(&mut kv, &key, "v").await)));
    }
    let got: Vec<_> = w
        .events(N)
        .await
        .iter()
        .map(|(id, e)| (*id, ev(e)))
        .collect();
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------
// Progress.

#[tokio::test]
async fn a_progress_request_answers_with_the_latest_revision_after_the_events() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let mut w = WatchStream::open(&server).await;
    w.watch(create("k", b"", 0)).await;
    let mut last = 0;
    for i in 0..3 {
        last = put_rev(&mut kv, "k", &i.to_string()).await;
    }
    // A write the watch does not see moves the revision on too.
    let latest = put_rev(&mut kv, "other", "x").await;
    w.request_progress().await;
    let got = w.events(3).await;
    assert_eq!(ev(&got[2].1).3, last);
    let p = w.next().await;
    assert_eq!(p.watch_id, -1, "{p:?}");
    assert!(p.events.is_empty() && !p.created && !p.canceled);
    assert_eq!(rev(&p.header), latest);
}

#[tokio::test]
async fn progress_notify_reaches_an_idle_watch() {
    let server = Server::start_with(&["--experimental-watch-progress-notify-interval", "200ms"]);
    let mut kv = server.kv().await;
    let mut w = WatchStream::open(&server).await;
    let id = w
        .watch(WatchCreateRequest {
            progress_notify: true,
            ..create("idle", b"", 0)
        })
        .await;
    let latest = put_rev(&mut kv, "elsewhere", "x").await;
    let started = Instant::now();
    let mut notes = 0;
    while notes < 2 {
        let r = w.next().await;
        assert_eq!(r.watch_id, id, "{r:?}");
        assert!(r.events.is_empty() && !r.created && !r.canceled, "{r:?}");
        assert_eq!(rev(&r.header), latest);
        notes += 1;
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "two notifications at a 200ms interval took {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Fragments.

/// With --max-request-bytes 10240, a txn overwriting four keys with ~2 KiB
/// values (the request fits) makes a watch response with prev_kv of ~16 KiB.
#[tokio::test]
async fn fragment_splits_an_oversized_response_and_only_then() {
    let server = Server::start_with(&["--max-request-bytes", "10240"]);
    let mut kv = server.kv().await;
    let value = |c: char| c.to_string().repeat(2000);
    let puts = |c: char| -> Vec<(String, String)> {
        (0..4).map(|i| (format!("f/{i}"), value(c))).collect()
    };
    txn_puts(&mut kv, &puts('a')).await;
    let mut w = WatchStream::open(&server).await;
    let frag = w
        .watch(WatchCreateRequest {
            fragment: true,
            prev_kv: true,
            ..create("f/", &prefix("f/"), 0)
        })
        .await;
    let mut whole = WatchStream::open(&server).await;
    whole
        .watch(WatchCreateRequest {
            prev_kv: true,
            ..create("f/", &prefix("f/"), 0)
        })
        .await;
    let r = txn_puts(&mut kv, &puts('b')).await;
    let want: Vec<_> = (0..4)
        .map(|i| put_ev(&format!("f/{i}"), &value('b'), r))
        .collect();

    let mut parts = Vec::new();
    loop {
        let p = w.next().await;
        assert_eq!(p.watch_id, frag);
        assert!(!p.events.is_empty(), "{p:?}");
        let last = !p.fragment;
        parts.push(p);
        if last {
            break;
        }
    }
    assert!(parts.len() > 1, "expected several fragments, got one");
    for p in &parts {
        assert!(
            p.encoded_len() <= 10240 || p.events.len() == 1,
            "a fragment of {} bytes with {} events",
            p.encoded_len(),
            p.events.len()
        );
    }
    let got: Vec<_> = parts.iter().flat_map(|p| p.events.iter().map(ev)).collect();
    assert_eq!(got, want);
    assert!(parts.iter().flat_map(|p| &p.events).all(|e| e
        .prev_kv
        .as_ref()
        .is_some_and(|kv| value_str(kv) == value('a'))));

    let one = whole.next().await;
    assert!(!one.fragment);
    assert_eq!(one.events.iter().map(ev).collect::<Vec<_>>(), want);
    w.assert_quiet(Duration::from_millis(200)).await;
    whole.assert_quiet(Duration::from_millis(200)).await;
}

// ---------------------------------------------------------------------------
// A stalled reader.

const WRITERS: usize = 8;
const PUTS: usize = 2000;
/// 2000 events of 2 KiB are ~4 MiB: more than the client's HTTP/2 window, the
/// server's send buffers and the hub's stream queue (1024) hold together, so
/// the stalled stream's watcher is moved to catch-up.
const VALUE_BYTES: usize = 2048;

/// `PUTS` puts of distinct keys under `prefix` from `WRITERS` concurrent
/// clients; returns how long they took and every revision written.
async fn write_burst(server: &Server, prefix: &str) -> (Duration, Vec<i64>) {
    write_many(server, prefix, PUTS, VALUE_BYTES).await
}

/// `n` puts of `value_bytes` under `prefix`, from `WRITERS` concurrent clients.
async fn write_many(
    server: &Server,
    prefix: &str,
    n: usize,
    value_bytes: usize,
) -> (Duration, Vec<i64>) {
    let value = "v".repeat(value_bytes);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let mut kv = kv_client(own_channel(server, None).await);
        let (prefix, value) = (prefix.to_string(), value.clone());
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in (w..n).step_by(WRITERS) {
                revs.push(put_rev(&mut kv, &format!("{prefix}{i:05}"), &value).await);
            }
            revs
        }));
    }
    let mut revs = Vec::new();
    for t in tasks {
        revs.extend(t.await.expect("writer task"));
    }
    let took = started.elapsed();
    revs.sort_unstable();
    (took, revs)
}

/// The revisions of the next `n` events of `w` (no other response allowed).
async fn read_events(w: &mut WatchStream, n: usize) -> Vec<i64> {
    let got = w.events(n).await;
    got.iter().map(|(_, e)| ev(e).3).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_slows_neither_writes_nor_other_watchers_and_misses_nothing() {
    let server = Server::start();
    // The time of the same writes with no watcher at all.
    let (baseline, _) = write_burst(&server, "base/").await;

    // Small HTTP/2 windows: the stalled stream backs up into the server soon.
    let mut stalled = WatchStream::open_on(own_channel(&server, Some(65_535)).await).await;
    stalled.watch(create("s/", &prefix("s/"), 0)).await;
    let mut normal = WatchStream::open(&server).await;
    normal.watch(create("s/", &prefix("s/"), 0)).await;
    let reader = tokio::spawn(async move {
        let got = read_events(&mut normal, PUTS).await;
        (got, Instant::now())
    });
    let (took, revs) = write_burst(&server, "s/").await;
    let writes_done = Instant::now();
    let (normal_got, normal_last) = tokio::time::timeout(WAIT * 3, reader)
        .await
        .expect("the normal watcher got every event in time")
        .expect("reader task");
    assert_eq!(
        normal_got, revs,
        "the normal watcher: every event, in order"
    );
    let lag = normal_last.saturating_duration_since(writes_done);
    assert!(
        lag < Duration::from_secs(2),
        "the normal watcher got the last event {lag:?} after the last write"
    );
    assert!(
        took <= baseline * 3,
        "{PUTS} puts took {took:?} beside a stalled watcher, {baseline:?} without watchers"
    );

    // Now read the stalled stream: every event exactly once, in order.
    let mut stalled_got = Vec::new();
    let mut responses = 0;
    while stalled_got.len() < PUTS {
        let r = stalled.next().await;
        assert!(!r.events.is_empty(), "expected events, got {r:?}");
        responses += 1;
        stalled_got.extend(r.events.iter().map(|e| ev(e).3));
    }
    eprintln!(
        "puts: {took:?} beside the stalled watcher, {baseline:?} alone; the stalled stream \
         got {PUTS} events in {responses} responses (fewer: catch-up batches)"
    );
    assert_eq!(
        stalled_got, revs,
        "the stalled watcher: every event once, in order"
    );
    stalled.assert_quiet(Duration::from_millis(300)).await;
}

/// A stalled stream must not hold back other watchers either: here a new
/// watch from the past, on keys the stalled watcher does not even watch,
/// opened after the stalled watcher fell behind and more than a catch-up
/// batch (1000 events) of other writes followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_holds_back_no_new_watch_from_the_past() {
    const OTHER: usize = 1500;
    let server = Server::start();
    let mut stalled = WatchStream::open_on(own_channel(&server, Some(65_535)).await).await;
    stalled.watch(create("s/", &prefix("s/"), 0)).await;
    let (_, stalled_revs) = write_burst(&server, "s/").await;
    let (_, other_revs) = write_many(&server, "o/", OTHER, 16).await;

    let mut fresh = WatchStream::open(&server).await;
    fresh
        .watch(create("o/", &prefix("o/"), other_revs[0]))
        .await;
    let mut got = Vec::new();
    while got.len() < OTHER {
        match fresh.next_within(Duration::from_secs(5)).await {
            Some(r) => got.extend(r.events.iter().map(|e| ev(e).3)),
            None => panic!(
                "the new watch from the past got {} of {OTHER} events, then nothing for 5 s \
                 (last revision {:?}, wanted up to {})",
                got.len(),
                got.last(),
                other_revs.last().unwrap()
            ),
        }
    }
    assert_eq!(got, other_revs);

    let stalled_got = read_events(&mut stalled, PUTS).await;
    assert_eq!(stalled_got, stalled_revs);
}

// ---------------------------------------------------------------------------
// kill -9.

#[tokio::test]
async fn a_watch_resumed_after_kill_9_continues_exactly() {
    let mut server = Server::start();
    let mut kv = server.kv().await;
    let mut written = Vec::new();
    for i in 0..20 {
        let key = format!("r/{}", i % 3);
        let v = i.to_string();
        let r = if i % 7 == 6 {
            delete_rev(&mut kv, &key).await
        } else {
            put_rev(&mut kv, &key, &v).await
        };
        written.push(r);
    }
    let mut w = WatchStream::open(&server).await;
    w.watch(create("r/", &prefix("r/"), written[0])).await;
    let before = w.events(20).await;
    assert_eq!(
        before.iter().map(|(_, e)| ev(e).3).collect::<Vec<_>>(),
        written
    );
    // The client has processed half of them when the server dies.
    let last_seen = ev(&before[9].1).3;
    drop(w);
    drop(kv);
    server.kill_9();
    server.restart();

    let mut kv = server.kv().await;
    let mut w = WatchStream::open(&server).await;
    w.watch(create("r/", &prefix("r/"), last_seen + 1)).await;
    let mut after = Vec::new();
    for i in 0..5 {
        after.push(put_rev(&mut kv, &format!("r/new{i}"), "x").await);
    }
    assert!(
        after[0] > *written.last().unwrap(),
        "revision went back after restart"
    );
    let got = w.events(15).await;
    let replayed: Vec<_> = got.iter().map(|(_, e)| ev(e)).collect();
    let want: Vec<_> = before[10..]
        .iter()
        .map(|(_, e)| ev(e))
        .chain(
            after
                .iter()
                .enumerate()
                .map(|(i, r)| put_ev(&format!("r/new{i}"), "x", *r)),
        )
        .collect();
    assert_eq!(replayed, want, "exactly the events after the last seen one");
    w.assert_quiet(Duration::from_millis(200)).await;
}

/// Defragment (what the `compact` Jepsen nemesis runs under load) while
/// concurrent writers keep the state machine applying: the watcher still
/// gets every revision once, in order. A defragment that also published
/// the store's pending changes took the events of the batch being applied
/// away from the watchers (found by a 30-minute Jepsen `watch` run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defragmenting_under_writes_loses_no_event() {
    use oxetcd_proto::etcdserverpb::DefragmentRequest;
    let server = Server::start();
    let mut w = WatchStream::open(&server).await;
    w.watch(create("defrag/", &prefix("defrag/"), 0)).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut maintenance = server.maintenance().await;
    let defrags = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                maintenance
                    .defragment(DefragmentRequest {})
                    .await
                    .expect("defragment");
                n += 1;
            }
            n
        })
    };
    let (_, revs) = write_many(&server, "defrag/", 3000, 16).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let defragmented = defrags.await.expect("defragment task");
    assert!(defragmented > 10, "only {defragmented} defragments ran");
    let got = read_events(&mut w, revs.len()).await;
    assert_eq!(got, revs, "the watcher missed or reordered events");
}
