//! The Rust client fails over between the nodes of a cluster (issue 13,
//! "Clients fail over"): a [`ClusterClient`] given two nodes keeps its
//! subscriptions across a SIGKILL of the node it is connected to, buffers
//! publishes while no node is reachable and sends them in order once one is,
//! and refuses publishes past its buffer bound instead of growing or blocking.
//! A node's Welcome names the other nodes (`cluster_urls`), and a client given
//! one node fails over to a node it learned that way.
//! Nodes run one shard each (2 cores share them with the test).

mod cluster_support;
mod common;

use std::time::{Duration, Instant};

use cluster_support::{Cluster, Gate};
use flit_client::{Client, ClientError, ClusterClient, Options};

const WAIT: Duration = Duration::from_secs(10);
/// The bound a failover must meet: detect, reconnect, re-subscribe.
const FAILOVER_BOUND: Duration = Duration::from_secs(3);

fn options() -> Options {
    cluster_support::failover_options()
}

/// Publishes probes with `publish` until `received` returns true (bounded).
fn until_routed(mut publish: impl FnMut(), mut received: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        publish();
        if received() {
            return;
        }
        assert!(Instant::now() < deadline, "interest did not cross the route within {WAIT:?}");
    }
}

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "{what} within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What `address`'s Welcome names, once it names `count` other nodes (the
/// routes come up a moment after the nodes start).
fn welcome_naming(address: std::net::SocketAddr, count: usize) -> Vec<String> {
    let mut named = Vec::new();
    wait_for(&format!("{address}'s Welcome names {count} other node(s)"), || {
        named = Client::connect(address).expect("connect").welcome().cluster_urls.clone();
        named.len() >= count
    });
    named
}

#[test]
fn a_welcome_names_the_other_nodes_and_a_single_node_names_none() {
    let cluster = Cluster::start(3, 1);
    let addresses: Vec<String> = (0..3).map(|index| cluster.node(index).address.to_string()).collect();
    for (index, own) in addresses.iter().enumerate() {
        let mut named = welcome_naming(cluster.node(index).address, 2);
        named.sort();
        let mut others: Vec<String> = addresses.iter().filter(|address| *address != own).cloned().collect();
        others.sort();
        assert_eq!(named, others, "node {}'s Welcome names the others, not itself", index + 1);
    }
    let single = common::FlitServer::start(1, &[]);
    let client = Client::connect(single.address).expect("connect");
    assert!(client.welcome().cluster_urls.is_empty(), "no cluster: an empty list");
}

#[test]
fn a_client_given_one_node_fails_over_to_a_node_its_welcome_named() {
    let mut cluster = Cluster::start(2, 1);
    let (first, second) = (cluster.node(0).address.to_string(), cluster.node(1).address.to_string());
    assert_eq!(welcome_naming(cluster.node(0).address, 1), vec![second.clone()]);
    let client = ClusterClient::connect(&[&first], options()).expect("connect");
    assert_eq!(client.servers(), vec![first.clone(), second.clone()], "the given server, then the named one");
    let subscription = client.subscribe("learned.events").expect("subscribe");
    client.flush().expect("flush");
    let publisher = cluster.client(1);
    until_routed(
        || publisher.publish("learned.events", b"probe").expect("publish"),
        || subscription.next_timeout(Duration::from_millis(50)).expect("receive").is_some(),
    );
    while subscription.next_timeout(Duration::from_millis(200)).expect("receive").is_some() {}

    drop(cluster.nodes[0].take()); // SIGKILL the only node the client was given
    let killed = Instant::now();
    loop {
        publisher.publish("learned.events", b"after").expect("publish on the survivor");
        if let Some(message) = subscription.next_timeout(Duration::from_millis(20)).expect("open") {
            assert_eq!(&message.payload[..], b"after");
            break;
        }
        assert!(killed.elapsed() < FAILOVER_BOUND, "no delivery within {FAILOVER_BOUND:?} of the kill");
    }
    assert_eq!(client.connected_server(), Some(second.clone()), "on the node only the Welcome named");
    assert_eq!(client.reconnects(), 1);
}

