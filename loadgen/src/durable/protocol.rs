//! Acknowledged publishing in the two protocols: a flit Publish with a
//! non-zero tag answered by a PublishAck with the same tag, and a NATS `PUB`
//! with a reply inbox answered by JetStream with a `MSG` on that inbox whose
//! body is `{"stream":..,"seq":..}` (or `{"error":..}` when refused).
//!
//! Both number their publishes (the id is the flit tag, or the last token of
//! the NATS inbox subject), so an acknowledgement names the publish it
//! answers whatever order acknowledgements come in.
//!
//! `NatsReader` is also the small blocking-free NATS reader the setup and
//! replay code use: it takes one whole operation off a buffer, or nothing.

use bytes::{Buf, Bytes, BytesMut};
use flit_wire::stream::{decode_stream, StreamFrame};
use flit_wire::{check, decode, parse_header, Check, Encoder, Frame, Hello, Limits, Op, PROTOCOL_VERSION};

use crate::protocol::nats::{
    control_line_length, error_text, parse_decimal, put_decimal, split_fields, split_operation, FIELDS_MAX,
};
use crate::protocol::ProtocolError;

/// What a publisher's connection received that the run cares about.
#[derive(Debug, PartialEq, Eq)]
pub enum AckEvent {
    /// The handshake is over (flit Welcome, NATS `PONG` after `SUB`).
    Ready,
    /// The publish with this id is stored.
    Stored(u64),
    /// The publish with this id was refused.
    Refused(u64, String),
}

/// One publisher connection's protocol.
pub trait AckProtocol: Send {
    /// Bytes sent right after connecting; the run waits for `AckEvent::Ready`.
    fn handshake(&mut self, output: &mut BytesMut);
    /// One acknowledged publish numbered `id` (>= 1).
    fn publish(&mut self, output: &mut BytesMut, id: u64, payload: &[u8]);
    /// The next event off the front of `input`; `Ok(None)` until one is whole.
    fn parse(&mut self, input: &mut BytesMut, output: &mut BytesMut) -> Result<Option<AckEvent>, ProtocolError>;
}

fn flit_error(message: impl Into<String>) -> ProtocolError {
    ProtocolError { target: "flit", message: message.into() }
}

fn nats_error(message: impl Into<String>) -> ProtocolError {
    ProtocolError { target: "nats", message: message.into() }
}

/// The flit Hello of protocol version 2 (the version with streams).
pub fn flit_hello(encoder: &mut Encoder, output: &mut BytesMut, name: &str) {
    let hello = Hello {
        version_min: PROTOCOL_VERSION,
        version_max: PROTOCOL_VERSION,
        client_name: Some(name.to_owned()),
        auth_token: None,
        ack_mode: false,
    };
    encoder.hello(output, &hello).expect("a Hello always encodes");
}

/// flit: the Publish meta is built once; each frame only carries its id.
pub struct FlitAcks {
    encoder: Encoder,
    limits: Limits,
    meta: Vec<u8>,
}

impl FlitAcks {
    pub fn new(subject: &str) -> FlitAcks {
        let mut encoder = Encoder::default();
        let meta = encoder.publish_meta(subject.as_bytes(), None, None).expect("a valid subject").to_vec();
        FlitAcks { encoder, limits: Limits::default(), meta }
    }
}

impl AckProtocol for FlitAcks {
    fn handshake(&mut self, output: &mut BytesMut) {
        flit_hello(&mut self.encoder, output, "flit-loadgen-durable");
    }

    fn publish(&mut self, output: &mut BytesMut, id: u64, payload: &[u8]) {
        assert!(id != 0, "tag 0 asks for no acknowledgement");
        Encoder::publish_with_meta_and_ack_id(output, id, &self.meta, payload).expect("meta and payload fit a frame");
    }

