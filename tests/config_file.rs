//! --config-file against the real binary: a member started from etcd's YAML
//! keys alone serves as one started with the same flags would; an unknown
//! key or bad YAML stops it at start with a message naming the problem.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oxetcd_proto::etcdserverpb::cluster_client::ClusterClient;
use oxetcd_proto::etcdserverpb::MemberListRequest;
use support::*;

/// Ports of this test (the range this work was given).
const CLIENT_PORT: u16 = 34_101;
const PEER_PORT: u16 = 34_102;

#[tokio::test]
async fn a_member_starts_from_a_config_file_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = format!("http://127.0.0.1:{CLIENT_PORT}");
    let peer = format!("http://127.0.0.1:{PEER_PORT}");
    let yaml = format!(
        "name: from-file\n\
         data-dir: {data}\n\
         listen-client-urls: {client}\n\
         advertise-client-urls: {client}\n\
         listen-peer-urls: {peer}\n\
         initial-advertise-peer-urls: {peer}\n\
         initial-cluster: from-file={peer}\n\
         initial-cluster-token: file-token\n\
         max-txn-ops: 3\n",
        data = dir.path().join("data").display(),
    );
    let config = dir.path().join("etcd.yml");
    std::fs::write(&config, yaml).expect("write config");
    let log = dir.path().join("stderr.log");
    let mut child = KilledOnDrop(
        Command::new(server_binary())
            .arg("--config-file")
            .arg(&config)
            // Ignored, as etcd ignores flags beside --config-file.
            .args(["--name", "from-flag"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start oxetcd"),
    );
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !logs().contains(READY_LINE) {
        if let Some(exit) = child.0.try_wait().expect("poll") {
            panic!("exited with {exit}\n{}", logs());
        }
        assert!(Instant::now() < deadline, "not ready\n{}", logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    let channel = connect(&client).await.expect("connect");
    let members = ClusterClient::new(channel.clone())
        .member_list(MemberListRequest::default())
        .await
        .expect("member list")
        .into_inner();
    drop(child);
    assert_eq!(members.members.len(), 1);
    assert_eq!(members.members[0].name, "from-file");
    assert_eq!(members.members[0].peer_ur_ls, vec![peer]);
    assert!(
        logs().contains("--name"),
        "no warning about --name\n{}",
        logs()
    );
    assert!(
        dir.path().join("data/oxetcd").is_dir(),
        "the data dir of the file is not used"
    );
    // The default logger writes zap's JSON lines with etcd's field names.
    let ready = logs()
        .lines()
        .find(|l| l.contains(READY_LINE))
        .map(str::to_string)
        .unwrap_or_default();
    let line: serde_json::Value = serde_json::from_str(&ready).expect("a JSON log line");
    assert_eq!(line["level"], "info", "{ready}");
    assert_eq!(line["msg"], READY_LINE, "{ready}");
    assert!(
        line["ts"].as_str().is_some_and(|ts| ts.ends_with('Z')),
        "{ready}"
    );
    assert!(
        line["caller"].as_str().is_some_and(|c| c.contains(".rs:")),
        "{ready}"
    );
}

/// A server killed however the test ends: one left running would hold its
/// ports (and anything it inherited) after a failed assertion.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts oxetcd on `yaml`; its exit code and stderr (it must exit).
fn start_fails(yaml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("etcd.yml");
    std::fs::write(&config, yaml).expect("write config");
    let out = Command::new(server_binary())
        .arg("--config-file")
        .arg(&config)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run oxetcd");
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&*config.to_string_lossy(), "FILE");
    (out.status.code(), stderr)
}

#[test]
fn an_unknown_key_or_bad_yaml_stops_the_start() {
    let (code, stderr) = start_fails("name: x\nlisten-clients-urls: http://127.0.0.1:34103\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "oxetcd: cannot load config file FILE: unknown key \"listen-clients-urls\""
    );
    let (code, stderr) = start_fails("name: [x\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("oxetcd: cannot load config file FILE: "),
        "{stderr}"
    );
}
