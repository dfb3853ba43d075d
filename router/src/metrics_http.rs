//! The metrics listener (`--metrics ADDR`): `/metrics` in the Prometheus text
//! format, `/healthz` (the process answers; NATS's JSON `{"status":"ok"}`),
//! `/readyz` (every shard runs and accepts, and the server is not draining),
//! and NATS's monitoring endpoints `/varz`, `/connz` and `/subsz`
//! (`nats_monitoring`).
//!
//! Threads: one accept thread, and one short-lived thread per connection,
//! all pinned to the spare core `serve` is given (one no shard uses) when
//! there is one, floating otherwise. Connections are served concurrently
//! because the endpoint's callers include liveness probes: served one at a
//! time, a single client sending a header line a second held every probe
//! off, and a healthy router got restarted. This is not the message path,
//! so a thread per connection (bounded below) is simpler than an event loop
//! and costs nothing that matters. A scrape reads each shard's single-writer
//! atomics (see `flit_shard::metrics`); it sends nothing to the shards and
//! takes no lock they take, so the message path cannot notice it beyond the
//! cache lines it reads. The format itself is written by `prometheus-client`.
//!
//! Invariants (every limit is a named constant below):
//! - at most `CONNECTIONS_MAX` connections are being served at once; the
//!   accept thread answers one past that with a 503 at once and closes it,
//!   without waiting for its request, so the cap cannot stall accepting;
//! - a connection lives at most `REQUEST_DEADLINE_MS` from accept to close.
//!   The deadline is fixed at accept and every read and write is given only
//!   the time left, so a client cannot stretch it by sending a byte at a
//!   time (a per-read timeout would restart with every byte);
//! - a request head is at most `REQUEST_HEAD_BYTES_MAX` (431 past it);
//! - one request per connection, one answer, then the close
//!   (`Connection: close`); `GET` and `HEAD` only; lines may end in CRLF or
//!   a bare LF;
//! - nothing a client sends can panic a thread: the head is parsed from byte
//!   slices with checked access, and bad input gets a 4xx.
//!
//! This is an operator's endpoint for Prometheus and health checkers, not a
//! general web server; keep it off public networks.
//!
//! Shutdown: the threads live as long as the process (a connection's thread
//! ends by its deadline at the latest); `/readyz` turns 503 as soon as a
//! drain begins, so load balancers stop sending before the close.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// Largest request head read from a client; past it, 431 and the close.
pub const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// How long a connection may live, from accept to close: reading the
/// request, writing the answer and the lingering close all count.
pub const REQUEST_DEADLINE_MS: u64 = 5_000;
/// Connections served at once. Prometheus (an HA pair) and a few probes need
/// a handful; each costs a thread for at most `REQUEST_DEADLINE_MS`, a head
/// buffer and one answer. Past it a new connection gets a 503 and the close.
pub const CONNECTIONS_MAX: usize = 32;
/// After the answer, how long to keep reading and dropping what the client
/// still sends (never past the deadline): closing a socket with unread
/// bytes sends a reset, which can make the client lose the answer.
const LINGER_MS: u64 = 1_000;
/// At most this much is read and dropped while lingering.
const LINGER_BYTES_MAX: usize = 64 * 1024;
/// Refusals at `CONNECTIONS_MAX` are logged at most once per this long: a
/// flood of connections must not become a flood of log lines.
const REFUSALS_LOG_INTERVAL_MS: u64 = 10_000;

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
    /// The shards' shared state, for the stream directory (per-stream numbers).
    pub shared: Arc<flit_shard::mesh::SharedState>,
    /// This node's id and route address, when it is in a cluster.
    pub cluster: Option<(u32, std::net::SocketAddr)>,
    /// Where streams keep their logs: its file system's size and free space
    /// are reported (statvfs at scrape time), once a stream exists.
    pub data_directory: std::path::PathBuf,
    /// What the NATS monitoring endpoints report beyond the shards' counters.
    pub nats: crate::nats_monitoring::NatsEndpoints,
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

