//! Command-line interface: flags to [`RunOptions`], a run to a [`Report`].
//! `--receiver-target` sends subscribers and responders to another server
//! (a node of the same cluster) than publishers and requesters; the
//! propagation scenario has its own driver (`crate::propagation`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::engine::Engine;
use crate::propagation::PropagationOptions;
use crate::report::{self, Report};
use crate::scenario::{Idle, RunOptions, ScenarioKind};
use crate::system;
use crate::target::{Addresses, Target};

#[derive(Debug, Parser)]
#[command(name = "flit-loadgen", version, about = "Load generator for flit, NATS and a TCP echo floor")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArguments,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// A raw TCP echo server: the floor every router is compared to.
    EchoServer(EchoServerArguments),
    /// Overlay the percentile curves of several runs (their --json files) in one SVG.
    Plot(PlotArguments),
}

#[derive(Debug, Args)]
pub struct EchoServerArguments {
    #[arg(long)]
    pub listen: std::net::SocketAddr,
    #[arg(long, value_enum, default_value_t = Idle::Park)]
    pub idle: Idle,
    /// Pin the server to this cpu.
    #[arg(long)]
    pub cpu: Option<usize>,
}

#[derive(Debug, Args)]
pub struct PlotArguments {
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long, default_value = crate::plot::TITLE_DEFAULT)]
    pub title: String,
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArguments {
    /// flit://IP:PORT, nats://IP:PORT or echo://IP:PORT.
    #[arg(long)]
    pub target: Option<String>,
    /// Where subscribers and responders connect (another node of the cluster; same scheme as --target).
    /// Publishers and requesters stay on --target. Default: --target.
    #[arg(long)]
    pub receiver_target: Option<String>,
    /// Wait this long after subscribing before the first send, so interest reaches the other nodes
    /// (default: 0, or 250ms with a --receiver-target other than --target).
    #[arg(long, value_parser = parse_duration)]
    pub settle: Option<Duration>,
    /// propagation: recorded iterations (default: as many as --duration allows).
    #[arg(long)]
    pub iterations: Option<u64>,
    /// propagation: microseconds between probes after the first (which goes out as the flush returns).
    #[arg(long, default_value_t = 50)]
    pub probe_interval_us: u64,
    /// propagation: how long an iteration waits for a probe to arrive before counting a timeout.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub probe_timeout: Duration,
    #[arg(long, value_enum)]
    pub scenario: Option<ScenarioKind>,
    /// Messages per second over all senders (open loop); 0: closed loop, as fast as the window allows.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// How long to wait after the run for messages in flight before counting them lost.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Payload size in bytes (at least 24: timestamp, sequence, sender).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Closed loop: messages in flight per sender (default: 1 for reqrep and conns, 1024 otherwise).
    #[arg(long)]
    pub window: Option<usize>,
    #[arg(long, default_value_t = 1)]
    pub requesters: usize,
    #[arg(long, default_value_t = 1)]
    pub responders: usize,
    /// Responders form one queue group (each request answered once).
    #[arg(long)]
    pub queue_responders: bool,
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// Idle connections held open (conns scenario).
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// How the load generator itself waits: park (poll blocks) or spin.
    #[arg(long, value_enum, default_value_t = Idle::Park)]
    pub idle: Idle,
    /// Pin the load generator to the first cpu of this list ("1", "1,3", "2-3").
    #[arg(long)]
    pub cpu: Option<String>,
    /// Report this process's CPU time and resident memory (the server's pid).
    #[arg(long)]
    pub server_pid: Option<u32>,
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// No progress line each second.
    #[arg(long)]
    pub quiet: bool,
    /// flit over TLS: trust this CA (PEM) for the server's certificate.
    #[arg(long = "tls-ca")]
    pub tls_ca: Option<PathBuf>,
    /// The name the server's certificate must carry.
    #[arg(long = "tls-server-name", default_value = "localhost")]
    pub tls_server_name: String,
    /// flit: the token sent in Hello (a server with an identities file needs one).
    #[arg(long)]
    pub token: Option<String>,
    #[command(flatten)]
    pub durable: DurableArguments,
}

