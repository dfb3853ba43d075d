//! The mesh: one bounded SPSC queue for every ordered pair of shards, and a
//! way to wake a parked shard.
//!
//! Shards share nothing else. A message from shard A to shard B goes through
//! queue (A, B) only, so everything A sends B arrives in the order A sent it:
//! that is what carries per-publisher ordering across shards.
//!
//! Waking: a shard about to block announces it in its `parked` flag, looks at
//! its inbound queues once more, and only then blocks in its ring. A sender
//! pushes, then reads the flag; if set, it writes a byte to the target's wake
//! pipe, whose readiness is polled in the target's ring. The SeqCst fences on
//! both sides make the classic store-then-load race impossible: either the
//! target sees the message on its last look, or the sender sees the flag.
//!
//! Invariants: a full queue hands the message back (nothing is dropped here;
//! the caller keeps it in its outbox and stops reading sockets until there is
//! room). On shutdown the queues are dropped with the shards.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use std::ops::Range;

use bytes::Bytes;
use flit_wire::PublishParts;

use crate::delivery_filter::DeliveryFilter;
use crate::interest::QueuePicks;
use crate::metrics::ShardMetrics;

/// A message routed inside the router, independent of any wire protocol.
///
/// All parts live in one buffer (for a publish, the frame it arrived in), so
/// passing a message to another shard or keeping it costs one reference
/// count, not one per part.
#[derive(Clone, Debug)]
pub struct RoutedMessage {
    buffer: Bytes,
    subject: Range<u32>,
    reply: Option<Range<u32>>,
    /// An encoded header block, passed on untouched.
    headers: Option<Range<u32>>,
    payload: Range<u32>,
    /// 0, or a status such as 503 (no responders).
    pub status: u16,
    /// When the router read it: nanoseconds since [`SharedState::epoch`]
    /// (feeds the in-router latency histogram).
    pub received_at_nanos: u64,
    /// The connection that published it, as [`origin_of`] encodes it, or
    /// [`NO_ORIGIN`]: lets a NATS client's `echo: false` skip its own
    /// messages (a connection lives on one shard, so only that shard can match).
    pub origin: u64,
}

/// A message the router made itself, or one whose publisher does not matter.
pub const NO_ORIGIN: u64 = u64::MAX;

/// The origin of a message published by connection `key` of shard `shard`
/// (keys use the low 56 bits).
pub fn origin_of(shard: usize, key: crate::connection::ConnectionKey) -> u64 {
    ((shard as u64) << 56) | (key & ((1 << 56) - 1))
}

fn narrow(range: Range<usize>) -> Range<u32> {
    // Frames are at most u32::MAX bytes long (body_len is a u32).
    range.start as u32..range.end as u32
}

fn widen(range: &Range<u32>) -> Range<usize> {
    range.start as usize..range.end as usize
}

impl RoutedMessage {
    /// A message from a decoded Publish frame.
    pub fn from_publish(frame: Bytes, parts: PublishParts) -> RoutedMessage {
        RoutedMessage {
            buffer: frame,
            subject: narrow(parts.subject),
            reply: parts.reply.map(narrow),
            headers: parts.headers.map(narrow),
            payload: narrow(parts.payload),
            status: 0,
            received_at_nanos: 0,
            origin: NO_ORIGIN,
        }
    }

    /// A message whose parts are ranges of one buffer (the NATS front end:
    /// the op's bytes as received, or a rebuilt buffer when headers had to
    /// be translated). Ranges must lie inside `buffer`, which is at most
    /// u32::MAX bytes long (the payload limit guarantees it).
    pub fn from_parts(
        buffer: Bytes,
        subject: Range<usize>,
        reply: Option<Range<usize>>,
        headers: Option<Range<usize>>,
        payload: Range<usize>,
    ) -> RoutedMessage {
        debug_assert!(buffer.len() <= u32::MAX as usize && payload.end <= buffer.len() && subject.end <= buffer.len());
        RoutedMessage {
            buffer,
            subject: narrow(subject),
            reply: reply.map(narrow),
            headers: headers.map(narrow),
            payload: narrow(payload),
            status: 0,
            received_at_nanos: 0,
            origin: NO_ORIGIN,
        }
    }

    /// A status message from the server to `subject` (e.g. no responders):
    /// no payload, no headers, no reply.
    pub fn status(subject: &[u8], status: u16) -> RoutedMessage {
        let length = subject.len() as u32;
        RoutedMessage {
            buffer: Bytes::copy_from_slice(subject),
            subject: 0..length,
            reply: None,
            headers: None,
            payload: length..length,
            status,
            received_at_nanos: 0,
            origin: NO_ORIGIN,
        }
    }

    pub fn subject(&self) -> &[u8] {
        &self.buffer[widen(&self.subject)]
    }

    pub fn reply(&self) -> Option<&[u8]> {
        self.reply.as_ref().map(|range| &self.buffer[widen(range)])
    }

    pub fn headers(&self) -> Option<&[u8]> {
        self.headers.as_ref().map(|range| &self.buffer[widen(range)])
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer[widen(&self.payload)]
    }

