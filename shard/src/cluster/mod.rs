//! # Clustering: several flit nodes act as one router (issue 13)
//!
//! Every shard keeps one route connection, a *lane*, to every other node:
//! it dials the other nodes' `--cluster-listen` addresses (`--cluster-seeds`)
//! and sends over its own lane what its own publishes need there, so a
//! message crosses at most one route and is never forwarded by the node that
//! receives it (loop-free in a full mesh). Lanes carry data one way, dialer
//! to acceptor; the acceptor writes only answers (Pongs, barrier and store
//! acknowledgements). The shard that reads a
//! publish decides its remote nodes as it decides its local shards, from a
//! second interest table ([`remote_interest`]) filled by what the other
//! nodes announce.
//!
//! Interest: each shard announces its own interest changes (its 0 -> 1 and
//! 1 -> 0 for a (pattern, queue)) on its own lanes, and its whole interest
//! when a lane comes up. The accepting shard broadcasts each announcement to
//! its node's shards (the mesh), which count it per node; when a lane closes,
//! everything it announced is withdrawn. Queue groups: a member on this node
//! wins (local first); otherwise one node with members is picked in
//! rotation, and only it delivers to one of its members.
//!
//! Authentication: a lane starts with both ends' Hello, then each end's
//! HMAC-SHA256 proof over both Hellos under the cluster secret ([`proof`]);
//! nothing else is read from a lane before the peer's proof verifies, and a
//! lane never accepts client frames (the route decoder knows only route ops).
//!
//! Failure: a lane whose socket ends is down at once; one silent for
//! `ROUTE_SILENCE_MAX` is closed; a dialer retries with backoff. A message for
//! a node whose lane is down is dropped and counted (core delivery is at most
//! once).
//!
//! Barrier: a client's Pong waits for every node the shard announced an
//! interest change to ([`barrier`]), so a flush covers the cluster.
//! Streams: a durable publish is forwarded to the node whose stream captures
//! it (`shard/src/shard/cluster/store.rs`). Liveness is the routes' own
//! (pings, silence, EOF; a newer start of a node replaces its older lanes):
//! membership by a library was measured and not adopted (docs/DESIGN.md
//! section 7).
//!
//! Shutdown: lanes are closed with the other connections; peers see the
//! socket end and withdraw this node's interest.

pub mod barrier;
pub mod proof;
pub mod remote_interest;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;

pub use barrier::RouteBarriers;
pub use remote_interest::{NodeMask, RemoteInterest, RemoteRoute, CLUSTER_NODES_MAX};

/// How often a dialer pings its lane, and how long a lane may stay silent
/// before it is closed as dead (3 pings missed).
pub const ROUTE_PING_INTERVAL: Duration = Duration::from_millis(250);
pub const ROUTE_SILENCE_MAX: Duration = Duration::from_millis(1000);
/// A dialer's first retry after a failed or lost lane, and the longest.
pub const ROUTE_RETRY_FIRST: Duration = Duration::from_millis(100);
pub const ROUTE_RETRY_MAX: Duration = Duration::from_secs(2);
/// Most bytes queued on one lane: past it, messages for that node are
/// dropped and counted (a slow route never stalls a shard).
pub const ROUTE_PENDING_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Dense indices for node ids, the same on every shard of this process
/// (interest masks are `u64`). Touched at lane handshakes only.
#[derive(Debug, Default)]
pub struct NodeDirectory {
    ids: Mutex<Vec<u32>>,
}

impl NodeDirectory {
    /// The index of `node_id`, assigned on first sight; None when
    /// `CLUSTER_NODES_MAX` nodes are known already.
    pub fn index_of(&self, node_id: u32) -> Option<usize> {
        let mut ids = self.ids.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(index) = ids.iter().position(|id| *id == node_id) {
            return Some(index);
        }
        if ids.len() >= CLUSTER_NODES_MAX {
            return None;
        }
        ids.push(node_id);
        Some(ids.len() - 1)
    }

