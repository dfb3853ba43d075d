//! Client -> server: splitting NATS client ops off a receive buffer.
//!
//! NATS is line based: an op name, blank-separated arguments, `\r\n`; PUB
//! and HPUB are followed by exactly `size` bytes and another `\r\n`.
//! [`Parser::check`] answers "is one whole op buffered, and how long is
//! it?" from the front of a byte slice; [`Parser::parse`] and
//! [`Parser::split_op`] also decode it, slicing subjects, headers and
//! payloads out of the caller's `Bytes` (no copy).
//!
//! The parser keeps no state between calls: what it knows about a partial
//! op it re-reads from the buffer next time. That makes a split anywhere
//! harmless by construction (the same bytes give the same answer however
//! they arrived) and costs at most one re-scan of a control line per
//! receive, which the line limit bounds.
//!
//! Invariants:
//! - Partial input is `Ok(None)`, never an error, unless the bytes already
//!   buffered prove the op wrong (an unknown op name, an over-long line, a
//!   size above `max_payload`, a payload not followed by `\r\n`).
//! - The payload size is checked against `max_payload` from the control
//!   line alone, before any payload byte is waited for; nothing is reserved
//!   or copied for it here.
//! - A line without `\n` is refused once it is longer than
//!   `max_control_line + CONTROL_LINE_OVERHEAD_BYTES`, so an endless line
//!   costs a bounded scan; the arguments alone may hold `max_control_line`
//!   bytes, as nats-server counts them.
//! - No op allocates except CONNECT (its JSON is decoded into owned fields).
//!
//! What is accepted, against nats-server's byte-at-a-time state machine
//! (`server/parser.go`): op names in any case; spaces and tabs between
//! arguments; `\n` alone as a line end (nats-server accepts it too, for
//! telnet users). Stricter: a CR elsewhere than before the LF, arguments
//! after PING/PONG, and an op name glued to its argument (`CONNECT{`) are
//! refused, where nats-server ignores or tolerates them.

use bytes::{Bytes, BytesMut};

use crate::connect::Connect;
use crate::error::ProtocolError;

/// nats-server's default `max_control_line`, in bytes.
pub const MAX_CONTROL_LINE_DEFAULT: usize = 4096;
/// nats-server's default `max_payload`, in bytes (1 MiB).
pub const MAX_PAYLOAD_DEFAULT: usize = 1024 * 1024;
/// Bytes a line may hold besides its arguments: the op name (at most 7,
/// `CONNECT`), the blanks after it and the CR. Only matters for lines that
/// are close to the limit.
pub const CONTROL_LINE_OVERHEAD_BYTES: usize = 16;
/// Most arguments of any client op (HPUB: subject, reply, two sizes).
pub const ARGUMENTS_MAX: usize = 4;
/// Most digits in a size, as nats-server's `parseSize` (999,999,999).
pub const SIZE_DIGITS_MAX: usize = 9;

const _: () = assert!(CONTROL_LINE_OVERHEAD_BYTES > "CONNECT \r".len());
const _: () = assert!(MAX_PAYLOAD_DEFAULT < 10usize.pow(SIZE_DIGITS_MAX as u32));

/// The limits one connection is parsed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest arguments part of a control line, in bytes.
    pub max_control_line: usize,
    /// Largest payload (HPUB: headers and payload) a PUB/HPUB may announce.
    pub max_payload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_control_line: MAX_CONTROL_LINE_DEFAULT, max_payload: MAX_PAYLOAD_DEFAULT }
    }
}

impl Limits {
    /// Longest line before its `\n`, all bytes counted.
    fn line_bytes_max(&self) -> usize {
        self.max_control_line.saturating_add(CONTROL_LINE_OVERHEAD_BYTES)
    }
}

