//! Fuzz target: bytes arrive like a TCP stream; frames are split off the front
//! with `check` while it says Complete, each is decoded, and every frame that
//! decodes is written again with `Encoder` and decoded again. The oracle is
//! that the second decode gives back the same frame, not just "no panic".
#![no_main]

use bytes::{Bytes, BytesMut};
use flit_wire::{check, decode, Check, Encoder, Frame, Limits};
use libfuzzer_sys::fuzz_target;

/// Frames split off one input at most; bounds the work per input.
const FRAMES_PER_INPUT_MAX: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut stream = Bytes::copy_from_slice(data);
    let mut encoder = Encoder::default();
    for _ in 0..FRAMES_PER_INPUT_MAX {
        let length = match check(&stream, limits.frame_bytes_max()) {
            Check::Complete(length) => length,
            Check::Incomplete | Check::Invalid(_) => return,
        };
        assert!(length >= flit_wire::FRAME_HEADER_BYTES && length <= stream.len(), "Complete({length}) out of range");
        let frame = stream.split_to(length);
        if let Ok(decoded) = decode(frame, &limits) {
            round_trip(&mut encoder, &limits, &decoded);
        }
    }
});

/// Re-encodes a decoded frame and checks that it decodes to the same value.
fn round_trip(encoder: &mut Encoder, limits: &Limits, decoded: &Frame) {
    let mut out = BytesMut::new();
    if let Err(error) = encoder.frame(&mut out, decoded) {
        panic!("a decoded frame fails to encode: {error:?}\nframe: {decoded:?}");
    }
    let out = out.freeze();
    assert_eq!(check(&out, limits.frame_bytes_max()), Check::Complete(out.len()), "re-encoded {decoded:?}");
    match decode(out, limits) {
        Ok(again) => assert_eq!(&again, decoded, "re-encoding changed the frame"),
        Err(error) => panic!("re-encoded frame fails to decode: {error:?}\nframe: {decoded:?}"),
    }
}

