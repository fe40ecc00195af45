//! bbolt's on-disk structures, byte by byte (all integers little-endian, as
//! bbolt writes them on every platform etcd runs on).
//!
//! A file is a sequence of pages of `page_size` bytes (4096 here). Every page
//! starts with a 16-byte header:
//!
//! ```text
//! 0..8    id        u64  the page's own number (file offset / page_size)
//! 8..10   flags     u16  0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist
//! 10..12  count     u16  elements on the page (freelist: ids; 0xFFFF = see below)
//! 12..16  overflow  u32  how many more pages this one spans
//! ```
//!
//! Pages 0 and 1 are meta pages (the one with the higher txid that passes its
//! checksum is current). After the header:
//!
//! ```text
//! 0..4 magic 0xED0CDAED | 4..8 version 2 | 8..12 page_size | 12..16 flags
//! 16..24 root bucket's root page | 24..32 root bucket's sequence
//! 32..40 freelist page | 40..48 pgid: high water mark (pages in use)
//! 48..56 txid | 56..64 checksum: FNV-64a of bytes 0..56
//! ```
//!
//! Branch and leaf pages hold `count` 16-byte elements, then the keys and
//! values they point at (`pos` counts from the element's own first byte):
//!
//! ```text
//! branch element: pos u32 | ksize u32 | child pgid u64     key = child's first key
//! leaf element:   flags u32 | pos u32 | ksize u32 | vsize u32   flags 0x01 = sub-bucket
//! ```
//!
//! A bucket is a leaf entry of its parent whose value starts with a 16-byte
//! header (root pgid u64, sequence u64). Root 0 means *inline*: a leaf page
//! (header with id 0, elements, data) follows in the value itself, which
//! bbolt does for buckets of at most page_size/4 bytes. The freelist page
//! lists free page ids (u64 each); a count of 0xFFFF means the first u64 is
//! the real count.
//!
//! Worked example, an inline bucket holding `a -> xy` (values in hex):
//! `0000000000000000 0000000000000000` (root 0, sequence 0), then the page
//! `0000000000000000 0200 0100 00000000` (leaf, 1 element), the element
//! `00000000 10000000 01000000 02000000` (pos 16: the data right after it),
//! and the data `61 7879`.

use super::BboltError;

pub const PAGE_HEADER_SIZE: usize = 16;
pub const ELEMENT_SIZE: usize = 16;
pub const BUCKET_HEADER_SIZE: usize = 16;
/// The page size this writer uses: the OS page size on every platform etcd
/// supports officially (bbolt takes whatever the meta page says when reading).
pub const DEFAULT_PAGE_SIZE: usize = 4096;

pub const BRANCH_PAGE: u16 = 0x01;
pub const LEAF_PAGE: u16 = 0x02;
pub const META_PAGE: u16 = 0x04;
pub const FREELIST_PAGE: u16 = 0x10;
/// A leaf element whose value is a sub-bucket.
pub const BUCKET_LEAF_FLAG: u32 = 0x01;

pub const MAGIC: u32 = 0xED0C_DAED;
pub const VERSION: u32 = 2;
/// Bytes of the meta struct covered by its checksum.
const META_CHECKSUMMED: usize = 56;
pub const META_SIZE: usize = 64;

pub fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(raw)
}

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(raw)
}

/// FNV-1a, 64 bits: bbolt's meta checksum.
pub fn fnv64a(data: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    data.iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// A page header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageHeader {
    pub id: u64,
    pub flags: u16,
    pub count: u16,
    pub overflow: u32,
}

impl PageHeader {
    pub fn decode(b: &[u8]) -> Result<Self, BboltError> {
        if b.len() < PAGE_HEADER_SIZE {
            return Err(BboltError::Corrupt("truncated page header".into()));
        }
        Ok(Self {
            id: u64_at(b, 0),
            flags: u16_at(b, 8),
            count: u16_at(b, 10),
            overflow: u32_at(b, 12),
        })
    }

    pub fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..10].copy_from_slice(&self.flags.to_le_bytes());
        out[10..12].copy_from_slice(&self.count.to_le_bytes());
        out[12..16].copy_from_slice(&self.overflow.to_le_bytes());
    }
}

/// A bucket's header: where its tree starts (0 = inline) and its sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketHeader {
    pub root: u64,
    pub sequence: u64,
}

