//! The run directory:
//!
//! | file | what |
//! |---|---|
//! | `config.json` | the run's configuration, with its seed (re-run with the same flags and `--seed`) |
//! | `history.jsonl` | every operation, one JSON object a line ([`crate::history`]) |
//! | `faults.json` | the fault windows |
//! | `verdicts.json` | each checker's verdict, with a small counter-example per anomaly |
//! | `auth.json` | with `--auth`: the workload user's authentications and token refreshes ([`crate::auth::tokens::AuthCounts`]) |
//! | `index.html` | all of it on one page, with latency and throughput plots, faults shaded |
//! | `latency.svg`, `throughput.svg` | the page's two plots, alone (a campaign's index links them) |
//! | `members/<name>/` | each member's data dir and log |

pub mod plot;

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::Path;

use serde::Serialize;

use crate::check::{Validity, Verdict};
use crate::error::JepsenError;
use crate::history::{self, FaultWindow, Op};
use crate::run::RunConfig;

pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), JepsenError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| JepsenError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(e),
    })?;
    fs::write(path, text + "\n").map_err(JepsenError::io(path))
}

pub fn write(
    dir: &Path,
    config: &RunConfig,
    ops: &[Op],
    faults: &[FaultWindow],
    verdicts: &[Verdict],
    validity: Validity,
) -> Result<(), JepsenError> {
    write_json(&dir.join("config.json"), config)?;
    write_json(&dir.join("faults.json"), faults)?;
    write_json(
        &dir.join("verdicts.json"),
        &serde_json::json!({ "validity": validity, "verdicts": verdicts }),
    )?;
    let path = dir.join("history.jsonl");
    let file = File::create(&path).map_err(JepsenError::io(&path))?;
    history::write_jsonl(BufWriter::new(file), ops).map_err(JepsenError::io(&path))?;
    let plots = Plots::draw(ops, faults)?;
    for (name, svg) in [
        ("latency.svg", &plots.latency),
        ("throughput.svg", &plots.throughput),
    ] {
        let path = dir.join(name);
        fs::write(&path, svg).map_err(JepsenError::io(&path))?;
    }
    let page = page(config, ops, faults, verdicts, validity, &plots);
    let path = dir.join("index.html");
    fs::write(&path, page).map_err(JepsenError::io(&path))
}

/// The two plots of a run, as SVG documents.
struct Plots {
    latency: String,
    throughput: String,
}

impl Plots {
    fn draw(ops: &[Op], faults: &[FaultWindow]) -> Result<Plots, JepsenError> {
        Ok(Plots {
            latency: plot::latency(ops, faults)?,
            throughput: plot::throughput(ops, faults)?,
        })
    }
}

/// `text` safe in HTML text and attribute values.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page: verdict first, then the plots, the anomalies, the faults and
/// the configuration.
pub fn html(
    config: &RunConfig,
    ops: &[Op],
    faults: &[FaultWindow],
    verdicts: &[Verdict],
    validity: Validity,
) -> Result<String, JepsenError> {
    let plots = Plots::draw(ops, faults)?;
    Ok(page(config, ops, faults, verdicts, validity, &plots))
}

fn page(
    config: &RunConfig,
    ops: &[Op],
    faults: &[FaultWindow],
    verdicts: &[Verdict],
    validity: Validity,
    plots: &Plots,
) -> String {
    let (word, colour) = match validity {
        Validity::Valid => ("valid", "#2a7"),
        Validity::Invalid => ("INVALID", "#c22"),
        Validity::Unknown => ("unknown", "#c80"),
    };
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>oxetcd-jepsen: {workload} on {server}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:1000px}}pre{{background:#f4f4f4;padding:.5em;overflow:auto}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}</style></head><body>\n\
         <h1>{workload} on {server}</h1>\n<p id=\"validity\" style=\"font-size:1.5em;color:{colour}\">{word}</p>\n\
         <p>{nodes} members, {ops} operations, {nfaults} faults, seed {seed}</p>\n",
        workload = escape(&config.workload),
        server = escape(&config.tested().display().to_string()),
        nodes = config.nodes,
        ops = ops.len(),
        nfaults = faults.len(),
        seed = config.seed,
    );
    page.push_str("<h2>Checkers</h2>\n");
    for verdict in verdicts {
        let _ = write!(
            page,
            "<h3>{}: {:?}</h3>\n<p>{}</p>\n",
            escape(&verdict.checker),
            verdict.validity,
            escape(&verdict.summary)
        );
        if let Some(cost) = &verdict.cost {
            let _ = writeln!(page, "<p class=\"cost\">checked in {}</p>", cost.describe());
        }
        for anomaly in verdict.anomalies.iter().take(20) {
            let ops: Vec<String> = anomaly
                .ops
                .iter()
                .map(|op| serde_json::to_string(op).unwrap_or_default())
                .collect();
            let _ = writeln!(
                page,
                "<div class=\"anomaly\"><b>{}</b>: {}<pre>{}</pre></div>",
                escape(&anomaly.kind),
                escape(&anomaly.explanation),
                escape(&ops.join("\n"))
            );
        }
    }
    page.push_str("<h2>Latency and throughput</h2>\n<div class=\"plot\">");
    page.push_str(&plots.latency);
    page.push_str("</div>\n<div class=\"plot\">");
    page.push_str(&plots.throughput);
    page.push_str("</div>\n<h2>Faults</h2>\n<table><tr><th>kind</th><th>target</th><th>from (s)</th><th>to (s)</th></tr>\n");
    for f in faults {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td></tr>",
            escape(&f.kind),
            escape(&f.target),
            f.start as f64 / 1e9,
            f.end as f64 / 1e9
        );
    }
    let config_json = serde_json::to_string_pretty(config).unwrap_or_default();
    let _ = write!(
        page,
        "</table>\n<h2>Configuration</h2>\n<pre>{}</pre>\n<p>Files: <a href=\"history.jsonl\">history.jsonl</a>, \
         <a href=\"verdicts.json\">verdicts.json</a>, <a href=\"faults.json\">faults.json</a>, \
         <a href=\"config.json\">config.json</a>, <a href=\"latency.svg\">latency.svg</a>, \
         <a href=\"throughput.svg\">throughput.svg</a></p>\n</body></html>\n",
        escape(&config_json)
    );
    page
}
