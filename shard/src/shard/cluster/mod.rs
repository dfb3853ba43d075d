//! The shard's lanes to other nodes (see `crate::cluster` for the design):
//! the route listener, dialing seeds, the handshake (Hello, then each end's
//! proof), liveness (pings from the dialer, a silence limit on both ends),
//! redial with backoff, and closing. What lanes carry is in `forward.rs`.
//!
//! Invariants: `lanes_by_node[n]` names only an Up lane this shard dialed to
//! node index `n`; a lane is read by the route decoder only (client ops are
//! refused); nothing but Hello and the proof is accepted before the peer's
//! proof has verified. Lanes are not client connections: they do not count
//! against `connections_max`, get no client timeouts and no error frames.

mod forward;
mod store;

pub(crate) use store::PendingStore;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use flit_wire::route::{decode_route, RouteAuth, RouteFrame, RouteHello, ROUTE_PROTOCOL_VERSION};

use super::Shard;
use crate::cluster::{proof, LaneSession, LaneStage, Role, ROUTE_RETRY_FIRST, ROUTE_RETRY_MAX, ROUTE_SILENCE_MAX};
use crate::connection::{Connection, ConnectionKey, ConnectionState};
use crate::ring::Token;

/// One other node this shard dials: a configured seed, or an address a
/// peer's Hello named.
#[derive(Debug)]
pub(crate) struct RoutePeer {
    pub address: SocketAddr,
    /// The lane dialed to it, while there is one.
    pub lane: Option<ConnectionKey>,
    /// When to dial again; None while a lane exists.
    pub retry_at: Option<Instant>,
    pub backoff: Duration,
    /// It answered with this node's own id, or is a second address of a node
    /// already reached: never dialed again.
    pub is_self: bool,
}

impl RoutePeer {
    pub fn new(address: SocketAddr) -> RoutePeer {
        RoutePeer { address, lane: None, retry_at: Some(Instant::now()), backoff: ROUTE_RETRY_FIRST, is_self: false }
    }
}

impl Shard {
    /// Once per pass: dials the peers whose retry time has come.
    pub(super) fn dial_due_peers(&mut self) -> bool {
        if self.config.cluster.is_none() || self.draining_since.is_some() {
            return false;
        }
        let now = Instant::now();
        let due: Vec<usize> = (0..self.route_peers.len())
            .filter(|&index| {
                let peer = &self.route_peers[index];
                !peer.is_self && peer.lane.is_none() && peer.retry_at.is_some_and(|at| at <= now)
            })
            .collect();
        for index in &due {
            self.dial(*index);
        }
        !due.is_empty()
    }

    /// The next time a peer is due to be dialed (for the park timeout).
    pub(super) fn next_dial_due(&self) -> Option<Duration> {
        let now = Instant::now();
        self.route_peers
            .iter()
            .filter(|peer| !peer.is_self && peer.lane.is_none())
            .filter_map(|peer| peer.retry_at)
            .min()
            .map(|at| at.saturating_duration_since(now))
    }

