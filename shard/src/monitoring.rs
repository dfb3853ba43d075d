//! Per-connection numbers for the NATS-style `/connz` endpoint (router
//! `nats_monitoring`), taken off the message path.
//!
//! Connections live inside their shard's thread, so another thread cannot
//! read them. Instead each shard keeps, in its [`crate::ShardMetrics`], a
//! [`ConnectionMonitor`]: the HTTP side asks for a snapshot (bumps a request
//! generation), and the shard answers at its next timeout sweep
//! (`shard::timeouts`, every `TIMEOUT_SWEEP_INTERVAL`, 250 ms) by building a
//! [`ConnectionSnapshot`] of every connection and swapping it into a mutex
//! the HTTP side reads. So:
//! - a router nobody watches pays one relaxed load per sweep and nothing else;
//! - a watched one pays O(connections) per sweep that follows a request (at
//!   most one per sweep, however many requests came), never per message;
//! - the message path adds to [`ConnectionActivity`]: plain fields of the
//!   connection it already holds, no atomics, no lock.
//!
//! Invariants: only the shard's thread writes `served`, the connection
//! counters and the snapshot; only the HTTP side bumps the request
//! generations. The snapshot lock is taken once per snapshot by the shard
//! (to swap an `Arc`) and briefly by readers (to clone it), never on the
//! message path. A snapshot lists at most `SUBJECTS_LISTED_PER_CONNECTION_MAX`
//! subjects per connection.
//!
//! Shutdown: no sweep runs while a shard drains, so the last snapshot stays
//! (a reader that waits for a newer one gives up at its own deadline); a
//! stopped shard's snapshot stays readable like the rest of its metrics.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::connection::{Connection, Connections};
use crate::subscriptions::Subscriptions;

/// Most subscription subjects a snapshot lists for one connection (`/connz?subs=1`);
/// the count (`subscriptions`) is always exact.
pub const SUBJECTS_LISTED_PER_CONNECTION_MAX: usize = 1024;

/// What one connection did, counted by its shard as it happens. Bytes are
/// message bytes (payload and headers), as NATS counts `in_bytes`/`out_bytes`
/// per connection; the shard's socket byte counters include framing.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConnectionActivity {
    pub messages_received: u64,
    pub bytes_received: u64,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    /// When a message last went in or out (nanoseconds since the shards'
    /// epoch); 0: none yet (then the connection's open time stands in).
    pub last_activity_nanos: u64,
}

impl ConnectionActivity {
    /// A message of `bytes` published by this connection, read at `at_nanos`.
    #[inline]
    pub fn count_received(&mut self, bytes: usize, at_nanos: u64) {
        self.messages_received += 1;
        self.bytes_received += bytes as u64;
        self.last_activity_nanos = self.last_activity_nanos.max(at_nanos);
    }

    /// A message of `bytes` queued for this connection; `received_at_nanos`
    /// is when the router read it (a few microseconds before now).
    #[inline]
    pub fn count_sent(&mut self, bytes: usize, received_at_nanos: u64) {
        self.messages_sent += 1;
        self.bytes_sent += bytes as u64;
        self.last_activity_nanos = self.last_activity_nanos.max(received_at_nanos);
    }
}

/// A server-wide unique connection id (NATS's `cid`) from the shard's own
/// accept count: ids of shard `shard` are `shard + 1`, `shard + 1 +
/// shard_count`, ..., so no two shards hand out the same one and no shared
/// counter is needed. With one shard they are 1, 2, 3, ... as in NATS.
pub fn connection_id(accepted_before: u64, shard: usize, shard_count: usize) -> u64 {
    debug_assert!(shard < shard_count.max(1));
    accepted_before.saturating_mul(shard_count.max(1) as u64).saturating_add(shard as u64 + 1)
}

/// TLS as negotiated, in NATS's spelling where one exists.
#[derive(Debug, Clone)]
pub struct TlsSummary {
    /// "1.2" or "1.3".
    pub version: &'static str,
    /// The IANA-style name rustls gives the suite (e.g. `TLS13_AES_128_GCM_SHA256`).
    pub cipher_suite: &'static str,
}

/// One connection as of a snapshot.
#[derive(Debug, Clone)]
pub struct ConnectionSummary {
    pub connection_id: u64,
    pub shard: usize,
    /// None when the socket no longer has a peer (it is closing).
    pub peer: Option<SocketAddr>,
    pub opened_at_nanos: u64,
    pub last_activity_nanos: u64,
    /// Bytes queued for the client and not yet handed to the kernel.
    pub pending_bytes: u64,
    pub activity: ConnectionActivity,
    pub subscriptions: u32,
    pub client_name: Option<Box<str>>,
    pub client_lang: Option<Box<str>>,
    pub client_version: Option<Box<str>>,
    /// The connection speaks NATS (false: flit's own protocol).
    pub nats: bool,
    pub tls: Option<TlsSummary>,
    /// The identity the client proved (authentication on).
    pub identity: Option<Box<str>>,
    /// Subscription subjects, when the snapshot was asked for them.
    pub subjects: Vec<Box<str>>,
}