impl BucketHeader {
    pub fn decode(b: &[u8]) -> Result<Self, BboltError> {
        if b.len() < BUCKET_HEADER_SIZE {
            return Err(BboltError::Corrupt("truncated bucket header".into()));
        }
        Ok(Self {
            root: u64_at(b, 0),
            sequence: u64_at(b, 8),
        })
    }

    pub fn encode(&self) -> [u8; BUCKET_HEADER_SIZE] {
        let mut out = [0u8; BUCKET_HEADER_SIZE];
        out[0..8].copy_from_slice(&self.root.to_le_bytes());
        out[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        out
    }
}

/// The meta page's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub page_size: u32,
    pub flags: u32,
    pub root: BucketHeader,
    pub freelist: u64,
    /// High water mark: pages `0..pgid` are in use.
    pub pgid: u64,
    pub txid: u64,
}

impl Meta {
    /// Decodes and validates the meta struct (the bytes after a page header).
    pub fn decode(b: &[u8]) -> Result<Self, BboltError> {
        if b.len() < META_SIZE {
            return Err(BboltError::Corrupt("truncated meta page".into()));
        }
        if u32_at(b, 0) != MAGIC {
            return Err(BboltError::NotBbolt);
        }
        let version = u32_at(b, 4);
        if version != VERSION {
            return Err(BboltError::Version(version));
        }
        let checksum = u64_at(b, 56);
        if checksum != fnv64a(&b[..META_CHECKSUMMED]) {
            return Err(BboltError::Corrupt("meta page checksum mismatch".into()));
        }
        Ok(Self {
            page_size: u32_at(b, 8),
            flags: u32_at(b, 12),
            root: BucketHeader::decode(&b[16..32])?,
            freelist: u64_at(b, 32),
            pgid: u64_at(b, 40),
            txid: u64_at(b, 48),
        })
    }

    /// The meta struct with its checksum.
    pub fn encode(&self) -> [u8; META_SIZE] {
        let mut out = [0u8; META_SIZE];
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&VERSION.to_le_bytes());
        out[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        out[12..16].copy_from_slice(&self.flags.to_le_bytes());
        out[16..32].copy_from_slice(&self.root.encode());
        out[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        out[40..48].copy_from_slice(&self.pgid.to_le_bytes());
        out[48..56].copy_from_slice(&self.txid.to_le_bytes());
        let sum = fnv64a(&out[..META_CHECKSUMMED]);
        out[56..64].copy_from_slice(&sum.to_le_bytes());
        out
    }
}

/// One element of a leaf page, borrowed from the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafElement<'a> {
    pub flags: u32,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// One element of a branch page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BranchElement<'a> {
    pub key: &'a [u8],
    pub child: u64,
}

fn element_slice(page: &[u8], elem_at: usize, pos: u32, len: usize) -> Result<&[u8], BboltError> {
    let start = elem_at
        .checked_add(pos as usize)
        .ok_or_else(|| BboltError::Corrupt("element position overflows".into()))?;
    page.get(start..start + len)
        .ok_or_else(|| BboltError::Corrupt("element points past its page".into()))
}

/// The elements of leaf page `page` (header included).
pub fn leaf_elements(page: &[u8]) -> Result<Vec<LeafElement<'_>>, BboltError> {
    let header = PageHeader::decode(page)?;
    (0..header.count as usize)
        .map(|i| {
            let at = PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
            let raw = page
                .get(at..at + ELEMENT_SIZE)
                .ok_or_else(|| BboltError::Corrupt("leaf elements past the page".into()))?;
            let pos = u32_at(raw, 4);
            let ksize = u32_at(raw, 8) as usize;
            let vsize = u32_at(raw, 12) as usize;
            let kv = element_slice(page, at, pos, ksize + vsize)?;
            Ok(LeafElement {
                flags: u32_at(raw, 0),
                key: &kv[..ksize],
                value: &kv[ksize..],
            })
        })
        .collect()
}

/// The elements of branch page `page` (header included).
pub fn branch_elements(page: &[u8]) -> Result<Vec<BranchElement<'_>>, BboltError> {
    let header = PageHeader::decode(page)?;
    (0..header.count as usize)
        .map(|i| {
            let at = PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
            let raw = page
                .get(at..at + ELEMENT_SIZE)
                .ok_or_else(|| BboltError::Corrupt("branch elements past the page".into()))?;
            let key = element_slice(page, at, u32_at(raw, 0), u32_at(raw, 4) as usize)?;
            Ok(BranchElement {
                key,
                child: u64_at(raw, 8),
            })
        })
        .collect()
}

