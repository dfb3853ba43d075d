//! The durable scenarios: acknowledged publishing (`durable`) and the replay
//! of a stored stream (`replay`), against flit streams and NATS JetStream.
//!
//! `durable`: P publisher connections, each keeping up to N acknowledged
//! publishes in flight (closed loop: a publish goes out as soon as an
//! acknowledgement frees a slot; N = 1 is one at a time). The latency
//! recorded is publish -> acknowledgement, on one monotonic clock; the
//! throughput is acknowledged messages per second. A publish counts in the
//! measurement when it was sent after the warm-up and before the end;
//! `errors` are refusals, `lost` the publishes still unacknowledged when the
//! drain ends. With `--messages M` it instead publishes exactly M messages
//! (no warm-up) and stops when all are acknowledged: how the replay's
//! stream is filled.
//!
//! The stream must exist: flit's from a `[[stream]]` table or `flit stream
//! add`, or both targets' through `--create-stream NAME` (a StreamRequest Add
//! for flit with `--durability`, `$JS.API.STREAM.CREATE.NAME` with file
//! storage and one replica for NATS; JetStream's sync policy is the server's).
//!
//! ## Invariants
//! - Every wait is bounded (setup, run, drain); one thread, one poller.
//! - An acknowledgement for an id not in flight is a protocol error, never
//!   counted twice.

mod protocol;
mod replay;
mod setup;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::scenario::Idle;
use crate::target::TargetKind;
use protocol::{AckEvent, AckProtocol, FlitAcks, NatsAcks};

pub use replay::replay;
pub use setup::create_stream;

/// How long connecting and handshaking may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from one connection per readiness event before moving on.
const READ_CHUNK_BYTES: usize = 256 * 1024;
/// Most publishers of one run (each is a connection).
pub const PUBLISHERS_MAX: usize = 4096;
/// Most publishes in flight per publisher.
pub const IN_FLIGHT_MAX: usize = 65_536;

/// What a durable run needs.
#[derive(Clone, Debug)]
pub struct DurableOptions {
    pub subject: String,
    pub publishers: usize,
    pub in_flight: usize,
    pub payload_bytes: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub drain: Duration,
    /// Publish exactly this many messages instead of running for `duration`.
    pub messages: Option<u64>,
    pub idle: Idle,
    pub progress: bool,
}

/// The counts of a durable run; the histogram holds publish -> ack in ns.
pub struct DurableResult {
    pub histogram: Histogram<u64>,
    pub sent: u64,
    pub acknowledged: u64,
    pub refused: u64,
    pub lost: u64,
    pub measured: Duration,
    pub connections: usize,
    pub first_refusal: Option<String>,
}

struct Publisher {
    stream: TcpStream,
    protocol: Box<dyn AckProtocol>,
    input: BytesMut,
    output: BytesMut,
    /// id -> send time (ns since the epoch).
    in_flight: HashMap<u64, u64>,
    next_id: u64,
    ready: bool,
}

fn now_ns(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// Runs the durable scenario against `address`.
pub fn run(address: SocketAddr, kind: TargetKind, options: &DurableOptions) -> Result<DurableResult> {
    if options.publishers == 0 || options.publishers > PUBLISHERS_MAX {
        bail!("--publishers must be 1..={PUBLISHERS_MAX}");
    }
    if options.in_flight == 0 || options.in_flight > IN_FLIGHT_MAX {
        bail!("--in-flight must be 1..={IN_FLIGHT_MAX}");
    }
    let mut poll = Poll::new().context("create poller")?;
    let mut publishers = connect(&poll, address, kind, options)?;
    handshake(&mut poll, &mut publishers)?;
    Run::new(options).drive(&mut poll, &mut publishers)
}

fn connect(poll: &Poll, address: SocketAddr, kind: TargetKind, options: &DurableOptions) -> Result<Vec<Publisher>> {
    let mut publishers = Vec::with_capacity(options.publishers);
    for index in 0..options.publishers {
        let stream = std::net::TcpStream::connect(address)
            .with_context(|| format!("connect publisher {} of {} to {address}", index + 1, options.publishers))?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(stream);
        poll.registry().register(&mut stream, Token(index), Interest::READABLE | Interest::WRITABLE)?;
        let mut protocol: Box<dyn AckProtocol> = match kind {
            TargetKind::Flit => Box::new(FlitAcks::new(&options.subject)),
            TargetKind::Nats => Box::new(NatsAcks::new(&options.subject, format!("_INBOX.durable.{index}"))),
            TargetKind::Echo => bail!("the durable scenario needs a flit:// or nats:// target"),
        };
        let mut output = BytesMut::new();
        protocol.handshake(&mut output);
        publishers.push(Publisher {
            stream,
            protocol,
            input: BytesMut::with_capacity(READ_CHUNK_BYTES),
            output,
            in_flight: HashMap::with_capacity(options.in_flight),
            next_id: 1,
            ready: false,
        });
    }
    Ok(publishers)
}

fn handshake(poll: &mut Poll, publishers: &mut [Publisher]) -> Result<()> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let mut events = Events::with_capacity(1024);
    while publishers.iter().any(|publisher| !publisher.ready) {
        if Instant::now() > deadline {
            bail!("handshakes did not finish within {SETUP_TIMEOUT:?}");
        }
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        for publisher in publishers.iter_mut() {
            flush(publisher)?;
            read(publisher)?;
            while let Some(event) = publisher.protocol.parse(&mut publisher.input, &mut publisher.output)? {
                match event {
                    AckEvent::Ready => publisher.ready = true,
                    other => bail!("{other:?} before the handshake finished"),
                }
            }
        }
    }
    Ok(())
}

