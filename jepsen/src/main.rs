//! `oxetcd-jepsen`: runs one test and exits 0 when the history is valid,
//! 1 when a checker found an anomaly, 3 when a checker could not decide,
//! 2 when the run itself failed, 130 / 143 when interrupted (SIGINT /
//! SIGTERM; the members are stopped and the namespaces removed first).
//!
//! `oxetcd-jepsen campaign` makes the runs of a plan and exits 0 when every
//! run is valid, else 1 when one is invalid, else 2 when one could not be
//! made (or the plan is wrong), else 3 when a checker could not decide;
//! 130 / 143 when interrupted, after marking the run under way in the
//! index.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use oxetcd_jepsen::campaign::index::Tally;
use oxetcd_jepsen::campaign::{plan, Campaign};
use oxetcd_jepsen::check::{Validity, Verdict};
use oxetcd_jepsen::error::JepsenError;
use oxetcd_jepsen::history::read_jsonl;
use oxetcd_jepsen::options::RunArgs;
use oxetcd_jepsen::run;
use oxetcd_jepsen::workload::Workload;

/// A Jepsen-style consistency test of an etcd-API cluster.
#[derive(Parser, Debug)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    disable_help_subcommand = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The server binary: oxetcd, etcd, or anything taking etcd's flags
    /// (with --db: given to the hook as SERVER, and optional).
    #[arg(long, required_unless_present_any = ["check", "db"])]
    server: Option<PathBuf>,
    /// Check a recorded history.jsonl with the workload's checkers instead
    /// of running a test.
    #[arg(long, value_name = "HISTORY")]
    check: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Make the runs of a plan one after another, each in its own directory
    /// under --out, and keep --out/index.html: a table of their verdicts,
    /// with links to their reports and plots.
    Campaign(CampaignArgs),
}

#[derive(clap::Args, Debug)]
struct CampaignArgs {
    /// One run a line, as a run's flags without --out, each with --seed;
    /// `#` starts a comment line (docs/jepsen.md, Campaigns).
    #[arg(long)]
    plan: PathBuf,
    /// The campaign's directory: index.html, campaign.json, plan.txt, and
    /// one directory per run.
    #[arg(long)]
    out: PathBuf,
    /// The server binary of the plan lines that name none.
    #[arg(long)]
    server: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Campaign(args)) = cli.command {
        return campaign(args).await;
    }
    if let Some(path) = &cli.check {
        return check_history(path, &cli.run.workload);
    }
    let seed = cli.run.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let out = cli
        .run
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("jepsen-runs/{}-{seed}", cli.run.workload)));
    let config = cli.run.config(cli.server.unwrap_or_default(), seed, out);
    // Dropping the run stops its members and removes its namespaces (the
    // cluster's Drop); a signal's default action would skip that and leave
    // them behind.
    let result = tokio::select! {
        result = run::run(config) => result,
        (name, code) = interrupted() => {
            eprintln!("oxetcd-jepsen: {name}: stopping the members; no verdict");
            return ExitCode::from(code);
        }
    };
    match result {
        Ok(outcome) => {
            for verdict in &outcome.verdicts {
                let cost = verdict
                    .cost
                    .as_ref()
                    .map(|c| format!(" (checked in {})", c.describe()))
                    .unwrap_or_default();
                println!(
                    "{}: {:?}: {}{cost}",
                    verdict.checker, verdict.validity, verdict.summary
                );
                for anomaly in verdict.anomalies.iter().take(5) {
                    println!("  {}: {}", anomaly.kind, anomaly.explanation);
                }
            }
            println!(
                "{:?}: {} operations, {} faults; report in {}",
                outcome.validity,
                outcome.operations,
                outcome.faults,
                outcome.report.join("index.html").display()
            );
            exit_code(outcome.validity)
        }
        Err(e) => {
            eprintln!("oxetcd-jepsen: {e}");
            ExitCode::from(2)
        }
    }
}

/// Waits for SIGINT or SIGTERM; returns its name and the shell's exit code
/// for it (128 + the signal number). Never returns when the handlers cannot
/// be installed.
async fn interrupted() -> (&'static str, u8) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => ("interrupted", 130),
        _ = term.recv() => ("terminated", 143),
    }
}

/// Reads the plan (all of it, before the first run), then makes its runs.
async fn campaign(args: CampaignArgs) -> ExitCode {
    let defaults = plan::Defaults {
        server: args.server.as_deref(),
        dir: &args.out,
        quiet: args.quiet,
    };
    let started =
        plan::read(&args.plan, defaults).and_then(|plan| Campaign::create(&args.out, plan));
    let mut campaign = match started {
        Ok(campaign) => campaign,
        Err(e) => {
            eprintln!("oxetcd-jepsen: {e}");
            return ExitCode::from(2);
        }
    };
    println!("campaign index: {}", campaign.index().display());
    // Dropping the campaign's future stops the run under way, as for one
    // run in main.
    let interruption = tokio::select! {
        () = campaign.run() => None,
        signal = interrupted() => Some(signal),
    };
    if let Some((name, code)) = interruption {
        campaign.interrupted();
        eprintln!("oxetcd-jepsen: {name}: stopped the run under way; the index says so");
        return ExitCode::from(code);
    }
    let tally = campaign.tally();
    println!(
        "{} valid, {} invalid, {} unknown, {} error; index in {}",
        tally.valid,
        tally.invalid,
        tally.unknown,
        tally.error,
        campaign.index().display()
    );
    campaign_exit_code(&tally)
}

/// The exit code of a finished campaign (see the top of this file).
fn campaign_exit_code(tally: &Tally) -> ExitCode {
    if tally.invalid > 0 {
        ExitCode::from(1)
    } else if tally.error > 0 || tally.not_run > 0 {
        ExitCode::from(2)
    } else if tally.unknown > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}

/// The exit code of a verdict (see the top of this file).
fn exit_code(validity: Validity) -> ExitCode {
    match validity {
        Validity::Valid => ExitCode::SUCCESS,
        Validity::Invalid => ExitCode::from(1),
        Validity::Unknown => ExitCode::from(3),
    }
}

/// Re-checks a stored history; prints the verdicts as JSON.
fn check_history(path: &Path, workload: &str) -> ExitCode {
    let checked = (|| -> Result<Vec<Verdict>, String> {
        let workload: Workload = workload.parse().map_err(|e: JepsenError| e.to_string())?;
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let ops =
            read_jsonl(BufReader::new(file)).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(oxetcd_jepsen::workload::check(workload, &ops))
    })();
    match checked {
        Ok(verdicts) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&verdicts).unwrap_or_default()
            );
            exit_code(run::overall(&verdicts))
        }
        Err(e) => {
            eprintln!("oxetcd-jepsen: {e}");
            ExitCode::from(2)
        }
    }
}
