//! The route frames (node to node, ops 64 to 70), one behaviour per test:
//! the client decoder refuses every route op and the route decoder every
//! client op; each limit, bad field, truncated meta and bad flatbuffer is a
//! typed error with the code the node closes the route with; a decoded
//! RouteMessage points into the received frame.

use bytes::{Bytes, BytesMut};
use flatbuffers::FlatBufferBuilder;
use flit_wire::route::{
    RouteHeader, CLUSTER_NAME_BYTES_MAX, QUEUE_PICKS_MAX, ROUTE_PROTOCOL_VERSION_MIN, ROUTE_URLS_MAX,
    ROUTE_URL_BYTES_MAX,
};
use flit_wire::schema;
use flit_wire::{
    check, check_route, decode, decode_route, encode_headers, is_route_op, negotiate_route_version, Check, Encoder,
    ErrorCode, FrameHeader, Hello, Limits, Op, RouteAuth, RouteFrame, RouteHello, RouteInterest, RouteOp, Unsubscribe,
    WireError, FRAME_HEADER_BYTES, ROUTE_PROTOCOL_VERSION,
};

fn limits() -> Limits {
    Limits::default()
}

fn a_hello() -> RouteHello {
    RouteHello {
        version_min: 1,
        version_max: ROUTE_PROTOCOL_VERSION,
        cluster_name: "prod-eu".to_owned(),
        node_id: 3,
        generation: 1_764_532_000_000,
        shard_count: 4,
        lane_shard: 2,
        nonce: [7; 32],
        route_address: "10.0.0.3:7422".to_owned(),
        client_urls: vec!["flit://10.0.0.3:4223".to_owned()],
        nats_urls: vec!["nats://10.0.0.3:4222".to_owned()],
    }
}

/// A route frame from raw parts, with a consistent header.
fn raw(op: u8, tag: u64, meta: &[u8], payload: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    out.extend_from_slice(&((meta.len() + payload.len()) as u32).to_le_bytes());
    out.extend_from_slice(&[op, 0]);
    out.extend_from_slice(&(meta.len() as u16).to_le_bytes());
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(meta);
    out.extend_from_slice(payload);
    out.freeze()
}

/// A RouteHello meta written without the encoder's checks, so the decoder's
/// own checks are what is tested.
fn hello_meta(hello: &RouteHello, nonce: &[u8]) -> Vec<u8> {
    let mut builder = FlatBufferBuilder::new();
    let cluster_name = Some(builder.create_string(&hello.cluster_name));
    let nonce = Some(builder.create_vector(nonce));
    let route_address = Some(builder.create_string(&hello.route_address));
    let client_urls: Vec<_> = hello.client_urls.iter().map(|url| builder.create_string(url)).collect();
    let client_urls = Some(builder.create_vector(&client_urls));
    let nats_urls: Vec<_> = hello.nats_urls.iter().map(|url| builder.create_string(url)).collect();
    let nats_urls = Some(builder.create_vector(&nats_urls));
    let args = schema::RouteHelloArgs {
        version_min: hello.version_min,
        version_max: hello.version_max,
        cluster_name,
        node_id: hello.node_id,
        generation: hello.generation,
        shard_count: hello.shard_count,
        lane_shard: hello.lane_shard,
        nonce,
        route_address,
        client_urls,
        nats_urls,
    };
    let root = schema::RouteHello::create(&mut builder, &args);
    builder.finish_minimal(root);
    builder.finished_data().to_vec()
}

fn message_meta(subject: &str, reply: Option<&str>, headers: Option<&[u8]>, picks: &[u64]) -> Vec<u8> {
    let mut builder = FlatBufferBuilder::new();
    let subject = Some(builder.create_string(subject));
    let reply = reply.map(|reply| builder.create_string(reply));
    let headers = headers.map(|block| builder.create_vector(block));
    let queue_picks = Some(builder.create_vector(picks));
    let root =
        schema::RouteMessage::create(&mut builder, &schema::RouteMessageArgs { subject, reply, headers, queue_picks });
    builder.finish_minimal(root);
    builder.finished_data().to_vec()
}

fn interest_meta(pattern: &str, queue: Option<&str>) -> Vec<u8> {
    let mut builder = FlatBufferBuilder::new();
    let pattern = Some(builder.create_string(pattern));
    let queue = queue.map(|queue| builder.create_string(queue));
    let root = schema::RouteInterest::create(&mut builder, &schema::RouteInterestArgs { add: true, pattern, queue });
    builder.finish_minimal(root);
    builder.finished_data().to_vec()
}

