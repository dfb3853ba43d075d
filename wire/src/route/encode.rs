//! `Encoder` methods for the route ops: values into whole route frames,
//! appended to a caller's `BytesMut` like every other frame.
//!
//! Each method first runs the checks decode runs (`super::types`), so a
//! route frame written here always decodes, and a node learns about a bad
//! value from a typed error before anything is sent. A meta above
//! `META_BYTES_MAX` is an error, never a truncated frame.

use bytes::{BufMut, BytesMut};

use super::types::{validate_interest, validate_message, RouteAuth, RouteHello};
use super::{RouteFrame, RouteHeader, RouteOp};
use crate::codec::META_BYTES_MAX;
use crate::encoder::{text, Encoder};
use crate::error::WireError;
use crate::frame::FRAME_HEADER_BYTES;
use crate::schema;

/// The parts of a RouteMessage to write (borrowed from wherever the message
/// lives): see [`super::RouteMessage`] for what each means.
#[derive(Clone, Copy, Debug)]
pub struct OutgoingRouteMessage<'a> {
    pub subject: &'a [u8],
    pub reply: Option<&'a [u8]>,
    pub headers: Option<&'a [u8]>,
    pub payload: &'a [u8],
    pub queue_picks: &'a [u64],
    /// Non-zero: answer with a RouteStoreAck carrying it (the frame's tag).
    pub store_request: u64,
}

/// Appends one route frame: header, meta, payload.
fn put_route_frame(out: &mut BytesMut, op: RouteOp, tag: u64, meta: &[u8], payload: &[u8]) -> Result<(), WireError> {
    debug_assert!(op.has_meta() && (op.has_payload() || payload.is_empty()));
    debug_assert!(op.tag_is_free() || tag == 0);
    if meta.len() > META_BYTES_MAX {
        return Err(WireError::MalformedFrame("meta part above META_BYTES_MAX"));
    }
    let body_len = u32::try_from(meta.len() + payload.len())
        .map_err(|_| WireError::MalformedFrame("body above u32::MAX bytes"))?;
    let header = RouteHeader { body_len, op, meta_len: meta.len() as u16, tag };
    out.reserve(FRAME_HEADER_BYTES + body_len as usize);
    out.put_slice(&header.to_bytes());
    out.put_slice(meta);
    out.put_slice(payload);
    Ok(())
}

/// Ping and Pong: a header whose tag is the token, nothing else.
fn put_bare(out: &mut BytesMut, op: RouteOp, token: u64) {
    debug_assert!(!op.has_meta() && op.tag_is_free());
    out.put_slice(&RouteHeader { body_len: 0, op, meta_len: 0, tag: token }.to_bytes());
}

impl Encoder {
    /// A RouteHello (op 64). Refuses a hello that breaks the rules of
    /// [`RouteHello::validate`].
    pub fn route_hello(&mut self, out: &mut BytesMut, hello: &RouteHello) -> Result<(), WireError> {
        hello.validate()?;
        self.builder.reset();
        let builder = &mut self.builder;
        let cluster_name = Some(builder.create_string(&hello.cluster_name));
        let nonce = Some(builder.create_vector(&hello.nonce));
        let route_address = (!hello.route_address.is_empty()).then(|| builder.create_string(&hello.route_address));
        let client_urls: Vec<_> = hello.client_urls.iter().map(|url| builder.create_string(url)).collect();
        let client_urls = (!client_urls.is_empty()).then(|| builder.create_vector(&client_urls));
        let nats_urls: Vec<_> = hello.nats_urls.iter().map(|url| builder.create_string(url)).collect();
        let nats_urls = (!nats_urls.is_empty()).then(|| builder.create_vector(&nats_urls));
        let args = schema::RouteHelloArgs {
            version_min: hello.version_min,
            version_max: hello.version_max,
            cluster_name,
            node_id: hello.node_id,
            generation: hello.generation,
            shard_count: hello.shard_count,
            lane_shard: hello.lane_shard,
            nonce,
            route_address,
            client_urls,
            nats_urls,
        };
        let root = schema::RouteHello::create(builder, &args);
        let meta = self.finish(root);
        put_route_frame(out, RouteOp::Hello, 0, meta, &[])
    }

    /// A RouteAuth (op 65) carrying `auth.mac`.
    pub fn route_auth(&mut self, out: &mut BytesMut, auth: &RouteAuth) -> Result<(), WireError> {
        self.builder.reset();
        let mac = Some(self.builder.create_vector(&auth.mac));
        let root = schema::RouteAuth::create(&mut self.builder, &schema::RouteAuthArgs { mac });
        let meta = self.finish(root);
        put_route_frame(out, RouteOp::Auth, 0, meta, &[])
    }

