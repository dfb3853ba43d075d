//! The stream frames of protocol version 2 (ops 12 to 17), one behaviour per
//! test: every frame survives encode -> check -> decode unchanged; the tag
//! rules; bad names, subjects, lists, enum values and sizes are refused with
//! the code the server would close the connection with; a List reply that
//! does not fit one meta is shortened and says how many it left out.

use bytes::{Bytes, BytesMut};
use flatbuffers::FlatBufferBuilder;
use flit_wire::schema;
use flit_wire::{
    check, decode_publish, decode_stream, encode_headers, negotiate_version, Ack, AckKind, AckPolicy, Check,
    ConsumerConfigSpec, ConsumerInfo, Discard, Durability, Encoder, ErrorCode, Fetch, FrameHeader, Limits, Op,
    PublishAck, StartPosition, StreamCode, StreamCommand, StreamConfigSpec, StreamFrame, StreamInfo, StreamMessage,
    StreamMessageMeta, StreamReply, StreamRequest, WireError, FRAME_HEADER_BYTES, META_BYTES_MAX,
    STREAMS_PER_REPLY_MAX, SUBJECTS_PER_STREAM_MAX,
};

fn limits() -> Limits {
    Limits::default()
}

/// Encodes with `write`, checks that `check` sees exactly one whole frame,
/// and decodes it.
fn encode_then_decode(write: impl FnOnce(&mut Encoder, &mut BytesMut) -> Result<(), WireError>) -> StreamFrame {
    let mut out = BytesMut::new();
    write(&mut Encoder::default(), &mut out).expect("encodes");
    let frame = out.freeze();
    assert_eq!(check(&frame, limits().frame_bytes_max()), Check::Complete(frame.len()));
    decode_stream(frame, &limits()).expect("decodes")
}

fn round_trip(frame: StreamFrame) {
    let decoded = encode_then_decode(|encoder, out| encoder.stream_frame(out, &frame));
    assert_eq!(decoded, frame);
}

fn orders_config() -> StreamConfigSpec {
    StreamConfigSpec {
        name: "ORDERS".to_owned(),
        subjects: vec!["orders.>".to_owned(), "returns.*.created".to_owned()],
        durability: Durability::Interval { sync_interval_ms: 10 },
        bytes_max: 10 << 30,
        age_ms_max: 7 * 24 * 3600 * 1000,
        messages_max: 1_000_000,
        message_bytes_max: 1 << 20,
        discard: Discard::New,
        dedup_window_ms: 120_000,
    }
}

fn worker_config() -> ConsumerConfigSpec {
    ConsumerConfigSpec {
        name: Some("billing-worker_1".to_owned()),
        start: StartPosition::Sequence { sequence: 42 },
        ack_policy: AckPolicy::Explicit,
        ack_wait_ms: 30_000,
        deliveries_max: 5,
        ack_pending_max: 1000,
        dead_letter_subject: Some("dead.orders".to_owned()),
        deliver_subject: None,
    }
}

fn request(command: StreamCommand) -> StreamFrame {
    StreamFrame::Request(StreamRequest { request_id: 7, command })
}

#[test]
fn every_stream_request_action_round_trips() {
    let push = ConsumerConfigSpec {
        name: None,
        start: StartPosition::Time { timestamp_ns: 1_700_000_000_000_000_000 },
        ack_policy: AckPolicy::None,
        deliver_subject: Some("push.orders".to_owned()),
        ..ConsumerConfigSpec::default()
    };
    let commands = [
        StreamCommand::Add(orders_config()),
        StreamCommand::Add(StreamConfigSpec::new("memory-only", ["m.>"])),
        StreamCommand::Remove { stream: "ORDERS".to_owned() },
        StreamCommand::Info { stream: "ORDERS".to_owned() },
        StreamCommand::List { after: None },
        StreamCommand::List { after: Some("ORDERS".to_owned()) },
        StreamCommand::ConsumerAdd { stream: "ORDERS".to_owned(), config: worker_config() },
        StreamCommand::ConsumerAdd { stream: "ORDERS".to_owned(), config: push },
        StreamCommand::ConsumerRemove { stream: "ORDERS".to_owned(), consumer: "billing-worker_1".to_owned() },
        StreamCommand::ConsumerInfo { stream: "ORDERS".to_owned(), consumer: "billing-worker_1".to_owned() },
    ];
    for command in commands {
        round_trip(request(command));
    }
}

