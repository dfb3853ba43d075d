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
//! Backpressure: the kernel keeps receiving while a connection's frames wait
//! (mesh outbox full, a `slow_down` rate limit). Once a connection's unread
//! input reaches [`RECEIVED_BYTES_MAX`] beyond one largest frame, its receive
//! is cancelled (`receive_pauses`), and TCP pushes back on the client; it is
//! armed again once the input has drained to half of that.
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

use super::io::CLOSE_DISCARD_BYTES_MAX;
use super::Shard;
use crate::connection::{ConnectionKey, ConnectionState};
use crate::ring::{Completion, Token};

/// Provided buffers per shard (a power of two) and the size of each: 4 MiB
/// per shard, touched only as traffic needs (the pages are mapped lazily).
pub const RECEIVE_BUFFERS_COUNT: u16 = 256;
pub const RECEIVE_BUFFER_BYTES: u32 = 16 * 1024;
/// Unread input a connection may hold beyond one largest frame before its
/// receive is paused.
pub const RECEIVED_BYTES_MAX: usize = 256 * 1024;

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
        let received_bytes_max = self.received_bytes_max();
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
        if armed && !paused && connection.read_buffer.len() >= received_bytes_max {
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
    /// the frames already received; end of input; resume a paused receive.
    pub(super) fn read_received(&mut self, key: ConnectionKey) {
        self.handle_buffered_frames(key);
        let resume_below = self.received_bytes_max() / 2;
        let Some(connection) = self.connections.get_mut(key) else { return };
        if connection.state == ConnectionState::Closing {
            return;
        }
        if connection.end_of_input && connection.reading_paused_until_nanos == 0 {
            return self.on_peer_closed(key);
        }
        if connection.receive_paused && connection.read_buffer.len() < resume_below {
            connection.receive_paused = false;
            if !connection.receive_armed {
                self.receives_to_arm.push(key);
            }
        }
    }

    fn received_bytes_max(&self) -> usize {
        self.limits.frame_bytes_max() + RECEIVED_BYTES_MAX
    }
}
