//! Durable publishes in a cluster (issue 13: placement and forwarding): a
//! stream lives on the node where it was created; a durable publish on any
//! other node is forwarded to that node, stored there, and acknowledged to
//! the publisher with the stream's sequence; plain publishes the stream
//! captures are stored too, whichever node they were published on. When the
//! stream's node is gone, a durable publish is refused (never acknowledged
//! without being stored), and once the node is back with its data, storing
//! resumes where the sequence left off. A NATS client's publish with a reply
//! subject on a node without the stream is answered on that subject once the
//! stream's node stored it.

mod cluster_support;
mod common;
mod nats_support;
mod stream_support;

use std::path::Path;
use std::time::{Duration, Instant};

use cluster_support::{start_node_with, SECRET};
use common::FlitServer;
use flit_client::stream::{AckPolicy, ConsumerConfigSpec, StreamCode};
use flit_client::{Client, ClientError};
use stream_support::{add_stream, TempDir, FETCH_WAIT};

const WAIT: Duration = Duration::from_secs(10);

/// Node `node_id` of a cluster, with its own data directory under `root`.
fn start(root: &Path, node_id: u32, shards: usize, seeds: &[String], route: &str) -> FlitServer {
    let data = root.join(format!("node-{node_id}"));
    std::fs::create_dir_all(&data).expect("data directory");
    let data = data.to_str().expect("utf-8").to_string();
    start_node_with(root, node_id, shards, seeds, SECRET, route, &["--data-dir", &data])
}

fn start_three(root: &Path, shards: usize) -> (Vec<Option<FlitServer>>, Vec<String>) {
    let mut nodes = Vec::new();
    let mut routes: Vec<String> = Vec::new();
    for node_id in 1..=3 {
        let node = start(root, node_id, shards, &routes, "127.0.0.1:0");
        routes.push(node.cluster_address.expect("route listener").to_string());
        nodes.push(Some(node));
    }
    (nodes, routes)
}

/// Durable-publishes `subject` from `client` until the stream's node has
/// announced its capture to the publisher's node (before that: 404) and the
/// publisher's node has its route to it up (before that: 503).
fn wait_until_captured(client: &Client, subject: &str) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        match client.publish_durable(subject, b"probe") {
            Ok(acked) => return acked.sequence,
            Err(error) if matches!(error.stream_code(), Some(StreamCode::NotFound | StreamCode::Unavailable)) => {
                assert!(Instant::now() < deadline, "the stream's capture never reached this node");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => panic!("unexpected refusal: {error}"),
        }
    }
}

fn payloads(client: &Client, stream: &str, expected: usize) -> Vec<(u64, String)> {
    let config = ConsumerConfigSpec { ack_policy: AckPolicy::None, ..ConsumerConfigSpec::default() };
    let consumer = client.consumer_add(stream, config).expect("ephemeral consumer");
    let name = consumer.config.name.expect("named by the server");
    let messages = client.fetch(stream, &name, expected as u32 + 1, FETCH_WAIT).expect("fetch");
    messages.into_iter().map(|message| (message.sequence, String::from_utf8_lossy(&message.payload).into())).collect()
}

#[test]
fn durable_publishes_on_any_node_are_stored_by_the_streams_node() {
    for shards in [1, 2] {
        let root = TempDir::new("cluster-streams");
        let (nodes, _) = start_three(&root.path, shards);
        let clients: Vec<Client> = nodes.iter().map(|node| node.as_ref().expect("up").ack_client()).collect();
        add_stream(&clients[2], "orders", &["orders.>"]);
        let mut stored =
            vec![wait_until_captured(&clients[0], "orders.probe"), wait_until_captured(&clients[1], "orders.probe")];
        for index in 0..30 {
            for (node, client) in clients.iter().enumerate() {
                let acked = client.publish_durable("orders.new", format!("{node}-{index}").as_bytes()).expect("stored");
                assert_eq!(acked.stream, "orders", "shards={shards}");
                stored.push(acked.sequence);
            }
        }
        // A plain publish on another node is captured by the stream too.
        clients[0].publish("orders.plain", b"plain").expect("publish");
        clients[0].flush().expect("flush");
        let total = stored.len() + 1;
        let deadline = Instant::now() + WAIT;
        while clients[2].stream_info("orders").expect("info").messages < total as u64 {
            assert!(Instant::now() < deadline, "shards={shards}: the plain publish was not stored on node 3");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut sorted = stored.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), stored.len(), "shards={shards}: every acknowledgement names its own sequence");
        let messages = payloads(&clients[2], "orders", total);
        assert_eq!(messages.len(), total, "shards={shards}");
        assert_eq!(
            messages.iter().map(|(sequence, _)| *sequence).collect::<Vec<_>>(),
            (1..=total as u64).collect::<Vec<_>>()
        );
        for node in 0..3 {
            for index in 0..30 {
                let payload = format!("{node}-{index}");
                assert!(messages.iter().any(|(_, stored)| *stored == payload), "shards={shards}: {payload} missing");
            }
        }
        assert!(messages.iter().any(|(_, stored)| stored == "plain"), "shards={shards}: the plain publish");
        // A subject no node's stream captures is refused, on every node.
        for client in &clients {
            let refused = client.publish_durable("nothing.here", b"x").expect_err("no stream anywhere");
            assert_eq!(refused.stream_code(), Some(StreamCode::NotFound), "{refused}");
        }
    }
}

