//! The Rust client fails over between the nodes of a cluster (issue 13,
//! "Clients fail over"): a [`ClusterClient`] given two nodes keeps its
//! subscriptions across a SIGKILL of the node it is connected to, buffers
//! publishes while no node is reachable and sends them in order once one is,
//! and refuses publishes past its buffer bound instead of growing or blocking.
//! Nodes run one shard each (2 cores share them with the test).

mod cluster_support;
mod common;

use std::time::{Duration, Instant};

use cluster_support::{Cluster, Gate};
use flit_client::{ClientError, ClusterClient, Options};

const WAIT: Duration = Duration::from_secs(10);
/// The bound a failover must meet: detect, reconnect, re-subscribe.
const FAILOVER_BOUND: Duration = Duration::from_secs(3);

fn options() -> Options {
    Options {
        reconnect_delay_min: Duration::from_millis(20),
        reconnect_delay_max: Duration::from_millis(100),
        connect_timeout: Duration::from_secs(1),
        flush_timeout: Duration::from_secs(2),
        ..Options::default()
    }
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
