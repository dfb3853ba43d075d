//! A cluster of `flit` processes on loopback for the integration tests:
//! nodes meshed by routes, each started with the earlier ones as seeds (the
//! earlier ones learn the later ones from their handshakes). Killing a node
//! is dropping its [`FlitServer`] (SIGKILL). Used by `cluster.rs` and
//! `client_failover.rs`.
#![allow(dead_code)]

pub mod fault_proxy;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use flit_client::Client;

use crate::common::FlitServer;

pub const SECRET: &str = "8c0b1f5e2d4a6978c3e1b0f9a8d7c6b5e4f3a2b1c0d9e8f7";

pub struct Cluster {
    pub directory: PathBuf,
    /// `None` once killed (dropping a [`FlitServer`] kills it with SIGKILL).
    pub nodes: Vec<Option<FlitServer>>,
    /// Each node's route listener, by index.
    pub routes: Vec<String>,
}

pub fn secret_file(directory: &Path, secret: &str) -> PathBuf {
    let path = directory.join(format!("secret-{}", &secret[..8]));
    std::fs::write(&path, format!("{secret}\n")).expect("write secret");
    path
}

pub fn start_node(
    directory: &Path,
    node_id: u32,
    shards: usize,
    seeds: &[String],
    secret: &str,
    listen: &str,
) -> FlitServer {
    start_node_with(directory, node_id, shards, seeds, secret, listen, &[])
}

pub fn start_node_with(
    directory: &Path,
    node_id: u32,
    shards: usize,
    seeds: &[String],
    secret: &str,
    listen: &str,
    extra: &[&str],
) -> FlitServer {
    let secret = secret_file(directory, secret);
    let seeds = seeds.join(",");
    let node = node_id.to_string();
    let mut arguments = vec![
        "--cluster-name",
        "test",
        "--cluster-listen",
        listen,
        "--node-id",
        &node,
        "--cluster-secret-file",
        secret.to_str().expect("utf-8"),
        "--metrics",
        "127.0.0.1:0",
    ];
    if !seeds.is_empty() {
        arguments.extend(["--cluster-seeds", &seeds]);
    }
    arguments.extend_from_slice(extra);
    FlitServer::start(shards, &arguments)
}

impl Cluster {
    /// `count` nodes of `shards` shards each, node ids 1.., each seeded with
    /// the routes of the nodes started before it.
    pub fn start(count: usize, shards: usize) -> Cluster {
        Cluster::start_with(count, shards, &[])
    }

    /// [`Cluster::start`] with `extra` arguments for every node.
    pub fn start_with(count: usize, shards: usize, extra: &[&str]) -> Cluster {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let started = STARTED.fetch_add(1, Ordering::Relaxed);
        let directory = std::env::temp_dir().join(format!("flit-cluster-{}-{started}", std::process::id()));
        std::fs::create_dir_all(&directory).expect("temporary directory");
        let mut cluster = Cluster { directory, nodes: Vec::new(), routes: Vec::new() };
        for index in 0..count {
            let node_id = index as u32 + 1;
            let node =
                start_node_with(&cluster.directory, node_id, shards, &cluster.routes, SECRET, "127.0.0.1:0", extra);
            cluster.routes.push(node.cluster_address.expect("the ready line names the route listener").to_string());
            cluster.nodes.push(Some(node));
        }
        cluster
    }

    pub fn node(&self, index: usize) -> &FlitServer {
        self.nodes[index].as_ref().expect("running")
    }

    pub fn client(&self, index: usize) -> Client {
        self.node(index).ack_client()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear();
        std::fs::remove_dir_all(&self.directory).ok();
    }
}

/// A TCP forwarder to `target` that refuses connections (accepts and closes
/// them) until [`Gate::open`]: a server that is down, then comes back, at a
/// fixed address. Its listener thread lives as long as the test process.
pub struct Gate {
    pub address: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Gate {
    pub fn closed_to(target: std::net::SocketAddr) -> Gate {
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the gate");
        let address = listener.local_addr().expect("gate address");
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&open);
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { continue };
                if !flag.load(Ordering::Acquire) {
                    continue; // dropped: closed at once
                }
                let Ok(outbound) = TcpStream::connect(target) else { continue };
                let (Ok(inbound_copy), Ok(outbound_copy)) = (inbound.try_clone(), outbound.try_clone()) else {
                    continue;
                };
                pipe(inbound, outbound);
                pipe(outbound_copy, inbound_copy);
            }
        });
        Gate { address, open }
    }

    /// From now on, connections are forwarded to the target.
    pub fn open(&self) {
        self.open.store(true, Ordering::Release);
    }
}