#[test]
fn every_durability_and_start_position_round_trips() {
    for durability in [Durability::Always, Durability::Interval { sync_interval_ms: 1 }, Durability::Memory] {
        let config = StreamConfigSpec { durability, ..orders_config() };
        round_trip(request(StreamCommand::Add(config)));
    }
    let starts = [
        StartPosition::First,
        StartPosition::Last,
        StartPosition::New,
        StartPosition::Sequence { sequence: u64::MAX },
        StartPosition::Time { timestamp_ns: 0 },
    ];
    for start in starts {
        let config = ConsumerConfigSpec { start, ..worker_config() };
        round_trip(request(StreamCommand::ConsumerAdd { stream: "S".to_owned(), config }));
    }
}

#[test]
fn stream_replies_round_trip() {
    let info = StreamInfo {
        config: orders_config(),
        messages: 12,
        bytes: 3456,
        first_sequence: 3,
        last_sequence: 14,
        consumers: 2,
        status: "corrupt: 00000000000000000001.log at 4096".to_owned(),
    };
    let consumer = ConsumerInfo {
        config: worker_config(),
        delivered_sequence: 14,
        ack_floor: 10,
        ack_pending: 4,
        redeliveries_total: 1,
        dead_letters_total: 0,
        lag: 0,
        stalled: true,
    };
    let replies = [
        StreamReply::ok(1),
        StreamReply::refused(2, StreamCode::NotFound, "no stream named ORDERS"),
        StreamReply { streams: vec![info.clone(), info], streams_omitted: 5, ..StreamReply::ok(3) },
        StreamReply { consumer: Some(consumer), ..StreamReply::ok(4) },
        StreamReply { code: StreamCode::FetchExpired.as_u16(), delivered: 3, ..StreamReply::ok(5) },
        // A code this version does not know is kept as it is.
        StreamReply { code: 599, ..StreamReply::ok(6) },
    ];
    for reply in replies {
        round_trip(StreamFrame::Reply(reply));
    }
}

#[test]
fn publish_acks_fetches_messages_and_acks_round_trip() {
    round_trip(StreamFrame::PublishAck(PublishAck::stored(9, "ORDERS", 1, false)));
    round_trip(StreamFrame::PublishAck(PublishAck::stored(u64::MAX, "ORDERS", 77, true)));
    round_trip(StreamFrame::PublishAck(PublishAck::refused(10, StreamCode::NotFound, "no stream captures a.b")));
    round_trip(StreamFrame::PublishAck(PublishAck {
        stream: "ORDERS".to_owned(),
        ..PublishAck::refused(11, StreamCode::DiskFull, "")
    }));
    round_trip(StreamFrame::Fetch(Fetch {
        request_id: 12,
        stream: "ORDERS".to_owned(),
        consumer: "w".to_owned(),
        batch: 256,
        wait_ms: 5000,
    }));
    let headers = encode_headers(&[("Flit-Msg-Id", "order-1")]).expect("headers");
    for (tag, headers, payload) in [(12, Some(headers), &b"{\"id\":1}"[..]), (0, None, &b""[..])] {
        round_trip(StreamFrame::Message(StreamMessage {
            tag,
            meta: StreamMessageMeta {
                stream: "ORDERS".to_owned(),
                consumer: "w".to_owned(),
                subject: Bytes::from_static(b"orders.eu.created"),
                sequence: 14,
                timestamp_ns: 1_700_000_000_123_456_789,
                delivery_count: 2,
                headers,
            },
            payload: Bytes::copy_from_slice(payload),
        }));
    }
    for (request_id, kind) in [(0, AckKind::Ack), (13, AckKind::Nak), (0, AckKind::Term), (14, AckKind::InProgress)] {
        let ack = Ack { request_id, stream: "ORDERS".to_owned(), consumer: "w".to_owned(), sequence: 14, kind };
        round_trip(StreamFrame::Ack(ack));
    }
}

