//! Receiving through the ring: multishot receives into the shard's provided
//! buffers, for plain (non-TLS) connections.
//!
//! One `RECV` per connection stays armed for as long as the connection lives.
//! Each completion names a provided buffer holding what arrived; its bytes
//! are appended to the connection's read buffer and the buffer goes straight
//! back to the kernel, so no provided buffer is ever referenced by a routed
//! message (the one copy is the copy `recv` into the scratch buffer used to
//! make; zero-copy routing out of provided buffers is possible later, see
//! docs/DESIGN.md). Frames are then handled by the same code as before, in the
//! shard's read pass, under the same fairness and backpressure rules.
//!
//! Fairness: a connection's frames are handled at most `READ_BYTES_PER_PASS_MAX`
//! bytes a pass, as on the readiness path; the rest waits for the next pass.
//!
//! Backpressure: the kernel keeps receiving while a connection's frames wait
//! (mesh outbox full, a `slow_down` rate limit, the per-pass budget). Once a
//! connection's unread input reaches [`RECEIVED_BYTES_MAX`] (or the length of
//! the frame at its head, if larger), its receive is cancelled
//! (`receive_pauses`), and TCP pushes back on the client, much as a socket
//! nobody reads does; it is armed again once every whole frame received has
//! been handled (or, while a rate limit holds them, once half has drained).
//!
//! ENOBUFS (every provided buffer in use) ends a multishot receive; it is
//! counted (`receive_buffer_shortages`) and armed again after the completion
//! batch, by which time every buffer of the batch is back: no spinning.
//!
//! Invariants: a completion's buffer is given back exactly once, whether or
//! not its connection still exists; a connection has at most one receive
//! armed (`receive_armed`); a paused or ended connection is never re-armed.
//! Shutdown: the ring is dropped with the shard and cancels every receive;
//! the buffer ring is unregistered before its memory is freed (ring module).

use std::os::fd::AsRawFd;

use flit_wire::FRAME_HEADER_BYTES;

use super::io::{CLOSE_DISCARD_BYTES_MAX, READ_BYTES_PER_PASS_MAX};
use super::Shard;
use crate::connection::{ConnectionKey, ConnectionState};
use crate::ring::{Completion, Token};

/// Provided buffers per shard (a power of two) and the size of each: 4 MiB
/// per shard, touched only as traffic needs (the pages are mapped lazily).
pub const RECEIVE_BUFFERS_COUNT: u16 = 256;
pub const RECEIVE_BUFFER_BYTES: u32 = 16 * 1024;
/// Unread input a connection may hold before its receive is paused (unless
/// the frame at its head is longer: that one must arrive whole).
pub const RECEIVED_BYTES_MAX: usize = 64 * 1024;

const _: () = assert!(RECEIVE_BUFFERS_COUNT.is_power_of_two());

impl Shard {
    /// Starts receiving on a new connection: through the ring, or through
    /// readiness for TLS connections and when the ring has no buffers.
    pub(super) fn arm_receive(&mut self, key: ConnectionKey) -> std::io::Result<()> {
        let on_ring = self.ring.receives_on_ring();
        let Some(connection) = self.connections.get_mut(key) else { return Ok(()) };
        let fd = connection.stream.as_raw_fd();
        if on_ring && connection.tls.is_none() {
            connection.receives_on_ring = true;
            connection.sends_on_ring = true;
            connection.receive_armed = true;
            self.ring.receive(fd, Token::Received(key))
        } else {
            self.ring.poll_readable(fd, Token::Readable(key))
        }
    }