    fn dial(&mut self, index: usize) {
        let address = self.route_peers[index].address;
        let peer = &mut self.route_peers[index];
        peer.retry_at = None;
        let stream = match start_connect(address) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(shard = self.id, %address, %error, "route dial failed");
                return self.schedule_redial(index);
            }
        };
        let now_nanos = self.now_nanos();
        let key = self.connections.insert(|key| Connection::new(key, stream, now_nanos));
        let fd = match self.connections.get_mut(key) {
            Some(connection) => {
                connection.route = Some(Box::new(LaneSession::new(Role::Dialer, Some(index))));
                connection.waiting_writable = true;
                connection.stream.as_raw_fd()
            }
            None => return,
        };
        self.route_peers[index].lane = Some(key);
        self.metrics.connections.set(self.connections.len() as u64);
        // Writable once the connect completes (or fails: SO_ERROR says).
        if self.ring.poll_writable(fd, Token::Writable(key)).is_err() {
            self.finish_close(key);
        }
    }

    /// A dialed lane's socket became writable: connected, or failed.
    /// True if the completion was such a lane's.
    pub(super) fn on_lane_writable(&mut self, key: ConnectionKey) -> bool {
        let Some(connection) = self.connections.get_mut(key) else { return false };
        let Some(lane) = connection.route.as_ref() else { return false };
        if lane.stage != LaneStage::Connecting {
            return false;
        }
        connection.waiting_writable = false;
        match connection.stream.take_error() {
            Ok(None) => {}
            _ => {
                self.finish_close(key);
                return true;
            }
        }
        if let Some(lane) = connection.route.as_mut() {
            lane.stage = LaneStage::AwaitingHello;
        }
        self.send_route_hello(key);
        if self.arm_receive(key).is_err() {
            self.finish_close(key);
        }
        true
    }

    /// A connection on the route listener: an accepting lane.
    pub(super) fn adopt_lane(&mut self, stream: std::net::TcpStream) -> std::io::Result<()> {
        if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
            return Ok(());
        }
        let now_nanos = self.now_nanos();
        let key = self.connections.insert(|key| Connection::new(key, stream, now_nanos));
        if let Some(connection) = self.connections.get_mut(key) {
            connection.route = Some(Box::new(LaneSession::new(Role::Acceptor, None)));
        }
        self.metrics.connections.set(self.connections.len() as u64);
        self.send_route_hello(key);
        self.arm_receive(key)
    }

    pub(super) fn accept_lanes(&mut self) -> std::io::Result<()> {
        for _ in 0..super::io::ACCEPTS_PER_PASS_MAX {
            let Some(listener) = &self.route_listener else { break };
            match listener.accept() {
                Ok((stream, _)) => self.adopt_lane(stream)?,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.route_listener_ready = false;
                    break;
                }
            }
        }
        Ok(())
    }

    fn send_route_hello(&mut self, key: ConnectionKey) {
        let Some(cluster) = self.config.cluster.as_ref() else { return };
        let mut nonce = [0u8; 32];
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).is_err() {
            return self.finish_close(key);
        }
        let hello = RouteHello {
            version_min: ROUTE_PROTOCOL_VERSION,
            version_max: ROUTE_PROTOCOL_VERSION,
            cluster_name: cluster.name.clone(),
            node_id: cluster.node_id,
            generation: self.shared.generation,
            shard_count: self.shard_count as u16,
            lane_shard: self.id as u16,
            nonce,
            route_address: self.shared.route_advertised_address.map(|address| address.to_string()).unwrap_or_default(),
            client_urls: self.shared.client_address.iter().map(|address| address.to_string()).collect(),
            nats_urls: self.shared.nats_address.iter().map(|address| address.to_string()).collect(),
        };
        let mut frame = BytesMut::new();
        if self.encoder.route_hello(&mut frame, &hello).is_err() {
            return self.finish_close(key);
        }
        let frame = frame.freeze();
        let Some(connection) = self.connections.get_mut(key) else { return };
        connection.write_buffer.extend_from_slice(&frame);
        if let Some(lane) = connection.route.as_mut() {
            lane.our_hello = frame;
        }
        self.mark_dirty(key);
    }

    /// Handles the whole frames a lane has received.
    pub(super) fn handle_lane_input(&mut self, key: ConnectionKey, bytes_budget: usize) -> bool {
        let frame_bytes_max = self.limits.frame_bytes_max();
        let mut bytes_handled = 0;
        loop {
            let Some(connection) = self.connections.get_mut(key) else { return false };
            if bytes_handled >= bytes_budget {
                return !connection.read_buffer.is_empty();
            }
            if connection.state == ConnectionState::Closing {
                return false;
            }
            let length = match flit_wire::route::check_route(&connection.read_buffer, frame_bytes_max) {
                flit_wire::Check::Incomplete => {
                    connection.wait_for_rest_of_frame(self.read_pass_nanos);
                    return false;
                }
                flit_wire::Check::Invalid(error) => {
                    self.close_lane(key, &format!("malformed route input: {error}"));
                    return false;
                }
                flit_wire::Check::Complete(length) => length,
            };
            bytes_handled += length;
            let frame = connection.read_buffer.split_to(length).freeze();
            connection.partial_frame_since_nanos = 0;
            match decode_route(frame.clone(), &self.limits) {
                Ok(decoded) => self.on_lane_frame(key, frame, decoded),
                Err(error) => {
                    self.close_lane(key, &format!("refused route frame: {error}"));
                    return false;
                }
            }
        }
    }

    fn on_lane_frame(&mut self, key: ConnectionKey, raw: Bytes, frame: RouteFrame) {
        let Some(stage) = self.connections.get(key).and_then(|c| c.route.as_ref()).map(|lane| lane.stage) else {
            return;
        };
        match (stage, frame) {
            (LaneStage::AwaitingHello, RouteFrame::Hello(hello)) => self.on_peer_hello(key, raw, &hello),
            (LaneStage::AwaitingProof, RouteFrame::Auth(auth)) => self.on_peer_proof(key, &auth),
            (LaneStage::Up, RouteFrame::Ping(token)) => {
                if let Some(connection) = self.connections.get_mut(key) {
                    flit_wire::Encoder::route_pong(&mut connection.write_buffer, token);
                    self.mark_dirty(key);
                }
            }
            // Reading it already reset the lane's silence clock; its token
            // is when the ping was sent.
            (LaneStage::Up, RouteFrame::Pong(token)) => {
                let peer = self.connections.get(key).and_then(|c| c.route.as_ref()).and_then(|lane| lane.peer);
                if let Some((node_id, _)) = peer {
                    let micros = self.now_nanos().saturating_sub(token) / 1000;
                    self.shared.cluster_view.round_trip(node_id, micros);
                }
            }
            (LaneStage::Up, RouteFrame::Interest(interest)) => self.on_remote_interest(key, interest),
            (LaneStage::Up, RouteFrame::Barrier(epoch)) => self.on_route_barrier(key, epoch),
            (LaneStage::Up, RouteFrame::BarrierAck(epoch)) => self.on_route_barrier_ack(key, epoch),
            (LaneStage::Up, RouteFrame::Capture(capture)) => self.on_remote_capture(key, capture),
            (LaneStage::Up, RouteFrame::StoreAck(ack)) => self.on_route_store_ack(key, ack),
            (LaneStage::Up, RouteFrame::Message(message)) => self.on_route_message(key, message),
            (stage, _) => self.close_lane(key, &format!("unexpected route frame while {stage:?}")),
        }
    }

    fn on_peer_hello(&mut self, key: ConnectionKey, raw: Bytes, hello: &RouteHello) {
        let Some(cluster) = self.config.cluster.as_ref() else { return };
        if hello.cluster_name != cluster.name {
            let reason = format!("peer is in cluster {:?}, not {:?}", hello.cluster_name, cluster.name);
            return self.close_lane(key, &reason);
        }
        if hello.version_min > ROUTE_PROTOCOL_VERSION || hello.version_max < ROUTE_PROTOCOL_VERSION {
            return self.close_lane(key, "no common route protocol version");
        }
        if hello.node_id == cluster.node_id {
            // A seed that is this node itself: never dialed again.
            if let Some(seed) = self.connections.get(key).and_then(|c| c.route.as_ref()).and_then(|lane| lane.seed) {
                self.route_peers[seed].is_self = true;
            }
            return self.finish_close(key);
        }
        let Some(index) = self.shared.cluster_nodes.index_of(hello.node_id) else {
            return self.close_lane(key, "more than CLUSTER_NODES_MAX nodes");
        };
        let secret = cluster.secret.clone();
        // A peer's route address, once proven, is dialed by every shard
        // (that is how a node that joins later is meshed both ways).
        let announced_address = hello.route_address.parse::<SocketAddr>().ok();
        let Some(connection) = self.connections.get_mut(key) else { return };
        let Some(lane) = connection.route.as_mut() else { return };
        lane.peer = Some((hello.node_id, index));
        lane.peer_generation = hello.generation;
        lane.peer_hello = Some(raw.clone());
        lane.stage = LaneStage::AwaitingProof;
        lane.peer_route_address = announced_address;
        lane.peer_nats_urls = hello.nats_urls.clone();
        let (dialer_hello, acceptor_hello) = match lane.role {
            Role::Dialer => (lane.our_hello.clone(), raw),
            Role::Acceptor => (raw, lane.our_hello.clone()),
        };
        let mac = proof::proof(&secret, lane.role, &dialer_hello, &acceptor_hello);
        let mut frame = BytesMut::new();
        if self.encoder.route_auth(&mut frame, &RouteAuth { mac }).is_err() {
            return self.finish_close(key);
        }
        connection.write_buffer.extend_from_slice(&frame);
        self.mark_dirty(key);
    }

    fn on_peer_proof(&mut self, key: ConnectionKey, auth: &RouteAuth) {
        let Some(cluster) = self.config.cluster.as_ref() else { return };
        let secret = cluster.secret.clone();
        let Some(connection) = self.connections.get_mut(key) else { return };
        let Some(lane) = connection.route.as_mut() else { return };
        let Some(peer_hello) = lane.peer_hello.clone() else { return };
        let (dialer_hello, acceptor_hello, peer_role) = match lane.role {
            Role::Dialer => (lane.our_hello.clone(), peer_hello, Role::Acceptor),
            Role::Acceptor => (peer_hello, lane.our_hello.clone(), Role::Dialer),
        };
        if !proof::verify(&secret, peer_role, &dialer_hello, &acceptor_hello, &auth.mac) {
            self.metrics.route_authentication_failures.add(1);
            return self.close_lane(key, "the peer's proof does not verify: a different cluster secret");
        }
        lane.stage = LaneStage::Up;
        connection.state = ConnectionState::Open;
        let (role, peer, seed, announced) = (lane.role, lane.peer, lane.seed, lane.peer_route_address);
        let Some((node_id, index)) = peer else { return };
        if !lane.peer_nats_urls.is_empty() {
            self.shared.peer_urls.set_nats_urls(node_id, lane.peer_nats_urls.clone());
        }
        // Its flit client URLs, for Welcome's `cluster_urls`: read again from
        // its Hello (decoded once already; once per lane up).
        let peer_hello = lane.peer_hello.clone().map(|raw| decode_route(raw, &self.limits));
        if let Some(Ok(RouteFrame::Hello(hello))) = peer_hello {
            self.shared.peer_urls.set_client_urls(node_id, hello.client_urls);
        }
        tracing::info!(shard = self.id, node = node_id, role = ?role, "route up");
        if let Some(address) = announced {
            self.learn_peer_address(address, true);
        }
        if role == Role::Dialer {
            if let Some(existing) = self.lanes_by_node[index].filter(|lane| *lane != key) {
                let generation_of = |shard: &Self, lane: ConnectionKey| {
                    shard.connections.get(lane).and_then(|c| c.route.as_ref()).map_or(0, |lane| lane.peer_generation)
                };
                let (new, old) = (generation_of(self, key), generation_of(self, existing));
                if new > old {
                    // The node restarted elsewhere (a new address) while its
                    // old process still holds a lane open (hung, not yet
                    // silent for long enough): the new process wins, the old
                    // lane goes, and its address stays dialable.
                    self.close_lane(existing, "replaced by a newer start of the same node");
                } else {
                    // A second address of the process this shard already has
                    // a lane to (a host name and an IP, say): one lane per
                    // node, so this address is not dialed again. An older
                    // process's address is dialed again later.
                    if let Some(seed) = seed {
                        if new == old {
                            self.route_peers[seed].is_self = true;
                        }
                    }
                    return self.finish_close(key);
                }
            }
            if let Some(seed) = seed {
                self.route_peers[seed].backoff = ROUTE_RETRY_FIRST;
            }
            self.lanes_by_node[index] = Some(key);
            self.metrics.routes_up.set(self.lanes_by_node.iter().flatten().count() as u64);
            let address = seed.map(|seed| self.route_peers[seed].address.to_string()).unwrap_or_default();
            self.shared.cluster_view.lane_up(node_id, address);
            self.announce_all_interest(key);
            self.announce_all_captures(key);
        }
    }

    /// A route address a peer proved: dialed by this shard if new, and told
    /// to the other shards (`broadcast`) so they dial it too.
    pub(super) fn learn_peer_address(&mut self, address: SocketAddr, broadcast: bool) {
        if self.route_peers.iter().any(|peer| peer.address == address) {
            return;
        }
        self.route_peers.push(RoutePeer::new(address));
        if broadcast && self.shard_count > 1 {
            for target in 0..self.shard_count {
                if target != self.id {
                    self.send_to_shard(target, crate::mesh::MeshMessage::PeerAddress(address));
                }
            }
        }
    }

    /// Closes a lane for a reason worth a log line (rate-limited).
    fn close_lane(&mut self, key: ConnectionKey, reason: &str) {
        if let Some(suppressed) = self.log_limits.client_errors.admit(Instant::now()) {
            tracing::warn!(shard = self.id, connection = key, suppressed, "route closed: {reason}");
        }
        self.finish_close(key);
    }

    /// A lane is gone (from `finish_close`): what it announced is withdrawn,
    /// and a dialer's peer is dialed again after its backoff.
    pub(super) fn on_lane_closed(&mut self, key: ConnectionKey, lane: &LaneSession) {
        if let Some((node_id, index)) = lane.peer {
            if self.lanes_by_node[index] == Some(key) {
                self.lanes_by_node[index] = None;
                self.metrics.routes_up.set(self.lanes_by_node.iter().flatten().count() as u64);
                self.shared.cluster_view.lane_down(node_id);
                self.route_barriers.lane_gone(index);
                self.release_barrier_waiters();
                self.fail_store_requests(index);
                self.metrics.route_nodes[index].queued_bytes.set(0);
            }
        }
        if lane.role == Role::Acceptor {
            self.withdraw_announced(lane);
            self.withdraw_captured(lane);
        }
        if let Some(seed) = lane.seed {
            if self.route_peers[seed].lane == Some(key) {
                self.route_peers[seed].lane = None;
                if !self.route_peers[seed].is_self {
                    self.schedule_redial(seed);
                }
            }
        }
    }

    fn schedule_redial(&mut self, index: usize) {
        let peer = &mut self.route_peers[index];
        // Jitter from the clock's low bits: shards and nodes do not retry in step.
        let jitter = Duration::from_nanos(u64::from(Instant::now().elapsed().subsec_nanos()) % 50_000_000);
        peer.retry_at = Some(Instant::now() + peer.backoff + jitter);
        peer.backoff = (peer.backoff * 2).min(ROUTE_RETRY_MAX);
    }

    /// The sweep's part for lanes: dialers ping theirs; a lane silent past
    /// `ROUTE_SILENCE_MAX`, or not up within the handshake timeout, closes.
    ///
    /// Silence counts only time this shard was reading: while its mesh
    /// outboxes are backed up it reads no socket (io.rs), so a lane's peer
    /// may have answered long ago; and a lane whose input is paused (its
    /// unread bytes at the cap) is behind on our side, not silent on theirs.
    pub(super) fn sweep_lanes(&mut self, now_nanos: u64) {
        let silence_max = ROUTE_SILENCE_MAX.as_nanos() as u64;
        let handshake_max = self.config.handshake_timeout.as_nanos() as u64;
        if self.outboxes.iter().any(|outbox| !outbox.is_empty()) {
            self.lane_silence_floor_nanos = now_nanos;
        }
        let floor = self.lane_silence_floor_nanos;
        let mut to_close = Vec::new();
        let mut to_ping = Vec::new();
        for connection in self.connections.iter() {
            let Some(lane) = connection.route.as_ref() else { continue };
            let silent = if connection.receive_paused {
                0
            } else {
                now_nanos.saturating_sub(connection.last_read_nanos.max(floor))
            };
            let age = now_nanos.saturating_sub(connection.opened_at_nanos);
            if lane.stage != LaneStage::Up && age > handshake_max {
                to_close.push((connection.key, "handshake not finished in time"));
            } else if lane.stage == LaneStage::Up && silent > silence_max {
                to_close.push((connection.key, "silent for too long"));
            } else if lane.stage == LaneStage::Up && lane.role == Role::Dialer {
                to_ping.push(connection.key);
                if let Some((_, node)) = lane.peer {
                    self.metrics.route_nodes[node].queued_bytes.set(connection.queued_output_bytes() as u64);
                }
            }
        }
        for (key, reason) in to_close {
            self.close_lane(key, reason);
        }
        for key in to_ping {
            if let Some(connection) = self.connections.get_mut(key) {
                flit_wire::Encoder::route_ping(&mut connection.write_buffer, now_nanos);
                self.mark_dirty(key);
            }
        }
    }
}

/// A non-blocking connect, started: the socket, connecting or connected.
fn start_connect(address: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(address), socket2::Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    match socket.connect(&address.into()) {
        Ok(()) => {}
        Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(error) => return Err(error),
    }
    Ok(socket.into())
}