/// Serves on threads of their own, pinned to `core` when one is given (a
/// core no shard uses); returns the bound address.
pub fn serve(
    listener: TcpListener,
    mut observed: Observed,
    core: Option<core_affinity::CoreId>,
) -> Result<SocketAddr, String> {
    let local = listener.local_addr().map_err(|error| format!("metrics listener: {error}"))?;
    observed.nats.facts.http_address = Some(local);
    let observed = Arc::new(observed);
    let mut registry = Registry::default();
    registry.register_collector(Box::new(FlitCollector(observed.clone())));
    let registry = Arc::new(registry);
    std::thread::Builder::new()
        .name("flit-metrics".to_string())
        .spawn(move || {
            if let Some(core) = core {
                core_affinity::set_for_current(core);
            }
            accept_loop(&listener, &registry, &observed, core);
        })
        .map_err(|error| format!("cannot start the metrics thread: {error}"))?;
    Ok(local)
}

/// Accepts forever, handing each connection to a thread of its own while a
/// slot is free and refusing it at once otherwise.
fn accept_loop(
    listener: &TcpListener,
    registry: &Arc<Registry>,
    observed: &Arc<Observed>,
    core: Option<core_affinity::CoreId>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let refusal = Response::text("503 Service Unavailable", "too many metrics connections; retry\n").encode(true);
    let mut refusals = RefusalLog::default();
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                // EMFILE and the like: pause instead of spinning.
                tracing::warn!(%error, "metrics listener accept failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let deadline = Instant::now() + Duration::from_millis(REQUEST_DEADLINE_MS);
        let Some(slot) = Slot::take(&active) else {
            refuse(stream, &refusal);
            refusals.note();
            continue;
        };
        let (registry, observed) = (registry.clone(), observed.clone());
        let spawned = std::thread::Builder::new().name("flit-scrape".to_string()).spawn(move || {
            // Threads inherit the creator's affinity on Linux; said again
            // here so the pinning does not rest on that.
            if let Some(core) = core {
                core_affinity::set_for_current(core);
            }
            let _slot = slot;
            if let Err(error) = serve_connection(stream, deadline, &registry, &observed) {
                tracing::debug!(%error, "metrics request failed");
            }
        });
        if let Err(error) = spawned {
            // The closure, with its stream and slot, is dropped: the
            // connection closes and the slot is given back.
            tracing::warn!(%error, "cannot start a thread for a metrics connection; closed it");
        }
    }
}

