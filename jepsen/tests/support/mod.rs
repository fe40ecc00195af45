//! What the test files share.

use oxetcd_jepsen::powerfs::PowerFs;

/// Whether the power-loss file system can be mounted here (/dev/fuse, root,
/// fusermount3); without it a test skips, saying why, except under CI=true,
/// where it fails.
pub fn power_fs_available() -> bool {
    match PowerFs::unavailable() {
        None => true,
        Some(why) => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "power-loss file system tests cannot run: {why}"
            );
            eprintln!("skipped: {why}");
            false
        }
    }
}
