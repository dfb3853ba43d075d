//! The NATS client text protocol, spoken by hand so that nats-server is measured
//! by the same engine, clock and histograms as flit (there is no `nats bench`
//! here, and a client library would add its own buffering and threads).
//!
//! Only what a load generator needs: `CONNECT`, `SUB`, `PUB` and `PING` out;
//! `INFO`, `MSG`, `PING`, `PONG`, `+OK` and `-ERR` in. Headers are switched off
//! in `CONNECT` (`"headers":false`), so the server never sends `HMSG`; one is
//! treated as a broken stream.
//!
//! # Invariants
//! - `parse` takes whole operations off the front of `input` or nothing: a
//!   partial control line or a partial `MSG` payload returns `Ok(None)` and
//!   leaves `input` as it was. Operations that are not events (`INFO`, `+OK`,
//!   server `PING`) ahead of it are consumed (a `PING` answered exactly once).
//! - A control line holds at most `CONTROL_LINE_BYTES_MAX` bytes (nats-server's
//!   `max_control_line`) and a payload at most `PAYLOAD_BYTES_MAX`; anything
//!   longer, and anything that does not parse, is a `ProtocolError`, never a
//!   wait for bytes that cannot make it right. No input makes it panic.
//! - No allocation per message: numbers are parsed and printed by hand, and a
//!   `MSG` is split off `input` as one `Bytes` that the reply subject and the
//!   payload share (reference counted, zero copy); an error event's text is
//!   built only for an error.
//!
//! # Cost
//! nats-server on one core answers a closed loop's whole window in one burst
//! (see docs/BENCHMARKS.md), so the load generator's time per message is on
//! the critical path of every NATS round: whatever it spends, NATS is
//! charged. Like the flit protocol (which reuses its Publish meta), this one
//! keeps its per-message work small: the `PUB` line is built once per
//! (subject, reply, length) and reused, and a `MSG` line is recognised by
//! its first four bytes before any general parsing.

use bytes::{Buf, BytesMut};

use super::{stamp_of, Inbound, Protocol, ProtocolError};

/// nats-server's default `max_control_line`: the longest line it sends or accepts, without the CRLF.
const CONTROL_LINE_BYTES_MAX: usize = 4096;
/// nats-server refuses to start with a `max_payload` above 64 MiB.
const PAYLOAD_BYTES_MAX: usize = 64 * 1024 * 1024;
/// `MSG <subject> <sid> [reply] <length>`: the most whitespace-separated fields a line we parse has.
pub(crate) const FIELDS_MAX: usize = 5;
/// Enough decimal digits for any `u64`; 19 digits always fit, so parsing them cannot overflow.
const DECIMAL_DIGITS_MAX: usize = 19;
const _: () = assert!(PAYLOAD_BYTES_MAX as u64 <= 9_999_999_999_999_999_999);

const CONNECT: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":false,\"protocol\":1,\"echo\":true,\
\"name\":\"flit-loadgen\",\"lang\":\"rust\",\"version\":\"0.1.0\"}\r\n";
const _: () = assert!(CONNECT.len() <= CONTROL_LINE_BYTES_MAX + 2);

/// One NATS connection's protocol state: whether the server's `INFO` has
/// arrived, and the last `PUB` line built.
#[derive(Debug)]
pub struct NatsProtocol {
    info_received: bool,
    /// Whether received messages keep their reply subject and whole payload
    /// (`Inbound::Message`); otherwise only their stamp (`Inbound::Stamp`).
    needs_reply: bool,
    /// `PUB <subject> [reply] <length>\r\n` for the last publish, and what it was built for.
    cached_line: Vec<u8>,
    cached_subject: Vec<u8>,
    cached_reply: Option<Vec<u8>>,
    cached_payload_bytes: usize,
}

impl Default for NatsProtocol {
    fn default() -> Self {
        NatsProtocol {
            info_received: false,
            needs_reply: true,
            cached_line: Vec::new(),
            cached_subject: Vec::new(),
            cached_reply: None,
            cached_payload_bytes: 0,
        }
    }
}

