//! Members' data dirs on the power-loss file system ([`crate::powerfs`]),
//! for the `power` nemesis: member `<dir>` keeps its durable bytes in
//! `<dir>/disk/` and runs on `<dir>/mnt/data`, a mount of it. After a run
//! (the mounts gone), `<dir>/disk/data` is what the member had made durable.

use std::fs::{self, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::error::JepsenError;
use crate::powerfs::PowerFs;

/// Mounts member `dir`'s disk; returns the mount and the data dir on it.
///
/// The data dir is made, empty and durable, before the member first
/// starts, as an installer makes it: a server is not asked to fsync the
/// directory its data dir is in, and one whose whole data dir a cut took
/// away would come back as a new, empty member.
pub fn mount(dir: &Path, seed: u64) -> Result<(PowerFs, PathBuf), JepsenError> {
    let fs = PowerFs::mount_seeded(&dir.join("disk"), &dir.join("mnt"), seed)?;
    let data = fs.mountpoint().join("data");
    if !data.exists() {
        // etcd keeps its data dir private, and warns about any other mode.
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&data)
            .map_err(JepsenError::io(&data))?;
    }
    File::open(fs.mountpoint())
        .and_then(|root| root.sync_all())
        .map_err(JepsenError::io(fs.mountpoint()))?;
    Ok((fs, data))
}
