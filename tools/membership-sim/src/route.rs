//! flit's route-ping rule (shard/src/cluster/mod.rs `ROUTE_PING_INTERVAL`,
//! `ROUTE_SILENCE_MAX`; shard/src/shard/cluster/mod.rs `sweep_lanes`;
//! shard/src/shard/timeouts.rs `TIMEOUT_SWEEP_INTERVAL`), modelled exactly:
//!
//! - Each shard of node O dials one lane to node P (O has `shards` lanes to
//!   P; `lanes_by_node` holds them; `flit cluster ls` shows P up while any is
//!   up). Every shard sweeps every 250 ms at its own phase. A sweep first
//!   closes an Up lane whose last read is more than 1 s old, else the dialer
//!   writes a RoutePing. The acceptor answers each ping with a RoutePong at
//!   once and closes its end by the same silence rule (its end reads only
//!   pings on an idle lane); the dialer then reads EOF and closes at once.
//! - Any frame read resets the silence clock; lanes are idle (worst case:
//!   data would also reset it).
//! - TCP does not lose frames, it delays them: each transmission of a
//!   segment is lost with probability `loss`; a lost one is sent again
//!   after the RTO. [`Rto::Fixed`] is the rule the brief states (200 ms per
//!   retry); [`Rto::Backoff`] is Linux's (200 ms min RTO, doubled at each
//!   retry of the same segment). Delivery is in order (a late segment holds
//!   back those behind it). Tail-loss probes, SACK and lost ACKs are not
//!   modelled (TLP would make loss recovery faster than this).
//! - After a close the dialer redials after `ROUTE_RETRY_FIRST` (100 ms);
//!   the lane is up again after the TCP handshake (SYN lost: +1 s each,
//!   Linux's initial RTO) and Hello + proof (2 round trips, segments delayed
//!   as above).
//! - A silent peer (hung host, no EOF) sends and receives nothing from t0:
//!   a segment whose successful transmission would be after t0 never
//!   arrives.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::queue::{EventQueue, Latency, Nanos, MS};

pub const SWEEP_INTERVAL: Nanos = 250 * MS;
pub const SILENCE_MAX: Nanos = 1000 * MS;
pub const RETRY_FIRST: Nanos = 100 * MS;
const RTO_MIN: Nanos = 200 * MS;
const SYN_RTO: Nanos = 1000 * MS;

/// RoutePing / RoutePong frame size on the wire (route frame header + token).
pub const PING_BYTES: u64 = 16;
/// IPv4 (20) + TCP with timestamps (32) headers.
pub const TCP_IP_HEADER_BYTES: u64 = 52;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rto {
    /// 200 ms per retry.
    Fixed,
    /// 200, 400, 800, ... ms (Linux).
    Backoff,
}

impl Rto {
    pub fn name(self) -> &'static str {
        match self {
            Rto::Fixed => "RTO 200ms fixed",
            Rto::Backoff => "RTO 200ms doubling",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Model {
    pub shards: usize,
    pub latency: Latency,
    pub loss: f64,
    pub rto: Rto,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    /// Dialer (O) to acceptor (P): pings.
    Forward = 0,
    /// Acceptor (P) to dialer (O): pongs.
    Back = 1,
}

#[derive(Debug)]
enum Ev {
    DialerSweep(usize),
    AcceptorSweep(usize),
    Arrive {
        lane: usize,
        generation: u32,
        dir: Dir,
    },
    /// The acceptor closed its end: the dialer reads EOF.
    Eof {
        lane: usize,
        generation: u32,
    },
    Reup {
        lane: usize,
    },
}

struct Lane {
    up: bool,
    generation: u32,
    dialer_last_read: Nanos,
    acceptor_last_read: Nanos,
    /// Last in-order delivery time per direction.
    delivered: [Nanos; 2],
}

/// A lane close the dialer (node O) saw, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Close {
    pub at: Nanos,
    pub lane: usize,
    /// The acceptor closed (O read EOF) rather than O's own sweep.
    pub by_acceptor: bool,
}

/// O's `shards` lanes to P, simulated together.
pub struct Pair {
    model: Model,
    queue: EventQueue<Ev>,
    rng: StdRng,
    lanes: Vec<Lane>,
    /// P silent from this time.
    silent_from: Nanos,
    pub closes: Vec<Close>,
    /// When O's view of P went down (no lane up) and came back.
    pub node_down: Vec<(Nanos, Option<Nanos>)>,
}

impl Pair {
    pub fn new(model: Model, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut queue = EventQueue::default();
        let mut lanes = Vec::new();
        for lane in 0..model.shards {
            queue.push(rng.random_range(0..SWEEP_INTERVAL), Ev::DialerSweep(lane));
            queue.push(rng.random_range(0..SWEEP_INTERVAL), Ev::AcceptorSweep(lane));
            lanes.push(Lane { up: true, generation: 0, dialer_last_read: 0, acceptor_last_read: 0, delivered: [0; 2] });
        }
        Self { model, queue, rng, lanes, silent_from: Nanos::MAX, closes: Vec::new(), node_down: Vec::new() }
    }

