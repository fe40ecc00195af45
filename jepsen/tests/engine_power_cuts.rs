//! oxetcd's storage engines on the power-loss file system: what a flush
//! made durable survives a power cut, and a cut never leaves a store that
//! cannot be opened (sled's `conf`, written by sled without an fsync, was
//! one: docs/jepsen.md, Findings).
//!
//! Like tests/powerfs.rs these need /dev/fuse, root and fusermount3; without
//! them they skip with the reason, except under CI=true, where they fail.

mod support;

use std::fs::File;
use std::path::PathBuf;

use oxetcd_jepsen::powerfs::PowerFs;
use oxetcd_storage::{Backend, Bucket, Engine, WriteBatch};

struct Mounted {
    fs: PowerFs,
    _dir: tempfile::TempDir,
}

impl Mounted {
    fn kv(&self) -> PathBuf {
        self.fs.mountpoint().join("kv")
    }
}

fn mount(seed: u64) -> Option<Mounted> {
    if !support::power_fs_available() {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = PowerFs::mount_seeded(&dir.path().join("disk"), &dir.path().join("mnt"), seed)
        .expect("mount");
    Some(Mounted { fs, _dir: dir })
}

fn open(engine: Engine, m: &Mounted) -> Box<dyn Backend> {
    engine
        .open(&m.kv(), 1 << 20)
        .unwrap_or_else(|e| panic!("{engine} does not open after a power cut: {e}"))
}

fn put(b: &dyn Backend, key: &[u8]) {
    let mut batch = WriteBatch::default();
    batch.put(Bucket::Key, key.to_vec(), vec![b'v'; 300]);
    b.apply(batch).expect("apply");
}

/// Set in the child process that writes and then dies (see below): the
/// engine and its directory.
const CHILD_ENGINE: &str = "ENGINE_POWER_CUTS_CHILD_ENGINE";
const CHILD_DIR: &str = "ENGINE_POWER_CUTS_CHILD_DIR";

/// The child's part: a flushed write, an unflushed one, then death without
/// destructors (as kill -9: no engine gets to flush or fsync on close).
fn write_flush_write_and_die(engine: &str, dir: &str) -> ! {
    let engine = Engine::from_name(engine).expect("engine name");
    let b = engine
        .open(std::path::Path::new(dir), 1 << 20)
        .expect("open");
    put(b.as_ref(), b"flushed");
    b.flush().expect("flush");
    put(b.as_ref(), b"not flushed");
    std::process::abort()
}

#[test]
fn what_a_flush_made_durable_survives_a_power_cut() {
    if let (Ok(engine), Ok(dir)) = (std::env::var(CHILD_ENGINE), std::env::var(CHILD_DIR)) {
        write_flush_write_and_die(&engine, &dir);
    }
    for engine in Engine::ALL {
        for tear in [false, true] {
            let Some(m) = mount(7) else { return };
            let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
                .args(["--exact", "what_a_flush_made_durable_survives_a_power_cut"])
                .env(CHILD_ENGINE, engine.name())
                .env(CHILD_DIR, m.kv())
                .stdout(std::process::Stdio::null())
                .status()
                .expect("run the child");
            assert!(!status.success(), "the child did not die: {status}");
            m.fs.power_cut(tear).expect("power cut");
            let b = open(engine, &m);
            assert!(
                b.get(Bucket::Key, b"flushed").expect("get").is_some(),
                "{engine}: a flushed write was lost (torn cut: {tear})"
            );
        }
    }
}

#[test]
fn a_store_opened_then_cut_opens_again() {
    // A directory's fsync makes every name made before the last change to
    // it durable, in order, as a journaling file system's commit does: in a
    // member, the Raft log's, made after the store's. The engine's files then
    // exist after the cut with whatever of their contents was fsynced.
    for engine in Engine::ALL {
        for seed in 0..4 {
            let Some(m) = mount(seed) else { return };
            drop(open(engine, &m));
            File::create(m.fs.mountpoint().join("wal")).expect("create wal");
            File::open(m.fs.mountpoint())
                .and_then(|d| d.sync_all())
                .expect("fsync of the mount's root");
            m.fs.power_cut(true).expect("power cut");
            drop(open(engine, &m));
        }
    }
}
