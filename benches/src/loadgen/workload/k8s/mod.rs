//! `k8s`: a kubelet- and controller-like load on any Kubernetes apiserver
//! (oxetcd-apiserver, kube-apiserver), over HTTPS with a bearer token or a
//! client certificate, from flags or a kubeconfig ([`kubeconfig`]).
//!
//! 1. **Setup** (not measured): the namespace, `--nodes` Node objects and
//!    `--pods` pods of about `--pod-size` bytes ([`pod`]), pod `i` on node
//!    `i % nodes`, created `--setup-clients` at a time.
//! 2. **Watches**: `--watches` (default one per node) streams, watch `w` on
//!    node `w % nodes`'s pods by fieldSelector spec.nodeName ([`watch`]),
//!    from the resourceVersion the setup ended at, `--watches-per-conn` to
//!    an HTTP/2 connection; all must open before the run.
//! 3. **Run**: the runner's `--clients` (default 100, the most mutations in
//!    flight; [`mutate`]) create, relabel, patch the status of and delete
//!    pods by `--mix`, open loop at `--rate` (default 100/s), for
//!    `--duration` or `--total` (default 6000) mutations; meanwhile
//!    full lists every `--list-interval` ([`list`]).
//! 4. **Drain**: the tool waits for the events still on their way (up to
//!    `--drain-timeout` without progress), then counts every delivery due
//!    (each successful mutation, to each watch of its pod's node) that did
//!    not arrive as a `Missing` error of kind `watch-event`.
//!
//! Rows: `create`, `update`, `status`, `delete` (ops, from their
//! scheduled time); `watch-event` (from the mutation's send time to the
//! event at the watcher of its node); `list-paged`, `list-page`,
//! `list-unpaged`. Errors by kind and HTTP code. Counters:
//! `events-expected`, `events-delivered`, `events-of-failed-mutations`,
//! `events-unknown`, `watch-reopens`, `list-items`, `pods-dropped`.

pub mod api;
pub mod kubeconfig;
pub mod ledger;
pub mod list;
pub mod mutate;
pub mod pod;
pub mod watch;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::Method;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;

use self::api::{Conn, Connector};
use self::ledger::Ledger;
use self::pod::{node_json, node_name, pod_json, resource_version, PodState};
use crate::loadgen::cli::{Common, K8sArgs};
use crate::loadgen::cpu::{ClientCpu, CpuTimes};
use crate::loadgen::error::{BenchError, OpError};
use crate::loadgen::keys::Rng;
use crate::loadgen::runner;
use crate::loadgen::stats::{Role, RunSetup, Stats, Summary};

/// Default mutations of a run (one minute at the default rate).
pub const DEFAULT_TOTAL: u64 = 6000;
/// Default `--rate` of mutations.
pub const DEFAULT_RATE: f64 = 100.0;
/// Default `--clients`: mutations in flight at most. Open loop, so enough
/// that a request's latency times the rate fits (a second at 100/s); too
/// few and the mutations queue in the tool, which shows as their latency.
pub const DEFAULT_CLIENTS: usize = 100;
/// Attempts at each setup create: a real cluster refuses pods until its
/// controller-manager made the new namespace's default service account.
const SETUP_ATTEMPTS: u32 = 20;
const SETUP_RETRY_AFTER: Duration = Duration::from_millis(250);

fn setup_error(what: impl Into<String>) -> impl FnOnce(OpError) -> BenchError {
    let what = what.into();
    move |error| BenchError::Setup { what, error }
}

/// The watches node `node` has: watch `w` is node `w % nodes`'s.
fn watches_of(node: usize, nodes: usize, watches: usize) -> u64 {
    (watches / nodes + usize::from(node < watches % nodes)) as u64
}

fn check(common: &Common, args: &K8sArgs) -> Result<(), BenchError> {
    let usage = |what: &str| Err(BenchError::Usage(what.to_owned()));
    if common.target_leader || common.target_follower {
        return usage("--target-leader and --target-follower are etcd's; k8s has one apiserver");
    }
    if args.nodes == 0 {
        return usage("--nodes must be at least 1");
    }
    if common.conns == 0 || args.watches_per_conn == 0 || args.setup_clients == 0 {
        return usage("--conns, --watches-per-conn and --setup-clients must be at least 1");
    }
    if args.list_limit == 0 {
        return usage("--list-limit must be at least 1");
    }
    Ok(())
}

/// A name for this run's objects: its start time, in hex seconds.
fn run_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs:x}")
}

/// POST `body` to `path`; an object that exists already is fine (`Ok(None)`).
async fn create(conn: &Conn, path: &str, body: Bytes) -> Result<Option<String>, OpError> {
    let mut attempt = 1;
    loop {
        match conn
            .call(Method::POST, path, "application/json", body.clone())
            .await
        {
            Ok(object) => return Ok(resource_version(&object).map(str::to_owned)),
            Err(OpError::Http { status: 409, .. }) => return Ok(None),
            Err(e) if attempt >= SETUP_ATTEMPTS => return Err(e),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(SETUP_RETRY_AFTER).await;
            }
        }
    }
}

