//! A data directory written by an earlier release starts on this one with
//! every key and revision: tests/fixtures/datadir-v1.tar.gz was written by
//! oxetcd before typed log commands (see tests/fixtures/make-datadir-v1.sh),
//! killed with -9 right after a burst of batched writes, so starting it
//! replays log entries in the old encoding as well as reading the store.

mod support;

use std::path::Path;
use std::process::Command;

use base64::prelude::{Engine, BASE64_STANDARD};
use oxetcd_proto::etcdserverpb::{LeaseTimeToLiveRequest, RangeRequest};
use serde_json::Value;
use support::*;
use tonic::Code;

/// The ports and name the fixture's member was made with (its member ID
/// derives from the peer URL).
const NAME: &str = "fixture";
const CLIENT_PORT: u16 = 23791;
const PEER_PORT: u16 = 23801;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn unpack(into: &Path) {
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(fixture("datadir-v1.tar.gz"))
        .arg("-C")
        .arg(into)
        .status()
        .expect("run tar");
    assert!(status.success(), "tar -xzf failed");
}

/// One key as etcdctl printed it, or as the server answers.
#[derive(Debug, PartialEq)]
struct Kv {
    key: Vec<u8>,
    value: Vec<u8>,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    lease: i64,
}

/// What etcdctl printed of every key before the kill: base64 keys and
/// values, JSON numbers for revisions.
struct Expected {
    revision: i64,
    kvs: Vec<Kv>,
}

fn expected() -> Expected {
    let text = std::fs::read_to_string(fixture("datadir-v1.json")).expect("read fixture json");
    let json: Value = serde_json::from_str(&text).expect("fixture json");
    let int = |v: &Value| v.as_i64().unwrap_or(0);
    let bytes = |v: &Value| {
        BASE64_STANDARD
            .decode(v.as_str().unwrap_or(""))
            .expect("base64")
    };
    let kvs = json["kvs"]
        .as_array()
        .expect("kvs")
        .iter()
        .map(|kv| Kv {
            key: bytes(&kv["key"]),
            value: bytes(&kv["value"]),
            create_revision: int(&kv["create_revision"]),
            mod_revision: int(&kv["mod_revision"]),
            version: int(&kv["version"]),
            lease: int(&kv["lease"]),
        })
        .collect();
    Expected {
        revision: int(&json["header"]["revision"]),
        kvs,
    }
}

#[tokio::test]
async fn a_data_dir_from_before_typed_commands_starts_with_every_key_and_revision() {
    let want = expected();
    assert!(
        want.kvs.len() > 250,
        "the fixture holds the keys it was made with"
    );
    let server = Server::start_on_fixture(NAME, CLIENT_PORT, PEER_PORT, unpack);
    let mut kv = server.kv().await;

    let all = range(&mut kv, all_req()).await;
    assert_eq!(rev(&all.header), want.revision, "the revision it had");
    let got: Vec<_> = all
        .kvs
        .iter()
        .map(|kv| Kv {
            key: kv.key.to_vec(),
            value: kv.value.to_vec(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        })
        .collect();
    assert_eq!(got.len(), want.kvs.len(), "every key");
    assert_eq!(
        got, want.kvs,
        "every key, value, revision, version and lease"
    );

    // The lease outlived the restart, with its key attached.
    let leased = want
        .kvs
        .iter()
        .find(|kv| kv.key == b"/fixture/leased")
        .expect("the leased key");
    let mut leases =
        oxetcd_proto::etcdserverpb::lease_client::LeaseClient::new(server.channel().await);
    let ttl = leases
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: leased.lease,
            keys: true,
        })
        .await
        .expect("lease TTL")
        .into_inner();
    assert!(ttl.ttl > 0, "the lease is alive: {ttl:?}");
    assert_eq!(ttl.keys, vec![b("/fixture/leased")]);

    // The compaction holds: the old revisions are gone, the kept ones read.
    let old = kv
        .range(RangeRequest {
            key: b("/fixture/a"),
            revision: 2,
            ..RangeRequest::default()
        })
        .await;
    assert_status(
        old,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );

    // And it takes writes, at the next revision.
    let put = put(&mut kv, "/after", "restart").await;
    assert_eq!(rev(&put.header), want.revision + 1);
}
