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

/// A node whose host hangs (SIGSTOP: its sockets stay open, silent) is
/// replaced by a new process with the same node id at the same route
/// address (its proxy now forwards to the new process), started before the
/// others have noticed the old one is silent: once the old lanes' silence
/// closes them, the others redial the address and reach the new process.
#[test]
fn a_node_replaced_at_its_address_while_the_old_one_hangs_rejoins() {
    let mut cluster = ProxiedCluster::start(3, 1, &[]);
    for (node, peers) in [(0, [2, 3]), (1, [1, 3]), (2, [1, 2])] {
        for peer in peers {
            wait_for_view(cluster.node(node), peer, true, WAIT);
        }
    }
    let (a, c) = (cluster.client(0), cluster.client(2));
    let old = cluster.cluster.nodes[1].take().expect("running");
    old.signal("STOP"); // hangs; stays stopped (then killed) at the end
    cluster.start_node(1);
    let started = Instant::now();
    let b = cluster.client(1);
    let on_b = b.subscribe("to.new.b").expect("subscribe");
    b.flush().expect("flush");
    wait_until_routed(&a, "to.new.b", &on_b, Duration::from_secs(15));
    wait_until_routed(&c, "to.new.b", &on_b, Duration::from_secs(15));
    eprintln!("MEASURED replaced_in_place_reachable_ms={}", started.elapsed().as_millis());
    for node in [0, 2] {
        wait_for_view(cluster.node(node), 2, true, WAIT);
    }
    drop(old);
}

/// A node whose host hangs (SIGSTOP: its sockets stay open, silent) is
/// replaced by a new process with the same node id at a new route address
/// (a rescheduled pod), started before the others have noticed the old one
/// is silent (1 s). The others learn the new address from its handshakes
/// and must end up meshed with it: their view shows it up and their
/// publishes reach its subscribers.
#[test]
fn a_node_replaced_at_a_new_address_while_the_old_one_hangs_rejoins() {
    let cluster = ProxiedCluster::start(3, 1, &[]);
    for (node, peers) in [(0, [2, 3]), (1, [1, 3]), (2, [1, 2])] {
        for peer in peers {
            wait_for_view(cluster.node(node), peer, true, WAIT);
        }
    }
    let (a, c) = (cluster.client(0), cluster.client(2));
    cluster.node(1).signal("STOP"); // the old B hangs; it stays stopped to the end
    let new_address = cluster_support::fault_proxy::FaultProxy::for_routes();
    let seeds = [cluster.cluster.routes[0].clone(), cluster.cluster.routes[2].clone()];
    let advertise = new_address.address.to_string();
    let replacement = cluster_support::start_node_with(
        &cluster.cluster.directory,
        2,
        1,
        &seeds,
        cluster_support::SECRET,
        "127.0.0.1:0",
        &["--cluster-advertise", &advertise],
    );
    new_address.set_target(replacement.cluster_address.expect("route listener"));
    let started = Instant::now();
    let b = replacement.ack_client();
    let on_b = b.subscribe("to.new.b").expect("subscribe");
    b.flush().expect("flush");
    // The new B meshes with A and C (its own lanes to them come up at once).
    for peer in [1, 3] {
        wait_for_view(&replacement, peer, true, WAIT);
    }
    // A and C reach it: after the old lane's silence closes it (1 s), they
    // must dial the address the new process announced.
    let deadline = started + Duration::from_secs(15);
    for (name, node, publisher) in [("A", 0, &a), ("C", 2, &c)] {
        loop {
            publisher.publish("to.new.b", b"probe").expect("publish");
            if on_b.next_timeout(Duration::from_millis(50)).expect("receive").is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}'s publishes never reached the replacement B (15 s); {name}'s /cluster: {:?}; \
                 proxy connections: old address {} accepted, new address {} accepted",
                cluster_view(cluster.node(node)),
                cluster.proxies[1].accepted(),
                new_address.accepted(),
            );
        }
    }
    eprintln!("MEASURED replaced_node_reachable_ms={}", started.elapsed().as_millis());
    while on_b.next_timeout(Duration::from_millis(200)).expect("receive").is_some() {}
    for node in [0, 2] {
        wait_for_view(cluster.node(node), 2, true, WAIT);
    }
}
