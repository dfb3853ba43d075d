//! The tokio client fails over between the nodes of a cluster like the
//! blocking one (tests/client_failover.rs): an [`AsyncClusterClient`] given
//! only node 1, which learned node 2 from node 1's Welcome, keeps its
//! subscription across a SIGKILL of node 1; publishes made while no node is
//! reachable are buffered and delivered in order after the reconnect, or
//! refused with `ReconnectBufferFull` past the bound, never dropped silently;
//! a Draining notice moves it before the node closes. Nodes run one shard
//! each (2 cores share them with the test).

mod cluster_support;
mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use cluster_support::{Cluster, Gate};
use flit_client::{AsyncClient, AsyncClusterClient, AsyncSubscription, Client, ClientError, Options};

const WAIT: Duration = Duration::from_secs(10);
/// The bound a failover must meet: detect, reconnect, re-subscribe.
const FAILOVER_BOUND: Duration = Duration::from_secs(3);

fn options() -> Options {
    cluster_support::failover_options()
}

fn run<F: Future>(test: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime").block_on(test)
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "{what} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `address`'s Welcome names another node (the routes come up a
/// moment after the nodes start).
async fn wait_for_a_named_node(address: std::net::SocketAddr) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let named = AsyncClient::connect(address).await.expect("connect").welcome().cluster_urls.clone();
        if !named.is_empty() {
            return named;
        }
        assert!(Instant::now() < deadline, "{address}'s Welcome names no other node within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain async subscriber on `address`, its interest in place on that node.
async fn subscriber_on(address: std::net::SocketAddr, subject: &str) -> (AsyncClient, AsyncSubscription) {
    let client = AsyncClient::connect(address).await.expect("connect the subscriber");
    let subscription = client.subscribe(subject).await.expect("subscribe");
    client.flush().await.expect("flush");
    (client, subscription)
}

#[test]
fn an_async_client_given_one_node_fails_over_after_a_kill_and_its_subscription_works_again() {
    let mut cluster = Cluster::start(2, 1);
    let (first, second) = (cluster.node(0).address, cluster.node(1).address);
    run(async {
        assert_eq!(wait_for_a_named_node(first).await, vec![second.to_string()]);
        let client = AsyncClient::connect_cluster(&[first], options()).await.expect("connect");
        assert_eq!(client.servers(), vec![first.to_string(), second.to_string()], "given, then named");
        assert_eq!(client.connected_server(), Some(first.to_string()));
        let mut subscription = client.subscribe("async.failover").await.expect("subscribe");
        client.flush().await.expect("flush");
        let publisher = AsyncClient::connect(second).await.expect("connect the publisher");
        // Until the interest crossed the route.
        let deadline = Instant::now() + WAIT;
        loop {
            publisher.publish("async.failover", b"probe").await.expect("publish");
            if subscription.next_timeout(Duration::from_millis(50)).await.expect("open").is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "interest did not cross the route within {WAIT:?}");
        }
        while subscription.next_timeout(Duration::from_millis(200)).await.expect("open").is_some() {}

        drop(cluster.nodes[0].take()); // SIGKILL
        let killed = Instant::now();
        loop {
            publisher.publish("async.failover", b"after").await.expect("publish on the survivor");
            if let Some(message) = subscription.next_timeout(Duration::from_millis(20)).await.expect("stays open") {
                assert_eq!(&message.payload[..], b"after");
                break;
            }
            assert!(killed.elapsed() < FAILOVER_BOUND, "no delivery within {FAILOVER_BOUND:?} of the kill");
        }
        assert_eq!(client.connected_server(), Some(second.to_string()), "on the node only the Welcome named");
        assert_eq!(client.reconnects(), 1);
        // Same subscription, one delivery per message; publishing and
        // requests work on the new connection too.
        while subscription.next_timeout(Duration::from_millis(100)).await.expect("open").is_some() {}
        client.publish("async.failover", b"own").await.expect("publish");
        let message = subscription.next_timeout(WAIT).await.expect("open").expect("delivered");
        assert_eq!(&message.payload[..], b"own");
        assert!(subscription.next_timeout(Duration::from_millis(200)).await.expect("open").is_none(), "no duplicate");
        let answer = client.request("async.nobody", b"", Duration::from_secs(2)).await;
        assert!(matches!(answer, Err(ClientError::NoResponders)), "{answer:?}");
        client.close().await.expect("close");
        assert!(matches!(subscription.next_timeout(WAIT).await, Err(ClientError::SubscriptionClosed)));
    });
}

#[test]
fn publishes_while_no_node_is_reachable_arrive_after_the_reconnect_or_are_refused() {
    let mut cluster = Cluster::start(2, 1);
    let gate = Gate::closed_to(cluster.node(1).address);
    run(async {
        // Node 1, then node 2 behind a closed gate only (its own address,
        // which node 1's Welcome names, is not tried).
        let options = Options { reconnect_buffer_bytes_max: 16 * 1024, ignore_discovered_servers: true, ..options() };
        let publisher = AsyncClusterClient::connect(&[cluster.node(0).address, gate.address], options)
            .await
            .expect("connect to node 1");
        let (_subscriber, mut subscription) = subscriber_on(cluster.node(1).address, "async.gap").await;
        let deadline = Instant::now() + WAIT;
        loop {
            publisher.publish("async.gap", b"probe").await.expect("publish");
            if subscription.next_timeout(Duration::from_millis(50)).await.expect("open").is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "interest did not cross the route within {WAIT:?}");
        }
        while subscription.next_timeout(Duration::from_millis(200)).await.expect("open").is_some() {}

        drop(cluster.nodes[0].take()); // SIGKILL: now no node is reachable
        wait_for("the publisher notices its node died", || publisher.connected_server().is_none()).await;
        let mut accepted = Vec::new();
        let mut refused = 0;
        for number in 0..400u32 {
            match publisher.publish("async.gap", &number.to_le_bytes()).await {
                Ok(()) => accepted.push(number),
                Err(ClientError::ReconnectBufferFull { limit_bytes: 16384, .. }) => refused += 1,
                Err(error) => panic!("publish {number}: neither buffered nor refused: {error:?}"),
            }
        }
        assert!(publisher.buffered_bytes() <= 16 * 1024, "bounded: {}", publisher.buffered_bytes());
        assert!(refused > 0 && !accepted.is_empty(), "some buffered ({}), some refused ({refused})", accepted.len());
        assert_eq!(accepted, (0..accepted.len() as u32).collect::<Vec<_>>(), "the buffer fills, then refuses");
        let waited = publisher.flush().await;
        assert!(matches!(waited, Err(ClientError::NotConnected)), "no node: {waited:?}");

        gate.open();
        for number in &accepted {
            let message = subscription.next_timeout(WAIT).await.expect("open").expect("a buffered publish arrives");
            assert_eq!(&message.payload[..], &number.to_le_bytes()[..], "in order, none lost");
        }
        assert!(subscription.next_timeout(Duration::from_millis(200)).await.expect("open").is_none(), "nothing else");
        assert_eq!(publisher.buffered_bytes(), 0);
        assert_eq!(publisher.reconnects(), 1);
        assert_eq!(publisher.connected_server(), Some(gate.address.to_string()));
    });
}

