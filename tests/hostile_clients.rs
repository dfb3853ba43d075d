//! Hostile clients against a server with tight limits, while a well-behaved
//! requester and responder run a request/reply loop that must keep
//! succeeding: random bytes, a 4 GiB length prefix, a frame that stops
//! halfway (slowloris), 2,000 connections opened at once beyond the limit, a
//! subscriber that never reads under a flood, and a publisher above its rate
//! limit. Every hostile client must get its specific error code; the good
//! loop must lose nothing; the server's peak RSS must stay under a bound
//! derived from the limits.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{metric_sum, scrape, FlitServer, RawConnection};
use flit_wire::{ErrorCode, Frame, FrameHeader, Op};
use rand::RngCore;

const SHARDS: usize = 2;
const CONNECTIONS_MAX: usize = 300;
const PAYLOAD_BYTES_MAX: usize = 64 * 1024;
const PENDING_BYTES_MAX: usize = 256 * 1024;
/// Connections opened at once, far beyond `CONNECTIONS_MAX`.
const STORM_CONNECTIONS: usize = 2_000;

fn start() -> FlitServer {
    FlitServer::start(
        SHARDS,
        &[
            "--metrics",
            "127.0.0.1:0",
            "--connections-max",
            &CONNECTIONS_MAX.to_string(),
            "--max-payload",
            &PAYLOAD_BYTES_MAX.to_string(),
            "--pending-bytes-max",
            &PENDING_BYTES_MAX.to_string(),
            "--handshake-timeout-ms",
            "1000",
            "--frame-timeout-ms",
            "1000",
            "--rate-messages-per-second",
            "20000",
        ],
    )
}

/// The first Error code a connection receives before it closes, if any.
fn error_code_of(connection: &mut RawConnection) -> Option<u16> {
    connection.stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    while let Some(frame) = connection.read_frame_lenient() {
        if let Frame::Error(error) = frame {
            return Some(error.code);
        }
    }
    None
}

/// Peak resident memory of a process, in KiB (VmHWM).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).expect("value").parse().expect("a number")
}

fn raise_file_limit() {
    let (soft, hard) = rlimit::Resource::NOFILE.get().expect("getrlimit");
    let wanted = (STORM_CONNECTIONS as u64 * 3).min(hard);
    if soft < wanted {
        rlimit::Resource::NOFILE.set(wanted, hard).expect("setrlimit");
    }
}

