//! What a run reports: the summary table on stdout, the JSON document
//! (`--json`), and HdrHistogram's percentile distribution text (`--hgrm`).
//!
//! The JSON schema is documented in docs/BENCHMARKS.md; the keys listed there
//! are a contract with scripts (bench/compare.sh, plots): add keys, never
//! rename or remove one.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write as _};
use std::path::Path;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyMicros {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
    pub mean: f64,
    /// Samples in the histogram.
    pub count: u64,
}

/// One run's results.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    pub payload_bytes: usize,
    /// Messages per second asked for; 0 for closed loop.
    pub rate: u64,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Messages sent during the measured period (publishes or requests).
    pub sent: u64,
    /// Deliveries received for those (a fan-out to K counts K per message).
    pub received: u64,
    /// Deliveries expected but never received before the drain deadline.
    pub lost: u64,
    pub errors: u64,
    /// Deliveries received per second of the measured period.
    pub throughput_msgs_per_s: f64,
    pub throughput_mb_per_s: f64,
    /// Latency: one way for pub/sub scenarios, round trip for reqrep; from the
    /// intended send time in open loop (no coordinated omission).
    pub latency_us: LatencyMicros,
    /// (percentile, microseconds) pairs for plots, from 0 to 100.
    pub percentiles: Vec<(f64, f64)>,
    pub connections: usize,
    pub idle: String,
    /// CPU seconds the server spent during the measured period (`--server-pid`).
    pub server_cpu_s: Option<f64>,
    /// Server resident memory before the run's connections opened and after (`--server-pid`), KiB.
    pub server_rss_kib_before: Option<u64>,
    pub server_rss_kib_after: Option<u64>,
    /// The command line that produced this report.
    pub command: String,
    /// `--receiver-target`, where subscribers and responders connected when
    /// it differs from `target` (a cross-node run); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_target: Option<String>,
    /// The propagation scenario's counts; absent for every other scenario.
    /// There `sent` is iterations, `received` iterations in which some probe
    /// arrived, `lost` iterations whose first publish never arrived, and the
    /// latency is flush return -> first arrival.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<PropagationCounts>,
}

/// What the propagation scenario counted (see `crate::propagation`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PropagationCounts {
    /// Recorded iterations: subscribe + flush, probes until one arrives, unsubscribe.
    pub iterations: u64,
    /// Iterations whose first publish, sent right after the flush returned, never arrived.
    pub first_publish_lost: u64,
    /// Probes that never arrived, over all iterations (those before the first that did).
    pub publishes_lost: u64,
    /// Iterations in which no probe arrived within the timeout.
    pub timeouts: u64,
    /// Time between probes after the first, µs.
    pub probe_interval_us: f64,
    /// The subscriber's subscribe + flush: from sending Subscribe and Ping to
    /// reading the Pong (a cluster-wide subscribe barrier makes it longer and
    /// the flush -> arrival latency shorter), recorded iterations.
    #[serde(default)]
    pub flush_us: LatencyMicros,
}

/// Microseconds in the report, nanoseconds in the histograms: the divisor.
pub const NANOS_PER_MICRO: f64 = 1_000.0;
/// The most (percentile, microseconds) points kept for a plot. The quantile
/// iteration takes 5 steps each time it halves the distance to 100%, so it
/// yields 200 steps only past 40 halvings (a tail of 1 in 10^12 samples):
/// thinning is a bound, rarely needed.
pub const PERCENTILE_POINTS_MAX: usize = 200;
/// Quantile steps per half distance to 100%, as HdrHistogram's
/// `outputPercentileDistribution` uses by default.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

const _: () = assert!(PERCENTILE_POINTS_MAX >= 2, "a plot needs the first and the last point");
const _: () = assert!(TICKS_PER_HALF_DISTANCE > 0);

