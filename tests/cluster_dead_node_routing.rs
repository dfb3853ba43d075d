//! Issue 13, failure: no request is routed to a node after its route has
//! closed. A queue group with members on B and C (ids 2, 3) and none on A;
//! A sends requests in a loop, which the group shares between B and C.
//!
//! - C killed with SIGKILL: once A's `/cluster` shows C down, every request
//!   from A is answered, by B; none is lost to C. (Requests already
//!   forwarded to C when it died are lost, at most once; they are counted
//!   and printed, not asserted.)
//! - C's route cut by a proxy while C lives (its clients stay connected to
//!   it): the same, and after the heal the group is shared with C again.

mod cluster_support;
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_support::{wait_for_view, Cluster, ProxiedCluster};
use flit_client::Client;

const WAIT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A member of group `pool` on `svc.pool` that answers with `name` until `stop`.
fn member(client: Client, name: &'static str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let subscription = client.queue_subscribe("svc.pool", "pool").expect("join");
    client.flush().expect("flush");
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Ok(Some(request)) = subscription.next_timeout(Duration::from_millis(100)) {
                let _ = client.publish(request.reply.as_deref().expect("a reply subject"), name.as_bytes());
            }
        }
    })
}

/// One request: the answering member's name, or what went wrong.
fn ask(requester: &Client) -> Result<String, String> {
    match requester.request("svc.pool", b"?", REQUEST_TIMEOUT) {
        Ok(answer) if answer.status == 0 => Ok(String::from_utf8_lossy(&answer.payload).into_owned()),
        Ok(answer) => Err(format!("status {}", answer.status)),
        Err(error) => Err(error.to_string()),
    }
}

/// Requests until both members have answered (interest from both crossed).
fn until_both_answer(requester: &Client) {
    let deadline = Instant::now() + WAIT;
    let (mut b, mut c) = (false, false);
    while !(b && c) {
        match ask(requester).as_deref() {
            Ok("B") => b = true,
            Ok("C") => c = true,
            _ => {}
        }
        assert!(Instant::now() < deadline, "not both members answered within {WAIT:?} (B {b}, C {c})");
    }
}

/// Requests from `requester` in a loop until `stop`: (when sent, outcome).
type Log = Arc<Mutex<Vec<(Instant, Result<String, String>)>>>;

fn request_loop(requester: Client, stop: Arc<AtomicBool>) -> (Log, std::thread::JoinHandle<()>) {
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let writer = Arc::clone(&log);
    let handle = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let sent = Instant::now();
            let outcome = ask(&requester);
            writer.lock().expect("log").push((sent, outcome));
            std::thread::sleep(Duration::from_millis(2)); // pacing, not a wait
        }
    });
    (log, handle)
}

/// Waits (bounded) until the loop has sent `count` requests since `since`.
fn until_sent_since(log: &Log, since: Instant, count: usize) {
    let deadline = Instant::now() + WAIT;
    while log.lock().expect("log").iter().filter(|(sent, _)| *sent >= since).count() < count {
        assert!(Instant::now() < deadline, "fewer than {count} requests sent within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// After `down` (A shows C down), every request was answered by B; returns
/// (answered after, lost before).
fn check_after(log: &Log, down: Instant) -> (usize, usize) {
    let log = log.lock().expect("log");
    let after: Vec<_> = log.iter().filter(|(sent, _)| *sent >= down).map(|(_, outcome)| outcome).collect();
    let wrong: Vec<_> = after.iter().filter(|outcome| outcome.as_deref() != Ok("B")).collect();
    assert!(wrong.is_empty(), "requests sent after A showed C down, not answered by B: {wrong:?}");
    let lost_before = log.iter().filter(|(sent, outcome)| *sent < down && outcome.is_err()).count();
    (after.len(), lost_before)
}

#[test]
fn after_a_killed_node_is_down_every_request_goes_to_the_survivor() {
    let mut cluster = Cluster::start(3, 1);
    let stop = Arc::new(AtomicBool::new(false));
    let on_b = member(cluster.client(1), "B", Arc::clone(&stop));
    let _on_c = member(cluster.client(2), "C", Arc::clone(&stop));
    let a = cluster.client(0);
    until_both_answer(&a);
    let loop_stop = Arc::new(AtomicBool::new(false));
    let (log, requests) = request_loop(a.clone(), Arc::clone(&loop_stop));
    until_sent_since(&log, Instant::now(), 50); // requests before the kill
    drop(cluster.nodes[2].take()); // SIGKILL C
    let killed = Instant::now();
    wait_for_view(cluster.node(0), 3, false, Duration::from_secs(5));
    let down = Instant::now();
    eprintln!("MEASURED kill_detection_ms={}", (down - killed).as_millis());
    until_sent_since(&log, down, 100); // the loop runs on
    loop_stop.store(true, Ordering::Relaxed);
    requests.join().expect("requester");
    let (after, lost_before) = check_after(&log, down);
    eprintln!("requests lost to C between the kill and A showing it down: {lost_before}; answered after: {after}");
    assert!(after >= 20, "the loop ran after the detection: {after}");
    // And a plain run of requests, all to B.
    for _ in 0..100 {
        assert_eq!(ask(&a).as_deref(), Ok("B"));
    }
    stop.store(true, Ordering::Relaxed);
    on_b.join().expect("member on B");
}

#[test]
fn a_cut_route_takes_its_node_out_of_the_rotation_until_healed() {
    let cluster = ProxiedCluster::start(3, 1, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let _on_b = member(cluster.client(1), "B", Arc::clone(&stop));
    let _on_c = member(cluster.client(2), "C", Arc::clone(&stop));
    let a = cluster.client(0);
    until_both_answer(&a);
    let loop_stop = Arc::new(AtomicBool::new(false));
    let (log, requests) = request_loop(a.clone(), Arc::clone(&loop_stop));
    until_sent_since(&log, Instant::now(), 50);
    // Every lane into C ends (A's and B's), and redials are refused; C and
    // its lanes out (to A and B) live on.
    cluster.proxies[2].cut();
    wait_for_view(cluster.node(0), 3, false, Duration::from_secs(5));
    let down = Instant::now();
    until_sent_since(&log, down, 100);
    loop_stop.store(true, Ordering::Relaxed);
    requests.join().expect("requester");
    let (after, lost_before) = check_after(&log, down);
    eprintln!("requests lost to C between the cut and A showing it down: {lost_before}; answered after: {after}");
    assert!(after >= 20, "the loop ran after the detection: {after}");
    assert_eq!(cluster.proxies[2].open_connections(), 0, "no lane into C while cut");
    cluster.proxies[2].heal();
    wait_for_view(cluster.node(0), 3, true, WAIT);
    until_both_answer(&a);
    stop.store(true, Ordering::Relaxed);
}
