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
//!   payload share (reference counted, zero copy).

use bytes::{Buf, BytesMut};

use super::{stamp_of, Inbound, Protocol, ProtocolError};

/// nats-server's default `max_control_line`: the longest line it sends or accepts, without the CRLF.
const CONTROL_LINE_BYTES_MAX: usize = 4096;
/// nats-server refuses to start with a `max_payload` above 64 MiB.
const PAYLOAD_BYTES_MAX: usize = 64 * 1024 * 1024;
/// `MSG <subject> <sid> [reply] <length>`: the most whitespace-separated fields a line we parse has.
const FIELDS_MAX: usize = 5;
/// Enough decimal digits for any `u64`; 19 digits always fit, so parsing them cannot overflow.
const DECIMAL_DIGITS_MAX: usize = 19;
const _: () = assert!(PAYLOAD_BYTES_MAX as u64 <= 9_999_999_999_999_999_999);

const CONNECT: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":false,\"protocol\":1,\"echo\":true,\
\"name\":\"flit-loadgen\",\"lang\":\"rust\",\"version\":\"0.1.0\"}\r\n";
const _: () = assert!(CONNECT.len() <= CONTROL_LINE_BYTES_MAX + 2);

/// One NATS connection's protocol state: only whether the server's `INFO` has arrived.
#[derive(Debug)]
pub struct NatsProtocol {
    info_received: bool,
    /// Whether received messages keep their reply subject and whole payload
    /// (`Inbound::Message`); otherwise only their stamp (`Inbound::Stamp`).
    needs_reply: bool,
}

impl Default for NatsProtocol {
    fn default() -> Self {
        NatsProtocol { info_received: false, needs_reply: true }
    }
}

