//! `oxetcd-bench` against the real `oxetcd` binary over the network: a short
//! run of every sub-command with zero errors, errors counted (not a crash)
//! when the server lacks a service or dies mid-run, TLS, auth (`--user`,
//! `auth-setup`, `authenticate`), and the exit statuses the tool documents
//! (0 all requests succeeded, 1 some failed, 2 could not run).
//!
//! The server binary is `$OXETCD_BENCH_SERVER` if set, else the workspace's
//! `target/debug/oxetcd` (`cargo test --workspace` builds it). If it is
//! missing, the test builds it with `cargo build -p oxetcd --bin oxetcd`
//! first. That nested cargo shares the target dir: cargo (checked with 1.95)
//! no longer holds the target dir's lock while tests run. `cargo test -p
//! oxetcd-benches` alone may find an older `target/debug/oxetcd`; the test
//! uses it as it is (it prints which binary it tests).

use std::fs::{self, File};
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

/// The line oxetcd (and etcd) print once they serve clients.
const READY_LINE: &str = "ready to serve client requests";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The oxetcd binary to test against (built once if missing).
fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("OXETCD_BENCH_SERVER").filter(|p| !p.is_empty()) {
            return PathBuf::from(path);
        }
        let built = target_dir().join("debug").join("oxetcd");
        if !built.exists() {
            let cargo = option_env!("CARGO").unwrap_or("cargo");
            eprintln!(
                "{} is missing: cargo build -p oxetcd --bin oxetcd",
                built.display()
            );
            let status = Command::new(cargo)
                .current_dir(workspace_root())
                .args(["build", "-p", "oxetcd", "--bin", "oxetcd"])
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build --bin oxetcd failed");
        }
        eprintln!("testing against {}", built.display());
        built
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// One oxetcd process on free ports and a temporary data dir, killed on drop.
struct Server {
    dir: tempfile::TempDir,
    port: u16,
    https: bool,
    child: Option<Child>,
}

impl Server {
    fn start() -> Server {
        Server::start_with(false)
    }

    /// `https`: serve TLS with a self-signed certificate (`--auto-tls`).
    fn start_with(https: bool) -> Server {
        Server::start_with_flags(https, &[])
    }

