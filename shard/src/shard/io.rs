//! The socket side of a shard: accepting, reading frames off ready sockets,
//! writing dirty connections, and closing.
//!
//! Reads are bounded per connection per pass (fairness: one busy client
//! cannot starve the others), and skipped entirely while a mesh outbox is
//! backed up (backpressure reaches publishers through TCP instead of growing
//! queues here). Writes go out once per pass per connection, so every frame
//! queued for it during the pass shares one `send`.
//!
//! Closing is two-step. An error frame is queued, the state becomes Closing,
//! the connection's subscriptions are removed at once; once the frame is
//! written our side is shut down, and the socket is dropped when the peer
//! hangs up or `CLOSE_LINGER` passes. Lingering lets the error frame arrive
//! instead of being destroyed by a reset caused by unread input.
//!
//! An evicted slow consumer lingers longer (`EVICTION_FLUSH_TIMEOUT`): its
//! socket buffer may end inside a Deliver frame, and only the rest of that
//! frame and the Error frame (code 300) are kept. A client that resumes
//! reading within the timeout reads whole frames ending in the Error frame.
//! One that does not is reset (RST), never closed cleanly, because a clean
//! close after half a frame would look like a torn frame stream ending in an
//! ordinary end of file.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flit_wire::{check, decode, decode_publish, Check, ErrorCode, Op};

use super::dispatch::Incoming;
use super::Shard;
use crate::connection::{Connection, ConnectionKey, ConnectionState};
use crate::log_limit::ShardLogLimits;
use crate::metrics::ShardMetrics;
use crate::ring::{Completion, Token};

/// Most bytes read from one connection in one pass.
pub const READ_BYTES_PER_PASS_MAX: usize = 256 * 1024;
/// Most connections accepted in one pass.
pub const ACCEPTS_PER_PASS_MAX: usize = 64;
/// After a failed accept (EMFILE, ENFILE, ENOBUFS) or a pass that refused
/// connections at the limit, how long until the listener is tried again.
pub const ACCEPT_RETRY_INTERVAL: Duration = Duration::from_millis(10);
/// How long a closing connection waits for its peer to hang up.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// How long an evicted slow consumer has to read the rest of the frame its
/// socket holds part of, and the Error frame after it, before it is reset.
/// A pause of a few seconds (a stop-the-world collection, a debugger) ends
/// in a clean eviction notice; the cost is one socket and at most one frame
/// held that long per evicted connection.
pub const EVICTION_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes a closing connection reads and discards before it is dropped.
pub const CLOSE_DISCARD_BYTES_MAX: usize = 1024 * 1024;

enum ReadOutcome {
    /// Bytes were appended; more may be waiting.
    Data {
        bytes: usize,
        filled_chunk: bool,
    },
    WouldBlock,
    Closed,
}

/// Which protocol a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Protocol {
    Native,
    Nats,
}

