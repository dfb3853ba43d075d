//! A stalled peer (issue 13, "slow or stalled route"): node B stops reading
//! (SIGSTOP: its sockets stay open, the kernel buffers fill) while node A's
//! publisher keeps going. A's route to B holds at most
//! `ROUTE_PENDING_BYTES_MAX` (8 MiB); past it, messages for B are dropped
//! and counted (core delivery is at most once), and nothing else on A waits
//! for B: a subscriber on A receives every message, in order. When B runs
//! again it gets a prefix of what was published, in order, each at most once.

mod cluster_support;
mod common;

use std::time::{Duration, Instant};

use cluster_support::Cluster;
use flit_client::Client;

const WAIT: Duration = Duration::from_secs(10);
const MESSAGES: u32 = 24_000;
/// 24,000 x 1 KiB: three times the route's 8 MiB cap.
const PAYLOAD_BYTES: usize = 1024;

#[test]
fn a_stalled_peer_costs_its_own_messages_only() {
    let cluster = Cluster::start(2, 1);
    let publisher = Client::connect(cluster.node(0).address).expect("connect");
    let local = Client::connect(cluster.node(0).address).expect("connect");
    let remote = Client::connect(cluster.node(1).address).expect("connect");
    let on_a = local.subscribe("bulk.>").expect("subscribe");
    let on_b = remote.subscribe("bulk.>").expect("subscribe");
    local.flush().expect("flush");
    remote.flush().expect("flush");
    // The mesh is whole: a probe crosses.
    cluster_support::wait_until_routed(&publisher, "bulk.probe", &on_b, WAIT);
    while on_a.next_timeout(Duration::from_millis(200)).expect("receive").is_some() {}

    cluster.node(1).signal("STOP");
    let started = Instant::now();
    let mut payload = vec![0u8; PAYLOAD_BYTES];
    for number in 0..MESSAGES {
        payload[..4].copy_from_slice(&number.to_le_bytes());
        publisher.publish("bulk.data", &payload).expect("publish");
    }
    publisher.flush().expect("flush");
    // Everything reaches A's own subscriber while B is stopped.
    for number in 0..MESSAGES {
        let message = on_a.next_timeout(WAIT).expect("receive").expect("A's subscriber is not held up by B");
        assert_eq!(&message.payload[..4], &number.to_le_bytes(), "in order");
    }
    let stalled_for = started.elapsed();
    let scrape = common::scrape(cluster.node(0).metrics_address.expect("metrics"));
    let dropped = common::metric_sum(&scrape, "flit_route_node_messages_dropped_total", &[("node", "2")]);
    let sent = common::metric_sum(&scrape, "flit_route_node_messages_sent_total", &[("node", "2")]);
    eprintln!("MEASURED stalled_peer: {stalled_for:?} to deliver locally; route to B: {sent} sent, {dropped} dropped");
    assert!(dropped > 0.0, "24 MiB for a stopped peer: more than the 8 MiB route cap must have been dropped");
    assert!(sent + dropped >= f64::from(MESSAGES), "every message for B was either queued or counted as dropped");

    cluster.node(1).signal("CONT");
    // B gets a prefix (what fit before the cap, unless its route was closed
    // for silence first), in order, none twice.
    let mut expected = 0u32;
    while let Some(message) = on_b.next_timeout(Duration::from_millis(500)).expect("receive") {
        let number = u32::from_le_bytes(message.payload[..4].try_into().expect("4 bytes"));
        assert_eq!(number, expected, "B's messages are a prefix, in order, none twice");
        expected += 1;
    }
    assert!(expected < MESSAGES, "B got {expected}: the drops above are real");
}