#[test]
fn a_publish_carries_its_ack_id_in_the_tag_and_decodes_unchanged() {
    let mut out = BytesMut::new();
    Encoder::default().publish_with_ack_id(&mut out, 99, b"orders.eu", None, None, b"x").expect("encodes");
    let parts = decode_publish(&out, &limits()).expect("a Publish with a non-zero tag decodes");
    assert_eq!(parts.ack_id, 99);
    assert_eq!(&out[parts.subject], b"orders.eu");
    let mut plain = BytesMut::new();
    Encoder::default().publish(&mut plain, b"orders.eu", None, None, b"x").expect("encodes");
    assert_eq!(decode_publish(&plain, &limits()).expect("decodes").ack_id, 0);
}

fn header_bytes(op: Op, meta_len: u16, tag: u64) -> [u8; FRAME_HEADER_BYTES] {
    FrameHeader { body_len: u32::from(meta_len), op, meta_len, tag }.to_bytes()
}

#[test]
fn request_ids_of_zero_are_refused_where_a_reply_is_matched_by_them() {
    for op in [Op::StreamRequest, Op::StreamReply, Op::PublishAck, Op::Fetch] {
        let bytes = header_bytes(op, 8, 0);
        let Check::Invalid(error) = check(&[&bytes[..], &[0; 8]].concat(), limits().frame_bytes_max()) else {
            panic!("{op:?} with tag 0 passed check");
        };
        assert_eq!(error.code(), ErrorCode::MalformedFrame, "{op:?}");
    }
    let fetch = Fetch { request_id: 0, stream: "S".to_owned(), consumer: "c".to_owned(), batch: 1, wait_ms: 0 };
    let error = Encoder::default().fetch(&mut BytesMut::new(), &fetch).expect_err("request id 0");
    assert_eq!(error.code(), ErrorCode::MalformedFrame);
    // Hello keeps its version-1 rule: tag 0.
    let Check::Invalid(error) = check(&[&header_bytes(Op::Hello, 8, 5)[..], &[0; 8]].concat(), 1 << 20) else {
        panic!("Hello with a tag passed check");
    };
    assert_eq!(error.code(), ErrorCode::MalformedFrame);
}

fn code_of(write: impl FnOnce(&mut Encoder, &mut BytesMut) -> Result<(), WireError>) -> ErrorCode {
    write(&mut Encoder::default(), &mut BytesMut::new()).expect_err("refused").code()
}

#[test]
fn bad_names_are_invalid_name() {
    let long = "n".repeat(65);
    for name in ["", long.as_str(), "a.b", "a b", "orders>", "ünïcode", "*"] {
        let add = request(StreamCommand::Add(StreamConfigSpec::new(name, ["x"])));
        assert_eq!(code_of(|encoder, out| encoder.stream_frame(out, &add)), ErrorCode::InvalidName, "{name:?}");
        let fetch = Fetch { request_id: 1, stream: "S".to_owned(), consumer: name.to_owned(), batch: 1, wait_ms: 0 };
        assert_eq!(code_of(|encoder, out| encoder.fetch(out, &fetch)), ErrorCode::InvalidName, "{name:?}");
    }
    assert_eq!(ErrorCode::InvalidName.as_u16(), 205);
    assert!(flit_wire::validate_name(&"n".repeat(64)).is_ok());
}

