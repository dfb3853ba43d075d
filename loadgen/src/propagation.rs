//! `--scenario propagation`: how long a new subscription takes to reach the
//! publisher's node, and what a publish sent right after the subscriber's
//! flush loses to it.
//!
//! Two connections: a subscriber on the receiver target (`--receiver-target`,
//! another node of the cluster) and a publisher on `--target`. Each
//! iteration:
//! 1. the subscriber subscribes to a fresh subject and flushes: a ping, and
//!    the flush returns when its pong is read (flit answers a ping once every
//!    shard of its node has the subscription; NATS once the SUB is processed);
//! 2. the publisher publishes on that subject at once (probe 0), then again
//!    every `probe_interval` (probe 1, 2, ...) until the subscriber receives
//!    one, or `timeout` passes;
//! 3. recorded: the time from the flush's return to the first arrival (one
//!    HDR histogram, nanoseconds), which probe arrived first, and how long
//!    the subscribe + flush itself took (`flush_us`). Messages
//!    from one publisher arrive in order, so when probe k arrives first,
//!    probes 0..k were dropped for lack of interest: probe 0 missing is "the
//!    first publish after the flush lost" (`first_publish_lost`; 0 where the
//!    flush is a cluster-wide barrier), and k is added to `publishes_lost`;
//! 4. the subscriber unsubscribes and both connections flush, so nothing of
//!    this iteration is in flight when the next begins (a late probe of an
//!    earlier iteration is recognised by its stamp and ignored).
//!
//! Iterations begun during the warm-up are not recorded. The run ends after
//! `--iterations` recorded iterations, or when `--duration` has passed.
//! The load generator busy-polls both sockets (probes every few tens of µs
//! need a finer clock than a parked poller's millisecond): pin it to a core
//! of its own. Plain TCP only (no TLS, no token).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use hdrhistogram::Histogram;

use crate::engine::SETUP_TIMEOUT;
use crate::protocol::{stamp_of, Inbound, Protocol, STAMP_BYTES};
use crate::report::PropagationCounts;
use crate::target::Addresses;

/// Bytes read per `read` call.
const READ_BYTES: usize = 64 * 1024;

pub struct PropagationOptions {
    pub warmup: Duration,
    pub duration: Duration,
    /// Recorded iterations to run (then `duration` is not a limit).
    pub iterations: Option<u64>,
    /// Time between probes after the first.
    pub probe_interval: Duration,
    /// How long an iteration waits for its first arrival.
    pub timeout: Duration,
    pub payload_bytes: usize,
    pub progress: bool,
}

pub struct PropagationResult {
    /// Flush return -> first arrival, nanoseconds, recorded iterations only.
    pub histogram: Histogram<u64>,
    pub counts: PropagationCounts,
    /// Iterations in which some probe arrived.
    pub arrived: u64,
    pub errors: u64,
    /// From the first recorded iteration's start to the last one's end.
    pub measured: Duration,
}

/// How one iteration ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Probe `probe` arrived first, `latency_ns` after the flush returned.
    Arrived { probe: u64, latency_ns: u64 },
    /// Nothing arrived within the timeout; `probes` were sent.
    TimedOut { probes: u64 },
}

impl PropagationCounts {
    /// Adds one recorded iteration.
    pub fn add(&mut self, outcome: Outcome) {
        self.iterations += 1;
        match outcome {
            Outcome::Arrived { probe, .. } => {
                self.first_publish_lost += u64::from(probe > 0);
                self.publishes_lost += probe;
            }
            Outcome::TimedOut { probes } => {
                self.timeouts += 1;
                self.first_publish_lost += u64::from(probes > 0);
                self.publishes_lost += probes;
            }
        }
    }
}

/// The stamp of a probe: send time (ns since the run's epoch), probe number, iteration.
pub fn probe_stamp(payload: &mut [u8], sent_ns: u64, probe: u64, iteration: u64) {
    payload[0..8].copy_from_slice(&sent_ns.to_le_bytes());
    payload[8..16].copy_from_slice(&probe.to_le_bytes());
    payload[16..24].copy_from_slice(&iteration.to_le_bytes());
}

/// The probe number in `stamp` if it belongs to `iteration` (a late probe of
/// an earlier iteration does not).
pub fn probe_of(stamp: &[u8; STAMP_BYTES], iteration: u64) -> Option<u64> {
    let field = |at: usize| u64::from_le_bytes(stamp[at..at + 8].try_into().expect("8 bytes"));
    (field(16) == iteration).then(|| field(8))
}

