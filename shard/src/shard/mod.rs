//! One shard: a thread pinned to a core that owns a listener, its
//! connections, their subscriptions, a copy of every shard's interest, and an
//! io_uring ring. Nothing here is shared with other threads except the ends of
//! the mesh queues and the wakers.
//!
//! The loop, one pass:
//! 1. run the ring's deferred work and take its completions (readiness of the
//!    listener, sockets, the wake pipe);
//! 2. drain the inbound mesh queues (deliveries and interest from other shards);
//! 3. read and handle frames from ready connections, unless a mesh queue is
//!    backed up (then the sockets wait: TCP backpressure instead of buffering);
//! 4. push outboxes into the mesh and wake parked targets; hand every dirty
//!    connection's buffer to the ring as one send (shard/send.rs; `send`
//!    calls for TLS and readiness connections).
//!
//! With nothing done, it spins (`--idle spin`) or, after spinning
//! `spin_before_park` (50 us by default), parks in the ring until a
//! completion or a wake-up (`--idle park`). A pass that queued sends is
//! followed by one `io_uring_enter`; with `spin_before_park` zero, when
//! nothing else waits, that is the park itself, so a request/reply hop costs
//! the shard one system call (and a wake-up).
//!
//! Shutdown: when the shared stop flag is set the shard stops accepting and
//! reading, keeps delivering what the mesh holds, flushes every connection
//! until done or `shutdown_flush_timeout`, sends each client a ShuttingDown
//! error, closes everything, and returns its counters.

mod cluster;
mod delivery_meta;
mod dispatch;
mod io;
mod nats;
mod rate;
mod receive;
mod reload;
mod routing;
mod send;
mod stream_requests;
mod streams;
#[cfg(test)]
mod tests;
mod timeouts;

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flit_wire::{Encoder, Limits};

use self::delivery_meta::DeliveryMetaCache;
pub use self::receive::{RECEIVE_BUFFERS_COUNT, RECEIVE_BUFFER_BYTES};
pub use self::stream_requests::OwnerCommand;
use crate::config::{IdleStrategy, ServerConfig};
use crate::connection::{ConnectionKey, Connections};
use crate::error::ShardError;
use crate::interest::{GroupKey, InterestTable, Route, ShardMask};
use crate::log_limit::ShardLogLimits;
use crate::mesh::{MeshEnds, MeshMessage, Shared};
use crate::metrics::ShardMetrics;
use crate::ring::{Completion, Ring, Token};
use crate::stats::ShardStats;
use crate::subscriptions::Subscriptions;

/// Bytes one `recv` may return.
pub const READ_SCRATCH_BYTES: usize = 64 * 1024;
/// How often a parked shard with a backed-up outbox looks for room again.
pub const OUTBOX_RETRY_INTERVAL: Duration = Duration::from_micros(100);
/// Most messages taken from one inbound mesh queue in one pass (fairness).
pub const MESH_MESSAGES_PER_PASS_MAX: usize = 1024;

