//! One client connection as its shard sees it, and the slab that holds them.
//!
//! A connection owns its socket, a read buffer (frames are split off it as
//! `Bytes`, so payloads are never copied on the way in) and a write buffer
//! (every frame for this client in one loop pass goes out in one `send`).
//! Both buffers are released when empty and large, so an idle connection
//! costs little memory.
//!
//! Keys carry a generation: a completion or a subscription that names a
//! connection already closed and whose slot was reused is recognised and
//! ignored. On shutdown the shard drops the slab, closing every socket.

use std::collections::{HashMap, VecDeque};
use std::net::TcpStream;
use std::time::Instant;

use std::io::{ErrorKind, IoSlice, Write};

use crate::outgoing::Outgoing;
use bytes::{Buf, Bytes, BytesMut};
use flit_wire::FRAME_HEADER_BYTES;

/// Identifies a connection on its shard: generation in the high 24 bits of the
/// low 56 (ring tokens use the top 8), slot in the low 32.
pub type ConnectionKey = u64;

const GENERATION_MASK: u32 = (1 << 24) - 1;

fn make_key(slot: u32, generation: u32) -> ConnectionKey {
    (u64::from(generation & GENERATION_MASK) << 32) | u64::from(slot)
}

fn key_slot(key: ConnectionKey) -> usize {
    (key & 0xffff_ffff) as usize
}

fn key_generation(key: ConnectionKey) -> u32 {
    (key >> 32) as u32
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connected; the only acceptable frame is Hello.
    AwaitingHello,
    Open,
    /// An error was sent (or the server is stopping): nothing more is read
    /// as frames; the write buffer is flushed, then the socket is closed.
    Closing,
}

/// A reply that must wait until earlier interest changes are acknowledged by
/// every shard, so that it cannot overtake them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeferredReply {
    Pong,
    Ok,
    /// An Error frame that refuses one frame and leaves the connection open
    /// (code, retry-after milliseconds).
    Refused(flit_wire::ErrorCode, u32),
    /// A lane's answer to a RouteBarrier with this epoch (cluster/ module):
    /// sent once every shard of this node applied the interest before it.
    RouteBarrierAck(u64),
}

/// Pieces a connection may queue ahead of its write buffer (large payloads
/// by reference and the buffer pieces between them, see outgoing.rs); past
/// this, payloads are copied into the write buffer like small ones, so a
/// send's iovecs stay bounded (`ring::SEND_SEGMENTS_MAX`).
pub const SPLICED_PIECES_MAX: usize = 64;

/// An empty buffer larger than this is released rather than kept.
pub const IDLE_BUFFER_BYTES_MAX: usize = 64 * 1024;

