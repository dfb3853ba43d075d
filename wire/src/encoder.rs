//! `Encoder`: typed parts into whole frames, appended to a caller's `BytesMut`,
//! so many frames to one peer end up in one buffer and go out in one write.
//!
//! Invariants: encoding allocates nothing once the reusable flatbuffers
//! builder has grown to the largest meta seen; a meta part above
//! `META_BYTES_MAX` is an error, never a truncated frame.

use bytes::{BufMut, BytesMut};
use flatbuffers::{FlatBufferBuilder, WIPOffset};

use crate::codec::{Frame, Hello, Unsubscribe, Welcome, META_BYTES_MAX};
use crate::error::{ErrorCode, WireError};
use crate::frame::{FrameHeader, Op, TagRule, FRAME_HEADER_BYTES};
use crate::schema;

/// Subjects inside a frame are UTF-8 by construction (validated on decode, or
/// typed as `&str` by callers); this turns bytes that are not into an error.
pub(crate) fn text(bytes: &[u8]) -> Result<&str, WireError> {
    std::str::from_utf8(bytes).map_err(|_| WireError::InvalidSubject("not UTF-8"))
}

/// Writes frames. Holds one reusable flatbuffers builder, so encoding
/// allocates nothing once the builder has grown to the largest meta seen.
pub struct Encoder {
    pub(crate) builder: FlatBufferBuilder<'static>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder { builder: FlatBufferBuilder::with_capacity(1024) }
    }
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Encoder")
    }
}

/// Appends one frame: header, meta, payload. Refuses what `parse_header`
/// would refuse about the tag and the meta's size, so no frame written here
/// is malformed.
pub(crate) fn put_frame(out: &mut BytesMut, op: Op, tag: u64, meta: &[u8], payload: &[u8]) -> Result<(), WireError> {
    let header = frame_header(op, tag, meta, payload.len())?;
    out.reserve(FRAME_HEADER_BYTES + header.body_len as usize);
    out.put_slice(&header.to_bytes());
    out.put_slice(meta);
    out.put_slice(payload);
    Ok(())
}

/// The header of a frame with this meta and a payload of `payload_bytes`,
/// after the checks `put_frame` promises.
#[inline]
fn frame_header(op: Op, tag: u64, meta: &[u8], payload_bytes: usize) -> Result<FrameHeader, WireError> {
    if meta.len() > META_BYTES_MAX {
        return Err(WireError::MalformedFrame("meta part above META_BYTES_MAX"));
    }
    match op.tag_rule() {
        TagRule::Zero if tag != 0 => return Err(WireError::MalformedFrame("tag must be 0 for this op")),
        TagRule::NonZero if tag == 0 => {
            return Err(WireError::MalformedFrame("this op needs a non-zero tag (its request id)"))
        }
        _ => {}
    }
    let body_len = u32::try_from(meta.len() + payload_bytes)
        .map_err(|_| WireError::MalformedFrame("body above u32::MAX bytes"))?;
    Ok(FrameHeader { body_len, op, meta_len: meta.len() as u16, tag })
}

impl Encoder {
    pub(crate) fn finish<T>(&mut self, root: WIPOffset<T>) -> &[u8] {
        self.builder.finish_minimal(root);
        self.builder.finished_data()
    }

