//! `oxetcd-bench k8s` against the real `oxetcd-apiserver` binary: over its
//! embedded oxetcd, and over Debian's etcd 3.4 (`/usr/bin/etcd`; skipped
//! when missing, except under CI=true where that fails). A short run of 10
//! nodes, 50 pods and 20 mutations/s must do every scheduled mutation with
//! no error, and every mutation's event must reach the watch of its pod's
//! node (the tool counts deliveries per watch and node).
//!
//! The apiserver binary is `$OXETCD_BENCH_APISERVER` if set, else the
//! workspace's `target/debug/oxetcd-apiserver`, built first with `cargo
//! build -p oxetcd-apiserver --bin oxetcd-apiserver` (a no-op when it is up
//! to date; cargo does not hold the target dir's lock while tests run).

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{target_dir, workspace_root};

mod support;

/// This file's ports, 127.0.0.1:25500-25999: each test's apiserver has a
/// hundred of its own (tests run in parallel), etcd two hundred from 25700.
const ETCD_PORTS: u16 = 25700;

fn apiserver_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("OXETCD_BENCH_APISERVER").filter(|p| !p.is_empty()) {
            return PathBuf::from(path);
        }
        let cargo = option_env!("CARGO").unwrap_or("cargo");
        let status = Command::new(cargo)
            .current_dir(workspace_root())
            .args([
                "build",
                "-p",
                "oxetcd-apiserver",
                "--bin",
                "oxetcd-apiserver",
            ])
            .status()
            .expect("run cargo build");
        assert!(
            status.success(),
            "cargo build --bin oxetcd-apiserver failed"
        );
        let built = target_dir().join("debug").join("oxetcd-apiserver");
        eprintln!("testing against {}", built.display());
        built
    })
}

/// A port free now among the hundred from `from`.
fn free_port(from: u16) -> u16 {
    (from..from + 100)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port")
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Debian's etcd on a temporary data dir.
struct Etcd {
    _child: Killed,
    _dir: tempfile::TempDir,
    url: String,
}

/// etcd if it is installed; None (the test skips) if not, unless CI=true.
fn etcd() -> Option<Etcd> {
    let present = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "etcd is missing (apt-get install etcd-server)"
        );
        eprintln!("etcd is not installed: skipped");
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let client = free_port(ETCD_PORTS);
    let peer = free_port(ETCD_PORTS + 100);
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new("etcd")
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg(format!("--listen-client-urls={url}"))
        .arg(format!("--advertise-client-urls={url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=default={peer_url}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    let child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", client)).is_err() {
        assert!(Instant::now() < deadline, "etcd did not listen on {client}");
        thread::sleep(Duration::from_millis(50));
    }
    Some(Etcd {
        _child: child,
        _dir: dir,
        url,
    })
}