/// The durable and replay scenarios (docs/BENCHMARKS.md, "Durable streams").
#[derive(Debug, Args)]
pub struct DurableArguments {
    /// durable: acknowledged publishes outstanding per publisher (1: one at a time).
    #[arg(long, default_value_t = 1)]
    pub in_flight: usize,
    /// durable: publisher connections.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// durable: the subject published to (a stream must capture it).
    #[arg(long, default_value = "durable.data")]
    pub subject: String,
    /// durable: publish exactly this many messages, then stop (fills a stream); replay: read this many.
    #[arg(long)]
    pub messages: Option<u64>,
    /// Create this stream first, capturing --subject (flit: with --durability; NATS: file storage, 1 replica).
    /// replay: the stream read.
    #[arg(long)]
    pub stream: Option<String>,
    /// With --stream on a flit target: create the stream (ignored for NATS, whose sync policy is the server's).
    #[arg(long)]
    pub create_stream: bool,
    /// replay, flit: messages per Fetch (0: 1,000).
    #[arg(long, default_value_t = 0)]
    pub fetch_batch: u32,
    /// replay, flit: Fetches outstanding at once (0: 8).
    #[arg(long, default_value_t = 0)]
    pub fetches: u64,
    /// flit stream durability for --create-stream: always, interval=10ms or memory.
    #[arg(long, default_value = "always")]
    pub durability: String,
}

/// Parses "500ms", "5s", "2m" or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(split) => text.split_at(split),
        None => (text, "s"),
    };
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a duration like 500ms, 5s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit in `{text}`: use ms, s or m")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

pub fn echo_server(arguments: EchoServerArguments) -> Result<()> {
    let idle = match arguments.idle {
        Idle::Park => crate::echo_server::EchoIdle::Park,
        Idle::Spin => crate::echo_server::EchoIdle::Spin,
    };
    crate::echo_server::run(arguments.listen, idle, arguments.cpu)
}

pub fn plot(arguments: PlotArguments) -> Result<()> {
    crate::plot::plot_from_json_files_titled(&arguments.reports, &arguments.title, &arguments.output)
}