pub struct Shard {
    id: usize,
    shard_count: usize,
    config: ServerConfig,
    limits: Limits,
    ring: Ring,
    listener: Option<TcpListener>,
    listener_ready: bool,
    /// The NATS-protocol listener, if configured (shard/nats/).
    nats_listener: Option<TcpListener>,
    nats_listener_ready: bool,
    /// Cluster (shard/cluster/): the route listener, the peers this shard
    /// dials, its up lane to each node (by dense index), what other nodes
    /// want, and the rotation over nodes per queue group.
    route_listener: Option<TcpListener>,
    route_listener_ready: bool,
    route_peers: Vec<cluster::RoutePeer>,
    /// Boxed: a kilobyte the single-host message path never touches stays
    /// out of the shard's own cache lines.
    lanes_by_node: Box<[Option<ConnectionKey>; crate::cluster::CLUSTER_NODES_MAX]>,
    /// Nodes that owe this shard a RouteBarrierAck (the subscribe barrier).
    route_barriers: Box<crate::cluster::RouteBarriers>,
    remote_interest: crate::cluster::RemoteInterest,
    remote_route: crate::cluster::RemoteRoute,
    /// Which other nodes' streams capture which patterns (RouteCapture),
    /// what this shard announced of its own node's, and its store requests
    /// waiting for other nodes (cluster/store.rs).
    remote_captures: Box<crate::cluster::RemoteInterest>,
    remote_capture_route: crate::cluster::RemoteRoute,
    announced_captures: Vec<bytes::Bytes>,
    store_requests: std::collections::HashMap<u64, cluster::PendingStore>,
    next_store_request: u64,
    /// Set by `request_remote_store` for the publish being routed: the node
    /// and id its RouteMessage carries (taken by `forward_to_nodes`).
    outgoing_store: Option<(usize, u64)>,
    /// The last sweep at which this shard's reads were held up by its mesh
    /// outboxes: lanes' silence is counted from no earlier than this.
    lane_silence_floor_nanos: u64,
    /// The `PeerUrls` generation this shard's NATS clients were last told.
    nats_urls_generation_seen: u64,
    node_cursors: HashMap<GroupKey, u32>,
    /// After a failed accept: when to try the listener again.
    accept_retry_at: Option<Instant>,
    wake_pipe: UnixStream,
    shared: Shared,
    mesh: MeshEnds,
    /// Messages a full mesh queue handed back, per target, in order.
    outboxes: Vec<VecDeque<MeshMessage>>,
    /// Targets that got something this pass and may need waking.
    targets_to_wake: ShardMask,
    connections: Connections,
    subscriptions: Subscriptions,
    interest: InterestTable,
    /// Interest changes this shard has broadcast, and acknowledgements of them
    /// received from each shard (its own entry stays at u64::MAX).
    interest_epoch: u64,
    acknowledged_epochs: Vec<u64>,
    /// Connections with replies waiting for an interest barrier.
    barrier_waiters: Vec<ConnectionKey>,
    /// Connections that may have unread input.
    ready: VecDeque<ConnectionKey>,
    /// Connections with output to write.
    dirty: Vec<ConnectionKey>,
    /// Connections in the Closing state.
    closing: Vec<ConnectionKey>,
    draining_since: Option<Instant>,
    counted_outboxes_empty: bool,
    /// The shared dead-shard mask as this shard last acted on it.
    known_dead_shards: u64,
    encoder: Encoder,
    completions: Vec<Completion>,
    /// Every `recv` lands here first (see `io::read_some`).
    read_scratch: Vec<u8>,
    route: Route,
    matched_slots: Vec<u32>,
    queue_candidates: Vec<(GroupKey, u32)>,
    expired_slots: Vec<u32>,
    delivery_meta: DeliveryMetaCache,
    /// Whether `delivery_meta` holds the message being delivered now.
    delivery_meta_current: bool,
    /// The NATS header block of the message being delivered now.
    nats_headers: nats::NatsHeaderCache,
    group_cursors: HashMap<GroupKey, u32>,
    /// This shard's live counters; it is their only writer.
    metrics: Arc<ShardMetrics>,
    /// The zero of message timestamps, shared by all shards.
    epoch: Instant,
    /// When the current pass started reading sockets (nanoseconds since
    /// `epoch`): the receive time of every message read in it.
    read_pass_nanos: u64,
    /// Sum of `pending_bytes_reported` over connections.
    pending_bytes_total: usize,
    log_limits: ShardLogLimits,
    /// When the next timeout sweep is due, and its scratch list.
    next_timeout_sweep: Instant,
    /// The connection slot the next sweep step starts at (0: a sweep starts).
    timeout_sweep_cursor: usize,
    timeout_verdicts: Vec<(ConnectionKey, timeouts::Verdict)>,
    /// Idle passes since the clock was last read while spinning.
    idle_spins: u32,
    /// This shard's copy of the identities, and the reload it came from.
    identities: Arc<crate::auth::Identities>,
    identities_generation: u64,
    /// Connections whose reading waits for a slow_down rate limit.
    paused_readers: Vec<ConnectionKey>,
    resumed: Vec<ConnectionKey>,
    /// Connections whose ring receive ended and must be armed again.
    receives_to_arm: Vec<ConnectionKey>,
    /// Which stream captures a subject (rebuilt when the directory changes),
    /// the streams this shard owns, and answers waiting to be sent.
    stream_capture: crate::streams::directory::StreamCapture,
    owned_streams: crate::streams::owner::OwnedStreams,
    owned_stream_ids: Vec<u64>,
    stream_outcomes: Vec<crate::streams::owner::PublishOutcome>,
    consumer_outputs: Vec<crate::streams::consumers::ConsumerOutput>,
}

