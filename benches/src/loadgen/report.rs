//! `oxetcd-bench report`: the side-by-side table and plot `benches/compare`
//! writes into docs/performance.md, from the JSON summaries of its runs.
//!
//! The manifest has one line per run, tab separated:
//! `scenario  group  clients  metric  server  round  json-file  command`.
//! `group` is `-` or the name of a client-count sweep (plotted); `metric` is
//! `-` (every op: ops/s and their p99) or the kind whose rate and p99 the row
//! shows (e.g. `watch-event`). Each scenario row gives both servers' raw
//! figures per round, their means, and the ratios oxetcd / etcd of the means.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::cli::ReportArgs;
use super::error::BenchError;
use super::stats::Summary;

/// The server measured against the reference.
pub const OURS: &str = "oxetcd";
pub const REFERENCE: &str = "etcd";

/// One run, as the manifest lists it.
#[derive(Clone, Debug)]
pub struct Run {
    pub scenario: String,
    pub group: Option<String>,
    pub clients: u64,
    pub metric: Option<String>,
    pub server: String,
    pub round: u32,
    pub json: PathBuf,
    pub command: String,
}

/// What one run measured, for the table.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    pub per_sec: f64,
    pub p99_ms: f64,
    pub errors: u64,
    /// One-client put runs: the fsync ceiling measured after the run
    /// (writes/s), and the run's ops/s as a fraction of it.
    pub fsync_ceiling: Option<(f64, f64)>,
}

pub fn parse_manifest(text: &str, base: &Path) -> Result<Vec<Run>, BenchError> {
    let mut runs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let bad = |what: &str| BenchError::Report(format!("manifest line {}: {what}", n + 1));
        if f.len() != 8 {
            return Err(bad("want 8 tab-separated fields"));
        }
        let optional = |s: &str| (s != "-").then(|| s.to_owned());
        let json = PathBuf::from(f[6]);
        runs.push(Run {
            scenario: f[0].to_owned(),
            group: optional(f[1]),
            clients: f[2].parse().map_err(|_| bad("bad client count"))?,
            metric: optional(f[3]),
            server: f[4].to_owned(),
            round: f[5].parse().map_err(|_| bad("bad round"))?,
            json: if json.is_absolute() {
                json
            } else {
                base.join(json)
            },
            command: f[7].to_owned(),
        });
    }
    Ok(runs)
}

/// The figures of `summary` for `metric` (`None`: all ops); a kind the run
/// never recorded (e.g. a list that never finished) has rate and p99 0.
pub fn figures(summary: &Summary, metric: Option<&str>) -> Figures {
    let fsync_ceiling = summary
        .fsync
        .as_ref()
        .map(|f| (f.probe.ceiling_per_sec, f.fraction_of_ceiling));
    match metric.map(|kind| summary.kind(kind)) {
        Some(Some(kind)) => Figures {
            per_sec: kind.per_sec,
            p99_ms: kind.latency_ms.p99,
            errors: summary.errors,
            fsync_ceiling,
        },
        Some(None) => Figures {
            per_sec: 0.0,
            p99_ms: 0.0,
            errors: summary.errors,
            fsync_ceiling,
        },
        None => Figures {
            per_sec: summary.ops_per_sec,
            p99_ms: summary.latency_ms.p99,
            errors: summary.errors,
            fsync_ceiling,
        },
    }
}

fn load(run: &Run) -> Result<Figures, BenchError> {
    let text = std::fs::read_to_string(&run.json).map_err(|source| BenchError::ReadFile {
        path: run.json.clone(),
        source,
    })?;
    let summary: Summary = serde_json::from_str(&text)
        .map_err(|e| BenchError::Report(format!("{}: {e}", run.json.display())))?;
    Ok(figures(&summary, run.metric.as_deref()))
}

/// Both servers' runs of one scenario.
#[derive(Debug, Default)]
struct Scenario {
    group: Option<String>,
    clients: u64,
    metric: Option<String>,
    command: String,
    /// server -> figures per round, in round order.
    runs: BTreeMap<String, Vec<(u32, Figures)>>,
}

