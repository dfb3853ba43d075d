//! Several nodes act as one router (issue 13): three `flit`
//! processes on loopback meshed by routes (each started with the earlier
//! ones as seeds; the earlier ones learn the later ones from their
//! handshakes). Messages, requests and replies cross nodes exactly once,
//! queue groups give each message to one member cluster-wide with local
//! members first, interest follows subscribers as they come and go, a node
//! killed with SIGKILL does not disturb the others and is meshed again when
//! it restarts with its node id, and a node with another secret is refused.

mod cluster_support;
mod common;
mod nats_support;

use std::time::{Duration, Instant};

use cluster_support::{start_node, start_node_with, Cluster, SECRET};
use common::FlitServer;
use flit_client::Client;

const WAIT: Duration = Duration::from_secs(10);

/// Publishes on `subject` from `publisher` until `subscription` gets one:
/// interest from another node becomes visible after its announcement
/// crosses a route (no cluster-wide barrier in this slice).
fn wait_until_routed(publisher: &Client, subject: &str, subscription: &flit_client::Subscription) {
    let deadline = Instant::now() + WAIT;
    loop {
        publisher.publish(subject, b"probe").expect("publish");
        if subscription.next_timeout(Duration::from_millis(50)).expect("receive").is_some() {
            // Drain probes still in flight.
            while subscription.next_timeout(Duration::from_millis(200)).expect("receive").is_some() {}
            return;
        }
        assert!(Instant::now() < deadline, "interest in {subject} did not reach the publisher's node within {WAIT:?}");
    }
}

#[test]
fn messages_cross_nodes_once_in_order_both_ways() {
    let cluster = Cluster::start(3, 2);
    let (a, c) = (cluster.client(0), cluster.client(2));
    let on_c = c.subscribe("orders.>").expect("subscribe");
    wait_until_routed(&a, "orders.probe", &on_c);
    for number in 0..1000u32 {
        a.publish("orders.new", &number.to_le_bytes()).expect("publish");
    }
    for number in 0..1000u32 {
        let message = on_c.next_timeout(WAIT).expect("receive").expect("message");
        assert_eq!(&message.payload[..], &number.to_le_bytes()[..], "in order, none lost, none twice");
    }
    assert!(on_c.next_timeout(Duration::from_millis(300)).expect("receive").is_none(), "nothing more");
    // And from the last node started to the first (meshed by its handshake).
    let on_a = a.subscribe("replies.*").expect("subscribe");
    wait_until_routed(&c, "replies.probe", &on_a);
    c.publish("replies.x", b"back").expect("publish");
    assert_eq!(&on_a.next_timeout(WAIT).expect("receive").expect("message").payload[..], b"back");
}

#[test]
fn requests_cross_nodes_and_nobody_anywhere_means_no_responders() {
    let cluster = Cluster::start(3, 1);
    let (a, b) = (cluster.client(0), cluster.client(1));
    let service = b.subscribe("time.now").expect("subscribe");
    let responder = std::thread::spawn(move || {
        for _ in 0..20 {
            let request = service.next_timeout(WAIT).expect("receive").expect("request");
            b.publish(request.reply.as_deref().expect("reply subject"), b"noon").expect("reply");
        }
    });
    let deadline = Instant::now() + WAIT;
    let mut answered = 0;
    while answered < 20 {
        match a.request("time.now", b"?", Duration::from_millis(500)) {
            Ok(answer) if answer.status == 0 => {
                assert_eq!(&answer.payload[..], b"noon");
                answered += 1;
            }
            // Before the responder's interest has crossed: no responders.
            _ => assert!(Instant::now() < deadline, "no answer across nodes within {WAIT:?}"),
        }
    }
    responder.join().expect("responder");
    let started = Instant::now();
    let outcome = a.request("nobody.anywhere", b"?", Duration::from_secs(5));
    let answered_at_once = started.elapsed() < Duration::from_secs(2);
    assert!(
        answered_at_once && outcome.as_ref().map_or(true, |message| message.status == 503),
        "no responders cluster-wide is answered at once: {outcome:?}"
    );
}