fn decode_hello(hello: &RouteHello) -> Result<RouteFrame, WireError> {
    decode_route(raw(64, 0, &hello_meta(hello, &hello.nonce), &[]), &limits())
}

/// One valid frame of every route op, written by the encoder.
fn every_route_frame() -> Vec<(RouteOp, Bytes)> {
    let mut encoder = Encoder::default();
    let mut frames = Vec::new();
    let mut push = |op: RouteOp, write: &mut dyn FnMut(&mut Encoder, &mut BytesMut)| {
        let mut out = BytesMut::new();
        write(&mut encoder, &mut out);
        frames.push((op, out.freeze()));
    };
    push(RouteOp::Hello, &mut |encoder, out| encoder.route_hello(out, &a_hello()).expect("encodes"));
    push(RouteOp::Auth, &mut |encoder, out| encoder.route_auth(out, &RouteAuth { mac: [9; 32] }).expect("encodes"));
    push(RouteOp::Interest, &mut |encoder, out| {
        encoder.route_interest(out, true, b"orders.*", Some(b"workers")).expect("encodes")
    });
    push(RouteOp::Message, &mut |encoder, out| {
        encoder
            .route_message(
                out,
                &flit_wire::route::OutgoingRouteMessage {
                    subject: b"orders.eu",
                    reply: Some(b"_INBOX.a.1"),
                    headers: None,
                    payload: b"{}",
                    queue_picks: &[5, 6],
                    store_request: 9,
                },
            )
            .expect("encodes")
    });
    push(RouteOp::Ping, &mut |_, out| Encoder::route_ping(out, 41));
    push(RouteOp::Pong, &mut |_, out| Encoder::route_pong(out, 41));
    push(RouteOp::Capture, &mut |encoder, out| encoder.route_capture(out, true, b"orders.>").expect("encodes"));
    push(RouteOp::Barrier, &mut |_, out| Encoder::route_barrier(out, 12));
    push(RouteOp::BarrierAck, &mut |_, out| Encoder::route_barrier_ack(out, 12));
    push(RouteOp::StoreAck, &mut |encoder, out| {
        encoder.route_store_ack(out, &flit_wire::PublishAck::stored(9, "orders", 3, false)).expect("encodes")
    });
    frames
}

/// One valid frame of every client op, written by the encoder.
fn every_client_frame() -> Vec<Bytes> {
    let mut encoder = Encoder::default();
    let mut frames = Vec::new();
    let mut out = BytesMut::new();
    let hello = Hello { version_min: 1, version_max: 2, client_name: None, auth_token: None, ack_mode: false };
    encoder.hello(&mut out, &hello).expect("encodes");
    frames.push(out.split().freeze());
    encoder.publish(&mut out, b"orders.eu", None, None, b"x").expect("encodes");
    frames.push(out.split().freeze());
    encoder.subscribe(&mut out, b"orders.>", None, 1).expect("encodes");
    frames.push(out.split().freeze());
    encoder.unsubscribe(&mut out, Unsubscribe { subscription_id: 1, after_messages: 0 }).expect("encodes");
    frames.push(out.split().freeze());
    encoder.error(&mut out, ErrorCode::SlowConsumer, "slow").expect("encodes");
    frames.push(out.split().freeze());
    for op in [Op::Ping, Op::Pong, Op::Ok] {
        Encoder::bare(&mut out, op);
        frames.push(out.split().freeze());
    }
    frames
}

#[test]
fn the_client_decoder_refuses_every_route_op() {
    for (op, frame) in every_route_frame() {
        let byte = op as u8;
        assert!(is_route_op(byte));
        assert_eq!(check(&frame, limits().frame_bytes_max()), Check::Invalid(WireError::UnknownOp(byte)), "{op:?}");
        assert_eq!(check(&frame[..5], limits().frame_bytes_max()), Check::Invalid(WireError::UnknownOp(byte)));
        let error = decode(frame, &limits()).expect_err("a route op on a client connection");
        assert_eq!(error, WireError::UnknownOp(byte));
        assert_eq!(error.code(), ErrorCode::UnknownOp);
    }
}

