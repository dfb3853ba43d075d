//! Sending through the ring, for plain connections that receive through it.
//!
//! At the end of a pass each dirty connection's write buffer is frozen into
//! one `Bytes` and handed to the ring as one `SEND` (`start_send`); when large
//! payloads were queued by reference ahead of it (`Connection::spliced`,
//! shard/routing.rs), those pieces and the write buffer go as one vectored
//! `SENDMSG` instead. All of a pass's sends reach the kernel in one
//! `io_uring_enter`: the next pass's, or,
//! when the shard is about to park, the one it parks in (`Ring::wait`). The
//! ring owns the bytes until the completion (`on_sent`), so nothing the
//! kernel may read is ever freed under it.
//!
//! Order: at most one send per connection is in flight. Frames queued
//! meanwhile gather in the write buffer and go out in the next send, once the
//! completion has marked the connection dirty again.
//!
//! Short sends and full sockets: sends carry `MSG_DONTWAIT` (ring module), so
//! a full socket answers at once, with a short count or `-EAGAIN`. The rest is
//! kept (`unsent`) and sent when a one-shot `POLLOUT` says there is room;
//! meanwhile new frames wait behind it in the write buffer, counted against
//! `pending_bytes_max` like any others.
//!
//! Eviction of a slow consumer keeps only the rest of the frame the socket
//! has part of (`send_partial_frame_bytes`), whether that rest is still
//! unsent or comes back from a send in flight, then the error frame.
//!
//! Invariants: a connection with `send_in_flight_bytes > 0` has exactly one
//! `Sent` SQE the ring owns bytes for; `unsent` and a send in flight never
//! coexist; the queued output (spliced pieces, then the write buffer) starts
//! on a frame boundary while either exists, and a send always ends on one
//! (it takes all that is queued), so a frame's rest is only ever at the front.
//! Closing: `finish_close` submits the ring before the socket is closed if a
//! send for it may still be unsubmitted, so no SQE names a closed (or reused)
//! descriptor; a completion for a connection already gone just frees its bytes.

use std::os::fd::AsRawFd;

use super::Shard;
use crate::connection::ConnectionKey;
use crate::outgoing::Outgoing;
use crate::ring::{Completion, Token};

impl Shard {
    /// Hands a connection's queued output to the ring as one send, unless a
    /// send is already in flight or waiting for room. True if one started.
    pub(super) fn start_send(&mut self, key: ConnectionKey) -> std::io::Result<bool> {
        let Some(connection) = self.connections.get_mut(key) else { return Ok(false) };
        debug_assert!(connection.sends_on_ring);
        if connection.send_in_flight_bytes > 0 || connection.waiting_writable {
            // Its completion, or the socket's POLLOUT, marks it dirty again.
            return Ok(false);
        }
        let data = match connection.unsent.take() {
            Some(unsent) => unsent,
            None if connection.write_buffer.is_empty() && connection.spliced.is_empty() => return Ok(false),
            None => {
                // The buffer may begin with the rest of a frame a `send` call
                // (the pending-limit path) left; that rest now leads the send.
                connection.send_partial_frame_bytes = std::mem::take(&mut connection.partial_frame_bytes);
                let tail = connection.write_buffer.split().freeze();
                let data = Outgoing::from_parts(std::mem::take(&mut connection.spliced), tail);
                // Counted when first handed to the kernel, not at completion:
                // a parked shard drains completions only when it wakes, and
                // the counter should not lag behind the traffic meanwhile.
                // A short send's rest is not counted again.
                self.metrics.bytes_out.add(data.len() as u64);
                data
            }
        };
        connection.send_in_flight_bytes = data.len();
        let fd = connection.stream.as_raw_fd();
        self.ring.send(fd, key, data)?;
        Ok(true)
    }

    /// A send's completion: count what went out, keep what did not, and wait
    /// for room if the socket is full.
    pub(super) fn on_sent(&mut self, key: ConnectionKey, completion: Completion) -> std::io::Result<()> {
        let data = self.ring.finish_send(key);
        let Some(connection) = self.connections.get_mut(key) else { return Ok(()) };
        let Some(data) = data else {
            debug_assert!(false, "a send completion without its bytes");
            return Ok(());
        };
        debug_assert_eq!(connection.send_in_flight_bytes, data.len());
        connection.send_in_flight_bytes = 0;
        let discarding = std::mem::take(&mut connection.discarding_unsent);
        let rest = match completion.result {
            written if written > 0 => {
                let written = written as usize;
                connection.send_partial_frame_bytes =
                    connection.frame_rest_after_write(data.segments(), connection.send_partial_frame_bytes, written);
                data.advance(written)
            }
            result if result == -libc::EAGAIN => data,
            // 0 bytes for a non-empty send, a reset, a broken pipe: the
            // socket is gone for writing.
            _ => {
                self.finish_close(key);
                return Ok(());
            }
        };
        if !rest.is_empty() {
            let mut rest = rest;
            if discarding {
                rest.truncate(connection.send_partial_frame_bytes);
            }
            if !rest.is_empty() {
                connection.unsent = Some(rest);
                if !connection.waiting_writable {
                    connection.waiting_writable = true;
                    self.metrics.sends_blocked.add(1);
                    let fd = connection.stream.as_raw_fd();
                    self.ring.poll_writable(fd, Token::Writable(key))?;
                }
                return Ok(());
            }
        }
        connection.send_partial_frame_bytes = 0;
        // More may have been queued meanwhile; a closing connection may now be
        // done. Both are the write pass's business.
        self.mark_dirty(key);
        Ok(())
    }
}
