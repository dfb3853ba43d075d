//! The message path in steady state allocates nothing per message.
//!
//! Two real shards (rings, sockets, mesh) are driven pass by pass from the
//! test's own thread, so a thread-local counting allocator sees every
//! allocation they make. A publisher on shard 0 sends batches of messages to
//! a subscriber on shard 1 (one cross-shard hop each) and to a subscriber on
//! shard 0 (local delivery). After a warm-up batch, a second batch is
//! measured: what allocates is per read or per pass (a fresh read buffer when
//! the previous one is still referenced by payloads in flight), never per
//! message. The same holds through the NATS listener (text in, MSG out).

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use bytes::BytesMut;
use flit_wire::{Encoder, Hello, Op, FRAME_HEADER_BYTES, PROTOCOL_VERSION};

use super::{Shard, ShardParts};
use crate::config::ServerConfig;
use crate::mesh::{build_mesh, SharedState, Waker};
use crate::ring::Ring;

const MESSAGES_PER_BATCH: usize = 2_000;
const PAYLOAD: [u8; 64] = [7u8; 64];

fn start_two_shards() -> (Vec<Shard>, Vec<std::net::SocketAddr>) {
    let (shards, addresses, _) = start_two_shards_with_nats();
    (shards, addresses)
}

/// Two shards, each with a native and a NATS listener; returns both kinds
/// of address, by shard.
fn start_two_shards_with_nats() -> (Vec<Shard>, Vec<std::net::SocketAddr>, Vec<std::net::SocketAddr>) {
    let listeners: Vec<TcpListener> = (0..2).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind")).collect();
    let addresses: Vec<_> = listeners.iter().map(|listener| listener.local_addr().expect("address")).collect();
    let mut nats_listeners: Vec<TcpListener> =
        (0..2).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind")).collect();
    let nats_addresses: Vec<_> =
        nats_listeners.iter().map(|listener| listener.local_addr().expect("address")).collect();
    let mut wakers = Vec::new();
    let mut pipes = Vec::new();
    for _ in 0..2 {
        let (write_end, read_end) = UnixStream::pair().expect("pair");
        write_end.set_nonblocking(true).expect("nonblocking");
        read_end.set_nonblocking(true).expect("nonblocking");
        wakers.push(Waker::new(write_end));
        pipes.push(read_end);
    }
    let shared = Arc::new(SharedState::new(wakers, Arc::new(crate::auth::Identities::open())));
    let config = ServerConfig::new(addresses[0], 2);
    let shards = listeners
        .into_iter()
        .zip(pipes)
        .zip(build_mesh(2, 1024))
        .enumerate()
        .map(|(id, ((listener, wake_pipe), mesh))| {
            listener.set_nonblocking(true).expect("nonblocking");
            let nats_listener = nats_listeners.remove(0);
            nats_listener.set_nonblocking(true).expect("nonblocking");
            let parts = ShardParts {
                id,
                config: config.clone(),
                listener,
                nats_listener: Some(nats_listener),
                route_listener: None,
                wake_pipe,
                shared: shared.clone(),
                mesh,
            };
            Shard::new(parts, Ring::new().expect("io_uring")).expect("shard")
        })
        .collect();
    (shards, addresses, nats_addresses)
}

/// A test client that reads into a fixed buffer and only counts frames of
/// one op, so the test itself allocates nothing while measuring.
struct CountingClient {
    stream: TcpStream,
    unread: [u8; 64 * 1024],
    unread_len: usize,
}

impl CountingClient {
    fn connect(address: std::net::SocketAddr) -> CountingClient {
        let stream = TcpStream::connect(address).expect("connect");
        stream.set_nonblocking(true).expect("nonblocking");
        CountingClient { stream, unread: [0; 64 * 1024], unread_len: 0 }
    }

    fn send_all(&mut self, mut bytes: &[u8], shards: &mut [Shard]) {
        while !bytes.is_empty() {
            match self.stream.write(bytes) {
                Ok(written) => bytes = &bytes[written..],
                Err(error) if error.kind() == ErrorKind::WouldBlock => pass_all(shards),
                Err(error) => panic!("write: {error}"),
            }
        }
    }

