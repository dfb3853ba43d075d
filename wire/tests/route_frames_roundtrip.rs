//! Property: any valid route frame (ops 64 to 70), written by the `Encoder`,
//! is one whole frame to `check_route` and decodes with `decode_route` to the
//! same value; and a stream of them, cut anywhere, reads `Incomplete` until
//! each frame is whole.

use bytes::{Bytes, BytesMut};
use flit_wire::{
    check_route, decode_route, encode_headers, Check, Encoder, Limits, RouteAuth, RouteFrame, RouteHello,
    RouteInterest, RouteMessage,
};
use proptest::prelude::*;

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

fn url() -> impl Strategy<Value = String> {
    "[a-z]{1,5}://[a-z0-9.-]{1,40}:[0-9]{1,5}"
}

fn hello() -> impl Strategy<Value = RouteHello> {
    let versions = (1u16..4, 0u16..4).prop_map(|(min, extra)| (min, min + extra));
    let shards = (1u16..=512).prop_flat_map(|count| (Just(count), 0..count));
    let identity = (any::<u32>(), any::<u64>(), any::<[u8; 32]>());
    let urls = (
        prop_oneof![Just(String::new()), url()],
        prop::collection::vec(url(), 0..6),
        prop::collection::vec(url(), 0..6),
    );
    (versions, "[!-~]{1,128}", shards, identity, urls).prop_map(
        |((version_min, version_max), cluster_name, (shard_count, lane_shard), identity, urls)| {
            let (node_id, generation, nonce) = identity;
            let (route_address, client_urls, nats_urls) = urls;
            RouteHello {
                version_min,
                version_max,
                cluster_name,
                node_id,
                generation,
                shard_count,
                lane_shard,
                nonce,
                route_address,
                client_urls,
                nats_urls,
            }
        },
    )
}

/// A RouteMessage whose `frame` is just its parts laid end to end: equality
/// is by parts, so the decoded frame must equal it.
fn message() -> impl Strategy<Value = RouteMessage> {
    let headers = prop::option::of(prop::collection::vec(("[a-z-]{1,12}", "[ -~]{0,24}"), 0..4));
    let parts = (subject(), prop::option::of(subject()), headers, prop::collection::vec(any::<u8>(), 0..512));
    (parts, prop::collection::vec(any::<u64>(), 0..=64), any::<u64>()).prop_map(
        |((subject, reply, headers, payload), picks, store_request)| {
            let headers = headers.map(|entries| {
                let entries: Vec<(&str, &str)> =
                    entries.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
                encode_headers(&entries).expect("few entries")
            });
            let mut frame = BytesMut::new();
            let mut part = |bytes: &[u8]| {
                let start = frame.len();
                frame.extend_from_slice(bytes);
                start..frame.len()
            };
            let subject = part(subject.as_bytes());
            let reply = reply.map(|reply| part(reply.as_bytes()));
            let headers = headers.map(|block| part(&block));
            let payload = part(&payload);
            RouteMessage { frame: frame.freeze(), subject, reply, headers, payload, queue_picks: picks, store_request }
        },
    )
}

fn frame() -> impl Strategy<Value = RouteFrame> {
    prop_oneof![
        hello().prop_map(RouteFrame::Hello),
        any::<[u8; 32]>().prop_map(|mac| RouteFrame::Auth(RouteAuth { mac })),
        (any::<bool>(), pattern(), prop::option::of("[a-zA-Z0-9_-]{1,128}")).prop_map(|(add, pattern, queue)| {
            RouteFrame::Interest(RouteInterest { add, pattern: Bytes::from(pattern), queue: queue.map(Bytes::from) })
        }),
        message().prop_map(RouteFrame::Message),
        any::<u64>().prop_map(RouteFrame::Ping),
        any::<u64>().prop_map(RouteFrame::Pong),
        (any::<bool>(), pattern()).prop_map(|(add, pattern)| {
            RouteFrame::Capture(RouteInterest { add, pattern: Bytes::from(pattern), queue: None })
        }),
        any::<u64>().prop_map(RouteFrame::Barrier),
        any::<u64>().prop_map(RouteFrame::BarrierAck),
        (1u64.., "[a-z]{1,16}", 1u64.., any::<bool>()).prop_map(|(id, stream, sequence, duplicate)| {
            RouteFrame::StoreAck(flit_wire::PublishAck::stored(id, stream, sequence, duplicate))
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_valid_route_frame_round_trips(frame in frame()) {
        let limits = Limits::default();
        let mut out = BytesMut::new();
        Encoder::default().route_frame(&mut out, &frame).expect("a valid frame encodes");
        let bytes = out.freeze();
        prop_assert_eq!(check_route(&bytes, limits.frame_bytes_max()), Check::Complete(bytes.len()));
        let decoded = decode_route(bytes.clone(), &limits).expect("decodes");
        if let RouteFrame::Message(message) = &decoded {
            // The decoded message is the received frame itself, not a copy.
            prop_assert_eq!(message.frame.as_ptr(), bytes.as_ptr());
        }
        prop_assert_eq!(decoded, frame);
    }

    #[test]
    fn a_stream_of_route_frames_cut_anywhere_is_incomplete_until_whole(
        frames in prop::collection::vec(frame(), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let limits = Limits::default();
        let mut encoder = Encoder::default();
        let mut out = BytesMut::new();
        let mut ends = Vec::new();
        for frame in &frames {
            encoder.route_frame(&mut out, frame).expect("encodes");
            ends.push(out.len());
        }
        let at = cut.index(out.len());
        let frame_end = *ends.iter().find(|end| **end > at).expect("inside some frame");
        let frame_start = ends.iter().rev().find(|end| **end <= at).copied().unwrap_or(0);
        let answer = check_route(&out[frame_start..at], limits.frame_bytes_max());
        prop_assert_eq!(answer, Check::Incomplete, "cut at {} of a frame ending at {}", at, frame_end);
    }
}