/// On a Draining notice the async client moves at once, while the draining
/// node is still up (kept in its drain by deliveries queued for a subscriber
/// that does not read), and its subscription follows it.
#[test]
fn a_draining_notice_moves_the_async_client_before_the_node_closes() {
    let cluster =
        Cluster::start_with(2, 1, &["--pending-bytes-max", "67108864", "--shutdown-flush-timeout-ms", "20000"]);
    let servers = [cluster.node(0).address, cluster.node(1).address];
    let mut stuck = common::RawConnection::connect_on_shard(servers[0], 0);
    stuck.subscribe_and_flush("drain.stuck", 1);
    run(async {
        let client = AsyncClusterClient::connect(&servers, options()).await.expect("connect");
        let mut subscription = client.subscribe("drain.moves").await.expect("subscribe");
        client.flush().await.expect("flush");
        // Deliveries the router must keep writing during the drain.
        let filler = AsyncClient::connect(servers[0]).await.expect("connect");
        let payload = vec![b'f'; 16 * 1024];
        for _ in 0..1_500 {
            filler.publish("drain.stuck", &payload).await.expect("publish");
        }
        filler.flush().await.expect("flush");
        let metrics = cluster.node(0).metrics_address.expect("metrics");
        wait_for("deliveries are queued on node 1", || {
            common::metric_sum(&common::scrape(metrics), "flit_shard_pending_bytes", &[]) > 0.0
        })
        .await;
        cluster.node(0).terminate();
        let signalled = Instant::now();
        wait_for("the client moves to node 2", || client.connected_server() == Some(servers[1].to_string())).await;
        assert!(signalled.elapsed() < FAILOVER_BOUND, "moved {:?} after the signal", signalled.elapsed());
        assert_eq!(common::http_get(metrics, "/healthz").0, 200, "node 1 is still draining: the client did not wait");
        let publisher = Client::connect(servers[1]).expect("connect");
        publisher.publish("drain.moves", b"on node 2").expect("publish");
        publisher.flush().expect("flush");
        let message = subscription.next_timeout(WAIT).await.expect("open").expect("the subscription followed");
        assert_eq!(&message.payload[..], b"on node 2");
        assert_eq!(client.reconnects(), 1);
    });
    drop(stuck);
}
