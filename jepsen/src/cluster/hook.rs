//! `--db HOOK`: members started, stopped and signalled by an executable of
//! the user's, as Jepsen's DB, Process and Pause protocols, so that a store
//! which does not take etcd's flags can be tested. The tester runs
//! `HOOK <action> [args]` with the member described in its environment
//! ([`super::launch::Launch::hook_env`]) and never touches the store's
//! processes itself.
//!
//! Actions: `start` (launch the member in the background, its output to
//! `$LOG_FILE`; exit once launched; the run's `--server-arg`s follow the
//! action), `kill` (as kill -9: exit once the process is gone), `stop`
//! (gracefully, at the end of the run, of every member whether the tester
//! thinks it runs or not: exit once it is gone), `pause` /
//! `resume` (as SIGSTOP / SIGCONT), `alive` (exit 0 while the member's
//! process runs, 1 once it has gone). `kill`, `stop`, `pause` and `resume`
//! of a member whose process is gone must succeed. Any other exit status,
//! or no exit within the call's deadline, is an error naming the hook, the
//! action, the member and the end of the hook's output, which goes to
//! `<member dir>/hook.log`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::last_lines;
use crate::error::JepsenError;

/// How long a call may take before it is an error (then the hook's process
/// is killed): long enough for a graceful `stop`.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// How often a running call is looked at.
const POLL: Duration = Duration::from_millis(10);
/// Lines of the hook's output quoted in an error.
const OUTPUT_LINES: usize = 5;

/// What the tester asks of a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Start,
    Kill,
    Stop,
    Pause,
    Resume,
    Alive,
}

impl Action {
    /// The action's name, the hook's first argument.
    pub fn name(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Kill => "kill",
            Action::Stop => "stop",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Alive => "alive",
        }
    }
}

/// The member one call is about.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub member: &'a str,
    /// Where `hook.log` is kept.
    pub member_dir: &'a Path,
    /// The whole environment the hook gets on top of the tester's.
    pub env: &'a [(String, String)],
    /// Arguments after the action (`start`'s: the run's `--server-arg`s).
    pub args: &'a [String],
    /// Run the hook in this network namespace (`start`, so that the store
    /// listens there).
    pub netns: Option<&'a str>,
}

/// A `--db` hook.
#[derive(Clone, Debug)]
pub struct Hook {
    path: PathBuf,
    deadline: Duration,
}

impl Hook {
    pub fn new(path: PathBuf) -> Hook {
        Hook {
            path,
            deadline: DEADLINE,
        }
    }

    /// The same hook with another deadline per call.
    pub fn with_deadline(self, deadline: Duration) -> Hook {
        Hook { deadline, ..self }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `action`; Ok once the hook exited 0.
    pub fn run(&self, action: Action, call: &Call<'_>) -> Result<(), JepsenError> {
        match self.exit_code(action, call)? {
            (0, _) => Ok(()),
            (code, output) => Err(self.error(action, call, format!("exit status {code}"), output)),
        }
    }

    /// Whether the member's process runs, by `alive`: 0 yes, 1 no.
    pub fn alive(&self, call: &Call<'_>) -> Result<bool, JepsenError> {
        match self.exit_code(Action::Alive, call)? {
            (0, _) => Ok(true),
            (1, _) => Ok(false),
            (code, output) => Err(self.error(
                Action::Alive,
                call,
                format!("exit status {code} (0: running, 1: gone)"),
                output,
            )),
        }
    }

    /// Runs the hook to its end or its deadline: its exit code and what it
    /// wrote.
    fn exit_code(&self, action: Action, call: &Call<'_>) -> Result<(i32, String), JepsenError> {
        let log_path = call.member_dir.join("hook.log");
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(JepsenError::io(&log_path))?;
        let _ = writeln!(log, "--- {} {}", action.name(), call.args.join(" "));
        let said_from = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_err = log.try_clone().map_err(JepsenError::io(&log_path))?;
        let mut command = match call.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.path);
                c
            }
            None => Command::new(&self.path),
        };
        // A file, not a pipe: a store left holding the hook's output
        // would keep a pipe open, and the call from ending.
        let mut child = command
            .arg(action.name())
            .args(call.args)
            .envs(call.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| self.error(action, call, e.to_string(), String::new()))?;
        let deadline = Instant::now() + self.deadline;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let output = output_since(&log_path, said_from);
                    let reason = format!("no exit within {:?}", self.deadline);
                    return Err(self.error(action, call, reason, output));
                }
                Err(e) => {
                    let output = output_since(&log_path, said_from);
                    return Err(self.error(action, call, e.to_string(), output));
                }
            }
        };
        let output = output_since(&log_path, said_from);
        match status.code() {
            Some(code) => Ok((code, output)),
            None => Err(self.error(action, call, status.to_string(), output)),
        }
    }

    fn error(
        &self,
        action: Action,
        call: &Call<'_>,
        reason: String,
        output: String,
    ) -> JepsenError {
        JepsenError::Hook {
            hook: self.path.clone(),
            action: action.name(),
            member: call.member.to_owned(),
            reason,
            output,
        }
    }
}

