//! `oxetcd-jepsen campaign`: the runs of a [`plan`], one after another,
//! each into its own directory under the campaign's, with an [`index`] of
//! them all. The index is written before the first run and rewritten as
//! each run starts and ends, so a long campaign can be watched and an
//! interrupted one keeps its index. A run that cannot be made is a row with
//! its error, and the campaign goes on.

pub mod index;
pub mod plan;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::JepsenError;
use crate::run;
use index::{Row, State, Tally};
use plan::Plan;

pub struct Campaign {
    dir: PathBuf,
    rows: Vec<Row>,
}

impl Campaign {
    /// Starts a campaign of `plan` in `dir`: a copy of the plan's text as
    /// `plan.txt` and an index of pending runs. A directory that already
    /// holds a campaign is refused (its runs would be refused one by one).
    pub fn create(dir: &Path, plan: Plan) -> Result<Campaign, JepsenError> {
        if dir.join("index.html").exists() {
            return Err(JepsenError::Usage(format!(
                "{} already holds a campaign; pick another --out",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(JepsenError::io(dir))?;
        let copy = dir.join("plan.txt");
        std::fs::write(&copy, &plan.text).map_err(JepsenError::io(&copy))?;
        let campaign = Campaign {
            dir: dir.to_owned(),
            rows: plan
                .entries
                .into_iter()
                .map(|entry| Row {
                    entry,
                    state: State::Pending,
                    took_s: None,
                })
                .collect(),
        };
        index::write(&campaign.dir, &campaign.rows)?;
        Ok(campaign)
    }

    /// Makes every pending run, in plan order, printing a line for each.
    /// Dropping this future stops the current run (its members are
    /// stopped); [`Campaign::interrupted`] then records it.
    pub async fn run(&mut self) {
        let total = self.rows.len();
        for i in 0..total {
            if !matches!(self.rows[i].state, State::Pending) {
                continue;
            }
            self.rows[i].state = State::Running;
            self.write_index();
            let started = Instant::now();
            let result = run::run(self.rows[i].entry.config.clone()).await;
            let row = &mut self.rows[i];
            row.took_s = Some(started.elapsed().as_secs_f64());
            row.state = match result {
                Ok(outcome) => State::done(&outcome),
                Err(e) => State::Error {
                    message: e.to_string(),
                },
            };
            println!(
                "[{}/{total}] {}: {}",
                i + 1,
                row.entry.dir,
                row_summary(row)
            );
            self.write_index();
        }
    }

    /// Records that the campaign was stopped: the run under way becomes
    /// `interrupted`, the later ones stay pending.
    pub fn interrupted(&mut self) {
        for row in &mut self.rows {
            if matches!(row.state, State::Running) {
                row.state = State::Interrupted;
            }
        }
        self.write_index();
    }

    pub fn tally(&self) -> Tally {
        Tally::of(&self.rows)
    }

    pub fn index(&self) -> PathBuf {
        self.dir.join("index.html")
    }

    /// A failed write loses only the page's freshness: each run's own
    /// report is still written, and the next write may succeed.
    fn write_index(&self) {
        if let Err(e) = index::write(&self.dir, &self.rows) {
            eprintln!("oxetcd-jepsen: writing the campaign's index: {e}");
        }
    }
}

/// `valid, 2931 operations, 4 faults`, or the error.
fn row_summary(row: &Row) -> String {
    match &row.state {
        State::Done {
            operations, faults, ..
        } => format!(
            "{}, {operations} operations, {faults} faults",
            row.state.word()
        ),
        State::Error { message } => format!("error: {message}"),
        other => other.word().to_owned(),
    }
}
