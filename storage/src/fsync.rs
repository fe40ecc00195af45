//! fsync of files and directories, for engines that must make durable what
//! they (or the library under them) wrote without one.

use std::fs::File;
use std::path::Path;

use crate::error::{Result, StorageError};

pub(crate) fn io_err(what: &str, path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Backend(format!("{what} {}: {e}", path.display()))
}

/// fsyncs file `path`: its data and metadata.
pub(crate) fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err("fsync of", path, e))
}

/// fsyncs directory `dir`, so that the names made in it survive a power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("fsync of directory", dir, e))
}
