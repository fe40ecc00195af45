//! `watch` and `watch-latency`: event delivery.
//!
//! Every value put carries the time its put was issued (its scheduled time
//! in open loop) and a sequence number ([`stamped_value`]); a watcher reading
//! the event records `now - that time` as `watch-event` latency: from put
//! issued to event received, through the server's write path and its watch
//! fan-out.
//!
//! - `watch`: `--streams` Watch calls with `--watchers-per-stream` watches
//!   each, all on one prefix, opened before the run (in this process, or
//!   with `--watch-processes N` in N watcher processes: [`super::watch_procs`]);
//!   the `--clients` put
//!   random keys under the prefix. After the last put the tool waits for the
//!   events still on their way (up to `--drain-timeout` without progress),
//!   then counts every event a watcher should have had (successful puts ×
//!   watchers) and did not get as a `Missing` error. Throughput is puts/s;
//!   the `watch-event` row gives events delivered per second (the elapsed
//!   time includes the drain). Open loop (`--rate`), the summary also says
//!   whether delivery kept up with the put rate ([`delivery::judge`]: no
//!   event missing, a short drain, latency not growing over the run).
//! - `watch-latency` (etcd benchmark's): one writer puts one key at `--rate`
//!   (default 100/s), one put at a time, and waits until every watcher has
//!   the event; the op `delivered-to-all` is timed from the put's issue to
//!   the last watcher's receipt.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::kv_client::KvClient;
use oxetcd_proto::etcdserverpb::PutRequest;
use oxetcd_proto::mvccpb::event::EventType;
use oxetcd_proto::mvccpb::Event;
use tokio::sync::Notify;

use super::watch_procs::{self, WatchProcesses};
use super::Env;
use crate::loadgen::auth::Conn;
use crate::loadgen::cli::{Common, WatchArgs, WatchLatencyArgs};
use crate::loadgen::cpu::{ClientCpu, CpuTimes};
use crate::loadgen::delivery::{self, DeliveryLog};
use crate::loadgen::error::{BenchError, OpError};
use crate::loadgen::keys::{
    indexed_key, prefix_end, read_stamped, since_stamp, stamped_value, Rng,
};
use crate::loadgen::requests::call;
use crate::loadgen::runner::Client;
use crate::loadgen::stats::{Role, Stats, Summary};
use crate::loadgen::watchers::{self, WatchSpec, WatchStream};

/// What values are padded with after their stamp.
const FILL: &[u8] = b"oxetcd-bench watch ";

/// The stamp and sequence number of a put event, if it carries them.
fn put_stamp(event: &Event) -> Option<(u64, u64)> {
    if event.r#type != EventType::Put as i32 {
        return None;
    }
    read_stamped(&event.kv.as_ref()?.value)
}

fn check_watch_shape(streams: usize, per_stream: usize, val_size: usize) -> Result<(), BenchError> {
    if streams == 0 || per_stream == 0 {
        return Err(BenchError::Usage(
            "--streams and --watchers-per-stream must be at least 1".into(),
        ));
    }
    if val_size < 16 {
        return Err(BenchError::Usage(
            "--val-size must be at least 16 (the timestamp and sequence number)".into(),
        ));
    }
    Ok(())
}

/// Opens `streams` streams of `per_stream` watches of `spec`; `on_event(w,
/// event)` gets the watcher's number over all streams.
pub(super) async fn open_streams<F>(
    env: &Env,
    spec: &WatchSpec,
    streams: usize,
    per_stream: usize,
    on_event: F,
) -> Result<Vec<WatchStream>, BenchError>
where
    F: Fn(usize, &Event) + Clone + Send + 'static,
{
    let mut opened = Vec::with_capacity(streams);
    for s in 0..streams {
        let on_event = on_event.clone();
        let stream = watchers::open(
            env.pool.watch(s),
            spec,
            per_stream,
            env.timeout,
            env.stats.clone(),
            move |w, event| on_event(s * per_stream + w, event),
        )
        .await
        .map_err(|error| BenchError::Setup {
            what: "opening watches".into(),
            error,
        })?;
        opened.push(stream);
    }
    Ok(opened)
}

struct Writer {
    kv: KvClient<Conn>,
    stats: Arc<Stats>,
    timeout: Duration,
    rng: Rng,
    prefix: String,
    key_space: u64,
    val_size: usize,
    seq: u64,
}

