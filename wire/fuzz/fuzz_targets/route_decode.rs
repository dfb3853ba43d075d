//! Fuzz target: the route decoder (node-to-node frames, ops 64 to 74).
//!
//! Input: the first byte chooses the mode.
//! - 0 to 5: the rest is a raw meta for RouteHello, RouteAuth, RouteInterest,
//!   RouteMessage, RouteCapture or RouteStoreAck, wrapped in a correct header (tag 0, no payload), so the
//!   fuzzer explores metas without having to keep `body_len` and `meta_len`
//!   consistent.
//! - anything else: the rest is a byte stream arriving on a route; frames
//!   are split off with `check_route` while it says Complete and decoded
//!   with `decode_route`.
//!
//! Oracle, beyond "no panic": every route frame that decodes is refused by
//! the client decoder (`unknown_op`), and is written again with
//! `Encoder::route_frame`, which must accept it, give one whole frame to
//! `check_route`, and decode to the same value.
#![no_main]

use bytes::{Bytes, BytesMut};
use flit_wire::route::RouteHeader;
use flit_wire::{check_route, decode, decode_route, Check, Encoder, Limits, RouteFrame, RouteOp, WireError};
use libfuzzer_sys::fuzz_target;

/// Frames split off one input at most; bounds the work per input.
const FRAMES_PER_INPUT_MAX: usize = 1024;
const META_OPS: [RouteOp; 6] =
    [RouteOp::Hello, RouteOp::Auth, RouteOp::Interest, RouteOp::Message, RouteOp::Capture, RouteOp::StoreAck];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let limits = Limits::default();
    let mut encoder = Encoder::default();
    if let Some(&op) = META_OPS.get(usize::from(mode)) {
        let Ok(meta_len) = u16::try_from(rest.len()) else { return };
        let header = RouteHeader { body_len: u32::from(meta_len), op, meta_len, tag: 0 };
        let mut frame = BytesMut::from(&header.to_bytes()[..]);
        frame.extend_from_slice(rest);
        let frame = frame.freeze();
        if let Ok(decoded) = decode_route(frame.clone(), &limits) {
            round_trip(&mut encoder, &limits, frame, &decoded);
        }
        return;
    }
    let mut stream = Bytes::copy_from_slice(rest);
    for _ in 0..FRAMES_PER_INPUT_MAX {
        let length = match check_route(&stream, limits.frame_bytes_max()) {
            Check::Complete(length) => length,
            Check::Incomplete | Check::Invalid(_) => return,
        };
        assert!(length >= flit_wire::FRAME_HEADER_BYTES && length <= stream.len(), "Complete({length}) out of range");
        let frame = stream.split_to(length);
        if let Ok(decoded) = decode_route(frame.clone(), &limits) {
            round_trip(&mut encoder, &limits, frame, &decoded);
        }
    }
});

/// Checks that the client decoder refuses the frame, then re-encodes the
/// decoded value and checks that it decodes to the same value.
fn round_trip(encoder: &mut Encoder, limits: &Limits, frame: Bytes, decoded: &RouteFrame) {
    let op = frame[4];
    assert_eq!(decode(frame, limits), Err(WireError::UnknownOp(op)), "the client decoder took route op {op}");
    let mut out = BytesMut::new();
    if let Err(error) = encoder.route_frame(&mut out, decoded) {
        panic!("a decoded route frame fails to encode: {error:?}\nframe: {decoded:?}");
    }
    let out = out.freeze();
    assert_eq!(check_route(&out, limits.frame_bytes_max()), Check::Complete(out.len()), "re-encoded {decoded:?}");
    match decode_route(out, limits) {
        Ok(again) => assert_eq!(&again, decoded, "re-encoding changed the frame"),
        Err(error) => panic!("re-encoded route frame fails to decode: {error:?}\nframe: {decoded:?}"),
    }
}