pub fn run(arguments: RunArguments) -> Result<()> {
    let Some(url) = arguments.target.as_deref() else { bail!("--target is required (or a subcommand)") };
    let Some(scenario) = arguments.scenario else { bail!("--scenario is required") };
    let target = Target::parse(url, arguments.allow_remote)?;
    let receiver = Target::receiver(arguments.receiver_target.as_deref(), &target, arguments.allow_remote)?;
    let addresses = Addresses { sender: target.address, receiver: receiver.address };
    if let Some(list) = &arguments.cpu {
        system::pin_to(system::parse_cpu_list(list)?[0])?;
    }
    if matches!(scenario, ScenarioKind::Durable | ScenarioKind::Replay) {
        if addresses.split() {
            bail!("{} runs on one server: no --receiver-target", scenario.name());
        }
        return crate::cli_durable::run(&arguments, scenario, &target, url);
    }
    if scenario == ScenarioKind::Propagation {
        return propagation(&arguments, &target, addresses, url);
    }
    let open_files = system::raise_open_file_limit();
    let default_window = if matches!(scenario, ScenarioKind::Reqrep | ScenarioKind::Conns) { 1 } else { 1024 };
    let options = RunOptions {
        scenario,
        rate: arguments.rate,
        duration: arguments.duration,
        warmup: arguments.warmup,
        drain: arguments.drain,
        payload_bytes: arguments.payload,
        window: arguments.window.unwrap_or(default_window).max(1),
        idle: arguments.idle,
        requesters: arguments.requesters,
        responders: arguments.responders,
        queue_responders: arguments.queue_responders,
        subscribers: arguments.subscribers,
        connections: if scenario == ScenarioKind::Conns { arguments.connections } else { 0 },
        settle: settle(arguments.settle, addresses),
        progress: !arguments.quiet,
        tls: match &arguments.tls_ca {
            None => None,
            Some(ca_file) => Some(flit_client::TlsOptions::from_files(ca_file, None, &arguments.tls_server_name)?),
        },
    };
    if options.tls.is_some() && target.kind != crate::target::TargetKind::Flit {
        bail!("--tls-ca is for flit:// targets only");
    }
    let plan = options.plan(target.kind)?;
    if plan.roles.len() as u64 + 64 > open_files {
        bail!(
            "{} connections need more open files than the limit of {open_files}: raise `ulimit -n`",
            plan.roles.len()
        );
    }
    let rss_before = arguments.server_pid.map(system::process_rss_kib).transpose()?;
    let payload_bytes = options.payload_bytes;
    let token = arguments.token.clone();
    let engine = Engine::connect(addresses, plan, options.clone(), || target.protocol(payload_bytes, token.clone()))
        .with_context(|| format!("setting up {} against {url}", scenario.name()))?;
    let rss_after = arguments.server_pid.map(system::process_rss_kib).transpose()?;
    let cpu_before = arguments.server_pid.map(system::process_cpu_time).transpose()?;
    let started = Instant::now();
    let mut progress = |second: u64, sent: u64, received: u64| {
        eprintln!("[{second:>3}s] sent {sent:>12}  received {received:>12}");
    };
    let result = engine.run(if options.progress { Some(&mut progress) } else { None })?;
    let cpu_after = arguments.server_pid.map(system::process_cpu_time).transpose()?;
    let elapsed = started.elapsed();
    // CPU over the whole run (warm-up and drain included), scaled to the measured period.
    let server_cpu_s = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => {
            Some((after - before).as_secs_f64() * result.measured.as_secs_f64() / elapsed.as_secs_f64())
        }
        _ => None,
    };
    let measured_s = result.measured.as_secs_f64();
    let report = Report {
        scenario: scenario.name().to_owned(),
        target: url.to_owned(),
        payload_bytes,
        rate: options.rate,
        duration_s: measured_s,
        warmup_s: options.warmup.as_secs_f64(),
        sent: result.sent,
        received: result.received,
        lost: result.lost,
        errors: result.errors,
        throughput_msgs_per_s: result.received as f64 / measured_s,
        throughput_mb_per_s: result.received as f64 * payload_bytes as f64 / measured_s / 1e6,
        latency_us: report::latency_from_histogram(&result.histogram),
        percentiles: report::percentile_points(&result.histogram),
        connections: result.connections,
        idle: format!("{:?}", options.idle).to_lowercase(),
        server_cpu_s,
        server_rss_kib_before: rss_before,
        server_rss_kib_after: rss_after,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        receiver_target: receiver_url(&arguments, addresses),
        propagation: None,
    };
    write_report(&arguments, &report, &result.histogram)
}

/// The pause after subscribing: as given, else 250 ms across servers and none on one.
fn settle(given: Option<Duration>, addresses: Addresses) -> Duration {
    given.unwrap_or(if addresses.split() { SETTLE_ACROSS_NODES } else { Duration::ZERO })
}

/// Interest reaches the other nodes of a loopback cluster within about a
/// millisecond (see the propagation scenario); this is two orders more.
const SETTLE_ACROSS_NODES: Duration = Duration::from_millis(250);

/// `--receiver-target` for the report, when it names another server.
fn receiver_url(arguments: &RunArguments, addresses: Addresses) -> Option<String> {
    addresses.split().then(|| arguments.receiver_target.clone()).flatten()
}

