//! NATS message headers: the block HPUB carries and HMSG delivers.
//!
//! ```text
//! NATS/1.0[ status[ description]]\r\n
//! Key: Value\r\n
//! ...
//! \r\n
//! ```
//!
//! The status line is how a server speaks inside a message: `NATS/1.0 503`
//! with no entries is "no responders", which NATS clients turn into an
//! immediate error for a request instead of a timeout.
//!
//! Invariants: parsing slices the block (no copy) and stops at
//! `HEADER_ENTRIES_MAX` entries; keys are printable ASCII without `:`;
//! values hold no CR or LF and are trimmed of blanks at both ends (as Go's
//! `textproto` reads them), so the encoder refuses untrimmed values: what it
//! writes parses back to exactly what it was given. Keys keep their case
//! and order; repeated keys are kept (NATS headers are multi-valued).

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// The version line every header block starts with.
pub const HEADER_VERSION: &[u8] = b"NATS/1.0";
/// Most entries a block may hold.
pub const HEADER_ENTRIES_MAX: usize = 256;
/// The status of a "no responders" message.
pub const STATUS_NO_RESPONDERS: u16 = 503;
/// The whole block of a "no responders" message.
pub const NO_RESPONDERS_BLOCK: &[u8] = b"NATS/1.0 503\r\n\r\n";

/// Why a header block is refused.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// The block does not start with `NATS/1.0`.
    #[error("header block does not start with NATS/1.0")]
    MissingVersion,
    /// What follows the version is not a 3-digit status.
    #[error("bad status in the header version line")]
    BadStatus,
    /// The block does not end with an empty line.
    #[error("header block does not end with CRLF CRLF")]
    MissingEnd,
    /// An entry without `:`, with an empty or non-token key, or a value or
    /// description holding CR, LF or surrounding blanks (encoder).
    #[error("malformed header entry")]
    MalformedEntry,
    /// More than `HEADER_ENTRIES_MAX` entries.
    #[error("more than HEADER_ENTRIES_MAX header entries")]
    TooManyEntries,
}

/// A parsed header block; every `Bytes` is a slice of the block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderBlock {
    /// The status code, if the version line has one.
    pub status: Option<u16>,
    /// The text after the status, if any.
    pub description: Option<Bytes>,
    /// Key/value pairs in order, repeated keys kept.
    pub entries: Vec<(Bytes, Bytes)>,
}

fn is_key_byte(byte: u8) -> bool {
    byte.is_ascii_graphic() && byte != b':'
}

fn trim_blanks(bytes: &[u8]) -> (usize, usize) {
    let start = bytes.iter().position(|byte| *byte != b' ' && *byte != b'\t').unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|byte| *byte != b' ' && *byte != b'\t').map_or(start, |last| last + 1);
    (start, end.max(start))
}

/// Parses a whole header block (HPUB's first `header_size` bytes).
pub fn parse_headers(block: &Bytes) -> Result<HeaderBlock, HeaderError> {
    let body = block.strip_suffix(b"\r\n\r\n").ok_or(HeaderError::MissingEnd)?;
    // `body` ends before the last CRLF of the final line, so every line
    // but the last ends with a CR; the last has none. Each line comes with
    // its offset in the block, for slicing.
    let mut offset = 0usize;
    let mut lines = body.split(|byte| *byte == b'\n').map(|line| {
        let start = offset;
        offset += line.len() + 1;
        (start, line.strip_suffix(b"\r").unwrap_or(line))
    });
    let (_, version_line) = lines.next().ok_or(HeaderError::MissingVersion)?;
    let rest = version_line.strip_prefix(HEADER_VERSION).ok_or(HeaderError::MissingVersion)?;
    if rest.contains(&b'\r') {
        return Err(HeaderError::BadStatus);
    }
    let mut parsed = HeaderBlock::default();
    if !rest.is_empty() {
        let (start, end) = trim_blanks(rest);
        let status_text = &rest[start..end];
        if rest[0] != b' ' && rest[0] != b'\t' || status_text.len() < 3 {
            return Err(HeaderError::BadStatus);
        }
        let (digits, description) = status_text.split_at(3);
        if !digits.iter().all(u8::is_ascii_digit)
            || description.first().is_some_and(|byte| !matches!(byte, b' ' | b'\t'))
        {
            return Err(HeaderError::BadStatus);
        }
        parsed.status = Some(digits.iter().fold(0u16, |status, digit| status * 10 + u16::from(digit - b'0')));
        let (description_start, description_end) = trim_blanks(description);
        if description_start < description_end {
            let base = HEADER_VERSION.len() + start + 3;
            parsed.description = Some(block.slice(base + description_start..base + description_end));
        }
    }
    for (line_start, line) in lines {
        if line.contains(&b'\r') {
            return Err(HeaderError::MalformedEntry);
        }
        let colon = line.iter().position(|byte| *byte == b':').ok_or(HeaderError::MalformedEntry)?;
        if colon == 0 || !line[..colon].iter().all(|byte| is_key_byte(*byte)) {
            return Err(HeaderError::MalformedEntry);
        }
        if parsed.entries.len() == HEADER_ENTRIES_MAX {
            return Err(HeaderError::TooManyEntries);
        }
        let (value_start, value_end) = trim_blanks(&line[colon + 1..]);
        let value_base = line_start + colon + 1;
        parsed.entries.push((
            block.slice(line_start..line_start + colon),
            block.slice(value_base + value_start..value_base + value_end),
        ));
    }
    Ok(parsed)
}

