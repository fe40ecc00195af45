//! bbolt round trips against a model, the page accounting bbolt's own check
//! does, and reading files written by real etcd (when it is installed).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;

use bytes::Bytes;
use proptest::prelude::*;

use super::page::{
    branch_elements, leaf_elements, BucketHeader, PageHeader, BRANCH_PAGE, BUCKET_LEAF_FLAG,
    PAGE_HEADER_SIZE,
};
use super::*;
use crate::{KeyRange, RangeOptions, SledBackend, Store};

type Buckets = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

fn write(buckets: &Buckets, page_size: usize) -> Vec<u8> {
    let mut w = Writer::with_page_size(Cursor::new(Vec::new()), page_size).unwrap();
    for (name, entries) in buckets {
        w.bucket(
            name,
            entries.iter().map(|(k, v)| Ok((k.clone(), v.clone()))),
        )
        .unwrap();
    }
    let (out, size) = w.finish().unwrap();
    let bytes = out.into_inner();
    assert_eq!(bytes.len() as u64, size, "file is exactly the pages in use");
    bytes
}

fn read(file: Vec<u8>) -> Buckets {
    let r = Reader::open(file).unwrap();
    let mut out = Buckets::new();
    for name in r.bucket_names().unwrap() {
        let mut entries = BTreeMap::new();
        r.for_each(&name, &mut |k, v| {
            assert!(entries.insert(k.to_vec(), v.to_vec()).is_none());
            Ok(())
        })
        .unwrap();
        out.insert(name, entries);
    }
    out
}

/// What bbolt's `tx.Check` verifies: every page below the high water mark
/// is a meta page, the freelist, or reachable from exactly one place.
fn check_pages(file: &[u8]) {
    let r = Reader::open(file.to_vec()).unwrap();
    let meta = *r.meta();
    let ps = meta.page_size as usize;
    let mut seen = BTreeSet::from([0u64, 1, meta.freelist]);
    let page_at = |id: u64| -> Vec<u8> {
        let h = PageHeader::decode(&file[id as usize * ps..]).unwrap();
        assert_eq!(h.id, id);
        file[id as usize * ps..(id as usize + 1 + h.overflow as usize) * ps].to_vec()
    };
    fn visit(id: u64, page_at: &dyn Fn(u64) -> Vec<u8>, seen: &mut BTreeSet<u64>, buckets: bool) {
        let page = page_at(id);
        let h = PageHeader::decode(&page).unwrap();
        for extra in 0..=u64::from(h.overflow) {
            assert!(
                seen.insert(id + extra),
                "page {} referenced twice",
                id + extra
            );
        }
        if h.flags & BRANCH_PAGE != 0 {
            for e in branch_elements(&page).unwrap() {
                visit(e.child, page_at, seen, buckets);
            }
        } else if buckets {
            for e in leaf_elements(&page).unwrap() {
                assert_eq!(e.flags, BUCKET_LEAF_FLAG);
                let b = BucketHeader::decode(e.value).unwrap();
                if b.root != 0 {
                    visit(b.root, page_at, seen, false);
                }
            }
        }
    }
    visit(meta.root.root, &page_at, &mut seen, true);
    assert_eq!(seen, (0..meta.pgid).collect::<BTreeSet<u64>>());
    let free = PageHeader::decode(&file[meta.freelist as usize * ps..]).unwrap();
    assert_eq!((free.count, free.overflow), (0, 0));
}

fn sample() -> Buckets {
    let mut b = Buckets::new();
    b.insert(b"empty".to_vec(), BTreeMap::new());
    b.insert(
        b"small".to_vec(),
        BTreeMap::from([
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec()),
        ]),
    );
    let big: BTreeMap<Vec<u8>, Vec<u8>> = (0..3000u32)
        .map(|i| (i.to_be_bytes().to_vec(), format!("value-{i}").into_bytes()))
        .collect();
    b.insert(b"big".to_vec(), big);
    b.insert(
        b"huge".to_vec(),
        BTreeMap::from([
            (b"x".to_vec(), vec![7u8; 20_000]),
            (b"y".to_vec(), vec![8u8; 5]),
            (b"z".to_vec(), vec![9u8; 9_000]),
        ]),
    );
    b
}

