//! The file system's inodes: the namespace the process sees, where each
//! inode's durable copy is in the backing directory, and the journal of
//! namespace operations not yet made durable (see the invariant in
//! [`super`]).
//!
//! Every inode always has a backing object (a file or a directory): in the
//! backing directory under its durable name, or, while no durable name
//! points at it, under `.powerfs/<ino>` (a new file whose creation is not
//! yet durable, or a file unlinked durably but still open). That way a file
//! fsynced before its directory has its data on disk, and a later fsync of
//! the directory only renames it into place.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};
use rand_chacha::ChaCha8Rng;

use super::pages::Pages;

/// The root's inode number (FUSE's).
pub const ROOT: u64 = 1;
/// Under the backing root: backing objects without a durable name.
pub const STAGING: &str = ".powerfs";

/// A namespace operation, kept in the journal until a directory fsync
/// makes it durable.
#[derive(Debug)]
enum Op {
    /// create / mkdir: the staged object gets its name.
    Link {
        ino: u64,
        parent: u64,
        name: OsString,
    },
    /// unlink / rmdir: the object loses its name (staged while open).
    Unlink { ino: u64, parent: u64 },
    /// rename, over `replaced` if the target existed.
    Rename {
        ino: u64,
        to: (u64, OsString),
        from_parent: u64,
        replaced: Option<u64>,
    },
}

impl Op {
    /// Whether this operation changed directory `dir`'s entries.
    fn touches(&self, dir: u64) -> bool {
        match self {
            Op::Link { parent, .. } | Op::Unlink { parent, .. } => *parent == dir,
            Op::Rename {
                to, from_parent, ..
            } => to.0 == dir || *from_parent == dir,
        }
    }
}

/// Where an inode's backing object is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Loc {
    Root,
    Named { parent: u64, name: OsString },
    Staged,
}

enum Body {
    File { pages: Pages, file: File },
    Dir { children: BTreeMap<OsString, u64> },
}

struct Inode {
    body: Body,
    /// The directory it is in, as the process sees it (for `..`).
    parent: u64,
    /// Has a name the process sees.
    linked: bool,
    durable: Loc,
    /// Open file handles (files only).
    opens: u32,
}

/// An entry of a directory listing.
pub struct Entry {
    pub ino: u64,
    pub kind: FileType,
    pub name: OsString,
}

pub struct Tree {
    backing: PathBuf,
    inodes: HashMap<u64, Inode>,
    /// Never reused, across power cuts too: the kernel may still hold
    /// numbers from before a cut, and they must not name other files.
    next_ino: u64,
    /// Namespace operations the backing directory does not have yet, oldest
    /// first.
    journal: Vec<Op>,
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl Tree {
    /// The tree of what `backing` holds (created if missing); leftovers of
    /// a previous mount's staging area are deleted, as fsck does orphans.
    pub fn open(backing: &Path) -> io::Result<Tree> {
        fs::create_dir_all(backing)?;
        let mut tree = Tree {
            backing: backing.to_path_buf(),
            inodes: HashMap::new(),
            next_ino: ROOT + 1,
            journal: Vec::new(),
        };
        tree.reload()?;
        Ok(tree)
    }

    /// Forgets everything volatile and reads the backing directory again.
    fn reload(&mut self) -> io::Result<()> {
        self.inodes.clear();
        self.journal.clear();
        let staging = self.backing.join(STAGING);
        if staging.exists() {
            fs::remove_dir_all(&staging)?;
        }
        fs::create_dir(&staging)?;
        self.inodes.insert(
            ROOT,
            Inode {
                body: Body::Dir {
                    children: BTreeMap::new(),
                },
                parent: ROOT,
                linked: true,
                durable: Loc::Root,
                opens: 0,
            },
        );
        self.scan(ROOT, &self.backing.clone())
    }

    fn scan(&mut self, dir: u64, path: &Path) -> io::Result<()> {
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            let name = entry.file_name();
            if dir == ROOT && name == STAGING {
                continue;
            }
            let kind = entry.file_type()?;
            let durable = Loc::Named {
                parent: dir,
                name: name.clone(),
            };
            // Symlinks, devices and the like are not served (see `super`).
            let ino = if kind.is_dir() {
                let ino = self.add(dir, Body::dir(), durable);
                self.scan(ino, &entry.path())?;
                ino
            } else if kind.is_file() {
                let file = open_rw(&entry.path())?;
                let pages = Pages::new(file.metadata()?.len());
                self.add(dir, Body::File { pages, file }, durable)
            } else {
                continue;
            };
            self.children_mut(dir)?.insert(name, ino);
        }
        Ok(())
    }