/// What [`Shard::new`] needs beyond the configuration.
pub struct ShardParts {
    pub id: usize,
    pub config: ServerConfig,
    pub listener: TcpListener,
    pub nats_listener: Option<TcpListener>,
    pub route_listener: Option<TcpListener>,
    pub wake_pipe: UnixStream,
    pub shared: Shared,
    pub mesh: MeshEnds,
}

impl Shard {
    /// Creates the ring and arms the listener and wake pipe. Errors here are
    /// startup errors: the ring could not be created.
    pub fn new(parts: ShardParts, ring: Ring) -> std::io::Result<Shard> {
        let shard_count = parts.config.shards;
        let limits = Limits { payload_bytes_max: parts.config.payload_bytes_max };
        let shard_metrics = parts.shared.metrics[parts.id].clone();
        let epoch = parts.shared.epoch;
        let mut acknowledged_epochs = vec![0; shard_count];
        acknowledged_epochs[parts.id] = u64::MAX;
        let mut shard = Shard {
            id: parts.id,
            shard_count,
            limits,
            ring,
            listener: Some(parts.listener),
            listener_ready: false,
            nats_listener: parts.nats_listener,
            nats_listener_ready: false,
            route_listener: parts.route_listener,
            route_listener_ready: false,
            route_peers: parts
                .config
                .cluster
                .iter()
                .flat_map(|cluster| cluster.seeds.iter().map(|seed| cluster::RoutePeer::new(*seed)))
                .collect(),
            lanes_by_node: Box::new([None; crate::cluster::CLUSTER_NODES_MAX]),
            route_barriers: Box::default(),
            remote_interest: Default::default(),
            remote_route: Default::default(),
            remote_captures: Box::default(),
            remote_capture_route: Default::default(),
            announced_captures: Vec::new(),
            store_requests: Default::default(),
            next_store_request: 0,
            outgoing_store: None,
            nats_urls_generation_seen: 0,
            lane_silence_floor_nanos: 0,
            node_cursors: HashMap::new(),
            accept_retry_at: None,
            wake_pipe: parts.wake_pipe,
            shared: parts.shared,
            mesh: parts.mesh,
            outboxes: (0..shard_count).map(|_| VecDeque::new()).collect(),
            targets_to_wake: 0,
            connections: Connections::default(),
            subscriptions: Subscriptions::default(),
            interest: InterestTable::default(),
            interest_epoch: 0,
            acknowledged_epochs,
            barrier_waiters: Vec::new(),
            ready: VecDeque::new(),
            dirty: Vec::new(),
            closing: Vec::new(),
            draining_since: None,
            counted_outboxes_empty: false,
            known_dead_shards: 0,
            encoder: Encoder::default(),
            completions: Vec::with_capacity(256),
            read_scratch: vec![0; READ_SCRATCH_BYTES],
            route: Route::default(),
            matched_slots: Vec::new(),
            queue_candidates: Vec::new(),
            expired_slots: Vec::new(),
            delivery_meta: DeliveryMetaCache::default(),
            delivery_meta_current: false,
            nats_headers: Default::default(),
            group_cursors: HashMap::new(),
            metrics: shard_metrics,
            epoch,
            read_pass_nanos: 0,
            pending_bytes_total: 0,
            log_limits: ShardLogLimits::default(),
            next_timeout_sweep: Instant::now() + timeouts::TIMEOUT_SWEEP_INTERVAL,
            timeout_sweep_cursor: 0,
            timeout_verdicts: Vec::new(),
            idle_spins: 0,
            identities: parts.config.identities.clone(),
            identities_generation: 0,
            paused_readers: Vec::new(),
            resumed: Vec::new(),
            receives_to_arm: Vec::new(),
            stream_capture: Default::default(),
            owned_streams: crate::streams::owner::OwnedStreams::new(parts.config.data_directory.clone()),
            owned_stream_ids: Vec::new(),
            stream_outcomes: Vec::new(),
            consumer_outputs: Vec::new(),
            config: parts.config,
        };
        let listener_fd = shard.listener.as_ref().map(|listener| listener.as_raw_fd()).expect("listener is set");
        shard.ring.poll_readable(listener_fd, Token::Listener)?;
        if let Some(nats_listener) = &shard.nats_listener {
            shard.ring.poll_readable(nats_listener.as_raw_fd(), Token::NatsListener)?;
        }
        if let Some(route_listener) = &shard.route_listener {
            shard.ring.poll_readable(route_listener.as_raw_fd(), Token::RouteListener)?;
        }
        shard.ring.poll_readable(shard.wake_pipe.as_raw_fd(), Token::WakePipe)?;
        shard.ring.submit()?;
        // Streams this shard owns are open (recovered) before it accepts.
        shard.sync_streams();
        // Up and accepting before the server reports ready, so /readyz is
        // true as soon as the ready line is printed.
        shard.metrics.up.set(1);
        shard.metrics.accepting.set(1);
        shard.metrics.receive_on_ring.set(u64::from(shard.ring.receives_on_ring()));
        Ok(shard)
    }