#[test]
fn bad_subjects_and_too_many_subjects_are_refused() {
    for subject in ["", "a..b", "a.>.b", "a b"] {
        let add = request(StreamCommand::Add(StreamConfigSpec::new("S", [subject])));
        assert_eq!(code_of(|encoder, out| encoder.stream_frame(out, &add)), ErrorCode::InvalidSubject, "{subject:?}");
    }
    let wildcard_deliver = ConsumerConfigSpec { deliver_subject: Some("push.*".to_owned()), ..worker_config() };
    let add = request(StreamCommand::ConsumerAdd { stream: "S".to_owned(), config: wildcard_deliver });
    assert_eq!(code_of(|encoder, out| encoder.stream_frame(out, &add)), ErrorCode::InvalidSubject);
    let subjects: Vec<String> = (0..=SUBJECTS_PER_STREAM_MAX).map(|index| format!("s.{index}")).collect();
    let too_many = StreamConfigSpec::new("S", subjects.clone());
    let add = request(StreamCommand::Add(too_many));
    assert_eq!(code_of(|encoder, out| encoder.stream_frame(out, &add)), ErrorCode::InvalidField);
    assert!(matches!(
        decode_raw(Op::StreamRequest, &raw_add_request(&subjects, 1, 0)),
        Err(WireError::InvalidField { field: "subjects", .. })
    ));
    let none = request(StreamCommand::Add(StreamConfigSpec::new("S", Vec::<String>::new())));
    assert_eq!(code_of(|encoder, out| encoder.stream_frame(out, &none)), ErrorCode::InvalidField);
}

#[test]
fn zero_sequences_counts_and_intervals_are_invalid_field() {
    let interval = StreamConfigSpec { durability: Durability::Interval { sync_interval_ms: 0 }, ..orders_config() };
    let zero_start = ConsumerConfigSpec { start: StartPosition::Sequence { sequence: 0 }, ..worker_config() };
    let frames = [
        request(StreamCommand::Add(interval)),
        request(StreamCommand::ConsumerAdd { stream: "S".to_owned(), config: zero_start }),
        StreamFrame::Fetch(Fetch {
            request_id: 1,
            stream: "S".to_owned(),
            consumer: "c".to_owned(),
            batch: 0,
            wait_ms: 0,
        }),
        StreamFrame::Ack(Ack {
            request_id: 0,
            stream: "S".to_owned(),
            consumer: "c".to_owned(),
            sequence: 0,
            kind: AckKind::Ack,
        }),
        StreamFrame::PublishAck(PublishAck::stored(1, "S", 0, false)),
    ];
    for frame in frames {
        assert_eq!(code_of(|encoder, out| encoder.stream_frame(out, &frame)), ErrorCode::InvalidField, "{frame:?}");
    }
}

/// A whole frame from a raw meta, bypassing the `Encoder`'s checks.
fn decode_raw(op: Op, meta: &[u8]) -> Result<StreamFrame, WireError> {
    let mut out = BytesMut::new();
    out.extend_from_slice(&header_bytes(op, u16::try_from(meta.len()).expect("fits"), 1));
    out.extend_from_slice(meta);
    decode_stream(out.freeze(), &limits())
}

/// An Add request built with flatbuffers directly: any subjects, any raw
/// durability value, any sync interval.
fn raw_add_request(subjects: &[String], durability: u8, sync_interval_ms: u32) -> Vec<u8> {
    let mut builder = FlatBufferBuilder::new();
    let name = Some(builder.create_string("S"));
    let offsets: Vec<_> = subjects.iter().map(|subject| builder.create_string(subject)).collect();
    let subjects = Some(builder.create_vector(&offsets));
    let config = schema::StreamConfig::create(
        &mut builder,
        &schema::StreamConfigArgs {
            name,
            subjects,
            durability: schema::Durability(durability),
            sync_interval_ms,
            ..Default::default()
        },
    );
    let root = schema::StreamRequest::create(
        &mut builder,
        &schema::StreamRequestArgs {
            action: schema::StreamAction::Add,
            stream_config: Some(config),
            ..Default::default()
        },
    );
    builder.finish_minimal(root);
    builder.finished_data().to_vec()
}

fn raw_request(action: u8) -> Vec<u8> {
    let mut builder = FlatBufferBuilder::new();
    let stream = Some(builder.create_string("S"));
    let consumer = Some(builder.create_string("c"));
    let args =
        schema::StreamRequestArgs { action: schema::StreamAction(action), stream, consumer, ..Default::default() };
    let root = schema::StreamRequest::create(&mut builder, &args);
    builder.finish_minimal(root);
    builder.finished_data().to_vec()
}

