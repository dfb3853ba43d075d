//! # Routes on the wire: the node-to-node frames of a cluster (issue 13)
//!
//! Every node of a cluster keeps route connections ("lanes") to every other
//! node. They carry the same 16-byte header as client frames
//! ([`crate::frame`]), with ops in a range of their own:
//!
//! | op | frame        | direction            | meta / tag                                  |
//! |---:|--------------|----------------------|---------------------------------------------|
//! | 64 | RouteHello   | both, first frame    | [`RouteHello`]; tag 0                       |
//! | 65 | RouteAuth    | both, second frame   | [`RouteAuth`] (an HMAC-SHA256); tag 0       |
//! | 66 | RouteInterest| dialer → acceptor    | [`RouteInterest`]; tag 0                    |
//! | 67 | (reserved: RouteSnapshot, end of the full state after a (re)connect) |  |
//! | 68 | RouteMessage | dialer → acceptor    | [`RouteMessage`], payload after the meta; tag = store request (0: none) |
//! | 69 | RoutePing    | either               | no meta; tag = token                        |
//! | 70 | RoutePong    | answer to a ping     | no meta; tag = the ping's token             |
//! | 71 | RouteCapture | dialer → acceptor    | [`RouteInterest`] without queue: a stream on the sender's node captures `pattern` (add/remove); tag 0 |
//! | 72 | RouteBarrier | dialer → acceptor    | no meta; tag = the sender's interest epoch   |
//! | 73 | RouteBarrierAck | acceptor → dialer | no meta; tag = the barrier's epoch, once every shard of the acceptor's node applied what came before it |
//! | 74 | RouteStoreAck | acceptor → dialer   | a client `PublishAck` meta ([`crate::PublishAck`]); tag = the RouteMessage's store request |
//!
//! Ops 75 to 127 are kept for later route frames. The route protocol has its
//! own version, [`ROUTE_PROTOCOL_VERSION`], negotiated in the Hellos like
//! the client protocol's ([`negotiate_route_version`]).
//!
//! ## Two decoders, disjoint ops
//! A route connection is read with [`check_route`] and [`decode_route`],
//! which know only route ops; a client connection with [`crate::check`] and
//! [`crate::decode`], which know only client ops. Each answers the other's
//! ops with `unknown_op`, so a client can never inject a routed message and a
//! peer node can never act as a client.
//!
//! ## Layout
//! - [`types`]: the validated values and their rules (shared by decode and
//!   encode, so what one accepts the other accepts).
//! - `decode`: metas into values, through [`decode_route`].
//! - `encode`: the `Encoder` methods (`route_hello`, `route_auth`,
//!   `route_interest`, `route_message`, `route_ping`, `route_pong`,
//!   `route_frame`).
//!
//! ## Invariants
//! - `check_route` and `decode_route` never panic and never allocate more
//!   than the bounds below allow, whatever the bytes: list lengths are
//!   measured against their limits before anything is collected.
//! - Every refusal is a [`WireError`] with an [`crate::ErrorCode`]; the
//!   receiving node closes the route (and counts it).
//! - A [`RouteMessage`] is the frame itself plus ranges into it, so a routed
//!   message keeps one reference count however many parts it has.

mod decode;
mod encode;
pub mod types;

use bytes::Bytes;

pub use encode::OutgoingRouteMessage;
pub use types::{RouteAuth, RouteHello, RouteInterest, RouteMessage};

use crate::codec::{Limits, META_BYTES_MAX};
use crate::error::WireError;
use crate::frame::{Check, FRAME_HEADER_BYTES};

/// The route protocol version this crate speaks (separate from the client
/// protocol's [`crate::PROTOCOL_VERSION`]).
pub const ROUTE_PROTOCOL_VERSION: u16 = 2;
/// The lowest route protocol version this crate still speaks (version 1,
/// without captures, barriers and store acknowledgements, was never
/// released).
pub const ROUTE_PROTOCOL_VERSION_MIN: u16 = 2;
/// Longest cluster name, in bytes.
pub const CLUSTER_NAME_BYTES_MAX: usize = 128;
/// Most URLs in each of a RouteHello's URL lists.
pub const ROUTE_URLS_MAX: usize = 64;
/// Longest URL (and route address), in bytes.
pub const ROUTE_URL_BYTES_MAX: usize = 256;
/// Most queue picks in one RouteMessage.
pub const QUEUE_PICKS_MAX: usize = 64;
/// Bytes of a RouteHello nonce and of a RouteAuth mac (HMAC-SHA256).
pub const ROUTE_NONCE_BYTES: usize = 32;
pub const ROUTE_MAC_BYTES: usize = 32;
/// The lowest op byte of the route range; client ops are all below it.
pub const ROUTE_OP_FIRST: u8 = 64;

