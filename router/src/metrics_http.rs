//! The metrics listener (`--metrics ADDR`): `/metrics` in the Prometheus text
//! format, `/healthz` (the process answers) and `/readyz` (every shard runs
//! and accepts, and the server is not draining).
//!
//! It runs on one plain thread of its own, not pinned, so it competes with
//! no shard for a core it owns. A scrape reads each shard's single-writer
//! atomics (see `flit_shard::metrics`); it sends nothing to the shards and
//! takes no lock they take, so the message path cannot notice it beyond the
//! cache lines it reads. The format itself is written by `prometheus-client`.
//!
//! Bounded work: one request at a time, a request head of at most
//! `REQUEST_HEAD_BYTES_MAX`, `REQUEST_TIMEOUT` to send it, one response, then
//! the connection is closed. This is an operator's endpoint for Prometheus
//! and health checkers, not a general web server; keep it off public networks.
//!
//! Shutdown: the thread lives as long as the process; `/readyz` turns 503 as
//! soon as a drain begins, so load balancers stop sending before the close.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flit_shard::metrics::LATENCY_BUCKET_BOUNDS_NANOS;
use flit_shard::ShardMetrics;
use flit_wire::ErrorCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Largest request head read from a scraper.
pub const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// How long a scraper has to send its request and take the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the endpoint reports on.
#[derive(Debug)]
pub struct Observed {
    pub shards: Vec<Arc<ShardMetrics>>,
    pub connections_per_shard_max: u64,
    /// Set when SIGTERM/SIGINT arrived.
    pub draining: Arc<AtomicBool>,
    /// The shards' clock zero.
    pub epoch: Instant,
    /// Busy and idle seconds last reported per shard: reads can race a
    /// shard's change of stretch, and a counter must never go down.
    pub busy_idle_reported: Mutex<Vec<(u64, u64)>>,
}

impl Observed {
    /// Each shard's busy and idle nanoseconds, never below what was reported before.
    fn busy_and_idle(&self) -> Vec<(u64, u64)> {
        let now_nanos = self.epoch.elapsed().as_nanos() as u64;
        let mut reported = self.busy_idle_reported.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        reported.resize(self.shards.len(), (0, 0));
        for (shard, last) in self.shards.iter().zip(reported.iter_mut()) {
            let (busy, idle) = shard.busy_and_idle_nanoseconds(now_nanos);
            *last = (last.0.max(busy), last.1.max(idle));
        }
        reported.clone()
    }

    /// Every shard runs and accepts, and no drain has begun.
    pub fn ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
            && self.shards.iter().all(|shard| shard.up.get() == 1 && shard.accepting.get() == 1)
    }
}

/// Binds the listener before any shard starts, so a taken port is a
/// startup error that leaves nothing running.
pub fn bind(address: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(address).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "metrics address {address} is already in use; pick another with --metrics or stop the other process"
            )
        } else {
            format!("cannot listen for metrics on {address}: {error}")
        }
    })
}

