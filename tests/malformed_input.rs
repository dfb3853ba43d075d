//! A client that sends bytes the protocol forbids gets one Error frame with
//! the code naming its mistake, then the server closes its connection; every
//! other client goes on as if nothing happened.
//!
//! Each case runs against 1 and 2 shards. The bad connection is on shard 0
//! (except the one that never says Hello: its shard is the kernel's choice);
//! a well-behaved subscriber sits on the last shard, so with two shards the
//! bad input and the victim of any damage are on different shards, and the
//! good messages cross the mesh. The subscriber must receive every message
//! published before and after the bad client's error, in order, and no more.

mod common;

use std::net::Shutdown;

use bytes::BytesMut;
use common::{assert_no_message, next_message, FlitServer, RawConnection, SHARD_COUNTS};
use flit_wire::{Encoder, ErrorCode, FrameHeader, Op, FRAME_HEADER_BYTES};

/// Messages published before, and again after, the bad input.
const MESSAGES_PER_PHASE: usize = 50;

/// How the bad client reaches the server.
#[derive(Clone, Copy, Debug)]
enum Greeting {
    /// Hello/Welcome first, on shard 0.
    Handshake,
    /// The bad bytes are the first bytes on the connection.
    None,
}

/// What the bad client does after sending its bytes.
#[derive(Clone, Copy, Debug)]
enum Then {
    KeepOpen,
    ShutdownWrite,
}

/// Starts a server, sends `bad_bytes` on a raw connection, asserts the Error
/// code and the close, and asserts a good subscriber on the last shard got
/// every message published before and after.
fn bad_input_is_answered_and_others_unaffected(bad_bytes: &[u8], greeting: Greeting, then: Then, expected: ErrorCode) {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        let subscriber = server.client_on_shard(shards - 1);
        let subscription = subscriber.subscribe("good.>").expect("subscribe");
        subscriber.flush().expect("flush subscriber");
        let publisher = server.client_on_shard(0);
        let publish_phase = |phase: &str| {
            for index in 0..MESSAGES_PER_PHASE {
                publisher.publish(&format!("good.{phase}"), index.to_string().as_bytes()).expect("publish");
            }
            publisher.flush().expect("flush publisher");
        };

        publish_phase("before");
        let mut bad = match greeting {
            Greeting::Handshake => RawConnection::connect_on_shard(server.address, 0),
            Greeting::None => RawConnection::connect_without_hello(server.address),
        };
        bad.send(bad_bytes);
        if let Then::ShutdownWrite = then {
            bad.stream.shutdown(Shutdown::Write).expect("shutdown write");
        }
        // Name the failure if the server never answers (the read timeout is 5 s).
        let mut first_byte = [0u8; 1];
        if let Err(error) = bad.stream.peek(&mut first_byte) {
            panic!(
                "shards={shards}: the server sent nothing within 5 s after {} bytes {:02x?} ({then:?}), \
                 expected {expected}: {error}",
                bad_bytes.len(),
                &bad_bytes[..bad_bytes.len().min(64)]
            );
        }
        let code = bad.expect_error_then_close();
        assert_eq!(
            code,
            expected.as_u16(),
            "shards={shards}: expected {expected}, got code {code} for bytes {:02x?}",
            &bad_bytes[..bad_bytes.len().min(64)]
        );
        publish_phase("after");

        for phase in ["before", "after"] {
            for index in 0..MESSAGES_PER_PHASE {
                let message = next_message(&subscription);
                assert_eq!(message.subject, format!("good.{phase}"), "shards={shards}");
                assert_eq!(message.payload, index.to_string().as_bytes(), "shards={shards}");
            }
        }
        assert_no_message(&subscription);
        // The server still accepts and serves new connections.
        let late = server.client();
        late.flush().expect("a new connection is served after the bad one");
    }
}

/// A whole, valid Publish frame.
fn publish_frame(subject: &[u8], payload: &[u8]) -> BytesMut {
    let mut frame = BytesMut::new();
    Encoder::default().publish(&mut frame, subject, None, None, payload).expect("encode publish");
    frame
}