    /// A RouteInterest (op 66): `add` the node's first, or remove its last,
    /// subscriber for `pattern` in `queue`.
    pub fn route_interest(
        &mut self,
        out: &mut BytesMut,
        add: bool,
        pattern: &[u8],
        queue: Option<&[u8]>,
    ) -> Result<(), WireError> {
        validate_interest(pattern, queue)?;
        self.builder.reset();
        let pattern = Some(self.builder.create_string(text(pattern)?));
        let queue = match queue {
            Some(queue) => Some(self.builder.create_string(text(queue)?)),
            None => None,
        };
        let root = schema::RouteInterest::create(&mut self.builder, &schema::RouteInterestArgs { add, pattern, queue });
        let meta = self.finish(root);
        put_route_frame(out, RouteOp::Interest, 0, meta, &[])
    }

    /// A RouteMessage (op 68): the message's parts as a Publish carries them,
    /// the queue groups picked for the receiving node, and its store request.
    pub fn route_message(&mut self, out: &mut BytesMut, message: &OutgoingRouteMessage<'_>) -> Result<(), WireError> {
        let OutgoingRouteMessage { subject, reply, headers, payload, queue_picks, store_request } = *message;
        validate_message(subject, reply, headers, queue_picks.len())?;
        self.builder.reset();
        let subject = Some(self.builder.create_string(text(subject)?));
        let reply = match reply {
            Some(reply) => Some(self.builder.create_string(text(reply)?)),
            None => None,
        };
        let headers = headers.map(|block| self.builder.create_vector(block));
        let queue_picks = (!queue_picks.is_empty()).then(|| self.builder.create_vector(queue_picks));
        let args = schema::RouteMessageArgs { subject, reply, headers, queue_picks };
        let root = schema::RouteMessage::create(&mut self.builder, &args);
        let meta = self.finish(root);
        put_route_frame(out, RouteOp::Message, store_request, meta, payload)
    }

    /// A RouteCapture (op 71): a stream on this node now captures (`add`) or
    /// no longer captures `pattern`.
    pub fn route_capture(&mut self, out: &mut BytesMut, add: bool, pattern: &[u8]) -> Result<(), WireError> {
        validate_interest(pattern, None)?;
        self.builder.reset();
        let pattern = Some(self.builder.create_string(text(pattern)?));
        let root =
            schema::RouteInterest::create(&mut self.builder, &schema::RouteInterestArgs { add, pattern, queue: None });
        let meta = self.finish(root);
        put_route_frame(out, RouteOp::Capture, 0, meta, &[])
    }

    /// A RouteBarrier (op 72) for interest epoch `epoch`.
    pub fn route_barrier(out: &mut BytesMut, epoch: u64) {
        put_bare(out, RouteOp::Barrier, epoch);
    }

    /// A RouteBarrierAck (op 73) answering the barrier for `epoch`.
    pub fn route_barrier_ack(out: &mut BytesMut, epoch: u64) {
        put_bare(out, RouteOp::BarrierAck, epoch);
    }

    /// A RouteStoreAck (op 74): `ack.ack_id` is the store request it answers.
    pub fn route_store_ack(&mut self, out: &mut BytesMut, ack: &crate::PublishAck) -> Result<(), WireError> {
        let tag = ack.ack_id;
        let meta = self.publish_ack_meta(ack)?;
        put_route_frame(out, RouteOp::StoreAck, tag, meta, &[])
    }

    /// A RoutePing (op 69); the token comes back in the RoutePong.
    pub fn route_ping(out: &mut BytesMut, token: u64) {
        put_bare(out, RouteOp::Ping, token);
    }

    /// A RoutePong (op 70) answering the ping with `token`.
    pub fn route_pong(out: &mut BytesMut, token: u64) {
        put_bare(out, RouteOp::Pong, token);
    }

    /// Writes any decoded route frame back: `decode_route` of the result
    /// equals `frame` (the round trip the tests and the fuzzer check).
    pub fn route_frame(&mut self, out: &mut BytesMut, frame: &RouteFrame) -> Result<(), WireError> {
        match frame {
            RouteFrame::Hello(hello) => self.route_hello(out, hello),
            RouteFrame::Auth(auth) => self.route_auth(out, auth),
            RouteFrame::Interest(interest) => {
                self.route_interest(out, interest.add, &interest.pattern, interest.queue.as_deref())
            }
            RouteFrame::Message(message) => self.route_message(
                out,
                &OutgoingRouteMessage {
                    subject: message.subject(),
                    reply: message.reply(),
                    headers: message.headers(),
                    payload: message.payload(),
                    queue_picks: &message.queue_picks,
                    store_request: message.store_request,
                },
            ),
            RouteFrame::Ping(token) => {
                Encoder::route_ping(out, *token);
                Ok(())
            }
            RouteFrame::Pong(token) => {
                Encoder::route_pong(out, *token);
                Ok(())
            }
            RouteFrame::Capture(capture) => self.route_capture(out, capture.add, &capture.pattern),
            RouteFrame::Barrier(epoch) => {
                Encoder::route_barrier(out, *epoch);
                Ok(())
            }
            RouteFrame::BarrierAck(epoch) => {
                Encoder::route_barrier_ack(out, *epoch);
                Ok(())
            }
            RouteFrame::StoreAck(ack) => self.route_store_ack(out, ack),
        }
    }
}