#[test]
fn without_the_streams_node_a_durable_publish_is_refused_and_resumes_when_it_returns() {
    let root = TempDir::new("cluster-streams-down");
    let (mut nodes, routes) = start_three(&root.path, 1);
    let publisher = nodes[0].as_ref().expect("up").ack_client();
    let owner = nodes[2].as_ref().expect("up").ack_client();
    add_stream(&owner, "orders", &["orders.>"]);
    let mut last = wait_until_captured(&publisher, "orders.probe");
    for _ in 0..10 {
        last = publisher.publish_durable("orders.new", b"before").expect("stored").sequence;
    }
    drop(owner);
    let route = routes[2].clone();
    nodes[2] = None; // SIGKILL
                     // Until the node is back, nothing is acknowledged: refused 503 while its
                     // capture is still known here, 404 once it is withdrawn.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match publisher.publish_durable("orders.new", b"while down") {
            Ok(acked) => panic!("acknowledged with the stream's node dead: {acked:?}"),
            Err(ClientError::Stream { code, .. }) => assert!(code == 503 || code == 404, "code {code}"),
            Err(error) => panic!("unexpected error: {error}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Restarted with its id, its data and its route address: the stream is
    // back and the sequence continues.
    let restarted = start(&root.path, 3, 1, &routes[..2], &route);
    let sequence = wait_until_captured(&publisher, "orders.new");
    assert_eq!(sequence, last + 1, "the stream kept what it acknowledged, and nothing refused was stored");
    let info = restarted.ack_client().stream_info("orders").expect("info");
    assert_eq!(info.last_sequence, sequence);
}

#[test]
fn a_nats_publish_with_a_reply_on_another_node_is_answered_once_stored() {
    let root = TempDir::new("cluster-streams-nats");
    let nats = ["--nats-listen", "127.0.0.1:0"];
    let mut routes: Vec<String> = Vec::new();
    let mut nodes = Vec::new();
    for node_id in 1..=2u32 {
        let data = root.path.join(format!("node-{node_id}"));
        std::fs::create_dir_all(&data).expect("data directory");
        let data = data.to_str().expect("utf-8").to_string();
        let node = start_node_with(
            &root.path,
            node_id,
            1,
            &routes,
            SECRET,
            "127.0.0.1:0",
            &[&nats[..], &["--data-dir", &data]].concat(),
        );
        routes.push(node.cluster_address.expect("route listener").to_string());
        nodes.push(node);
    }
    let owner = nodes[1].ack_client();
    add_stream(&owner, "orders", &["orders.>"]);
    // The stream's capture has reached node 1 once a native durable publish there is stored.
    let first = wait_until_captured(&nodes[0].ack_client(), "orders.probe");
    let mut publisher =
        nats_support::RawNats::connect_with(nodes[0].nats_address.expect("NATS"), r#"{"verbose":false}"#);
    publisher.send(b"SUB _INBOX.acks 1\r\nPUB orders.nats _INBOX.acks 5\r\nhello\r\n");
    let (line, payload) = publisher.delivery();
    assert!(line.starts_with("MSG _INBOX.acks 1 "), "{line}");
    let ack: serde_json::Value = serde_json::from_slice(&payload).expect("a JSON acknowledgement");
    assert_eq!(ack["stream"], "orders", "{ack}");
    assert_eq!(ack["seq"], first + 1, "stored on node 2 right after the probe: {ack}");
    assert_eq!(owner.stream_info("orders").expect("info").last_sequence, first + 1);
}
