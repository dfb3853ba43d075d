//! Tests of the NATS protocol parser and encoder (split from nats.rs for size).
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
    protocol.unsubscribe(&mut output, 7);
    let expected: &[u8] = b"SUB bench.0 7\r\nSUB bench.> workers 18446744073709551615\r\n\
        PUB bench.0 5\r\nhello\r\nPUB svc.echo _INBOX.1 0\r\n\r\nPING\r\nUNSUB 7\r\n";
    assert_eq!(output, expected);
}

#[test]
fn the_pub_line_is_rebuilt_when_subject_reply_or_length_changes() {
    let mut protocol = NatsProtocol::new();
    let mut output = BytesMut::new();
    protocol.publish(&mut output, "a", None, b"xy");
    protocol.publish(&mut output, "a", None, b"zw");
    protocol.publish(&mut output, "a", None, b"0123456789");
    protocol.publish(&mut output, "a", Some(b"r.1"), b"0123456789");
    protocol.publish(&mut output, "a", Some(b"r.2"), b"0123456789");
    protocol.publish(&mut output, "b", Some(b"r.2"), b"0123456789");
    protocol.publish(&mut output, "b", None, b"");
    let expected: &[u8] = b"PUB a 2\r\nxy\r\nPUB a 2\r\nzw\r\nPUB a 10\r\n0123456789\r\n\
        PUB a r.1 10\r\n0123456789\r\nPUB a r.2 10\r\n0123456789\r\nPUB b r.2 10\r\n0123456789\r\nPUB b 0\r\n\r\n";
    assert_eq!(output, expected);
}

#[test]
#[should_panic(expected = "invalid NATS reply subject")]
fn a_cached_line_does_not_skip_the_reply_check() {
    let mut protocol = NatsProtocol::new();
    protocol.publish(&mut BytesMut::new(), "a", Some(b"r"), b"x");
    protocol.publish(&mut BytesMut::new(), "a", Some(b"r r"), b"x");
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

/// What a subscriber's socket delivers under load: a batch of MSGs, read in
/// chunks that cut lines and payloads anywhere, with a server PING between.
#[test]
fn a_batch_of_stamps_split_at_every_position_parses_the_same() {
    let payload = |sequence: u8| -> Vec<u8> { (0..40).map(|byte| byte ^ sequence).collect() };
    let mut stream = Vec::new();
    for sequence in 0..6u8 {
        stream.extend_from_slice(b"MSG loadgen.data 1 40\r\n");
        stream.extend_from_slice(&payload(sequence));
        stream.extend_from_slice(b"\r\n");
        if sequence == 2 {
            stream.extend_from_slice(b"PING\r\n");
        }
    }
    stream.extend_from_slice(b"msg loadgen.data 1 40\r\n"); // lower case: the general path
    stream.extend_from_slice(&payload(6));
    stream.extend_from_slice(b"\r\nPONG\r\n");
    let mut expected: Vec<Inbound> =
        (0..7u8).map(|sequence| Inbound::Stamp(payload(sequence)[..24].try_into().expect("24 bytes"))).collect();
    expected.push(Inbound::Pong);
    for first in 0..=stream.len() {
        for second in [first, (first + 1).min(stream.len()), (first + 61).min(stream.len())] {
            let mut protocol = NatsProtocol::new();
            protocol.set_needs_reply(false);
            let (mut input, mut output) = (BytesMut::new(), BytesMut::new());
            let mut events = Vec::new();
            for chunk in [&stream[..first], &stream[first..second], &stream[second..]] {
                input.extend_from_slice(chunk);
                let (parsed, end) = parse_all(&mut protocol, &mut input, &mut output);
                end.unwrap();
                events.extend(parsed);
            }
            assert_eq!(events, expected, "chunks end at {first} and {second}");
            assert_eq!(output, &b"PONG\r\n"[..], "chunks end at {first} and {second}");
            assert!(input.is_empty(), "chunks end at {first} and {second}");
        }
    }
}
