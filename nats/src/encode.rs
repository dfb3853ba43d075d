//! Writing NATS ops into a `BytesMut`: the server's ops for the shard, and
//! the client's ops for tests, the fuzz oracle and the load generator.
//!
//! Invariants: each function appends exactly one whole op and nothing
//! else; sizes written are the lengths of the slices written, so a reader
//! can never be told a size that lies. Arguments are written as given: a
//! subject, sid or reply holding a blank or CR/LF would write a line that
//! parses differently, so callers pass only what a parser or a subject
//! check accepted (debug builds assert it).

use bytes::{BufMut, BytesMut};

use crate::connect::ServerInfo;
use crate::error::ProtocolError;
use crate::parser::ClientOp;

fn debug_assert_token(token: &[u8]) {
    debug_assert!(
        !token.is_empty() && !token.iter().any(|byte| matches!(byte, b' ' | b'\t' | b'\r' | b'\n')),
        "an argument must be one non-empty token: {token:?}"
    );
}

fn put_decimal(out: &mut BytesMut, value: usize) {
    let mut digits = [0u8; 20];
    out.put_slice(decimal(value as u64, &mut digits));
}

/// `value` in decimal, written into `digits` (at most 20 of them for a
/// u64): a stack buffer keeps the MSG path (sizes, sids) free of allocations.
pub fn decimal(value: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut index = digits.len();
    let mut rest = value;
    loop {
        index -= 1;
        digits[index] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    &digits[index..]
}

fn put_arguments(out: &mut BytesMut, op: &[u8], tokens: &[Option<&[u8]>]) {
    out.put_slice(op);
    for token in tokens.iter().flatten() {
        debug_assert_token(token);
        out.put_u8(b' ');
        out.put_slice(token);
    }
}

/// `INFO {json}\r\n`.
pub fn encode_info(info: &ServerInfo, out: &mut BytesMut) {
    out.put_slice(b"INFO ");
    let json = serde_json::to_vec(info).expect("strings, integers and booleans always serialise");
    out.put_slice(&json);
    out.put_slice(b"\r\n");
}

/// `MSG subject sid [reply] size\r\n<payload>\r\n`.
pub fn encode_msg(out: &mut BytesMut, subject: &[u8], sid: &[u8], reply: Option<&[u8]>, payload: &[u8]) {
    out.reserve(subject.len() + sid.len() + reply.map_or(0, <[u8]>::len) + payload.len() + 32);
    put_arguments(out, b"MSG", &[Some(subject), Some(sid), reply]);
    out.put_u8(b' ');
    put_decimal(out, payload.len());
    out.put_slice(b"\r\n");
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}

/// `HMSG subject sid [reply] header_size total_size\r\n<headers><payload>\r\n`.
/// `headers` is a whole block (see [`crate::headers`]).
pub fn encode_hmsg(
    out: &mut BytesMut,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers: &[u8],
    payload: &[u8],
) {
    out.reserve(subject.len() + sid.len() + reply.map_or(0, <[u8]>::len) + headers.len() + payload.len() + 48);
    put_arguments(out, b"HMSG", &[Some(subject), Some(sid), reply]);
    out.put_u8(b' ');
    put_decimal(out, headers.len());
    out.put_u8(b' ');
    put_decimal(out, headers.len() + payload.len());
    out.put_slice(b"\r\n");
    out.put_slice(headers);
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}

/// `PING\r\n`.
pub fn encode_ping(out: &mut BytesMut) {
    out.put_slice(b"PING\r\n");
}

/// `PONG\r\n`.
pub fn encode_pong(out: &mut BytesMut) {
    out.put_slice(b"PONG\r\n");
}

/// `+OK\r\n`, the answer to every op of a verbose client.
pub fn encode_ok(out: &mut BytesMut) {
    out.put_slice(b"+OK\r\n");
}

/// `-ERR '<text>'\r\n` for `error`.
pub fn encode_err(error: &ProtocolError, out: &mut BytesMut) {
    out.put_slice(error.err_line().as_bytes());
}

impl ClientOp {
    /// Writes the op as a client would send it; what [`crate::Parser`]
    /// parses back to an equal op.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            ClientOp::Connect(connect) => {
                out.put_slice(b"CONNECT ");
                out.put_slice(&connect.to_json());
                out.put_slice(b"\r\n");
            }
            ClientOp::Pub { subject, reply, payload } => {
                put_arguments(out, b"PUB", &[Some(subject), reply.as_deref()]);
                out.put_u8(b' ');
                put_decimal(out, payload.len());
                out.put_slice(b"\r\n");
                out.put_slice(payload);
                out.put_slice(b"\r\n");
            }
            ClientOp::Hpub { subject, reply, headers, payload } => {
                put_arguments(out, b"HPUB", &[Some(subject), reply.as_deref()]);
                out.put_u8(b' ');
                put_decimal(out, headers.len());
                out.put_u8(b' ');
                put_decimal(out, headers.len() + payload.len());
                out.put_slice(b"\r\n");
                out.put_slice(headers);
                out.put_slice(payload);
                out.put_slice(b"\r\n");
            }
            ClientOp::Sub { subject, queue, sid } => {
                put_arguments(out, b"SUB", &[Some(subject), queue.as_deref(), Some(sid)]);
                out.put_slice(b"\r\n");
            }
            ClientOp::Unsub { sid, max } => {
                put_arguments(out, b"UNSUB", &[Some(sid)]);
                if let Some(max) = max {
                    out.put_u8(b' ');
                    put_decimal(out, *max as usize);
                }
                out.put_slice(b"\r\n");
            }
            ClientOp::Ping => encode_ping(out),
            ClientOp::Pong => encode_pong(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ops_are_written_as_nats_server_writes_them() {
        let mut out = BytesMut::new();
        encode_msg(&mut out, b"a.b", b"7", None, b"hello");
        encode_msg(&mut out, b"a.b", b"7", Some(b"_INBOX.1"), b"");
        encode_hmsg(&mut out, b"a", b"1", Some(b"r"), b"NATS/1.0\r\n\r\n", b"hi");
        encode_ping(&mut out);
        encode_pong(&mut out);
        encode_ok(&mut out);
        encode_err(&ProtocolError::StaleConnection, &mut out);
        let expected = "MSG a.b 7 5\r\nhello\r\nMSG a.b 7 _INBOX.1 0\r\n\r\nHMSG a 1 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n\
                        PING\r\nPONG\r\n+OK\r\n-ERR 'Stale Connection'\r\n";
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
    }

    #[test]
    fn info_is_one_line_of_json() {
        let info = ServerInfo {
            server_id: "NFLIT".into(),
            server_name: "flit \"one\"\n".into(),
            version: "2.10.0".into(),
            proto: 1,
            headers: true,
            max_payload: 1 << 20,
            client_id: 9,
            client_ip: "127.0.0.1".into(),
            auth_required: true,
            tls_required: false,
            connect_urls: vec!["10.0.0.1:4222".into()],
        };
        let mut out = BytesMut::new();
        encode_info(&info, &mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("INFO {") && text.ends_with("}\r\n") && text.matches('\n').count() == 1, "{text}");
        let parsed: ServerInfo = serde_json::from_str(&text["INFO ".len()..text.len() - 2]).unwrap();
        assert_eq!(parsed, info);
        assert!(
            text.contains("\"proto\":1")
                && text.contains("\"headers\":true")
                && text.contains("\"auth_required\":true")
        );
    }

    #[test]
    fn decimals_cover_the_edges() {
        for value in [0usize, 9, 10, 999_999_999, usize::MAX] {
            let mut out = BytesMut::new();
            put_decimal(&mut out, value);
            assert_eq!(std::str::from_utf8(&out).unwrap(), value.to_string());
        }
    }
}
