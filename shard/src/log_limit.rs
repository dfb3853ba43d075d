//! Rate limits for log lines a client can cause. A flood of bad clients
//! (each one a protocol error, an eviction, a refused connection) must not
//! turn into a flood of log lines: each kind of event logs at most
//! `LOG_LINES_PER_WINDOW_MAX` lines per `LOG_WINDOW` per shard, and the next
//! line after a quiet spell says how many were left out. Counters in
//! `metrics` still count every event.

use std::time::{Duration, Instant};

/// Lines of one kind one shard may log per window.
pub const LOG_LINES_PER_WINDOW_MAX: u32 = 10;
/// The window over which `LOG_LINES_PER_WINDOW_MAX` applies.
pub const LOG_WINDOW: Duration = Duration::from_secs(1);

/// One kind of event's budget.
#[derive(Debug, Default)]
pub struct LogLimiter {
    window_started: Option<Instant>,
    lines_in_window: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// `Some(suppressed before this one)` when this event may be logged,
    /// `None` when it is over budget (and counted as suppressed).
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        let window_over = self.window_started.is_none_or(|started| now.duration_since(started) >= LOG_WINDOW);
        if window_over {
            self.window_started = Some(now);
            self.lines_in_window = 0;
        }
        if self.lines_in_window >= LOG_LINES_PER_WINDOW_MAX {
            self.suppressed += 1;
            return None;
        }
        self.lines_in_window += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The rate limits of one shard, one per kind of event.
#[derive(Debug, Default)]
pub struct ShardLogLimits {
    /// Connections opened and closed (debug level).
    pub connections: LogLimiter,
    /// Protocol errors that close a connection.
    pub client_errors: LogLimiter,
    /// Slow-consumer evictions.
    pub evictions: LogLimiter,
    /// Limits reached: connections, subscriptions.
    pub limits: LogLimiter,
    /// Failed accepts.
    pub accept_errors: LogLimiter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_the_budget_per_window_then_the_count_of_the_rest() {
        let mut limiter = LogLimiter::default();
        let start = Instant::now();
        for _ in 0..LOG_LINES_PER_WINDOW_MAX {
            assert_eq!(limiter.admit(start), Some(0));
        }
        for _ in 0..5 {
            assert_eq!(limiter.admit(start + Duration::from_millis(500)), None);
        }
        assert_eq!(limiter.admit(start + LOG_WINDOW), Some(5), "the first line of the next window reports the gap");
        assert_eq!(limiter.admit(start + LOG_WINDOW), Some(0));
    }
}