/// A place among the `CONNECTIONS_MAX` connections served at once, given
/// back on drop however the connection ends (answer, error, panic).
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Option<Slot> {
        active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| (taken < CONNECTIONS_MAX).then_some(taken + 1))
            .ok()?;
        Some(Slot(active.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts refusals at the cap and logs them at most once per
/// `REFUSALS_LOG_INTERVAL_MS`.
#[derive(Default)]
struct RefusalLog {
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl RefusalLog {
    fn note(&mut self) {
        self.unlogged += 1;
        let interval = Duration::from_millis(REFUSALS_LOG_INTERVAL_MS);
        if self.logged_at.is_none_or(|at| at.elapsed() >= interval) {
            tracing::warn!(
                refused = self.unlogged,
                connections_max = CONNECTIONS_MAX,
                "metrics connections refused: too many at once"
            );
            self.unlogged = 0;
            self.logged_at = Some(Instant::now());
        }
    }
}

/// Past the cap: the 503 and the close, from the accept thread, so nothing
/// here may wait. The socket is made non-blocking; what part of the request
/// has already arrived is read first (a close with unread bytes is a reset,
/// which can destroy the 503 before the client reads it); the 503 is one
/// write into a fresh socket's empty send buffer, which takes it whole.
fn refuse(mut stream: TcpStream, refusal: &[u8]) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut sink = [0u8; 1024];
    let mut drained = 0;
    while drained < REQUEST_HEAD_BYTES_MAX {
        match stream.read(&mut sink) {
            Ok(read) if read > 0 => drained += read,
            _ => break,
        }
    }
    let _ = stream.write(refusal);
}

/// Why a connection ended without a whole exchange; logged at debug level,
/// since it is the client's doing and the router is unaffected.
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("the request deadline passed")]
    DeadlinePassed,
    #[error("the client closed before sending a request")]
    ClosedEarly,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One connection: read the head by the deadline, answer, close.
fn serve_connection(
    mut stream: TcpStream,
    deadline: Instant,
    registry: &Registry,
    observed: &Observed,
) -> Result<(), ExchangeError> {
    // The answer is one write and then the close: nothing for Nagle to
    // coalesce, and no reason to wait for an ACK before the last segment.
    let _ = stream.set_nodelay(true);
    let mut head = [0u8; REQUEST_HEAD_BYTES_MAX];
    let mut filled = 0;
    let (response, with_body) = loop {
        if let Some(line) = request_line(&head[..filled], false) {
            break respond_to(head.get(line).unwrap_or_default(), registry, observed);
        }
        if filled == head.len() {
            break (Response::text("431 Request Header Fields Too Large", "request head too large\n"), true);
        }
        let read = read_by(&mut stream, &mut head[filled..], deadline)?;
        if read == 0 {
            // The client half-closed: answer what it sent, if anything.
            if filled == 0 {
                return Err(ExchangeError::ClosedEarly);
            }
            let line = request_line(&head[..filled], true).unwrap_or(0..0);
            break respond_to(head.get(line).unwrap_or_default(), registry, observed);
        }
        filled += read;
    };
    write_by(&mut stream, &response.encode(with_body), deadline)?;
    linger_close(stream, deadline);
    Ok(())
}

/// The time left before `deadline`, if any.
fn time_left(deadline: Instant) -> Option<Duration> {
    deadline.checked_duration_since(Instant::now()).filter(|left| !left.is_zero())
}

/// One read that returns by `deadline`: the read timeout is set to the time
/// left before every read.
fn read_by(stream: &mut TcpStream, buffer: &mut [u8], deadline: Instant) -> Result<usize, ExchangeError> {
    loop {
        let left = time_left(deadline).ok_or(ExchangeError::DeadlinePassed)?;
        stream.set_read_timeout(Some(left))?;
        match stream.read(buffer) {
            Ok(read) => return Ok(read),
            // A timeout is EAGAIN on Linux; the loop then sees no time left.
            Err(error)
                if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(error) => return Err(error.into()),
        }
    }
}

/// Writes all of `bytes` by `deadline` (a client that does not read cannot
/// hold the thread past it).
fn write_by(stream: &mut TcpStream, bytes: &[u8], deadline: Instant) -> Result<(), ExchangeError> {
    let mut written = 0;
    while written < bytes.len() {
        let left = time_left(deadline).ok_or(ExchangeError::DeadlinePassed)?;
        stream.set_write_timeout(Some(left))?;
        match stream.write(bytes.get(written..).unwrap_or_default()) {
            Ok(0) => return Err(std::io::Error::from(ErrorKind::WriteZero).into()),
            Ok(count) => written += count,
            Err(error)
                if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Closes after the answer without a reset: half-close (the client sees the
/// end of the answer), then read and drop what the client still sends until
/// it closes, `LINGER_MS` pass (never past the deadline), or
/// `LINGER_BYTES_MAX` have come. A well-behaved client closes at once.
fn linger_close(mut stream: TcpStream, deadline: Instant) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let until = deadline.min(Instant::now() + Duration::from_millis(LINGER_MS));
    let mut sink = [0u8; 1024];
    let mut dropped = 0;
    while dropped < LINGER_BYTES_MAX {
        match read_by(&mut stream, &mut sink, until) {
            Ok(read) if read > 0 => dropped += read,
            _ => break,
        }
    }
}

/// Where the request line lies in `buffer`, once the head is complete: its
/// empty line has arrived, or the client has `closed` its side (then what
/// came is all there is). `None` while more is to come. One empty line
/// before the request line is skipped (RFC 9112, section 2.2); lines may
/// end in CRLF or a bare LF. An empty request line is returned at once, to
/// be refused.
fn request_line(buffer: &[u8], closed: bool) -> Option<Range<usize>> {
    let start = if buffer.starts_with(b"\r\n") { 2 } else { usize::from(buffer.starts_with(b"\n")) };
    let rest = buffer.get(start..).unwrap_or_default();
    let without_cr = |end: usize| if end > start && buffer.get(end - 1) == Some(&b'\r') { end - 1 } else { end };
    let Some(newline) = rest.iter().position(|byte| *byte == b'\n') else {
        return closed.then(|| start..without_cr(buffer.len()));
    };
    let line = start..without_cr(start + newline);
    let headers = rest.get(newline + 1..).unwrap_or_default();
    let head_ended = line.is_empty()
        || headers.starts_with(b"\n")
        || headers.starts_with(b"\r\n")
        || headers.windows(2).any(|pair| pair == b"\n\n")
        || headers.windows(3).any(|triple| triple == b"\n\r\n");
    (head_ended || closed).then_some(line)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Head,
    /// Any other well-formed method: 405.
    Other,
}

/// A request line that parsed.
#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: Method,
    /// The target without its query.
    path: &'a str,
    /// What follows the `?`, if anything (empty otherwise).
    query: &'a str,
}

/// A request line that did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum BadRequest {
    /// Not `METHOD TARGET HTTP/x.y`: 400.
    #[error("not an HTTP request line")]
    Malformed,
    /// `HTTP/2.0` and the like on this plain HTTP/1 listener: 505.
    #[error("an HTTP version other than 1.0 and 1.1")]
    Version,
}

/// Parses `METHOD TARGET VERSION` (runs of spaces or tabs are taken as one).
fn parse_request_line(line: &[u8]) -> Result<Request<'_>, BadRequest> {
    let line = std::str::from_utf8(line).map_err(|_| BadRequest::Malformed)?;
    let mut words = line.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version), None) = (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(BadRequest::Malformed);
    };
    // A method is an RFC 9110 token.
    let token_byte = |byte: u8| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte);
    if !method.bytes().all(token_byte) {
        return Err(BadRequest::Malformed);
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => {}
        other if other.starts_with("HTTP/") => return Err(BadRequest::Version),
        _ => return Err(BadRequest::Malformed),
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Request { method, path, query })
}

