//! The floor: a raw TCP echo. No framing at all: the engine sends payloads of
//! one fixed size and the echo server returns the same bytes, so a payload is
//! complete when `payload_bytes` have arrived.

use bytes::{Buf, BytesMut};

use super::{stamp_of, Inbound, Protocol, ProtocolError};

pub struct EchoProtocol {
    payload_bytes: usize,
    /// Pings asked for and not yet answered (answered locally, see `ping`).
    pongs_owed: usize,
}

impl EchoProtocol {
    pub fn new(payload_bytes: usize) -> EchoProtocol {
        EchoProtocol { payload_bytes, pongs_owed: 0 }
    }
}

impl Protocol for EchoProtocol {
    fn handshake(&mut self, _output: &mut BytesMut) {}

    fn handshake_done(&self) -> bool {
        true
    }

    /// An echo has no subscriptions: every connection gets its own bytes back.
    fn subscribe(&mut self, _output: &mut BytesMut, _subject: &str, _queue: Option<&str>, _subscription_id: u64) {}

    fn unsubscribe(&mut self, _output: &mut BytesMut, _subscription_id: u64) {}

    fn publish(&mut self, output: &mut BytesMut, _subject: &str, _reply: Option<&[u8]>, payload: &[u8]) {
        debug_assert_eq!(payload.len(), self.payload_bytes);
        output.extend_from_slice(payload);
    }

    /// An echo server has nothing to wait for: the pong is answered locally.
    fn ping(&mut self, _output: &mut BytesMut) {
        self.pongs_owed += 1;
    }

    fn parse(&mut self, input: &mut BytesMut, _output: &mut BytesMut) -> Result<Option<Inbound>, ProtocolError> {
        if self.pongs_owed > 0 {
            self.pongs_owed -= 1;
            return Ok(Some(Inbound::Pong));
        }
        if input.len() < self.payload_bytes {
            return Ok(None);
        }
        // The engine sends payloads of at least STAMP_BYTES: keep the stamp.
        let stamp = stamp_of(&input[..self.payload_bytes]);
        input.advance(self.payload_bytes);
        Ok(Some(stamp.map_or_else(|| Inbound::Error("a payload shorter than its stamp".into()), Inbound::Stamp)))
    }
}
