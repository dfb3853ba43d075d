//! Rate limits on what clients publish: messages per second and bytes per
//! second, each with a burst, per connection (a default for all) and per
//! identity (all of its connections together, on every shard).
//!
//! The algorithm is GCRA (the generic cell rate algorithm, equivalent to a
//! token bucket): one number per limit, the theoretical arrival time (TAT),
//! the time at which the bucket would be full again. A message of cost `c`
//! arriving at `now` conforms when `max(TAT, now) - now <= burst * interval`,
//! and then moves TAT to `max(TAT, now) + c * interval`. A per-connection
//! limit keeps its TAT in the connection (no sharing); a per-identity limit
//! keeps it in one `AtomicU64` updated with compare-and-swap, so shards
//! share it without a lock.
//!
//! What happens to a message over the limit is the policy's choice:
//! - `Reject`: it is dropped and the client gets `rate_limited` (307) with a
//!   retry-after hint; the connection stays open.
//! - `SlowDown`: it is accepted, and the shard stops reading that socket
//!   until the limit allows the next one (TCP backpressure reaches the
//!   publisher; nothing is dropped).

use std::sync::atomic::{AtomicU64, Ordering};

/// What to do with a message over its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Reject,
    SlowDown,
}

/// One limit: so many units per second, with a burst of so many units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub per_second: u64,
    pub burst: u64,
}

impl Limit {
    /// Nanoseconds `units` use up (rounded up, at least 1). u64 arithmetic:
    /// a frame is at most 4 GiB, and 4 GiB x 10^9 still fits.
    fn interval_nanos(&self, units: u64) -> u64 {
        units.saturating_mul(1_000_000_000).div_ceil(self.per_second.max(1)).max(1)
    }

    fn tolerance_nanos(&self) -> u64 {
        self.interval_nanos(self.burst.max(1))
    }

    /// GCRA step for a TAT: `Ok(new TAT)` if `units` conform at `now`,
    /// `Err(nanoseconds until they would)`.
    fn step(&self, tat: u64, now: u64, units: u64) -> Result<u64, u64> {
        let start = tat.max(now);
        let cost = self.interval_nanos(units);
        // Conforms if, after this message, the bucket holds at most `burst` units.
        let after = start.saturating_add(cost);
        let allowed_until = now.saturating_add(self.tolerance_nanos());
        if after <= allowed_until {
            Ok(after)
        } else {
            Err(after - allowed_until)
        }
    }
}

/// A message-rate and a byte-rate limit, and the policy for both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    pub messages: Option<Limit>,
    pub bytes: Option<Limit>,
    pub policy: Policy,
}

impl RateLimits {
    pub fn unlimited() -> RateLimits {
        RateLimits { messages: None, bytes: None, policy: Policy::Reject }
    }

    pub fn is_unlimited(&self) -> bool {
        self.messages.is_none() && self.bytes.is_none()
    }
}

/// The outcome for one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Over the limit: wait this long (nanoseconds) before the next message.
    Over {
        wait_nanos: u64,
    },
}

/// The state of a per-connection limit (one thread only).
#[derive(Clone, Debug, Default)]
pub struct LocalBuckets {
    messages_tat: u64,
    bytes_tat: u64,
}

impl LocalBuckets {
    /// Charges one message of `bytes` at `now`. Under `SlowDown` an over-limit
    /// message is charged anyway (it is accepted); under `Reject` it is not.
    pub fn charge(&mut self, limits: &RateLimits, now: u64, bytes: u64) -> Verdict {
        let messages = limits.messages.map(|limit| limit.step(self.messages_tat, now, 1));
        let bytes_step = limits.bytes.map(|limit| limit.step(self.bytes_tat, now, bytes));
        let wait = [messages, bytes_step].iter().flatten().filter_map(|step| step.err()).max();
        match (wait, limits.policy) {
            (None, _) => {
                self.apply(messages, bytes_step);
                Verdict::Pass
            }
            (Some(wait_nanos), Policy::Reject) => Verdict::Over { wait_nanos },
            (Some(wait_nanos), Policy::SlowDown) => {
                // Accepted, and the TATs move past the limit: the wait.
                self.messages_tat = Self::forced(limits.messages, self.messages_tat, now, 1);
                self.bytes_tat = Self::forced(limits.bytes, self.bytes_tat, now, bytes);
                Verdict::Over { wait_nanos }
            }
        }
    }

    fn apply(&mut self, messages: Option<Result<u64, u64>>, bytes: Option<Result<u64, u64>>) {
        if let Some(Ok(tat)) = messages {
            self.messages_tat = tat;
        }
        if let Some(Ok(tat)) = bytes {
            self.bytes_tat = tat;
        }
    }

    fn forced(limit: Option<Limit>, tat: u64, now: u64, units: u64) -> u64 {
        limit.map_or(tat, |limit| tat.max(now).saturating_add(limit.interval_nanos(units)))
    }
}

