//! The Deliver meta of the last message delivered, kept and reused while the
//! next messages have the same subject, reply, headers and status. A stream
//! of messages on one subject then costs one flatbuffer build, not one per
//! message; a message that differs costs a comparison and a rebuild.
//!
//! Invariants: `meta` is always the encoding of exactly the fields stored
//! beside it. The fields are copies (reused buffers), not `Bytes`, so the
//! cache never keeps a read buffer alive.

use flit_wire::{Encoder, WireError};

use crate::mesh::RoutedMessage;

#[derive(Debug, Default)]
pub struct DeliveryMetaCache {
    valid: bool,
    subject: Vec<u8>,
    reply: OptionalBytes,
    headers: OptionalBytes,
    status: u16,
    meta: Vec<u8>,
}

impl DeliveryMetaCache {
    /// Makes [`DeliveryMetaCache::meta`] the Deliver meta of `message`.
    pub fn prepare(&mut self, encoder: &mut Encoder, message: &RoutedMessage) -> Result<(), WireError> {
        let unchanged = self.valid
            && self.status == message.status
            && self.subject[..] == *message.subject()
            && self.reply.as_deref() == message.reply()
            && self.headers.as_deref() == message.headers();
        if unchanged {
            return Ok(());
        }
        self.valid = false;
        let meta = encoder.deliver_meta(message.subject(), message.reply(), message.headers(), message.status)?;
        self.meta.clear();
        self.meta.extend_from_slice(meta);
        copy_into(&mut self.subject, message.subject());
        self.reply.set(message.reply());
        self.headers.set(message.headers());
        self.status = message.status;
        self.valid = true;
        Ok(())
    }

    /// The meta prepared last.
    pub fn meta(&self) -> &[u8] {
        debug_assert!(self.valid, "prepare() succeeded before meta() is used");
        &self.meta
    }
}

fn copy_into(target: &mut Vec<u8>, source: &[u8]) {
    target.clear();
    target.extend_from_slice(source);
}

/// An optional field kept as a buffer plus a presence flag, so alternating
/// between present and absent (requests and replies) reuses the buffer.
#[derive(Debug, Default)]
struct OptionalBytes {
    present: bool,
    bytes: Vec<u8>,
}

impl OptionalBytes {
    fn as_deref(&self) -> Option<&[u8]> {
        self.present.then_some(&self.bytes[..])
    }

    fn set(&mut self, source: Option<&[u8]>) {
        self.present = source.is_some();
        copy_into(&mut self.bytes, source.unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn message(subject: &'static str, reply: Option<&'static str>, status: u16) -> RoutedMessage {
        let mut frame = BytesMut::new();
        let reply = reply.map(str::as_bytes);
        Encoder::default().publish(&mut frame, subject.as_bytes(), reply, None, b"").expect("encodes");
        let frame = frame.freeze();
        let parts = flit_wire::decode_publish(&frame, &flit_wire::Limits::default()).expect("decodes");
        let mut message = RoutedMessage::from_publish(frame, parts);
        message.status = status;
        message
    }

    #[test]
    fn reused_only_while_every_field_matches() {
        let mut encoder = Encoder::default();
        let mut cache = DeliveryMetaCache::default();
        let cases = [
            message("a.b", None, 0),
            message("a.b", None, 0),
            message("a.c", None, 0),
            message("a.c", Some("r.1"), 0),
            message("a.c", Some("r.2"), 0),
            message("a.c", Some("r.2"), 503),
            message("a.c", None, 0),
        ];
        for case in &cases {
            cache.prepare(&mut encoder, case).expect("encodes");
            let fresh = encoder
                .deliver_meta(case.subject(), case.reply(), case.headers(), case.status)
                .expect("encodes")
                .to_vec();
            assert_eq!(cache.meta(), &fresh[..], "cache must equal a fresh encoding for {case:?}");
        }
    }
}