    fn parse(&mut self, input: &mut BytesMut, _output: &mut BytesMut) -> Result<Option<AckEvent>, ProtocolError> {
        loop {
            let length = match check(input, self.limits.frame_bytes_max()) {
                Check::Incomplete => return Ok(None),
                Check::Invalid(invalid) => return Err(flit_error(invalid.to_string())),
                Check::Complete(length) => length,
            };
            let header = parse_header(input).map_err(|e| flit_error(e.to_string()))?;
            let frame = input.split_to(length).freeze();
            if header.op == Op::PublishAck {
                let decoded = decode_stream(frame, &self.limits).map_err(|e| flit_error(e.to_string()))?;
                let StreamFrame::PublishAck(ack) = decoded else {
                    return Err(flit_error("PublishAck op, other frame"));
                };
                return Ok(Some(if ack.code == 0 {
                    AckEvent::Stored(ack.ack_id)
                } else {
                    AckEvent::Refused(ack.ack_id, format!("code {}: {}", ack.code, ack.message))
                }));
            }
            match decode(frame, &self.limits).map_err(|e| flit_error(e.to_string()))? {
                Frame::Welcome(welcome) => {
                    self.limits.payload_bytes_max = welcome.payload_bytes_max as usize;
                    return Ok(Some(AckEvent::Ready));
                }
                Frame::Pong | Frame::Ok | Frame::Draining { .. } => {}
                Frame::Error(refused) => {
                    return Err(flit_error(format!("error {}: {}", refused.code, refused.message)));
                }
                other => return Err(flit_error(format!("unexpected frame: {other:?}"))),
            }
        }
    }
}

/// A NATS operation the durable code reacts to.
#[derive(Debug, PartialEq, Eq)]
pub enum NatsEvent {
    Message { subject: Bytes, subscription_id: u64, payload: Bytes },
    Pong,
}

/// Takes whole NATS operations off a buffer; answers `PING` into `output`.
#[derive(Default)]
pub struct NatsReader;

impl NatsReader {
    pub fn next(&mut self, input: &mut BytesMut, output: &mut BytesMut) -> Result<Option<NatsEvent>, ProtocolError> {
        loop {
            let Some(line_length) = control_line_length(input)? else { return Ok(None) };
            let (name, arguments) = split_operation(&input[..line_length]);
            match name.to_ascii_uppercase().as_slice() {
                b"MSG" => return take_message(input, line_length),
                b"PING" => output.extend_from_slice(b"PONG\r\n"),
                b"PONG" => {
                    input.advance(line_length + 2);
                    return Ok(Some(NatsEvent::Pong));
                }
                b"INFO" | b"+OK" => {}
                b"-ERR" => return Err(nats_error(error_text(arguments))),
                other => return Err(nats_error(format!("unexpected operation {:?}", String::from_utf8_lossy(other)))),
            }
            input.advance(line_length + 2);
        }
    }
}

fn take_message(input: &mut BytesMut, line_length: usize) -> Result<Option<NatsEvent>, ProtocolError> {
    let line = &input[..line_length];
    let mut fields = [(0, 0); FIELDS_MAX];
    let unparsable = || nats_error(format!("unparsable MSG line: {:?}", String::from_utf8_lossy(line)));
    let count = split_fields(line, &mut fields).ok_or_else(unparsable)?;
    let length = match count {
        4 => fields[3],
        5 => fields[4],
        _ => return Err(unparsable()),
    };
    let field = |(start, end): (usize, usize)| &line[start..end];
    let subscription_id = parse_decimal(field(fields[2])).ok_or_else(unparsable)?;
    let payload_length = parse_decimal(field(length)).ok_or_else(unparsable)? as usize;
    let payload_start = line_length + 2;
    let message_length = payload_start + payload_length + 2;
    if input.len() < message_length {
        return Ok(None);
    }
    let subject = fields[1];
    let message = input.split_to(message_length).freeze();
    Ok(Some(NatsEvent::Message {
        subject: message.slice(subject.0..subject.1),
        subscription_id,
        payload: message.slice(payload_start..payload_start + payload_length),
    }))
}

/// JetStream publishes: `PUB <subject> <inbox>.<id> <length>`; the ack is a `MSG` on `<inbox>.<id>`.
pub struct NatsAcks {
    subject: String,
    inbox: String,
    reader: NatsReader,
    ready: bool,
}

impl NatsAcks {
    /// `inbox` must be unique to the connection (e.g. `_INBOX.durable.3`).
    pub fn new(subject: &str, inbox: String) -> NatsAcks {
        NatsAcks { subject: subject.to_owned(), inbox, reader: NatsReader, ready: false }
    }
}

/// The CONNECT line of the durable code (no headers, no echo needed).
pub const NATS_CONNECT: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":false,\"protocol\":1,\
\"echo\":false,\"name\":\"flit-loadgen-durable\",\"lang\":\"rust\",\"version\":\"0.1.0\"}\r\n";

/// Whether a JetStream API answer or publish ack is a refusal.
pub fn jetstream_refused(body: &[u8]) -> bool {
    body.windows(8).any(|window| window == b"\"error\":")
}

