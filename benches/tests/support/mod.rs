//! What the load generator's integration tests share: where the workspace
//! and its build output are, to find (or build) the binaries they start.

use std::path::{Path, PathBuf};

/// The workspace's root directory (benches/'s parent).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_owned()
}

/// Cargo's target directory: CARGO_TARGET_DIR (relative to the workspace
/// root when relative), else the workspace's target/.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}