/// Serves on a thread of its own, pinned to `core` when one is given (a
/// core no shard uses); returns the bound address.
pub fn serve(
    listener: TcpListener,
    observed: Observed,
    core: Option<core_affinity::CoreId>,
) -> Result<SocketAddr, String> {
    let local = listener.local_addr().map_err(|error| format!("metrics listener: {error}"))?;
    let observed = Arc::new(observed);
    let mut registry = Registry::default();
    registry.register_collector(Box::new(FlitCollector(observed.clone())));
    std::thread::Builder::new()
        .name("flit-metrics".to_string())
        .spawn(move || {
            if let Some(core) = core {
                core_affinity::set_for_current(core);
            }
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        if let Err(error) = serve_one(stream, &registry, &observed) {
                            tracing::debug!(%error, "metrics request failed");
                        }
                    }
                    Err(error) => {
                        // EMFILE and the like: pause instead of spinning.
                        tracing::warn!(%error, "metrics listener accept failed");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map_err(|error| format!("cannot start the metrics thread: {error}"))?;
    Ok(local)
}

fn serve_one(mut stream: TcpStream, registry: &Registry, observed: &Observed) -> std::io::Result<()> {
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        if head.len() >= REQUEST_HEAD_BYTES_MAX {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request head too large\n",
            );
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    let request_line = head.split(|byte| *byte == b'\n').next().unwrap_or_default();
    let request_line = String::from_utf8_lossy(request_line);
    let mut words = request_line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method != "GET" {
        return respond(&mut stream, "405 Method Not Allowed", "text/plain", "only GET\n");
    }
    match path.split('?').next().unwrap_or("") {
        "/metrics" => {
            let mut body = String::with_capacity(16 * 1024);
            match prometheus_client::encoding::prometheus_text::encode(&mut body, registry) {
                Ok(()) => {
                    let content_type = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
                    respond(&mut stream, "200 OK", content_type, &body)
                }
                Err(_) => respond(&mut stream, "500 Internal Server Error", "text/plain", "encoding failed\n"),
            }
        }
        "/healthz" => respond(&mut stream, "200 OK", "text/plain", "ok\n"),
        "/readyz" if observed.ready() => respond(&mut stream, "200 OK", "text/plain", "ready\n"),
        "/readyz" => respond(&mut stream, "503 Service Unavailable", "text/plain", "not ready\n"),
        _ => respond(&mut stream, "404 Not Found", "text/plain", "try /metrics, /healthz or /readyz\n"),
    }
}

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// Reads the shards' atomics on each scrape.
#[derive(Debug)]
struct FlitCollector(Arc<Observed>);

type ShardLabel = [(&'static str, String); 1];

/// One metric family with a value per shard.
fn per_shard<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    shards: &[Arc<ShardMetrics>],
    value: impl Fn(&ShardMetrics) -> M,
) -> Result<(), std::fmt::Error> {
    let values: Vec<M> = shards.iter().map(|metrics| value(metrics)).collect();
    per_shard_values(encoder, name, help, metric_type, &values)
}

/// One metric family from values indexed by shard.
fn per_shard_values<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    values: &[M],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (shard, value) in values.iter().enumerate() {
        let labels: ShardLabel = [("shard", shard.to_string())];
        value.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(value: u64) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
}

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// (name, help, how to read it from a shard): gauges as they are named,
/// counters without the `_total` the encoder appends.
type CounterField = (&'static str, &'static str, fn(&ShardMetrics) -> u64);

const COUNTERS: &[CounterField] = &[
    ("flit_shard_connections_accepted", "Connections accepted.", |m| m.connections_accepted.get()),
    ("flit_shard_connections_refused", "Connections refused at the connection limit.", |m| m.connections_refused.get()),
    ("flit_shard_connections_closed", "Connections closed, for any reason.", |m| m.connections_closed.get()),
    ("flit_shard_messages_in", "Messages published by this shard's clients.", |m| m.messages_in.get()),
    ("flit_shard_bytes_in", "Bytes read from clients.", |m| m.bytes_in.get()),
    ("flit_shard_deliveries", "Messages written to subscribers (messages out).", |m| m.deliveries.get()),
    ("flit_shard_bytes_out", "Bytes written to clients.", |m| m.bytes_out.get()),
    ("flit_shard_mesh_messages_sent", "Messages sent to other shards.", |m| m.mesh_messages_sent.get()),
    ("flit_shard_mesh_messages_received", "Messages received from other shards.", |m| m.mesh_messages_received.get()),
    ("flit_shard_mesh_queue_full", "Times a cross-shard queue was full (reads paused).", |m| {
        m.mesh_queue_full_events.get()
    }),
    ("flit_shard_slow_consumer_evictions", "Connections evicted for passing pending_bytes_max.", |m| {
        m.slow_consumer_evictions.get()
    }),
    ("flit_shard_no_responders", "Requests answered with status 503 (no responders).", |m| m.no_responders.get()),
    ("flit_shard_queue_group_misses", "Queue-group picks whose member had left.", |m| m.queue_group_misses.get()),
    ("flit_shard_protocol_errors", "Connections closed for a protocol error.", |m| m.protocol_errors.get()),
    ("flit_shard_accept_errors", "Failed accepts (EMFILE, ENFILE, ENOBUFS).", |m| m.accept_errors.get()),
    ("flit_shard_mesh_messages_to_dead_shards", "Messages dropped because their shard had died.", |m| {
        m.mesh_messages_to_dead_shards.get()
    }),
    ("flit_shard_rate_limit_rejections", "Publishes over a rate limit, dropped (policy reject).", |m| {
        m.rate_limit_rejections.get()
    }),
    ("flit_shard_rate_limit_pauses", "Publishes over a rate limit that paused reading (policy slow_down).", |m| {
        m.rate_limit_pauses.get()
    }),
    ("flit_shard_tls_failures", "TLS connections closed by a TLS error (not TLS, refused certificate).", |m| {
        m.tls_failures.get()
    }),
];

impl Collector for FlitCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let observed = &self.0;
        let shards = &observed.shards;
        let build = encoder.encode_descriptor("flit_build", "flit version.", None, MetricType::Info)?;
        let version: [(&str, &str); 1] = [("version", env!("CARGO_PKG_VERSION"))];
        prometheus_client::metrics::info::Info::new(version).encode(build)?;
        let draining = u64::from(observed.draining.load(Ordering::Relaxed));
        let family = encoder.encode_descriptor("flit_draining", "1 while draining.", None, MetricType::Gauge)?;
        gauge(draining).encode(family)?;
        let gauges: [CounterField; 5] = [
            ("flit_shard_up", "1 while the shard's loop runs.", |m| m.up.get()),
            ("flit_shard_accepting", "1 while the shard accepts connections.", |m| m.accepting.get()),
            ("flit_shard_connections", "Open connections.", |m| m.connections.get()),
            ("flit_shard_subscriptions", "Subscriptions held.", |m| m.subscriptions.get()),
            ("flit_shard_pending_bytes", "Outbound bytes queued for clients.", |m| m.pending_bytes.get()),
        ];
        for (name, help, read) in gauges {
            per_shard(&mut encoder, name, help, MetricType::Gauge, shards, |m| gauge(read(m)))?;
        }
        let limit = observed.connections_per_shard_max;
        per_shard(
            &mut encoder,
            "flit_shard_connections_max",
            "Connections the shard may hold.",
            MetricType::Gauge,
            shards,
            |_| gauge(limit),
        )?;
        for (name, help, read) in COUNTERS {
            per_shard(&mut encoder, name, help, MetricType::Counter, shards, |m| ConstCounter::new(read(m)))?;
        }
        let busy_idle = observed.busy_and_idle();
        let busy: Vec<_> = busy_idle.iter().map(|(busy, _)| ConstCounter::new(seconds(*busy))).collect();
        let idle: Vec<_> = busy_idle.iter().map(|(_, idle)| ConstCounter::new(seconds(*idle))).collect();
        let busy_help = "Time the shard's loop spent doing work.";
        per_shard_values(&mut encoder, "flit_shard_busy_seconds", busy_help, MetricType::Counter, &busy)?;
        let idle_help = "Time the shard's loop spent spinning or parked with nothing to do.";
        per_shard_values(&mut encoder, "flit_shard_idle_seconds", idle_help, MetricType::Counter, &idle)?;
        let mut errors = encoder.encode_descriptor(
            "flit_shard_errors",
            "Error frames sent to clients, by code.",
            None,
            MetricType::Counter,
        )?;
        for (shard, metrics) in shards.iter().enumerate() {
            for (index, code) in ErrorCode::ALL.iter().enumerate() {
                let labels = [("shard", shard.to_string()), ("code", code.name().to_string())];
                ConstCounter::new(metrics.errors_by_code[index].get()).encode(errors.encode_family(&labels)?)?;
            }
        }
        let mut latency = encoder.encode_descriptor(
            "flit_in_router_latency_seconds",
            "From the read that brought a message in to the send that wrote it out (upper bound per message).",
            None,
            MetricType::Histogram,
        )?;
        for (shard, metrics) in shards.iter().enumerate() {
            let histogram = &metrics.in_router_latency;
            let counts = histogram.bucket_counts();
            let bounds = LATENCY_BUCKET_BOUNDS_NANOS.iter().map(|bound| seconds(*bound)).chain([f64::INFINITY]);
            let buckets: Vec<(f64, u64)> = bounds.zip(counts).collect();
            let labels: ShardLabel = [("shard", shard.to_string())];
            let family = latency.encode_family(&labels)?;
            HistogramSnapshot { sum: seconds(histogram.sum_nanos()), count: histogram.count(), buckets }
                .encode(family)?;
        }
        Ok(())
    }
}

/// A histogram's values as read at one scrape.
#[derive(Debug)]
struct HistogramSnapshot {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl EncodeMetric for HistogramSnapshot {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}