/// oxetcd-apiserver on a temporary data dir, and its admin kubeconfig.
struct Apiserver {
    _child: Killed,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Apiserver {
    fn start(ports: u16, extra: &[String]) -> Apiserver {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = format!("--data-dir={}", dir.path().join("data").display());
        let port = format!("--secure-port={}", free_port(ports));
        let log = std::fs::File::create(dir.path().join("apiserver.log")).expect("log file");
        let child = Command::new(apiserver_binary())
            .args([&data_dir, &port])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start oxetcd-apiserver");
        let child = Killed(child);
        let out = Command::new(apiserver_binary())
            .args(["kubeconfig", &data_dir, &port])
            .output()
            .expect("oxetcd-apiserver kubeconfig");
        assert!(out.status.success(), "{out:?}");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, &out.stdout).expect("write kubeconfig");
        let server = Apiserver {
            _child: child,
            dir,
            kubeconfig,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !server.log().contains("serving the Kubernetes API on") {
            assert!(Instant::now() < deadline, "not ready:\n{}", server.log());
            thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default()
    }
}

/// Runs `oxetcd-bench ARGS`, killed after two minutes.
fn bench(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxetcd-bench"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start oxetcd-bench");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll oxetcd-bench") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("oxetcd-bench {args:?} still running after 120 s");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

fn count(summary: &Value, kind: &str) -> u64 {
    summary["kinds"]
        .as_array()
        .and_then(|kinds| kinds.iter().find(|k| k["kind"] == kind))
        .and_then(|k| k["count"].as_u64())
        .unwrap_or(0)
}

fn counter(summary: &Value, name: &str) -> u64 {
    summary["counters"][name].as_u64().unwrap_or(0)
}

/// The small run against `server`: every mutation done, every event at
/// the right watch, no error.
fn small_run_is_complete(server: &Apiserver) {
    let csv_dir = tempfile::tempdir().expect("temp dir");
    let csv = csv_dir.path().join("series.csv");
    let args = [
        "k8s",
        "--kubeconfig",
        server.kubeconfig.to_str().expect("utf-8 path"),
        "--nodes",
        "10",
        "--pods",
        "50",
        "--rate",
        "20",
        "--duration",
        "5s",
        "--list-interval",
        "1s",
        "--list-limit",
        "7",
        "--json",
        "--no-progress",
        "--csv",
        csv.to_str().expect("utf-8 path"),
    ];
    let output = bench(&args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON summary ({e}), exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}\napiserver:\n{}",
            output.status,
            server.log()
        )
    });
    assert_eq!(
        summary["errors"], 0,
        "errors: {}\n{stderr}",
        summary["error_counts"]
    );
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    // 20/s for 5 s: mutations due at 0, 50, ..., 4950 ms.
    assert_eq!(summary["ops"], 100, "{summary}");
    for kind in ["create", "update", "status", "delete"] {
        assert!(count(&summary, kind) > 0, "no {kind}: {summary}");
    }
    // One watch per node: every mutation is due once, at its node's watch.
    assert_eq!(counter(&summary, "events-expected"), 100, "{summary}");
    assert_eq!(counter(&summary, "events-delivered"), 100, "{summary}");
    assert_eq!(count(&summary, "watch-event"), 100, "{summary}");
    assert_eq!(counter(&summary, "events-unknown"), 0, "{summary}");
    // Lists of about 50 pods in pages of 7.
    let paged = count(&summary, "list-paged");
    assert!(paged >= 2, "a list a second for 5 s: {summary}");
    assert!(count(&summary, "list-page") >= 7 * paged, "{summary}");
    assert!(count(&summary, "list-unpaged") >= 2, "{summary}");
    let series = std::fs::read_to_string(&csv).expect("csv written");
    assert!(series.lines().count() >= 5, "a row a second:\n{series}");
}

#[test]
fn k8s_load_on_the_embedded_store_delivers_every_event_to_its_node() {
    let server = Apiserver::start(25500, &[]);
    small_run_is_complete(&server);
}

#[test]
fn k8s_load_on_etcd_3_4_delivers_every_event_to_its_node() {
    let Some(etcd) = etcd() else { return };
    let server = Apiserver::start(25600, &[format!("--etcd-servers={}", etcd.url)]);
    small_run_is_complete(&server);
}

/// Two watches per node: each mutation is due twice, once at each.
#[test]
fn more_watches_than_nodes_each_get_their_node_events() {
    let server = Apiserver::start(25900, &[]);
    let kubeconfig = server.kubeconfig.to_str().expect("utf-8 path");
    let output = bench(&[
        "k8s",
        "--kubeconfig",
        kubeconfig,
        "--nodes",
        "4",
        "--watches",
        "8",
        "--watches-per-conn",
        "3",
        "--pods",
        "20",
        "--rate",
        "20",
        "--total",
        "40",
        "--list-interval",
        "0",
        "--json",
        "--no-progress",
    ]);
    let summary: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(summary["errors"], 0, "{}", summary["error_counts"]);
    assert_eq!(summary["ops"], 40);
    assert_eq!(counter(&summary, "events-expected"), 80, "{summary}");
    assert_eq!(counter(&summary, "events-delivered"), 80, "{summary}");
    assert_eq!(
        count(&summary, "list-paged"),
        0,
        "--list-interval 0: no lists"
    );
    assert!(
        summary["notes"]
            .to_string()
            .contains("8 watches by spec.nodeName over 3 connections"),
        "{summary}"
    );
}