    /// One receive completion: the bytes into the read buffer, the provided
    /// buffer back to the kernel, then what the result says.
    pub(super) fn on_received(&mut self, key: ConnectionKey, completion: Completion) {
        let length = usize::try_from(completion.result).unwrap_or(0);
        let mut appended = 0;
        let mut discarded_too_much = false;
        if let Some(id) = completion.buffer {
            // A burst can bring far more than a pass handles: handle what is
            // already whole first, so the read buffer stays small (large
            // buffers come and go through mmap and leave the allocator's
            // heap larger) and the input is taken in order.
            let unread = self.connections.get(key).map_or(0, |connection| connection.read_buffer.len());
            if unread + length > RECEIVED_BYTES_MAX && self.may_handle_frames(key) {
                self.handle_buffered_frames(key);
            }
            if let Some(connection) = self.connections.get_mut(key) {
                if connection.state == ConnectionState::Closing {
                    connection.discarded_bytes += length;
                    discarded_too_much = connection.discarded_bytes >= CLOSE_DISCARD_BYTES_MAX;
                } else {
                    connection.read_buffer.extend_from_slice(self.ring.received(id, length));
                    appended = length;
                }
            }
            self.ring.give_back(id);
        }
        if discarded_too_much {
            return self.finish_close(key);
        }
        let read_pass_nanos = self.read_pass_nanos;
        let frame_bytes_max = self.limits.frame_bytes_max();
        let Some(connection) = self.connections.get_mut(key) else { return };
        if !completion.more {
            connection.receive_armed = false;
        }
        match completion.result {
            result if result > 0 => {
                if appended > 0 {
                    connection.last_read_nanos = read_pass_nanos;
                    connection.pinged = false;
                    self.metrics.bytes_in.add(appended as u64);
                }
            }
            result if result == -libc::ENOBUFS => self.metrics.receive_buffer_shortages.add(1),
            // Our own cancel: a pause, or the connection closing.
            result if result == -libc::ECANCELED => {}
            // End of file (0), or the socket failed (a reset): no more input.
            _ => connection.end_of_input = true,
        }
        let state = connection.state;
        let (armed, paused, ended) = (connection.receive_armed, connection.receive_paused, connection.end_of_input);
        if state == ConnectionState::Closing {
            if ended {
                self.on_peer_closed(key);
            }
            return;
        }
        if !armed && !paused && !ended {
            self.receives_to_arm.push(key);
        }
        if armed && !paused && connection.read_buffer.len() >= pause_threshold(&connection.read_buffer, frame_bytes_max)
        {
            connection.receive_paused = true;
            self.metrics.receive_pauses.add(1);
            let _ = self.ring.cancel(Token::Received(key));
        }
        self.mark_ready(key);
    }

    /// Arms again the receives that ended (ENOBUFS, or a resumed pause).
    pub(super) fn arm_ended_receives(&mut self) -> std::io::Result<()> {
        for key in std::mem::take(&mut self.receives_to_arm) {
            let Some(connection) = self.connections.get_mut(key) else { continue };
            if connection.receive_armed
                || connection.receive_paused
                || connection.end_of_input
                || connection.state == ConnectionState::Closing
            {
                continue;
            }
            connection.receive_armed = true;
            let fd = connection.stream.as_raw_fd();
            self.ring.receive(fd, Token::Received(key))?;
        }
        Ok(())
    }

    /// The read pass for a connection that receives through the ring: handle
    /// the frames already received (within the per-pass budget); end of
    /// input; resume a paused receive.
    pub(super) fn read_received(&mut self, key: ConnectionKey) {
        let more = self.handle_buffered_frames_within(key, READ_BYTES_PER_PASS_MAX);
        let frame_bytes_max = self.limits.frame_bytes_max();
        let Some(connection) = self.connections.get_mut(key) else { return };
        if connection.state == ConnectionState::Closing {
            return;
        }
        if more {
            return self.mark_ready(key);
        }
        if connection.end_of_input && connection.reading_paused_until_nanos == 0 {
            return self.on_peer_closed(key);
        }
        // Every whole frame received has been handled (none is waiting for
        // a rate limit): what is left is at most the start of one frame, which
        // only more input can finish.
        let drained = connection.reading_paused_until_nanos == 0
            || connection.read_buffer.len() < pause_threshold(&connection.read_buffer, frame_bytes_max) / 2;
        if connection.receive_paused && drained {
            connection.receive_paused = false;
            if !connection.receive_armed {
                self.receives_to_arm.push(key);
            }
        }
    }
}

impl Shard {
    /// Whether a connection's frames may be handled now: no mesh outbox is
    /// backed up, no drain has begun, no rate limit holds the connection
    /// (the read pass's own conditions).
    fn may_handle_frames(&self, key: ConnectionKey) -> bool {
        self.outboxes.iter().all(|outbox| outbox.is_empty())
            && self.draining_since.is_none()
            && !self.reading_paused(key)
    }
}

/// How much unread input pauses a connection's receive: [`RECEIVED_BYTES_MAX`],
/// or the whole frame at the head of the input if that is longer (up to the
/// largest frame allowed; a longer claim fails `check` anyway).
fn pause_threshold(read_buffer: &[u8], frame_bytes_max: usize) -> usize {
    let head_frame_bytes = match read_buffer.first_chunk::<4>() {
        Some(length) => FRAME_HEADER_BYTES.saturating_add(u32::from_le_bytes(*length) as usize),
        None => 0,
    };
    RECEIVED_BYTES_MAX.max(head_frame_bytes.min(frame_bytes_max))
}
