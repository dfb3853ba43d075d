//! [`Statistics`]: what a connection's reader dropped, delivered and was
//! told, for a caller to read (`Client::statistics`). Kept by the
//! dispatcher (`dispatch.rs`), copied out under its lock.

/// Counters a caller can read to see what the client dropped and why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Deliveries received for a subscription id that is not (or no longer)
    /// registered, typically messages in flight when `unsubscribe()` was called.
    pub unknown_subscription_drops: u64,
    /// Deliveries dropped because the subscription's channel was full.
    pub slow_consumer_drops: u64,
    /// Answers to an inbox that matched no waiting request (late or foreign).
    pub unmatched_responses: u64,
    /// Messages delivered to subscriptions and requests.
    pub messages_delivered: u64,
    /// Set when the server announced a graceful shutdown (a Draining frame):
    /// the milliseconds within which it said it would close the connection.
    /// Publishes sent after it are not delivered; reconnect elsewhere.
    pub server_draining_within_ms: Option<u64>,
    /// Frames the server refused and that left the connection open
    /// (`permission_denied` 401, `rate_limited` 307), all of them. In ack
    /// mode the refused call also returns the error; otherwise a refused
    /// request fails with it, and every other refusal is reported once by
    /// `check_refusals()`.
    pub refused_by_server: u64,
    /// Stream frames (PublishAck, StreamReply, StreamMessage) whose tag no
    /// call waits for: answers that came after their call timed out.
    pub unmatched_stream_frames: u64,
}