#[test]
fn the_route_decoder_refuses_every_client_op() {
    for frame in every_client_frame() {
        let byte = frame[4];
        assert!(!is_route_op(byte));
        let answer = check_route(&frame, limits().frame_bytes_max());
        assert_eq!(answer, Check::Invalid(WireError::UnknownOp(byte)), "client op {byte}");
        let error = decode_route(frame, &limits()).expect_err("a client op on a route");
        assert_eq!(error, WireError::UnknownOp(byte));
        assert_eq!(error.code(), ErrorCode::UnknownOp);
    }
    for byte in (0..=u8::MAX).filter(|byte| Op::from_u8(*byte).is_some()) {
        assert!(!is_route_op(byte), "client op {byte} is also a route op");
        let header = FrameHeader { body_len: 0, op: Op::from_u8(byte).expect("known"), meta_len: 0, tag: 0 };
        assert_eq!(
            decode_route(Bytes::copy_from_slice(&header.to_bytes()), &limits()),
            Err(WireError::UnknownOp(byte))
        );
    }
}

#[test]
fn every_route_frame_is_whole_to_check_route_and_decodes() {
    for (op, frame) in every_route_frame() {
        assert_eq!(check_route(&frame, limits().frame_bytes_max()), Check::Complete(frame.len()), "{op:?}");
        assert_eq!(decode_route(frame, &limits()).expect("decodes").op(), op);
    }
}

#[test]
fn ping_and_pong_carry_their_token_in_the_tag() {
    let mut out = BytesMut::new();
    Encoder::route_ping(&mut out, u64::MAX);
    Encoder::route_pong(&mut out, 7);
    assert_eq!(out.len(), 2 * FRAME_HEADER_BYTES);
    let pong = out.split_off(FRAME_HEADER_BYTES).freeze();
    assert_eq!(decode_route(out.freeze(), &limits()), Ok(RouteFrame::Ping(u64::MAX)));
    assert_eq!(decode_route(pong, &limits()), Ok(RouteFrame::Pong(7)));
}

#[test]
fn a_route_message_is_the_received_frame_and_ranges_into_it() {
    let headers = encode_headers(&[("trace", "7f3a")]).expect("one entry");
    let mut out = BytesMut::new();
    let write = Encoder::default().route_message(
        &mut out,
        &flit_wire::route::OutgoingRouteMessage {
            subject: b"a.b",
            reply: Some(b"r.1"),
            headers: Some(&headers),
            payload: b"hi",
            queue_picks: &[1, 2, 3],
            store_request: 0,
        },
    );
    write.expect("encodes");
    let frame = out.freeze();
    let Ok(RouteFrame::Message(message)) = decode_route(frame.clone(), &limits()) else { panic!("a message") };
    assert_eq!(message.frame.as_ptr(), frame.as_ptr());
    assert_eq!(message.subject(), b"a.b");
    assert_eq!(message.reply(), Some(&b"r.1"[..]));
    assert_eq!(message.headers(), Some(&headers[..]));
    assert_eq!(message.payload(), b"hi");
    assert_eq!(message.payload, frame.len() - 2..frame.len());
    assert_eq!(message.queue_picks, vec![1, 2, 3]);
}

/// Changes one field of a valid hello so that it breaks a rule.
type Breaker = Box<dyn Fn(&mut RouteHello)>;

