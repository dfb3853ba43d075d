//! flit's own protocol, through `flit-wire`: the same encoder and decoder the
//! router and the client use, so the load generator cannot disagree with them.
//!
//! Two shortcuts keep the instrument cheaper than what it measures: the
//! Publish meta is built once per (subject, reply) and reused, and a Deliver
//! whose reply subject nobody needs (everything but a responder) is taken
//! apart by its fixed header alone: the payload starts `meta_len` bytes after
//! it. Frames still pass `check`, so a broken stream is still an error.

use bytes::{Buf, BytesMut};
use flit_wire::{
    check, decode, parse_header, Check, Encoder, Frame, Hello, Limits, Op, Unsubscribe, FRAME_HEADER_BYTES,
    PROTOCOL_VERSION,
};

use super::{stamp_of, Inbound, Protocol, ProtocolError};

#[derive(Default)]
pub struct FlitProtocol {
    encoder: Encoder,
    limits: Limits,
    welcomed: bool,
    needs_reply: bool,
    /// The last Publish meta built, with the subject and reply it was built for.
    cached_subject: Vec<u8>,
    cached_reply: Option<Vec<u8>>,
    cached_meta: Vec<u8>,
    /// Sent in Hello when the server requires authentication.
    auth_token: Option<String>,
}

impl FlitProtocol {
    pub fn with_token(auth_token: Option<String>) -> FlitProtocol {
        FlitProtocol { auth_token, ..FlitProtocol::default() }
    }
}

fn error(message: impl Into<String>) -> ProtocolError {
    ProtocolError { target: "flit", message: message.into() }
}

impl Protocol for FlitProtocol {
    fn handshake(&mut self, output: &mut BytesMut) {
        let hello = Hello {
            version_min: PROTOCOL_VERSION,
            version_max: PROTOCOL_VERSION,
            client_name: Some("flit-loadgen".to_owned()),
            auth_token: self.auth_token.clone(),
            ack_mode: false,
        };
        self.encoder.hello(output, &hello).expect("a Hello always encodes");
    }

    fn handshake_done(&self) -> bool {
        self.welcomed
    }

    fn set_needs_reply(&mut self, needs_reply: bool) {
        self.needs_reply = needs_reply;
    }

    fn subscribe(&mut self, output: &mut BytesMut, subject: &str, queue: Option<&str>, subscription_id: u64) {
        self.encoder
            .subscribe(output, subject.as_bytes(), queue.map(str::as_bytes), subscription_id)
            .expect("scenario subjects are valid");
    }

    fn unsubscribe(&mut self, output: &mut BytesMut, subscription_id: u64) {
        self.encoder
            .unsubscribe(output, Unsubscribe { subscription_id, after_messages: 0 })
            .expect("an Unsubscribe always encodes");
    }

    fn publish(&mut self, output: &mut BytesMut, subject: &str, reply: Option<&[u8]>, payload: &[u8]) {
        let cached = self.cached_subject == subject.as_bytes() && self.cached_reply.as_deref() == reply;
        if !cached || self.cached_meta.is_empty() {
            let meta = self.encoder.publish_meta(subject.as_bytes(), reply, None).expect("scenario subjects are valid");
            self.cached_meta.clear();
            self.cached_meta.extend_from_slice(meta);
            self.cached_subject.clear();
            self.cached_subject.extend_from_slice(subject.as_bytes());
            self.cached_reply = reply.map(<[u8]>::to_vec);
        }
        Encoder::publish_with_meta(output, &self.cached_meta, payload).expect("meta and payload fit a frame");
    }

    fn ping(&mut self, output: &mut BytesMut) {
        Encoder::bare(output, Op::Ping);
    }

    fn parse(&mut self, input: &mut BytesMut, _output: &mut BytesMut) -> Result<Option<Inbound>, ProtocolError> {
        loop {
            let length = match check(input, self.limits.frame_bytes_max()) {
                Check::Incomplete => return Ok(None),
                Check::Invalid(invalid) => return Err(error(invalid.to_string())),
                Check::Complete(length) => length,
            };
            if !self.needs_reply && self.welcomed {
                let header = parse_header(input).map_err(|e| error(e.to_string()))?;
                if header.op == Op::Deliver {
                    let payload_start = FRAME_HEADER_BYTES + header.meta_len as usize;
                    let stamp = stamp_of(&input[payload_start..length]);
                    input.advance(length);
                    return Ok(Some(
                        stamp.map_or_else(|| Inbound::Error("a payload shorter than its stamp".into()), Inbound::Stamp),
                    ));
                }
            }
            let frame = decode(input.split_to(length).freeze(), &self.limits).map_err(|e| error(e.to_string()))?;
            match frame {
                Frame::Welcome(welcome) => {
                    self.limits.payload_bytes_max = welcome.payload_bytes_max as usize;
                    self.welcomed = true;
                }
                Frame::Deliver(deliver) => {
                    return Ok(Some(Inbound::Message {
                        subscription_id: deliver.subscription_id,
                        reply: deliver.reply,
                        payload: deliver.payload,
                    }))
                }
                Frame::Pong => return Ok(Some(Inbound::Pong)),
                Frame::Ok | Frame::Draining { .. } => {}
                Frame::Error(refused) => {
                    return Ok(Some(Inbound::Error(format!("error {}: {}", refused.code, refused.message))))
                }
                other => return Err(error(format!("unexpected frame from the server: {other:?}"))),
            }
        }
    }
}
