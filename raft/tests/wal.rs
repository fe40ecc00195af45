//! WAL scenarios through the public API: damaged files on open (torn tails,
//! corruption in the middle, missing segments) and group commit.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::{CommittedLeaderId, EntryPayload};
use oxetcd_raft::{LogId, Request, WalError, WalOptions};

type Entry = oxetcd_raft::Entry<Request>;
type Wal = oxetcd_raft::Wal<Request>;

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn entry_with(index: u64, payload_len: usize) -> Entry {
    let mut bytes = format!("cmd {index} ").into_bytes();
    bytes.resize(payload_len.max(bytes.len()), b'x');
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Request::from(bytes)),
    }
}

fn entry(index: u64) -> Entry {
    entry_with(index, 16)
}

fn small_segments() -> WalOptions {
    let mut o = WalOptions::default();
    o.segment_size = 1024;
    o
}

/// Segments that hold every test's entries in one, and are quick to read.
fn one_segment() -> WalOptions {
    let mut o = WalOptions::default();
    o.segment_size = 64 << 10;
    o
}

/// A segment's records: the file without the zero-filled preallocated tail.
fn written(path: &Path) -> Vec<u8> {
    let mut data = fs::read(path).expect("read");
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    data.truncate(end);
    data
}

/// Appends each entry on its own and waits for it: one frame per entry.
fn write_entries(dir: &Path, options: WalOptions, entries: impl IntoIterator<Item = Entry>) {
    let wal = Wal::open(dir, options).expect("open");
    for e in entries {
        wal.append([e]).expect("append").wait().expect("flush");
    }
}

fn indexes(wal: &Wal) -> Vec<u64> {
    wal.entries(..)
        .expect("read")
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    paths.sort();
    paths
}

fn only_segment(dir: &Path) -> PathBuf {
    let segs = segments(dir);
    assert_eq!(segs.len(), 1, "{segs:?}");
    segs[0].clone()
}

/// Frame start offsets in a segment, walking the `len` fields as the format
/// documents (`len u32 | crc u32 | type u8 | payload`). The first is the header.
fn frame_offsets(data: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut off = 0;
    while off + 9 <= data.len() {
        offsets.push(off);
        let len = u32::from_le_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]);
        off += 9 + len as usize;
    }
    assert_eq!(off, data.len(), "frames do not tile the file");
    offsets
}

fn flip(path: &Path, offset: usize) {
    let mut data = fs::read(path).expect("read");
    data[offset] ^= 0x5a;
    fs::write(path, data).expect("write");
}

fn expect_corrupt(dir: &Path, options: WalOptions) -> (PathBuf, u64, String) {
    match Wal::open(dir, options) {
        Err(err @ WalError::Corrupt { .. }) => {
            let msg = err.to_string();
            let WalError::Corrupt { path, offset, .. } = err else {
                unreachable!()
            };
            (path, offset, msg)
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("opened a corrupt WAL"),
    }
}

#[test]
fn torn_tail_cut_mid_record_recovers_the_prefix_at_every_cut_point() {
    let src = tempfile::tempdir().expect("tempdir");
    write_entries(src.path(), one_segment(), (1..=10).map(entry));
    let data = written(&only_segment(src.path()));
    let last = *frame_offsets(&data).last().expect("frames");

    for cut in last + 1..data.len() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seg = dir
            .path()
            .join(only_segment(src.path()).file_name().expect("name"));
        fs::write(&seg, &data[..cut]).expect("write");

        let wal = Wal::open(dir.path(), one_segment()).expect("open");
        assert_eq!(indexes(&wal), (1..=9).collect::<Vec<_>>(), "cut at {cut}");
        let torn = wal
            .recovery()
            .torn_tail
            .clone()
            .expect("torn tail reported");
        assert_eq!(torn.offset, last as u64);
        let nonzero_end = data[..cut]
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |p| p + 1);
        assert_eq!(torn.dropped_bytes, (nonzero_end - last) as u64);
        assert_eq!(written(&seg).len(), last, "torn bytes cut off");

        // The log goes on from there, and reopens cleanly.
        wal.append([entry(10)])
            .expect("append")
            .wait()
            .expect("flush");
        drop(wal);
        let wal = Wal::open(dir.path(), one_segment()).expect("reopen");
        assert_eq!(indexes(&wal), (1..=10).collect::<Vec<_>>());
        assert_eq!(wal.recovery().torn_tail, None);
    }
}

