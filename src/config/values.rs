//! Each flag's value as given, from the command line or (for flags the
//! command line left unset) its `ETCD_*` variable, or from --config-file
//! instead of both, remembering which, so that errors name the source as
//! etcd does ("flag --name" or "ETCD_NAME"); read as the flag's type with
//! Go's syntax, or the table's default.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::ArgMatches;

use super::file;
use super::flags::{env_name, flag_spec, FLAGS};
use super::go_values::{parse_go_bool, parse_go_duration, parse_go_int, parse_go_uint};
use super::ConfigError;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Flag,
    Env(String),
    /// A key of --config-file (e.g. `client-transport-security.cert-file`).
    File(String),
}

/// One flag's value, as given.
#[derive(Debug, Clone)]
pub(super) struct Raw {
    pub(super) value: String,
    origin: Origin,
}

impl Raw {
    /// How etcd names the source in messages: "--name" or "ETCD_NAME".
    pub(super) fn label(&self, flag: &str) -> String {
        match &self.origin {
            Origin::Flag => format!("--{flag}"),
            Origin::Env(k) => k.clone(),
            Origin::File(key) => format!("{key} (config file)"),
        }
    }

    pub(super) fn invalid(&self, flag: &str, reason: impl Into<String>) -> ConfigError {
        let origin = match &self.origin {
            Origin::Flag => format!("flag --{flag}"),
            Origin::Env(k) => k.clone(),
            Origin::File(key) => format!("{key} in the config file"),
        };
        ConfigError::InvalidValue {
            origin,
            value: self.value.clone(),
            reason: reason.into(),
        }
    }
}

/// Every flag set on the command line or in the environment.
pub(super) struct Values {
    raw: HashMap<&'static str, Raw>,
    /// Remarks for the log, in the order found; `build` hands them to the
    /// Config.
    pub(super) warnings: Vec<String>,
}

impl Values {
    /// Command-line values, then (like etcd) the environment for flags the
    /// command line left unset; empty environment values count as unset.
    pub(super) fn collect(
        matches: &ArgMatches,
        env_names: &[String],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Values {
        let mut raw = HashMap::new();
        let mut warnings = Vec::new();
        for f in FLAGS {
            let key = env_name(f.name);
            // etcd checks --version before it reads the environment.
            let from_env = if f.name == "version" {
                None
            } else {
                env(&key).filter(|v| !v.is_empty())
            };
            let from_flag = (matches.value_source(f.name) == Some(ValueSource::CommandLine))
                .then(|| matches.try_get_one::<String>(f.name).ok().flatten())
                .flatten();
            if let Some(v) = from_flag {
                if from_env.is_some() {
                    warnings.push(format!(
                        "environment variable {key} is shadowed by the command-line flag --{}",
                        f.name
                    ));
                }
                let origin = Origin::Flag;
                raw.insert(
                    f.name,
                    Raw {
                        value: v.clone(),
                        origin,
                    },
                );
            } else if let Some(v) = from_env {
                let origin = Origin::Env(key);
                raw.insert(f.name, Raw { value: v, origin });
            }
        }
        let known: HashSet<String> = FLAGS.iter().map(|f| env_name(f.name)).collect();
        for k in env_names {
            if k.starts_with("ETCD_") && !known.contains(k) {
                warnings.push(format!("unrecognized environment variable {k}"));
            }
        }
        Values { raw, warnings }
    }

    /// As etcd, when --config-file is given: the file's settings replace
    /// every other flag and `ETCD_*` variable, which are named in a warning.
    pub(super) fn use_config_file(&mut self, path: &str) -> Result<(), ConfigError> {
        let settings = file::read(path)?;
        let mut ignored: Vec<String> = self
            .raw
            .iter()
            .filter(|(flag, _)| !matches!(**flag, "config-file" | "version"))
            .map(|(flag, r)| r.label(flag))
            .collect();
        ignored.sort();
        self.raw.retain(|flag, _| *flag == "config-file");
        for s in settings {
            self.raw.insert(
                s.flag,
                Raw {
                    value: s.value,
                    origin: Origin::File(s.key),
                },
            );
        }
        // The remarks about the environment no longer apply.
        self.warnings.clear();
        if !ignored.is_empty() {
            self.warnings.push(format!(
                "loaded server configuration from {path:?}: other configuration command line flags and environment variables are ignored ({})",
                ignored.join(", ")
            ));
        }
        Ok(())
    }

    pub(super) fn get(&self, flag: &str) -> Option<&Raw> {
        self.raw.get(flag)
    }

    pub(super) fn is_set(&self, flag: &str) -> bool {
        self.raw.contains_key(flag)
    }

    pub(super) fn default_of(flag: &str) -> &'static str {
        flag_spec(flag).map_or("", |f| f.default)
    }