#[derive(Debug)]
pub struct Connection {
    pub key: ConnectionKey,
    pub stream: TcpStream,
    pub state: ConnectionState,
    pub read_buffer: BytesMut,
    pub write_buffer: BytesMut,
    pub ack_mode: bool,
    /// Subscription id (chosen by the client) to subscription slot.
    pub subscriptions: HashMap<u64, u32>,
    /// Replies held back behind an interest barrier: (epoch needed, reply).
    pub deferred_replies: VecDeque<(u64, DeferredReply)>,
    /// Queued in the shard's ready list (may have unread input).
    pub in_ready_queue: bool,
    /// Listed in the shard's dirty list (has output to write).
    pub in_dirty_list: bool,
    /// A one-shot POLLOUT is armed.
    pub waiting_writable: bool,
    /// Closing: when the socket is closed even if the peer has not hung up.
    pub close_deadline: Option<Instant>,
    /// Closing: our write side is shut down (after the last byte went out).
    pub write_shut_down: bool,
    /// Bytes at the front of `write_buffer` that finish a frame the socket
    /// has already taken part of; 0 when the buffer starts on a frame
    /// boundary. Whatever is discarded must keep these, or the client would
    /// read the next frame's bytes as the rest of this one.
    pub partial_frame_bytes: usize,
    /// The last readiness said the peer hung up (POLLRDHUP/POLLHUP): read
    /// until end of file even after a short read.
    pub peer_hung_up: bool,
    /// End of file was read: the peer sends nothing more. Once our output is
    /// written the socket can go at once, with no linger.
    pub peer_closed: bool,
    /// Closing because of an error frame: nothing more is written after it.
    pub error_sent: bool,
    /// Deliveries in `write_buffer` since it was last empty, and when the
    /// oldest of them was read (for the in-router latency histogram).
    pub deliveries_pending: u32,
    pub oldest_delivery_received_at_nanos: u64,
    /// `write_buffer.len()` as last added into the shard's pending-bytes gauge.
    pub pending_bytes_reported: usize,
    /// Timeouts (nanoseconds since the shards' epoch): when the connection
    /// opened, when bytes last arrived, when the frame now waiting in
    /// `read_buffer` started (0: none waits), and whether the server has
    /// pinged it since it last heard from it.
    pub opened_at_nanos: u64,
    pub last_read_nanos: u64,
    pub partial_frame_since_nanos: u64,
    pub pinged: bool,
    /// Who the Hello proved the client to be; None when authentication is off.
    pub identity: Option<std::sync::Arc<crate::auth::Identity>>,
    /// This connection's own rate limit state, and (policy slow_down) when
    /// the shard may read from it again (nanoseconds since the epoch; 0: not
    /// paused; otherwise the connection is listed in the shard's paused readers).
    pub rate_buckets: crate::rate_limit::LocalBuckets,
    pub reading_paused_until_nanos: u64,
    /// The last subject this connection was allowed to publish to: a
    /// publisher repeating a subject skips the pattern matching.
    pub publish_permitted_subject: Vec<u8>,
    /// The TLS session, when the listener has TLS (see tls.rs).
    pub tls: Option<Box<rustls::ServerConnection>>,
    /// Inboxes this connection's subscriptions name (`_INBOX.<inbox>...`),
    /// with how many name each: a restricted identity holds at most one, and
    /// a restricted publisher may use them as reply subjects.
    pub named_inboxes: HashMap<Box<[u8]>, u32>,
    /// Receives through the ring (shard/receive.rs) rather than readiness:
    /// whether a multishot receive is armed, paused for backpressure, and
    /// whether the input has ended (end of file or a failed socket).
    pub receives_on_ring: bool,
    pub receive_armed: bool,
    pub receive_paused: bool,
    pub end_of_input: bool,
    /// Closing: bytes received and thrown away since.
    pub discarded_bytes: usize,
    /// Sends through the ring (shard/send.rs) rather than `send` calls: the
    /// length of the send in flight (0: none), the bytes a short or refused
    /// send left to send once the socket is writable, how many bytes at the
    /// front of those finish a frame already partly sent, and whether an
    /// eviction came while a send was in flight (so what that send leaves is
    /// cut after its partly sent frame).
    /// `spliced`: output queued ahead of `write_buffer` in pieces, large
    /// payloads among them, held by reference rather than copied (see
    /// outgoing.rs); sent with the write buffer as one vectored send.
    pub sends_on_ring: bool,
    /// The protocol version agreed in Welcome (stream ops need 2).
    pub protocol_version: u16,
    pub send_in_flight_bytes: usize,
    pub unsent: Option<Outgoing>,
    pub spliced: Vec<Bytes>,
    pub send_partial_frame_bytes: usize,
    pub discarding_unsent: bool,
    /// The NATS client protocol's state, for a connection accepted on the
    /// NATS listener (shard/nats/); None for a native connection.
    pub nats: Option<Box<crate::nats_session::NatsSession>>,
    /// A route to another node (cluster/): its handshake and what it carried;
    /// None for a client connection.
    pub route: Option<Box<crate::cluster::LaneSession>>,
    /// For monitoring (monitoring.rs, `/connz`): a server-wide unique id,
    /// message counts, and what the client said about itself (the native
    /// Hello's client name; a NATS CONNECT's name, lang and version).
    pub connection_id: u64,
    pub activity: crate::monitoring::ConnectionActivity,
    pub client_name: Option<Box<str>>,
    pub client_lang: Option<Box<str>>,
    pub client_version: Option<Box<str>>,
    /// The client's address, read at accept (None: read when asked).
    pub peer_address: Option<std::net::SocketAddr>,
}

impl Connection {
    /// Counts a subscription to `pattern` in or out of `named_inboxes`.
    /// Only connections with an identity need them (permission checks).
    pub fn count_named_inbox(&mut self, pattern: &[u8], added: bool) {
        if self.identity.is_none() {
            return;
        }
        let Some(inbox) = crate::auth::pattern_named_inbox(pattern) else { return };
        if added {
            *self.named_inboxes.entry(inbox.into()).or_insert(0) += 1;
        } else if let Some(count) = self.named_inboxes.get_mut(inbox) {
            *count -= 1;
            if *count == 0 {
                self.named_inboxes.remove(inbox);
            }
        }
    }