/// Summarises a nanosecond histogram in microseconds. An empty histogram
/// gives zeros, not the histogram's undefined extremes.
pub fn latency_from_histogram(histogram: &Histogram<u64>) -> LatencyMicros {
    if histogram.is_empty() {
        return LatencyMicros::default();
    }
    let micros = |nanos: u64| nanos as f64 / NANOS_PER_MICRO;
    let latency = LatencyMicros {
        p50: micros(histogram.value_at_quantile(0.50)),
        p90: micros(histogram.value_at_quantile(0.90)),
        p99: micros(histogram.value_at_quantile(0.99)),
        p999: micros(histogram.value_at_quantile(0.999)),
        p9999: micros(histogram.value_at_quantile(0.9999)),
        max: micros(histogram.max()),
        // To the nanosecond: the shortest decimal then reads back exactly.
        mean: histogram.mean().round() / NANOS_PER_MICRO,
        count: histogram.len(),
    };
    debug_assert!(latency.p50 <= latency.p90 && latency.p90 <= latency.p99);
    debug_assert!(latency.p99 <= latency.p999 && latency.p999 <= latency.p9999 && latency.p9999 <= latency.max);
    latency
}

/// (percentile 0..=100, microseconds) points for a plot, from HdrHistogram's
/// quantile iteration (finer steps toward 100%), ending at (100, max).
///
/// Runs of equal latency keep only their first and last point, and what is
/// left is thinned evenly to [`PERCENTILE_POINTS_MAX`], always keeping the
/// first and the last point. Empty histogram: no points.
pub fn percentile_points(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = Vec::new();
    for step in histogram.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        // The iterator adds its steps up in floating point (91.25000000000001);
        // nine decimals keep the steps exact and read back from JSON exactly.
        let percentile = (step.quantile_iterated_to() * 100.0 * 1e9).round() / 1e9;
        let point = (percentile, step.value_iterated_to() as f64 / NANOS_PER_MICRO);
        // Drop the middle of a run of equal values: with `a b b b`, the second
        // `b` is replaced by the third, so the run keeps its first and last.
        let run = points.len() >= 2 && points[points.len() - 1].1 == point.1 && points[points.len() - 2].1 == point.1;
        if run {
            *points.last_mut().expect("checked above") = point;
        } else {
            points.push(point);
        }
    }
    let points = thin_evenly(points, PERCENTILE_POINTS_MAX);
    debug_assert!(points.len() <= PERCENTILE_POINTS_MAX);
    debug_assert!(points.windows(2).all(|pair| pair[0].0 <= pair[1].0 && pair[0].1 <= pair[1].1));
    debug_assert!(points.last().is_none_or(|last| last.0 == 100.0));
    points
}

/// Keeps at most `count_max` of `points`, evenly spaced by index, including
/// the first and the last.
fn thin_evenly(points: Vec<(f64, f64)>, count_max: usize) -> Vec<(f64, f64)> {
    assert!(count_max >= 2);
    if points.len() <= count_max {
        return points;
    }
    let last_index = points.len() - 1;
    let kept: Vec<(f64, f64)> = (0..count_max).map(|slot| points[slot * last_index / (count_max - 1)]).collect();
    debug_assert_eq!(kept.last(), points.last());
    kept
}

impl Report {
    /// A fixed-width summary for a person: what ran, the counts, throughput,
    /// the latency percentiles in microseconds, and the server's cost when
    /// `--server-pid` was given. Ends with a newline.
    pub fn summary_table(&self) -> String {
        let mut out = String::new();
        self.write_summary(&mut out).expect("writing to a String cannot fail");
        out
    }

