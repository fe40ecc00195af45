//! Writing a fresh, compact bbolt file, bucket by bucket, entries in key
//! order. Nothing is ever freed, so the freelist is empty and every page
//! below the high water mark is reachable (what `bbolt check` and
//! `etcdctl snapshot status` verify).
//!
//! Pages are written as they fill (memory holds one page plus the first key
//! of every page of the current bucket), bottom-up: a bucket's leaves, then
//! its branch levels; after the last bucket the root bucket (whose leaf
//! entries are the buckets), the freelist, and finally the two meta pages at
//! the start of the file:
//!
//! ```text
//! page 0, 1   meta (txid 0 and 1, identical otherwise)
//! page 2..    bucket "a": leaves, then branches; bucket "b": ...
//! page n      root bucket leaf (names -> bucket headers, small buckets inline)
//! page n+1    empty freelist; high water mark n+2
//! ```

use std::io::{Seek, SeekFrom, Write};

use super::page::{
    encode_branch, encode_leaf, BucketHeader, Meta, PageHeader, BUCKET_HEADER_SIZE,
    BUCKET_LEAF_FLAG, DEFAULT_PAGE_SIZE, ELEMENT_SIZE, FREELIST_PAGE, META_PAGE, PAGE_HEADER_SIZE,
};
use super::BboltError;

/// Writes a bbolt file to `out`.
pub struct Writer<W> {
    out: W,
    page_size: usize,
    /// The next page to write.
    next_page: u64,
    /// Top-level buckets written so far: name -> value of their root entry.
    buckets: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One leaf item: flags, key, value.
type LeafItem = (u32, Vec<u8>, Vec<u8>);

impl<W: Write + Seek> Writer<W> {
    pub fn new(out: W) -> Result<Self, BboltError> {
        Self::with_page_size(out, DEFAULT_PAGE_SIZE)
    }

    /// A writer with another page size (tests use small pages to make deep
    /// trees out of few entries).
    pub fn with_page_size(mut out: W, page_size: usize) -> Result<Self, BboltError> {
        out.seek(SeekFrom::Start(2 * page_size as u64))?;
        Ok(Self {
            out,
            page_size,
            next_page: 2,
            buckets: Vec::new(),
        })
    }

    /// Writes top-level bucket `name` holding `entries`, which must come in
    /// strictly ascending key order with non-empty keys.
    pub fn bucket<I>(&mut self, name: &[u8], entries: I) -> Result<(), BboltError>
    where
        I: IntoIterator<Item = Result<(Vec<u8>, Vec<u8>), BboltError>>,
    {
        if name.is_empty() || self.buckets.iter().any(|(n, _)| n == name) {
            return Err(BboltError::Invalid(format!(
                "bucket name {:?} is empty or repeated",
                String::from_utf8_lossy(name)
            )));
        }
        let value = self.tree(entries, false)?;
        self.buckets.push((name.to_vec(), value));
        Ok(())
    }

    /// Writes the root bucket, the freelist and the meta pages; returns the
    /// output and the file's size in bytes.
    pub fn finish(mut self) -> Result<(W, u64), BboltError> {
        let mut buckets = std::mem::take(&mut self.buckets);
        buckets.sort();
        let items = buckets
            .into_iter()
            .map(|(k, v)| Ok((BUCKET_LEAF_FLAG, k, v)));
        let root = self.tree_items(items, true)?;
        let root = BucketHeader::decode(&root)?;
        let freelist = self.next_page;
        let mut page = vec![0u8; PAGE_HEADER_SIZE];
        PageHeader {
            id: freelist,
            flags: FREELIST_PAGE,
            count: 0,
            overflow: 0,
        }
        .encode(&mut page);
        self.write_page(page)?;
        let hwm = self.next_page;
        for txid in 0..2u64 {
            let meta = Meta {
                page_size: self.page_size as u32,
                flags: 0,
                root,
                freelist,
                pgid: hwm,
                txid,
            };
            let mut page = vec![0u8; self.page_size];
            PageHeader {
                id: txid,
                flags: META_PAGE,
                count: 0,
                overflow: 0,
            }
            .encode(&mut page);
            let raw = meta.encode();
            page[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + raw.len()].copy_from_slice(&raw);
            self.out
                .seek(SeekFrom::Start(txid * self.page_size as u64))?;
            self.out.write_all(&page)?;
        }
        self.out.flush()?;
        Ok((self.out, hwm * self.page_size as u64))
    }