/// One connection, non-blocking, driven by busy polling.
struct Link {
    name: &'static str,
    stream: TcpStream,
    protocol: Box<dyn Protocol>,
    input: BytesMut,
    output: BytesMut,
}

impl Link {
    fn connect(name: &'static str, address: SocketAddr, mut protocol: Box<dyn Protocol>) -> Result<Link> {
        let stream = TcpStream::connect_timeout(&address, SETUP_TIMEOUT)
            .with_context(|| format!("connect the {name} to {address}"))?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        protocol.set_needs_reply(false);
        let mut link = Link { name, stream, protocol, input: BytesMut::new(), output: BytesMut::new() };
        link.protocol.handshake(&mut link.output);
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let mut scratch = vec![0u8; READ_BYTES];
        while !link.protocol.handshake_done() {
            link.flush()?;
            if let Some(Inbound::Error(message)) = link.poll(&mut scratch)? {
                bail!("the {name}'s handshake was refused: {message}");
            }
            if Instant::now() >= deadline {
                bail!("the {name}'s handshake did not finish within {SETUP_TIMEOUT:?}");
            }
        }
        Ok(link)
    }

    /// Writes all of `output` (a few small frames), spinning on a full socket.
    fn flush(&mut self) -> Result<()> {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(0) => bail!("the server closed the {}'s connection", self.name),
                Ok(written) => drop(self.output.split_to(written)),
                Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                    if Instant::now() >= deadline {
                        bail!("the {}'s socket stayed full for {SETUP_TIMEOUT:?}", self.name);
                    }
                }
                Err(error) => return Err(error).with_context(|| format!("write on the {}", self.name)),
            }
        }
        Ok(())
    }

    /// The next event: one already buffered, or from one non-blocking read.
    /// Automatic answers (a NATS PONG to a server PING) are written at once.
    fn poll(&mut self, scratch: &mut [u8]) -> Result<Option<Inbound>> {
        let mut event = self.protocol.parse(&mut self.input, &mut self.output)?;
        if event.is_none() {
            match self.stream.read(scratch) {
                Ok(0) => bail!("the server closed the {}'s connection", self.name),
                Ok(read) => {
                    self.input.extend_from_slice(&scratch[..read]);
                    event = self.protocol.parse(&mut self.input, &mut self.output)?;
                }
                Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(error) => return Err(error).with_context(|| format!("read on the {}", self.name)),
            }
        }
        if !self.output.is_empty() {
            self.flush()?;
        }
        Ok(event)
    }

    /// Sends a ping and reads until its pong (deliveries in between are
    /// dropped); returns the server errors seen on the way.
    fn round_trip(&mut self, scratch: &mut [u8]) -> Result<u64> {
        self.protocol.ping(&mut self.output);
        self.flush()?;
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let mut errors = 0;
        loop {
            match self.poll(scratch)? {
                Some(Inbound::Pong) => return Ok(errors),
                Some(Inbound::Error(message)) => {
                    errors += 1;
                    eprintln!("flit-loadgen: {}: server error: {message}", self.name);
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                bail!("the {}'s pong did not come within {SETUP_TIMEOUT:?}", self.name);
            }
        }
    }
}

