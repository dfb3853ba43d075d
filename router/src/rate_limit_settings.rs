//! The rate limit settings, as written in the config file (`[rate_limit]`,
//! per connection) and in the identities file (`rate = {...}`, per identity):
//!
//! ```toml
//! messages_per_second = 10000   # 0: no message limit
//! burst_messages = 20000        # 0: one second's worth
//! bytes_per_second = 0          # 0: no byte limit
//! burst_bytes = 0               # 0: one second's worth
//! policy = "reject"             # or "slow_down"
//! ```

use flit_shard::rate_limit::{Limit, Policy, RateLimits};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum PolicySetting {
    /// Drop the publish; the client gets rate_limited (307) with a retry-after hint.
    Reject,
    /// Accept it and stop reading the socket until the limit allows more.
    SlowDown,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    pub messages_per_second: Option<u64>,
    pub burst_messages: Option<u64>,
    pub bytes_per_second: Option<u64>,
    pub burst_bytes: Option<u64>,
    pub policy: Option<PolicySetting>,
}

impl RateLimitSection {
    /// Every key at its default: no limit.
    pub fn defaults() -> RateLimitSection {
        RateLimitSection {
            messages_per_second: Some(0),
            burst_messages: Some(0),
            bytes_per_second: Some(0),
            burst_bytes: Some(0),
            policy: Some(PolicySetting::Reject),
        }
    }

    /// `self` with the keys `over` sets replaced.
    pub fn overridden_by(self, over: RateLimitSection) -> RateLimitSection {
        RateLimitSection {
            messages_per_second: over.messages_per_second.or(self.messages_per_second),
            burst_messages: over.burst_messages.or(self.burst_messages),
            bytes_per_second: over.bytes_per_second.or(self.bytes_per_second),
            burst_bytes: over.burst_bytes.or(self.burst_bytes),
            policy: over.policy.or(self.policy),
        }
    }

    /// The limits these settings describe (missing keys: no limit).
    pub fn limits(&self) -> RateLimits {
        let limit = |per_second: Option<u64>, burst: Option<u64>| {
            per_second
                .filter(|rate| *rate > 0)
                .map(|rate| Limit { per_second: rate, burst: burst.filter(|b| *b > 0).unwrap_or(rate) })
        };
        RateLimits {
            messages: limit(self.messages_per_second, self.burst_messages),
            bytes: limit(self.bytes_per_second, self.burst_bytes),
            policy: match self.policy.unwrap_or(PolicySetting::Reject) {
                PolicySetting::Reject => Policy::Reject,
                PolicySetting::SlowDown => Policy::SlowDown,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_no_limit_and_burst_defaults_to_one_second() {
        assert!(RateLimitSection::defaults().limits().is_unlimited());
        let section = RateLimitSection { messages_per_second: Some(100), ..RateLimitSection::defaults() };
        assert_eq!(section.limits().messages, Some(Limit { per_second: 100, burst: 100 }));
        assert_eq!(section.limits().bytes, None);
    }
}
