//! The engine: one thread, one poller, every connection of a run.
//!
//! Senders (publishers, requesters) write payloads that carry their intended
//! send time; receivers (subscribers, requesters' inboxes) read the time back
//! on arrival and record the difference in one HDR histogram, on one
//! monotonic clock, in one process.
//!
//! Closed loop (`rate == 0`): each sender keeps at most `window` messages in
//! flight and sends the next as soon as one completes; the intended send time
//! is the real one. Open loop (`rate > 0`): each sender has a fixed schedule
//! (message n at start + n / rate) and stamps that scheduled time, however
//! late the loop gets to send it; a stalled server is therefore charged for
//! every message scheduled during the stall (no coordinated omission).
//!
//! Bounded: every wait has a deadline (connect, handshake, barrier, run,
//! drain); the loop ends by itself.
//!
//! Across nodes: receivers (subscribers, responders) may connect to another
//! server than senders ([`Addresses`]). The ping barrier then proves only
//! that the receivers' own server has their subscriptions; `settle` gives
//! the interest time to reach the senders' node before the first send.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::protocol::{stamp_of, Inbound, Protocol, STAMP_BYTES};
use crate::scenario::{Idle, Plan, Role, RunOptions};
use crate::target::Addresses;
use crate::transport::Transport;

/// How long connecting, handshaking and subscribing may take in all.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The poller's timeout resolution (epoll takes milliseconds).
const POLL_RESOLUTION: Duration = Duration::from_millis(1);
/// Bytes read from one connection per readiness event before moving on.
const READ_CHUNK_BYTES: usize = 256 * 1024;

struct Connection {
    stream: Transport,
    protocol: Box<dyn Protocol>,
    role: Role,
    input: BytesMut,
    output: BytesMut,
    /// Pongs still awaited for the readiness barrier.
    pongs_awaited: u32,
    dirty: bool,
}

struct Sender {
    connection: usize,
    next_sequence: u64,
    /// Deliveries still expected for messages this sender sent.
    outstanding: u64,
    /// Open loop: intended time of the next message, ns since the run's epoch.
    next_intended_ns: u64,
    interval_ns: u64,
}

/// Counts of a run; the histogram holds the latencies in nanoseconds.
pub struct RunResult {
    pub histogram: Histogram<u64>,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub errors: u64,
    pub measured: Duration,
    pub connections: usize,
}

/// Called once a second with (seconds since start, sent, received) if progress is on.
type Progress<'a> = &'a mut dyn FnMut(u64, u64, u64);

pub struct Engine {
    poll: Poll,
    connections: Vec<Connection>,
    senders: Vec<Sender>,
    plan: Plan,
    options: RunOptions,
    epoch: Instant,
    payload: Vec<u8>,
    scratch: Vec<u8>,
    dirty: VecDeque<usize>,
    histogram: Histogram<u64>,
    warmup_end_ns: u64,
    measure_end_ns: u64,
    sent_measured: u64,
    received_measured: u64,
    sent_total: u64,
    received_total: u64,
    errors: u64,
    /// True once `run` has started: every read is followed by `refill`.
    running: bool,
}

