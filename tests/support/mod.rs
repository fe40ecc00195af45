//! Shared helpers of the integration tests: start the real `oxetcd` binary on
//! free 127.0.0.1 ports with a temporary data dir, talk to it with the
//! generated tonic clients, kill it (SIGKILL or SIGTERM) and restart it on the
//! same data dir.
//!
//! The same tests can be pointed at another etcd-compatible binary to check
//! what they expect against the reference implementation:
//!
//! ```text
//! OXETCD_TEST_SERVER=/usr/bin/etcd cargo test --test kv
//! ```
//!
//! (etcd 3.4 takes the same flags and prints the same ready line; the few
//! tests of oxetcd-only facts, such as the 3.5 API version, then fail.)
//!
//! Every start writes the server's stderr to `<tmp>/logs/stderr-<n>.log`; when
//! a test panics, the logs are printed.

#![allow(dead_code)] // each test crate uses its own subset of the helpers

pub mod cluster;

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxetcd_proto::etcdserverpb::kv_client::KvClient;
use oxetcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd_proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    ResponseHeader,
};
use oxetcd_proto::mvccpb::KeyValue;
pub use oxetcd_proto::prefix_end;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

const SIGTERM: i32 = 15;

/// The line a server prints on stderr once it serves clients (etcd's too).
pub const READY_LINE: &str = "ready to serve client requests";
/// How long a start may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take before the test fails.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Per-request deadline of the test clients, so a hung server fails a test
/// instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest response the test clients accept.
const MAX_RESPONSE_BYTES: usize = 1 << 30;

/// The binary under test: `oxetcd`, or `$OXETCD_TEST_SERVER` if set.
pub fn server_binary() -> PathBuf {
    match std::env::var_os("OXETCD_TEST_SERVER") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_oxetcd")),
    }
}

/// True when the tests run against another binary than our own oxetcd.
pub fn against_reference_server() -> bool {
    server_binary() != Path::new(env!("CARGO_BIN_EXE_oxetcd"))
}

/// A process's stderr, one file per start (`<dir>/stderr-<n>.log`): what
/// the test servers and cluster members print, and the one reader of it.
pub struct StartLogs {
    dir: PathBuf,
    starts: usize,
}

impl StartLogs {
    pub fn new(dir: PathBuf) -> StartLogs {
        fs::create_dir_all(&dir).expect("create log dir");
        StartLogs { dir, starts: 0 }
    }

    /// The log file of a new start.
    pub fn next(&mut self) -> (PathBuf, File) {
        self.starts += 1;
        let path = self.path(self.starts);
        let file = File::create(&path).expect("create process log");
        (path, file)
    }

    fn path(&self, start: usize) -> PathBuf {
        self.dir.join(format!("stderr-{start}.log"))
    }

    /// What the last start printed so far.
    pub fn current(&self) -> String {
        fs::read_to_string(self.path(self.starts)).unwrap_or_default()
    }

    /// Everything, every start, each under a header naming its file.
    pub fn all(&self) -> String {
        let mut out = String::new();
        for n in 1..=self.starts {
            let path = self.path(n);
            let text = fs::read_to_string(&path).unwrap_or_default();
            let _ = writeln!(out, "----- {} -----\n{text}", path.display());
        }
        out
    }

    /// The last `lines` lines of every start, each cut at `chars`
    /// characters, under headers naming `who`.
    pub fn tail(&self, who: &str, lines: usize, chars: usize) -> String {
        let mut out = String::new();
        for n in 1..=self.starts {
            let path = self.path(n);
            let text = fs::read_to_string(&path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let skip = all.len().saturating_sub(lines);
            let _ = writeln!(
                out,
                "----- {who} {} (last {} of {} lines) -----",
                path.display(),
                all.len() - skip,
                all.len()
            );
            for line in &all[skip..] {
                match line.char_indices().nth(chars) {
                    Some((cut, _)) => {
                        let _ = writeln!(out, "{} [...]", &line[..cut]);
                    }
                    None => {
                        let _ = writeln!(out, "{line}");
                    }
                }
            }
        }
        out
    }
}

/// One server process, on its own ports and data dir, killed on drop.
pub struct Server {
    dir: tempfile::TempDir,
    /// --name: "it", or a fixture's member name.
    name: String,
    client_port: u16,
    peer_port: u16,
    extra_args: Vec<String>,
    /// Environment variables set for the server process (test hooks).
    env: Vec<(String, String)>,
    child: Option<Child>,
    logs: StartLogs,
}

impl Server {
    /// Starts a server with etcd's default limits.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts a server with extra flags, e.g. `["--max-txn-ops", "3"]`.
    pub fn start_with(extra_args: &[&str]) -> Server {
        Server::start_with_env(extra_args, &[])
    }