impl Shard {
    pub(super) fn accept_connections(&mut self, protocol: Protocol) -> std::io::Result<()> {
        let mut refused_in_pass = false;
        for _ in 0..ACCEPTS_PER_PASS_MAX {
            let listener = match protocol {
                Protocol::Native => &self.listener,
                Protocol::Nats => &self.nats_listener,
            };
            let Some(listener) = listener else { break };
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    self.set_listener_ready(protocol, false);
                    return Ok(());
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => {
                    // EMFILE and friends: keep serving the connections we
                    // have, try again after a pause; the log is rate-limited.
                    self.metrics.accept_errors.add(1);
                    self.set_listener_ready(protocol, false);
                    let now = Instant::now();
                    self.accept_retry_at = Some(now + ACCEPT_RETRY_INTERVAL);
                    if let Some(suppressed) = self.log_limits.accept_errors.admit(now) {
                        let message = "accept failed; serving existing connections, retrying";
                        tracing::warn!(shard = self.id, %error, suppressed, "{message}");
                    }
                    return Ok(());
                }
            };
            let refusals_before = self.metrics.connections_refused.get();
            self.adopt(stream, protocol)?;
            if self.metrics.connections_refused.get() != refusals_before {
                refused_in_pass = true;
            }
        }
        if refused_in_pass {
            // At the connection limit: refuse this pass's batch with 302, then
            // leave the rest in the kernel's backlog for a moment, so a storm
            // of reconnects costs at most ACCEPTS_PER_PASS_MAX refusals per
            // ACCEPT_RETRY_INTERVAL per shard.
            self.set_listener_ready(protocol, false);
            self.accept_retry_at = Some(Instant::now() + ACCEPT_RETRY_INTERVAL);
        }
        Ok(())
    }

    fn set_listener_ready(&mut self, protocol: Protocol, ready: bool) {
        match protocol {
            Protocol::Native => self.listener_ready = ready,
            Protocol::Nats => self.nats_listener_ready = ready,
        }
    }

    fn adopt(&mut self, stream: std::net::TcpStream, protocol: Protocol) -> std::io::Result<()> {
        if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
            return Ok(());
        }
        let limit_reached = if self.connections.len() >= self.config.connections_per_shard_max {
            Some(("connections_per_shard_max", self.config.connections_per_shard_max))
        } else if self.shared.connections_open.fetch_add(1, Ordering::Relaxed) >= self.config.connections_max {
            self.shared.connections_open.fetch_sub(1, Ordering::Relaxed);
            Some(("connections_max", self.config.connections_max))
        } else {
            None
        };
        if let Some((limit_name, limit)) = limit_reached {
            self.metrics.connections_refused.add(1);
            self.metrics.count_error(ErrorCode::TooManyConnections);
            if let Some(suppressed) = self.log_limits.limits.admit(Instant::now()) {
                tracing::warn!(shard = self.id, limit, suppressed, "connection refused: {limit_name} reached");
            }
            let mut frame = bytes::BytesMut::new();
            let message = format!("connection limit reached ({limit_name} = {limit})");
            match protocol {
                Protocol::Native => {
                    let _ = self.encoder.error(&mut frame, ErrorCode::TooManyConnections, &message);
                }
                Protocol::Nats => {
                    frame.extend_from_slice(super::nats::nats_line_for(ErrorCode::TooManyConnections, "").as_bytes())
                }
            }
            // Best effort and never blocking: the socket is non-blocking and
            // new, so a frame this small fits its send buffer.
            let _ = (&stream).write(&frame);
            return Ok(());
        }
        let tls = match &self.config.tls {
            None => None,
            Some(config) => match crate::tls::session(config) {
                Ok(session) => Some(session),
                Err(_) => {
                    self.shared.connections_open.fetch_sub(1, Ordering::Relaxed);
                    return Ok(());
                }
            },
        };
        let now_nanos = self.now_nanos();
        let key = self.connections.insert(|key| Connection::new(key, stream, now_nanos));
        if let Some(connection) = self.connections.get_mut(key) {
            connection.tls = tls;
            connection.connection_id =
                crate::monitoring::connection_id(self.metrics.connections_accepted.get(), self.id, self.shard_count);
            connection.peer_address = connection.stream.peer_addr().ok();
        }
        self.metrics.connections_accepted.add(1);
        self.metrics.connections.set(self.connections.len() as u64);
        if protocol == Protocol::Nats {
            self.greet_nats(key);
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            if let Some(suppressed) = self.log_limits.connections.admit(Instant::now()) {
                let peer = self.connections.get(key).and_then(|connection| connection.stream.peer_addr().ok());
                tracing::debug!(shard = self.id, connection = key, ?peer, suppressed, "connection opened");
            }
        }
        self.arm_receive(key)
    }

    pub(super) fn on_readable(&mut self, key: ConnectionKey, completion: Completion) -> std::io::Result<()> {
        let Some(connection) = self.connections.get_mut(key) else { return Ok(()) };
        if completion.result == -libc::ECANCELED {
            return Ok(());
        }
        let hang_up = (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) as i32;
        if completion.result > 0 && completion.result & hang_up != 0 {
            connection.peer_hung_up = true;
        }
        if !completion.more {
            let fd = connection.stream.as_raw_fd();
            self.ring.poll_readable(fd, Token::Readable(key))?;
        }
        self.mark_ready(key);
        Ok(())
    }

    pub(super) fn mark_ready(&mut self, key: ConnectionKey) {
        if let Some(connection) = self.connections.get_mut(key) {
            if !connection.in_ready_queue {
                connection.in_ready_queue = true;
                self.ready.push_back(key);
            }
        }
    }

    pub(super) fn mark_dirty(&mut self, key: ConnectionKey) {
        if let Some(connection) = self.connections.get_mut(key) {
            if !connection.in_dirty_list {
                connection.in_dirty_list = true;
                self.dirty.push(key);
            }
        }
    }

    /// Reads and handles frames from ready connections; true if any were read.
    pub(super) fn read_ready_connections(&mut self) -> std::io::Result<bool> {
        let mut did_work = false;
        if !self.ready.is_empty() {
            self.read_pass_nanos = self.now_nanos();
        }
        for _ in 0..self.ready.len() {
            if self.outboxes.iter().any(|outbox| !outbox.is_empty()) || self.draining_since.is_some() {
                break;
            }
            let Some(key) = self.ready.pop_front() else { break };
            let Some(connection) = self.connections.get_mut(key) else { continue };
            connection.in_ready_queue = false;
            did_work = true;
            if connection.receives_on_ring {
                // Received already (receive.rs); a closing connection's input
                // is discarded as it arrives.
                if connection.state != ConnectionState::Closing && !self.reading_paused(key) {
                    self.read_received(key);
                }
                continue;
            }
            if connection.state == ConnectionState::Closing {
                self.discard_input(key);
                continue;
            }
            if self.reading_paused(key) {
                // Resumed from the paused list when its rate limit allows.
                continue;
            }
            if self.read_connection(key) {
                self.mark_ready(key);
            }
        }
        Ok(did_work)
    }

    /// Reads up to the per-pass budget and handles every whole frame.
    /// Returns true when the connection may still have input waiting.
    fn read_connection(&mut self, key: ConnectionKey) -> bool {
        let mut bytes_read = 0;
        while bytes_read < READ_BYTES_PER_PASS_MAX {
            match self.read_some(key) {
                ReadOutcome::Data { bytes, filled_chunk } => {
                    bytes_read += bytes;
                    self.handle_buffered_frames(key);
                    let peer_hung_up = self.connections.get(key).is_some_and(|c| c.peer_hung_up);
                    if !filled_chunk && !peer_hung_up {
                        // A short read: the socket is empty for now. Another
                        // readiness completion comes when more arrives. (After
                        // a hang-up none will: then read on to end of file.)
                        return false;
                    }
                }
                ReadOutcome::WouldBlock => return false,
                ReadOutcome::Closed => {
                    self.on_peer_closed(key);
                    return false;
                }
            }
            if self.connections.get(key).is_none_or(|c| c.state == ConnectionState::Closing) {
                return false;
            }
        }
        true
    }

    /// One `recv` into the shard's scratch buffer, then a copy of what came
    /// into the connection's read buffer. Reading straight into the read
    /// buffer would first zero a whole chunk of it (safe Rust cannot read
    /// into uninitialised memory), which costs more than copying the bytes
    /// that actually arrived.
    fn read_some(&mut self, key: ConnectionKey) -> ReadOutcome {
        let Some(connection) = self.connections.get_mut(key) else { return ReadOutcome::Closed };
        if connection.tls.is_some() {
            return self.read_some_tls(key);
        }
        let read = match connection.stream.read(&mut self.read_scratch) {
            Ok(0) => return ReadOutcome::Closed,
            Ok(read) => read,
            Err(error) => {
                return match error.kind() {
                    ErrorKind::WouldBlock | ErrorKind::Interrupted => ReadOutcome::WouldBlock,
                    _ => ReadOutcome::Closed,
                };
            }
        };
        connection.read_buffer.extend_from_slice(&self.read_scratch[..read]);
        connection.last_read_nanos = self.read_pass_nanos;
        connection.pinged = false;
        self.metrics.bytes_in.add(read as u64);
        ReadOutcome::Data { bytes: read, filled_chunk: read == self.read_scratch.len() }
    }

    /// `read_some` for a TLS connection: socket bytes through rustls into
    /// the read buffer; handshake replies and alerts make it dirty.
    fn read_some_tls(&mut self, key: ConnectionKey) -> ReadOutcome {
        let Some(connection) = self.connections.get_mut(key) else { return ReadOutcome::Closed };
        let outcome = crate::tls::read(connection, &mut self.read_scratch);
        let wants_write = connection.tls.as_ref().is_some_and(|session| session.wants_write());
        match outcome {
            crate::tls::TlsRead::Data { socket_bytes } => {
                connection.last_read_nanos = self.read_pass_nanos;
                connection.pinged = false;
                self.metrics.bytes_in.add(socket_bytes as u64);
                if wants_write {
                    self.mark_dirty(key);
                }
                // rustls reads at most one buffer of records per call: more may wait.
                ReadOutcome::Data { bytes: socket_bytes, filled_chunk: true }
            }
            crate::tls::TlsRead::WouldBlock => ReadOutcome::WouldBlock,
            crate::tls::TlsRead::Closed => ReadOutcome::Closed,
            crate::tls::TlsRead::Failed(reason) => {
                self.metrics.tls_failures.add(1);
                if let Some(suppressed) = self.log_limits.client_errors.admit(Instant::now()) {
                    tracing::info!(shard = self.id, connection = key, suppressed, "TLS failed: {reason}");
                }
                // No flit frame: the client is not speaking flit over TLS. The
                // alert rustls queued goes out, then the socket closes.
                self.begin_close(key, None);
                ReadOutcome::WouldBlock
            }
        }
    }

    pub(super) fn handle_buffered_frames(&mut self, key: ConnectionKey) {
        self.handle_buffered_frames_within(key, usize::MAX);
    }

    /// Handles whole frames until `bytes_budget` bytes of them have been
    /// handled; returns true when it stopped for the budget with more left
    /// (fairness: the connection waits for the next pass).
    pub(super) fn handle_buffered_frames_within(&mut self, key: ConnectionKey, bytes_budget: usize) -> bool {
        match self.connections.get(key) {
            Some(connection) if connection.nats.is_some() => return self.handle_nats_input(key, bytes_budget),
            Some(connection) if connection.route.is_some() => return self.handle_lane_input(key, bytes_budget),
            _ => {}
        }
        let frame_bytes_max = self.limits.frame_bytes_max();
        let mut bytes_handled = 0;
        loop {
            if bytes_handled >= bytes_budget {
                return self.connections.get(key).is_some_and(|connection| !connection.read_buffer.is_empty());
            }
            let Some(connection) = self.connections.get_mut(key) else { return false };
            if connection.state == ConnectionState::Closing || connection.reading_paused_until_nanos != 0 {
                return false;
            }
            let length = match check(&connection.read_buffer, frame_bytes_max) {
                Check::Incomplete => {
                    connection.wait_for_rest_of_frame(self.read_pass_nanos);
                    return false;
                }
                Check::Invalid(error) => {
                    self.protocol_error(key, error.code(), &error.to_string());
                    return false;
                }
                Check::Complete(length) => length,
            };
            bytes_handled += length;
            let frame = connection.read_buffer.split_to(length).freeze();
            connection.partial_frame_since_nanos = 0;
            // Publishes, the hot path, keep the frame whole and get ranges;
            // everything else is decoded into owned parts.
            let incoming = if frame[4] == Op::Publish as u8 {
                decode_publish(&frame, &self.limits).map(|parts| Incoming::Publish(frame, parts))
            } else {
                if flit_wire::stream::is_stream_op(flit_wire::Op::from_u8(frame[4]).unwrap_or(Op::Ping)) {
                    flit_wire::stream::decode_stream(frame, &self.limits).map(Incoming::Stream)
                } else {
                    decode(frame, &self.limits).map(Incoming::Other)
                }
            };
            match incoming {
                Ok(incoming) => self.handle_frame(key, incoming),
                Err(error) => self.protocol_error(key, error.code(), &error.to_string()),
            }
        }
    }

    /// End of file. In the middle of a frame it is an error; otherwise the
    /// client has said all it will (a half-close, as `nc` or a script does):
    /// the connection closes once what is queued for it, deferred replies
    /// included, has been written.
    pub(super) fn on_peer_closed(&mut self, key: ConnectionKey) {
        let Some(connection) = self.connections.get_mut(key) else { return };
        connection.peer_closed = true;
        if connection.state != ConnectionState::Closing && !connection.read_buffer.is_empty() {
            let message = format!("connection closed with {} bytes of a frame unread", connection.read_buffer.len());
            return self.protocol_error(key, ErrorCode::TruncatedFrame, &message);
        }
        if connection.state != ConnectionState::Closing {
            connection.state = ConnectionState::Closing;
            connection.close_deadline = Some(Instant::now() + CLOSE_LINGER);
            self.closing.push(key);
            self.remove_connection_subscriptions(key);
        }
        self.mark_dirty(key);
    }

    /// Evicts a connection whose queued output passed `pending_bytes_max`,
    /// after one attempt to write it out (one pass can queue more than the
    /// limit for a client that reads perfectly well). Returns whether the
    /// connection is still open.
    pub(super) fn enforce_pending_limit(&mut self, key: ConnectionKey) -> bool {
        let limit = self.config.pending_bytes_max;
        let Some(connection) = self.connections.get_mut(key) else { return false };
        // A route bounds its own queue (cluster/, drop and count).
        if connection.queued_output_bytes() <= limit || connection.route.is_some() {
            return true;
        }
        // A ring send in flight or waiting for room comes first: a `send`
        // call now would put bytes out of order. (A send in flight has
        // normally completed already: sends complete as they are submitted,
        // at the start of the pass; what waits for room is a slow reader.)
        let write_attempt = if connection.send_busy() { Ok(0) } else { connection.write_out() };
        match write_attempt {
            Ok(written) => self.metrics.bytes_out.add(written as u64),
            Err(_) => {
                self.finish_close(key);
                return false;
            }
        }
        let now_nanos = self.now_nanos();
        if let Some(connection) = self.connections.get_mut(key) {
            account_write(connection, &self.metrics, &mut self.pending_bytes_total, now_nanos);
        }
        let Some(connection) = self.connections.get(key) else { return false };
        if connection.queued_output_bytes() <= limit {
            return true;
        }
        self.metrics.slow_consumer_evictions.add(1);
        let message = format!("more than {limit} bytes pending");
        self.begin_close(key, Some((ErrorCode::SlowConsumer, &message)));
        false
    }

    /// Sends an error frame and starts closing the connection.
    pub(super) fn protocol_error(&mut self, key: ConnectionKey, code: ErrorCode, message: &str) {
        self.metrics.protocol_errors.add(1);
        self.begin_close(key, Some((code, message)));
    }

    /// Starts closing: optional error frame, subscriptions removed, linger.
    /// A NATS connection gets the `-ERR` line for the code instead.
    pub(super) fn begin_close(&mut self, key: ConnectionKey, error: Option<(ErrorCode, &str)>) {
        let nats_line = match error {
            Some((code, message)) if self.connections.get(key).is_some_and(|c| c.nats.is_some()) => {
                Some(super::nats::nats_line_for(code, message))
            }
            _ => None,
        };
        match (error, nats_line) {
            (Some((code, message)), Some(line)) => self.begin_close_as(key, Some((code, message)), Some(&line)),
            _ => self.begin_close_as(key, error, None),
        }
    }

    /// Closes a NATS connection with this `-ERR` line (counted under `code`).
    pub(super) fn begin_close_with_line(&mut self, key: ConnectionKey, code: ErrorCode, line: &str) {
        let message = line.trim_end().to_string();
        self.begin_close_as(key, Some((code, &message)), Some(line));
    }

    /// `begin_close`, with the NATS line (if any) already chosen.
    fn begin_close_as(&mut self, key: ConnectionKey, error: Option<(ErrorCode, &str)>, nats_line: Option<&str>) {
        let Some(connection) = self.connections.get_mut(key) else { return };
        if connection.state == ConnectionState::Closing {
            return;
        }
        if connection.route.is_some() {
            // A route has no error frames: it just ends (the peer redials).
            return self.finish_close(key);
        }
        connection.state = ConnectionState::Closing;
        connection.read_buffer.clear();
        connection.deferred_replies.clear();
        connection.close_deadline = Some(Instant::now() + CLOSE_LINGER);
        connection.error_sent = error.is_some();
        if let Some((code, message)) = error {
            self.metrics.count_error(code);
            log_close(&mut self.log_limits, self.id, key, code, message);
            if code == ErrorCode::SlowConsumer && connection.nats.is_some() {
                // NATS text has no length prefixes to finish a half-sent MSG
                // by: drop everything unsent and reset the connection at
                // the next reap (nats-server closes a slow consumer too).
                connection.discard_unsent_frames();
                connection.write_buffer.clear();
                connection.spliced.clear();
                connection.unsent = None;
                connection.close_deadline = Some(Instant::now());
                let _ = socket2::SockRef::from(&connection.stream).set_linger(Some(Duration::ZERO));
            } else if code == ErrorCode::SlowConsumer {
                // The client is not reading: what is queued will not arrive
                // in time anyway, and keeping it costs pending_bytes_max.
                connection.discard_unsent_frames();
                connection.close_deadline = Some(Instant::now() + EVICTION_FLUSH_TIMEOUT);
            }
            match nats_line {
                Some(_) if code == ErrorCode::SlowConsumer => {}
                Some(line) => connection.write_buffer.extend_from_slice(line.as_bytes()),
                None => {
                    let _ = self.encoder.error(&mut connection.write_buffer, code, message);
                }
            }
        }
        self.closing.push(key);
        self.remove_connection_subscriptions(key);
        self.mark_dirty(key);
    }

    fn discard_input(&mut self, key: ConnectionKey) {
        let Some(connection) = self.connections.get_mut(key) else { return };
        let mut sink = [0u8; 4096];
        let mut discarded = 0;
        loop {
            match connection.stream.read(&mut sink) {
                Ok(0) => return self.on_peer_closed(key),
                Ok(read) => {
                    discarded += read;
                    if discarded >= CLOSE_DISCARD_BYTES_MAX {
                        return self.finish_close(key);
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return self.finish_close(key),
            }
        }
    }

    /// Drops closing connections whose linger has passed.
    pub(super) fn reap_closing(&mut self) {
        let now = Instant::now();
        let expired: Vec<ConnectionKey> = self
            .closing
            .iter()
            .copied()
            .filter(|key| {
                self.connections.get(*key).is_none_or(|c| c.close_deadline.is_some_and(|deadline| deadline <= now))
            })
            .collect();
        for key in expired {
            if let Some(connection) = self.connections.get(key) {
                if connection.has_output() {
                    // What the peer has may end inside a frame: a reset, not
                    // an end of file, tells it the stream broke off.
                    let _ = socket2::SockRef::from(&connection.stream).set_linger(Some(Duration::ZERO));
                }
            }
            self.finish_close(key);
        }
    }

    pub(super) fn closing_deadline_soonest(&self) -> Option<Instant> {
        self.closing.iter().filter_map(|key| self.connections.get(*key)?.close_deadline).min()
    }

    /// Removes the connection for good: cancels its polls, closes the socket.
    pub(super) fn finish_close(&mut self, key: ConnectionKey) {
        if self.connections.get(key).is_none() {
            return;
        }
        self.remove_connection_subscriptions(key);
        let Some(mut connection) = self.connections.remove(key) else { return };
        self.pending_bytes_total -= connection.pending_bytes_reported;
        self.metrics.pending_bytes.set(self.pending_bytes_total as u64);
        self.metrics.connections.set(self.connections.len() as u64);
        if let Some(lane) = connection.route.take() {
            // Lanes do not count against connections_max.
            self.on_lane_closed(key, &lane);
        } else {
            self.shared.connections_open.fetch_sub(1, Ordering::Relaxed);
        }
        if tracing::enabled!(tracing::Level::DEBUG) && self.log_limits.connections.admit(Instant::now()).is_some() {
            let reason = if connection.error_sent { "after an error frame" } else { "peer closed or write failed" };
            tracing::debug!(shard = self.id, connection = key, reason, "connection closed");
        }
        let receive_token = if connection.receives_on_ring { Token::Received(key) } else { Token::Readable(key) };
        if !connection.receives_on_ring || connection.receive_armed {
            let _ = self.ring.cancel(receive_token);
        }
        if connection.waiting_writable {
            let _ = self.ring.cancel(Token::Writable(key));
        }
        if connection.send_in_flight_bytes > 0 && self.ring.sends_unsubmitted() > 0 {
            // Its send may still sit in the submission queue: hand it to the
            // kernel while the descriptor is ours, not after it is closed and
            // perhaps reused by the next accept.
            let _ = self.ring.submit();
        }
        self.closing.retain(|closing| *closing != key);
        self.barrier_waiters.retain(|waiter| *waiter != key);
        self.metrics.connections_closed.add(1);
        drop(connection);
    }

    /// Writes every dirty connection once; true if any bytes went out.
    pub(super) fn write_dirty_connections(&mut self) -> std::io::Result<bool> {
        let mut did_work = false;
        let dirty = std::mem::take(&mut self.dirty);
        // One clock read per pass, shared by every connection written in it.
        let now_nanos = if dirty.is_empty() { 0 } else { self.now_nanos() };
        for key in &dirty {
            let Some(connection) = self.connections.get_mut(*key) else { continue };
            connection.in_dirty_list = false;
            if connection.sends_on_ring {
                did_work |= self.start_send(*key)?;
            } else if connection.has_output() {
                did_work = true;
                match connection.write_out() {
                    Ok(written) => self.metrics.bytes_out.add(written as u64),
                    Err(_) => {
                        self.finish_close(*key);
                        continue;
                    }
                }
            }
            let Some(connection) = self.connections.get_mut(*key) else { continue };
            account_write(connection, &self.metrics, &mut self.pending_bytes_total, now_nanos);
            if connection.has_output() {
                if connection.sends_on_ring {
                    // The send's completion, or POLLOUT for its rest, marks
                    // it dirty again.
                    continue;
                }
                if !connection.waiting_writable {
                    connection.waiting_writable = true;
                    let fd = connection.stream.as_raw_fd();
                    self.ring.poll_writable(fd, Token::Writable(*key))?;
                }
                continue;
            }
            connection.release_idle_buffers();
            if connection.state != ConnectionState::Closing || !connection.deferred_replies.is_empty() {
                continue;
            }
            // Closing, and everything is written.
            if connection.peer_closed {
                self.finish_close(*key);
            } else if !connection.write_shut_down {
                connection.write_shut_down = true;
                connection.shut_down_write();
            }
        }
        let mut dirty = dirty;
        if !dirty.is_empty() {
            self.metrics.pending_bytes.set(self.pending_bytes_total as u64);
        }
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
        Ok(did_work)
    }

    /// Drain begins: every client is told, once, before anything else is
    /// queued for it, so it can stop publishing and find another server.
    pub(super) fn announce_drain(&mut self) {
        let close_within_ms = self.config.shutdown_flush_timeout.as_millis() as u64;
        for key in self.connections.keys() {
            let Some(connection) = self.connections.get_mut(key) else { continue };
            // Before its Welcome a client expects nothing else; it gets the
            // shutting_down error at the close instead.
            // NATS has no Draining op: its clients reconnect on the close.
            // Routes just end.
            if connection.state != ConnectionState::Open || connection.nats.is_some() || connection.route.is_some() {
                continue;
            }
            flit_wire::Encoder::draining(&mut connection.write_buffer, close_within_ms);
            self.mark_dirty(key);
        }
    }

    /// Shutdown: tells every client why, writes what it can, closes all.
    pub(super) fn close_all_for_shutdown(&mut self) {
        for key in self.connections.keys() {
            let Some(connection) = self.connections.get_mut(key) else { continue };
            if connection.route.is_some() {
                // Not a client: no notice, not counted in connections_open.
                let _ = connection.stream.shutdown(std::net::Shutdown::Both);
                continue;
            }
            if connection.nats.is_none() {
                let _ =
                    self.encoder.error(&mut connection.write_buffer, ErrorCode::ShuttingDown, "server shutting down");
            }
            self.metrics.count_error(ErrorCode::ShuttingDown);
            self.shared.connections_open.fetch_sub(1, Ordering::Relaxed);
            // Behind a ring send that has not finished, a `send` call would
            // put these bytes out of order: then the client sees the socket
            // close without them (the flush timeout has passed by now).
            if !connection.send_busy() {
                let _ = connection.write_out();
            }
            connection.shut_down_write();
            self.metrics.connections_closed.add(1);
        }
        self.connections = Default::default();
        self.pending_bytes_total = 0;
        self.metrics.pending_bytes.set(0);
        self.metrics.connections.set(0);
    }
}

/// One line, rate-limited by kind, for a connection closed with an error.
fn log_close(limits: &mut ShardLogLimits, shard: usize, key: ConnectionKey, code: ErrorCode, message: &str) {
    let now = Instant::now();
    let code_name = code.name();
    match code {
        ErrorCode::SlowConsumer => {
            if let Some(suppressed) = limits.evictions.admit(now) {
                tracing::warn!(
                    shard,
                    connection = key,
                    code = code_name,
                    suppressed,
                    "slow consumer evicted: {message}"
                );
            }
        }
        ErrorCode::TooManySubscriptions | ErrorCode::TooManyConnections => {
            if let Some(suppressed) = limits.limits.admit(now) {
                tracing::warn!(shard, connection = key, code = code_name, suppressed, "limit reached: {message}");
            }
        }
        _ => {
            if let Some(suppressed) = limits.client_errors.admit(now) {
                tracing::info!(shard, connection = key, code = code_name, suppressed, "closing connection: {message}");
            }
        }
    }
}

/// After a write: feeds the latency histogram once the buffer is empty, and
/// brings the shard's pending-bytes total up to date for this connection.
fn account_write(connection: &mut Connection, metrics: &ShardMetrics, pending_bytes_total: &mut usize, now_nanos: u64) {
    if connection.write_buffer.is_empty() && connection.spliced.is_empty() && connection.deliveries_pending > 0 {
        let waited = now_nanos.saturating_sub(connection.oldest_delivery_received_at_nanos);
        metrics.in_router_latency.record(waited, u64::from(connection.deliveries_pending));
        connection.deliveries_pending = 0;
    }
    // A ring send in flight is not pending: it completes as it is submitted
    // (MSG_DONTWAIT), and what it leaves comes back as `unsent`.
    let pending = connection.queued_output_bytes();
    *pending_bytes_total = *pending_bytes_total - connection.pending_bytes_reported + pending;
    connection.pending_bytes_reported = pending;
}
