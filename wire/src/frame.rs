//! The fixed frame header and `check`: is a whole, plausible frame buffered?
//!
//! Layout (all integers little-endian), 16 bytes, then the body:
//!
//! ```text
//! offset size field
//!      0    4 body_len   bytes after the header: meta_len + payload length
//!      4    1 op         see [`Op`]
//!      5    1 flags      must be 0 (versions 1 and 2)
//!      6    2 meta_len   bytes of the flatbuffer part (0 for ops without one)
//!      8    8 tag        see [`TagRule`]: Deliver: the subscription id;
//!                        Draining: milliseconds until the server closes;
//!                        Publish: 0, or the id of the PublishAck it wants;
//!                        stream ops: a request id; every other op: 0
//! ```
//!
//! Version 2 added the stream ops (12 to 17, see [`Op::version_min`]).
//! `check` and `decode` accept them whatever version a connection
//! negotiated: they hold no per-connection state. The server refuses a
//! stream op on a version-1 connection (`unexpected_op`), and a Publish with a
//! non-zero tag there (`malformed_frame`), so version 1 behaves as before.
//!
//! Invariants: `check` never allocates and never panics, whatever the bytes;
//! it rejects a length prefix above the caller's limit as soon as the first 4
//! bytes are in, before anything is read or reserved for the body; it rejects
//! an unknown op and a non-zero flags byte as soon as those bytes are in.
//! Separating `check` from `decode` means a partial frame is never an error.

use crate::error::WireError;

/// Bytes in the fixed header.
pub const FRAME_HEADER_BYTES: usize = 16;

/// Operations. The numbers are protocol; never reuse one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    Hello = 1,
    Welcome = 2,
    Publish = 3,
    Subscribe = 4,
    Unsubscribe = 5,
    Deliver = 6,
    Ping = 7,
    Pong = 8,
    Ok = 9,
    Error = 10,
    /// Server -> client: the server is shutting down; the header's tag holds
    /// the milliseconds until it closes the connection.
    Draining = 11,
    /// Client -> server (version 2): stream and consumer administration. The
    /// tag is a request id, answered by a StreamReply.
    StreamRequest = 12,
    /// Server -> client (version 2): the answer to a StreamRequest, a Fetch,
    /// or an Ack with a non-zero tag. Never closes the connection.
    StreamReply = 13,
    /// Server -> client (version 2): a stream stored (or refused) the Publish
    /// whose tag this frame carries.
    PublishAck = 14,
    /// Client -> server (version 2): up to a batch of a pull consumer's
    /// messages; the tag is a request id.
    Fetch = 15,
    /// Server -> client (version 2): one stored message, payload after the
    /// meta; the tag is the Fetch's request id or a push consumer's
    /// subscription id.
    StreamMessage = 16,
    /// Client -> server (version 2): acknowledge (or nak, terminate, extend)
    /// one delivered message; a non-zero tag asks for a StreamReply.
    Ack = 17,
}

/// What a frame's header tag may hold, by op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagRule {
    /// Must be 0.
    Zero,
    /// Any value (a subscription id, milliseconds, an optional ack id).
    Any,
    /// A request id: never 0, because 0 is how a peer says "no reply".
    NonZero,
}

impl Op {
    /// The op for a byte, if this version knows it.
    pub fn from_u8(value: u8) -> Option<Op> {
        Some(match value {
            1 => Op::Hello,
            2 => Op::Welcome,
            3 => Op::Publish,
            4 => Op::Subscribe,
            5 => Op::Unsubscribe,
            6 => Op::Deliver,
            7 => Op::Ping,
            8 => Op::Pong,
            9 => Op::Ok,
            10 => Op::Error,
            11 => Op::Draining,
            12 => Op::StreamRequest,
            13 => Op::StreamReply,
            14 => Op::PublishAck,
            15 => Op::Fetch,
            16 => Op::StreamMessage,
            17 => Op::Ack,
            _ => return None,
        })
    }

    /// Whether frames of this op carry a flatbuffer meta part.
    pub fn has_meta(self) -> bool {
        !matches!(self, Op::Ping | Op::Pong | Op::Ok | Op::Draining)
    }

    /// Whether frames of this op may carry a payload after the meta.
    pub fn has_payload(self) -> bool {
        matches!(self, Op::Publish | Op::Deliver | Op::StreamMessage)
    }

