//! Member and cluster IDs, derived exactly as etcd derives them, so that a
//! member's ID depends only on its peer URLs and the cluster token (etcdctl and
//! etcd's tests see the same IDs etcd would print).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha1::{Digest, Sha1};

fn first_8_bytes_be(digest: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(b)
}

/// etcd's `NewMember`: SHA-1 of the sorted peer URLs followed by the token.
pub fn member_id(peer_urls: &[String], cluster_token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut h = Sha1::new();
    for u in urls {
        h.update(u.as_bytes());
    }
    h.update(cluster_token.as_bytes());
    first_8_bytes_be(&h.finalize())
}

/// etcd's cluster ID: SHA-1 of the sorted member IDs, big-endian.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    first_8_bytes_be(&h.finalize())
}

/// etcd's ID generator (`idutil.Generator`, used for lease IDs): the
/// member's low 16 bits, then a counter started from the time in
/// milliseconds (40 bits) shifted left by 8, so that members, and restarts
/// of one member, do not hand out the same IDs.
#[derive(Debug)]
pub struct IdGenerator {
    prefix: u64,
    suffix: AtomicU64,
}

const SUFFIX_BITS: u32 = 48;

impl IdGenerator {
    pub fn new(member_id: u64) -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self::starting_at(member_id, now_ms)
    }

    fn starting_at(member_id: u64, now_ms: u64) -> Self {
        Self {
            prefix: member_id << SUFFIX_BITS,
            suffix: AtomicU64::new((now_ms & ((1 << 40) - 1)) << 8),
        }
    }

    pub fn next(&self) -> u64 {
        let suffix = self.suffix.fetch_add(1, Ordering::Relaxed) + 1;
        self.prefix | (suffix & ((1 << SUFFIX_BITS) - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IDs etcd 3.4 gives the member of its e2e suite's one-node cluster
    /// (peer https://localhost:20001, token "new"): their protobuf encoding is
    /// what TestCtlV3GetFormat expects byte for byte.
    #[test]
    fn matches_etcd_for_its_e2e_member() {
        let m = member_id(&["https://localhost:20001".to_string()], "new");
        assert_eq!(m, 0x00a8_f345_8387_986d);
        assert_eq!(cluster_id(&[m]), 0x34c2_1a2d_427d_b393);
    }

    #[test]
    fn peer_url_order_does_not_matter() {
        let a = member_id(&["http://b:2380".into(), "http://a:2380".into()], "t");
        let b = member_id(&["http://a:2380".into(), "http://b:2380".into()], "t");
        assert_eq!(a, b);
        assert_ne!(
            a,
            member_id(&["http://a:2380".into(), "http://b:2380".into()], "other")
        );
    }

    #[test]
    fn generated_ids_carry_the_member_and_count_up() {
        let g = IdGenerator::starting_at(0x1234_5678_9abc_def0, 1);
        assert_eq!(g.next(), 0xdef0_0000_0000_0101);
        assert_eq!(g.next(), 0xdef0_0000_0000_0102);
        let other = IdGenerator::starting_at(0x1, 1);
        assert_eq!(other.next(), 0x0001_0000_0000_0101);
    }
}