    /// The payload as a reference to the message's buffer (no copy): what a
    /// vectored send queues for a large payload (shard/routing.rs).
    pub fn payload_bytes(&self) -> Bytes {
        self.buffer.slice(widen(&self.payload))
    }
}

/// What shards tell each other.
#[derive(Debug)]
pub enum MeshMessage {
    /// Deliver to local subscribers; for the listed queue groups, to one member each.
    Publish { message: RoutedMessage, queue_picks: QueuePicks },
    /// The sending shard gained interest in (pattern, queue) under the filter.
    InterestAdd { pattern: Bytes, queue: Option<Bytes>, filter: Option<DeliveryFilter> },
    /// The sending shard lost interest in (pattern, queue) under the filter.
    InterestRemove { pattern: Bytes, queue: Option<Bytes>, filter: Option<DeliveryFilter> },
    /// The receiving shard has applied one more interest change from the sender.
    InterestAck,
    /// A message a stream this (receiving) shard owns captured; answer
    /// `reply_to` once it is stored, if set.
    Append { stream: u64, message: RoutedMessage, reply_to: Option<crate::streams::ReplyTo> },
    /// Encoded frames for one of the receiving shard's connections (stream
    /// acknowledgements, replies); dropped if the connection is gone.
    Frames { connection: crate::connection::ConnectionKey, frames: Bytes },
    /// A consumer command for a stream this (receiving) shard owns (boxed:
    /// rare, and larger than the message path's variants).
    StreamCommand(Box<(u64, crate::shard::OwnerCommand, Option<crate::streams::ReplyTo>)>),
    /// Another node (dense index `node`) announced or withdrew interest, on
    /// a route the sending shard accepted (cluster/).
    RemoteInterest { node: u8, pattern: Bytes, queue: Option<Bytes>, added: bool },
    /// Another node (dense index `node`) announced or withdrew a stream's
    /// capture of `pattern` (cluster/store.rs).
    RemoteCapture { node: u8, pattern: Bytes, added: bool },
    /// A peer's route address, proven by its handshake: dial it too.
    PeerAddress(std::net::SocketAddr),
}

/// Wakes one shard from another thread.
#[derive(Debug)]
pub struct Waker {
    parked: AtomicBool,
    pipe: UnixStream,
}

impl Waker {
    /// The write end goes here; the read end is polled by the shard's ring.
    pub fn new(pipe: UnixStream) -> Waker {
        Waker { parked: AtomicBool::new(false), pipe }
    }

    /// Called by the owner before its last look at its queues.
    pub fn announce_park(&self) {
        self.parked.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Called by the owner when it runs again.
    pub fn clear_park(&self) {
        self.parked.store(false, Ordering::Relaxed);
    }

    /// Called by a sender after pushing: wakes the owner if it is parked.
    pub fn wake_if_parked(&self) {
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::SeqCst) {
            self.write_byte();
        }
    }

    /// Wakes the owner whatever it is doing (shutdown).
    pub fn wake(&self) {
        self.parked.store(false, Ordering::SeqCst);
        self.write_byte();
    }

    fn write_byte(&self) {
        // The pipe is non-blocking: a full pipe already holds a wake-up, and
        // any other error means the shard is gone; neither needs handling.
        let _ = (&self.pipe).write(&[1]);
    }
}

/// The queues one shard owns the ends of.
pub struct MeshEnds {
    /// `outbound[j]`: to shard j (None for itself).
    pub outbound: Vec<Option<rtrb::Producer<MeshMessage>>>,
    /// `inbound[j]`: from shard j (None for itself).
    pub inbound: Vec<Option<rtrb::Consumer<MeshMessage>>>,
}

/// Builds the full mesh for `shards` shards, each queue `depth` messages deep.
/// Returns one [`MeshEnds`] per shard, in shard order.
pub fn build_mesh(shards: usize, depth: usize) -> Vec<MeshEnds> {
    let mut ends: Vec<MeshEnds> = (0..shards)
        .map(|_| MeshEnds {
            outbound: (0..shards).map(|_| None).collect(),
            inbound: (0..shards).map(|_| None).collect(),
        })
        .collect();
    for source in 0..shards {
        for target in 0..shards {
            if source == target {
                continue;
            }
            let (producer, consumer) = rtrb::RingBuffer::new(depth);
            ends[source].outbound[target] = Some(producer);
            ends[target].inbound[source] = Some(consumer);
        }
    }
    ends
}

