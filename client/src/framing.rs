//! Frames in and out, independent of any runtime.
//!
//! [`FrameWriter`] validates what the caller asks for and encodes it into one
//! growing buffer; the IO layer (a thread or a tokio task) takes the buffered
//! bytes and writes them to the socket, so many small publishes leave in one
//! write. Nothing is encoded unless it passed validation, so a rejected call
//! leaves nothing behind on the wire.
//!
//! [`next_incoming`] is the read side: `check` then `decode` (or, for the
//! stream ops of version 2, `decode_stream`), once per frame, splitting the
//! frame off the read buffer so its payload can be handed out without copying.

use bytes::BytesMut;
use flit_wire::stream::{decode_stream, is_stream_op, Ack, Fetch, StreamFrame, StreamRequest};
use flit_wire::subject::{validate_pattern, validate_publish_subject, validate_queue_group};
use flit_wire::{
    check, decode, Check, Encoder, Frame, Hello, Limits, Op, Unsubscribe, Welcome, WireError, PROTOCOL_VERSION,
    PROTOCOL_VERSION_MIN,
};

use crate::error::ClientError;
use crate::options::Options;

/// Encodes validated frames into a buffer the IO layer drains.
#[derive(Debug)]
pub(crate) struct FrameWriter {
    encoder: Encoder,
    buffer: BytesMut,
    limits: Limits,
}

impl FrameWriter {
    pub(crate) fn new(limits: Limits) -> FrameWriter {
        FrameWriter { encoder: Encoder::default(), buffer: BytesMut::with_capacity(64 * 1024), limits }
    }

    /// Bytes encoded and not yet taken by the IO layer.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Takes every buffered byte, in the order encoded. The caller must write
    /// them out before any bytes taken later, so it holds the socket while it
    /// takes them (see the IO layers).
    pub(crate) fn take(&mut self) -> BytesMut {
        self.buffer.split()
    }

    /// Drops what was encoded after the first `bytes` buffered bytes (the
    /// caller holds the writer lock throughout, so nothing was taken since).
    pub(crate) fn truncate(&mut self, bytes: usize) {
        self.buffer.truncate(bytes);
    }

    pub(crate) fn hello(&mut self, options: &Options) -> Result<(), ClientError> {
        let hello = Hello {
            // Every version this client speaks: a version-1 server still
            // serves everything but streams (see `accept_welcome`).
            version_min: PROTOCOL_VERSION_MIN,
            version_max: PROTOCOL_VERSION,
            client_name: options.name.clone(),
            auth_token: options.auth_token.clone(),
            ack_mode: options.ack_mode,
        };
        self.encoder.hello(&mut self.buffer, &hello).map_err(encode_failed)
    }