#[test]
fn a_queue_group_gives_each_message_to_one_member_local_first() {
    let cluster = Cluster::start(3, 1);
    let clients: Vec<Client> = (0..3).map(|index| cluster.client(index)).collect();
    let members: Vec<_> = clients.iter().map(|client| client.queue_subscribe("work", "pool").expect("join")).collect();
    let watcher = clients[2].subscribe("work").expect("subscribe");
    wait_until_routed(&clients[0], "work", &watcher);
    // Drain what the probes left in the group.
    for member in &members {
        while member.next_timeout(Duration::from_millis(200)).expect("receive").is_some() {}
    }
    for number in 0..300u32 {
        clients[0].publish("work", &number.to_le_bytes()).expect("publish");
    }
    let count = |member: &flit_client::Subscription| {
        let mut count = 0;
        while member.next_timeout(Duration::from_millis(300)).expect("receive").is_some() {
            count += 1;
        }
        count
    };
    let counts: Vec<usize> = members.iter().map(count).collect();
    assert_eq!(counts, vec![300, 0, 0], "a member on the publisher's node takes them all");
    // Without a local member, the other nodes' members share them, each once.
    members[0].unsubscribe().expect("leave");
    clients[0].flush().expect("flush");
    let deadline = Instant::now() + WAIT;
    let mut received = [0usize; 2];
    let mut sent = 0u32;
    while received.iter().sum::<usize>() < 200 {
        assert!(Instant::now() < deadline, "remote members got {received:?} of {sent}");
        clients[0].publish("work", b"x").expect("publish");
        sent += 1;
        for (index, member) in members[1..].iter().enumerate() {
            while member.next_timeout(Duration::from_millis(1)).expect("receive").is_some() {
                received[index] += 1;
            }
        }
    }
    for (index, member) in members[1..].iter().enumerate() {
        received[index] += count(member);
    }
    assert_eq!(received.iter().sum::<usize>() as u32, sent, "each message to exactly one member: {received:?}");
    assert!(received.iter().all(|share| *share > 0), "both remote nodes take a share: {received:?}");
}

#[test]
fn a_node_killed_and_restarted_rejoins_and_the_others_never_notice() {
    let mut cluster = Cluster::start(3, 1);
    let (b, c) = (cluster.client(1), cluster.client(2));
    let on_c = c.subscribe("steady").expect("subscribe");
    wait_until_routed(&b, "steady", &on_c);
    // SIGKILL node 1 (index 0): no goodbye, its routes just end.
    // (Dropping a FlitServer kills its process with SIGKILL.)
    drop(cluster.nodes[0].take());
    for number in 0..200u32 {
        b.publish("steady", &number.to_le_bytes()).expect("publish");
        let message = on_c.next_timeout(WAIT).expect("receive").expect("B to C while A is dead");
        assert_eq!(&message.payload[..], &number.to_le_bytes()[..]);
    }
    // Restarted with the same node id on the same route address.
    let listen = cluster.routes[0].clone();
    let restarted = start_node(&cluster.directory, 1, 1, &cluster.routes[1..], SECRET, &listen);
    cluster.nodes[0] = Some(restarted);
    let a = cluster.client(0);
    let on_a = a.subscribe("welcome.back").expect("subscribe");
    wait_until_routed(&b, "welcome.back", &on_a);
    let on_c_again = c.subscribe("from.a").expect("subscribe");
    wait_until_routed(&a, "from.a", &on_c_again);
}

