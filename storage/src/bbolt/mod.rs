//! etcd's on-disk format: bbolt files, and etcd's layout inside them.
//!
//! etcd keeps its whole keyspace in one bbolt (B+tree) file, `member/snap/db`,
//! and its snapshots (`etcdctl snapshot save`) are that file plus a sha256.
//! This module reads and writes that format so data moves both ways between
//! etcd and oxetcd:
//!
//! - [`Reader`]: opens a bbolt file (any page size, inline and page-tree
//!   buckets, overflow pages), lists top-level buckets, visits a bucket's
//!   entries in key order. It reads pages on demand.
//! - [`Writer`]: writes a fresh, compact bbolt file bucket by bucket.
//! - [`Store::write_etcd_db`](crate::Store::write_etcd_db) and
//!   [`Store::import_etcd_db`](crate::Store::import_etcd_db): a whole store to
//!   and from etcd's layout (see `etcd`).
//!
//! The byte layout is documented in `page`. No crate was used: the Rust ports
//! of bbolt are young single-maintainer projects with heavy dependencies, and
//! reading and writing a compact file is a small part of bbolt.

mod etcd;
mod page;
mod read;
mod write;

pub use etcd::{
    etcd_revision_key, parse_etcd_revision_key, EtcdBucket, EtcdDbSummary, EtcdExport, EtcdLease,
};
pub use page::DEFAULT_PAGE_SIZE;
pub use read::{PageSource, Reader};
pub use write::Writer;

use crate::error::StorageError;

/// What can go wrong reading or writing a bbolt file.
#[derive(Debug, thiserror::Error)]
pub enum BboltError {
    #[error("not a bbolt file (bad magic or meta page)")]
    NotBbolt,
    #[error("bbolt format version {0} is not supported (only 2)")]
    Version(u32),
    #[error("corrupt bbolt file: {0}")]
    Corrupt(String),
    #[error("unsupported bbolt content: {0}")]
    Unsupported(String),
    #[error("invalid bbolt write: {0}")]
    Invalid(String),
    /// The data being written could not be read from its source.
    #[error("{0}")]
    Source(String),
    #[error("bbolt file I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl From<BboltError> for StorageError {
    fn from(e: BboltError) -> Self {
        match e {
            BboltError::Io(e) => StorageError::Backend(e.to_string()),
            BboltError::Source(e) => StorageError::Backend(e),
            other => StorageError::Corrupt(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests;