#[test]
fn truncated_frame_then_half_close_is_answered_with_truncated_frame() {
    let frame = publish_frame(b"good.bad", &[7u8; 200]);
    let half = &frame[..frame.len() / 2];
    assert!(half.len() > FRAME_HEADER_BYTES, "the cut falls inside the body");
    bad_input_is_answered_and_others_unaffected(
        half,
        Greeting::Handshake,
        Then::ShutdownWrite,
        ErrorCode::TruncatedFrame,
    );
}

#[test]
fn four_gib_length_prefix_is_answered_with_frame_too_large() {
    let mut bytes = u32::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[Op::Publish as u8, 0, 8, 0, 1, 2, 3, 4]);
    bad_input_is_answered_and_others_unaffected(&bytes, Greeting::Handshake, Then::KeepOpen, ErrorCode::FrameTooLarge);
}

#[test]
fn publish_with_garbage_meta_is_answered_with_invalid_flatbuffer() {
    let meta = [0xffu8; 24];
    let payload = b"payload";
    let header = FrameHeader {
        body_len: (meta.len() + payload.len()) as u32,
        op: Op::Publish,
        meta_len: meta.len() as u16,
        tag: 0,
    };
    let mut bytes = header.to_bytes().to_vec();
    bytes.extend_from_slice(&meta);
    bytes.extend_from_slice(payload);
    bad_input_is_answered_and_others_unaffected(
        &bytes,
        Greeting::Handshake,
        Then::KeepOpen,
        ErrorCode::InvalidFlatbuffer,
    );
}

#[test]
fn unknown_op_byte_is_answered_with_unknown_op() {
    let mut bytes = FrameHeader { body_len: 0, op: Op::Ping, meta_len: 0, tag: 0 }.to_bytes();
    bytes[4] = 99;
    bad_input_is_answered_and_others_unaffected(&bytes, Greeting::Handshake, Then::KeepOpen, ErrorCode::UnknownOp);
}

#[test]
fn publish_to_subject_with_empty_token_is_answered_with_invalid_subject() {
    let frame = publish_frame(b"a..b", b"x");
    bad_input_is_answered_and_others_unaffected(&frame, Greeting::Handshake, Then::KeepOpen, ErrorCode::InvalidSubject);
}

#[test]
fn publish_to_subject_with_space_is_answered_with_invalid_subject() {
    let frame = publish_frame(b"good.with space", b"x");
    bad_input_is_answered_and_others_unaffected(&frame, Greeting::Handshake, Then::KeepOpen, ErrorCode::InvalidSubject);
}

#[test]
fn publish_to_wildcard_subject_is_answered_with_invalid_subject() {
    for subject in [&b"good.*"[..], b"good.>"] {
        let frame = publish_frame(subject, b"x");
        bad_input_is_answered_and_others_unaffected(
            &frame,
            Greeting::Handshake,
            Then::KeepOpen,
            ErrorCode::InvalidSubject,
        );
    }
}

#[test]
fn frame_before_hello_is_answered_with_unexpected_op() {
    let mut bytes = BytesMut::new();
    Encoder::bare(&mut bytes, Op::Ping);
    bad_input_is_answered_and_others_unaffected(&bytes, Greeting::None, Then::KeepOpen, ErrorCode::UnexpectedOp);
}

#[test]
fn subscribe_with_misplaced_full_wildcard_is_answered_with_invalid_subject() {
    let mut bytes = BytesMut::new();
    Encoder::default().subscribe(&mut bytes, b"a.>.b", None, 1).expect("encode subscribe");
    bad_input_is_answered_and_others_unaffected(&bytes, Greeting::Handshake, Then::KeepOpen, ErrorCode::InvalidSubject);
}

#[test]
fn a_server_only_draining_frame_from_a_client_is_answered_with_unexpected_op() {
    let mut bytes = BytesMut::new();
    Encoder::draining(&mut bytes, 5_000);
    bad_input_is_answered_and_others_unaffected(&bytes, Greeting::Handshake, Then::KeepOpen, ErrorCode::UnexpectedOp);
}
