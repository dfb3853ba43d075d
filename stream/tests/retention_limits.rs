//! Retention by each limit under both discard policies, on disk (whole
//! segments, never the active one) and in memory (single messages).

mod log_support;

use std::time::Duration;

use flit_stream::fault_disk::FaultDisk;
use flit_stream::log::{AppendError, Durability, LogConfig, StreamLog};
use flit_stream::retention::{Discard, Limit, Retention};
use log_support::*;

const PAYLOAD_BYTES: usize = 100;
/// Record bytes of one test message: header 36 + subject 8 + payload, aligned.
const RECORD_BYTES: u64 = 144;

fn config_with(durability: Durability, retention: Retention) -> LogConfig {
    let mut config = small_config(durability);
    config.retention = retention;
    config
}

/// Appends `count` messages one second apart, driving IO as it goes.
fn append_many(
    log: &mut StreamLog,
    disk: &mut FaultDisk,
    first_label: u64,
    count: u64,
) -> Vec<Result<u64, AppendError>> {
    let mut answers = Vec::new();
    for label in first_label..first_label + count {
        let now = START_NS + label * SECOND_NS;
        answers.push(log.append(disk, now, b"orders.x", b"", &payload_for(label, PAYLOAD_BYTES)));
        drive(log, disk);
        log.tick(disk, now);
    }
    answers
}

fn segment_files(disk: &FaultDisk) -> usize {
    disk.durable_paths().iter().filter(|path| path.extension().is_some_and(|ext| ext == "seg")).count()
}

#[test]
fn max_messages_discard_old_deletes_whole_oldest_segments() {
    let mut disk = FaultDisk::new(1);
    let retention = Retention { messages_max: Some(60), ..Retention::default() };
    let (mut log, _) = open(&mut disk, config_with(Durability::Always, retention));
    assert!(append_many(&mut log, &mut disk, 1, 300).iter().all(Result::is_ok));
    let info = log.info();
    let per_segment = (4096 / RECORD_BYTES) + 1;
    assert!(info.messages <= 60 + per_segment, "{info:?}");
    assert!(info.messages >= 60 - per_segment, "{info:?}");
    assert_eq!(info.last_sequence, 300);
    assert!(info.first_sequence > 1);
    assert_eq!(segment_files(&disk), info.segments, "deleted files are gone");
    assert_eq!(log.read(&mut disk, 1).unwrap(), None, "deleted");
    assert_eq!(log.read_batch(&mut disk, 1, 10, usize::MAX).unwrap()[0].sequence, info.first_sequence);
    assert_contiguous(&log, &read_all(&log, &mut disk, 50), "retained");
    log.close(&mut disk);
    let (log, report) = open(&mut disk, config_with(Durability::Always, Retention::default()));
    assert!(report.is_clean());
    assert_eq!(log.info().first_sequence, info.first_sequence, "a reopened log starts at the oldest kept");
}

#[test]
fn max_bytes_discard_old_keeps_the_active_segment() {
    let mut disk = FaultDisk::new(2);
    let retention = Retention { bytes_max: Some(3 * 4096), ..Retention::default() };
    let (mut log, _) = open(&mut disk, config_with(Durability::Always, retention));
    append_many(&mut log, &mut disk, 1, 400);
    let info = log.info();
    assert!(info.bytes <= 4 * 4096, "{info:?}");
    assert!(info.segments >= 2 && info.segments <= 4, "{info:?}");
    // A limit below one segment: the active segment is never deleted.
    let mut disk = FaultDisk::new(3);
    let retention = Retention { bytes_max: Some(100), ..Retention::default() };
    let (mut log, _) = open(&mut disk, config_with(Durability::Always, retention));
    append_many(&mut log, &mut disk, 1, 100);
    let info = log.info();
    assert_eq!(info.segments, 1);
    assert_eq!(info.last_sequence, 100);
}

