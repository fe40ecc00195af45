//! Damage to the tail of a killed member's write-ahead log, as a crash in
//! the middle of a write leaves it (a torn write): the last few bytes cut
//! off, then a few bytes of garbage where the next record was going.
//!
//! The newest file of the WAL directory is damaged: oxetcd's
//! `<data-dir>/oxetcd/raft/wal/` or etcd's `<data-dir>/member/wal/`. Both
//! preallocate their segments (zero-filled to 64 MiB), so the log ends at
//! the last non-zero byte, not at the end of the file: the cut is made there,
//! the cut bytes become zeros again and the garbage is written in their
//! place. A file without a zero-filled tail is cut short instead.
//!
//! At most [`MAX_CUT`] bytes are cut: less than one record, so at most the
//! last record of one member is lost, which a server must survive: it
//! either was never acknowledged, or the other members have it (the nemesis
//! damages one member at a time). A server that refuses to start on such a
//! tail is reported by the run (`members` verdict).

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::JepsenError;

/// Bytes cut from the end, at most.
pub const MAX_CUT: usize = 16;
/// A file this short holds little more than its header: it is only
/// appended to, never cut.
const MIN_LEN_TO_CUT: u64 = 64;

/// What to do to the tail, picked by the nemesis' seeded RNG.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// Bytes cut from the end (at most [`MAX_CUT`]).
    pub cut: usize,
    /// Appended after the cut: a partial record.
    pub garbage: Vec<u8>,
}

/// The WAL directories of the servers the tester knows, under a data dir.
const WAL_DIRS: [&str; 2] = ["oxetcd/raft/wal", "member/wal"];

/// The newest WAL file under `data_dir` (the greatest name: both servers
/// name files by sequence number first).
pub fn newest_file(data_dir: &Path) -> Option<PathBuf> {
    WAL_DIRS.iter().find_map(|dir| {
        let mut files: Vec<PathBuf> = fs::read_dir(data_dir.join(dir))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wal"))
            .collect();
        files.sort();
        files.pop()
    })
}

/// Applies `damage` to the newest WAL file; says what it did.
pub fn damage(data_dir: &Path, damage: &Damage) -> Result<String, JepsenError> {
    let Some(path) = newest_file(data_dir) else {
        return Ok("no WAL file found, nothing damaged".into());
    };
    let data = fs::read(&path).map_err(JepsenError::io(&path))?;
    let len = data.len() as u64;
    // Where the records end: the rest is the preallocated zero fill.
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1) as u64;
    let cut = if end >= MIN_LEN_TO_CUT {
        damage.cut.min(MAX_CUT) as u64
    } else {
        0
    };
    let at = end - cut;
    let file = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(JepsenError::io(&path))?;
    let mut written = damage.garbage.clone();
    if end < len {
        // Preallocated: the cut bytes read as never written.
        written.resize(written.len().max(cut as usize), 0);
    } else {
        file.set_len(at).map_err(JepsenError::io(&path))?;
    }
    file.write_all_at(&written, at)
        .and_then(|_| file.sync_all())
        .map_err(JepsenError::io(&path))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    Ok(format!(
        "cut {cut} bytes off the records of {}, wrote {} bytes of garbage there",
        name.unwrap_or_default(),
        damage.garbage.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_file_loses_its_tail_and_gains_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("oxetcd/raft/wal");
        fs::create_dir_all(&wal).unwrap();
        let old = wal.join("0000000000000000-0000000000000000.wal");
        let new = wal.join("0000000000000001-0000000000000040.wal");
        fs::write(&old, vec![1u8; 100]).unwrap();
        fs::write(&new, vec![2u8; 100]).unwrap();
        fs::write(wal.join("0000000000000002-0000000000000080.wal.tmp"), b"x").unwrap();
        assert_eq!(newest_file(dir.path()), Some(new.clone()));
        let said = damage(
            dir.path(),
            &Damage {
                cut: 7,
                garbage: vec![0xAB; 3],
            },
        )
        .unwrap();
        assert!(said.contains("cut 7 bytes"), "{said}");
        let bytes = fs::read(&new).unwrap();
        assert_eq!(bytes.len(), 96);
        assert_eq!(&bytes[90..], &[2, 2, 2, 0xAB, 0xAB, 0xAB]);
        assert_eq!(fs::read(&old).unwrap(), vec![1u8; 100]);
    }

    #[test]
    fn short_files_are_not_cut_and_cuts_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("member/wal");
        fs::create_dir_all(&wal).unwrap();
        let file = wal.join("0000000000000000-0000000000000000.wal");
        fs::write(&file, vec![7u8; 40]).unwrap();
        let damage_of = |cut| Damage {
            cut,
            garbage: Vec::new(),
        };
        damage(dir.path(), &damage_of(10)).unwrap();
        assert_eq!(fs::read(&file).unwrap().len(), 40);
        fs::write(&file, vec![7u8; 400]).unwrap();
        damage(dir.path(), &damage_of(1000)).unwrap();
        assert_eq!(fs::read(&file).unwrap().len(), 400 - MAX_CUT);
    }

    #[test]
    fn a_preallocated_file_is_damaged_where_its_records_end() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("oxetcd/raft/wal");
        fs::create_dir_all(&wal).unwrap();
        let file = wal.join("0000000000000000-0000000000000000.wal");
        let mut data = vec![3u8; 100];
        data.resize(4096, 0);
        fs::write(&file, &data).unwrap();
        let said = damage(
            dir.path(),
            &Damage {
                cut: 10,
                garbage: vec![0xAB; 4],
            },
        )
        .unwrap();
        assert!(said.contains("cut 10 bytes"), "{said}");
        let bytes = fs::read(&file).unwrap();
        assert_eq!(bytes.len(), 4096, "the preallocated size is kept");
        assert_eq!(&bytes[88..90], &[3, 3]);
        assert_eq!(&bytes[90..94], &[0xAB; 4]);
        assert!(bytes[94..].iter().all(|&b| b == 0), "cut bytes not zeroed");
    }

    #[test]
    fn a_data_dir_without_a_wal_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let said = damage(
            dir.path(),
            &Damage {
                cut: 1,
                garbage: vec![1],
            },
        )
        .unwrap();
        assert!(said.contains("nothing damaged"));
    }
}
