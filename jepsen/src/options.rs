//! The flags of one run, shared by the flat invocation (`oxetcd-jepsen
//! --server ... --workload ...`) and by each line of a campaign's plan
//! ([`crate::campaign::plan`]), so a plan line reads as the flat command
//! that would make the same run.

use std::path::PathBuf;

use crate::auth::Granted;
use crate::cluster::netns::Netns;
use crate::error::JepsenError;
use crate::run::{self, RunConfig};

/// What one run does; everything but the server binary, the run directory
/// and the progress bar.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Cluster size.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Seconds of client traffic (and faults).
    #[arg(long, default_value_t = 60)]
    pub time_limit: u64,
    /// register, set, watch, append, kubernetes or lease.
    #[arg(long, default_value = "register")]
    pub workload: String,
    /// Comma-separated fault kinds: kill, pause, partition, member, wal,
    /// compact, slow, lossy, clock, power (or none).
    #[arg(long, value_delimiter = ',', default_value = "kill,pause,partition")]
    pub nemesis: Vec<String>,
    /// Seeds the clients' and the nemesis' choices (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The run directory (default: jepsen-runs/<workload>-<seed>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Client tasks.
    #[arg(long, default_value_t = 10)]
    pub concurrency: u32,
    /// Operations per second over all clients.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// A request not answered within this is indeterminate (ms).
    #[arg(long, default_value_t = 2000)]
    pub op_timeout_ms: u64,
    /// Quiet time between faults, LO-HI ms (uniform).
    #[arg(long, value_name = "LO-HI", default_value = "2000-5000", value_parser = parse_ms_range)]
    pub fault_interval_ms: (u64, u64),
    /// How long each fault is held, LO-HI ms (uniform); e.g. 100-300 with
    /// an interval of 100-300 makes about a hundred power cuts a minute.
    #[arg(long, value_name = "LO-HI", default_value = "2000-6000", value_parser = parse_ms_range)]
    pub fault_hold_ms: (u64, u64),
    /// Run members on 127.x loopback addresses even as root (no partitions).
    #[arg(long)]
    pub no_namespaces: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Environment for every member, KEY=VALUE (repeatable); e.g.
    /// OXETCD_FAILPOINT_STALE_READS=1 to check that the tester catches a
    /// broken oxetcd.
    #[arg(long = "server-env", value_name = "KEY=VALUE", value_parser = parse_server_env)]
    pub server_env: Vec<(String, String)>,
    /// An executable that starts, stops, kills, pauses and resumes each
    /// member, for stores that do not take etcd's flags (docs/jepsen.md,
    /// Any store: --db hooks); the server binary, if given, is its SERVER.
    #[arg(long, value_name = "HOOK")]
    pub db: Option<PathBuf>,
    /// Extra flags for every member (with --db: after `start`), e.g.
    /// --server-arg=--snapshot-count=100.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Enable etcd's auth once the cluster forms: clients authenticate as a
    /// user granted READWRITE on the workload's keys and send its token
    /// (simple or JWT, as the server is started: --server-arg=--auth-token=...).
    #[arg(long)]
    pub auth: bool,
    /// With --auth: what the workload user is granted (readwrite; read or
    /// write alone only to check that the tester reports the denials).
    #[arg(long, default_value = "readwrite", requires = "auth", value_parser = parse_granted)]
    pub auth_permission: Granted,
    /// Revisions the compact nemesis keeps below the current one: fewer
    /// make compactions overtake watchers and lists sooner.
    #[arg(long, default_value_t = crate::cluster::maintenance::KEEP, value_parser = clap::value_parser!(i64).range(1..))]
    pub compact_keep: i64,
}

impl RunArgs {
    /// The run these flags describe, of `server` with `seed`, written to
    /// `out`.
    pub fn config(self, server: PathBuf, seed: u64, out: PathBuf) -> RunConfig {
        RunConfig {
            server,
            db: self.db,
            nodes: self.nodes,
            workload: self.workload,
            nemesis: self.nemesis,
            time_limit_s: self.time_limit,
            seed,
            concurrency: self.concurrency,
            rate: self.rate,
            op_timeout_ms: self.op_timeout_ms,
            fault_interval_ms: self.fault_interval_ms,
            fault_hold_ms: self.fault_hold_ms,
            out,
            namespaces: !self.no_namespaces && Netns::available(),
            progress: !self.quiet,
            server_args: self.server_args,
            server_env: self.server_env,
            auth: self.auth.then_some(self.auth_permission),
            compact_keep: self.compact_keep,
        }
    }
}

fn parse_granted(text: &str) -> Result<Granted, String> {
    text.parse().map_err(|e: JepsenError| e.to_string())
}

fn parse_server_env(text: &str) -> Result<(String, String), String> {
    run::parse_env(text).map_err(|e| e.to_string())
}

/// `LO-HI` milliseconds, LO <= HI.
fn parse_ms_range(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("wants LO-HI in ms (e.g. 2000-5000), not {text:?}");
    let (lo, hi) = text.split_once('-').ok_or_else(bad)?;
    let (lo, hi): (u64, u64) = (
        lo.parse().map_err(|_| bad())?,
        hi.parse().map_err(|_| bad())?,
    );
    if lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_lo_dash_hi() {
        assert_eq!(parse_ms_range("100-300"), Ok((100, 300)));
        assert!(parse_ms_range("300-100").is_err());
        assert!(parse_ms_range("300").is_err());
    }
}
