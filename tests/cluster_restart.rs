//! Issue 13, failure: a node killed with SIGKILL and started again with the
//! same node id at the same route address (its fault proxy, which forwards
//! to whatever port the new process bound) rejoins: the others show it down,
//! then up again in `/cluster`, the new process shows them up, and
//! publishes cross both ways between it and each other node, including
//! to subscribers that were there before it died.
//!
//! Prints `MEASURED restart_rejoin_ms=`: from the new process's ready line
//! until both others show it up (see bench/cluster_failures.sh).

mod cluster_support;
mod common;

use std::time::{Duration, Instant};

use cluster_support::{cluster_view, wait_for_view, wait_until_routed, ProxiedCluster};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_node_restarted_with_its_id_rejoins_and_interest_crosses_both_ways() {
    let mut cluster = ProxiedCluster::start(3, 1, &[]);
    for (node, peers) in [(0, [2, 3]), (1, [1, 3]), (2, [1, 2])] {
        for peer in peers {
            wait_for_view(cluster.node(node), peer, true, WAIT);
        }
    }
    let (a, c) = (cluster.client(0), cluster.client(2));
    let (on_a, on_c) = (a.subscribe("to.a").expect("subscribe"), c.subscribe("to.c").expect("subscribe"));
    {
        let b = cluster.client(1);
        wait_until_routed(&b, "to.a", &on_a, WAIT);
        wait_until_routed(&b, "to.c", &on_c, WAIT);
    }

    cluster.kill(1); // SIGKILL B
    let killed = Instant::now();
    wait_for_view(cluster.node(0), 2, false, Duration::from_secs(5));
    wait_for_view(cluster.node(2), 2, false, Duration::from_secs(5).saturating_sub(killed.elapsed()));
    // A and C carry on without it.
    wait_until_routed(&a, "to.c", &on_c, WAIT);

    cluster.start_node(1); // same id, same advertised address, a new port
    let started = Instant::now();
    wait_for_view(cluster.node(0), 2, true, WAIT);
    wait_for_view(cluster.node(2), 2, true, WAIT.saturating_sub(started.elapsed()));
    eprintln!("MEASURED restart_rejoin_ms={}", started.elapsed().as_millis());
    for peer in [1, 3] {
        wait_for_view(cluster.node(1), peer, true, WAIT);
    }
    for node in [0, 2] {
        let entries: Vec<_> = cluster_view(cluster.node(node)).into_iter().filter(|(id, _, _)| *id == 2).collect();
        assert_eq!(entries, vec![(2, cluster.cluster.routes[1].clone(), true)], "one entry for node 2, up");
    }

    let b = cluster.client(1);
    let on_b = b.subscribe("to.b").expect("subscribe");
    wait_until_routed(&a, "to.b", &on_b, WAIT);
    wait_until_routed(&c, "to.b", &on_b, WAIT);
    // Subscribers from before the kill get the new process's publishes.
    wait_until_routed(&b, "to.a", &on_a, WAIT);
    wait_until_routed(&b, "to.c", &on_c, WAIT);
    // Exactly once.
    a.publish("to.b", b"once").expect("publish");
    assert_eq!(&common::next_message(&on_b).payload[..], b"once");
    common::assert_no_message(&on_b);
}
