//! # Consumers: positions, acks, redelivery, dead letters
//!
//! A consumer reads a stream from a start position and hands out
//! deliveries; with explicit acks each delivery stays pending until the
//! client acks, naks or terminates it, and is redelivered when its ack wait
//! expires. The shard that owns the stream owns its consumers and drives
//! them; everything here is a pure state machine: time comes in as `now`
//! (any monotonic clock of the shard's, the same for every call on one
//! consumer), the stream's bounds come in as arguments, and nothing reads a
//! clock, a socket or a file.
//!
//! ## How the shard drives a consumer
//! - After an append, an ack, a nak, or when the timer armed at
//!   [`Consumer::next_deadline`] fires: call [`Consumer::next_delivery`]
//!   (push) or [`PullQueue::next_pull_delivery`] (pull) until `None`, then
//!   publish every [`Consumer::pop_dead_letter`] to the dead-letter subject.
//! - After retention removed messages: [`Consumer::retention_moved`].
//! - For a durable consumer, when [`Consumer::state_version`] changed:
//!   persist [`Consumer::state`] with a [`ConsumerStore`].
//!
//! ## Order of deliveries
//! Redeliveries come first, lowest sequence first: those nak'ed, those
//! whose ack wait expired, and after a restart those pending when the
//! state was saved. Then new sequences in order, while fewer than
//! `ack_pending_max` are outstanding. At the limit the consumer is
//! *stalled*: it delivers nothing new (redeliveries continue, they add
//! nothing outstanding) until an ack, term or dead letter frees a slot.
//!
//! ## Invariants
//! - Every sequence at or below [`Consumer::ack_floor`] is resolved
//!   (acked, terminated, dead-lettered, removed by retention, or before the
//!   start position); every sequence above it and at or below the delivered
//!   sequence is resolved unless it is in `pending`. So the floor is the
//!   lowest pending sequence minus one, or the delivered sequence when
//!   nothing is pending, and `pending` alone describes the state above it.
//! - With explicit acks, `pending.len() + dead_letters.len() <=
//!   ack_pending_max`: an unpublished dead letter still holds its slot,
//!   which bounds the dead-letter queue too. With ack none, `pending` is
//!   empty.
//! - A pending message is either waiting (its deadline is in `deadlines`)
//!   or ready for redelivery (in `ready`), never both.
//!
//! ## Shutdown and restart
//! Deadlines are not persisted. A durable consumer's saved state holds its
//! config, ack floor, delivered sequence and pending messages with their
//! delivery counts. After a restart every pending message (every sequence
//! above the floor not resolved) is redelivered: delivery is at least once,
//! and a message acked after the last saved state is delivered again.
//! An ephemeral consumer is gone with the process.

mod config;
mod pull;
mod state;
mod store;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

pub use config::{
    AckPolicy, ConfigError, ConsumerConfig, DeliveryMode, StartPosition, ACK_PENDING_MAX_CEILING, ACK_WAIT_MAX,
    CONSUMER_NAME_BYTES_MAX, DELIVERIES_UNLIMITED, SUBJECT_BYTES_MAX,
};
pub use pull::{ExpiredPullRequest, PullDelivery, PullError, PullQueue, PullRefusal, PullRequest};
pub use state::{ConsumerState, PendingMessage, StateError, STATE_FORMAT_VERSION};
pub use store::{ConsumerStore, ConsumerStoreFile, SlotWrite, StoreError, SLOT_ALIGNMENT_BYTES};

/// One message to hand to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub sequence: u64,
    /// 1 on the first delivery.
    pub delivery_count: u32,
    /// Whether it was delivered before (`delivery_count > 1`).
    pub redelivered: bool,
}

/// A message that reached `deliveries_max` and then its ack wait expired
/// again (or was nak'ed): no longer pending. The shard publishes it to the
/// dead-letter subject (if any) and counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub sequence: u64,
    pub delivery_count: u32,
}

/// What an ack, nak, term or progress signal did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckOutcome {
    /// It took effect.
    Applied,
    /// A nak of a message already delivered `deliveries_max` times: it
    /// became a dead letter instead of being redelivered.
    DeadLettered,
    /// The sequence was delivered but is no longer pending (acked,
    /// terminated, dead-lettered, removed by retention, or before the start
    /// position): ignored, counted.
    Duplicate,
    /// The sequence was never delivered (or the consumer does not take
    /// acks): ignored, counted.
    Unknown,
}