    /// P goes silent at `at`.
    pub fn silence_at(&mut self, at: Nanos) {
        self.silent_from = at;
    }

    /// Extra delay from losses of one segment's transmissions.
    fn retransmission_delay(&mut self, first_rto: Nanos, doubling: bool) -> Nanos {
        let mut delay = 0;
        let mut rto = first_rto;
        while self.model.loss > 0.0 && self.rng.random_bool(self.model.loss) {
            delay += rto;
            if doubling {
                rto = rto.saturating_mul(2);
            }
            if delay > 120_000 * MS {
                break;
            }
        }
        delay
    }

    /// Sends one segment on `lane` in `dir` at now.
    fn send(&mut self, lane: usize, dir: Dir) {
        let now = self.queue.now();
        let doubling = self.model.rto == Rto::Backoff;
        let retry = self.retransmission_delay(RTO_MIN, doubling);
        let transmitted = now + retry;
        // P transmits nothing and receives nothing once silent.
        let latency = self.model.latency.sample(&mut self.rng);
        let arrival = transmitted + latency;
        match dir {
            Dir::Back if transmitted >= self.silent_from => return,
            Dir::Forward if arrival >= self.silent_from => return,
            _ => {}
        }
        let state = &mut self.lanes[lane];
        let at = arrival.max(state.delivered[dir as usize]);
        state.delivered[dir as usize] = at;
        let generation = state.generation;
        self.queue.push(at, Ev::Arrive { lane, generation, dir });
    }

    fn close(&mut self, lane: usize, by_acceptor: bool) {
        let now = self.queue.now();
        let was_any_up = self.lanes.iter().any(|lane| lane.up);
        let state = &mut self.lanes[lane];
        if !state.up {
            return;
        }
        state.up = false;
        state.generation += 1;
        self.closes.push(Close { at: now, lane, by_acceptor });
        if was_any_up && !self.lanes.iter().any(|lane| lane.up) {
            self.node_down.push((now, None));
        }
        if now < self.silent_from {
            // Redial: connect (SYN may be lost: 1 s initial RTO), then
            // Hello and proof, two round trips of segments that may be
            // delayed by retransmissions.
            let rtt = 2 * self.model.latency.mean();
            let mut at = now + RETRY_FIRST + rtt + self.retransmission_delay(SYN_RTO, true);
            for _ in 0..4 {
                at += rtt / 2 + self.retransmission_delay(RTO_MIN, self.model.rto == Rto::Backoff);
            }
            self.queue.push(at, Ev::Reup { lane });
        }
    }

