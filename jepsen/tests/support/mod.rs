//! What the test files share.

use std::path::PathBuf;
use std::process::Command;

use oxetcd_jepsen::check::Validity;
use oxetcd_jepsen::cluster::netns::Netns;
use oxetcd_jepsen::nemesis;
use oxetcd_jepsen::powerfs::PowerFs;
use oxetcd_jepsen::run::{run, Outcome, RunConfig};

const ETCD: &str = "/usr/bin/etcd";

/// A 15-second run of `workload` on 3 members of `server`, kill + pause
/// faults (+ partition as root), in a temporary directory.
#[allow(dead_code)] // not every test file runs clusters
pub fn config(server: PathBuf, workload: &str, seed: u64) -> (RunConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let namespaces = Netns::available();
    let mut nemesis = vec!["kill".to_owned(), "pause".to_owned()];
    if namespaces {
        nemesis.push("partition".into());
    }
    let config = RunConfig {
        server,
        db: None,
        nodes: 3,
        workload: workload.into(),
        nemesis,
        time_limit_s: 15,
        seed,
        concurrency: 6,
        rate: 100,
        op_timeout_ms: 2000,
        fault_interval_ms: nemesis::DEFAULT_INTERVAL_MS,
        fault_hold_ms: nemesis::DEFAULT_HOLD_MS,
        out: dir.path().join("run"),
        namespaces,
        progress: false,
        server_args: Vec::new(),
        server_env: Vec::new(),
        auth: None,
        compact_keep: oxetcd_jepsen::cluster::maintenance::KEEP,
    };
    (config, dir)
}

/// One cluster at a time: the runs share the machine's cores, and a run
/// starved by another would only show timeouts.
#[allow(dead_code)] // not every test file runs clusters
pub static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Makes a run while no other cluster runs: its outcome and the faults
/// it recorded.
#[allow(dead_code)] // not every test file runs clusters
pub async fn run_alone(config: RunConfig) -> (Outcome, Vec<serde_json::Value>) {
    let out = config.out.clone();
    let outcome = {
        let _one = ONE_CLUSTER.lock().await;
        run(config).await.expect("the run")
    };
    let faults = std::fs::read(out.join("faults.json")).unwrap();
    (outcome, serde_json::from_slice(&faults).unwrap())
}

/// Panics unless the run was valid, keeping its directory and saying
/// where; else gives the directory back.
#[allow(dead_code)] // not every test file runs clusters
pub fn valid_or_kept(outcome: &Outcome, dir: tempfile::TempDir) -> tempfile::TempDir {
    if outcome.validity != Validity::Valid {
        let kept = dir.keep();
        panic!(
            "{:?}; the report is kept in {}: {:#?}",
            outcome.validity,
            kept.display(),
            outcome.verdicts
        );
    }
    dir
}

/// Debian's etcd 3.4, if installed; without it a test skips, saying why,
/// except under CI=true (which installs it), where it fails.
#[allow(dead_code)] // not every test file runs etcd
pub fn etcd() -> Option<PathBuf> {
    if std::path::Path::new(ETCD).exists() {
        return Some(ETCD.into());
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "{ETCD} is not installed (apt-get install etcd-server)"
    );
    eprintln!("skipped: {ETCD} is not installed (apt-get install etcd-server)");
    None
}

/// Whether the power-loss file system can be mounted here (/dev/fuse, root,
/// fusermount3); without it a test skips, saying why, except under CI=true,
/// where it fails.
#[allow(dead_code)] // not every test file cuts power
pub fn power_fs_available() -> bool {
    match PowerFs::unavailable() {
        None => true,
        Some(why) => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "power-loss file system tests cannot run: {why}"
            );
            eprintln!("skipped: {why}");
            false
        }
    }
}

/// An RSA key pair for JWTs, in a temporary directory.
#[allow(dead_code)] // not every test file makes JWTs
pub struct KeyPair {
    pub private: std::path::PathBuf,
    pub public: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A fresh RSA key pair made with openssl; without openssl the test skips,
/// saying why, except under CI=true, where it fails.
#[allow(dead_code)] // not every test file makes JWTs
pub fn rsa_key_pair() -> Option<KeyPair> {
    let dir = tempfile::tempdir().expect("temp dir");
    let private = dir.path().join("jwt.pem");
    let public = dir.path().join("jwt.pub.pem");
    let openssl = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let made = openssl(&[
        "genrsa".as_ref(),
        "-out".as_ref(),
        private.as_os_str(),
        "2048".as_ref(),
    ]) && openssl(&[
        "rsa".as_ref(),
        "-in".as_ref(),
        private.as_os_str(),
        "-pubout".as_ref(),
        "-out".as_ref(),
        public.as_os_str(),
    ]);
    if !made {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "cannot make an RSA key pair: openssl is needed"
        );
        eprintln!("skipped: openssl is needed to make JWT keys");
        return None;
    }
    Some(KeyPair {
        private,
        public,
        _dir: dir,
    })
}

/// The workspace's `oxetcd` binary in the same target dir and profile as
/// the test, built with `$CARGO build --bin oxetcd` when it is not there;
/// `OXETCD_JEPSEN_SERVER` overrides it.
#[allow(dead_code)] // not every test file runs clusters
pub fn oxetcd() -> PathBuf {
    if let Some(path) = std::env::var_os("OXETCD_JEPSEN_SERVER") {
        return PathBuf::from(path);
    }
    // <target>/<profile>/deps/<test>-<hash> -> <target>/<profile>/oxetcd
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let binary = profile_dir.join("oxetcd");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "oxetcd", "--bin", "oxetcd"]);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let target_dir = profile_dir.parent().expect("target dir");
        let status = build
            .env("CARGO_TARGET_DIR", target_dir)
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building oxetcd failed");
    }
    binary
}

/// The members of the run writing to `out` that are alive: processes whose
/// command line holds `--data-dir <out>/members/...`.
#[allow(dead_code)] // not every test file runs clusters
pub fn members_of(out: &std::path::Path) -> Vec<String> {
    let data_dirs = format!("{}/members/", out.display());
    let mut members = Vec::new();
    for proc_dir in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(cmdline) = std::fs::read(proc_dir.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("--data-dir") && cmdline.contains(&data_dirs) {
            members.push(cmdline);
        }
    }
    members
}
