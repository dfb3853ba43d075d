//! Each client op, and each way a line can be wrong, parsed whole.

use bytes::{Bytes, BytesMut};
use flit_nats::{ClientOp, Limits, Parser, ProtocolError};

fn parse_one(input: &[u8]) -> Result<Option<(ClientOp, usize)>, ProtocolError> {
    Parser::default().parse(&Bytes::copy_from_slice(input))
}

fn op(input: &[u8]) -> ClientOp {
    let (op, consumed) = parse_one(input).expect("valid").expect("whole");
    assert_eq!(consumed, input.len(), "one op, all of it: {input:?}");
    op
}

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

#[test]
fn pub_with_and_without_reply() {
    assert_eq!(
        op(b"PUB orders.eu 5\r\nhello\r\n"),
        ClientOp::Pub { subject: bytes("orders.eu"), reply: None, payload: bytes("hello") }
    );
    assert_eq!(
        op(b"pub\torders.eu \t _INBOX.x  0\r\n\r\n"),
        ClientOp::Pub { subject: bytes("orders.eu"), reply: Some(bytes("_INBOX.x")), payload: Bytes::new() }
    );
}

#[test]
fn a_payload_may_hold_crlf_and_is_a_slice_of_the_input() {
    let input = Bytes::from_static(b"PUB a 4\r\n\r\n\r\n\r\nPING\r\n");
    let (parsed, consumed) = Parser::default().parse(&input).unwrap().unwrap();
    assert_eq!(consumed, 15);
    let ClientOp::Pub { payload, .. } = parsed else { panic!("{parsed:?}") };
    assert_eq!(&payload[..], b"\r\n\r\n");
    assert_eq!(payload.as_ptr(), input[9..].as_ptr(), "no copy");
}

#[test]
fn hpub_splits_headers_from_payload() {
    let headers = "NATS/1.0\r\nA: b\r\n\r\n";
    let input = format!("HPUB s r {} {}\r\n{headers}hi\r\n", headers.len(), headers.len() + 2);
    assert_eq!(
        op(input.as_bytes()),
        ClientOp::Hpub { subject: bytes("s"), reply: Some(bytes("r")), headers: bytes(headers), payload: bytes("hi") }
    );
    let header_only = format!("hpub s {0} {0}\r\n{headers}\r\n", headers.len());
    let ClientOp::Hpub { reply: None, payload, .. } = op(header_only.as_bytes()) else { panic!() };
    assert!(payload.is_empty());
}

#[test]
fn sub_unsub_ping_pong() {
    assert_eq!(op(b"SUB a.* 1\r\n"), ClientOp::Sub { subject: bytes("a.*"), queue: None, sid: bytes("1") });
    assert_eq!(
        op(b"sub a.> workers 22\n"),
        ClientOp::Sub { subject: bytes("a.>"), queue: Some(bytes("workers")), sid: bytes("22") }
    );
    assert_eq!(op(b"UNSUB 1\r\n"), ClientOp::Unsub { sid: bytes("1"), max: None });
    assert_eq!(op(b"UnSub 1 10\r\n"), ClientOp::Unsub { sid: bytes("1"), max: Some(10) });
    assert_eq!(op(b"PING\r\n"), ClientOp::Ping);
    assert_eq!(op(b"pong  \r\n"), ClientOp::Pong);
}

#[test]
fn connect_parses_its_json() {
    let ClientOp::Connect(connect) = op(br#"CONNECT {"verbose":false,"name":"a b","headers":true}"#.as_slice().iter()
        .chain(b"\r\n")
        .copied()
        .collect::<Vec<u8>>()
        .as_slice())
    else {
        panic!()
    };
    assert!(!connect.verbose && connect.headers);
    assert_eq!(connect.name.as_deref(), Some("a b"));
    assert!(matches!(parse_one(b"CONNECT {\"verbose\":1}\r\n"), Err(ProtocolError::InvalidConnect(_))));
    assert!(matches!(parse_one(b"CONNECT\r\n"), Err(ProtocolError::InvalidConnect(_))));
}

#[test]
fn unknown_ops_fail_at_their_first_impossible_byte() {
    for input in [&b"X"[..], b"PX", b"PUBX", b"CONNECTX", b"MSG a 1 1\r\n", b"\r\n", b" PING\r\n", b"INFO {}\r\n"] {
        assert_eq!(parse_one(input), Err(ProtocolError::UnknownOperation), "{input:?}");
    }
    for prefix in [&b"P"[..], b"pu", b"CONNEC", b"UNSU", b"hp"] {
        assert_eq!(parse_one(prefix), Ok(None), "{prefix:?}");
    }
}

