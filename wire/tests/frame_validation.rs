//! Malformed input, one case per test: each names what is wrong and asserts
//! the error code the server would send before closing the connection.

use bytes::{Bytes, BytesMut};
use flatbuffers::FlatBufferBuilder;
use flit_wire::schema;
use flit_wire::{
    check, decode, Check, ErrorCode, FrameHeader, Limits, Op, WireError, FRAME_HEADER_BYTES, PAYLOAD_BYTES_MAX_DEFAULT,
};

fn frame_bytes_max() -> usize {
    Limits::default().frame_bytes_max()
}

fn header(op: Op, meta_len: u16, payload_len: u32, tag: u64) -> [u8; FRAME_HEADER_BYTES] {
    FrameHeader { body_len: u32::from(meta_len) + payload_len, op, meta_len, tag }.to_bytes()
}

/// A whole frame from raw parts, bypassing the `Encoder` and its checks.
fn raw_frame(op: Op, meta: &[u8], payload: &[u8]) -> Bytes {
    let meta_len = u16::try_from(meta.len()).expect("meta fits a u16");
    let payload_len = u32::try_from(payload.len()).expect("payload fits a u32");
    let mut out = BytesMut::new();
    out.extend_from_slice(&header(op, meta_len, payload_len, 0));
    out.extend_from_slice(meta);
    out.extend_from_slice(payload);
    out.freeze()
}

/// A Publish meta built directly with flatbuffers, so it can hold values the
/// `Encoder` would refuse or never write.
fn publish_meta(subject: &str, headers: Option<&[u8]>) -> Vec<u8> {
    let mut builder = FlatBufferBuilder::new();
    let subject = Some(builder.create_string(subject));
    let headers = headers.map(|block| builder.create_vector(block));
    let root = schema::Publish::create(&mut builder, &schema::PublishArgs { subject, reply: None, headers });
    builder.finish_minimal(root);
    builder.finished_data().to_vec()
}

/// `check` must call it Complete, then `decode` must fail with `expected`.
fn decode_error(frame: Bytes) -> WireError {
    assert_eq!(check(&frame, frame_bytes_max()), Check::Complete(frame.len()));
    decode(frame, &Limits::default()).expect_err("malformed frame decoded")
}

fn check_error(bytes: &[u8]) -> WireError {
    match check(bytes, frame_bytes_max()) {
        Check::Invalid(error) => error,
        other => panic!("expected Check::Invalid, got {other:?}"),
    }
}

#[test]
fn four_gib_length_prefix_is_rejected_from_four_bytes() {
    let error = check_error(&u32::MAX.to_le_bytes());
    assert_eq!(error.code(), ErrorCode::FrameTooLarge);
    assert_eq!(error.code().as_u16(), 101);
}

#[test]
fn length_prefix_one_above_the_limit_is_rejected() {
    let body_len = u32::try_from(frame_bytes_max() - FRAME_HEADER_BYTES + 1).expect("fits");
    assert_eq!(check_error(&body_len.to_le_bytes()).code(), ErrorCode::FrameTooLarge);
    assert_eq!(check(&(body_len - 1).to_le_bytes(), frame_bytes_max()), Check::Incomplete);
}

#[test]
fn unknown_op_is_rejected() {
    let mut bytes = header(Op::Ping, 0, 0, 0);
    bytes[4] = 0;
    assert_eq!(check_error(&bytes[..5]).code(), ErrorCode::UnknownOp);
    bytes[4] = 18; // one past the last op (Ack = 17)
    assert_eq!(check_error(&bytes).code(), ErrorCode::UnknownOp);
    assert_eq!(check_error(&bytes).code().as_u16(), 103);
}

#[test]
fn non_zero_flags_are_rejected() {
    let mut bytes = header(Op::Ping, 0, 0, 0);
    bytes[5] = 0x01;
    assert_eq!(check_error(&bytes[..6]).code(), ErrorCode::MalformedFrame);
    assert_eq!(check_error(&bytes).code().as_u16(), 100);
}

#[test]
fn meta_longer_than_body_is_rejected() {
    let mut bytes = header(Op::Publish, 8, 0, 0);
    bytes[0..4].copy_from_slice(&4u32.to_le_bytes());
    assert_eq!(check_error(&bytes).code(), ErrorCode::MalformedFrame);
}