    fn add(&mut self, parent: u64, body: Body, durable: Loc) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        let inode = Inode {
            body,
            parent,
            linked: true,
            durable,
            opens: 0,
        };
        self.inodes.insert(ino, inode);
        ino
    }

    fn inode(&self, ino: u64) -> io::Result<&Inode> {
        self.inodes.get(&ino).ok_or_else(|| errno(libc::ENOENT))
    }

    fn inode_mut(&mut self, ino: u64) -> io::Result<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or_else(|| errno(libc::ENOENT))
    }

    fn children(&self, dir: u64) -> io::Result<&BTreeMap<OsString, u64>> {
        match &self.inode(dir)?.body {
            Body::Dir { children } => Ok(children),
            Body::File { .. } => Err(errno(libc::ENOTDIR)),
        }
    }

    fn children_mut(&mut self, dir: u64) -> io::Result<&mut BTreeMap<OsString, u64>> {
        match &mut self.inode_mut(dir)?.body {
            Body::Dir { children } => Ok(children),
            Body::File { .. } => Err(errno(libc::ENOTDIR)),
        }
    }

    fn file(&self, ino: u64) -> io::Result<(&Pages, &File)> {
        match &self.inode(ino)?.body {
            Body::File { pages, file } => Ok((pages, file)),
            Body::Dir { .. } => Err(errno(libc::EISDIR)),
        }
    }

    fn file_mut(&mut self, ino: u64) -> io::Result<(&mut Pages, &File)> {
        match &mut self.inode_mut(ino)?.body {
            Body::File { pages, file } => Ok((pages, file)),
            Body::Dir { .. } => Err(errno(libc::EISDIR)),
        }
    }

    fn staged_path(&self, ino: u64) -> PathBuf {
        self.backing.join(STAGING).join(ino.to_string())
    }

    /// Where inode `ino`'s backing object is now.
    fn durable_path(&self, ino: u64) -> io::Result<PathBuf> {
        Ok(match &self.inode(ino)?.durable {
            Loc::Root => self.backing.clone(),
            Loc::Staged => self.staged_path(ino),
            Loc::Named { parent, name } => self.durable_path(*parent)?.join(name),
        })
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> io::Result<u64> {
        self.children(parent)?
            .get(name)
            .copied()
            .ok_or_else(|| errno(libc::ENOENT))
    }

    pub fn attr(&self, ino: u64) -> io::Result<FileAttr> {
        let inode = self.inode(ino)?;
        let (meta, kind, size) = match &inode.body {
            Body::File { pages, file } => (file.metadata()?, FileType::RegularFile, pages.size()),
            Body::Dir { children } => {
                let meta = fs::symlink_metadata(self.durable_path(ino)?)?;
                (meta, FileType::Directory, children.len() as u64)
            }
        };
        let time = |secs: i64, nsecs: i64| {
            UNIX_EPOCH + Duration::new(secs.max(0) as u64, nsecs.clamp(0, 999_999_999) as u32)
        };
        let nlink = match (kind, inode.linked) {
            (FileType::Directory, _) => 2,
            (_, true) => 1,
            (_, false) => 0,
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: UNIX_EPOCH,
            kind,
            perm: (meta.mode() & 0o7777) as u16,
            nlink,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: 0,
            blksize: super::pages::PAGE as u32,
            flags: 0,
        })
    }

    pub fn list(&self, dir: u64) -> io::Result<Vec<Entry>> {
        let parent = self.inode(dir)?.parent;
        let mut entries = vec![
            Entry {
                ino: dir,
                kind: FileType::Directory,
                name: ".".into(),
            },
            Entry {
                ino: parent,
                kind: FileType::Directory,
                name: "..".into(),
            },
        ];
        for (name, &ino) in self.children(dir)? {
            let kind = match self.inode(ino)?.body {
                Body::File { .. } => FileType::RegularFile,
                Body::Dir { .. } => FileType::Directory,
            };
            entries.push(Entry {
                ino,
                kind,
                name: name.clone(),
            });
        }
        Ok(entries)
    }

    fn check_free(&self, parent: u64, name: &OsStr) -> io::Result<()> {
        if name == STAGING && parent == ROOT {
            return Err(errno(libc::EPERM));
        }
        if self.children(parent)?.contains_key(name) {
            return Err(errno(libc::EEXIST));
        }
        Ok(())
    }

    /// A new file, staged on disk; its name is volatile.
    pub fn create(&mut self, parent: u64, name: &OsStr, mode: u32) -> io::Result<u64> {
        self.check_free(parent, name)?;
        let ino = self.next_ino;
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode & 0o7777)
            .open(self.staged_path(ino))?;
        let body = Body::File {
            pages: Pages::new(0),
            file,
        };
        self.link_new(parent, name, body)
    }

    pub fn mkdir(&mut self, parent: u64, name: &OsStr, mode: u32) -> io::Result<u64> {
        self.check_free(parent, name)?;
        fs::DirBuilder::new()
            .mode(mode & 0o7777)
            .create(self.staged_path(self.next_ino))?;
        self.link_new(parent, name, Body::dir())
    }

    fn link_new(&mut self, parent: u64, name: &OsStr, body: Body) -> io::Result<u64> {
        let ino = self.add(parent, body, Loc::Staged);
        self.children_mut(parent)?.insert(name.to_owned(), ino);
        self.journal.push(Op::Link {
            ino,
            parent,
            name: name.to_owned(),
        });
        Ok(ino)
    }

    /// Whether `ino` may go as a directory (`dir`) or as a file, as rmdir,
    /// unlink and rename over it require.
    fn check_removable(&self, ino: u64, dir: bool) -> io::Result<()> {
        match (&self.inode(ino)?.body, dir) {
            (Body::Dir { .. }, false) => Err(errno(libc::EISDIR)),
            (Body::File { .. }, true) => Err(errno(libc::ENOTDIR)),
            (Body::Dir { children }, true) if !children.is_empty() => Err(errno(libc::ENOTEMPTY)),
            _ => Ok(()),
        }
    }

    /// unlink (`dir` false) or rmdir (`dir` true).
    pub fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> io::Result<()> {
        let ino = self.lookup(parent, name)?;
        self.check_removable(ino, dir)?;
        self.children_mut(parent)?.remove(name);
        self.inode_mut(ino)?.linked = false;
        self.journal.push(Op::Unlink { ino, parent });
        Ok(())
    }

    pub fn rename(
        &mut self,
        from: (u64, &OsStr),
        to: (u64, &OsStr),
        no_replace: bool,
    ) -> io::Result<()> {
        let ino = self.lookup(from.0, from.1)?;
        if to.0 == ROOT && to.1 == STAGING {
            return Err(errno(libc::EPERM));
        }
        let is_dir = matches!(self.inode(ino)?.body, Body::Dir { .. });
        // A directory may not move into itself or below.
        let mut up = to.0;
        while is_dir && up != ROOT {
            if up == ino {
                return Err(errno(libc::EINVAL));
            }
            up = self.inode(up)?.parent;
        }
        let replaced = self.children(to.0)?.get(to.1).copied();
        if let Some(old) = replaced {
            if old == ino {
                return Ok(());
            }
            if no_replace {
                return Err(errno(libc::EEXIST));
            }
            self.check_removable(old, is_dir)?;
            self.inode_mut(old)?.linked = false;
        }
        self.children_mut(from.0)?.remove(from.1);
        self.children_mut(to.0)?.insert(to.1.to_owned(), ino);
        self.inode_mut(ino)?.parent = to.0;
        self.journal.push(Op::Rename {
            ino,
            to: (to.0, to.1.to_owned()),
            from_parent: from.0,
            replaced,
        });
        Ok(())
    }

    pub fn opened(&mut self, ino: u64) -> io::Result<()> {
        self.file(ino)?;
        self.inode_mut(ino)?.opens += 1;
        Ok(())
    }

    pub fn released(&mut self, ino: u64) -> io::Result<()> {
        let inode = self.inode_mut(ino)?;
        inode.opens = inode.opens.saturating_sub(1);
        self.forget_if_gone(ino)
    }

    pub fn read(&self, ino: u64, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let (pages, file) = self.file(ino)?;
        pages.read(file, offset, len)
    }

    pub fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> io::Result<()> {
        let (pages, file) = self.file_mut(ino)?;
        pages.write(file, offset, data)
    }

    pub fn set_len(&mut self, ino: u64, size: u64) -> io::Result<()> {
        self.file_mut(ino)?.0.set_len(size);
        Ok(())
    }

    pub fn extend_to(&mut self, ino: u64, end: u64) -> io::Result<()> {
        self.file_mut(ino)?.0.extend_to(end);
        Ok(())
    }

    /// chmod / chown go straight to the backing object: only data and
    /// names are modelled as volatile.
    pub fn set_owner_and_mode(
        &self,
        ino: u64,
        mode: Option<u32>,
        owner: (Option<u32>, Option<u32>),
    ) -> io::Result<()> {
        let path = self.durable_path(ino)?;
        if let Some(mode) = mode {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))?;
        }
        if owner.0.is_some() || owner.1.is_some() {
            std::os::unix::fs::lchown(&path, owner.0, owner.1)?;
        }
        Ok(())
    }

    /// The backing directory's file system's numbers.
    pub fn statfs(&self) -> io::Result<libc::statvfs> {
        let path = CString::new(self.backing.as_os_str().as_bytes())?;
        // SAFETY: statvfs is plain old data, all zeros is a valid value.
        let mut out: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a NUL-terminated path and a struct of the right type.
        if unsafe { libc::statvfs(path.as_ptr(), &mut out) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(out)
    }

    /// fsync / fdatasync of a file: its data becomes durable (not its name).
    pub fn sync_file(&mut self, ino: u64) -> io::Result<()> {
        let (pages, file) = self.file_mut(ino)?;
        pages.sync(file)
    }

    /// fsync of a directory: the journal up to its last operation on this
    /// directory becomes durable, in order (see [`super`] for why a prefix).
    pub fn sync_dir(&mut self, dir: u64) -> io::Result<()> {
        self.children(dir)?;
        let Some(last) = self.journal.iter().rposition(|op| op.touches(dir)) else {
            return Ok(());
        };
        let done: Vec<Op> = self.journal.drain(..=last).collect();
        for op in done {
            self.apply(op)?;
        }
        Ok(())
    }

    fn apply(&mut self, op: Op) -> io::Result<()> {
        match op {
            Op::Link { ino, parent, name } => self.move_to(ino, Loc::Named { parent, name }),
            Op::Unlink { ino, .. } => {
                self.move_to(ino, Loc::Staged)?;
                self.forget_if_gone(ino)
            }
            Op::Rename {
                ino, to, replaced, ..
            } => {
                if let Some(old) = replaced {
                    self.move_to(old, Loc::Staged)?;
                    self.forget_if_gone(old)?;
                }
                let (parent, name) = to;
                self.move_to(ino, Loc::Named { parent, name })
            }
        }
    }

    /// Renames `ino`'s backing object to `to`.
    fn move_to(&mut self, ino: u64, to: Loc) -> io::Result<()> {
        let from = self.durable_path(ino)?;
        let target = match &to {
            Loc::Root => return Err(errno(libc::EINVAL)),
            Loc::Staged => self.staged_path(ino),
            Loc::Named { parent, name } => self.durable_path(*parent)?.join(name),
        };
        fs::rename(&from, &target)?;
        self.inode_mut(ino)?.durable = to;
        Ok(())
    }

    /// Drops an inode nobody can reach any more: no name, none pending, not
    /// open. Its staged backing object goes too.
    fn forget_if_gone(&mut self, ino: u64) -> io::Result<()> {
        let Some(inode) = self.inodes.get(&ino) else {
            return Ok(());
        };
        if inode.linked || inode.opens > 0 || inode.durable != Loc::Staged {
            return Ok(());
        }
        let path = self.staged_path(ino);
        match inode.body {
            Body::File { .. } => fs::remove_file(&path)?,
            Body::Dir { .. } => fs::remove_dir(&path)?,
        }
        self.inodes.remove(&ino);
        Ok(())
    }

    /// Where the process sees `ino` (for what a cut says it dropped);
    /// `?` for a file without a name.
    fn visible_path(&self, ino: u64) -> String {
        let Some(inode) = self.inodes.get(&ino).filter(|i| i.linked) else {
            return "?".into();
        };
        let parent = inode.parent;
        let name = self
            .children(parent)
            .ok()
            .and_then(|c| c.iter().find(|(_, &i)| i == ino))
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "?".into());
        if parent == ROOT {
            name
        } else {
            format!("{}/{name}", self.visible_path(parent))
        }
    }

    /// The power goes: every unsynced write and journal entry is lost
    /// (with `tear`, a prefix of each file's last unsynced write reaches
    /// its backing file first); the tree is read again from the backing
    /// directory. Says what it dropped.
    pub fn power_cut(&mut self, tear: Option<&mut ChaCha8Rng>) -> io::Result<String> {
        let mut dirty: Vec<String> = self
            .inodes
            .iter()
            .filter(|(_, i)| matches!(&i.body, Body::File { pages, .. } if pages.is_dirty()))
            .map(|(&ino, _)| self.visible_path(ino))
            .collect();
        dirty.sort();
        let journal = self.journal.len();
        let mut torn = String::new();
        if let Some(rng) = tear {
            let mut files: Vec<(&u64, &Inode)> = self.inodes.iter().collect();
            files.sort_by_key(|(ino, _)| **ino);
            for (_, inode) in files {
                if let Body::File { pages, file } = &inode.body {
                    if let Some((kept, of)) = pages.tear(file, &mut *rng)? {
                        torn.push_str(&format!(", torn {kept}/{of} B"));
                    }
                }
            }
        }
        self.reload()?;
        Ok(format!(
            "unsynced data of {} files [{}] and {journal} unsynced directory changes dropped{torn}",
            dirty.len(),
            dirty.join(" ")
        ))
    }
}

impl Body {
    fn dir() -> Body {
        Body::Dir {
            children: BTreeMap::new(),
        }
    }
}

/// The backing file of an inode, read-write (read-only if that is all the
/// tester may do).
fn open_rw(path: &Path) -> io::Result<File> {
    match File::options().read(true).write(true).open(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => File::open(path),
        other => other,
    }
}