fn raw_ack(kind: u8) -> Vec<u8> {
    let mut builder = FlatBufferBuilder::new();
    let stream = Some(builder.create_string("S"));
    let consumer = Some(builder.create_string("c"));
    let args = schema::AckArgs { stream, consumer, sequence: 1, kind: schema::AckKind(kind) };
    let root = schema::Ack::create(&mut builder, &args);
    builder.finish_minimal(root);
    builder.finished_data().to_vec()
}

#[test]
fn unknown_enum_values_are_refused_not_defaulted() {
    let subjects = ["a".to_owned()];
    let cases = [
        (decode_raw(Op::StreamRequest, &raw_request(8)), "action", 8),
        (decode_raw(Op::StreamRequest, &raw_request(255)), "action", 255),
        (decode_raw(Op::StreamRequest, &raw_add_request(&subjects, 3, 0)), "durability", 3),
        (decode_raw(Op::Ack, &raw_ack(4)), "kind", 4),
    ];
    for (result, expected_field, expected_value) in cases {
        match result {
            Err(error @ WireError::UnknownEnumValue { field, value, .. }) => {
                assert_eq!((field, value), (expected_field, expected_value));
                assert_eq!(error.code(), ErrorCode::InvalidField);
                assert_eq!(error.code().as_u16(), 206);
            }
            other => panic!("{expected_field} {expected_value}: {other:?}"),
        }
    }
    // Action 0 is "no action", not Add.
    assert!(matches!(
        decode_raw(Op::StreamRequest, &raw_request(0)),
        Err(WireError::InvalidField { field: "action", .. })
    ));
    // A sync interval on a stream that does not sync by interval contradicts it.
    assert!(matches!(
        decode_raw(Op::StreamRequest, &raw_add_request(&subjects, 0, 10)),
        Err(WireError::InvalidField { field: "sync_interval_ms", .. })
    ));
    // An action missing its required field.
    assert!(matches!(
        decode_raw(Op::StreamRequest, &raw_request(1)),
        Err(WireError::InvalidField { field: "stream_config", .. })
    ));
}

#[test]
fn a_meta_that_is_not_the_ops_table_is_invalid_flatbuffer() {
    // A Fetch without its required strings fails verification.
    let mut builder = FlatBufferBuilder::new();
    let root =
        schema::Unsubscribe::create(&mut builder, &schema::UnsubscribeArgs { subscription_id: 1, after_messages: 2 });
    builder.finish_minimal(root);
    let error = decode_raw(Op::Fetch, builder.finished_data()).expect_err("not a Fetch");
    assert_eq!(error.code(), ErrorCode::InvalidFlatbuffer);
}

fn big_info(index: usize) -> StreamInfo {
    let subjects: Vec<String> =
        (0..8).map(|subject| format!("stream-{index}.subject-{subject}.{}", "x".repeat(60))).collect();
    StreamInfo { config: StreamConfigSpec::new(format!("stream-{index:04}"), subjects), ..StreamInfo::default() }
}

#[test]
fn a_list_reply_too_big_for_one_meta_is_shortened_and_counts_what_it_left_out() {
    let streams: Vec<StreamInfo> = (0..300).map(big_info).collect();
    let mut out = BytesMut::new();
    let written = Encoder::default().stream_list_reply(&mut out, 5, &streams).expect("fits some");
    assert!(written > 0 && written < STREAMS_PER_REPLY_MAX, "wrote {written}");
    let StreamFrame::Reply(reply) = decode_stream(out.freeze(), &limits()).expect("decodes") else { panic!() };
    assert_eq!(reply.streams[..], streams[..written]);
    assert_eq!(reply.streams_omitted as usize, streams.len() - written);
    // The same streams in one StreamReply are too large: an error, not a truncated frame.
    let whole = StreamReply { streams: streams[..STREAMS_PER_REPLY_MAX].to_vec(), ..StreamReply::ok(5) };
    let mut out = BytesMut::new();
    let error = Encoder::default().stream_reply(&mut out, &whole).expect_err("meta above META_BYTES_MAX");
    assert_eq!(error, WireError::MalformedFrame("meta part above META_BYTES_MAX"));
    assert!(out.is_empty(), "nothing written on error");
    // Small streams: at most STREAMS_PER_REPLY_MAX per reply.
    let small: Vec<StreamInfo> = (0..300)
        .map(|index| StreamInfo { config: StreamConfigSpec::new(format!("s{index}"), ["a"]), ..StreamInfo::default() })
        .collect();
    let written = Encoder::default().stream_list_reply(&mut BytesMut::new(), 5, &small).expect("fits");
    assert_eq!(written, STREAMS_PER_REPLY_MAX);
}

