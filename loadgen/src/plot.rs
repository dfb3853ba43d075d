//! Percentile plots: latency by percentile for several runs on one SVG, the
//! way HdrHistogram's plotFiles.html draws them, so flit, NATS and the echo
//! floor can be compared at a glance.
//!
//! The x axis is the "nines" scale, x = -log10(1 - p/100): 0% at 0, 90% at 1,
//! 99% at 2, 99.9% at 3, and so on, which gives the tail the room it deserves.
//! The 100% point (the maximum) has no finite x; it is drawn at the x of the
//! run's last finite point, so the line ends with a rise to the maximum.
//! The y axis is latency in microseconds, logarithmic when the runs span more
//! than two decades.

use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::{read_json, Report};

/// The drawing's size in pixels.
const PLOT_SIZE_PIXELS: (u32, u32) = (1200, 700);
/// Nines always on the x axis: 0% to 99.999%, more if a run reaches further.
const NINES_AXIS_MIN: u32 = 5;
/// The y axis turns logarithmic when max/min latency exceeds this (two decades).
const LOG_SCALE_SPAN_MIN: f64 = 100.0;
/// At most this many runs on one plot: beyond it the legend is unreadable.
const RUNS_MAX: usize = 32;

/// Draws one line per run (label, (percentile 0..=100, microseconds) points)
/// into an SVG file at `path`.
pub fn plot_percentiles(runs: &[(String, Vec<(f64, f64)>)], title: &str, path: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(!runs.is_empty(), "nothing to plot: no runs");
    anyhow::ensure!(runs.len() <= RUNS_MAX, "{} runs on one plot; at most {RUNS_MAX}", runs.len());
    let lines: Vec<(&str, Vec<(f64, f64)>)> =
        runs.iter().map(|(label, points)| (label.as_str(), nines_points(points))).collect();
    let all_points = || lines.iter().flat_map(|(_, points)| points.iter());
    anyhow::ensure!(all_points().next().is_some(), "nothing to plot: the runs have no points");

    let x_max = all_points().map(|point| point.0).fold(0.0, f64::max);
    let nines_max = (x_max.ceil() as u32).max(NINES_AXIS_MIN);
    let y_max = all_points().map(|point| point.1).fold(0.0, f64::max);
    let y_min_positive = all_points().map(|point| point.1).filter(|y| *y > 0.0).fold(f64::INFINITY, f64::min);

    let root = SVGBackend::new(path, PLOT_SIZE_PIXELS).into_drawing_area();
    root.fill(&WHITE)?;
    if y_min_positive.is_finite() && y_max / y_min_positive > LOG_SCALE_SPAN_MIN {
        let y_range = (y_min_positive / 1.5)..(y_max * 1.5);
        draw_chart(&root, &lines, title, nines_max, y_range.log_scale())?;
    } else {
        let y_range = 0.0..(y_max * 1.1).max(1.0);
        draw_chart(&root, &lines, title, nines_max, y_range)?;
    }
    root.present()?;
    Ok(())
}

/// The title `flit-loadgen plot` uses without `--title`.
pub const TITLE_DEFAULT: &str = "Latency by percentile";

/// Reads reports written by `--json` and plots their `percentiles`, each line
/// labelled `target scenario (rate)`.
pub fn plot_from_json_files_titled(paths: &[PathBuf], title: &str, output: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(!paths.is_empty(), "no report files to plot");
    let mut runs = Vec::with_capacity(paths.len());
    for path in paths {
        let report = read_json(path)?;
        runs.push((run_label(&report), report_points(&report)));
    }
    plot_percentiles(&runs, title, output)
}

/// `target scenario (rate)`: the line's name in the legend.
pub fn run_label(report: &Report) -> String {
    let rate = if report.rate == 0 { "closed loop".to_string() } else { format!("{} msg/s", report.rate) };
    format!("{} {} ({rate})", report.target, report.scenario)
}

/// The report's percentile points, or, for a report without them, the
/// summary percentiles.
fn report_points(report: &Report) -> Vec<(f64, f64)> {
    if !report.percentiles.is_empty() {
        return report.percentiles.clone();
    }
    let latency = &report.latency_us;
    if latency.count == 0 {
        return Vec::new();
    }
    vec![
        (50.0, latency.p50),
        (90.0, latency.p90),
        (99.0, latency.p99),
        (99.9, latency.p999),
        (99.99, latency.p9999),
        (100.0, latency.max),
    ]
}

/// Maps (percentile, µs) to (nines, µs); the 100% point takes the x of the
/// last finite point before it (or 0 when it is alone).
fn nines_points(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut mapped: Vec<(f64, f64)> = Vec::with_capacity(points.len());
    for &(percentile, micros) in points {
        let remaining = 1.0 - percentile.clamp(0.0, 100.0) / 100.0;
        let nines = if remaining > 0.0 { -remaining.log10() } else { mapped.last().map_or(0.0, |last| last.0) };
        debug_assert!(nines.is_finite() && nines >= 0.0);
        mapped.push((nines, micros));
    }
    mapped
}

/// `0%`, `90%`, `99%`, `99.9%`, ... for x = 0, 1, 2, 3, ...; the percentile
/// itself for a tick between two nines.
fn nines_label(x: f64) -> String {
    let nines = x.round();
    if (x - nines).abs() > 1e-6 {
        let percentile = 100.0 * (1.0 - 10_f64.powf(-x));
        return format!("{percentile:.*}%", (x.ceil() as usize).saturating_sub(1));
    }
    match nines as u32 {
        0 => "0%".to_string(),
        1 => "90%".to_string(),
        2 => "99%".to_string(),
        whole => format!("99.{}%", "9".repeat(whole as usize - 2)),
    }
}