const _: () = assert!(ROUTE_PROTOCOL_VERSION_MIN <= ROUTE_PROTOCOL_VERSION);
const _: () = assert!(crate::frame::Op::Ack as u8 <= ROUTE_OP_FIRST);
// The largest RouteHello (two full URL lists, each string with its 4-byte
// length, terminator and padding, plus name, address and nonce) fits in one
// meta part, so a valid Hello can always be written.
const _: () = assert!(
    2 * ROUTE_URLS_MAX * (ROUTE_URL_BYTES_MAX + 12) + CLUSTER_NAME_BYTES_MAX + ROUTE_URL_BYTES_MAX + 256
        <= META_BYTES_MAX
);

/// Route operations. The numbers are protocol; never reuse one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RouteOp {
    Hello = 64,
    Auth = 65,
    Interest = 66,
    Message = 68,
    Ping = 69,
    Pong = 70,
    Capture = 71,
    Barrier = 72,
    BarrierAck = 73,
    StoreAck = 74,
}

impl RouteOp {
    /// The route op for a byte, if this version knows it.
    pub fn from_u8(value: u8) -> Option<RouteOp> {
        Some(match value {
            64 => RouteOp::Hello,
            65 => RouteOp::Auth,
            66 => RouteOp::Interest,
            68 => RouteOp::Message,
            69 => RouteOp::Ping,
            70 => RouteOp::Pong,
            71 => RouteOp::Capture,
            72 => RouteOp::Barrier,
            73 => RouteOp::BarrierAck,
            74 => RouteOp::StoreAck,
            _ => return None,
        })
    }

    /// Whether frames of this op carry a flatbuffer meta part.
    pub fn has_meta(self) -> bool {
        !matches!(self, RouteOp::Ping | RouteOp::Pong | RouteOp::Barrier | RouteOp::BarrierAck)
    }

    /// Whether frames of this op may carry a payload after the meta.
    pub fn has_payload(self) -> bool {
        self == RouteOp::Message
    }

    /// Whether the header's tag may be non-zero (a ping token, an epoch, a
    /// store request).
    pub fn tag_is_free(self) -> bool {
        matches!(
            self,
            RouteOp::Ping
                | RouteOp::Pong
                | RouteOp::Barrier
                | RouteOp::BarrierAck
                | RouteOp::Message
                | RouteOp::StoreAck
        )
    }

    /// The op's name as in docs/PROTOCOL.md.
    pub fn name(self) -> &'static str {
        match self {
            RouteOp::Hello => "RouteHello",
            RouteOp::Auth => "RouteAuth",
            RouteOp::Interest => "RouteInterest",
            RouteOp::Message => "RouteMessage",
            RouteOp::Ping => "RoutePing",
            RouteOp::Pong => "RoutePong",
            RouteOp::Capture => "RouteCapture",
            RouteOp::Barrier => "RouteBarrier",
            RouteOp::BarrierAck => "RouteBarrierAck",
            RouteOp::StoreAck => "RouteStoreAck",
        }
    }
}

/// Whether `op_byte` is a route op this version decodes (with
/// [`decode_route`]); every such byte is refused by the client decoder.
pub fn is_route_op(op_byte: u8) -> bool {
    RouteOp::from_u8(op_byte).is_some()
}

/// The version a node picks for a peer's RouteHello offering
/// `version_min..=version_max`: the highest both speak, or `None` when the
/// ranges do not overlap (the route is closed, `unsupported_version`).
pub fn negotiate_route_version(version_min: u16, version_max: u16) -> Option<u16> {
    let highest = version_max.min(ROUTE_PROTOCOL_VERSION);
    (highest >= version_min.max(ROUTE_PROTOCOL_VERSION_MIN)).then_some(highest)
}

