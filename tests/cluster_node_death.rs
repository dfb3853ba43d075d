//! Issue 13, failure: SIGKILL of one node while a request/reply loop runs
//! between the two others. Three nodes (A, B, C: ids 1..3, one shard each);
//! a responder on B, a requester on A looping requests to it; on C, a Rust
//! `ClusterClient` and a NATS client (nats-py, unchanged), both working.
//! Then C is killed with SIGKILL. Proves:
//!
//! - zero failed requests between the survivors, before, during and after;
//! - A shows C `down` in `/cluster` within the bound (its routes end: EOF,
//!   so at once);
//! - the dead node's Rust client reconnects to a survivor: its subscription
//!   receives again (a publish on B) and its publishes arrive (on A);
//! - the dead node's NATS client reconnects to a survivor it learned from
//!   INFO's `connect_urls` and keeps working: it answers requests from A.
//!
//! Prints `MEASURED kill_detection_ms=`, `rust_client_failover_ms=` (its
//! subscription receives again), `nats_client_reconnect_ms=` (nats-py's
//! reconnected callback) and `nats_client_failover_ms=` (it answers a
//! request again; polled with 200 ms requests, the first of which may go to
//! C's withdrawn interest) (see bench/cluster_failures.sh). Bounds are
//! generous: the machine running the tests is shared and slow.

mod cluster_support;
mod common;
mod nats_support;

use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_support::{wait_for_view, Cluster};
use flit_client::{ClusterClient, Options};

const WAIT: Duration = Duration::from_secs(10);
/// A dead node's routes end with EOF: detection is immediate; this bound
/// leaves room for a loaded machine.
const DETECTION_BOUND: Duration = Duration::from_secs(2);

/// A nats-py client that answers requests on `nats.where` with the address
/// it is connected to, prints what it discovered and each reconnect, and
/// exits on a request whose payload is `stop`.
const NATS_RESPONDER: &str = r#"
import asyncio, os
import nats

async def main():
    done = asyncio.Event()
    client = None
    async def on_request(message):
        await message.respond(client.connected_url.netloc.encode())
        if message.data == b"stop":
            done.set()
    async def on_reconnect():
        print("reconnected", client.connected_url.netloc, flush=True)
    client = await nats.connect(os.environ["NATS_URL"], reconnect_time_wait=0.1, max_reconnect_attempts=600,
                                connect_timeout=2, reconnected_cb=on_reconnect)
    await client.subscribe("nats.where", cb=on_request)
    await client.flush()
    for _ in range(200):
        if len(client.discovered_servers) >= 2:
            break
        await asyncio.sleep(0.05)
    print("discovered", " ".join(uri.netloc for uri in client.discovered_servers), flush=True)
    await asyncio.wait_for(done.wait(), timeout=120)
    await client.flush()
    await client.close()

asyncio.run(main())
"#;

fn options() -> Options {
    Options {
        reconnect_delay_min: Duration::from_millis(20),
        reconnect_delay_max: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(1),
        flush_timeout: Duration::from_secs(2),
        ..Options::default()
    }
}

/// Where the NATS client says it is connected (its answer on `nats.where`),
/// asked from `requester`; None without an answer within 200 ms.
fn where_is_nats(requester: &flit_client::Client) -> Option<String> {
    requester
        .request("nats.where", b"?", Duration::from_millis(200))
        .ok()
        .filter(|answer| answer.status == 0)
        .map(|answer| String::from_utf8_lossy(&answer.payload).into_owned())
}

/// Requests from `requester` to `subject` until `stop`; each must be
/// answered with `expected` within 2 s. Returns (answered, failures).
fn request_loop(
    requester: flit_client::Client,
    subject: &'static str,
    expected: &'static [u8],
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut answered, mut failures) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            match requester.request(subject, b"?", Duration::from_secs(2)) {
                Ok(answer) if answer.status == 0 && &answer.payload[..] == expected => answered += 1,
                Ok(answer) => failures.push(format!("status {} payload {:?}", answer.status, answer.payload)),
                Err(error) => failures.push(error.to_string()),
            }
            // Pacing (2 cores for three nodes and the test), not a wait.
            std::thread::sleep(Duration::from_millis(5));
        }
        (answered, failures)
    })
}

