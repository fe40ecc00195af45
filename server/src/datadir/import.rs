//! Starting on an etcd data directory: its database (`member/snap/db`)
//! becomes a new oxetcd store, once.
//!
//! What is imported: every revision etcd kept (so reads, watches and
//! compaction continue from the same revisions), the compacted revision, the
//! leases, and the auth state (users, roles, permissions, the enabled flag
//! and the auth revision: see `auth::records_from_etcd`). What is not: etcd's Raft log and membership. The member starts
//! as a new cluster from --initial-cluster, as etcd does on the directory
//! `etcdctl snapshot restore` makes; `member/` is left as it was, so the
//! operator can go back to etcd.
//!
//! The store is built in `<data-dir>/oxetcd.import/` and renamed to
//! `<data-dir>/oxetcd/` only when complete and durable, so a crash midway
//! imports again from the start on the next run.
//!
//! A live etcd directory (not one made by `snapshot restore`) may have a
//! database behind its WAL: etcd commits its database every 100 ms and
//! replays the WAL on start. Such a directory is refused (see `etcd_wal`):
//! start etcd on it once and stop it cleanly, or move the data with
//! `etcdctl snapshot save` and `etcdctl snapshot restore`.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use oxetcd_storage::bbolt::{parse_etcd_revision_key, BboltError, EtcdLease, Reader};
use oxetcd_storage::{Engine, StorageError, Store};
use prost::Message;
use tracing::info;

use super::etcd_wal::{DbFacts, Tail, WalError};
use super::Staging;

/// The engine's page cache while importing.
const IMPORT_CACHE_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot open etcd's database {path:?}: {source}")]
    Open { path: PathBuf, source: BboltError },
    #[error("cannot import etcd's database {path:?}: {source}")]
    Store { path: PathBuf, source: StorageError },
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("etcd's database {db:?} lacks committed changes that are only in its WAL (index {index}, a {what}; the database has up to {consistent_index}): etcd was not stopped cleanly. Start etcd on this directory once and stop it, or move the data with `etcdctl snapshot save` and `etcdctl snapshot restore`")]
    Behind {
        db: PathBuf,
        index: u64,
        what: &'static str,
        consistent_index: u64,
    },
    #[error("cannot prepare the import in {path:?}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Imports etcd's database `db` of data dir `root` into a new oxetcd store