    /// As [`Server::start_with`], with `flags` added to the command line.
    fn start_with_flags(https: bool, flags: &[&str]) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("oxetcd-loadgen-")
            .tempdir()
            .expect("temp dir");
        let (port, peer_port) = (free_port(), free_port());
        let scheme = if https { "https" } else { "http" };
        let client_url = format!("{scheme}://127.0.0.1:{port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = File::create(dir.path().join("server.log")).expect("create log");
        let mut command = Command::new(server_binary());
        command
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")]);
        if https {
            command.arg("--auto-tls");
        }
        command.args(flags);
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", server_binary().display()));
        let mut server = Server {
            dir,
            port,
            https,
            child: Some(child),
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(child) = &mut self.child {
                if let Some(exit) = child.try_wait().expect("poll server") {
                    panic!(
                        "server exited with {exit} before it was ready\n{}",
                        self.log()
                    );
                }
            }
            let ready = self.log().contains(READY_LINE)
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if ready {
                return;
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "server not ready within {START_TIMEOUT:?}\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn endpoint(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The self-signed certificate of an `--auto-tls` server.
    fn auto_tls_cert(&self) -> PathBuf {
        self.dir
            .path()
            .join("data")
            .join("fixtures")
            .join("client")
            .join("cert.pem")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Longest a single `oxetcd-bench` run may take before the test kills it.
const BENCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `oxetcd-bench ARGS`; fails the test if it runs past [`BENCH_TIMEOUT`].
fn bench(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxetcd-bench"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start oxetcd-bench");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + BENCH_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll oxetcd-bench") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("oxetcd-bench {args:?} still running after {BENCH_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Runs a load sub-command with `--json` and returns the exit code and summary.
fn run_json(endpoint: &str, args: &[&str]) -> (i32, Value, String) {
    let mut all = vec!["--endpoints", endpoint, "--json", "--no-progress"];
    all.extend_from_slice(args);
    let output = bench(&all);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "oxetcd-bench {args:?} panicked:\n{stderr}"
    );
    let code = output.status.code().unwrap_or(-1);
    let summary: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("oxetcd-bench {args:?} (exit {code}) printed no JSON summary: {e}\nstdout:\n{stdout}\nstderr:\n{stderr}")
    });
    (code, summary, stderr)
}

fn u64_at(summary: &Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {summary}"))
}

/// The successful count of `kind` in the summary.
fn kind_count(summary: &Value, kind: &str) -> u64 {
    summary["kinds"]
        .as_array()
        .and_then(|kinds| kinds.iter().find(|k| k["kind"] == kind))
        .and_then(|k| k["count"].as_u64())
        .unwrap_or(0)
}

fn assert_clean(args: &[&str], code: i32, summary: &Value) {
    assert_eq!(
        u64_at(summary, "errors"),
        0,
        "{args:?} had errors: {}",
        summary["error_counts"]
    );
    assert_eq!(code, 0, "{args:?}: exit status");
    assert!(u64_at(summary, "ops") > 0, "{args:?} did nothing");
}

#[test]
fn every_sub_command_completes_against_oxetcd_with_zero_errors() {
    let server = Server::start();
    let endpoint = server.endpoint();
    let runs: &[&[&str]] = &[
        &["put", "--clients", "10", "--conns", "2", "--total", "500"],
        &[
            "put",
            "--total",
            "50",
            "--sequential-keys",
            "--key-space-size",
            "10",
        ],
        &[
            "range",
            "--clients",
            "4",
            "--total",
            "300",
            "--key-space-size",
            "100",
        ],
        &[
            "range",
            "--consistency",
            "s",
            "--keys-per-range",
            "10",
            "--total",
            "200",
            "--key-space-size",
            "100",
        ],
        &[
            "range",
            "--whole-prefix",
            "--limit",
            "50",
            "--total",
            "100",
            "--key-space-size",
            "100",
        ],
        &[
            "txn-put",
            "--clients",
            "8",
            "--total",
            "300",
            "--key-space-size",
            "5",
        ],
        &[
            "watch",
            "--clients",
            "4",
            "--total",
            "300",
            "--streams",
            "3",
            "--watchers-per-stream",
            "2",
        ],
        &[
            "watch-latency",
            "--total",
            "50",
            "--rate",
            "200",
            "--streams",
            "2",
        ],
        &[
            "mixed",
            "--clients",
            "6",
            "--conns",
            "2",
            "--total",
            "400",
            "--namespaces",
            "2",
            "--objects-per-client",
            "5",
            "--list-limit",
            "7",
        ],
        // Open loop.
        &["put", "--clients", "4", "--duration", "1s", "--rate", "200"],
    ];
    for args in runs {
        let (code, summary, _) = run_json(&endpoint, args);
        assert_clean(args, code, &summary);
        match args[0] {
            "watch" => {
                // Every watcher got every put: 300 puts x 6 watchers.
                assert_eq!(kind_count(&summary, "watch-event"), 1800, "{summary}");
                assert_eq!(summary["counters"]["events-delivered"], 1800);
            }
            "watch-latency" => {
                assert_eq!(kind_count(&summary, "watch-event"), 100, "{summary}");
            }
            "mixed" => {
                for kind in ["create", "update", "list", "list-page"] {
                    assert!(kind_count(&summary, kind) > 0, "no {kind} in {summary}");
                }
                assert!(
                    kind_count(&summary, "list-page") > kind_count(&summary, "list"),
                    "lists of > 7 objects take several pages: {summary}"
                );
                assert!(kind_count(&summary, "watch-event") > 0, "{summary}");
            }
            "txn-put" => {
                assert_eq!(u64_at(&summary, "ops"), 300);
                assert!(summary["counters"]["txn-attempts"].as_u64() >= Some(300));
            }
            "put" if args.contains(&"--rate") => {
                let ops = u64_at(&summary, "ops");
                assert!((150..=201).contains(&ops), "200/s for 1 s: {ops}");
            }
            _ => {}
        }
    }
}

#[test]
fn csv_series_and_text_summary() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("series.csv");
    let csv_arg = csv.to_str().expect("utf-8 path");
    let output = bench(&[
        "--endpoints",
        &server.endpoint(),
        "put",
        "--clients",
        "2",
        "--duration",
        "2s",
        "--csv",
        csv_arg,
        "--no-fsync-probe",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8_lossy(&output.stdout);
    for expected in ["ops/s", "p99.9", "put"] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    let series = fs::read_to_string(&csv).expect("csv written");
    let mut lines = series.lines();
    assert!(lines
        .next()
        .is_some_and(|h| h.starts_with("elapsed_s,interval_s,ops,errors,ops_per_sec,p50_ms")));
    assert!(lines.count() >= 2, "one row per second:\n{series}");
}

/// `watch --rate --watch-processes 2`: the streams in two watcher processes,
/// every event delivered and counted once in the merged summary, the
/// delivery latency measured across processes, the client CPU of all three
/// processes, and a keeps-up verdict for a rate far below what the server
/// takes.
#[test]
fn open_loop_watch_in_watcher_processes_merges_their_deliveries() {
    let server = Server::start();
    let args = [
        "watch",
        "--clients",
        "4",
        "--conns",
        "2",
        "--streams",
        "5",
        "--rate",
        "50",
        "--total",
        "100",
        "--watch-processes",
        "2",
    ];
    let (code, summary, _) = run_json(&server.endpoint(), &args);
    assert_clean(&args, code, &summary);
    // 100 puts x 5 watchers, shared out 3 + 2.
    assert_eq!(kind_count(&summary, "watch-event"), 500, "{summary}");
    assert_eq!(summary["counters"]["events-delivered"], 500, "{summary}");
    let event = summary["kinds"]
        .as_array()
        .and_then(|kinds| kinds.iter().find(|k| k["kind"] == "watch-event"))
        .expect("a watch-event row");
    let p50 = event["latency_ms"]["p50"].as_f64().expect("p50");
    // A put goes through the server's fsync: well over 50 µs; stamps read
    // on another process's clock would come out as nothing (or hours).
    assert!(
        p50 > 0.05 && p50 < 5_000.0,
        "put-to-event latency across processes: {p50} ms"
    );
    let cpu = &summary["client_cpu"];
    assert_eq!(cpu["processes"], 3, "{summary}");
    assert!(cpu["cpu_secs"].as_f64().is_some_and(|s| s > 0.0), "{cpu}");
    let verdict = &summary["keeps_up"];
    assert_eq!(verdict["keeps_up"], true, "{verdict}");
    assert_eq!(verdict["missing"], 0, "{verdict}");
}

/// Leases: every client grants one and keeps it alive on a stream, with
/// zero errors, as for the other sub-commands.
#[test]
fn lease_keepalive_completes_with_zero_errors() {
    let server = Server::start();
    let args = ["lease-keepalive", "--clients", "3", "--total", "30"];
    let (code, summary, _) = run_json(&server.endpoint(), &args);
    assert_clean(&args, code, &summary);
    assert_eq!(kind_count(&summary, "grant"), 3, "{summary}");
}

#[test]
fn killing_the_server_mid_run_is_counted_not_a_crash() {
    let server = Server::start();
    let pid = server.pid();
    let killer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(1500));
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    });
    let args = [
        "--request-timeout",
        "2s",
        "put",
        "--clients",
        "8",
        "--conns",
        "2",
        "--duration",
        "4s",
    ];
    let started = Instant::now();
    let (code, summary, _) = run_json(&server.endpoint(), &args);
    killer.join().expect("killer thread");
    assert_eq!(
        code, 1,
        "the run finished with failed requests: exit status 1"
    );
    assert!(u64_at(&summary, "ops") > 0, "it ran before the kill");
    assert!(u64_at(&summary, "errors") > 0, "the kill shows as errors");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the run still ends on time"
    );
    // The watch workload too: streams that break are errors, not a hang.
    drop(server);
    let server = Server::start();
    let pid = server.pid();
    let killer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(1500));
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    });
    let args = [
        "--request-timeout",
        "2s",
        "mixed",
        "--clients",
        "4",
        "--duration",
        "3s",
        "--objects-per-client",
        "2",
    ];
    let (code, summary, _) = run_json(&server.endpoint(), &args);
    killer.join().expect("killer thread");
    assert_eq!(code, 1);
    assert!(u64_at(&summary, "errors") > 0);
    assert!(kind_count(&summary, "watch-event") > 0);
}

