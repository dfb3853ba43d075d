//! Property tests: every frame the `Encoder` writes is one `check` accepts
//! whole, and `decode` gives back exactly the values that went in; prefixes
//! are never errors; frames in one buffer split where they were joined; and no
//! bytes at all make `check` or `decode` panic.

use bytes::{Bytes, BytesMut};
use flit_wire::{
    check, decode, encode_headers, Check, Deliver, Encoder, ErrorCode, ErrorFrame, Frame, Hello, Limits, Publish,
    Subscribe, Unsubscribe, Welcome, FRAME_HEADER_BYTES,
};
use proptest::prelude::*;

/// Bytes allowed inside a publish-subject token: no `.`, `*`, `>`, space,
/// control characters or DEL, plus a few multi-byte characters.
const TOKEN_CHARS: &[char] = &[
    'a', 'b', 'c', 'x', 'y', 'z', 'A', 'Z', '0', '9', '_', '-', '!', '#', '$', '%', '&', '+', '/', ':', '=', '?', '@',
    '~', '|', '{', '}', '"', '\'', 'é', '日', '🚀',
];

fn token() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKEN_CHARS), 1..8).prop_map(|chars| chars.into_iter().collect())
}

fn subject() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 1..8).prop_map(|tokens| tokens.join("."))
}

/// A subscription pattern: tokens, some of them `*`, perhaps a trailing `>`.
fn pattern() -> impl Strategy<Value = String> {
    let pattern_token = prop_oneof![3 => token(), 1 => Just("*".to_owned())];
    (prop::collection::vec(pattern_token, 1..8), any::<bool>()).prop_map(|(mut tokens, full_wildcard)| {
        if full_wildcard {
            tokens.push(">".to_owned());
        }
        tokens.join(".")
    })
}

fn queue_group() -> impl Strategy<Value = String> {
    // Queue names may hold `.`, `*` and `>`; only emptiness, length and whitespace matter.
    "[!-~é]{1,16}"
}

fn headers() -> impl Strategy<Value = Option<Bytes>> {
    prop::option::of(prop::collection::vec((".{0,12}", ".{0,24}"), 0..12)).prop_map(|entries| {
        entries.map(|entries| {
            let pairs: Vec<(&str, &str)> = entries.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
            encode_headers(&pairs).expect("at most 12 entries")
        })
    })
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..4096).prop_map(Bytes::from)
}

fn hello() -> impl Strategy<Value = Frame> {
    (any::<u16>(), any::<u16>(), prop::option::of(".{0,32}"), prop::option::of(".{0,32}"), any::<bool>()).prop_map(
        |(version_min, version_max, client_name, auth_token, ack_mode)| {
            Frame::Hello(Hello { version_min, version_max, client_name, auth_token, ack_mode })
        },
    )
}

fn welcome() -> impl Strategy<Value = Frame> {
    // Cluster URLs: no whitespace or control bytes, 1 to 256 bytes each.
    let cluster_urls = prop::collection::vec("[!-~é]{1,40}", 0..4);
    (
        any::<u16>(),
        ".{0,32}",
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        any::<u32>(),
        cluster_urls,
    )
        .prop_map(
            |(
                version,
                server_name,
                shard,
                shards,
                payload_bytes_max,
                meta_bytes_max,
                pending_bytes_max,
                subscriptions_max,
                cluster_urls,
            )| {
                Frame::Welcome(Welcome {
                    version,
                    server_name,
                    shard,
                    shards,
                    payload_bytes_max,
                    meta_bytes_max,
                    pending_bytes_max,
                    subscriptions_max,
                    cluster_urls,
                })
            },
        )
}

fn publish() -> impl Strategy<Value = Frame> {
    // A non-zero ack id asks for a PublishAck (version 2); 0 is a plain publish.
    let ack_id = prop_oneof![Just(0u64), any::<u64>()];
    (ack_id, subject(), prop::option::of(subject()), headers(), payload()).prop_map(
        |(ack_id, subject, reply, headers, payload)| {
            Frame::Publish(Publish {
                ack_id,
                subject: Bytes::from(subject),
                reply: reply.map(Bytes::from),
                headers,
                payload,
            })
        },
    )
}

fn subscribe() -> impl Strategy<Value = Frame> {
    (pattern(), prop::option::of(queue_group()), any::<u64>()).prop_map(|(pattern, queue, subscription_id)| {
        Frame::Subscribe(Subscribe { pattern: Bytes::from(pattern), queue: queue.map(Bytes::from), subscription_id })
    })
}

fn unsubscribe() -> impl Strategy<Value = Frame> {
    (any::<u64>(), any::<u64>()).prop_map(|(subscription_id, after_messages)| {
        Frame::Unsubscribe(Unsubscribe { subscription_id, after_messages })
    })
}

