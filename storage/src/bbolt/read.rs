//! Reading a bbolt file: the current meta page, then the B+tree of each
//! bucket in key order. Pages are read on demand with positioned reads, so a
//! multi-gigabyte etcd database is never held in memory whole.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::page::{
    branch_elements, leaf_elements, BucketHeader, Meta, PageHeader, BRANCH_PAGE,
    BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG, DEFAULT_PAGE_SIZE, LEAF_PAGE, PAGE_HEADER_SIZE,
};
use super::BboltError;

/// Deepest B+tree accepted: far beyond any real file (bbolt's fan-out makes
/// 10 levels hold more than a disk), it stops a corrupt cycle.
const MAX_DEPTH: usize = 64;

/// Where the bytes of a bbolt file come from.
pub trait PageSource {
    /// Fills `buf` with the bytes at `offset`; fails if the source is shorter.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl PageSource for File {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.read_exact_at(buf, offset)
    }
}

impl PageSource for [u8] {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl PageSource for Vec<u8> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.as_slice().read_at(offset, buf)
    }
}

/// Called with each entry of a bucket: key, value.
pub type EntryVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), BboltError> + 'a;
/// Called with each leaf element: flags, key, value.
type ElementVisitor<'a> = dyn FnMut(u32, &[u8], &[u8]) -> Result<(), BboltError> + 'a;

/// A bbolt file opened for reading.
pub struct Reader<S> {
    src: S,
    meta: Meta,
}

/// Where a bucket's entries are: in a page tree, or inline in its parent.
enum BucketRoot {
    Page(u64),
    Inline(Vec<u8>),
}

impl<S: PageSource> Reader<S> {
    /// Reads the meta pages and picks the current one, as bbolt does: the
    /// valid one with the higher transaction ID.
    pub fn open(src: S) -> Result<Self, BboltError> {
        let first = read_meta(&src, 0);
        // The page size is in the meta page; if page 0 is damaged, try the
        // usual size for page 1.
        let page_size = match &first {
            Ok(m) => m.page_size as usize,
            Err(_) => DEFAULT_PAGE_SIZE,
        };
        let second = read_meta(&src, page_size as u64);
        let meta = match (first, second) {
            (Ok(a), Ok(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Ok(m), Err(_)) | (Err(_), Ok(m)) => m,
            (Err(e), Err(_)) => return Err(e),
        };
        if !(512..=(1 << 20)).contains(&meta.page_size) || meta.root.root >= meta.pgid {
            return Err(BboltError::Corrupt(format!(
                "implausible meta: page size {}, root {}, high water mark {}",
                meta.page_size, meta.root.root, meta.pgid
            )));
        }
        Ok(Self { src, meta })
    }

    /// The current meta page.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Names of the top-level buckets, in key order.
    pub fn bucket_names(&self) -> Result<Vec<Vec<u8>>, BboltError> {
        let mut names = Vec::new();
        self.walk(
            &BucketRoot::Page(self.meta.root.root),
            0,
            &mut |flags, k, _| {
                if flags & BUCKET_LEAF_FLAG != 0 {
                    names.push(k.to_vec());
                }
                Ok(())
            },
        )?;
        Ok(names)
    }

    /// Calls `f(key, value)` for every entry of top-level bucket `name`, in
    /// key order. Returns false when there is no such bucket. Nested buckets
    /// are refused: etcd never makes them, and skipping one would lose data.
    pub fn for_each(&self, name: &[u8], f: &mut EntryVisitor<'_>) -> Result<bool, BboltError> {
        let Some(root) = self.find_bucket(name)? else {
            return Ok(false);
        };
        self.walk(&root, 0, &mut |flags, k, v| {
            if flags & BUCKET_LEAF_FLAG != 0 {
                return Err(BboltError::Unsupported(format!(
                    "nested bucket {:?} in bucket {:?}",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(name)
                )));
            }
            f(k, v)
        })?;
        Ok(true)
    }

    fn find_bucket(&self, name: &[u8]) -> Result<Option<BucketRoot>, BboltError> {
        let mut found = None;
        self.walk(
            &BucketRoot::Page(self.meta.root.root),
            0,
            &mut |flags, k, v| {
                if k == name && flags & BUCKET_LEAF_FLAG != 0 {
                    let header = BucketHeader::decode(v)?;
                    found = Some(if header.root == 0 {
                        BucketRoot::Inline(v[BUCKET_HEADER_SIZE..].to_vec())
                    } else {
                        BucketRoot::Page(header.root)
                    });
                }
                Ok(())
            },
        )?;
        Ok(found)
    }

    /// Reads page `id` with its overflow pages.
    fn page(&self, id: u64) -> Result<Vec<u8>, BboltError> {
        if id < 2 || id >= self.meta.pgid {
            return Err(BboltError::Corrupt(format!(
                "page {id} is outside the data pages 2..{}",
                self.meta.pgid
            )));
        }
        let size = self.meta.page_size as u64;
        let mut head = vec![0u8; PAGE_HEADER_SIZE];
        self.src.read_at(id * size, &mut head)?;
        let header = PageHeader::decode(&head)?;
        if header.id != id {
            return Err(BboltError::Corrupt(format!(
                "page {id} says it is page {}",
                header.id
            )));
        }
        if id + u64::from(header.overflow) >= self.meta.pgid {
            return Err(BboltError::Corrupt(format!(
                "page {id} overflows past the high water mark"
            )));
        }
        let mut page = vec![0u8; ((u64::from(header.overflow) + 1) * size) as usize];
        self.src.read_at(id * size, &mut page)?;
        Ok(page)
    }

    /// Visits every leaf element under `root` in key order.
    fn walk(
        &self,
        root: &BucketRoot,
        depth: usize,
        f: &mut ElementVisitor<'_>,
    ) -> Result<(), BboltError> {
        let owned;
        let page: &[u8] = match root {
            BucketRoot::Inline(page) => page,
            BucketRoot::Page(id) => {
                owned = self.page(*id)?;
                &owned
            }
        };
        let header = PageHeader::decode(page)?;
        if header.flags & LEAF_PAGE != 0 {
            for e in leaf_elements(page)? {
                f(e.flags, e.key, e.value)?;
            }
            Ok(())
        } else if header.flags & BRANCH_PAGE != 0 && !matches!(root, BucketRoot::Inline(_)) {
            if depth >= MAX_DEPTH {
                return Err(BboltError::Corrupt("B+tree deeper than possible".into()));
            }
            for e in branch_elements(page)? {
                self.walk(&BucketRoot::Page(e.child), depth + 1, f)?;
            }
            Ok(())
        } else {
            Err(BboltError::Corrupt(format!(
                "page {} is neither branch nor leaf (flags {:#x})",
                header.id, header.flags
            )))
        }
    }
}

fn read_meta<S: PageSource>(src: &S, offset: u64) -> Result<Meta, BboltError> {
    let mut raw = vec![0u8; PAGE_HEADER_SIZE + super::page::META_SIZE];
    src.read_at(offset, &mut raw)?;
    let header = PageHeader::decode(&raw)?;
    if header.flags & super::page::META_PAGE == 0 {
        return Err(BboltError::NotBbolt);
    }
    Meta::decode(&raw[PAGE_HEADER_SIZE..])
}
