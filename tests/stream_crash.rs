//! Crash safety of `always` streams: clients publish with acknowledgements
//! while the router is killed with SIGKILL at a random moment; it restarts on
//! the same data directory, and every message it acknowledged must be there
//! exactly once, in order, at the sequence it was acknowledged with, and the
//! sequences must be contiguous from 1.
//!
//! `FLIT_CRASH_CYCLES` sets the number of kill/restart cycles (default 10,
//! as CI runs it); `FLIT_CRASH_SEED` replays a run (the seed is printed).
//! The full count is run by hand and recorded in docs/TESTING.md.
//!
//! Two shards and publishers on both, so acknowledgements cross the mesh;
//! each publisher keeps up to 64 publishes in flight, so commits group.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::FlitServer;
use flit_wire::stream::{
    decode_stream, AckPolicy, ConsumerConfigSpec, Fetch, StreamCommand, StreamFrame, StreamRequest,
};
use flit_wire::{check, decode, Check, Encoder, Frame, Hello, Limits, Op, PROTOCOL_VERSION};
use rand::{Rng, SeedableRng};

const IN_FLIGHT_MAX: usize = 64;
const PUBLISHERS: usize = 3;

/// A version-2 connection reading frames of every op.
struct Connection {
    stream: TcpStream,
    buffer: BytesMut,
    encoder: Encoder,
}

enum Incoming {
    Stream(StreamFrame),
    Other(Frame),
}

impl Connection {
    fn connect(address: SocketAddr) -> Option<Connection> {
        let stream = TcpStream::connect(address).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut connection = Connection { stream, buffer: BytesMut::new(), encoder: Encoder::default() };
        let mut hello = BytesMut::new();
        let hello_frame = Hello {
            version_min: PROTOCOL_VERSION,
            version_max: PROTOCOL_VERSION,
            client_name: Some("crash-test".into()),
            auth_token: None,
            ack_mode: false,
        };
        connection.encoder.hello(&mut hello, &hello_frame).expect("hello");
        connection.stream.write_all(&hello).ok()?;
        match connection.read()? {
            Incoming::Other(Frame::Welcome(_)) => Some(connection),
            _ => None,
        }
    }

    /// The next frame; None when the connection ended (killed server).
    fn read(&mut self) -> Option<Incoming> {
        let limits = Limits::default();
        loop {
            match check(&self.buffer, limits.frame_bytes_max()) {
                Check::Complete(length) => {
                    let frame = self.buffer.split_to(length).freeze();
                    let op = Op::from_u8(frame[4]).expect("a known op");
                    return Some(if flit_wire::stream::is_stream_op(op) {
                        Incoming::Stream(decode_stream(frame, &limits).expect("stream frames decode"))
                    } else {
                        Incoming::Other(decode(frame, &limits).expect("frames decode"))
                    });
                }
                Check::Invalid(error) => panic!("invalid frame from the server: {error}"),
                Check::Incomplete => {}
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
            }
        }
    }

    fn publish(&mut self, subject: &str, payload: &[u8], tag: u64) -> bool {
        let mut frame = BytesMut::new();
        self.encoder.publish(&mut frame, subject.as_bytes(), None, None, payload).expect("publish");
        frame[8..16].copy_from_slice(&tag.to_le_bytes());
        self.stream.write_all(&frame).is_ok()
    }

    fn request(&mut self, command: StreamCommand, request_id: u64) -> flit_wire::stream::StreamReply {
        let mut frame = BytesMut::new();
        self.encoder.stream_request(&mut frame, &StreamRequest { request_id, command }).expect("request");
        self.stream.write_all(&frame).expect("send request");
        loop {
            match self.read().expect("a reply") {
                Incoming::Stream(StreamFrame::Reply(reply)) if reply.request_id == request_id => return reply,
                _ => continue,
            }
        }
    }
}

/// Publishes with acknowledgements until the connection breaks; returns
/// (payload id, acknowledged sequence) for every acknowledged publish.
fn publish_until_killed(address: SocketAddr, next_id: Arc<AtomicU64>) -> Vec<(u64, u64)> {
    let Some(mut connection) = Connection::connect(address) else { return Vec::new() };
    let mut in_flight: HashMap<u64, u64> = HashMap::new();
    let mut acknowledged = Vec::new();
    loop {
        while in_flight.len() < IN_FLIGHT_MAX {
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            // The tag is the id: non-zero, unique across the whole run.
            if !connection.publish("crash.data", format!("m{id}").as_bytes(), id) {
                return acknowledged;
            }
            in_flight.insert(id, id);
        }
        match connection.read() {
            None => return acknowledged,
            Some(Incoming::Stream(StreamFrame::PublishAck(ack))) => {
                let id = in_flight.remove(&ack.ack_id).expect("an ack for a publish in flight");
                if ack.code == 0 {
                    assert_eq!(ack.stream, "CRASH");
                    assert!(!ack.duplicate);
                    acknowledged.push((id, ack.sequence));
                }
            }
            Some(_) => {}
        }
    }
}