/// Writes what the socket takes; the rest waits for the next writable event.
fn flush(publisher: &mut Publisher) -> Result<()> {
    while !publisher.output.is_empty() {
        match publisher.stream.write(&publisher.output) {
            Ok(0) => bail!("the server closed the connection"),
            Ok(written) => publisher.output.advance(written),
            Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error).context("write"),
        }
    }
    Ok(())
}

/// Reads until the socket would block (the poller is edge-triggered); an end
/// of stream is an error (the server went away). What one read loop can
/// bring is bounded by the publishes in flight.
fn read(publisher: &mut Publisher) -> Result<()> {
    loop {
        let start = publisher.input.len();
        publisher.input.resize(start + 64 * 1024, 0);
        match publisher.stream.read(&mut publisher.input[start..]) {
            Ok(0) => {
                publisher.input.truncate(start);
                bail!("the server closed the connection");
            }
            Ok(count) => publisher.input.truncate(start + count),
            Err(error) => {
                publisher.input.truncate(start);
                if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) {
                    return Ok(());
                }
                return Err(error).context("read");
            }
        }
    }
}

/// The clock and the counts of one run.
struct Run<'a> {
    options: &'a DurableOptions,
    epoch: Instant,
    payload: Vec<u8>,
    histogram: Histogram<u64>,
    warmup_end_ns: u64,
    measure_end_ns: u64,
    sent_total: u64,
    sent_measured: u64,
    acknowledged_measured: u64,
    acknowledged_total: u64,
    refused: u64,
    first_refusal: Option<String>,
}

