//! Creating the stream a durable run publishes to, over one blocking
//! connection with a read timeout: a flit StreamRequest Add, or a JetStream
//! `$JS.API.STREAM.CREATE.<name>` request (file storage, one replica).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use flit_wire::stream::{
    decode_stream, Durability, StreamCode, StreamCommand, StreamConfigSpec, StreamFrame, StreamReply, StreamRequest,
};
use flit_wire::{check, decode, Check, Encoder, Frame, Limits, Op};

use super::protocol::{flit_hello, jetstream_refused, NatsEvent, NatsReader, NATS_CONNECT};
use crate::target::TargetKind;

/// How long one answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A blocking connection with a buffer and a bounded wait for each read.
pub struct Blocking {
    pub stream: TcpStream,
    pub input: BytesMut,
}

impl Blocking {
    pub fn connect(address: SocketAddr) -> Result<Blocking> {
        let stream = TcpStream::connect(address).with_context(|| format!("connect to {address}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        Ok(Blocking { stream, input: BytesMut::with_capacity(1 << 20) })
    }

    /// Appends what one read brings; an end of stream or a timeout is an error.
    pub fn fill(&mut self) -> Result<()> {
        let start = self.input.len();
        self.input.resize(start + (1 << 20), 0);
        let read = self.stream.read(&mut self.input[start..]);
        let count = match read {
            Ok(0) => 0,
            Ok(count) => count,
            Err(error) => {
                self.input.truncate(start);
                return Err(error).context("waiting for the server");
            }
        };
        self.input.truncate(start + count);
        if count == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
    }

    /// The next whole flit frame (its op and bytes).
    pub fn flit_frame(&mut self, limits: &Limits) -> Result<(Op, bytes::Bytes)> {
        loop {
            match check(&self.input, limits.frame_bytes_max()) {
                Check::Complete(length) => {
                    let frame = self.input.split_to(length).freeze();
                    let header = flit_wire::parse_header(&frame)?;
                    return Ok((header.op, frame));
                }
                Check::Invalid(invalid) => bail!("invalid frame from the server: {invalid}"),
                Check::Incomplete => self.fill()?,
            }
        }
    }

    /// Sends Hello and waits for Welcome.
    pub fn flit_handshake(&mut self, encoder: &mut Encoder, limits: &mut Limits) -> Result<()> {
        let mut output = BytesMut::new();
        flit_hello(encoder, &mut output, "flit-loadgen-setup");
        self.stream.write_all(&output)?;
        let (_, frame) = self.flit_frame(limits)?;
        match decode(frame, limits)? {
            Frame::Welcome(welcome) => {
                limits.payload_bytes_max = welcome.payload_bytes_max as usize;
                Ok(())
            }
            other => bail!("expected Welcome, got {other:?}"),
        }
    }

    /// Sends a StreamRequest and returns its StreamReply.
    pub fn flit_request(
        &mut self,
        encoder: &mut Encoder,
        limits: &Limits,
        request: StreamRequest,
    ) -> Result<StreamReply> {
        let mut output = BytesMut::new();
        let request_id = request.request_id;
        encoder.stream_request(&mut output, &request)?;
        self.stream.write_all(&output)?;
        loop {
            let (op, frame) = self.flit_frame(limits)?;
            if op == Op::StreamReply {
                if let StreamFrame::Reply(reply) = decode_stream(frame, limits)? {
                    if reply.request_id == request_id {
                        return Ok(reply);
                    }
                }
            } else if op == Op::Error {
                bail!("refused: {:?}", decode(frame, limits)?);
            }
        }
    }

    /// The next NATS event (`PING`s are answered).
    pub fn nats_event(&mut self, reader: &mut NatsReader) -> Result<NatsEvent> {
        loop {
            let mut answers = BytesMut::new();
            let event = reader.next(&mut self.input, &mut answers)?;
            self.stream.write_all(&answers)?;
            match event {
                Some(event) => return Ok(event),
                None => self.fill()?,
            }
        }
    }

    /// Sends a JetStream API request and returns the answer's body.
    pub fn nats_request(&mut self, reader: &mut NatsReader, subject: &str, body: &str) -> Result<bytes::Bytes> {
        let inbox = "_INBOX.setup.answer";
        let request = format!("SUB {inbox} 9000\r\nPUB {subject} {inbox} {}\r\n{body}\r\n", body.len());
        self.stream.write_all(request.as_bytes())?;
        loop {
            if let NatsEvent::Message { subscription_id: 9000, payload, .. } = self.nats_event(reader)? {
                self.stream.write_all(b"UNSUB 9000\r\n")?;
                return Ok(payload);
            }
        }
    }

    /// Sends CONNECT and waits for the answer to a PING.
    pub fn nats_handshake(&mut self, reader: &mut NatsReader) -> Result<()> {
        self.stream.write_all(NATS_CONNECT)?;
        self.stream.write_all(b"PING\r\n")?;
        while self.nats_event(reader)? != NatsEvent::Pong {}
        Ok(())
    }
}

/// `always`, `interval=10ms` or `memory`.
pub fn parse_durability(text: &str) -> Result<Durability> {
    match text {
        "always" => Ok(Durability::Always),
        "memory" => Ok(Durability::Memory),
        _ => {
            let Some(interval) = text.strip_prefix("interval=") else {
                bail!("durability `{text}`: use always, interval=10ms or memory");
            };
            let milliseconds = crate::cli::parse_duration(interval).map_err(anyhow::Error::msg)?.as_millis();
            if milliseconds == 0 || milliseconds > u128::from(u32::MAX) {
                bail!("durability `{text}`: the interval must be 1 ms or more");
            }
            Ok(Durability::Interval { sync_interval_ms: milliseconds as u32 })
        }
    }
}

/// Creates stream `name` capturing `subject` (an existing identical one is fine).
pub fn create_stream(address: SocketAddr, kind: TargetKind, name: &str, subject: &str, durability: &str) -> Result<()> {
    let mut connection = Blocking::connect(address)?;
    match kind {
        TargetKind::Flit => {
            let (mut encoder, mut limits) = (Encoder::default(), Limits::default());
            connection.flit_handshake(&mut encoder, &mut limits)?;
            let config = StreamConfigSpec {
                durability: parse_durability(durability)?,
                ..StreamConfigSpec::new(name, [subject])
            };
            let request = StreamRequest { request_id: 1, command: StreamCommand::Add(config) };
            let reply = connection.flit_request(&mut encoder, &limits, request)?;
            if reply.code != 0 && reply.code != StreamCode::AlreadyExists.as_u16() {
                bail!("stream add {name}: code {}: {}", reply.code, reply.message);
            }
        }
        TargetKind::Nats => {
            let mut reader = NatsReader;
            connection.nats_handshake(&mut reader)?;
            let body =
                format!("{{\"name\":\"{name}\",\"subjects\":[\"{subject}\"],\"storage\":\"file\",\"num_replicas\":1}}");
            let answer = connection.nats_request(&mut reader, &format!("$JS.API.STREAM.CREATE.{name}"), &body)?;
            if jetstream_refused(&answer) {
                bail!("JetStream stream create {name}: {}", String::from_utf8_lossy(&answer));
            }
        }
        TargetKind::Echo => bail!("streams need a flit:// or nats:// target"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durabilities() {
        assert_eq!(parse_durability("always").expect("always"), Durability::Always);
        assert_eq!(parse_durability("memory").expect("memory"), Durability::Memory);
        assert_eq!(parse_durability("interval=10ms").expect("interval"), Durability::Interval { sync_interval_ms: 10 });
        assert!(parse_durability("interval=0ms").is_err());
        assert!(parse_durability("sometimes").is_err());
    }
}
