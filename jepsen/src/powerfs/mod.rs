//! A power-loss file system: a FUSE mount over a backing directory that
//! keeps every write not yet fsynced in memory, as a kernel's page cache
//! does, and can drop it all at once, as a power cut does. Any server can
//! run on it unchanged (the `power` nemesis, [`crate::nemesis`]).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use oxetcd_jepsen::powerfs::PowerFs;
//! let fs = PowerFs::mount("/tmp/disk".as_ref(), "/tmp/mnt".as_ref())?;
//! std::fs::write("/tmp/mnt/f", b"never synced")?; // in memory only
//! // ... SIGKILL every process using /tmp/mnt, then:
//! fs.power_cut(false)?; // /tmp/mnt/f is gone, /tmp/disk never had it
//! # Ok(()) }
//! ```
//!
//! # The invariant
//!
//! The backing directory always holds exactly what was made durable:
//!
//! - a file's data in the backing directory is its content as of its last
//!   fsync / fdatasync (or O_SYNC write); writes and truncations since are
//!   dirty pages in memory ([`pages`]), which reads see;
//! - the names in the backing directory are the namespace as it was after
//!   some prefix of the namespace operations (create, mkdir, unlink, rmdir,
//!   rename), in the order they were made; the rest is a journal in memory
//!   ([`tree`]). An fsync of a directory makes the journal durable up to
//!   and including the last operation on that directory, and everything
//!   before it, in order, as a journaling file system commits its journal.
//!   So a rename or a new file is durable once either directory it touched
//!   is fsynced, and never before (stricter than ext4, which also commits
//!   on a file's fsync and every few seconds).
//!
//! A power cut ([`PowerFs::power_cut`]) drops the dirty pages and the
//! journal and reads the tree again from the backing directory; a file
//! whose creation was not durable (its data, fsynced or not, sits under
//! `.powerfs/` until then) is deleted, as fsck deletes orphans. With a torn
//! cut, a strict prefix of each file's last unsynced write reaches its
//! backing file first (the sectors that made it before the power went).
//!
//! Worked example, in directory `d` (durable, empty):
//!
//! | step | the process sees | a power cut after it leaves |
//! |---|---|---|
//! | 1. create `d/a`, write "xy" | `a` = "xy" | nothing |
//! | 2. fsync `a` | `a` = "xy" | nothing: `a` has no durable name |
//! | 3. fsync `d` | `a` = "xy" | `a` = "xy" |
//! | 4. write "z" at 2 | `a` = "xyz" | `a` = "xy" (torn: "xy" too, the only strict prefix of "z" is empty) |
//! | 5. rename `a` to `b` | `b` = "xyz" | `a` = "xy" |
//! | 6. fsync `b` | `b` = "xyz" | `a` = "xyz": the data is durable, the rename is not |
//! | 7. fsync `d` | `b` = "xyz" | `b` = "xyz" |
//! | 8. unlink `b` | nothing | `b` = "xyz" |
//!
//! What it does not model: chmod, chown and times are durable at once;
//! hard links, symlinks and special files are not served (servers do not
//! make them in their data dirs); extended attributes; reordering between
//! a file's own unsynced writes (a cut loses them all, or tears the last).

mod fuse;
pub mod pages;
pub mod tree;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fuser::{BackgroundSession, Config, MountOption};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::JepsenError;
use fuse::PowerFsOps;
use tree::Tree;

/// A mounted power-loss file system; unmounted when dropped.
pub struct PowerFs {
    /// Locked by the FUSE thread for each request, and by a power cut.
    tree: Arc<Mutex<Tree>>,
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
    /// How much of a write a torn cut keeps.
    rng: Mutex<ChaCha8Rng>,
}

impl PowerFs {
    /// Mounts the file system at `mountpoint` (created if missing), backed
    /// by `backing` (created if missing).
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<PowerFs, JepsenError> {
        PowerFs::mount_seeded(backing, mountpoint, 0)
    }

    /// Like [`PowerFs::mount`]; `seed` picks how much torn cuts keep.
    pub fn mount_seeded(
        backing: &Path,
        mountpoint: &Path,
        seed: u64,
    ) -> Result<PowerFs, JepsenError> {
        std::fs::create_dir_all(mountpoint).map_err(JepsenError::io(mountpoint))?;
        let tree = Tree::open(backing).map_err(JepsenError::io(backing))?;
        let tree = Arc::new(Mutex::new(tree));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("oxetcd-powerfs".into()),
            // The kernel checks permissions from the attributes we give.
            MountOption::DefaultPermissions,
        ];
        let ops = PowerFsOps { tree: tree.clone() };
        let session = fuser::spawn_mount(ops, mountpoint, &config)
            .map_err(|e| JepsenError::PowerFs(format!("mounting {}: {e}", mountpoint.display())))?;
        Ok(PowerFs {
            tree,
            session: Some(session),
            mountpoint: mountpoint.to_path_buf(),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        })
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Cuts the power: everything not yet durable is lost (with `tear`, a
    /// prefix of each file's last unsynced write is kept); says what was
    /// dropped. Every process using the mount must have been killed with
    /// SIGKILL first: one still running would see its files change under it.
    pub fn power_cut(&self, tear: bool) -> Result<String, JepsenError> {
        let mut tree = self.tree.lock().unwrap_or_else(|e| e.into_inner());
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        tree.power_cut(tear.then_some(&mut *rng))
            .map_err(JepsenError::io(&self.mountpoint))
    }

    /// Why power cuts cannot be made here, if they cannot: they need
    /// /dev/fuse, root (to mount, and for the members' namespaces) and
    /// Debian's fusermount3 (package fuse3), which fuser mounts through
    /// when mount(2) is refused.
    pub fn unavailable() -> Option<String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Some("not root".into());
        }
        if !Path::new("/dev/fuse").exists() {
            return Some("no /dev/fuse".into());
        }
        let fusermount = ["/usr/bin/fusermount3", "/bin/fusermount3"];
        if !fusermount.iter().any(|p| Path::new(p).exists()) {
            return Some("no fusermount3 (apt-get install fuse3)".into());
        }
        None
    }
}

impl Drop for PowerFs {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        if session.umount_and_join().is_err() {
            // Still busy (a process inside it): detach it, it goes when
            // they do.
            if let Ok(path) = std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes())
            {
                // SAFETY: a NUL-terminated path.
                unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}
