//! What oxetcd does with a flag set away from its default, by its row's
//! policy: nothing more for a supported flag, refuse to start for one it
//! cannot honour, and a warning saying what oxetcd does instead for one it
//! accepts but ignores.

use super::flags::{Flag, Kind, Policy, FLAGS};
use super::go_values::{parse_go_bool, parse_go_duration, parse_go_int, parse_go_uint};
use super::values::Values;
use super::ConfigError;

impl Values {
    /// Whether a set value differs from the default, comparing typed values
    /// (so "--snapshot-count=100000" or "--grpc-keepalive-min-time=5000ms"
    /// count as default). Also rejects values of the wrong type.
    fn differs_from_default(&self, f: &Flag) -> Result<bool, ConfigError> {
        let Some(r) = self.get(f.name) else {
            return Ok(false);
        };
        let differs = match f.kind {
            Kind::Str => r.value != f.default,
            Kind::Legacy => true,
            Kind::Bool => self.bool(f.name)? != parse_go_bool(f.default).unwrap_or_default(),
            Kind::Uint(bits) => {
                self.uint(f.name, bits)? != parse_go_uint(f.default, bits).unwrap_or_default()
            }
            Kind::Int(bits) => {
                self.int(f.name, bits)? != parse_go_int(f.default, bits).unwrap_or_default()
            }
            Kind::Duration => {
                self.duration(f.name)? != parse_go_duration(f.default).unwrap_or_default()
            }
            Kind::Urls => !r.value.trim().is_empty() && r.value != f.default,
        };
        Ok(differs)
    }

    /// Refuses the flags oxetcd cannot honour and notes the ones it ignores.
    pub(super) fn apply_policies(&mut self) -> Result<(), ConfigError> {
        let mut notes = Vec::new();
        for f in FLAGS {
            if !self.differs_from_default(f)? {
                continue;
            }
            let Some(r) = self.get(f.name) else {
                continue;
            };
            match f.policy {
                Policy::Supported => {}
                Policy::Reject(reason) => {
                    return Err(ConfigError::Unsupported {
                        flag: r.label(f.name),
                        reason: reason.to_string(),
                    });
                }
                // etcd's own words for its ignored flags.
                Policy::Warn(_) if f.kind == Kind::Legacy => notes.push(format!(
                    "flag \"{}\" is no longer supported - ignoring",
                    r.label(f.name)
                )),
                Policy::Warn(reason) => notes.push(format!(
                    "{}={} is ignored: {reason}",
                    r.label(f.name),
                    r.value
                )),
            }
        }
        self.warnings.extend(notes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;

    #[test]
    fn rejected_flags_are_named() {
        for (args, flag) in [
            (
                &["--discovery", "https://discovery.etcd.io/abc"][..],
                "--discovery",
            ),
            (&["--discovery-srv", "example.com"], "--discovery-srv"),
            (&["--discovery-srv-name=x"], "--discovery-srv-name"),
            (&["--proxy", "on"], "--proxy"),
            (
                &["--proxy-refresh-interval", "1000"],
                "--proxy-refresh-interval",
            ),
            (&["--enable-v2"], "--enable-v2"),
            (&["--enable-v2=true"], "--enable-v2"),
            (
                &["--experimental-enable-v2v3", "v2/"],
                "--experimental-enable-v2v3",
            ),
        ] {
            let e = err(args);
            assert!(
                e.starts_with(&format!("{flag} is not supported by oxetcd")),
                "{e}"
            );
        }
        assert_eq!(
            err(&["--discovery-srv", "x"]),
            "--discovery-srv is not supported by oxetcd: discovery bootstrap is not implemented; use --initial-cluster"
        );
        // Set to their defaults they change nothing, so they pass.
        let c = cfg(&[
            "--enable-v2=false",
            "--proxy",
            "off",
            "--discovery-fallback=proxy",
        ]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn ignored_flags_warn_only_when_changed() {
        let c = cfg(&[
            "--snapshot-count",
            "100000",
            "--grpc-keepalive-min-time=5000ms",
            "--strict-reconfig-check=true",
            "--auto-compaction-mode",
            "periodic",
            "--metrics=basic",
        ]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = cfg(&[
            "--snapshot-count",
            "5000",
            "--heartbeat-interval",
            "250",
            "--election-timeout",
            "2500",
            "--quota-backend-bytes",
            "8589934592",
            "--experimental-initial-corrupt-check",
            "--experimental-corrupt-check-time=3m",
            "--grpc-keepalive-interval",
            "10s",
            "--listen-metrics-urls",
            "http://127.0.0.1:2381",
            "--strict-reconfig-check=false",
            "-v",
        ]);
        assert_eq!(c.quota_backend_bytes, 8_589_934_592);
        assert!(c.initial_corrupt_check);
        assert_eq!(
            c.corrupt_check_interval,
            Some(std::time::Duration::from_secs(180))
        );
        assert!(!c.strict_reconfig_check);
        let flags: Vec<&str> = c
            .warnings
            .iter()
            .map(|w| w.split('=').next().unwrap_or_default())
            .collect();
        assert_eq!(
            flags,
            [
                "--grpc-keepalive-interval",
                "flag \"--v\" is no longer supported - ignoring",
            ]
        );
    }
}