    pub fn new(key: ConnectionKey, stream: TcpStream, now_nanos: u64) -> Connection {
        Connection {
            key,
            stream,
            state: ConnectionState::AwaitingHello,
            read_buffer: BytesMut::new(),
            write_buffer: BytesMut::new(),
            ack_mode: false,
            subscriptions: HashMap::new(),
            deferred_replies: VecDeque::new(),
            in_ready_queue: false,
            in_dirty_list: false,
            waiting_writable: false,
            close_deadline: None,
            write_shut_down: false,
            partial_frame_bytes: 0,
            peer_hung_up: false,
            peer_closed: false,
            error_sent: false,
            deliveries_pending: 0,
            oldest_delivery_received_at_nanos: 0,
            pending_bytes_reported: 0,
            opened_at_nanos: now_nanos,
            last_read_nanos: now_nanos,
            partial_frame_since_nanos: 0,
            pinged: false,
            identity: None,
            rate_buckets: Default::default(),
            reading_paused_until_nanos: 0,
            tls: None,
            named_inboxes: HashMap::new(),
            receives_on_ring: false,
            receive_armed: false,
            receive_paused: false,
            end_of_input: false,
            discarded_bytes: 0,
            publish_permitted_subject: Vec::new(),
            sends_on_ring: false,
            protocol_version: flit_wire::PROTOCOL_VERSION_MIN,
            send_in_flight_bytes: 0,
            unsent: None,
            spliced: Vec::new(),
            send_partial_frame_bytes: 0,
            discarding_unsent: false,
            nats: None,
            route: None,
            connection_id: 0,
            activity: Default::default(),
            client_name: None,
            client_lang: None,
            client_version: None,
            peer_address: None,
        }
    }