/// A tick's latency without floating-point noise (0.30000000000000004).
fn micros_label(micros: f64) -> String {
    format!("{}", (micros * 1000.0).round() / 1000.0)
}

/// Draws the axes, the lines and the legend; generic over the y axis so one
/// body serves the linear and the logarithmic case.
fn draw_chart<Y>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    lines: &[(&str, Vec<(f64, f64)>)],
    title: &str,
    nines_max: u32,
    y_range: Y,
) -> anyhow::Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let x_range = 0.0..f64::from(nines_max);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range, y_range)?;
    chart
        .configure_mesh()
        // One label per nine: plotters then picks whole-number ticks.
        .x_labels(nines_max as usize + 1)
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .x_label_formatter(&|x| nines_label(*x))
        .y_label_formatter(&|y| micros_label(*y))
        .draw()?;
    for (index, (label, points)) in lines.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temporary_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("flit-loadgen-plot-{}-{name}", std::process::id()))
    }

    #[test]
    fn nines_scale_places_the_usual_percentiles_on_integers() {
        let mapped = nines_points(&[(0.0, 1.0), (90.0, 2.0), (99.0, 3.0), (99.9, 4.0), (100.0, 9.0)]);
        let xs: Vec<f64> = mapped.iter().map(|point| point.0).collect();
        for (x, expected) in xs.iter().zip([0.0, 1.0, 2.0, 3.0, 3.0]) {
            assert!((x - expected).abs() < 1e-9, "{xs:?}");
        }
        assert_eq!(mapped[4].1, 9.0, "the maximum is kept at the last finite x");
        let labels: Vec<String> = (0..6).map(|x| nines_label(f64::from(x))).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
    }

    #[test]
    fn plot_writes_an_svg_with_each_legend_label() {
        let linear = (0..=20).map(|step| (f64::from(step) * 5.0, 10.0 + f64::from(step))).collect::<Vec<_>>();
        let wide = vec![(0.0, 5.0), (90.0, 20.0), (99.0, 80.0), (99.9, 700.0), (99.99, 4000.0), (100.0, 50000.0)];
        let runs =
            vec![("flit reqrep (10000 msg/s)".to_string(), linear), ("nats reqrep (closed loop)".to_string(), wide)];
        let path = temporary_path("two-runs.svg");
        plot_percentiles(&runs, "two runs", &path).expect("plot");
        let svg = std::fs::read_to_string(&path).expect("read the svg");
        std::fs::remove_file(&path).expect("remove the svg");
        assert!(svg.contains("<svg"), "not an SVG: {}", &svg[..svg.len().min(200)]);
        for (label, _) in &runs {
            assert!(svg.contains(label.as_str()), "legend label {label:?} missing");
        }
        assert!(svg.contains("99.99%"), "nines tick labels missing");
    }

    #[test]
    fn plot_with_a_narrow_range_uses_a_linear_axis() {
        let runs = vec![("echo://x pubsub (500 msg/s)".to_string(), vec![(0.0, 10.0), (50.0, 12.0), (100.0, 30.0)])];
        let path = temporary_path("linear.svg");
        plot_percentiles(&runs, "linear", &path).expect("plot");
        let svg = std::fs::read_to_string(&path).expect("read the svg");
        std::fs::remove_file(&path).expect("remove the svg");
        assert!(svg.contains("<svg") && svg.contains("echo://x pubsub (500 msg/s)"));
    }

    #[test]
    fn plot_refuses_runs_without_points() {
        let path = temporary_path("empty.svg");
        assert!(plot_percentiles(&[], "none", &path).is_err());
        assert!(plot_percentiles(&[("empty".to_string(), Vec::new())], "none", &path).is_err());
    }

    #[test]
    fn plot_from_json_files_labels_lines_target_scenario_rate() {
        let first = Report {
            target: "flit://127.0.0.1:7000".to_string(),
            scenario: "pubsub".to_string(),
            rate: 20000,
            percentiles: vec![(0.0, 8.0), (50.0, 11.0), (99.0, 40.0), (100.0, 900.0)],
            ..Report::default()
        };
        let second = Report {
            target: "nats://127.0.0.1:4222".to_string(),
            scenario: "pubsub".to_string(),
            rate: 0,
            latency_us: crate::report::LatencyMicros {
                p50: 12.0,
                p90: 15.0,
                p99: 30.0,
                p999: 60.0,
                p9999: 100.0,
                max: 400.0,
                mean: 13.0,
                count: 1000,
            },
            ..Report::default()
        };
        let paths = [temporary_path("first.json"), temporary_path("second.json")];
        crate::report::write_json(&first, &paths[0]).expect("write first");
        crate::report::write_json(&second, &paths[1]).expect("write second");
        let output = temporary_path("from-json.svg");
        let result = plot_from_json_files_titled(&paths, TITLE_DEFAULT, &output);
        let svg = std::fs::read_to_string(&output);
        for path in paths.iter().chain([&output]) {
            let _ = std::fs::remove_file(path);
        }
        result.expect("plot from json");
        let svg = svg.expect("read the svg");
        assert!(svg.contains("flit://127.0.0.1:7000 pubsub (20000 msg/s)"));
        assert!(svg.contains("nats://127.0.0.1:4222 pubsub (closed loop)"));
    }
}
