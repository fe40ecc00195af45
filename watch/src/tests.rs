//! Hub tests over a real store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use oxetcd_proto::mvccpb::event::EventType;
use oxetcd_storage::{KeyRange, SledBackend, Store};

use crate::{
    Delivery, DeliveryKind, WatchConfig, WatchHub, WatchSpec, WatchStream, INVALID_WATCH_ID,
};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    hub: Arc<WatchHub>,
    index: u64,
}

impl Fixture {
    fn new(config: WatchConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            Store::open(Box::new(SledBackend::open(dir.path(), 8 << 20).unwrap())).unwrap(),
        );
        let hub = WatchHub::start(store.clone(), config);
        Self {
            _dir: dir,
            store,
            hub,
            index: 0,
        }
    }

    /// Applies one txn of puts (key, value) and deletes (key), commits, notifies.
    fn write(&mut self, puts: &[(&str, &str)], deletes: &[&str]) -> i64 {
        self.index += 1;
        let mut txn = self.store.write();
        for (k, v) in puts {
            txn.put(Bytes::from(k.to_string()), Bytes::from(v.to_string()), 0);
        }
        for k in deletes {
            txn.delete_range(KeyRange::new(k.as_bytes(), b""));
        }
        txn.end().unwrap();
        let committed = self.store.commit().unwrap();
        self.hub.notify(&committed.events);
        committed.rev
    }
}

fn spec(key: &str, end: &str, start: i64) -> WatchSpec {
    WatchSpec {
        key: Bytes::from(key.to_string()),
        range_end: Bytes::from(end.to_string()),
        start_revision: start,
        ..Default::default()
    }
}

async fn next(stream: &mut WatchStream) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a delivery in time")
        .expect("stream open")
}

/// (revision, key, is_put) of each event.
fn events(d: &Delivery) -> Vec<(i64, String, bool)> {
    match &d.kind {
        DeliveryKind::Events(evs) => evs
            .iter()
            .map(|e| {
                let kv = e.kv.as_ref().unwrap();
                (
                    kv.mod_revision,
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    e.r#type == EventType::Put as i32,
                )
            })
            .collect(),
        other => panic!("expected events, got {other:?}"),
    }
}

#[tokio::test]
async fn live_events_arrive_in_order_one_delivery_per_revision() {
    let mut f = Fixture::new(WatchConfig::default());
    let mut s = f.hub.open_stream();
    s.control().create(spec("a", "b", 0));
    let created = next(&mut s).await;
    assert_eq!(
        (created.watch_id, created.kind.clone()),
        (0, DeliveryKind::Created)
    );
    let r1 = f.write(&[("a1", "x"), ("a2", "y"), ("zz", "no")], &[]);
    let r2 = f.write(&[], &["a1"]);
    assert_eq!(
        events(&next(&mut s).await),
        vec![(r1, "a1".into(), true), (r1, "a2".into(), true)]
    );
    assert_eq!(events(&next(&mut s).await), vec![(r2, "a1".into(), false)]);
}

#[tokio::test]
async fn a_watch_from_the_past_replays_history_then_goes_live_without_gap() {
    let mut f = Fixture::new(WatchConfig {
        catch_up_batch: 2,
        ..WatchConfig::default()
    });
    let revs: Vec<i64> = (0..5)
        .map(|i| f.write(&[("k", &i.to_string())], &[]))
        .collect();
    let mut s = f.hub.open_stream();
    s.control().create(spec("k", "", revs[1]));
    assert_eq!(next(&mut s).await.kind, DeliveryKind::Created);
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.extend(events(&next(&mut s).await).into_iter().map(|e| e.0));
    }
    let live = f.write(&[("k", "live")], &[]);
    seen.extend(events(&next(&mut s).await).into_iter().map(|e| e.0));
    assert_eq!(seen, vec![revs[1], revs[2], revs[3], revs[4], live]);
}

#[tokio::test]
async fn a_compacted_start_revision_cancels_the_watch_with_the_compact_revision() {
    let mut f = Fixture::new(WatchConfig::default());
    let first = f.write(&[("k", "1")], &[]);
    let second = f.write(&[("k", "2")], &[]);
    f.store.compact(second).unwrap();
    let mut s = f.hub.open_stream();
    s.control().create(spec("k", "", first));
    assert_eq!(next(&mut s).await.kind, DeliveryKind::Created);
    assert_eq!(next(&mut s).await.kind, DeliveryKind::Compacted(second));
    // A watch at the compaction revision sees what happened at it.
    s.control().create(spec("k", "", second));
    assert_eq!(next(&mut s).await.kind, DeliveryKind::Created);
    assert_eq!(
        events(&next(&mut s).await),
        vec![(second, "k".into(), true)]
    );
}

#[tokio::test]
async fn the_delete_at_the_compaction_revision_reaches_a_watch_from_there() {
    let mut f = Fixture::new(WatchConfig::default());
    f.write(&[("k", "1")], &[]);
    let del = f.write(&[], &["k"]);
    f.store.compact(del).unwrap();
    let mut s = f.hub.open_stream();
    s.control().create(spec("k", "", del));
    assert_eq!(next(&mut s).await.kind, DeliveryKind::Created);
    assert_eq!(events(&next(&mut s).await), vec![(del, "k".into(), false)]);
}