/// The answer to a request line, and whether it carries its body (not for
/// `HEAD`).
fn respond_to(line: &[u8], registry: &Registry, observed: &Observed) -> (Response, bool) {
    match parse_request_line(line) {
        Err(BadRequest::Malformed) => (Response::text("400 Bad Request", "bad request\n"), true),
        Err(BadRequest::Version) => (Response::text("505 HTTP Version Not Supported", "use HTTP/1.1\n"), true),
        Ok(request) => (answer(&request, registry, observed), request.method != Method::Head),
    }
}

/// The answer to a well-formed request. `HEAD` is answered as `GET` is, so
/// its Content-Length is the one `GET` would send.
fn answer(request: &Request<'_>, registry: &Registry, observed: &Observed) -> Response {
    if request.method == Method::Other {
        let mut response = Response::text("405 Method Not Allowed", "only GET and HEAD\n");
        response.extra_headers = "Allow: GET, HEAD\r\n";
        return response;
    }
    if let Some(nats) = crate::nats_monitoring::answer(request.path, request.query, observed) {
        return match nats {
            Ok(body) => Response { status: "200 OK", content_type: "application/json", extra_headers: "", body },
            Err(refused) => Response::text("400 Bad Request", &format!("{refused}\n")),
        };
    }
    match request.path {
        "/metrics" => {
            let mut body = String::with_capacity(16 * 1024);
            match prometheus_client::encoding::prometheus_text::encode(&mut body, registry) {
                Ok(()) => Response {
                    status: "200 OK",
                    content_type: prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    extra_headers: "",
                    body,
                },
                Err(_) => Response::text("500 Internal Server Error", "encoding failed\n"),
            }
        }
        // `flit cluster ls`: one line per node, this one first.
        "/cluster" => match observed.cluster.as_ref() {
            Some((node_id, address)) => {
                Response::text("200 OK", &observed.shared.cluster_view.lines(*node_id, &address.to_string()))
            }
            None => Response::text("404 Not Found", "this node is not in a cluster ([cluster] is not set)\n"),
        },
        "/readyz" if observed.ready() => Response::text("200 OK", "ready\n"),
        "/readyz" => Response::text("503 Service Unavailable", "not ready\n"),
        _ => Response::text("404 Not Found", "try /metrics, /healthz, /readyz, /varz, /connz or /subsz\n"),
    }
}

/// An HTTP/1.1 answer, always with `Connection: close`.
#[derive(Debug)]
struct Response {
    status: &'static str,
    content_type: &'static str,
    /// Whole header lines, each ending in CRLF.
    extra_headers: &'static str,
    body: String,
}