/// The summary on stdout, and the JSON and `.hgrm` files asked for.
fn write_report(arguments: &RunArguments, report: &Report, histogram: &hdrhistogram::Histogram<u64>) -> Result<()> {
    println!("{}", report.summary_table());
    if let Some(path) = &arguments.json {
        report::write_json(report, path)?;
    }
    if let Some(path) = &arguments.hgrm {
        report::write_hgrm(histogram, path, 1000.0)?;
    }
    Ok(())
}

/// `--scenario propagation` (see `crate::propagation`): its result in the
/// common report, with its own counts under `propagation`.
fn propagation(arguments: &RunArguments, target: &Target, addresses: Addresses, url: &str) -> Result<()> {
    if arguments.tls_ca.is_some() || arguments.token.is_some() || target.kind == crate::target::TargetKind::Echo {
        bail!("propagation runs over plain TCP against flit:// or nats:// (no --tls-ca, no --token)");
    }
    let options = PropagationOptions {
        warmup: arguments.warmup,
        duration: arguments.duration,
        iterations: arguments.iterations,
        probe_interval: Duration::from_micros(arguments.probe_interval_us),
        timeout: arguments.probe_timeout,
        payload_bytes: arguments.payload,
        progress: !arguments.quiet,
    };
    let cpu_before = arguments.server_pid.map(system::process_cpu_time).transpose()?;
    let result = crate::propagation::run(addresses, || target.protocol(arguments.payload, None), &options)
        .with_context(|| format!("propagation against {url}"))?;
    let cpu_after = arguments.server_pid.map(system::process_cpu_time).transpose()?;
    let measured_s = result.measured.as_secs_f64().max(1e-9);
    let report = Report {
        scenario: ScenarioKind::Propagation.name().to_owned(),
        target: url.to_owned(),
        payload_bytes: arguments.payload,
        rate: 0,
        duration_s: measured_s,
        warmup_s: arguments.warmup.as_secs_f64(),
        sent: result.counts.iterations,
        received: result.arrived,
        lost: result.counts.first_publish_lost,
        errors: result.errors,
        throughput_msgs_per_s: result.counts.iterations as f64 / measured_s,
        throughput_mb_per_s: 0.0,
        latency_us: report::latency_from_histogram(&result.histogram),
        percentiles: report::percentile_points(&result.histogram),
        connections: 2,
        idle: "spin".to_owned(),
        // The server's CPU over the whole run, warm-up included.
        server_cpu_s: cpu_before.zip(cpu_after).map(|(before, after)| (after - before).as_secs_f64()),
        server_rss_kib_before: None,
        server_rss_kib_after: None,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        receiver_target: receiver_url(arguments, addresses),
        propagation: Some(result.counts),
    };
    write_report(arguments, &report, &result.histogram)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn settle_defaults_to_a_pause_only_across_servers() {
        let one: std::net::SocketAddr = "127.0.0.1:4224".parse().expect("address");
        let other: std::net::SocketAddr = "127.0.0.1:4225".parse().expect("address");
        assert_eq!(settle(None, Addresses::same(one)), Duration::ZERO);
        assert_eq!(settle(None, Addresses { sender: one, receiver: other }), SETTLE_ACROSS_NODES);
        assert_eq!(settle(Some(Duration::from_millis(5)), Addresses::same(one)), Duration::from_millis(5));
    }

    #[test]
    fn receiver_target_flags_parse() {
        let cli = Cli::try_parse_from([
            "flit-loadgen",
            "--target",
            "nats://127.0.0.1:4222",
            "--receiver-target",
            "nats://127.0.0.1:4322",
            "--scenario",
            "propagation",
            "--iterations",
            "100",
            "--probe-interval-us",
            "20",
        ])
        .expect("flags parse");
        assert_eq!(cli.run.receiver_target.as_deref(), Some("nats://127.0.0.1:4322"));
        assert_eq!(cli.run.scenario, Some(ScenarioKind::Propagation));
        assert_eq!((cli.run.iterations, cli.run.probe_interval_us), (Some(100), 20));
    }
}