#[test]
fn flipped_bytes_in_the_last_record_are_a_torn_tail() {
    let src = tempfile::tempdir().expect("tempdir");
    write_entries(src.path(), one_segment(), (1..=10).map(entry));
    let seg = only_segment(src.path());
    let data = written(&seg);
    let last = *frame_offsets(&data).last().expect("frames");

    // Every byte of the last record: length, checksum, type, payload.
    for at in last..data.len() {
        let dir = tempfile::tempdir().expect("tempdir");
        let copy = dir.path().join(seg.file_name().expect("name"));
        fs::write(&copy, &data).expect("write");
        flip(&copy, at);
        let wal = Wal::open(dir.path(), one_segment()).expect("open");
        assert_eq!(indexes(&wal), (1..=9).collect::<Vec<_>>(), "flip at {at}");
        assert_eq!(
            wal.recovery().torn_tail.as_ref().map(|t| t.offset),
            Some(last as u64)
        );
    }
}

#[test]
fn flipped_bytes_in_a_middle_record_refuse_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_entries(dir.path(), one_segment(), (1..=10).map(entry));
    let seg = only_segment(dir.path());
    let data = written(&seg);
    let frames = frame_offsets(&data);
    // frames[0] is the header, frames[5] entry 5.
    let fifth = frames[5];
    flip(&seg, fifth + 12);
    let damaged = fs::read(&seg).expect("read");

    let (path, offset, msg) = expect_corrupt(dir.path(), one_segment());
    assert_eq!(path, seg);
    assert_eq!(offset, fifth as u64);
    let name = seg
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(msg.contains(&name), "{msg}");
    assert!(msg.contains(&format!("offset {fifth}")), "{msg}");
    assert!(msg.contains("checksum mismatch"), "{msg}");
    assert!(msg.contains("refusing to start"), "{msg}");
    // Nothing was changed by the failed open.
    assert!(
        fs::read(&seg).expect("read") == damaged,
        "the open changed the file"
    );

    // A damaged length field hides the records behind it: still caught.
    flip(&seg, fifth + 12); // undo
    flip(&seg, fifth + 2);
    let (_, offset, _) = expect_corrupt(dir.path(), one_segment());
    assert_eq!(offset, fifth as u64);
}

#[test]
fn damage_in_a_sealed_segment_refuses_to_open_even_at_its_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_entries(dir.path(), small_segments(), (1..=60).map(entry));
    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "{segs:?}");
    let first = fs::read(&segs[0]).expect("read");
    let last_frame = *frame_offsets(&first).last().expect("frames");
    // Truncating the end of a sealed segment is not a torn write.
    fs::write(&segs[0], &first[..first.len() - 3]).expect("write");
    let (path, offset, msg) = expect_corrupt(dir.path(), small_segments());
    assert_eq!(path, segs[0]);
    assert_eq!(offset, last_frame as u64);
    assert!(msg.contains("incomplete record"), "{msg}");
}

#[test]
fn a_missing_segment_refuses_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_entries(dir.path(), small_segments(), (1..=60).map(entry));
    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "{segs:?}");
    fs::remove_file(&segs[1]).expect("remove");
    match Wal::open(dir.path(), small_segments()) {
        Err(err @ WalError::BadLayout { .. }) => {
            assert!(err.to_string().contains("segment 1 is missing"), "{err}")
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("opened a WAL with a missing segment"),
    }
}

#[test]
fn a_zero_filled_tail_is_where_the_records_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_entries(dir.path(), one_segment(), (1..=5).map(entry));
    let seg = only_segment(dir.path());
    // Preallocated: the records, then zeros to the segment size.
    assert_eq!(fs::metadata(&seg).expect("stat").len(), 64 << 10);
    let records = written(&seg).len();
    let wal = Wal::open(dir.path(), one_segment()).expect("open");
    assert_eq!(indexes(&wal), (1..=5).collect::<Vec<_>>());
    assert_eq!(wal.recovery().torn_tail, None, "zeros are not a torn write");
    // Appends go on right after the records, inside the preallocated bytes.
    wal.append([entry(6)])
        .expect("append")
        .wait()
        .expect("flush");
    drop(wal);
    assert_eq!(fs::metadata(&seg).expect("stat").len(), 64 << 10);
    assert_eq!(frame_offsets(&written(&seg)).last().copied(), Some(records));
    let wal = Wal::open(dir.path(), one_segment()).expect("reopen");
    assert_eq!(indexes(&wal), (1..=6).collect::<Vec<_>>());
}