#[test]
fn ignoring_discovered_servers_keeps_the_given_list() {
    let cluster = Cluster::start(2, 1);
    let first = cluster.node(0).address.to_string();
    welcome_naming(cluster.node(0).address, 1);
    let options = Options { ignore_discovered_servers: true, ..options() };
    let client = ClusterClient::connect(&[&first], options).expect("connect");
    assert_eq!(client.servers(), vec![first]);
}

#[test]
fn a_subscriber_fails_over_and_receives_again_without_resubscribing() {
    let mut cluster = Cluster::start(2, 1);
    let servers = [cluster.node(0).address, cluster.node(1).address];
    let client = ClusterClient::connect(&servers, options()).expect("connect");
    assert_eq!(client.connected_server(), Some(servers[0].to_string()), "the first server first");
    let subscription = client.subscribe("failover.events").expect("subscribe");
    client.flush().expect("flush");
    let publisher = cluster.client(1);
    until_routed(
        || publisher.publish("failover.events", b"probe").expect("publish"),
        || subscription.next_timeout(Duration::from_millis(50)).expect("receive").is_some(),
    );
    while subscription.next_timeout(Duration::from_millis(200)).expect("receive").is_some() {}

    drop(cluster.nodes[0].take()); // SIGKILL
    let killed = Instant::now();
    loop {
        publisher.publish("failover.events", b"after").expect("publish on the survivor");
        if let Some(message) =
            subscription.next_timeout(Duration::from_millis(20)).expect("the subscription stays open")
        {
            assert_eq!(&message.payload[..], b"after");
            break;
        }
        assert!(killed.elapsed() < FAILOVER_BOUND, "no delivery within {FAILOVER_BOUND:?} of the kill");
    }
    assert_eq!(client.connected_server(), Some(servers[1].to_string()));
    assert_eq!(client.reconnects(), 1);
    // Same subscription, same id, still one delivery per message.
    while subscription.next_timeout(Duration::from_millis(100)).expect("receive").is_some() {}
    publisher.publish("failover.events", b"once").expect("publish");
    let message = subscription.next_timeout(WAIT).expect("receive").expect("delivered");
    assert_eq!(&message.payload[..], b"once");
    assert!(subscription.next_timeout(Duration::from_millis(200)).expect("receive").is_none(), "no duplicate");
}

/// A publisher on node 1 whose only other server (node 2 behind a gate) is
/// unreachable until the test opens the gate; a subscriber on node 2.
struct Stranded {
    cluster: Cluster,
    gate: Gate,
    publisher: ClusterClient,
    subscriber: flit_client::Client,
}

fn stranded_publisher(options: Options, subject: &str) -> (Stranded, flit_client::Subscription) {
    // Only the gate: node 2's own address, which node 1's Welcome names, is not tried.
    let options = Options { ignore_discovered_servers: true, ..options };
    let mut cluster = Cluster::start(2, 1);
    let gate = Gate::closed_to(cluster.node(1).address);
    let publisher =
        ClusterClient::connect(&[cluster.node(0).address, gate.address], options).expect("connect to node 1");
    let subscriber = cluster.client(1);
    let subscription = subscriber.subscribe(subject).expect("subscribe");
    until_routed(
        || publisher.publish(subject, b"probe").expect("publish"),
        || subscription.next_timeout(Duration::from_millis(50)).expect("receive").is_some(),
    );
    while subscription.next_timeout(Duration::from_millis(200)).expect("receive").is_some() {}
    drop(cluster.nodes[0].take()); // SIGKILL: now no server is reachable
    wait_for("the publisher notices its node died", || publisher.connected_server().is_none());
    (Stranded { cluster, gate, publisher, subscriber }, subscription)
}

