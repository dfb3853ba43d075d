//! What a running router is configured with, and the defaults.
//!
//! Every limit is a named field with its unit last. Relations between limits
//! that must hold are checked in [`ServerConfig::validate`] before any thread
//! starts, so a shard never runs with a configuration it cannot honour.

use std::net::SocketAddr;
use std::time::Duration;

use flit_wire::{FRAME_HEADER_BYTES, META_BYTES_MAX, PAYLOAD_BYTES_MAX_DEFAULT};

use crate::error::StartError;
use crate::interest::SHARDS_MAX;

/// Park mode's spin before parking, unless `--spin-before-park-us` says otherwise.
pub const SPIN_BEFORE_PARK_DEFAULT: Duration = Duration::from_micros(50);
/// Payloads at least this long are sent by reference, not copied (measured:
/// docs/DESIGN.md, "Sends"), unless `--splice-payload-bytes-min` says otherwise.
pub const SPLICE_PAYLOAD_BYTES_MIN_DEFAULT: usize = 32 * 1024;
/// Where stream logs live unless `--data-dir` says otherwise.
pub const DATA_DIRECTORY_DEFAULT: &str = "./flit-data";
/// Default outbound bytes queued for one connection before it is evicted as a slow consumer.
pub const PENDING_BYTES_MAX_DEFAULT: usize = 8 * 1024 * 1024;
/// Default subscriptions one connection may hold.
pub const SUBSCRIPTIONS_PER_CONNECTION_MAX_DEFAULT: usize = 65_536;
/// Default subscription bytes one connection may hold (see
/// [`crate::subscriptions::subscription_bytes`]): 65,536 subscriptions of
/// 64-byte patterns.
pub const SUBSCRIPTION_BYTES_MAX_DEFAULT: usize = 8 * 1024 * 1024;
/// Default subscription bytes one identity may hold over all its connections.
pub const IDENTITY_SUBSCRIPTION_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;
/// Default connections one shard may hold.
pub const CONNECTIONS_PER_SHARD_MAX_DEFAULT: usize = 65_536;
/// Default depth of each cross-shard queue, in messages.
pub const MESH_CHANNEL_DEPTH_DEFAULT: usize = 8_192;
/// Default time a shutdown waits for queued deliveries to be written.
pub const SHUTDOWN_FLUSH_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Default connections the whole server may hold (all shards together).
pub const CONNECTIONS_MAX_DEFAULT: usize = 262_144;
/// Default time from connect to Hello.
pub const HANDSHAKE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Default time a started frame may take to arrive whole.
pub const FRAME_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Default time without any byte from a client before it is closed; the
/// server Pings it halfway. Zero turns the check off.
pub const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

// A connection must be able to queue at least one largest frame.
const _: () = assert!(PENDING_BYTES_MAX_DEFAULT > PAYLOAD_BYTES_MAX_DEFAULT + META_BYTES_MAX + 16);

/// How a shard waits when it has nothing to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleStrategy {
    /// Spin briefly, then block in the ring until something happens. Costs a
    /// wake-up (tens of microseconds here) on the first message after a pause.
    Park,
    /// Never block: poll the ring and the mesh in a loop. Lowest latency;
    /// burns its core at 100% even when idle.
    Spin,
}

/// How plain connections receive bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiveMode {
    /// Multishot receives into the shard's provided buffers: no system call
    /// per socket per read. Falls back to `Readiness` where the kernel has no
    /// buffer rings (reported in the ready line and `flit_shard_receive_on_ring`).
    Ring,
    /// Readiness through the ring (multishot poll), then `recv` per socket.
    /// (`Ring`, the default, measured a third fewer system calls per request
    /// and reply and 1.15x the closed-loop pub/sub throughput on a quiet
    /// machine: bench-results/2026-11-30-receive-path.)
    Readiness,
}

