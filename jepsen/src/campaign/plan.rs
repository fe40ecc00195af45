//! A campaign's plan: one run a line, written as the flags of the flat
//! invocation without `--out`, e.g.
//!
//! ```text
//! # workload, faults, seconds, seed; any other flag of a run may follow
//! --workload lease --nemesis pause --time-limit 1800 --seed 305
//! --workload register --nemesis none --time-limit 60 --seed 1 --server /usr/bin/etcd
//! ```
//!
//! Every line needs `--seed`, so each run can be made again. `--server`
//! defaults to the campaign's. Blank lines and lines starting with `#` are
//! skipped; values are split at white space, with no quoting. The whole
//! plan is checked before the first run starts, so a typo on the last line
//! does not wait hours to show.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Serialize;

use crate::error::JepsenError;
use crate::options::RunArgs;
use crate::run::{self, RunConfig};
use crate::workload::Workload;

/// A plan line's flags: a flat run's, `--server` optional (the campaign's,
/// or none with `--db`).
#[derive(Parser, Debug)]
#[command(
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true
)]
struct PlanLine {
    #[arg(long)]
    server: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

/// What the campaign gives every line.
#[derive(Clone, Copy, Debug)]
pub struct Defaults<'a> {
    /// The server binary of lines without `--server`.
    pub server: Option<&'a Path>,
    /// The campaign's directory; each run gets one inside it.
    pub dir: &'a Path,
    /// No progress bars, whatever the lines say.
    pub quiet: bool,
}

/// One run of the plan.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    /// Its line in the plan, from 1.
    pub line: usize,
    /// The line as written.
    pub text: String,
    /// Its run directory, inside the campaign's (`03-lease-305`).
    pub dir: String,
    pub config: RunConfig,
}

/// Why a line is not a run.
#[derive(Debug, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

/// A plan file: its text and its runs.
#[derive(Debug)]
pub struct Plan {
    pub text: String,
    pub entries: Vec<Entry>,
}

/// Reads the plan at `path`.
pub fn read(path: &Path, defaults: Defaults<'_>) -> Result<Plan, JepsenError> {
    let text = std::fs::read_to_string(path).map_err(JepsenError::io(path))?;
    let entries = parse(&text, defaults).map_err(|e| JepsenError::Plan {
        path: path.to_owned(),
        line: e.line,
        message: e.message,
    })?;
    Ok(Plan { text, entries })
}

/// The runs of a plan's text, in order.
pub fn parse(text: &str, defaults: Defaults<'_>) -> Result<Vec<Entry>, LineError> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if lines.is_empty() {
        return Err(LineError {
            line: 0,
            message: "no runs: every line is blank or a comment".into(),
        });
    }
    // 01-, 02-, ... sort in plan order in a directory listing.
    let width = lines.len().to_string().len().max(2);
    lines
        .iter()
        .enumerate()
        .map(|(n, &(line, text))| {
            entry(n + 1, width, text, defaults)
                .map_err(|message| LineError { line, message })
                .map(|(dir, config)| Entry {
                    line,
                    text: text.to_owned(),
                    dir,
                    config,
                })
        })
        .collect()
}

