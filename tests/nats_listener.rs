//! The NATS listener, checked on the wire: INFO's fields, CONNECT's options
//! (verbose, echo, headers, no_responders), the exact MSG/HMSG text,
//! UNSUB with a max, authentication by token and by user and password,
//! permission refusals that keep the connection, server PINGs for silent
//! clients, and stream acknowledgements on a reply subject. The real NATS
//! clients (nats-py, async-nats, nats.js) are tested in their own files.

mod common;
mod nats_support;

use std::time::Duration;

use common::FlitServer;
use nats_support::RawNats;

fn start(extra: &[&str]) -> FlitServer {
    let mut arguments = vec!["--nats-listen", "127.0.0.1:0"];
    arguments.extend_from_slice(extra);
    FlitServer::start(2, &arguments)
}

fn nats_address(server: &FlitServer) -> std::net::SocketAddr {
    server.nats_address.expect("the ready line names the NATS listener")
}

#[test]
fn info_describes_the_server_and_connect_verbose_gets_ok() {
    let server = start(&["--max-payload", "65536"]);
    let mut raw = RawNats::connect(nats_address(&server));
    let info = &raw.info;
    assert!(info["server_id"].as_str().is_some_and(|id| !id.is_empty()), "{info}");
    assert_eq!(info["proto"], 1);
    assert_eq!(info["headers"], true);
    assert_eq!(info["max_payload"], 65536);
    assert!(info["client_id"].as_u64().is_some_and(|id| id > 0), "{info}");
    assert_eq!(info["client_ip"], "127.0.0.1");
    assert!(info.get("auth_required").is_none() && info.get("tls_required").is_none(), "{info}");
    let version = info["version"].as_str().expect("a version");
    assert!(version.split('.').next().and_then(|major| major.parse::<u32>().ok()).is_some_and(|major| major >= 2));
    raw.send(b"CONNECT {\"verbose\":true}\r\n");
    assert_eq!(raw.line(), "+OK");
    raw.send(b"SUB a.b 1\r\n");
    assert_eq!(raw.line(), "+OK");
    raw.send(b"PING\r\n");
    assert_eq!(raw.line(), "PONG");
    let second = RawNats::connect(nats_address(&server));
    assert_ne!(second.info["client_id"], raw.info["client_id"], "each connection has its own id");
}