/// A decoded route frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteFrame {
    Hello(RouteHello),
    Auth(RouteAuth),
    Interest(RouteInterest),
    Message(RouteMessage),
    /// The token, from the header's tag.
    Ping(u64),
    /// The token of the ping it answers.
    Pong(u64),
    /// A stream on the sender's node captures (or stopped capturing) a
    /// pattern; `queue` is always None.
    Capture(RouteInterest),
    /// The sender's interest epoch: answer with a BarrierAck once this node
    /// applied everything the lane carried before it.
    Barrier(u64),
    BarrierAck(u64),
    /// The outcome of a RouteMessage's store request (`ack_id` = the request).
    StoreAck(crate::PublishAck),
}

impl RouteFrame {
    /// The frame's op.
    pub fn op(&self) -> RouteOp {
        match self {
            RouteFrame::Hello(_) => RouteOp::Hello,
            RouteFrame::Auth(_) => RouteOp::Auth,
            RouteFrame::Interest(_) => RouteOp::Interest,
            RouteFrame::Message(_) => RouteOp::Message,
            RouteFrame::Ping(_) => RouteOp::Ping,
            RouteFrame::Pong(_) => RouteOp::Pong,
            RouteFrame::Capture(_) => RouteOp::Capture,
            RouteFrame::Barrier(_) => RouteOp::Barrier,
            RouteFrame::BarrierAck(_) => RouteOp::BarrierAck,
            RouteFrame::StoreAck(_) => RouteOp::StoreAck,
        }
    }

    /// The op's name, for logs and error messages.
    pub fn name(&self) -> &'static str {
        self.op().name()
    }
}

/// The decoded fixed header of a route frame (the layout of
/// [`crate::FrameHeader`], with a route op).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteHeader {
    pub body_len: u32,
    pub op: RouteOp,
    pub meta_len: u16,
    pub tag: u64,
}

impl RouteHeader {
    /// Total bytes of the frame, header included.
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER_BYTES + self.body_len as usize
    }

    /// Writes the 16 header bytes.
    pub fn to_bytes(&self) -> [u8; FRAME_HEADER_BYTES] {
        let mut out = [0u8; FRAME_HEADER_BYTES];
        out[0..4].copy_from_slice(&self.body_len.to_le_bytes());
        out[4] = self.op as u8;
        out[6..8].copy_from_slice(&self.meta_len.to_le_bytes());
        out[8..16].copy_from_slice(&self.tag.to_le_bytes());
        out
    }
}

/// [`crate::check`] for a route connection: is a whole, plausible route
/// frame at the front of `buffer`? Never allocates; rejects an oversized
/// length prefix after 4 bytes and a non-route op after 5.
pub fn check_route(buffer: &[u8], frame_bytes_max: usize) -> Check {
    crate::frame::check_framed(buffer, frame_bytes_max, is_route_op, |header| parse_route_header(header).map(drop))
}

/// Parses and validates the fixed header of a route frame at the front of
/// `buffer`. A client op is `unknown_op`.
pub fn parse_route_header(buffer: &[u8]) -> Result<RouteHeader, WireError> {
    let fields = crate::frame::parse_fixed_fields(buffer)?;
    let op = RouteOp::from_u8(fields.op).ok_or(WireError::UnknownOp(fields.op))?;
    fields.check_parts(op.has_meta(), op.has_payload())?;
    let crate::frame::FixedFields { body_len, meta_len, tag, .. } = fields;
    if !op.tag_is_free() && tag != 0 {
        return Err(WireError::MalformedFrame("tag must be 0 for this op"));
    }
    Ok(RouteHeader { body_len, op, meta_len, tag })
}

/// Decodes one whole route frame (as accepted by [`check_route`]): verifies
/// the meta with the same verifier limits as client frames, validates every
/// field (see [`types`]), and checks the payload against `limits`.
pub fn decode_route(frame: Bytes, limits: &Limits) -> Result<RouteFrame, WireError> {
    let header = parse_route_header(&frame)?;
    if frame.len() != header.frame_len() {
        return Err(WireError::MalformedFrame("frame length differs from body_len"));
    }
    decode::decode_route_op(&header, frame, limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_ops_and_client_ops_are_disjoint() {
        for byte in 0..=u8::MAX {
            assert!(!(is_route_op(byte) && crate::frame::Op::from_u8(byte).is_some()), "op {byte} is in both");
        }
    }

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        assert_eq!(negotiate_route_version(2, 2), Some(2));
        assert_eq!(negotiate_route_version(1, 9), Some(ROUTE_PROTOCOL_VERSION));
        assert_eq!(negotiate_route_version(1, 1), None);
        assert_eq!(negotiate_route_version(3, 9), None);
    }
}
