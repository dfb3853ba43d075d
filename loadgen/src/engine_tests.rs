//! The engine against tiny fake servers in this file: raw TCP echoes on
//! 127.0.0.1 that misbehave on purpose (stall once, drop every tenth
//! payload), so what the engine counts and records can be checked against
//! what the server is known to have done.
//!
//! Every server and every run is bounded in time: a server accepts one
//! connection within [`ACCEPT_TIMEOUT`], serves it for at most
//! [`SERVER_LIFETIME`], and stops at the engine's end of stream; a run is
//! bounded by its duration and drain.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Engine, RunResult};
use crate::protocol::echo::EchoProtocol;
use crate::scenario::{Idle, RunOptions, ScenarioKind};
use crate::target::{Addresses, TargetKind};

const PAYLOAD_BYTES: usize = 64;
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer than any run below (duration + drain), so a server outlives its engine.
const SERVER_LIFETIME: Duration = Duration::from_secs(20);
/// How long a server's read blocks before it looks at the clock again.
const READ_TICK: Duration = Duration::from_millis(20);
const NANOS_PER_MILLI: u64 = 1_000_000;

/// The tests that reason about latency run one at a time: on a small machine
/// a closed loop running beside them takes the cores their clocks depend on.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A fake server: one connection, served by `serve` on its own thread, which
/// returns what the server counted.
struct FakeServer {
    address: SocketAddr,
    thread: JoinHandle<u64>,
}

impl FakeServer {
    fn spawn(serve: impl FnOnce(TcpStream) -> u64 + Send + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("local address");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + ACCEPT_TIMEOUT;
            let stream = loop {
                match listener.accept() {
                    Ok((stream, _)) => break stream,
                    Err(error) if error.kind() == ErrorKind::WouldBlock => {
                        assert!(Instant::now() < deadline, "no connection within {ACCEPT_TIMEOUT:?}");
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(error) => panic!("accept: {error}"),
                }
            };
            stream.set_nonblocking(false).expect("blocking stream");
            stream.set_nodelay(true).expect("nodelay");
            stream.set_read_timeout(Some(READ_TICK)).expect("read timeout");
            serve(stream)
        });
        FakeServer { address, thread }
    }

    /// Waits for the server to see the engine's end of stream (bounded by
    /// [`SERVER_LIFETIME`]) and returns its count.
    fn join(self) -> u64 {
        self.thread.join().expect("the fake server panicked")
    }
}

/// Reads what is there: `Some(0)` at end of stream or after `deadline`,
/// `None` when nothing arrived within a [`READ_TICK`].
fn read_some(stream: &mut TcpStream, buffer: &mut [u8], deadline: Instant) -> Option<usize> {
    if Instant::now() >= deadline {
        return Some(0);
    }
    match stream.read(buffer) {
        Ok(read) => Some(read),
        Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {
            None
        }
        // A reset by the engine closing with unread echoes is an end too.
        Err(_) => Some(0),
    }
}

/// Echoes everything, except that the first read at or after `stall_after`
/// (from the connection's accept) sleeps `stall` before it is echoed: TCP
/// buffers whatever the engine sends meanwhile. Returns the bytes echoed.
fn echo_with_one_stall(mut stream: TcpStream, stall_after: Duration, stall: Duration) -> u64 {
    let accepted = Instant::now();
    let deadline = accepted + SERVER_LIFETIME;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut stalled = false;
    let mut echoed_bytes = 0;
    loop {
        let read = match read_some(&mut stream, &mut buffer, deadline) {
            None => continue,
            Some(0) => return echoed_bytes,
            Some(read) => read,
        };
        if !stalled && accepted.elapsed() >= stall_after {
            stalled = true;
            std::thread::sleep(stall);
        }
        if stream.write_all(&buffer[..read]).is_err() {
            return echoed_bytes;
        }
        echoed_bytes += read as u64;
    }
}

/// Cuts the stream into `PAYLOAD_BYTES` payloads and echoes each, except
/// every tenth (the 10th, 20th, ...), which it drops. Returns how many it dropped.
fn echo_dropping_every_tenth(mut stream: TcpStream) -> u64 {
    let deadline = Instant::now() + SERVER_LIFETIME;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::with_capacity(2 * buffer.len());
    let mut echo: Vec<u8> = Vec::with_capacity(buffer.len());
    let (mut payloads, mut dropped) = (0_u64, 0_u64);
    loop {
        let read = match read_some(&mut stream, &mut buffer, deadline) {
            None => continue,
            Some(0) => break,
            Some(read) => read,
        };
        pending.extend_from_slice(&buffer[..read]);
        let whole = pending.len() / PAYLOAD_BYTES * PAYLOAD_BYTES;
        echo.clear();
        for payload in pending[..whole].chunks_exact(PAYLOAD_BYTES) {
            payloads += 1;
            if payloads % 10 == 0 {
                dropped += 1;
            } else {
                echo.extend_from_slice(payload);
            }
        }
        pending.drain(..whole);
        if stream.write_all(&echo).is_err() {
            break;
        }
    }
    assert!(pending.is_empty(), "{} bytes of a partial payload at the end", pending.len());
    assert_eq!(dropped, payloads / 10);
    dropped
}

