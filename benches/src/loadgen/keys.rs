//! Keys, values and timestamps the workloads put.
//!
//! - [`etcd_key`]: etcd's `benchmark put` keys, `key_size` bytes starting with
//!   the key's index as a Go varint (zeros after it), so a run matches etcd's
//!   own tool byte for byte in size.
//! - [`indexed_key`]: `prefix` + a 10-digit index, for workloads that range or
//!   watch over a prefix (keys sort in index order).
//! - [`stamp`] / [`since_stamp`]: nanoseconds of CLOCK_MONOTONIC, put in a
//!   value so that a watcher, in this process or another on the same
//!   machine, can tell how long the value took from the put being issued to
//!   the event arriving.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
pub use oxetcd_proto::prefix_end;

/// A small, fast, deterministic generator (splitmix64); each client seeds its
/// own, so runs touch keys the same way every time.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// `len` pseudo-random bytes (a value; its content does not matter, only that
/// it does not compress to nothing).
pub fn random_bytes(len: usize, seed: u64) -> Bytes {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// etcd `benchmark put`'s key `index`: `key_size` bytes holding the index as
/// Go's `binary.PutVarint` (zig-zag, then 7 bits a byte), zero-padded or cut
/// to `key_size`.
pub fn etcd_key(index: u64, key_size: usize) -> Bytes {
    let mut zigzag = index << 1; // index >= 0: zig-zag is a shift
    let mut out = Vec::with_capacity(key_size.max(10));
    loop {
        let byte = (zigzag & 0x7f) as u8;
        zigzag >>= 7;
        if zigzag == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.resize(key_size, 0);
    Bytes::from(out)
}

/// `prefix` followed by `index` as 10 digits: keys sort in index order.
pub fn indexed_key(prefix: &str, index: u64) -> Bytes {
    Bytes::from(format!("{prefix}{index:010}"))
}

/// The clock stamps count on: an `Instant` and the CLOCK_MONOTONIC reading
/// of the same moment. `Instant` is CLOCK_MONOTONIC on Linux, which is one
/// clock for the whole system, so stamps taken in one process can be read in
/// another (`watch --watch-processes`).
struct ClockBase {
    instant: Instant,
    monotonic_nanos: u64,
}

fn clock_base() -> &'static ClockBase {
    static BASE: OnceLock<ClockBase> = OnceLock::new();
    BASE.get_or_init(|| ClockBase {
        instant: Instant::now(),
        monotonic_nanos: monotonic_nanos(),
    })
}

/// CLOCK_MONOTONIC now, in nanoseconds.
fn monotonic_nanos() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `now`, which we own.
    // CLOCK_MONOTONIC is always there on Linux, so it cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0)
}

/// Starts the clock [`stamp`] counts from; call before taking any `Instant`
/// that will be stamped.
pub fn start_clock() {
    clock_base();
}

/// `at` as nanoseconds of CLOCK_MONOTONIC.
pub fn stamp(at: Instant) -> u64 {
    let base = clock_base();
    let since =
        u64::try_from(at.saturating_duration_since(base.instant).as_nanos()).unwrap_or(u64::MAX);
    base.monotonic_nanos.saturating_add(since)
}

/// How long ago the stamp was taken (in this process or another).
pub fn since_stamp(stamp: u64) -> Duration {
    let base = clock_base();
    let now = Duration::from_nanos(base.monotonic_nanos) + base.instant.elapsed();
    now.saturating_sub(Duration::from_nanos(stamp))
}

/// A value of `size` bytes (at least 16) carrying a stamp and a sequence
/// number in its first 16 bytes, then `fill`.
pub fn stamped_value(at: Instant, seq: u64, size: usize, fill: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(size.max(16));
    out.extend_from_slice(&stamp(at).to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    let rest = size.saturating_sub(16);
    out.extend(fill.iter().copied().cycle().take(rest));
    Bytes::from(out)
}

/// The stamp and sequence number of a [`stamped_value`].
pub fn read_stamped(value: &[u8]) -> Option<(u64, u64)> {
    let stamp = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
    let seq = u64::from_be_bytes(value.get(8..16)?.try_into().ok()?);
    Some((stamp, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_keys_are_go_varints_padded_to_key_size() {
        assert_eq!(etcd_key(0, 8).as_ref(), &[0u8; 8]);
        assert_eq!(etcd_key(1, 8).as_ref(), &[2, 0, 0, 0, 0, 0, 0, 0]);
        // 100 zig-zags to 200 = 0xc8: low 7 bits 0x48 with the continuation bit, then 1.
        assert_eq!(etcd_key(100, 4).as_ref(), &[0xc8, 0x01, 0, 0]);
        assert_ne!(etcd_key(63, 8), etcd_key(64, 8));
    }

    #[test]
    fn indexed_keys_sort_in_index_order() {
        assert_eq!(indexed_key("/p/", 42), "/p/0000000042");
        assert!(indexed_key("/p/", 9) < indexed_key("/p/", 10));
    }

    #[test]
    fn stamped_values_round_trip() {
        start_clock();
        let now = Instant::now();
        let v = stamped_value(now, 7, 40, b"xy");
        assert_eq!(v.len(), 40);
        let (s, seq) = read_stamped(&v).unwrap();
        assert_eq!((s, seq), (stamp(now), 7));
        assert!(since_stamp(s) < Duration::from_secs(60));
        assert_eq!(&v[16..20], b"xyxy");
        assert_eq!(read_stamped(b"short"), None);
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let (mut a, mut b) = (Rng::new(3), Rng::new(3));
        for _ in 0..100 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            assert!(x < 10);
        }
        assert_eq!(random_bytes(13, 1).len(), 13);
    }
}
