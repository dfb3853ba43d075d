//! What subscriptions cost the server, measured from outside, and the limit
//! on their bytes.
//!
//! Memory: one connection subscribes 10,000 distinct subjects of 1, 4 and 32
//! tokens on a one-shard server (so both tries, the subscription trie and
//! the interest table, live in the process measured), and the server's RSS
//! (`/proc/PID/status`) is read before and after; then everything is
//! unsubscribed and the RSS read again. The bound asserted (2 KiB per
//! subscription even at 32 tokens) leaves a wide margin over what a compact
//! trie costs and fails on node-per-token hash maps (about 31 KB at 32
//! tokens). docs/OPERATIONS.md quotes the numbers this prints.
//!
//! Limits: `limits.subscription_bytes_max` (per connection) and
//! `limits.identity_subscription_bytes_max` (one identity's connections on
//! every shard together) refuse the subscribe that would pass them with
//! `too_many_subscriptions` (301) and close the connection, like the
//! subscription count limit; unsubscribing and disconnecting give the bytes
//! back.

mod common;

use bytes::BytesMut;
use common::{FlitServer, RawConnection};
use flit_wire::{Encoder, Frame, Op, Unsubscribe};

const SUBSCRIPTIONS: usize = 10_000;
/// Asserted bound on RSS per subscription, with a wide margin.
const RSS_PER_SUBSCRIPTION_BYTES_MAX: u64 = 2048;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmRSS in KiB")
}

/// Subject `index` of `tokens` tokens: a distinct first token, then `t1`, `t2`, ...
fn subject(index: usize, tokens: usize) -> String {
    let mut subject = format!("s{index}");
    for token in 1..tokens {
        subject.push_str(&format!(".t{token}"));
    }
    subject
}

/// Sends `frames` then a Ping, and waits for the Pong: everything before it
/// was applied.
fn send_and_sync(connection: &mut RawConnection, mut frames: BytesMut) {
    Encoder::bare(&mut frames, Op::Ping);
    connection.send(&frames);
    match connection.read_frame() {
        Some(Frame::Pong) => {}
        other => panic!("expected Pong, got {other:?}"),
    }
}

struct Measured {
    subject_bytes: usize,
    per_subscription_bytes: u64,
    retained_bytes_after_unsubscribe: i64,
}

fn measure(tokens: usize) -> Measured {
    let server = FlitServer::start(1, &[]);
    let mut connection = RawConnection::connect(server.address);
    let mut encoder = Encoder::default();
    // Settle: one subscribe and unsubscribe, so what the first ones
    // allocate once (tables, buffers) is not counted per subscription.
    let mut frames = BytesMut::new();
    encoder.subscribe(&mut frames, b"warm.up", None, 1).expect("encode");
    encoder.unsubscribe(&mut frames, Unsubscribe { subscription_id: 1, after_messages: 0 }).expect("encode");
    send_and_sync(&mut connection, frames);
    let before_kib = rss_kib(server.pid());
    let mut frames = BytesMut::new();
    for index in 0..SUBSCRIPTIONS {
        encoder.subscribe(&mut frames, subject(index, tokens).as_bytes(), None, index as u64 + 10).expect("encode");
    }
    send_and_sync(&mut connection, frames);
    let subscribed_kib = rss_kib(server.pid());
    let mut frames = BytesMut::new();
    for index in 0..SUBSCRIPTIONS {
        let unsubscribe = Unsubscribe { subscription_id: index as u64 + 10, after_messages: 0 };
        encoder.unsubscribe(&mut frames, unsubscribe).expect("encode");
    }
    send_and_sync(&mut connection, frames);
    let unsubscribed_kib = rss_kib(server.pid());
    let subject_bytes = subject(SUBSCRIPTIONS / 2, tokens).len();
    let per_subscription_bytes = subscribed_kib.saturating_sub(before_kib) * 1024 / SUBSCRIPTIONS as u64;
    let retained_bytes_after_unsubscribe = (unsubscribed_kib as i64 - before_kib as i64) * 1024;
    println!(
        "subscription_memory: tokens={tokens} subject_bytes={subject_bytes} rss_per_subscription_bytes={per_subscription_bytes} \
         rss_kib before={before_kib} subscribed={subscribed_kib} unsubscribed={unsubscribed_kib}"
    );
    Measured { subject_bytes, per_subscription_bytes, retained_bytes_after_unsubscribe }
}

#[test]
fn a_subscription_costs_about_its_bytes_not_its_tokens() {
    let measured: Vec<(usize, Measured)> = [1, 4, 32].into_iter().map(|tokens| (tokens, measure(tokens))).collect();
    for (tokens, measured) in &measured {
        assert!(
            measured.per_subscription_bytes <= RSS_PER_SUBSCRIPTION_BYTES_MAX,
            "{tokens} tokens ({} bytes): {} bytes of RSS per subscription, over {RSS_PER_SUBSCRIPTION_BYTES_MAX}",
            measured.subject_bytes,
            measured.per_subscription_bytes
        );
        println!(
            "subscription_memory: tokens={tokens} retained after unsubscribing all: {} KiB",
            measured.retained_bytes_after_unsubscribe / 1024
        );
    }
}
