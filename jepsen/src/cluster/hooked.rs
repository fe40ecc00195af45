//! The cluster's side of a `--db` hook ([`super::hook`]): what each call
//! about a member is told, and what its `alive` means for the `members`
//! verdict.

use super::hook::{Action, Call, Hook};
use super::Cluster;
use crate::error::JepsenError;

impl Cluster {
    /// The environment of a hook's call about member `i`: the server's,
    /// then `SERVER`, then the member ([`super::launch::Launch::hook_env`]),
    /// which wins over a `--server-env` of the same name.
    fn hook_env(&self, i: usize) -> Vec<(String, String)> {
        let mut env = self.server_env(i);
        if !self.config.binary.as_os_str().is_empty() {
            env.push(("SERVER".into(), self.config.binary.display().to_string()));
        }
        env.extend(self.launch(i).hook_env());
        env
    }

    /// Gives `call` the hook's call of `action` about member `i`: `start`
    /// runs in the member's namespace, with the run's extra flags.
    fn with_call<T>(&self, action: Action, i: usize, call: impl FnOnce(&Call<'_>) -> T) -> T {
        let env = self.hook_env(i);
        let start = action == Action::Start;
        let netns = self.netns.as_ref().filter(|_| start).map(|n| n.ns(i));
        let member = &self.members[i];
        call(&Call {
            member: &member.name,
            member_dir: &member.dir,
            env: &env,
            args: if start { &self.config.extra_args } else { &[] },
            netns: netns.as_deref(),
        })
    }

    /// Runs `action` of the hook for member `i`.
    pub(super) fn call_hook(
        &self,
        hook: &Hook,
        action: Action,
        i: usize,
    ) -> Result<(), JepsenError> {
        self.with_call(action, i, |call| hook.run(action, call))
    }

    /// Why the hook's member `i` no longer runs, if it does not: its
    /// `alive` says so, or cannot say.
    pub(super) fn hook_ended(&self, i: usize) -> Option<String> {
        let hook = self.hook.as_ref()?;
        match self.with_call(Action::Alive, i, |call| hook.alive(call)) {
            Ok(true) => None,
            Ok(false) => Some("exited by itself (the hook's `alive` says so)".into()),
            Err(e) => Some(format!("not known to run: {e}")),
        }
    }
}
