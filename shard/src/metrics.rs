//! Live per-shard counters, gauges and the in-router latency histogram, read
//! by the metrics endpoint while the shards run.
//!
//! Each [`ShardMetrics`] has exactly one writer: its shard's thread. So an
//! update is a relaxed load and a relaxed store of the shard's own cache line
//! (plain `mov`s on x86-64 and arm64), not a locked read-modify-write, and the
//! message path takes no lock and shares no line with another shard. A reader
//! (the metrics thread) sees each value as of some recent moment; values are
//! not a consistent snapshot of one instant, which Prometheus does not need.
//!
//! The histogram takes one sample per `send` that empties a connection's
//! write buffer, weighted by the deliveries in it: the time from the read
//! that brought the oldest of those messages in to that `send`. So each
//! message is counted once, with an upper bound of its own in-router time.
//!
//! After a shard stops, its metrics stay readable (frozen, `up` = 0).

use std::sync::atomic::{AtomicU64, Ordering};

use flit_wire::ErrorCode;

use crate::stats::ShardStats;

/// A monotonically increasing count with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `amount`. Only the owning shard's thread may call this: with two
    /// writers, increments would be lost (by design there is one).
    #[inline]
    pub fn add(&self, amount: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(amount), Ordering::Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down, with a single writer.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    #[inline]
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the latency buckets, in nanoseconds (1 us to 1 s); a last
/// bucket above them catches everything slower.
pub const LATENCY_BUCKET_BOUNDS_NANOS: [u64; 16] = [
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
    1_000_000_000,
];

/// A fixed-bucket histogram of durations in nanoseconds, single writer.
/// Buckets are not cumulative here; the exporter sums them.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [Counter; LATENCY_BUCKET_BOUNDS_NANOS.len() + 1],
    sum_nanos: Counter,
    count: Counter,
}

impl LatencyHistogram {
    /// Records `weight` samples of `nanos` each.
    #[inline]
    pub fn record(&self, nanos: u64, weight: u64) {
        let bucket = LATENCY_BUCKET_BOUNDS_NANOS.iter().position(|bound| nanos <= *bound);
        self.buckets[bucket.unwrap_or(LATENCY_BUCKET_BOUNDS_NANOS.len())].add(weight);
        self.sum_nanos.add(nanos.saturating_mul(weight));
        self.count.add(weight);
    }

    /// Per-bucket counts (not cumulative), the last one above every bound.
    pub fn bucket_counts(&self) -> Vec<u64> {
        self.buckets.iter().map(Counter::get).collect()
    }

    pub fn sum_nanos(&self) -> u64 {
        self.sum_nanos.get()
    }

    pub fn count(&self) -> u64 {
        self.count.get()
    }
}

/// Everything one shard reports. Aligned so two shards' metrics never share
/// a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ShardMetrics {
    /// 1 while the shard's loop runs; 0 before start, after stop or death.
    pub up: Gauge,
    /// 1 while the shard accepts new connections (0 once draining).
    pub accepting: Gauge,
    /// 1 when plain connections receive through the ring (multishot receives
    /// into provided buffers), 0 when through readiness and `recv`.
    pub receive_on_ring: Gauge,
    pub connections: Gauge,
    pub subscriptions: Gauge,
    /// Bytes queued in connections' write buffers, as of the last write pass.
    pub pending_bytes: Gauge,
    pub connections_accepted: Counter,
    pub connections_refused: Counter,
    pub connections_closed: Counter,
    pub messages_in: Counter,
    pub bytes_in: Counter,
    pub deliveries: Counter,
    pub bytes_out: Counter,
    pub mesh_messages_sent: Counter,
    pub mesh_messages_received: Counter,
    pub mesh_queue_full_events: Counter,
    pub no_responders: Counter,
    pub queue_group_misses: Counter,
    pub slow_consumer_evictions: Counter,
    pub protocol_errors: Counter,
    pub accept_errors: Counter,
    pub mesh_messages_to_dead_shards: Counter,
    /// Publishes over a rate limit: dropped (policy reject), or accepted with
    /// the socket's reading paused (policy slow_down).
    pub rate_limit_rejections: Counter,
    pub rate_limit_pauses: Counter,
    /// TLS connections closed by a TLS error (not TLS, refused certificate).
    pub tls_failures: Counter,
    /// Multishot receives ended because every provided buffer was in use
    /// (ENOBUFS); each is armed again once buffers are back.
    pub receive_buffer_shortages: Counter,
    /// Receives stopped because a connection's unread input reached
    /// `RECEIVED_BYTES_MAX` (backpressure; armed again once it drains).
    pub receive_pauses: Counter,
    /// Ring sends that found the socket's buffer full (short or `EAGAIN`),
    /// so the rest waits for POLLOUT: a client reading slower than it is sent.
    pub sends_blocked: Counter,
    /// Cluster: messages this shard forwarded on its lanes, received on
    /// lanes it accepted, dropped (lane down or its queue full), lanes it
    /// dialed that are up, and route handshakes refused for a bad proof.
    pub route_messages_sent: Counter,
    pub route_messages_received: Counter,
    pub route_messages_dropped: Counter,
    pub routes_up: Gauge,
    pub route_authentication_failures: Counter,
    /// The same per other node (by dense node index), with bytes and the
    /// lane's queued bytes (`flit_route_node_*`).
    pub route_nodes: RouteNodeMetrics,
    /// Error frames sent, indexed like [`ErrorCode::ALL`].
    pub errors_by_code: [Counter; ErrorCode::ALL.len()],
    /// Time in passes that did work, and time spinning or parked without any,
    /// up to the start of the current stretch of either (a parked shard does
    /// not wake to count): [`ShardMetrics::busy_and_idle_nanoseconds`] adds
    /// the stretch in progress.
    pub busy_nanoseconds: Counter,
    pub idle_nanoseconds: Counter,
    /// When the current busy or idle stretch began (nanoseconds since the
    /// shared epoch), and which one it is (1 busy, 0 idle).
    pub stretch_started_nanos: Gauge,
    pub stretch_busy: Gauge,
    pub in_router_latency: LatencyHistogram,
    /// Per-connection snapshots for `/connz`, built only when asked for.
    pub connection_monitor: crate::monitoring::ConnectionMonitor,
}

