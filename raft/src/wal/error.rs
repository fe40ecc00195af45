//! The WAL's errors.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a WAL operation failed.
///
/// Cloneable: one failed fsync fails every append of its batch, each with the
/// same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    /// An I/O call failed. `op` says which ("write", "fsync", "create", ...).
    #[error("WAL {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },

    /// A damaged record that is not a torn tail: it is in a segment that was
    /// complete before the next one was created, or valid records follow it.
    /// Raft cannot run on a log with a hole, so the WAL refuses to open.
    #[error(
        "WAL corrupt: {path} at offset {offset}: {reason}; this is not a torn write at \
         the tail, refusing to start (restore this member from a snapshot or remove and \
         re-add it)"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },

    /// A segment file that should not be there or is missing, or the directory
    /// holds something that is not a WAL.
    #[error("WAL segments in {dir}: {reason}")]
    BadLayout { dir: PathBuf, reason: String },

    /// An append whose index is not above the last entry (or the last purged
    /// one): the log would be overwritten without a truncate.
    #[error("WAL append of index {index} after index {last}: indexes must increase")]
    OutOfOrder { index: u64, last: u64 },

    /// An entry or record too large for the u32 length of a frame.
    #[error("WAL record of {len} bytes is larger than the 4 GiB frame limit")]
    TooLarge { len: usize },

    /// A membership entry could not be encoded or decoded.
    #[error("WAL membership encoding: {0}")]
    Membership(Arc<serde_json::Error>),

    /// An earlier write or fsync failed: what is on disk after it is unknown, so
    /// the WAL accepts nothing more. Reopen it to recover the durable prefix.
    #[error("WAL failed earlier and accepts no more writes: {0}")]
    Failed(Arc<WalError>),

    /// The writer thread is gone (the WAL is being dropped).
    #[error("WAL writer thread has stopped")]
    Closed,
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        WalError::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }
}