/// Answers like nats-server on one core: it reads until its socket is empty,
/// and only then writes back everything that batch held, in one write (its
/// writer runs only once its reader has nothing left to read). Returns the
/// smallest batch, in payloads, after the first one, or `u64::MAX` if there
/// was no later batch.
fn echo_in_batches(mut stream: TcpStream) -> u64 {
    let deadline = Instant::now() + SERVER_LIFETIME;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut batch: Vec<u8> = Vec::with_capacity(buffer.len());
    let mut batches = 0_u64;
    let mut smallest_later = u64::MAX;
    loop {
        let read = match read_some(&mut stream, &mut buffer, deadline) {
            None => continue,
            Some(0) => return smallest_later,
            Some(read) => read,
        };
        batch.clear();
        batch.extend_from_slice(&buffer[..read]);
        stream.set_nonblocking(true).expect("non-blocking");
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => batch.extend_from_slice(&buffer[..read]),
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        stream.set_nonblocking(false).expect("blocking");
        batches += 1;
        if batches > 1 {
            smallest_later = smallest_later.min((batch.len() / PAYLOAD_BYTES) as u64);
        }
        if stream.write_all(&batch).is_err() {
            return smallest_later;
        }
    }
}

fn echo_everything(stream: TcpStream) -> u64 {
    echo_with_one_stall(stream, SERVER_LIFETIME, Duration::ZERO)
}

/// Request/reply against an echo: one requester connection, no responder.
fn reqrep_options(rate: u64, duration: Duration, drain: Duration) -> RunOptions {
    RunOptions {
        scenario: ScenarioKind::Reqrep,
        rate,
        duration,
        warmup: Duration::ZERO,
        drain,
        payload_bytes: PAYLOAD_BYTES,
        window: 1,
        idle: Idle::Park,
        requesters: 1,
        responders: 1,
        queue_responders: false,
        subscribers: 1,
        connections: 0,
        settle: Duration::ZERO,
        progress: false,
        tls: None,
    }
}

fn run_against(server: &FakeServer, options: RunOptions) -> RunResult {
    let plan = options.plan(TargetKind::Echo).expect("an echo plan");
    assert_eq!(plan.roles.len(), 1, "an echo run is one requester");
    let engine =
        Engine::connect(Addresses::same(server.address), plan, options, || Box::new(EchoProtocol::new(PAYLOAD_BYTES)))
            .expect("connect to the fake server");
    engine.run(None).expect("run")
}

fn samples_at_or_above(result: &RunResult, latency_ns_min: u64) -> u64 {
    result.histogram.count_between(latency_ns_min, result.histogram.high())
}