impl Client for Writer {
    async fn op(&mut self, start: Instant) -> bool {
        self.seq += 1;
        let put = PutRequest {
            key: indexed_key(&self.prefix, self.rng.below(self.key_space)),
            value: stamped_value(start, self.seq, self.val_size, FILL),
            ..Default::default()
        };
        let result = call(self.timeout, self.kv.put(put)).await.map(|_| ());
        self.stats.outcome("put", start, result)
    }
}

/// What a watcher does with an event: a put's delivery latency into `log`,
/// and one more in `delivered`.
pub(super) fn on_delivery(
    log: Arc<DeliveryLog>,
    delivered: Arc<AtomicU64>,
) -> impl Fn(usize, &Event) + Clone + Send + 'static {
    move |_watcher: usize, event: &Event| {
        if let Some((stamp, _)) = put_stamp(event) {
            log.record(stamp, since_stamp(stamp));
            delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Waits until `delivered` reaches `expected`, or nothing came for
/// `timeout`; how long from the call to the last event counted (or to
/// having them all).
pub(super) async fn wait_for_events(
    delivered: &AtomicU64,
    expected: u64,
    timeout: Duration,
) -> Duration {
    let start = Instant::now();
    let mut last_count = delivered.load(Ordering::Relaxed);
    let mut last_change = start;
    let done_at = loop {
        let count = delivered.load(Ordering::Relaxed);
        if count >= expected {
            break Instant::now();
        }
        if count != last_count {
            last_count = count;
            last_change = Instant::now();
        } else if last_change.elapsed() >= timeout {
            break last_change;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    done_at - start
}

/// Where a run's watchers are.
enum Watchers {
    /// In this process.
    Here(Vec<WatchStream>),
    /// In watcher processes (`--watch-processes`).
    Processes(WatchProcesses),
}

pub async fn run(env: &Env, common: &Common, args: &WatchArgs) -> Result<Summary, BenchError> {
    check_watch_shape(args.streams, args.watchers_per_stream, args.val_size)?;
    if args.key_space_size == 0 {
        return Err(BenchError::Usage(
            "--key-space-size must be at least 1".into(),
        ));
    }
    let delivered = Arc::new(AtomicU64::new(0));
    let log = Arc::new(DeliveryLog::new()?);
    let spec = WatchSpec {
        key: Bytes::from(args.prefix.clone()),
        range_end: prefix_end(args.prefix.as_bytes()),
        start_revision: 0,
        prev_kv: false,
    };
    let watchers = if args.watch_processes == 0 {
        let on_event = on_delivery(log.clone(), delivered.clone());
        Watchers::Here(
            open_streams(env, &spec, args.streams, args.watchers_per_stream, on_event).await?,
        )
    } else {
        Watchers::Processes(WatchProcesses::start(common, args).await?)
    };
    let clients = (0..env.plan.clients)
        .map(|i| Writer {
            kv: env.pool.kv(i),
            stats: env.stats.clone(),
            timeout: env.timeout,
            rng: Rng::new(i as u64),
            prefix: args.prefix.clone(),
            key_space: args.key_space_size,
            val_size: args.val_size,
            seq: 0,
        })
        .collect();
    let outcome = env.run(clients).await?;

    // Drain: wait for the events of the last puts.
    let puts = env.stats.progress().ops;
    let watcher_count = (args.streams * args.watchers_per_stream) as u64;
    let expected = puts * watcher_count;
    let (got, missing, drain, processes) = match watchers {
        Watchers::Here(streams) => {
            let drain = wait_for_events(&delivered, expected, args.drain_timeout).await;
            drop(streams);
            let got = delivered.load(Ordering::Relaxed);
            (got, expected.saturating_sub(got), drain, None)
        }
        Watchers::Processes(processes) => {
            let count = processes.len();
            let reports = processes.finish(puts).await?;
            let merged = watch_procs::merge(&reports, &log, &env.stats);
            (
                merged.delivered,
                merged.missing,
                merged.drain,
                Some((count, merged.cpu)),
            )
        }
    };
    env.stats.record_errors(
        "watch-event",
        Role::Detail,
        &OpError::Missing("watch event"),
        missing,
    );
    env.stats.count("events-expected", expected);
    env.stats.count("events-delivered", got);
    env.stats.record_histogram("watch-event", &log.all());
    let elapsed = outcome.elapsed + drain;
    let mut summary = env.summary("watch", outcome, elapsed);
    if let (Some((count, cpu)), Some(own)) = (processes, env.cpu_used()) {
        let all = CpuTimes {
            user: own.user + cpu.user,
            system: own.system + cpu.system,
        };
        summary.client_cpu = Some(ClientCpu::new(all, 1 + count, elapsed, summary.ops));
    }
    if let Some(rate) = env.plan.rate {
        let (first_third, last_third) = log.thirds();
        summary.keeps_up = Some(delivery::judge(&delivery::RunFigures {
            missing,
            drain,
            first_third,
            last_third,
            puts_per_sec: summary.ops as f64 / outcome.elapsed.as_secs_f64().max(1e-9),
            rate,
        }));
    }
    let place = match processes {
        Some((count, _)) => format!(" in {count} watcher processes"),
        None => String::new(),
    };
    summary.notes.push(format!(
        "{watcher_count} watchers on {}{place}; elapsed includes {:.3} s waiting for the last events",
        args.prefix,
        drain.as_secs_f64()
    ));
    Ok(summary)
}

struct LatencyWriter {
    kv: KvClient<Conn>,
    stats: Arc<Stats>,
    timeout: Duration,
    key: Bytes,
    val_size: usize,
    seq: u64,
    /// The highest sequence number each watcher has seen.
    seen: Arc<Vec<AtomicU64>>,
    /// Woken whenever a watcher sees an event.
    seen_changed: Arc<Notify>,
    event_timeout: Duration,
}

impl LatencyWriter {
    async fn put_and_wait(&mut self, start: Instant) -> Result<(), OpError> {
        self.seq += 1;
        let seq = self.seq;
        let put = PutRequest {
            key: self.key.clone(),
            value: stamped_value(start, seq, self.val_size, FILL),
            ..Default::default()
        };
        let put_start = Instant::now();
        // A failed put fails the op: one error, under `delivered-to-all`.
        call(self.timeout, self.kv.put(put)).await?;
        self.stats.record("put", Role::Detail, put_start.elapsed());
        let deadline = tokio::time::Instant::from(Instant::now() + self.event_timeout);
        loop {
            let changed = self.seen_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let behind = self
                .seen
                .iter()
                .filter(|s| s.load(Ordering::Acquire) < seq)
                .count() as u64;
            if behind == 0 {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let missing = OpError::Missing("watch event");
                self.stats
                    .record_errors("watch-event", Role::Detail, &missing, behind);
                return Err(OpError::Missing("event at every watcher"));
            }
        }
    }
}

impl Client for LatencyWriter {
    async fn op(&mut self, start: Instant) -> bool {
        let result = self.put_and_wait(start).await;
        self.stats.outcome("delivered-to-all", start, result)
    }
}

/// Default rate of `watch-latency` puts (etcd benchmark's `--put-rate`).
pub const LATENCY_DEFAULT_RATE: f64 = 100.0;
/// Default number of `watch-latency` puts.
pub const LATENCY_DEFAULT_TOTAL: u64 = 1000;

pub async fn run_latency(env: &Env, args: &WatchLatencyArgs) -> Result<Summary, BenchError> {
    check_watch_shape(args.streams, args.watchers_per_stream, args.val_size)?;
    let watchers = args.streams * args.watchers_per_stream;
    let seen = Arc::new((0..watchers).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
    let seen_changed = Arc::new(Notify::new());
    let spec = WatchSpec {
        key: Bytes::from(args.watch_key.clone()),
        range_end: Bytes::new(),
        start_revision: 0,
        prev_kv: false,
    };
    let on_event = {
        let stats = env.stats.clone();
        let seen = seen.clone();
        let seen_changed = seen_changed.clone();
        move |watcher: usize, event: &Event| {
            if let Some((stamp, seq)) = put_stamp(event) {
                stats.record("watch-event", Role::Detail, since_stamp(stamp));
                if let Some(slot) = seen.get(watcher) {
                    slot.fetch_max(seq, Ordering::AcqRel);
                }
                seen_changed.notify_waiters();
            }
        }
    };
    let streams =
        open_streams(env, &spec, args.streams, args.watchers_per_stream, on_event).await?;
    let writer = LatencyWriter {
        kv: env.pool.kv(0),
        stats: env.stats.clone(),
        timeout: env.timeout,
        key: Bytes::from(args.watch_key.clone()),
        val_size: args.val_size,
        seq: 0,
        seen,
        seen_changed,
        event_timeout: args.event_timeout,
    };
    let outcome = env.run(vec![writer]).await?;
    for stream in streams {
        stream.stop();
    }
    let mut summary = env.summary("watch-latency", outcome, outcome.elapsed);
    summary.clients = 1;
    summary.notes.push(format!(
        "one writer (--clients is ignored), {watchers} watchers on {}",
        args.watch_key
    ));
    Ok(summary)
}
