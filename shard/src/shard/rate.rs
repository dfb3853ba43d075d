//! Applying rate limits to publishes (see `crate::rate_limit`): the
//! connection's own limit and its identity's shared one. Under `reject` an
//! over-limit publish is dropped with `rate_limited` and a retry-after hint;
//! under `slow_down` it is routed and the shard stops reading the socket
//! until the limit allows the next one: the publisher meets TCP backpressure.
//!
//! Paused connections wait in `paused_readers`; each pass resumes those
//! whose time has come (handling the frames already buffered first, since
//! the socket may have nothing new to announce).

use std::time::Duration;

use flit_wire::ErrorCode;

use super::Shard;
use crate::connection::ConnectionKey;
use crate::rate_limit::{Policy, Verdict};

impl Shard {
    /// Charges one publish of `bytes` to the connection's limits. False: it
    /// was over a `reject` limit and has been refused.
    pub(super) fn admit_by_rate(&mut self, key: ConnectionKey, bytes: u64) -> bool {
        let connection_limits = self.config.connection_rate_limits;
        if connection_limits.is_unlimited() && !self.identities.required {
            // No limit can apply: the common case costs one branch.
            return true;
        }
        let now = self.read_pass_nanos;
        let Some(connection) = self.connections.get_mut(key) else { return false };
        let mut reject_wait = None;
        let mut slow_wait = None;
        let mut note = |verdict: Verdict, policy: Policy| {
            if let Verdict::Over { wait_nanos } = verdict {
                let slot = if policy == Policy::Reject { &mut reject_wait } else { &mut slow_wait };
                *slot = Some(slot.unwrap_or(0).max(wait_nanos));
            }
        };
        if !connection_limits.is_unlimited() {
            note(connection.rate_buckets.charge(&connection_limits, now, bytes), connection_limits.policy);
        }
        if let Some(shared) = connection.identity.as_ref().and_then(|identity| identity.rate.as_ref()) {
            note(shared.charge(now, bytes), shared.limits.policy);
        }
        if let Some(wait_nanos) = reject_wait {
            self.metrics.rate_limit_rejections.add(1);
            let retry_after_ms = u32::try_from(wait_nanos.div_ceil(1_000_000)).unwrap_or(u32::MAX);
            let message = format!("over the publish rate limit; retry after {retry_after_ms} ms");
            self.refuse(key, ErrorCode::RateLimited, &message, retry_after_ms);
            return false;
        }
        if let Some(wait_nanos) = slow_wait {
            self.metrics.rate_limit_pauses.add(1);
            // A paused connection handles no frames, so it was not paused
            // (nor listed) before this one: list it once.
            debug_assert_eq!(connection.reading_paused_until_nanos, 0);
            connection.reading_paused_until_nanos = now.saturating_add(wait_nanos).max(1);
            self.paused_readers.push(key);
        }
        true
    }

    /// Resumes reading connections whose pause is over; returns how long
    /// until the next one is due (for the park timeout), if any waits.
    pub(super) fn resume_paused_readers(&mut self) -> Option<Duration> {
        if self.paused_readers.is_empty() {
            return None;
        }
        let now = self.now_nanos();
        let mut soonest: Option<u64> = None;
        let mut paused = std::mem::take(&mut self.paused_readers);
        paused.retain(|key| {
            let Some(connection) = self.connections.get_mut(*key) else { return false };
            let until = connection.reading_paused_until_nanos;
            if until > now {
                soonest = Some(soonest.map_or(until, |soonest| soonest.min(until)));
                return true;
            }
            connection.reading_paused_until_nanos = 0;
            self.resumed.push(*key);
            false
        });
        paused.append(&mut self.paused_readers);
        self.paused_readers = paused;
        for key in std::mem::take(&mut self.resumed) {
            // Frames already buffered first: the socket may stay quiet.
            self.handle_buffered_frames(key);
            self.mark_ready(key);
        }
        soonest.map(|until| Duration::from_nanos(until - now))
    }

    /// Whether reading from this connection waits for its rate limit.
    pub(super) fn reading_paused(&self, key: ConnectionKey) -> bool {
        self.connections.get(key).is_some_and(|connection| connection.reading_paused_until_nanos != 0)
    }
}
