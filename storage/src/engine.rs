//! Which on-disk engine a store runs on, chosen per data directory
//! (`--experimental-backend`), and opening it by that name.

use std::fmt;
use std::path::Path;

use crate::backend::Backend;
use crate::error::Result;
use crate::{RedbBackend, SledBackend};

/// An engine that implements [`Backend`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sled,
    Redb,
}

impl Engine {
    /// Every engine, in the order help texts list them.
    pub const ALL: [Engine; 2] = [Engine::Sled, Engine::Redb];

    /// The engine of a new data directory when none is asked for: redb,
    /// chosen by measurement (docs/storage.md). Existing data directories
    /// keep the engine they were written with.
    pub const DEFAULT: Engine = Engine::Redb;

    /// The name flags and data directories use.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sled => "sled",
            Engine::Redb => "redb",
        }
    }

    /// The engine called `name`, if any.
    pub fn from_name(name: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.name() == name)
    }

    /// Opens (or creates) this engine's database in directory `dir`, with a
    /// page cache of `cache_bytes`.
    pub fn open(self, dir: &Path, cache_bytes: u64) -> Result<Box<dyn Backend>> {
        Ok(match self {
            Engine::Sled => Box::new(SledBackend::open(dir, cache_bytes)?),
            Engine::Redb => Box::new(RedbBackend::open(dir, cache_bytes)?),
        })
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_none() {
        for engine in Engine::ALL {
            assert_eq!(Engine::from_name(engine.name()), Some(engine));
        }
        assert_eq!(Engine::from_name("bbolt"), None);
        assert_eq!(Engine::from_name("Redb"), None);
    }

    #[test]
    fn each_engine_opens_its_own_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(
            Engine::Sled
                .open(&dir.path().join("s"), 1 << 20)
                .expect("sled"),
        );
        drop(
            Engine::Redb
                .open(&dir.path().join("r"), 1 << 20)
                .expect("redb"),
        );
        assert!(dir.path().join("s/conf").is_file());
        assert!(dir
            .path()
            .join("r")
            .join(crate::redb_backend::REDB_FILE)
            .is_file());
    }
}
