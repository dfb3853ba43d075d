//! # A consumer's configuration and its validation
//!
//! What a client asks for when it creates a consumer: where to start, how
//! acknowledgements work, the limits on redelivery and on messages in
//! flight, and pull or push. [`ConsumerConfig::validate`] refuses anything
//! the state machine or the persisted format cannot hold, with a typed
//! error the shard turns into an error code for the client.
//!
//! Names follow flit's style (limits end in `_max`); the JetStream names are
//! `max_deliver` ([`ConsumerConfig::deliveries_max`]) and `max_ack_pending`
//! ([`ConsumerConfig::ack_pending_max`]).
//!
//! ## Invariants
//! - A validated config fits [`crate::consumer::ConsumerState`]'s encoding:
//!   every string is within its byte limit, and `ack_pending_max` is at most
//!   [`ACK_PENDING_MAX_CEILING`], which bounds a persisted state's size.
//!
//! ## Shutdown
//! Plain data; a durable consumer's config is persisted with its state.

use std::time::Duration;

/// Longest consumer name, in bytes. Names appear in file names and
/// subjects, so they are short and limited to `[A-Za-z0-9_-]`.
pub const CONSUMER_NAME_BYTES_MAX: usize = 128;
/// Longest deliver or dead-letter subject, as `flit_wire::SUBJECT_BYTES_MAX`.
pub const SUBJECT_BYTES_MAX: usize = 512;
/// Largest `ack_pending_max` accepted. A durable consumer persists its
/// pending messages (12 bytes each) in every state write, so this bounds a
/// write to about 768 KiB.
pub const ACK_PENDING_MAX_CEILING: u32 = 65_536;
/// Longest ack wait accepted (a day): the deadline arithmetic stays far
/// from overflow, and a longer wait is a configuration mistake.
pub const ACK_WAIT_MAX: Duration = Duration::from_secs(24 * 3600);
/// `deliveries_max` meaning "redeliver for ever" (JetStream's -1).
pub const DELIVERIES_UNLIMITED: u32 = u32::MAX;

/// Where a new consumer starts.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartPosition {
    /// The stream's first message still stored.
    First,
    /// The stream's last message (then everything after it).
    Last,
    /// Only messages appended after the consumer was created.
    New,
    /// This sequence (or the first stored one, if it was removed).
    Sequence { sequence: u64 },
    /// The first message stored at or after this time, in nanoseconds since
    /// the UNIX epoch (the log's record timestamps).
    Time { timestamp_ns: u64 },
}

/// Whether deliveries wait for an acknowledgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckPolicy {
    /// Each delivery is pending until acked, nak'ed or terminated; it is
    /// redelivered when its ack wait expires.
    Explicit,
    /// Fire-and-forget replay: a delivery is done when it is handed out.
    None,
}

/// How messages reach the consumer's clients.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryMode {
    /// Clients fetch batches ([`crate::consumer::PullQueue`]).
    Pull,
    /// The shard publishes each delivery to this subject.
    Push { deliver_subject: String },
}

/// What a client asks for when it creates a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// `Some`: a durable consumer, persisted and shared by name (a work
    /// queue when several clients pull from it). `None`: ephemeral.
    pub name: Option<String>,
    pub start: StartPosition,
    pub ack_policy: AckPolicy,
    /// How long a delivery may stay unacknowledged before it is redelivered.
    pub ack_wait: Duration,
    /// Deliveries of one message (the first included) before its next ack
    /// wait expiry makes it a dead letter. [`DELIVERIES_UNLIMITED`]: never.
    pub deliveries_max: u32,
    /// Most messages delivered and not yet acknowledged; at the limit the
    /// consumer is stalled and delivers nothing new.
    pub ack_pending_max: u32,
    /// Where the shard publishes dead-letter events; `None`: they are only
    /// counted.
    pub dead_letter_subject: Option<String>,
    pub mode: DeliveryMode,
}

impl ConsumerConfig {
    /// Default ack wait, as JetStream's.
    pub const ACK_WAIT_DEFAULT: Duration = Duration::from_secs(30);
    /// Default `ack_pending_max`, as JetStream's.
    pub const ACK_PENDING_MAX_DEFAULT: u32 = 1000;