#[test]
fn sigkill_of_a_node_loses_no_request_between_survivors_and_its_clients_move() {
    let mut cluster = Cluster::start_with(3, 1, &["--nats-listen", "127.0.0.1:0"]);
    let nats_of = |index: usize| cluster.node(index).nats_address.expect("--nats-listen").to_string();
    let (nats_a, nats_b, nats_c) = (nats_of(0), nats_of(1), nats_of(2));
    for peer in [2, 3] {
        wait_for_view(cluster.node(0), peer, true, WAIT);
    }

    // The responder on B, and A's requests reaching it.
    let (a, b) = (cluster.client(0), cluster.client(1));
    let service = b.subscribe("svc.b").expect("subscribe");
    let stop = Arc::new(AtomicBool::new(false));
    let responder = {
        let (b, stop) = (b.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(request) = service.next_timeout(Duration::from_millis(100)).expect("receive") {
                    b.publish(request.reply.as_deref().expect("a reply subject"), b"B").expect("reply");
                }
            }
        })
    };
    let deadline = Instant::now() + WAIT;
    while !a.request("svc.b", b"?", Duration::from_millis(500)).is_ok_and(|answer| answer.status == 0) {
        assert!(Instant::now() < deadline, "B's responder never reachable from A");
    }

    // The dead-to-be node's clients: a Rust ClusterClient (C first in its
    // list) and nats-py, each shown working through C.
    let servers = [cluster.node(2).address, cluster.node(0).address, cluster.node(1).address];
    let rust = ClusterClient::connect(&servers, options()).expect("connect");
    assert_eq!(rust.connected_server(), Some(servers[0].to_string()), "on C first");
    let rust_inbox = rust.subscribe("rust.inbox").expect("subscribe");
    rust.flush().expect("flush");
    let deadline = Instant::now() + WAIT;
    loop {
        b.publish("rust.inbox", b"probe").expect("publish");
        if rust_inbox.next_timeout(Duration::from_millis(50)).expect("receive").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "B's publishes never reached the Rust client on C");
    }
    while rust_inbox.next_timeout(Duration::from_millis(200)).expect("receive").is_some() {}
    let rust_outbox = a.subscribe("rust.outbox").expect("subscribe");
    // Meshed: C's INFO lists three nodes before the NATS client connects.
    let deadline = Instant::now() + WAIT;
    while nats_support::RawNats::connect(cluster.node(2).nats_address.expect("NATS")).info["connect_urls"]
        .as_array()
        .map_or(0, Vec::len)
        < 3
    {
        assert!(Instant::now() < deadline, "C never listed the other nodes in INFO");
        std::thread::sleep(Duration::from_millis(50));
    }
    let python = std::env::var("FLIT_NATS_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut nats_client = std::process::Command::new(python)
        .args(["-u", "-c", NATS_RESPONDER])
        .env("NATS_URL", format!("nats://{nats_c}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3 (nats-py)");
    let mut lines = std::io::BufReader::new(nats_client.stdout.take().expect("stdout")).lines();
    let discovered = match lines.next() {
        Some(Ok(line)) => line,
        _ => {
            let mut stderr = String::new();
            let _ = std::io::Read::read_to_string(&mut nats_client.stderr.take().expect("stderr"), &mut stderr);
            panic!("the NATS client said nothing: {stderr}");
        }
    };
    assert!(discovered.contains(&nats_a) && discovered.contains(&nats_b), "{discovered}");
    // Its later lines ("reconnected ADDR"), with when they arrived.
    let (sender, printed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = sender.send((Instant::now(), line));
        }
    });
    let deadline = Instant::now() + WAIT;
    let before = loop {
        if let Some(answer) = where_is_nats(&a) {
            break answer;
        }
        assert!(Instant::now() < deadline, "the NATS client on C never answered A");
    };
    assert_eq!(before, nats_c, "the NATS client is on C");

    // Requests A -> B run throughout; then SIGKILL C.
    let requests = request_loop(a.clone(), "svc.b", b"B", Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(300)); // some requests before the kill
    drop(cluster.nodes[2].take());
    let killed = Instant::now();
    // Asks for the NATS client from A until it answers again (at most 30 s).
    let nats_watch = {
        let a = a.clone();
        std::thread::spawn(move || loop {
            let answer = where_is_nats(&a);
            if answer.is_some() || killed.elapsed() > Duration::from_secs(30) {
                return (killed.elapsed(), answer);
            }
        })
    };

    let detected = wait_for_view(cluster.node(0), 3, false, DETECTION_BOUND);
    eprintln!("MEASURED kill_detection_ms={}", detected.as_millis());

    // The Rust client: receives on a survivor, and publishes from there.
    loop {
        b.publish("rust.inbox", b"after").expect("publish");
        if let Some(message) = rust_inbox.next_timeout(Duration::from_millis(20)).expect("the subscription stays") {
            assert_eq!(&message.payload[..], b"after");
            break;
        }
        assert!(killed.elapsed() < WAIT, "the Rust client never received again after the kill");
    }
    eprintln!("MEASURED rust_client_failover_ms={}", killed.elapsed().as_millis());
    let moved_to = rust.connected_server().expect("connected");
    assert!(moved_to == servers[1].to_string() || moved_to == servers[2].to_string(), "{moved_to}");
    let deadline = Instant::now() + WAIT;
    loop {
        rust.publish("rust.outbox", b"from the moved client").expect("publish");
        if rust_outbox.next_timeout(Duration::from_millis(50)).expect("receive").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the moved Rust client's publishes never reached A");
    }

    // The NATS client: reconnected by itself, answers again.
    let (nats_failover, after) = nats_watch.join().expect("NATS watcher");
    let after = after.expect("the NATS client answered again within 30 s of the kill");
    eprintln!("MEASURED nats_client_failover_ms={}", nats_failover.as_millis());
    assert!(after == nats_a || after == nats_b, "reconnected to a survivor ({nats_a} or {nats_b}): {after}");
    let (reconnected_at, line) = printed.recv_timeout(Duration::from_secs(5)).expect("nats-py's reconnected callback");
    assert_eq!(line, format!("reconnected {after}"));
    eprintln!("MEASURED nats_client_reconnect_ms={}", (reconnected_at - killed).as_millis());

    // More requests after everything settled, then stop and count.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (answered, failures) = requests.join().expect("requester");
    responder.join().expect("responder");
    eprintln!("requests A -> B: {answered} answered, {} failed", failures.len());
    assert!(failures.is_empty(), "requests between survivors failed: {failures:?}");
    assert!(answered >= 20, "the loop ran throughout: {answered} answered");

    let stopped = a.request("nats.where", b"stop", Duration::from_secs(2));
    assert!(stopped.is_ok(), "{stopped:?}");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = nats_client.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the NATS client did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut nats_client.stderr.take().expect("stderr"), &mut stderr);
    assert!(status.success(), "the NATS client exited with {status}: {stderr}");
}