#[test]
fn hello_limits_are_refused_by_encoder_and_decoder() {
    let long_url = format!("nats://{}", "h".repeat(ROUTE_URL_BYTES_MAX));
    let cases: Vec<(&str, Breaker)> = vec![
        ("cluster_name", Box::new(|hello| hello.cluster_name = "c".repeat(CLUSTER_NAME_BYTES_MAX + 1))),
        ("cluster_name", Box::new(|hello| hello.cluster_name = String::new())),
        ("cluster_name", Box::new(|hello| hello.cluster_name = "prod eu".to_owned())),
        ("client_urls", Box::new(|hello| hello.client_urls = vec!["flit://h:1".to_owned(); ROUTE_URLS_MAX + 1])),
        ("nats_urls", Box::new(|hello| hello.nats_urls = vec!["nats://h:1".to_owned(); ROUTE_URLS_MAX + 1])),
        ("client_urls", Box::new(move |hello| hello.client_urls = vec![long_url.clone()])),
        ("nats_urls", Box::new(|hello| hello.nats_urls = vec![String::new()])),
        ("nats_urls", Box::new(|hello| hello.nats_urls = vec!["nats://h:1\n".to_owned()])),
        ("route_address", Box::new(|hello| hello.route_address = "a".repeat(ROUTE_URL_BYTES_MAX + 1))),
        ("version_min", Box::new(|hello| hello.version_min = 0)),
        ("version_min", Box::new(|hello| (hello.version_min, hello.version_max) = (3, 2))),
        ("lane_shard", Box::new(|hello| hello.lane_shard = hello.shard_count)),
        ("lane_shard", Box::new(|hello| (hello.shard_count, hello.lane_shard) = (0, 0))),
    ];
    for (field, break_it) in cases {
        let mut hello = a_hello();
        break_it(&mut hello);
        let from_encoder = Encoder::default().route_hello(&mut BytesMut::new(), &hello).expect_err(field);
        let from_decoder = decode_hello(&hello).expect_err(field);
        for error in [&from_encoder, &from_decoder] {
            assert!(
                matches!(error, WireError::InvalidField { table: "RouteHello", field: f, .. } if *f == field),
                "{error:?}"
            );
            assert_eq!(error.code(), ErrorCode::InvalidField);
        }
    }
}

#[test]
fn hello_at_its_limits_round_trips() {
    let mut hello = a_hello();
    hello.cluster_name = "c".repeat(CLUSTER_NAME_BYTES_MAX);
    hello.client_urls = vec![format!("flit://{}", "h".repeat(ROUTE_URL_BYTES_MAX - 7)); ROUTE_URLS_MAX];
    hello.nats_urls = vec![format!("nats://{}", "h".repeat(ROUTE_URL_BYTES_MAX - 7)); ROUTE_URLS_MAX];
    hello.route_address = "a".repeat(ROUTE_URL_BYTES_MAX);
    let mut out = BytesMut::new();
    Encoder::default().route_hello(&mut out, &hello).expect("the largest hello fits one meta");
    assert_eq!(decode_route(out.freeze(), &limits()), Ok(RouteFrame::Hello(hello)));
}

#[test]
fn nonce_and_mac_must_be_exactly_32_bytes() {
    for length in [0, 31, 33] {
        let frame = raw(64, 0, &hello_meta(&a_hello(), &vec![1; length]), &[]);
        let error = decode_route(frame, &limits()).expect_err("short or long nonce");
        assert!(matches!(error, WireError::InvalidField { table: "RouteHello", field: "nonce", .. }), "{error:?}");
        let mut builder = FlatBufferBuilder::new();
        let mac = Some(builder.create_vector(&vec![1u8; length]));
        let root = schema::RouteAuth::create(&mut builder, &schema::RouteAuthArgs { mac });
        builder.finish_minimal(root);
        let error = decode_route(raw(65, 0, builder.finished_data(), &[]), &limits()).expect_err("bad mac");
        assert!(matches!(error, WireError::InvalidField { table: "RouteAuth", field: "mac", .. }), "{error:?}");
        assert_eq!(error.code(), ErrorCode::InvalidField);
    }
}

#[test]
fn more_than_64_queue_picks_are_refused() {
    let picks = vec![1u64; QUEUE_PICKS_MAX + 1];
    let from_encoder = Encoder::default().route_message(
        &mut BytesMut::new(),
        &flit_wire::route::OutgoingRouteMessage {
            subject: b"a.b",
            reply: None,
            headers: None,
            payload: b"",
            queue_picks: &picks,
            store_request: 0,
        },
    );
    let from_decoder = decode_route(raw(68, 0, &message_meta("a.b", None, None, &picks), &[]), &limits());
    for result in [from_encoder.map(|_| ()), from_decoder.map(|_| ())] {
        let error = result.expect_err("65 picks");
        assert!(matches!(error, WireError::InvalidField { field: "queue_picks", .. }), "{error:?}");
    }
    let picks = vec![1u64; QUEUE_PICKS_MAX];
    assert!(decode_route(raw(68, 0, &message_meta("a.b", None, None, &picks), &[]), &limits()).is_ok());
}

#[test]
fn a_payload_above_the_limit_is_refused() {
    let small = Limits { payload_bytes_max: 8 };
    let frame = raw(68, 0, &message_meta("a.b", None, None, &[]), &[0; 9]);
    let error = decode_route(frame, &small).expect_err("9 > 8 bytes");
    assert_eq!(error, WireError::PayloadTooLarge { payload_bytes: 9, limit_bytes: 8 });
    assert_eq!(error.code(), ErrorCode::PayloadTooLarge);
    assert!(decode_route(raw(68, 0, &message_meta("a.b", None, None, &[]), &[0; 8]), &small).is_ok());
}