/// One client op. Every `Bytes` is a slice of the buffer it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOp {
    /// `CONNECT {json}`. Boxed: it is once per connection and much larger
    /// than the other ops.
    Connect(Box<Connect>),
    /// `PUB subject [reply] size`, then the payload.
    Pub {
        /// The subject, unchecked (see [`crate::subject`]).
        subject: Bytes,
        /// The reply subject, if any.
        reply: Option<Bytes>,
        /// The payload, without its `\r\n`.
        payload: Bytes,
    },
    /// `HPUB subject [reply] header_size total_size`, then headers and
    /// payload.
    Hpub {
        /// The subject, unchecked.
        subject: Bytes,
        /// The reply subject, if any.
        reply: Option<Bytes>,
        /// The header block, `header_size` bytes, unparsed (see
        /// [`crate::headers`]).
        headers: Bytes,
        /// The rest: `total_size - header_size` bytes.
        payload: Bytes,
    },
    /// `SUB subject [queue] sid`.
    Sub {
        /// The pattern, unchecked.
        subject: Bytes,
        /// The queue group, if any.
        queue: Option<Bytes>,
        /// The client's subscription id: opaque bytes, echoed in MSG.
        sid: Bytes,
    },
    /// `UNSUB sid [max]`.
    Unsub {
        /// The subscription id.
        sid: Bytes,
        /// Unsubscribe after this many more messages (none: now).
        max: Option<u64>,
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
}

/// The op names a client may send, upper case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpName {
    Connect,
    Pub,
    Hpub,
    Sub,
    Unsub,
    Ping,
    Pong,
}

/// Longest op name (`CONNECT`).
const OP_NAME_BYTES_MAX: usize = 7;

const OP_NAMES: [(&[u8], OpName); 7] = [
    (b"CONNECT", OpName::Connect),
    (b"PUB", OpName::Pub),
    (b"HPUB", OpName::Hpub),
    (b"SUB", OpName::Sub),
    (b"UNSUB", OpName::Unsub),
    (b"PING", OpName::Ping),
    (b"PONG", OpName::Pong),
];

impl OpName {
    fn text(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Pub => "PUB",
            Self::Hpub => "HPUB",
            Self::Sub => "SUB",
            Self::Unsub => "UNSUB",
            Self::Ping => "PING",
            Self::Pong => "PONG",
        }
    }

    /// Allowed argument counts, inclusive.
    fn arguments(self) -> (usize, usize) {
        match self {
            Self::Connect => (1, 1),
            Self::Pub => (2, 3),
            Self::Hpub => (3, 4),
            Self::Sub => (2, 3),
            Self::Unsub => (1, 2),
            Self::Ping | Self::Pong => (0, 0),
        }
    }
}

/// Where one whole op lies in the buffer; ranges are byte offsets.
#[derive(Clone, Copy, Debug)]
struct Scanned {
    name: OpName,
    arguments: [(usize, usize); ARGUMENTS_MAX],
    argument_count: usize,
    /// HPUB: header block; PUB: empty.
    headers: (usize, usize),
    payload: (usize, usize),
    consumed: usize,
}

fn is_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// Reads the op name at the front. `Ok(None)`: still a prefix of a name.
fn scan_op_name(buffer: &[u8]) -> Result<Option<(OpName, usize)>, ProtocolError> {
    // Names are at most 7 bytes, so the delimiter is within the first 8.
    let searched = &buffer[..buffer.len().min(OP_NAME_BYTES_MAX + 1)];
    let end = searched.iter().position(|byte| matches!(byte, b' ' | b'\t' | b'\r' | b'\n'));
    let Some(end) = end else {
        // No delimiter yet: wait only while the bytes can still become a
        // name, so random input fails at its first impossible byte.
        let is_prefix = OP_NAMES
            .iter()
            .any(|(name, _)| searched.len() <= name.len() && name[..searched.len()].eq_ignore_ascii_case(searched));
        return if is_prefix { Ok(None) } else { Err(ProtocolError::UnknownOperation) };
    };
    let word = &buffer[..end];
    OP_NAMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(word))
        .map(|(_, op)| Some((*op, end)))
        .ok_or(ProtocolError::UnknownOperation)
}

/// Splits `line[start..]` at blanks; `Err` when there are more than fit.
fn split_arguments(line: &[u8], start: usize, arguments: &mut [(usize, usize); ARGUMENTS_MAX]) -> Result<usize, ()> {
    let mut count = 0;
    let mut token_start: Option<usize> = None;
    for (index, &byte) in line.iter().enumerate().skip(start) {
        match (is_blank(byte), token_start) {
            (true, Some(begin)) => {
                *arguments.get_mut(count).ok_or(())? = (begin, index);
                count += 1;
                token_start = None;
            }
            (false, None) => token_start = Some(index),
            _ => {}
        }
    }
    if let Some(begin) = token_start {
        *arguments.get_mut(count).ok_or(())? = (begin, line.len());
        count += 1;
    }
    Ok(count)
}

