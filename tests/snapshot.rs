//! Data moving between etcd and oxetcd, with real processes:
//!
//! - Maintenance.Snapshot streams etcd's format (bbolt file in 32 KiB chunks,
//!   then its sha256);
//! - oxetcd's snapshot -> `etcdctl snapshot restore` -> oxetcd starts on the
//!   restored dir with the same keys, revisions and leases;
//! - etcd 3.4 writes keys and stops -> oxetcd starts on etcd's data dir and
//!   serves the same keys and revisions;
//! - auth (users, roles, permissions, the enabled flag, the auth revision)
//!   moves both ways: etcd's snapshot restored for oxetcd, and oxetcd's
//!   restored by `etcdctl snapshot restore` for etcd 3.4.
//!
//! Parts that need /usr/bin/etcd or /usr/bin/etcdctl are skipped (with a
//! message) when those are absent, except under CI=true, where they fail.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxetcd_proto::etcdserverpb::auth_client::AuthClient;
use oxetcd_proto::etcdserverpb::kv_client::KvClient;
use oxetcd_proto::etcdserverpb::lease_client::LeaseClient;
use oxetcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd_proto::etcdserverpb::{
    AuthStatusRequest, AuthStatusResponse, AuthenticateRequest, CompactionRequest,
    DeleteRangeRequest, LeaseGrantRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest,
    SnapshotRequest, StatusRequest,
};
use oxetcd_storage::bbolt::{parse_etcd_revision_key, Reader};
use sha2::{Digest, Sha256};
use support::*;
use tonic::transport::Channel;
use tonic::Code;

const ETCD: &str = "/usr/bin/etcd";
const ETCDCTL: &str = "/usr/bin/etcdctl";
const LEASE_ID: i64 = 0x1234;

/// Whether `tool` is installed. Outside CI a test without it skips (with a
/// message); under CI=true it fails, since .ci/run installs it.
fn have(tool: &str) -> bool {
    let found = Path::new(tool).exists();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is not installed (CI installs it: see .ci/run)"
        );
        eprintln!("skipped: needs {tool}");
    }
    found
}

/// Writes history with everything a snapshot must carry: versions, a
/// delete, a compaction, a lease with a key. Returns the latest revision.
async fn write_history(channel: Channel) -> i64 {
    let mut kv = kv_client(channel.clone());
    let mut lease = LeaseClient::new(channel);
    put(&mut kv, "a", "1").await;
    put(&mut kv, "b", "1").await;
    put(&mut kv, "a", "2").await;
    delete(
        &mut kv,
        DeleteRangeRequest {
            key: b("b"),
            ..Default::default()
        },
    )
    .await;
    kv.compact(CompactionRequest {
        revision: 4,
        physical: true,
    })
    .await
    .unwrap();
    lease
        .lease_grant(LeaseGrantRequest {
            ttl: 600,
            id: LEASE_ID,
        })
        .await
        .unwrap();
    kv.put(PutRequest {
        key: b("leased"),
        value: b("x"),
        lease: LEASE_ID,
        ..Default::default()
    })
    .await
    .unwrap();
    // A big value: the database spans several 32 KiB chunks.
    kv.put(PutRequest {
        key: b("big"),
        value: vec![b'z'; 100_000].into(),
        ..Default::default()
    })
    .await
    .unwrap();
    current_rev(&mut kv).await
}

/// Everything a reader can see: latest keys and the history since the
/// compaction, and that the compacted past is gone.
async fn assert_same_data(kv: &mut KvClient<Channel>, latest: i64) {
    let all = all(kv).await;
    assert_eq!(keys(&all), ["a", "big", "leased"]);
    let a = &all[0];
    assert_eq!(
        (
            value_str(a).as_str(),
            a.create_revision,
            a.mod_revision,
            a.version
        ),
        ("2", 2, 4, 2)
    );
    assert_eq!(all[2].lease, LEASE_ID);
    assert_eq!(current_rev(kv).await, latest);
    // Revision 4 is the compaction point: readable, the one before is not.
    let at4 = range(
        kv,
        RangeRequest {
            revision: 4,
            ..get_req("a")
        },
    )
    .await;
    assert_eq!(value_str(&at4.kvs[0]), "2");
    let before = kv
        .range(RangeRequest {
            revision: 3,
            ..get_req("a")
        })
        .await;
    assert_status(
        before,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
}

async fn assert_lease(channel: Channel) {
    let ttl = LeaseClient::new(channel)
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: LEASE_ID,
            keys: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ttl.granted_ttl, 600);
    assert_eq!(ttl.keys, vec![b("leased")]);
}

