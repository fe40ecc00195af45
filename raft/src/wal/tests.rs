//! WAL scenarios that need the crate's internals: injected I/O faults, segment
//! rollover and purge, truncation, the cache. The corruption and group-commit
//! scenarios that only need the public API are in `raft/tests/wal.rs`.

use std::sync::Arc;

use openraft::{CommittedLeaderId, EntryPayload};

use super::segment::Faults;
use super::*;
use crate::types::Request;

type Entry = crate::types::Entry<Request>;
type Wal = super::Wal<Request>;

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Request::from(format!("cmd {term}/{index}").into_bytes())),
    }
}

fn indexes(wal: &Wal) -> Vec<u64> {
    wal.entries(..)
        .expect("read")
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

fn small_segments() -> WalOptions {
    WalOptions {
        segment_size: 1024,
        ..WalOptions::default()
    }
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn append_read_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    wal.append((0..10).map(|i| entry(1, i)))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(indexes(&wal), (0..10).collect::<Vec<_>>());
    assert_eq!(wal.entries(3..5).unwrap().len(), 2);
    assert_eq!(wal.entries(3..=5).unwrap().len(), 3);
    assert!(wal.entries(5..5).unwrap().is_empty());
    drop(wal);

    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.recovery().entries, 10);
    assert_eq!(wal.recovery().torn_tail, None);
    let back = wal.entries(..).unwrap();
    for (i, e) in back.iter().enumerate() {
        assert_eq!(e.log_id, log_id(1, i as u64));
        assert_eq!(
            format!("{:?}", e.payload),
            format!("{:?}", entry(1, i as u64).payload)
        );
    }
    assert_eq!(wal.log_state(), (None, Some(log_id(1, 9))));
}

#[test]
fn appends_must_go_up() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    wal.append([entry(1, 5)]).unwrap().wait().unwrap();
    let err = wal.append([entry(1, 5)]).unwrap_err();
    assert!(
        matches!(err, WalError::OutOfOrder { index: 5, last: 5 }),
        "{err}"
    );
    let err = wal.append([entry(1, 6), entry(1, 6)]).unwrap_err();
    assert!(
        matches!(err, WalError::OutOfOrder { index: 6, last: 6 }),
        "{err}"
    );
    // Nothing of a rejected append is kept.
    assert_eq!(indexes(&wal), vec![5]);
}

#[test]
fn vote_and_committed_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    block_on(wal.save_vote(&Vote::new(3, 2))).unwrap();
    assert_eq!(wal.vote(), Some(Vote::new(3, 2)));
    wal.append([entry(3, 1)]).unwrap().wait().unwrap();
    wal.save_committed(Some(log_id(3, 1))).unwrap();
    assert_eq!(wal.committed(), Some(log_id(3, 1)));
    block_on(wal.save_vote(&Vote::new_committed(3, 2))).unwrap();
    drop(wal);

    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.vote(), Some(Vote::new_committed(3, 2)));
    assert_eq!(wal.committed(), Some(log_id(3, 1)));
}

#[test]
fn truncate_then_reappend_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    wal.append((1..=5).map(|i| entry(1, i)))
        .unwrap()
        .wait()
        .unwrap();
    block_on(wal.truncate(log_id(1, 3))).unwrap();
    assert_eq!(indexes(&wal), vec![1, 2]);
    // Appending below the end without truncating first is refused.
    assert!(wal.append([entry(2, 2)]).is_err());
    wal.append((3..=4).map(|i| entry(2, i)))
        .unwrap()
        .wait()
        .unwrap();
    drop(wal);

    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let got: Vec<LogId> = wal.entries(..).unwrap().iter().map(|e| e.log_id).collect();
    assert_eq!(
        got,
        vec![log_id(1, 1), log_id(1, 2), log_id(2, 3), log_id(2, 4)]
    );
}

