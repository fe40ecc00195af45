//! The campaign's index: `index.html`, one table row per run of the plan,
//! and the same rows as `campaign.json`.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::campaign::plan::Entry;
use crate::check::{Validity, Verdict};
use crate::error::JepsenError;
use crate::report::escape;
use crate::run::Outcome;

/// One run of the campaign and how far it got.
#[derive(Debug, Serialize)]
pub struct Row {
    pub entry: Entry,
    #[serde(flatten)]
    pub state: State,
    /// Wall-clock seconds the run took, start to report.
    pub took_s: Option<f64>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum State {
    /// Not started yet.
    Pending,
    Running,
    /// Checked.
    Done {
        validity: Validity,
        operations: usize,
        faults: usize,
        /// The checkers that did not find the history valid.
        findings: Vec<Finding>,
    },
    /// The run could not be made (it did not start, or failed on the way);
    /// there is no verdict.
    Error {
        message: String,
    },
    /// The campaign was stopped during this run.
    Interrupted,
}

/// A checker that found anomalies or gave up, with the kinds of anomaly it
/// found and how many of each.
#[derive(Debug, Serialize)]
pub struct Finding {
    pub checker: String,
    pub validity: Validity,
    pub summary: String,
    pub anomalies: Vec<(String, usize)>,
}

impl Finding {
    fn of(verdict: &Verdict) -> Finding {
        let mut anomalies: Vec<(String, usize)> = Vec::new();
        for anomaly in &verdict.anomalies {
            match anomalies.iter_mut().find(|(kind, _)| *kind == anomaly.kind) {
                Some((_, count)) => *count += 1,
                None => anomalies.push((anomaly.kind.clone(), 1)),
            }
        }
        Finding {
            checker: verdict.checker.clone(),
            validity: verdict.validity,
            summary: verdict.summary.clone(),
            anomalies,
        }
    }

    /// `checker: kind ×n, kind ×m`, or `checker: unknown (summary)`.
    fn text(&self) -> String {
        if self.anomalies.is_empty() {
            return format!("{}: unknown ({})", self.checker, self.summary);
        }
        let kinds: Vec<String> = self
            .anomalies
            .iter()
            .map(|(kind, n)| format!("{kind} ×{n}"))
            .collect();
        format!("{}: {}", self.checker, kinds.join(", "))
    }
}

impl State {
    pub fn done(outcome: &Outcome) -> State {
        State::Done {
            validity: outcome.validity,
            operations: outcome.operations,
            faults: outcome.faults,
            findings: outcome
                .verdicts
                .iter()
                .filter(|v| v.validity != Validity::Valid)
                .map(Finding::of)
                .collect(),
        }
    }

    /// The verdict column: valid, invalid, unknown, error, pending, running
    /// or interrupted.
    pub fn word(&self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Done { validity, .. } => match validity {
                Validity::Valid => "valid",
                Validity::Invalid => "invalid",
                Validity::Unknown => "unknown",
            },
            State::Error { .. } => "error",
            State::Interrupted => "interrupted",
        }
    }
}

/// How many runs ended each way.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub valid: usize,
    pub invalid: usize,
    pub unknown: usize,
    pub error: usize,
    /// Pending, running or interrupted.
    pub not_run: usize,
}

impl Tally {
    pub fn of(rows: &[Row]) -> Tally {
        let mut tally = Tally::default();
        for row in rows {
            let count = match &row.state {
                State::Done { validity, .. } => match validity {
                    Validity::Valid => &mut tally.valid,
                    Validity::Invalid => &mut tally.invalid,
                    Validity::Unknown => &mut tally.unknown,
                },
                State::Error { .. } => &mut tally.error,
                State::Pending | State::Running | State::Interrupted => &mut tally.not_run,
            };
            *count += 1;
        }
        tally
    }
}

/// Writes `index.html` and `campaign.json` in `dir`, each whole or not at
/// all (a page being watched never shows half a table).
pub fn write(dir: &Path, rows: &[Row]) -> Result<(), JepsenError> {
    #[derive(Serialize)]
    struct Document<'a> {
        tally: Tally,
        runs: &'a [Row],
    }
    let document = Document {
        tally: Tally::of(rows),
        runs: rows,
    };
    let path = dir.join("campaign.json");
    let json = serde_json::to_string_pretty(&document).map_err(|e| JepsenError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    replace(&path, &(json + "\n"))?;
    replace(&dir.join("index.html"), &html(dir, rows))
}

