//! Fixtures of the criterion benchmarks (`benches/mvcc.rs`,
//! `benches/watch_fanout.rs`): stores preloaded with Kubernetes-like keys
//! (`/registry/pods/default/pod-000042`), written the way the server writes
//! them, one write txn (one revision) per put request and one group commit
//! (one fsync) per batch of requests. They live with the benchmarks, not in
//! the crate's library, so that the load generator does not link the storage
//! engine.

use std::path::Path;

use bytes::Bytes;
pub use oxetcd_proto::prefix_end;
use oxetcd_storage::{SledBackend, Store, WriteBuffer, FLUSH_INTERVAL};

/// The prefix every fixture key lives under, like a Kubernetes resource list.
pub const PREFIX: &str = "/registry/pods/default/";

/// Puts per commit while loading a fixture.
pub const LOAD_BATCH: usize = 1_000;

/// Backend page cache of fixture stores: large enough to hold a 100,000 key
/// store, so reads measure the store rather than the disk.
pub const CACHE_BYTES: u64 = 512 << 20;

/// The `i`-th fixture key, e.g. `/registry/pods/default/pod-000042`.
pub fn key(i: usize) -> Bytes {
    Bytes::from(format!("{PREFIX}pod-{i:06}"))
}

/// A `size`-byte value; `seed` varies the content between revisions.
pub fn value(size: usize, seed: u64) -> Bytes {
    Bytes::from(vec![b'a' + (seed % 26) as u8; size])
}

/// Opens an empty (or existing) store in `dir`, on the engine and write
/// buffer the server uses.
pub fn open_store(dir: &Path) -> Store {
    let engine = SledBackend::open(dir, CACHE_BYTES).expect("open sled backend");
    let backend = WriteBuffer::new(Box::new(engine), FLUSH_INTERVAL).expect("start write buffer");
    Store::open(Box::new(backend)).expect("open store")
}

/// A store in `dir` holding keys `0..n` with `value_size`-byte values, loaded
/// in batches of [`LOAD_BATCH`] puts: one write txn per put, one commit per
/// batch. Each put is one revision: the store's revision is then `n` past an
/// empty store's.
pub fn store_with_keys(dir: &Path, n: usize, value_size: usize) -> Store {
    let store = open_store(dir);
    put_all(&store, n, value_size);
    store
}

/// Puts every key `0..n` once more (one more revision of each, new content), in
/// the same batches as [`store_with_keys`].
pub fn put_all(store: &Store, n: usize, value_size: usize) {
    let seed = store.current_revision() as u64;
    for start in (0..n).step_by(LOAD_BATCH) {
        for i in start..(start + LOAD_BATCH).min(n) {
            let mut txn = store.write();
            txn.put(key(i), value(value_size, seed + i as u64), 0);
            txn.end().expect("apply put");
        }
        let _ = store.commit().expect("commit");
    }
}

/// Opens a copy of the closed store in `template` in the empty directory `dir`,
/// then reads every stored change once (as [`Store::hash_kv`] does) so the
/// backend's cache is as warm as a long-running server's. Much cheaper than
/// loading the same history again.
pub fn clone_store(template: &Path, dir: &Path) -> Store {
    copy_dir(template, dir).expect("copy template store");
    let store = open_store(dir);
    store.hash_kv(0).expect("read every stored change");
    store
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// A deterministic stream of key indexes spread uniformly over `0..n`
/// (splitmix64), so that benchmarks touch the whole key space the same way on
/// every run.
#[derive(Clone, Debug)]
pub struct KeyPicker {
    state: u64,
    n: u64,
}

impl KeyPicker {
    pub fn new(n: usize) -> Self {
        assert!(n > 0, "no keys to pick from");
        Self {
            state: 0x9e37_79b9_7f4a_7c15,
            n: n as u64,
        }
    }

    /// The next key index.
    pub fn next_index(&mut self) -> usize {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z % self.n) as usize
    }
}