#[test]
fn publishes_while_no_server_is_reachable_are_buffered_and_arrive_in_order() {
    let (stranded, subscription) = stranded_publisher(options(), "buffered.orders");
    for number in 0..200u32 {
        stranded.publisher.publish("buffered.orders", &number.to_le_bytes()).expect("buffered");
    }
    assert!(stranded.publisher.buffered_bytes() > 0, "held while no server is reachable");
    std::thread::sleep(Duration::from_millis(300)); // several failed attempts
    stranded.gate.open();
    for number in 0..200u32 {
        let message = subscription.next_timeout(WAIT).expect("receive").expect("a buffered publish arrives");
        assert_eq!(&message.payload[..], &number.to_le_bytes()[..], "in order, none lost");
    }
    assert_eq!(stranded.publisher.buffered_bytes(), 0);
    assert_eq!(stranded.publisher.reconnects(), 1);
    // And the client works as usual afterwards.
    stranded.publisher.publish("buffered.orders", b"live").expect("publish");
    let message = subscription.next_timeout(WAIT).expect("receive").expect("live publish");
    assert_eq!(&message.payload[..], b"live");
    drop(stranded.subscriber);
    drop(stranded.cluster);
}

#[test]
fn the_publish_buffer_is_bounded_and_nothing_waits_forever() {
    let options = Options { reconnect_buffer_bytes_max: 4096, flush_timeout: Duration::from_millis(300), ..options() };
    let (stranded, _subscription) = stranded_publisher(options, "bounded");
    let payload = [7u8; 1000];
    let mut accepted = 0;
    let refused = loop {
        match stranded.publisher.publish("bounded", &payload) {
            Ok(()) => accepted += 1,
            Err(error) => break error,
        }
        assert!(accepted <= 4, "a 4096-byte buffer holds at most four 1000-byte publishes");
    };
    assert!(
        matches!(refused, ClientError::ReconnectBufferFull { limit_bytes: 4096, .. }),
        "a clear error once full: {refused:?}"
    );
    assert!(accepted >= 3, "the buffer is used up to its bound: {accepted}");
    assert!(stranded.publisher.buffered_bytes() <= 4096);
    let started = Instant::now();
    let request = stranded.publisher.request("bounded.service", b"", Duration::from_millis(300));
    assert!(matches!(request, Err(ClientError::NotConnected)), "{request:?}");
    let flushed = stranded.publisher.flush();
    assert!(matches!(flushed, Err(ClientError::NotConnected)), "{flushed:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "bounded waits: {:?}", started.elapsed());
}

#[test]
fn a_request_in_flight_when_its_node_dies_fails_at_once_and_is_not_resent() {
    let mut cluster = Cluster::start(2, 1);
    let servers = [cluster.node(0).address, cluster.node(1).address];
    let requester = ClusterClient::connect(&servers, options()).expect("connect");
    // A responder on the same node that never answers: the request stays in flight.
    let silent = cluster.client(0);
    let _silent_subscription = silent.subscribe("slow.service").expect("subscribe");
    let (sender, receiver) = std::sync::mpsc::channel();
    let in_flight = requester.clone();
    std::thread::spawn(move || {
        let _ = sender.send(in_flight.request("slow.service", b"", Duration::from_secs(20)));
    });
    std::thread::sleep(Duration::from_millis(300)); // sent and waiting
    let killed = Instant::now();
    drop(cluster.nodes[0].take()); // SIGKILL
    let outcome = receiver.recv_timeout(FAILOVER_BOUND).expect("the request ends well before its timeout");
    assert!(
        matches!(outcome, Err(ClientError::Disconnected | ClientError::Io(_))),
        "the lost connection's error: {outcome:?}"
    );
    assert!(killed.elapsed() < FAILOVER_BOUND);
    // The next request goes to the survivor (nobody serves it there).
    wait_for("the client reconnects", || requester.connected_server().is_some());
    let next = requester.request("slow.service", b"", Duration::from_secs(2));
    assert!(matches!(next, Err(ClientError::NoResponders)), "{next:?}");
}

/// `flit sub --server a,b` fails over like the library: after node 1 dies it
/// prints messages published on node 2 without being restarted.
#[test]
fn the_cli_subscriber_given_a_server_list_fails_over() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut cluster = Cluster::start(2, 1);
    let list = format!("{},{}", cluster.node(0).address, cluster.node(1).address);
    let mut child = Command::new(env!("CARGO_BIN_EXE_flit"))
        .args(["sub", "cli.failover", "--server", &list])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn flit sub");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    let publisher = cluster.client(1);
    until_routed(
        || publisher.publish("cli.failover", b"probe").expect("publish"),
        || lines.recv_timeout(Duration::from_millis(100)).is_ok(),
    );
    drop(cluster.nodes[0].take()); // SIGKILL the node `flit sub` is connected to
    while lines.recv_timeout(Duration::from_millis(200)).is_ok() {}
    let killed = Instant::now();
    let line = loop {
        publisher.publish("cli.failover", b"after").expect("publish");
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(50)) {
            break line;
        }
        assert!(killed.elapsed() < FAILOVER_BOUND, "flit sub printed nothing within {FAILOVER_BOUND:?} of the kill");
    };
    assert_eq!(line, "cli.failover after");
    let _ = child.kill();
    let _ = child.wait();
}

