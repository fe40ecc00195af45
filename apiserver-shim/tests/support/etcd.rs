//! Debian's etcd 3.4 (`/usr/bin/etcd`, which CI installs) as the remote
//! store of a test: on a temporary data dir, plain or over TLS, killed on
//! drop. Without etcd a test skips, except under CI=true where it fails.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// A port free now among the hundred from `from` (each test has its own
/// hundred, so that tests running in parallel do not pick the same one).
pub fn free_port(from: u16) -> u16 {
    (from..from + 100)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port")
}

/// True when `etcd` runs; false (the caller skips) when it is missing,
/// unless CI=true, where a missing etcd is a failure.
pub fn present() -> bool {
    super::tools::present("etcd", &["--version"])
}

/// The files of a TLS etcd: its serving certificate and key, and the CA
/// its clients must present certificates of (--client-cert-auth).
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Etcd {
    child: Child,
    _dir: tempfile::TempDir,
    /// The client URL (http:// or https://).
    pub url: String,
    /// etcdctl's --cacert/--cert/--key flags for a TLS etcd (its own
    /// certificate is a client certificate too).
    etcdctl_tls: Vec<String>,
}

impl Etcd {
    /// A plain-HTTP etcd on ports from `ports`.
    pub fn start(ports: u16) -> Etcd {
        Self::spawn(ports, None)
    }

    /// An etcd serving clients over TLS and requiring client certificates
    /// signed by `tls.ca`.
    pub fn start_tls(ports: u16, tls: &Tls) -> Etcd {
        Self::spawn(ports, Some(tls))
    }

    fn spawn(ports: u16, tls: Option<&Tls>) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let client = free_port(ports);
        let peer = free_port(client + 1);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{client}");
        let mut cmd = Command::new("etcd");
        cmd.arg(format!("--data-dir={}", dir.path().display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer}"));
        if let Some(tls) = tls {
            cmd.arg(format!("--cert-file={}", tls.cert.display()))
                .arg(format!("--key-file={}", tls.key.display()))
                .arg(format!("--trusted-ca-file={}", tls.ca.display()))
                .arg("--client-cert-auth");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        // Listening is enough: clients retry until it has elected itself.
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", client)).is_err() {
            assert!(Instant::now() < deadline, "etcd did not listen on {client}");
            sleep(Duration::from_millis(50));
        }
        let etcdctl_tls = tls.map_or_else(Vec::new, |t| {
            vec![
                format!("--cacert={}", t.ca.display()),
                format!("--cert={}", t.cert.display()),
                format!("--key={}", t.key.display()),
            ]
        });
        Etcd {
            child,
            _dir: dir,
            url,
            etcdctl_tls,
        }
    }

    /// `etcdctl get <key> --print-value-only`: what is stored, read around
    /// the API (empty: no such key).
    pub fn get(&self, key: &str) -> Vec<u8> {
        self.etcdctl(&["get", key, "--print-value-only"])
    }

    /// etcdctl against this etcd; its stdout, which it must succeed.
    pub fn etcdctl(&self, args: &[&str]) -> Vec<u8> {
        let out = self.try_etcdctl(args);
        assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
        out.stdout
    }

    /// etcdctl against this etcd, success or not.
    pub fn try_etcdctl(&self, args: &[&str]) -> std::process::Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.url))
            .args(&self.etcdctl_tls)
            .args(args)
            .output()
            .expect("run etcdctl")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