#[test]
fn subjects_patterns_queues_and_headers_follow_the_client_rules() {
    let bad: Vec<(Bytes, ErrorCode)> = vec![
        (raw(68, 0, &message_meta("a.*", None, None, &[]), &[]), ErrorCode::InvalidSubject),
        (raw(68, 0, &message_meta("a..b", None, None, &[]), &[]), ErrorCode::InvalidSubject),
        (raw(68, 0, &message_meta("a.b", Some("r.>"), None, &[]), &[]), ErrorCode::InvalidSubject),
        (raw(68, 0, &message_meta("a.b", None, Some(&[1, 2, 3]), &[]), &[]), ErrorCode::InvalidHeaders),
        (raw(66, 0, &interest_meta("a.>.b", None), &[]), ErrorCode::InvalidSubject),
        (raw(66, 0, &interest_meta("a.b", Some("")), &[]), ErrorCode::InvalidQueueGroup),
        (raw(66, 0, &interest_meta("a.b", Some("two words")), &[]), ErrorCode::InvalidQueueGroup),
    ];
    for (frame, code) in bad {
        let error = decode_route(frame, &limits()).expect_err("invalid");
        assert_eq!(error.code(), code, "{error:?}");
    }
    let mut encoder = Encoder::default();
    let mut out = BytesMut::new();
    assert!(encoder
        .route_message(
            &mut out,
            &flit_wire::route::OutgoingRouteMessage {
                subject: b"a.*",
                reply: None,
                headers: None,
                payload: b"",
                queue_picks: &[],
                store_request: 0
            }
        )
        .is_err());
    assert!(encoder.route_interest(&mut out, true, b"a.b", Some(b"")).is_err());
    assert!(out.is_empty(), "nothing is written for a refused frame");
    let interest = decode_route(raw(66, 0, &interest_meta("a.*.>", Some("q")), &[]), &limits());
    let expected =
        RouteInterest { add: true, pattern: Bytes::from_static(b"a.*.>"), queue: Some(Bytes::from_static(b"q")) };
    assert_eq!(interest, Ok(RouteFrame::Interest(expected)));
}

#[test]
fn a_truncated_meta_is_an_invalid_flatbuffer() {
    let meta = hello_meta(&a_hello(), &[7; 32]);
    for length in [1, 4, 8, meta.len() / 2, meta.len() - 1] {
        let error = decode_route(raw(64, 0, &meta[..length], &[]), &limits()).expect_err("truncated");
        assert_eq!(error.code(), ErrorCode::InvalidFlatbuffer, "{length}: {error:?}");
    }
    let meta = message_meta("a.b", None, None, &[1, 2]);
    for length in [1, meta.len() / 2, meta.len() - 1] {
        // What was cut off the meta is read as payload instead: still refused.
        let frame = raw(68, 0, &meta[..length], &meta[length..]);
        let error = decode_route(frame, &limits()).expect_err("truncated");
        assert_eq!(error.code(), ErrorCode::InvalidFlatbuffer, "{length}: {error:?}");
    }
}

#[test]
fn a_frame_shorter_than_its_header_says_is_incomplete_then_malformed() {
    let (_, frame) = every_route_frame().remove(0);
    let short = frame.slice(..frame.len() - 1);
    assert_eq!(check_route(&short, limits().frame_bytes_max()), Check::Incomplete);
    assert_eq!(decode_route(short, &limits()).expect_err("short").code(), ErrorCode::MalformedFrame);
    let header_only = frame.slice(..FRAME_HEADER_BYTES - 1);
    assert_eq!(decode_route(header_only, &limits()).expect_err("short").code(), ErrorCode::MalformedFrame);
}

#[test]
fn garbage_and_missing_required_fields_are_invalid_flatbuffers() {
    for op in [64, 65, 66, 68] {
        let error = decode_route(raw(op, 0, &[0xff; 24], &[]), &limits()).expect_err("garbage");
        assert_eq!(error.code(), ErrorCode::InvalidFlatbuffer, "op {op}: {error:?}");
        // An empty table: every route table has a required field.
        let mut builder = FlatBufferBuilder::new();
        let start = builder.start_table();
        let root = builder.end_table(start);
        builder.finish_minimal(root);
        let error = decode_route(raw(op, 0, builder.finished_data(), &[]), &limits()).expect_err("empty");
        assert_eq!(error.code(), ErrorCode::InvalidFlatbuffer, "op {op}: {error:?}");
    }
}

