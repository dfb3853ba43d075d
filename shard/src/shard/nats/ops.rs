//! A NATS connection's PUB, HPUB, SUB and UNSUB, applied to the routing
//! core. Subjects and queue groups are checked with flit's rules
//! (`flit_wire::subject`), which are stricter than NATS's (see the header of
//! the `flit-nats` crate): both listeners enforce one rule. A refused subject
//! gets nats-server's `'Invalid Subject'` / `'Invalid Publish Subject'` and
//! the connection stays open, as with nats-server.

use bytes::{Bytes, BytesMut};
use flit_nats::ProtocolError;
use flit_wire::Subscribe;

use super::super::dispatch::SubscribeRefusal;
use super::super::Shard;
use super::NATS_PENDING_ACKS_MAX;
use crate::connection::ConnectionKey;
use crate::mesh::RoutedMessage;

impl Shard {
    /// PUB or HPUB: every part is a slice of `bytes`, the op as received.
    pub(super) fn on_nats_publish(
        &mut self,
        key: ConnectionKey,
        bytes: Bytes,
        subject: Bytes,
        reply: Option<Bytes>,
        headers: Option<Bytes>,
        payload: Bytes,
    ) {
        if flit_wire::subject::validate_publish_subject(&subject).is_err()
            || reply.as_ref().is_some_and(|reply| flit_wire::subject::validate_publish_subject(reply).is_err())
        {
            return self.nats_error(key, ProtocolError::InvalidPublishSubject);
        }
        let size = bytes.len() as u64;
        let message = match headers {
            None => {
                let range = |part: &Bytes| range_within(&bytes, part);
                RoutedMessage::from_parts(
                    bytes.clone(),
                    range(&subject),
                    reply.as_ref().map(range),
                    None,
                    range(&payload),
                )
            }
            Some(block) => match translated_message(&subject, reply.as_deref(), &block, &payload) {
                Ok(message) => message,
                Err(()) => {
                    // nats-server passes a header block on unread; flit's
                    // core carries headers as its own block, so one that
                    // cannot be read cannot be carried: refused, and closed
                    // like any other malformed op.
                    return self.nats_error(key, ProtocolError::UnknownOperation);
                }
            },
        };
        // With a reply subject, a publish a stream captures (on this node or
        // another: cluster/store.rs) is answered on that subject once stored
        // (deliver.rs, `nats_stream_ack`).
        let captured = |shard: &mut Self| {
            (!shard.stream_capture.is_empty() && shard.stream_capture.capture(&subject).is_some())
                || shard.capturing_nodes(&subject) != 0
        };
        let tag = match &reply {
            Some(reply) if captured(self) => {
                let Some(session) = self.connections.get_mut(key).and_then(|connection| connection.nats.as_mut())
                else {
                    return;
                };
                if session.pending_acks.len() >= NATS_PENDING_ACKS_MAX {
                    let line = format!("at most {NATS_PENDING_ACKS_MAX} stream acknowledgements may be pending");
                    return self.refuse(key, flit_wire::ErrorCode::TooManySubscriptions, &line, 0);
                }
                session.remember_ack(reply.clone())
            }
            _ => 0,
        };
        if self.publish_from_client(key, message, size, tag).is_ok() {
            self.nats_ok(key);
        } else if tag != 0 {
            if let Some(session) = self.connections.get_mut(key).and_then(|connection| connection.nats.as_mut()) {
                session.pending_acks.remove(&tag);
            }
        }
    }

    pub(super) fn on_nats_subscribe(&mut self, key: ConnectionKey, pattern: &[u8], queue: Option<&[u8]>, sid: &[u8]) {
        if flit_wire::subject::validate_pattern(pattern).is_err() {
            return self.nats_error(key, ProtocolError::InvalidSubject);
        }
        if queue.is_some_and(|queue| flit_wire::subject::validate_queue_group(queue).is_err()) {
            // nats-server has no error of its own for a queue name; the
            // subject error is the one its clients know.
            return self.nats_error(key, ProtocolError::InvalidSubject);
        }
        let Some(session) = self.connections.get_mut(key).and_then(|connection| connection.nats.as_mut()) else {
            return;
        };
        let known = session.known_sid(sid);
        let subscription_id = session.sid_for_new_subscription(sid);
        let subscribe = Subscribe {
            pattern: Bytes::copy_from_slice(pattern),
            queue: queue.map(Bytes::copy_from_slice),
            subscription_id,
        };
        match self.subscribe_from_client(key, subscribe) {
            Ok(_) => self.nats_ok(key),
            // nats-server ignores a SUB that reuses a live sid.
            Err(SubscribeRefusal::DuplicateId(_)) => self.nats_ok(key),
            Err(refusal) => {
                if known.is_none() {
                    self.forget_nats_sid(key, subscription_id);
                }
                let error = match refusal {
                    SubscribeRefusal::Denied(_) => ProtocolError::SubscribePermission {
                        subject: pattern.to_vec(),
                        queue: queue.map(<[u8]>::to_vec),
                    },
                    _ => ProtocolError::MaxSubscriptionsExceeded,
                };
                self.nats_error(key, error);
            }
        }
    }

