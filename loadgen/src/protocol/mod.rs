//! The protocols the load generator speaks, behind one small interface, so
//! every target is measured by the same engine, the same clock and the same
//! histogram code.
//!
//! A protocol only turns intentions into bytes and bytes into events. It owns
//! no socket: the engine reads into `input`, calls [`Protocol::parse`] until
//! it returns `Ok(None)`, and writes whatever the protocol appended to
//! `output` (requests and automatic answers such as a NATS `PONG`).

pub mod echo;
pub mod flit;
pub mod nats;

use bytes::{Bytes, BytesMut};

/// Bytes at the front of every payload the engine sends: intended send time
/// (ns), sequence number, sender index, each a little-endian u64.
pub const STAMP_BYTES: usize = 24;

/// The stamp at the front of `payload`, if it is long enough.
pub fn stamp_of(payload: &[u8]) -> Option<[u8; STAMP_BYTES]> {
    payload.get(..STAMP_BYTES).map(|bytes| bytes.try_into().expect("STAMP_BYTES long"))
}

/// What a connection received that the engine cares about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A delivered message (flit Deliver, NATS MSG, an echoed payload).
    Message { subscription_id: u64, reply: Option<Bytes>, payload: Bytes },
    /// A delivered message of which only the first [`STAMP_BYTES`] of the
    /// payload are kept (the time stamp, sequence and sender the engine
    /// records). Protocols return this instead of `Message` when no reply
    /// subject is needed: it costs a 24-byte copy instead of reference-counted
    /// slices, so the load generator stays cheaper than what it measures,
    /// and it is done alike for every target.
    Stamp([u8; STAMP_BYTES]),
    /// The answer to [`Protocol::ping`]: everything sent before the ping has
    /// been processed by the server (the engine's readiness barrier).
    Pong,
    /// The server refused something; counted as an error.
    Error(String),
}

/// One connection's protocol state.
pub trait Protocol: Send {
    /// Bytes to send right after connecting (flit Hello, NATS CONNECT).
    fn handshake(&mut self, output: &mut BytesMut);
    /// Whether the server's side of the handshake has arrived. The engine
    /// parses until this is true before it counts the connection as open.
    fn handshake_done(&self) -> bool;
    /// Whether received messages must carry their reply subject (responders
    /// do; subscribers and requesters do not, and a protocol may skip it).
    fn set_needs_reply(&mut self, _needs_reply: bool) {}
    fn subscribe(&mut self, output: &mut BytesMut, subject: &str, queue: Option<&str>, subscription_id: u64);
    /// Ends the subscription `subscription_id` at once (the propagation scenario).
    fn unsubscribe(&mut self, output: &mut BytesMut, subscription_id: u64);
    fn publish(&mut self, output: &mut BytesMut, subject: &str, reply: Option<&[u8]>, payload: &[u8]);
    fn ping(&mut self, output: &mut BytesMut);
    /// Takes the next event off the front of `input`, consuming (and, where
    /// needed, answering into `output`) anything in between that is not an
    /// event, such as a NATS `INFO`, `+OK` or server `PING`. `Ok(None)`: no
    /// whole event is buffered yet. `Err`: the stream is broken.
    fn parse(&mut self, input: &mut BytesMut, output: &mut BytesMut) -> Result<Option<Inbound>, ProtocolError>;
}

/// A stream the load generator cannot continue with.
#[derive(Debug, thiserror::Error)]
#[error("{target} protocol error: {message}")]
pub struct ProtocolError {
    pub target: &'static str,
    pub message: String,
}