/// One shard's traffic with each other node, indexed by the dense node
/// index of `crate::cluster::NodeDirectory` (`CLUSTER_NODES_MAX` entries).
#[derive(Debug)]
pub struct RouteNodeMetrics(Box<[RouteNodeCounters]>);

/// What one shard's lanes carried to and from one node.
#[derive(Debug, Default)]
pub struct RouteNodeCounters {
    pub messages_sent: Counter,
    pub bytes_sent: Counter,
    pub messages_received: Counter,
    pub bytes_received: Counter,
    /// Messages for the node dropped: its lane down or its queue full.
    pub dropped: Counter,
    /// Bytes waiting in this shard's lane to the node (sampled each sweep).
    pub queued_bytes: Gauge,
}

impl Default for RouteNodeMetrics {
    fn default() -> Self {
        RouteNodeMetrics((0..crate::cluster::CLUSTER_NODES_MAX).map(|_| RouteNodeCounters::default()).collect())
    }
}

impl std::ops::Index<usize> for RouteNodeMetrics {
    type Output = RouteNodeCounters;

    fn index(&self, node: usize) -> &RouteNodeCounters {
        &self.0[node]
    }
}

impl ShardMetrics {
    /// Counts one error frame sent with `code`.
    pub fn count_error(&self, code: ErrorCode) {
        if let Some(index) = ErrorCode::ALL.iter().position(|known| *known == code) {
            self.errors_by_code[index].add(1);
        }
    }

    /// The error-frame count for `code`.
    pub fn errors(&self, code: ErrorCode) -> u64 {
        ErrorCode::ALL.iter().position(|known| *known == code).map_or(0, |index| self.errors_by_code[index].get())
    }

    /// Busy and idle nanoseconds including the stretch in progress at
    /// `now_nanos`. Read from another thread while the shard may be changing
    /// stretch, so two reads can disagree by one stretch; callers that need
    /// monotonic counters keep the maximum seen.
    pub fn busy_and_idle_nanoseconds(&self, now_nanos: u64) -> (u64, u64) {
        let (mut busy, mut idle) = (self.busy_nanoseconds.get(), self.idle_nanoseconds.get());
        if self.up.get() == 1 {
            let running = now_nanos.saturating_sub(self.stretch_started_nanos.get());
            if self.stretch_busy.get() == 1 {
                busy += running;
            } else {
                idle += running;
            }
        }
        (busy, idle)
    }

    /// The counters as plain numbers (what a stopped shard returns).
    pub fn snapshot(&self) -> ShardStats {
        ShardStats {
            connections_accepted: self.connections_accepted.get(),
            connections_refused: self.connections_refused.get(),
            connections_closed: self.connections_closed.get(),
            messages_in: self.messages_in.get(),
            bytes_in: self.bytes_in.get(),
            deliveries: self.deliveries.get(),
            bytes_out: self.bytes_out.get(),
            mesh_messages_sent: self.mesh_messages_sent.get(),
            mesh_messages_received: self.mesh_messages_received.get(),
            mesh_queue_full_events: self.mesh_queue_full_events.get(),
            no_responders: self.no_responders.get(),
            queue_group_misses: self.queue_group_misses.get(),
            slow_consumer_evictions: self.slow_consumer_evictions.get(),
            protocol_errors: self.protocol_errors.get(),
            accept_errors: self.accept_errors.get(),
            mesh_messages_to_dead_shards: self.mesh_messages_to_dead_shards.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_puts_samples_in_the_first_bucket_that_holds_them() {
        let histogram = LatencyHistogram::default();
        histogram.record(1_000, 1);
        histogram.record(1_001, 3);
        histogram.record(2_000_000_000, 2);
        let counts = histogram.bucket_counts();
        assert_eq!(counts[0], 1, "1 us is within the 1 us bound");
        assert_eq!(counts[1], 3);
        assert_eq!(counts[LATENCY_BUCKET_BOUNDS_NANOS.len()], 2, "above every bound");
        assert_eq!(histogram.count(), 6);
        assert_eq!(histogram.sum_nanos(), 1_000 + 3 * 1_001 + 4_000_000_000);
    }

    #[test]
    fn errors_are_counted_by_code() {
        let metrics = ShardMetrics::default();
        metrics.count_error(ErrorCode::SlowConsumer);
        metrics.count_error(ErrorCode::SlowConsumer);
        metrics.count_error(ErrorCode::MalformedFrame);
        assert_eq!(metrics.errors(ErrorCode::SlowConsumer), 2);
        assert_eq!(metrics.errors(ErrorCode::MalformedFrame), 1);
        assert_eq!(metrics.errors(ErrorCode::UnknownOp), 0);
    }
}
