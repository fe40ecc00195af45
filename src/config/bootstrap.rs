//! etcd's cross-flag checks before it starts (etcdmain and embed.Config's
//! Validate): raft timing, auto compaction's mode against its retention,
//! advertise URLs required by explicit listen URLs, and this member's place
//! in the initial cluster.

use std::net::ToSocketAddrs;

use std::time::Duration;

use oxetcd_server::AutoCompaction;

use super::go_values::parse_go_duration;
use super::urls::parse_url;
use super::values::Values;
use super::{ClusterState, ConfigError};

/// etcd's upper bound on --election-timeout.
const MAX_ELECTION_MS: u64 = 50_000;

/// etcd's checks of the raft timing flags.
pub(super) fn check_ticks(v: &Values) -> Result<(), ConfigError> {
    let tick = v.uint("heartbeat-interval", 64)?;
    let election = v.uint("election-timeout", 64)?;
    if tick == 0 {
        return Err(ConfigError::Invalid(format!(
            "--heartbeat-interval must be >0 (set to {tick}ms)"
        )));
    }
    if election == 0 {
        return Err(ConfigError::Invalid(format!(
            "--election-timeout must be >0 (set to {election}ms)"
        )));
    }
    if tick.saturating_mul(5) > election {
        return Err(ConfigError::Invalid(format!(
            "--election-timeout[{election}ms] should be at least as 5 times as --heartbeat-interval[{tick}ms]"
        )));
    }
    if election > MAX_ELECTION_MS {
        return Err(ConfigError::Invalid(format!(
            "--election-timeout[{election}ms] is too long, and should be set less than {MAX_ELECTION_MS}ms"
        )));
    }
    Ok(())
}

/// --auto-compaction-mode and --auto-compaction-retention, read as etcd's
/// parseCompactionRetention: a bare decimal number is hours (periodic) or
/// revisions; periodic also takes a Go duration ("30m"). None when the
/// retention is 0, etcd's "disabled".
pub(super) fn auto_compaction(v: &Values) -> Result<Option<AutoCompaction>, ConfigError> {
    let mode = v.string("auto-compaction-mode");
    if mode != "periodic" && mode != "revision" {
        return Err(ConfigError::Invalid(format!(
            "unknown auto-compaction-mode {mode:?}"
        )));
    }
    let Some(r) = v.get("auto-compaction-retention") else {
        return Ok(None);
    };
    let invalid = || r.invalid("auto-compaction-retention", "parse error");
    let policy = match (r.value.parse::<i64>(), mode.as_str()) {
        (Ok(n), _) if n < 0 => return Err(invalid()),
        (Ok(0), _) => None,
        (Ok(n), "revision") => Some(AutoCompaction::Revision(n)),
        (Ok(hours), _) => Some(AutoCompaction::Periodic(Duration::from_secs(
            u64::try_from(hours)
                .unwrap_or(u64::MAX)
                .saturating_mul(3600),
        ))),
        (Err(_), "periodic") => {
            let nanos = parse_go_duration(&r.value).map_err(|_| invalid())?;
            match u64::try_from(nanos) {
                Ok(0) => None,
                Ok(n) => Some(AutoCompaction::Periodic(Duration::from_nanos(n))),
                Err(_) => return Err(invalid()),
            }
        }
        (Err(_), _) => return Err(invalid()),
    };
    Ok(policy)
}

/// etcd drops the default advertise URL once listen URLs are explicit.
pub(super) fn check_advertise_client_urls(v: &Values) -> Result<(), ConfigError> {
    if v.is_set("listen-client-urls") && !v.is_set("advertise-client-urls") {
        return Err(ConfigError::Invalid(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
                .into(),
        ));
    }
    Ok(())
}