/// A per-identity limit, shared by that identity's connections on every shard.
#[derive(Debug)]
pub struct SharedBuckets {
    pub limits: RateLimits,
    messages_tat: AtomicU64,
    bytes_tat: AtomicU64,
}

impl SharedBuckets {
    pub fn new(limits: RateLimits) -> SharedBuckets {
        SharedBuckets { limits, messages_tat: AtomicU64::new(0), bytes_tat: AtomicU64::new(0) }
    }

    /// As [`LocalBuckets::charge`], lock-free across threads. The two limits
    /// are charged one after the other; under `Reject`, a message refused by
    /// the byte limit has still used message budget (documented: the message
    /// limit may run ahead by the rejected messages).
    pub fn charge(&self, now: u64, bytes: u64) -> Verdict {
        let mut wait = 0;
        for (limit, tat, units) in
            [(self.limits.messages, &self.messages_tat, 1), (self.limits.bytes, &self.bytes_tat, bytes)]
        {
            let Some(limit) = limit else { continue };
            let outcome = tat.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
                match limit.step(current, now, units) {
                    Ok(next) => Some(next),
                    Err(_) if self.limits.policy == Policy::SlowDown => {
                        Some(current.max(now).saturating_add(limit.interval_nanos(units)))
                    }
                    Err(_) => None,
                }
            });
            let current = match outcome {
                Ok(previous) | Err(previous) => previous,
            };
            if let Err(over) = limit.step(current, now, units) {
                wait = wait.max(over);
            }
        }
        if wait == 0 {
            Verdict::Pass
        } else {
            Verdict::Over { wait_nanos: wait }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn limits(per_second: u64, burst: u64, policy: Policy) -> RateLimits {
        RateLimits { messages: Some(Limit { per_second, burst }), bytes: None, policy }
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let limits = limits(100, 10, Policy::Reject);
        let mut buckets = LocalBuckets::default();
        let now = 5 * SECOND;
        let passed = (0..50).filter(|_| buckets.charge(&limits, now, 1) == Verdict::Pass).count();
        assert_eq!(passed, 10, "the burst, at one instant");
        // Over one second at a steady 1,000 attempts/s, about 100 pass.
        let passed =
            (1..=1000).filter(|i| buckets.charge(&limits, now + i * SECOND / 1000, 1) == Verdict::Pass).count();
        assert!((99..=101).contains(&passed), "{passed}");
    }

    #[test]
    fn a_rejection_says_how_long_to_wait() {
        let limits = limits(10, 1, Policy::Reject);
        let mut buckets = LocalBuckets::default();
        assert_eq!(buckets.charge(&limits, SECOND, 1), Verdict::Pass);
        let Verdict::Over { wait_nanos } = buckets.charge(&limits, SECOND, 1) else { panic!("over") };
        assert_eq!(wait_nanos, SECOND / 10, "one interval at 10/s");
        assert_eq!(buckets.charge(&limits, SECOND + wait_nanos, 1), Verdict::Pass, "and then it passes");
    }

    #[test]
    fn byte_limits_charge_by_size() {
        let limits =
            RateLimits { messages: None, bytes: Some(Limit { per_second: 1000, burst: 1000 }), policy: Policy::Reject };
        let mut buckets = LocalBuckets::default();
        assert_eq!(buckets.charge(&limits, SECOND, 600), Verdict::Pass);
        assert!(
            matches!(buckets.charge(&limits, SECOND, 600), Verdict::Over { .. }),
            "1,200 bytes > a 1,000-byte burst"
        );
        assert_eq!(buckets.charge(&limits, SECOND, 400), Verdict::Pass);
    }

    #[test]
    fn shared_buckets_hold_the_rate_across_threads() {
        let shared = std::sync::Arc::new(SharedBuckets::new(limits(1000, 100, Policy::Reject)));
        let now = 7 * SECOND;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let shared = shared.clone();
                std::thread::spawn(move || (0..1000).filter(|_| shared.charge(now, 1) == Verdict::Pass).count())
            })
            .collect();
        let passed: usize = threads.into_iter().map(|thread| thread.join().unwrap()).sum();
        assert_eq!(passed, 100, "exactly the burst, whatever the interleaving");
    }

    #[test]
    fn slow_down_accepts_and_pushes_the_wait_out() {
        let limits = limits(10, 1, Policy::SlowDown);
        let mut buckets = LocalBuckets::default();
        assert_eq!(buckets.charge(&limits, SECOND, 1), Verdict::Pass);
        let Verdict::Over { wait_nanos: first } = buckets.charge(&limits, SECOND, 1) else { panic!("over") };
        let Verdict::Over { wait_nanos: second } = buckets.charge(&limits, SECOND, 1) else { panic!("over") };
        assert!(second > first, "each accepted message adds to the wait");
    }
}
