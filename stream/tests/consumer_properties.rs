//! Properties of the consumer under random interleavings of appends,
//! deliveries, acks, naks, terms, time and restarts (through the persisted
//! encoding): never more than `ack_pending_max` outstanding, never a
//! delivery of a resolved message or beyond `deliveries_max`, new
//! sequences in order; and once every delivery is acked, every message was
//! resolved (acked, terminated or dead-lettered) exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use flit_stream::consumer::{AckOutcome, Consumer, ConsumerConfig, ConsumerState};
use proptest::prelude::*;

const ACK_WAIT: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
enum Operation {
    Append(u64),
    Deliver,
    Ack(usize),
    Nak(usize),
    Term(usize),
    Advance(u64),
    Timer,
    Restart,
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        2 => (0u64..4).prop_map(Operation::Append),
        4 => Just(Operation::Deliver),
        3 => any::<usize>().prop_map(Operation::Ack),
        1 => any::<usize>().prop_map(Operation::Nak),
        1 => any::<usize>().prop_map(Operation::Term),
        2 => (0u64..250).prop_map(Operation::Advance),
        1 => Just(Operation::Timer),
        1 => Just(Operation::Restart),
    ]
}

#[derive(Debug, PartialEq)]
enum Resolution {
    Acked,
    Terminated,
    DeadLettered,
}

/// What the test has seen, checked against what the consumer does.
struct Model {
    consumer: Consumer,
    now: Duration,
    last_sequence: u64,
    next_new_sequence: u64,
    /// Delivered and not yet resolved, with the last delivery count seen.
    outstanding: BTreeMap<u64, u32>,
    resolved: BTreeMap<u64, Resolution>,
    deliveries_max: u32,
    ack_pending_max: u32,
    /// The consumer's counters are metrics: they start again at a restart.
    dead_letters_since_restart: u64,
}

impl Model {
    fn resolve(&mut self, sequence: u64, resolution: Resolution) {
        assert!(self.outstanding.remove(&sequence).is_some(), "{sequence} resolved but not outstanding");
        assert!(self.resolved.insert(sequence, resolution).is_none(), "{sequence} resolved twice");
    }

    fn check(&mut self) {
        while let Some(dead) = self.consumer.pop_dead_letter() {
            assert_eq!(dead.delivery_count, self.deliveries_max);
            assert_eq!(self.outstanding.get(&dead.sequence), Some(&dead.delivery_count));
            self.resolve(dead.sequence, Resolution::DeadLettered);
            self.dead_letters_since_restart += 1;
        }
        let info = self.consumer.info(self.last_sequence);
        assert!(info.ack_pending <= self.ack_pending_max, "{} outstanding", info.ack_pending);
        assert_eq!(info.ack_pending as usize, self.outstanding.len());
        let floor_expected = self.outstanding.keys().next().map_or(self.next_new_sequence - 1, |first| first - 1);
        assert_eq!(info.ack_floor, floor_expected);
    }

    fn deliver(&mut self) -> bool {
        let Some(delivery) = self.consumer.next_delivery(self.now, self.last_sequence) else {
            self.check();
            return false;
        };
        assert!(!self.resolved.contains_key(&delivery.sequence), "resolved {} delivered again", delivery.sequence);
        assert!(delivery.delivery_count <= self.deliveries_max);
        assert_eq!(delivery.redelivered, delivery.delivery_count > 1);
        if delivery.redelivered {
            let previous = self.outstanding.insert(delivery.sequence, delivery.delivery_count);
            assert_eq!(previous, Some(delivery.delivery_count - 1));
        } else {
            assert_eq!(delivery.sequence, self.next_new_sequence, "new sequences in order");
            self.next_new_sequence += 1;
            self.outstanding.insert(delivery.sequence, 1);
        }
        self.check();
        true
    }

    fn pick(&self, index: usize) -> Option<u64> {
        if self.outstanding.is_empty() {
            return None;
        }
        self.outstanding.keys().nth(index % self.outstanding.len()).copied()
    }

