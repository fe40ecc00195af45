//! The programs tests drive (etcd, kubectl, python3): a test whose program
//! is missing skips, except under CI=true, where CI installs them and a
//! missing one is a failure.

use std::process::Command;

/// True when `program args` runs and succeeds.
pub fn present(program: &str, args: &[&str]) -> bool {
    let found = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{program} is required under CI=true"
        );
        eprintln!("{program} not found: skipped (CI=true makes this a failure)");
    }
    found
}
