//! # Retention: how much a stream keeps, and what happens at a limit
//!
//! A stream may limit its total bytes, its message count and its messages'
//! age, and always limits one message's size. When the total bytes or
//! messages would pass a limit, the per-stream [`Discard`] policy decides:
//! `Old` deletes the oldest segments whole (never the one being written),
//! `New` refuses the append with `AppendError::LimitReached`. Age always
//! deletes old segments, whatever the policy: a message older than the
//! limit has no right to stay. A message over the size limit is always
//! refused, with its own error.
//!
//! Deleting whole segments keeps retention O(1) per message and costs one
//! file removal and one directory sync per segment, done synchronously
//! through the disk seam (rare: once per `segment_bytes` of data). The price:
//! a disk stream may hold up to one segment more than a byte or message
//! limit until the active segment rolls (and its active segment is never
//! deleted, so a limit below one segment is met only by the memory policy,
//! which drops single messages).
//!
//! ## Invariants
//! - Only segments whose every message is acknowledged are deleted, never
//!   the active one, always oldest first (sequences stay contiguous from the
//!   first retained message).
//!
//! ## Shutdown
//! Stateless: nothing to do.

use std::time::Duration;

/// What to do when a byte or message limit would be passed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Discard {
    /// Delete the oldest data (whole segments on disk).
    #[default]
    Old,
    /// Refuse the new message.
    New,
}

/// A stream's limits; `None` means no limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub bytes_max: Option<u64>,
    pub messages_max: Option<u64>,
    pub age_max: Option<Duration>,
    /// Headers plus payload of one message.
    pub message_bytes_max: Option<usize>,
    pub discard: Discard,
}

/// Totals the checks look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Totals {
    pub messages: u64,
    pub bytes: u64,
}

/// Which limit was hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    Bytes,
    Messages,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Limit::Bytes => "max bytes",
            Limit::Messages => "max messages",
        })
    }
}

impl Retention {
    /// Under `Discard::New`: the limit adding one message of `bytes` to
    /// `totals` would pass, if any.
    pub fn refuses(&self, totals: Totals, bytes: u64) -> Option<Limit> {
        if self.discard != Discard::New {
            return None;
        }
        if self.messages_max.is_some_and(|limit| totals.messages + 1 > limit) {
            return Some(Limit::Messages);
        }
        if self.bytes_max.is_some_and(|limit| totals.bytes + bytes > limit) {
            return Some(Limit::Bytes);
        }
        None
    }

    /// Whether the oldest unit (a segment or, in memory, a message), whose
    /// newest message has `oldest_last_timestamp_ns`, should go, given
    /// `totals` (which include it) and the wall clock `now_ns`.
    pub fn should_delete_oldest(&self, totals: Totals, oldest_last_timestamp_ns: u64, now_ns: u64) -> bool {
        let expired =
            self.age_max.is_some_and(|age| now_ns.saturating_sub(oldest_last_timestamp_ns) > age.as_nanos() as u64);
        if expired {
            return true;
        }
        if self.discard != Discard::Old {
            return false;
        }
        let over_messages = self.messages_max.is_some_and(|limit| totals.messages > limit);
        let over_bytes = self.bytes_max.is_some_and(|limit| totals.bytes > limit);
        over_messages || over_bytes
    }
}