impl AckProtocol for NatsAcks {
    fn handshake(&mut self, output: &mut BytesMut) {
        output.extend_from_slice(NATS_CONNECT);
        output.extend_from_slice(format!("SUB {}.* 1\r\nPING\r\n", self.inbox).as_bytes());
    }

    fn publish(&mut self, output: &mut BytesMut, id: u64, payload: &[u8]) {
        output.extend_from_slice(b"PUB ");
        output.extend_from_slice(self.subject.as_bytes());
        output.extend_from_slice(b" ");
        output.extend_from_slice(self.inbox.as_bytes());
        output.extend_from_slice(b".");
        put_decimal(output, id);
        output.extend_from_slice(b" ");
        put_decimal(output, payload.len() as u64);
        output.extend_from_slice(b"\r\n");
        output.extend_from_slice(payload);
        output.extend_from_slice(b"\r\n");
    }

    fn parse(&mut self, input: &mut BytesMut, output: &mut BytesMut) -> Result<Option<AckEvent>, ProtocolError> {
        loop {
            match self.reader.next(input, output)? {
                None => return Ok(None),
                Some(NatsEvent::Pong) if !self.ready => {
                    self.ready = true;
                    return Ok(Some(AckEvent::Ready));
                }
                Some(NatsEvent::Pong) => {}
                Some(NatsEvent::Message { subject, payload, .. }) => {
                    let id_start = subject.iter().rposition(|&byte| byte == b'.').map_or(0, |dot| dot + 1);
                    let id = parse_decimal(&subject[id_start..])
                        .ok_or_else(|| nats_error(format!("ack on {:?}", String::from_utf8_lossy(&subject))))?;
                    return Ok(Some(if jetstream_refused(&payload) {
                        AckEvent::Refused(id, String::from_utf8_lossy(&payload).into_owned())
                    } else {
                        AckEvent::Stored(id)
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_acks_name_their_publish_and_refusals_are_seen() {
        let mut acks = NatsAcks::new("durable.data", "_INBOX.d.0".into());
        let mut output = BytesMut::new();
        acks.publish(&mut output, 42, b"hello");
        assert_eq!(&output[..], b"PUB durable.data _INBOX.d.0.42 5\r\nhello\r\n");
        let mut input = BytesMut::from(
            &b"INFO {}\r\nPONG\r\nMSG _INBOX.d.0.42 1 28\r\n{\"stream\":\"D\",\"seq\":1000000}\r\n\
MSG _INBOX.d.0.43 1 35\r\n{\"error\":{\"code\":503,\"err_code\":1}}\r\nMSG _INBOX.d.0.44 1 5\r\n{\"st"[..],
        );
        let mut answers = BytesMut::new();
        assert_eq!(acks.parse(&mut input, &mut answers).expect("ready"), Some(AckEvent::Ready));
        assert_eq!(acks.parse(&mut input, &mut answers).expect("stored"), Some(AckEvent::Stored(42)));
        assert!(matches!(acks.parse(&mut input, &mut answers).expect("refused"), Some(AckEvent::Refused(43, _))));
        assert_eq!(acks.parse(&mut input, &mut answers).expect("partial"), None);
        assert!(input.starts_with(b"MSG _INBOX.d.0.44"), "a partial MSG stays buffered");
    }

    #[test]
    fn flit_acks_round_trip_through_the_wire_encoder() {
        use flit_wire::stream::{PublishAck, StreamCode};
        let mut acks = FlitAcks::new("durable.data");
        let mut output = BytesMut::new();
        acks.publish(&mut output, 7, &[0u8; 64]);
        let header = parse_header(&output).expect("a frame");
        assert_eq!((header.op, header.tag), (Op::Publish, 7));
        let mut encoder = Encoder::default();
        let mut input = BytesMut::new();
        encoder.publish_ack(&mut input, &PublishAck::stored(7, "D", 1, false)).expect("ack");
        encoder.publish_ack(&mut input, &PublishAck::refused(8, StreamCode::DiskFull, "full")).expect("refusal");
        let mut answers = BytesMut::new();
        assert_eq!(acks.parse(&mut input, &mut answers).expect("stored"), Some(AckEvent::Stored(7)));
        assert!(matches!(acks.parse(&mut input, &mut answers).expect("refused"), Some(AckEvent::Refused(8, _))));
        assert_eq!(acks.parse(&mut input, &mut answers).expect("empty"), None);
    }
}