/// Writes `text` to a file beside `path`, then renames it over `path`.
fn replace(path: &Path, text: &str) -> Result<(), JepsenError> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).map_err(JepsenError::io(&partial))?;
    std::fs::rename(&partial, path).map_err(JepsenError::io(path))
}

/// The campaign's state as a whole: running while a run is pending or
/// running, interrupted when one was, else finished.
fn progress(rows: &[Row]) -> &'static str {
    if rows.iter().any(|r| matches!(r.state, State::Interrupted)) {
        "interrupted"
    } else if rows
        .iter()
        .any(|r| matches!(r.state, State::Pending | State::Running))
    {
        "running"
    } else {
        "finished"
    }
}

/// The page: the tally, then one row per run. `dir` is the campaign's
/// directory: a run's links are shown only when their files are there.
pub fn html(dir: &Path, rows: &[Row]) -> String {
    let progress = progress(rows);
    // Reloads itself while runs remain, for whoever watches the campaign.
    let refresh = if progress == "running" {
        "<meta http-equiv=\"refresh\" content=\"30\">"
    } else {
        ""
    };
    let tally = Tally::of(rows);
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">{refresh}<title>oxetcd-jepsen campaign</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top}}\
         tr.valid .verdict{{color:#2a7}}tr.invalid .verdict{{color:#c22;font-weight:bold}}\
         tr.unknown .verdict,tr.error .verdict,tr.interrupted .verdict{{color:#c80;font-weight:bold}}\
         code{{font-size:.8em}}</style></head><body>\n\
         <h1>oxetcd-jepsen campaign</h1>\n\
         <p id=\"progress\">{progress}: {runs} runs in <a href=\"plan.txt\">plan.txt</a>; \
         data in <a href=\"campaign.json\">campaign.json</a></p>\n\
         <p id=\"tally\">{valid} valid, {invalid} invalid, {unknown} unknown, {error} error, {not_run} not run</p>\n\
         <table id=\"runs\">\n<tr><th>#</th><th>workload</th><th>nemesis</th><th>seconds</th><th>seed</th>\
         <th>server</th><th>members</th><th>ops</th><th>faults</th><th>verdict</th>\
         <th>anomalies or error</th><th>took (s)</th><th>report and plots</th><th>throughput</th><th>plan line</th></tr>\n",
        runs = rows.len(),
        valid = tally.valid,
        invalid = tally.invalid,
        unknown = tally.unknown,
        error = tally.error,
        not_run = tally.not_run,
    );
    for (i, row) in rows.iter().enumerate() {
        page.push_str(&row_html(dir, i + 1, row));
    }
    page.push_str("</table>\n</body></html>\n");
    page
}

fn row_html(dir: &Path, number: usize, row: &Row) -> String {
    let config = &row.entry.config;
    let server = config
        .tested()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (ops, faults, what) = match &row.state {
        State::Done {
            operations,
            faults,
            findings,
            ..
        } => (
            operations.to_string(),
            faults.to_string(),
            findings
                .iter()
                .map(|f| escape(&f.text()))
                .collect::<Vec<_>>()
                .join("<br>"),
        ),
        State::Error { message } => (String::new(), String::new(), escape(message)),
        _ => (String::new(), String::new(), String::new()),
    };
    let took = row.took_s.map(|s| format!("{s:.0}")).unwrap_or_default();
    let (links, thumbnail) = links(dir, &row.entry.dir);
    format!(
        "<tr id=\"run-{number}\" class=\"{word}\"><td>{number}</td><td>{workload}</td><td>{nemesis}</td>\
         <td>{seconds}</td><td>{seed}</td><td title=\"{server_path}\">{server}</td><td>{members}</td>\
         <td>{ops}</td><td>{faults}</td><td class=\"verdict\">{word}</td><td>{what}</td><td>{took}</td>\
         <td>{links}</td><td>{thumbnail}</td><td><code>{line}</code></td></tr>\n",
        word = row.state.word(),
        workload = escape(&config.workload),
        nemesis = escape(&config.nemesis.join(",")),
        seconds = config.time_limit_s,
        seed = config.seed,
        server_path = escape(&config.tested().display().to_string()),
        server = escape(&server),
        members = config.nodes,
        line = escape(&row.entry.text),
    )
}

