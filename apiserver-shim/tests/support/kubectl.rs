//! What the kubectl end-to-end tests share: the real oxetcd-apiserver
//! binary on a temporary data dir ([`Server`]) and the real kubectl against
//! it ([`Kubectl`]); Debian's etcd for the runs over etcd is `super::etcd`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_oxetcd-apiserver");

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
    /// Starts kubectl without waiting (`get -w`, `wait`): stdout piped,
    /// stderr piped too when `stderr` (else dropped).
    pub fn spawn(&self, args: &[&str], stderr: bool) -> Child {
        Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .arg(format!("--cache-dir={}", self.cache.display()))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(if stderr {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("start kubectl")
    }

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
    super::tools::present("kubectl", &["version", "--client"])
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
