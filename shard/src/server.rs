//! Starting and stopping a router: bind one SO_REUSEPORT listener per shard,
//! build the mesh, start one pinned thread per shard, wait until every shard
//! has its ring, then report the bound address.
//!
//! Why SO_REUSEPORT and not accept-and-hand-off: the kernel spreads new
//! connections over the shards' listeners by a hash of the 4-tuple, so no
//! shard has to accept for the others and no connection ever moves between
//! threads. The cost: placement is by hash, not by load, so a few long-lived
//! connections can land unevenly; and a client cannot choose its shard.
//!
//! Every failure before the shards run is a [`StartError`] with one line
//! naming cause and fix. After start, [`Server::stop`] sets the shared stop
//! flag and wakes every shard; [`Server::join`] waits for them to drain.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::ReceiveMode;
use crate::config::ServerConfig;
use crate::error::{ShardError, StartError};
use crate::mesh::{build_mesh, SharedState, Waker};
use crate::ring::Ring;
use crate::shard::{Shard, ShardParts};
use crate::shard::{RECEIVE_BUFFERS_COUNT, RECEIVE_BUFFER_BYTES};
use crate::stats::ShardStats;

/// Backlog of each shard's listener.
pub const LISTEN_BACKLOG: i32 = 4096;

/// The cores this process may run on, in order.
pub fn available_cores() -> Vec<core_affinity::CoreId> {
    core_affinity::get_core_ids().unwrap_or_default()
}

fn bind_listener(address: SocketAddr, flag: &'static str) -> Result<TcpListener, StartError> {
    let map_error = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            StartError::AddressInUse { address, flag }
        } else {
            StartError::Bind { address, source }
        }
    };
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP)).map_err(map_error)?;
    socket.set_reuse_address(true).map_err(map_error)?;
    socket.set_reuse_port(true).map_err(map_error)?;
    socket.set_nonblocking(true).map_err(map_error)?;
    socket.bind(&address.into()).map_err(map_error)?;
    socket.listen(LISTEN_BACKLOG).map_err(map_error)?;
    Ok(socket.into())
}

/// One SO_REUSEPORT listener per shard on `address`; returns them and the
/// address they took (the real port when 0 was asked for).
fn bind_shard_listeners(
    address: SocketAddr,
    shards: usize,
    flag: &'static str,
) -> Result<(Vec<TcpListener>, SocketAddr), StartError> {
    // Another process listening with SO_REUSEPORT on the same port would
    // silently share our connections; a probe without it finds that out.
    if address.port() != 0 {
        drop(std::net::TcpListener::bind(address).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                StartError::AddressInUse { address, flag }
            } else {
                StartError::Bind { address, source }
            }
        })?);
    }
    let first = bind_listener(address, flag)?;
    let local_address = first.local_addr().map_err(|source| StartError::Bind { address, source })?;
    let mut listeners = vec![first];
    for _ in 1..shards {
        listeners.push(bind_listener(local_address, flag)?);
    }
    Ok((listeners, local_address))
}

/// A running router.
pub struct Server {
    local_address: SocketAddr,
    nats_address: Option<SocketAddr>,
    shared: Arc<SharedState>,
    threads: Vec<JoinHandle<Result<ShardStats, ShardError>>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Server").field("local_address", &self.local_address).finish()
    }
}