impl NatsProtocol {
    pub fn new() -> NatsProtocol {
        NatsProtocol::default()
    }
}

impl NatsProtocol {
    /// Builds `PUB <subject> [reply] <payload_bytes>\r\n` into the cache.
    fn cache_publish_line(&mut self, subject: &str, reply: Option<&[u8]>, payload_bytes: usize) {
        assert!(is_token(subject.as_bytes()), "invalid NATS subject {subject:?}");
        let line = &mut self.cached_line;
        line.clear();
        line.extend_from_slice(b"PUB ");
        line.extend_from_slice(subject.as_bytes());
        if let Some(reply) = reply {
            assert!(is_token(reply), "invalid NATS reply subject {:?}", String::from_utf8_lossy(reply));
            line.push(b' ');
            line.extend_from_slice(reply);
        }
        line.push(b' ');
        put_decimal(line, payload_bytes as u64);
        line.extend_from_slice(b"\r\n");
        self.cached_subject.clear();
        self.cached_subject.extend_from_slice(subject.as_bytes());
        self.cached_reply = reply.map(<[u8]>::to_vec);
        self.cached_payload_bytes = payload_bytes;
    }
}

fn error(message: impl Into<String>) -> ProtocolError {
    ProtocolError { target: "nats", message: message.into() }
}

/// The operations a server sends, by the first word of the control line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    Message,
    HeaderMessage,
    Ping,
    Pong,
    Ok,
    Error,
    Info,
}

impl Operation {
    /// Operation names are case-insensitive in NATS (the server sends upper case).
    fn from_name(name: &[u8]) -> Option<Operation> {
        const NAMES: [(&[u8], Operation); 7] = [
            (b"MSG", Operation::Message),
            (b"PING", Operation::Ping),
            (b"PONG", Operation::Pong),
            (b"+OK", Operation::Ok),
            (b"INFO", Operation::Info),
            (b"-ERR", Operation::Error),
            (b"HMSG", Operation::HeaderMessage),
        ];
        NAMES.iter().find(|(candidate, _)| candidate.eq_ignore_ascii_case(name)).map(|&(_, operation)| operation)
    }
}

fn is_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// The length of the control line at the front of `input`, without its CRLF;
/// `None` while no whole line is buffered.
pub(crate) fn control_line_length(input: &[u8]) -> Result<Option<usize>, ProtocolError> {
    // A line of the largest allowed length ends with its LF at this index.
    let window = &input[..input.len().min(CONTROL_LINE_BYTES_MAX + 2)];
    match window.iter().position(|&byte| byte == b'\n') {
        Some(0) => Err(error("empty control line (LF without CR)")),
        Some(line_feed) if window[line_feed - 1] != b'\r' => Err(error("control line ends with LF, not CRLF")),
        Some(line_feed) => Ok(Some(line_feed - 1)),
        None if window.len() == CONTROL_LINE_BYTES_MAX + 2 => {
            Err(error(format!("control line longer than {CONTROL_LINE_BYTES_MAX} bytes")))
        }
        None => Ok(None),
    }
}

/// Splits `line` at its first blank: the operation name and its arguments with leading blanks removed.
pub(crate) fn split_operation(line: &[u8]) -> (&[u8], &[u8]) {
    let name_end = line.iter().position(|&byte| is_blank(byte)).unwrap_or(line.len());
    let (name, rest) = line.split_at(name_end);
    let arguments_start = rest.iter().position(|&byte| !is_blank(byte)).unwrap_or(rest.len());
    (name, &rest[arguments_start..])
}

fn trim_blanks(mut text: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = text {
        if !is_blank(*first) {
            break;
        }
        text = rest;
    }
    while let [rest @ .., last] = text {
        if !is_blank(*last) {
            break;
        }
        text = rest;
    }
    text
}