/// The last lines written to `path` from byte `from` on.
fn output_since(path: &Path, from: u64) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let since = text.get(from as usize..).unwrap_or_default();
    last_lines(&String::from_utf8_lossy(since), OUTPUT_LINES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// An executable `sh` script in `dir`.
    fn script(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("hook");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn call<'a>(dir: &'a Path, env: &'a [(String, String)], args: &'a [String]) -> Call<'a> {
        Call {
            member: "n3",
            member_dir: dir,
            env,
            args,
            netns: None,
        }
    }

    #[test]
    fn a_hook_gets_its_action_arguments_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen");
        let hook = Hook::new(script(
            dir.path(),
            &format!("echo \"$* $MEMBER_NAME $DATA_DIR\" >>{}", seen.display()),
        ));
        let env = [
            ("MEMBER_NAME".to_owned(), "n3".to_owned()),
            ("DATA_DIR".to_owned(), "/d".to_owned()),
        ];
        let args = ["--snapshot-count=50".to_owned()];
        hook.run(Action::Start, &call(dir.path(), &env, &args))
            .unwrap();
        hook.run(Action::Pause, &call(dir.path(), &env, &[]))
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap(),
            "start --snapshot-count=50 n3 /d\npause n3 /d\n"
        );
        let log = std::fs::read_to_string(dir.path().join("hook.log")).unwrap();
        assert!(log.contains("--- start --snapshot-count=50"), "{log}");
    }

    #[test]
    fn a_failing_call_names_the_hook_action_member_and_output() {
        let dir = tempfile::tempdir().unwrap();
        let hook = Hook::new(script(
            dir.path(),
            "echo earlier\necho 'no such store' >&2\nexit 3",
        ));
        let error = hook
            .run(Action::Start, &call(dir.path(), &[], &[]))
            .unwrap_err()
            .to_string();
        for part in [
            "hook",
            " start ",
            "member n3",
            "exit status 3",
            "no such store",
        ] {
            assert!(error.contains(part), "{part}: {error}");
        }
    }

    #[test]
    fn alive_is_0_or_1_and_anything_else_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let hook = Hook::new(script(dir.path(), "exit $CODE"));
        let alive = |code: &str| {
            let env = [("CODE".to_owned(), code.to_owned())];
            hook.alive(&call(dir.path(), &env, &[]))
        };
        assert!(alive("0").unwrap());
        assert!(!alive("1").unwrap());
        assert!(alive("2")
            .unwrap_err()
            .to_string()
            .contains("exit status 2"));
    }

    #[test]
    fn a_call_past_its_deadline_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        // The store it leaves behind holds the output open: the call still
        // ends at its deadline.
        let hook = Hook::new(script(dir.path(), "sleep 5 &\nsleep 5"))
            .with_deadline(Duration::from_millis(300));
        let started = Instant::now();
        let error = hook
            .run(Action::Kill, &call(dir.path(), &[], &[]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("no exit within"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn a_missing_hook_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let hook = Hook::new(dir.path().join("absent"));
        let error = hook.run(Action::Start, &call(dir.path(), &[], &[]));
        assert!(error.unwrap_err().to_string().contains("absent"));
    }
}