/// On a Draining notice the client moves at once, while the draining node is
/// still up (kept in its drain by deliveries queued for a subscriber that does
/// not read), and its subscription follows it.
#[test]
fn a_draining_notice_moves_the_client_before_the_node_closes() {
    let cluster =
        Cluster::start_with(2, 1, &["--pending-bytes-max", "67108864", "--shutdown-flush-timeout-ms", "20000"]);
    let servers = [cluster.node(0).address, cluster.node(1).address];
    let client = ClusterClient::connect(&servers, options()).expect("connect");
    let subscription = client.subscribe("drain.moves").expect("subscribe");
    client.flush().expect("flush");
    // Deliveries the router must keep writing during the drain.
    let mut stuck = common::RawConnection::connect_on_shard(cluster.node(0).address, 0);
    stuck.subscribe_and_flush("drain.stuck", 1);
    let filler = cluster.node(0).client();
    let payload = vec![b'f'; 16 * 1024];
    for _ in 0..1_500 {
        filler.publish("drain.stuck", &payload).expect("publish");
    }
    filler.flush().expect("flush");
    let metrics = cluster.node(0).metrics_address.expect("metrics");
    wait_for("deliveries are queued on node 1", || {
        common::metric_sum(&common::scrape(metrics), "flit_shard_pending_bytes", &[]) > 0.0
    });
    cluster.node(0).terminate();
    let signalled = Instant::now();
    wait_for("the client moves to node 2", || client.connected_server() == Some(servers[1].to_string()));
    assert!(signalled.elapsed() < FAILOVER_BOUND, "moved {:?} after the signal", signalled.elapsed());
    assert_eq!(common::http_get(metrics, "/healthz").0, 200, "node 1 is still draining: the client did not wait");
    let publisher = cluster.client(1);
    publisher.publish("drain.moves", b"on node 2").expect("publish");
    let message = subscription.next_timeout(WAIT).expect("receive").expect("the subscription followed");
    assert_eq!(&message.payload[..], b"on node 2");
    assert_eq!(client.reconnects(), 1);
    drop(stuck);
}

/// `--server a,b`: a command connects to the first address that answers, and
/// a single address works as before.
#[test]
fn cli_commands_take_a_server_list_and_skip_a_dead_address() {
    let cluster = Cluster::start(1, 1);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address");
    let live = cluster.node(0).address;
    let subscriber = cluster.client(0);
    let subscription = subscriber.subscribe("cli.list").expect("subscribe");
    for servers in [format!("{dead},{live}"), live.to_string()] {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_flit"))
            .args(["pub", "cli.list", "hi", "--server", &servers])
            .status()
            .expect("run flit pub");
        assert!(status.success(), "flit pub --server {servers}: {status:?}");
        let message = subscription.next_timeout(WAIT).expect("receive").expect("published");
        assert_eq!(&message.payload[..], b"hi");
    }
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_flit"))
        .args(["pub", "cli.list", "hi", "--server", &dead.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run flit pub");
    assert_eq!(status.code(), Some(1), "only a dead address: exit 1");
}