/// Runs the scenario: the subscriber on `addresses.receiver`, the publisher
/// on `addresses.sender`.
pub fn run(
    addresses: Addresses,
    make_protocol: impl Fn() -> Box<dyn Protocol>,
    options: &PropagationOptions,
) -> Result<PropagationResult> {
    if options.payload_bytes < STAMP_BYTES {
        bail!("--payload must be at least {STAMP_BYTES} bytes");
    }
    let mut subscriber = Link::connect("subscriber", addresses.receiver, make_protocol())?;
    let mut publisher = Link::connect("publisher", addresses.sender, make_protocol())?;
    let mut scratch = vec![0u8; READ_BYTES];
    let mut errors = subscriber.round_trip(&mut scratch)? + publisher.round_trip(&mut scratch)?;
    let mut histogram = Histogram::new_with_bounds(1, 60_000_000_000, 3).context("histogram")?;
    let mut flush_histogram = histogram.clone();
    let mut counts = PropagationCounts {
        probe_interval_us: options.probe_interval.as_secs_f64() * 1e6,
        ..PropagationCounts::default()
    };
    let mut arrived = 0;
    let mut payload = vec![0u8; options.payload_bytes];
    let prefix = format!("loadgen.propagation.{}", std::process::id());
    let epoch = Instant::now();
    let warmup_end = epoch + options.warmup;
    let end = warmup_end + options.duration;
    let mut measured_from: Option<Instant> = None;
    let mut next_progress = epoch + Duration::from_secs(1);
    for iteration in 0.. {
        let started = Instant::now();
        let done = match options.iterations {
            Some(iterations) => counts.iterations >= iterations,
            None => started >= end,
        };
        if done {
            break;
        }
        let recorded = started >= warmup_end;
        if recorded {
            measured_from.get_or_insert(started);
        }
        let subject = format!("{prefix}.{iteration}");
        let subscription_id = iteration + 1;
        let subscribing = Instant::now();
        subscriber.protocol.subscribe(&mut subscriber.output, &subject, None, subscription_id);
        errors += subscriber.round_trip(&mut scratch)?;
        let flushed = Instant::now();
        let mut probe = 0u64;
        let mut next_probe = flushed;
        let outcome = loop {
            let now = Instant::now();
            if now >= next_probe {
                probe_stamp(&mut payload, (now - epoch).as_nanos() as u64, probe, iteration);
                publisher.protocol.publish(&mut publisher.output, &subject, None, &payload);
                publisher.flush()?;
                probe += 1;
                next_probe = now + options.probe_interval;
            }
            let event = subscriber.poll(&mut scratch)?;
            let arrival = Instant::now();
            let stamp = match event {
                Some(Inbound::Stamp(stamp)) => Some(stamp),
                Some(Inbound::Message { payload, .. }) => stamp_of(&payload),
                Some(Inbound::Error(message)) => {
                    errors += 1;
                    eprintln!("flit-loadgen: subscriber: server error: {message}");
                    None
                }
                Some(Inbound::Pong) | None => None,
            };
            if let Some(first) = stamp.and_then(|stamp| probe_of(&stamp, iteration)) {
                break Outcome::Arrived { probe: first, latency_ns: (arrival - flushed).as_nanos() as u64 };
            }
            if let Some(Inbound::Error(message)) = publisher.poll(&mut scratch)? {
                errors += 1;
                eprintln!("flit-loadgen: publisher: server error: {message}");
            }
            if arrival - flushed >= options.timeout {
                break Outcome::TimedOut { probes: probe };
            }
        };
        if recorded {
            counts.add(outcome);
            flush_histogram.saturating_record(((flushed - subscribing).as_nanos() as u64).max(1));
            if let Outcome::Arrived { latency_ns, .. } = outcome {
                arrived += 1;
                histogram.saturating_record(latency_ns.max(1));
            }
        }
        subscriber.protocol.unsubscribe(&mut subscriber.output, subscription_id);
        errors += subscriber.round_trip(&mut scratch)?;
        errors += publisher.round_trip(&mut scratch)?;
        if options.progress && Instant::now() >= next_progress {
            eprintln!(
                "[{:>3}s] iterations {:>8}  first publish lost {:>8}",
                (next_progress - epoch).as_secs(),
                counts.iterations,
                counts.first_publish_lost
            );
            next_progress += Duration::from_secs(1);
        }
    }
    let measured = measured_from.map_or(Duration::ZERO, |from| from.elapsed());
    counts.flush_us = crate::report::latency_from_histogram(&flush_histogram);
    Ok(PropagationResult { histogram, counts, arrived, errors, measured })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_recognised_by_its_iteration() {
        let mut payload = [0u8; 64];
        probe_stamp(&mut payload, 123_456, 3, 17);
        let stamp = stamp_of(&payload).expect("a stamp");
        assert_eq!(probe_of(&stamp, 17), Some(3));
        assert_eq!(probe_of(&stamp, 16), None, "a late probe of another iteration");
    }

    #[test]
    fn counts_lost_probes_before_the_first_arrival() {
        let mut counts = PropagationCounts::default();
        counts.add(Outcome::Arrived { probe: 0, latency_ns: 40_000 });
        assert_eq!((counts.iterations, counts.first_publish_lost, counts.publishes_lost), (1, 0, 0));
        counts.add(Outcome::Arrived { probe: 4, latency_ns: 240_000 });
        assert_eq!((counts.iterations, counts.first_publish_lost, counts.publishes_lost), (2, 1, 4));
        counts.add(Outcome::TimedOut { probes: 10 });
        assert_eq!((counts.iterations, counts.first_publish_lost, counts.publishes_lost), (3, 2, 14));
        assert_eq!(counts.timeouts, 1);
    }
}
