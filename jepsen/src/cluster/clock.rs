//! Wall-clock faults through libfaketime (Debian's `faketime` package):
//! every member starts with the library preloaded, reading its offset from
//! a file of its own that the nemesis rewrites, so one member's clock jumps
//! while the others' do not.
//!
//! Only the wall clock (CLOCK_REALTIME) moves: NTP steps it, while the
//! monotonic clock that Raft timers and lease deadlines run on never jumps
//! (oxetcd's tokio and openraft timers, etcd's Go timers). What a jump can
//! break is whatever reads the wall clock: IDs seeded from it, certificate
//! validity, timestamps in answers.
//!
//! LD_PRELOAD only reaches programs that ask libc for the time. Go reads
//! the clock through the vDSO itself, so for Debian's etcd the fault does
//! nothing: an etcd run with `clock` is a run without it.

use std::path::{Path, PathBuf};

use crate::error::JepsenError;

/// Where Debian's package puts the library, for each architecture's
/// multiarch directory.
const LIBRARY: &str = "faketime/libfaketime.so.1";

/// libfaketime here, if it is installed: `$OXETCD_LIBFAKETIME`, else the
/// first `/usr/lib/<multiarch>/faketime/libfaketime.so.1`.
pub fn find_library() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("OXETCD_LIBFAKETIME") {
        return Some(PathBuf::from(path)).filter(|p| p.exists());
    }
    let dirs = std::fs::read_dir("/usr/lib").ok()?;
    dirs.filter_map(Result::ok)
        .map(|d| d.path().join(LIBRARY))
        .find(|p| p.exists())
}

/// The environment that preloads `library` reading offsets from `file`.
pub fn env(library: &Path, file: &Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), library.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
        // Re-read the file every second, not every call: a call per
        // clock_gettime would slow the member down for nothing.
        ("FAKETIME_CACHE_DURATION".into(), "1".into()),
        // The wall clock only (both spellings, old and new libfaketime).
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ("DONT_FAKE_MONOTONIC".into(), "1".into()),
    ]
}

/// Writes an offset of `seconds` from the true time (libfaketime's
/// relative format, `+N` / `-N`), replacing the file in one step so that a
/// member never reads half of it.
pub fn set_offset(file: &Path, seconds: i64) -> Result<(), JepsenError> {
    let spec = if seconds < 0 {
        format!("{seconds}\n")
    } else {
        format!("+{seconds}\n")
    };
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, spec).map_err(JepsenError::io(&tmp))?;
    std::fs::rename(&tmp, file).map_err(JepsenError::io(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// `date +%s` under the preload, against the true time.
    fn seen_offset(library: &Path, file: &Path) -> i64 {
        let out = Command::new("date")
            .arg("+%s")
            .envs(env(library, file))
            .output()
            .unwrap();
        let seen: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        seen - now.as_secs() as i64
    }

    #[test]
    fn a_member_sees_the_offset_written_for_it() {
        let Some(library) = find_library() else {
            eprintln!("skipped: libfaketime is not installed (apt-get install faketime)");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("faketime");
        set_offset(&file, 3600).unwrap();
        assert!((3598..=3601).contains(&seen_offset(&library, &file)));
        set_offset(&file, -7200).unwrap();
        // A new process reads the file at once; a running one within the
        // cache duration.
        std::thread::sleep(Duration::from_millis(10));
        assert!((-7202..=-7199).contains(&seen_offset(&library, &file)));
        set_offset(&file, 0).unwrap();
        assert!((-2..=1).contains(&seen_offset(&library, &file)));
    }
}
