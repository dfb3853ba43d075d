//! Real `foca` instances (SWIM with suspicion, infection-style
//! dissemination) over the simulated datagram network of [`crate::queue`].
//!
//! Model: every packet foca hands to `Runtime::send_to` is one UDP datagram,
//! lost independently with probability `loss`, delivered after a sampled
//! one-way latency (so it may be reordered); processing takes no time. A
//! "silent" node neither sends nor receives and its timers never fire (a
//! hung host or a full partition, no EOF). A restarted node is a fresh
//! `Foca` with the same `id` and `generation + 1`.
//!
//! The embedding (what flit would write around foca, like NATS dialing its
//! explicit routes forever): every 500 ms a node announces to each of its
//! seeds (nodes 0, 1, 2 except itself; a joining node in scenario (c): node
//! 0 only) that is not an active member of its view, and to all of them
//! while foca is not `Active` (at start, after `Idle`, `Defunct`,
//! `Rejoin`). Both halves were needed: announcing to one seed until
//! `Active` let bootstrap form disjoint clusters that never merged (foca's
//! `periodic_announce` only goes to members it already knows), and a node
//! declared down renews its identity, which stops foca's timers until a
//! message for the new identity arrives (the one gossip it sends may be
//! lost or go to the dead node).

use std::num::{NonZeroU32, NonZeroU8, NonZeroUsize};
use std::time::Duration;

use foca::{AccumulatingRuntime, Config, Foca, Identity, NoCustomBroadcast, OwnedNotification, PeriodicParams};
use foca::{PostcardCodec, Timer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::queue::{EventQueue, Latency, Nanos, MS};

/// A node's identity as the design note proposes: `id` is the stable node
/// id (`--node-id`, the foca address), `generation` grows at each restart
/// (and at each auto-rejoin after being declared down), the addresses ride
/// along so a member learned by gossip can be dialed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeId {
    pub id: u32,
    pub generation: u64,
    /// IPv4 address and port of the route listener.
    pub route_addr: ([u8; 4], u16),
    /// IPv4 address and port of the client listener.
    pub client_addr: ([u8; 4], u16),
}

impl NodeId {
    pub fn new(id: u32, generation: u64) -> Self {
        let host = [10, 0, 0, (id % 250) as u8 + 1];
        Self { id, generation, route_addr: (host, 7422), client_addr: (host, 4222) }
    }
}

impl Identity for NodeId {
    type Addr = u32;

    fn renew(&self) -> Option<Self> {
        Some(Self { generation: self.generation + 1, ..self.clone() })
    }

    fn addr(&self) -> u32 {
        self.id
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// Bytes a datagram carries besides foca's packet in the design note's
/// framing: cluster-name hash (8) + truncated HMAC-SHA256 tag (16).
pub const ENVELOPE_BYTES: u64 = 24;
/// IPv4 (20) + UDP (8) headers.
pub const UDP_IP_HEADER_BYTES: u64 = 28;

/// The foca configurations compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// /work/cluster-design.md section 1.
    Proposed,
    /// Proposed with `max_transmissions` 10 and gossip to 3 members: the
    /// straggler fix suggested by the first run (an update sent only 4 times
    /// per node sometimes misses a member, which then finds out by its own
    /// probe round, seconds later).
    Tuned,
    /// `Config::simple()`.
    Simple,
    /// `Config::new_lan(n)`.
    Lan,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Proposed => "foca proposed",
            Profile::Tuned => "foca proposed, max_tx 10, gossip 3",
            Profile::Simple => "foca simple()",
            Profile::Lan => "foca new_lan(n)",
        }
    }

    pub fn config(self, n: usize) -> Config {
        match self {
            Profile::Proposed => Config {
                probe_period: Duration::from_millis(300),
                probe_rtt: Duration::from_millis(100),
                num_indirect_probes: NonZeroUsize::new(1).expect("nonzero"),
                max_transmissions: NonZeroU8::new(4).expect("nonzero"),
                suspect_to_down_after: Duration::from_millis(600),
                remove_down_after: Duration::from_secs(3600),
                max_packet_size: NonZeroUsize::new(1400).expect("nonzero"),
                notify_down_members: true,
                periodic_announce: Some(periodic(30_000, 1)),
                periodic_announce_to_down_members: Some(periodic(1000, 1)),
                periodic_gossip: Some(periodic(200, 2)),
            },
            Profile::Tuned => Config {
                max_transmissions: NonZeroU8::new(10).expect("nonzero"),
                periodic_gossip: Some(periodic(200, 3)),
                ..Profile::Proposed.config(n)
            },
            Profile::Simple => Config::simple(),
            Profile::Lan => Config::new_lan(NonZeroU32::new(n as u32).expect("n > 0")),
        }
    }
}

fn periodic(millis: u64, members: usize) -> PeriodicParams {
    PeriodicParams {
        frequency: Duration::from_millis(millis),
        num_members: NonZeroUsize::new(members).expect("nonzero"),
    }
}