/// A decimal size of 1..=SIZE_DIGITS_MAX digits, as nats-server's `parseSize`.
fn parse_size(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > SIZE_DIGITS_MAX || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0usize, |size, digit| size * 10 + usize::from(digit - b'0')))
}

/// Parses client ops under one connection's [`Limits`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Parser {
    limits: Limits,
}

impl Parser {
    /// A parser with these limits.
    pub fn new(limits: Limits) -> Self {
        assert!(limits.max_control_line > 0, "a zero control line refuses every op");
        Self { limits }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Is one whole op at the front of `buffer`? `Ok(Some(length))`: the op
    /// is the first `length` bytes. `Ok(None)`: not yet, read more. An error:
    /// the bytes can never become a valid op; send its `err_line` and close
    /// (every parse error closes). CONNECT's JSON is only read by `parse`.
    pub fn check(&self, buffer: &[u8]) -> Result<Option<usize>, ProtocolError> {
        Ok(self.scan(buffer)?.map(|scanned| scanned.consumed))
    }

    /// Parses the op at the front of `buffer`, slicing it (no copy).
    /// Returns the op and the bytes it took; the caller advances its buffer.
    pub fn parse(&self, buffer: &Bytes) -> Result<Option<(ClientOp, usize)>, ProtocolError> {
        let Some(scanned) = self.scan(buffer)? else { return Ok(None) };
        let op = build(&scanned, &buffer.slice(..scanned.consumed))?;
        Ok(Some((op, scanned.consumed)))
    }

    /// Splits the op at the front of a receive buffer off it and parses it:
    /// the op's bytes are frozen and sliced, the rest stays in `buffer` for
    /// the next call. On `Ok(None)` and on an error `buffer` is unchanged.
    pub fn split_op(&self, buffer: &mut BytesMut) -> Result<Option<ClientOp>, ProtocolError> {
        let Some(scanned) = self.scan(buffer)? else { return Ok(None) };
        let frame = buffer.split_to(scanned.consumed).freeze();
        build(&scanned, &frame).map(Some)
    }

    /// As [`Parser::split_op`], and also returns the op's whole bytes, which
    /// every `Bytes` in the op is a slice of: a router keeps that one buffer
    /// and ranges into it instead of one reference count per part.
    pub fn split_op_with_bytes(&self, buffer: &mut BytesMut) -> Result<Option<(ClientOp, Bytes)>, ProtocolError> {
        let Some(scanned) = self.scan(buffer)? else { return Ok(None) };
        let frame = buffer.split_to(scanned.consumed).freeze();
        build(&scanned, &frame).map(|op| Some((op, frame)))
    }

    /// Finds one whole op; checks everything but CONNECT's JSON.
    fn scan(&self, buffer: &[u8]) -> Result<Option<Scanned>, ProtocolError> {
        if buffer.is_empty() {
            return Ok(None);
        }
        let Some((name, name_end)) = scan_op_name(buffer)? else { return Ok(None) };
        debug_assert!(name_end > 0 && name_end <= OP_NAME_BYTES_MAX);
        let searched = &buffer[..buffer.len().min(self.limits.line_bytes_max().saturating_add(1))];
        let Some(newline) = searched.iter().position(|byte| *byte == b'\n') else {
            if buffer.len() > self.limits.line_bytes_max() {
                return Err(ProtocolError::MaxControlLineExceeded { limit: self.limits.max_control_line });
            }
            return Ok(None);
        };
        let line = buffer[..newline].strip_suffix(b"\r").unwrap_or(&buffer[..newline]);
        if line.contains(&b'\r') {
            return Err(ProtocolError::MalformedArguments { op: name.text(), reason: "CR inside the line" });
        }
        let arguments_start =
            line[name_end..].iter().position(|byte| !is_blank(*byte)).map_or(line.len(), |skip| name_end + skip);
        if line.len() - arguments_start > self.limits.max_control_line {
            return Err(ProtocolError::MaxControlLineExceeded { limit: self.limits.max_control_line });
        }
        let mut scanned = Scanned {
            name,
            arguments: [(0, 0); ARGUMENTS_MAX],
            argument_count: 0,
            headers: (0, 0),
            payload: (0, 0),
            consumed: newline + 1,
        };
        if name == OpName::Connect {
            // The JSON is one argument whatever blanks it holds.
            scanned.arguments[0] = (arguments_start, line.len());
            scanned.argument_count = 1;
            return Ok(Some(scanned));
        }
        let malformed = |reason| ProtocolError::MalformedArguments { op: name.text(), reason };
        scanned.argument_count = split_arguments(line, arguments_start, &mut scanned.arguments)
            .map_err(|()| malformed("too many arguments"))?;
        let (fewest, most) = name.arguments();
        if scanned.argument_count < fewest || scanned.argument_count > most {
            return Err(malformed("wrong number of arguments"));
        }
        match name {
            OpName::Pub | OpName::Hpub => self.scan_payload(buffer, scanned),
            OpName::Unsub if scanned.argument_count == 2 => {
                let (begin, end) = scanned.arguments[1];
                parse_size(&line[begin..end]).ok_or(malformed("max is not a size"))?;
                Ok(Some(scanned))
            }
            _ => Ok(Some(scanned)),
        }
    }

    /// PUB/HPUB: sizes from the line, the limit, then the payload and its
    /// `\r\n` (checked byte by byte as they arrive, so a size that is too
    /// small fails as soon as the byte after the payload is in).
    fn scan_payload(&self, buffer: &[u8], mut scanned: Scanned) -> Result<Option<Scanned>, ProtocolError> {
        let name = scanned.name;
        let malformed = |reason| ProtocolError::MalformedArguments { op: name.text(), reason };
        let argument = |index: usize| {
            let (begin, end) = scanned.arguments[index];
            &buffer[begin..end]
        };
        let last = scanned.argument_count - 1;
        let total = parse_size(argument(last)).ok_or(malformed("size is not a size"))?;
        let header_bytes = if name == OpName::Hpub {
            let header_bytes = parse_size(argument(last - 1)).ok_or(malformed("header size is not a size"))?;
            if header_bytes > total {
                return Err(malformed("header size larger than total size"));
            }
            header_bytes
        } else {
            0
        };
        if total > self.limits.max_payload {
            return Err(ProtocolError::MaxPayloadViolation { size: total, limit: self.limits.max_payload });
        }
        let start = scanned.consumed;
        let end = start + total;
        match buffer.get(end) {
            Some(b'\r') => {}
            Some(_) => return Err(ProtocolError::MissingPayloadTerminator),
            None => return Ok(None),
        }
        match buffer.get(end + 1) {
            Some(b'\n') => {}
            Some(_) => return Err(ProtocolError::MissingPayloadTerminator),
            None => return Ok(None),
        }
        scanned.headers = (start, start + header_bytes);
        scanned.payload = (start + header_bytes, end);
        scanned.consumed = end + 2;
        Ok(Some(scanned))
    }
}

/// Builds the op from a scanned frame (`frame` starts where the op starts).
fn build(scanned: &Scanned, frame: &Bytes) -> Result<ClientOp, ProtocolError> {
    let argument = |index: usize| {
        let (begin, end) = scanned.arguments[index];
        frame.slice(begin..end)
    };
    let count = scanned.argument_count;
    let optional = |present: bool, index: usize| present.then(|| argument(index));
    let op = match scanned.name {
        OpName::Connect => {
            let (begin, end) = scanned.arguments[0];
            ClientOp::Connect(Box::new(Connect::from_json(&frame[begin..end])?))
        }
        OpName::Pub => ClientOp::Pub {
            subject: argument(0),
            reply: optional(count == 3, 1),
            payload: frame.slice(scanned.payload.0..scanned.payload.1),
        },
        OpName::Hpub => ClientOp::Hpub {
            subject: argument(0),
            reply: optional(count == 4, 1),
            headers: frame.slice(scanned.headers.0..scanned.headers.1),
            payload: frame.slice(scanned.payload.0..scanned.payload.1),
        },
        OpName::Sub => ClientOp::Sub { subject: argument(0), queue: optional(count == 3, 1), sid: argument(count - 1) },
        OpName::Unsub => ClientOp::Unsub {
            sid: argument(0),
            // scan checked it is a size; u64 holds every 9-digit number.
            max: (count == 2).then(|| parse_size(&argument(1)).map(|max| max as u64)).flatten(),
        },
        OpName::Ping => ClientOp::Ping,
        OpName::Pong => ClientOp::Pong,
    };
    Ok(op)
}
