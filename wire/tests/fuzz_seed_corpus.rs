//! One valid frame of every op, written with the public `Encoder`, as the seed
//! corpus of the fuzz target in `wire/fuzz/`. Run with a directory to write
//! the seeds there:
//!
//! ```text
//! FLIT_FUZZ_SEED_DIR=wire/fuzz/corpus/check_decode cargo test -p flit-wire --test fuzz_seed_corpus
//! FLIT_FUZZ_STREAM_SEED_DIR=wire/fuzz/corpus/stream_frames cargo test -p flit-wire --test fuzz_seed_corpus
//! FLIT_FUZZ_ROUTE_SEED_DIR=wire/fuzz/corpus/route_decode cargo test -p flit-wire --test fuzz_seed_corpus
//! ```
//!
//! The `stream_frames` target's seeds are the version-2 stream frames: each
//! as a stream (mode byte 0xff, then the frame) and as a raw meta (mode byte
//! = op - 12, then the meta part alone). The `route_decode` target's seeds
//! are the route frames: each as a stream (mode byte 0xff, then the frame),
//! each with a meta as a raw meta (mode byte 0 to 3: Hello, Auth, Interest,
//! Message), and all of them as one stream.
//!
//! Without the variable the test only checks that every seed is one whole frame.

use bytes::{Bytes, BytesMut};
use flit_wire::{
    check, check_route, encode_headers, Ack, AckKind, Check, ConsumerConfigSpec, ConsumerInfo, Durability, Encoder,
    ErrorCode, Fetch, Hello, Limits, Op, PublishAck, RouteAuth, RouteHello, RouteOp, StartPosition, StreamCode,
    StreamCommand, StreamConfigSpec, StreamFrame, StreamInfo, StreamMessage, StreamMessageMeta, StreamReply,
    StreamRequest, Unsubscribe, Welcome, FRAME_HEADER_BYTES, STATUS_NO_RESPONDERS,
};

fn seeds() -> Vec<(&'static str, BytesMut)> {
    let mut encoder = Encoder::default();
    let mut seeds = Vec::new();
    let mut seed = |name: &'static str, write: &mut dyn FnMut(&mut Encoder, &mut BytesMut)| {
        let mut out = BytesMut::new();
        write(&mut encoder, &mut out);
        seeds.push((name, out));
    };
    let headers = encode_headers(&[("content-type", "application/json"), ("trace", "7f3a")]).expect("two entries");
    seed("hello", &mut |encoder, out| {
        let hello = Hello {
            version_min: 1,
            version_max: 1,
            client_name: Some("seed@fuzz".to_owned()),
            auth_token: Some("token".to_owned()),
            ack_mode: true,
        };
        encoder.hello(out, &hello).expect("encodes");
    });
    seed("welcome", &mut |encoder, out| {
        let welcome = Welcome {
            version: 1,
            server_name: "flit".to_owned(),
            shard: 1,
            shards: 4,
            payload_bytes_max: 1 << 20,
            meta_bytes_max: 65535,
            pending_bytes_max: 64 << 20,
            subscriptions_max: 1024,
            cluster_urls: Vec::new(),
        };
        encoder.welcome(out, &welcome).expect("encodes");
    });
    seed("publish", &mut |encoder, out| {
        encoder.publish(out, b"orders.eu.created", None, None, b"{\"id\":1}").expect("encodes");
    });
    seed("publish_reply_headers", &mut |encoder, out| {
        encoder.publish(out, b"orders.get", Some(b"_INBOX.a1b2"), Some(&headers), b"payload").expect("encodes");
    });
    seed("subscribe", &mut |encoder, out| {
        encoder.subscribe(out, b"orders.*.created", None, 7).expect("encodes");
    });
    seed("subscribe_queue", &mut |encoder, out| {
        encoder.subscribe(out, b"orders.>", Some(b"workers"), 8).expect("encodes");
    });
    seed("unsubscribe", &mut |encoder, out| {
        encoder.unsubscribe(out, Unsubscribe { subscription_id: 7, after_messages: 3 }).expect("encodes");
    });
    seed("deliver", &mut |encoder, out| {
        let meta = encoder.deliver_meta(b"orders.eu.created", Some(b"_INBOX.x"), Some(&headers), 0).expect("encodes");
        Encoder::deliver(out, 7, meta, b"{\"id\":1}").expect("encodes");
    });
    seed("deliver_no_responders", &mut |encoder, out| {
        let meta = encoder.deliver_meta(b"_INBOX.a1b2", None, None, STATUS_NO_RESPONDERS).expect("encodes");
        Encoder::deliver(out, 9, meta, b"").expect("encodes");
    });
    seed("ping", &mut |_, out| Encoder::bare(out, Op::Ping));
    seed("pong", &mut |_, out| Encoder::bare(out, Op::Pong));
    seed("ok", &mut |_, out| Encoder::bare(out, Op::Ok));
    seed("error", &mut |encoder, out| {
        encoder.error(out, ErrorCode::InvalidSubject, "wildcard in a publish subject").expect("encodes");
    });
    seed("publish_with_ack_id", &mut |encoder, out| {
        encoder.publish_with_ack_id(out, 41, b"orders.eu.created", None, Some(&headers), b"{}").expect("encodes");
    });
    for frame in stream_frames() {
        seed(frame.name(), &mut |encoder, out| encoder.stream_frame(out, &frame).expect("encodes"));
    }
    // A stream of several frames, as a connection would carry them.
    let stream: Vec<u8> = seeds.iter().flat_map(|(_, bytes)| bytes.iter().copied()).collect();
    seeds.push(("stream_of_every_op", BytesMut::from(&stream[..])));
    seeds
}