    /// Starts a server with extra flags and environment variables.
    pub fn start_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("oxetcd-it-")
            .tempdir()
            .expect("create temp dir");
        let (client_port, peer_port) = two_free_ports();
        let mut server = Server {
            name: "it".to_string(),
            client_port,
            peer_port,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            logs: StartLogs::new(dir.path().join("logs")),
            dir,
        };
        // The ports were free when picked, but another test process may bind
        // one before the server does: then it exits at once, and new ports
        // are picked (a CI run failed so once).
        for _ in 1..PORT_ATTEMPTS {
            match server.try_spawn() {
                Ok(()) => return server,
                Err(why) if why.contains(ADDRESS_IN_USE) => {
                    (server.client_port, server.peer_port) = two_free_ports();
                }
                Err(why) => panic!("{why}"),
            }
        }
        server.spawn();
        server
    }

    /// Starts member `name` on a data dir that `prepare` fills first (given
    /// the directory the data dir goes in, as `data/`), on fixed ports: a
    /// member's ID derives from its peer URL, so a fixture's member must come
    /// back at the URL it was made with.
    pub fn start_on_fixture(
        name: &str,
        client_port: u16,
        peer_port: u16,
        prepare: impl FnOnce(&Path),
    ) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("oxetcd-it-")
            .tempdir()
            .expect("create temp dir");
        prepare(dir.path());
        let mut server = Server {
            name: name.to_string(),
            client_port,
            peer_port,
            extra_args: Vec::new(),
            env: Vec::new(),
            child: None,
            logs: StartLogs::new(dir.path().join("logs")),
            dir,
        };
        server.spawn();
        server
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The gRPC endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().expect("poll server process").is_none(),
            None => false,
        }
    }

    /// A channel to the server, with a deadline on every request.
    pub async fn channel(&self) -> Channel {
        connect(&self.endpoint())
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}\n{}", self.endpoint(), self.logs()))
    }

    pub async fn kv(&self) -> KvClient<Channel> {
        kv_client(self.channel().await)
    }

    pub async fn maintenance(&self) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.channel().await).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// SIGKILL: the process gets no chance to flush or clean up.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // std's Child::kill sends SIGKILL on Unix.
            let _ = child.kill();
            child.wait().expect("reap killed server");
        }
    }

    /// SIGTERM, then waits for the process to exit; fails the test if it does
    /// not exit in time or exits with an error.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(exit) = child.try_wait().expect("poll server process") {
                // Exit code 0, or (like etcd, a Go program) death by the
                // SIGTERM it handled and raised again.
                let graceful = exit.success() || exit.signal() == Some(SIGTERM);
                assert!(
                    graceful,
                    "server exited with {exit} after SIGTERM\n{}",
                    self.logs()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same data dir and ports. A server still
    /// running is stopped gracefully first.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    /// Everything the server printed on stderr, every start.
    pub fn logs(&self) -> String {
        self.logs.all()
    }

    fn spawn(&mut self) {
        if let Err(why) = self.try_spawn() {
            panic!("{why}");
        }
    }

    /// Starts the process and waits until it is ready; says why not if it
    /// exited first.
    fn try_spawn(&mut self) -> Result<(), String> {
        let (log_path, log) = self.logs.next();
        let client_url = format!("http://127.0.0.1:{}", self.client_port);
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(server_binary())
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("{}={peer_url}", self.name)])
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", server_binary().display()));
        self.child = Some(child);
        self.wait_ready(&log_path)
    }

    /// Waits for the ready line and an accepting client port. If the log
    /// level hides the ready line, an accepting port for a while will do.
    /// Fails if the process exits first.
    fn wait_ready(&mut self, log_path: &Path) -> Result<(), String> {
        let started = Instant::now();
        let mut accepting_since: Option<Instant> = None;
        loop {
            if let Some(exit) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("poll server process"))
            {
                self.child = None;
                return Err(format!(
                    "server exited with {exit} before it was ready\n{}",
                    self.logs()
                ));
            }
            let accepting = TcpStream::connect(("127.0.0.1", self.client_port)).is_ok();
            if accepting {
                let since = *accepting_since.get_or_insert_with(Instant::now);
                let ready_line =
                    fs::read_to_string(log_path).is_ok_and(|log| log.contains(READY_LINE));
                if ready_line || since.elapsed() > Duration::from_secs(5) {
                    return Ok(());
                }
            } else {
                accepting_since = None;
            }
            if started.elapsed() > START_TIMEOUT {
                panic!("server not ready within {START_TIMEOUT:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_9();
        if std::thread::panicking() {
            eprintln!(
                "server logs ({}):\n{}",
                self.dir.path().display(),
                self.logs()
            );
        }
    }
}

/// A channel to `endpoint`, with a deadline on every request.
pub async fn connect(endpoint: &str) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(endpoint.to_string())
        .expect("endpoint URL")
        .connect_timeout(Duration::from_secs(5))
        .timeout(REQUEST_TIMEOUT)
        .connect()
        .await
}

