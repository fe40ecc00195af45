//! The data directory: where oxetcd keeps its files, importing etcd's, and
//! refusing directories that are not ours.
//!
//! ```text
//! <data-dir>/oxetcd/FORMAT   "1": the layout version below
//! <data-dir>/oxetcd/ENGINE   "sled" or "redb": the MVCC store's engine (see
//!                            `engine`; absent before engines were recorded:
//!                            then sled)
//! <data-dir>/oxetcd/kv/      the MVCC store's database: sled's files, or
//!                            redb's one file (data.redb)
//! <data-dir>/oxetcd/raft/    the Raft log (wal/) and the last snapshot's meta (snapshot/:
//!                            the store is its data)
//! <data-dir>/oxetcd/WAL_DIR  with --wal-dir: the directory that holds the Raft
//!                            log instead of raft/wal/ (its segment files
//!                            directly in it, as etcd's WAL files)
//! <data-dir>/oxetcd/IMPORTED present from an import from etcd until the first
//!                            start has put the imported store in a snapshot
//! <data-dir>/oxetcd.import/  an import from etcd in progress (see `import`)
//! <data-dir>/fixtures/       certificates made by --auto-tls / --peer-auto-tls
//! <data-dir>/member/         etcd's data, if the directory was etcd's: read
//!                            once by the import, never changed
//! ```
//!
//! An etcd data directory (`member/snap/db`, e.g. made by `etcdctl snapshot
//! restore`) without `oxetcd/` is imported first; one without a database is
//! refused with a clear message rather than misread.

mod engine;
mod etcd_wal;
mod import;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use oxetcd_storage::Engine;

pub use import::ImportError;

const FORMAT: &str = "1";
/// Where an import builds the store before it becomes `oxetcd/`.
const STAGING: &str = "oxetcd.import";
/// In `oxetcd/` from an import until the imported store is in a Raft snapshot.
const IMPORTED: &str = "IMPORTED";

/// Records the --wal-dir a data dir's Raft log was started with.
const WAL_DIR_FILE: &str = "WAL_DIR";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data-dir {path:?} keeps its Raft log in --wal-dir={recorded:?}; start with that --wal-dir (given: {given})")]
    WalDirMoved {
        path: PathBuf,
        recorded: PathBuf,
        given: String,
    },
    #[error("data-dir {path:?} keeps its Raft log inside it ({inside:?}); --wal-dir={given:?} would start an empty log beside its data (omit --wal-dir, or move the files there)")]
    WalDirNotEmpty {
        path: PathBuf,
        inside: PathBuf,
        given: PathBuf,
    },
    #[error("data-dir {0:?} is an etcd data directory (it has member/) without a database (member/snap/db) to import")]
    Etcd(PathBuf),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(
        "data-dir {path:?} has oxetcd layout version {found:?}, this oxetcd reads version {FORMAT}"
    )]
    Format { path: PathBuf, found: String },
    #[error("data-dir {path:?} holds a store written with the {recorded} engine; --experimental-backend={requested} cannot open it (omit the flag, or give --experimental-backend={recorded})")]
    EngineMismatch {
        path: PathBuf,
        recorded: Engine,
        requested: Engine,
    },
    #[error("data-dir {path:?} names storage engine {found:?} in oxetcd/ENGINE; this oxetcd has sled and redb")]
    UnknownEngine { path: PathBuf, found: String },
    #[error("cannot prepare data-dir {path:?}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

pub struct DataDir {
    root: PathBuf,
    engine: Engine,
    wal: PathBuf,
}

/// Where Raft keeps its files.
#[derive(Clone, Debug)]
pub struct RaftPaths {
    /// The log's segment files: `oxetcd/raft/wal/`, or --wal-dir.
    pub wal: PathBuf,
    /// The last snapshot.
    pub snapshot: PathBuf,
}