    /// Runs until shutdown; returns the shard's counters.
    pub fn run(mut self) -> Result<ShardStats, ShardError> {
        let mut last_work = Instant::now();
        // Busy and idle time are added up at each change between the two,
        // from clock reads the loop makes anyway (no extra read per pass).
        let mut segment_started = last_work;
        let mut segment_busy = true;
        self.publish_stretch(segment_started, true);
        loop {
            let did_work = self.pass().map_err(|source| ShardError::Ring { shard: self.id, source })?;
            if self.draining_since.is_some()
                && !self.counted_outboxes_empty
                && self.outboxes.iter().all(VecDeque::is_empty)
            {
                self.counted_outboxes_empty = true;
                self.shared.shards_with_empty_outboxes.fetch_or(1 << self.id, Ordering::SeqCst);
            }
            if self.draining_since.is_some() && self.drain_finished() {
                self.close_all_for_shutdown();
                self.metrics.up.set(0);
                return Ok(self.metrics.snapshot());
            }
            // In park mode without a spin before parking, a pass that queued
            // sends parks at once if nothing else waits, in the
            // `io_uring_enter` that submits them (ring.rs, `wait`): one
            // system call per request/reply hop instead of a submit now and
            // a park after the spin, at the price of a wake-up per hop.
            // Otherwise the sends go at the start of the next pass.
            let park_with_sends = did_work
                && self.config.idle == IdleStrategy::Park
                && self.config.spin_before_park.is_zero()
                && self.draining_since.is_none()
                && self.ring.sends_unsubmitted() > 0;
            if did_work {
                last_work = Instant::now();
                self.sweep_timeouts_if_due(last_work);
                if !segment_busy {
                    self.metrics.idle_nanoseconds.add(nanos_between(segment_started, last_work));
                    (segment_started, segment_busy) = (last_work, true);
                    self.publish_stretch(segment_started, true);
                }
                if !park_with_sends {
                    continue;
                }
            }
            if segment_busy {
                let now = Instant::now();
                self.metrics.busy_nanoseconds.add(nanos_between(segment_started, now));
                (segment_started, segment_busy) = (now, false);
                self.publish_stretch(segment_started, false);
            }
            let idled = if park_with_sends { self.park(&mut last_work) } else { self.idle(&mut last_work) };
            idled.map_err(|source| ShardError::Ring { shard: self.id, source })?;
        }
    }