/// Lays out a leaf page (header id `id`, no padding): elements, then data.
pub fn encode_leaf(id: u64, items: &[(u32, &[u8], &[u8])]) -> Vec<u8> {
    let data: usize = items.iter().map(|(_, k, v)| k.len() + v.len()).sum();
    let mut page = vec![0u8; PAGE_HEADER_SIZE + items.len() * ELEMENT_SIZE + data];
    let mut off = PAGE_HEADER_SIZE + items.len() * ELEMENT_SIZE;
    for (i, (flags, k, v)) in items.iter().enumerate() {
        let at = PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
        page[at..at + 4].copy_from_slice(&flags.to_le_bytes());
        page[at + 4..at + 8].copy_from_slice(&((off - at) as u32).to_le_bytes());
        page[at + 8..at + 12].copy_from_slice(&(k.len() as u32).to_le_bytes());
        page[at + 12..at + 16].copy_from_slice(&(v.len() as u32).to_le_bytes());
        page[off..off + k.len()].copy_from_slice(k);
        off += k.len();
        page[off..off + v.len()].copy_from_slice(v);
        off += v.len();
    }
    PageHeader {
        id,
        flags: LEAF_PAGE,
        count: items.len() as u16,
        overflow: 0,
    }
    .encode(&mut page);
    page
}

/// Lays out a branch page (header id `id`, no padding).
pub fn encode_branch(id: u64, items: &[(&[u8], u64)]) -> Vec<u8> {
    let data: usize = items.iter().map(|(k, _)| k.len()).sum();
    let mut page = vec![0u8; PAGE_HEADER_SIZE + items.len() * ELEMENT_SIZE + data];
    let mut off = PAGE_HEADER_SIZE + items.len() * ELEMENT_SIZE;
    for (i, (k, child)) in items.iter().enumerate() {
        let at = PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
        page[at..at + 4].copy_from_slice(&((off - at) as u32).to_le_bytes());
        page[at + 4..at + 8].copy_from_slice(&(k.len() as u32).to_le_bytes());
        page[at + 8..at + 16].copy_from_slice(&child.to_le_bytes());
        page[off..off + k.len()].copy_from_slice(k);
        off += k.len();
    }
    PageHeader {
        id,
        flags: BRANCH_PAGE,
        count: items.len() as u16,
        overflow: 0,
    }
    .encode(&mut page);
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv64a_matches_the_reference_vectors() {
        // From the FNV reference (draft-eastlake-fnv): "" and "a".
        assert_eq!(fnv64a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv64a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv64a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn meta_round_trips_and_rejects_damage() {
        let meta = Meta {
            page_size: 4096,
            flags: 0,
            root: BucketHeader {
                root: 3,
                sequence: 0,
            },
            freelist: 2,
            pgid: 4,
            txid: 7,
        };
        let mut raw = meta.encode();
        assert_eq!(Meta::decode(&raw).unwrap(), meta);
        raw[20] ^= 1;
        assert!(matches!(Meta::decode(&raw), Err(BboltError::Corrupt(_))));
        raw[0] = 0;
        assert!(matches!(Meta::decode(&raw), Err(BboltError::NotBbolt)));
    }

    #[test]
    fn inline_bucket_layout_matches_the_worked_example() {
        let page = encode_leaf(0, &[(0, b"a", b"xy")]);
        let hex: String = page.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "0000000000000000020001000000000000000000100000000100000002000000617879"
        );
        let elems = leaf_elements(&page).unwrap();
        assert_eq!(elems[0].key, b"a");
        assert_eq!(elems[0].value, b"xy");
    }

    #[test]
    fn branch_elements_round_trip() {
        let page = encode_branch(9, &[(b"a", 3), (b"mm", 4)]);
        let elems = branch_elements(&page).unwrap();
        assert_eq!(elems.len(), 2);
        assert_eq!((elems[1].key, elems[1].child), (&b"mm"[..], 4));
        assert_eq!(PageHeader::decode(&page).unwrap().id, 9);
    }

    #[test]
    fn elements_pointing_outside_the_page_are_corrupt() {
        let mut page = encode_leaf(0, &[(0, b"key", b"value")]);
        page[PAGE_HEADER_SIZE + 4] = 200; // pos far past the end
        assert!(leaf_elements(&page).is_err());
    }
}