#[test]
fn open_loop_charges_a_stall_to_every_message_scheduled_during_it() {
    let _serial = serial();
    const RATE: u64 = 1000;
    const STALL_MS: u64 = 300;
    const THRESHOLD_MS: u64 = 100;
    let stall = Duration::from_millis(STALL_MS);
    let duration = Duration::from_millis(1500);

    let server = FakeServer::spawn(move |stream| echo_with_one_stall(stream, Duration::from_millis(500), stall));
    let open = run_against(&server, reqrep_options(RATE, duration, Duration::from_secs(2)));
    server.join();

    // The schedule is 1500 messages; the loop sends each one, stall or not
    // (a few at the very end may miss the deadline on a busy machine).
    let scheduled = RATE * duration.as_millis() as u64 / 1000;
    assert!(open.sent <= scheduled && open.sent >= scheduled * 95 / 100, "sent {} of {scheduled}", open.sent);
    assert_eq!(open.received, open.sent);
    assert_eq!(open.lost, 0);
    assert_eq!(open.errors, 0);
    assert_eq!(open.histogram.len(), open.sent, "one sample per message: nothing omitted");
    // A message scheduled at t during a stall [S, S + 300 ms] waits until
    // S + 300 ms, so every message of the stall's first 200 ms waits at least
    // 100 ms: RATE × (stall − threshold) = 200 samples, 140 with a 0.7 margin
    // (delays on a busy machine only add to it).
    let expected = RATE * (STALL_MS - THRESHOLD_MS) / 1000;
    let slow = samples_at_or_above(&open, THRESHOLD_MS * NANOS_PER_MILLI);
    assert!(slow >= expected * 7 / 10, "{slow} samples ≥ {THRESHOLD_MS} ms, expected about {expected}");
    // The message scheduled as the stall began waited all of it.
    assert!(open.histogram.max() >= (STALL_MS - 50) * NANOS_PER_MILLI, "max {} ns", open.histogram.max());

    // The same stall seen by a closed loop (window 1): the one request in
    // flight waits 300 ms, and the loop sends nothing else until it returns,
    // so the stall shows as one slow sample among thousands of fast ones.
    // This is coordinated omission: the messages a real client would have
    // sent during the stall are never sent, so their latency is never
    // recorded. The open loop above records them.
    let server = FakeServer::spawn(move |stream| echo_with_one_stall(stream, Duration::from_millis(500), stall));
    let closed = run_against(&server, reqrep_options(0, duration, Duration::from_secs(2)));
    server.join();
    assert_eq!(closed.lost, 0);
    assert_eq!(closed.received, closed.sent);
    let slow = samples_at_or_above(&closed, THRESHOLD_MS * NANOS_PER_MILLI);
    assert!((1..=3).contains(&slow), "closed loop: {slow} samples ≥ {THRESHOLD_MS} ms, expected 1 (at most 3)");
}

#[test]
fn lost_messages_are_counted_exactly() {
    let _serial = serial();
    let server = FakeServer::spawn(echo_dropping_every_tenth);
    let result = run_against(&server, reqrep_options(2000, Duration::from_secs(1), Duration::from_millis(300)));
    let dropped = server.join();
    // Warm-up is 0, so every message sent is in the measured window.
    assert!(result.sent >= 1900, "sent {} of 2000", result.sent);
    assert_eq!(dropped, result.sent / 10, "the server saw every message");
    assert_eq!(result.lost, dropped, "lost is exactly what the server dropped");
    assert_eq!(result.received + result.lost, result.sent);
    assert_eq!(result.histogram.len(), result.received);
    assert_eq!(result.errors, 0);
}

#[test]
fn histogram_records_round_trip_of_an_echo() {
    let _serial = serial();
    let server = FakeServer::spawn(echo_everything);
    let result = run_against(&server, reqrep_options(0, Duration::from_millis(500), Duration::from_secs(1)));
    let echoed_bytes = server.join();
    assert!(result.sent > 100, "sent {}", result.sent);
    assert_eq!(result.lost, 0);
    assert_eq!(result.received, result.sent);
    assert_eq!(result.errors, 0);
    assert_eq!(result.histogram.len(), result.received);
    assert!(echoed_bytes >= result.sent * PAYLOAD_BYTES as u64);
    assert!(result.histogram.value_at_quantile(0.5) > 0);
    assert!(result.histogram.max() < 1_000_000_000, "max {} ns", result.histogram.max());
    assert_eq!(result.connections, 1);
}

#[test]
fn a_window_answered_in_one_burst_is_refilled_while_the_burst_is_read() {
    let _serial = serial();
    const WINDOW: usize = 64;
    let server = FakeServer::spawn(echo_in_batches);
    let options =
        RunOptions { window: WINDOW, ..reqrep_options(0, Duration::from_millis(300), Duration::from_secs(1)) };
    let plan = options.plan(TargetKind::Echo).expect("an echo plan");
    let mut engine =
        Engine::connect(Addresses::same(server.address), plan, options, || Box::new(EchoProtocol::new(PAYLOAD_BYTES)))
            .expect("connect to the fake server");
    // One payload per read: the burst of WINDOW answers takes WINDOW reads.
    engine.set_read_chunk_bytes(PAYLOAD_BYTES);
    let result = engine.run(None).expect("run");
    let smallest_later_batch = server.join();
    assert_eq!(result.lost, 0);
    assert_eq!(result.received, result.sent);
    assert!(result.sent > 10 * WINDOW as u64, "sent {}", result.sent);
    // Each answer makes room for one request, sent before the next read: so
    // the server, which waits for a quiet socket, sees smaller batches than
    // the window. Sending only once the whole burst had been read put the
    // window back in one write, and the two took turns with full windows
    // (every batch exactly WINDOW) for the whole run.
    assert!(
        smallest_later_batch < WINDOW as u64,
        "every batch the server saw after the first held the whole window ({smallest_later_batch} payloads)"
    );
}