    fn apply(&mut self, operation: Operation) {
        match operation {
            Operation::Append(count) => self.last_sequence += count,
            Operation::Deliver => {
                self.deliver();
            }
            Operation::Ack(index) => {
                if let Some(sequence) = self.pick(index) {
                    assert_eq!(self.consumer.ack(sequence, self.now), AckOutcome::Applied);
                    self.resolve(sequence, Resolution::Acked);
                }
            }
            Operation::Term(index) => {
                if let Some(sequence) = self.pick(index) {
                    assert_eq!(self.consumer.term(sequence), AckOutcome::Applied);
                    self.resolve(sequence, Resolution::Terminated);
                }
            }
            Operation::Nak(index) => {
                if let Some(sequence) = self.pick(index) {
                    // A dead letter from the nak is popped and checked below.
                    let outcome = self.consumer.nak(sequence);
                    assert!(matches!(outcome, AckOutcome::Applied | AckOutcome::DeadLettered));
                }
            }
            Operation::Advance(milliseconds) => self.now += Duration::from_millis(milliseconds),
            Operation::Timer => self.consumer.process_deadlines(self.now),
            Operation::Restart => {
                let state = self.consumer.state();
                let (_, decoded) = ConsumerState::decode(&state.encode(1)).unwrap();
                assert_eq!(decoded, state);
                self.consumer = Consumer::restore(decoded, 1, self.now).unwrap();
                self.dead_letters_since_restart = 0;
            }
        }
        // Acked, termed and resolved sequences are never acked again.
        for sequence in self.resolved.keys().take(3) {
            assert_eq!(self.consumer.ack(*sequence, self.now), AckOutcome::Duplicate);
        }
        self.check();
    }

    /// Delivers and acks everything until nothing is left; outstanding
    /// deliveries from before are acked as they are redelivered.
    fn drain(&mut self) {
        // Bounded: each round either resolves a message or advances time
        // past every ack wait.
        for _ in 0..10_000 {
            if self.next_new_sequence > self.last_sequence && self.outstanding.is_empty() {
                return;
            }
            if self.deliver() {
                let delivered: Vec<u64> = self.outstanding.keys().copied().collect();
                for sequence in delivered {
                    assert_eq!(self.consumer.ack(sequence, self.now), AckOutcome::Applied);
                    self.resolve(sequence, Resolution::Acked);
                }
                self.check();
            } else {
                self.now += ACK_WAIT;
            }
        }
        panic!("drain did not finish");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn never_beyond_limits_and_every_message_resolved_exactly_once(
        deliveries_max in 1u32..4,
        ack_pending_max in 1u32..5,
        operations in proptest::collection::vec(operation(), 0..80),
    ) {
        let mut config = ConsumerConfig::pull(Some("property".into()));
        config.ack_wait = ACK_WAIT;
        config.deliveries_max = deliveries_max;
        config.ack_pending_max = ack_pending_max;
        let consumer = Consumer::new(config, (1, 0), |_| 1).unwrap();
        let mut model = Model {
            consumer,
            now: Duration::ZERO,
            last_sequence: 0,
            next_new_sequence: 1,
            outstanding: BTreeMap::new(),
            resolved: BTreeMap::new(),
            deliveries_max,
            ack_pending_max,
            dead_letters_since_restart: 0,
        };
        for operation in operations {
            model.apply(operation);
        }
        model.drain();
        prop_assert!(model.outstanding.is_empty());
        let resolved: BTreeSet<u64> = model.resolved.keys().copied().collect();
        prop_assert_eq!(resolved, (1..=model.last_sequence).collect::<BTreeSet<u64>>());
        prop_assert_eq!(model.consumer.ack_floor(), model.last_sequence);
        prop_assert_eq!(model.consumer.info(model.last_sequence).dead_letters_total, model.dead_letters_since_restart);
    }
}
