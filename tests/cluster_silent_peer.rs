//! Issue 13, failure: a silent peer (no EOF, no reset: a hung host, or a
//! network dropping every packet) is detected by the routes' pings and
//! silence limit (pings every 250 ms, a lane silent for 1 s is closed):
//!
//! - through fault proxies, every lane to and from B goes silent while A
//!   publishes numbered messages for subscribers on B and C: A shows B down
//!   within the bound (target 2 s; asserted 5 s, the machine is shared),
//!   C never notices anything (it gets every message once, in order), and B
//!   gets each message at most once, in order, and again after the heal;
//! - a process stopped with SIGSTOP (the kernel keeps its sockets open) is
//!   shown down the same way, and rejoins when continued;
//! - a slow link (300 ms each way, through a proxy's delay) is not silent:
//!   it stays up past the silence limit, delivers in order, and `/cluster`
//!   shows its round trip.
//!
//! Prints `MEASURED silent_peer_detection_ms=`, `silent_peer_heal_ms=`,
//! `sigstop_detection_ms=` and `slow_link_round_trip_ms=` (see
//! bench/cluster_failures.sh).

mod cluster_support;
mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_support::{sees_up, wait_for_view, wait_until_routed, Cluster, ProxiedCluster};

const WAIT: Duration = Duration::from_secs(10);
/// The detection target is 2 s (1 s of silence, swept every 250 ms); the
/// assertion leaves room for a loaded machine.
const DETECTION_BOUND: Duration = Duration::from_secs(5);

/// Every number received on `subscription` until it is quiet for 500 ms.
fn drain_numbers(subscription: &flit_client::Subscription) -> Vec<u32> {
    let mut numbers = Vec::new();
    while let Some(message) = subscription.next_timeout(Duration::from_millis(500)).expect("receive") {
        let bytes: [u8; 4] = message.payload[..].try_into().expect("a numbered message");
        numbers.push(u32::from_le_bytes(bytes));
    }
    numbers
}

#[test]
fn a_silent_peer_is_down_within_the_bound_and_nothing_is_delivered_twice() {
    let cluster = ProxiedCluster::start(3, 1, &[]);
    for (node, peers) in [(0, [2, 3]), (1, [1, 3]), (2, [1, 2])] {
        for peer in peers {
            wait_for_view(cluster.node(node), peer, true, WAIT);
        }
    }
    let (a, b, c) = (cluster.client(0), cluster.client(1), cluster.client(2));
    let (on_b, on_c) = (b.subscribe("feed").expect("subscribe"), c.subscribe("feed").expect("subscribe"));
    wait_until_routed(&a, "feed", &on_b, WAIT);
    wait_until_routed(&a, "feed", &on_c, WAIT);
    while on_b.next_timeout(Duration::from_millis(200)).expect("receive").is_some() {} // C's probes

    // A publishes numbered messages every 5 ms throughout.
    let (stop, next) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU32::new(0)));
    let publisher = {
        let (a, stop, next) = (a.clone(), Arc::clone(&stop), Arc::clone(&next));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let number = next.load(Ordering::Relaxed);
                a.publish("feed", &number.to_le_bytes()).expect("publish on A");
                next.store(number + 1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300)); // some delivered before

    // B goes silent: lanes into B (its proxy), and lanes from B (dialed by
    // node 2, through A's and C's proxies).
    cluster.proxies[1].blackhole();
    cluster.proxies[0].blackhole_from(&[2]);
    cluster.proxies[2].blackhole_from(&[2]);
    let silenced = Instant::now();
    let detected = wait_for_view(cluster.node(0), 2, false, DETECTION_BOUND);
    eprintln!("MEASURED silent_peer_detection_ms={}", detected.as_millis());
    wait_for_view(cluster.node(2), 2, false, DETECTION_BOUND.saturating_sub(silenced.elapsed()));
    // B, whose lanes are all silent too, shows both others down.
    wait_for_view(cluster.node(1), 1, false, DETECTION_BOUND.saturating_sub(silenced.elapsed()));
    wait_for_view(cluster.node(1), 3, false, DETECTION_BOUND.saturating_sub(silenced.elapsed()));
    assert!(sees_up(cluster.node(0), 3) && sees_up(cluster.node(2), 1), "A and C never lose each other");
    std::thread::sleep(Duration::from_millis(500)); // publishes while B is down

    for proxy in &cluster.proxies {
        proxy.heal();
    }
    let healed = Instant::now();
    let published_at_heal = next.load(Ordering::Relaxed);
    wait_for_view(cluster.node(0), 2, true, WAIT);
    // B receives again: a message published after the heal arrives.
    let mut on_b_numbers = Vec::new();
    loop {
        if let Some(message) = on_b.next_timeout(Duration::from_millis(20)).expect("receive") {
            let bytes: [u8; 4] = message.payload[..].try_into().expect("a numbered message");
            on_b_numbers.push(u32::from_le_bytes(bytes));
            if on_b_numbers.last() >= Some(&published_at_heal) {
                break;
            }
        }
        assert!(healed.elapsed() < WAIT, "B got nothing published after the heal within {WAIT:?}");
    }
    eprintln!("MEASURED silent_peer_heal_ms={}", healed.elapsed().as_millis());
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    publisher.join().expect("publisher");
    let published = next.load(Ordering::Relaxed);
    on_b_numbers.extend(drain_numbers(&on_b));
    let on_c_numbers = drain_numbers(&on_c);

    assert_eq!(on_c_numbers, (0..published).collect::<Vec<_>>(), "C: every message once, in order");
    assert!(
        on_b_numbers.windows(2).all(|pair| pair[0] < pair[1]),
        "B: each message at most once, in order: {on_b_numbers:?}"
    );
    assert!(on_b_numbers.first() == Some(&0), "B got the messages before the silence");
    assert_eq!(on_b_numbers.last(), Some(&(published - 1)), "B gets everything again after the heal");
    let missed = published as usize - on_b_numbers.len();
    eprintln!("B missed {missed} of {published} messages (published while its lanes were silent)");
    // A drops (and counts) what it has for B while its lane to B is down,
    // and forwards nothing once B's interest is withdrawn (its lane to A
    // closed): which comes first varies, so the count is printed only.
    let dropped = common::metric_sum(
        &common::scrape(cluster.node(0).metrics_address.expect("metrics")),
        "flit_route_messages_dropped_total",
        &[],
    );
    eprintln!("A counted {dropped} route messages dropped");
    assert!(missed > 0, "the silence cut B off for a while: {missed}");
}