/// Everything a router process needs to start.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The NATS-protocol listener (`[nats] listen`, `--nats-listen`): NATS
    /// clients reach the same shards there. None: no NATS listener.
    pub nats_listen: Option<SocketAddr>,
    /// Number of shards; each gets a thread pinned to one core.
    pub shards: usize,
    pub idle: IdleStrategy,
    pub receive: ReceiveMode,
    /// Pin shard threads to cores (off only for tests on crowded machines).
    pub pin_cores: bool,
    pub payload_bytes_max: usize,
    pub pending_bytes_max: usize,
    pub subscriptions_per_connection_max: usize,
    /// Subscription bytes one connection may hold.
    pub subscription_bytes_max: usize,
    /// Subscription bytes one identity may hold, all its connections on all
    /// shards together (counted in `Identity::subscription_bytes`).
    pub identity_subscription_bytes_max: usize,
    pub connections_per_shard_max: usize,
    /// All shards together; enforced with one shared counter at accept.
    pub connections_max: usize,
    pub mesh_channel_depth: usize,
    pub handshake_timeout: Duration,
    pub frame_timeout: Duration,
    /// Zero: never close a connection for silence.
    pub idle_timeout: Duration,
    pub shutdown_flush_timeout: Duration,
    /// Sent to clients in Welcome.
    pub server_name: String,
    /// TLS on the listener (every connection), or plain TCP.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Every connection's own publish rate limit (identities add theirs).
    pub connection_rate_limits: crate::rate_limit::RateLimits,
    /// Who may connect, and what they may do, at startup (`Server::set_identities` replaces it).
    pub identities: std::sync::Arc<crate::auth::Identities>,
    /// Park mode: how long an idle shard spins before it parks. A message
    /// arriving within it costs no wake-up but each hop costs a second
    /// system call; zero parks at once, in the same `io_uring_enter` that
    /// submits the pass's sends.
    pub spin_before_park: Duration,
    /// A delivered payload at least this long is sent by reference (one
    /// vectored send with the frames around it) rather than copied into the
    /// subscriber's write buffer; `usize::MAX` copies all. Connections that
    /// send through the ring only (not TLS, not readiness).
    pub splice_payload_bytes_min: usize,
    /// Where streams keep their logs (`<data_directory>/streams/<name>/`).
    pub data_directory: std::path::PathBuf,
    /// Streams the configuration file defines (created or updated at start).
    pub streams: Vec<crate::streams::definition::StreamDefinition>,
    /// This node's place in a cluster (`[cluster]`); None: a single host.
    pub cluster: Option<ClusterConfig>,
}

/// Shortest cluster secret accepted, in bytes (it keys HMAC-SHA256).
pub const CLUSTER_SECRET_BYTES_MIN: usize = 32;