fn pipe(mut from: std::net::TcpStream, mut to: std::net::TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

// Helpers for the failure tests (`cluster_*.rs`): nodes behind fault proxies,
// what a node's `/cluster` shows, and bounded waits on it.

/// A cluster whose every route listener is behind a
/// [`fault_proxy::FaultProxy`]: node `index` advertises `proxies[index]` and
/// seeds name proxies, so every lane into a node passes its proxy.
/// `cluster.routes` are the proxies' addresses (what `/cluster` lists).
pub struct ProxiedCluster {
    pub cluster: Cluster,
    pub proxies: Vec<fault_proxy::FaultProxy>,
    shards: usize,
    extra: Vec<String>,
}

impl ProxiedCluster {
    /// `count` nodes of `shards` shards, node ids 1.., each seeded with the
    /// proxies of the nodes started before it; `extra` for every node.
    pub fn start(count: usize, shards: usize, extra: &[&str]) -> ProxiedCluster {
        let mut proxied = ProxiedCluster {
            cluster: Cluster::start(0, shards),
            proxies: Vec::new(),
            shards,
            extra: extra.iter().map(|argument| argument.to_string()).collect(),
        };
        for index in 0..count {
            let proxy = fault_proxy::FaultProxy::for_routes();
            proxied.cluster.routes.push(proxy.address.to_string());
            proxied.proxies.push(proxy);
            proxied.cluster.nodes.push(None);
            proxied.start_node(index);
        }
        proxied
    }

    /// (Re)starts node `index` (node id `index + 1`) behind its proxy, seeded
    /// with every other node's proxy; the proxy forwards to the new process.
    pub fn start_node(&mut self, index: usize) {
        let seeds: Vec<String> = (0..self.proxies.len())
            .filter(|other| *other != index && self.cluster.nodes[*other].is_some())
            .map(|other| self.cluster.routes[other].clone())
            .collect();
        let advertise = self.cluster.routes[index].clone();
        let mut extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        extra.extend(["--cluster-advertise", &advertise]);
        let node = start_node_with(
            &self.cluster.directory,
            index as u32 + 1,
            self.shards,
            &seeds,
            SECRET,
            "127.0.0.1:0",
            &extra,
        );
        self.proxies[index].set_target(node.cluster_address.expect("the ready line names the route listener"));
        self.cluster.nodes[index] = Some(node);
    }

    pub fn node(&self, index: usize) -> &FlitServer {
        self.cluster.node(index)
    }

    pub fn client(&self, index: usize) -> Client {
        self.cluster.client(index)
    }

    /// SIGKILL node `index` (its proxy stays, refusing while nothing listens).
    pub fn kill(&mut self, index: usize) {
        drop(self.cluster.nodes[index].take());
    }
}

/// What `node`'s `/cluster` (its metrics listener) shows: (node id, route
/// address, up) per line, this node first.
pub fn cluster_view(node: &FlitServer) -> Vec<(u32, String, bool)> {
    let (status, body) = crate::common::http_get(node.metrics_address.expect("--metrics"), "/cluster");
    assert_eq!(status, 200, "/cluster answered {status}: {body}");
    body.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 4, "NODE_ID ADDR up|down RTT_US: {line:?}");
            (fields[0].parse().expect("a node id"), fields[1].to_string(), fields[2] == "up")
        })
        .collect()
}

/// Whether `node` shows node `peer` up (false while it is not listed).
pub fn sees_up(node: &FlitServer, peer: u32) -> bool {
    cluster_view(node).iter().any(|(id, _, up)| *id == peer && *up)
}

/// Polls `node`'s `/cluster` (every 10 ms) until node `peer` is `up` (or
/// down); returns how long that took; panics past `bound`.
pub fn wait_for_view(node: &FlitServer, peer: u32, up: bool, bound: std::time::Duration) -> std::time::Duration {
    let started = std::time::Instant::now();
    while sees_up(node, peer) != up {
        let state = if up { "up" } else { "down" };
        assert!(started.elapsed() < bound, "node {peer} not {state} within {bound:?}: {:?}", cluster_view(node));
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    started.elapsed()
}

/// Publishes `subject` from `publisher` until `subscription` gets one
/// (interest crosses a route about one round trip after a flush), then
/// drains the probes; panics past `bound`.
pub fn wait_until_routed(
    publisher: &Client,
    subject: &str,
    subscription: &flit_client::Subscription,
    bound: std::time::Duration,
) {
    let started = std::time::Instant::now();
    loop {
        publisher.publish(subject, b"probe").expect("publish");
        if subscription.next_timeout(std::time::Duration::from_millis(50)).expect("receive").is_some() {
            while subscription.next_timeout(std::time::Duration::from_millis(200)).expect("receive").is_some() {}
            return;
        }
        assert!(started.elapsed() < bound, "interest in {subject} did not reach the publisher's node within {bound:?}");
    }
}

/// Client options for the failover tests: quick reconnects (20 to 100 ms),
/// a 1 s connect timeout and a 2 s flush timeout.
pub fn failover_options() -> flit_client::Options {
    flit_client::Options {
        reconnect_delay_min: std::time::Duration::from_millis(20),
        reconnect_delay_max: std::time::Duration::from_millis(100),
        connect_timeout: std::time::Duration::from_secs(1),
        flush_timeout: std::time::Duration::from_secs(2),
        ..flit_client::Options::default()
    }
}