    /// Reads what is there; returns how many whole frames of `op` it held.
    fn count_frames(&mut self, op: Op) -> usize {
        let mut counted = 0;
        loop {
            match self.stream.read(&mut self.unread[self.unread_len..]) {
                Ok(0) => panic!("server closed the connection"),
                Ok(read) => self.unread_len += read,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return counted,
                Err(error) => panic!("read: {error}"),
            }
            let mut start = 0;
            while self.unread_len - start >= FRAME_HEADER_BYTES {
                let header = &self.unread[start..];
                let length =
                    FRAME_HEADER_BYTES + u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
                if self.unread_len - start < length {
                    break;
                }
                if header[4] == op as u8 {
                    counted += 1;
                }
                start += length;
            }
            self.unread.copy_within(start..self.unread_len, 0);
            self.unread_len -= start;
        }
    }
}

fn pass_all(shards: &mut [Shard]) {
    for shard in shards.iter_mut() {
        shard.pass().expect("pass");
    }
}

/// Runs passes until `client` has received `expected` frames of `op`.
fn pump_until(shards: &mut [Shard], client: &mut CountingClient, op: Op, expected: usize) {
    let mut received = 0;
    for _ in 0..1_000_000 {
        pass_all(shards);
        received += client.count_frames(op);
        if received >= expected {
            assert_eq!(received, expected, "more {op:?} frames than expected");
            return;
        }
    }
    panic!("only {received} of {expected} {op:?} frames arrived");
}

fn handshake(shards: &mut [Shard], client: &mut CountingClient) {
    let mut hello = BytesMut::new();
    let fields = Hello {
        version_min: PROTOCOL_VERSION,
        version_max: PROTOCOL_VERSION,
        client_name: None,
        auth_token: None,
        ack_mode: false,
    };
    Encoder::default().hello(&mut hello, &fields).expect("hello");
    client.send_all(&hello, shards);
    pump_until(shards, client, Op::Welcome, 1);
}

#[test]
fn steady_state_publish_and_delivery_do_not_allocate_per_message() {
    let (mut shards, addresses) = start_two_shards();
    let mut publisher = CountingClient::connect(addresses[0]);
    let mut local_subscriber = CountingClient::connect(addresses[0]);
    let mut remote_subscriber = CountingClient::connect(addresses[1]);
    for client in [&mut publisher, &mut local_subscriber, &mut remote_subscriber] {
        handshake(&mut shards, client);
    }
    let mut encoder = Encoder::default();
    for subscriber in [&mut local_subscriber, &mut remote_subscriber] {
        let mut frames = BytesMut::new();
        encoder.subscribe(&mut frames, b"bench.subject", None, 1).expect("subscribe");
        Encoder::bare(&mut frames, Op::Ping);
        subscriber.send_all(&frames, &mut shards);
        pump_until(&mut shards, subscriber, Op::Pong, 1);
    }
    let mut batch = BytesMut::new();
    for _ in 0..MESSAGES_PER_BATCH {
        encoder.publish(&mut batch, b"bench.subject", None, None, &PAYLOAD).expect("publish");
    }

    let mut run_batch = || {
        publisher.send_all(&batch, &mut shards);
        pump_until(&mut shards, &mut remote_subscriber, Op::Deliver, MESSAGES_PER_BATCH);
        pump_until(&mut shards, &mut local_subscriber, Op::Deliver, MESSAGES_PER_BATCH);
    };
    run_batch();
    let measured = allocation_counter::measure(run_batch);

    let deliveries = 2 * MESSAGES_PER_BATCH;
    eprintln!(
        "{deliveries} deliveries ({MESSAGES_PER_BATCH} messages, one local and one cross-shard subscriber): \
         {} allocations, {} bytes allocated",
        measured.count_total, measured.bytes_total
    );
    // Per-read and per-pass allocations only: far fewer than one per message.
    assert!(
        measured.count_total * 20 < MESSAGES_PER_BATCH as u64,
        "{} allocations for {MESSAGES_PER_BATCH} messages: something allocates per message",
        measured.count_total
    );
}

impl CountingClient {
    /// Reads what is there; returns how many bytes came.
    fn count_bytes(&mut self) -> usize {
        let mut counted = 0;
        loop {
            match self.stream.read(&mut self.unread) {
                Ok(0) => panic!("server closed the connection"),
                Ok(read) => counted += read,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return counted,
                Err(error) => panic!("read: {error}"),
            }
        }
    }

    /// Runs passes until `expected` bytes have come (every NATS delivery in
    /// the test has the same length, so bytes count deliveries).
    fn pump_bytes(&mut self, shards: &mut [Shard], expected: usize) {
        let mut received = 0;
        for _ in 0..1_000_000 {
            pass_all(shards);
            received += self.count_bytes();
            if received >= expected {
                assert_eq!(received, expected, "more bytes than expected");
                return;
            }
        }
        panic!("only {received} of {expected} bytes arrived");
    }
}