impl Response {
    fn text(status: &'static str, body: &str) -> Response {
        Response { status, content_type: "text/plain", extra_headers: "", body: body.to_string() }
    }

    /// The bytes to send: the head, and the body unless `with_body` is false
    /// (the Content-Length is the body's either way).
    fn encode(&self, with_body: bool) -> Vec<u8> {
        let Response { status, content_type, extra_headers, body } = self;
        let mut bytes = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra_headers}Connection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        if with_body {
            bytes.extend_from_slice(body.as_bytes());
        }
        bytes
    }
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
    (
        "flit_shard_receive_buffer_shortages",
        "Multishot receives ended because every provided buffer was in use (re-armed).",
        |m| m.receive_buffer_shortages.get(),
    ),
    (
        "flit_shard_receive_pauses",
        "Receives stopped because a connection's unread input reached its cap (backpressure).",
        |m| m.receive_pauses.get(),
    ),
    (
        "flit_shard_sends_blocked",
        "Ring sends that found a socket's buffer full (short or EAGAIN); the rest waits for POLLOUT.",
        |m| m.sends_blocked.get(),
    ),
    ("flit_route_messages_sent", "Messages forwarded to other nodes on this shard's routes.", |m| {
        m.route_messages_sent.get()
    }),
    ("flit_route_messages_received", "Messages other nodes forwarded to this shard.", |m| {
        m.route_messages_received.get()
    }),
    (
        "flit_route_messages_dropped",
        "Messages for another node dropped: its route down or its queue full (at most once).",
        |m| m.route_messages_dropped.get(),
    ),
    (
        "flit_route_authentication_failures",
        "Route handshakes refused because the peer's proof did not verify (another cluster secret).",
        |m| m.route_authentication_failures.get(),
    ),
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
        let gauges: [CounterField; 7] = [
            ("flit_routes_up", "Routes this shard dialed to other nodes that are up.", |m| m.routes_up.get()),
            ("flit_shard_up", "1 while the shard's loop runs.", |m| m.up.get()),
            ("flit_shard_accepting", "1 while the shard accepts connections.", |m| m.accepting.get()),
            (
                "flit_shard_receive_on_ring",
                "1 when connections receive through the ring (multishot, provided buffers); 0: readiness and recv.",
                |m| m.receive_on_ring.get(),
            ),
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
        crate::metrics_cluster::encode_route_nodes(&mut encoder, observed)?;
        let streams = observed.shared.streams.snapshot();
        encode_streams(&mut encoder, &streams)?;
        if !streams.entries.is_empty() {
            encode_data_file_system(&mut encoder, &observed.data_directory)?;
        }
        Ok(())
    }
}

/// The data directory's file system: size and space available to flit.
/// A full one makes every stream on it refuse publishes (507).
fn encode_data_file_system(
    encoder: &mut DescriptorEncoder,
    data_directory: &std::path::Path,
) -> Result<(), std::fmt::Error> {
    let Ok(stats) = rustix::fs::statvfs(data_directory) else { return Ok(()) };
    let block = stats.f_frsize.max(1);
    let fields = [
        (
            "flit_data_filesystem_size_bytes",
            "Size of the file system holding the data directory.",
            stats.f_blocks * block,
        ),
        (
            "flit_data_filesystem_available_bytes",
            "Space on it available to flit (statvfs f_bavail).",
            stats.f_bavail * block,
        ),
    ];
    for (name, help, value) in fields {
        let family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        gauge(value).encode(family)?;
    }
    Ok(())
}