    /// Writes as much of the write buffer as the socket takes, keeping track
    /// of frame boundaries. Ok(bytes written), or Err for a dead socket.
    pub fn write_out(&mut self) -> std::io::Result<usize> {
        if self.tls.is_some() {
            return crate::tls::write_out(self);
        }
        if !self.spliced.is_empty() {
            return self.write_out_pieces();
        }
        let mut written_total = 0;
        while !self.write_buffer.is_empty() {
            match self.stream.write(&self.write_buffer) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(written) => {
                    self.partial_frame_bytes = self.frame_rest_after_write(
                        std::slice::from_ref(&self.write_buffer),
                        self.partial_frame_bytes,
                        written,
                    );
                    self.write_buffer.advance(written);
                    written_total += written;
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
        Ok(written_total)
    }

    /// `write_out` when pieces are queued ahead of the write buffer (a ring
    /// connection over its pending limit, or shutting down): one `writev`
    /// per round, the buffer joining the pieces so the order holds.
    fn write_out_pieces(&mut self) -> std::io::Result<usize> {
        if !self.write_buffer.is_empty() {
            self.spliced.push(self.write_buffer.split().freeze());
        }
        let mut written_total = 0;
        while !self.spliced.is_empty() {
            let slices: Vec<IoSlice> = self.spliced.iter().map(|piece| IoSlice::new(piece)).collect();
            match self.stream.write_vectored(&slices) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(written) => {
                    self.partial_frame_bytes =
                        self.frame_rest_after_write(&self.spliced, self.partial_frame_bytes, written);
                    self.spliced =
                        Outgoing::Segments(std::mem::take(&mut self.spliced)).advance(written).into_segments();
                    written_total += written;
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
        Ok(written_total)
    }

    /// Ends our sending side: a TLS connection first says so (close_notify,
    /// written best effort), then the socket's write side is shut down.
    pub fn shut_down_write(&mut self) {
        if let Some(session) = self.tls.as_mut() {
            session.send_close_notify();
            let _ = self.write_out();
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    /// Whether anything waits to be written: flit frames, or TLS records
    /// (handshake messages, alerts, encrypted frames) rustls holds.
    pub fn has_output(&self) -> bool {
        !self.write_buffer.is_empty()
            || self.send_busy()
            || self.tls.as_ref().is_some_and(|session| session.wants_write())
    }

    /// A ring send is in flight or has left bytes to send: nothing else may
    /// be written to the socket before they are (order).
    pub fn send_busy(&self) -> bool {
        self.send_in_flight_bytes > 0 || self.unsent.is_some()
    }

    /// Bytes queued and not yet handed to the kernel: what the
    /// `pending_bytes_max` limit and the pending-bytes gauge count.
    pub fn queued_output_bytes(&self) -> usize {
        self.write_buffer.len()
            + self.spliced.iter().map(Bytes::len).sum::<usize>()
            + self.unsent.as_ref().map_or(0, Outgoing::len)
    }

    /// Drops everything queued that the socket has not started on, keeping the
    /// rest of a frame already partly written (so the stream stays parseable).
    pub fn discard_unsent_frames(&mut self) {
        // The partial frame's rest leads the queued output: spliced pieces
        // first, then the write buffer.
        crate::outgoing::truncate_queued(&mut self.spliced, &mut self.write_buffer, self.partial_frame_bytes);
        // The rest of a ring send: only its first, partly sent frame stays
        // (and, for a send still in flight, shard/send.rs cuts it likewise).
        if let Some(unsent) = self.unsent.as_mut() {
            unsent.truncate(self.send_partial_frame_bytes);
            if unsent.is_empty() {
                self.unsent = None;
            }
        }
        // A send in flight comes back cut the same way (shard/send.rs); what
        // is queued after this (the error frame) is not cut.
        self.discarding_unsent = self.send_in_flight_bytes > 0;
        // They will never be written, so they take no part in the latency.
        self.deliveries_pending = 0;
    }

    /// Where the next frame boundary is after `written` bytes of `buffer`
    /// went out (see [`partial_frame_after_write`]). NATS output is text with
    /// no length prefix to walk: it is not tracked (0), and an evicted NATS
    /// client is reset rather than sent a last error (shard/io.rs).
    ///
    /// Output is queued in whole frames, so when all of `pieces` went out
    /// the boundary is their end and nothing is walked (the common case:
    /// walking every frame's header after every send cost ~5% of a fan-out's
    /// CPU, `perf record`). Debug builds check that claim.
    pub fn frame_rest_after_write<Piece: AsRef<[u8]>>(
        &self,
        pieces: &[Piece],
        partial: usize,
        written: usize,
    ) -> usize {
        if self.nats.is_some() {
            return 0;
        }
        let total: usize = pieces.iter().map(|piece| piece.as_ref().len()).sum();
        if written == total {
            debug_assert_eq!(partial_frame_after_write(pieces, partial, written), 0, "output ends on a frame boundary");
            return 0;
        }
        partial_frame_after_write(pieces, partial, written)
    }

    /// The read buffer holds no whole frame (or op): if it holds part of
    /// one, that frame's clock starts now unless it already runs (see
    /// timeouts.rs, the stalled-frame check); idle buffers are released.
    pub fn wait_for_rest_of_frame(&mut self, now_nanos: u64) {
        if self.read_buffer.is_empty() {
            self.partial_frame_since_nanos = 0;
        } else if self.partial_frame_since_nanos == 0 {
            self.partial_frame_since_nanos = now_nanos.max(1);
        }
        self.release_idle_buffers();
    }

    /// Frees buffers that are empty but hold a lot of memory.
    pub fn release_idle_buffers(&mut self) {
        if self.read_buffer.is_empty() && self.read_buffer.capacity() > IDLE_BUFFER_BYTES_MAX {
            self.read_buffer = BytesMut::new();
        }
        if self.write_buffer.is_empty() && self.write_buffer.capacity() > IDLE_BUFFER_BYTES_MAX {
            self.write_buffer = BytesMut::new();
        }
    }
}

/// Where the next frame boundary is after `written` bytes of `buffer` went
/// out, given that the buffer's first `partial` bytes end a frame. Walks the
/// headers of the frames written (4 bytes read per frame).
/// The buffer may be in pieces (a send's segments, shard/send.rs): a frame's
/// length prefix is read across them.
pub(crate) fn partial_frame_after_write<Piece: AsRef<[u8]>>(pieces: &[Piece], partial: usize, written: usize) -> usize {
    let mut boundary = partial;
    // The piece holding `boundary`, and where that piece starts.
    let mut piece_index = 0;
    let mut piece_start = 0;
    while boundary < written {
        let mut header = [0u8; 4];
        for (offset, byte) in header.iter_mut().enumerate() {
            let position = boundary + offset;
            while position >= piece_start + pieces[piece_index].as_ref().len() {
                piece_start += pieces[piece_index].as_ref().len();
                piece_index += 1;
            }
            *byte = pieces[piece_index].as_ref()[position - piece_start];
        }
        boundary += FRAME_HEADER_BYTES + u32::from_le_bytes(header) as usize;
    }
    debug_assert!(
        boundary <= pieces.iter().map(|piece| piece.as_ref().len()).sum::<usize>(),
        "frames in the write buffer are whole"
    );
    boundary - written
}

/// Connections of one shard, by key.
#[derive(Debug, Default)]
pub struct Connections {
    slots: Vec<Option<Connection>>,
    generations: Vec<u32>,
    free_slots: Vec<u32>,
    len: usize,
}

impl Connections {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores a connection built by `make` from its new key.
    pub fn insert(&mut self, make: impl FnOnce(ConnectionKey) -> Connection) -> ConnectionKey {
        let slot = match self.free_slots.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.generations.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        let key = make_key(slot, self.generations[slot as usize]);
        let connection = make(key);
        debug_assert_eq!(connection.key, key);
        self.slots[slot as usize] = Some(connection);
        self.len += 1;
        key
    }

    pub fn get(&self, key: ConnectionKey) -> Option<&Connection> {
        let slot = key_slot(key);
        if self.generations.get(slot).copied()? & GENERATION_MASK != key_generation(key) {
            return None;
        }
        self.slots[slot].as_ref()
    }

    pub fn get_mut(&mut self, key: ConnectionKey) -> Option<&mut Connection> {
        let slot = key_slot(key);
        if self.generations.get(slot).copied()? & GENERATION_MASK != key_generation(key) {
            return None;
        }
        self.slots[slot].as_mut()
    }

    /// Removes a connection; its slot's next occupant gets a new generation.
    pub fn remove(&mut self, key: ConnectionKey) -> Option<Connection> {
        self.get(key)?;
        let slot = key_slot(key);
        let connection = self.slots[slot].take()?;
        self.generations[slot] = self.generations[slot].wrapping_add(1) & GENERATION_MASK;
        self.free_slots.push(slot as u32);
        self.len -= 1;
        Some(connection)
    }

    /// Every live connection.
    pub fn iter(&self) -> impl Iterator<Item = &Connection> {
        self.slots.iter().flatten()
    }

    /// Slots, live or free: what `iter_slots` ranges over.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The live connections in a range of slots (clamped to the slots there are).
    pub fn iter_slots(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = &Connection> {
        let end = range.end.min(self.slots.len());
        self.slots[range.start.min(end)..end].iter().flatten()
    }

    /// Keys of every live connection.
    pub fn keys(&self) -> Vec<ConnectionKey> {
        self.slots.iter().flatten().map(|connection| connection.key).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn socket() -> TcpStream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        TcpStream::connect(listener.local_addr().expect("addr")).expect("connect")
    }

    #[test]
    fn frame_boundaries_are_tracked_across_partial_writes() {
        // Three frames of 16 + 4, 16 + 0 and 16 + 8 bytes.
        let mut buffer = Vec::new();
        for body in [4u32, 0, 8] {
            let mut header = [0u8; FRAME_HEADER_BYTES];
            header[..4].copy_from_slice(&body.to_le_bytes());
            buffer.extend_from_slice(&header);
            buffer.extend(std::iter::repeat_n(0u8, body as usize));
        }
        let whole = [&buffer[..]];
        assert_eq!(partial_frame_after_write(&whole, 0, 20), 0, "exactly one frame");
        assert_eq!(partial_frame_after_write(&whole, 0, 5), 15, "inside the first frame");
        assert_eq!(partial_frame_after_write(&whole, 0, 30), 6, "inside the second frame");
        assert_eq!(partial_frame_after_write(&whole, 0, buffer.len()), 0);
        assert_eq!(partial_frame_after_write(&[&buffer[5..]], 15, 10), 5, "still inside the first frame");
        // The same bytes in pieces (a vectored send's segments), split at
        // every pair of positions, headers included: the same answers.
        for first_cut in 1..buffer.len() {
            for second_cut in first_cut + 1..buffer.len() {
                let pieces = [&buffer[..first_cut], &buffer[first_cut..second_cut], &buffer[second_cut..]];
                for written in 0..=buffer.len() {
                    assert_eq!(
                        partial_frame_after_write(&pieces, 0, written),
                        partial_frame_after_write(&whole, 0, written),
                        "cuts at {first_cut} and {second_cut}, {written} written"
                    );
                }
            }
        }
    }

    #[test]
    fn a_reused_slot_does_not_answer_to_the_old_key() {
        let mut connections = Connections::default();
        let first = connections.insert(|key| Connection::new(key, socket(), 0));
        assert!(connections.remove(first).is_some());
        let second = connections.insert(|key| Connection::new(key, socket(), 0));
        assert_eq!(key_slot(first), key_slot(second));
        assert_ne!(first, second);
        assert!(connections.get(first).is_none());
        assert!(connections.get(second).is_some());
        assert!(connections.remove(first).is_none());
        assert_eq!(connections.len(), 1);
    }
}