#[test]
fn messages_carry_subject_sid_reply_and_payload_exactly() {
    let server = start(&[]);
    let address = nats_address(&server);
    let mut subscriber = RawNats::connect_with(address, r#"{"verbose":false}"#);
    subscriber.send(b"SUB orders.* 7\r\nSUB orders.> my-sid\r\n");
    subscriber.round_trip();
    let mut publisher = RawNats::connect_with(address, r#"{"verbose":false}"#);
    publisher.send(b"PUB orders.new 5\r\nhello\r\nPUB orders.new reply.to 0\r\n\r\n");
    publisher.round_trip();
    let mut deliveries: Vec<(String, Vec<u8>)> = (0..4).map(|_| subscriber.delivery()).collect();
    deliveries.sort();
    assert_eq!(
        deliveries,
        vec![
            ("MSG orders.new 7 5".to_string(), b"hello".to_vec()),
            ("MSG orders.new 7 reply.to 0".to_string(), Vec::new()),
            ("MSG orders.new my-sid 5".to_string(), b"hello".to_vec()),
            ("MSG orders.new my-sid reply.to 0".to_string(), Vec::new()),
        ]
    );
    assert!(subscriber.round_trip().is_empty(), "nothing more");
}

#[test]
fn unsubscribe_with_a_max_counts_messages_already_delivered() {
    let server = start(&[]);
    let mut client = RawNats::connect_with(nats_address(&server), r#"{"verbose":false}"#);
    client.send(b"SUB tick 1\r\nPUB tick 1\r\na\r\n");
    assert_eq!(client.round_trip().len(), 1);
    // Three in all: one delivered already, two more to come.
    client.send(b"UNSUB 1 3\r\n");
    for _ in 0..5 {
        client.send(b"PUB tick 1\r\nb\r\n");
    }
    assert_eq!(client.round_trip().len(), 2, "the max counts the delivery before the UNSUB");
    client.send(b"PUB tick 1\r\nc\r\n");
    assert!(client.round_trip().is_empty(), "the subscription has ended");
    // A max at or below what was delivered ends it at once.
    client.send(b"SUB tock 2\r\nPUB tock 1\r\na\r\nPUB tock 1\r\nb\r\n");
    assert_eq!(client.round_trip().len(), 2);
    client.send(b"UNSUB 2 1\r\nPUB tock 1\r\nc\r\n");
    assert!(client.round_trip().is_empty());
}

#[test]
fn echo_false_keeps_a_connections_own_messages_from_it() {
    let server = start(&[]);
    let address = nats_address(&server);
    let mut quiet = RawNats::connect_with(address, r#"{"verbose":false,"echo":false}"#);
    let mut other = RawNats::connect_with(address, r#"{"verbose":false}"#);
    quiet.send(b"SUB chat 1\r\n");
    other.send(b"SUB chat 1\r\n");
    quiet.round_trip();
    other.round_trip();
    quiet.send(b"PUB chat 4\r\nmine\r\n");
    assert!(quiet.round_trip().is_empty(), "echo false: not delivered to itself");
    assert_eq!(other.delivery(), ("MSG chat 1 4".to_string(), b"mine".to_vec()));
    other.send(b"PUB chat 6\r\ntheirs\r\n");
    other.round_trip();
    assert_eq!(quiet.delivery(), ("MSG chat 1 6".to_string(), b"theirs".to_vec()));
}

#[test]
fn a_request_nobody_hears_gets_a_503_only_when_the_client_asked() {
    let server = start(&[]);
    let address = nats_address(&server);
    let mut asking = RawNats::connect_with(address, r#"{"verbose":false,"headers":true,"no_responders":true}"#);
    asking.send(b"SUB _INBOX.abc.* 9\r\nPUB service.none _INBOX.abc.1 2\r\nhi\r\n");
    let deliveries = asking.round_trip();
    let status = b"NATS/1.0 503\r\n\r\n";
    assert_eq!(deliveries, vec![(format!("HMSG _INBOX.abc.1 9 {} {}", status.len(), status.len()), status.to_vec())]);
    let mut plain = RawNats::connect_with(address, r#"{"verbose":false}"#);
    plain.send(b"SUB _INBOX.def.* 9\r\nPUB service.none _INBOX.def.1 2\r\nhi\r\n");
    assert!(plain.round_trip().is_empty(), "without no_responders the request just goes unanswered");
    let mut refused = RawNats::connect(address);
    refused.send(b"CONNECT {\"no_responders\":true,\"headers\":false}\r\n");
    let lines = refused.lines_until_closed(Duration::from_secs(5));
    assert_eq!(lines, vec!["-ERR 'no responders requires headers support'"]);
}

#[test]
fn headers_reach_header_clients_and_plain_clients_get_the_payload() {
    let server = start(&[]);
    let address = nats_address(&server);
    let mut with_headers = RawNats::connect_with(address, r#"{"verbose":false,"headers":true}"#);
    let mut without = RawNats::connect_with(address, r#"{"verbose":false}"#);
    with_headers.send(b"SUB h 1\r\n");
    without.send(b"SUB h 1\r\n");
    with_headers.round_trip();
    without.round_trip();
    let block = b"NATS/1.0\r\nTrace: a1\r\nTrace: b2\r\n\r\n";
    let mut publisher = RawNats::connect_with(address, r#"{"verbose":false,"headers":true}"#);
    let mut op = format!("HPUB h {} {}\r\n", block.len(), block.len() + 3).into_bytes();
    op.extend_from_slice(block);
    op.extend_from_slice(b"abc\r\n");
    publisher.send(&op);
    publisher.round_trip();
    let (line, bytes) = with_headers.delivery();
    assert_eq!(line, format!("HMSG h 1 {} {}", block.len(), block.len() + 3));
    let (received_block, payload) = bytes.split_at(block.len());
    assert_eq!(received_block, block, "repeated keys keep their order");
    assert_eq!(payload, b"abc");
    assert_eq!(without.delivery(), ("MSG h 1 3".to_string(), b"abc".to_vec()));
}

fn hex(bytes: [u8; 32]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// An identities file: "svc" by token (may publish only to orders.>), and
/// "alice" by user and password (unrestricted).
fn identities_server(directory: &std::path::Path) -> FlitServer {
    let file = directory.join("identities.toml");
    let text = format!(
        "[[identity]]\nname = \"svc\"\ntoken_sha256 = \"{}\"\npublish = {{ allow = [\"orders.>\", \"_INBOX.>\"] }}\n\
         [[identity]]\nname = \"alice\"\npassword_sha256 = \"{}\"\n",
        hex(flit_shard::auth::token_sha256("svc-token-3d8f1a")),
        hex(flit_shard::auth::token_sha256("alice-password-77c2")),
    );
    std::fs::write(&file, text).expect("write identities");
    start(&["--identities", file.to_str().expect("utf-8")])
}

#[test]
fn credentials_are_checked_and_permissions_refuse_without_closing() {
    let directory = std::env::temp_dir().join(format!("flit-nats-auth-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("temporary directory");
    let server = identities_server(&directory);
    let address = nats_address(&server);
    let violation = vec!["-ERR 'Authorization Violation'".to_string()];
    let mut anonymous = RawNats::connect(address);
    assert_eq!(anonymous.info["auth_required"], true);
    anonymous.send(b"SUB a 1\r\n");
    assert_eq!(anonymous.lines_until_closed(Duration::from_secs(5)), violation, "CONNECT must come first");
    for bad in [
        r#"{"auth_token":"wrong"}"#,
        r#"{"user":"alice","pass":"wrong"}"#,
        r#"{"user":"svc","pass":"svc-token-3d8f1a"}"#,
        r#"{}"#,
    ] {
        let mut client = RawNats::connect(address);
        client.send(format!("CONNECT {bad}\r\n").as_bytes());
        assert_eq!(client.lines_until_closed(Duration::from_secs(5)), violation, "{bad}");
    }
    let mut alice = RawNats::connect_with(address, r#"{"verbose":false,"user":"alice","pass":"alice-password-77c2"}"#);
    alice.send(b"SUB orders.> 1\r\nSUB private 2\r\n");
    alice.round_trip();
    let mut service = RawNats::connect_with(address, r#"{"verbose":false,"auth_token":"svc-token-3d8f1a"}"#);
    service.send(b"PUB private 4\r\nleak\r\n");
    assert_eq!(service.line(), "-ERR 'Permissions Violation for Publish to \"private\"'");
    service.send(b"PUB orders.1 2\r\nok\r\n");
    assert!(service.round_trip().is_empty(), "the connection stays open after a refusal");
    assert_eq!(alice.delivery(), ("MSG orders.1 1 2".to_string(), b"ok".to_vec()));
    assert!(alice.round_trip().is_empty(), "the refused publish reached nobody");
    service.send(b"PUB orders.2 elsewhere.reply 0\r\n\r\n");
    assert_eq!(service.line(), "-ERR 'Permissions Violation for Publish with Reply of \"elsewhere.reply\"'");
    std::fs::remove_dir_all(&directory).ok();
}

#[test]
fn a_silent_client_is_pinged_and_closed_as_stale_if_it_never_answers() {
    let server = start(&["--idle-timeout-ms", "600"]);
    let address = nats_address(&server);
    // A client that answers every PING outlives several idle timeouts.
    let mut answering = RawNats::connect_with(address, r#"{"verbose":false}"#);
    let until = std::time::Instant::now() + Duration::from_millis(2500);
    let mut pings = 0;
    while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
        match answering.try_line(left) {
            Ok(line) if line == "PING" => {
                pings += 1;
                answering.send(b"PONG\r\n");
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(reason) => assert_eq!(reason, "timeout", "an answering client stays open"),
        }
    }
    assert!(pings >= 2, "pinged at half the idle timeout, {pings} times in 2.5 s");
    let mut silent = RawNats::connect_with(address, r#"{"verbose":false}"#);
    let lines = silent.lines_until_closed(Duration::from_secs(5));
    assert_eq!(lines, vec!["PING".to_string(), "-ERR 'Stale Connection'".to_string()]);
}

#[test]
fn a_publish_with_a_reply_to_a_stream_subject_is_acknowledged_there() {
    let directory = std::env::temp_dir().join(format!("flit-nats-stream-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("temporary directory");
    let server = start(&["--data-dir", directory.to_str().expect("utf-8")]);
    let native = server.client();
    let config = flit_client::stream::StreamConfigSpec {
        dedup_window_ms: 60_000,
        ..flit_client::stream::StreamConfigSpec::new("orders", ["orders.>"])
    };
    native.stream_add(config).expect("stream add");
    let mut client = RawNats::connect_with(nats_address(&server), r#"{"verbose":false}"#);
    client.send(b"SUB _INBOX.acks.* 1\r\n");
    client.round_trip();
    for sequence in 1..=3 {
        client.send(format!("PUB orders.new _INBOX.acks.{sequence} 5\r\nfirst\r\n").as_bytes());
        let (line, payload) = client.delivery();
        assert!(line.starts_with(&format!("MSG _INBOX.acks.{sequence} 1 ")), "{line}");
        let ack: serde_json::Value = serde_json::from_slice(&payload).expect("JSON");
        assert_eq!(ack, serde_json::json!({ "stream": "orders", "seq": sequence }));
    }
    // JetStream's message id header deduplicates: the repeat is answered
    // with the original's sequence and not stored again.
    let block = b"NATS/1.0\r\nNats-Msg-Id: order-17\r\n\r\n";
    for _ in 0..2 {
        let mut op = format!("HPUB orders.new _INBOX.acks.d {} {}\r\n", block.len(), block.len() + 1).into_bytes();
        op.extend_from_slice(block);
        op.extend_from_slice(b"x\r\n");
        client.send(&op);
    }
    // (The repeat may be answered first: a duplicate is answered at once,
    // the original once its commit is on disk.)
    let mut acks: Vec<String> = (0..2).map(|_| String::from_utf8(client.delivery().1).expect("UTF-8")).collect();
    acks.sort();
    assert_eq!(acks, vec![r#"{"duplicate":true,"seq":4,"stream":"orders"}"#, r#"{"seq":4,"stream":"orders"}"#]);
    // Without a reply subject the message is stored all the same, unanswered.
    client.send(b"PUB orders.new 6\r\nsilent\r\n");
    assert!(client.round_trip().is_empty());
    // Stored asynchronously: wait (bounded) for the owner to have it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let info = native.stream_info("orders").expect("stream info");
        if info.last_sequence == 5 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the unanswered publish was not stored: {info:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(server);
    std::fs::remove_dir_all(&directory).ok();
}

#[test]
fn on_shutdown_nats_subscribers_get_what_was_published_then_a_clean_close() {
    let server = start(&[]);
    let address = nats_address(&server);
    let mut subscriber = RawNats::connect_with(address, r#"{"verbose":false}"#);
    subscriber.send(b"SUB last.words 1\r\n");
    subscriber.round_trip();
    let mut publisher = RawNats::connect_with(address, r#"{"verbose":false}"#);
    for number in 0..100 {
        let payload = number.to_string();
        publisher.send(format!("PUB last.words {}\r\n{payload}\r\n", payload.len()).as_bytes());
    }
    publisher.round_trip();
    server.terminate();
    for number in 0..100 {
        let (_, payload) = subscriber.delivery();
        assert_eq!(payload, number.to_string().as_bytes());
    }
    // No Draining frame, no -ERR: NATS has neither for a shutdown.
    assert!(subscriber.lines_until_closed(Duration::from_secs(10)).is_empty());
    let (code, stderr) = server.wait();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn monitoring_shows_nats_clients_with_the_ids_info_gave_them() {
    let server = start(&["--metrics", "127.0.0.1:0"]);
    let metrics = server.metrics_address.expect("metrics listener");
    let mut client = RawNats::connect_with(nats_address(&server), r#"{"verbose":false,"name":"probe","lang":"raw"}"#);
    client.send(b"SUB watched.> 1\r\nPUB watched.x 3\r\nabc\r\n");
    assert_eq!(client.round_trip().len(), 1);
    let (status, varz) = common::http_get(metrics, "/varz");
    assert_eq!(status, 200);
    let varz: serde_json::Value = serde_json::from_str(&varz).expect("JSON");
    assert_eq!(varz["server_id"], client.info["server_id"], "one server id for INFO and /varz");
    assert_eq!(varz["port"], nats_address(&server).port(), "NATS tools read where NATS clients connect");
    let (status, connz) = common::http_get(metrics, "/connz?subs=1");
    assert_eq!(status, 200);
    let connz: serde_json::Value = serde_json::from_str(&connz).expect("JSON");
    let rows = connz["connections"].as_array().expect("rows");
    let row = rows.iter().find(|row| row["name"] == "probe").unwrap_or_else(|| panic!("no probe row: {connz}"));
    assert_eq!(row["cid"], client.info["client_id"], "INFO's client_id is /connz's cid");
    assert_eq!((row["type"].as_str(), row["lang"].as_str()), (Some("nats"), Some("raw")));
    assert_eq!((row["in_msgs"].as_u64(), row["out_msgs"].as_u64()), (Some(1), Some(1)));
    assert_eq!(row["subscriptions_list"], serde_json::json!(["watched.>"]));
}