fn deliver() -> impl Strategy<Value = Frame> {
    let status = prop_oneof![Just(0u16), Just(flit_wire::STATUS_NO_RESPONDERS), any::<u16>()];
    (any::<u64>(), subject(), prop::option::of(subject()), headers(), status, payload()).prop_map(
        |(subscription_id, subject, reply, headers, status, payload)| {
            Frame::Deliver(Deliver {
                subscription_id,
                subject: Bytes::from(subject),
                reply: reply.map(Bytes::from),
                headers,
                status,
                payload,
            })
        },
    )
}

fn error() -> impl Strategy<Value = Frame> {
    (prop::sample::select(&ErrorCode::ALL[..]), ".{0,64}", any::<u32>()).prop_map(|(code, message, retry_after_ms)| {
        Frame::Error(ErrorFrame { code: code.as_u16(), message, retry_after_ms })
    })
}

/// Any frame of any op.
fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        hello(),
        welcome(),
        publish(),
        subscribe(),
        unsubscribe(),
        deliver(),
        Just(Frame::Ping),
        Just(Frame::Pong),
        Just(Frame::Ok),
        any::<u64>().prop_map(|close_within_ms| Frame::Draining { close_within_ms }),
        error(),
    ]
}

/// Appends `frame` to `out` with the public `Encoder` API.
fn encode(encoder: &mut Encoder, out: &mut BytesMut, frame: &Frame) {
    encoder.frame(out, frame).expect("valid values encode");
}

fn encoded(frame: &Frame) -> Bytes {
    let mut out = BytesMut::new();
    encode(&mut Encoder::default(), &mut out, frame);
    out.freeze()
}

fn frame_bytes_max() -> usize {
    Limits::default().frame_bytes_max()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_op_round_trips_through_encoder_check_and_decode(frame in frame()) {
        let bytes = encoded(&frame);
        prop_assert_eq!(check(&bytes, frame_bytes_max()), Check::Complete(bytes.len()));
        let decoded = decode(bytes, &Limits::default());
        prop_assert_eq!(decoded, Ok(frame));
    }

    #[test]
    fn every_prefix_of_a_valid_frame_is_incomplete(frame in frame()) {
        let bytes = encoded(&frame);
        for end in 0..bytes.len() {
            prop_assert_eq!(check(&bytes[..end], frame_bytes_max()), Check::Incomplete, "prefix of {} bytes", end);
        }
    }

    #[test]
    fn concatenated_frames_split_where_they_were_joined(frames in prop::collection::vec(frame(), 1..8)) {
        let mut encoder = Encoder::default();
        let mut stream = BytesMut::new();
        let mut lengths = Vec::new();
        for frame in &frames {
            let before = stream.len();
            encode(&mut encoder, &mut stream, frame);
            lengths.push(stream.len() - before);
        }
        for (frame, length) in frames.into_iter().zip(lengths) {
            prop_assert_eq!(check(&stream, frame_bytes_max()), Check::Complete(length));
            let one = stream.split_to(length).freeze();
            prop_assert_eq!(decode(one, &Limits::default()), Ok(frame));
        }
        prop_assert!(stream.is_empty());
        prop_assert_eq!(check(&stream, frame_bytes_max()), Check::Incomplete);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        check_then_decode(&data);
    }

    #[test]
    fn plausible_headers_with_random_bodies_never_panic(
        op in 0u8..12,
        meta_len in 0u16..128,
        payload_len in 0u32..64,
        tag in prop_oneof![Just(0u64), any::<u64>()],
        body in prop::collection::vec(any::<u8>(), 0..192),
    ) {
        let body_len = u32::from(meta_len) + payload_len;
        let mut data = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
        data.extend_from_slice(&body_len.to_le_bytes());
        data.push(op);
        data.push(0);
        data.extend_from_slice(&meta_len.to_le_bytes());
        data.extend_from_slice(&tag.to_le_bytes());
        data.extend_from_slice(&body);
        check_then_decode(&data);
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        frame in frame(),
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut data = encoded(&frame).to_vec();
        for (index, byte) in mutations {
            // Leave the length prefix alone so the mutation reaches decode.
            let position = 4 + index.index(data.len() - 4);
            data[position] = byte;
        }
        check_then_decode(&data);
    }
}

/// What a server loop does with bytes: `check`, and `decode` what it calls complete.
fn check_then_decode(data: &[u8]) {
    match check(data, frame_bytes_max()) {
        Check::Complete(length) => {
            assert!((FRAME_HEADER_BYTES..=data.len()).contains(&length));
            // Either outcome is fine; a panic is not.
            let _ = decode(Bytes::copy_from_slice(&data[..length]), &Limits::default());
        }
        Check::Incomplete if data.len() >= FRAME_HEADER_BYTES => {
            let body_len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            assert!(FRAME_HEADER_BYTES + body_len as usize > data.len(), "a whole frame was called incomplete");
        }
        Check::Incomplete => {}
        Check::Invalid(error) => {
            let _ = error.code();
        }
    }
}