impl Server {
    /// Binds, starts every shard, and returns once all are running.
    pub fn start(config: ServerConfig) -> Result<Server, StartError> {
        config.validate()?;
        let (listeners, local_address) = bind_shard_listeners(config.listen, config.shards, "--listen")?;
        let (mut nats_listeners, nats_address) = match config.nats_listen {
            None => (Vec::new(), None),
            Some(address) => {
                let (listeners, local) = bind_shard_listeners(address, config.shards, "--nats-listen")?;
                (listeners.into_iter().map(Some).collect(), Some(local))
            }
        };
        nats_listeners.resize_with(config.shards, || None);
        let (mut route_listeners, route_address) = match &config.cluster {
            None => (Vec::new(), None),
            Some(cluster) => {
                let (listeners, local) = bind_shard_listeners(cluster.listen, config.shards, "--cluster-listen")?;
                (listeners.into_iter().map(Some).collect(), Some(local))
            }
        };
        route_listeners.resize_with(config.shards, || None);
        let mut pipe_read_ends = Vec::new();
        let mut wakers = Vec::new();
        for _ in 0..config.shards {
            let (write_end, read_end) = UnixStream::pair().map_err(StartError::Thread)?;
            write_end.set_nonblocking(true).map_err(StartError::Thread)?;
            read_end.set_nonblocking(true).map_err(StartError::Thread)?;
            wakers.push(Waker::new(write_end));
            pipe_read_ends.push(read_end);
        }
        let mut shared_state = SharedState::new(wakers, config.identities.clone());
        shared_state.route_address = route_address;
        shared_state.route_advertised_address =
            config.cluster.as_ref().and_then(|cluster| cluster.advertise).or(route_address);
        shared_state.client_address = Some(local_address);
        shared_state.nats_address = nats_address;
        let shared = Arc::new(shared_state);
        crate::streams::startup::load_streams(&config.data_directory, &config.streams, config.shards, &shared.streams)?;
        let cores = available_cores();
        let (ready_sender, ready_receiver) = mpsc::channel::<Result<(), StartError>>();
        let mut threads = Vec::new();
        let parts = listeners
            .into_iter()
            .zip(nats_listeners)
            .zip(route_listeners)
            .zip(pipe_read_ends)
            .zip(build_mesh(config.shards, config.mesh_channel_depth));
        for (id, ((((listener, nats_listener), route_listener), wake_pipe), mesh)) in parts.enumerate() {
            let (shard_config, shared) = (config.clone(), shared.clone());
            let parts = ShardParts {
                id,
                config: shard_config,
                listener,
                nats_listener,
                route_listener,
                wake_pipe,
                shared,
                mesh,
            };
            let core = if config.pin_cores && !cores.is_empty() { Some(cores[id % cores.len()]) } else { None };
            let ready_sender = ready_sender.clone();
            let thread = std::thread::Builder::new()
                .name(format!("flit-shard-{id}"))
                .spawn(move || run_shard(parts, core, ready_sender))
                .map_err(StartError::Thread)?;
            threads.push(thread);
        }
        drop(ready_sender);
        let server = Server { local_address, nats_address, shared, threads };
        for _ in 0..config.shards {
            match ready_receiver.recv() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    server.stop();
                    let _ = server.join();
                    return Err(error);
                }
                Err(_) => {
                    server.stop();
                    let _ = server.join();
                    return Err(StartError::Thread(std::io::Error::other("a shard thread exited during startup")));
                }
            }
        }
        Ok(server)
    }

    /// The address the shards listen on (the real port when 0 was asked for).
    pub fn local_address(&self) -> SocketAddr {
        self.local_address
    }

    /// This process's id (NATS INFO `server_id`, `/varz`).
    pub fn server_id(&self) -> String {
        self.shared.server_id.clone()
    }

    /// The address the route listener took, if this node is in a cluster.
    pub fn route_address(&self) -> Option<SocketAddr> {
        self.shared.route_address
    }

    /// The address the NATS listener took, if there is one.
    pub fn nats_address(&self) -> Option<SocketAddr> {
        self.nats_address
    }

    /// How connections receive bytes, as the shards found at startup: "ring"
    /// (multishot receives into provided buffers) or "readiness".
    pub fn receive_path(&self) -> &'static str {
        if self.shared.metrics.iter().all(|metrics| metrics.receive_on_ring.get() == 1) {
            "ring"
        } else {
            "readiness"
        }
    }

    /// Every shard's live counters, indexed by shard (for the metrics endpoint).
    /// Every stream and its live numbers (the directory as of now).
    pub fn streams(&self) -> Arc<crate::streams::directory::StreamDirectory> {
        self.shared.streams.snapshot()
    }

    /// A handle the metrics endpoint keeps, to read the stream directory.
    pub fn shared_state(&self) -> Arc<SharedState> {
        self.shared.clone()
    }

    pub fn metrics(&self) -> Vec<Arc<crate::metrics::ShardMetrics>> {
        self.shared.metrics.clone()
    }

    /// The zero of the shards' timestamps (see `ShardMetrics::stretch_started_nanos`).
    pub fn epoch(&self) -> std::time::Instant {
        self.shared.epoch
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.shared.metrics.len()
    }

    /// Whether a stop was asked for (the server is draining or stopped).
    pub fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    /// Replaces the identities (a SIGHUP reload). Every shard applies them
    /// within one pass: connections whose identity is gone or whose token
    /// changed, or whose subscriptions the new permissions refuse, are closed
    /// with `authentication_failed`; the others stay, under the new rules.
    pub fn set_identities(&self, identities: crate::auth::Identities) {
        let mut current = self.shared.identities.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut identities = identities;
        identities.keep_shared_state_from(&current);
        *current = Arc::new(identities);
        drop(current);
        self.shared.identities_generation.fetch_add(1, Ordering::SeqCst);
        for waker in &self.shared.wakers {
            waker.wake();
        }
    }

    /// Asks every shard to drain and stop. Returns at once.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for waker in &self.shared.wakers {
            waker.wake();
        }
    }

    /// A handle that can stop the server from another thread (a signal handler thread).
    pub fn stopper(&self) -> impl Fn() + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || {
            shared.stop.store(true, Ordering::SeqCst);
            for waker in &shared.wakers {
                waker.wake();
            }
        }
    }

    /// Waits for every shard; returns each one's counters or error.
    pub fn join(self) -> Vec<Result<ShardStats, ShardError>> {
        self.threads
            .into_iter()
            .enumerate()
            .map(|(shard, thread)| thread.join().unwrap_or(Err(ShardError::Panicked { shard })))
            .collect()
    }
}

