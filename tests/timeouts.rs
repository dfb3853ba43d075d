//! Timeouts and the server-wide connection limit: a client that never says
//! Hello gets `handshake_timeout` (304), one that starts a frame and stalls
//! gets `stalled_frame` (306), a silent one is pinged at half the idle
//! timeout and closed with `idle_timeout` (305) at the whole; the Rust
//! client answers the pings and stays connected; past `connections_max`
//! new connections get `too_many_connections` (302). Each with 1 and 2 shards.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{FlitServer, RawConnection, SHARD_COUNTS};
use flit_wire::{ErrorCode, Frame};

/// Reads frames to the close; returns (frames before the Error, the Error's code, when it came).
fn read_until_error(connection: &mut RawConnection) -> (Vec<Frame>, Option<u16>, Instant) {
    let mut frames = Vec::new();
    while let Some(frame) = connection.read_frame() {
        if let Frame::Error(error) = frame {
            return (frames, Some(error.code), Instant::now());
        }
        frames.push(frame);
    }
    (frames, None, Instant::now())
}

#[test]
fn a_client_that_never_says_hello_is_closed_after_the_handshake_timeout() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &["--handshake-timeout-ms", "300"]);
        let started = Instant::now();
        let mut connection = RawConnection::connect_without_hello(server.address);
        let (frames, code, at) = read_until_error(&mut connection);
        assert!(frames.is_empty(), "shards={shards}: {frames:?}");
        assert_eq!(code, Some(ErrorCode::HandshakeTimeout.as_u16()), "shards={shards}");
        let waited = at - started;
        assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(3), "shards={shards}: {waited:?}");
    }
}

/// A sweep checks 256 connection slots a step (shard/timeouts.rs): with
/// more connections than that on a shard, every one must still be reached
/// within a sweep interval (250 ms) of its timeout.
#[test]
fn a_timeout_reaches_every_connection_when_a_sweep_takes_several_steps() {
    const SILENT_CONNECTIONS: usize = 700;
    let server = FlitServer::start(1, &["--handshake-timeout-ms", "300"]);
    let started = Instant::now();
    let mut connections: Vec<_> =
        (0..SILENT_CONNECTIONS).map(|_| RawConnection::connect_without_hello(server.address)).collect();
    let opened_in = started.elapsed();
    for (index, connection) in connections.iter_mut().enumerate() {
        let (frames, code, at) = read_until_error(connection);
        assert!(frames.is_empty(), "connection {index}: {frames:?}");
        assert_eq!(code, Some(ErrorCode::HandshakeTimeout.as_u16()), "connection {index}");
        // Opened by `opened_in`, timed out 300 ms later, found within one
        // sweep (250 ms) of that; the rest is slack for a loaded machine.
        let waited = at - started;
        assert!(
            waited < opened_in + Duration::from_millis(300 + 250 + 1500),
            "connection {index} closed {waited:?} after the first opened ({opened_in:?} to open all)"
        );
    }
}

#[test]
fn a_frame_that_stops_halfway_is_closed_after_the_frame_timeout() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &["--frame-timeout-ms", "300"]);
        let mut connection = RawConnection::connect(server.address);
        // The header of a 100-byte Publish, then nothing.
        let header = flit_wire::FrameHeader { body_len: 100, op: flit_wire::Op::Publish, meta_len: 50, tag: 0 };
        let started = Instant::now();
        connection.stream.write_all(&header.to_bytes()[..10]).expect("send half a header");
        let (frames, code, at) = read_until_error(&mut connection);
        assert!(frames.is_empty(), "shards={shards}: {frames:?}");
        assert_eq!(code, Some(ErrorCode::StalledFrame.as_u16()), "shards={shards}");
        assert!(at - started >= Duration::from_millis(300), "shards={shards}");
    }
}

#[test]
fn a_silent_client_is_pinged_then_closed_and_a_live_one_stays() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &["--idle-timeout-ms", "800"]);
        let live = server.client();
        let subscription = live.subscribe("alive.>").expect("subscribe");
        live.flush().expect("flush");
        let mut silent = RawConnection::connect(server.address);
        let started = Instant::now();
        let (frames, code, at) = read_until_error(&mut silent);
        assert_eq!(frames, vec![Frame::Ping], "shards={shards}: pinged once, halfway");
        assert_eq!(code, Some(ErrorCode::IdleTimeout.as_u16()), "shards={shards}");
        assert!(at - started >= Duration::from_millis(800), "shards={shards}");
        // The client that answered the pings is still connected, past two
        // idle timeouts, without having sent anything of its own.
        std::thread::sleep(Duration::from_millis(900));
        live.publish("alive.check", b"x").expect("publish");
        let message = common::next_message(&subscription);
        assert_eq!(&message.payload[..], b"x", "shards={shards}");
    }
}

#[test]
fn connections_past_the_server_limit_are_refused() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &["--connections-max", "3"]);
        let kept: Vec<_> = (0..3).map(|_| server.client()).collect();
        let mut refused = RawConnection::connect_without_hello(server.address);
        let (_, code, _) = read_until_error(&mut refused);
        assert_eq!(code, Some(ErrorCode::TooManyConnections.as_u16()), "shards={shards}");
        // A slot frees when a client leaves.
        drop(kept);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match flit_client::Client::connect(server.address) {
                Ok(client) => {
                    client.flush().expect("the new client works");
                    break;
                }
                Err(error) => assert!(Instant::now() < deadline, "shards={shards}: no slot freed: {error}"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
