//! The owner's log IO on a real ring and real files: publishes staged,
//! written and fdatasynced through io_uring (linked), answered in order, and
//! readable again after the log is reopened.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use flit_wire::{decode_publish, Encoder, Limits};

use super::definition::StreamDefinition;
use super::directory::{StreamEntry, StreamStats};
use super::owner::{OwnedStreams, PublishOutcome};
use super::ReplyTo;
use crate::mesh::RoutedMessage;
use crate::ring::{Ring, Token};

fn message(subject: &str, payload: &[u8]) -> RoutedMessage {
    let mut frame = BytesMut::new();
    Encoder::default().publish(&mut frame, subject.as_bytes(), None, None, payload).expect("encode");
    let frame: Bytes = frame.freeze();
    let parts = decode_publish(&frame, &Limits::default()).expect("decode");
    RoutedMessage::from_publish(frame, parts)
}

fn temporary_directory(name: &str) -> std::path::PathBuf {
    let directory = std::env::temp_dir().join(format!("flit-owner-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    directory
}

/// Drives the ring until `count` outcomes arrived (or 10 s pass).
fn drive_until(owned: &mut OwnedStreams, ring: &mut Ring, count: usize) -> Vec<PublishOutcome> {
    let mut outcomes = Vec::new();
    let mut completions = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while outcomes.len() < count {
        assert!(Instant::now() < deadline, "only {} of {count} answers", outcomes.len());
        owned.submit_io(ring).expect("submit");
        owned.take_outcomes(&mut outcomes);
        if outcomes.len() >= count {
            break;
        }
        ring.wait(Some(Duration::from_millis(20))).expect("wait");
        ring.drain_completions(&mut completions);
        for completion in &completions {
            let Token::Disk(key) = completion.token else { panic!("unexpected {completion:?}") };
            owned.on_disk_completion(key, completion.result, ring);
        }
    }
    outcomes
}

#[test]
fn publishes_are_answered_in_order_after_the_ring_synced_them_and_survive_a_reopen() {
    let data = temporary_directory("order");
    let entry = Arc::new(StreamEntry {
        id: 7,
        definition: StreamDefinition::new("ORDERS", &["orders.>"]),
        owner: 0,
        stats: StreamStats::default(),
    });
    let mut ring = Ring::new().expect("io_uring");
    let mut owned = OwnedStreams::new(data.clone());
    owned.open(entry.clone());
    assert_eq!(entry.stats.status(), "");
    let count = 300;
    let mut answered = Vec::new();
    // In waves, so later appends meet a commit in flight (group commit).
    for wave in 0..3 {
        for index in 0..count / 3 {
            let number = wave * (count / 3) + index;
            let reply_to = ReplyTo { shard: 0, connection: 1, tag: number as u64 + 1 };
            owned.append(7, &message("orders.new", format!("order {number}").as_bytes()), Some(reply_to));
        }
        answered.extend(drive_until(&mut owned, &mut ring, count / 3));
    }
    assert_eq!(answered.len(), count);
    for (index, outcome) in answered.iter().enumerate() {
        assert_eq!(outcome.code, 0, "{outcome:?}");
        assert_eq!(outcome.sequence, index as u64 + 1, "answers in sequence order");
        assert_eq!(outcome.reply_to.tag, index as u64 + 1, "each publisher gets its own sequence");
    }
    let commits = entry.stats.commits.load(std::sync::atomic::Ordering::Relaxed);
    assert!(commits < count as u64, "group commit: {commits} commits for {count} publishes");
    assert_eq!(entry.stats.sync_latency.count(), commits, "one fdatasync latency sample per commit");
    assert_eq!(entry.stats.last_sequence.load(std::sync::atomic::Ordering::Relaxed), count as u64);
    let read = owned.read_batch(7, 1, 1000, usize::MAX).expect("read");
    assert_eq!(read.len(), count);
    assert_eq!(&read[42].payload[..], b"order 42");
    // Reopen from the files alone.
    drop(owned);
    let mut reopened = OwnedStreams::new(data.clone());
    reopened.open(entry.clone());
    let read = reopened.read_batch(7, 1, 1000, usize::MAX).expect("read after reopen");
    assert_eq!(read.len(), count);
    assert_eq!(&read[count - 1].payload[..], format!("order {}", count - 1).as_bytes());
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_stream_whose_log_does_not_open_refuses_with_its_reason() {
    let data = temporary_directory("broken");
    let entry = Arc::new(StreamEntry {
        id: 3,
        definition: StreamDefinition::new("BROKEN", &["broken.>"]),
        owner: 0,
        stats: StreamStats::default(),
    });
    // The log's directory is a file: the log cannot open.
    let log_directory = OwnedStreams::stream_directory(&data, "BROKEN").join("log");
    std::fs::create_dir_all(log_directory.parent().expect("parent")).expect("mkdir");
    std::fs::write(&log_directory, b"not a directory").expect("write");
    let mut ring = Ring::new().expect("io_uring");
    let mut owned = OwnedStreams::new(data.clone());
    owned.open(entry.clone());
    assert!(!entry.stats.status().is_empty(), "the status says why");
    owned.append(3, &message("broken.x", b"x"), Some(ReplyTo { shard: 0, connection: 1, tag: 9 }));
    let outcomes = drive_until(&mut owned, &mut ring, 1);
    assert_eq!(outcomes[0].code, super::owner::codes::UNAVAILABLE, "{outcomes:?}");
    let _ = std::fs::remove_dir_all(&data);
}