/// A KV client that accepts responses of any size the tests read (a full
/// range over everything the crash tests wrote can pass gRPC's 4 MiB default).
pub fn kv_client(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES)
}

/// Starts on freshly picked ports tried before giving up.
const PORT_ATTEMPTS: usize = 5;
/// What the server's log says when a port it was given is taken (etcd's
/// words, as src/listener.rs writes them).
const ADDRESS_IN_USE: &str = "address already in use";

/// Two distinct ports that were free a moment ago.
fn two_free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

// ---------------------------------------------------------------------------
// Request helpers.

pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

pub fn put_req(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: b(key),
        value: b(value),
        ..Default::default()
    }
}

pub fn get_req(key: &str) -> RangeRequest {
    RangeRequest {
        key: b(key),
        ..Default::default()
    }
}

/// Every key from `key` on (range_end "\0").
pub fn from_key_req(key: &str) -> RangeRequest {
    RangeRequest {
        key: b(key),
        range_end: b("\0"),
        ..Default::default()
    }
}

pub fn prefix_req(prefix: &str) -> RangeRequest {
    RangeRequest {
        key: b(prefix),
        range_end: prefix_end(prefix),
        ..Default::default()
    }
}

/// Every key in the store (key "\0", range_end "\0").
pub fn all_req() -> RangeRequest {
    from_key_req("\0")
}

pub fn header(h: &Option<ResponseHeader>) -> &ResponseHeader {
    h.as_ref().expect("response has a header")
}

pub fn rev(h: &Option<ResponseHeader>) -> i64 {
    header(h).revision
}

pub fn key_str(kv: &KeyValue) -> String {
    String::from_utf8_lossy(&kv.key).into_owned()
}

pub fn value_str(kv: &KeyValue) -> String {
    String::from_utf8_lossy(&kv.value).into_owned()
}

pub fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter().map(key_str).collect()
}

pub async fn put(kv: &mut KvClient<Channel>, key: &str, value: &str) -> PutResponse {
    kv.put(put_req(key, value))
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"))
        .into_inner()
}

pub async fn range(kv: &mut KvClient<Channel>, req: RangeRequest) -> RangeResponse {
    kv.range(req.clone())
        .await
        .unwrap_or_else(|e| panic!("range {req:?}: {e}"))
        .into_inner()
}

/// The key-value of `key` at the latest revision, if any.
pub async fn get(kv: &mut KvClient<Channel>, key: &str) -> Option<KeyValue> {
    let resp = range(kv, get_req(key)).await;
    assert!(
        resp.kvs.len() <= 1,
        "a single-key range returned {} keys",
        resp.kvs.len()
    );
    resp.kvs.into_iter().next()
}

pub async fn delete(kv: &mut KvClient<Channel>, req: DeleteRangeRequest) -> DeleteRangeResponse {
    kv.delete_range(req.clone())
        .await
        .unwrap_or_else(|e| panic!("delete {req:?}: {e}"))
        .into_inner()
}

/// The store's current revision, as a read of a missing key reports it.
pub async fn current_rev(kv: &mut KvClient<Channel>) -> i64 {
    rev(&range(kv, get_req("\u{1}no such key")).await.header)
}

/// Every key-value in the store at the latest revision.
pub async fn all(kv: &mut KvClient<Channel>) -> Vec<KeyValue> {
    range(kv, all_req()).await.kvs
}

/// A minimal HTTP/1.1 GET (no client crate needed): status code and body.
pub fn http_get(endpoint: &str, path: &str) -> (u16, String) {
    http_request(endpoint, "GET", path, "", "")
}

/// A minimal HTTP/1.1 request: `headers` are whole lines ("Name: value\r\n"),
/// `body` is sent with its length. Returns the status code and the body.
pub fn http_request(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    let addr = endpoint.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).expect("connect");
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let mut raw = String::new();
    conn.read_to_string(&mut raw).expect("read");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Asserts a request failed with exactly this code and message.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, message: &str) {
    match result {
        Ok(v) => panic!("expected {code:?} {message:?}, got a success: {v:?}"),
        Err(status) => {
            assert_eq!(
                (status.code(), status.message()),
                (code, message),
                "unexpected error status (full: {status:?})"
            );
        }
    }
}

pub const ERR_EMPTY_KEY: &str = "etcdserver: key is not provided";
pub const ERR_KEY_NOT_FOUND: &str = "etcdserver: key not found";
pub const ERR_VALUE_PROVIDED: &str = "etcdserver: value is provided";
pub const ERR_LEASE_PROVIDED: &str = "etcdserver: lease is provided";
pub const ERR_LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
pub const ERR_TOO_LARGE: &str = "etcdserver: request is too large";
pub const ERR_TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";
pub const ERR_DUPLICATE_KEY: &str = "etcdserver: duplicate key given in txn request";
pub const ERR_COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
pub const ERR_FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";
