//! Fuzz target: the same byte stream, handed over whole and handed over in
//! pieces, must give the same frames. The shard receives a connection's bytes
//! in pieces of any size (provided buffers of 16 KiB, TCP segments, short
//! reads), appends them to the connection's read buffer and splits frames off
//! with `check` after every piece; a frame cut anywhere must read as
//! `Incomplete` until its last byte arrives, never as `Invalid` early.
//!
//! Input: the first byte is how many cut points follow (at most 32), each one
//! byte (a piece of 1..=256 bytes, so pieces cross headers, metas and
//! payloads); the rest is the stream, and the last piece is what remains.
//! Oracle: the outcomes (each frame decoded or its error, then how the stream
//! ends: an invalid frame, or a frame still incomplete) are equal.
#![no_main]

use bytes::{Bytes, BytesMut};
use flit_wire::{check, decode, Check, Limits};
use libfuzzer_sys::fuzz_target;

const FRAMES_PER_INPUT_MAX: usize = 1024;
const CUTS_MAX: usize = 32;

#[derive(Debug, PartialEq)]
enum Outcome {
    Frame(Result<flit_wire::Frame, String>),
    Invalid(String),
}

/// Splits every whole frame off `buffer`; stops at the first invalid one.
fn split_frames(buffer: &mut BytesMut, limits: &Limits, outcomes: &mut Vec<Outcome>) -> bool {
    while outcomes.len() < FRAMES_PER_INPUT_MAX {
        match check(buffer, limits.frame_bytes_max()) {
            Check::Complete(length) => {
                let frame: Bytes = buffer.split_to(length).freeze();
                outcomes.push(Outcome::Frame(decode(frame, limits).map_err(|error| format!("{error:?}"))));
            }
            Check::Incomplete => return true,
            Check::Invalid(error) => {
                outcomes.push(Outcome::Invalid(format!("{error:?}")));
                return false;
            }
        }
    }
    false
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut_count, rest)) = data.split_first() else { return };
    let cut_count = usize::from(cut_count).min(CUTS_MAX).min(rest.len());
    let (cuts, stream) = rest.split_at(cut_count);
    let limits = Limits::default();

    let mut whole_outcomes = Vec::new();
    let mut whole = BytesMut::from(stream);
    split_frames(&mut whole, &limits, &mut whole_outcomes);

    let mut piece_outcomes = Vec::new();
    let mut buffer = BytesMut::new();
    let mut offset = 0;
    let mut going = true;
    for cut in cuts.iter().map(|cut| usize::from(*cut) + 1).chain(std::iter::once(usize::MAX)) {
        if !going || offset >= stream.len() {
            break;
        }
        let end = offset.saturating_add(cut).min(stream.len());
        buffer.extend_from_slice(&stream[offset..end]);
        offset = end;
        going = split_frames(&mut buffer, &limits, &mut piece_outcomes);
    }
    assert_eq!(piece_outcomes, whole_outcomes, "pieces {cuts:?} changed the frames");
    if going {
        assert_eq!(buffer.len(), whole.len(), "the same bytes wait for the rest of a frame");
    }
});