    fn write_summary(&self, out: &mut String) -> std::fmt::Result {
        let mode = if self.rate == 0 { "closed loop".to_string() } else { format!("{} msg/s open loop", self.rate) };
        let latency_kind = match self.scenario.as_str() {
            "reqrep" => "round trip",
            "durable" => "publish -> acknowledgement",
            "propagation" => "subscriber's flush returned -> first message",
            _ => "one way",
        };
        writeln!(out, "{:<12} {}", "target", self.target)?;
        if let Some(receiver) = &self.receiver_target {
            writeln!(out, "{:<12} {}", "receivers", receiver)?;
        }
        writeln!(out, "{:<12} {}", "scenario", self.scenario)?;
        writeln!(out, "{:<12} {}", "rate", mode)?;
        writeln!(out, "{:<12} {} B", "payload", self.payload_bytes)?;
        writeln!(out, "{:<12} {}", "connections", self.connections)?;
        writeln!(out, "{:<12} {}", "idle", self.idle)?;
        writeln!(out, "{:<12} {:.3} s measured after {:.3} s warm-up", "duration", self.duration_s, self.warmup_s)?;
        writeln!(out)?;
        writeln!(
            out,
            "{:>12} {:>12} {:>12} {:>12} {:>14} {:>10}",
            "sent", "received", "lost", "errors", "msg/s", "MB/s"
        )?;
        writeln!(
            out,
            "{:>12} {:>12} {:>12} {:>12} {:>14.0} {:>10.2}",
            self.sent, self.received, self.lost, self.errors, self.throughput_msgs_per_s, self.throughput_mb_per_s
        )?;
        writeln!(out)?;
        let latency = &self.latency_us;
        writeln!(out, "latency in µs, {latency_kind}, {} samples", latency.count)?;
        writeln!(
            out,
            "{:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean"
        )?;
        writeln!(
            out,
            "{:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
            latency.p50, latency.p90, latency.p99, latency.p999, latency.p9999, latency.max, latency.mean
        )?;
        if let Some(counts) = &self.propagation {
            let flush = &counts.flush_us;
            writeln!(out, "subscribe + flush in µs: p50 {:.2}  p99 {:.2}  max {:.2}", flush.p50, flush.p99, flush.max)?;
            writeln!(out)?;
            writeln!(
                out,
                "{:>12} {:>20} {:>16} {:>10} {:>12}",
                "iterations", "first publish lost", "publishes lost", "timeouts", "probe µs"
            )?;
            writeln!(
                out,
                "{:>12} {:>20} {:>16} {:>10} {:>12.0}",
                counts.iterations,
                counts.first_publish_lost,
                counts.publishes_lost,
                counts.timeouts,
                counts.probe_interval_us
            )?;
        }
        self.write_server_summary(out)
    }

    fn write_server_summary(&self, out: &mut String) -> std::fmt::Result {
        let rss_kib = (self.server_rss_kib_before, self.server_rss_kib_after);
        if self.server_cpu_s.is_none() && rss_kib == (None, None) {
            return Ok(());
        }
        let unknown = || "-".to_string();
        let cpu_s = self.server_cpu_s.map_or_else(unknown, |cpu_s| format!("{cpu_s:.3}"));
        let rss_before = rss_kib.0.map_or_else(unknown, |kib| kib.to_string());
        let rss_after = rss_kib.1.map_or_else(unknown, |kib| kib.to_string());
        writeln!(out)?;
        writeln!(out, "{:>12} {:>16} {:>16}", "server CPU s", "RSS before KiB", "RSS after KiB")?;
        writeln!(out, "{cpu_s:>12} {rss_before:>16} {rss_after:>16}")
    }
}

/// Writes `report` as pretty JSON (the schema in docs/BENCHMARKS.md).
pub fn write_json(report: &Report, path: &Path) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut writer = BufWriter::new(file);
    serde_json::to_writer_pretty(&mut writer, report).with_context(|| format!("writing {}", path.display()))?;
    writer.write_all(b"\n")?;
    writer.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads a report written by [`write_json`].
pub fn read_json(path: &Path) -> anyhow::Result<Report> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let report = serde_json::from_reader(BufReader::new(file))
        .with_context(|| format!("{} is not a flit-loadgen report", path.display()))?;
    Ok(report)
}

/// Writes HdrHistogram's percentile distribution text (the `.hgrm` format of
/// Java's `outputPercentileDistribution(stream, 5, unit_ratio)`), which
/// HdrHistogram's plotFiles.html and hdr-plot read. Values are divided by
/// `unit_ratio`: 1000.0 turns the nanosecond histograms into microseconds.
pub fn write_hgrm(histogram: &Histogram<u64>, path: &Path, unit_ratio: f64) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut writer = BufWriter::new(file);
    let mut text = String::new();
    percentile_distribution(histogram, unit_ratio, &mut text).expect("writing to a String cannot fail");
    writer.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    writer.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The text of [`write_hgrm`], with Java's format strings: `%12s %14s %10s