#[test]
fn round_trips_inline_deep_and_overflowing_buckets() {
    for page_size in [512, 4096] {
        let buckets = sample();
        let file = write(&buckets, page_size);
        check_pages(&file);
        assert_eq!(read(file), buckets, "page size {page_size}");
    }
}

#[test]
fn small_buckets_are_inline_and_big_ones_are_trees() {
    let file = write(&sample(), 4096);
    let r = Reader::open(file.clone()).unwrap();
    let root = r.meta().root.root as usize;
    let page = &file[root * 4096..(root + 1) * 4096];
    let roots: BTreeMap<Vec<u8>, u64> = leaf_elements(page)
        .unwrap()
        .iter()
        .map(|e| (e.key.to_vec(), BucketHeader::decode(e.value).unwrap().root))
        .collect();
    assert_eq!(roots[&b"small".to_vec()], 0);
    assert_eq!(roots[&b"empty".to_vec()], 0);
    let big = roots[&b"big".to_vec()] as usize;
    let header = PageHeader::decode(&file[big * 4096..]).unwrap();
    assert_eq!(
        header.flags, BRANCH_PAGE,
        "3000 entries need a branch level"
    );
}

#[test]
fn writer_refuses_unordered_keys_and_repeated_buckets() {
    let mut w = Writer::new(Cursor::new(Vec::new())).unwrap();
    let unordered = [Ok((b"b".to_vec(), vec![])), Ok((b"a".to_vec(), vec![]))];
    assert!(matches!(
        w.bucket(b"x", unordered),
        Err(BboltError::Invalid(_))
    ));
    let mut w = Writer::new(Cursor::new(Vec::new())).unwrap();
    w.bucket(b"x", std::iter::empty()).unwrap();
    assert!(w.bucket(b"x", std::iter::empty()).is_err());
}

#[test]
fn reader_refuses_what_is_not_bbolt() {
    assert!(Reader::open(vec![0u8; 8192]).is_err());
    let mut file = write(&sample(), 4096);
    // A damaged first meta page: bbolt falls back to the second.
    file[PAGE_HEADER_SIZE + 20] ^= 0xff;
    assert_eq!(read(file.clone()), sample());
    file[4096 + PAGE_HEADER_SIZE + 20] ^= 0xff;
    assert!(Reader::open(file).is_err());
}

#[test]
fn reader_reports_missing_buckets() {
    let r = Reader::open(write(&sample(), 4096)).unwrap();
    assert!(!r.for_each(b"nope", &mut |_, _| Ok(())).unwrap());
    assert!(r.for_each(b"empty", &mut |_, _| Ok(())).unwrap());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_buckets_round_trip(
        buckets in proptest::collection::btree_map(
            proptest::collection::vec(any::<u8>(), 1..8),
            proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 1..40),
                proptest::collection::vec(any::<u8>(), 0..700),
                0..60,
            ),
            0..5,
        ),
        page_size in prop_oneof![Just(512usize), Just(1024), Just(4096)],
    ) {
        let file = write(&buckets, page_size);
        check_pages(&file);
        prop_assert_eq!(read(file), buckets);
    }
}

// ---- etcd's layout ----

fn store(dir: &std::path::Path) -> Store {
    Store::open(Box::new(SledBackend::open(dir, 16 << 20).unwrap())).unwrap()
}

fn lease_out(id: i64, raw: &[u8]) -> crate::Result<EtcdLease> {
    // The test stores records as etcd's message itself.
    let mut l = <EtcdLease as prost::Message>::decode(raw)
        .map_err(|e| crate::StorageError::Corrupt(e.to_string()))?;
    l.id = id;
    Ok(l)
}

