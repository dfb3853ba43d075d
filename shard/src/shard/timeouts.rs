//! Timeouts: a client that connects and never says Hello, one that starts a
//! frame and never finishes it (slowloris), and one that goes silent, are
//! each closed with their own error code, so one hostile client holds a
//! connection slot for a bounded time only.
//!
//! A sweep over the shard's connections every `TIMEOUT_SWEEP_INTERVAL`
//! checks them: O(connections) a few times a second, no timer per
//! connection, and nothing on the message path beyond the timestamps the
//! read path stores (from the clock read it makes once per pass anyway).
//! A timeout therefore fires up to one interval late. No sweep runs while
//! draining: every connection is closing then anyway.
//!
//! A sweep is cut into steps of `TIMEOUT_SWEEP_SLOTS_PER_STEP` connection
//! slots, spread evenly over the interval, so no pass pays for every
//! connection: checking 10,000 idle connections in one pass held the shard
//! 0.2-1.6 ms every 250 ms (`perf record`, parked and spinning; issue 10).
//! The step timer then wakes a parked shard more often (every 6 ms at
//! 10,000 connections), for the same total work. What runs once per sweep
//! (route lanes, NATS INFO, the monitor snapshot) runs when a sweep starts.

use std::time::{Duration, Instant};

use flit_wire::{Encoder, ErrorCode, Op};

use super::Shard;
use crate::connection::{ConnectionKey, ConnectionState};

/// How often the shard checks its connections' timeouts.
pub const TIMEOUT_SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// Connection slots one sweep step checks (about 40 us of a pass at most).
pub const TIMEOUT_SWEEP_SLOTS_PER_STEP: usize = 256;

/// What a sweep decided for one connection.
pub(super) enum Verdict {
    Close(ErrorCode, String),
    Ping,
}

impl Shard {
    /// Runs a sweep step when one is due at `now`.
    pub(super) fn sweep_timeouts_if_due(&mut self, now: Instant) {
        if now < self.next_timeout_sweep || self.draining_since.is_some() {
            return;
        }
        let slots = self.connections.slot_count();
        let steps = slots.div_ceil(TIMEOUT_SWEEP_SLOTS_PER_STEP).max(1) as u32;
        self.next_timeout_sweep = now + TIMEOUT_SWEEP_INTERVAL / steps;
        let now_nanos = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        if self.timeout_sweep_cursor == 0 {
            self.sweep_once_per_interval(now_nanos);
        }
        let first = self.timeout_sweep_cursor.min(slots);
        let end = (first + TIMEOUT_SWEEP_SLOTS_PER_STEP).min(slots);
        self.timeout_sweep_cursor = if end >= slots { 0 } else { end };
        let mut verdicts = std::mem::take(&mut self.timeout_verdicts);
        for connection in self.connections.iter_slots(first..end).filter(|connection| connection.route.is_none()) {
            if let Some(verdict) = self.judge(connection, now_nanos) {
                verdicts.push((connection.key, verdict));
            }
        }
        for (key, verdict) in verdicts.drain(..) {
            match verdict {
                Verdict::Close(code, message) => self.begin_close(key, Some((code, &message))),
                Verdict::Ping => self.ping(key),
            }
        }
        self.timeout_verdicts = verdicts;
    }

    /// The sweep's work that is not per connection.
    fn sweep_once_per_interval(&mut self, now_nanos: u64) {
        if self.config.cluster.is_some() {
            self.sweep_lanes(now_nanos);
            self.push_nats_info_if_nodes_changed();
        }
        self.metrics.connection_monitor.refresh_if_requested(
            self.id,
            &self.connections,
            &self.subscriptions,
            now_nanos,
        );
    }

    fn judge(&self, connection: &crate::connection::Connection, now_nanos: u64) -> Option<Verdict> {
        let since = |nanos: u64| Duration::from_nanos(now_nanos.saturating_sub(nanos));
        let config = &self.config;
        match connection.state {
            ConnectionState::Closing => None,
            ConnectionState::AwaitingHello => {
                (since(connection.opened_at_nanos) > config.handshake_timeout).then(|| {
                    let message = format!("no Hello within {} ms of connecting", config.handshake_timeout.as_millis());
                    Verdict::Close(ErrorCode::HandshakeTimeout, message)
                })
            }
            ConnectionState::Open => {
                let partial = connection.partial_frame_since_nanos;
                if partial != 0 && since(partial) > config.frame_timeout {
                    let message = format!(
                        "a frame started {} ms ago is still incomplete ({} bytes); limit {} ms",
                        since(partial).as_millis(),
                        connection.read_buffer.len(),
                        config.frame_timeout.as_millis()
                    );
                    return Some(Verdict::Close(ErrorCode::StalledFrame, message));
                }
                let silent = since(connection.last_read_nanos);
                if config.idle_timeout.is_zero() {
                    None
                } else if silent > config.idle_timeout {
                    let message = format!("nothing received for {} ms", silent.as_millis());
                    Some(Verdict::Close(ErrorCode::IdleTimeout, message))
                } else if silent > config.idle_timeout / 2 && !connection.pinged {
                    Some(Verdict::Ping)
                } else {
                    None
                }
            }
        }
    }

    /// Asks a silent client to show it is alive (it answers with a Pong).
    fn ping(&mut self, key: ConnectionKey) {
        let Some(connection) = self.connections.get_mut(key) else { return };
        connection.pinged = true;
        if connection.nats.is_some() {
            flit_nats::encode_ping(&mut connection.write_buffer);
        } else {
            Encoder::bare(&mut connection.write_buffer, Op::Ping);
        }
        self.mark_dirty(key);
    }
}