impl DataDir {
    /// Checks `path` and creates our layout in it, importing etcd's data
    /// first if it is an etcd data directory we have not imported yet.
    /// `engine` is --experimental-backend: the engine of a new store, and
    /// of an existing one if given (see `engine`). `wal_dir` is --wal-dir:
    /// the Raft log's directory when it is not in the data dir; a data dir
    /// remembers it, and refuses to start with another (or without it).
    pub fn prepare(
        path: &Path,
        engine: Option<Engine>,
        wal_dir: Option<&Path>,
    ) -> Result<Self, DataDirError> {
        let io_err = |source| DataDirError::Io {
            path: path.to_path_buf(),
            source,
        };
        let ours = path.join("oxetcd");
        if path.join("member").exists() && !ours.exists() {
            let db = path.join("member/snap/db");
            if !db.is_file() {
                return Err(DataDirError::Etcd(path.to_path_buf()));
            }
            import::import(path, &db, engine.unwrap_or(Engine::DEFAULT))?;
        }
        if !ours.exists() {
            fs::create_dir_all(&ours).map_err(io_err)?;
            // The new directory's name must survive a power cut too.
            fs::File::open(path)
                .and_then(|dir| dir.sync_all())
                .map_err(io_err)?;
        }
        set_private(path).map_err(io_err)?;
        let format_file = ours.join("FORMAT");
        match fs::read_to_string(&format_file) {
            Ok(found) if found.trim() == FORMAT => {}
            Ok(found) => {
                return Err(DataDirError::Format {
                    path: path.to_path_buf(),
                    found: found.trim().to_string(),
                })
            }
            // Written whole and durable (fsync, rename, directory fsync): a
            // power cut after a plain write left an empty FORMAT, and a member
            // that could not start (found by the Jepsen power nemesis).
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_atomically(&format_file, FORMAT.as_bytes()).map_err(io_err)?
            }
            Err(e) => return Err(io_err(e)),
        }
        let engine = engine::settle(path, &ours, engine)?;
        let wal = settle_wal_dir(path, &ours, wal_dir)?;
        Ok(Self {
            root: ours,
            engine,
            wal,
        })
    }

    /// The engine the MVCC store in `kv_path` is written with.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Where the Raft log and the last snapshot live.
    pub fn raft_paths(&self) -> RaftPaths {
        RaftPaths {
            wal: self.wal.clone(),
            snapshot: self.root.join("raft").join("snapshot"),
        }
    }

    /// True until the first start after an import from etcd has made a Raft
    /// snapshot of the imported store (see `import`).
    pub fn imported_store_needs_snapshot(&self) -> bool {
        self.root.join(IMPORTED).exists()
    }

    /// Records that the imported store is in a Raft snapshot.
    pub fn imported_store_snapshotted(&self) -> Result<(), DataDirError> {
        fs::remove_file(self.root.join(IMPORTED)).map_err(|source| DataDirError::Io {
            path: self.root.clone(),
            source,
        })
    }

    /// Where the MVCC store's database lives.
    pub fn kv_path(&self) -> PathBuf {
        self.root.join("kv")
    }
}

/// The Raft log's directory: `oxetcd/raft/wal/`, or `wal_dir` as recorded
/// in `oxetcd/WAL_DIR` by the first start with --wal-dir. A log moved away
/// or left behind would start a member with its data but an empty log (a
/// member that forgot what it voted and acknowledged): refused instead.
fn settle_wal_dir(
    path: &Path,
    ours: &Path,
    wal_dir: Option<&Path>,
) -> Result<PathBuf, DataDirError> {
    let io_err = |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    };
    let inside = ours.join("raft").join("wal");
    let record = ours.join(WAL_DIR_FILE);
    let recorded = match fs::read(&record) {
        Ok(raw) => Some(PathBuf::from(
            <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(raw),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(e)),
    };
    match (recorded, wal_dir) {
        (None, None) => Ok(inside),
        (Some(recorded), Some(given)) if recorded == given => Ok(recorded),
        (Some(recorded), given) => Err(DataDirError::WalDirMoved {
            path: path.to_path_buf(),
            recorded,
            given: given.map_or_else(|| "none".to_string(), |g| format!("{g:?}")),
        }),
        (None, Some(given)) => {
            let has_log = fs::read_dir(&inside)
                .map(|mut entries| entries.next().is_some())
                .unwrap_or(false);
            if has_log {
                return Err(DataDirError::WalDirNotEmpty {
                    path: path.to_path_buf(),
                    inside,
                    given: given.to_path_buf(),
                });
            }
            fs::create_dir_all(given).map_err(io_err)?;
            write_atomically(
                &record,
                std::os::unix::ffi::OsStrExt::as_bytes(given.as_os_str()),
            )
            .map_err(io_err)?;
            Ok(given.to_path_buf())
        }
    }
}