    /// A pull consumer with explicit acks and the defaults above, starting
    /// at the stream's first message.
    pub fn pull(name: Option<String>) -> ConsumerConfig {
        ConsumerConfig {
            name,
            start: StartPosition::First,
            ack_policy: AckPolicy::Explicit,
            ack_wait: Self::ACK_WAIT_DEFAULT,
            deliveries_max: DELIVERIES_UNLIMITED,
            ack_pending_max: Self::ACK_PENDING_MAX_DEFAULT,
            dead_letter_subject: None,
            mode: DeliveryMode::Pull,
        }
    }

    /// Whether the consumer is durable (named).
    pub fn is_durable(&self) -> bool {
        self.name.is_some()
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(name) = &self.name {
            validate_name(name)?;
        }
        if self.start == (StartPosition::Sequence { sequence: 0 }) {
            return Err(ConfigError::StartSequenceZero);
        }
        if self.ack_wait.is_zero() || self.ack_wait > ACK_WAIT_MAX {
            return Err(ConfigError::AckWaitOutOfRange { ack_wait: self.ack_wait, ack_wait_max: ACK_WAIT_MAX });
        }
        if self.deliveries_max == 0 {
            return Err(ConfigError::DeliveriesMaxZero);
        }
        if self.ack_pending_max == 0 || self.ack_pending_max > ACK_PENDING_MAX_CEILING {
            return Err(ConfigError::AckPendingMaxOutOfRange {
                ack_pending_max: self.ack_pending_max,
                ceiling: ACK_PENDING_MAX_CEILING,
            });
        }
        if let Some(subject) = &self.dead_letter_subject {
            if self.ack_policy == AckPolicy::None {
                // Nothing is pending, so nothing can ever be dead-lettered:
                // accepting it would promise what never happens.
                return Err(ConfigError::DeadLetterNeedsExplicitAck);
            }
            validate_subject(subject).map_err(|reason| ConfigError::InvalidDeadLetterSubject { reason })?;
        }
        if let DeliveryMode::Push { deliver_subject } = &self.mode {
            validate_subject(deliver_subject).map_err(|reason| ConfigError::InvalidDeliverSubject { reason })?;
        }
        Ok(())
    }
}

/// Why a config was refused. All are the client's mistake: recoverable by
/// sending a corrected config.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("consumer name is empty")]
    NameEmpty,
    #[error("consumer name of {length} bytes is longer than {name_bytes_max}")]
    NameTooLong { length: usize, name_bytes_max: usize },
    #[error("consumer name may hold only letters, digits, '_' and '-'")]
    NameInvalid,
    #[error("start sequence 0: sequences start at 1")]
    StartSequenceZero,
    #[error("ack wait {ack_wait:?} is zero or longer than {ack_wait_max:?}")]
    AckWaitOutOfRange { ack_wait: Duration, ack_wait_max: Duration },
    #[error("deliveries_max is 0: every message is delivered at least once")]
    DeliveriesMaxZero,
    #[error("ack_pending_max {ack_pending_max} is 0 or above {ceiling}")]
    AckPendingMaxOutOfRange { ack_pending_max: u32, ceiling: u32 },
    #[error("a dead-letter subject needs explicit acks")]
    DeadLetterNeedsExplicitAck,
    #[error("invalid dead-letter subject: {reason}")]
    InvalidDeadLetterSubject { reason: &'static str },
    #[error("invalid deliver subject: {reason}")]
    InvalidDeliverSubject { reason: &'static str },
}

fn validate_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::NameEmpty);
    }
    if name.len() > CONSUMER_NAME_BYTES_MAX {
        return Err(ConfigError::NameTooLong { length: name.len(), name_bytes_max: CONSUMER_NAME_BYTES_MAX });
    }
    if !name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-') {
        return Err(ConfigError::NameInvalid);
    }
    Ok(())
}

/// A publish subject: dot-separated non-empty tokens, no wildcards, no
/// whitespace (the router's own check is `flit_wire`'s
/// `validate_publish_subject`; this is the same rule without the wire
/// dependency, so a bad subject is refused when the consumer is created
/// rather than on its first dead letter).
fn validate_subject(subject: &str) -> Result<(), &'static str> {
    if subject.is_empty() {
        return Err("empty");
    }
    if subject.len() > SUBJECT_BYTES_MAX {
        return Err("longer than SUBJECT_BYTES_MAX");
    }
    for token in subject.split('.') {
        if token.is_empty() {
            return Err("empty token");
        }
        if token == "*" || token == ">" {
            return Err("wildcard in a publish subject");
        }
        if token.bytes().any(|byte| byte.is_ascii_whitespace() || byte.is_ascii_control()) {
            return Err("whitespace or control character");
        }
    }
    Ok(())
}