/// The `(start, end)` ranges of the blank-separated fields of `line`; `None` if there are more than `FIELDS_MAX`.
pub(crate) fn split_fields(line: &[u8], fields: &mut [(usize, usize); FIELDS_MAX]) -> Option<usize> {
    let mut count = 0;
    let mut position = 0;
    while position < line.len() {
        if is_blank(line[position]) {
            position += 1;
            continue;
        }
        let start = position;
        while position < line.len() && !is_blank(line[position]) {
            position += 1;
        }
        if count == FIELDS_MAX {
            return None;
        }
        fields[count] = (start, position);
        count += 1;
    }
    Some(count)
}

/// A non-negative decimal number of at most `DECIMAL_DIGITS_MAX` digits (no sign, no blanks).
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > DECIMAL_DIGITS_MAX {
        return None;
    }
    let mut value: u64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(digit - b'0');
    }
    Some(value)
}

pub(crate) fn put_decimal(output: &mut impl bytes::BufMut, value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    output.put_slice(&digits[start..]);
}

/// A subject, queue group or reply subject: non-empty, no whitespace or control bytes that would break the line.
pub(crate) fn is_token(token: &[u8]) -> bool {
    !token.is_empty() && token.iter().all(|&byte| byte > b' ' && byte != 0x7f)
}

/// Takes one whole `MSG` (control line of `line_length` bytes, CRLF, payload, CRLF) off `input`, or nothing.
///
/// Without `needs_reply`, only the payload's stamp is kept (`Inbound::Stamp`),
/// exactly as the flit protocol does, so both are measured at the same cost.
fn take_message(input: &mut BytesMut, line_length: usize, needs_reply: bool) -> Result<Option<Inbound>, ProtocolError> {
    let line = &input[..line_length];
    let mut fields = [(0, 0); FIELDS_MAX];
    let unparsable = || error(format!("unparsable MSG line: {:?}", String::from_utf8_lossy(line)));
    let count = split_fields(line, &mut fields).ok_or_else(unparsable)?;
    // fields[0] is "MSG" and fields[1] the subject, which the engine does not need: the sid says which subscription.
    let (sid, reply, length) = match count {
        4 => (fields[2], None, fields[3]),
        5 => (fields[2], Some(fields[3]), fields[4]),
        _ => return Err(unparsable()),
    };
    let field = |(start, end): (usize, usize)| &line[start..end];
    let subscription_id = parse_decimal(field(sid)).ok_or_else(unparsable)?;
    let payload_length = parse_decimal(field(length)).ok_or_else(unparsable)?;
    if payload_length > PAYLOAD_BYTES_MAX as u64 {
        return Err(error(format!("MSG payload of {payload_length} bytes is over {PAYLOAD_BYTES_MAX}")));
    }
    let payload_start = line_length + 2;
    let payload_end = payload_start + payload_length as usize;
    let message_length = payload_end + 2;
    if input.len() < message_length {
        return Ok(None);
    }
    if &input[payload_end..message_length] != b"\r\n" {
        return Err(error("MSG payload is not followed by CRLF"));
    }
    if !needs_reply {
        let stamp = stamp_of(&input[payload_start..payload_end]);
        input.advance(message_length);
        // Lazily: an eager `map_or` built (and dropped) this String for every message.
        return Ok(Some(
            stamp.map_or_else(|| Inbound::Error("a payload shorter than its stamp".into()), Inbound::Stamp),
        ));
    }
    let message = input.split_to(message_length).freeze();
    Ok(Some(Inbound::Message {
        subscription_id,
        reply: reply.map(|(start, end)| message.slice(start..end)),
        payload: message.slice(payload_start..payload_end),
    }))
}

/// `-ERR 'Unknown Protocol Operation'` → `Unknown Protocol Operation`.
pub(crate) fn error_text(arguments: &[u8]) -> String {
    let text = trim_blanks(arguments);
    let text = match text {
        [b'\'', inner @ .., b'\''] => inner,
        _ => text,
    };
    String::from_utf8_lossy(text).into_owned()
}

impl Protocol for NatsProtocol {
    fn handshake(&mut self, output: &mut BytesMut) {
        output.extend_from_slice(CONNECT);
    }

