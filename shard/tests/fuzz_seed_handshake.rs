//! Seeds for the `handshake` fuzz target in `shard/fuzz/`: a Hello with each
//! of the target's tokens (and a wrong one), followed by publishes and
//! subscribes inside and outside its permissions. Run with a directory to
//! write the seeds there:
//!
//! ```text
//! FLIT_FUZZ_SEED_DIR=shard/fuzz/corpus/handshake cargo test -p flit-shard --test fuzz_seed_handshake
//! ```
//!
//! Without the variable the test checks that every seed is whole frames.

use bytes::BytesMut;
use flit_wire::{check, Check, Encoder, Hello, Limits};

fn session(token: &str, subjects: &[&str], patterns: &[&str]) -> BytesMut {
    let mut encoder = Encoder::default();
    let mut out = BytesMut::new();
    let hello = Hello {
        version_min: 1,
        version_max: 1,
        client_name: Some("seed".to_owned()),
        auth_token: Some(token.to_owned()),
        ack_mode: false,
    };
    encoder.hello(&mut out, &hello).expect("hello");
    for subject in subjects {
        encoder.publish(&mut out, subject.as_bytes(), None, None, b"payload").expect("publish");
    }
    for (id, pattern) in patterns.iter().enumerate() {
        encoder.subscribe(&mut out, pattern.as_bytes(), None, id as u64).expect("subscribe");
    }
    out
}

fn seeds() -> Vec<(&'static str, BytesMut)> {
    let subjects = ["orders.eu.new", "orders.eu.secret", "billing.x", "_INBOX.abc.1"];
    let patterns = ["orders.>", "orders.*.secret", "_INBOX.abc.*", "_INBOX.>", ">", "billing.*"];
    vec![
        ("orders", session("orders-token-0123456789", &subjects, &patterns)),
        ("audit", session("audit-token-9876543210", &subjects, &patterns)),
        ("wrong-token", session("not-a-token", &subjects, &[])),
    ]
}

#[test]
fn seeds_are_whole_frames() {
    let limits = Limits::default();
    for (name, seed) in seeds() {
        let mut rest = &seed[..];
        while !rest.is_empty() {
            match check(rest, limits.frame_bytes_max()) {
                Check::Complete(length) => rest = &rest[length..],
                other => panic!("{name}: {other:?}"),
            }
        }
        if let Some(directory) = std::env::var_os("FLIT_FUZZ_SEED_DIR") {
            // A relative directory is taken from the repository root.
            let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(directory);
            std::fs::create_dir_all(&directory).expect("seed directory");
            std::fs::write(directory.join(name), &seed).expect("write seed");
        }
    }
}