/// Runs `f(i)` for `i` in `0..n`, `parallel` at a time; the first error ends it.
async fn for_each<F, Fut, T>(n: usize, parallel: usize, f: F) -> Result<Vec<T>, BenchError>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, BenchError>> + Send + 'static,
    T: Send + 'static,
{
    let permits = Arc::new(Semaphore::new(parallel));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| BenchError::Usage(format!("setup: {e}")))?;
        let work = f(i);
        tasks.spawn(async move {
            let result = work.await;
            drop(permit);
            result.map(|value| (i, value))
        });
    }
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (i, value) = joined
            .map_err(|e| setup_error("a setup task")(OpError::Unexpected(e.to_string())))??;
        out[i] = Some(value);
    }
    Ok(out.into_iter().flatten().collect())
}

struct Setup {
    pods: Vec<PodState>,
    /// The resourceVersion the watches start from.
    rv: String,
    took: Duration,
}

async fn setup(conn: &Conn, args: &K8sArgs, run: &str, say: bool) -> Result<Setup, BenchError> {
    let started = Instant::now();
    let namespace = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": args.namespace},
    });
    create(
        conn,
        "/api/v1/namespaces",
        Bytes::from(namespace.to_string()),
    )
    .await
    .map_err(setup_error(format!(
        "creating namespace {}",
        args.namespace
    )))?;
    if say {
        eprintln!(
            "k8s: setting up {} nodes and {} pods in namespace {} (run {run})",
            args.nodes, args.pods, args.namespace
        );
    }
    for_each(args.nodes, args.setup_clients, |i| {
        let conn = conn.clone();
        let name = node_name(i);
        let body = node_json(&name, run);
        async move {
            create(&conn, "/api/v1/nodes", body)
                .await
                .map_err(setup_error(format!("creating node {name}")))
        }
    })
    .await?;
    let path = format!("/api/v1/namespaces/{}/pods", args.namespace);
    let pods = for_each(args.pods, args.setup_clients, |i| {
        let conn = conn.clone();
        let path = path.clone();
        let mut pod = PodState {
            name: format!("pod-{run}-{i:06}"),
            node: i % args.nodes,
            rv: String::new(),
            generation: 0,
            ready: false,
        };
        let body = pod_json(&args.namespace, run, &pod, 0, args.pod_size);
        async move {
            let what = format!("creating pod {}", pod.name);
            pod.rv = create(&conn, &path, body)
                .await
                .map_err(setup_error(what.clone()))?
                .ok_or_else(|| {
                    setup_error(what)(OpError::Unexpected("the pod exists already".into()))
                })?;
            Ok(pod)
        }
    })
    .await?;
    let list = conn
        .get(&format!("{path}?limit=1"))
        .await
        .map_err(setup_error("reading the resourceVersion after the setup"))?;
    let rv = resource_version(&list)
        .ok_or_else(|| {
            setup_error("reading the resourceVersion after the setup")(OpError::Unexpected(
                "a list without metadata.resourceVersion".into(),
            ))
        })?
        .to_owned();
    Ok(Setup {
        pods,
        rv,
        took: started.elapsed(),
    })
}

/// Opens every watch; they run until the returned set is dropped.
async fn open_watches(
    connector: &Connector,
    args: &K8sArgs,
    watches: usize,
    shared: (&Arc<Stats>, &Arc<Ledger>),
    rv: &str,
) -> Result<(JoinSet<()>, usize), BenchError> {
    let (stats, ledger) = shared;
    let conns: Vec<Conn> = (0..watches.div_ceil(args.watches_per_conn))
        .map(|_| connector.conn())
        .collect();
    let mut tasks = JoinSet::new();
    let mut opened = Vec::with_capacity(watches);
    for w in 0..watches {
        let (tx, rx) = oneshot::channel();
        let node = node_name(w % args.nodes);
        let watch = watch::NodeWatch {
            id: w as u32,
            node: node.clone(),
            conn: conns[w / args.watches_per_conn].clone(),
            stats: stats.clone(),
            ledger: ledger.clone(),
            rv: rv.to_owned(),
            namespace: args.namespace.clone(),
        };
        tasks.spawn(watch.run(tx));
        opened.push((node, rx));
    }
    for (node, rx) in opened {
        let what = format!("opening the watch of {node}");
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(setup_error(what)(e)),
            Err(_) => {
                return Err(setup_error(what)(OpError::Unexpected(
                    "the watch task ended".into(),
                )))
            }
        }
    }
    Ok((tasks, conns.len()))
}

