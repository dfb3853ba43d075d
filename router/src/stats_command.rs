//! `flit stats --server ADDR`: a live per-shard table, like `top`, read from
//! a router's metrics endpoint (its `--metrics` address). It scrapes
//! `/metrics`, parses the Prometheus text with `prometheus-parse`, and shows
//! per-second rates between two scrapes; `--once` prints totals since start.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use prometheus_parse::{Scrape, Value};

use crate::cli::StatsArguments;

/// How long one scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// `flit cluster ls`: prints what `path` on the metrics endpoint answers
/// (`/cluster`: one line per node), or fails with its status line.
pub fn print_path(server: &str, path: &str) -> Result<()> {
    print!("{}", get(server, path)?);
    Ok(())
}

/// The body `GET path` answers on the metrics endpoint at `server`, or an
/// error naming its status line (and body) when it is not 200.
fn get(server: &str, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect(server)
        .with_context(|| format!("cannot connect to the metrics endpoint at {server} (is flit serve --metrics on?)"))?;
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response).context("reading the metrics endpoint's response")?;
    let (head, body) = response.split_once("\r\n\r\n").context("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("metrics endpoint answered: {} {}", head.lines().next().unwrap_or(""), body.trim());
    }
    Ok(body.to_string())
}

/// Fetches and parses `/metrics` from `server` (host:port).
pub fn scrape(server: &str) -> Result<Scrape> {
    let body = get(server, "/metrics")?;
    Scrape::parse(body.lines().map(|line| Ok(line.to_string()))).context("parsing the metrics")
}

/// One shard's numbers from one scrape.
#[derive(Clone, Debug, Default)]
struct ShardRow {
    values: BTreeMap<String, f64>,
    /// Cumulative latency buckets: (upper bound in seconds, count).
    latency_buckets: Vec<(f64, f64)>,
}

impl ShardRow {
    fn get(&self, name: &str) -> f64 {
        self.values.get(name).copied().unwrap_or(0.0)
    }
}

fn rows(scrape: &Scrape) -> BTreeMap<u64, ShardRow> {
    let mut rows: BTreeMap<u64, ShardRow> = BTreeMap::new();
    for sample in &scrape.samples {
        let Some(shard) = sample.labels.get("shard").and_then(|shard| shard.parse().ok()) else { continue };
        let row = rows.entry(shard).or_default();
        let name = sample.metric.trim_start_matches("flit_shard_").to_string();
        match &sample.value {
            Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value) => {
                *row.values.entry(name).or_default() += value;
            }
            Value::Histogram(buckets) if sample.metric == "flit_in_router_latency_seconds" => {
                row.latency_buckets = buckets.iter().map(|bucket| (bucket.less_than, bucket.count)).collect();
            }
            _ => {}
        }
    }
    rows
}

/// The bucket bound below which 99% of the samples fall, from cumulative
/// bucket counts (or their difference between two scrapes).
fn percentile_99(buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.iter().map(|(_, count)| *count).fold(0.0, f64::max);
    if total <= 0.0 {
        return None;
    }
    buckets.iter().find(|(_, count)| *count >= 0.99 * total).map(|(bound, _)| *bound)
}