    pub(crate) fn publish(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<(), ClientError> {
        check_subject(subject)?;
        if let Some(reply) = reply {
            check_subject(reply)?;
        }
        self.check_payload(payload)?;
        let headers = encoded_headers(headers)?;
        let reply = reply.map(str::as_bytes);
        // Encoding fails only for a meta part above 64 KiB (huge headers); the
        // header block is the part the caller controls, so report it as such.
        self.encoder
            .publish(&mut self.buffer, subject.as_bytes(), reply, headers.as_deref(), payload)
            .map_err(ClientError::InvalidHeaders)
    }

    /// A Publish whose tag is `ack_id` (non-zero): a durable publish, answered
    /// by a PublishAck with the same tag (version 2).
    pub(crate) fn durable_publish(
        &mut self,
        ack_id: u64,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<(), ClientError> {
        debug_assert!(ack_id != 0, "a durable publish has an ack id");
        check_subject(subject)?;
        self.check_payload(payload)?;
        let headers = encoded_headers(headers)?;
        self.encoder
            .publish_with_ack_id(&mut self.buffer, ack_id, subject.as_bytes(), None, headers.as_deref(), payload)
            .map_err(ClientError::InvalidHeaders)
    }

    pub(crate) fn stream_request(&mut self, request: &StreamRequest) -> Result<(), ClientError> {
        self.encoder.stream_request(&mut self.buffer, request).map_err(ClientError::InvalidStreamRequest)
    }

    pub(crate) fn fetch(&mut self, fetch: &Fetch) -> Result<(), ClientError> {
        self.encoder.fetch(&mut self.buffer, fetch).map_err(ClientError::InvalidStreamRequest)
    }

    pub(crate) fn ack(&mut self, ack: &Ack) -> Result<(), ClientError> {
        self.encoder.ack(&mut self.buffer, ack).map_err(ClientError::InvalidStreamRequest)
    }

    fn check_payload(&self, payload: &[u8]) -> Result<(), ClientError> {
        if payload.len() > self.limits.payload_bytes_max {
            return Err(ClientError::PayloadTooLarge {
                payload_bytes: payload.len(),
                limit_bytes: self.limits.payload_bytes_max,
            });
        }
        Ok(())
    }

    pub(crate) fn subscribe(&mut self, pattern: &str, queue: Option<&str>, id: u64) -> Result<(), ClientError> {
        check_pattern(pattern)?;
        if let Some(queue) = queue {
            validate_queue_group(queue.as_bytes())
                .map_err(|reason| ClientError::InvalidQueueGroup { queue: queue.to_owned(), reason })?;
        }
        self.encoder
            .subscribe(&mut self.buffer, pattern.as_bytes(), queue.map(str::as_bytes), id)
            .map_err(encode_failed)
    }

    pub(crate) fn unsubscribe(&mut self, id: u64, after_messages: u64) -> Result<(), ClientError> {
        let unsubscribe = Unsubscribe { subscription_id: id, after_messages };
        self.encoder.unsubscribe(&mut self.buffer, unsubscribe).map_err(encode_failed)
    }

    pub(crate) fn ping(&mut self) {
        Encoder::bare(&mut self.buffer, Op::Ping);
    }

    /// The answer to a server's Ping.
    pub(crate) fn pong(&mut self) {
        Encoder::bare(&mut self.buffer, Op::Pong);
    }
}

/// The header block of a publish, if it has headers.
fn encoded_headers(headers: &[(&str, &str)]) -> Result<Option<bytes::Bytes>, ClientError> {
    match headers {
        [] => Ok(None),
        entries => Ok(Some(flit_wire::encode_headers(entries).map_err(ClientError::InvalidHeaders)?)),
    }
}

/// A frame that passed validation failed to encode: only possible if the
/// wire crate and this one disagree, so it is reported, never panicked on.
fn encode_failed(error: WireError) -> ClientError {
    ClientError::Protocol(format!("encoding failed: {error}"))
}

pub(crate) fn check_subject(subject: &str) -> Result<(), ClientError> {
    validate_publish_subject(subject.as_bytes())
        .map_err(|reason| ClientError::InvalidSubject { subject: subject.to_owned(), reason })
}

pub(crate) fn check_pattern(pattern: &str) -> Result<(), ClientError> {
    validate_pattern(pattern.as_bytes())
        .map_err(|reason| ClientError::InvalidSubject { subject: pattern.to_owned(), reason })
}

/// Splits the next whole frame off the front of `buffer` and decodes it.
/// `Ok(None)`: more bytes are needed. `Err`: the stream can never recover.
pub(crate) fn next_frame(buffer: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, ClientError> {
    match check(buffer, limits.frame_bytes_max()) {
        Check::Incomplete => Ok(None),
        Check::Complete(frame_bytes) => {
            let frame = buffer.split_to(frame_bytes).freeze();
            decode(frame, limits).map(Some).map_err(|error| ClientError::Protocol(error.to_string()))
        }
        Check::Invalid(error) => Err(ClientError::Protocol(error.to_string())),
    }
}

/// A frame from the server: one of version 1's, or a stream frame (version 2).
#[derive(Debug)]
pub(crate) enum Incoming {
    Frame(Frame),
    Stream(StreamFrame),
}

/// [`next_frame`] for every op: stream ops (12 to 17) go through
/// `decode_stream`, which `decode` leaves to its caller.
pub(crate) fn next_incoming(buffer: &mut BytesMut, limits: &Limits) -> Result<Option<Incoming>, ClientError> {
    match check(buffer, limits.frame_bytes_max()) {
        Check::Incomplete => Ok(None),
        Check::Complete(frame_bytes) => {
            let frame = buffer.split_to(frame_bytes).freeze();
            // `check` accepted the header, so its op byte is a known op.
            let stream = Op::from_u8(frame[4]).is_some_and(is_stream_op);
            let decoded = if stream {
                decode_stream(frame, limits).map(Incoming::Stream)
            } else {
                decode(frame, limits).map(Incoming::Frame)
            };
            decoded.map(Some).map_err(|error| ClientError::Protocol(error.to_string()))
        }
        Check::Invalid(error) => Err(ClientError::Protocol(error.to_string())),
    }
}

/// Whether `bytes` start like a TLS record (content type 20 to 23, version
/// 3.x): what a TLS listener answers a plain Hello with (an alert, 21).
fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [20..=23, 3, 0..=4, ..])
}

/// [`next_frame`] for the server's first bytes. A TLS listener answers a
/// plain Hello with a TLS record, which fails as a frame header ("flags byte
/// must be 0"); name the real cause instead.
pub(crate) fn next_handshake_frame(buffer: &mut BytesMut) -> Result<Option<Frame>, ClientError> {
    let tls = looks_like_tls(buffer);
    // The Welcome carries no payload, so the default limits are enough to read it.
    next_frame(buffer, &Limits::default()).map_err(|error| if tls { ClientError::ServerSpeaksTls } else { error })
}

/// The error for a server that closed during the handshake, given what it sent.
pub(crate) fn closed_during_handshake(buffer: &[u8]) -> ClientError {
    if looks_like_tls(buffer) {
        ClientError::ServerSpeaksTls
    } else {
        ClientError::Disconnected
    }
}

/// Turns the first frame the server sends into the handshake's outcome.
pub(crate) fn accept_welcome(frame: Frame) -> Result<Welcome, ClientError> {
    match frame {
        Frame::Welcome(welcome) if (PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION).contains(&welcome.version) => Ok(welcome),
        Frame::Welcome(welcome) => {
            Err(ClientError::UnsupportedVersion { server: welcome.version, client: PROTOCOL_VERSION })
        }
        Frame::Error(error) => {
            Err(ClientError::Server { code: error.code, message: error.message, retry_after_ms: error.retry_after_ms })
        }
        other => Err(ClientError::Protocol(format!("expected Welcome, got {other:?}"))),
    }
}

/// The limits this connection reads with, from the server's Welcome.
pub(crate) fn limits_of(welcome: &Welcome) -> Limits {
    Limits { payload_bytes_max: welcome.payload_bytes_max as usize }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_calls_leave_nothing_in_the_buffer() {
        let mut writer = FrameWriter::new(Limits { payload_bytes_max: 4 });
        assert!(matches!(writer.publish("a.*", None, &[], b""), Err(ClientError::InvalidSubject { .. })));
        assert!(matches!(writer.publish("a", Some("b c"), &[], b""), Err(ClientError::InvalidSubject { .. })));
        assert!(matches!(
            writer.publish("a", None, &[], b"12345"),
            Err(ClientError::PayloadTooLarge { payload_bytes: 5, limit_bytes: 4 })
        ));
        assert!(matches!(writer.subscribe("a.>.b", None, 1), Err(ClientError::InvalidSubject { .. })));
        assert!(matches!(writer.subscribe("a", Some(""), 1), Err(ClientError::InvalidQueueGroup { .. })));
        assert_eq!(writer.buffered_bytes(), 0);
    }

    #[test]
    fn a_tls_record_from_the_server_is_named_as_tls() {
        // What a flit TLS listener sent to a plain client: a decode_error alert.
        let alert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32];
        let mut buffer = BytesMut::from(&alert[..]);
        assert!(matches!(next_handshake_frame(&mut buffer), Err(ClientError::ServerSpeaksTls)));
        assert!(matches!(closed_during_handshake(&alert[..3]), ClientError::ServerSpeaksTls));
        // Any other malformed header stays a protocol violation.
        let mut garbage = BytesMut::from(&[0x10, 0, 0, 0, 3, 1, 0, 0][..]);
        assert!(matches!(next_handshake_frame(&mut garbage), Err(ClientError::Protocol(_))));
        assert!(matches!(closed_during_handshake(b""), ClientError::Disconnected));
    }

    #[test]
    fn encoded_frames_decode_back_in_order() {
        let limits = Limits::default();
        let mut writer = FrameWriter::new(limits);
        writer.publish("orders.eu", Some("_INBOX.x.1"), &[("k", "v")], b"payload").expect("publish");
        writer.subscribe("orders.*", Some("workers"), 9).expect("subscribe");
        writer.ping();
        let mut bytes = writer.take();
        let Some(Frame::Publish(publish)) = next_frame(&mut bytes, &limits).expect("decode") else { panic!() };
        assert_eq!(&publish.subject[..], b"orders.eu");
        assert_eq!(
            flit_wire::decode_headers(&publish.headers.expect("headers")).expect("headers"),
            [("k".to_owned(), "v".to_owned())]
        );
        let Some(Frame::Subscribe(subscribe)) = next_frame(&mut bytes, &limits).expect("decode") else { panic!() };
        assert_eq!(subscribe.subscription_id, 9);
        assert_eq!(next_frame(&mut bytes, &limits).expect("decode"), Some(Frame::Ping));
        assert_eq!(next_frame(&mut bytes, &limits).expect("decode"), None);
    }
}