/// %14s` for the header, `%12.{digits}f %2.12f %10d %14.2f` for a row (no last
/// column on the 100% row), then the `#[Mean`, `#[Max` and `#[Buckets` lines.
fn percentile_distribution(histogram: &Histogram<u64>, unit_ratio: f64, out: &mut String) -> std::fmt::Result {
    assert!(unit_ratio > 0.0, "unit_ratio divides the values");
    let digits = usize::from(histogram.sigfig());
    writeln!(out, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)")?;
    if !histogram.is_empty() {
        // Java prints the count up to the step's value; the iterator hands
        // out the count since the previous step.
        let mut total_count: u64 = 0;
        for step in histogram.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            let value = step.value_iterated_to() as f64 / unit_ratio;
            let quantile = step.quantile_iterated_to();
            total_count += step.count_since_last_iteration();
            debug_assert!(total_count <= histogram.len());
            write!(out, "{value:>12.digits$} {quantile:>2.12} {total_count:>10}")?;
            if quantile < 1.0 {
                write!(out, " {:>14.2}", 1.0 / (1.0 - quantile))?;
            }
            writeln!(out)?;
        }
    }
    let (mean, deviation) = (histogram.mean() / unit_ratio, histogram.stdev() / unit_ratio);
    writeln!(out, "#[Mean    = {mean:>12.digits$}, StdDeviation   = {deviation:>12.digits$}]")?;
    let max = if histogram.is_empty() { 0.0 } else { histogram.max() as f64 / unit_ratio };
    writeln!(out, "#[Max     = {max:>12.digits$}, Total count    = {:>12}]", histogram.len())?;
    writeln!(out, "#[Buckets = {:>12}, SubBuckets     = {:>12}]", histogram.buckets(), sub_bucket_count(histogram))
}

/// HdrHistogram's `subBucketCount`, which the Rust crate keeps private: the
/// counts array holds `(buckets + 1) * subBucketCount / 2` entries.
fn sub_bucket_count(histogram: &Histogram<u64>) -> usize {
    let half_count = histogram.distinct_values() / (usize::from(histogram.buckets()) + 1);
    debug_assert_eq!(half_count * (usize::from(histogram.buckets()) + 1), histogram.distinct_values());
    debug_assert!(half_count.is_power_of_two());
    half_count * 2
}

#[cfg(test)]
mod tests {
    use super::*;

    const NANOS_PER_MILLI: u64 = 1_000_000;

    /// 1..=1000 µs once each, ten times over (10,000 samples), plus two 50 ms
    /// outliers: the delays a test can reason about.
    fn injected_delays() -> Histogram<u64> {
        let mut histogram = Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
        for _ in 0..10 {
            for micros in 1..=1000_u64 {
                histogram.record(micros * 1_000).expect("in range");
            }
        }
        histogram.record_n(50 * NANOS_PER_MILLI, 2).expect("in range");
        histogram
    }

