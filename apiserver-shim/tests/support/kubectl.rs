//! What the kubectl end-to-end tests share: the real oxetcd-apiserver
//! binary on a temporary data dir ([`Server`]), the real kubectl against it
//! ([`Kubectl`]), and Debian's etcd 3.4 for the runs over etcd ([`Etcd`]).
//! Each test crate uses part of it.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_oxetcd-apiserver");

/// A port free now among the hundred from `from` (each test has its own
/// hundred, so that tests running in parallel do not pick the same one).
pub fn free_port(from: u16) -> u16 {
    (from..from + 100)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port")
}

pub struct Server {
    child: Child,
    pub data_dir: PathBuf,
    pub port: u16,
    pub etcd: Option<String>,
}

impl Server {
    /// The server on `data_dir`, over `etcd` (a URL) or its embedded store.
    pub fn start(data_dir: &Path, port: u16, etcd: Option<&str>) -> Self {
        let log = std::fs::File::create(data_dir.with_extension("log")).unwrap();
        let mut cmd = Command::new(BIN);
        if let Some(url) = etcd {
            cmd.arg(format!("--etcd-servers={url}"));
        }
        let child = cmd
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--secure-port={port}"))
            .arg("--bind-address=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start oxetcd-apiserver");
        Server {
            child,
            data_dir: data_dir.to_path_buf(),
            port,
            etcd: etcd.map(String::from),
        }
    }

    pub fn kubeconfig(&self, path: &Path) {
        let out = Command::new(BIN)
            .arg("kubeconfig")
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--secure-port={}", self.port))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(path, &out.stdout).unwrap();
    }

    pub fn stop(&mut self) {
        // SIGTERM: the server stops its embedded store cleanly.
        unsafe_kill(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Kubectl {
    pub kubeconfig: PathBuf,
    /// kubectl's discovery cache, private to this test.
    pub cache: PathBuf,
}

impl Kubectl {
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .arg(format!("--cache-dir={}", self.cache.display()))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run kubectl");
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        assert!(out.status.success(), "kubectl {args:?} failed:\n{o}\n{e}");
        o
    }

    /// Runs and expects failure; returns stderr.
    pub fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(!out.status.success(), "kubectl {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all, None)).unwrap()
    }
}

pub fn kubectl_present() -> bool {
    let found = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var("CI").as_deref() == Ok("true") {
        panic!("kubectl is required under CI=true");
    }
    found
}

pub fn wait_ready(k: &Kubectl) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = k.run(&["get", "--raw", "/readyz"], None);
        if out.status.success() && out.stdout == b"ok" {
            return;
        }
        assert!(Instant::now() < deadline, "server not ready: {out:?}");
        sleep(Duration::from_millis(200));
    }
}

/// Debian's etcd 3.4 on a temporary data dir, killed on drop.
pub struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Etcd {
    /// etcd on `dir`, its client port free from `ports` on; with its URL.
    pub fn start(dir: &Path, ports: u16) -> (Self, String) {
        let client = free_port(ports);
        let peer = free_port(client + 1);
        let url = format!("http://127.0.0.1:{client}");
        let etcd = Etcd(
            Command::new("etcd")
                .arg(format!("--data-dir={}", dir.display()))
                .arg(format!("--listen-client-urls={url}"))
                .arg(format!("--advertise-client-urls={url}"))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
                ))
                .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        (etcd, url)
    }
}