/// Everything every shard can see of the others.
#[derive(Debug)]
pub struct SharedState {
    pub wakers: Vec<Waker>,
    pub stop: AtomicBool,
    /// Shutdown: one bit per shard whose outboxes were empty after it stopped
    /// reading (a dead shard's bit is set too: nobody waits for it).
    pub shards_with_empty_outboxes: AtomicU64,
    /// One bit per shard whose loop has ended by an error or a panic. Others
    /// stop sending to it and stop waiting for its acknowledgements, so one
    /// failed shard does not freeze the rest of the router.
    pub dead_shards: AtomicU64,
    /// Each shard's live counters (written by that shard only; see metrics.rs).
    pub metrics: Vec<Arc<ShardMetrics>>,
    /// The zero of every shard's timestamps, so they compare across shards.
    pub epoch: Instant,
    /// Connections open on all shards, against `connections_max`. Touched at
    /// accept and close only, never per message.
    pub connections_open: AtomicUsize,
    /// The identities in force, replaced on reload; a shard takes a copy
    /// when `identities_generation` moves (checked once per pass, so the
    /// lock is never taken on the message path).
    pub identities: std::sync::Mutex<Arc<crate::auth::Identities>>,
    pub identities_generation: AtomicU64,
    /// Every stream and its owner, replaced on change (streams/directory.rs).
    pub streams: crate::streams::directory::SharedStreams,
    /// This process's id in NATS INFO (`server_id`): unique per start.
    pub server_id: String,
    /// Cluster: node ids to dense indices, this start's generation (route
    /// Hellos), and the route listener's address as bound.
    pub cluster_nodes: crate::cluster::NodeDirectory,
    pub generation: u64,
    pub route_address: Option<std::net::SocketAddr>,
    /// The route address named in this node's Hellos: `[cluster] advertise`,
    /// else `route_address`.
    pub route_advertised_address: Option<std::net::SocketAddr>,
    /// Where this node takes clients (native, NATS), for the other nodes'
    /// Hellos; and what the other nodes said of theirs (NATS INFO
    /// `connect_urls`). Read at accept and at handshakes only.
    pub client_address: Option<std::net::SocketAddr>,
    pub nats_address: Option<std::net::SocketAddr>,
    pub peer_urls: crate::cluster::PeerUrls,
    pub cluster_view: crate::cluster::ClusterView,
}

/// An id unique to this process start: the process id and the start time,
/// in upper-case hex like nats-server's ids (which are nkeys; NATS clients
/// treat the id as an opaque string).
fn process_unique_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_nanos());
    format!("FLIT{:08X}{:016X}", std::process::id(), nanos as u64)
}

impl SharedState {
    pub fn new(wakers: Vec<Waker>, identities: Arc<crate::auth::Identities>) -> SharedState {
        let shard_count = wakers.len();
        SharedState {
            wakers,
            stop: AtomicBool::new(false),
            shards_with_empty_outboxes: AtomicU64::new(0),
            dead_shards: AtomicU64::new(0),
            metrics: (0..shard_count).map(|_| Arc::new(ShardMetrics::default())).collect(),
            epoch: Instant::now(),
            connections_open: AtomicUsize::new(0),
            identities: std::sync::Mutex::new(identities),
            identities_generation: AtomicU64::new(0),
            streams: Default::default(),
            server_id: process_unique_id(),
            cluster_nodes: Default::default(),
            generation: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos() as u64),
            route_address: None,
            route_advertised_address: None,
            client_address: None,
            nats_address: None,
            peer_urls: Default::default(),
            cluster_view: Default::default(),
        }
    }

    /// Marks `shard` dead and wakes every other shard so they notice.
    pub fn mark_dead(&self, shard: usize) {
        self.dead_shards.fetch_or(1 << shard, Ordering::SeqCst);
        self.metrics[shard].up.set(0);
        self.metrics[shard].accepting.set(0);
        // Its connections went with it.
        let lost = self.metrics[shard].connections.get() as usize;
        let _ = self
            .connections_open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |open| Some(open.saturating_sub(lost)));
        self.shards_with_empty_outboxes.fetch_or(1 << shard, Ordering::SeqCst);
        for waker in &self.wakers {
            waker.wake();
        }
    }
}

pub type Shared = Arc<SharedState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_connects_every_ordered_pair_in_order() {
        let mut ends = build_mesh(3, 4);
        let mut producer = ends[0].outbound[2].take().expect("0 -> 2");
        let mut consumer = ends[2].inbound[0].take().expect("2 <- 0");
        assert!(ends[1].outbound[1].is_none());
        for _ in 0..4 {
            producer.push(MeshMessage::InterestAck).expect("room");
        }
        assert!(producer.push(MeshMessage::InterestAck).is_err(), "a full queue hands the message back");
        assert!(matches!(consumer.pop(), Ok(MeshMessage::InterestAck)));
    }

    #[test]
    fn parked_waker_is_woken_once() {
        let (write_end, mut read_end) = UnixStream::pair().expect("pair");
        read_end.set_nonblocking(true).expect("nonblocking");
        let waker = Waker::new(write_end);
        waker.wake_if_parked();
        let mut buffer = [0u8; 8];
        assert!(std::io::Read::read(&mut read_end, &mut buffer).is_err(), "not parked: no byte");
        waker.announce_park();
        waker.wake_if_parked();
        waker.wake_if_parked();
        assert_eq!(std::io::Read::read(&mut read_end, &mut buffer).expect("one byte"), 1);
    }
}