    /// What the header's tag may hold for this op.
    pub fn tag_rule(self) -> TagRule {
        match self {
            Op::Deliver | Op::Draining | Op::Publish | Op::StreamMessage | Op::Ack => TagRule::Any,
            Op::StreamRequest | Op::StreamReply | Op::PublishAck | Op::Fetch => TagRule::NonZero,
            Op::Hello | Op::Welcome | Op::Subscribe | Op::Unsubscribe | Op::Ping | Op::Pong | Op::Ok | Op::Error => {
                TagRule::Zero
            }
        }
    }

    /// The lowest protocol version in which this op exists. A server refuses
    /// an op newer than the connection's version with `unexpected_op`.
    pub fn version_min(self) -> u16 {
        match self {
            Op::StreamRequest | Op::StreamReply | Op::PublishAck | Op::Fetch | Op::StreamMessage | Op::Ack => 2,
            _ => 1,
        }
    }

    /// The op's name as in docs/PROTOCOL.md, for logs and error messages.
    pub fn name(self) -> &'static str {
        match self {
            Op::Hello => "Hello",
            Op::Welcome => "Welcome",
            Op::Publish => "Publish",
            Op::Subscribe => "Subscribe",
            Op::Unsubscribe => "Unsubscribe",
            Op::Deliver => "Deliver",
            Op::Ping => "Ping",
            Op::Pong => "Pong",
            Op::Ok => "Ok",
            Op::Error => "Error",
            Op::Draining => "Draining",
            Op::StreamRequest => "StreamRequest",
            Op::StreamReply => "StreamReply",
            Op::PublishAck => "PublishAck",
            Op::Fetch => "Fetch",
            Op::StreamMessage => "StreamMessage",
            Op::Ack => "Ack",
        }
    }
}

/// The decoded fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub body_len: u32,
    pub op: Op,
    pub meta_len: u16,
    pub tag: u64,
}

impl FrameHeader {
    /// Total bytes of the frame, header included.
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER_BYTES + self.body_len as usize
    }

    /// Payload bytes: the body after the meta.
    pub fn payload_len(&self) -> usize {
        self.body_len as usize - self.meta_len as usize
    }

    /// Writes the 16 header bytes.
    pub fn to_bytes(&self) -> [u8; FRAME_HEADER_BYTES] {
        let mut out = [0u8; FRAME_HEADER_BYTES];
        out[0..4].copy_from_slice(&self.body_len.to_le_bytes());
        out[4] = self.op as u8;
        out[5] = 0;
        out[6..8].copy_from_slice(&self.meta_len.to_le_bytes());
        out[8..16].copy_from_slice(&self.tag.to_le_bytes());
        out
    }
}

/// The answer of [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// More bytes are needed; nothing is wrong so far.
    Incomplete,
    /// A whole frame of this many bytes (header included) is at the front.
    Complete(usize),
    /// The bytes can never become a valid frame.
    Invalid(WireError),
}

/// Looks at the front of `buffer` and says whether a whole frame is there.
///
/// `frame_bytes_max` bounds the whole frame, header included; a larger length
/// prefix is rejected at once.
pub fn check(buffer: &[u8], frame_bytes_max: usize) -> Check {
    check_framed(buffer, frame_bytes_max, |op| Op::from_u8(op).is_some(), |header| parse_header(header).map(drop))
}

/// [`check`] for any op family sharing the fixed header (client ops here,
/// route ops in `route`): `op_known` refuses a foreign op from its 5th byte
/// on, `parse` validates the whole header.
pub(crate) fn check_framed(
    buffer: &[u8],
    frame_bytes_max: usize,
    op_known: impl Fn(u8) -> bool,
    parse: impl Fn(&[u8]) -> Result<(), WireError>,
) -> Check {
    if buffer.len() < 4 {
        return Check::Incomplete;
    }
    let body_len = u32::from_le_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]);
    let frame_len = FRAME_HEADER_BYTES as u64 + u64::from(body_len);
    if frame_len > frame_bytes_max as u64 {
        return Check::Invalid(WireError::FrameTooLarge {
            claimed_bytes: frame_len,
            limit_bytes: frame_bytes_max as u64,
        });
    }
    if buffer.len() > 4 && !op_known(buffer[4]) {
        return Check::Invalid(WireError::UnknownOp(buffer[4]));
    }
    if buffer.len() > 5 && buffer[5] != 0 {
        return Check::Invalid(WireError::MalformedFrame("flags byte must be 0"));
    }
    if buffer.len() < FRAME_HEADER_BYTES {
        return Check::Incomplete;
    }
    match parse(buffer) {
        Ok(()) if buffer.len() as u64 >= frame_len => Check::Complete(frame_len as usize),
        Ok(()) => Check::Incomplete,
        Err(error) => Check::Invalid(error),
    }
}

