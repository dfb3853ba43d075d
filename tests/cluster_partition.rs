//! Issue 13, failure: a network partition, {A} from {B, C}, then a heal.
//! Through fault proxies in front of every node's route listener, the lanes
//! between A and the others go silent both ways (blackhole: no EOF, found
//! by the pings) or are cut (ended, redials refused). Proves:
//!
//! - each side shows the other down, and B and C keep each other up;
//! - each side keeps serving its own clients: pub/sub between B and C (with
//!   subscriptions made during the partition), and within A;
//! - after the heal the three nodes mesh again and interest is whole: a
//!   subscriber on A made during the partition gets a publish from C, and
//!   one on C gets a publish from A.
//!
//! Prints `MEASURED heal_remesh_ms=` (blackhole) and
//! `heal_remesh_after_cut_ms=` (cut): from the heal until every node shows
//! both others up (see bench/cluster_failures.sh).

mod cluster_support;
mod common;

use std::time::{Duration, Instant};

use cluster_support::{sees_up, wait_for_view, wait_until_routed, ProxiedCluster};

const WAIT: Duration = Duration::from_secs(10);
/// Detection: at once for a cut, within 2 s for silence; asserted with room.
const DETECTION_BOUND: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    Blackhole,
    Cut,
}

fn partition_then_heal(fault: Fault, shards: usize, measure: &str) {
    let cluster = ProxiedCluster::start(3, shards, &[]);
    let all_up = |bound: Duration| {
        for (node, peers) in [(0, [2, 3]), (1, [1, 3]), (2, [1, 2])] {
            for peer in peers {
                wait_for_view(cluster.node(node), peer, true, bound);
            }
        }
    };
    all_up(WAIT);
    let (a, b, c) = (cluster.client(0), cluster.client(1), cluster.client(2));

    // {A} | {B, C}: lanes into A (its proxy), and lanes A dialed (node 1,
    // through B's and C's proxies).
    match fault {
        Fault::Blackhole => {
            cluster.proxies[0].blackhole();
            cluster.proxies[1].blackhole_from(&[1]);
            cluster.proxies[2].blackhole_from(&[1]);
        }
        Fault::Cut => {
            cluster.proxies[0].cut();
            cluster.proxies[1].cut_from(&[1]);
            cluster.proxies[2].cut_from(&[1]);
        }
    }
    let partitioned = Instant::now();
    for (node, peer) in [(0, 2), (0, 3), (1, 1), (2, 1)] {
        wait_for_view(cluster.node(node), peer, false, DETECTION_BOUND.saturating_sub(partitioned.elapsed()));
    }
    eprintln!("partition seen on every node after {:?}", partitioned.elapsed());
    assert!(sees_up(cluster.node(1), 3) && sees_up(cluster.node(2), 2), "B and C keep each other");

    // Each side serves its own clients; subscriptions made now cross
    // between B and C.
    let on_c = c.subscribe("side.bc").expect("subscribe");
    wait_until_routed(&b, "side.bc", &on_c, WAIT);
    let on_b = b.subscribe("side.cb").expect("subscribe");
    wait_until_routed(&c, "side.cb", &on_b, WAIT);
    let on_a = a.subscribe("side.a").expect("subscribe");
    let other_a = cluster.client(0);
    other_a.publish("side.a", b"alone").expect("publish");
    assert_eq!(&common::next_message(&on_a).payload[..], b"alone", "A serves its own clients");
    // Interest made during the partition, to be whole after the heal.
    let from_c_on_a = a.subscribe("whole.from_c").expect("subscribe");
    let from_a_on_c = c.subscribe("whole.from_a").expect("subscribe");
    a.flush().expect("flush");
    c.flush().expect("flush");
    assert!(sees_up(cluster.node(1), 3) && sees_up(cluster.node(2), 2), "B and C still keep each other");
    std::thread::sleep(Duration::from_millis(500)); // a partition of some length

    for proxy in &cluster.proxies {
        proxy.heal();
    }
    let healed = Instant::now();
    all_up(WAIT);
    eprintln!("MEASURED {measure}={}", healed.elapsed().as_millis());
    wait_until_routed(&c, "whole.from_c", &from_c_on_a, WAIT);
    wait_until_routed(&a, "whole.from_a", &from_a_on_c, WAIT);
    // Exactly once across the healed routes.
    c.publish("whole.from_c", b"once").expect("publish");
    assert_eq!(&common::next_message(&from_c_on_a).payload[..], b"once");
    common::assert_no_message(&from_c_on_a);
}

#[test]
fn a_silent_partition_heals_and_interest_is_whole_again() {
    partition_then_heal(Fault::Blackhole, 1, "heal_remesh_ms");
}

/// Every shard keeps its own lanes: with two shards per node, each node
/// shows another up while any of its shards has a lane to it, and the
/// interest every shard announces is whole again after the heal.
#[test]
fn a_silent_partition_of_two_shard_nodes_heals_and_interest_is_whole_again() {
    partition_then_heal(Fault::Blackhole, 2, "heal_remesh_two_shards_ms");
}

#[test]
fn a_cut_partition_heals_and_interest_is_whole_again() {
    partition_then_heal(Fault::Cut, 1, "heal_remesh_after_cut_ms");
}
