//! The cluster-wide subscribe barrier (issue 13): once a subscriber's flush
//! returns (or, in ack mode, its subscribe's Ok), a message published on any
//! other reachable node right afterwards reaches it; once an unsubscribe's
//! flush returns, a request from another node gets "no responders" at once.
//! Nodes of two shards each, so the barrier covers the subscriber's shards,
//! the route, and every shard of the publishing node.

mod cluster_support;
mod common;

use std::time::{Duration, Instant};

use cluster_support::Cluster;
use flit_client::Client;

const WAIT: Duration = Duration::from_secs(10);
const ROUNDS: usize = 200;

/// A client that waits for no acknowledgement: its flush (a Ping) is the
/// barrier under test.
fn plain_client(node: &common::FlitServer) -> Client {
    Client::connect(node.address).expect("connect")
}

/// Waits until every shard of every node has its route to every other node
/// up (the barrier covers the routes that are up when the flush is made;
/// a route still being dialed gets the whole interest when it comes up),
/// then until a probe from `publisher` reaches `subscriber`.
fn wait_until_meshed(cluster: &Cluster, publisher: &Client, subscriber: &Client) {
    let nodes = cluster.nodes.len();
    for node in 0..nodes {
        let server = cluster.node(node);
        let expected = (server.shards * (nodes - 1)) as f64;
        let deadline = Instant::now() + WAIT;
        while common::metric_sum(&common::scrape(server.metrics_address.expect("metrics")), "flit_routes_up", &[])
            < expected
        {
            assert!(Instant::now() < deadline, "node {} never had all {expected} routes up", node + 1);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let subscription = subscriber.subscribe("mesh.probe").expect("subscribe");
    cluster_support::wait_until_routed(publisher, "mesh.probe", &subscription, WAIT);
}

#[test]
fn a_publish_right_after_the_subscribers_flush_is_never_lost() {
    let cluster = Cluster::start(3, 2);
    let (a, b, c) = (plain_client(cluster.node(0)), plain_client(cluster.node(1)), plain_client(cluster.node(2)));
    wait_until_meshed(&cluster, &a, &c);
    wait_until_meshed(&cluster, &b, &c);
    let mut lost = Vec::new();
    for round in 0..ROUNDS {
        // A subject nobody on any node had interest in before: the first
        // subscriber, so the interest must cross the routes.
        let subject = format!("fresh.{round}");
        let subscription = c.subscribe(&subject).expect("subscribe");
        c.flush().expect("flush");
        let publisher = if round % 2 == 0 { &a } else { &b };
        publisher.publish(&subject, b"first").expect("publish");
        publisher.flush().expect("flush");
        match subscription.next_timeout(Duration::from_secs(2)).expect("receive") {
            Some(message) => assert_eq!(&message.payload[..], b"first"),
            None => lost.push(round),
        }
    }
    assert!(lost.is_empty(), "publishes right after the subscriber's flush were lost in rounds {lost:?}");
}

#[test]
fn an_ack_mode_subscribe_returns_only_once_every_node_sees_it() {
    let cluster = Cluster::start(3, 2);
    let (a, c) = (cluster.client(0), cluster.client(2));
    wait_until_meshed(&cluster, &a, &c);
    for round in 0..ROUNDS {
        let subject = format!("acked.{round}");
        let subscription = c.queue_subscribe(&subject, "workers").expect("subscribe");
        a.publish(&subject, b"first").expect("publish");
        let message = subscription.next_timeout(Duration::from_secs(2)).expect("receive");
        assert!(message.is_some(), "round {round}: the publish right after the subscribe's Ok was lost");
    }
}

#[test]
fn after_the_last_responder_leaves_and_flushes_requests_get_no_responders() {
    let cluster = Cluster::start(3, 2);
    let (a, c) = (plain_client(cluster.node(0)), plain_client(cluster.node(2)));
    wait_until_meshed(&cluster, &a, &c);
    for round in 0..50 {
        let subject = format!("service.{round}");
        let service = c.subscribe(&subject).expect("subscribe");
        c.flush().expect("flush");
        let responder = c.clone();
        let answering = std::thread::spawn(move || {
            let request = service.next_timeout(WAIT).expect("receive").expect("the request crossed");
            responder.publish(request.reply.as_deref().expect("reply subject"), b"yes").expect("reply");
            // The last responder leaves; its flush is the barrier.
            service.unsubscribe().expect("unsubscribe");
            responder.flush().expect("flush");
        });
        let answered = a.request(&subject, b"?", WAIT).expect("answer");
        assert_eq!(&answered.payload[..], b"yes");
        answering.join().expect("responder");
        let started = Instant::now();
        let error = a.request(&subject, b"?", WAIT).expect_err("nobody is subscribed any more");
        assert!(
            matches!(error, flit_client::ClientError::NoResponders),
            "round {round}: expected no responders, got {error:?} after {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_burst_of_subscriptions_crosses_the_cluster_without_closing_a_route() {
    let cluster = Cluster::start(2, 2);
    let a = plain_client(cluster.node(0));
    let subscribers: Vec<Client> = (0..2).map(|_| plain_client(cluster.node(1))).collect();
    wait_until_meshed(&cluster, &a, &subscribers[0]);
    let routes_up = |node: usize| {
        let scrape = common::scrape(cluster.node(node).metrics_address.expect("metrics"));
        common::metric_sum(&scrape, "flit_routes_up", &[])
    };
    let before = (routes_up(0), routes_up(1));
    // 80,000 first subscriptions (more than DEFERRED_REPLIES_MAX barriers),
    // pipelined, then one flush each.
    let subscriptions: Vec<Vec<flit_client::Subscription>> = subscribers
        .iter()
        .enumerate()
        .map(|(index, client)| {
            (0..40_000).map(|number| client.subscribe(&format!("burst.{index}.{number}")).expect("subscribe")).collect()
        })
        .collect();
    for client in &subscribers {
        client.flush_timeout(Duration::from_secs(60)).expect("flush after the burst");
    }
    let after_flush = (routes_up(0), routes_up(1));
    a.publish("burst.1.39999", b"last").expect("publish");
    a.flush().expect("flush");
    let message = subscriptions[1][39_999].next_timeout(WAIT).expect("receive");
    let mesh_full = |node: usize| {
        let scrape = common::scrape(cluster.node(node).metrics_address.expect("metrics"));
        common::metric_sum(&scrape, "flit_shard_mesh_queue_full_total", &[])
    };
    assert!(
        message.is_some(),
        "the last subscription of the burst was visible when the flush returned; routes up before {before:?}, \
         after the flush {after_flush:?}, now {:?}; mesh queue full events {:?}",
        (routes_up(0), routes_up(1)),
        (mesh_full(0), mesh_full(1))
    );
    assert_eq!((routes_up(0), routes_up(1)), before, "no route closed");
}