    /// One pass of the loop; true when anything happened.
    fn pass(&mut self) -> std::io::Result<bool> {
        let mut did_work = false;
        if self.ring.has_deferred_work() {
            self.ring.submit()?;
        }
        let mut completions = std::mem::take(&mut self.completions);
        self.ring.drain_completions(&mut completions);
        did_work |= !completions.is_empty();
        if !completions.is_empty() {
            // The receive time of whatever these completions carry.
            self.read_pass_nanos = self.now_nanos();
        }
        for completion in &completions {
            self.handle_completion(*completion)?;
        }
        self.completions = completions;
        self.arm_ended_receives()?;
        if self.draining_since.is_none() && self.shared.stop.load(Ordering::Relaxed) {
            self.begin_drain();
            did_work = true;
        }
        let identities_generation = self.shared.identities_generation.load(Ordering::Relaxed);
        if identities_generation != self.identities_generation {
            self.identities_generation = identities_generation;
            self.apply_reloaded_identities();
            did_work = true;
        }
        let dead_shards = self.shared.dead_shards.load(Ordering::Relaxed);
        if dead_shards != self.known_dead_shards {
            self.known_dead_shards = dead_shards;
            self.forget_dead_shards();
            did_work = true;
        }
        did_work |= self.sync_streams();
        did_work |= self.drain_mesh();
        if self.accept_retry_at.is_some_and(|at| Instant::now() >= at) {
            self.accept_retry_at = None;
            self.listener_ready = self.listener.is_some();
            self.nats_listener_ready = self.nats_listener.is_some();
        }
        if self.listener_ready {
            did_work = true;
            self.accept_connections(io::Protocol::Native)?;
        }
        if self.nats_listener_ready {
            did_work = true;
            self.accept_connections(io::Protocol::Nats)?;
        }
        if self.route_listener_ready {
            did_work = true;
            self.accept_lanes()?;
        }
        did_work |= self.dial_due_peers();
        let _ = self.resume_paused_readers();
        did_work |= self.read_ready_connections()?;
        self.arm_ended_receives()?;
        did_work |= self.pump_streams()?;
        self.flush_outboxes();
        did_work |= self.write_dirty_connections()?;
        if !self.closing.is_empty() {
            self.reap_closing();
        }
        Ok(did_work)
    }

    fn handle_completion(&mut self, completion: Completion) -> std::io::Result<()> {
        match completion.token {
            Token::Listener | Token::NatsListener | Token::RouteListener => self.on_listener_ready(completion)?,
            Token::WakePipe => {
                self.drain_wake_pipe();
                if !completion.more {
                    self.ring.poll_readable(self.wake_pipe.as_raw_fd(), Token::WakePipe)?;
                }
            }
            Token::Readable(key) => self.on_readable(key, completion)?,
            Token::Received(key) => self.on_received(key, completion),
            Token::Sent(key) => self.on_sent(key, completion)?,
            Token::Disk(key) => self.on_disk_completion(key, completion.result),
            Token::Writable(key) => {
                if self.on_lane_writable(key) {
                    return Ok(());
                }
                if let Some(connection) = self.connections.get_mut(key) {
                    connection.waiting_writable = false;
                    self.mark_dirty(key);
                }
            }
            Token::Cancel => {}
        }
        Ok(())
    }

    /// A listener's readiness: accept in this pass; arm its poll again if
    /// the multishot poll ended.
    fn on_listener_ready(&mut self, completion: Completion) -> std::io::Result<()> {
        let (listener, ready) = match completion.token {
            Token::NatsListener => (&self.nats_listener, &mut self.nats_listener_ready),
            Token::RouteListener => (&self.route_listener, &mut self.route_listener_ready),
            _ => (&self.listener, &mut self.listener_ready),
        };
        if completion.result >= 0 {
            *ready = true;
        }
        if !completion.more {
            if let Some(listener) = listener {
                self.ring.poll_readable(listener.as_raw_fd(), completion.token)?;
            }
        }
        Ok(())
    }

    fn drain_wake_pipe(&mut self) {
        let mut sink = [0u8; 64];
        while let Ok(read) = std::io::Read::read(&mut self.wake_pipe, &mut sink) {
            if read == 0 {
                break;
            }
        }
    }

    /// Nothing happened in the last pass: spin, or park in the ring.
    fn idle(&mut self, last_work: &mut Instant) -> std::io::Result<()> {
        let spinning = self.config.idle == IdleStrategy::Spin
            || self.draining_since.is_some()
            || last_work.elapsed() < self.config.spin_before_park;
        if spinning {
            // Read the clock only now and then: timeouts are coarse.
            self.idle_spins = self.idle_spins.wrapping_add(1);
            if self.idle_spins % 1024 == 0 {
                self.sweep_timeouts_if_due(Instant::now());
            }
            std::hint::spin_loop();
            return Ok(());
        }
        self.park(last_work)
    }