/// The `n`th run: its directory's name and its configuration.
fn entry(
    n: usize,
    width: usize,
    text: &str,
    defaults: Defaults<'_>,
) -> Result<(String, RunConfig), String> {
    let flags = PlanLine::try_parse_from(text.split_whitespace()).map_err(|e| {
        // clap's first line says what is wrong; the rest is usage.
        let rendered = e.to_string();
        let first = rendered.lines().next().unwrap_or_default();
        first.trim_start_matches("error: ").to_owned()
    })?;
    if flags.run.out.is_some() {
        return Err("--out: the campaign names each run's directory".into());
    }
    let seed = flags
        .run
        .seed
        .ok_or("--seed is needed, so that the run can be made again")?;
    let server = flags.server.or_else(|| defaults.server.map(Path::to_owned));
    // A hook may start its store without a binary of the tester's.
    let server = match (server, &flags.run.db) {
        (Some(server), _) => server,
        (None, Some(_)) => PathBuf::new(),
        (None, None) => {
            return Err("no --server on this line and none given to the campaign".into())
        }
    };
    flags
        .run
        .workload
        .parse::<Workload>()
        .map_err(|e| e.to_string())?;
    run::fault_kinds(&flags.run.nemesis).map_err(|e| e.to_string())?;
    let dir = format!("{n:0width$}-{}-{seed}", flags.run.workload);
    let mut config = flags.run.config(server, seed, defaults.dir.join(&dir));
    config.progress &= !defaults.quiet;
    Ok((dir, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults(server: Option<&Path>) -> Defaults<'_> {
        Defaults {
            server,
            dir: Path::new("/c"),
            quiet: true,
        }
    }

    #[test]
    fn a_line_is_a_flat_runs_flags() {
        let plan = "# comment\n\n--workload lease --nemesis pause,kill --time-limit 1800 --seed 305\n\
                    --seed 1 --server /usr/bin/etcd --nodes 5 --server-env A=1 --server-arg=--x=y\n";
        let entries = parse(plan, defaults(Some(Path::new("/bin/oxetcd")))).unwrap();
        assert_eq!(entries.len(), 2);
        let lease = &entries[0];
        assert_eq!(lease.line, 3);
        assert_eq!(lease.dir, "01-lease-305");
        assert_eq!(lease.config.workload, "lease");
        assert_eq!(lease.config.nemesis, ["pause", "kill"]);
        assert_eq!(lease.config.time_limit_s, 1800);
        assert_eq!(lease.config.server, Path::new("/bin/oxetcd"));
        assert_eq!(lease.config.out, Path::new("/c/01-lease-305"));
        assert!(!lease.config.progress);
        let etcd = &entries[1];
        assert_eq!(etcd.dir, "02-register-1");
        assert_eq!(etcd.config.server, Path::new("/usr/bin/etcd"));
        assert_eq!(etcd.config.nodes, 5);
        assert_eq!(etcd.config.server_env, [("A".to_owned(), "1".to_owned())]);
        assert_eq!(etcd.config.server_args, ["--x=y"]);
    }

    /// docs/jepsen.md's example is the campaign issue 23 asks for: every
    /// workload and nemesis on oxetcd for 10 hours, every workload on etcd
    /// 3.4 for 2.
    #[test]
    fn the_documented_plan_covers_every_workload_and_nemesis() {
        let docs = include_str!("../../../docs/jepsen.md");
        let marker = "<!-- campaign plan: every workload and nemesis -->\n```text\n";
        let start = docs.find(marker).expect("the plan in docs/jepsen.md") + marker.len();
        let end = start + docs[start..].find("```").expect("the plan's end");
        let oxetcd = Path::new("oxetcd");
        let entries = parse(&docs[start..end], defaults(Some(oxetcd))).unwrap();
        let on = |server: &str| -> Vec<&RunConfig> {
            let server = Path::new(server);
            entries
                .iter()
                .map(|e| &e.config)
                .filter(|c| c.server == server)
                .collect()
        };
        let workloads = ["register", "set", "watch", "append", "kubernetes", "lease"];
        for server in ["oxetcd", "/usr/bin/etcd"] {
            for workload in workloads {
                let runs = on(server);
                assert!(
                    runs.iter().any(|c| c.workload == workload),
                    "{server}: {workload}"
                );
            }
        }
        let kinds = [
            "kill",
            "pause",
            "partition",
            "member",
            "wal",
            "compact",
            "slow",
            "lossy",
            "clock",
            "power",
        ];
        for kind in kinds {
            let runs = on("oxetcd");
            assert!(
                runs.iter().any(|c| c.nemesis.iter().any(|k| k == kind)),
                "{kind}"
            );
        }
        let hours = |server: &str| on(server).iter().map(|c| c.time_limit_s).sum::<u64>() / 3600;
        assert!(hours("oxetcd") >= 10);
        assert!(hours("/usr/bin/etcd") >= 2);
        // The lease run under pauses that once found the renewal bug.
        let lease_305 = on("oxetcd").into_iter().find(|c| c.seed == 305).unwrap();
        assert_eq!(lease_305.workload, "lease");
        assert_eq!(lease_305.nemesis, ["pause"]);
        assert_eq!(lease_305.time_limit_s, 1800);
    }

    #[test]
    fn a_line_with_a_hook_needs_no_server() {
        let plan =
            "--seed 1 --db hooks/mystore\n--seed 2 --db hooks/etcd-flags --server /usr/bin/etcd\n";
        let entries = parse(plan, defaults(None)).unwrap();
        let mystore = &entries[0].config;
        assert_eq!(mystore.db.as_deref(), Some(Path::new("hooks/mystore")));
        assert_eq!(mystore.server, Path::new(""));
        assert_eq!(mystore.tested(), Path::new("hooks/mystore"));
        let etcd = &entries[1].config;
        assert_eq!(etcd.server, Path::new("/usr/bin/etcd"));
        assert_eq!(etcd.tested(), Path::new("/usr/bin/etcd"));
    }

    #[test]
    fn a_bad_line_is_named_before_any_run() {
        let server = Some(Path::new("/bin/oxetcd"));
        let error = |plan: &str| parse(plan, defaults(server)).unwrap_err();
        assert_eq!(error("--seed 1\n--seed 2 --nemesis kil\n").line, 2);
        assert!(error("--seed 1 --nemesis kil").message.contains("kil"));
        assert!(error("--seed 1 --workload regster")
            .message
            .contains("regster"));
        assert!(error("--workload set").message.contains("--seed"));
        assert!(error("--seed 1 --out x").message.contains("--out"));
        assert!(error("--seed 1 --bogus").message.contains("--bogus"));
        assert!(error("# nothing\n").message.contains("no runs"));
        let no_server = parse("--seed 1", defaults(None)).unwrap_err();
        assert!(no_server.message.contains("--server"));
    }
}