type Agent = Foca<NodeId, PostcardCodec, StdRng, NoCustomBroadcast>;

enum Ev {
    Deliver {
        to: usize,
        data: Vec<u8>,
    },
    Timer {
        node: usize,
        epoch: u32,
        timer: Timer<NodeId>,
    },
    /// The embedding's join loop: announce to a seed until foca is Active.
    Announce {
        node: usize,
        epoch: u32,
    },
}

struct SimNode {
    agent: Agent,
    alive: bool,
    epoch: u32,
    /// foca said `Active` last (not `Idle`, `Defunct` or `Rejoin`).
    connected: bool,
    /// Who this node announces to.
    seeds: Vec<u32>,
}

/// Nodes 0..SEEDS are everyone's seeds.
const SEEDS: u32 = 3;

fn default_seeds(node: usize) -> Vec<u32> {
    (0..SEEDS).filter(|&seed| seed as usize != node).collect()
}

/// What a node was told by its foca: `MemberUp`, `MemberDown`, or `Rename`
/// (to the identity given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    Up,
    Down,
    Rename,
}

#[derive(Clone, Debug)]
pub struct Observation {
    pub at: Nanos,
    pub observer: usize,
    pub kind: Seen,
    pub subject: NodeId,
}

/// A simulated cluster of foca agents.
pub struct Cluster {
    queue: EventQueue<Ev>,
    nodes: Vec<SimNode>,
    config: Config,
    latency: Latency,
    loss: f64,
    net_rng: StdRng,
    seed: u64,
    runtime: AccumulatingRuntime<NodeId>,
    pub observations: Vec<Observation>,
    pub sent_packets: Vec<u64>,
    /// foca packet bytes (without envelope or headers).
    pub sent_bytes: Vec<u64>,
    pub errors: u64,
    /// `Rejoin` notifications (a node renewed its identity after being
    /// declared down).
    pub rejoins: u64,
}

const ANNOUNCE_RETRY: Nanos = 500 * MS;

impl Cluster {
    /// `n` agents; each starts its announce loop at a random time in the
    /// first 100 ms.
    pub fn new(n: usize, config: Config, latency: Latency, loss: f64, seed: u64) -> Self {
        let mut cluster = Self {
            queue: EventQueue::default(),
            nodes: Vec::with_capacity(n),
            config,
            latency,
            loss,
            net_rng: StdRng::seed_from_u64(seed ^ 0x6e65_7477_6f72_6b00),
            seed,
            runtime: AccumulatingRuntime::new(),
            observations: Vec::new(),
            sent_packets: vec![0; n],
            sent_bytes: vec![0; n],
            errors: 0,
            rejoins: 0,
        };
        for id in 0..n {
            let agent = cluster.agent(NodeId::new(id as u32, 1), 0);
            cluster.nodes.push(SimNode { agent, alive: true, epoch: 0, connected: false, seeds: default_seeds(id) });
            let at = cluster.net_rng.random_range(0..100 * MS);
            cluster.queue.push(at, Ev::Announce { node: id, epoch: 0 });
        }
        cluster
    }

    fn agent(&self, identity: NodeId, epoch: u32) -> Agent {
        let rng =
            StdRng::seed_from_u64(self.seed.wrapping_mul(1_000_003) ^ ((identity.id as u64) << 32) ^ epoch as u64);
        Foca::new(identity, self.config.clone(), rng, PostcardCodec)
    }

    pub fn now(&self) -> Nanos {
        self.queue.now()
    }

    pub fn identity(&self, node: usize) -> NodeId {
        self.nodes[node].agent.identity().clone()
    }

    /// Members `node` currently considers active.
    pub fn active_members(&self, node: usize) -> Vec<NodeId> {
        self.nodes[node].agent.iter_members().map(|member| member.id().clone()).collect()
    }