/// One of each stream frame, the fields filled in.
fn stream_frames() -> Vec<StreamFrame> {
    let config = StreamConfigSpec {
        durability: Durability::Interval { sync_interval_ms: 10 },
        bytes_max: 1 << 30,
        dedup_window_ms: 120_000,
        ..StreamConfigSpec::new("ORDERS", ["orders.>", "returns.*"])
    };
    let consumer = ConsumerConfigSpec {
        name: Some("worker".to_owned()),
        start: StartPosition::Sequence { sequence: 5 },
        deliveries_max: 3,
        dead_letter_subject: Some("dead.orders".to_owned()),
        ..ConsumerConfigSpec::default()
    };
    let headers = encode_headers(&[("Flit-Msg-Id", "order-1")]).expect("one entry");
    let info = StreamInfo {
        config: config.clone(),
        messages: 3,
        last_sequence: 3,
        first_sequence: 1,
        ..StreamInfo::default()
    };
    vec![
        StreamFrame::Request(StreamRequest { request_id: 1, command: StreamCommand::Add(config) }),
        StreamFrame::Request(StreamRequest {
            request_id: 2,
            command: StreamCommand::ConsumerAdd { stream: "ORDERS".to_owned(), config: consumer.clone() },
        }),
        StreamFrame::Request(StreamRequest { request_id: 3, command: StreamCommand::List { after: None } }),
        StreamFrame::Reply(StreamReply {
            streams: vec![info],
            consumer: Some(ConsumerInfo { config: consumer, ..ConsumerInfo::default() }),
            ..StreamReply::ok(1)
        }),
        StreamFrame::Reply(StreamReply::refused(4, StreamCode::NotFound, "no stream named X")),
        StreamFrame::PublishAck(PublishAck::stored(41, "ORDERS", 3, false)),
        StreamFrame::Fetch(Fetch {
            request_id: 5,
            stream: "ORDERS".to_owned(),
            consumer: "worker".to_owned(),
            batch: 10,
            wait_ms: 1000,
        }),
        StreamFrame::Message(StreamMessage {
            tag: 5,
            meta: StreamMessageMeta {
                stream: "ORDERS".to_owned(),
                consumer: "worker".to_owned(),
                subject: Bytes::from_static(b"orders.eu.created"),
                sequence: 3,
                timestamp_ns: 1_700_000_000_000_000_000,
                delivery_count: 1,
                headers: Some(headers),
            },
            payload: Bytes::from_static(b"{\"id\":1}"),
        }),
        StreamFrame::Ack(Ack {
            request_id: 6,
            stream: "ORDERS".to_owned(),
            consumer: "worker".to_owned(),
            sequence: 3,
            kind: AckKind::Nak,
        }),
    ]
}

/// Seeds of the `stream_frames` target: each frame in both of its modes.
fn stream_target_seeds() -> Vec<(String, Vec<u8>)> {
    let mut encoder = Encoder::default();
    let mut seeds = Vec::new();
    for (index, frame) in stream_frames().iter().enumerate() {
        let mut out = BytesMut::new();
        encoder.stream_frame(&mut out, frame).expect("encodes");
        let whole = [&[0xff][..], &out[..]].concat();
        seeds.push((format!("{index}-{}-stream", frame.name()), whole));
        let meta_len = usize::from(u16::from_le_bytes([out[6], out[7]]));
        let mode = frame.op() as u8 - Op::StreamRequest as u8;
        let raw = [&[mode][..], &out[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + meta_len]].concat();
        seeds.push((format!("{index}-{}-meta", frame.name()), raw));
    }
    seeds
}

#[test]
fn every_seed_is_whole_frames_and_is_written_when_asked() {
    let frame_bytes_max = Limits::default().frame_bytes_max();
    let seeds = seeds();
    for (name, bytes) in &seeds {
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let Check::Complete(length) = check(rest, frame_bytes_max) else {
                panic!("seed {name} is not whole frames");
            };
            rest = &rest[length..];
        }
    }
    if let Some(dir) = std::env::var_os("FLIT_FUZZ_SEED_DIR") {
        // A relative directory is taken from the repository root, not from
        // this crate's directory (where cargo runs the test).
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
        std::fs::create_dir_all(&dir).expect("create the seed directory");
        for (name, bytes) in &seeds {
            std::fs::write(std::path::Path::new(&dir).join(name), bytes).expect("write a seed");
        }
    }
    let stream_seeds = stream_target_seeds();
    assert_eq!(stream_seeds.len(), 2 * stream_frames().len());
    if let Some(dir) = std::env::var_os("FLIT_FUZZ_STREAM_SEED_DIR") {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
        std::fs::create_dir_all(&dir).expect("create the seed directory");
        for (name, bytes) in &stream_seeds {
            std::fs::write(dir.join(name), bytes).expect("write a seed");
        }
    }
}