#[test]
fn a_node_with_another_secret_is_refused() {
    let cluster = Cluster::start(1, 1);
    let stranger = start_node(
        &cluster.directory,
        9,
        1,
        &cluster.routes,
        "another-secret-of-enough-length-0123456789",
        "127.0.0.1:0",
    );
    let (inside, outside) = (cluster.client(0), stranger.ack_client());
    let on_inside = inside.subscribe("secret.>").expect("subscribe");
    for _ in 0..20 {
        outside.publish("secret.plans", b"x").expect("publish");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(on_inside.next_timeout(Duration::from_millis(300)).expect("receive").is_none(), "nothing crossed");
    // Whichever end checks the other's proof first refuses the route (the
    // stranger keeps redialing): both nodes together count the refusals.
    let failures = |node: &FlitServer| -> f64 {
        let metrics = common::scrape(node.metrics_address.expect("metrics"));
        metrics
            .samples
            .iter()
            .filter(|sample| sample.metric == "flit_route_authentication_failures_total")
            .map(|sample| match sample.value {
                prometheus_parse::Value::Counter(value) | prometheus_parse::Value::Untyped(value) => value,
                _ => 0.0,
            })
            .sum()
    };
    let deadline = Instant::now() + WAIT;
    while failures(cluster.node(0)) + failures(&stranger) == 0.0 {
        assert!(Instant::now() < deadline, "the refused handshakes are counted");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn nats_clients_learn_the_other_nodes_from_connect_urls() {
    let cluster = Cluster::start(0, 1);
    let nats = ["--nats-listen", "127.0.0.1:0"];
    let first = start_node_with(&cluster.directory, 1, 1, &[], SECRET, "127.0.0.1:0", &nats);
    let first_route = first.cluster_address.expect("route listener").to_string();
    let second = start_node_with(&cluster.directory, 2, 1, &[first_route], SECRET, "127.0.0.1:0", &nats);
    let (first_nats, second_nats) = (first.nats_address.expect("NATS"), second.nats_address.expect("NATS"));
    // Each node's INFO lists itself and, once meshed, the other: a NATS
    // client can reconnect to either.
    for (own, other) in [(first_nats, second_nats), (second_nats, first_nats)] {
        let deadline = Instant::now() + WAIT;
        loop {
            let urls = nats_support::RawNats::connect(own).info["connect_urls"].clone();
            let listed = |address: std::net::SocketAddr| {
                urls.as_array().is_some_and(|urls| urls.iter().any(|url| url == &address.to_string()))
            };
            if listed(own) && listed(other) {
                break;
            }
            assert!(Instant::now() < deadline, "INFO of {own} never listed {other}: {urls}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// nats-py (the NATS project's client, unchanged: CI installs it) connected
/// to node 1 only, learns node 2 from INFO, and when node 1 is killed
/// reconnects to node 2 by itself and receives there.
const FAILOVER_CLIENT: &str = r#"
import asyncio, os, sys
import nats

async def main():
    received = asyncio.Event()
    async def on_message(message):
        received.set()
    client = await nats.connect(os.environ["NATS_URL"], reconnect_time_wait=0.1, max_reconnect_attempts=100,
                                connect_timeout=2)
    await client.subscribe("failover.*", cb=on_message)
    await client.flush()
    for _ in range(100):
        if client.discovered_servers:
            break
        await asyncio.sleep(0.05)
    print("discovered", [uri.netloc for uri in client.discovered_servers], flush=True)
    await asyncio.wait_for(received.wait(), timeout=20)
    print("received on", client.connected_url.netloc, flush=True)
    await client.close()

asyncio.run(main())
"#;

#[test]
fn a_nats_client_fails_over_to_a_node_it_learned_from_info() {
    use std::io::BufRead;
    let mut cluster = Cluster::start(0, 1);
    let nats = ["--nats-listen", "127.0.0.1:0"];
    let first = start_node_with(&cluster.directory, 1, 1, &[], SECRET, "127.0.0.1:0", &nats);
    let first_route = first.cluster_address.expect("route listener").to_string();
    let second = start_node_with(&cluster.directory, 2, 1, &[first_route], SECRET, "127.0.0.1:0", &nats);
    let first_nats = first.nats_address.expect("NATS");
    // Meshed (node 1's INFO lists node 2) before the client connects.
    let deadline = Instant::now() + WAIT;
    while nats_support::RawNats::connect(first_nats).info["connect_urls"].as_array().map_or(0, Vec::len) < 2 {
        assert!(Instant::now() < deadline, "node 1 never learned node 2");
        std::thread::sleep(Duration::from_millis(50));
    }
    let python = std::env::var("FLIT_NATS_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut client = std::process::Command::new(python)
        .args(["-c", FAILOVER_CLIENT])
        .env("NATS_URL", format!("nats://{first_nats}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3 (nats-py)");
    let mut lines = std::io::BufReader::new(client.stdout.take().expect("stdout")).lines();
    let Some(Ok(discovered)) = lines.next() else {
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut client.stderr.take().expect("stderr"), &mut stderr).expect("read stderr");
        panic!("the NATS client said nothing: {stderr}");
    };
    assert!(discovered.contains(&second.nats_address.expect("NATS").to_string()), "{discovered}");
    cluster.nodes.push(Some(first));
    // SIGKILL node 1 (dropping a FlitServer kills it).
    drop(cluster.nodes.pop());
    let publisher = second.ack_client();
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut received = None;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    while received.is_none() {
        assert!(Instant::now() < deadline, "the NATS client never received on node 2");
        publisher.publish("failover.test", b"after").expect("publish");
        received = receiver.recv_timeout(Duration::from_millis(100)).ok();
    }
    let received = received.expect("a line");
    assert!(received.contains(&second.nats_address.expect("NATS").to_string()), "{received}");
    let status = client.wait().expect("wait");
    assert!(status.success(), "the client exited with {status}");
}

/// `flit cluster ls --server METRICS_ADDR` on node 1.
fn cluster_ls(node: &FlitServer) -> Vec<Vec<String>> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flit"))
        .args(["cluster", "ls", "--server", &node.metrics_address.expect("metrics").to_string()])
        .output()
        .expect("run flit cluster ls");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn cluster_ls_lists_the_nodes_with_their_state_and_round_trip() {
    let mut cluster = Cluster::start(3, 1);
    let deadline = Instant::now() + WAIT;
    let mut lines = cluster_ls(cluster.node(0));
    // Up once every lane has measured a round trip (pings every 250 ms).
    while lines.len() < 3 || lines[1..].iter().any(|line| line[2] != "up" || line[3] == "0") {
        assert!(Instant::now() < deadline, "not all up with a round trip: {lines:?}");
        std::thread::sleep(Duration::from_millis(100));
        lines = cluster_ls(cluster.node(0));
    }
    for (index, line) in lines.iter().enumerate() {
        assert_eq!(line.len(), 4, "NODE_ID ADDR up|down RTT_US: {line:?}");
        assert_eq!(line[0], (index + 1).to_string(), "node ids in order, this node first");
        assert_eq!(line[1], cluster.routes[index], "the route address");
        assert!(line[3].parse::<u64>().is_ok(), "RTT in microseconds: {line:?}");
    }
    assert_eq!(&lines[0][2..], ["up", "0"], "this node: up, no round trip");
    drop(cluster.nodes[2].take());
    let deadline = Instant::now() + WAIT;
    while cluster_ls(cluster.node(0))[2][2] != "down" {
        assert!(Instant::now() < deadline, "a killed node is shown down");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hex(bytes: [u8; 32]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Routes deliver through the receiving node's subscriptions, so the
/// subscriber's delivery filter applies there: a restricted identity's
/// wildcard and queue-group subscriptions on node 2 get nothing it may not
/// read, whatever node 1 forwards (node 1 counts node 2's interest without
/// filters), and its publishes stay refused on the node it is connected to.
#[test]
fn permissions_hold_across_nodes_for_wildcards_queue_groups_and_replies() {
    let directory = std::env::temp_dir().join(format!("flit-cluster-permissions-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("temporary directory");
    let identities = directory.join("identities.toml");
    let text = format!(
        "[[identity]]\nname = \"writer\"\ntoken_sha256 = \"{}\"\n\
         [[identity]]\nname = \"reader\"\ntoken_sha256 = \"{}\"\n\
         subscribe = {{ allow = [\">\"], deny = [\"secret.>\"] }}\npublish = {{ allow = [\"public.>\", \"_INBOX.>\"] }}\n",
        hex(flit_shard::auth::token_sha256("writer-token-93ac0d")),
        hex(flit_shard::auth::token_sha256("reader-token-5e71b2")),
    );
    std::fs::write(&identities, text).expect("write identities");
    let cluster = Cluster::start_with(2, 1, &["--identities", identities.to_str().expect("utf-8")]);
    let connect = |node: usize, token: &str| {
        let options = flit_client::Options {
            auth_token: Some(token.to_owned()),
            ack_mode: true,
            ..flit_client::Options::default()
        };
        Client::connect_with(cluster.node(node).address, options).expect("connect")
    };
    let (writer, reader) = (connect(0, "writer-token-93ac0d"), connect(1, "reader-token-5e71b2"));
    let everything = reader.subscribe(">").expect("a wildcard overlapping a denied subject is allowed, filtered");
    let grouped = reader.queue_subscribe(">", "readers").expect("the same in a queue group");
    wait_until_routed(&writer, "public.probe", &everything);
    while grouped.next_timeout(Duration::from_millis(200)).expect("receive").is_some() {}
    for number in 0..50u32 {
        writer.publish("secret.plans", &number.to_le_bytes()).expect("publish");
        writer.publish_with("public.news", Some("secret.replies"), &[], &number.to_le_bytes()).expect("publish");
    }
    writer.flush().expect("flush");
    for subscription in [&everything, &grouped] {
        let mut subjects = Vec::new();
        while let Some(message) = subscription.next_timeout(Duration::from_millis(500)).expect("receive") {
            subjects.push(message.subject);
        }
        assert_eq!(subjects.len(), 50, "every public message, nothing else: {subjects:?}");
        assert!(subjects.iter().all(|subject| subject == "public.news"), "{subjects:?}");
    }
    // The reader may not publish to secret subjects, nor name one as a reply
    // subject, on its own node: refused there, never forwarded.
    let spy = writer.subscribe("secret.>").expect("subscribe");
    wait_until_routed(&reader, "public.ping", &writer.subscribe("public.ping").expect("subscribe"));
    assert!(reader.publish("secret.plans", b"x").is_err(), "publish refused");
    assert!(reader.publish_with("public.ask", Some("secret.inbox"), &[], b"x").is_err(), "reply subject refused");
    assert!(spy.next_timeout(Duration::from_millis(500)).expect("receive").is_none(), "nothing crossed");
    std::fs::remove_dir_all(&directory).ok();
}

#[test]
fn route_metrics_count_each_nodes_traffic_and_state() {
    let mut cluster = Cluster::start(3, 2);
    let (a, c) = (cluster.client(0), cluster.client(2));
    let on_c = c.subscribe("metered.>").expect("subscribe");
    wait_until_routed(&a, "metered.probe", &on_c);
    let before = common::scrape(cluster.node(0).metrics_address.expect("metrics"));
    let sent_before = common::metric_sum(&before, "flit_route_node_messages_sent_total", &[("node", "3")]);
    for number in 0..500u32 {
        a.publish("metered.x", &number.to_le_bytes()).expect("publish");
    }
    for _ in 0..500 {
        on_c.next_timeout(WAIT).expect("receive").expect("message");
    }
    let on_a = common::scrape(cluster.node(0).metrics_address.expect("metrics"));
    let sent = common::metric_sum(&on_a, "flit_route_node_messages_sent_total", &[("node", "3")]) - sent_before;
    assert_eq!(sent, 500.0, "node 1 counts what it forwarded to node 3");
    assert!(common::metric_sum(&on_a, "flit_route_node_bytes_sent_total", &[("node", "3")]) > 500.0 * 16.0);
    assert_eq!(common::metric_sum(&on_a, "flit_route_node_up", &[("node", "3")]), 1.0);
    assert_eq!(common::metric_sum(&on_a, "flit_route_node_routes_up", &[("node", "3")]), 2.0, "one per shard");
    let on_c_metrics = common::scrape(cluster.node(2).metrics_address.expect("metrics"));
    assert!(common::metric_sum(&on_c_metrics, "flit_route_node_messages_received_total", &[("node", "1")]) >= 500.0);
    // Node 3 dies: node 1 shows it down.
    drop(cluster.nodes[2].take());
    let deadline = Instant::now() + WAIT;
    loop {
        let scrape = common::scrape(cluster.node(0).metrics_address.expect("metrics"));
        if common::metric_sum(&scrape, "flit_route_node_up", &[("node", "3")]) == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "node 3 never shown down");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn nats_clients_that_take_info_updates_hear_of_a_node_that_joins() {
    let cluster = Cluster::start(0, 1);
    let nats = ["--nats-listen", "127.0.0.1:0"];
    let first = start_node_with(&cluster.directory, 1, 1, &[], SECRET, "127.0.0.1:0", &nats);
    let first_route = first.cluster_address.expect("route listener").to_string();
    let first_nats = first.nats_address.expect("NATS");
    let mut updated = nats_support::RawNats::connect_with(first_nats, r#"{"verbose":false,"protocol":1}"#);
    let mut original = nats_support::RawNats::connect_with(first_nats, r#"{"verbose":false,"protocol":0}"#);
    let second = start_node_with(&cluster.directory, 2, 1, &[first_route], SECRET, "127.0.0.1:0", &nats);
    let second_nats = second.nats_address.expect("NATS").to_string();
    let deadline = Instant::now() + WAIT;
    loop {
        let line = updated.try_line(Duration::from_millis(200));
        if let Ok(line) = &line {
            let json = line.strip_prefix("INFO ").unwrap_or_else(|| panic!("only INFO is expected, got {line:?}"));
            let info: serde_json::Value = serde_json::from_str(json).expect("INFO carries JSON");
            let urls = info["connect_urls"].as_array().expect("connect_urls").clone();
            if urls.iter().any(|url| url == &second_nats) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "no INFO naming the new node {second_nats}");
    }
    // A client of protocol 0 is not sent INFO after CONNECT.
    original.send(b"PING\r\n");
    assert_eq!(original.line(), "PONG");
}