/// `--user`: `auth-setup` enables auth on a fresh server, puts as the user
/// under its prefix and `authenticate` (logins) finish with zero errors; a
/// token that expires mid-run is renewed and the request goes again (no
/// error); a wrong password stops the tool before the run with the server's
/// refusal (exit status 2, no summary), instead of a run of refused requests.
#[test]
fn auth_mode_runs_as_a_user_and_a_wrong_password_is_a_clear_error() {
    // Tokens live 1 s: the open-loop put below waits 2 s between requests.
    let server = Server::start_with_flags(false, &["--auth-token-ttl", "1", "--bcrypt-cost", "4"]);
    let endpoint = server.endpoint();
    let setup = bench(&[
        "--endpoints",
        &endpoint,
        "--user",
        "bench:pw",
        "auth-setup",
        "--prefix",
        "/bench/",
    ]);
    assert_eq!(
        setup.status.code(),
        Some(0),
        "auth-setup: {}",
        String::from_utf8_lossy(&setup.stderr)
    );

    // Auth is on: the same puts without credentials are all refused.
    let put = [
        "put",
        "--total",
        "20",
        "--key-prefix",
        "/bench/",
        "--no-fsync-probe",
    ];
    let (code, summary, _) = run_json(&endpoint, &put);
    assert_eq!((code, u64_at(&summary, "ops")), (1, 0), "{summary}");

    let args = [
        "--user",
        "bench:pw",
        "put",
        "--clients",
        "4",
        "--conns",
        "2",
        "--total",
        "200",
        "--key-prefix",
        "/bench/",
        "--no-fsync-probe",
    ];
    let (code, summary, _) = run_json(&endpoint, &args);
    assert_clean(&args, code, &summary);
    assert_eq!(u64_at(&summary, "ops"), 200);

    let args = [
        "--user",
        "bench:pw",
        "authenticate",
        "--clients",
        "2",
        "--total",
        "6",
    ];
    let (code, summary, _) = run_json(&endpoint, &args);
    assert_clean(&args, code, &summary);
    assert_eq!(kind_count(&summary, "authenticate"), 6, "{summary}");

    let args = [
        "--user",
        "bench:pw",
        "put",
        "--rate",
        "0.5",
        "--duration",
        "5s",
        "--key-prefix",
        "/bench/",
        "--no-fsync-probe",
    ];
    let (code, summary, _) = run_json(&endpoint, &args);
    assert_clean(&args, code, &summary);
    assert!(
        summary["counters"]["token-renewals"].as_u64() >= Some(1),
        "the expired token was renewed: {summary}"
    );

    for run in [&put[..], &["authenticate", "--total", "5"]] {
        let mut args = vec!["--endpoints", &endpoint, "--user", "bench:wrong"];
        args.extend_from_slice(run);
        let output = bench(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot authenticate as \"bench\"")
                && stderr.contains("authentication failed"),
            "{args:?}: {stderr}"
        );
        assert!(
            output.stdout.is_empty(),
            "no summary of a run that never ran"
        );
    }
}