#[test]
fn a_lost_sector_in_the_tail_is_a_torn_write_other_damage_is_not() {
    // Entries of ~250 bytes: a 512-byte sector spans a few of them.
    let src = tempfile::tempdir().expect("tempdir");
    write_entries(
        src.path(),
        one_segment(),
        (1..=20).map(|i| entry_with(i, 240)),
    );
    let seg = only_segment(src.path());
    // The whole file, preallocated tail included, as a crash leaves it.
    let data = fs::read(&seg).expect("read");
    let frames = frame_offsets(&written(&seg));
    let sector = 2048..2560;
    let first_bad = frames
        .iter()
        .rposition(|&f| f <= sector.start)
        .expect("a frame before the sector");
    let kept = first_bad as u64 - 1; // frames[i] holds entry i

    // Zeroed: the crash lost this page of the last batch.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join(seg.file_name().expect("name"));
    let mut zeroed = data.clone();
    zeroed[sector.clone()].fill(0);
    fs::write(&copy, &zeroed).expect("write");
    let wal = Wal::open(dir.path(), one_segment()).expect("open");
    assert_eq!(indexes(&wal), (1..=kept).collect::<Vec<_>>());
    assert_eq!(
        wal.recovery().torn_tail.as_ref().map(|t| t.offset),
        Some(frames[first_bad] as u64)
    );
    drop(wal);

    // Garbage instead of zeros, valid records after it: corruption.
    let mut garbage = data.clone();
    garbage[sector].fill(0xa5);
    fs::write(&copy, &garbage).expect("write");
    let (_, offset, _) = expect_corrupt(dir.path(), one_segment());
    assert_eq!(offset, frames[first_bad] as u64);
}

#[test]
fn pipelined_appends_share_fsyncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::open(dir.path(), WalOptions::default()).expect("open");
    let before = wal.stats();
    // Like openraft: append, do not wait, append again; wait for all at the end.
    let pending: Vec<_> = (1..=200)
        .map(|i| wal.append([entry(i)]).expect("append"))
        .collect();
    for flushed in pending {
        flushed.wait().expect("flush");
    }
    let after = wal.stats();
    let fsyncs = after.fsyncs - before.fsyncs;
    eprintln!("pipelined: 200 appends, {fsyncs} fsyncs");
    assert!(fsyncs >= 1);
    assert!(fsyncs < 200, "{fsyncs} fsyncs for 200 appends");
    assert_eq!(after.records - before.records, 200);
    assert_eq!(indexes(&wal), (1..=200).collect::<Vec<_>>());
}

#[test]
fn concurrent_appends_from_threads_share_fsyncs() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 40;
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::open(dir.path(), WalOptions::default()).expect("open");
    let before = wal.stats();
    // Indexes are taken in the order appends are made.
    let next = Arc::new(Mutex::new(1u64));
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let wal = wal.clone();
            let next = Arc::clone(&next);
            s.spawn(move || {
                for _ in 0..PER_THREAD {
                    let flushed = {
                        let mut n = next.lock().expect("lock");
                        let f = wal.append([entry(*n)]).expect("append");
                        *n += 1;
                        f
                    };
                    flushed.wait().expect("flush");
                }
            });
        }
    });
    let appends = THREADS * PER_THREAD;
    let fsyncs = wal.stats().fsyncs - before.fsyncs;
    eprintln!("{THREADS} threads: {appends} appends, {fsyncs} fsyncs");
    assert!(fsyncs < appends, "{fsyncs} fsyncs for {appends} appends");
    assert_eq!(indexes(&wal), (1..=appends).collect::<Vec<_>>());
    drop(wal);
    let wal = Wal::open(dir.path(), WalOptions::default()).expect("reopen");
    assert_eq!(indexes(&wal).len() as u64, appends);
}
