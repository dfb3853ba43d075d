//! Property: what `ClientOp::encode` writes, the parser reads back as the
//! same op, alone and pipelined; and what the server encoders write has
//! the sizes a NATS client will trust.

use bytes::{Bytes, BytesMut};
use flit_nats::{encode_headers, encode_hmsg, encode_msg, parse_headers, ClientOp, Connect, Parser};
use proptest::prelude::*;

/// One argument: no blank, CR or LF (the parser's token rule).
fn token() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(
        any::<u8>().prop_filter("token byte", |byte| !matches!(byte, b' ' | b'\t' | b'\r' | b'\n')),
        1..24,
    )
    .prop_map(Bytes::from)
}

fn payload() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

fn connect() -> impl Strategy<Value = Connect> {
    (any::<[bool; 6]>(), proptest::option::of(".{0,12}"), proptest::option::of(".{0,12}"), 0i64..=1).prop_map(
        |(flags, name, pass, protocol)| Connect {
            verbose: flags[0],
            pedantic: flags[1],
            echo: flags[2],
            headers: flags[3],
            no_responders: flags[4],
            tls_required: flags[5],
            name,
            pass,
            protocol,
            ..Connect::default()
        },
    )
}

fn client_op() -> impl Strategy<Value = ClientOp> {
    prop_oneof![
        connect().prop_map(|connect| ClientOp::Connect(Box::new(connect))),
        (token(), proptest::option::of(token()), payload()).prop_map(|(subject, reply, payload)| ClientOp::Pub {
            subject,
            reply,
            payload
        }),
        (token(), proptest::option::of(token()), payload(), payload())
            .prop_map(|(subject, reply, headers, payload)| ClientOp::Hpub { subject, reply, headers, payload }),
        (token(), proptest::option::of(token()), token()).prop_map(|(subject, queue, sid)| ClientOp::Sub {
            subject,
            queue,
            sid
        }),
        (token(), proptest::option::of(0u64..1_000_000_000)).prop_map(|(sid, max)| ClientOp::Unsub { sid, max }),
        Just(ClientOp::Ping),
        Just(ClientOp::Pong),
    ]
}

proptest! {
    #[test]
    fn encoded_client_ops_parse_to_themselves(ops in proptest::collection::vec(client_op(), 1..20)) {
        let mut buffer = BytesMut::new();
        for op in &ops {
            op.encode(&mut buffer);
        }
        let parser = Parser::default();
        let mut parsed = Vec::new();
        while let Some(op) = parser.split_op(&mut buffer).unwrap() {
            parsed.push(op);
        }
        prop_assert!(buffer.is_empty());
        prop_assert_eq!(parsed, ops);
    }

    #[test]
    fn msg_and_hmsg_announce_the_sizes_they_write(
        subject in token(), sid in token(), reply in proptest::option::of(token()), body in payload(),
    ) {
        let mut out = BytesMut::new();
        encode_msg(&mut out, &subject, &sid, reply.as_deref(), &body);
        let text = out.clone();
        let line_end = text.iter().position(|byte| *byte == b'\n').unwrap();
        let size: usize = std::str::from_utf8(text[..line_end - 1].rsplit(|byte| *byte == b' ').next().unwrap())
            .unwrap().parse().unwrap();
        prop_assert_eq!(size, body.len());
        prop_assert_eq!(&text[line_end + 1..line_end + 1 + size], &body[..]);
        prop_assert_eq!(&text[line_end + 1 + size..], b"\r\n");

        let mut headers = BytesMut::new();
        encode_headers(Some((503, b"")), &[(b"K", b"v")], &mut headers).unwrap();
        let mut out = BytesMut::new();
        encode_hmsg(&mut out, &subject, &sid, reply.as_deref(), &headers, &body);
        let line_end = out.iter().position(|byte| *byte == b'\n').unwrap();
        let sizes: Vec<&[u8]> = out[..line_end - 1].rsplitn(3, |byte| *byte == b' ').take(2).collect();
        let expected = [(headers.len() + body.len()).to_string(), headers.len().to_string()];
        prop_assert_eq!(sizes, vec![expected[0].as_bytes(), expected[1].as_bytes()]);
    }

    #[test]
    fn encoded_header_blocks_parse_to_themselves(
        status in proptest::option::of((0u16..1000, "[A-Za-z]{1,3}( [A-Za-z]{1,4}){0,2}|")),
        entries in proptest::collection::vec(("[!-9;-~]{1,12}", "[ -~]{0,20}"), 0..8),
    ) {
        let entries: Vec<(String, String)> =
            entries.into_iter().map(|(key, value)| (key, value.trim_matches(' ').to_owned())).collect();
        let borrowed: Vec<(&[u8], &[u8])> = entries.iter().map(|(key, value)| (key.as_bytes(), value.as_bytes())).collect();
        let mut out = BytesMut::new();
        encode_headers(status.as_ref().map(|(code, text)| (*code, text.as_bytes())), &borrowed, &mut out).unwrap();
        let block = parse_headers(&out.freeze()).unwrap();
        prop_assert_eq!(block.status, status.as_ref().map(|(code, _)| *code));
        let description = block.description.map(|text| String::from_utf8(text.to_vec()).unwrap()).unwrap_or_default();
        prop_assert_eq!(description, status.map(|(_, text)| text).unwrap_or_default());
        let parsed: Vec<(String, String)> = block.entries.iter()
            .map(|(key, value)| (String::from_utf8(key.to_vec()).unwrap(), String::from_utf8(value.to_vec()).unwrap()))
            .collect();
        prop_assert_eq!(parsed, entries);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_splits_agree(data in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..200) {
        let parser = Parser::default();
        let whole = parser.check(&data);
        if let Ok(Some(length)) = whole {
            prop_assert!(length <= data.len());
        }
        // A prefix never errs where the whole is fine or incomplete.
        let prefix = &data[..cut.min(data.len())];
        if whole.is_ok() {
            let partial = parser.check(prefix);
            prop_assert!(partial.is_ok(), "{:?} then {:?}", partial, whole);
        }
    }
}