#[test]
fn wrong_argument_counts_and_sizes_are_malformed() {
    for input in [
        &b"PUB a\r\n"[..],
        b"PUB a b c 1\r\n",
        b"PUB a x\r\n",
        b"PUB a -1\r\n",
        b"PUB a 1234567890\r\n",
        b"HPUB a 1\r\n",
        b"HPUB a 3 2\r\n",
        b"HPUB a b c 1 2\r\n",
        b"SUB a\r\n",
        b"SUB a b c d\r\n",
        b"UNSUB\r\n",
        b"UNSUB 1 x\r\n",
        b"UNSUB 1 2 3\r\n",
        b"PING x\r\n",
        b"PUB a\r1\r\n",
    ] {
        let result = parse_one(input);
        assert!(matches!(result, Err(ProtocolError::MalformedArguments { .. })), "{input:?}: {result:?}");
        assert_eq!(result.unwrap_err().err_line(), "-ERR 'Unknown Protocol Operation'\r\n");
    }
}

#[test]
fn max_payload_is_checked_from_the_control_line() {
    let parser = Parser::new(Limits { max_payload: 10, ..Limits::default() });
    let refused = parser.check(b"PUB a 11\r\n");
    assert_eq!(refused, Err(ProtocolError::MaxPayloadViolation { size: 11, limit: 10 }));
    assert_eq!(refused.unwrap_err().err_line(), "-ERR 'Maximum Payload Violation'\r\n");
    // HPUB counts headers and payload together.
    assert!(matches!(parser.check(b"HPUB a 5 11\r\n"), Err(ProtocolError::MaxPayloadViolation { .. })));
    assert_eq!(parser.check(b"PUB a 10\r\n"), Ok(None), "at the limit: wait for the payload");
    assert_eq!(parser.check(b"PUB a 10\r\n0123456789\r\n"), Ok(Some(22)));
}

#[test]
fn a_size_that_lies_is_refused_or_waited_for() {
    let parser = Parser::default();
    // Too small: the byte after the payload is not CR.
    assert_eq!(parser.check(b"PUB a 2\r\nhello\r\n"), Err(ProtocolError::MissingPayloadTerminator));
    assert_eq!(parser.check(b"PUB a 4\r\nhello"), Err(ProtocolError::MissingPayloadTerminator));
    assert_eq!(parser.check(b"PUB a 5\r\nhello\rX"), Err(ProtocolError::MissingPayloadTerminator));
    // Too large: nothing proves it yet, so it waits; the next op's bytes then
    // fail it once the announced end is reached.
    assert_eq!(parser.check(b"PUB a 9\r\nhello\r\n"), Ok(None));
    assert_eq!(parser.check(b"PUB a 9\r\nhello\r\nPING\r\n"), Err(ProtocolError::MissingPayloadTerminator));
    assert_eq!(
        ProtocolError::MissingPayloadTerminator.err_line(),
        "-ERR 'Unknown Protocol Operation'\r\n",
        "nats-server's parse error"
    );
}

#[test]
fn an_endless_control_line_is_refused_at_the_limit() {
    let parser = Parser::default();
    let mut line = b"PUB ".to_vec();
    line.resize(4096 + 16, b'a');
    assert_eq!(parser.check(&line), Ok(None), "still within the limit: wait");
    line.push(b'a');
    let refused = parser.check(&line);
    assert_eq!(refused, Err(ProtocolError::MaxControlLineExceeded { limit: 4096 }));
    assert_eq!(refused.unwrap_err().err_line(), "-ERR 'maximum control line exceeded'\r\n");
    // Ten megabytes of one line cost one bounded scan.
    let mut huge = b"SUB ".to_vec();
    huge.resize(10 << 20, b'x');
    assert!(matches!(parser.check(&huge), Err(ProtocolError::MaxControlLineExceeded { .. })));
}

#[test]
fn the_arguments_may_hold_max_control_line_bytes_as_nats_server_counts() {
    let parser = Parser::new(Limits { max_control_line: 64, ..Limits::default() });
    let subject = "s".repeat(64 - 2);
    assert!(parser.check(format!("SUB {subject} 1\r\n").as_bytes()).unwrap().is_some());
    assert!(matches!(
        parser.check(format!("SUB {subject} 12\r\n").as_bytes()),
        Err(ProtocolError::MaxControlLineExceeded { limit: 64 })
    ));
}

#[test]
fn split_op_leaves_the_rest_in_the_buffer() {
    let parser = Parser::default();
    let mut buffer = BytesMut::from(&b"PING\r\nPUB a 2\r\nhi\r\nSUB"[..]);
    assert_eq!(parser.split_op(&mut buffer), Ok(Some(ClientOp::Ping)));
    assert!(matches!(parser.split_op(&mut buffer), Ok(Some(ClientOp::Pub { .. }))));
    assert_eq!(parser.split_op(&mut buffer), Ok(None));
    assert_eq!(&buffer[..], b"SUB");
    buffer.extend_from_slice(b" a 1\r\n");
    assert!(matches!(parser.split_op(&mut buffer), Ok(Some(ClientOp::Sub { .. }))));
    assert!(buffer.is_empty());
    buffer.extend_from_slice(b"BOGUS\r\n");
    assert_eq!(parser.split_op(&mut buffer), Err(ProtocolError::UnknownOperation));
    assert_eq!(&buffer[..], b"BOGUS\r\n", "an error leaves the buffer as it was");
}