    /// UNSUB sid [max]: with a max, the subscription ends once `max`
    /// messages have been delivered to it in all (nats-server's rule: the
    /// count includes those already delivered). An unknown sid is not an
    /// error (the subscription may have ended by itself meanwhile).
    pub(super) fn on_nats_unsubscribe(&mut self, key: ConnectionKey, sid: &[u8], max: Option<u64>) {
        let Some(connection) = self.connections.get(key) else { return };
        let id = connection.nats.as_ref().and_then(|session| session.known_sid(sid));
        let slot = id.and_then(|id| connection.subscriptions.get(&id).copied());
        if let Some(slot) = slot {
            let delivered = self.subscriptions.get(slot).map_or(0, |subscription| subscription.delivered);
            match max {
                Some(max) if max > delivered => {
                    if let Some(subscription) = self.subscriptions.get_mut(slot) {
                        subscription.remaining = Some(max - delivered);
                    }
                }
                // Its sid is forgotten with it (routing.rs).
                _ => self.remove_subscription(slot),
            }
        }
        self.nats_ok(key);
    }

    pub(in crate::shard) fn forget_nats_sid(&mut self, key: ConnectionKey, subscription_id: u64) {
        if let Some(session) = self.connections.get_mut(key).and_then(|connection| connection.nats.as_mut()) {
            session.forget_sid(subscription_id);
        }
    }
}

/// Where `part` (a slice of `whole`) lies in it.
fn range_within(whole: &Bytes, part: &Bytes) -> std::ops::Range<usize> {
    // Both point into the same allocation (the parser slices the op's
    // bytes), so the address difference is the offset. Checked, not trusted.
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    assert!(start <= whole.len() && part.len() <= whole.len() - start, "a part lies inside its op");
    start..start + part.len()
}

/// A message with its `NATS/1.0` header block translated to flit's: one
/// new buffer holding subject, reply, block and payload. A status line in a
/// client's block becomes the message status (e.g. a responder relaying
/// 503); its description is dropped. Err: the block cannot be read, or
/// holds more entries than a flit block may.
fn translated_message(
    subject: &[u8],
    reply: Option<&[u8]>,
    block: &Bytes,
    payload: &[u8],
) -> Result<RoutedMessage, ()> {
    let parsed = flit_nats::parse_headers(block).map_err(drop)?;
    let entries: Vec<(String, String)> = parsed
        .entries
        .iter()
        .map(|(key, value)| (String::from_utf8_lossy(key).into_owned(), String::from_utf8_lossy(value).into_owned()))
        .collect();
    let pairs: Vec<(&str, &str)> = entries.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
    let flit_block = if pairs.is_empty() { None } else { Some(flit_wire::encode_headers(&pairs).map_err(drop)?) };
    let reply_length = reply.map_or(0, <[u8]>::len);
    let block_length = flit_block.as_ref().map_or(0, Bytes::len);
    let mut buffer = BytesMut::with_capacity(subject.len() + reply_length + block_length + payload.len());
    buffer.extend_from_slice(subject);
    let subject_range = 0..subject.len();
    let reply_range = reply.map(|reply| {
        let start = buffer.len();
        buffer.extend_from_slice(reply);
        start..buffer.len()
    });
    let headers_range = flit_block.map(|block| {
        let start = buffer.len();
        buffer.extend_from_slice(&block);
        start..buffer.len()
    });
    let payload_start = buffer.len();
    buffer.extend_from_slice(payload);
    let payload_range = payload_start..buffer.len();
    let mut message =
        RoutedMessage::from_parts(buffer.freeze(), subject_range, reply_range, headers_range, payload_range);
    message.status = parsed.status.unwrap_or(0);
    Ok(message)
}