/// The links to a run's report page, its plots and its directory, those
/// that exist; and a small copy of its throughput plot, linked to it.
fn links(dir: &Path, run: &str) -> (String, String) {
    let run_dir = dir.join(run);
    let href = |file: &str| format!("{}/{file}", escape(run));
    let mut links = Vec::new();
    for (file, label) in [
        ("index.html", "report"),
        ("latency.svg", "latency"),
        ("throughput.svg", "throughput"),
    ] {
        if run_dir.join(file).is_file() {
            links.push(format!("<a href=\"{}\">{label}</a>", href(file)));
        }
    }
    if run_dir.is_dir() {
        links.push(format!("<a href=\"{}\">files</a>", href("")));
    }
    let thumbnail = if run_dir.join("throughput.svg").is_file() {
        let svg = href("throughput.svg");
        format!("<a href=\"{svg}\"><img src=\"{svg}\" width=\"220\" alt=\"throughput\"></a>")
    } else {
        String::new()
    };
    (links.join(" · "), thumbnail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::plan::{self, Defaults};
    use crate::check::Anomaly;

    fn rows(states: Vec<State>) -> Vec<Row> {
        let plan = "--seed 1\n".repeat(states.len());
        let defaults = Defaults {
            server: Some(Path::new("/usr/bin/etcd")),
            dir: Path::new("/nonexistent"),
            quiet: true,
        };
        plan::parse(&plan, defaults)
            .unwrap()
            .into_iter()
            .zip(states)
            .map(|(entry, state)| Row {
                entry,
                state,
                took_s: None,
            })
            .collect()
    }

    fn verdict(checker: &str, validity: Validity, kinds: &[&str]) -> Verdict {
        let anomalies = kinds
            .iter()
            .map(|kind| Anomaly {
                kind: (*kind).into(),
                explanation: String::new(),
                ops: Vec::new(),
            })
            .collect();
        Verdict {
            checker: checker.into(),
            validity,
            summary: "budget spent".into(),
            anomalies,
            cost: None,
        }
    }

    #[test]
    fn an_invalid_run_names_its_anomalies_and_counts_them() {
        let outcome = Outcome {
            validity: Validity::Invalid,
            verdicts: vec![
                verdict("members", Validity::Valid, &[]),
                verdict("register", Validity::Invalid, &["stale", "lost", "stale"]),
                verdict("linear", Validity::Unknown, &[]),
            ],
            operations: 10,
            faults: 2,
            report: "/x".into(),
            auth: None,
        };
        let rows = rows(vec![State::done(&outcome)]);
        let page = html(Path::new("/nonexistent"), &rows);
        assert!(page.contains("class=\"verdict\">invalid<"), "{page}");
        assert!(page.contains("register: stale ×2, lost ×1<br>linear: unknown (budget spent)"));
        assert!(!page.contains("members:"));
        assert!(page.contains("title=\"/usr/bin/etcd\">etcd<"));
    }

    #[test]
    fn the_tally_counts_each_way_a_run_ended() {
        let done = |validity| State::Done {
            validity,
            operations: 0,
            faults: 0,
            findings: Vec::new(),
        };
        let rows = rows(vec![
            done(Validity::Valid),
            done(Validity::Invalid),
            done(Validity::Unknown),
            State::Error {
                message: "<no binary>".into(),
            },
            State::Interrupted,
            State::Pending,
        ]);
        let expected = Tally {
            valid: 1,
            invalid: 1,
            unknown: 1,
            error: 1,
            not_run: 2,
        };
        assert_eq!(Tally::of(&rows), expected);
        let page = html(Path::new("/nonexistent"), &rows);
        assert!(page.contains("&lt;no binary&gt;"));
        assert!(page.contains("id=\"progress\">interrupted:"));
        assert!(
            !page.contains("refresh"),
            "an interrupted campaign's page stays put"
        );
    }

    #[test]
    fn a_running_campaigns_page_reloads_itself() {
        let page = html(Path::new("/nonexistent"), &rows(vec![State::Running]));
        assert!(page.contains("http-equiv=\"refresh\""));
        assert!(page.contains("id=\"progress\">running:"));
    }
}