fn now_ns(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

impl Engine {
    /// Connects every connection of `plan` (receivers to `addresses.receiver`,
    /// the others to `addresses.sender`), runs the handshakes, subscribes,
    /// waits for the barrier and then for `options.settle`.
    pub fn connect(
        addresses: Addresses,
        plan: Plan,
        options: RunOptions,
        make_protocol: impl Fn() -> Box<dyn Protocol>,
    ) -> Result<Engine> {
        let poll = Poll::new().context("create poller")?;
        let mut connections = Vec::with_capacity(plan.roles.len());
        let mut senders = Vec::new();
        for (index, role) in plan.roles.iter().enumerate() {
            let address = if role.receives() { addresses.receiver } else { addresses.sender };
            let stream = std::net::TcpStream::connect(address)
                .with_context(|| format!("connect {} of {} to {address}", index + 1, plan.roles.len()))?;
            stream.set_nodelay(true)?;
            stream.set_nonblocking(true)?;
            let mut stream = TcpStream::from_std(stream);
            poll.registry().register(&mut stream, Token(index), Interest::READABLE | Interest::WRITABLE)?;
            let tls = options.tls.as_ref().map(|tls| (&tls.config, tls.server_name.as_str()));
            let stream = Transport::new(stream, tls)?;
            if matches!(role, Role::Publisher | Role::Requester { .. }) {
                senders.push(Sender {
                    connection: index,
                    next_sequence: 0,
                    outstanding: 0,
                    next_intended_ns: 0,
                    interval_ns: 0,
                });
            }
            let mut connection = Connection {
                stream,
                protocol: make_protocol(),
                role: role.clone(),
                input: BytesMut::new(),
                output: BytesMut::new(),
                pongs_awaited: 0,
                dirty: false,
            };
            connection.protocol.set_needs_reply(matches!(role, Role::Responder { .. }));
            connection.protocol.handshake(&mut connection.output);
            connections.push(connection);
        }
        let histogram = Histogram::new_with_bounds(1, 60_000_000_000, 3).context("histogram")?;
        let payload = vec![0u8; options.payload_bytes];
        let mut engine = Engine {
            poll,
            connections,
            senders,
            plan,
            options,
            epoch: Instant::now(),
            payload,
            scratch: vec![0u8; READ_CHUNK_BYTES],
            dirty: VecDeque::new(),
            histogram,
            warmup_end_ns: 0,
            measure_end_ns: 0,
            sent_measured: 0,
            received_measured: 0,
            sent_total: 0,
            received_total: 0,
            errors: 0,
            running: false,
        };
        for index in 0..engine.connections.len() {
            engine.mark_dirty(index);
        }
        let deadline = Instant::now() + SETUP_TIMEOUT;
        engine.pump_until(deadline, |engine| engine.connections.iter().all(|c| c.protocol.handshake_done()))?;
        engine.subscribe_all(deadline)?;
        engine.settle()?;
        Ok(engine)
    }

    /// Reads at most `bytes` per read (tests: to see what happens between the
    /// reads of one burst without sending megabytes).
    #[cfg(test)]
    fn set_read_chunk_bytes(&mut self, bytes: usize) {
        self.scratch = vec![0u8; bytes];
    }

    /// Subscribes every role that receives, then waits for a ping barrier on
    /// each connection: once every pong is in, the server has applied every
    /// subscription (flit answers a ping only after all shards have).
    fn subscribe_all(&mut self, deadline: Instant) -> Result<()> {
        let subject = self.plan.subject.clone();
        for index in 0..self.connections.len() {
            let connection = &mut self.connections[index];
            match connection.role.clone() {
                Role::Subscriber { queue } | Role::Responder { queue } => {
                    connection.protocol.subscribe(&mut connection.output, &subject, queue.as_deref(), 1)
                }
                Role::Requester { inbox } => connection.protocol.subscribe(&mut connection.output, &inbox, None, 1),
                Role::Publisher | Role::Idle => {}
            }
            connection.protocol.ping(&mut connection.output);
            connection.pongs_awaited += 1;
            self.mark_dirty(index);
            // A protocol may answer the ping itself (echo has no server side
            // to ask), and no bytes will arrive to make us parse it.
            self.parse_input(index, now_ns(self.epoch))?;
        }
        self.pump_until(deadline, |engine| engine.connections.iter().all(|c| c.pongs_awaited == 0))
    }

    /// Keeps reading (answering server pings) without sending for
    /// `options.settle`.
    fn settle(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.options.settle;
        let mut events = Events::with_capacity(1024);
        loop {
            self.flush_dirty()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            self.poll.poll(&mut events, Some(left.min(Duration::from_millis(10))))?;
            self.handle_events(&events)?;
        }
    }

    fn mark_dirty(&mut self, index: usize) {
        let connection = &mut self.connections[index];
        if !connection.dirty {
            connection.dirty = true;
            self.dirty.push_back(index);
        }
    }

    /// Runs the poll loop without sending until `done` holds or `deadline` passes.
    fn pump_until(&mut self, deadline: Instant, done: impl Fn(&Engine) -> bool) -> Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            self.flush_dirty()?;
            if done(self) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("setup did not finish within {SETUP_TIMEOUT:?}: is the server up and speaking this protocol?");
            }
            self.poll.poll(&mut events, Some(Duration::from_millis(10)))?;
            self.handle_events(&events)?;
        }
    }

    /// The measured run: warm-up, measurement, drain. Returns the counts.
    pub fn run(mut self, progress: Option<Progress<'_>>) -> Result<RunResult> {
        let mut progress = progress;
        self.epoch = Instant::now();
        self.warmup_end_ns = self.options.warmup.as_nanos() as u64;
        self.measure_end_ns = self.warmup_end_ns + self.options.duration.as_nanos() as u64;
        let drain_end_ns = self.measure_end_ns + self.options.drain.as_nanos() as u64;
        let senders = self.senders.len().max(1) as u64;
        if self.options.rate > 0 {
            let per_sender_rate = (self.options.rate / senders).max(1);
            for sender in &mut self.senders {
                sender.interval_ns = 1_000_000_000 / per_sender_rate;
            }
        }
        let mut events = Events::with_capacity(1024);
        let mut next_progress_s = 1;
        self.running = true;
        loop {
            let now = now_ns(self.epoch);
            if now < self.measure_end_ns {
                self.send_due(now);
            }
            self.flush_dirty()?;
            let outstanding: u64 = self.senders.iter().map(|sender| sender.outstanding).sum();
            if now >= drain_end_ns || (now >= self.measure_end_ns && outstanding == 0) {
                break;
            }
            if let Some(report) = progress.as_mut() {
                if now >= next_progress_s * 1_000_000_000 {
                    report(next_progress_s, self.sent_total, self.received_total);
                    next_progress_s += 1;
                }
            }
            let timeout = self.poll_timeout(now);
            self.poll.poll(&mut events, timeout)?;
            self.handle_events(&events)?;
        }
        let expected = self.sent_measured * self.plan.copies_per_message;
        let measured = Duration::from_nanos(self.measure_end_ns - self.warmup_end_ns);
        Ok(RunResult {
            lost: expected.saturating_sub(self.received_measured),
            histogram: self.histogram,
            sent: self.sent_measured,
            received: self.received_measured,
            errors: self.errors,
            measured,
            connections: self.connections.len(),
        })
    }

    /// How long the poller may block: not at all when spinning; in park mode
    /// a short tick in closed loop, and in open loop until just before the
    /// next scheduled send. The poller's timeout has millisecond resolution
    /// (epoll), so the last millisecond before a send is spent polling
    /// without blocking: a send that left late would be charged to the
    /// server as latency. At rates above ~1000 msg/s per sender this means
    /// a parked load generator polls continuously in open loop.
    fn poll_timeout(&self, now: u64) -> Option<Duration> {
        if self.options.idle == Idle::Spin {
            return Some(Duration::ZERO);
        }
        let tick = Duration::from_millis(5);
        if self.options.rate == 0 || now >= self.measure_end_ns {
            return Some(tick);
        }
        let next = self.senders.iter().map(|sender| sender.next_intended_ns).min().unwrap_or(now);
        let until_next = Duration::from_nanos(next.saturating_sub(now));
        Some(until_next.saturating_sub(POLL_RESOLUTION).min(tick))
    }

    /// Sends what is due: the schedule's messages up to now (open loop), or
    /// up to the window (closed loop).
    fn send_due(&mut self, now: u64) {
        let window = self.options.window as u64 * self.plan.copies_per_message;
        for sender_index in 0..self.senders.len() {
            loop {
                let sender = &self.senders[sender_index];
                let intended = if self.options.rate > 0 {
                    if sender.next_intended_ns > now || sender.next_intended_ns >= self.measure_end_ns {
                        break;
                    }
                    sender.next_intended_ns
                } else {
                    if sender.outstanding >= window {
                        break;
                    }
                    now
                };
                self.send_one(sender_index, intended);
            }
        }
    }

    fn send_one(&mut self, sender_index: usize, intended_ns: u64) {
        let sender = &mut self.senders[sender_index];
        let sequence = sender.next_sequence;
        sender.next_sequence += 1;
        sender.next_intended_ns = intended_ns.max(sender.next_intended_ns) + sender.interval_ns;
        sender.outstanding += self.plan.copies_per_message;
        let connection_index = sender.connection;
        self.payload[0..8].copy_from_slice(&intended_ns.to_le_bytes());
        self.payload[8..16].copy_from_slice(&sequence.to_le_bytes());
        self.payload[16..24].copy_from_slice(&(sender_index as u64).to_le_bytes());
        let connection = &mut self.connections[connection_index];
        let reply = match &connection.role {
            Role::Requester { inbox } => Some(inbox.as_bytes()),
            _ => None,
        };
        connection.protocol.publish(&mut connection.output, &self.plan.subject, reply, &self.payload);
        self.sent_total += 1;
        if intended_ns >= self.warmup_end_ns && intended_ns < self.measure_end_ns {
            self.sent_measured += 1;
        }
        self.mark_dirty(connection_index);
    }

    fn flush_dirty(&mut self) -> Result<()> {
        for _ in 0..self.dirty.len() {
            let Some(index) = self.dirty.pop_front() else { break };
            let connection = &mut self.connections[index];
            connection.dirty = false;
            while !connection.output.is_empty() {
                match connection.stream.write(&connection.output) {
                    Ok(0) => bail!("connection {index} closed while writing"),
                    Ok(written) => {
                        connection.output.advance(written);
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                    Err(error) => return Err(error).with_context(|| format!("write on connection {index}")),
                }
            }
            // Whatever is left goes out on the next writable event.
            connection.stream.flush_pending().with_context(|| format!("TLS records on connection {index}"))?;
        }
        Ok(())
    }

    fn handle_events(&mut self, events: &Events) -> Result<()> {
        for event in events.iter() {
            let index = event.token().0;
            if event.is_writable() {
                self.mark_dirty(index);
            }
            if event.is_readable() || event.is_read_closed() {
                self.read_connection(index)?;
            }
        }
        Ok(())
    }

    /// Reads until the socket is empty (the poller is edge-triggered). Bytes
    /// land in one zeroed scratch buffer and are copied to the connection's
    /// input: a copy of what arrived, rather than zeroing a whole chunk of
    /// the input before every read. During the run, each read's receipts
    /// refill the senders' windows at once (`refill`), before the next read.
    fn read_connection(&mut self, index: usize) -> Result<()> {
        loop {
            let connection = &mut self.connections[index];
            match connection.stream.read(&mut self.scratch) {
                Ok(0) => {
                    bail!("the server closed connection {index} ({:?})", connection.role);
                }
                Ok(read) => {
                    // One clock reading per read: every message in it arrived
                    // when the read returned, however long parsing takes.
                    let arrived_ns = now_ns(self.epoch);
                    connection.input.extend_from_slice(&self.scratch[..read]);
                    self.parse_input(index, arrived_ns)?;
                    if self.running {
                        self.refill()?;
                    }
                }
                Err(error) => match error.kind() {
                    ErrorKind::WouldBlock => return Ok(()),
                    ErrorKind::Interrupted => continue,
                    _ => return Err(error).with_context(|| format!("read on connection {index}")),
                },
            }
        }
    }

    /// Sends what the receipts just parsed made room for (and anything else
    /// due), and writes it out, before reading on. A closed loop sends the
    /// next message as soon as one completes: a window that arrives back in
    /// one burst (nats-server on one core answers a whole window at once, see
    /// docs/BENCHMARKS.md) is refilled chunk by chunk while the rest is still
    /// being read and parsed, so the server has work while the load
    /// generator parses. Waiting until every socket is drained made the two
    /// take turns, each idle while the other worked (issue 10).
    fn refill(&mut self) -> Result<()> {
        let now = now_ns(self.epoch);
        if now < self.measure_end_ns {
            self.send_due(now);
        }
        self.flush_dirty()
    }

    fn parse_input(&mut self, index: usize, arrived_ns: u64) -> Result<()> {
        loop {
            let connection = &mut self.connections[index];
            let inbound = connection.protocol.parse(&mut connection.input, &mut connection.output)?;
            if !connection.output.is_empty() {
                self.mark_dirty(index);
            }
            let Some(inbound) = inbound else { return Ok(()) };
            match inbound {
                Inbound::Pong => {
                    let connection = &mut self.connections[index];
                    connection.pongs_awaited = connection.pongs_awaited.saturating_sub(1);
                }
                Inbound::Error(message) => {
                    self.errors += 1;
                    eprintln!("flit-loadgen: connection {index}: server error: {message}");
                }
                Inbound::Message { reply, payload, .. } => {
                    let connection = &mut self.connections[index];
                    if let Role::Responder { .. } = connection.role {
                        match reply.as_deref().map(std::str::from_utf8) {
                            Some(Ok(reply)) => {
                                connection.protocol.publish(&mut connection.output, reply, None, &payload);
                                self.mark_dirty(index);
                            }
                            _ => self.errors += 1,
                        }
                        continue;
                    }
                    match stamp_of(&payload) {
                        Some(stamp) => self.record(&stamp, arrived_ns),
                        None => self.errors += 1,
                    }
                }
                Inbound::Stamp(stamp) => self.record(&stamp, arrived_ns),
            }
        }
    }

    /// A message arrived at a subscriber or requester: record its latency.
    fn record(&mut self, payload: &[u8; STAMP_BYTES], now: u64) {
        let field = |range: std::ops::Range<usize>| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&payload[range]);
            u64::from_le_bytes(bytes)
        };
        let intended_ns = field(0..8);
        let sender = field(16..24) as usize;
        if let Some(sender) = self.senders.get_mut(sender) {
            sender.outstanding = sender.outstanding.saturating_sub(1);
        }
        self.received_total += 1;
        if intended_ns >= self.warmup_end_ns && intended_ns < self.measure_end_ns {
            self.received_measured += 1;
            let latency = now.saturating_sub(intended_ns).max(1);
            // Above the histogram's range (60 s) is clamped to its maximum.
            self.histogram.saturating_record(latency);
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
