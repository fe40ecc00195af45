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

/// An RSA key pair for JWTs, in a temporary directory.
#[allow(dead_code)] // not every test file makes JWTs
pub struct KeyPair {
    pub private: std::path::PathBuf,
    pub public: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A fresh RSA key pair made with openssl; without openssl the test skips,
/// saying why, except under CI=true, where it fails.
#[allow(dead_code)] // not every test file makes JWTs
pub fn rsa_key_pair() -> Option<KeyPair> {
    let dir = tempfile::tempdir().expect("temp dir");
    let private = dir.path().join("jwt.pem");
    let public = dir.path().join("jwt.pub.pem");
    let openssl = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let made = openssl(&[
        "genrsa".as_ref(),
        "-out".as_ref(),
        private.as_os_str(),
        "2048".as_ref(),
    ]) && openssl(&[
        "rsa".as_ref(),
        "-in".as_ref(),
        private.as_os_str(),
        "-pubout".as_ref(),
        "-out".as_ref(),
        public.as_os_str(),
    ]);
    if !made {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "cannot make an RSA key pair: openssl is needed"
        );
        eprintln!("skipped: openssl is needed to make JWT keys");
        return None;
    }
    Some(KeyPair {
        private,
        public,
        _dir: dir,
    })
}
