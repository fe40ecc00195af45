//! The power-loss file system through real system calls on a real mount:
//! what survives a power cut is what was fsynced, file data and directory
//! entries alike, and the process sees its own writes until then.
//!
//! These need /dev/fuse, root and fusermount3 (`apt-get install fuse3`).
//! Without them they skip with the reason, except under CI=true, where
//! they fail: CI installs what they need.

mod support;

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use oxetcd_jepsen::powerfs::PowerFs;

/// A mount over a fresh backing dir, or `None` (skipped) without FUSE.
struct Mounted {
    fs: PowerFs,
    backing: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mounted {
    fn path(&self, name: &str) -> PathBuf {
        self.fs.mountpoint().join(name)
    }
}

fn mount() -> Option<Mounted> {
    if !support::power_fs_available() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("disk");
    let fs = PowerFs::mount_seeded(&backing, &dir.path().join("mnt"), 3).unwrap();
    Some(Mounted {
        fs,
        backing,
        _dir: dir,
    })
}

fn fsync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

/// Creates `name` with `content`, fsyncs it and the mount's root: durable.
fn durable_file(m: &Mounted, name: &str, content: &[u8]) {
    let mut file = File::create(m.path(name)).unwrap();
    file.write_all(content).unwrap();
    file.sync_all().unwrap();
    fsync_dir(m.fs.mountpoint());
}

#[test]
fn a_write_without_fsync_is_seen_then_lost() {
    let Some(m) = mount() else { return };
    durable_file(&m, "f", b"old content");
    let file = File::options().write(true).open(m.path("f")).unwrap();
    file.write_all_at(b"NEW", 0).unwrap();
    file.write_all_at(b" and more", 11).unwrap();
    drop(file);
    assert_eq!(fs::read(m.path("f")).unwrap(), b"NEW content and more");
    assert_eq!(fs::read(m.backing.join("f")).unwrap(), b"old content");
    m.fs.power_cut(false).unwrap();
    assert_eq!(fs::read(m.path("f")).unwrap(), b"old content");
}

#[test]
fn a_write_followed_by_fsync_survives() {
    let Some(m) = mount() else { return };
    durable_file(&m, "f", b"old content");
    let file = File::options().write(true).open(m.path("f")).unwrap();
    file.write_all_at(b"NEW", 0).unwrap();
    file.sync_data().unwrap();
    file.write_all_at(b"!", 11).unwrap();
    drop(file);
    m.fs.power_cut(false).unwrap();
    assert_eq!(fs::read(m.path("f")).unwrap(), b"NEW content");
}

#[test]
fn a_truncation_without_fsync_is_undone() {
    let Some(m) = mount() else { return };
    durable_file(&m, "f", b"0123456789");
    File::options()
        .write(true)
        .open(m.path("f"))
        .unwrap()
        .set_len(3)
        .unwrap();
    assert_eq!(fs::read(m.path("f")).unwrap(), b"012");
    m.fs.power_cut(false).unwrap();
    assert_eq!(fs::read(m.path("f")).unwrap(), b"0123456789");
}

#[test]
fn a_new_file_needs_its_directory_fsynced() {
    let Some(m) = mount() else { return };
    fs::create_dir(m.path("d")).unwrap();
    fsync_dir(m.fs.mountpoint());
    for name in ["lost", "kept"] {
        let mut file = File::create(m.path(&format!("d/{name}"))).unwrap();
        file.write_all(name.as_bytes()).unwrap();
        file.sync_all().unwrap();
        if name == "kept" {
            fsync_dir(&m.path("d"));
        }
    }
    assert_eq!(fs::read(m.path("d/lost")).unwrap(), b"lost");
    // The directory fsync made the journal durable up to "kept", "lost"
    // included: so "lost" is made in a directory of its own.
    fs::create_dir(m.path("e")).unwrap();
    fsync_dir(m.fs.mountpoint());
    let mut file = File::create(m.path("e/lost")).unwrap();
    file.write_all(b"lost").unwrap();
    file.sync_all().unwrap();
    m.fs.power_cut(false).unwrap();
    assert_eq!(fs::read(m.path("d/kept")).unwrap(), b"kept");
    assert!(!m.path("e/lost").exists(), "a file without a durable name");
    assert_eq!(fs::read_dir(m.path("e")).unwrap().count(), 0);
    assert_eq!(fs::read(m.backing.join("d/kept")).unwrap(), b"kept");
}

#[test]
fn a_rename_without_directory_fsync_is_undone() {
    let Some(m) = mount() else { return };
    durable_file(&m, "wal.tmp", b"segment");
    durable_file(&m, "wal", b"old segment");
    fs::rename(m.path("wal.tmp"), m.path("wal")).unwrap();
    assert_eq!(fs::read(m.path("wal")).unwrap(), b"segment");
    assert!(!m.path("wal.tmp").exists());
    m.fs.power_cut(false).unwrap();
    assert_eq!(fs::read(m.path("wal")).unwrap(), b"old segment");
    assert_eq!(fs::read(m.path("wal.tmp")).unwrap(), b"segment");
    // And with the fsync, it stays.
    fs::rename(m.path("wal.tmp"), m.path("wal")).unwrap();
    fsync_dir(m.fs.mountpoint());
    m.fs.power_cut(false).unwrap();
    assert_eq!(fs::read(m.path("wal")).unwrap(), b"segment");
    assert!(!m.path("wal.tmp").exists());
}

#[test]
fn an_unlink_without_directory_fsync_is_undone() {
    let Some(m) = mount() else { return };
    durable_file(&m, "f", b"here");
    fs::remove_file(m.path("f")).unwrap();
    assert!(!m.path("f").exists());
    m.fs.power_cut(false).unwrap();
    assert_eq!(fs::read(m.path("f")).unwrap(), b"here");
}

#[test]
fn a_torn_cut_keeps_a_strict_prefix_of_the_last_unsynced_write() {
    let Some(m) = mount() else { return };
    durable_file(&m, "f", b"");
    // Within one page: the kernel hands larger writes over page by page,
    // and the last of those would be the one torn.
    let last: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8 + 1).collect();
    let mut file = File::options().write(true).open(m.path("f")).unwrap();
    file.write_all(&[0xEE; 100]).unwrap();
    file.write_all(&last).unwrap();
    drop(file);
    let said = m.fs.power_cut(true).unwrap();
    let after = fs::read(m.path("f")).unwrap();
    assert!(said.contains("torn"), "{said}");
    assert!(after.len() > 100, "nothing of the last write kept: {said}");
    let kept = after.len() - 100;
    assert!(kept < last.len(), "the whole write survived: {said}");
    assert!(
        after[..100].iter().all(|&b| b == 0),
        "the earlier unsynced write survived"
    );
    assert!(
        after[100..] == last[..kept],
        "not a prefix of the last write"
    );
}

#[test]
fn directories_listings_and_metadata_follow_the_process_view() {
    let Some(m) = mount() else { return };
    fs::create_dir_all(m.path("a/b")).unwrap();
    fs::write(m.path("a/b/x"), b"12345").unwrap();
    let names: Vec<String> = fs::read_dir(m.path("a/b"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["x"]);
    assert_eq!(fs::metadata(m.path("a/b/x")).unwrap().len(), 5);
    assert!(fs::remove_dir(m.path("a/b")).is_err(), "not empty");
    fs::rename(m.path("a/b"), m.path("c")).unwrap();
    assert_eq!(fs::read(m.path("c/x")).unwrap(), b"12345");
    fsync_dir(m.fs.mountpoint());
    m.fs.power_cut(false).unwrap();
    // The journal up to the rename into the root is durable; x's data
    // was never fsynced.
    assert!(m.path("a").is_dir() && !m.path("a/b").exists());
    assert_eq!(fs::read(m.path("c/x")).unwrap(), b"");
}