/// etcd's checks before bootstrapping a member: it must be in the initial
/// cluster, and when the cluster is new, with its advertised peer URLs.
pub(super) fn check_bootstrap(
    name: &str,
    state: ClusterState,
    advertise_peer_urls: &[String],
    cluster: &[(String, String)],
) -> Result<(), ConfigError> {
    let mut in_cluster: Vec<&str> = cluster
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, u)| u.as_str())
        .collect();
    if in_cluster.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "couldn't find local name {name:?} in the initial cluster configuration"
        )));
    }
    if state == ClusterState::Existing {
        return Ok(());
    }
    let mut advertised: Vec<&str> = advertise_peer_urls.iter().map(String::as_str).collect();
    in_cluster.sort_unstable();
    in_cluster.dedup();
    advertised.sort_unstable();
    advertised.dedup();
    if in_cluster == advertised {
        return Ok(());
    }
    // etcd resolves host names before comparing (localhost == 127.0.0.1).
    if let (Some(a), Some(b)) = (resolve_all(&in_cluster), resolve_all(&advertised)) {
        if a == b {
            return Ok(());
        }
    }
    let missing: Vec<String> = in_cluster
        .iter()
        .filter(|u| !advertised.contains(u))
        .map(|u| format!("{name}={u}"))
        .collect();
    if !missing.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "--initial-cluster has {} but missing from --initial-advertise-peer-urls={}",
            missing.join(","),
            advertised.join(",")
        )));
    }
    let this_member = advertised
        .iter()
        .map(|u| format!("{name}={u}"))
        .collect::<Vec<_>>()
        .join(",");
    let extra: Vec<&str> = advertised
        .iter()
        .copied()
        .filter(|u| !in_cluster.contains(u))
        .collect();
    if !extra.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "--initial-advertise-peer-urls has {} but missing from --initial-cluster={this_member}",
            extra.join(",")
        )));
    }
    Err(ConfigError::Invalid(format!(
        "failed to resolve {} to match --initial-cluster={this_member}",
        advertised.join(",")
    )))
}

/// "scheme://ip:port" for each URL, sorted; None if a host does not resolve.
fn resolve_all(urls: &[&str]) -> Option<Vec<String>> {
    let mut out = Vec::with_capacity(urls.len());
    for u in urls {
        let parts = parse_url(u, "").ok()?;
        if parts.scheme.is_unix() {
            out.push(parts.normalized);
            continue;
        }
        let port: u16 = parts.port.parse().ok()?;
        let host = if parts.host == "localhost" {
            "127.0.0.1"
        } else {
            parts.host.as_str()
        };
        let addrs: Vec<_> = (host, port).to_socket_addrs().ok()?.collect();
        let addr = addrs.iter().find(|a| a.is_ipv4()).or(addrs.first())?;
        out.push(format!("{}://{addr}", parts.scheme.as_str()));
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;
    use crate::config::ClusterState;

    #[test]
    fn raft_timing_and_auto_compaction_checks() {
        assert_eq!(
            err(&["--heartbeat-interval", "300"]),
            "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]"
        );
        assert_eq!(
            err(&["--auto-compaction-mode", "sometimes"]),
            "unknown auto-compaction-mode \"sometimes\""
        );
    }

    #[test]
    fn auto_compaction_retention_as_etcd_reads_it() {
        use oxetcd_server::AutoCompaction::{Periodic, Revision};
        use std::time::Duration;
        let policy = |args: &[&str]| cfg(args).auto_compaction;
        assert_eq!(policy(&[]), None);
        assert_eq!(policy(&["--auto-compaction-retention=0"]), None);
        assert_eq!(
            policy(&["--auto-compaction-retention=2"]),
            Some(Periodic(Duration::from_secs(7200)))
        );
        assert_eq!(
            policy(&["--auto-compaction-retention=30m"]),
            Some(Periodic(Duration::from_secs(1800)))
        );
        assert_eq!(
            policy(&[
                "--auto-compaction-mode=revision",
                "--auto-compaction-retention=1000"
            ]),
            Some(Revision(1000))
        );
        assert_eq!(
            err(&[
                "--auto-compaction-mode=revision",
                "--auto-compaction-retention=1h"
            ]),
            "invalid value \"1h\" for flag --auto-compaction-retention: parse error"
        );
        assert!(err(&["--auto-compaction-retention=-1"]).contains("parse error"));
    }

    #[test]
    fn member_must_be_in_initial_cluster() {
        assert_eq!(
            err(&[
                "--name",
                "x",
                "--initial-cluster",
                "y=http://127.0.0.1:2380"
            ]),
            "couldn't find local name \"x\" in the initial cluster configuration"
        );
        assert_eq!(
            err(&["--initial-cluster", "default=http://127.0.0.1:9999"]),
            "--initial-cluster has default=http://127.0.0.1:9999 but missing from --initial-advertise-peer-urls=http://localhost:2380"
        );
        // Joining an existing cluster only needs the name to be there.
        let c = cfg(&[
            "--initial-cluster-state",
            "existing",
            "--initial-cluster",
            "default=http://127.0.0.1:9999",
        ]);
        assert_eq!(c.initial_cluster_state, ClusterState::Existing);
        // localhost and 127.0.0.1 are the same address to etcd.
        cfg(&["--initial-cluster", "default=http://127.0.0.1:2380"]);
    }
}