#[test]
fn steady_state_nats_publish_and_delivery_do_not_allocate_per_message() {
    let (mut shards, _, nats_addresses) = start_two_shards_with_nats();
    let mut publisher = CountingClient::connect(nats_addresses[0]);
    let mut local_subscriber = CountingClient::connect(nats_addresses[0]);
    let mut remote_subscriber = CountingClient::connect(nats_addresses[1]);
    for client in [&mut publisher, &mut local_subscriber, &mut remote_subscriber] {
        client.send_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n", &mut shards);
    }
    for subscriber in [&mut local_subscriber, &mut remote_subscriber] {
        subscriber.send_all(b"SUB bench.subject 1\r\nPING\r\n", &mut shards);
    }
    // INFO, and two PONGs (after the barrier) each: read until quiet.
    for _ in 0..10_000 {
        pass_all(&mut shards);
    }
    for client in [&mut publisher, &mut local_subscriber, &mut remote_subscriber] {
        assert!(client.count_bytes() > 0, "INFO and PONG arrived");
    }
    let mut batch = Vec::new();
    for _ in 0..MESSAGES_PER_BATCH {
        batch.extend_from_slice(b"PUB bench.subject 64\r\n");
        batch.extend_from_slice(&PAYLOAD);
        batch.extend_from_slice(b"\r\n");
    }
    let delivery_bytes = b"MSG bench.subject 1 64\r\n".len() + PAYLOAD.len() + 2;
    let mut run_batch = || {
        publisher.send_all(&batch, &mut shards);
        remote_subscriber.pump_bytes(&mut shards, MESSAGES_PER_BATCH * delivery_bytes);
        local_subscriber.pump_bytes(&mut shards, MESSAGES_PER_BATCH * delivery_bytes);
    };
    run_batch();
    let measured = allocation_counter::measure(run_batch);
    eprintln!(
        "NATS: {} deliveries ({MESSAGES_PER_BATCH} messages, one local and one cross-shard subscriber): \
         {} allocations, {} bytes allocated",
        2 * MESSAGES_PER_BATCH,
        measured.count_total,
        measured.bytes_total
    );
    assert!(
        measured.count_total * 20 < MESSAGES_PER_BATCH as u64,
        "{} allocations for {MESSAGES_PER_BATCH} NATS messages: something allocates per message",
        measured.count_total
    );
}

#[test]
fn a_dead_shard_does_not_hold_back_the_others() {
    let (mut shards, addresses) = start_two_shards();
    let mut client = CountingClient::connect(addresses[0]);
    handshake(&mut shards, &mut client);
    let mut frames = BytesMut::new();
    Encoder::default().subscribe(&mut frames, b"after.death", None, 1).expect("subscribe");
    Encoder::bare(&mut frames, Op::Ping);
    client.send_all(&frames, &mut shards[..1]);
    // Only shard 0 runs: shard 1 never acknowledges the new interest, so the
    // pong waits behind the barrier.
    let mut pongs = 0;
    for _ in 0..1_000 {
        shards[0].pass().expect("pass");
        pongs += client.count_frames(Op::Pong);
    }
    assert_eq!(pongs, 0, "the pong must wait for shard 1's acknowledgement");
    // Shard 1 dies: shard 0 stops waiting for it.
    shards[0].shared.mark_dead(1);
    pump_until(&mut shards[..1], &mut client, Op::Pong, 1);
    assert_eq!(shards[0].outboxes[1].len(), 0, "nothing is kept for a dead shard");
}

#[test]
fn queue_group_cursors_are_dropped_with_their_last_member() {
    let (mut shards, addresses) = start_two_shards();
    let mut client = CountingClient::connect(addresses[0]);
    handshake(&mut shards, &mut client);
    let mut encoder = Encoder::default();
    for group in 0..50u64 {
        let queue = format!("workers-{group}");
        let mut frames = BytesMut::new();
        encoder.subscribe(&mut frames, b"jobs.>", Some(queue.as_bytes()), group).expect("subscribe");
        // One message, so the group's cursor exists.
        encoder.publish(&mut frames, b"jobs.x", None, None, &PAYLOAD).expect("publish");
        encoder
            .unsubscribe(&mut frames, flit_wire::Unsubscribe { subscription_id: group, after_messages: 0 })
            .expect("unsubscribe");
        Encoder::bare(&mut frames, Op::Ping);
        client.send_all(&frames, &mut shards);
        pump_until(&mut shards, &mut client, Op::Pong, 1);
    }
    assert!(shards[0].group_cursors.is_empty(), "{} cursors left", shards[0].group_cursors.len());
}
