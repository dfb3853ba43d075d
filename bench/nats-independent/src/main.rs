//! A second measurement of nats-server, by a client that shares no code with
//! flit-loadgen: the official `async-nats` crate (its own parser, buffering and
//! flushing) on a tokio current-thread runtime. bench/compare.sh runs it next
//! to flit-loadgen's NATS runs, and bench/summarize.py counts a flit / NATS
//! ratio only where the two NATS figures agree within 10%.
//!
//! The scenarios are flit-loadgen's, with the same definitions:
//! - `pubsub`: one publisher connection, one subscriber connection, closed
//!   loop with at most `--window` messages in flight;
//! - `fanout`: one publisher, `--subscribers` K subscriber connections on the
//!   same subject, at most `--window` x K deliveries in flight;
//! - `reqrep`: one requester (`Client::request`, one at a time) and one
//!   responder connection; round-trip latency.
//! - `jspub`: JetStream publishes (a request to a subject a file-storage
//!   stream captures; the answer is its PubAck JSON, checked for `seq`), with
//!   `--window` of them in flight on one connection; acknowledged msg/s and
//!   publish-to-ack latency. Creates the stream `INDEPENDENT` first. The
//!   cross-check for flit-loadgen's `durable` scenario against JetStream.
//!
//! As in the load generator, a payload starts with a 24-byte stamp (send time
//! in ns since the run's start, sequence number, sender 0), messages sent in
//! the warm-up are not counted, and throughput is the deliveries of messages
//! sent in the measured period divided by its length. The client parks (tokio
//! cannot busy-poll); one clock reading per burst of sends and per burst of
//! receipts, as flit-loadgen reads it once per send burst and once per read.
//!
//! Usage: nats-independent --server 127.0.0.1:4222 --scenario pubsub|fanout|reqrep|jspub
//!        [--subscribers K] [--window N] [--payload BYTES] [--duration 5s]
//!        [--warmup 1s] [--drain 2s] [--json PATH]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use tokio::sync::Notify;

const DATA_SUBJECT: &str = "independent.data";
const REQUEST_SUBJECT: &str = "independent.request";
const STAMP_BYTES: usize = 24;
/// Kept equal to Cargo.lock's by hand; printed in every report.
const ASYNC_NATS_VERSION: &str = "0.51.0";
/// Receipts taken off a subscription per clock reading, at most.
const RECEIPT_BURST: usize = 1024;
/// Commands (publishes) async-nats queues for its connection task.
const CLIENT_CAPACITY: usize = 16 * 1024;
/// Deliveries async-nats queues per subscription.
const SUBSCRIPTION_CAPACITY: usize = 256 * 1024;
/// Payloads are cut from buffers of this many messages: one allocation per chunk, not per message.
const PAYLOAD_CHUNK_MESSAGES: usize = 1024;

type Error = Box<dyn std::error::Error>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Pubsub,
    Fanout,
    Reqrep,
    JetStreamPublish,
}

struct Options {
    server: String,
    scenario: Scenario,
    subscribers: usize,
    window: usize,
    payload: usize,
    duration: Duration,
    warmup: Duration,
    drain: Duration,
    json: Option<String>,
}

fn parse_duration(text: &str) -> Result<Duration, Error> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1.0)
    };
    Ok(Duration::from_secs_f64(number.parse::<f64>()? * scale))
}