/// The whole snapshot stream: the file's chunks, then the digest.
async fn fetch_snapshot(server: &Server) -> (Vec<u8>, Vec<u8>) {
    let mut stream = server
        .maintenance()
        .await
        .snapshot(SnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut messages = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        messages.push(m);
    }
    let digest = messages.pop().expect("a digest message");
    assert_eq!(digest.remaining_bytes, 0);
    let total: usize = messages.iter().map(|m| m.blob.len()).sum();
    let mut file = Vec::new();
    for m in &messages {
        assert!(m.blob.len() <= 32 * 1024);
        file.extend_from_slice(&m.blob);
        assert_eq!(m.remaining_bytes as usize, total - file.len());
    }
    (file, digest.blob.to_vec())
}

#[tokio::test]
async fn snapshot_streams_etcds_format_with_its_digest() {
    let server = Server::start();
    let latest = write_history(server.channel().await).await;
    let (file, digest) = fetch_snapshot(&server).await;
    assert!(file.len() > 100_000 && file.len() % 4096 == 0);
    assert_eq!(digest, Sha256::digest(&file).to_vec());

    let db = Reader::open(file).unwrap();
    let mut last = None;
    db.for_each(b"key", &mut |k, _| {
        last = parse_etcd_revision_key(k);
        Ok(())
    })
    .unwrap();
    assert_eq!(last.map(|(r, _)| r.main), Some(latest));
    let mut leases = 0;
    db.for_each(b"lease", &mut |k, _| {
        assert_eq!(k, LEASE_ID.to_be_bytes());
        leases += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(leases, 1);
}

fn etcdctl(args: &[&str]) -> std::process::Output {
    Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .args(args)
        .output()
        .expect("run etcdctl")
}

fn ok(out: std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "etcdctl failed: {text}");
    text
}

#[tokio::test]
async fn oxetcd_snapshot_restored_by_etcdctl_starts_oxetcd_with_the_same_data() {
    if !have(ETCDCTL) {
        return;
    }
    let mut server = Server::start();
    let latest = write_history(server.channel().await).await;
    let snap = server.data_dir().with_file_name("snap.db");
    let snap = snap.to_str().unwrap();
    let endpoint = server.endpoint();
    ok(etcdctl(&[
        "--endpoints",
        &endpoint,
        "snapshot",
        "save",
        snap,
    ]));
    let status = ok(etcdctl(&["snapshot", "status", snap, "-w", "json"]));
    assert!(
        status.contains(&format!("\"revision\":{latest}")),
        "{status}"
    );

    server.stop();
    let data = server.data_dir();
    std::fs::remove_dir_all(&data).unwrap();
    ok(etcdctl(&[
        "snapshot",
        "restore",
        snap,
        "--data-dir",
        data.to_str().unwrap(),
    ]));
    server.restart();
    assert!(
        server.logs().contains("imported etcd's database"),
        "{}",
        server.logs()
    );
    assert!(
        data.join("member/snap/db").exists(),
        "member/ is left as it was"
    );
    let mut kv = server.kv().await;
    assert_same_data(&mut kv, latest).await;
    assert_lease(server.channel().await).await;
    // Writes go on from the restored revision.
    let next = put(&mut kv, "after", "1").await;
    assert_eq!(rev(&next.header), latest + 1);

    // A second start uses the store made by the first: no import again.
    server.restart();
    assert_eq!(current_rev(&mut server.kv().await).await, latest + 1);
}

/// etcd 3.4 running as member "it"; killed if dropped without `stop`.
struct Etcd {
    child: Option<Child>,
    endpoint: String,
}

/// Client and peer URLs of etcd's member "it", on free ports.
fn etcd_urls() -> (String, String) {
    let (l1, l2) = (
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    let (client, peer) = (
        l1.local_addr().unwrap().port(),
        l2.local_addr().unwrap().port(),
    );
    (
        format!("http://127.0.0.1:{client}"),
        format!("http://127.0.0.1:{peer}"),
    )
}

impl Etcd {
    /// Starts etcd on `data` at `urls` (client, peer); returns once it
    /// answers Status (which needs no user, auth enabled or not).
    async fn start(data: &Path, (curl, purl): &(String, String)) -> (Etcd, Channel) {
        let (curl, purl) = (curl.as_str(), purl.as_str());
        let child = Command::new(ETCD)
            .args(["--name", "it", "--data-dir"])
            .arg(data)
            .args([
                "--listen-client-urls",
                curl,
                "--advertise-client-urls",
                curl,
            ])
            .args([
                "--listen-peer-urls",
                purl,
                "--initial-advertise-peer-urls",
                purl,
            ])
            .args(["--initial-cluster", &format!("it={purl}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        let etcd = Etcd {
            child: Some(child),
            endpoint: curl.to_string(),
        };
        let started = Instant::now();
        let channel = loop {
            if let Ok(ch) = connect(curl).await {
                let mut m = MaintenanceClient::new(ch.clone());
                if m.status(StatusRequest {}).await.is_ok() {
                    break ch;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "etcd did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        (etcd, channel)
    }

    /// SIGTERM, and waits for etcd to exit.
    fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs etcd 3.4 on `data`, lets `work` use it, stops it with SIGTERM.
async fn with_etcd<F, Fut>(data: &Path, work: F) -> i64
where
    F: FnOnce(Channel) -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let (etcd, channel) = Etcd::start(data, &etcd_urls()).await;
    let latest = work(channel).await;
    etcd.stop();
    latest
}

#[tokio::test]
async fn oxetcd_starts_on_a_stopped_etcds_data_dir_with_its_data() {
    if !have(ETCD) {
        return;
    }
    let mut server = Server::start();
    server.stop();
    let data = server.data_dir();
    std::fs::remove_dir_all(&data).unwrap();
    let latest = with_etcd(&data, write_history).await;
    server.restart();
    let mut kv = server.kv().await;
    assert_same_data(&mut kv, latest).await;
    assert_lease(server.channel().await).await;
    assert!(data.join("member/wal").exists());
}

#[tokio::test]
async fn oxetcd_refuses_an_etcd_data_dir_without_a_database() {
    let mut server = Server::start();
    server.stop();
    let data = server.data_dir();
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::create_dir_all(data.join("member/wal")).unwrap();
    let out = Command::new(server_binary())
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("member/snap/db"), "{err}");
    assert!(!data.join("oxetcd").exists());
}

#[tokio::test]
async fn a_member_added_after_an_import_is_sent_the_imported_data() {
    use support::cluster::Cluster;
    let mut cluster = Cluster::start(1).await;
    let latest = write_history(cluster.channel(0)).await;
    // The snapshot's database as etcd's data dir (what `snapshot restore`
    // leaves in member/snap/db), in place of the member's own data.
    let mut stream = cluster
        .maintenance(0)
        .snapshot(SnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut blobs = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        blobs.push(m.blob);
    }
    blobs.pop(); // the digest
    let db = blobs.concat();
    cluster.kill_9(0);
    let data = cluster.member(0).data_dir();
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::create_dir_all(data.join("member/snap")).unwrap();
    std::fs::write(data.join("member/snap/db"), &db).unwrap();
    cluster.restart(0).await;
    assert_same_data(&mut cluster.kv(0), latest).await;

    let new = cluster.add_member(0, false).await;
    // The new member has only what Raft sent it: read it locally.
    let started = Instant::now();
    loop {
        let got = cluster
            .kv(new)
            .range(RangeRequest {
                serializable: true,
                ..get_req("a")
            })
            .await
            .unwrap()
            .into_inner();
        if let Some(kv) = got.kvs.first() {
            assert_eq!((value_str(kv).as_str(), kv.mod_revision), ("2", 4));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the new member never got the imported data\n{}",
            cluster.logs(new)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// etcdctl against `endpoint`.
fn ctl(endpoint: &str, args: &[&str]) -> std::process::Output {
    etcdctl(&[&["--endpoints", endpoint], args].concat())
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Auth as an operator sets it up with etcdctl: `app/x` = 1, root, role
/// `reader` reading the prefix `app/`, alice holding it; then auth on. Seven
/// auth changes (etcd 3.4 counts enabling as one).
fn set_up_auth(endpoint: &str) {
    for args in [
        &["put", "app/x", "1"][..],
        &["user", "add", "root:rootpw"],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "reader"],
        &[
            "role",
            "grant-permission",
            "reader",
            "read",
            "app/",
            "--prefix=true",
        ],
        &["user", "add", "alice:alicepw"],
        &["user", "grant-role", "alice", "reader"],
        &["auth", "enable"],
    ] {
        ok(ctl(endpoint, args));
    }
}

/// The auth revision `set_up_auth` leaves (etcd 3.4.23's count).
const AUTH_REVISION_AFTER_SET_UP: u64 = 7;

/// What a server restored from `set_up_auth`'s snapshot must do: alice
/// reads `app/` and may not write it, a wrong password and no user get
/// nothing, root sees the role's permission.
fn assert_auth_kept(endpoint: &str) {
    let alice = ["--user", "alice:alicepw"];
    let got = ok(ctl(
        endpoint,
        &[&alice[..], &["get", "app/x", "--print-value-only"]].concat(),
    ));
    assert_eq!(got.trim(), "1");
    for (args, error) in [
        (
            [&alice[..], &["put", "app/x", "2"]].concat(),
            "etcdserver: permission denied",
        ),
        (
            vec!["--user", "alice:wrong", "get", "app/x"],
            "etcdserver: authentication failed, invalid user ID or password",
        ),
        (vec!["get", "app/x"], "etcdserver: user name is empty"),
    ] {
        let out = ctl(endpoint, &args);
        let text = output_text(&out);
        assert!(
            !out.status.success() && text.contains(error),
            "{args:?}: {text}"
        );
    }
    let role = ok(ctl(
        endpoint,
        &["--user", "root:rootpw", "role", "get", "reader"],
    ));
    assert!(role.contains("[app/, app0)"), "{role}");
}

/// The auth revision in etcd's auth bucket of a saved snapshot.
fn auth_revision_in(snap: &Path) -> u64 {
    let mut file = std::fs::read(snap).unwrap();
    // etcdctl appends the sha256 to the database it saves.
    if file.len() % 512 == 32 {
        file.truncate(file.len() - 32);
    }
    let db = Reader::open(file).unwrap();
    let mut revision = None;
    db.for_each(b"auth", &mut |k, v| {
        if k == b"authRevision" {
            revision = Some(u64::from_be_bytes(v.try_into().unwrap()));
        }
        Ok(())
    })
    .unwrap();
    revision.expect("an authRevision in the snapshot")
}

/// Root's AuthStatus on `server`.
async fn auth_status(channel: Channel) -> AuthStatusResponse {
    let mut auth = AuthClient::new(channel);
    let token = auth
        .authenticate(AuthenticateRequest {
            name: "root".into(),
            password: "rootpw".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let mut request = tonic::Request::new(AuthStatusRequest {});
    request
        .metadata_mut()
        .insert("token", token.parse().unwrap());
    auth.auth_status(request).await.unwrap().into_inner()
}

#[tokio::test]
async fn etcds_users_roles_and_auth_revision_come_to_oxetcd_in_a_snapshot() {
    if !have(ETCD) || !have(ETCDCTL) {
        return;
    }
    let mut server = Server::start();
    server.stop();
    let data = server.data_dir();
    std::fs::remove_dir_all(&data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (etcd, _) = Etcd::start(&dir.path().join("etcd"), &etcd_urls()).await;
    set_up_auth(&etcd.endpoint);
    let snap = dir.path().join("snap.db");
    let snap_arg = snap.to_str().unwrap();
    ok(ctl(
        &etcd.endpoint,
        &["--user", "root:rootpw", "snapshot", "save", snap_arg],
    ));
    etcd.stop();
    assert_eq!(auth_revision_in(&snap), AUTH_REVISION_AFTER_SET_UP);

    ok(etcdctl(&[
        "snapshot",
        "restore",
        snap_arg,
        "--data-dir",
        data.to_str().unwrap(),
    ]));
    server.restart();
    assert_auth_kept(&server.endpoint());
    let status = auth_status(server.channel().await).await;
    assert!(status.enabled);
    assert_eq!(status.auth_revision, AUTH_REVISION_AFTER_SET_UP);
}

#[tokio::test]
async fn oxetcds_users_roles_and_auth_revision_go_to_etcd_in_a_snapshot() {
    if !have(ETCD) || !have(ETCDCTL) {
        return;
    }
    let mut server = Server::start();
    set_up_auth(&server.endpoint());
    // The same steps count as in etcd.
    let status = auth_status(server.channel().await).await;
    assert_eq!(status.auth_revision, AUTH_REVISION_AFTER_SET_UP);
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap.db");
    let snap_arg = snap.to_str().unwrap();
    ok(ctl(
        &server.endpoint(),
        &["--user", "root:rootpw", "snapshot", "save", snap_arg],
    ));
    server.stop();
    assert_eq!(auth_revision_in(&snap), AUTH_REVISION_AFTER_SET_UP);

    let urls = etcd_urls();
    let etcd_data = dir.path().join("etcd");
    ok(etcdctl(&[
        "snapshot",
        "restore",
        snap_arg,
        "--data-dir",
        etcd_data.to_str().unwrap(),
        "--name",
        "it",
        "--initial-cluster",
        &format!("it={}", urls.1),
        "--initial-advertise-peer-urls",
        &urls.1,
    ]));
    let (etcd, _) = Etcd::start(&etcd_data, &urls).await;
    assert_auth_kept(&etcd.endpoint);
    // etcd goes on from the auth revision it was given.
    ok(ctl(
        &etcd.endpoint,
        &["--user", "root:rootpw", "user", "add", "bob:bobpw"],
    ));
    let again = dir.path().join("again.db");
    ok(ctl(
        &etcd.endpoint,
        &[
            "--user",
            "root:rootpw",
            "snapshot",
            "save",
            again.to_str().unwrap(),
        ],
    ));
    etcd.stop();
    assert_eq!(auth_revision_in(&again), AUTH_REVISION_AFTER_SET_UP + 1);
}
