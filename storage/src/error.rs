//! Storage errors. The server maps them to etcd's gRPC statuses in one place.

/// What can go wrong in the MVCC engine.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The requested revision was removed by compaction.
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// The requested revision has not happened yet.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// The backend failed (I/O); nothing was acknowledged.
    #[error("backend: {0}")]
    Backend(String),
    /// The data on disk does not decode: refuse to serve rather than guess.
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

impl From<sled::Error> for StorageError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Corruption { .. } => StorageError::Corrupt(e.to_string()),
            other => StorageError::Backend(other.to_string()),
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