/// Waits until every delivery due arrived, or `timeout` passed without one.
async fn drain(ledger: &Ledger, due: impl Fn(usize) -> u64, timeout: Duration) {
    let expected = ledger.tally(&due).expected;
    let mut last = ledger.firsts();
    let mut last_change = Instant::now();
    loop {
        let firsts = ledger.firsts();
        if firsts >= expected {
            let tally = ledger.tally(&due);
            if tally.delivered >= tally.expected {
                return;
            }
        }
        if firsts != last {
            last = firsts;
            last_change = Instant::now();
        } else if last_change.elapsed() >= timeout {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn run(common: &Common, args: &K8sArgs) -> Result<Summary, BenchError> {
    check(common, args)?;
    let (plan, reporting) =
        super::plan(common, DEFAULT_TOTAL, Some(DEFAULT_RATE), DEFAULT_CLIENTS)?;
    let target = kubeconfig::target(common, args)?;
    let connector = Connector::new(&target, common.request_timeout, common.dial_timeout)?;
    let conns: Vec<Conn> = (0..common.conns).map(|_| connector.conn()).collect();
    let run = run_id();
    let stats = Arc::new(Stats::new()?);
    let ledger = Arc::new(Ledger::default());

    let setup = setup(&conns[0], args, &run, reporting.progress).await?;
    let watches = args.watches.unwrap_or(args.nodes);
    let (mut watch_tasks, watch_conns) =
        open_watches(&connector, args, watches, (&stats, &ledger), &setup.rv).await?;
    let mut lister = JoinSet::new();
    if !args.list_interval.is_zero() {
        lister.spawn(
            list::Lister {
                conn: conns[conns.len() - 1].clone(),
                stats: stats.clone(),
                namespace: args.namespace.clone(),
                interval: args.list_interval,
                limit: args.list_limit,
            }
            .run(),
        );
    }

    let shared = Arc::new(mutate::Shared {
        stats: stats.clone(),
        ledger: ledger.clone(),
        pods: Arc::new(mutate::Pods::new(setup.pods)),
        mix: args.mix,
        namespace: args.namespace.clone(),
        run: run.clone(),
        nodes: args.nodes,
        pod_size: args.pod_size,
        seq: AtomicU64::new(1),
        created: AtomicU64::new(0),
    });
    let clients = (0..plan.clients)
        .map(|i| mutate::Mutator {
            conn: conns[i % conns.len()].clone(),
            shared: shared.clone(),
            rng: Rng::new(i as u64),
        })
        .collect();
    let cpu_at_start = CpuTimes::of_this_process();
    let outcome = runner::run(&plan, &stats, clients, &reporting).await?;
    lister.abort_all();

    let nodes = args.nodes;
    let due = |node: usize| watches_of(node, nodes, watches);
    let drain_start = Instant::now();
    drain(&ledger, due, args.drain_timeout).await;
    let drained = drain_start.elapsed();
    watch_tasks.abort_all();

    let tally = ledger.tally(due);
    let missing = tally.expected.saturating_sub(tally.delivered);
    stats.record_errors(
        "watch-event",
        Role::Detail,
        &OpError::Missing("watch event"),
        missing,
    );
    stats.count("events-expected", tally.expected);
    stats.count("events-delivered", tally.delivered);
    stats.count("events-of-failed-mutations", tally.of_failed);
    stats.count("pods-at-end", shared.pods.len() as u64);

    let run_setup = RunSetup {
        endpoints: vec![target.server.clone()],
        conns: conns.len(),
        clients: plan.clients,
        rate: plan.rate,
    };
    let elapsed = outcome.elapsed + drained;
    let mut summary = stats.summary("k8s", &run_setup, elapsed);
    let cpu = CpuTimes::of_this_process().since(cpu_at_start);
    summary.client_cpu = Some(ClientCpu::new(cpu, 1, elapsed, summary.ops));
    summary.notes.push(format!(
        "setup (not measured): {} nodes, {} pods of {} B in namespace {} (run {run}) in {:.1} s",
        args.nodes,
        args.pods,
        args.pod_size,
        args.namespace,
        setup.took.as_secs_f64()
    ));
    summary.notes.push(format!(
        "{watches} watches by spec.nodeName over {watch_conns} connections; \
         elapsed includes {:.3} s waiting for the last events",
        drained.as_secs_f64()
    ));
    if outcome.interrupted {
        summary
            .notes
            .push("interrupted (Ctrl-C): the figures cover the run until then".into());
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_are_spread_over_the_nodes() {
        // 10 watches on 4 nodes: nodes 0 and 1 have 3, nodes 2 and 3 have 2.
        let counts: Vec<u64> = (0..4).map(|n| watches_of(n, 4, 10)).collect();
        assert_eq!(counts, [3, 3, 2, 2]);
        assert_eq!((0..7).map(|n| watches_of(n, 7, 3)).sum::<u64>(), 3);
    }
}
