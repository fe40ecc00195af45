//! The data directory: where oxetcd keeps its files, and refusing directories
//! that are not ours.
//!
//! ```text
//! <data-dir>/oxetcd/FORMAT   "1": the layout version below
//! <data-dir>/oxetcd/kv/      the sled database of the MVCC store
//! <data-dir>/oxetcd/raft/    the Raft log (wal/) and the last snapshot (snapshot/)
//! <data-dir>/fixtures/       certificates made by --auto-tls / --peer-auto-tls
//! ```
//!
//! An etcd data directory (`member/wal`, `member/snap`) is refused with a clear
//! message rather than misread or overwritten.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const FORMAT: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data-dir {0:?} is an etcd data directory (it has member/); oxetcd cannot read etcd's on-disk format. Start oxetcd on an empty --data-dir and copy the keys over with an etcd client")]
    Etcd(PathBuf),
    #[error(
        "data-dir {path:?} has oxetcd layout version {found:?}, this oxetcd reads version {FORMAT}"
    )]
    Format { path: PathBuf, found: String },
    #[error("cannot prepare data-dir {path:?}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Checks `path` and creates our layout in it.
    pub fn prepare(path: &Path) -> Result<Self, DataDirError> {
        let io_err = |source| DataDirError::Io {
            path: path.to_path_buf(),
            source,
        };
        if path.join("member").exists() {
            return Err(DataDirError::Etcd(path.to_path_buf()));
        }
        let ours = path.join("oxetcd");
        fs::create_dir_all(&ours).map_err(io_err)?;
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
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::write(&format_file, FORMAT).map_err(io_err)?
            }
            Err(e) => return Err(io_err(e)),
        }
        Ok(Self { root: ours })
    }

    /// Where the Raft log (wal/) and the last snapshot (snapshot/) live.
    pub fn raft_path(&self) -> PathBuf {
        self.root.join("raft")
    }

    /// Where the MVCC store's database lives.
    pub fn kv_path(&self) -> PathBuf {
        self.root.join("kv")
    }
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
    fn refuses_etcd_data_dirs_and_unknown_layouts() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("member/wal")).unwrap();
        assert!(matches!(
            DataDir::prepare(dir.path()),
            Err(DataDirError::Etcd(_))
        ));

        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("oxetcd")).unwrap();
        fs::write(dir.path().join("oxetcd/FORMAT"), "99").unwrap();
        assert!(matches!(
            DataDir::prepare(dir.path()),
            Err(DataDirError::Format { .. })
        ));
    }

    #[test]
    fn prepares_a_fresh_dir_and_accepts_it_again() {
        let dir = tempfile::tempdir().unwrap();
        DataDir::prepare(dir.path()).unwrap();
        let again = DataDir::prepare(dir.path()).unwrap();
        assert!(again.kv_path().starts_with(dir.path()));
    }
}