/// Every stored message, in sequence order, as (sequence, payload).
fn read_everything(address: SocketAddr) -> Vec<(u64, String)> {
    let mut connection = Connection::connect(address).expect("connect after restart");
    let config = ConsumerConfigSpec { ack_policy: AckPolicy::None, ..ConsumerConfigSpec::default() };
    let reply = connection.request(StreamCommand::ConsumerAdd { stream: "CRASH".into(), config }, 1);
    assert_eq!(reply.code, 0, "consumer add: {}", reply.message);
    let consumer = reply.consumer.expect("consumer info").config.name.expect("a server-chosen name");
    let mut messages = Vec::new();
    for request_id in 2.. {
        let fetch = Fetch { request_id, stream: "CRASH".into(), consumer: consumer.clone(), batch: 5000, wait_ms: 200 };
        let mut frame = BytesMut::new();
        connection.encoder.fetch(&mut frame, &fetch).expect("fetch");
        connection.stream.write_all(&frame).expect("send fetch");
        let before = messages.len();
        loop {
            match connection.read().expect("fetch answer") {
                Incoming::Stream(StreamFrame::Message(message)) if message.tag == request_id => {
                    let payload = String::from_utf8(message.payload.to_vec()).expect("utf-8 payload");
                    messages.push((message.meta.sequence, payload));
                }
                Incoming::Stream(StreamFrame::Reply(reply)) if reply.request_id == request_id => break,
                _ => {}
            }
        }
        if messages.len() == before {
            return messages;
        }
    }
    unreachable!()
}

#[test]
fn acknowledged_publishes_survive_sigkill_at_random_points() {
    let cycles: usize = std::env::var("FLIT_CRASH_CYCLES").ok().and_then(|text| text.parse().ok()).unwrap_or(10);
    let seed: u64 =
        std::env::var("FLIT_CRASH_SEED").ok().and_then(|text| text.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("crash test: {cycles} cycles, FLIT_CRASH_SEED={seed}");
    let mut random = rand::rngs::StdRng::seed_from_u64(seed);
    let data = std::env::temp_dir().join(format!("flit-crash-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let config_file = data.with_extension("toml");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(&config_file, "[[stream]]\nname = \"CRASH\"\nsubjects = [\"crash.>\"]\ndurability = \"always\"\n")
        .expect("config file");
    let arguments =
        ["--data-dir", data.to_str().expect("utf-8 path"), "--config", config_file.to_str().expect("utf-8")];
    let next_id = Arc::new(AtomicU64::new(1));
    // Every acknowledgement ever received: payload id -> sequence.
    let mut acknowledged: HashMap<u64, u64> = HashMap::new();
    let started = Instant::now();
    for cycle in 0..cycles {
        let server = FlitServer::start(2, &arguments);
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|_| {
                let next_id = next_id.clone();
                let address = server.address;
                std::thread::spawn(move || publish_until_killed(address, next_id))
            })
            .collect();
        let kill_after = Duration::from_millis(random.random_range(20..400));
        std::thread::sleep(kill_after);
        server.signal("KILL");
        let _ = server.wait();
        let mut acknowledged_this_cycle = 0;
        for publisher in publishers {
            for (id, sequence) in publisher.join().expect("publisher") {
                assert!(acknowledged.insert(id, sequence).is_none(), "message {id} acknowledged twice");
                acknowledged_this_cycle += 1;
            }
        }
        // Restart and check everything acknowledged so far.
        let server = FlitServer::start(2, &arguments);
        let stored = read_everything(server.address);
        for (index, (sequence, _)) in stored.iter().enumerate() {
            assert_eq!(*sequence, index as u64 + 1, "cycle {cycle} (seed {seed}): sequences contiguous from 1");
        }
        let by_payload: HashMap<&str, u64> =
            stored.iter().map(|(sequence, payload)| (payload.as_str(), *sequence)).collect();
        assert_eq!(by_payload.len(), stored.len(), "cycle {cycle} (seed {seed}): a payload stored twice");
        for (id, sequence) in &acknowledged {
            let found = by_payload.get(format!("m{id}").as_str());
            assert_eq!(
                found,
                Some(sequence),
                "cycle {cycle} (seed {seed}): acknowledged m{id} at {sequence} is missing or moved"
            );
        }
        eprintln!(
            "cycle {cycle}: killed after {kill_after:?}, {acknowledged_this_cycle} acknowledged this cycle, {} stored, {} acknowledged in all",
            stored.len(),
            acknowledged.len()
        );
        let (code, stderr) = server.stop();
        assert_eq!(code, Some(0), "clean stop after the check; stderr: {stderr}");
    }
    assert!(!acknowledged.is_empty(), "the publishers got acknowledgements at all");
    eprintln!(
        "crash test: {cycles} cycles, {} acknowledged messages checked in {:?}",
        acknowledged.len(),
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_file(&config_file);
}
