//! Deliveries to NATS subscribers (`MSG`, or `HMSG` when the message has
//! headers or a status and the client said `headers: true`), and stream
//! acknowledgements turned into messages on a NATS publisher's reply subject.
//!
//! Per delivery: one `MSG` line and the payload copied into the write buffer
//! (like a native Deliver). Per message per shard, when it has headers: the
//! flit block is decoded and rendered as a `NATS/1.0` block once
//! ([`NatsHeaderCache`]), then reused for every NATS subscriber of it.

use bytes::BytesMut;

use super::super::Shard;
use crate::connection::ConnectionKey;
use crate::mesh::RoutedMessage;
use crate::nats_session::NatsSession;

/// The `NATS/1.0` rendering of the message being delivered (reset for each
/// message by the routing core, built on its first NATS subscriber).
#[derive(Debug, Default)]
pub struct NatsHeaderCache {
    ready: bool,
    block: BytesMut,
}

impl NatsHeaderCache {
    /// Forgets the rendering: a new message is being delivered.
    pub fn reset(&mut self) {
        self.ready = false;
    }

    /// The block for `message` (empty: it has neither headers nor status).
    /// Entries a NATS block cannot hold (a key that is not a token, a value
    /// with CR, LF or surrounding blanks) are left out rather than the
    /// message; a flit block that fails to decode (it was verified when
    /// published, so it cannot) leaves out every entry.
    fn block(&mut self, message: &RoutedMessage) -> &[u8] {
        if self.ready {
            return &self.block;
        }
        self.ready = true;
        self.block.clear();
        let entries = message.headers().and_then(|block| flit_wire::decode_headers(block).ok()).unwrap_or_default();
        if entries.is_empty() && message.status == 0 {
            return &self.block;
        }
        let clean = |text: &[u8]| {
            !text.iter().any(|byte| *byte == b'\r' || *byte == b'\n')
                && text.first().is_none_or(|byte| !byte.is_ascii_whitespace())
                && text.last().is_none_or(|byte| !byte.is_ascii_whitespace())
        };
        let key_ok = |key: &[u8]| !key.is_empty() && key.iter().all(|byte| byte.is_ascii_graphic() && *byte != b':');
        let pairs: Vec<(&[u8], &[u8])> = entries
            .iter()
            .map(|(key, value)| (key.as_bytes(), value.as_bytes()))
            .filter(|(key, value)| key_ok(key) && clean(value))
            .collect();
        let status = (message.status != 0).then_some((message.status, &b""[..]));
        if flit_nats::encode_headers(status, &pairs, &mut self.block).is_err() {
            self.block.clear();
        }
        &self.block
    }
}

/// Whether a NATS subscriber takes this message at all: not its own when
/// it asked for `echo: false`, and the router's own status message (no
/// responders, which has no publisher) only when it asked for
/// `no_responders` (which needs headers). A status a client published (an
/// HPUB whose block has one) is an ordinary message.
pub(in crate::shard) fn nats_takes(session: &NatsSession, message: &RoutedMessage, own_origin: u64) -> bool {
    if !session.options.echo && message.origin == own_origin {
        return false;
    }
    message.status == 0
        || message.origin != crate::mesh::NO_ORIGIN
        || (session.options.no_responders && session.options.headers)
}

/// Appends the `MSG` or `HMSG` for one delivery to subscription `id`.
pub(in crate::shard) fn write_nats_delivery(
    out: &mut BytesMut,
    session: &NatsSession,
    id: u64,
    message: &RoutedMessage,
    headers: &mut NatsHeaderCache,
) {
    let mut digits = [0u8; 20];
    let sid = session.sid_text(id, &mut digits);
    let has_headers = message.headers().is_some() || message.status != 0;
    if has_headers && session.options.headers {
        let block = headers.block(message);
        if !block.is_empty() {
            return flit_nats::encode_hmsg(out, message.subject(), sid, message.reply(), block, message.payload());
        }
    }
    // A client without header support gets the payload alone, as from
    // nats-server.
    flit_nats::encode_msg(out, message.subject(), sid, message.reply(), message.payload());
}

impl Shard {
    /// A stream's PublishAck frame for a NATS connection (one that published
    /// with a reply subject to a stream-captured subject): published as a
    /// message on that reply subject, its payload JSON in JetStream's PubAck
    /// shape (`{"stream":"S","seq":N}`, `"duplicate":true` when it was one,
    /// or `{"error":{"code":C,"description":"..."}}`), so a client's request
    /// gets it as the reply. True when the frame was such an ack.
    pub(in crate::shard) fn nats_stream_ack(&mut self, key: ConnectionKey, frames: &[u8]) -> bool {
        let Some(session) = self.connections.get_mut(key).and_then(|connection| connection.nats.as_mut()) else {
            return false;
        };
        let frame = bytes::Bytes::copy_from_slice(frames);
        let Ok(flit_wire::stream::StreamFrame::PublishAck(ack)) =
            flit_wire::stream::decode_stream(frame, &flit_wire::Limits::default())
        else {
            return true;
        };
        let Some(reply) = session.pending_acks.remove(&ack.ack_id) else { return true };
        let body = if ack.code == 0 {
            let mut body = serde_json::json!({ "stream": ack.stream, "seq": ack.sequence });
            if ack.duplicate {
                body["duplicate"] = serde_json::Value::Bool(true);
            }
            body
        } else {
            serde_json::json!({ "error": { "code": ack.code, "description": ack.message } })
        };
        let payload = serde_json::to_vec(&body).unwrap_or_default();
        let mut buffer = BytesMut::with_capacity(reply.len() + payload.len());
        buffer.extend_from_slice(&reply);
        buffer.extend_from_slice(&payload);
        let length = buffer.len();
        let mut message = RoutedMessage::from_parts(buffer.freeze(), 0..reply.len(), None, None, reply.len()..length);
        message.received_at_nanos = self.now_nanos();
        self.route_message(message, None);
        true
    }
}