/// A consumer's numbers, for `flit stream info` and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// Highest sequence delivered at least once.
    pub delivered_sequence: u64,
    pub ack_floor: u64,
    /// Delivered and not yet resolved, plus dead letters not yet popped.
    pub ack_pending: u32,
    /// Pending messages waiting to be redelivered now.
    pub redeliveries_ready: u32,
    pub stalled: bool,
    /// Messages in the stream not yet delivered.
    pub lag: u64,
    pub redeliveries_total: u64,
    pub dead_letters_total: u64,
    pub acks_total: u64,
    pub terminated_total: u64,
    /// Acks, naks and terms for sequences not pending.
    pub acks_ignored_total: u64,
    /// Pending messages dropped because retention removed them.
    pub skipped_by_retention_total: u64,
    pub last_ack_at: Option<Duration>,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    delivery_count: u32,
    /// `Some` while waiting for an ack; `None` while in `ready`.
    deadline: Option<Duration>,
}

#[derive(Clone, Debug, Default)]
struct Counters {
    redeliveries: u64,
    dead_letters: u64,
    acks: u64,
    terminated: u64,
    acks_ignored: u64,
    skipped_by_retention: u64,
}

/// One consumer of one stream. See the module header.
#[derive(Debug)]
pub struct Consumer {
    config: ConsumerConfig,
    /// The next sequence never delivered.
    next_sequence: u64,
    pending: BTreeMap<u64, Pending>,
    /// (deadline, sequence) of every waiting pending message.
    deadlines: BTreeSet<(Duration, u64)>,
    /// Pending messages to redeliver now, by sequence.
    ready: BTreeSet<u64>,
    dead_letters: VecDeque<DeadLetter>,
    counters: Counters,
    last_ack_at: Option<Duration>,
    /// Bumped on every change to what [`Consumer::state`] returns.
    state_version: u64,
}

impl Consumer {
    /// A new consumer over a stream holding `stream_bounds` = (first, last)
    /// sequence; an empty stream is `(last + 1, last)`, e.g. `(1, 0)`.
    /// `resolve_time` maps a timestamp (ns since the epoch) to the first
    /// sequence stored at or after it (`last + 1` if none).
    pub fn new(
        config: ConsumerConfig,
        stream_bounds: (u64, u64),
        resolve_time: impl FnOnce(u64) -> u64,
    ) -> Result<Consumer, ConfigError> {
        config.validate()?;
        let (first_sequence, last_sequence) = stream_bounds;
        debug_assert!(first_sequence >= 1 && first_sequence <= last_sequence + 1);
        let start_sequence = match config.start {
            StartPosition::First => first_sequence,
            StartPosition::Last => last_sequence.max(first_sequence),
            StartPosition::New => last_sequence + 1,
            StartPosition::Sequence { sequence } => sequence,
            StartPosition::Time { timestamp_ns } => resolve_time(timestamp_ns),
        };
        // A start below what is stored begins at the first stored message.
        let next_sequence = start_sequence.max(first_sequence).max(1);
        Ok(Consumer::with_position(config, next_sequence))
    }

    /// A consumer restored from its saved state. Every pending message is
    /// redelivered at once, except those already delivered `deliveries_max`
    /// times: they get one more ack wait from `now` (their last delivery may
    /// still be acked) and then become dead letters. Messages retention
    /// removed meanwhile are skipped.
    pub fn restore(state: ConsumerState, stream_first_sequence: u64, now: Duration) -> Result<Consumer, StateError> {
        state.validate()?;
        let mut consumer = Consumer::with_position(state.config, state.delivered_sequence + 1);
        for message in state.pending {
            let exhausted = message.delivery_count >= consumer.config.deliveries_max;
            let deadline = exhausted.then(|| now + consumer.config.ack_wait);
            consumer.pending.insert(message.sequence, Pending { delivery_count: message.delivery_count, deadline });
            match deadline {
                Some(deadline) => consumer.deadlines.insert((deadline, message.sequence)),
                None => consumer.ready.insert(message.sequence),
            };
        }
        consumer.retention_moved(stream_first_sequence);
        consumer.check_invariants();
        Ok(consumer)
    }

