//! # flit-shard: one core's world
//!
//! flit runs one shard per core. A shard is a thread pinned to its core that
//! owns everything it touches: a listener (SO_REUSEPORT, so the kernel spreads
//! connections), its connections, their subscriptions, a replicated table of
//! every shard's interest, and an io_uring ring. Plain connections receive
//! through the ring: one multishot `RECV` per connection fills the shard's
//! provided buffers, and the bytes are copied once into the connection's
//! read buffer (`shard::receive`); TLS connections, kernels without buffer
//! rings and `ReceiveMode::Readiness` use readiness through the ring and
//! `recv`. Plain connections also send through the ring: at the end of a
//! pass each dirty connection's queued frames go out as one `SEND` the ring
//! owns until it completes (`shard::send`); payloads of 32 KiB and more are
//! not copied but queued by reference, and then the frames go out as one
//! vectored `SENDMSG` ([`outgoing`]); all of a pass's sends reach
//! the kernel in one `io_uring_enter` (in park mode, the one the shard parks
//! in); the others write with one `send` call per pass. Shards share no memory on
//! the message path; they talk over bounded single-producer single-consumer
//! queues, one per ordered pair.
//!
//! Why not glommio's executor and TCP streams: measured on this machine
//! (../shared/PLATFORM.md), glommio 0.9's rings carry no flags, so every
//! network completion interrupts the spinning core, and its TCP path costs
//! 2.6-5x the loopback floor; a ring of our own with SINGLE_ISSUER |
//! DEFER_TASKRUN reached 1.1x. A glommio task that blocks in such a ring would
//! starve glommio's own reactor (its channels and timers), so the shard owns
//! its loop outright, pinned with `core_affinity`, and nothing of glommio is
//! left to pay for. The durable log will use this same ring for disk IO.
//!
//! ## Layout
//! - [`server`]: startup (listeners, mesh, pinned threads), stop, join.
//! - `shard`: the event loop; `shard::io` (sockets), `shard::receive`
//!   (multishot receives into provided buffers), `shard::send` (sends
//!   through the ring), `shard::dispatch`
//!   (frames), `shard::routing` (publish, deliver, subscribe, mesh traffic).
//! - [`ring`]: the io_uring wrapper and its provided-buffer ring; the only
//!   `unsafe` in flit.
//! - [`mesh`]: cross-shard queues, the routed message type, wakers.
//! - [`interest`]: which shards want which subjects; queue-group picks.
//! - [`auth`]: identities and permissions; [`delivery_filter`]: what a
//!   permitted subscription must still not receive (checked by the
//!   publishing shard's interest table and again at delivery).
//! - [`trie`]: the subject matcher; [`subscriptions`]: local subscriptions.
//! - [`connection`]: per-connection state; [`outgoing`]: a send's bytes in
//!   one piece or several; [`config`], [`error`].
//! - [`metrics`]: live per-shard counters (single-writer atomics) read by the
//!   metrics endpoint; [`stats`]: the same counters as plain numbers;
//!   [`monitoring`]: per-connection snapshots for `/connz`, taken on request.
//!
//! The routing core (`shard::routing`, `interest`, `subscriptions`) handles
//! [`mesh::RoutedMessage`], not wire frames, so another protocol front end can
//! feed it.
#![deny(unsafe_code)]

pub mod auth;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod delivery_filter;
pub mod error;
pub mod handshake;
pub mod interest;
pub mod log_limit;
pub mod mesh;
pub mod metrics;
pub mod monitoring;
pub mod nats_session;
pub mod outgoing;
pub mod rate_limit;
pub mod ring;
pub mod server;
mod shard;
pub mod stats;
pub mod streams;
pub mod subscriptions;
pub mod tls;
pub mod trie;

pub use config::{IdleStrategy, ReceiveMode, ServerConfig};
pub use error::{ShardError, StartError};
pub use metrics::ShardMetrics;
pub use server::{available_cores, Server};
pub use stats::ShardStats;
