//! Durable publish with the Rust client, against the real binary: the
//! stream's acknowledgement carries contiguous sequences from 1 (one at a
//! time and pipelined), the messages survive a restart on the same data
//! directory, a subject no stream captures is refused with 404 and the
//! connection stays usable, `Flit-Msg-Id` duplicates within the dedup window
//! get the original's sequence, core subscribers still receive captured
//! messages, stream administration answers (idempotent add, 409, list,
//! remove), `streams_admin` is needed to add or remove streams under
//! identities, and the tokio client does the same.

mod common;
mod stream_support;

use std::time::{Duration, Instant};

use common::{next_message, FlitServer, SHARD_COUNTS};
use flit_client::stream::{AckPolicy, ConsumerConfigSpec, Durability, StreamCode, StreamConfigSpec, MESSAGE_ID_HEADER};
use flit_client::{AsyncClient, Client, ClientError, Options};
use stream_support::{add_stream, start_on, stop, TempDir, FETCH_WAIT};

/// Reads the whole stream back through an ephemeral consumer without acks.
fn read_all(client: &Client, stream: &str, expected: usize) -> Vec<(u64, String)> {
    let config = ConsumerConfigSpec { ack_policy: AckPolicy::None, ..ConsumerConfigSpec::default() };
    let consumer = client.consumer_add(stream, config).expect("ephemeral consumer");
    let name = consumer.config.name.expect("the server names an ephemeral consumer");
    let messages = client.fetch(stream, &name, expected as u32 + 1, FETCH_WAIT).expect("fetch");
    messages.into_iter().map(|message| (message.sequence, String::from_utf8_lossy(&message.payload).into())).collect()
}

#[test]
fn durable_publishes_get_contiguous_sequences_that_survive_a_restart() {
    for shards in SHARD_COUNTS {
        let data = TempDir::new("stream-publish");
        let server = start_on(&data.path, shards, &[]);
        let client = server.client();
        let info = add_stream(&client, "orders", &["orders.>"]);
        assert_eq!((info.messages, info.last_sequence), (0, 0), "shards={shards}");
        for index in 1..=10u64 {
            let acked = client.publish_durable("orders.eu", format!("m{index}").as_bytes()).expect("stored");
            assert_eq!((acked.stream.as_str(), acked.sequence, acked.duplicate), ("orders", index, false));
        }
        // Many in flight on one connection: answered in publish order.
        let pending: Vec<_> = (11..=60u64)
            .map(|index| client.publish_durable_pipelined("orders.us", &[], format!("m{index}").as_bytes()))
            .collect::<Result<_, _>>()
            .expect("sent");
        let sequences: Vec<u64> = pending.into_iter().map(|publish| publish.wait().expect("stored").sequence).collect();
        assert_eq!(sequences, (11..=60).collect::<Vec<_>>(), "shards={shards}");
        let info = client.stream_info("orders").expect("info");
        assert_eq!((info.messages, info.first_sequence, info.last_sequence), (60, 1, 60), "shards={shards}");
        assert!(info.bytes > 0);
        drop(client);
        stop(server);

        let server = start_on(&data.path, shards, &[]);
        let client = server.client();
        let info = client.stream_info("orders").expect("the stream is back after a restart");
        assert_eq!((info.messages, info.first_sequence, info.last_sequence), (60, 1, 60), "shards={shards}");
        let messages = read_all(&client, "orders", 60);
        let expected: Vec<(u64, String)> = (1..=60).map(|index| (index, format!("m{index}"))).collect();
        assert_eq!(messages, expected, "shards={shards}");
        // And the next publish continues the sequence.
        assert_eq!(client.publish_durable("orders.eu", b"after").expect("stored").sequence, 61);
    }
}

#[test]
fn a_subject_no_stream_captures_is_refused_with_404_and_the_connection_stays() {
    for shards in SHARD_COUNTS {
        let data = TempDir::new("stream-404");
        let server = start_on(&data.path, shards, &[]);
        let client = server.client();
        let refused = client.publish_durable("x.y", b"hi").expect_err("no stream at all");
        assert_eq!(refused.stream_code(), Some(StreamCode::NotFound), "shards={shards}: {refused}");
        assert!(!refused.is_fatal());
        add_stream(&client, "orders", &["orders.>"]);
        let refused = client.publish_durable("x.y", b"hi").expect_err("a stream on other subjects");
        assert!(matches!(refused, ClientError::Stream { code: 404, .. }), "{refused}");
        client.flush().expect("the connection is still usable");
        assert_eq!(client.publish_durable("orders.eu", b"ok").expect("stored").sequence, 1);
    }
}