/// on `engine`.
pub fn import(root: &Path, db: &Path, engine: Engine) -> Result<(), ImportError> {
    let open_err = |source| ImportError::Open {
        path: db.to_path_buf(),
        source,
    };
    let file = File::open(db).map_err(|e| open_err(BboltError::Io(e)))?;
    let reader = Reader::open(file).map_err(open_err)?;
    let (consistent_index, facts) = db_facts(&reader).map_err(open_err)?;
    // Read before anything is built: a corrupt auth bucket refuses the import.
    let auth = crate::auth::records_from_etcd(&reader).map_err(open_err)?;
    let wal = root.join("member/wal");
    if wal.is_dir() {
        let tail = Tail::read(&wal, consistent_index)?;
        if let Some(behind) = tail.first_missing(&facts) {
            return Err(ImportError::Behind {
                db: db.to_path_buf(),
                index: behind.index,
                what: behind.what,
                consistent_index,
            });
        }
    }
    info!(db = %db.display(), "importing etcd's database into a new oxetcd store");
    let staging = Staging::create(root, engine).map_err(|source| ImportError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let store_err = |source| ImportError::Store {
        path: db.to_path_buf(),
        source,
    };
    let backend = engine
        .open(&staging.kv_path(), IMPORT_CACHE_BYTES)
        .map_err(store_err)?;
    let (store, summary) =
        Store::import_etcd_db(backend, &reader, &lease_record).map_err(store_err)?;
    let auth_records = auth.len();
    store
        .change_cluster_records(auth, None)
        .map_err(store_err)?;
    store.flush().map_err(store_err)?;
    drop(store);
    staging.commit().map_err(|source| ImportError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    info!(
        revision = summary.revision,
        compact_revision = summary.compact_revision,
        revisions_kept = summary.revisions,
        leases = summary.leases,
        auth_records,
        etcd_consistent_index = summary.consistent_index,
        "imported etcd's database; etcd's member/ directory is left unchanged"
    );
    Ok(())
}

/// Our lease record for etcd's lease: `lease::lessor::LeaseRecord` is
/// `leasepb.Lease` field for field (ID 1, TTL 2, RemainingTTL 3).
fn lease_record(lease: EtcdLease) -> Bytes {
    Bytes::from(lease.encode_to_vec())
}

/// The database's consistent index, and what the WAL check needs of it.
fn db_facts<S: oxetcd_storage::bbolt::PageSource>(
    db: &Reader<S>,
) -> Result<(u64, DbFacts), BboltError> {
    let mut index = 0;
    let mut scheduled_compact = 0;
    db.for_each(b"meta", &mut |k, v| {
        if k == b"consistent_index" {
            let raw: [u8; 8] = v
                .try_into()
                .map_err(|_| BboltError::Corrupt("consistent_index is not 8 bytes".into()))?;
            index = u64::from_be_bytes(raw);
        } else if k == b"scheduledCompactRev" {
            let (rev, _) = parse_etcd_revision_key(v)
                .ok_or_else(|| BboltError::Corrupt("bad scheduledCompactRev".into()))?;
            scheduled_compact = rev.main;
        }
        Ok(())
    })?;
    let mut leases = BTreeSet::new();
    db.for_each(b"lease", &mut |k, _| {
        let raw: [u8; 8] = k
            .try_into()
            .map_err(|_| BboltError::Corrupt(format!("lease key {k:x?} is not 8 bytes")))?;
        leases.insert(i64::from_be_bytes(raw));
        Ok(())
    })?;
    Ok((
        index,
        DbFacts {
            leases,
            scheduled_compact,
        },
    ))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Cursor;

    use oxetcd_proto::mvccpb::KeyValue;
    use oxetcd_storage::bbolt::{etcd_revision_key, Writer};
    use oxetcd_storage::{KeyRange, RangeOptions, Revision};

    use super::super::{DataDir, DataDirError};
    use super::*;

    /// An etcd database: `foo` put at revisions 2 and 3, consistent index
    /// `ci`, lease 7.
    fn etcd_db(ci: u64) -> Vec<u8> {
        let mut w = Writer::new(Cursor::new(Vec::new())).unwrap();
        let kvs = (2..=3).map(|rev| {
            let kv = KeyValue {
                key: Bytes::from_static(b"foo"),
                create_revision: 2,
                mod_revision: rev,
                version: rev - 1,
                value: Bytes::from(format!("v{rev}")),
                lease: 0,
            };
            Ok((
                etcd_revision_key(Revision::new(rev, 0), false),
                kv.encode_to_vec(),
            ))
        });
        w.bucket(b"key", kvs).unwrap();
        w.bucket(
            b"meta",
            [Ok((
                b"consistent_index".to_vec(),
                ci.to_be_bytes().to_vec(),
            ))],
        )
        .unwrap();
        let lease = EtcdLease {
            id: 7,
            ttl: 60,
            remaining_ttl: 0,
        };
        w.bucket(
            b"lease",
            [Ok((7i64.to_be_bytes().to_vec(), lease.encode_to_vec()))],
        )
        .unwrap();
        // Auth enabled at auth revision 3, with root.
        w.bucket(
            b"auth",
            [
                Ok((b"authEnabled".to_vec(), vec![1])),
                Ok((b"authRevision".to_vec(), 3u64.to_be_bytes().to_vec())),
            ],
        )
        .unwrap();
        let root = oxetcd_proto::authpb::User {
            name: Bytes::from_static(b"root"),
            password: Bytes::from_static(b"$2a$04$hash"),
            roles: vec!["root".into()],
            options: None,
        };
        w.bucket(b"authUsers", [Ok((b"root".to_vec(), root.encode_to_vec()))])
            .unwrap();
        w.finish().unwrap().0.into_inner()
    }

    fn etcd_dir(ci: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("member/snap")).unwrap();
        fs::write(dir.path().join("member/snap/db"), etcd_db(ci)).unwrap();
        dir
    }

    #[test]
    fn an_etcd_data_dir_is_imported_once_and_left_unchanged() {
        for engine in Engine::ALL {
            imported_once_and_left_unchanged(engine);
        }
    }

    fn imported_once_and_left_unchanged(engine: Engine) {
        let dir = etcd_dir(5);
        let before = fs::read(dir.path().join("member/snap/db")).unwrap();
        // A crashed earlier import left a partial staging dir.
        fs::create_dir_all(dir.path().join("oxetcd.import/kv")).unwrap();
        let data = DataDir::prepare(dir.path(), Some(engine), None).unwrap();
        assert_eq!(data.engine(), engine);
        assert!(!dir.path().join("oxetcd.import").exists());
        assert!(data.imported_store_needs_snapshot());
        data.imported_store_snapshotted().unwrap();
        assert!(!data.imported_store_needs_snapshot());
        assert_eq!(fs::read(dir.path().join("member/snap/db")).unwrap(), before);

        let backend = data.engine().open(&data.kv_path(), 1 << 20).unwrap();
        let store = Store::open(backend).unwrap();
        assert_eq!(store.current_revision(), 3);
        let got = store
            .range(KeyRange::new(b"foo", b""), &RangeOptions::default())
            .unwrap();
        assert_eq!(got.kvs[0].value, "v3");
        let leases = store.lease_records().unwrap();
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].0, 7);
        let auth = crate::auth::AuthStore::load(
            &store,
            crate::auth::SimpleTokens::new(std::time::Duration::from_secs(1)),
            None,
        )
        .unwrap();
        assert!(auth.enabled());
        assert_eq!(auth.revision(), 3);
        assert!(auth.is_root("root"));
        // What is imported stays: a second prepare keeps the store.
        let mut txn = store.write();
        txn.put(Bytes::from_static(b"new"), Bytes::new(), 0);
        txn.end().unwrap();
        let _ = store.commit().unwrap();
        drop(store);
        let data = DataDir::prepare(dir.path(), None, None).unwrap();
        assert_eq!(data.engine(), engine);
        let backend = data.engine().open(&data.kv_path(), 1 << 20).unwrap();
        assert_eq!(Store::open(backend).unwrap().current_revision(), 4);
    }

    fn wal_with_put_at_6() -> Vec<u8> {
        super::super::etcd_wal::tests::segment_with_committed_put(6)
    }

    #[test]
    fn a_database_behind_its_wal_is_refused() {
        let dir = etcd_dir(5);
        fs::create_dir_all(dir.path().join("member/wal")).unwrap();
        fs::write(
            dir.path()
                .join("member/wal/0000000000000000-0000000000000000.wal"),
            wal_with_put_at_6(),
        )
        .unwrap();
        let err = DataDir::prepare(dir.path(), None, None).err().unwrap();
        assert!(
            matches!(
                err,
                DataDirError::Import(ImportError::Behind {
                    index: 6,
                    consistent_index: 5,
                    ..
                })
            ),
            "{err}"
        );
        assert!(!dir.path().join("oxetcd").exists());

        // The same WAL over a database that has index 6 is fine.
        let dir6 = etcd_dir(6);
        fs::create_dir_all(dir6.path().join("member/wal")).unwrap();
        fs::write(
            dir6.path()
                .join("member/wal/0000000000000000-0000000000000000.wal"),
            wal_with_put_at_6(),
        )
        .unwrap();
        DataDir::prepare(dir6.path(), None, None).unwrap();
    }
}