/// An oxetcd layout under construction (see `import`): complete it, then
/// `commit` makes it the data dir's in one rename.
struct Staging {
    root: PathBuf,
    staging: PathBuf,
}

impl Staging {
    /// A fresh staging dir in data dir `root` for a store of `engine` (a
    /// leftover of a crashed import is removed).
    fn create(root: &Path, engine: Engine) -> io::Result<Self> {
        let staging = root.join(STAGING);
        if staging.exists() {
            fs::remove_dir_all(&staging)?;
        }
        fs::create_dir_all(&staging)?;
        fs::write(staging.join("FORMAT"), FORMAT)?;
        fs::write(staging.join(engine::ENGINE_FILE), engine.name())?;
        fs::write(staging.join(IMPORTED), "")?;
        Ok(Self {
            root: root.to_path_buf(),
            staging,
        })
    }

    fn kv_path(&self) -> PathBuf {
        self.staging.join("kv")
    }

    /// Renames the staging dir to `oxetcd/`, durably.
    fn commit(self) -> io::Result<()> {
        fs::File::open(self.staging.join("FORMAT"))?.sync_all()?;
        fs::File::open(self.staging.join(engine::ENGINE_FILE))?.sync_all()?;
        fs::File::open(&self.staging)?.sync_all()?;
        fs::rename(&self.staging, self.root.join("oxetcd"))?;
        fs::File::open(&self.root)?.sync_all()
    }
}

/// Replaces `path` with `data` so that a crash or a power cut leaves the old
/// file or the new one whole, never a mix: fsynced under a temporary name,
/// renamed over, the directory fsynced.
pub(crate) fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut file = atomic_write_file::AtomicWriteFile::open(path)?;
    file.write_all(data)?;
    file.commit()
}

/// etcd keeps its data directory private (0700).
fn set_private(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_etcd_data_dirs_without_a_database_and_unknown_layouts() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("member/wal")).unwrap();
        assert!(matches!(
            DataDir::prepare(dir.path(), None, None),
            Err(DataDirError::Etcd(_))
        ));

        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("oxetcd")).unwrap();
        fs::write(dir.path().join("oxetcd/FORMAT"), "99").unwrap();
        assert!(matches!(
            DataDir::prepare(dir.path(), None, None),
            Err(DataDirError::Format { .. })
        ));
    }

    #[test]
    fn prepares_a_fresh_dir_and_accepts_it_again() {
        let dir = tempfile::tempdir().unwrap();
        DataDir::prepare(dir.path(), None, None).unwrap();
        let again = DataDir::prepare(dir.path(), None, None).unwrap();
        assert!(again.kv_path().starts_with(dir.path()));
        assert!(again.raft_paths().wal.starts_with(dir.path()));
    }

    #[test]
    fn a_wal_dir_is_remembered_and_required_again() {
        let dir = tempfile::tempdir().unwrap();
        let wal = tempfile::tempdir().unwrap();
        let walp = wal.path().join("wal");
        let first = DataDir::prepare(dir.path(), None, Some(&walp)).unwrap();
        assert_eq!(first.raft_paths().wal, walp);
        assert!(walp.is_dir());
        let again = DataDir::prepare(dir.path(), None, Some(&walp)).unwrap();
        assert_eq!(again.raft_paths().wal, walp);
        assert!(matches!(
            DataDir::prepare(dir.path(), None, None),
            Err(DataDirError::WalDirMoved { .. })
        ));
        assert!(matches!(
            DataDir::prepare(dir.path(), None, Some(&wal.path().join("other"))),
            Err(DataDirError::WalDirMoved { .. })
        ));
        // A log already inside the data dir is not left behind.
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::prepare(dir.path(), None, None).unwrap();
        fs::create_dir_all(&d.raft_paths().wal).unwrap();
        fs::write(d.raft_paths().wal.join("segment"), "x").unwrap();
        assert!(matches!(
            DataDir::prepare(dir.path(), None, Some(&walp)),
            Err(DataDirError::WalDirNotEmpty { .. })
        ));
    }
}
