//! `--scenario durable` and `--scenario replay`: flags to a [`crate::durable`]
//! run, and its counts to the same [`Report`] (summary, JSON, `.hgrm`) as
//! every other scenario. In the report, `sent` is publishes, `received`
//! acknowledged (stored) ones or messages replayed, `errors` refusals and
//! `lost` publishes never acknowledged.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;

use crate::cli::RunArguments;
use crate::durable::{self, DurableOptions, DurableResult};
use crate::report::{self, Report};
use crate::scenario::ScenarioKind;
use crate::system;
use crate::target::{Target, TargetKind};

pub fn run(arguments: &RunArguments, scenario: ScenarioKind, target: &Target, url: &str) -> Result<()> {
    let flags = &arguments.durable;
    if arguments.tls_ca.is_some() || arguments.token.is_some() {
        bail!("the durable scenarios do not take --tls-ca or --token");
    }
    if let (Some(stream), true) = (&flags.stream, flags.create_stream || target.kind == TargetKind::Nats) {
        if scenario == ScenarioKind::Durable {
            durable::create_stream(target.address, target.kind, stream, &flags.subject, &flags.durability)
                .with_context(|| format!("creating stream {stream}"))?;
        }
    }
    let cpu_before = arguments.server_pid.map(system::process_cpu_time).transpose()?;
    let result = match scenario {
        ScenarioKind::Durable => {
            let options = DurableOptions {
                subject: flags.subject.clone(),
                publishers: flags.publishers,
                in_flight: flags.in_flight,
                payload_bytes: arguments.payload,
                duration: arguments.duration,
                warmup: arguments.warmup,
                drain: arguments.drain,
                messages: flags.messages,
                idle: arguments.idle,
                progress: !arguments.quiet,
            };
            durable::run(target.address, target.kind, &options)?
        }
        _ => {
            let Some(stream) = &flags.stream else { bail!("replay needs --stream NAME") };
            let Some(messages) = flags.messages else { bail!("replay needs --messages N") };
            let (read, elapsed) =
                durable::replay(target.address, target.kind, stream, messages, (flags.fetch_batch, flags.fetches))?;
            DurableResult {
                histogram: Histogram::new(3).expect("a histogram"),
                sent: 0,
                acknowledged: read,
                refused: 0,
                lost: 0,
                measured: elapsed.max(Duration::from_nanos(1)),
                connections: 1,
                first_refusal: None,
            }
        }
    };
    let cpu_after = arguments.server_pid.map(system::process_cpu_time).transpose()?;
    if let Some(reason) = &result.first_refusal {
        eprintln!("flit-loadgen: {} publishes refused; the first: {reason}", result.refused);
    }
    let measured_s = result.measured.as_secs_f64();
    let report = Report {
        scenario: scenario.name().to_owned(),
        target: url.to_owned(),
        payload_bytes: arguments.payload,
        rate: 0,
        duration_s: measured_s,
        warmup_s: if flags.messages.is_some() { 0.0 } else { arguments.warmup.as_secs_f64() },
        sent: result.sent,
        received: result.acknowledged,
        lost: result.lost,
        errors: result.refused,
        throughput_msgs_per_s: result.acknowledged as f64 / measured_s,
        throughput_mb_per_s: result.acknowledged as f64 * arguments.payload as f64 / measured_s / 1e6,
        latency_us: report::latency_from_histogram(&result.histogram),
        percentiles: report::percentile_points(&result.histogram),
        connections: result.connections,
        idle: format!("{:?}", arguments.idle).to_lowercase(),
        // The server's CPU over the whole run, warm-up and drain included.
        server_cpu_s: cpu_before.zip(cpu_after).map(|(before, after)| (after - before).as_secs_f64()),
        server_rss_kib_before: None,
        server_rss_kib_after: arguments.server_pid.map(system::process_rss_kib).transpose()?,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        receiver_target: None,
        propagation: None,
    };
    println!("{}", report.summary_table());
    if let Some(path) = &arguments.json {
        report::write_json(&report, path)?;
    }
    if let Some(path) = &arguments.hgrm {
        report::write_hgrm(&result.histogram, path, 1000.0)?;
    }
    Ok(())
}