impl Scenario {
    fn mean(&self, server: &str) -> Option<Figures> {
        let runs = self.runs.get(server)?;
        if runs.is_empty() {
            return None;
        }
        let n = runs.len() as f64;
        Some(Figures {
            per_sec: runs.iter().map(|(_, f)| f.per_sec).sum::<f64>() / n,
            p99_ms: runs.iter().map(|(_, f)| f.p99_ms).sum::<f64>() / n,
            errors: runs.iter().map(|(_, f)| f.errors).sum(),
            fsync_ceiling: None,
        })
    }

    fn raw(&self, server: &str, pick: impl Fn(&Figures) -> String) -> String {
        self.runs
            .get(server)
            .map(|runs| {
                runs.iter()
                    .map(|(_, f)| pick(f))
                    .collect::<Vec<_>>()
                    .join(" / ")
            })
            .unwrap_or_else(|| "–".to_owned())
    }
}

fn group(runs: &[Run]) -> Result<Vec<(String, Scenario)>, BenchError> {
    let mut order: Vec<String> = Vec::new();
    let mut scenarios: BTreeMap<String, Scenario> = BTreeMap::new();
    for run in runs {
        let figures = load(run)?;
        let scenario = scenarios.entry(run.scenario.clone()).or_insert_with(|| {
            order.push(run.scenario.clone());
            Scenario {
                group: run.group.clone(),
                clients: run.clients,
                metric: run.metric.clone(),
                ..Scenario::default()
            }
        });
        if run.server == OURS && scenario.command.is_empty() {
            scenario.command = run.command.clone();
        }
        let rounds = scenario.runs.entry(run.server.clone()).or_default();
        rounds.push((run.round, figures));
        rounds.sort_by_key(|(round, _)| *round);
    }
    Ok(order
        .into_iter()
        .filter_map(|name| scenarios.remove(&name).map(|s| (name, s)))
        .collect())
}