    fn optional_string(&mut self, value: Option<&[u8]>) -> Result<Option<WIPOffset<&'static str>>, WireError> {
        match value {
            None => Ok(None),
            Some(bytes) => Ok(Some(self.builder.create_string(text(bytes)?))),
        }
    }

    pub fn hello(&mut self, out: &mut BytesMut, hello: &Hello) -> Result<(), WireError> {
        self.builder.reset();
        let client_name = hello.client_name.as_deref().map(|name| self.builder.create_string(name));
        let auth_token = hello.auth_token.as_deref().map(|token| self.builder.create_string(token));
        let root = schema::Hello::create(
            &mut self.builder,
            &schema::HelloArgs {
                version_min: hello.version_min,
                version_max: hello.version_max,
                client_name,
                auth_token,
                ack_mode: hello.ack_mode,
            },
        );
        let meta = self.finish(root);
        put_frame(out, Op::Hello, 0, meta, &[])
    }

    pub fn welcome(&mut self, out: &mut BytesMut, welcome: &Welcome) -> Result<(), WireError> {
        crate::codec::check_cluster_url_count(welcome.cluster_urls.len())?;
        for url in &welcome.cluster_urls {
            crate::codec::check_cluster_url(url)?;
        }
        self.builder.reset();
        let server_name = Some(self.builder.create_string(&welcome.server_name));
        let cluster_urls: Vec<_> = welcome.cluster_urls.iter().map(|url| self.builder.create_string(url)).collect();
        let cluster_urls = (!cluster_urls.is_empty()).then(|| self.builder.create_vector(&cluster_urls));
        let root = schema::Welcome::create(
            &mut self.builder,
            &schema::WelcomeArgs {
                version: welcome.version,
                server_name,
                shard: welcome.shard,
                shards: welcome.shards,
                payload_bytes_max: welcome.payload_bytes_max,
                meta_bytes_max: welcome.meta_bytes_max,
                pending_bytes_max: welcome.pending_bytes_max,
                subscriptions_max: welcome.subscriptions_max,
                cluster_urls,
            },
        );
        let meta = self.finish(root);
        put_frame(out, Op::Welcome, 0, meta, &[])
    }

    pub fn publish(
        &mut self,
        out: &mut BytesMut,
        subject: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<(), WireError> {
        self.publish_with_ack_id(out, 0, subject, reply, headers, payload)
    }

    /// A Publish whose header tag is `ack_id` (version 2). A non-zero
    /// `ack_id` asks the server for a PublishAck with the same id once a
    /// stream has stored the message (or refused it); 0 is a plain publish.
    pub fn publish_with_ack_id(
        &mut self,
        out: &mut BytesMut,
        ack_id: u64,
        subject: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<(), WireError> {
        let meta = self.publish_meta(subject, reply, headers)?;
        put_frame(out, Op::Publish, ack_id, meta, payload)
    }

    /// Builds the meta part of a Publish once; [`Encoder::publish_with_meta`]
    /// then writes frames with it. A publisher that sends many messages to
    /// the same subject keeps the meta and skips the flatbuffer build.
    pub fn publish_meta(
        &mut self,
        subject: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
    ) -> Result<&[u8], WireError> {
        self.builder.reset();
        let subject = Some(self.builder.create_string(text(subject)?));
        let reply = self.optional_string(reply)?;
        let headers = headers.map(|block| self.builder.create_vector(block));
        let root = schema::Publish::create(&mut self.builder, &schema::PublishArgs { subject, reply, headers });
        Ok(self.finish(root))
    }

    /// Writes a Publish frame from a meta built by [`Encoder::publish_meta`].
    pub fn publish_with_meta(out: &mut BytesMut, meta: &[u8], payload: &[u8]) -> Result<(), WireError> {
        put_frame(out, Op::Publish, 0, meta, payload)
    }

    /// [`Encoder::publish_with_meta`] with an ack id in the tag (see
    /// [`Encoder::publish_with_ack_id`]): a durable publisher keeps one meta
    /// and numbers its frames.
    pub fn publish_with_meta_and_ack_id(
        out: &mut BytesMut,
        ack_id: u64,
        meta: &[u8],
        payload: &[u8],
    ) -> Result<(), WireError> {
        put_frame(out, Op::Publish, ack_id, meta, payload)
    }

    pub fn subscribe(
        &mut self,
        out: &mut BytesMut,
        pattern: &[u8],
        queue: Option<&[u8]>,
        subscription_id: u64,
    ) -> Result<(), WireError> {
        self.builder.reset();
        let subject = Some(self.builder.create_string(text(pattern)?));
        let queue = self.optional_string(queue)?;
        let root =
            schema::Subscribe::create(&mut self.builder, &schema::SubscribeArgs { subject, queue, subscription_id });
        let meta = self.finish(root);
        put_frame(out, Op::Subscribe, 0, meta, &[])
    }

    pub fn unsubscribe(&mut self, out: &mut BytesMut, unsubscribe: Unsubscribe) -> Result<(), WireError> {
        self.builder.reset();
        let root = schema::Unsubscribe::create(
            &mut self.builder,
            &schema::UnsubscribeArgs {
                subscription_id: unsubscribe.subscription_id,
                after_messages: unsubscribe.after_messages,
            },
        );
        let meta = self.finish(root);
        put_frame(out, Op::Unsubscribe, 0, meta, &[])
    }

    /// Builds the meta part of a Deliver once; [`Encoder::deliver`] then writes
    /// it for each subscription, changing only the tag. This is what lets a
    /// router fan one message out to many subscriptions with one encode.
    pub fn deliver_meta(
        &mut self,
        subject: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        status: u16,
    ) -> Result<&[u8], WireError> {
        self.builder.reset();
        let subject = Some(self.builder.create_string(text(subject)?));
        let reply = self.optional_string(reply)?;
        let headers = headers.map(|block| self.builder.create_vector(block));
        let root = schema::Deliver::create(&mut self.builder, &schema::DeliverArgs { subject, reply, headers, status });
        Ok(self.finish(root))
    }

    /// Writes a Deliver frame from a meta built by [`Encoder::deliver_meta`].
    pub fn deliver(out: &mut BytesMut, subscription_id: u64, meta: &[u8], payload: &[u8]) -> Result<(), WireError> {
        put_frame(out, Op::Deliver, subscription_id, meta, payload)
    }

    /// A Deliver frame's header and meta only: the caller sends its payload
    /// of `payload_bytes` right after them, by reference (a vectored send),
    /// and nothing else in between. The payload is the frame's last part.
    pub fn deliver_head(
        out: &mut BytesMut,
        subscription_id: u64,
        meta: &[u8],
        payload_bytes: usize,
    ) -> Result<(), WireError> {
        let header = frame_header(Op::Deliver, subscription_id, meta, payload_bytes)?;
        out.reserve(FRAME_HEADER_BYTES + meta.len());
        out.put_slice(&header.to_bytes());
        out.put_slice(meta);
        Ok(())
    }

    pub fn error(&mut self, out: &mut BytesMut, code: ErrorCode, message: &str) -> Result<(), WireError> {
        self.error_with_raw_code(out, code.as_u16(), message)
    }

    /// An Error frame with a code this version may not know (as received from
    /// a newer peer and passed on, or re-encoded).
    pub fn error_with_raw_code(&mut self, out: &mut BytesMut, code: u16, message: &str) -> Result<(), WireError> {
        self.error_with_retry(out, code, message, 0)
    }

    /// An Error frame with a retry-after hint (for `rate_limited`).
    pub fn error_with_retry(
        &mut self,
        out: &mut BytesMut,
        code: u16,
        message: &str,
        retry_after_ms: u32,
    ) -> Result<(), WireError> {
        self.builder.reset();
        let message = Some(self.builder.create_string(message));
        let root = schema::Error::create(&mut self.builder, &schema::ErrorArgs { code, message, retry_after_ms });
        let meta = self.finish(root);
        put_frame(out, Op::Error, 0, meta, &[])
    }

    /// Writes any decoded frame back: `encode(decode(bytes))` decodes to the
    /// same frame (the round trip the property tests and the fuzzer check).
    pub fn frame(&mut self, out: &mut BytesMut, frame: &Frame) -> Result<(), WireError> {
        match frame {
            Frame::Hello(hello) => self.hello(out, hello),
            Frame::Welcome(welcome) => self.welcome(out, welcome),
            Frame::Publish(publish) => self.publish_with_ack_id(
                out,
                publish.ack_id,
                &publish.subject,
                publish.reply.as_deref(),
                publish.headers.as_deref(),
                &publish.payload,
            ),
            Frame::Subscribe(subscribe) => {
                self.subscribe(out, &subscribe.pattern, subscribe.queue.as_deref(), subscribe.subscription_id)
            }
            Frame::Unsubscribe(unsubscribe) => self.unsubscribe(out, *unsubscribe),
            Frame::Deliver(deliver) => {
                let meta = self.deliver_meta(
                    &deliver.subject,
                    deliver.reply.as_deref(),
                    deliver.headers.as_deref(),
                    deliver.status,
                )?;
                Encoder::deliver(out, deliver.subscription_id, meta, &deliver.payload)
            }
            Frame::Ping => {
                Encoder::bare(out, Op::Ping);
                Ok(())
            }
            Frame::Pong => {
                Encoder::bare(out, Op::Pong);
                Ok(())
            }
            Frame::Ok => {
                Encoder::bare(out, Op::Ok);
                Ok(())
            }
            Frame::Error(error) => self.error_with_retry(out, error.code, &error.message, error.retry_after_ms),
            Frame::Draining { close_within_ms } => {
                Encoder::draining(out, *close_within_ms);
                Ok(())
            }
            Frame::Stream(stream) => self.stream_frame(out, stream),
        }
    }

    /// A Draining notice: the tag carries the milliseconds until the close.
    pub fn draining(out: &mut BytesMut, close_within_ms: u64) {
        out.put_slice(&FrameHeader { body_len: 0, op: Op::Draining, meta_len: 0, tag: close_within_ms }.to_bytes());
    }

    /// Ping, Pong and Ok carry nothing but the header.
    pub fn bare(out: &mut BytesMut, op: Op) {
        debug_assert!(!op.has_meta());
        out.put_slice(&FrameHeader { body_len: 0, op, meta_len: 0, tag: 0 }.to_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deliver_head_followed_by_its_payload_is_the_whole_deliver_frame() {
        let mut encoder = Encoder::default();
        let meta = encoder.deliver_meta(b"a.b", Some(b"_INBOX.x"), None, 0).expect("meta").to_vec();
        let payload = vec![7u8; 5000];
        let mut whole = BytesMut::new();
        Encoder::deliver(&mut whole, 42, &meta, &payload).expect("deliver");
        let mut pieced = BytesMut::new();
        Encoder::deliver_head(&mut pieced, 42, &meta, payload.len()).expect("head");
        assert_eq!(pieced.len(), whole.len() - payload.len(), "the head reserves no payload bytes");
        pieced.extend_from_slice(&payload);
        assert_eq!(pieced, whole);
    }
}
