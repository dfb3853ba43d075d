//! Connection options.

use std::time::Duration;

/// How to connect. Build with struct-update syntax:
/// `Options { name: Some("billing".into()), ..Options::default() }`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Shown in the server's logs and metrics.
    pub name: Option<String>,
    /// Bearer token sent in Hello; required by a server with identities (docs/OPERATIONS.md).
    pub auth_token: Option<String>,
    /// Ask the server to answer every publish, subscribe and unsubscribe with
    /// Ok or Error. Each of those calls then waits for its answer, so errors are
    /// attributed to the call that caused them, at the cost of one round trip each.
    pub ack_mode: bool,
    /// Bound on TCP connect plus the Hello/Welcome handshake.
    pub connect_timeout: Duration,
    /// Bound on `flush()` and on waiting for an acknowledgement in ack mode.
    pub flush_timeout: Duration,
    /// Messages a subscription buffers before further ones are dropped (and
    /// counted in [`Statistics::slow_consumer_drops`](crate::Statistics)).
    /// Dropping rather than blocking keeps one slow subscriber from stalling
    /// the reader, and with it every other subscription, flush and request.
    pub subscription_capacity: usize,
    /// Bytes of encoded frames buffered before a publisher waits for the
    /// socket. Bounds memory when publishing faster than the network drains.
    pub write_buffer_bytes_max: usize,
    /// Speak TLS to the server (both clients).
    pub tls: Option<crate::tls::TlsOptions>,
    /// Cluster clients ([`ClusterClient`](crate::ClusterClient),
    /// [`AsyncClusterClient`](crate::AsyncClusterClient)) only: bytes of publishes held
    /// while no server is connected (subject, reply, headers and payload).
    /// A publish that would go past it fails with
    /// [`ClientError::ReconnectBufferFull`](crate::ClientError::ReconnectBufferFull).
    pub reconnect_buffer_bytes_max: usize,
    /// Cluster clients only: the first backoff between
    /// failed reconnect attempts; it doubles per failure up to `reconnect_delay_max`,
    /// and each wait is drawn uniformly from zero to it (full jitter).
    pub reconnect_delay_min: Duration,
    /// Cluster clients only: the longest backoff.
    pub reconnect_delay_max: Duration,
    /// Cluster clients only: fail over to the servers given only, not to the
    /// other nodes a server names in its Welcome (`cluster_urls`). Default
    /// false: the learned ones are tried after the given ones.
    pub ignore_discovered_servers: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            name: None,
            auth_token: None,
            ack_mode: false,
            connect_timeout: Duration::from_secs(5),
            flush_timeout: Duration::from_secs(10),
            subscription_capacity: 65_536,
            write_buffer_bytes_max: 4 * 1024 * 1024,
            tls: None,
            reconnect_buffer_bytes_max: 8 * 1024 * 1024,
            reconnect_delay_min: Duration::from_millis(50),
            reconnect_delay_max: Duration::from_secs(2),
            ignore_discovered_servers: false,
        }
    }
}