fn rate(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn ms(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn ratio(ours: f64, reference: f64) -> String {
    if reference > 0.0 && ours > 0.0 {
        format!("{:.2}", ours / reference)
    } else {
        "–".to_owned()
    }
}

/// The markdown table of every scenario.
fn table(scenarios: &[(String, Scenario)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | metric | oxetcd /s (runs) | etcd /s (runs) | **throughput ratio** | oxetcd p99 ms (runs) | etcd p99 ms (runs) | **p99 ratio** | errors oxetcd / etcd | command (oxetcd's run) |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for (name, s) in scenarios {
        let (ours, reference) = (s.mean(OURS), s.mean(REFERENCE));
        let both = |pick: fn(&Figures) -> f64| match (ours, reference) {
            (Some(o), Some(r)) => ratio(pick(&o), pick(&r)),
            _ => "–".to_owned(),
        };
        let errors = |m: Option<Figures>| m.map(|f| f.errors.to_string()).unwrap_or("–".into());
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | **{}** | {} | {} | **{}** | {} / {} | `{}` |",
            s.metric.as_deref().unwrap_or("ops"),
            s.raw(OURS, |f| rate(f.per_sec)),
            s.raw(REFERENCE, |f| rate(f.per_sec)),
            both(|f| f.per_sec),
            s.raw(OURS, |f| ms(f.p99_ms)),
            s.raw(REFERENCE, |f| ms(f.p99_ms)),
            both(|f| f.p99_ms),
            errors(ours),
            errors(reference),
            s.command.replace('|', "\\|"),
        );
    }
    out
}

/// One line of the plot: a server's means over a sweep's client counts.
struct Series {
    label: String,
    color: RGBColor,
    points: Vec<(f64, Figures)>,
}

fn sweeps(scenarios: &[(String, Scenario)]) -> Vec<Series> {
    let palette = [
        (OURS, RGBColor(214, 39, 40)),
        (REFERENCE, RGBColor(31, 119, 180)),
        (OURS, RGBColor(255, 127, 14)),
        (REFERENCE, RGBColor(44, 160, 44)),
    ];
    let mut groups: Vec<String> = Vec::new();
    for (_, s) in scenarios {
        if let Some(g) = &s.group {
            if !groups.contains(g) {
                groups.push(g.clone());
            }
        }
    }
    let mut series = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        for (si, server) in [OURS, REFERENCE].iter().enumerate() {
            let mut points: Vec<(f64, Figures)> = scenarios
                .iter()
                .filter(|(_, s)| s.group.as_ref() == Some(g))
                .filter_map(|(_, s)| s.mean(server).map(|m| (s.clients as f64, m)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let color = palette[(gi * 2 + si) % palette.len()].1;
            series.push(Series {
                label: format!("{server} {g}"),
                color,
                points,
            });
        }
    }
    series
}

fn plot(series: &[Series], path: &Path) -> Result<(), BenchError> {
    let err = |e: &dyn std::fmt::Display| BenchError::Plot(e.to_string());
    let max_clients = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let max_rate = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1.per_sec))
        .fold(1.0f64, f64::max);
    let (min_p99, max_p99) = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1.p99_ms))
        .filter(|p| *p > 0.0)
        .fold((f64::MAX, 0.0f64), |(lo, hi), p| (lo.min(p), hi.max(p)));
    let (min_p99, max_p99) = if max_p99 > 0.0 {
        (min_p99 / 2.0, max_p99 * 2.0)
    } else {
        (0.01, 10.0)
    };
    let x_range = (0.7f64..max_clients * 1.5).log_scale();

    let root = SVGBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(600);

    let mut chart = ChartBuilder::on(&left)
        .caption("Throughput vs clients", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.clone(), 0f64..max_rate * 1.15)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("clients (log)")
        .y_desc("ops/s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| err(&e))?;
    for s in series {
        let points: Vec<(f64, f64)> = s.points.iter().map(|(x, f)| (*x, f.per_sec)).collect();
        let color = s.color;
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;

    let mut chart = ChartBuilder::on(&right)
        .caption("p99 latency vs clients", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, (min_p99..max_p99).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("clients (log)")
        .y_desc("p99 ms (log)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| ms(*y))
        .draw()
        .map_err(|e| err(&e))?;
    for s in series {
        let points: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|(_, f)| f.p99_ms > 0.0)
            .map(|(x, f)| (*x, f.p99_ms))
            .collect();
        let color = s.color;
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// The markdown table of the sweeps alone, as plotted.
fn sweep_table(series: &[Series]) -> String {
    let mut out = String::new();
    if series.is_empty() {
        return out;
    }
    let _ = writeln!(out, "| series | clients | mean ops/s | mean p99 ms |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for s in series {
        for (clients, f) in &s.points {
            let _ = writeln!(
                out,
                "| {} | {clients:.0} | {} | {} |",
                s.label,
                rate(f.per_sec),
                ms(f.p99_ms)
            );
        }
    }
    out
}

/// How close each one-client put run came to the fsync ceiling measured
/// right after it.
fn ceiling_lines(scenarios: &[(String, Scenario)]) -> String {
    let mut out = String::new();
    for (name, s) in scenarios {
        for (server, runs) in &s.runs {
            let parts: Vec<String> = runs
                .iter()
                .filter_map(|(round, f)| {
                    f.fsync_ceiling.map(|(ceiling, fraction)| {
                        format!(
                            "run {round}: {} ops/s = {:.1}% of {ceiling:.0} fsyncs/s",
                            rate(f.per_sec),
                            fraction * 100.0
                        )
                    })
                })
                .collect();
            if !parts.is_empty() {
                let _ = writeln!(out, "- `{name}`, {server}: {}", parts.join("; "));
            }
        }
    }
    out
}

/// Runs `report`: writes the SVG (when there are sweeps to plot), and
/// returns the markdown.
pub fn run(args: &ReportArgs) -> Result<String, BenchError> {
    let text = std::fs::read_to_string(&args.manifest).map_err(|source| BenchError::ReadFile {
        path: args.manifest.clone(),
        source,
    })?;
    let base = args
        .manifest
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default();
    let runs = parse_manifest(&text, &base)?;
    let scenarios = group(&runs)?;
    let series = sweeps(&scenarios);
    let mut md = String::new();
    md.push_str(&table(&scenarios));
    md.push('\n');
    // No client-count sweep among the scenarios: nothing to plot.
    if !series.is_empty() {
        plot(&series, &args.svg)?;
        let _ = writeln!(
            md,
            "![Throughput and p99 latency against client count, oxetcd and etcd]({})\n",
            args.svg_link
        );
    }
    md.push_str(&sweep_table(&series));
    let ceiling = ceiling_lines(&scenarios);
    if !ceiling.is_empty() {
        md.push_str(
            "\nOne sequential writer against the fsync ceiling (`put --clients 1` probes \
             fsync on the data dirs' disk after its run: 500 writes of 4 KiB + fdatasync; \
             ceiling = 1 / mean latency):\n\n",
        );
        md.push_str(&ceiling);
    }
    if let Some(out) = &args.out {
        std::fs::write(out, &md).map_err(|source| BenchError::WriteFile {
            path: out.clone(),
            source,
        })?;
    }
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::stats::{Latency, RunSetup, Stats};
    use std::time::Duration;

    fn summary_json(ops: u64, p99_ms: u64) -> String {
        let stats = Stats::new().unwrap();
        for _ in 0..ops {
            stats.record(
                "put",
                crate::loadgen::stats::Role::Op,
                Duration::from_millis(p99_ms),
            );
        }
        let setup = RunSetup {
            endpoints: vec![],
            conns: 1,
            clients: 1,
            rate: None,
        };
        serde_json::to_string(&stats.summary("put", &setup, Duration::from_secs(1))).unwrap()
    }

    #[test]
    fn report_averages_rounds_and_divides_ours_by_the_reference() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = String::new();
        for (server, round, ops, p99) in [
            ("oxetcd", 1, 200, 2),
            ("etcd", 1, 100, 4),
            ("oxetcd", 2, 400, 2),
            ("etcd", 2, 100, 4),
        ] {
            let file = format!("{server}-{round}.json");
            std::fs::write(dir.path().join(&file), summary_json(ops, p99)).unwrap();
            manifest.push_str(&format!(
                "put-c1\tput-sweep\t1\t-\t{server}\t{round}\t{file}\toxetcd-bench put --clients 1\n"
            ));
        }
        let manifest_path = dir.path().join("manifest.tsv");
        std::fs::write(&manifest_path, manifest).unwrap();
        let svg = dir.path().join("plot.svg");
        let md = run(&ReportArgs {
            manifest: manifest_path,
            svg: svg.clone(),
            svg_link: "plot.svg".into(),
            out: None,
        })
        .unwrap();
        let row = md.lines().find(|l| l.starts_with("| put-c1 ")).unwrap();
        assert!(
            row.contains("| 200 / 400 | 100 / 100 | **3.00** |"),
            "{row}"
        );
        assert!(row.contains("| **0.50** |"), "{row}");
        assert!(md.contains("![Throughput"));
        let svg = std::fs::read_to_string(svg).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("oxetcd put-sweep"));
        let _ = Latency::default();
    }

    #[test]
    fn a_metric_the_run_never_recorded_is_zero_not_the_ops() {
        let summary: Summary = serde_json::from_str(&summary_json(10, 2)).unwrap();
        assert_eq!(figures(&summary, Some("list-paged")).per_sec, 0.0);
        assert_eq!(figures(&summary, Some("put")).per_sec, 10.0);
        assert_eq!(figures(&summary, None).per_sec, 10.0);
    }

    #[test]
    fn manifest_lines_need_eight_fields() {
        assert!(parse_manifest("a\tb\n", Path::new(".")).is_err());
        let runs = parse_manifest(
            "w\t-\t10\twatch-event\tetcd\t1\t/x.json\tcmd a b\n",
            Path::new("/base"),
        )
        .unwrap();
        assert_eq!(runs[0].group, None);
        assert_eq!(runs[0].metric.as_deref(), Some("watch-event"));
        assert_eq!(runs[0].json, PathBuf::from("/x.json"));
    }
}