    pub(super) fn string(&self, flag: &str) -> String {
        self.get(flag)
            .map_or_else(|| Self::default_of(flag).to_string(), |r| r.value.clone())
    }

    /// None when unset or empty (all such flags default to empty).
    pub(super) fn opt_string(&self, flag: &str) -> Option<String> {
        Some(self.string(flag)).filter(|s| !s.is_empty())
    }

    pub(super) fn opt_path(&self, flag: &str) -> Option<PathBuf> {
        self.opt_string(flag).map(PathBuf::from)
    }

    fn typed<T>(
        &self,
        flag: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.get(flag) {
            Some(r) => parse(&r.value).map_err(|reason| r.invalid(flag, reason)),
            // Defaults in the table are valid by construction (tested).
            None => parse(Self::default_of(flag)).map_err(|reason| ConfigError::InvalidValue {
                origin: format!("default of --{flag}"),
                value: Self::default_of(flag).to_string(),
                reason,
            }),
        }
    }

    pub(super) fn bool(&self, flag: &str) -> Result<bool, ConfigError> {
        self.typed(flag, parse_go_bool)
    }

    pub(super) fn uint(&self, flag: &str, bits: u32) -> Result<u64, ConfigError> {
        self.typed(flag, |s| parse_go_uint(s, bits))
    }

    pub(super) fn usize(&self, flag: &str) -> Result<usize, ConfigError> {
        let n = self.uint(flag, 64)?;
        usize::try_from(n).map_err(|_| match self.get(flag) {
            Some(r) => r.invalid(flag, "value out of range"),
            None => ConfigError::Invalid(format!("default of --{flag} out of range")),
        })
    }

    pub(super) fn int(&self, flag: &str, bits: u32) -> Result<i64, ConfigError> {
        self.typed(flag, |s| parse_go_int(s, bits))
    }

    /// Nanoseconds.
    pub(super) fn duration(&self, flag: &str) -> Result<i128, ConfigError> {
        self.typed(flag, parse_go_duration)
    }
}

/// A duration flag that must be above zero (a zero interval would spin).
pub(super) fn positive_duration(
    v: &Values,
    flag: &str,
) -> Result<std::time::Duration, ConfigError> {
    let nanos = v.duration(flag)?;
    if nanos <= 0 {
        return Err(ConfigError::InvalidValue {
            origin: format!("flag --{flag}"),
            value: format!("{nanos}ns"),
            reason: "must be greater than zero".to_string(),
        });
    }
    Ok(std::time::Duration::from_nanos(
        u64::try_from(nanos).unwrap_or(u64::MAX),
    ))
}

/// The error for a value outside `valid`, naming where it came from.
pub(super) fn invalid_choice(v: &Values, flag: &str, valid: &[&str]) -> ConfigError {
    let list = valid
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let reason = format!("valid values are {list}");
    match v.get(flag) {
        Some(r) => r.invalid(flag, reason),
        None => ConfigError::Invalid(format!("default of --{flag}: {reason}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    #[test]
    fn environment_sets_flags() {
        let c = cfg_env(
            &[],
            &[
                ("ETCD_NAME", "envname"),
                ("ETCD_DATA_DIR", "/var/lib/etcd"),
                ("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:3379"),
                ("ETCD_ADVERTISE_CLIENT_URLS", "http://127.0.0.1:3379"),
                ("ETCD_CLIENT_CERT_AUTH", "true"),
                ("ETCD_MAX_TXN_OPS", "256"),
                // Empty means unset, as in etcd.
                ("ETCD_MAX_REQUEST_BYTES", ""),
            ],
        );
        assert_eq!(c.name, "envname");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/etcd"));
        assert_eq!(c.listen_client_urls[0].port, 3379);
        assert!(c.client_tls.client_cert_auth);
        assert_eq!(c.max_txn_ops, 256);
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn flag_beats_environment() {
        let c = cfg_env(&["--name", "flagname"], &[("ETCD_NAME", "envname")]);
        assert_eq!(c.name, "flagname");
        assert!(
            c.warnings.iter().any(|w| w.contains("ETCD_NAME")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn environment_errors_name_the_variable() {
        let e = run_env(&[], &[("ETCD_MAX_REQUEST_BYTES", "lots")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value \"lots\" for ETCD_MAX_REQUEST_BYTES: parse error"
        );
        let e = run_env(&[], &[("ETCD_DISCOVERY", "https://discovery.etcd.io/x")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("ETCD_DISCOVERY is not supported by oxetcd"),
            "{e}"
        );
    }

    #[test]
    fn unknown_environment_variables_are_noted() {
        let c = cfg_env(&[], &[("ETCD_NAMEE", "x")]);
        assert_eq!(
            c.warnings,
            vec!["unrecognized environment variable ETCD_NAMEE"]
        );
    }
}
