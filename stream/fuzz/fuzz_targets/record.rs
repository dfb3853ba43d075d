//! Fuzzes the stream log's record decoder (`flit_stream::record`).
//!
//! The first input byte picks the mode:
//! - even: the rest is a segment's bytes. Records are split off the front
//!   with `check` while it says `Complete`; each must decode (messages) or be
//!   a commit marker, and a message re-encoded with `encode_into` must give
//!   back exactly the bytes it was decoded from (decode o encode is the
//!   identity on what the decoder accepts). Never a panic, never an
//!   allocation sized by a length field before the record is whole.
//! - odd: the rest chooses a subject, headers and payload; the record is
//!   encoded, then one bit (chosen by the input) is flipped anywhere in it:
//!   `check` must never call the damaged record `Complete` (the CRC32C covers
//!   every byte but itself, the length fields included, and detects any
//!   single-bit error).
#![no_main]

use flit_stream::record::{self, Check};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        segment(rest);
    } else {
        flipped_bit(rest);
    }
});

fn segment(mut bytes: &[u8]) {
    while let Check::Complete(length) = record::check(bytes) {
        assert!(length <= bytes.len());
        let header = record::header(&bytes[..length]).expect("a complete record has a header");
        match record::decode(&bytes[..length]) {
            Ok(message) => {
                let mut again = Vec::new();
                let written = record::encode_into(
                    &mut again,
                    message.sequence,
                    message.timestamp_ns,
                    &message.subject,
                    &message.headers,
                    &message.payload,
                )
                .expect("what decoded re-encodes");
                assert_eq!(written, length);
                assert_eq!(&again[..], &bytes[..length], "decode o encode is the identity");
            }
            Err(record::RecordError::NotAMessage) => {
                assert_eq!(header.kind, record::RecordKind::CommitMarker);
                assert_eq!(&record::encode_commit_marker(header.sequence)[..], &bytes[..length]);
            }
            Err(error) => panic!("check said Complete but decode failed: {error:?}"),
        }
        bytes = &bytes[length..];
    }
}

fn flipped_bit(input: &[u8]) {
    if input.len() < 6 {
        return;
    }
    let bit_choice = u32::from_le_bytes([input[0], input[1], input[2], input[3]]) as usize;
    let subject_length = (input[4] as usize % 32).max(1);
    let headers_length = input[5] as usize % 16;
    let body = &input[6..];
    let subject: Vec<u8> = body.iter().take(subject_length).map(|byte| b'a' + byte % 26).collect();
    if subject.is_empty() {
        return;
    }
    let headers = body.get(subject.len()..(subject.len() + headers_length).min(body.len())).unwrap_or(&[]);
    let payload = body.get(subject.len() + headers.len()..).unwrap_or(&[]);
    let mut encoded = Vec::new();
    let Ok(length) = record::encode_into(&mut encoded, 7, 11, &subject, headers, payload) else { return };
    assert_eq!(record::check(&encoded), Check::Complete(length));
    let bit = bit_choice % (length * 8);
    encoded[bit / 8] ^= 1 << (bit % 8);
    assert!(
        !matches!(record::check(&encoded), Check::Complete(_)),
        "a record with bit {bit} flipped passed the check"
    );
}