/// Per-stream numbers, labelled by stream name (owner shard as a label too).
fn encode_streams(
    encoder: &mut DescriptorEncoder,
    directory: &flit_shard::streams::directory::StreamDirectory,
) -> Result<(), std::fmt::Error> {
    use flit_shard::streams::directory::StreamStats;
    type StreamField = (&'static str, &'static str, MetricType, fn(&StreamStats) -> u64);
    let fields: [StreamField; 8] = [
        ("flit_stream_messages", "Messages stored (acknowledged and retained).", MetricType::Gauge, |s| {
            StreamStats::get(&s.messages)
        }),
        ("flit_stream_bytes", "Bytes of the stored messages' records.", MetricType::Gauge, |s| {
            StreamStats::get(&s.bytes)
        }),
        ("flit_stream_first_sequence", "First retained sequence.", MetricType::Gauge, |s| {
            StreamStats::get(&s.first_sequence)
        }),
        ("flit_stream_last_sequence", "Last acknowledged sequence.", MetricType::Gauge, |s| {
            StreamStats::get(&s.last_sequence)
        }),
        ("flit_stream_appends", "Messages staged for the log.", MetricType::Counter, |s| StreamStats::get(&s.appends)),
        ("flit_stream_refused", "Publishes refused (limits, disk full, storage failed).", MetricType::Counter, |s| {
            StreamStats::get(&s.refused)
        }),
        ("flit_stream_commits", "Group commits (one write + fdatasync each under always).", MetricType::Counter, |s| {
            StreamStats::get(&s.commits)
        }),
        ("flit_stream_consumers", "Consumers.", MetricType::Gauge, |s| StreamStats::get(&s.consumers)),
    ];
    for (name, help, metric_type, read) in fields {
        let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
        for entry in &directory.entries {
            let labels = [("stream", entry.definition.name.clone()), ("shard", entry.owner.to_string())];
            let value = read(&entry.stats);
            if matches!(metric_type, MetricType::Counter) {
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            } else {
                gauge(value).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    let mut failed = encoder.encode_descriptor(
        "flit_stream_storage_failed",
        "1 while the stream refuses to serve: its log is corrupt, its storage failed, or its disk is full (see `flit stream info` for why).",
        None,
        MetricType::Gauge,
    )?;
    for entry in &directory.entries {
        let labels = [("stream", entry.definition.name.clone()), ("shard", entry.owner.to_string())];
        gauge(u64::from(!entry.stats.status().is_empty())).encode(failed.encode_family(&labels)?)?;
    }
    let mut sync_latency = encoder.encode_descriptor(
        "flit_stream_sync_latency_seconds",
        "From submitting a commit's fdatasync (linked after its write) to its completion, on the owner's ring.",
        None,
        MetricType::Histogram,
    )?;
    for entry in &directory.entries {
        let histogram = &entry.stats.sync_latency;
        let counts = histogram.bucket_counts();
        let bounds = LATENCY_BUCKET_BOUNDS_NANOS.iter().map(|bound| seconds(*bound)).chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds.zip(counts).collect();
        let labels = [("stream", entry.definition.name.clone()), ("shard", entry.owner.to_string())];
        HistogramSnapshot { sum: seconds(histogram.sum_nanos()), count: histogram.count(), buckets }
            .encode(sync_latency.encode_family(&labels)?)?;
    }
    encode_consumers(encoder, directory)
}

/// Per-consumer numbers, labelled by stream and consumer (as of the owner's
/// last tick, a few ms ago).
fn encode_consumers(
    encoder: &mut DescriptorEncoder,
    directory: &flit_shard::streams::directory::StreamDirectory,
) -> Result<(), std::fmt::Error> {
    use flit_shard::streams::consumers::ConsumerStat;
    type ConsumerField = (&'static str, &'static str, MetricType, fn(&ConsumerStat) -> u64);
    let fields: [ConsumerField; 5] = [
        (
            "flit_consumer_lag",
            "Messages in the stream the consumer has not been delivered yet.",
            MetricType::Gauge,
            |c| c.lag,
        ),
        ("flit_consumer_ack_pending", "Delivered and not yet acknowledged.", MetricType::Gauge, |c| c.ack_pending),
        (
            "flit_consumer_stalled",
            "1 while the consumer is at ack_pending_max and delivers nothing new.",
            MetricType::Gauge,
            |c| u64::from(c.stalled),
        ),
        (
            "flit_consumer_redeliveries",
            "Messages delivered again after an ack wait or a nak.",
            MetricType::Counter,
            |c| c.redeliveries_total,
        ),
        ("flit_consumer_dead_letters", "Messages given up after deliveries_max.", MetricType::Counter, |c| {
            c.dead_letters_total
        }),
    ];
    let per_stream: Vec<_> =
        directory.entries.iter().map(|entry| (entry.definition.name.clone(), entry.stats.consumer_stats())).collect();
    for (name, help, metric_type, read) in fields {
        let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
        for (stream, consumers) in &per_stream {
            for consumer in consumers {
                let labels = [("stream", stream.clone()), ("consumer", consumer.name.clone())];
                let value = read(consumer);
                if matches!(metric_type, MetricType::Counter) {
                    ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
                } else {
                    gauge(value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(buffer: &[u8], closed: bool) -> Option<&[u8]> {
        request_line(buffer, closed).map(|range| &buffer[range])
    }

    #[test]
    fn the_head_ends_at_its_empty_line_with_crlf_or_bare_lf() {
        assert_eq!(line_of(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false), Some(&b"GET / HTTP/1.1"[..]));
        assert_eq!(line_of(b"GET / HTTP/1.1\n\n", false), Some(&b"GET / HTTP/1.1"[..]));
        assert_eq!(line_of(b"GET / HTTP/1.1\r\n\r\n", false), Some(&b"GET / HTTP/1.1"[..]));
        assert_eq!(line_of(b"GET / HTTP/1.1\nHost: x\n\n", false), Some(&b"GET / HTTP/1.1"[..]));
        // One empty line before the request line is skipped.
        assert_eq!(line_of(b"\r\nGET / HTTP/1.1\r\n\r\n", false), Some(&b"GET / HTTP/1.1"[..]));
    }

    #[test]
    fn an_unfinished_head_waits_unless_the_client_closed() {
        for partial in
            [&b""[..], b"GE", b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n", b"GET / HTTP/1.1\r\n\r"]
        {
            assert_eq!(line_of(partial, false), None, "{partial:?}");
        }
        assert_eq!(line_of(b"GET / HTTP/1.1\r\nHost: x\r\n", true), Some(&b"GET / HTTP/1.1"[..]));
        assert_eq!(line_of(b"GET / HTTP/1.1\r", true), Some(&b"GET / HTTP/1.1"[..]));
    }

    #[test]
    fn an_empty_request_line_is_complete_at_once() {
        assert_eq!(line_of(b"\r\n\r\n", false), Some(&b""[..]));
        assert_eq!(line_of(b"\n\n", false), Some(&b""[..]));
        assert_eq!(parse_request_line(b""), Err(BadRequest::Malformed));
    }

    #[test]
    fn request_lines_parse_or_are_refused() {
        assert_eq!(
            parse_request_line(b"GET /metrics HTTP/1.1"),
            Ok(Request { method: Method::Get, path: "/metrics", query: "" })
        );
        assert_eq!(
            parse_request_line(b"HEAD /readyz?x=1 HTTP/1.0"),
            Ok(Request { method: Method::Head, path: "/readyz", query: "x=1" })
        );
        assert_eq!(parse_request_line(b"POST / HTTP/1.1"), Ok(Request { method: Method::Other, path: "/", query: "" }));
        assert_eq!(parse_request_line(b"GET / HTTP/2.0"), Err(BadRequest::Version));
        for bad in [&b"GET"[..], b"GET /", b"GET / HTTP/1.1 x", b"G(T / HTTP/1.1", b"GET / FTP/1.0", b"\xff / HTTP/1.1"]
        {
            assert_eq!(parse_request_line(bad), Err(BadRequest::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn any_bytes_get_an_answer_or_a_wait_and_never_a_panic() {
        // Every short mix of the bytes the parser cares about.
        let alphabet = [b'\r', b'\n', b' ', b'G', b'/', b'\xff'];
        let mut buffer = Vec::new();
        for length in 0..=6u32 {
            for mut code in 0..alphabet.len().pow(length) {
                buffer.clear();
                for _ in 0..length {
                    buffer.push(alphabet[code % alphabet.len()]);
                    code /= alphabet.len();
                }
                for closed in [false, true] {
                    if let Some(line) = line_of(&buffer, closed) {
                        let _ = parse_request_line(line);
                    }
                }
            }
        }
    }

    #[test]
    fn head_answers_carry_the_get_length_and_no_body() {
        let response = Response::text("200 OK", "ok\n");
        let head_only = String::from_utf8(response.encode(false)).expect("ascii");
        let whole = String::from_utf8(response.encode(true)).expect("ascii");
        assert!(head_only.contains("Content-Length: 3\r\n") && head_only.ends_with("\r\n\r\n"), "{head_only:?}");
        assert_eq!(whole, format!("{head_only}ok\n"));
    }
}