#[test]
fn hostile_clients_get_their_codes_and_the_good_client_loses_nothing() {
    raise_file_limit();
    let server = start();
    let metrics = server.metrics_address.expect("metrics");
    let baseline_kib = peak_rss_kib(server.pid());

    // The good pair: a responder and a requester in a loop.
    let responder = server.client();
    let requests = responder.subscribe("good.service").expect("subscribe");
    responder.flush().expect("flush");
    let stop = Arc::new(AtomicBool::new(false));
    let responder_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(Some(request)) = requests.next_timeout(Duration::from_millis(50)) {
                    request.respond(&responder, &request.payload).expect("respond");
                }
            }
        })
    };
    let requester = server.client();
    let requester_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut succeeded, mut failed) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let payload = succeeded.to_le_bytes();
                match requester.request("good.service", &payload, Duration::from_secs(5)) {
                    Ok(answer) if answer.payload[..] == payload => succeeded += 1,
                    Ok(answer) => failed.push(format!("wrong answer {:?}", answer.payload)),
                    Err(error) => failed.push(error.to_string()),
                }
            }
            (succeeded, failed)
        })
    };

    // 1. Random bytes.
    let mut random_codes = Vec::new();
    for _ in 0..10 {
        let mut connection = RawConnection::connect(server.address);
        let mut garbage = vec![0u8; 4096];
        rand::rng().fill_bytes(&mut garbage);
        let _ = connection.stream.write_all(&garbage);
        random_codes.push(error_code_of(&mut connection));
    }
    for code in &random_codes {
        let code = code.expect("random bytes get an Error frame");
        assert!((100..200).contains(&code), "a frame-level code, got {code}");
    }

    // 2. A 4 GiB length prefix.
    let mut connection = RawConnection::connect(server.address);
    connection.stream.write_all(&u32::MAX.to_le_bytes()).expect("send");
    assert_eq!(error_code_of(&mut connection), Some(ErrorCode::FrameTooLarge.as_u16()));

    // 3. Slowloris: half a frame, then nothing.
    let mut slow = RawConnection::connect(server.address);
    let header = FrameHeader { body_len: 1000, op: Op::Publish, meta_len: 100, tag: 0 };
    slow.stream.write_all(&header.to_bytes()).expect("send header");
    slow.stream.write_all(&[0u8; 200]).expect("send part of the body");
    assert_eq!(error_code_of(&mut slow), Some(ErrorCode::StalledFrame.as_u16()));

    // 4. A subscriber that never reads, under a flood.
    let mut sleeper = RawConnection::connect(server.address);
    sleeper.subscribe_and_flush("flood.>", 1);
    let flooder = server.client();
    let chunk = vec![b'f'; 8 * 1024];
    let flood_deadline = Instant::now() + Duration::from_secs(20);
    while metric_sum(&scrape(metrics), "flit_shard_slow_consumer_evictions_total", &[]) == 0.0 {
        assert!(Instant::now() < flood_deadline, "the sleeping subscriber was never evicted");
        for _ in 0..200 {
            flooder.publish("flood.data", &chunk).expect("flood");
        }
        let _ = flooder.flush();
    }
    drop(flooder);
    assert_eq!(error_code_of(&mut sleeper), Some(ErrorCode::SlowConsumer.as_u16()));

    // 5. A publisher above its rate limit (20,000/s per connection, burst
    // 20,000): 100,000 as fast as it can.
    let greedy = server.client();
    for _ in 0..100_000 {
        greedy.publish("greedy.x", b"x").expect("buffered");
    }
    greedy.flush().expect("refusals leave the connection open");
    assert!(greedy.statistics().refused_by_server > 0, "the greedy publisher was refused");
    let refused = metric_sum(&scrape(metrics), "flit_shard_errors_total", &[("code", "rate_limited")]);
    assert_eq!(refused, greedy.statistics().refused_by_server as f64, "each refusal is counted");

    // 6. 2,000 connections at once, far beyond connections_max.
    let storm: Vec<TcpStream> =
        (0..STORM_CONNECTIONS).filter_map(|_| TcpStream::connect(server.address).ok()).collect();
    let mut storm_codes = std::collections::BTreeMap::new();
    for stream in storm {
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut connection = RawConnection::from_stream(stream);
        let code = error_code_of(&mut connection);
        *storm_codes.entry(code).or_insert(0usize) += 1;
        let _ = connection.stream.read(&mut [0u8; 1]);
    }
    let refused = storm_codes.get(&Some(ErrorCode::TooManyConnections.as_u16())).copied().unwrap_or(0);
    let timed_out = storm_codes.get(&Some(ErrorCode::HandshakeTimeout.as_u16())).copied().unwrap_or(0);
    assert_eq!(refused + timed_out, STORM_CONNECTIONS, "every storm connection got 302 or 304: {storm_codes:?}");
    assert!(refused >= STORM_CONNECTIONS - CONNECTIONS_MAX, "{storm_codes:?}");

    // The good loop lost nothing, and kept going throughout.
    stop.store(true, Ordering::Relaxed);
    let (succeeded, failed) = requester_thread.join().expect("requester");
    responder_thread.join().expect("responder");
    assert!(failed.is_empty(), "the good client saw failures: {failed:?}");
    assert!(succeeded > 100, "the good loop ran: {succeeded} requests");

    // Memory stayed within what the limits allow: every connection at its
    // largest read buffer (a whole largest frame) and pending limit.
    let frame_bytes_max = 16 + 65_535 + PAYLOAD_BYTES_MAX;
    let per_connection_kib = ((PENDING_BYTES_MAX + 2 * frame_bytes_max + 64 * 1024) / 1024) as u64;
    let bound_kib = baseline_kib + CONNECTIONS_MAX as u64 * per_connection_kib;
    let peak_kib = peak_rss_kib(server.pid());
    assert!(peak_kib <= bound_kib, "peak RSS {peak_kib} KiB over the bound {bound_kib} KiB");
    eprintln!(
        "hostile_clients: good requests {succeeded}, storm {storm_codes:?}, peak RSS {peak_kib} KiB (baseline \
         {baseline_kib}, bound {bound_kib})"
    );
    let (code, stderr) = server.stop();
    assert_eq!(code, Some(0), "{stderr}");
}