/// `[cluster]`: who this node is and whom it meshes with (cluster/ module).
#[derive(Clone)]
pub struct ClusterConfig {
    /// Every node of one cluster has the same name; a route from another
    /// cluster is refused at its handshake.
    pub name: String,
    /// Where this node accepts routes (one SO_REUSEPORT socket per shard).
    pub listen: SocketAddr,
    /// The route address other nodes are told to dial (in each Hello): the
    /// pod IP behind a wildcard `listen`, or a proxy in front of this node.
    /// None: the address `listen` bound.
    pub advertise: Option<SocketAddr>,
    /// Route addresses of the other nodes (this node's own may be listed:
    /// it is recognised at the handshake and skipped).
    pub seeds: Vec<SocketAddr>,
    /// Stable across restarts (a later per-stream Raft group keys on it).
    pub node_id: u32,
    /// The shared secret both ends of a route prove they hold (HMAC-SHA256
    /// over both handshakes); at least `CLUSTER_SECRET_BYTES_MIN` bytes.
    pub secret: std::sync::Arc<[u8]>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ClusterConfig")
            .field("name", &self.name)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("seeds", &self.seeds)
            .field("node_id", &self.node_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl ServerConfig {
    /// A configuration with every default and the given address and shard count.
    pub fn new(listen: SocketAddr, shards: usize) -> ServerConfig {
        ServerConfig {
            listen,
            nats_listen: None,
            shards,
            idle: IdleStrategy::Park,
            receive: ReceiveMode::Ring,
            pin_cores: true,
            payload_bytes_max: PAYLOAD_BYTES_MAX_DEFAULT,
            pending_bytes_max: PENDING_BYTES_MAX_DEFAULT,
            subscriptions_per_connection_max: SUBSCRIPTIONS_PER_CONNECTION_MAX_DEFAULT,
            subscription_bytes_max: SUBSCRIPTION_BYTES_MAX_DEFAULT,
            identity_subscription_bytes_max: IDENTITY_SUBSCRIPTION_BYTES_MAX_DEFAULT,
            connections_per_shard_max: CONNECTIONS_PER_SHARD_MAX_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            mesh_channel_depth: MESH_CHANNEL_DEPTH_DEFAULT,
            handshake_timeout: HANDSHAKE_TIMEOUT_DEFAULT,
            frame_timeout: FRAME_TIMEOUT_DEFAULT,
            idle_timeout: IDLE_TIMEOUT_DEFAULT,
            shutdown_flush_timeout: SHUTDOWN_FLUSH_TIMEOUT_DEFAULT,
            server_name: "flit".to_string(),
            tls: None,
            connection_rate_limits: crate::rate_limit::RateLimits::unlimited(),
            identities: std::sync::Arc::new(crate::auth::Identities::open()),
            spin_before_park: SPIN_BEFORE_PARK_DEFAULT,
            splice_payload_bytes_min: SPLICE_PAYLOAD_BYTES_MIN_DEFAULT,
            data_directory: std::path::PathBuf::from(DATA_DIRECTORY_DEFAULT),
            streams: Vec::new(),
            cluster: None,
        }
    }

    /// Checks the relations between limits.
    pub fn validate(&self) -> Result<(), StartError> {
        let fail = |reason: String| Err(StartError::InvalidConfig(reason));
        if self.shards == 0 || self.shards > SHARDS_MAX {
            return fail(format!("server.shards (--shards) must be between 1 and {SHARDS_MAX}, got {}", self.shards));
        }
        // A whole frame must fit a u32: routed messages keep u32 offsets into it.
        let payload_bytes_limit = u32::MAX as usize - META_BYTES_MAX - FRAME_HEADER_BYTES;
        if self.payload_bytes_max == 0 || self.payload_bytes_max > payload_bytes_limit {
            return fail(format!(
                "limits.payload_bytes_max (--max-payload) must be between 1 and {payload_bytes_limit} bytes"
            ));
        }
        let frame_bytes_max = 16 + META_BYTES_MAX + self.payload_bytes_max;
        if self.pending_bytes_max < frame_bytes_max {
            return fail(format!(
                "limits.pending_bytes_max (--pending-bytes-max) is {} but must hold at least one largest frame \
                 ({frame_bytes_max} bytes)",
                self.pending_bytes_max
            ));
        }
        if self.mesh_channel_depth < 2 {
            return fail("limits.mesh_channel_depth (--mesh-depth) must be at least 2".to_string());
        }
        if self.handshake_timeout.is_zero() || self.frame_timeout.is_zero() {
            return fail("limits.handshake_timeout_ms and limits.frame_timeout_ms must be above 0".to_string());
        }
        if self.subscriptions_per_connection_max == 0
            || self.connections_per_shard_max == 0
            || self.connections_max == 0
        {
            return fail(
                "limits.subscriptions_per_connection_max, connections_per_shard_max and connections_max must be at least 1"
                    .to_string(),
            );
        }
        let largest = crate::subscriptions::SUBSCRIPTION_BYTES_LARGEST;
        if self.subscription_bytes_max < largest || self.identity_subscription_bytes_max < largest {
            return fail(format!(
                "limits.subscription_bytes_max and limits.identity_subscription_bytes_max must hold at least one \
                 largest subscription ({largest} bytes)"
            ));
        }
        Ok(())
    }
}