#[test]
fn duplicates_within_the_dedup_window_get_the_original_sequence() {
    let data = TempDir::new("stream-dedup");
    let server = start_on(&data.path, 2, &[]);
    let client = server.client();
    let config = StreamConfigSpec { dedup_window_ms: 60_000, ..StreamConfigSpec::new("payments", ["payments.*"]) };
    client.stream_add(config).expect("add");
    let first = client.publish_durable_with("payments.in", &[(MESSAGE_ID_HEADER, "id-1")], b"100").expect("first");
    let second = client.publish_durable_with("payments.in", &[(MESSAGE_ID_HEADER, "id-2")], b"200").expect("second");
    let again = client.publish_durable_with("payments.in", &[(MESSAGE_ID_HEADER, "id-1")], b"100").expect("again");
    assert_eq!((first.sequence, first.duplicate), (1, false));
    assert_eq!((second.sequence, second.duplicate), (2, false));
    assert_eq!((again.sequence, again.duplicate), (1, true), "the original's sequence, flagged");
    // Without a message id nothing is deduplicated.
    assert_eq!(client.publish_durable("payments.in", b"100").expect("plain").sequence, 3);
    assert_eq!(client.stream_info("payments").expect("info").messages, 3, "the duplicate was not stored");
}

#[test]
fn core_subscribers_still_receive_captured_messages() {
    for shards in SHARD_COUNTS {
        let data = TempDir::new("stream-core");
        let server = start_on(&data.path, shards, &[]);
        let publisher = server.client();
        add_stream(&publisher, "orders", &["orders.>"]);
        let subscriber = server.client_on_shard(shards - 1);
        let subscription = subscriber.subscribe("orders.*").expect("subscribe");
        subscriber.flush().expect("visible");
        let acked = publisher.publish_durable_with("orders.eu", &[("k", "v")], b"durable").expect("stored");
        assert_eq!(acked.sequence, 1);
        publisher.publish("orders.us", b"plain").expect("a plain publish is captured too");
        let first = next_message(&subscription);
        let second = next_message(&subscription);
        assert_eq!((first.subject.as_str(), &first.payload[..]), ("orders.eu", &b"durable"[..]), "shards={shards}");
        assert_eq!(first.header("k"), Some("v"));
        assert_eq!((second.subject.as_str(), &second.payload[..]), ("orders.us", &b"plain"[..]));
        // Nothing acknowledges a plain publish: wait for the stream to have stored it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while publisher.stream_info("orders").expect("info").messages < 2 {
            assert!(Instant::now() < deadline, "shards={shards}: the stream did not store the plain publish");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn stream_administration_answers_add_conflict_list_and_remove() {
    let data = TempDir::new("stream-admin");
    let server = start_on(&data.path, 2, &[]);
    let client = server.client();
    let config = StreamConfigSpec {
        durability: Durability::Interval { sync_interval_ms: 10 },
        messages_max: 1_000,
        ..StreamConfigSpec::new("alpha", ["alpha.>"])
    };
    let added = client.stream_add(config.clone()).expect("add");
    assert_eq!(added.config, config);
    assert_eq!(client.stream_add(config.clone()).expect("the same again is fine").config, config);
    let different = StreamConfigSpec { messages_max: 5, ..config.clone() };
    let conflict = client.stream_add(different).expect_err("a different definition");
    assert_eq!(conflict.stream_code(), Some(StreamCode::AlreadyExists), "{conflict}");
    let overlapping = client.stream_add(StreamConfigSpec::new("beta", ["alpha.x"])).expect_err("overlapping subjects");
    assert_eq!(overlapping.stream_code(), Some(StreamCode::AlreadyExists), "{overlapping}");
    for name in ["gamma", "beta", "delta"] {
        add_stream(&client, name, &[&format!("{name}.>")]);
    }
    let names: Vec<String> = client.stream_list().expect("list").into_iter().map(|info| info.config.name).collect();
    assert_eq!(names, ["alpha", "beta", "delta", "gamma"]);
    client.stream_remove("beta").expect("remove");
    let missing = client.stream_info("beta").expect_err("removed");
    assert_eq!(missing.stream_code(), Some(StreamCode::NotFound));
    let missing = client.stream_remove("beta").expect_err("removed twice");
    assert_eq!(missing.stream_code(), Some(StreamCode::NotFound));
    assert_eq!(client.stream_list().expect("list").len(), 3);
    let invalid = client.stream_info("no spaces").expect_err("an invalid name is not sent");
    assert!(matches!(invalid, ClientError::InvalidStreamRequest(_)), "{invalid}");
    client.flush().expect("nothing was sent: the connection is fine");
}

const WRITER_TOKEN: &str = "writer-token-3b9d2f7a1c5e";
const OPERATOR_TOKEN: &str = "operator-token-8e1a6c4f2b7d";

#[test]
fn adding_and_removing_streams_needs_streams_admin_under_identities() {
    let data = TempDir::new("stream-permissions");
    let hex = |token: &str| -> String {
        flit_shard::auth::token_sha256(token).iter().map(|byte| format!("{byte:02x}")).collect()
    };
    let identities = format!(
        r#"
[[identity]]
name = "writer"
token_sha256 = "{}"
publish = {{ allow = ["orders.>"] }}
subscribe = {{ allow = ["orders.>"] }}

[[identity]]
name = "operator"
token_sha256 = "{}"
streams_admin = true
"#,
        hex(WRITER_TOKEN),
        hex(OPERATOR_TOKEN)
    );
    let file = data.path.join("identities.toml");
    std::fs::write(&file, identities).expect("write identities");
    let server = FlitServer::start(2, &["--data-dir", data.as_str(), "--identities", file.to_str().expect("utf-8")]);
    let connect = |token: &str| {
        let options = Options { auth_token: Some(token.to_owned()), ..Options::default() };
        Client::connect_with(server.address, options).expect("connect")
    };
    let writer = connect(WRITER_TOKEN);
    let denied = writer.stream_add(StreamConfigSpec::new("orders", ["orders.>"])).expect_err("not an admin");
    assert_eq!(denied.stream_code(), Some(StreamCode::PermissionDenied), "{denied}");
    let operator = connect(OPERATOR_TOKEN);
    add_stream(&operator, "orders", &["orders.>"]);
    assert_eq!(writer.publish_durable("orders.eu", b"x").expect("a writer publishes").sequence, 1);
    assert_eq!(writer.stream_info("orders").expect("info needs no admin").messages, 1);
    let denied = writer.stream_remove("orders").expect_err("not an admin");
    assert_eq!(denied.stream_code(), Some(StreamCode::PermissionDenied), "{denied}");
    // A durable publish its identity may not make is refused (401) and only that one fails.
    let refused = writer.publish_durable("billing.x", b"x").expect_err("no publish permission");
    assert!(matches!(refused, ClientError::Server { code: 401, .. }), "{refused}");
    assert_eq!(writer.publish_durable("orders.eu", b"y").expect("still connected").sequence, 2);
    // A consumer whose deliver or dead-letter subject its creator may not
    // publish to would make the router publish there on its behalf: refused.
    for (deliver, dead) in [(Some("billing.push"), None), (None, Some("billing.dead")), (Some("_INBOX.other.x"), None)]
    {
        let config = flit_client::stream::ConsumerConfigSpec {
            name: Some("sneaky".into()),
            deliver_subject: deliver.map(str::to_owned),
            dead_letter_subject: dead.map(str::to_owned),
            ..Default::default()
        };
        let denied = writer.consumer_add("orders", config).expect_err("not a subject it may publish to");
        assert_eq!(denied.stream_code(), Some(StreamCode::PermissionDenied), "{deliver:?} {dead:?}: {denied}");
    }
    // One it may publish to but the stream captures itself would loop: refused too.
    let looping = flit_client::stream::ConsumerConfigSpec {
        name: Some("pusher".into()),
        deliver_subject: Some("orders.push".into()),
        ..Default::default()
    };
    let refused = writer.consumer_add("orders", looping).expect_err("a delivery loop");
    assert_eq!(refused.stream_code(), Some(StreamCode::BadRequest), "{refused}");
    operator.stream_remove("orders").expect("an admin removes");
}

#[test]
fn the_async_client_publishes_durably_and_fetches() {
    let data = TempDir::new("stream-async");
    let server = start_on(&data.path, 2, &[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let client = AsyncClient::connect(server.address).await.expect("connect");
        client.stream_add(StreamConfigSpec::new("events", ["events.>"])).await.expect("add");
        assert_eq!(client.publish_durable("events.a", b"one").await.expect("stored").sequence, 1);
        let mut pending = Vec::new();
        for index in 2..=20u64 {
            pending.push(client.publish_durable_pipelined("events.b", &[], &index.to_be_bytes()).await.expect("sent"));
        }
        for (index, publish) in (2..=20u64).zip(pending) {
            assert_eq!(publish.wait().await.expect("stored").sequence, index);
        }
        let refused = client.publish_durable("nowhere", b"x").await.expect_err("no stream");
        assert_eq!(refused.stream_code(), Some(StreamCode::NotFound));
        let config = ConsumerConfigSpec { name: Some("reader".into()), ..ConsumerConfigSpec::default() };
        client.consumer_add("events", config).await.expect("consumer");
        let messages = client.fetch("events", "reader", 50, Duration::from_millis(200)).await.expect("fetch");
        assert_eq!(messages.len(), 20);
        assert_eq!(messages[0].subject, "events.a");
        for message in &messages {
            client.ack("events", "reader", message.sequence, flit_client::stream::AckKind::Ack).await.expect("ack");
        }
        let info = client.consumer_info("events", "reader").await.expect("info");
        assert_eq!((info.ack_floor, info.ack_pending), (20, 0));
        assert_eq!(client.stream_list().await.expect("list").len(), 1);
        client.close().await.expect("close");
    });
}

/// A raw connection that agreed protocol version 1 in its handshake.
fn version_one_connection(address: std::net::SocketAddr) -> common::RawConnection {
    let mut connection = common::RawConnection::connect_without_hello(address);
    let hello = flit_wire::Hello {
        version_min: 1,
        version_max: 1,
        client_name: Some("version-one".into()),
        auth_token: None,
        ack_mode: false,
    };
    let mut frame = bytes::BytesMut::new();
    flit_wire::Encoder::default().hello(&mut frame, &hello).expect("hello");
    connection.send(&frame);
    match connection.read_frame() {
        Some(flit_wire::Frame::Welcome(welcome)) => assert_eq!(welcome.version, 1, "version 1 agreed"),
        other => panic!("expected Welcome, got {other:?}"),
    }
    connection
}

#[test]
fn version_two_input_on_a_version_one_connection_is_refused_and_others_are_unaffected() {
    let data = TempDir::new("stream-version-one");
    let server = start_on(&data.path, 2, &[]);
    let client = server.client();
    add_stream(&client, "orders", &["orders.>"]);
    // A Publish with an acknowledgement id (its tag): malformed in version 1.
    let mut tagged = version_one_connection(server.address);
    let mut frame = bytes::BytesMut::new();
    flit_wire::Encoder::default().publish(&mut frame, b"orders.eu", None, None, b"x").expect("publish");
    frame[8..16].copy_from_slice(&7u64.to_le_bytes());
    tagged.send(&frame);
    assert_eq!(tagged.expect_error_then_close(), flit_wire::ErrorCode::MalformedFrame.as_u16());
    // A stream op: not a version-1 operation.
    let mut requester = version_one_connection(server.address);
    let mut frame = bytes::BytesMut::new();
    let request = flit_wire::stream::StreamRequest {
        request_id: 1,
        command: flit_wire::stream::StreamCommand::Info { stream: "orders".into() },
    };
    flit_wire::Encoder::default().stream_request(&mut frame, &request).expect("request");
    requester.send(&frame);
    assert_eq!(requester.expect_error_then_close(), flit_wire::ErrorCode::UnexpectedOp.as_u16());
    // The version-2 client and the stream did not notice.
    assert_eq!(client.publish_durable("orders.eu", b"y").expect("stored").sequence, 1);
    assert_eq!(client.stream_info("orders").expect("info").messages, 1);
    stop(server);
}