impl NatsProtocol {
    pub fn new() -> NatsProtocol {
        NatsProtocol::default()
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
fn control_line_length(input: &[u8]) -> Result<Option<usize>, ProtocolError> {
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
fn split_operation(line: &[u8]) -> (&[u8], &[u8]) {
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
fn split_fields(line: &[u8], fields: &mut [(usize, usize); FIELDS_MAX]) -> Option<usize> {
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
fn parse_decimal(digits: &[u8]) -> Option<u64> {
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

fn put_decimal(output: &mut BytesMut, value: u64) {
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
    output.extend_from_slice(&digits[start..]);
}

/// A subject, queue group or reply subject: non-empty, no whitespace or control bytes that would break the line.
fn is_token(token: &[u8]) -> bool {
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
        return Ok(Some(stamp.map_or(Inbound::Error("a payload shorter than its stamp".into()), Inbound::Stamp)));
    }
    let message = input.split_to(message_length).freeze();
    Ok(Some(Inbound::Message {
        subscription_id,
        reply: reply.map(|(start, end)| message.slice(start..end)),
        payload: message.slice(payload_start..payload_end),
    }))
}

/// `-ERR 'Unknown Protocol Operation'` → `Unknown Protocol Operation`.
fn error_text(arguments: &[u8]) -> String {
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

    /// Panics on a subject or reply subject that would break the line (empty, or with whitespace).
    fn publish(&mut self, output: &mut BytesMut, subject: &str, reply: Option<&[u8]>, payload: &[u8]) {
        assert!(is_token(subject.as_bytes()), "invalid NATS subject {subject:?}");
        output.reserve(4 + subject.len() + reply.map_or(0, |reply| reply.len() + 1) + 1 + 20 + 2 + payload.len() + 2);
        output.extend_from_slice(b"PUB ");
        output.extend_from_slice(subject.as_bytes());
        if let Some(reply) = reply {
            assert!(is_token(reply), "invalid NATS reply subject {:?}", String::from_utf8_lossy(reply));
            output.extend_from_slice(b" ");
            output.extend_from_slice(reply);
        }
        output.extend_from_slice(b" ");
        put_decimal(output, payload.len() as u64);
        output.extend_from_slice(b"\r\n");
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
mod tests {
    use bytes::Bytes;

    use super::*;

    /// Parses everything buffered: the events, in order, and what ended it.
    fn parse_all(
        protocol: &mut NatsProtocol,
        input: &mut BytesMut,
        output: &mut BytesMut,
    ) -> (Vec<Inbound>, Result<(), ProtocolError>) {
        let mut events = Vec::new();
        loop {
            match protocol.parse(input, output) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => return (events, Ok(())),
                Err(error) => return (events, Err(error)),
            }
        }
    }

    fn message(subscription_id: u64, reply: Option<&'static [u8]>, payload: &'static [u8]) -> Inbound {
        Inbound::Message { subscription_id, reply: reply.map(Bytes::from_static), payload: Bytes::from_static(payload) }
    }

    fn parse_one(bytes: &[u8]) -> Result<Option<Inbound>, ProtocolError> {
        NatsProtocol::new().parse(&mut BytesMut::from(bytes), &mut BytesMut::new())
    }

    const INFO: &[u8] = b"INFO {\"server_id\":\"NABC\",\"version\":\"2.9.10\",\"max_payload\":1048576,\"proto\":1}\r\n";

    #[test]
    fn handshake_sends_connect_and_is_done_once_info_is_parsed() {
        let mut protocol = NatsProtocol::new();
        let mut output = BytesMut::new();
        protocol.handshake(&mut output);
        assert!(output.starts_with(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":false,"));
        assert!(output.ends_with(b"}\r\n"));
        assert!(!protocol.handshake_done());

        let mut input = BytesMut::from(&INFO[..INFO.len() - 1]);
        assert!(protocol.parse(&mut input, &mut output).unwrap().is_none());
        assert!(!protocol.handshake_done(), "a partial INFO is not the handshake");
        input.extend_from_slice(b"\n");
        assert!(protocol.parse(&mut input, &mut output).unwrap().is_none());
        assert!(protocol.handshake_done());
        assert!(input.is_empty());
    }

    #[test]
    fn subscribe_publish_and_ping_encode_the_text_protocol() {
        let mut protocol = NatsProtocol::new();
        let mut output = BytesMut::new();
        protocol.subscribe(&mut output, "bench.0", None, 7);
        protocol.subscribe(&mut output, "bench.>", Some("workers"), u64::MAX);
        protocol.publish(&mut output, "bench.0", None, b"hello");
        protocol.publish(&mut output, "svc.echo", Some(b"_INBOX.1"), b"");
        protocol.ping(&mut output);
        let expected: &[u8] = b"SUB bench.0 7\r\nSUB bench.> workers 18446744073709551615\r\n\
            PUB bench.0 5\r\nhello\r\nPUB svc.echo _INBOX.1 0\r\n\r\nPING\r\n";
        assert_eq!(output, expected);
    }

    #[test]
    #[should_panic(expected = "invalid NATS subject")]
    fn publish_refuses_a_subject_that_would_break_the_line() {
        NatsProtocol::new().publish(&mut BytesMut::new(), "two words", None, b"x");
    }

    #[test]
    fn message_without_reply() {
        let event = parse_one(b"MSG bench.0 7 5\r\nhello\r\n").unwrap();
        assert_eq!(event, Some(message(7, None, b"hello")));
    }

    #[test]
    fn message_with_reply_and_extra_blanks() {
        let event = parse_one(b"MSG  svc.echo\t42 _INBOX.abc.1   3\r\nabc\r\n").unwrap();
        assert_eq!(event, Some(message(42, Some(b"_INBOX.abc.1"), b"abc")));
    }

    #[test]
    fn empty_payload() {
        assert_eq!(parse_one(b"MSG a 1 0\r\n\r\n").unwrap(), Some(message(1, None, b"")));
    }

    #[test]
    fn binary_payload_containing_crlf_is_taken_by_length() {
        let payload: &[u8] = b"\r\nMSG x 1 2\r\n\0\xff\r\n";
        let mut input = BytesMut::new();
        input.extend_from_slice(format!("MSG bench 3 {}\r\n", payload.len()).as_bytes());
        input.extend_from_slice(payload);
        input.extend_from_slice(b"\r\nPONG\r\n");
        let (events, end) = parse_all(&mut NatsProtocol::new(), &mut input, &mut BytesMut::new());
        end.unwrap();
        assert_eq!(events, vec![message(3, None, b"\r\nMSG x 1 2\r\n\0\xff\r\n"), Inbound::Pong]);
    }

    #[test]
    fn payload_is_a_zero_copy_view_of_the_input() {
        let mut input = BytesMut::with_capacity(64);
        input.extend_from_slice(b"MSG a 1 r 4\r\nabcd\r\n");
        let start = input.as_ptr() as usize;
        let Some(Inbound::Message { reply, payload, .. }) =
            NatsProtocol::new().parse(&mut input, &mut BytesMut::new()).unwrap()
        else {
            panic!("expected a message");
        };
        assert_eq!(reply.unwrap().as_ptr() as usize, start + 8);
        assert_eq!(payload.as_ptr() as usize, start + 13);
    }

    #[test]
    fn every_prefix_of_a_message_is_incomplete_and_consumes_nothing() {
        let whole: &[u8] = b"MSG bench.0 12 _INBOX.9 6\r\n\r\n\0\x01\r\n\r\n";
        for length in 0..whole.len() {
            let mut input = BytesMut::from(&whole[..length]);
            let result = NatsProtocol::new().parse(&mut input, &mut BytesMut::new());
            assert!(matches!(result, Ok(None)), "prefix of {length} bytes: {result:?}");
            assert_eq!(input, &whole[..length], "prefix of {length} bytes was consumed");
        }
        assert_eq!(parse_one(whole).unwrap(), Some(message(12, Some(b"_INBOX.9"), b"\r\n\0\x01\r\n")));
    }

    #[test]
    fn a_stream_split_at_every_position_parses_the_same() {
        let mut stream = INFO.to_vec();
        stream.extend_from_slice(b"+OK\r\nMSG a 1 3\r\nabc\r\nPING\r\nMSG b 2 _INBOX.x 2\r\n\r\n\r\n");
        stream.extend_from_slice(b"-ERR 'Permissions Violation for Publish to \"c\"'\r\nPONG\r\n");
        let expected = vec![
            message(1, None, b"abc"),
            message(2, Some(b"_INBOX.x"), b"\r\n"),
            Inbound::Error("Permissions Violation for Publish to \"c\"".to_owned()),
            Inbound::Pong,
        ];
        for split in 0..=stream.len() {
            let mut protocol = NatsProtocol::new();
            let (mut input, mut output) = (BytesMut::from(&stream[..split]), BytesMut::new());
            let (mut events, end) = parse_all(&mut protocol, &mut input, &mut output);
            end.unwrap();
            input.extend_from_slice(&stream[split..]);
            let (rest, end) = parse_all(&mut protocol, &mut input, &mut output);
            end.unwrap();
            events.extend(rest);
            assert_eq!(events, expected, "split at {split}");
            assert_eq!(output, &b"PONG\r\n"[..], "split at {split}: the server PING is answered exactly once");
            assert!(input.is_empty() && protocol.handshake_done(), "split at {split}");
        }
    }

    #[test]
    fn server_ping_is_answered_with_pong_and_parsing_continues() {
        let mut input = BytesMut::from(&b"PING\r\nPING\r\nMSG a 5 1\r\nx\r\n"[..]);
        let mut output = BytesMut::from(&b"PUB a 0\r\n\r\n"[..]);
        let event = NatsProtocol::new().parse(&mut input, &mut output).unwrap();
        assert_eq!(event, Some(message(5, None, b"x")));
        assert_eq!(output, &b"PUB a 0\r\n\r\nPONG\r\nPONG\r\n"[..], "answers are appended after what was queued");
    }

    #[test]
    fn later_info_and_ok_are_consumed() {
        let mut input = BytesMut::from(&b"+OK\r\nINFO {\"connect_urls\":[]}\r\n+ok\r\npong\r\n"[..]);
        let (events, end) = parse_all(&mut NatsProtocol::new(), &mut input, &mut BytesMut::new());
        end.unwrap();
        assert_eq!(events, vec![Inbound::Pong]);
    }

    #[test]
    fn err_is_an_event_with_its_text() {
        let event = parse_one(b"-ERR 'Authorization Violation'\r\n").unwrap();
        assert_eq!(event, Some(Inbound::Error("Authorization Violation".to_owned())));
        assert_eq!(parse_one(b"-ERR\r\n").unwrap(), Some(Inbound::Error(String::new())));
    }

    #[test]
    fn garbage_and_malformed_lines_are_errors() {
        let broken: &[&[u8]] = &[
            b"HELLO world\r\n",
            b"\r\n",
            b"\n",
            b"PING\n",
            b"PING extra\r\n",
            b"PONGG\r\n",
            b"INFO\r\n",
            b"INFO not-json\r\n",
            b"MSG\r\n",
            b"MSG a 1\r\n",
            b"MSG a b 3\r\nabc\r\n",
            b"MSG a 1 -3\r\n",
            b"MSG a 1 r 3 extra\r\nabc\r\n",
            b"MSG a 1 99999999999999999999\r\n",
            b"MSG a 1 67108865\r\n",
            b"MSG a 1 3\r\nabcXY",
            b"HMSG a 1 12 14\r\nNATS/1.0\r\n\r\nab\r\n",
            b"\xff\xfe\r\n",
        ];
        for &bytes in broken {
            match parse_one(bytes) {
                Err(ProtocolError { target: "nats", .. }) => {}
                other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(bytes)),
            }
        }
    }

    #[test]
    fn control_line_limit_is_nats_max_control_line() {
        let mut line = vec![b'x'; CONTROL_LINE_BYTES_MAX + 1];
        assert!(matches!(parse_one(&line), Ok(None)), "4096 bytes and a CR may still end in LF");
        line.push(b'x');
        assert!(parse_one(&line).is_err(), "no LF within 4098 bytes");

        let mut longest = b"-ERR '".to_vec();
        longest.resize(CONTROL_LINE_BYTES_MAX - 1, b'e');
        longest.extend_from_slice(b"'\r\n");
        assert!(matches!(parse_one(&longest), Ok(Some(Inbound::Error(_)))), "a 4096-byte line is allowed");
        longest.insert(6, b'e');
        assert!(parse_one(&longest).is_err(), "a 4097-byte line is not");
    }

    #[test]
    fn no_input_makes_it_panic_or_loop() {
        let pieces: &[&[u8]] =
            &[b"MSG ", b"a ", b"1 ", b"3", b"\r\n", b"abc", b"PING", b"+OK", b"-ERR ", b"'", b"\t", b"\r", b"\xff"];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut input = BytesMut::new();
            for _ in 0..next() % 12 {
                match next() % 4 {
                    0 => input.extend_from_slice(&[next() as u8]),
                    _ => input.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]),
                }
            }
            let mut protocol = NatsProtocol::new();
            let mut output = BytesMut::new();
            let mut length = input.len();
            while let Ok(Some(_)) = protocol.parse(&mut input, &mut output) {
                assert!(input.len() < length, "an event consumed nothing");
                length = input.len();
            }
        }
    }

    #[test]
    fn without_needs_reply_only_the_stamp_is_kept() {
        let mut protocol = NatsProtocol::new();
        protocol.set_needs_reply(false);
        let payload: Vec<u8> = (0u8..30).collect();
        let mut input = BytesMut::from(&b"MSG loadgen.data 1 30\r\n"[..]);
        input.extend_from_slice(&payload);
        input.extend_from_slice(b"\r\nPONG\r\n");
        let mut output = BytesMut::new();
        let event = protocol.parse(&mut input, &mut output).expect("parses");
        let expected: [u8; 24] = payload[..24].try_into().expect("24 bytes");
        assert_eq!(event, Some(Inbound::Stamp(expected)));
        assert_eq!(protocol.parse(&mut input, &mut output).expect("parses"), Some(Inbound::Pong));
        assert!(input.is_empty());
    }
}
