//! Where a message id comes from: `message_id_from_headers` reads the
//! `Flit-Msg-Id` (or `Nats-Msg-Id`) header out of a flit header block.
//!
//! The blocks below were produced by `flit_wire::encode_headers` (flit-wire
//! at commit 794df84; a scratch program printed them as hex), so the reader
//! is checked against the real encoder without this crate depending on the
//! wire crate. If the encoder's output changes shape, regenerate them.

use flit_stream::dedup::message_id_from_headers;
use proptest::prelude::*;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|index| u8::from_str_radix(&text[index..index + 2], 16).unwrap()).collect()
}

/// encode_headers(&[("Flit-Msg-Id", "order-42")])
const FLIT_ONLY: &str = "0c00000000000600080004000600000004000000010000000c00000008000c0004000800080000001800000004000000080000006f726465722d3432000000000b000000466c69742d4d73672d496400";
/// encode_headers(&[("Content-Type", "text/plain"), ("Nats-Msg-Id", "abc"), ("X", "")])
const NATS_AMONG_OTHERS: &str = "0c0000000000060008000400060000000400000003000000540000002400000004000000c0ffffff100000000400000000000000000000000100000058000000dcffffff100000000400000003000000616263000b0000004e6174732d4d73672d49640008000c00040008000800000018000000040000000a000000746578742f706c61696e00000c000000436f6e74656e742d5479706500000000";
/// encode_headers(&[("Flit-Msg-Id", "first"), ("Nats-Msg-Id", "second")])
const BOTH: &str = "0c00000000000600080004000600000004000000020000003800000004000000d8ffffff1400000004000000060000007365636f6e6400000b0000004e6174732d4d73672d49640008000c00040008000800000014000000040000000500000066697273740000000b000000466c69742d4d73672d496400";
/// encode_headers(&[("Nats-Msg-Id", "nats-first"), ("Flit-Msg-Id", "flit-second")])
const BOTH_NATS_FIRST: &str = "0c00000000000600080004000600000004000000020000003c00000004000000d4ffffff18000000040000000b000000666c69742d7365636f6e64000b000000466c69742d4d73672d49640008000c00040008000800000018000000040000000a0000006e6174732d666972737400000b0000004e6174732d4d73672d496400";
/// encode_headers(&[("flit-msg-id", "lower")])
const LOWER_CASE_KEY: &str = "0c00000000000600080004000600000004000000010000000c00000008000c0004000800080000001400000004000000050000006c6f7765720000000b000000666c69742d6d73672d696400";
/// encode_headers(&[])
const EMPTY: &str = "0c0000000000060008000400060000000400000000000000";

#[test]
fn flit_message_id_is_found() {
    assert_eq!(message_id_from_headers(&hex(FLIT_ONLY)), Some(b"order-42".as_slice()));
}

#[test]
fn nats_message_id_is_accepted_among_other_headers() {
    assert_eq!(message_id_from_headers(&hex(NATS_AMONG_OTHERS)), Some(b"abc".as_slice()));
}

#[test]
fn flit_header_wins_over_nats_header() {
    assert_eq!(message_id_from_headers(&hex(BOTH)), Some(b"first".as_slice()));
    assert_eq!(message_id_from_headers(&hex(BOTH_NATS_FIRST)), Some(b"flit-second".as_slice()), "whatever the order");
}

#[test]
fn keys_are_case_sensitive_and_empty_blocks_have_no_id() {
    assert_eq!(message_id_from_headers(&hex(LOWER_CASE_KEY)), None);
    assert_eq!(message_id_from_headers(&hex(EMPTY)), None);
    assert_eq!(message_id_from_headers(&[]), None);
}

#[test]
fn every_truncation_of_a_block_is_safe() {
    let block = hex(NATS_AMONG_OTHERS);
    for length in 0..block.len() {
        // Whatever a cut block yields, it must not panic, and a value it
        // returns lies inside the block.
        if let Some(id) = message_id_from_headers(&block[..length]) {
            assert!(id.len() <= length);
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(block in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = message_id_from_headers(&block);
    }

    #[test]
    fn corrupting_one_byte_never_panics(index in 0usize..152, value in any::<u8>()) {
        let mut block = hex(NATS_AMONG_OTHERS);
        let index = index % block.len();
        block[index] = value;
        let _ = message_id_from_headers(&block);
    }
}
