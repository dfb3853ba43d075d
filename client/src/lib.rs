//! # flit-client: talking to a flit router from Rust
//!
//! Two clients over one core. [`Client`] is blocking, on `std::net`;
//! [`AsyncClient`] is the same on tokio. Neither uses io_uring or any other
//! runtime: a client is a small thing that must run anywhere.
//!
//! A call that waits for an answer (a request, a flush, anything in ack mode)
//! writes its frame and then reads the socket itself, on its own thread or
//! task, until its answer is there, dispatching whatever else it reads; so a
//! request costs no other thread's wake-up. A background thread (blocking)
//! or task (tokio) reads while no call waits (subscriptions' deliveries, the
//! server's Pings), and a flusher thread or writer task writes what plain
//! publishes buffered. See `blocking/shared.rs` and `asynchronous/link.rs`.
//!
//! Both speak the protocol of `flit-wire`: Hello, then Welcome (the server's
//! limits, which this crate enforces before sending); then publishes,
//! subscriptions, Ping/Pong. `flush()` is the barrier: it returns when the
//! server answered a Ping, which it does only after this connection's earlier
//! subscribes and unsubscribes are visible on every shard. Request/reply uses
//! one wildcard inbox subscription per client (see [`inbox`]).
//!
//! # Failing over between the nodes of a cluster
//! [`Client`] and [`AsyncClient`] talk to one server and end with its
//! connection. [`ClusterClient`] (`Client::connect_cluster(&[a, b, c],
//! options)`) is the blocking client for a cluster, [`AsyncClusterClient`]
//! (`AsyncClient::connect_cluster(&[a, b, c], options).await`) the tokio one,
//! with the same behaviour (the decisions are shared, in `failover.rs`): it
//! connects to the first server that answers and, when the connection is
//! lost (EOF, reset, an Error frame) or the server sends a Draining notice,
//! connects to the next one (round robin over the given servers, then the
//! other nodes the servers named in Welcome's `cluster_urls`, at most
//! [`KNOWN_SERVERS_MAX`] in all, unless [`Options::ignore_discovered_servers`];
//! backoff with full jitter between failed attempts, `reconnect_delay_min`
//! doubling to `reconnect_delay_max`), re-subscribes every open subscription
//! (same [`ClusterSubscription`], same id; a subscription gets nothing
//! between the loss and the re-subscribe), flushes, then sends the publishes
//! it buffered meanwhile, in order. While no server is connected, publishes
//! are buffered up to `Options::reconnect_buffer_bytes_max` (default 8 MiB)
//! and then refused with [`ClientError::ReconnectBufferFull`]; requests and
//! flushes wait for a connection within their own timeout, then fail with
//! [`ClientError::NotConnected`]. Still at most once: a request in flight
//! when the connection ends fails with that connection's error and is never
//! resent; publishes that had already returned `Ok` on the dead connection
//! may be lost; so are deliveries during the gap. Not yet: `unsubscribe_after`
//! on a cluster subscription, and learning nodes that join after the client
//! connected (a Welcome is sent once). See `blocking/cluster.rs` and
//! `asynchronous/cluster.rs`.
//!
//! # Layout
//! - `dispatch`: what whoever reads does with each decoded frame, the routing
//!   table and the waiter queues. No IO and no runtime; channel types are a
//!   parameter, so it is unit-tested without a socket.
//! - `connection`: the operations both clients share (validate, encode,
//!   register the waiter, under one lock order).
//! - `framing`: the encode buffer and `check`-then-`decode` on the read side.
//! - [`blocking`] and [`asynchronous`]: only the IO: sockets, threads or tasks,
//!   and the channel types.
//! - [`message`], [`options`], [`error`], [`stream`]: the public data types;
//!   `statistics` ([`Statistics`]) and `refusal`: the dispatcher's counters
//!   and held refusals.
//! - Durable streams (protocol version 2): `dispatch_streams.rs` (waiters
//!   matched by tag), `connection_streams.rs` (encode and register), and
//!   `streams.rs` in each client (the calls). See [`stream`].
//!
//! # Errors
//! Every call returns [`ClientError`]. Errors that end the connection (an
//! Error frame from the server, a broken socket, `close()`) are recorded; every
//! later call, waiting flush and request, and every subscription, ends with it.
//!
//! Two refusals keep the connection open: `permission_denied` (401) and
//! `rate_limited` (307). In ack mode the refused call returns it. Outside ack
//! mode a publish or subscribe returns before the server has seen it, and the
//! refusal does not say which frame it answers; it arrives before the Pong of
//! the next flush, so `flush()` then `check_refusals()` reports every refusal
//! of the frames sent before the flush ([`ClientError::Refused`]: how many, the
//! first one's code and message). A refused request fails at once with the
//! server's error in both modes, whether its publish or the inbox subscription
//! was refused: the Pings the client sends cut its frames into intervals, a
//! refusal answers a frame of the interval it arrives in, and such a frame
//! never shares its interval with another frame of unknown fate (see
//! `dispatch`; a run of requests needs no Ping at all).
//!
//! # Example
//! ```no_run
//! use std::time::Duration;
//! # fn main() -> Result<(), flit_client::ClientError> {
//! let client = flit_client::Client::connect("127.0.0.1:4224")?;
//! let subscription = client.subscribe("orders.>")?;
//! client.flush()?; // the subscription is now visible on every shard
//! client.check_refusals()?; // and the server did not refuse it (401)
//! client.publish("orders.eu.created", b"order 17")?;
//! if let Some(message) = subscription.next_timeout(Duration::from_secs(1))? {
//!     println!("{}: {} bytes", message.subject, message.payload.len());
//! }
//! let answer = client.request("time.now", b"", Duration::from_millis(500));
//! if let Err(flit_client::ClientError::NoResponders) = answer {
//!     println!("nobody serves time.now");
//! }
//! client.close()
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod asynchronous;
pub mod blocking;
mod connection;
mod connection_streams;
mod dispatch;
pub mod error;
mod failover;
mod framing;
pub mod inbox;
pub mod message;
pub mod options;
mod refusal;
mod statistics;
pub mod stream;
pub mod tls;

pub use asynchronous::{
    AsyncClient, AsyncClusterClient, AsyncClusterSubscription, AsyncDurablePublish, AsyncSubscription,
};
pub use blocking::{Client, ClusterClient, ClusterSubscription, DurablePublish, Messages, Subscription};
pub use dispatch::Statistics;
pub use error::ClientError;
pub use failover::KNOWN_SERVERS_MAX;
pub use flit_wire::Welcome;
pub use message::Message;
pub use options::Options;
pub use stream::{PublishAcked, StreamMessage};
pub use tls::TlsOptions;
