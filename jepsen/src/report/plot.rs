//! The report's plots (SVG): latency of every operation and throughput per
//! second over time, by outcome, with the fault windows shaded, as Jepsen's
//! latency-raw and rate graphs.

use plotters::prelude::*;

use crate::error::JepsenError;
use crate::history::{Call, FaultWindow, Op, Outcome};

const SIZE: (u32, u32) = (900, 360);
const FAULT: RGBColor = RGBColor(255, 170, 120);

fn color(outcome: Outcome) -> RGBColor {
    match outcome {
        Outcome::Ok => RGBColor(40, 140, 60),
        Outcome::Fail => RGBColor(200, 40, 40),
        Outcome::Info => RGBColor(230, 150, 0),
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Client operations (not the watchers' logs, which last the whole run,
/// nor the final watch record).
fn plotted(ops: &[Op]) -> impl Iterator<Item = &Op> {
    ops.iter()
        .filter(|op| !matches!(op.call, Call::WatchLog { .. } | Call::WatchRecord { .. }))
}

fn end_of(ops: &[Op], faults: &[FaultWindow]) -> f64 {
    let ops_end = plotted(ops).map(|op| op.complete).max().unwrap_or(0);
    let faults_end = faults.iter().map(|f| f.end).max().unwrap_or(0);
    secs(ops_end.max(faults_end)).max(1.0)
}

fn err(e: impl std::fmt::Display) -> JepsenError {
    JepsenError::Plot(e.to_string())
}

/// Shades each fault window over the whole height of the chart.
fn shade<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    faults: &[FaultWindow],
    top: f64,
) -> Result<(), JepsenError> {
    chart
        .draw_series(faults.iter().map(|f| {
            Rectangle::new(
                [(secs(f.start), 0.0), (secs(f.end), top)],
                FAULT.mix(0.35).filled(),
            )
        }))
        .map_err(err)?
        .label("fault")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], FAULT.mix(0.6).filled()));
    Ok(())
}

/// Latency (ms) of each operation against the time it was invoked.
pub fn latency(ops: &[Op], faults: &[FaultWindow]) -> Result<String, JepsenError> {
    let mut svg = String::new();
    {
        let end = end_of(ops, faults);
        let top = plotted(ops)
            .map(|op| (op.complete - op.invoke) as f64 / 1e6)
            .fold(1.0, f64::max)
            * 1.05;
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("latency", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..end, 0.0..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("latency (ms)")
            .draw()
            .map_err(err)?;
        shade(&mut chart, faults, top)?;
        for outcome in [Outcome::Ok, Outcome::Fail, Outcome::Info] {
            let c = color(outcome);
            chart
                .draw_series(plotted(ops).filter(|op| op.outcome == outcome).map(|op| {
                    Circle::new(
                        (secs(op.invoke), (op.complete - op.invoke) as f64 / 1e6),
                        2,
                        c.filled(),
                    )
                }))
                .map_err(err)?
                .label(format!("{outcome:?}").to_lowercase())
                .legend(move |(x, y)| Circle::new((x + 5, y), 3, c.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Completed operations per second, by outcome.
pub fn throughput(ops: &[Op], faults: &[FaultWindow]) -> Result<String, JepsenError> {
    let mut svg = String::new();
    {
        let end = end_of(ops, faults);
        let buckets = end.ceil() as usize + 1;
        let mut counts = [
            vec![0u32; buckets],
            vec![0u32; buckets],
            vec![0u32; buckets],
        ];
        for op in plotted(ops) {
            let b = (secs(op.complete) as usize).min(buckets - 1);
            let row = match op.outcome {
                Outcome::Ok => 0,
                Outcome::Fail => 1,
                Outcome::Info => 2,
            };
            counts[row][b] += 1;
        }
        let top = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("throughput", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..end, 0.0..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("operations / s")
            .draw()
            .map_err(err)?;
        shade(&mut chart, faults, top)?;
        for (row, outcome) in [Outcome::Ok, Outcome::Fail, Outcome::Info]
            .into_iter()
            .enumerate()
        {
            let c = color(outcome);
            let points = counts[row]
                .iter()
                .enumerate()
                .map(|(s, n)| (s as f64 + 0.5, *n as f64));
            chart
                .draw_series(LineSeries::new(points, c.stroke_width(2)))
                .map_err(err)?
                .label(format!("{outcome:?}").to_lowercase())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 12, y)], c.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}