#[test]
fn tls_endpoints_with_a_trusted_ca_or_skipping_verification() {
    let server = Server::start_with(true);
    let endpoint = server.endpoint();
    let cert = server.auto_tls_cert();
    let cert = cert.to_str().expect("utf-8 path");
    let args = [
        "--cacert",
        cert,
        "put",
        "--clients",
        "2",
        "--conns",
        "2",
        "--total",
        "50",
    ];
    let (code, summary, _) = run_json(&endpoint, &args);
    assert_clean(&args, code, &summary);
    let args = [
        "--insecure-skip-tls-verify",
        "range",
        "--total",
        "50",
        "--key-space-size",
        "10",
    ];
    let (code, summary, _) = run_json(&endpoint, &args);
    assert_clean(&args, code, &summary);
    // Without a trusted CA the handshake fails before the run: exit status 2.
    let output = bench(&["--endpoints", &endpoint, "put", "--total", "1"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");
}

#[test]
fn no_server_at_start_is_exit_status_2() {
    let port = free_port();
    let output = bench(&[
        "--endpoints",
        &format!("http://127.0.0.1:{port}"),
        "--dial-timeout",
        "2s",
        "put",
        "--total",
        "10",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn fsync_probe_prints_the_ceiling() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_arg = dir.path().to_str().expect("utf-8 path");
    let output = bench(&["fsync-probe", "--dir", dir_arg, "--count", "20", "--json"]);
    assert_eq!(output.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert!(report["ceiling_per_sec"].as_f64() > Some(0.0), "{report}");
    assert_eq!(report["count"], 20);
}
