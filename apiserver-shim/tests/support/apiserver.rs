//! The real oxetcd-apiserver binary on a temporary data dir, with the
//! flags a test gives, and the kubeconfig `oxetcd-apiserver kubeconfig`
//! prints for it. Killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::etcd::free_port;

pub const BIN: &str = env!("CARGO_BIN_EXE_oxetcd-apiserver");

pub struct Apiserver {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The admin kubeconfig (CA and bearer token).
    pub kubeconfig: PathBuf,
}

impl Apiserver {
    /// Starts the server on a port from `ports` with `args` besides
    /// --data-dir and --secure-port, and waits until it serves.
    pub fn start(ports: u16, args: &[String]) -> Apiserver {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let port = free_port(ports);
        let log = std::fs::File::create(dir.path().join("apiserver.log")).unwrap();
        let child = Command::new(BIN)
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--secure-port={port}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start oxetcd-apiserver");
        let out = Command::new(BIN)
            .arg("kubeconfig")
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--secure-port={port}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, &out.stdout).unwrap();
        let mut server = Apiserver {
            child,
            dir,
            port,
            kubeconfig,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // Logged once the store took the default namespaces and the
            // listener is bound.
            if self.log().contains("serving the Kubernetes API on") {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("oxetcd-apiserver exited ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "not ready:\n{}", self.log());
            sleep(Duration::from_millis(200));
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default()
    }

    /// A kubeconfig like the admin one that authenticates with a client
    /// certificate instead of the token, written beside it.
    pub fn kubeconfig_with_certificate(&self, name: &str, cert: &Path, key: &Path) -> PathBuf {
        use base64::Engine;
        let b64 =
            |p: &Path| base64::engine::general_purpose::STANDARD.encode(std::fs::read(p).unwrap());
        let admin = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let token_line = admin
            .lines()
            .find(|l| l.trim_start().starts_with("token:"))
            .unwrap()
            .to_string();
        let with_cert = admin.replace(
            &token_line,
            &format!(
                "    client-certificate-data: {}\n    client-key-data: {}",
                b64(cert),
                b64(key)
            ),
        );
        let path = self.dir.path().join(name);
        std::fs::write(&path, with_cert).unwrap();
        path
    }
}

impl Drop for Apiserver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