    /// True once the server's `INFO` has been parsed. With `"verbose":false` the
    /// server does not acknowledge `CONNECT`; a refused one (authorization) shows
    /// up later as an `-ERR`, and the engine's ping barrier catches that.
    fn handshake_done(&self) -> bool {
        self.info_received
    }

    /// Panics on a subject or queue group that would break the line (empty, or with whitespace).
    fn subscribe(&mut self, output: &mut BytesMut, subject: &str, queue: Option<&str>, subscription_id: u64) {
        assert!(is_token(subject.as_bytes()), "invalid NATS subject {subject:?}");
        output.reserve(4 + subject.len() + queue.map_or(0, |queue| queue.len() + 1) + 1 + 20 + 2);
        output.extend_from_slice(b"SUB ");
        output.extend_from_slice(subject.as_bytes());
        if let Some(queue) = queue {
            assert!(is_token(queue.as_bytes()), "invalid NATS queue group {queue:?}");
            output.extend_from_slice(b" ");
            output.extend_from_slice(queue.as_bytes());
        }
        output.extend_from_slice(b" ");
        put_decimal(output, subscription_id);
        output.extend_from_slice(b"\r\n");
    }

    fn unsubscribe(&mut self, output: &mut BytesMut, subscription_id: u64) {
        output.extend_from_slice(b"UNSUB ");
        put_decimal(output, subscription_id);
        output.extend_from_slice(b"\r\n");
    }

    /// Panics on a subject or reply subject that would break the line (empty,
    /// or with whitespace). The line is built (and checked) once per
    /// (subject, reply, length); a repeat is three copies: line, payload, CRLF.
    fn publish(&mut self, output: &mut BytesMut, subject: &str, reply: Option<&[u8]>, payload: &[u8]) {
        let cached = !self.cached_line.is_empty()
            && self.cached_payload_bytes == payload.len()
            && self.cached_subject == subject.as_bytes()
            && self.cached_reply.as_deref() == reply;
        if !cached {
            self.cache_publish_line(subject, reply, payload.len());
        }
        output.reserve(self.cached_line.len() + payload.len() + 2);
        output.extend_from_slice(&self.cached_line);
        output.extend_from_slice(payload);
        output.extend_from_slice(b"\r\n");
    }

    fn set_needs_reply(&mut self, needs_reply: bool) {
        self.needs_reply = needs_reply;
    }

    fn ping(&mut self, output: &mut BytesMut) {
        output.extend_from_slice(b"PING\r\n");
    }

    fn parse(&mut self, input: &mut BytesMut, output: &mut BytesMut) -> Result<Option<Inbound>, ProtocolError> {
        loop {
            let Some(line_length) = control_line_length(input)? else {
                return Ok(None);
            };
            let line = &input[..line_length];
            // The server sends operation names in upper case: almost every line is this one.
            if line.starts_with(b"MSG ") {
                return take_message(input, line_length, self.needs_reply);
            }
            let (name, arguments) = split_operation(line);
            let Some(operation) = Operation::from_name(name) else {
                return Err(error(format!("unknown operation in line {:?}", String::from_utf8_lossy(line))));
            };
            let no_arguments = trim_blanks(arguments).is_empty();
            let event = match operation {
                Operation::Message => return take_message(input, line_length, self.needs_reply),
                Operation::HeaderMessage => return Err(error("HMSG received, but CONNECT switched headers off")),
                Operation::Ping if no_arguments => {
                    output.extend_from_slice(b"PONG\r\n");
                    None
                }
                Operation::Pong if no_arguments => Some(Inbound::Pong),
                Operation::Ok if no_arguments => None,
                Operation::Info if arguments.first() == Some(&b'{') => {
                    self.info_received = true;
                    None
                }
                Operation::Error => Some(Inbound::Error(error_text(arguments))),
                _ => return Err(error(format!("unparsable line {:?}", String::from_utf8_lossy(line)))),
            };
            input.advance(line_length + 2);
            if event.is_some() {
                return Ok(event);
            }
        }
    }
}

#[cfg(test)]
#[path = "nats_tests.rs"]
mod tests;
