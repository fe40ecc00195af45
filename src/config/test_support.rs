//! Helpers for the config tests: parse a command line with a given
//! environment instead of the process's own.

use super::{parse_with_env, Config, ConfigError, Invocation};

pub(super) fn run_env(args: &[&str], env: &[(&str, &str)]) -> Result<Invocation, ConfigError> {
    let names: Vec<String> = env.iter().map(|(k, _)| k.to_string()).collect();
    let lookup = |k: &str| {
        env.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string())
    };
    parse_with_env(
        std::iter::once("oxetcd").chain(args.iter().copied()),
        &names,
        &lookup,
    )
}

pub(super) fn run(args: &[&str]) -> Result<Invocation, ConfigError> {
    run_env(args, &[])
}

pub(super) fn cfg(args: &[&str]) -> Config {
    cfg_env(args, &[])
}

pub(super) fn cfg_env(args: &[&str], env: &[(&str, &str)]) -> Config {
    match run_env(args, env) {
        Ok(Invocation::Run(c)) => c,
        other => panic!("expected a config for {args:?}, got {other:?}"),
    }
}

pub(super) fn err(args: &[&str]) -> String {
    match run(args) {
        Err(e) => e.to_string(),
        Ok(other) => panic!("expected an error for {args:?}, got {other:?}"),
    }
}