fn lease_in(l: EtcdLease) -> Bytes {
    Bytes::from(prost::Message::encode_to_vec(&l))
}

/// The test's cluster records under `t/` fill the "auth" bucket.
fn auth_bucket(records: Vec<(String, Bytes)>) -> crate::Result<Vec<super::EtcdBucket>> {
    let entries = records
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("t/")?.as_bytes().to_vec(), v.to_vec())))
        .collect();
    Ok(vec![(&b"auth"[..], entries)])
}

fn export(s: &Store) -> (Vec<u8>, EtcdDbSummary) {
    let (out, summary) = s
        .write_etcd_db(
            Cursor::new(Vec::new()),
            &EtcdExport {
                consistent_index: 42,
                members: vec![(0x8e9e05c52164694d, br#"{"id":1}"#.to_vec())],
                cluster_version: "3.4.0",
                lease: &lease_out,
                cluster_buckets: &auth_bucket,
            },
        )
        .unwrap();
    (out.into_inner(), summary)
}

fn all_at(s: &Store, rev: i64) -> Vec<oxetcd_proto::mvccpb::KeyValue> {
    s.range(
        KeyRange::new(b"\0", b"\0"),
        &RangeOptions {
            rev,
            ..RangeOptions::default()
        },
    )
    .unwrap()
    .kvs
}

#[test]
fn store_moves_to_etcd_layout_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let src = store(&dir.path().join("src"));
    for (i, key) in ["a", "b", "a", "c"].iter().enumerate() {
        let mut txn = src.write();
        txn.put(Bytes::from(*key), Bytes::from(format!("v{i}")), 0);
        txn.end().unwrap();
    }
    let mut txn = src.write();
    txn.delete_range(KeyRange::new(b"b", b""));
    txn.put_lease_record(
        7,
        lease_in(EtcdLease {
            id: 7,
            ttl: 60,
            remaining_ttl: 0,
        }),
    );
    txn.end().unwrap();
    let _ = src.commit().unwrap();
    src.compact(3).unwrap();
    let _ = src.commit().unwrap();
    src.put_cluster_record("t/flag", Bytes::from_static(b"1"))
        .unwrap();

    let (file, summary) = export(&src);
    check_pages(&file);
    assert_eq!(
        (summary.revision, summary.compact_revision, summary.leases),
        (6, 3, 1)
    );
    let db = Reader::open(file).unwrap();
    let mut keys = Vec::new();
    db.for_each(b"key", &mut |k, _| {
        keys.push(parse_etcd_revision_key(k).unwrap());
        Ok(())
    })
    .unwrap();
    assert_eq!(keys.last(), Some(&(crate::Revision::new(6, 0), true)));
    let names: Vec<String> = db
        .bucket_names()
        .unwrap()
        .into_iter()
        .map(|n| String::from_utf8(n).unwrap())
        .collect();
    for want in [
        "key",
        "meta",
        "lease",
        "members",
        "cluster",
        "alarm",
        "auth",
        "authUsers",
    ] {
        assert!(names.contains(&want.to_string()), "{want} in {names:?}");
    }
    // Cluster records fill the buckets the export says they make.
    let mut auth = Vec::new();
    db.for_each(b"auth", &mut |k, v| {
        auth.push((k.to_vec(), v.to_vec()));
        Ok(())
    })
    .unwrap();
    assert_eq!(auth, vec![(b"flag".to_vec(), b"1".to_vec())]);

    let backend = SledBackend::open(&dir.path().join("dst"), 16 << 20).unwrap();
    let (dst, imported) = Store::import_etcd_db(Box::new(backend), &db, &lease_in).unwrap();
    assert_eq!(imported.consistent_index, 42);
    assert_eq!((imported.revision, imported.compact_revision), (6, 3));
    assert_eq!(dst.current_revision(), 6);
    assert_eq!(dst.compacted_revision(), 3);
    for rev in 3..=6 {
        assert_eq!(all_at(&dst, rev), all_at(&src, rev), "at revision {rev}");
    }
    assert_eq!(dst.lease_records().unwrap(), src.lease_records().unwrap());
    assert_eq!(dst.hash_kv(0).unwrap().hash, src.hash_kv(0).unwrap().hash);
    let (history, _) = dst.history(6, 6, 10).unwrap();
    assert_eq!(history[0].kv.as_ref().unwrap().mod_revision, 6);
}

#[test]
fn import_finishes_a_scheduled_compaction_and_needs_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    // An etcd database whose compaction to 3 was scheduled, not finished.
    let mut w = Writer::new(Cursor::new(Vec::new())).unwrap();
    let kv = |key: &str, rev: i64, ver: i64| oxetcd_proto::mvccpb::KeyValue {
        key: Bytes::copy_from_slice(key.as_bytes()),
        create_revision: 2,
        mod_revision: rev,
        version: ver,
        value: Bytes::from(format!("{rev}")),
        lease: 0,
    };
    let entries = (2..=4).map(|rev| {
        Ok((
            etcd_revision_key(crate::Revision::new(rev, 0), false),
            prost::Message::encode_to_vec(&kv("k", rev, rev - 1)),
        ))
    });
    w.bucket(b"key", entries).unwrap();
    let scheduled = etcd_revision_key(crate::Revision::new(3, 0), false);
    w.bucket(b"meta", [Ok((b"scheduledCompactRev".to_vec(), scheduled))])
        .unwrap();
    let (out, _) = w.finish().unwrap();
    let db = Reader::open(out.into_inner()).unwrap();
    let backend = SledBackend::open(&dir.path().join("a"), 16 << 20).unwrap();
    let (s, _) = Store::import_etcd_db(Box::new(backend), &db, &lease_in).unwrap();
    assert_eq!(s.compacted_revision(), 3);
    assert_eq!(s.current_revision(), 4);
    assert_eq!(all_at(&s, 3)[0].mod_revision, 3);

    let backend = SledBackend::open(&dir.path().join("a2"), 16 << 20).unwrap();
    let mut batch = crate::WriteBatch::default();
    batch.put(crate::Bucket::Meta, &b"x"[..], &b"y"[..]);
    crate::Backend::apply(&backend, batch).unwrap();
    assert!(Store::import_etcd_db(Box::new(backend), &db, &lease_in).is_err());
}