#[tokio::test]
async fn duplicate_watch_ids_are_refused_and_cancel_frees_the_id() {
    let f = Fixture::new(WatchConfig::default());
    let mut s = f.hub.open_stream();
    let mut with_id = spec("k", "", 0);
    with_id.watch_id = 7;
    s.control().create(with_id.clone());
    assert_eq!(next(&mut s).await.watch_id, 7);
    s.control().create(with_id.clone());
    let refused = next(&mut s).await;
    assert_eq!(refused.watch_id, INVALID_WATCH_ID);
    assert!(matches!(refused.kind, DeliveryKind::Refused(_)));
    s.control().cancel(7);
    assert_eq!(next(&mut s).await.kind, DeliveryKind::Canceled);
    s.control().create(with_id);
    assert_eq!(next(&mut s).await.kind, DeliveryKind::Created);
}

#[tokio::test]
async fn a_future_start_revision_gets_no_older_events() {
    let mut f = Fixture::new(WatchConfig::default());
    let now = f.store.current_revision();
    let mut s = f.hub.open_stream();
    s.control().create(spec("k", "", now + 3));
    assert_eq!(next(&mut s).await.kind, DeliveryKind::Created);
    f.write(&[("k", "1")], &[]);
    f.write(&[("k", "2")], &[]);
    let third = f.write(&[("k", "3")], &[]);
    assert_eq!(events(&next(&mut s).await), vec![(third, "k".into(), true)]);
}

#[tokio::test]
async fn a_stalled_stream_does_not_block_writes_or_others_and_gets_every_event_later() {
    let mut f = Fixture::new(WatchConfig {
        stream_queue: 4,
        catch_up_batch: 7,
        ..WatchConfig::default()
    });
    let mut stalled = f.hub.open_stream();
    let mut reader = f.hub.open_stream();
    stalled.control().create(spec("k", "", 0));
    reader.control().create(spec("k", "", 0));
    assert_eq!(next(&mut reader).await.kind, DeliveryKind::Created);
    let mut want = Vec::new();
    for i in 0..100 {
        want.push(f.write(&[("k", &i.to_string())], &[]));
        // The live reader keeps up while the other stream is not read at all.
        assert_eq!(events(&next(&mut reader).await)[0].0, *want.last().unwrap());
    }
    assert_eq!(next(&mut stalled).await.kind, DeliveryKind::Created);
    let mut got = Vec::new();
    while got.len() < want.len() {
        got.extend(events(&next(&mut stalled).await).into_iter().map(|e| e.0));
    }
    assert_eq!(got, want, "every event, once, in order");
}

#[tokio::test]
async fn progress_answers_with_the_notified_revision_after_the_events_before_it() {
    let mut f = Fixture::new(WatchConfig::default());
    let mut s = f.hub.open_stream();
    s.control().create(spec("k", "", 0));
    assert_eq!(next(&mut s).await.kind, DeliveryKind::Created);
    let rev = f.write(&[("k", "1")], &[]);
    s.control().request_progress();
    assert_eq!(events(&next(&mut s).await)[0].0, rev);
    let p = next(&mut s).await;
    assert_eq!(
        (p.watch_id, p.revision, p.kind),
        (INVALID_WATCH_ID, rev, DeliveryKind::Progress)
    );
}

#[tokio::test]
async fn progress_notify_reaches_idle_watchers_only() {
    let mut f = Fixture::new(WatchConfig {
        progress_notify_interval: Duration::from_millis(100),
        ..WatchConfig::default()
    });
    let mut s = f.hub.open_stream();
    let mut idle = spec("idle", "", 0);
    idle.progress_notify = true;
    s.control().create(idle);
    assert_eq!(next(&mut s).await.kind, DeliveryKind::Created);
    let rev = f.write(&[("other", "x")], &[]);
    let p = next(&mut s).await;
    assert_eq!(
        (p.watch_id, p.revision, p.kind),
        (0, rev, DeliveryKind::Progress)
    );
}

#[tokio::test]
async fn after_resync_watchers_catch_up_from_the_store_without_gap() {
    let mut f = Fixture::new(WatchConfig::default());
    let mut s = f.hub.open_stream();
    s.control().create(spec("k", "", 0));
    assert_eq!(next(&mut s).await.kind, DeliveryKind::Created);
    // Changes the hub is never told about, as when a snapshot replaces the store.
    f.index += 1;
    let mut txn = f.store.write();
    txn.put(Bytes::from("k"), Bytes::from("from snapshot"), 0);
    txn.end().unwrap();
    let silent = f.store.commit().unwrap().rev;
    f.hub.resync();
    assert_eq!(
        events(&next(&mut s).await),
        vec![(silent, "k".into(), true)]
    );
    let live = f.write(&[("k", "live")], &[]);
    assert_eq!(events(&next(&mut s).await), vec![(live, "k".into(), true)]);
}