fn human(value: f64) -> String {
    match value {
        v if v >= 1e9 => format!("{:.2}G", v / 1e9),
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e4 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

fn latency(bound: Option<f64>) -> String {
    match bound {
        None => "-".to_string(),
        Some(bound) if bound.is_infinite() => ">1s".to_string(),
        Some(bound) if bound >= 1e-3 => format!("<={:.0}ms", bound * 1e3),
        Some(bound) => format!("<={:.0}us", bound * 1e6),
    }
}

/// The table: totals when `before` is None, else rates over `seconds`.
fn table(now: &BTreeMap<u64, ShardRow>, before: Option<(&BTreeMap<u64, ShardRow>, f64)>) -> String {
    let rate_word = if before.is_some() { "/s" } else { "" };
    let mut out = format!(
        "{:>5} {:>3} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>5} {:>7} {:>7} {:>9}\n",
        "shard",
        "up",
        "conns",
        "subs",
        format!("in{rate_word}"),
        format!("out{rate_word}"),
        format!("MBin{rate_word}"),
        format!("MBout{rate_word}"),
        format!("mesh{rate_word}"),
        "pending",
        "busy%",
        "evicted",
        "errors",
        "p99"
    );
    for (shard, row) in now {
        let previous = before.and_then(|(rows, _)| rows.get(shard));
        let seconds = before.map_or(1.0, |(_, seconds)| seconds.max(1e-9));
        let delta = |name: &str| (row.get(name) - previous.map_or(0.0, |p| p.get(name))) / seconds;
        let busy = row.get("busy_seconds_total") - previous.map_or(0.0, |p| p.get("busy_seconds_total"));
        let idle = row.get("idle_seconds_total") - previous.map_or(0.0, |p| p.get("idle_seconds_total"));
        let busy_percent = if busy + idle > 0.0 { 100.0 * busy / (busy + idle) } else { 0.0 };
        let buckets: Vec<(f64, f64)> = match previous {
            Some(previous) if previous.latency_buckets.len() == row.latency_buckets.len() => row
                .latency_buckets
                .iter()
                .zip(&previous.latency_buckets)
                .map(|((bound, count), (_, earlier))| (*bound, count - earlier))
                .collect(),
            _ => row.latency_buckets.clone(),
        };
        out.push_str(&format!(
            "{:>5} {:>3} {:>7} {:>7} {:>9} {:>9} {:>9.2} {:>9.2} {:>9} {:>8} {:>5.1} {:>7} {:>7} {:>9}\n",
            shard,
            row.get("up"),
            human(row.get("connections")),
            human(row.get("subscriptions")),
            human(delta("messages_in_total")),
            human(delta("deliveries_total")),
            delta("bytes_in_total") / 1e6,
            delta("bytes_out_total") / 1e6,
            human(delta("mesh_messages_sent_total")),
            human(row.get("pending_bytes")),
            busy_percent,
            human(row.get("slow_consumer_evictions_total")),
            human(row.get("errors_total")),
            latency(percentile_99(&buckets)),
        ));
    }
    out
}

pub fn run(arguments: StatsArguments) -> Result<()> {
    let first = rows(&scrape(&arguments.server)?);
    if first.is_empty() {
        bail!("{} serves no flit shard metrics", arguments.server);
    }
    let mut stdout = std::io::stdout().lock();
    if arguments.once {
        write!(stdout, "{}", table(&first, None))?;
        return Ok(());
    }
    // The parser (cli.rs) took only finite intervals from 0.1 to 3600 s.
    let interval = Duration::from_secs_f64(arguments.interval);
    let clear = std::io::stdout().is_terminal();
    let (mut previous, mut previous_at) = (first, Instant::now());
    loop {
        std::thread::sleep(interval);
        let current = rows(&scrape(&arguments.server)?);
        let now = Instant::now();
        let seconds = now.duration_since(previous_at).as_secs_f64();
        if clear {
            write!(stdout, "\x1b[2J\x1b[H")?;
        }
        writeln!(stdout, "flit stats {}  every {:.1}s  (Ctrl-C to quit)", arguments.server, interval.as_secs_f64())?;
        write!(stdout, "{}", table(&current, Some((&previous, seconds))))?;
        stdout.flush()?;
        (previous, previous_at) = (current, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_99_is_the_first_bucket_holding_99_percent() {
        let buckets = [(1e-6, 10.0), (2e-6, 98.0), (5e-6, 99.0), (f64::INFINITY, 100.0)];
        assert_eq!(percentile_99(&buckets), Some(5e-6));
        assert_eq!(percentile_99(&[(1e-6, 0.0)]), None);
    }
}
