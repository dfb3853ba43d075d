//! Seeds for the `handshake` fuzz target in `shard/fuzz/`: the certificate
//! selector byte (0 none, 1 `orders`' certificate, 2 `device`'s, 3 unknown),
//! then a Hello with each of the target's tokens (or a wrong one, or none),
//! followed by subscribes and then publishes inside and outside its
//! permissions, inboxes included. Run with a directory to
//! write the seeds there:
//!
//! ```text
//! FLIT_FUZZ_SEED_DIR=shard/fuzz/corpus/handshake cargo test -p flit-shard --test fuzz_seed_handshake
//! ```
//!
//! Without the variable the test checks that every seed is whole frames.

use bytes::BytesMut;
use flit_wire::{check, Check, Encoder, Hello, Limits};

fn session(certificate: u8, token: Option<&str>, subjects: &[&str], patterns: &[&str]) -> BytesMut {
    let mut encoder = Encoder::default();
    let mut out = BytesMut::new();
    out.extend_from_slice(&[certificate]);
    let hello = Hello {
        version_min: 1,
        version_max: 1,
        client_name: Some("seed".to_owned()),
        auth_token: token.map(str::to_owned),
        ack_mode: false,
    };
    encoder.hello(&mut out, &hello).expect("hello");
    for (id, pattern) in patterns.iter().enumerate() {
        encoder.subscribe(&mut out, pattern.as_bytes(), None, id as u64).expect("subscribe");
    }
    for subject in subjects {
        encoder.publish(&mut out, subject.as_bytes(), None, None, b"payload").expect("publish");
    }
    out
}

fn seeds() -> Vec<(&'static str, BytesMut)> {
    let subjects = ["orders.eu.new", "orders.eu.secret", "billing.x", "_INBOX.abc.1", "_INBOX.xyz.1"];
    let patterns = ["orders.>", "orders.*.secret", "_INBOX.abc.*", "_INBOX.>", ">", "billing.*"];
    vec![
        ("orders", session(0, Some("orders-token-0123456789"), &subjects, &patterns)),
        ("audit", session(0, Some("audit-token-9876543210"), &subjects, &patterns)),
        ("wrong-token", session(0, Some("not-a-token"), &subjects, &[])),
        ("orders-certificate-and-token", session(1, Some("orders-token-0123456789"), &subjects, &patterns)),
        ("orders-certificate-audit-token", session(1, Some("audit-token-9876543210"), &subjects, &[])),
        ("device-certificate", session(2, None, &subjects, &patterns)),
        ("unknown-certificate", session(3, None, &subjects, &[])),
    ]
}

#[test]
fn seeds_are_whole_frames() {
    let limits = Limits::default();
    for (name, seed) in seeds() {
        let mut rest = &seed[1..];
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