/// Every connection of one shard at one moment.
#[derive(Debug, Default)]
pub struct ConnectionSnapshot {
    /// The plain request generation this snapshot answers.
    pub generation: u64,
    /// The subject-list request generation it answers; 0 when it lists no subjects.
    pub subjects_generation: u64,
    pub taken_at_nanos: u64,
    pub connections: Vec<ConnectionSummary>,
}

/// A shard's mailbox for `/connz`. Aligned apart from the shard's hot
/// counters: the HTTP side writes `requested`, and that must not bounce a
/// cache line the message path writes.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ConnectionMonitor {
    requested: AtomicU64,
    subjects_requested: AtomicU64,
    /// Last generations served (shard only).
    served: AtomicU64,
    subjects_served: AtomicU64,
    snapshot: Mutex<Arc<ConnectionSnapshot>>,
}

/// What a reader waits for: a snapshot at least this new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotTicket {
    generation: u64,
    with_subjects: bool,
}

impl ConnectionMonitor {
    /// Asks the shard for a snapshot taken after now; the ticket says which.
    pub fn request(&self, with_subjects: bool) -> SnapshotTicket {
        let counter = if with_subjects { &self.subjects_requested } else { &self.requested };
        let generation = counter.fetch_add(1, Ordering::AcqRel) + 1;
        SnapshotTicket { generation, with_subjects }
    }