    /// Writes a bucket's entries; returns the bucket's value in its parent
    /// (header, plus the page itself when inline).
    fn tree<I>(&mut self, entries: I, never_inline: bool) -> Result<Vec<u8>, BboltError>
    where
        I: IntoIterator<Item = Result<(Vec<u8>, Vec<u8>), BboltError>>,
    {
        self.tree_items(
            entries.into_iter().map(|r| r.map(|(k, v)| (0, k, v))),
            never_inline,
        )
    }

    fn tree_items<I>(&mut self, items: I, never_inline: bool) -> Result<Vec<u8>, BboltError>
    where
        I: IntoIterator<Item = Result<LeafItem, BboltError>>,
    {
        // bbolt keeps a bucket inline while its page is at most a quarter page.
        let inline_limit = self.page_size / 4;
        let mut page: Vec<LeafItem> = Vec::new();
        let mut page_bytes = PAGE_HEADER_SIZE;
        let mut spilled = never_inline;
        // (first key, page id) of every leaf written.
        let mut leaves: Vec<(Vec<u8>, u64)> = Vec::new();
        let mut last_key: Option<Vec<u8>> = None;
        for item in items {
            let item = item?;
            if item.1.is_empty() || last_key.as_ref().is_some_and(|last| *last >= item.1) {
                return Err(BboltError::Invalid(
                    "keys must be non-empty and strictly ascending".into(),
                ));
            }
            last_key = Some(item.1.clone());
            let size = ELEMENT_SIZE + item.1.len() + item.2.len();
            if !page.is_empty() && page_bytes + size > self.page_size {
                leaves.push(self.write_leaf(&page)?);
                page.clear();
                page_bytes = PAGE_HEADER_SIZE;
                spilled = true;
            }
            page_bytes += size;
            page.push(item);
        }
        if !spilled && page_bytes <= inline_limit {
            let refs: Vec<(u32, &[u8], &[u8])> = page
                .iter()
                .map(|(f, k, v)| (*f, k.as_slice(), v.as_slice()))
                .collect();
            let mut value = BucketHeader::default().encode().to_vec();
            value.extend_from_slice(&encode_leaf(0, &refs));
            return Ok(value);
        }
        if !page.is_empty() || leaves.is_empty() {
            leaves.push(self.write_leaf(&page)?);
        }
        let root = self.branches(leaves)?;
        let mut value = vec![0u8; BUCKET_HEADER_SIZE];
        value.copy_from_slice(&BucketHeader { root, sequence: 0 }.encode());
        Ok(value)
    }

    /// Builds branch levels over `children` until one page is left; returns it.
    fn branches(&mut self, mut children: Vec<(Vec<u8>, u64)>) -> Result<u64, BboltError> {
        while children.len() > 1 {
            let mut parents = Vec::new();
            let mut page: Vec<(&[u8], u64)> = Vec::new();
            let mut page_bytes = PAGE_HEADER_SIZE;
            for (key, id) in &children {
                let size = ELEMENT_SIZE + key.len();
                if !page.is_empty() && page_bytes + size > self.page_size {
                    parents.push(self.write_branch(&page)?);
                    page.clear();
                    page_bytes = PAGE_HEADER_SIZE;
                }
                page_bytes += size;
                page.push((key.as_slice(), *id));
            }
            parents.push(self.write_branch(&page)?);
            children = parents;
        }
        Ok(children[0].1)
    }

    fn write_leaf(&mut self, items: &[LeafItem]) -> Result<(Vec<u8>, u64), BboltError> {
        let id = self.next_page;
        let refs: Vec<(u32, &[u8], &[u8])> = items
            .iter()
            .map(|(f, k, v)| (*f, k.as_slice(), v.as_slice()))
            .collect();
        self.write_page(encode_leaf(id, &refs))?;
        Ok((items.first().map(|i| i.1.clone()).unwrap_or_default(), id))
    }

    fn write_branch(&mut self, items: &[(&[u8], u64)]) -> Result<(Vec<u8>, u64), BboltError> {
        let id = self.next_page;
        self.write_page(encode_branch(id, items))?;
        Ok((items[0].0.to_vec(), id))
    }

    /// Pads `page` to whole pages, records its overflow, writes it.
    fn write_page(&mut self, mut page: Vec<u8>) -> Result<(), BboltError> {
        let pages = page.len().div_ceil(self.page_size).max(1);
        let overflow = u32::try_from(pages - 1)
            .map_err(|_| BboltError::Invalid("an entry larger than bbolt allows".into()))?;
        page[12..16].copy_from_slice(&overflow.to_le_bytes());
        page.resize(pages * self.page_size, 0);
        self.out.write_all(&page)?;
        self.next_page += pages as u64;
        Ok(())
    }
}