#[test]
fn max_age_deletes_segments_whose_newest_message_is_too_old_under_either_policy() {
    for discard in [Discard::Old, Discard::New] {
        let mut disk = FaultDisk::new(4);
        let retention = Retention { age_max: Some(Duration::from_secs(60)), discard, ..Retention::default() };
        let (mut log, _) = open(&mut disk, config_with(Durability::Always, retention));
        append_many(&mut log, &mut disk, 1, 200);
        let info = log.info();
        assert!(info.first_sequence > 100, "{discard:?}: {info:?}");
        // Nothing appended for an hour: everything but the active segment goes.
        log.tick(&mut disk, START_NS + 3600 * SECOND_NS);
        let later = log.info();
        assert_eq!(later.segments, 1, "{discard:?}");
        assert_eq!(later.last_sequence, 200);
    }
}

#[test]
fn discard_new_refuses_at_the_message_and_byte_limits() {
    let mut disk = FaultDisk::new(5);
    let retention = Retention { messages_max: Some(10), discard: Discard::New, ..Retention::default() };
    let (mut log, _) = open(&mut disk, config_with(Durability::Always, retention));
    let answers = append_many(&mut log, &mut disk, 1, 12);
    assert!(answers[..10].iter().all(Result::is_ok));
    assert_eq!(answers[10], Err(AppendError::LimitReached(Limit::Messages)));
    assert_eq!(log.next_sequence(), 11, "a refused append takes no sequence");

    let mut disk = FaultDisk::new(6);
    let retention =
        Retention { bytes_max: Some(5 * RECORD_BYTES + 40 * 5), discard: Discard::New, ..Retention::default() };
    let (mut log, _) = open(&mut disk, config_with(Durability::Always, retention));
    let answers = append_many(&mut log, &mut disk, 1, 10);
    let accepted = answers.iter().filter(|answer| answer.is_ok()).count();
    assert!((4..=6).contains(&accepted), "{accepted}");
    assert_eq!(answers.last(), Some(&Err(AppendError::LimitReached(Limit::Bytes))));
}

#[test]
fn max_message_size_is_always_refused_with_its_own_error() {
    for discard in [Discard::Old, Discard::New] {
        for durability in [Durability::Always, Durability::Memory] {
            let mut disk = FaultDisk::new(7);
            let retention = Retention { message_bytes_max: Some(64), discard, ..Retention::default() };
            let (mut log, _) = open(&mut disk, config_with(durability, retention));
            let refused = log.append(&mut disk, START_NS, b"s", &[1; 10], &[2; 60]);
            assert_eq!(refused, Err(AppendError::MessageTooLarge { bytes: 70, limit: 64 }), "{durability:?}");
            assert_eq!(log.append(&mut disk, START_NS, b"s", &[1; 4], &[2; 60]), Ok(1));
        }
    }
}

#[test]
fn memory_ring_drops_single_messages_or_refuses() {
    let mut disk = FaultDisk::new(8);
    let retention = Retention { messages_max: Some(5), ..Retention::default() };
    let (mut log, _) = open(&mut disk, config_with(Durability::Memory, retention));
    append_many(&mut log, &mut disk, 1, 12);
    let info = log.info();
    assert_eq!((info.first_sequence, info.last_sequence, info.messages), (8, 12, 5));
    assert_contiguous(&log, &read_all(&log, &mut disk, 2), "memory");

    let retention = Retention { bytes_max: Some(3 * RECORD_BYTES), ..Retention::default() };
    let (mut log, _) = open(&mut disk, config_with(Durability::Memory, retention));
    append_many(&mut log, &mut disk, 1, 10);
    assert_eq!(log.info().messages, 3);
    assert_eq!(log.info().bytes, 3 * RECORD_BYTES);

    let retention = Retention { age_max: Some(Duration::from_secs(5)), ..Retention::default() };
    let (mut log, _) = open(&mut disk, config_with(Durability::Memory, retention));
    append_many(&mut log, &mut disk, 1, 20);
    let info = log.info();
    assert!(info.messages <= 6 && info.last_sequence == 20, "{info:?}");

    let retention = Retention { messages_max: Some(3), discard: Discard::New, ..Retention::default() };
    let (mut log, _) = open(&mut disk, config_with(Durability::Memory, retention));
    let answers = append_many(&mut log, &mut disk, 1, 4);
    assert_eq!(answers[3], Err(AppendError::LimitReached(Limit::Messages)));
}