#[test]
fn rollover_and_purge_delete_whole_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    block_on(wal.save_vote(&Vote::new(1, 1))).unwrap();
    for i in 1..=100 {
        wal.append([entry(1, i)]).unwrap().wait().unwrap();
    }
    let before = segment_files(dir.path());
    assert!(before.len() > 4, "expected rollover, got {before:?}");
    for name in &before {
        assert!(name.ends_with(".wal"), "{name}");
    }

    block_on(wal.purge(log_id(1, 60))).unwrap();
    let after = segment_files(dir.path());
    assert!(after.len() < before.len(), "nothing deleted: {after:?}");
    assert_eq!(after.last(), before.last(), "the active segment stays");
    // Sequence numbers of what is left are contiguous and the oldest remaining
    // segment still holds entry 61 or starts after it.
    assert_eq!(indexes(&wal), (61..=100).collect::<Vec<_>>());
    assert_eq!(wal.log_state(), (Some(log_id(1, 60)), Some(log_id(1, 100))));
    drop(wal);

    // The vote record was in a deleted segment: the headers carried it.
    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(wal.vote(), Some(Vote::new(1, 1)));
    assert_eq!(indexes(&wal), (61..=100).collect::<Vec<_>>());
    assert_eq!(wal.log_state(), (Some(log_id(1, 60)), Some(log_id(1, 100))));

    // Purge past the end: every segment but the active one goes, the log is
    // empty and continues after the purged index.
    block_on(wal.purge(log_id(2, 150))).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert!(indexes(&wal).is_empty());
    // At or below the purge point: covered by the snapshot, skipped.
    wal.append([entry(2, 150)]).unwrap().wait().unwrap();
    assert!(indexes(&wal).is_empty());
    wal.append([entry(2, 151)]).unwrap().wait().unwrap();
    drop(wal);
    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(
        wal.log_state(),
        (Some(log_id(2, 150)), Some(log_id(2, 151)))
    );
    assert_eq!(wal.vote(), Some(Vote::new(1, 1)));
}

#[test]
fn reads_past_the_cache_come_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        cache_bytes: 100,
        ..small_segments()
    };
    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    for i in 1..=50 {
        wal.append([entry(1, i)]).unwrap().wait().unwrap();
    }
    assert!(wal.inner.shared.index.read().cached_bytes() <= 100);
    let all = wal.entries(..).unwrap();
    assert_eq!(all.len(), 50);
    assert_eq!(
        format!("{:?}", all[0].payload),
        format!("{:?}", entry(1, 1).payload)
    );
    // A truncate through cached and uncached entries, then more appends.
    block_on(wal.truncate(log_id(1, 45))).unwrap();
    wal.append([entry(2, 45)]).unwrap().wait().unwrap();
    assert_eq!(
        wal.entries(44..)
            .unwrap()
            .iter()
            .map(|e| e.log_id)
            .collect::<Vec<_>>(),
        vec![log_id(1, 44), log_id(2, 45)]
    );
}

#[test]
fn failed_write_is_reported_and_never_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let options = WalOptions {
        faults: Some(Arc::clone(&faults)),
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), options).unwrap();
    wal.append((1..=3).map(|i| entry(1, i)))
        .unwrap()
        .wait()
        .unwrap();

    // The next write fails.
    *faults.writes_left.lock().unwrap() = Some(0);
    let err = wal.append([entry(1, 4)]).unwrap().wait().unwrap_err();
    assert!(matches!(&err, WalError::Io { op: "write", .. }), "{err}");
    assert!(err.to_string().contains("injected write failure"), "{err}");

    // Nothing is accepted after a failure, even once the disk is fine again.
    *faults.writes_left.lock().unwrap() = None;
    assert!(matches!(
        wal.append([entry(1, 5)]),
        Err(WalError::Failed(_))
    ));
    assert!(matches!(
        block_on(wal.save_vote(&Vote::new(2, 1))),
        Err(WalError::Failed(_))
    ));
    drop(wal);

    // Only what was acknowledged is there.
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(indexes(&wal), vec![1, 2, 3]);
    assert_eq!(wal.vote(), None);
}

