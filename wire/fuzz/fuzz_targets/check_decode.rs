//! Fuzz target: bytes arrive like a TCP stream; frames are split off the front
//! with `check` while it says Complete, each is decoded, and every frame that
//! decodes is written again with `Encoder` and decoded again. The oracle is
//! that the second decode gives back the same frame, not just "no panic".
#![no_main]

use bytes::{Bytes, BytesMut};
use flit_wire::{check, decode, Check, Encoder, ErrorCode, Frame, Limits, Op};
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
    if !encode(encoder, &mut out, decoded) {
        return;
    }
    let out = out.freeze();
    assert_eq!(check(&out, limits.frame_bytes_max()), Check::Complete(out.len()), "re-encoded {decoded:?}");
    match decode(out, limits) {
        Ok(again) => assert_eq!(&again, decoded, "re-encoding changed the frame"),
        Err(error) => panic!("re-encoded frame fails to decode: {error:?}\nframe: {decoded:?}"),
    }
}

/// Writes `frame` with the public `Encoder` API; false when the API cannot
/// express it (an Error frame whose code this version does not know).
fn encode(encoder: &mut Encoder, out: &mut BytesMut, frame: &Frame) -> bool {
    let result = match frame {
        Frame::Hello(hello) => encoder.hello(out, hello),
        Frame::Welcome(welcome) => encoder.welcome(out, welcome),
        Frame::Publish(publish) => encoder.publish(
            out,
            &publish.subject,
            publish.reply.as_deref(),
            publish.headers.as_deref(),
            &publish.payload,
        ),
        Frame::Subscribe(subscribe) => {
            encoder.subscribe(out, &subscribe.pattern, subscribe.queue.as_deref(), subscribe.subscription_id)
        }
        Frame::Unsubscribe(unsubscribe) => encoder.unsubscribe(out, *unsubscribe),
        Frame::Deliver(deliver) => {
            match encoder.deliver_meta(
                &deliver.subject,
                deliver.reply.as_deref(),
                deliver.headers.as_deref(),
                deliver.status,
            ) {
                Ok(meta) => Encoder::deliver(out, deliver.subscription_id, meta, &deliver.payload),
                Err(error) => Err(error),
            }
        }
        Frame::Ping => {
            Encoder::bare(out, Op::Ping);
            Ok(())
        }
        Frame::Pong => {
            Encoder::bare(out, Op::Pong);
            Ok(())
        }
        Frame::Ok => {
            Encoder::bare(out, Op::Ok);
            Ok(())
        }
        Frame::Error(error) => match ErrorCode::from_u16(error.code) {
            Some(code) => encoder.error(out, code, &error.message),
            // Encoder::error takes an ErrorCode, so a frame with an unknown
            // code can be decoded but not written back.
            None => return false,
        },
    };
    if let Err(error) = result {
        panic!("a decoded frame fails to encode: {error:?}\nframe: {frame:?}");
    }
    true
}
