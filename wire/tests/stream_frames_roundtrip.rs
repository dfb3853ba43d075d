//! Property: any valid stream frame (ops 12 to 17), written by the `Encoder`,
//! is one whole frame to `check` and decodes to the same value; and a stream
//! of them, cut anywhere, reads `Incomplete` until each frame is whole.

use bytes::{Bytes, BytesMut};
use flit_wire::{
    check, decode_stream, encode_headers, Ack, AckKind, AckPolicy, Check, ConsumerConfigSpec, ConsumerInfo, Discard,
    Durability, Encoder, Fetch, Limits, PublishAck, StartPosition, StreamCode, StreamCommand, StreamConfigSpec,
    StreamFrame, StreamInfo, StreamMessage, StreamMessageMeta, StreamReply, StreamRequest,
};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,64}"
}

fn subject() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-zA-Z0-9_-]{1,8}", 1..5).prop_map(|tokens| tokens.join("."))
}

fn pattern() -> impl Strategy<Value = String> {
    let token = prop_oneof![3 => "[a-z0-9]{1,6}", 1 => Just("*".to_owned())];
    (prop::collection::vec(token, 1..4), any::<bool>()).prop_map(|(mut tokens, tail)| {
        if tail {
            tokens.push(">".to_owned());
        }
        tokens.join(".")
    })
}

fn durability() -> impl Strategy<Value = Durability> {
    prop_oneof![
        Just(Durability::Always),
        Just(Durability::Memory),
        (1u32..).prop_map(|sync_interval_ms| Durability::Interval { sync_interval_ms }),
    ]
}

fn stream_config() -> impl Strategy<Value = StreamConfigSpec> {
    let limits = (any::<u64>(), any::<u64>(), any::<u64>(), any::<u32>(), any::<u64>());
    (name(), prop::collection::vec(pattern(), 1..8), durability(), limits, any::<bool>()).prop_map(
        |(name, subjects, durability, limits, discard_new)| {
            let (bytes_max, age_ms_max, messages_max, message_bytes_max, dedup_window_ms) = limits;
            StreamConfigSpec {
                name,
                subjects,
                durability,
                bytes_max,
                age_ms_max,
                messages_max,
                message_bytes_max,
                discard: if discard_new { Discard::New } else { Discard::Old },
                dedup_window_ms,
            }
        },
    )
}

fn start() -> impl Strategy<Value = StartPosition> {
    prop_oneof![
        Just(StartPosition::First),
        Just(StartPosition::Last),
        Just(StartPosition::New),
        (1u64..).prop_map(|sequence| StartPosition::Sequence { sequence }),
        any::<u64>().prop_map(|timestamp_ns| StartPosition::Time { timestamp_ns }),
    ]
}

fn consumer_config() -> impl Strategy<Value = ConsumerConfigSpec> {
    let numbers = (any::<u32>(), any::<u32>(), any::<u32>());
    let subjects = (prop::option::of(subject()), prop::option::of(subject()));
    (prop::option::of(name()), start(), any::<bool>(), numbers, subjects).prop_map(
        |(name, start, ack_none, (ack_wait_ms, deliveries_max, ack_pending_max), (dead_letter, deliver))| {
            ConsumerConfigSpec {
                name,
                start,
                ack_policy: if ack_none { AckPolicy::None } else { AckPolicy::Explicit },
                ack_wait_ms,
                deliveries_max,
                ack_pending_max,
                dead_letter_subject: dead_letter,
                deliver_subject: deliver,
            }
        },
    )
}

fn command() -> impl Strategy<Value = StreamCommand> {
    prop_oneof![
        stream_config().prop_map(StreamCommand::Add),
        name().prop_map(|stream| StreamCommand::Remove { stream }),
        name().prop_map(|stream| StreamCommand::Info { stream }),
        prop::option::of(name()).prop_map(|after| StreamCommand::List { after }),
        (name(), consumer_config()).prop_map(|(stream, config)| StreamCommand::ConsumerAdd { stream, config }),
        (name(), name()).prop_map(|(stream, consumer)| StreamCommand::ConsumerRemove { stream, consumer }),
        (name(), name()).prop_map(|(stream, consumer)| StreamCommand::ConsumerInfo { stream, consumer }),
    ]
}

fn stream_info() -> impl Strategy<Value = StreamInfo> {
    (stream_config(), any::<[u64; 4]>(), any::<u32>(), ".{0,40}").prop_map(|(config, numbers, consumers, status)| {
        let [messages, bytes, first_sequence, last_sequence] = numbers;
        StreamInfo { config, messages, bytes, first_sequence, last_sequence, consumers, status }
    })
}

fn consumer_info() -> impl Strategy<Value = ConsumerInfo> {
    (consumer_config(), any::<[u64; 5]>(), any::<u32>(), any::<bool>()).prop_map(
        |(config, numbers, ack_pending, stalled)| {
            let [delivered_sequence, ack_floor, redeliveries_total, dead_letters_total, lag] = numbers;
            ConsumerInfo {
                config,
                delivered_sequence,
                ack_floor,
                ack_pending,
                redeliveries_total,
                dead_letters_total,
                lag,
                stalled,
            }
        },
    )
}