#[test]
fn header_rules_tag_meta_payload_flags_and_size() {
    let meta = interest_meta("a.b", None);
    let bad = [
        raw(66, 1, &meta, &[]),      // tag on an op whose tag must be 0
        raw(69, 0, &meta, &[]),      // meta on a ping
        raw(66, 0, &meta, b"extra"), // payload on an interest
        raw(66, 0, &[], &[]),        // no meta where one is needed
        raw(69, 0, &[], b"x"),       // payload on a ping
    ];
    for frame in bad {
        assert_eq!(decode_route(frame.clone(), &limits()).expect_err("header").code(), ErrorCode::MalformedFrame);
        assert!(matches!(
            check_route(&frame, limits().frame_bytes_max()),
            Check::Invalid(WireError::MalformedFrame(_))
        ));
    }
    let mut flagged = BytesMut::from(&raw(69, 0, &[], &[])[..]);
    flagged[5] = 1;
    assert!(matches!(check_route(&flagged[..6], 1 << 20), Check::Invalid(WireError::MalformedFrame(_))));
    let huge = RouteHeader { body_len: u32::MAX, op: RouteOp::Message, meta_len: 8, tag: 0 }.to_bytes();
    let answer = check_route(&huge[..4], limits().frame_bytes_max());
    assert!(matches!(answer, Check::Invalid(WireError::FrameTooLarge { .. })));
    for unknown in [63u8, 67, 75, 127, 255] {
        assert_eq!(check_route(&[0, 0, 0, 0, unknown], 1 << 20), Check::Invalid(WireError::UnknownOp(unknown)));
    }
}

#[test]
fn route_version_is_negotiated_apart_from_the_client_version() {
    assert_eq!(ROUTE_PROTOCOL_VERSION, 2);
    assert_eq!(negotiate_route_version(ROUTE_PROTOCOL_VERSION_MIN, ROUTE_PROTOCOL_VERSION), Some(2));
    assert_eq!(negotiate_route_version(1, 5), Some(ROUTE_PROTOCOL_VERSION));
    // Version 1 (never released) is no longer spoken.
    assert_eq!(negotiate_route_version(1, 1), None);
    assert_eq!(negotiate_route_version(3, 5), None);
    // A hello offering only future versions still decodes: refusing it is the
    // node's decision (unsupported_version), not a malformed frame.
    let mut hello = a_hello();
    (hello.version_min, hello.version_max) = (3, 4);
    assert!(decode_hello(&hello).is_ok());
}

#[test]
fn a_capture_names_no_queue_group_and_a_store_ack_carries_its_request() {
    let meta = interest_meta("orders.>", Some("workers"));
    let error = decode_route(raw(71, 0, &meta, &[]), &limits()).expect_err("queue on a capture");
    assert!(matches!(error, WireError::InvalidField { field: "queue", .. }), "{error:?}");
    let meta = interest_meta("orders.>", None);
    let decoded = decode_route(raw(71, 0, &meta, &[]), &limits()).expect("a capture");
    assert!(matches!(decoded, RouteFrame::Capture(ref capture) if &capture.pattern[..] == b"orders.>" && capture.add));
    let mut out = BytesMut::new();
    let refused = flit_wire::PublishAck::refused(77, flit_wire::StreamCode::Unavailable, "owner down");
    Encoder::default().route_store_ack(&mut out, &refused).expect("encodes");
    assert_eq!(decode_route(out.freeze(), &limits()), Ok(RouteFrame::StoreAck(refused)));
    let mut out = BytesMut::new();
    Encoder::default()
        .route_message(
            &mut out,
            &flit_wire::route::OutgoingRouteMessage {
                subject: b"a.b",
                reply: None,
                headers: None,
                payload: b"x",
                queue_picks: &[],
                store_request: 5,
            },
        )
        .expect("encodes");
    match decode_route(out.freeze(), &limits()) {
        Ok(RouteFrame::Message(message)) => assert_eq!(message.store_request, 5),
        other => panic!("{other:?}"),
    }
}