/// One valid frame of every route op (and both Interest kinds, and a message
/// with and without its optional parts).
fn route_frames() -> Vec<(RouteOp, BytesMut)> {
    let mut encoder = Encoder::default();
    let headers = encode_headers(&[("trace", "7f3a")]).expect("one entry");
    let hello = RouteHello {
        version_min: 1,
        version_max: 1,
        cluster_name: "prod-eu".to_owned(),
        node_id: 2,
        generation: 1_764_532_000_000,
        shard_count: 4,
        lane_shard: 1,
        nonce: [0x5a; 32],
        route_address: "10.0.0.2:7422".to_owned(),
        client_urls: vec!["flit://10.0.0.2:4223".to_owned(), "flit://[::1]:4223".to_owned()],
        nats_urls: vec!["nats://10.0.0.2:4222".to_owned()],
    };
    let mut frames = Vec::new();
    let mut frame = |op: RouteOp, write: &mut dyn FnMut(&mut Encoder, &mut BytesMut)| {
        let mut out = BytesMut::new();
        write(&mut encoder, &mut out);
        frames.push((op, out));
    };
    frame(RouteOp::Hello, &mut |encoder, out| encoder.route_hello(out, &hello).expect("encodes"));
    frame(RouteOp::Auth, &mut |encoder, out| encoder.route_auth(out, &RouteAuth { mac: [0xa5; 32] }).expect("encodes"));
    frame(RouteOp::Interest, &mut |encoder, out| {
        encoder.route_interest(out, true, b"orders.*.>", Some(b"workers")).expect("encodes")
    });
    frame(RouteOp::Interest, &mut |encoder, out| {
        encoder.route_interest(out, false, b"orders.eu", None).expect("encodes")
    });
    frame(RouteOp::Message, &mut |encoder, out| {
        let picks = [0x1234_5678_9abc_def0, 7];
        encoder
            .route_message(
                out,
                &flit_wire::route::OutgoingRouteMessage {
                    subject: b"orders.eu",
                    reply: Some(b"_INBOX.a.1"),
                    headers: Some(&headers),
                    payload: b"{}",
                    queue_picks: &picks,
                    store_request: 0,
                },
            )
            .expect("encodes")
    });
    frame(RouteOp::Message, &mut |encoder, out| {
        encoder
            .route_message(
                out,
                &flit_wire::route::OutgoingRouteMessage {
                    subject: b"a",
                    reply: None,
                    headers: None,
                    payload: b"",
                    queue_picks: &[],
                    store_request: 42,
                },
            )
            .expect("encodes")
    });
    frame(RouteOp::Ping, &mut |_, out| Encoder::route_ping(out, 99));
    frame(RouteOp::Pong, &mut |_, out| Encoder::route_pong(out, 99));
    frame(RouteOp::Capture, &mut |encoder, out| encoder.route_capture(out, true, b"orders.>").expect("encodes"));
    frame(RouteOp::Barrier, &mut |_, out| Encoder::route_barrier(out, 3));
    frame(RouteOp::BarrierAck, &mut |_, out| Encoder::route_barrier_ack(out, 3));
    frame(RouteOp::StoreAck, &mut |encoder, out| {
        encoder.route_store_ack(out, &flit_wire::PublishAck::stored(42, "orders", 7, false)).expect("encodes")
    });
    frames
}

#[test]
fn route_seeds_are_whole_route_frames_and_are_written_when_asked() {
    let frame_bytes_max = Limits::default().frame_bytes_max();
    let meta_ops =
        [RouteOp::Hello, RouteOp::Auth, RouteOp::Interest, RouteOp::Message, RouteOp::Capture, RouteOp::StoreAck];
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    let mut all = vec![0xff];
    for (index, (op, out)) in route_frames().iter().enumerate() {
        assert_eq!(check_route(out, frame_bytes_max), Check::Complete(out.len()), "{op:?}");
        all.extend_from_slice(out);
        seeds.push((format!("{index}-{}-stream", op.name()), [&[0xff][..], &out[..]].concat()));
        if let Some(mode) = meta_ops.iter().position(|meta_op| meta_op == op) {
            let meta_len = usize::from(u16::from_le_bytes([out[6], out[7]]));
            let meta = &out[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + meta_len];
            seeds.push((format!("{index}-{}-meta", op.name()), [&[mode as u8][..], meta].concat()));
        }
    }
    seeds.push(("all-stream".to_owned(), all));
    if let Some(dir) = std::env::var_os("FLIT_FUZZ_ROUTE_SEED_DIR") {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
        std::fs::create_dir_all(&dir).expect("create the seed directory");
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes).expect("write a seed");
        }
    }
}