#[test]
fn an_oversized_reply_message_is_refused_by_the_encoder() {
    let reply = StreamReply::refused(1, StreamCode::BadRequest, "m".repeat(META_BYTES_MAX));
    assert_eq!(code_of(|encoder, out| encoder.stream_reply(out, &reply)), ErrorCode::MalformedFrame);
}

#[test]
fn a_stream_message_payload_above_the_limit_is_payload_too_large() {
    let meta = StreamMessageMeta {
        stream: "S".to_owned(),
        consumer: "c".to_owned(),
        subject: Bytes::from_static(b"a.b"),
        sequence: 1,
        timestamp_ns: 0,
        delivery_count: 1,
        headers: None,
    };
    let mut out = BytesMut::new();
    Encoder::default().stream_message(&mut out, 1, &meta, &[7; 101]).expect("encodes");
    let error = decode_stream(out.freeze(), &Limits { payload_bytes_max: 100 }).expect_err("too large");
    assert_eq!(error.code(), ErrorCode::PayloadTooLarge);
}

#[test]
fn version_negotiation_picks_the_highest_common_version() {
    assert_eq!(flit_wire::PROTOCOL_VERSION, 2);
    assert_eq!(negotiate_version(1, 1), Some(1));
    assert_eq!(negotiate_version(1, 2), Some(2));
    assert_eq!(negotiate_version(1, 9), Some(2));
    assert_eq!(negotiate_version(2, 2), Some(2));
    assert_eq!(negotiate_version(3, 9), None);
    assert_eq!(negotiate_version(0, 0), None);
    assert_eq!(negotiate_version(2, 1), None);
    for op in [Op::StreamRequest, Op::StreamReply, Op::PublishAck, Op::Fetch, Op::StreamMessage, Op::Ack] {
        assert_eq!(op.version_min(), 2, "{op:?}");
        assert_eq!(Op::from_u8(op as u8), Some(op));
    }
    assert_eq!(Op::Publish.version_min(), 1);
}

#[test]
fn stream_codes_keep_their_numbers_and_names() {
    for code in StreamCode::ALL {
        assert_eq!(StreamCode::from_u16(code.as_u16()), Some(code));
    }
    let numbers: Vec<u16> = StreamCode::ALL.iter().map(|code| code.as_u16()).collect();
    assert_eq!(numbers, [0, 400, 403, 404, 408, 409, 413, 429, 503, 507]);
    assert_eq!(StreamCode::from_u16(418), None);
    assert_eq!(StreamCode::DiskFull.to_string(), "disk_full (507)");
}

#[test]
fn decode_gives_stream_frames_as_frame_stream_and_encoder_frame_writes_them_back() {
    let fetch = StreamFrame::Fetch(Fetch {
        request_id: 3,
        stream: "ORDERS".to_owned(),
        consumer: "w".to_owned(),
        batch: 1,
        wait_ms: 0,
    });
    let frame = flit_wire::Frame::Stream(fetch);
    let mut out = BytesMut::new();
    Encoder::default().frame(&mut out, &frame).expect("encodes");
    assert_eq!(flit_wire::decode(out.freeze(), &limits()).expect("decodes"), frame);
    assert_eq!(frame.op(), Op::Fetch);
    assert_eq!(frame.name(), "Fetch");
}
