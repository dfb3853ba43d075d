//! # Durable streams on the wire (protocol version 2, issue 11)
//!
//! The frames a client uses to manage streams and consumers, to be told that
//! a publish is stored, and to receive and acknowledge stored messages:
//!
//! | op | frame           | direction       | tag                                   |
//! |---:|-----------------|-----------------|---------------------------------------|
//! | 12 | StreamRequest   | client → server | request id (non-zero)                 |
//! | 13 | StreamReply     | server → client | the request id it answers (non-zero)  |
//! | 14 | PublishAck      | server → client | the Publish's ack id (non-zero)       |
//! | 15 | Fetch           | client → server | request id (non-zero)                 |
//! | 16 | StreamMessage   | server → client | the Fetch's request id, or a push consumer's subscription id |
//! | 17 | Ack             | client → server | 0, or a request id for a StreamReply  |
//!
//! A Publish (op 3) with a non-zero tag asks for a PublishAck with that tag;
//! that is the whole durable publish: the hot path decodes a Publish exactly
//! as before, and the ack id is the header's tag ([`crate::PublishParts::ack_id`]).
//!
//! ## Layout
//! - [`types`]: the owned, validated values and their rules.
//! - [`code`]: [`StreamCode`], the outcome in a StreamReply or PublishAck.
//! - `decode`: metas into values, through [`decode_stream`] (and
//!   [`crate::decode`]).
//! - `encode`: the `Encoder` methods (`stream_request`, `stream_reply`,
//!   `stream_list_reply`, `publish_ack`, `fetch`, `stream_message`, `ack`).
//!
//! ## Invariants
//! - What decode accepts, the encoder writes back identically, and what the
//!   encoder accepts, decode accepts: both run the same `validate`.
//! - Malformed metas (bad names, unknown enum values, missing required
//!   fields, lists above their bounds) are [`WireError`]s: protocol errors
//!   that close the connection. A well-formed request the server will not
//!   do is a [`StreamCode`] in the answer; the connection stays open.
//! - Every list is bounded: [`SUBJECTS_PER_STREAM_MAX`] subjects per stream,
//!   [`STREAMS_PER_REPLY_MAX`] streams per reply, and the meta itself by
//!   `META_BYTES_MAX`.

pub mod code;
pub(crate) mod decode;
pub(crate) use decode::decode_stream_op;
mod encode;
pub mod types;

use bytes::Bytes;

pub use code::StreamCode;
pub use types::{
    validate_name, Ack, AckKind, AckPolicy, ConsumerConfigSpec, ConsumerInfo, Discard, Durability, Fetch, PublishAck,
    StartPosition, StreamAction, StreamCommand, StreamConfigSpec, StreamInfo, StreamMessage, StreamMessageMeta,
    StreamReply, StreamRequest,
};

use crate::codec::Limits;
use crate::error::WireError;
use crate::frame::{parse_header, Op, FRAME_HEADER_BYTES};

/// Longest stream or consumer name, in bytes (names are `[A-Za-z0-9_-]`).
pub const NAME_BYTES_MAX: usize = 64;
/// Most subject patterns one stream captures.
pub const SUBJECTS_PER_STREAM_MAX: usize = 64;
/// Most streams in one StreamReply. With two tables per stream (StreamInfo
/// and its StreamConfig) a full reply stays within the verifier's table
/// limit, asserted below.
pub const STREAMS_PER_REPLY_MAX: usize = 256;

// A full List reply: the reply, 256 x (StreamInfo + StreamConfig), and a
// ConsumerInfo with its ConsumerConfig, within the verifier's max_tables.
const _: () = assert!(1 + 2 * STREAMS_PER_REPLY_MAX + 2 <= 2 * crate::codec::HEADER_ENTRIES_MAX + 16);

/// A decoded stream frame (ops 12 to 17).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamFrame {
    Request(StreamRequest),
    Reply(StreamReply),
    PublishAck(PublishAck),
    Fetch(Fetch),
    Message(StreamMessage),
    Ack(Ack),
}

impl StreamFrame {
    /// The frame's op.
    pub fn op(&self) -> Op {
        match self {
            StreamFrame::Request(_) => Op::StreamRequest,
            StreamFrame::Reply(_) => Op::StreamReply,
            StreamFrame::PublishAck(_) => Op::PublishAck,
            StreamFrame::Fetch(_) => Op::Fetch,
            StreamFrame::Message(_) => Op::StreamMessage,
            StreamFrame::Ack(_) => Op::Ack,
        }
    }

    /// The op's name, for logs and error messages.
    pub fn name(&self) -> &'static str {
        self.op().name()
    }
}

/// Whether `op` is one of the stream ops this module decodes.
pub fn is_stream_op(op: Op) -> bool {
    matches!(op, Op::StreamRequest | Op::StreamReply | Op::PublishAck | Op::Fetch | Op::StreamMessage | Op::Ack)
}

/// Decodes one whole stream frame (as accepted by [`crate::check`]) with the
/// same header checks and limits as [`crate::decode`]. A frame of another op
/// is `MalformedFrame`: callers look at the op before they choose this.
pub fn decode_stream(frame: Bytes, limits: &Limits) -> Result<StreamFrame, WireError> {
    let header = parse_header(&frame)?;
    if !is_stream_op(header.op) {
        return Err(WireError::MalformedFrame("not a stream op"));
    }
    if frame.len() != header.frame_len() {
        return Err(WireError::MalformedFrame("frame length differs from body_len"));
    }
    let meta_end = FRAME_HEADER_BYTES + header.meta_len as usize;
    let payload = frame.slice(meta_end..);
    decode::decode_stream_op(&header, &frame, &frame[FRAME_HEADER_BYTES..meta_end], payload, limits)
}
