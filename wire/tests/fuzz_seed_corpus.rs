//! One valid frame of every op, written with the public `Encoder`, as the seed
//! corpus of the fuzz target in `wire/fuzz/`. Run with a directory to write
//! the seeds there:
//!
//! ```text
//! FLIT_FUZZ_SEED_DIR=wire/fuzz/corpus/check_decode cargo test -p flit-wire --test fuzz_seed_corpus
//! ```
//!
//! Without the variable the test only checks that every seed is one whole frame.

use bytes::BytesMut;
use flit_wire::{
    check, encode_headers, Check, Encoder, ErrorCode, Hello, Limits, Op, Unsubscribe, Welcome, STATUS_NO_RESPONDERS,
};

fn seeds() -> Vec<(&'static str, BytesMut)> {
    let mut encoder = Encoder::default();
    let mut seeds = Vec::new();
    let mut seed = |name: &'static str, write: &mut dyn FnMut(&mut Encoder, &mut BytesMut)| {
        let mut out = BytesMut::new();
        write(&mut encoder, &mut out);
        seeds.push((name, out));
    };
    let headers = encode_headers(&[("content-type", "application/json"), ("trace", "7f3a")]).expect("two entries");
    seed("hello", &mut |encoder, out| {
        let hello = Hello {
            version_min: 1,
            version_max: 1,
            client_name: Some("seed@fuzz".to_owned()),
            auth_token: Some("token".to_owned()),
            ack_mode: true,
        };
        encoder.hello(out, &hello).expect("encodes");
    });
    seed("welcome", &mut |encoder, out| {
        let welcome = Welcome {
            version: 1,
            server_name: "flit".to_owned(),
            shard: 1,
            shards: 4,
            payload_bytes_max: 1 << 20,
            meta_bytes_max: 65535,
            pending_bytes_max: 64 << 20,
            subscriptions_max: 1024,
        };
        encoder.welcome(out, &welcome).expect("encodes");
    });
    seed("publish", &mut |encoder, out| {
        encoder.publish(out, b"orders.eu.created", None, None, b"{\"id\":1}").expect("encodes");
    });
    seed("publish_reply_headers", &mut |encoder, out| {
        encoder.publish(out, b"orders.get", Some(b"_INBOX.a1b2"), Some(&headers), b"payload").expect("encodes");
    });
    seed("subscribe", &mut |encoder, out| {
        encoder.subscribe(out, b"orders.*.created", None, 7).expect("encodes");
    });
    seed("subscribe_queue", &mut |encoder, out| {
        encoder.subscribe(out, b"orders.>", Some(b"workers"), 8).expect("encodes");
    });
    seed("unsubscribe", &mut |encoder, out| {
        encoder.unsubscribe(out, Unsubscribe { subscription_id: 7, after_messages: 3 }).expect("encodes");
    });
    seed("deliver", &mut |encoder, out| {
        let meta = encoder.deliver_meta(b"orders.eu.created", Some(b"_INBOX.x"), Some(&headers), 0).expect("encodes");
        Encoder::deliver(out, 7, meta, b"{\"id\":1}").expect("encodes");
    });
    seed("deliver_no_responders", &mut |encoder, out| {
        let meta = encoder.deliver_meta(b"_INBOX.a1b2", None, None, STATUS_NO_RESPONDERS).expect("encodes");
        Encoder::deliver(out, 9, meta, b"").expect("encodes");
    });
    seed("ping", &mut |_, out| Encoder::bare(out, Op::Ping));
    seed("pong", &mut |_, out| Encoder::bare(out, Op::Pong));
    seed("ok", &mut |_, out| Encoder::bare(out, Op::Ok));
    seed("error", &mut |encoder, out| {
        encoder.error(out, ErrorCode::InvalidSubject, "wildcard in a publish subject").expect("encodes");
    });
    // A stream of several frames, as a connection would carry them.
    let stream: Vec<u8> = seeds.iter().flat_map(|(_, bytes)| bytes.iter().copied()).collect();
    seeds.push(("stream_of_every_op", BytesMut::from(&stream[..])));
    seeds
}

#[test]
fn every_seed_is_whole_frames_and_is_written_when_asked() {
    let frame_bytes_max = Limits::default().frame_bytes_max();
    let seeds = seeds();
    for (name, bytes) in &seeds {
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let Check::Complete(length) = check(rest, frame_bytes_max) else {
                panic!("seed {name} is not whole frames");
            };
            rest = &rest[length..];
        }
    }
    if let Some(dir) = std::env::var_os("FLIT_FUZZ_SEED_DIR") {
        // A relative directory is taken from the repository root, not from
        // this crate's directory (where cargo runs the test).
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
        std::fs::create_dir_all(&dir).expect("create the seed directory");
        for (name, bytes) in &seeds {
            std::fs::write(std::path::Path::new(&dir).join(name), bytes).expect("write a seed");
        }
    }
}
