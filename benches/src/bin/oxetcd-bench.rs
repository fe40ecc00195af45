//! `oxetcd-bench`: see `oxetcd_benches::loadgen` and `--help`.
//!
//! Exit status: 0 the run finished and every request succeeded; 1 the run
//! finished (summary printed) but some requests failed; 2 the run could not
//! start or its output could not be written (the reason on stderr).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use oxetcd_benches::loadgen::{self, cli::Cli, ExitStatus};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("oxetcd-bench: cannot start the async runtime: {e}");
            return ExitCode::from(ExitStatus::CannotRun as u8);
        }
    };
    let result = runtime.block_on(loadgen::execute(&cli));
    let status = match result.and_then(|output| Ok((output.render(cli.common.json)?, output))) {
        Ok((text, output)) => {
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                ExitStatus::CannotRun
            } else {
                output.exit_status()
            }
        }
        Err(e) => {
            eprintln!("oxetcd-bench: {e}");
            ExitStatus::CannotRun
        }
    };
    // Leftover tasks (watch streams of an interrupted run) must not hold the
    // exit up.
    runtime.shutdown_background();
    ExitCode::from(status as u8)
}