    fn with_position(config: ConsumerConfig, next_sequence: u64) -> Consumer {
        Consumer {
            config,
            next_sequence,
            pending: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            ready: BTreeSet::new(),
            dead_letters: VecDeque::new(),
            counters: Counters::default(),
            last_ack_at: None,
            state_version: 0,
        }
    }

    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// The next message to hand out, or `None` (nothing to redeliver, and
    /// nothing new up to `stream_last_sequence` or the consumer is
    /// stalled). Processes expired ack waits first.
    pub fn next_delivery(&mut self, now: Duration, stream_last_sequence: u64) -> Option<Delivery> {
        self.process_deadlines(now);
        if let Some(sequence) = self.ready.pop_first() {
            return Some(self.redeliver(sequence, now));
        }
        if self.next_sequence > stream_last_sequence || self.stalled() {
            return None;
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        if self.config.ack_policy == AckPolicy::Explicit {
            let deadline = now + self.config.ack_wait;
            self.pending.insert(sequence, Pending { delivery_count: 1, deadline: Some(deadline) });
            self.deadlines.insert((deadline, sequence));
        }
        self.changed();
        Some(Delivery { sequence, delivery_count: 1, redelivered: false })
    }

    fn redeliver(&mut self, sequence: u64, now: Duration) -> Delivery {
        let deadline = now + self.config.ack_wait;
        let pending = self.pending.get_mut(&sequence).expect("a ready sequence is pending");
        debug_assert!(pending.deadline.is_none());
        pending.delivery_count = pending.delivery_count.saturating_add(1);
        pending.deadline = Some(deadline);
        let delivery_count = pending.delivery_count;
        self.deadlines.insert((deadline, sequence));
        self.counters.redeliveries += 1;
        self.changed();
        Delivery { sequence, delivery_count, redelivered: true }
    }

    /// Moves every pending message whose ack wait expired at `now` to the
    /// redelivery queue, or to the dead letters once it was delivered
    /// `deliveries_max` times. [`Consumer::next_delivery`] calls it; the
    /// shard may call it from its timer to publish dead letters promptly.
    pub fn process_deadlines(&mut self, now: Duration) {
        while let Some(&(deadline, sequence)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            let pending = self.pending.get_mut(&sequence).expect("a deadline belongs to a pending message");
            pending.deadline = None;
            if pending.delivery_count >= self.config.deliveries_max {
                self.dead_letter(sequence);
            } else {
                self.ready.insert(sequence);
            }
        }
    }

    /// Removes a pending message that is in neither `deadlines` nor
    /// `ready` and queues its dead-letter event.
    fn dead_letter(&mut self, sequence: u64) {
        let pending = self.pending.remove(&sequence).expect("dead-lettered message is pending");
        self.dead_letters.push_back(DeadLetter { sequence, delivery_count: pending.delivery_count });
        self.counters.dead_letters += 1;
        self.changed();
    }

    /// The oldest dead-letter event not yet taken. Its ack-pending slot is
    /// freed when it is taken, so publish every one after each call that
    /// can produce them (deliveries, naks, timer).
    pub fn pop_dead_letter(&mut self) -> Option<DeadLetter> {
        self.dead_letters.pop_front()
    }

    /// The client acknowledged `sequence`.
    pub fn ack(&mut self, sequence: u64, now: Duration) -> AckOutcome {
        let outcome = self.resolve(sequence);
        if outcome == AckOutcome::Applied {
            self.counters.acks += 1;
            self.last_ack_at = Some(now);
        }
        outcome
    }

    /// The client will not process `sequence`: no redelivery, no dead letter.
    pub fn term(&mut self, sequence: u64) -> AckOutcome {
        let outcome = self.resolve(sequence);
        if outcome == AckOutcome::Applied {
            self.counters.terminated += 1;
        }
        outcome
    }

    /// The client failed `sequence`: redeliver it at once, or make it a dead
    /// letter if it was delivered `deliveries_max` times.
    pub fn nak(&mut self, sequence: u64) -> AckOutcome {
        let Some(pending) = self.pending.get_mut(&sequence) else { return self.ignored(sequence) };
        let Some(deadline) = pending.deadline.take() else {
            // Already waiting for redelivery: nothing changes.
            return AckOutcome::Applied;
        };
        let exhausted = pending.delivery_count >= self.config.deliveries_max;
        self.deadlines.remove(&(deadline, sequence));
        if exhausted {
            self.dead_letter(sequence);
            return AckOutcome::DeadLettered;
        }
        self.ready.insert(sequence);
        AckOutcome::Applied
    }

    /// The client is still working on `sequence`: its ack wait starts again
    /// from `now` (also when it had expired and awaited redelivery).
    pub fn in_progress(&mut self, sequence: u64, now: Duration) -> AckOutcome {
        let Some(pending) = self.pending.get_mut(&sequence) else { return self.ignored(sequence) };
        let deadline = now + self.config.ack_wait;
        match pending.deadline.replace(deadline) {
            Some(previous) => self.deadlines.remove(&(previous, sequence)),
            None => self.ready.remove(&sequence),
        };
        self.deadlines.insert((deadline, sequence));
        AckOutcome::Applied
    }

    /// Removes `sequence` from pending (ack or term).
    fn resolve(&mut self, sequence: u64) -> AckOutcome {
        let Some(pending) = self.pending.remove(&sequence) else { return self.ignored(sequence) };
        match pending.deadline {
            Some(deadline) => self.deadlines.remove(&(deadline, sequence)),
            None => self.ready.remove(&sequence),
        };
        self.changed();
        AckOutcome::Applied
    }

    fn ignored(&mut self, sequence: u64) -> AckOutcome {
        self.counters.acks_ignored += 1;
        if sequence < self.next_sequence && self.config.ack_policy == AckPolicy::Explicit {
            AckOutcome::Duplicate
        } else {
            AckOutcome::Unknown
        }
    }

    /// Retention removed every message below `stream_first_sequence`:
    /// pending ones below it are dropped (counted), and the position moves
    /// up to it. Returns how many pending messages were dropped.
    pub fn retention_moved(&mut self, stream_first_sequence: u64) -> u64 {
        let kept = self.pending.split_off(&stream_first_sequence);
        let dropped = std::mem::replace(&mut self.pending, kept);
        for (sequence, pending) in &dropped {
            match pending.deadline {
                Some(deadline) => self.deadlines.remove(&(deadline, *sequence)),
                None => self.ready.remove(sequence),
            };
        }
        let dropped_count = dropped.len() as u64;
        self.counters.skipped_by_retention += dropped_count;
        if self.next_sequence < stream_first_sequence || dropped_count > 0 {
            self.next_sequence = self.next_sequence.max(stream_first_sequence);
            self.changed();
        }
        self.check_invariants();
        dropped_count
    }

    /// Whether the consumer is at `ack_pending_max` and delivers nothing new.
    pub fn stalled(&self) -> bool {
        self.config.ack_policy == AckPolicy::Explicit && self.outstanding() >= self.config.ack_pending_max as usize
    }

    fn outstanding(&self) -> usize {
        self.pending.len() + self.dead_letters.len()
    }

    /// When the earliest ack wait expires, for the shard's timer. Messages
    /// already ready for redelivery are handed out by the next call to
    /// [`Consumer::next_delivery`] whatever the timer.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// Highest sequence delivered at least once (0 before any).
    pub fn delivered_sequence(&self) -> u64 {
        self.next_sequence - 1
    }

    /// Every sequence at or below it is resolved (see the module header).
    pub fn ack_floor(&self) -> u64 {
        match self.pending.first_key_value() {
            Some((sequence, _)) => sequence - 1,
            None => self.delivered_sequence(),
        }
    }

    /// Changes whenever [`Consumer::state`] would return something new: a
    /// durable consumer's owner persists the state when it differs from
    /// the version last written.
    pub fn state_version(&self) -> u64 {
        self.state_version
    }

    fn changed(&mut self) {
        self.state_version += 1;
        self.check_invariants();
    }

    /// What a durable consumer persists (see [`ConsumerState`]).
    pub fn state(&self) -> ConsumerState {
        ConsumerState {
            config: self.config.clone(),
            ack_floor: self.ack_floor(),
            delivered_sequence: self.delivered_sequence(),
            pending: self
                .pending
                .iter()
                .map(|(sequence, pending)| PendingMessage {
                    sequence: *sequence,
                    delivery_count: pending.delivery_count,
                })
                .collect(),
        }
    }

    /// The consumer's numbers; `lag` against `stream_last_sequence`.
    pub fn info(&self, stream_last_sequence: u64) -> ConsumerInfo {
        ConsumerInfo {
            delivered_sequence: self.delivered_sequence(),
            ack_floor: self.ack_floor(),
            ack_pending: self.outstanding() as u32,
            redeliveries_ready: self.ready.len() as u32,
            stalled: self.stalled(),
            lag: stream_last_sequence.saturating_sub(self.delivered_sequence()),
            redeliveries_total: self.counters.redeliveries,
            dead_letters_total: self.counters.dead_letters,
            acks_total: self.counters.acks,
            terminated_total: self.counters.terminated,
            acks_ignored_total: self.counters.acks_ignored,
            skipped_by_retention_total: self.counters.skipped_by_retention,
            last_ack_at: self.last_ack_at,
        }
    }

    fn check_invariants(&self) {
        debug_assert_eq!(self.deadlines.len() + self.ready.len(), self.pending.len());
        debug_assert!(self.pending.keys().next_back().is_none_or(|last| *last < self.next_sequence));
        debug_assert!(self.config.ack_policy == AckPolicy::Explicit || self.pending.is_empty());
        debug_assert!(
            self.config.ack_policy == AckPolicy::None || self.outstanding() <= self.config.ack_pending_max as usize
        );
    }
}