    /// Every live node sees every other live node's current identity active.
    pub fn converged(&self) -> bool {
        let live: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].alive).collect();
        live.iter().all(|&i| {
            let members = self.active_members(i);
            live.iter().filter(|&&j| j != i).all(|&j| members.contains(&self.identity(j)))
        })
    }

    /// The node stops sending, receiving and running timers.
    pub fn silence(&mut self, node: usize) {
        self.nodes[node].alive = false;
        self.nodes[node].epoch += 1;
    }

    /// A silent node comes back as a fresh process: same id, next generation.
    pub fn restart(&mut self, node: usize) -> NodeId {
        let previous = self.identity(node);
        let epoch = self.nodes[node].epoch + 1;
        let identity = NodeId::new(previous.id, previous.generation + 1);
        let agent = self.agent(identity.clone(), epoch);
        self.nodes[node] = SimNode { agent, alive: true, epoch, connected: false, seeds: default_seeds(node) };
        self.queue.push(self.now(), Ev::Announce { node, epoch });
        identity
    }

    /// A new node (id = the current count) that starts announcing to node 0
    /// (its only seed) now.
    pub fn join(&mut self) -> usize {
        let node = self.nodes.len();
        let agent = self.agent(NodeId::new(node as u32, 1), 0);
        self.nodes.push(SimNode { agent, alive: true, epoch: 0, connected: false, seeds: vec![0] });
        self.sent_packets.push(0);
        self.sent_bytes.push(0);
        self.queue.push(self.now(), Ev::Announce { node, epoch: 0 });
        node
    }

    /// Runs every event due up to `until`, then sets the clock there.
    pub fn run_until(&mut self, until: Nanos) {
        while let Some((_, event)) = self.queue.pop_until(until) {
            self.handle(event);
        }
        self.queue.advance_to(until);
    }

    fn handle(&mut self, event: Ev) {
        let (node, result) = match event {
            Ev::Deliver { to, data } => {
                if !self.nodes[to].alive {
                    return;
                }
                let result = self.nodes[to].agent.handle_data(&data, &mut self.runtime);
                (to, result)
            }
            Ev::Timer { node, epoch, timer } => {
                if !self.nodes[node].alive || self.nodes[node].epoch != epoch {
                    return;
                }
                (node, self.nodes[node].agent.handle_timer(timer, &mut self.runtime))
            }
            Ev::Announce { node, epoch } => {
                let n = self.nodes.len() as u32;
                let state = &mut self.nodes[node];
                if !state.alive || state.epoch != epoch {
                    return;
                }
                self.queue.push(self.queue.now() + ANNOUNCE_RETRY, Ev::Announce { node, epoch });
                let active: Vec<u32> = state.agent.iter_members().map(|member| member.id().id).collect();
                let mut result = Ok(());
                for &seed in state.seeds.iter().filter(|&&seed| seed < n) {
                    if !state.connected || !active.contains(&seed) {
                        result = result.and(state.agent.announce(NodeId::new(seed, 0), &mut self.runtime));
                    }
                }
                (node, result)
            }
        };
        if result.is_err() {
            self.errors += 1;
        }
        self.flush(node);
    }

    fn flush(&mut self, node: usize) {
        let now = self.queue.now();
        while let Some((to, data)) = self.runtime.to_send() {
            self.sent_packets[node] += 1;
            self.sent_bytes[node] += data.len() as u64;
            if self.loss > 0.0 && self.net_rng.random_bool(self.loss) {
                continue;
            }
            let to = to.id as usize;
            if to >= self.nodes.len() || to == node {
                continue;
            }
            let at = now + self.latency.sample(&mut self.net_rng);
            self.queue.push(at, Ev::Deliver { to, data: data.to_vec() });
        }
        let epoch = self.nodes[node].epoch;
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.queue.push(now + after.as_nanos() as Nanos, Ev::Timer { node, epoch, timer });
        }
        while let Some(notification) = self.runtime.to_notify() {
            let (kind, subject) = match notification {
                OwnedNotification::Active => {
                    self.nodes[node].connected = true;
                    continue;
                }
                OwnedNotification::Idle | OwnedNotification::Defunct | OwnedNotification::Rejoin(_) => {
                    self.nodes[node].connected = false;
                    self.rejoins += u64::from(matches!(notification, OwnedNotification::Rejoin(_)));
                    continue;
                }
                OwnedNotification::MemberUp(subject) => (Seen::Up, subject),
                OwnedNotification::MemberDown(subject) => (Seen::Down, subject),
                OwnedNotification::Rename(_, subject) => (Seen::Rename, subject),
            };
            self.observations.push(Observation { at: now, observer: node, kind, subject });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_nodes_converge_and_a_silent_one_is_seen_down_by_both() {
        let mut cluster = Cluster::new(3, Profile::Proposed.config(3), Latency::Loopback, 0.0, 5);
        cluster.run_until(2_000 * MS);
        assert!(cluster.converged());
        let victim = cluster.identity(2);
        cluster.silence(2);
        let t0 = cluster.now();
        cluster.run_until(t0 + 5_000 * MS);
        for observer in [0, 1] {
            let down = cluster
                .observations
                .iter()
                .find(|o| o.observer == observer && o.kind == Seen::Down && o.subject == victim)
                .expect("seen down");
            assert!(down.at > t0 && down.at - t0 < 3_000 * MS);
            assert!(!cluster.active_members(observer).contains(&victim));
        }
    }

    #[test]
    fn a_restart_with_the_next_generation_replaces_the_old_identity() {
        let mut cluster = Cluster::new(3, Profile::Proposed.config(3), Latency::Loopback, 0.0, 9);
        cluster.run_until(2_000 * MS);
        cluster.silence(1);
        cluster.run_until(cluster.now() + 200 * MS);
        let renewed = cluster.restart(1);
        assert_eq!(renewed.generation, 2);
        cluster.run_until(cluster.now() + 2_000 * MS);
        assert!(cluster.converged());
        assert!(cluster.active_members(0).contains(&renewed));
    }
}