    /// The latest snapshot, new enough for `ticket` or not.
    pub fn latest(&self) -> Arc<ConnectionSnapshot> {
        self.snapshot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Whether `snapshot` answers `ticket` (was taken after it was asked for).
    pub fn answers(snapshot: &ConnectionSnapshot, ticket: SnapshotTicket) -> bool {
        if ticket.with_subjects {
            snapshot.subjects_generation >= ticket.generation
        } else {
            snapshot.generation >= ticket.generation
        }
    }

    /// Shard side, at each sweep: builds and publishes a snapshot if one was
    /// asked for since the last. One or two relaxed loads when none was.
    pub(crate) fn refresh_if_requested(
        &self,
        shard: usize,
        connections: &Connections,
        subscriptions: &Subscriptions,
        now_nanos: u64,
    ) {
        let plain = self.requested.load(Ordering::Acquire);
        let subjects = self.subjects_requested.load(Ordering::Acquire);
        let with_subjects = subjects != self.subjects_served.load(Ordering::Relaxed);
        if plain == self.served.load(Ordering::Relaxed) && !with_subjects {
            return;
        }
        // Routes to other nodes are not clients: not in /connz.
        let summaries = connections
            .iter()
            .filter(|connection| connection.route.is_none())
            .map(|connection| summarize(shard, connection, with_subjects.then_some(subscriptions)))
            .collect();
        let snapshot = ConnectionSnapshot {
            // A snapshot with subjects answers plain requests as well.
            generation: plain,
            subjects_generation: if with_subjects { subjects } else { 0 },
            taken_at_nanos: now_nanos,
            connections: summaries,
        };
        let previous = std::mem::replace(
            &mut *self.snapshot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
            Arc::new(snapshot),
        );
        // The old one is freed here, outside the lock (or by its last reader).
        drop(previous);
        self.served.store(plain, Ordering::Relaxed);
        self.subjects_served.store(subjects, Ordering::Relaxed);
    }
}

fn summarize(shard: usize, connection: &Connection, subscriptions: Option<&Subscriptions>) -> ConnectionSummary {
    let subjects = subscriptions.map_or_else(Vec::new, |subscriptions| {
        connection
            .subscriptions
            .values()
            .filter_map(|slot| subscriptions.get(*slot))
            .take(SUBJECTS_LISTED_PER_CONNECTION_MAX)
            .map(|subscription| String::from_utf8_lossy(&subscription.pattern).into())
            .collect()
    });
    let tls = connection.tls.as_deref().and_then(|session| {
        let version = match session.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_2 => "1.2",
            rustls::ProtocolVersion::TLSv1_3 => "1.3",
            _ => "unknown",
        };
        let cipher_suite = session.negotiated_cipher_suite()?.suite().as_str().unwrap_or("unknown");
        Some(TlsSummary { version, cipher_suite })
    });
    let activity = connection.activity;
    ConnectionSummary {
        connection_id: connection.connection_id,
        shard,
        // Read at accept: a `getpeername` here would be most of a snapshot's cost.
        peer: connection.peer_address.or_else(|| connection.stream.peer_addr().ok()),
        opened_at_nanos: connection.opened_at_nanos,
        last_activity_nanos: activity.last_activity_nanos.max(connection.opened_at_nanos),
        pending_bytes: connection.queued_output_bytes() as u64,
        activity,
        subscriptions: u32::try_from(connection.subscriptions.len()).unwrap_or(u32::MAX),
        client_name: connection.client_name.clone(),
        client_lang: connection.client_lang.clone(),
        client_version: connection.client_version.clone(),
        nats: connection.nats.is_some(),
        tls,
        identity: connection.identity.as_ref().map(|identity| identity.name.as_str().into()),
        subjects,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// A connected socket, and its listener (kept, or the peer goes away).
    fn socket() -> (TcpListener, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let stream = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        (listener, stream)
    }

    #[test]
    fn connection_ids_never_collide_across_shards() {
        let mut seen = std::collections::HashSet::new();
        for shard in 0..4 {
            for accepted in 0..100 {
                assert!(seen.insert(connection_id(accepted, shard, 4)));
            }
        }
        assert_eq!((0..3).map(|accepted| connection_id(accepted, 0, 1)).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn a_snapshot_is_built_only_when_asked_for() {
        let monitor = ConnectionMonitor::default();
        let mut connections = Connections::default();
        let (_listener, stream) = socket();
        let key = connections.insert(|key| Connection::new(key, stream, 5));
        connections.get_mut(key).expect("inserted").activity.count_received(10, 7);
        let subscriptions = Subscriptions::default();
        monitor.refresh_if_requested(0, &connections, &subscriptions, 100);
        assert!(monitor.latest().connections.is_empty(), "nobody asked");
        let ticket = monitor.request(false);
        assert!(!ConnectionMonitor::answers(&monitor.latest(), ticket));
        monitor.refresh_if_requested(0, &connections, &subscriptions, 200);
        let snapshot = monitor.latest();
        assert!(ConnectionMonitor::answers(&snapshot, ticket));
        assert_eq!(snapshot.taken_at_nanos, 200);
        let row = &snapshot.connections[0];
        assert_eq!((row.activity.messages_received, row.activity.bytes_received, row.last_activity_nanos), (1, 10, 7));
        assert!(row.peer.is_some());
        // Served: the next sweep leaves it alone.
        monitor.refresh_if_requested(0, &connections, &subscriptions, 300);
        assert_eq!(monitor.latest().taken_at_nanos, 200);
        let with_subjects = monitor.request(true);
        assert!(!ConnectionMonitor::answers(&monitor.latest(), with_subjects));
        monitor.refresh_if_requested(0, &connections, &subscriptions, 400);
        assert!(ConnectionMonitor::answers(&monitor.latest(), with_subjects));
        assert!(ConnectionMonitor::answers(&monitor.latest(), ticket), "it answers plain requests too");
    }

    /// What one snapshot costs a shard, per connection. Run by hand, in release:
    /// `cargo test -p flit-shard --release --lib snapshot_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn snapshot_cost() {
        const CONNECTIONS: usize = 2_000;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("addr");
        let mut connections = Connections::default();
        // The accepted ends are kept: the backlog is short, and the peers must stay.
        let mut accepted = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let stream = TcpStream::connect(address).expect("connect");
            accepted.push(listener.accept().expect("accept"));
            let peer = stream.peer_addr().ok();
            let key = connections.insert(|key| Connection::new(key, stream, 1));
            connections.get_mut(key).expect("inserted").peer_address = peer;
        }
        let (monitor, subscriptions) = (ConnectionMonitor::default(), Subscriptions::default());
        let rounds = 20;
        let started = std::time::Instant::now();
        for round in 0..rounds {
            monitor.request(false);
            monitor.refresh_if_requested(0, &connections, &subscriptions, round);
        }
        let per_connection = started.elapsed() / (rounds as u32 * CONNECTIONS as u32);
        assert_eq!(monitor.latest().connections.len(), CONNECTIONS);
        let idle = std::time::Instant::now();
        for round in 0..1_000_000 {
            monitor.refresh_if_requested(0, &connections, &subscriptions, round);
        }
        let unwatched = idle.elapsed() / 1_000_000;
        println!("snapshot: {per_connection:?} per connection; an unrequested sweep: {unwatched:?}");
    }
}