#[test]
fn a_stopped_process_is_down_within_the_bound_and_rejoins_when_continued() {
    let cluster = Cluster::start(3, 1);
    for peer in [2, 3] {
        wait_for_view(cluster.node(0), peer, true, WAIT);
    }
    let (a, b) = (cluster.client(0), cluster.client(1));
    let on_b = b.subscribe("after.stop").expect("subscribe");
    wait_until_routed(&a, "after.stop", &on_b, WAIT);
    cluster.node(1).signal("STOP");
    let detected = wait_for_view(cluster.node(0), 2, false, DETECTION_BOUND);
    eprintln!("MEASURED sigstop_detection_ms={}", detected.as_millis());
    assert!(sees_up(cluster.node(0), 3), "A still sees C");
    cluster.node(1).signal("CONT");
    wait_for_view(cluster.node(0), 2, true, WAIT);
    wait_until_routed(&a, "after.stop", &on_b, WAIT);
}

/// Node `peer`'s round trip in microseconds as `node`'s `/cluster` shows it.
fn round_trip_micros(node: &common::FlitServer, peer: u32) -> u64 {
    let (_, body) = common::http_get(node.metrics_address.expect("metrics"), "/cluster");
    let line = body.lines().find(|line| line.starts_with(&format!("{peer} "))).expect("listed");
    line.split_whitespace().nth(3).and_then(|micros| micros.parse().ok()).expect("RTT_US")
}

#[test]
fn a_slow_link_under_the_silence_limit_stays_up_and_delivers_in_order() {
    let cluster = ProxiedCluster::start(3, 1, &[]);
    wait_for_view(cluster.node(0), 2, true, WAIT);
    let (a, b) = (cluster.client(0), cluster.client(1));
    let on_b = b.subscribe("slow").expect("subscribe");
    wait_until_routed(&a, "slow", &on_b, WAIT);
    // 300 ms each way on the lanes into B: A's pings to B come back after
    // 600 ms, under the 1 s silence limit. Slow is not silent.
    cluster.proxies[1].delay(Duration::from_millis(300));
    let slowed = Instant::now();
    for number in 0..200u32 {
        a.publish("slow", &number.to_le_bytes()).expect("publish");
    }
    for number in 0..200u32 {
        let message = on_b.next_timeout(WAIT).expect("receive").expect("delivered over the slow link");
        assert_eq!(&message.payload[..], &number.to_le_bytes()[..], "in order, none lost");
    }
    assert!(slowed.elapsed() >= Duration::from_millis(300), "the delay applied");
    // Up throughout, for longer than the silence limit; the round trip shows the latency.
    let mut slowest = 0;
    while slowed.elapsed() < Duration::from_secs(3) {
        assert!(sees_up(cluster.node(0), 2), "a slow lane was taken for a silent one");
        slowest = slowest.max(round_trip_micros(cluster.node(0), 2));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(slowest >= 600_000, "the round trip includes 2 x 300 ms: {slowest} us");
    eprintln!("MEASURED slow_link_round_trip_ms={}", slowest / 1000);
}