    /// Blocks in the ring (submitting what is queued) until a completion, a
    /// wake-up or the next deadline, unless work is already waiting.
    fn park(&mut self, last_work: &mut Instant) -> std::io::Result<()> {
        self.sweep_timeouts_if_due(Instant::now());
        let waker = &self.shared.wakers[self.id];
        waker.announce_park();
        // A sweep just now may have queued a Ping or an error frame: it goes
        // out in the next pass, not after the park (which may be a whole
        // sweep interval, long enough to close a client that never saw it).
        if self.mesh_has_input()
            || !self.ready.is_empty()
            || !self.dirty.is_empty()
            || self.shared.stop.load(Ordering::SeqCst)
        {
            waker.clear_park();
            return Ok(());
        }
        // A target shard that frees room in a full mesh queue does not wake
        // us, so with an outbox waiting the park is short and repeated.
        let outbox_waiting = self.outboxes.iter().any(|outbox| !outbox.is_empty());
        let closing_deadline =
            self.closing_deadline_soonest().map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let accept_retry = self.accept_retry_at.map(|at| at.saturating_duration_since(Instant::now()));
        let outbox_retry = outbox_waiting.then_some(OUTBOX_RETRY_INTERVAL);
        let sweep = Some(self.next_timeout_sweep.saturating_duration_since(Instant::now()));
        let dial = self.next_dial_due();
        let paused_reader = self.resume_paused_readers();
        if !self.ready.is_empty() {
            self.shared.wakers[self.id].clear_park();
            return Ok(());
        }
        let timeout =
            [closing_deadline, accept_retry, outbox_retry, sweep, paused_reader, dial].into_iter().flatten().min();
        let result = self.ring.wait(timeout);
        self.shared.wakers[self.id].clear_park();
        *last_work = Instant::now();
        result
    }

    /// A shard died: drop what waits for it and stop waiting for its
    /// acknowledgements (replies held behind the barrier are released).
    fn forget_dead_shards(&mut self) {
        for shard in 0..self.shard_count {
            if self.known_dead_shards & (1 << shard) != 0 {
                self.outboxes[shard].clear();
                self.acknowledged_epochs[shard] = u64::MAX;
            }
        }
        self.release_barrier_waiters();
    }

    fn mesh_has_input(&self) -> bool {
        self.mesh.inbound.iter().flatten().any(|consumer| !consumer.is_empty())
    }

    /// Tells the metrics reader where the stretch in progress began.
    fn publish_stretch(&self, started: Instant, busy: bool) {
        let started_nanos = started.saturating_duration_since(self.epoch).as_nanos() as u64;
        self.metrics.stretch_started_nanos.set(started_nanos);
        self.metrics.stretch_busy.set(u64::from(busy));
    }

    /// Nanoseconds since the shared epoch: message receive and write times.
    fn now_nanos(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn begin_drain(&mut self) {
        self.draining_since = Some(Instant::now());
        self.metrics.accepting.set(0);
        self.announce_drain();
        if let Some(listener) = self.listener.take() {
            // Cancel first: the poll holds the socket until cancelled.
            let _ = self.ring.cancel(Token::Listener);
            drop(listener);
        }
        self.listener_ready = false;
        if let Some(listener) = self.nats_listener.take() {
            let _ = self.ring.cancel(Token::NatsListener);
            drop(listener);
        }
        if let Some(listener) = self.route_listener.take() {
            let _ = self.ring.cancel(Token::RouteListener);
            drop(listener);
        }
        self.route_listener_ready = false;
        self.nats_listener_ready = false;
        self.ready.clear();
    }

    /// Everything queued has been handed to the kernel, or time is up.
    fn drain_finished(&mut self) -> bool {
        let Some(since) = self.draining_since else { return false };
        if since.elapsed() >= self.config.shutdown_flush_timeout {
            return true;
        }
        // Once every shard has emptied its outboxes while draining, nothing new
        // can enter the mesh: no socket is read any more, so no publish or
        // interest change is made. Each shard counts itself in once.
        let all_shards = if self.shard_count == 64 { u64::MAX } else { (1u64 << self.shard_count) - 1 };
        let all_outboxes_empty = self.shared.shards_with_empty_outboxes.load(Ordering::SeqCst) == all_shards;
        let writes_done = self.connections.iter().all(|connection| !connection.has_output());
        // Owned stream logs get a last fdatasync (interval streams) and finish
        // their commits in flight, so what they acknowledged is on disk.
        let logs_idle = self.owned_streams.flush_for_shutdown();
        all_outboxes_empty && writes_done && logs_idle && !self.mesh_has_input()
    }
}

fn nanos_between(earlier: Instant, later: Instant) -> u64 {
    later.saturating_duration_since(earlier).as_nanos() as u64
}