    pub fn run_until(&mut self, until: Nanos) {
        while let Some((now, event)) = self.queue.pop_until(until) {
            match event {
                Ev::DialerSweep(lane) => {
                    self.queue.push(now + SWEEP_INTERVAL, Ev::DialerSweep(lane));
                    let state = &self.lanes[lane];
                    if !state.up {
                        continue;
                    }
                    if now.saturating_sub(state.dialer_last_read) > SILENCE_MAX {
                        self.close(lane, false);
                    } else {
                        self.send(lane, Dir::Forward);
                    }
                }
                Ev::AcceptorSweep(lane) => {
                    self.queue.push(now + SWEEP_INTERVAL, Ev::AcceptorSweep(lane));
                    let state = &self.lanes[lane];
                    if now >= self.silent_from || !state.up {
                        continue;
                    }
                    if now.saturating_sub(state.acceptor_last_read) > SILENCE_MAX {
                        // The FIN reaches O one latency later.
                        let generation = state.generation;
                        let at = now + self.model.latency.sample(&mut self.rng);
                        self.queue.push(at, Ev::Eof { lane, generation });
                    }
                }
                Ev::Arrive { lane, generation, dir } => {
                    if self.lanes[lane].generation != generation || !self.lanes[lane].up {
                        continue;
                    }
                    match dir {
                        Dir::Forward => {
                            self.lanes[lane].acceptor_last_read = now;
                            self.send(lane, Dir::Back);
                        }
                        Dir::Back => self.lanes[lane].dialer_last_read = now,
                    }
                }
                Ev::Eof { lane, generation } => {
                    if self.lanes[lane].generation == generation {
                        self.close(lane, true);
                    }
                }
                Ev::Reup { lane } => {
                    let was_none_up = !self.lanes.iter().any(|lane| lane.up);
                    let state = &mut self.lanes[lane];
                    state.up = true;
                    state.dialer_last_read = now;
                    state.acceptor_last_read = now;
                    state.delivered = [now; 2];
                    if was_none_up {
                        if let Some(last) = self.node_down.last_mut() {
                            last.1 = Some(now);
                        }
                    }
                }
            }
        }
        self.queue.advance_to(until);
    }
}

/// Detection of a silent peer by one observer: (first lane closed, last lane
/// closed = `cluster ls` shows it down), relative to t0; `None` if not within
/// `horizon`.
pub fn detect_silent(model: Model, seed: u64, warmup: Nanos, horizon: Nanos) -> Option<(Nanos, Nanos)> {
    let mut pair = Pair::new(model, seed);
    pair.run_until(warmup);
    let t0 = warmup;
    pair.silence_at(t0);
    pair.run_until(t0 + horizon);
    let after: Vec<Nanos> = pair.closes.iter().filter(|close| close.at >= t0).map(|close| close.at - t0).collect();
    let all = pair.node_down.iter().find(|(at, _)| *at >= t0).map(|(at, _)| at - t0)?;
    Some((after.iter().copied().min().unwrap_or(all), all))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(shards: usize, loss: f64, rto: Rto) -> Model {
        Model { shards, latency: Latency::Loopback, loss, rto }
    }

    #[test]
    fn no_loss_never_closes_a_live_lane() {
        let mut pair = Pair::new(model(4, 0.0, Rto::Backoff), 1);
        pair.run_until(600_000 * MS);
        assert!(pair.closes.is_empty());
        assert!(pair.node_down.is_empty());
    }

    #[test]
    fn silent_peer_is_detected_between_one_and_one_and_a_half_seconds() {
        // Last pong read at most one ping interval (+ RTT) before t0; the
        // close comes at the first sweep with more than 1 s of silence.
        for seed in 0..200 {
            let (first, all) = detect_silent(model(2, 0.0, Rto::Fixed), seed, 5_000 * MS, 10_000 * MS).unwrap();
            assert!(first <= all);
            assert!(all > SILENCE_MAX - SWEEP_INTERVAL, "seed {seed}: {all}");
            assert!(all <= SILENCE_MAX + 2 * SWEEP_INTERVAL, "seed {seed}: {all}");
        }
    }

    #[test]
    fn heavy_loss_with_backoff_closes_lanes_and_they_come_back() {
        let mut pair = Pair::new(model(1, 0.3, Rto::Backoff), 3);
        pair.run_until(600_000 * MS);
        assert!(!pair.closes.is_empty());
        // With one shard every lane close is a node-down, and each one but
        // possibly the last ended with the redial.
        assert_eq!(pair.node_down.len(), pair.closes.len());
        let finished = &pair.node_down[..pair.node_down.len() - 1];
        assert!(finished.iter().all(|(down, up)| up.is_some_and(|up| up > *down + RETRY_FIRST)));
    }
}