    fn temporary_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("flit-loadgen-report-{}-{name}", std::process::id()))
    }

    fn assert_near(actual: f64, expected: f64, tolerance: f64, what: &str) {
        assert!((actual - expected).abs() <= tolerance, "{what}: {actual} is not {expected} ± {tolerance}");
    }

    #[test]
    fn percentiles_of_injected_delays_are_where_they_were_put() {
        let latency = latency_from_histogram(&injected_delays());
        // The sample of rank ceil(q * 10,002): p50 is the 5,001st, 501 µs;
        // reported as the top of its HdrHistogram bucket, at most 0.1% above.
        let within_precision = |actual: f64, expected: f64, what: &str| {
            assert!(actual >= expected && actual <= expected * 1.001, "{what}: {actual} is not {expected} + 0.1%");
        };
        within_precision(latency.p50, 501.0, "p50");
        within_precision(latency.p90, 901.0, "p90");
        within_precision(latency.p99, 991.0, "p99");
        within_precision(latency.p999, 1_000.0, "p99.9");
        // 2 outliers in 10,002 samples: the top 0.02% is the outliers.
        within_precision(latency.p9999, 50_000.0, "p99.99");
        within_precision(latency.max, 50_000.0, "max");
        assert_eq!(latency.count, 10_002);
        assert_near(latency.mean, (500.5 * 10_000.0 + 2.0 * 50_000.0) / 10_002.0, 1.0, "mean");
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        let histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
        assert_eq!(latency_from_histogram(&histogram), LatencyMicros::default());
        assert!(percentile_points(&histogram).is_empty());
    }

    #[test]
    fn percentile_points_are_few_monotonic_and_end_at_the_maximum() {
        let histogram = injected_delays();
        let points = percentile_points(&histogram);
        assert!(points.len() >= 10 && points.len() <= PERCENTILE_POINTS_MAX, "{} points", points.len());
        assert_eq!(points[0].0, 0.0);
        assert!(points.windows(2).all(|pair| pair[0].0 <= pair[1].0 && pair[0].1 <= pair[1].1));
        let last = points.last().expect("points");
        assert_eq!(last.0, 100.0);
        assert_near(last.1, 50_000.0, 50.0, "last point");
        let at_p50 = points.iter().find(|point| point.0 >= 50.0).expect("a point at or past p50");
        assert_near(at_p50.1, 500.0, 2.0, "point at p50");
    }

    #[test]
    fn percentile_points_stay_bounded_for_a_long_tail() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
        // A tail over 50 halvings of the distance to 100%, with 8 latencies per
        // halving (more than its 5 steps), so deduplication cannot help.
        const VALUES: u32 = 400;
        for step in 0..VALUES {
            let count = 2_f64.powf(50.0 - f64::from(step) / 8.0) as u64;
            histogram.record_n(u64::from(step + 1) * 1_000, count).expect("in range");
        }
        let points = percentile_points(&histogram);
        assert_eq!(points.len(), PERCENTILE_POINTS_MAX);
        assert_eq!(points[0], (0.0, 1.0));
        assert_eq!(points.last().copied(), Some((100.0, 400.127)));
        assert!(points.windows(2).all(|pair| pair[0].0 <= pair[1].0 && pair[0].1 <= pair[1].1));
    }

    fn sample_report() -> Report {
        let histogram = injected_delays();
        Report {
            scenario: "reqrep".to_string(),
            target: "flit://127.0.0.1:7000".to_string(),
            payload_bytes: 64,
            rate: 10_000,
            duration_s: 5.0,
            warmup_s: 1.0,
            sent: 50_000,
            received: 49_998,
            lost: 2,
            errors: 0,
            throughput_msgs_per_s: 9_999.6,
            throughput_mb_per_s: 9_999.6 * 64.0 / 1e6,
            latency_us: latency_from_histogram(&histogram),
            percentiles: percentile_points(&histogram),
            connections: 2,
            idle: "park".to_string(),
            server_cpu_s: Some(1.25),
            server_rss_kib_before: Some(10_240),
            server_rss_kib_after: None,
            command: "flit-loadgen --target flit://127.0.0.1:7000 --scenario reqrep --rate 10000".to_string(),
            receiver_target: None,
            propagation: None,
        }
    }

    #[test]
    fn json_round_trip_returns_the_same_report() {
        let report = sample_report();
        let path = temporary_path("round-trip.json");
        write_json(&report, &path).expect("write");
        let read = read_json(&path);
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(read.expect("read"), report);
    }

    #[test]
    fn cross_node_keys_appear_only_when_set_and_round_trip() {
        let plain = serde_json::to_value(sample_report()).expect("to value");
        assert!(plain.get("receiver_target").is_none() && plain.get("propagation").is_none());
        let report = Report {
            scenario: "propagation".to_string(),
            receiver_target: Some("flit://127.0.0.1:7001".to_string()),
            propagation: Some(PropagationCounts {
                iterations: 100,
                first_publish_lost: 7,
                publishes_lost: 9,
                timeouts: 0,
                probe_interval_us: 50.0,
                flush_us: LatencyMicros { p50: 30.0, p99: 90.0, max: 120.0, count: 100, ..LatencyMicros::default() },
            }),
            ..sample_report()
        };
        let path = temporary_path("cross-node.json");
        write_json(&report, &path).expect("write");
        let read = read_json(&path);
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(read.expect("read"), report);
        let table = report.summary_table();
        for expected in ["receivers", "flit://127.0.0.1:7001", "first publish lost", "flush returned", "p99 90.00"] {
            assert!(table.contains(expected), "{expected:?} missing from\n{table}");
        }
    }

    #[test]
    fn json_has_every_documented_key() {
        let value = serde_json::to_value(sample_report()).expect("to value");
        let keys = [
            "scenario",
            "target",
            "payload_bytes",
            "rate",
            "duration_s",
            "warmup_s",
            "sent",
            "received",
            "lost",
            "errors",
            "throughput_msgs_per_s",
            "throughput_mb_per_s",
            "latency_us",
            "percentiles",
            "connections",
            "idle",
            "server_cpu_s",
            "server_rss_kib_before",
            "server_rss_kib_after",
            "command",
        ];
        for key in keys {
            assert!(value.get(key).is_some(), "key {key} missing");
        }
        assert_eq!(value.as_object().expect("an object").len(), keys.len(), "an undocumented key: update the docs");
        for key in ["p50", "p90", "p99", "p999", "p9999", "max", "mean", "count"] {
            assert!(value["latency_us"].get(key).is_some_and(|v| v.is_number()), "latency_us.{key} missing");
        }
        let first_point = &value["percentiles"][0];
        assert!(first_point[0].is_number() && first_point[1].is_number(), "percentiles are [percentile, µs] pairs");
        assert!(value["server_rss_kib_after"].is_null(), "an absent measurement is null");
    }

    #[test]
    fn read_json_rejects_what_is_not_a_report() {
        let path = temporary_path("not-a-report.json");
        std::fs::write(&path, "{\"scenario\": 3}").expect("write");
        let result = read_json(&path);
        std::fs::remove_file(&path).expect("remove");
        assert!(result.is_err());
    }

    #[test]
    fn summary_table_shows_counts_percentiles_and_server_cost() {
        let table = sample_report().summary_table();
        for expected in ["flit://127.0.0.1:7000", "reqrep", "10000 msg/s", "64 B", "49998", "p99.99", "server CPU s"] {
            assert!(table.contains(expected), "{expected:?} missing from\n{table}");
        }
        let mut without_server = sample_report();
        (without_server.server_cpu_s, without_server.server_rss_kib_before) = (None, None);
        assert!(!without_server.summary_table().contains("server"));
    }

    #[test]
    fn hgrm_has_java_structure_and_counts() {
        let histogram = injected_delays();
        let path = temporary_path("distribution.hgrm");
        write_hgrm(&histogram, &path, NANOS_PER_MICRO).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::remove_file(&path).expect("remove");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "       Value     Percentile TotalCount 1/(1-Percentile)");
        assert_eq!(lines[1], "");
        let footer_start = lines.iter().position(|line| line.starts_with("#[")).expect("footer");
        let rows: Vec<Vec<&str>> =
            lines[2..footer_start].iter().map(|line| line.split_whitespace().collect()).collect();
        assert!(rows.len() > 20, "{} rows", rows.len());
        let mut previous = (0.0_f64, 0.0_f64, 0_u64);
        for (index, row) in rows.iter().enumerate() {
            let last_row = index == rows.len() - 1;
            assert_eq!(row.len(), if last_row { 3 } else { 4 }, "row {row:?}");
            let value: f64 = row[0].parse().expect("value");
            let percentile: f64 = row[1].parse().expect("percentile");
            let total_count: u64 = row[2].parse().expect("total count");
            assert!(value >= previous.0 && percentile >= previous.1 && total_count >= previous.2, "row {row:?}");
            if !last_row {
                let inverse: f64 = row[3].parse().expect("1/(1-Percentile)");
                assert_near(inverse, 1.0 / (1.0 - percentile), 0.01 + inverse * 1e-9, "1/(1-Percentile)");
            }
            previous = (value, percentile, total_count);
        }
        assert_eq!(previous.1, 1.0, "the last row is 100%");
        assert_eq!(previous.2, histogram.len(), "the last row counts every sample");
        assert_near(previous.0, 50_000.0, 50.0, "the last row is the maximum in µs");
        let first_row = &lines[2];
        assert_eq!(first_row.find('.'), Some(8), "value column is %12.3f: {first_row:?}");
        let footer = &lines[footer_start..];
        assert_eq!(footer.len(), 3, "{footer:?}");
        assert!(footer[0].starts_with("#[Mean    = ") && footer[0].contains(", StdDeviation   = "));
        assert!(footer[1].starts_with("#[Max     = ") && footer[1].ends_with(&format!("{:>12}]", 10_002)));
        assert_eq!(footer[2], format!("#[Buckets = {:>12}, SubBuckets     = {:>12}]", histogram.buckets(), 2048));
    }

    #[test]
    fn hgrm_of_an_empty_histogram_is_header_and_footer() {
        let histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
        let mut text = String::new();
        percentile_distribution(&histogram, NANOS_PER_MICRO, &mut text).expect("format");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[3].contains("Total count    =            0"));
    }
}