fn run_shard(
    parts: ShardParts,
    core: Option<core_affinity::CoreId>,
    ready: mpsc::Sender<Result<(), StartError>>,
) -> Result<ShardStats, ShardError> {
    let id = parts.id;
    let parts_shared = parts.shared.clone();
    if let Some(core) = core {
        // Pinning is best effort: a container may forbid it. The shard still
        // runs, only without the cache and scheduling benefits.
        if !core_affinity::set_for_current(core) {
            tracing::warn!(shard = id, core = core.id, "could not pin the shard to its core; running unpinned");
        }
    }
    let receive = parts.config.receive;
    let ring = Ring::new().map(|mut ring| {
        if receive == ReceiveMode::Ring {
            let buffers = ring.provide_receive_buffers(RECEIVE_BUFFERS_COUNT, RECEIVE_BUFFER_BYTES);
            if let Err(error) = buffers {
                // Still a working router: receives go through readiness.
                tracing::warn!(shard = id, %error, "no provided-buffer ring (kernel 5.19+ needed); receiving with readiness and recv");
            }
        }
        ring
    });
    let shard = match ring.and_then(|ring| Shard::new(parts, ring)) {
        Ok(shard) => shard,
        Err(source) => {
            let _ = ready.send(Err(StartError::from_ring_error(source)));
            return Ok(ShardStats::default());
        }
    };
    let _ = ready.send(Ok(()));
    drop(ready);
    let shared = parts_shared;
    // A failed or panicking shard is marked dead, so the others stop sending
    // to it and stop waiting for it (see SharedState::dead_shards).
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shard.run()))
        .unwrap_or(Err(ShardError::Panicked { shard: id }));
    if let Err(error) = &result {
        tracing::error!(shard = id, %error, "shard stopped by a failure; the others go on without it");
        shared.mark_dead(id);
    }
    shared.metrics[id].up.set(0);
    result
}
