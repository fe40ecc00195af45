//! What etcd's Maintenance Status and Defragment need of the store: the
//! engine's size in use beside its size on disk, and giving free space back.

use crate::error::Result;
use crate::store::Store;

impl Store {
    /// Bytes of the backend's size on disk that hold data (etcd's
    /// dbSizeInUse; [`Store::size_on_disk`] is dbSize).
    pub fn size_in_use(&self) -> Result<u64> {
        self.backend.size_in_use()
    }

    /// Makes everything applied durable, then shrinks the engine's file as far
    /// as the engine can (etcd's Defragment). Publishes nothing: what it makes
    /// durable becomes visible when the state machine publishes it.
    pub fn defragment(&self) -> Result<()> {
        self.backend.defragment()
    }
}