#[test]
fn ping_with_a_meta_is_rejected() {
    let bytes = header(Op::Ping, 4, 0, 0);
    assert_eq!(check_error(&bytes).code(), ErrorCode::MalformedFrame);
}

#[test]
fn publish_without_a_meta_is_rejected() {
    let bytes = header(Op::Publish, 0, 4, 0);
    assert_eq!(check_error(&bytes).code(), ErrorCode::MalformedFrame);
}

#[test]
fn non_zero_tag_outside_deliver_is_rejected() {
    let bytes = header(Op::Pong, 0, 0, 7);
    assert_eq!(check_error(&bytes).code(), ErrorCode::MalformedFrame);
}

#[test]
fn invalid_flatbuffer_in_a_publish_meta_is_rejected() {
    // A root offset far past the end of the 8-byte meta.
    let meta = [0xff, 0xff, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04];
    let error = decode_error(raw_frame(Op::Publish, &meta, b"payload"));
    assert_eq!(error.code(), ErrorCode::InvalidFlatbuffer);
    assert_eq!(error.code().as_u16(), 102);
}

#[test]
fn publish_subject_with_a_wildcard_is_rejected() {
    for subject in ["orders.*", "orders.>", "orders.eu*"] {
        let error = decode_error(raw_frame(Op::Publish, &publish_meta(subject, None), b""));
        assert_eq!(error.code(), ErrorCode::InvalidSubject, "{subject}");
    }
}

#[test]
fn publish_subject_with_an_empty_token_is_rejected() {
    for subject in ["", "orders..created", ".orders", "orders."] {
        let error = decode_error(raw_frame(Op::Publish, &publish_meta(subject, None), b""));
        assert_eq!(error.code(), ErrorCode::InvalidSubject, "{subject:?}");
    }
}

#[test]
fn publish_subject_with_whitespace_is_rejected() {
    for subject in ["orders eu", "orders.\teu", "orders\n", "orders\u{7f}"] {
        let error = decode_error(raw_frame(Op::Publish, &publish_meta(subject, None), b""));
        assert_eq!(error.code(), ErrorCode::InvalidSubject, "{subject:?}");
        assert_eq!(error.code().as_u16(), 200);
    }
}

#[test]
fn payload_above_the_limit_is_rejected() {
    let payload = vec![0u8; PAYLOAD_BYTES_MAX_DEFAULT + 1];
    let error = decode_error(raw_frame(Op::Publish, &publish_meta("orders.eu", None), &payload));
    assert_eq!(error.code(), ErrorCode::PayloadTooLarge);
    assert_eq!(error.code().as_u16(), 202);
}

#[test]
fn payload_above_a_smaller_negotiated_limit_is_rejected() {
    let limits = Limits { payload_bytes_max: 16 };
    let frame = raw_frame(Op::Publish, &publish_meta("orders.eu", None), &[0u8; 17]);
    assert_eq!(check(&frame, limits.frame_bytes_max()), Check::Complete(frame.len()));
    let error = decode(frame, &limits).expect_err("payload above the limit decoded");
    assert_eq!(error.code(), ErrorCode::PayloadTooLarge);
}

#[test]
fn invalid_nested_headers_are_rejected() {
    // The vector itself is well-formed [ubyte]; its content is no Headers table.
    let garbage = [0xff, 0xff, 0xff, 0x7f, 0x00, 0x00, 0x00, 0x00];
    let error = decode_error(raw_frame(Op::Publish, &publish_meta("orders.eu", Some(&garbage)), b""));
    assert_eq!(error.code(), ErrorCode::InvalidHeaders);
    assert_eq!(error.code().as_u16(), 204);
}

#[test]
fn frame_shorter_or_longer_than_its_header_says_is_rejected_by_decode() {
    let mut bytes = BytesMut::from(&header(Op::Ping, 0, 0, 0)[..]);
    bytes.extend_from_slice(b"x");
    let error = decode(bytes.freeze(), &Limits::default()).expect_err("trailing byte accepted");
    assert_eq!(error.code(), ErrorCode::MalformedFrame);
}