fn parse_options() -> Result<Options, Error> {
    let mut options = Options {
        server: "127.0.0.1:4222".into(),
        scenario: Scenario::Pubsub,
        subscribers: 1,
        window: 0,
        payload: 64,
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        drain: Duration::from_secs(2),
        json: None,
    };
    let mut arguments = std::env::args().skip(1);
    while let Some(flag) = arguments.next() {
        let mut value = || arguments.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--server" => options.server = value()?,
            "--scenario" => {
                options.scenario = match value()?.as_str() {
                    "pubsub" => Scenario::Pubsub,
                    "fanout" => Scenario::Fanout,
                    "reqrep" => Scenario::Reqrep,
                    "jspub" => Scenario::JetStreamPublish,
                    other => return Err(format!("unknown scenario {other:?} (pubsub, fanout, reqrep, jspub)").into()),
                }
            }
            "--subscribers" => options.subscribers = value()?.parse()?,
            "--window" => options.window = value()?.parse()?,
            "--payload" => options.payload = value()?.parse()?,
            "--duration" => options.duration = parse_duration(&value()?)?,
            "--warmup" => options.warmup = parse_duration(&value()?)?,
            "--drain" => options.drain = parse_duration(&value()?)?,
            "--json" => options.json = Some(value()?),
            "-h" | "--help" => {
                println!("{}", include_str!("main.rs").lines().find(|l| l.contains("Usage:")).unwrap_or(""));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if options.payload < STAMP_BYTES {
        return Err(format!("--payload must be at least {STAMP_BYTES}").into());
    }
    if options.scenario != Scenario::Fanout {
        options.subscribers = 1;
    }
    if options.window == 0 {
        // flit-loadgen's defaults: 1 for reqrep, 1024 otherwise (256 for jspub).
        options.window = match options.scenario {
            Scenario::Reqrep => 1,
            Scenario::JetStreamPublish => 256,
            _ => 1024,
        };
    }
    Ok(options)
}

/// What the publisher and the subscriber tasks share (one thread: plain cells).
struct Shared {
    epoch: Instant,
    /// Deliveries received, measured or not: the closed loop's window.
    received_total: Cell<u64>,
    /// Deliveries of messages sent in the measured period.
    received_measured: Cell<u64>,
    histogram: RefCell<Histogram<u64>>,
    warmup_end_ns: u64,
    measure_end_ns: u64,
    publisher_waiting: Cell<bool>,
    wake_publisher: Notify,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

struct Outcome {
    sent: u64,
    received: u64,
    histogram: Histogram<u64>,
    connections: usize,
    /// CPU seconds this process used during the measured period: near the
    /// period's length, the client itself was the bottleneck.
    client_cpu_s: Option<f64>,
}

/// CPU time (user + system) of this process so far, from /proc/self/stat (10 ms ticks).
fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn field(payload: &[u8], index: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&payload[index * 8..index * 8 + 8]);
    u64::from_le_bytes(bytes)
}

/// async-nats with what its documentation offers for throughput: no subject
/// validation on publish (the subjects are constants), and room for more
/// commands and deliveries in its channels than the defaults (2,048 / 65,536).
async fn connect(server: &str) -> Result<async_nats::Client, Error> {
    Ok(async_nats::ConnectOptions::new()
        .name("nats-independent")
        .skip_subject_validation(true)
        .client_capacity(CLIENT_CAPACITY)
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .connect(server)
        .await?)
}

async fn run_pubsub(options: &Options) -> Result<Outcome, Error> {
    let copies = options.subscribers as u64;
    let mut subscriptions = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..options.subscribers {
        let client = connect(&options.server).await?;
        subscriptions.push(client.subscribe(DATA_SUBJECT).await?);
        // The subscription is at the server once a flush (PING/PONG) returns.
        client.flush().await?;
        clients.push(client);
    }
    let publisher = connect(&options.server).await?;
    let warmup_end_ns = options.warmup.as_nanos() as u64;
    let shared = Rc::new(Shared {
        epoch: Instant::now(),
        received_total: Cell::new(0),
        received_measured: Cell::new(0),
        histogram: RefCell::new(Histogram::new_with_bounds(1, 60_000_000_000, 3)?),
        warmup_end_ns,
        measure_end_ns: warmup_end_ns + options.duration.as_nanos() as u64,
        publisher_waiting: Cell::new(false),
        wake_publisher: Notify::new(),
    });
    let mut receivers = Vec::new();
    for subscription in subscriptions {
        let shared = shared.clone();
        receivers.push(tokio::task::spawn_local(async move {
            let mut bursts = subscription.ready_chunks(RECEIPT_BURST);
            while let Some(messages) = bursts.next().await {
                let now = shared.now_ns();
                let mut histogram = shared.histogram.borrow_mut();
                for message in &messages {
                    let intended = field(&message.payload, 0);
                    if intended >= shared.warmup_end_ns && intended < shared.measure_end_ns {
                        shared.received_measured.set(shared.received_measured.get() + 1);
                        histogram.saturating_record(now.saturating_sub(intended).max(1));
                    }
                }
                shared.received_total.set(shared.received_total.get() + messages.len() as u64);
                if shared.publisher_waiting.get() {
                    shared.wake_publisher.notify_one();
                }
            }
        }));
    }
    let window = options.window as u64 * copies;
    let mut payload = vec![0u8; options.payload];
    let mut chunk = BytesMut::new();
    let subject = async_nats::Subject::from_static(DATA_SUBJECT);
    // If the last deliveries never come, the publisher is woken at the end all the same.
    let watchdog = {
        let shared = shared.clone();
        tokio::task::spawn_local(async move {
            let end = Duration::from_nanos(shared.measure_end_ns);
            tokio::time::sleep(end.saturating_sub(shared.epoch.elapsed())).await;
            loop {
                shared.wake_publisher.notify_one();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut sent_total: u64 = 0;
    let mut sent_measured: u64 = 0;
    let mut cpu_start = None;
    loop {
        let now = shared.now_ns();
        if now >= shared.measure_end_ns {
            break;
        }
        if cpu_start.is_none() && now >= shared.warmup_end_ns {
            cpu_start = process_cpu_s();
        }
        let in_flight = sent_total * copies - shared.received_total.get();
        let allowed = window.saturating_sub(in_flight) / copies;
        if allowed == 0 {
            shared.publisher_waiting.set(true);
            shared.wake_publisher.notified().await;
            shared.publisher_waiting.set(false);
            continue;
        }
        for _ in 0..allowed {
            payload[0..8].copy_from_slice(&now.to_le_bytes());
            payload[8..16].copy_from_slice(&sent_total.to_le_bytes());
            if chunk.capacity() < payload.len() {
                chunk = BytesMut::with_capacity(payload.len() * PAYLOAD_CHUNK_MESSAGES);
            }
            chunk.put_slice(&payload);
            publisher.publish(subject.clone(), chunk.split().freeze()).await?;
            sent_total += 1;
            if now >= shared.warmup_end_ns {
                sent_measured += 1;
            }
        }
    }
    let client_cpu_s = cpu_start.zip(process_cpu_s()).map(|(start, end)| end - start);
    publisher.flush().await?;
    let expected = sent_measured * copies;
    let drain_end = Instant::now() + options.drain;
    while shared.received_measured.get() < expected && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    watchdog.abort();
    for receiver in &receivers {
        receiver.abort();
    }
    let histogram = shared.histogram.borrow().clone();
    Ok(Outcome {
        sent: sent_measured,
        received: shared.received_measured.get(),
        histogram,
        connections: options.subscribers + 1,
        client_cpu_s,
    })
}

/// The subject the `jspub` stream captures, and the stream's name.
const JETSTREAM_SUBJECT: &str = "independent.durable";
const JETSTREAM_STREAM: &str = "INDEPENDENT";

async fn run_jetstream_publish(options: &Options) -> Result<Outcome, Error> {
    use futures_util::stream::FuturesUnordered;
    let client = connect(&options.server).await?;
    let create = serde_json::json!({
        "name": JETSTREAM_STREAM, "subjects": [JETSTREAM_SUBJECT], "storage": "file", "num_replicas": 1,
    });
    let created = client
        .request(format!("$JS.API.STREAM.CREATE.{JETSTREAM_STREAM}"), create.to_string().into())
        .await?;
    let answer: serde_json::Value = serde_json::from_slice(&created.payload)?;
    if answer.get("error").is_some() && answer["error"]["err_code"] != 10058 {
        // 10058: the stream exists already (same config): fine.
        return Err(format!("stream create failed: {answer}").into());
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let epoch = Instant::now();
    let (warmup_end, measure_end) = (options.warmup, options.warmup + options.duration);
    let payload = Bytes::from(vec![7u8; options.payload]);
    let subject = async_nats::Subject::from_static(JETSTREAM_SUBJECT);
    let (mut sent, mut received, mut refused) = (0u64, 0u64, 0u64);
    let mut cpu_start = None;
    let mut in_flight = FuturesUnordered::new();
    loop {
        let since = epoch.elapsed();
        if cpu_start.is_none() && since >= warmup_end {
            cpu_start = process_cpu_s();
        }
        while since < measure_end && in_flight.len() < options.window {
            let started = Instant::now();
            let measured = started - epoch >= warmup_end;
            sent += u64::from(measured);
            let request = client.request(subject.clone(), payload.clone());
            in_flight.push(async move { (request.await, started, measured) });
        }
        let Some((reply, started, measured)) = in_flight.next().await else { break };
        let acknowledged = reply.ok().is_some_and(|reply| {
            serde_json::from_slice::<serde_json::Value>(&reply.payload).is_ok_and(|ack| ack.get("seq").is_some())
        });
        if measured {
            if acknowledged {
                received += 1;
                histogram.saturating_record((started.elapsed().as_nanos() as u64).max(1));
            } else {
                refused += 1;
            }
        }
    }
    let client_cpu_s = cpu_start.zip(process_cpu_s()).map(|(start, end)| end - start);
    if refused > 0 {
        eprintln!("nats-independent jspub: {refused} publishes not acknowledged");
    }
    Ok(Outcome { sent, received, histogram, connections: 1, client_cpu_s })
}

async fn run_reqrep(options: &Options) -> Result<Outcome, Error> {
    let responder = connect(&options.server).await?;
    let mut requests = responder.subscribe(REQUEST_SUBJECT).await?;
    responder.flush().await?;
    let answering = responder.clone();
    let serving = tokio::task::spawn_local(async move {
        while let Some(request) = requests.next().await {
            if let Some(reply) = request.reply {
                if answering.publish(reply, request.payload).await.is_err() {
                    break;
                }
            }
        }
    });
    let requester = connect(&options.server).await?;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let epoch = Instant::now();
    let warmup_end = options.warmup;
    let measure_end = options.warmup + options.duration;
    let mut payload = vec![0u8; options.payload];
    let (mut sent, mut received) = (0u64, 0u64);
    let mut sequence = 0u64;
    let mut cpu_start = None;
    let subject = async_nats::Subject::from_static(REQUEST_SUBJECT);
    loop {
        let started = Instant::now();
        let since = started - epoch;
        if since >= measure_end {
            break;
        }
        if cpu_start.is_none() && since >= warmup_end {
            cpu_start = process_cpu_s();
        }
        payload[0..8].copy_from_slice(&(since.as_nanos() as u64).to_le_bytes());
        payload[8..16].copy_from_slice(&sequence.to_le_bytes());
        sequence += 1;
        let measured = since >= warmup_end;
        sent += u64::from(measured);
        let reply = requester.request(subject.clone(), Bytes::copy_from_slice(&payload)).await;
        let elapsed = started.elapsed();
        if reply.is_ok() && measured {
            received += 1;
            histogram.saturating_record((elapsed.as_nanos() as u64).max(1));
        }
    }
    let client_cpu_s = cpu_start.zip(process_cpu_s()).map(|(start, end)| end - start);
    serving.abort();
    Ok(Outcome { sent, received, histogram, connections: 2, client_cpu_s })
}

/// The report in flit-loadgen's JSON schema (docs/BENCHMARKS.md), so that
/// bench/summarize.py and `flit-loadgen plot` read it, plus `client_cpu_s`.
fn report(options: &Options, outcome: &Outcome) -> serde_json::Value {
    let histogram = &outcome.histogram;
    let micros = |nanos: u64| nanos as f64 / 1000.0;
    let at = |quantile: f64| micros(histogram.highest_equivalent(histogram.value_at_quantile(quantile)));
    let (max, mean) =
        if histogram.is_empty() { (0.0, 0.0) } else { (micros(histogram.max()), histogram.mean() / 1000.0) };
    let percentiles: Vec<(f64, f64)> = if histogram.is_empty() {
        Vec::new()
    } else {
        histogram
            .iter_quantiles(5)
            .map(|step| (step.quantile_iterated_to() * 100.0, micros(step.value_iterated_to())))
            .chain(std::iter::once((100.0, max)))
            .collect()
    };
    let seconds = options.duration.as_secs_f64();
    let scenario = match options.scenario {
        Scenario::Pubsub => "pubsub",
        Scenario::Fanout => "fanout",
        Scenario::Reqrep => "reqrep",
        Scenario::JetStreamPublish => "jspub",
    };
    let one_each = matches!(options.scenario, Scenario::Reqrep | Scenario::JetStreamPublish);
    let expected = outcome.sent * if one_each { 1 } else { options.subscribers as u64 };
    serde_json::json!({
        "scenario": scenario,
        "target": format!("nats://{} (async-nats)", options.server),
        "client": format!("async-nats {ASYNC_NATS_VERSION} (bench/nats-independent)"),
        "payload_bytes": options.payload,
        "rate": 0,
        "window": options.window,
        "duration_s": seconds,
        "warmup_s": options.warmup.as_secs_f64(),
        "sent": outcome.sent,
        "received": outcome.received,
        "lost": expected.saturating_sub(outcome.received),
        "errors": 0,
        "throughput_msgs_per_s": outcome.received as f64 / seconds,
        "throughput_mb_per_s": outcome.received as f64 * options.payload as f64 / seconds / 1e6,
        "latency_us": {
            "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p999": at(0.999), "p9999": at(0.9999),
            "max": max, "mean": mean, "count": histogram.len(),
        },
        "percentiles": percentiles,
        "connections": outcome.connections,
        "idle": "park",
        "server_cpu_s": null,
        "server_rss_kib_before": null,
        "server_rss_kib_after": null,
        "client_cpu_s": outcome.client_cpu_s,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
    })
}

fn main() -> Result<(), Error> {
    let options = parse_options()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    let outcome = local.block_on(&runtime, async {
        match options.scenario {
            Scenario::Pubsub | Scenario::Fanout => run_pubsub(&options).await,
            Scenario::Reqrep => run_reqrep(&options).await,
            Scenario::JetStreamPublish => run_jetstream_publish(&options).await,
        }
    })?;
    let report = report(&options, &outcome);
    let latency = &report["latency_us"];
    println!(
        "nats-independent {} {} window {} payload {} B: sent {} received {} lost {} | {:.0} msg/s | \
         latency us p50 {} p90 {} p99 {} p99.9 {} max {} | client cpu s {}",
        report["scenario"].as_str().unwrap_or("?"),
        report["target"].as_str().unwrap_or("?"),
        options.window,
        options.payload,
        report["sent"],
        report["received"],
        report["lost"],
        report["throughput_msgs_per_s"].as_f64().unwrap_or(0.0),
        latency["p50"],
        latency["p90"],
        latency["p99"],
        latency["p999"],
        latency["max"],
        report["client_cpu_s"],
    );
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
    }
    Ok(())
}