/// The fixed header's fields before the op is known to one op family.
pub(crate) struct FixedFields {
    pub body_len: u32,
    pub op: u8,
    pub meta_len: u16,
    pub tag: u64,
}

/// Reads the fixed header (client and route frames share it): at least
/// [`FRAME_HEADER_BYTES`], a zero flags byte, meta no longer than the body.
pub(crate) fn parse_fixed_fields(buffer: &[u8]) -> Result<FixedFields, WireError> {
    if buffer.len() < FRAME_HEADER_BYTES {
        return Err(WireError::MalformedFrame("shorter than the fixed header"));
    }
    let body_len = u32::from_le_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]);
    if buffer[5] != 0 {
        return Err(WireError::MalformedFrame("flags byte must be 0"));
    }
    let meta_len = u16::from_le_bytes([buffer[6], buffer[7]]);
    let mut tag_bytes = [0u8; 8];
    tag_bytes.copy_from_slice(&buffer[8..16]);
    let tag = u64::from_le_bytes(tag_bytes);
    if u32::from(meta_len) > body_len {
        return Err(WireError::MalformedFrame("meta_len is larger than body_len"));
    }
    Ok(FixedFields { body_len, op: buffer[4], meta_len, tag })
}

impl FixedFields {
    /// The op's rules for its parts: a meta part or none, a payload or none.
    pub(crate) fn check_parts(&self, has_meta: bool, has_payload: bool) -> Result<(), WireError> {
        if !has_meta && self.meta_len != 0 {
            return Err(WireError::MalformedFrame("this op carries no meta"));
        }
        if has_meta && self.meta_len == 0 {
            return Err(WireError::MalformedFrame("this op needs a meta part"));
        }
        if !has_payload && u32::from(self.meta_len) != self.body_len {
            return Err(WireError::MalformedFrame("this op carries no payload"));
        }
        Ok(())
    }
}

/// Parses and validates the fixed header at the front of `buffer`, which must
/// hold at least [`FRAME_HEADER_BYTES`].
pub fn parse_header(buffer: &[u8]) -> Result<FrameHeader, WireError> {
    let fields = parse_fixed_fields(buffer)?;
    let op = Op::from_u8(fields.op).ok_or(WireError::UnknownOp(fields.op))?;
    fields.check_parts(op.has_meta(), op.has_payload())?;
    let FixedFields { body_len, meta_len, tag, .. } = fields;
    match op.tag_rule() {
        TagRule::Zero if tag != 0 => return Err(WireError::MalformedFrame("tag must be 0 for this op")),
        TagRule::NonZero if tag == 0 => {
            return Err(WireError::MalformedFrame("this op needs a non-zero tag (its request id)"))
        }
        _ => {}
    }
    Ok(FrameHeader { body_len, op, meta_len, tag })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(op: Op, meta_len: u16, payload_len: u32) -> [u8; FRAME_HEADER_BYTES] {
        FrameHeader { body_len: u32::from(meta_len) + payload_len, op, meta_len, tag: 0 }.to_bytes()
    }

    #[test]
    fn a_four_gib_length_prefix_is_rejected_after_four_bytes() {
        let bytes = u32::MAX.to_le_bytes();
        assert!(matches!(check(&bytes, 1 << 20), Check::Invalid(WireError::FrameTooLarge { .. })));
    }

    #[test]
    fn partial_header_and_partial_body_are_incomplete() {
        let mut frame = header(Op::Publish, 8, 8).to_vec();
        frame.extend_from_slice(&[0u8; 16]);
        for end in 0..frame.len() {
            assert_eq!(check(&frame[..end], 1 << 20), Check::Incomplete, "prefix of {end} bytes");
        }
        assert_eq!(check(&frame, 1 << 20), Check::Complete(32));
    }

    #[test]
    fn unknown_op_is_rejected_from_the_fifth_byte() {
        let mut bytes = header(Op::Ping, 0, 0);
        bytes[4] = 200;
        assert_eq!(check(&bytes[..5], 1 << 20), Check::Invalid(WireError::UnknownOp(200)));
    }

    #[test]
    fn meta_longer_than_body_is_malformed() {
        let mut bytes = header(Op::Publish, 8, 0);
        bytes[0..4].copy_from_slice(&4u32.to_le_bytes());
        assert!(matches!(check(&bytes, 1 << 20), Check::Invalid(WireError::MalformedFrame(_))));
    }
}