impl<'a> Run<'a> {
    fn new(options: &'a DurableOptions) -> Run<'a> {
        let counted = options.messages.is_some();
        let warmup = if counted { Duration::ZERO } else { options.warmup };
        let length = if counted { Duration::from_secs(3600) } else { options.warmup + options.duration };
        Run {
            options,
            epoch: Instant::now(),
            payload: vec![0x5a; options.payload_bytes],
            histogram: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds"),
            warmup_end_ns: warmup.as_nanos() as u64,
            measure_end_ns: length.as_nanos() as u64,
            sent_total: 0,
            sent_measured: 0,
            acknowledged_measured: 0,
            acknowledged_total: 0,
            refused: 0,
            first_refusal: None,
        }
    }

    fn may_send(&self, now: u64) -> bool {
        now < self.measure_end_ns && self.options.messages.is_none_or(|messages| self.sent_total < messages)
    }

    fn counted(&self, sent_ns: u64) -> bool {
        sent_ns >= self.warmup_end_ns && sent_ns < self.measure_end_ns
    }

    /// Tops the publisher's window up.
    fn refill(&mut self, publisher: &mut Publisher) {
        let now = now_ns(self.epoch);
        while publisher.in_flight.len() < self.options.in_flight && self.may_send(now) {
            let id = publisher.next_id;
            publisher.next_id += 1;
            let stamp_bytes = self.payload.len().min(8);
            self.payload[..stamp_bytes].copy_from_slice(&id.to_le_bytes()[..stamp_bytes]);
            publisher.protocol.publish(&mut publisher.output, id, &self.payload);
            publisher.in_flight.insert(id, now);
            self.sent_total += 1;
            if self.counted(now) {
                self.sent_measured += 1;
            }
        }
    }

    fn settle(&mut self, publisher: &mut Publisher, id: u64, refusal: Option<String>) -> Result<()> {
        let Some(sent_ns) = publisher.in_flight.remove(&id) else {
            bail!("an acknowledgement for publish {id}, which is not in flight");
        };
        let now = now_ns(self.epoch);
        self.acknowledged_total += 1;
        match refusal {
            Some(reason) => {
                self.refused += 1;
                self.first_refusal.get_or_insert(reason);
            }
            None if self.counted(sent_ns) => {
                self.acknowledged_measured += 1;
                self.histogram.saturating_record(now.saturating_sub(sent_ns).max(1));
            }
            None => {}
        }
        Ok(())
    }

    fn finished(&self, now: u64, in_flight: usize) -> bool {
        match self.options.messages {
            Some(messages) => self.sent_total >= messages && in_flight == 0,
            None => now >= self.measure_end_ns && (in_flight == 0 || now >= self.drain_end_ns()),
        }
    }

    fn drain_end_ns(&self) -> u64 {
        self.measure_end_ns + self.options.drain.as_nanos() as u64
    }

    fn drive(mut self, poll: &mut Poll, publishers: &mut [Publisher]) -> Result<DurableResult> {
        let mut events = Events::with_capacity(1024);
        let timeout = match self.options.idle {
            Idle::Park => Some(Duration::from_millis(1)),
            Idle::Spin => Some(Duration::ZERO),
        };
        self.epoch = Instant::now();
        let mut last_progress = 0;
        for publisher in publishers.iter_mut() {
            self.refill(publisher);
            flush(publisher)?;
        }
        loop {
            poll.poll(&mut events, timeout)?;
            for event in events.iter() {
                let publisher = &mut publishers[event.token().0];
                if event.is_readable() {
                    read(publisher)?;
                    while let Some(event) = publisher.protocol.parse(&mut publisher.input, &mut publisher.output)? {
                        match event {
                            AckEvent::Stored(id) => self.settle(publisher, id, None)?,
                            AckEvent::Refused(id, reason) => self.settle(publisher, id, Some(reason))?,
                            AckEvent::Ready => bail!("a second handshake answer"),
                        }
                    }
                    self.refill(publisher);
                }
                flush(publisher)?;
            }
            let now = now_ns(self.epoch);
            let in_flight: usize = publishers.iter().map(|publisher| publisher.in_flight.len()).sum();
            if self.options.progress && now / 1_000_000_000 > last_progress {
                last_progress = now / 1_000_000_000;
                eprintln!(
                    "[{last_progress:>3}s] sent {:>12}  acknowledged {:>12}",
                    self.sent_total, self.acknowledged_total
                );
            }
            if self.finished(now, in_flight) {
                return Ok(self.result(now, in_flight, publishers.len()));
            }
            if self.options.messages.is_some() && now > self.measure_end_ns {
                bail!("{} of {} messages acknowledged within an hour", self.acknowledged_total, self.sent_total);
            }
        }
    }

    fn result(self, now: u64, in_flight: usize, connections: usize) -> DurableResult {
        let measured_ns = match self.options.messages {
            Some(_) => now,
            None => self.measure_end_ns - self.warmup_end_ns,
        };
        let (sent, acknowledged) = match self.options.messages {
            Some(_) => (self.sent_total, self.acknowledged_total - self.refused),
            None => (self.sent_measured, self.acknowledged_measured),
        };
        DurableResult {
            histogram: self.histogram,
            sent,
            acknowledged,
            refused: self.refused,
            lost: in_flight as u64,
            measured: Duration::from_nanos(measured_ns.max(1)),
            connections,
            first_refusal: self.first_refusal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(messages: Option<u64>) -> DurableOptions {
        DurableOptions {
            subject: "durable.data".into(),
            publishers: 1,
            in_flight: 4,
            payload_bytes: 64,
            duration: Duration::from_secs(1),
            warmup: Duration::from_millis(100),
            drain: Duration::from_millis(100),
            messages,
            idle: Idle::Park,
            progress: false,
        }
    }

    #[test]
    fn a_counted_run_stops_sending_at_its_count_and_ends_when_all_are_acknowledged() {
        let options = options(Some(3));
        let run = Run::new(&options);
        assert!(run.may_send(0));
        let run = Run { sent_total: 3, ..run };
        assert!(!run.may_send(0));
        assert!(!run.finished(0, 1));
        assert!(run.finished(0, 0));
    }

    #[test]
    fn a_timed_run_counts_only_publishes_sent_after_the_warm_up() {
        let options = options(None);
        let run = Run::new(&options);
        assert!(!run.counted(50_000_000));
        assert!(run.counted(200_000_000));
        assert!(!run.counted(1_100_000_000));
        assert!(!run.finished(1_150_000_000, 1), "drains");
        assert!(run.finished(1_150_000_000, 0));
        assert!(run.finished(1_200_000_001, 1), "the drain is bounded");
    }
}
