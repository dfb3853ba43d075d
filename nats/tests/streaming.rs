//! The same bytes, however they arrive, give the same ops: split at every
//! byte boundary, byte at a time, thousands pipelined in one buffer. This
//! is how the shard will see them (provided buffers, TCP segments, short
//! reads), and what `nats/fuzz`'s `split_stream` target explores at random.

use bytes::BytesMut;
use flit_nats::{ClientOp, Parser, ProtocolError};

/// Everything a stream parses to: the ops, then how it ends.
#[derive(Debug, PartialEq)]
struct Outcome {
    ops: Vec<ClientOp>,
    error: Option<ProtocolError>,
    left: usize,
}

fn drain(parser: &Parser, buffer: &mut BytesMut, outcome: &mut Outcome) {
    while outcome.error.is_none() {
        match parser.split_op(buffer) {
            Ok(Some(op)) => outcome.ops.push(op),
            Ok(None) => break,
            Err(error) => outcome.error = Some(error),
        }
    }
}

fn feed(stream: &[u8], pieces: impl IntoIterator<Item = usize>) -> Outcome {
    let parser = Parser::default();
    let mut outcome = Outcome { ops: Vec::new(), error: None, left: 0 };
    let mut buffer = BytesMut::new();
    let mut offset = 0;
    for piece in pieces.into_iter().chain(std::iter::once(usize::MAX)) {
        if offset >= stream.len() || outcome.error.is_some() {
            break;
        }
        let end = offset.saturating_add(piece).min(stream.len());
        buffer.extend_from_slice(&stream[offset..end]);
        offset = end;
        drain(&parser, &mut buffer, &mut outcome);
    }
    // Where an error stopped it, how much was buffered depends on the
    // pieces; only a clean end is compared by length.
    outcome.left = if outcome.error.is_none() { buffer.len() } else { 0 };
    outcome
}

fn sample_stream() -> Vec<u8> {
    let headers = "NATS/1.0 503\r\nK: v\r\n\r\n";
    let mut stream = Vec::new();
    stream.extend_from_slice(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"name\":\"x y\"}\r\n");
    stream.extend_from_slice(b"SUB orders.* q 1\r\nsub a.> 2\r\n");
    stream.extend_from_slice(b"PUB orders.eu _INBOX.1 5\r\nhello\r\n");
    stream
        .extend_from_slice(format!("HPUB a.b {} {}\r\n{headers}body\r\n", headers.len(), headers.len() + 4).as_bytes());
    stream.extend_from_slice(b"PUB empty 0\r\n\r\nPING\r\npong\nUNSUB 1 5\r\nUNSUB 2\r\n");
    stream.extend_from_slice(b"PUB crlf 4\r\n\r\n\r\n\r\n");
    stream
}

#[test]
fn every_split_point_gives_the_same_ops() {
    let stream = sample_stream();
    let whole = feed(&stream, []);
    assert_eq!(whole.ops.len(), 11);
    assert_eq!((whole.error.clone(), whole.left), (None, 0));
    for first in 0..=stream.len() {
        assert_eq!(feed(&stream, [first]), whole, "split at {first}");
    }
    // Two cuts, every pair in a window that crosses the HPUB.
    for first in 100..160 {
        for second in 1..60 {
            assert_eq!(feed(&stream, [first, second]), whole, "split at {first} and {}", first + second);
        }
    }
}

#[test]
fn byte_at_a_time_gives_the_same_ops() {
    let stream = sample_stream();
    assert_eq!(feed(&stream, std::iter::repeat_n(1, stream.len())), feed(&stream, []));
}

#[test]
fn errors_are_found_at_the_same_op_however_the_bytes_arrive() {
    let mut stream = sample_stream();
    stream.extend_from_slice(b"PUB lies 2\r\nhello\r\nPING\r\n");
    let whole = feed(&stream, []);
    assert_eq!(whole.error, Some(ProtocolError::MissingPayloadTerminator));
    for first in 0..=stream.len() {
        assert_eq!(feed(&stream, [first]), whole, "split at {first}");
    }
    assert_eq!(feed(&stream, std::iter::repeat_n(1, stream.len())), whole);
}

#[test]
fn thousands_of_pipelined_ops_in_one_buffer() {
    let mut stream = Vec::new();
    for index in 0..5_000 {
        stream.extend_from_slice(format!("PUB load.{index} 8\r\n{index:08}\r\n").as_bytes());
        if index % 10 == 0 {
            stream.extend_from_slice(b"PING\r\n");
        }
    }
    let whole = feed(&stream, []);
    assert_eq!(whole.ops.len(), 5_500);
    assert_eq!((whole.error.clone(), whole.left), (None, 0));
    let ClientOp::Pub { subject, payload, .. } = &whole.ops[5_499 - 1] else { panic!() };
    assert_eq!((&subject[..], &payload[..]), (&b"load.4998"[..], &b"00004998"[..]));
    // The same bytes in receive-buffer-sized pieces.
    assert_eq!(feed(&stream, std::iter::repeat_n(16 * 1024, stream.len())), whole);
    assert_eq!(feed(&stream, std::iter::repeat_n(7, stream.len())), whole);
}

#[test]
fn an_endless_line_fed_in_pieces_fails_once_past_the_limit() {
    let mut stream = b"PUB ".to_vec();
    stream.resize(100_000, b'z');
    let outcome = feed(&stream, std::iter::repeat_n(1000, 100));
    assert!(matches!(outcome.error, Some(ProtocolError::MaxControlLineExceeded { limit: 4096 })));
    assert!(outcome.ops.is_empty());
}
