//! Runs whose members are started, stopped and signalled by a `--db` hook
//! (docs/jepsen.md, Any store: --db hooks), not by the tester, one cluster
//! at a time:
//!
//! - oxetcd through `jepsen/hooks/etcd-flags` and Debian's etcd 3.4 through
//!   `jepsen/hooks/etcd-config-file` (a store started from a file the hook
//!   writes) pass 20-second `register` runs whose kills and pauses (and
//!   partitions, as root) went through the hook, and the hook stopped every
//!   member at the end;
//! - a member whose process dies on its own under a hook is reported by the
//!   `members` verdict as crashed (the hook's `alive`);
//! - a hook that fails `start` ends the run with an error naming the hook,
//!   the action, the member and what the hook said (through the binary,
//!   with `--db` and no `--server`).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oxetcd_jepsen::check::Validity;
use oxetcd_jepsen::nemesis::{preview, Fault, FaultKind, NemesisConfig};
use oxetcd_jepsen::run::RunConfig;
use support::{config, etcd, members_of, oxetcd, run_alone, valid_or_kept};

/// A shipped hook, `jepsen/hooks/<name>`.
fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("hooks")
        .join(name)
}

/// An executable `sh` script named `name` in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The kinds of a fault the schedule makes.
fn kind(fault: &Fault) -> Option<FaultKind> {
    match fault {
        Fault::Kill(_) => Some(FaultKind::Kill),
        Fault::Pause(_) | Fault::PauseLeader => Some(FaultKind::Pause),
        Fault::Partition { .. } | Fault::IsolateLeader | Fault::Cut { .. } => {
            Some(FaultKind::Partition)
        }
        _ => None,
    }
}

/// A 20-second `register` run of `server` through `hook`, whose first
/// three faults include every kind of the run (the first such seed from
/// 40 on), so that each goes through the hook (or, for partitions, reaches
/// members the hook started in their namespaces).
fn hooked_config(server: PathBuf, hook: PathBuf) -> (RunConfig, tempfile::TempDir) {
    let (mut config, dir) = config(server, "register", 0);
    let kinds: Vec<FaultKind> = config.nemesis.iter().map(|k| k.parse().unwrap()).collect();
    let schedule = NemesisConfig {
        kinds: kinds.clone(),
        ..NemesisConfig::default()
    };
    config.seed = (40..)
        .find(|&seed| {
            let first: Vec<_> = preview(&schedule, 3, seed, 3).iter().map(kind).collect();
            kinds.iter().all(|k| first.contains(&Some(*k)))
        })
        .unwrap();
    // Three faults fit in the time: each at most 2 s after the last
    // ended, held at most 3 s.
    config.time_limit_s = 20;
    config.fault_interval_ms = (1000, 2000);
    config.fault_hold_ms = (2000, 3000);
    config.db = Some(hook);
    (config, dir)
}

/// Makes the run: it must be valid, each of its fault kinds applied, the
/// hook called for kill and pause, and every member stopped by the hook at
/// the end (its `alive` says so). Returns the run's directory.
async fn passes_through(config: RunConfig, dir: tempfile::TempDir) -> tempfile::TempDir {
    let hook = config.db.clone().unwrap();
    let out = config.out.clone();
    let kinds = config.nemesis.clone();
    let (outcome, faults) = run_alone(config).await;
    let dir = valid_or_kept(&outcome, dir);
    assert!(
        outcome.operations > 200,
        "{} operations",
        outcome.operations
    );
    for kind in &kinds {
        assert!(
            faults.iter().any(|f| f["kind"] == kind.as_str()),
            "no {kind} fault: {faults:?}"
        );
    }
    let mut calls = String::new();
    for name in ["n1", "n2", "n3"] {
        let member_dir = out.join("members").join(name);
        calls += &std::fs::read_to_string(member_dir.join("hook.log")).unwrap();
        let alive = std::process::Command::new(&hook)
            .arg("alive")
            .env("MEMBER_DIR", &member_dir)
            .status()
            .unwrap();
        assert_eq!(alive.code(), Some(1), "{name} still runs after the run");
    }
    for action in ["start", "kill", "pause", "resume", "stop"] {
        assert!(
            calls.contains(&format!("--- {action}")),
            "no {action}:\n{calls}"
        );
    }
    dir
}

/// oxetcd started by `etcd-flags` (the same flags the tester gives it
/// without a hook).
#[tokio::test(flavor = "multi_thread")]
async fn oxetcd_passes_through_the_etcd_flags_hook() {
    let (config, dir) = hooked_config(oxetcd(), shipped("etcd-flags"));
    let out = config.out.clone();
    let _dir = passes_through(config, dir).await;
    assert_eq!(
        members_of(&out),
        Vec::<String>::new(),
        "members left running"
    );
}

/// Debian's etcd started by `etcd-config-file`, from the YAML file it
/// writes (the example of a store with its own command line).
#[tokio::test(flavor = "multi_thread")]
async fn etcd_passes_through_the_config_file_hook() {
    let Some(etcd) = etcd() else {
        return;
    };
    let (config, dir) = hooked_config(etcd, shipped("etcd-config-file"));
    let written = config.out.join("members/n1/config.yml");
    let _dir = passes_through(config, dir).await;
    let written = std::fs::read_to_string(written).unwrap();
    assert!(
        written.contains("initial-cluster-state: 'new'"),
        "{written}"
    );
}

/// Member n2's server is killed 5 s after the hook started it, behind the
/// tester's back: the hook's `alive` says it is gone, and the `members`
/// verdict reports it crashed.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_dying_under_a_hook_is_reported_crashed() {
    let (mut config, dir) = config(oxetcd(), "register", 31);
    let hook = script(
        dir.path(),
        "dies",
        &format!(
            "hooks={}\n\
             \"$hooks/etcd-flags\" \"$@\" || exit\n\
             if [ \"$1\" = start ] && [ \"$MEMBER_NAME\" = n2 ]; then\n\
             pid=$(cat \"$MEMBER_DIR/server.pid\")\n\
             (sleep 5; kill -9 \"$pid\") </dev/null >/dev/null 2>&1 &\n\
             fi",
            shipped("").display()
        ),
    );
    config.db = Some(hook);
    config.nemesis = vec!["none".into()];
    config.time_limit_s = 10;
    let (outcome, _) = run_alone(config).await;
    let members = outcome
        .verdicts
        .iter()
        .find(|v| v.checker == "members")
        .unwrap();
    assert_eq!(members.validity, Validity::Invalid, "{members:#?}");
    assert_eq!(members.anomalies.len(), 1, "{members:#?}");
    let crashed = &members.anomalies[0];
    assert_eq!(crashed.kind, "crashed");
    assert!(
        crashed
            .explanation
            .starts_with("member n2: exited by itself"),
        "{}",
        crashed.explanation
    );
}

/// The tester with `--db` and no `--server`, whose hook cannot start the
/// store: exit status 2 and an error that says which hook, action and
/// member failed, and what the hook said.
#[test]
fn a_hook_failing_start_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let hook = script(
        dir.path(),
        "broken",
        "[ \"$1\" = start ] || exit 0\necho \"mystore: cannot bind $CLIENT_URL\" >&2\nexit 4",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oxetcd-jepsen"))
        .arg("--db")
        .arg(&hook)
        .args(["--nemesis", "none", "--time-limit", "1", "--quiet", "--out"])
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let said = format!(
        "the --db hook {} start (member n1): exit status 4",
        hook.display()
    );
    assert!(stderr.contains(&said), "{stderr}");
    assert!(stderr.contains("mystore: cannot bind http://"), "{stderr}");
}