fn code() -> impl Strategy<Value = u16> {
    prop_oneof![prop::sample::select(&StreamCode::ALL[..]).prop_map(StreamCode::as_u16), any::<u16>()]
}

fn reply() -> impl Strategy<Value = StreamReply> {
    let streams = prop::collection::vec(stream_info(), 0..4);
    (1u64.., code(), ".{0,40}", streams, prop::option::of(consumer_info()), any::<u32>(), any::<u32>()).prop_map(
        |(request_id, code, message, streams, consumer, delivered, streams_omitted)| StreamReply {
            request_id,
            code,
            message,
            streams,
            consumer,
            delivered,
            streams_omitted,
        },
    )
}

fn publish_ack() -> impl Strategy<Value = PublishAck> {
    prop_oneof![
        (1u64.., name(), 1u64.., any::<bool>())
            .prop_map(|(ack_id, stream, sequence, duplicate)| PublishAck::stored(ack_id, stream, sequence, duplicate)),
        (1u64.., 1u16.., prop::option::of(name()), any::<u64>(), ".{0,40}").prop_map(
            |(ack_id, code, stream, sequence, message)| PublishAck {
                ack_id,
                stream: stream.unwrap_or_default(),
                sequence,
                duplicate: false,
                code,
                message,
            }
        ),
    ]
}

fn headers() -> impl Strategy<Value = Option<Bytes>> {
    prop::option::of(prop::collection::vec(("[a-zA-Z-]{1,12}", ".{0,16}"), 0..4)).prop_map(|entries| {
        entries.map(|entries| {
            let pairs: Vec<(&str, &str)> = entries.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
            encode_headers(&pairs).expect("few entries")
        })
    })
}

fn message() -> impl Strategy<Value = StreamMessage> {
    let numbers = (1u64.., any::<u64>(), 1u32..);
    let payload = prop::collection::vec(any::<u8>(), 0..256).prop_map(Bytes::from);
    (any::<u64>(), name(), name(), subject(), numbers, headers(), payload).prop_map(
        |(tag, stream, consumer, subject, (sequence, timestamp_ns, delivery_count), headers, payload)| StreamMessage {
            tag,
            meta: StreamMessageMeta {
                stream,
                consumer,
                subject: Bytes::from(subject),
                sequence,
                timestamp_ns,
                delivery_count,
                headers,
            },
            payload,
        },
    )
}

fn ack_kind() -> impl Strategy<Value = AckKind> {
    prop::sample::select(&[AckKind::Ack, AckKind::Nak, AckKind::Term, AckKind::InProgress][..])
}

fn frame() -> impl Strategy<Value = StreamFrame> {
    prop_oneof![
        (1u64.., command())
            .prop_map(|(request_id, command)| StreamFrame::Request(StreamRequest { request_id, command })),
        reply().prop_map(StreamFrame::Reply),
        publish_ack().prop_map(StreamFrame::PublishAck),
        (1u64.., name(), name(), 1u32.., any::<u32>()).prop_map(|(request_id, stream, consumer, batch, wait_ms)| {
            StreamFrame::Fetch(Fetch { request_id, stream, consumer, batch, wait_ms })
        }),
        message().prop_map(StreamFrame::Message),
        (any::<u64>(), name(), name(), 1u64.., ack_kind()).prop_map(
            |(request_id, stream, consumer, sequence, kind)| {
                StreamFrame::Ack(Ack { request_id, stream, consumer, sequence, kind })
            }
        ),
    ]
}

proptest! {
    #[test]
    fn every_valid_stream_frame_round_trips(frame in frame()) {
        let limits = Limits::default();
        let mut out = BytesMut::new();
        Encoder::default().stream_frame(&mut out, &frame).expect("a valid frame encodes");
        let bytes = out.freeze();
        prop_assert_eq!(check(&bytes, limits.frame_bytes_max()), Check::Complete(bytes.len()));
        prop_assert_eq!(decode_stream(bytes, &limits).expect("decodes"), frame);
    }

    #[test]
    fn a_stream_of_stream_frames_cut_anywhere_is_incomplete_until_whole(
        frames in prop::collection::vec(frame(), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let limits = Limits::default();
        let mut encoder = Encoder::default();
        let mut out = BytesMut::new();
        let mut ends = Vec::new();
        for frame in &frames {
            encoder.stream_frame(&mut out, frame).expect("encodes");
            ends.push(out.len());
        }
        let at = cut.index(out.len());
        let frame_end = *ends.iter().find(|end| **end > at).expect("inside some frame");
        let frame_start = ends.iter().rev().find(|end| **end <= at).copied().unwrap_or(0);
        let answer = check(&out[frame_start..at], limits.frame_bytes_max());
        prop_assert_eq!(answer, Check::Incomplete, "cut at {} of a frame ending at {}", at, frame_end);
    }
}