    /// Every node id seen, by dense index.
    pub fn ids(&self) -> Vec<u32> {
        self.ids.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// The client URLs other nodes announced in their Hellos, by node id: NATS
/// INFO's `connect_urls` (so NATS clients can reconnect to another node) and
/// Welcome's `cluster_urls` (the same for flit clients). Recorded when a
/// node's route comes up; nodes stay listed once seen (clients skip the ones
/// that do not answer).
#[derive(Debug, Default)]
pub struct PeerUrls {
    by_node: Mutex<std::collections::BTreeMap<u32, Vec<String>>>,
    /// Grows each time the NATS URLs change (shards push INFO updates).
    generation: std::sync::atomic::AtomicU64,
    client_by_node: Mutex<std::collections::BTreeMap<u32, Vec<String>>>,
}

impl PeerUrls {
    pub fn set_nats_urls(&self, node_id: u32, urls: Vec<String>) {
        let previous =
            self.by_node.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(node_id, urls.clone());
        if previous.as_ref() != Some(&urls) {
            self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
        }
    }

    /// Changes with every change of the NATS URLs.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Every other node's NATS URLs, in node id order.
    pub fn nats_urls(&self) -> Vec<String> {
        self.by_node.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).values().flatten().cloned().collect()
    }

    pub fn set_client_urls(&self, node_id: u32, urls: Vec<String>) {
        self.client_by_node.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(node_id, urls);
    }

    /// Every other node's flit client URLs, in node id order, deduplicated
    /// and at most `flit_wire::WELCOME_URLS_MAX` (what a Welcome carries).
    /// The URLs passed the route Hello's checks, which are Welcome's.
    pub fn client_urls(&self) -> Vec<String> {
        let by_node = self.client_by_node.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut urls: Vec<String> = Vec::new();
        for url in by_node.values().flatten() {
            if urls.len() == flit_wire::WELCOME_URLS_MAX {
                break;
            }
            if !urls.contains(url) {
                urls.push(url.clone());
            }
        }
        urls
    }
}

/// What this node sees of the others, for `flit cluster ls` (the metrics
/// listener's `/cluster`): per node id, the route address it was dialed at,
/// how many of this node's shards have an up lane to it, and the last round
/// trip a lane's ping measured. Updated at lane changes and pongs only.
#[derive(Debug, Default)]
pub struct ClusterView {
    nodes: Mutex<std::collections::BTreeMap<u32, NodeView>>,
}

#[derive(Clone, Debug, Default)]
struct NodeView {
    address: String,
    lanes_up: u32,
    round_trip_micros: u64,
}

impl ClusterView {
    fn with<T>(&self, action: impl FnOnce(&mut std::collections::BTreeMap<u32, NodeView>) -> T) -> T {
        action(&mut self.nodes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    pub fn lane_up(&self, node_id: u32, address: String) {
        self.with(|nodes| {
            let node = nodes.entry(node_id).or_default();
            node.address = address;
            node.lanes_up += 1;
        });
    }

    pub fn lane_down(&self, node_id: u32) {
        self.with(|nodes| {
            if let Some(node) = nodes.get_mut(&node_id) {
                node.lanes_up = node.lanes_up.saturating_sub(1);
            }
        });
    }

    pub fn round_trip(&self, node_id: u32, micros: u64) {
        self.with(|nodes| {
            if let Some(node) = nodes.get_mut(&node_id) {
                node.round_trip_micros = micros;
            }
        });
    }

    /// Per node id: up (any lane), lanes up, last round trip in microseconds.
    pub fn nodes(&self) -> Vec<(u32, u32, u64)> {
        self.with(|nodes| nodes.iter().map(|(id, node)| (*id, node.lanes_up, node.round_trip_micros)).collect())
    }

    /// One line per node, `NODE_ID ADDR up|down RTT_US`, this node first
    /// (RTT 0), then the others by id; a node is up while any shard of this
    /// node has an up lane to it.
    pub fn lines(&self, own_id: u32, own_address: &str) -> String {
        let mut text = format!("{own_id} {own_address} up 0\n");
        self.with(|nodes| {
            for (id, node) in nodes.iter() {
                let (state, round_trip) = if node.lanes_up > 0 { ("up", node.round_trip_micros) } else { ("down", 0) };
                text.push_str(&format!("{id} {} {state} {round_trip}\n", node.address));
            }
        });
        text
    }
}

/// Which end of a lane this node is.
pub use proof::Role;

/// Where a lane is in its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaneStage {
    /// Dialer: the non-blocking connect has not completed.
    Connecting,
    /// Hello sent; waiting for the peer's Hello.
    AwaitingHello,
    /// Proof sent; waiting for the peer's proof.
    AwaitingProof,
    Up,
}

/// A route connection's state (`Connection::route`).
#[derive(Debug)]
pub struct LaneSession {
    pub role: Role,
    pub stage: LaneStage,
    /// The Hello frames as sent, for the proofs.
    pub our_hello: Bytes,
    pub peer_hello: Option<Bytes>,
    /// The peer's node id and its dense index, once its Hello arrived.
    pub peer: Option<(u32, usize)>,
    /// The peer's generation (grows with each start of it), from its Hello:
    /// a newer process of the same node replaces a lane to an older one.
    pub peer_generation: u64,
    /// Dialer: the seed this lane was dialed to.
    pub seed: Option<usize>,
    /// Acceptor: what the peer announced on this lane, with counts, so that
    /// it is all withdrawn when the lane closes.
    pub announced: HashMap<(Bytes, Option<Bytes>), u32>,
    /// Acceptor: the patterns the peer's streams capture (RouteCapture),
    /// with counts, withdrawn when the lane closes.
    pub captured: HashMap<Bytes, u32>,
    /// The route address the peer's Hello named (dialed once proven), and
    /// its NATS URLs (recorded once proven).
    pub peer_route_address: Option<std::net::SocketAddr>,
    pub peer_nats_urls: Vec<String>,
}

impl LaneSession {
    pub fn new(role: Role, seed: Option<usize>) -> LaneSession {
        LaneSession {
            role,
            stage: if role == Role::Dialer { LaneStage::Connecting } else { LaneStage::AwaitingHello },
            our_hello: Bytes::new(),
            peer_hello: None,
            peer: None,
            seed,
            announced: HashMap::new(),
            captured: HashMap::new(),
            peer_route_address: None,
            peer_nats_urls: Vec::new(),
            peer_generation: 0,
        }
    }
}
