//! The discrete-event core: a time-ordered queue of events, first in first
//! out among events due at the same nanosecond, and the simulated network's
//! latency and loss.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rand::Rng;

/// Simulated time, in nanoseconds since the start of a run.
pub type Nanos = u64;

pub const MS: Nanos = 1_000_000;
pub const US: Nanos = 1_000;

struct Scheduled<E> {
    at: Nanos,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Scheduled<E> {}

impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Scheduled<E> {
    // Reversed: BinaryHeap is a max-heap, we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Events by due time; ties leave in the order they were pushed.
pub struct EventQueue<E> {
    heap: BinaryHeap<Scheduled<E>>,
    seq: u64,
    now: Nanos,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self { heap: BinaryHeap::new(), seq: 0, now: 0 }
    }
}

impl<E> EventQueue<E> {
    /// The time of the last event popped.
    pub fn now(&self) -> Nanos {
        self.now
    }

    /// Schedules `event` at `at`; a time in the past is clamped to now.
    pub fn push(&mut self, at: Nanos, event: E) {
        let at = at.max(self.now);
        self.seq += 1;
        self.heap.push(Scheduled { at, seq: self.seq, event });
    }

    /// The next event due at or before `until`, advancing the clock to it.
    pub fn pop_until(&mut self, until: Nanos) -> Option<(Nanos, E)> {
        if self.heap.peek()?.at > until {
            return None;
        }
        let next = self.heap.pop()?;
        self.now = next.at;
        Some((next.at, next.event))
    }

    /// Moves the clock to `at` (after the events before it were popped).
    pub fn advance_to(&mut self, at: Nanos) {
        self.now = self.now.max(at);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

/// One-way packet latency.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Latency {
    /// 50 us +- 10 us (uniform): two processes on one host.
    Loopback,
    /// 0.4 ms + an exponential tail of mean 0.1 ms (capped at 5 ms): one
    /// switch hop with queueing jitter; packets may be reordered.
    Lan,
}

impl Latency {
    pub fn name(self) -> &'static str {
        match self {
            Latency::Loopback => "loopback 50us",
            Latency::Lan => "LAN 0.5ms+jitter",
        }
    }

    pub fn sample(self, rng: &mut impl Rng) -> Nanos {
        match self {
            Latency::Loopback => 40 * US + rng.random_range(0..=20 * US),
            Latency::Lan => {
                let u: f64 = rng.random_range(f64::EPSILON..1.0);
                let tail = (-u.ln() * 100_000.0) as Nanos;
                400 * US + tail.min(4600 * US)
            }
        }
    }

    /// The mean one-way latency.
    pub fn mean(self) -> Nanos {
        match self {
            Latency::Loopback => 50 * US,
            Latency::Lan => 500 * US,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn pops_in_time_order_and_fifo_on_ties() {
        let mut queue = EventQueue::default();
        queue.push(30, "c");
        queue.push(10, "a1");
        queue.push(20, "b");
        queue.push(10, "a2");
        queue.push(10, "a3");
        let mut order = Vec::new();
        while let Some((at, event)) = queue.pop_until(u64::MAX) {
            order.push((at, event));
        }
        assert_eq!(order, vec![(10, "a1"), (10, "a2"), (10, "a3"), (20, "b"), (30, "c")]);
    }

    #[test]
    fn pop_until_stops_at_the_horizon_and_past_pushes_clamp_to_now() {
        let mut queue = EventQueue::default();
        queue.push(5, 1);
        queue.push(15, 2);
        assert_eq!(queue.pop_until(10), Some((5, 1)));
        assert_eq!(queue.pop_until(10), None);
        assert_eq!(queue.now(), 5);
        queue.push(0, 3);
        assert_eq!(queue.pop_until(10), Some((5, 3)));
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn latency_models_stay_in_their_ranges() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..10_000 {
            let l = Latency::Loopback.sample(&mut rng);
            assert!((40 * US..=60 * US).contains(&l));
            let l = Latency::Lan.sample(&mut rng);
            assert!((400 * US..=5 * MS).contains(&l));
        }
    }
}