fn is_clean_text(text: &[u8]) -> bool {
    !text.iter().any(|byte| *byte == b'\r' || *byte == b'\n') && trim_blanks(text) == (0, text.len())
}

/// Writes a header block. Refuses what would not parse back to the same
/// block: a key that is not a token, a value or description with CR, LF or
/// surrounding blanks, a status above 999, too many entries.
pub fn encode_headers(
    status: Option<(u16, &[u8])>,
    entries: &[(&[u8], &[u8])],
    out: &mut BytesMut,
) -> Result<(), HeaderError> {
    if entries.len() > HEADER_ENTRIES_MAX {
        return Err(HeaderError::TooManyEntries);
    }
    if let Some((code, description)) = status {
        if code > 999 {
            return Err(HeaderError::BadStatus);
        }
        if !is_clean_text(description) {
            return Err(HeaderError::MalformedEntry);
        }
    }
    for (key, value) in entries {
        if key.is_empty() || !key.iter().all(|byte| is_key_byte(*byte)) || !is_clean_text(value) {
            return Err(HeaderError::MalformedEntry);
        }
    }
    out.put_slice(HEADER_VERSION);
    if let Some((code, description)) = status {
        out.put_slice(format!(" {code:03}").as_bytes());
        if !description.is_empty() {
            out.put_u8(b' ');
            out.put_slice(description);
        }
    }
    out.put_slice(b"\r\n");
    for (key, value) in entries {
        out.put_slice(key);
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> Result<HeaderBlock, HeaderError> {
        parse_headers(&Bytes::copy_from_slice(text))
    }

    #[test]
    fn entries_parse_in_order_with_repeats_and_trimmed_values() {
        let block = parse(b"NATS/1.0\r\nA: 1\r\nb:2  \r\nA:\t 3\r\nEmpty:\r\n\r\n").unwrap();
        assert_eq!(block.status, None);
        let entries: Vec<(&[u8], &[u8])> = block.entries.iter().map(|(key, value)| (&key[..], &value[..])).collect();
        assert_eq!(entries, [(&b"A"[..], &b"1"[..]), (b"b", b"2"), (b"A", b"3"), (b"Empty", b"")]);
    }

    #[test]
    fn status_lines_parse() {
        let no_responders = parse(NO_RESPONDERS_BLOCK).unwrap();
        assert_eq!(no_responders.status, Some(STATUS_NO_RESPONDERS));
        assert!(no_responders.description.is_none() && no_responders.entries.is_empty());
        let timeout = parse(b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\n\r\n").unwrap();
        assert_eq!(timeout.status, Some(408));
        assert_eq!(timeout.description.as_deref(), Some(&b"Request Timeout"[..]));
        assert_eq!(timeout.entries.len(), 1);
    }

    #[test]
    fn malformed_blocks_are_refused() {
        assert_eq!(parse(b"NATS/1.0\r\n"), Err(HeaderError::MissingEnd));
        assert_eq!(parse(b"HTTP/1.0\r\n\r\n"), Err(HeaderError::MissingVersion));
        assert_eq!(parse(b"NATS/1.0 50\r\n\r\n"), Err(HeaderError::BadStatus));
        assert_eq!(parse(b"NATS/1.0 5034\r\n\r\n"), Err(HeaderError::BadStatus));
        assert_eq!(parse(b"NATS/1.0x\r\n\r\n"), Err(HeaderError::BadStatus));
        assert_eq!(parse(b"NATS/1.0 503 a\rb\r\n\r\n"), Err(HeaderError::BadStatus));
        assert_eq!(parse(b"NATS/1.0\r\nNoColon\r\n\r\n"), Err(HeaderError::MalformedEntry));
        assert_eq!(parse(b"NATS/1.0\r\n: v\r\n\r\n"), Err(HeaderError::MalformedEntry));
        assert_eq!(parse(b"NATS/1.0\r\nA B: v\r\n\r\n"), Err(HeaderError::MalformedEntry));
        assert_eq!(parse(b"NATS/1.0\r\nA: v\rx\r\n\r\n"), Err(HeaderError::MalformedEntry));
        let many: Vec<u8> = [&b"NATS/1.0\r\n"[..], &b"K: v\r\n".repeat(HEADER_ENTRIES_MAX + 1), b"\r\n"].concat();
        assert_eq!(parse(&many), Err(HeaderError::TooManyEntries));
    }

    #[test]
    fn encoding_writes_what_parses_back() {
        let mut out = BytesMut::new();
        encode_headers(Some((STATUS_NO_RESPONDERS, b"")), &[], &mut out).unwrap();
        assert_eq!(&out[..], NO_RESPONDERS_BLOCK);
        out.clear();
        encode_headers(Some((408, b"Request Timeout")), &[(b"K", b"v v"), (b"K", b"")], &mut out).unwrap();
        let block = parse_headers(&out.clone().freeze()).unwrap();
        assert_eq!(block.status, Some(408));
        assert_eq!(block.entries.len(), 2);
        assert_eq!(&block.entries[0].1[..], b"v v");
        assert_eq!(encode_headers(None, &[(b"K", b" padded")], &mut out), Err(HeaderError::MalformedEntry));
        assert_eq!(encode_headers(None, &[(b"K:", b"v")], &mut out), Err(HeaderError::MalformedEntry));
        assert_eq!(encode_headers(Some((1000, b"")), &[], &mut out), Err(HeaderError::BadStatus));
    }
}