#[test]
fn revision_keys_match_etcds() {
    let key = etcd_revision_key(crate::Revision::new(5, 1), false);
    assert_eq!(
        key,
        [0, 0, 0, 0, 0, 0, 0, 5, b'_', 0, 0, 0, 0, 0, 0, 0, 1].to_vec()
    );
    let tomb = etcd_revision_key(crate::Revision::new(5, 1), true);
    assert_eq!(tomb.len(), 18);
    assert_eq!(
        parse_etcd_revision_key(&tomb),
        Some((crate::Revision::new(5, 1), true))
    );
    assert_eq!(parse_etcd_revision_key(&key[..16]), None);
}

// ---- real etcd and etcdctl, when installed ----

mod real_etcd {
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use super::*;

    const ETCD: &str = "/usr/bin/etcd";
    const ETCDCTL: &str = "/usr/bin/etcdctl";

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn etcdctl(endpoint: &str, args: &[&str]) -> std::process::Output {
        Command::new(ETCDCTL)
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", endpoint])
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs etcd on `dir`, lets `work` use it, stops it cleanly.
    fn with_etcd(dir: &Path, work: impl FnOnce(&str)) {
        let (client, peer) = (free_port(), free_port());
        let curl = format!("http://127.0.0.1:{client}");
        let purl = format!("http://127.0.0.1:{peer}");
        let mut etcd = Command::new(ETCD)
            .args(["--name", "t", "--data-dir"])
            .arg(dir)
            .args([
                "--listen-client-urls",
                &curl,
                "--advertise-client-urls",
                &curl,
            ])
            .args([
                "--listen-peer-urls",
                &purl,
                "--initial-advertise-peer-urls",
                &purl,
            ])
            .args(["--initial-cluster", &format!("t={purl}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !etcdctl(&curl, &["endpoint", "health"]).status.success() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "etcd did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        work(&curl);
        // SIGTERM: etcd commits its backend on a clean stop.
        Command::new("kill")
            .args(["-TERM", &etcd.id().to_string()])
            .status()
            .unwrap();
        etcd.wait().unwrap();
    }

    #[test]
    fn reads_a_database_written_by_etcd() {
        if !Path::new(ETCD).exists() || !Path::new(ETCDCTL).exists() {
            eprintln!("skipped: needs {ETCD} and {ETCDCTL}");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("etcd");
        with_etcd(&data, |ep| {
            for (k, v) in [("foo", "1"), ("bar", "2"), ("foo", "3")] {
                assert!(etcdctl(ep, &["put", k, v]).status.success());
            }
            assert!(etcdctl(ep, &["del", "bar"]).status.success());
            assert!(etcdctl(ep, &["compact", "3"]).status.success());
            assert!(etcdctl(ep, &["lease", "grant", "600"]).status.success());
        });
        let file = std::fs::File::open(data.join("member/snap/db")).unwrap();
        let db = Reader::open(file).unwrap();
        let mut revs = Vec::new();
        db.for_each(b"key", &mut |k, _| {
            revs.push(parse_etcd_revision_key(k).unwrap());
            Ok(())
        })
        .unwrap();
        // foo@2 goes with the compaction (foo@4 is newer than 3) once etcd's
        // background compaction has run; bar@3 and its tombstone at 5 stay.
        let mains: Vec<(i64, bool)> = revs.iter().map(|(r, t)| (r.main, *t)).collect();
        assert!(
            mains.ends_with(&[(3, false), (4, false), (5, true)]),
            "{mains:?}"
        );

        let backend = SledBackend::open(&dir.path().join("ours"), 16 << 20).unwrap();
        let (s, summary) = Store::import_etcd_db(Box::new(backend), &db, &lease_in).unwrap();
        assert_eq!(summary.revision, 5);
        assert_eq!(s.compacted_revision(), 3);
        assert_eq!(s.current_revision(), 5);
        assert_eq!(summary.leases, 1);
        assert!(summary.consistent_index > 0);
        let kvs = all_at(&s, 0);
        assert_eq!(kvs.len(), 1);
        assert_eq!(
            (&kvs[0].key[..], &kvs[0].value[..]),
            (&b"foo"[..], &b"3"[..])
        );
        assert_eq!((kvs[0].create_revision, kvs[0].version), (2, 2));
    }

    #[test]
    fn etcdctl_snapshot_status_accepts_what_we_write() {
        if !Path::new(ETCDCTL).exists() {
            eprintln!("skipped: needs {ETCDCTL}");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let src = store(&dir.path().join("src"));
        for i in 0..2000u32 {
            let mut txn = src.write();
            txn.put(
                Bytes::from(format!("key-{:04}", i % 500)),
                Bytes::from(vec![b'v'; (i % 7) as usize * 300]),
                0,
            );
            txn.end().unwrap();
        }
        let _ = src.commit().unwrap();
        let (file, summary) = export(&src);
        let path = dir.path().join("snap.db");
        std::fs::write(&path, &file).unwrap();
        let out = Command::new(ETCDCTL)
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "status", "-w", "json"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("\"revision\":2001"), "{text}");
        assert!(
            text.contains(&format!("\"totalSize\":{}", summary.size)),
            "{text}"
        );
    }
}
