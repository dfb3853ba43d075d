//! Fuzz target: the decoders of the version-2 stream frames (ops 12 to 17).
//!
//! Input: the first byte chooses the mode.
//! - 0 to 5: the rest is a raw meta for op 12 + that byte, wrapped in a
//!   correct header (tag 1, no payload except for StreamMessage, which gets
//!   none), so the fuzzer explores metas without having to keep
//!   `body_len` and `meta_len` consistent.
//! - anything else: the rest is a byte stream; frames are split off with
//!   `check` while it says Complete, and the stream frames among them are
//!   decoded with `decode_stream` (the others with `decode`).
//!
//! Oracle, beyond "no panic": every stream frame that decodes is written
//! again with `Encoder::stream_frame`, which must accept it, give one whole
//! frame to `check`, and decode to the same value.
#![no_main]

use bytes::{Bytes, BytesMut};
use flit_wire::stream::is_stream_op;
use flit_wire::{check, decode, decode_stream, Check, Encoder, FrameHeader, Limits, Op, StreamFrame};
use libfuzzer_sys::fuzz_target;

/// Frames split off one input at most; bounds the work per input.
const FRAMES_PER_INPUT_MAX: usize = 1024;
const STREAM_OPS: [Op; 6] = [Op::StreamRequest, Op::StreamReply, Op::PublishAck, Op::Fetch, Op::StreamMessage, Op::Ack];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let limits = Limits::default();
    let mut encoder = Encoder::default();
    if let Some(&op) = STREAM_OPS.get(usize::from(mode)) {
        let Ok(meta_len) = u16::try_from(rest.len()) else { return };
        let header = FrameHeader { body_len: u32::from(meta_len), op, meta_len, tag: 1 };
        let mut frame = BytesMut::from(&header.to_bytes()[..]);
        frame.extend_from_slice(rest);
        if let Ok(decoded) = decode_stream(frame.freeze(), &limits) {
            round_trip(&mut encoder, &limits, &decoded);
        }
        return;
    }
    let mut stream = Bytes::copy_from_slice(rest);
    for _ in 0..FRAMES_PER_INPUT_MAX {
        let length = match check(&stream, limits.frame_bytes_max()) {
            Check::Complete(length) => length,
            Check::Incomplete | Check::Invalid(_) => return,
        };
        let frame = stream.split_to(length);
        if is_stream_op(Op::from_u8(frame[4]).expect("check accepted the op")) {
            if let Ok(decoded) = decode_stream(frame, &limits) {
                round_trip(&mut encoder, &limits, &decoded);
            }
        } else {
            let _ = decode(frame, &limits);
        }
    }
});

/// Re-encodes a decoded stream frame and checks that it decodes to the same value.
fn round_trip(encoder: &mut Encoder, limits: &Limits, decoded: &StreamFrame) {
    let mut out = BytesMut::new();
    if let Err(error) = encoder.stream_frame(&mut out, decoded) {
        panic!("a decoded stream frame fails to encode: {error:?}\nframe: {decoded:?}");
    }
    let out = out.freeze();
    assert_eq!(check(&out, limits.frame_bytes_max()), Check::Complete(out.len()), "re-encoded {decoded:?}");
    match decode_stream(out, limits) {
        Ok(again) => assert_eq!(&again, decoded, "re-encoding changed the frame"),
        Err(error) => panic!("re-encoded stream frame fails to decode: {error:?}\nframe: {decoded:?}"),
    }
}