#[test]
fn failed_fsync_fails_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let options = WalOptions {
        faults: Some(Arc::clone(&faults)),
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), options).unwrap();
    wal.append([entry(1, 1)]).unwrap().wait().unwrap();

    *faults.syncs_left.lock().unwrap() = Some(0);
    // Once the writer has hit the failure, a later append may be refused at
    // once rather than queued: either way it must fail, never be acknowledged.
    for i in 2..=20 {
        let err = match wal.append([entry(1, i)]) {
            Ok(flushed) => flushed.wait().unwrap_err(),
            Err(refused) => refused,
        };
        assert!(
            matches!(&err, WalError::Io { op: "fsync", .. } | WalError::Failed(_)),
            "{err}"
        );
    }
    assert!(block_on(wal.truncate(log_id(1, 2))).is_err());
}

#[test]
fn failure_while_cutting_a_segment_is_reported() {
    // A dry run finds the append that fills the first segment.
    let dry = tempfile::tempdir().unwrap();
    let wal = Wal::open(dry.path(), small_segments()).unwrap();
    let mut cut_at = 0;
    for i in 1..=100 {
        wal.append([entry(1, i)]).unwrap().wait().unwrap();
        if segment_files(dry.path()).len() > 1 {
            cut_at = i;
            break;
        }
    }
    assert!(cut_at > 1);
    drop(wal);

    // Same appends; each earlier one takes one fsync, then the fsync that
    // seals the full segment fails.
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let options = WalOptions {
        faults: Some(Arc::clone(&faults)),
        ..small_segments()
    };
    let wal = Wal::open(dir.path(), options).unwrap();
    *faults.syncs_left.lock().unwrap() = Some(cut_at - 1);
    for i in 1..cut_at {
        wal.append([entry(1, i)]).unwrap().wait().unwrap();
    }
    let err = wal.append([entry(1, cut_at)]).unwrap().wait().unwrap_err();
    assert!(matches!(&err, WalError::Io { op: "fsync", .. }), "{err}");
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "no segment after a failed seal"
    );
    drop(wal);

    let wal = Wal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(indexes(&wal), (1..cut_at).collect::<Vec<_>>());
}

#[test]
fn committed_is_written_lazily_but_kept_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    wal.append([entry(1, 1)]).unwrap().wait().unwrap();
    let syncs = wal.stats().fsyncs;
    wal.save_committed(Some(log_id(1, 1))).unwrap();
    // An append after it syncs both.
    wal.append([entry(1, 2)]).unwrap().wait().unwrap();
    assert_eq!(wal.stats().fsyncs, syncs + 1);
    drop(wal);
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.committed(), Some(log_id(1, 1)));
}

#[test]
fn doc_example_bytes_match() {
    // The worked example in the module doc.
    let mut buf = Vec::new();
    record::push_vote(&mut buf, &Vote::new(1, 1)).unwrap();
    assert_eq!(
        buf,
        [
            0x11, 0, 0, 0, 0x03, 0x9d, 0xad, 0x6c, 3, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
            0, 0
        ]
    );
    let mut buf = Vec::new();
    record::push_truncate(&mut buf, 1).unwrap();
    assert_eq!(&buf[..9], &[0x08, 0, 0, 0, 0x3e, 0xd0, 0x4a, 0xd3, 5]);
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    block_on(wal.save_vote(&Vote::new(1, 1))).unwrap();
    wal.append([Entry {
        log_id: log_id(1, 1),
        payload: EntryPayload::Normal(Request::from(b"put".to_vec())),
    }])
    .unwrap()
    .wait()
    .unwrap();
    drop(wal);
    let data = std::fs::read(dir.path().join("0000000000000000-0000000000000000.wal")).unwrap();
    // The records, then zeros to the preallocated segment size.
    assert_eq!(data.len() as u64, SEGMENT_SIZE);
    let (records, rest) = data.split_at(32 + 26 + 37);
    assert!(rest.iter().all(|&b| b == 0));
    assert_eq!(&records[0..9], &[0x17, 0, 0, 0, 0x19, 0x48, 0x6b, 0x15, 1]);
    assert_eq!(
        &records[58..67],
        &[0x1c, 0, 0, 0, 0xf5, 0xf4, 0x8d, 0xc4, 2]
    );
    assert_eq!(&records[92..], b"put");
}
