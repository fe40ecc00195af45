//! Which storage engine a data directory's store was written with
//! (`<data-dir>/oxetcd/ENGINE`: `sled` or `redb`), so that a restart opens it
//! with the same one whatever the default has become since.
//!
//! A directory laid out before the file existed holds a sled store (the only
//! engine then). `--experimental-backend` chooses the engine of a new
//! directory; on an existing one it must name the recorded engine, or the
//! member refuses to start rather than open (or make) a store beside the one
//! it has.

use std::fs;
use std::io;
use std::path::Path;

use oxetcd_storage::Engine;

use super::{write_atomically, DataDirError};

/// The file in `oxetcd/` that names the engine.
pub(super) const ENGINE_FILE: &str = "ENGINE";

/// The engine of the store in `ours` (`<data-dir>/oxetcd`), recording it
/// durably first if it was not recorded: `requested` for a new store, sled
/// for one made before engines were recorded. `data_dir` names the directory
/// in errors.
pub(super) fn settle(
    data_dir: &Path,
    ours: &Path,
    requested: Option<Engine>,
) -> Result<Engine, DataDirError> {
    let io_err = |source| DataDirError::Io {
        path: data_dir.to_path_buf(),
        source,
    };
    let file = ours.join(ENGINE_FILE);
    let recorded = match fs::read_to_string(&file) {
        Ok(found) => {
            Engine::from_name(found.trim()).ok_or_else(|| DataDirError::UnknownEngine {
                path: data_dir.to_path_buf(),
                found: found.trim().to_string(),
            })?
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let engine = if ours.join("kv").exists() {
                Engine::Sled
            } else {
                requested.unwrap_or(Engine::DEFAULT)
            };
            // Written whole and durable before the engine makes its files, so
            // that a store never exists without its engine's name.
            write_atomically(&file, engine.name().as_bytes()).map_err(io_err)?;
            engine
        }
        Err(e) => return Err(io_err(e)),
    };
    match requested {
        Some(asked) if asked != recorded => Err(DataDirError::EngineMismatch {
            path: data_dir.to_path_buf(),
            recorded,
            requested: asked,
        }),
        _ => Ok(recorded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(dir: &Path) -> std::path::PathBuf {
        let ours = dir.join("oxetcd");
        fs::create_dir_all(&ours).expect("mkdir");
        ours
    }

    #[test]
    fn a_new_store_records_the_requested_engine_and_keeps_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ours = ours(dir.path());
        assert_eq!(
            settle(dir.path(), &ours, Some(Engine::Redb)).expect("settle"),
            Engine::Redb
        );
        assert_eq!(
            fs::read_to_string(ours.join(ENGINE_FILE)).expect("read"),
            "redb"
        );
        // A restart without the flag opens what the data was written with.
        assert_eq!(
            settle(dir.path(), &ours, None).expect("settle"),
            Engine::Redb
        );
        assert_eq!(
            settle(dir.path(), &ours, Some(Engine::Redb)).expect("settle"),
            Engine::Redb
        );
    }

    #[test]
    fn a_new_store_without_a_request_gets_redb() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ours = ours(dir.path());
        assert_eq!(
            settle(dir.path(), &ours, None).expect("settle"),
            Engine::Redb
        );
    }

    #[test]
    fn a_store_from_before_engines_were_recorded_is_sled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ours = ours(dir.path());
        fs::create_dir_all(ours.join("kv")).expect("mkdir kv");
        let err = settle(dir.path(), &ours, Some(Engine::Redb)).expect_err("mismatch");
        assert_eq!(
            err.to_string(),
            format!(
                "data-dir {:?} holds a store written with the sled engine; \
                 --experimental-backend=redb cannot open it (omit the flag, or give \
                 --experimental-backend=sled)",
                dir.path()
            )
        );
        assert_eq!(
            settle(dir.path(), &ours, None).expect("settle"),
            Engine::Sled
        );
        assert_eq!(
            fs::read_to_string(ours.join(ENGINE_FILE)).expect("read"),
            "sled"
        );
    }

    #[test]
    fn an_unknown_recorded_engine_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ours = ours(dir.path());
        fs::write(ours.join(ENGINE_FILE), "bbolt\n").expect("write");
        assert!(matches!(
            settle(dir.path(), &ours, None),
            Err(DataDirError::UnknownEngine { found, .. }) if found == "bbolt"
        ));
    }
}
