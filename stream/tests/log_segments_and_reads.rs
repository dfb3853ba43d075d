//! Segment roll, reads across segments (by sequence, in batches, by time),
//! reads limited to acknowledged messages, and a reopen rebuilding indexes.

mod log_support;

use flit_stream::fault_disk::FaultDisk;
use flit_stream::log::{AppendError, Durability};
use flit_stream::segment::{parse_segment_name, segment_name};
use log_support::*;

fn filled(disk: &mut FaultDisk, count: u64) -> flit_stream::log::StreamLog {
    let (mut log, _) = open(disk, small_config(Durability::Always));
    for index in 0..count {
        let payload = payload_for(index + 1, 40 + (index as usize * 37) % 400);
        let sequence = log.append(disk, START_NS + index * SECOND_NS, &subject_for(index + 1), b"h", &payload);
        assert_eq!(sequence, Ok(index + 1));
        if index % 5 == 4 {
            drive(&mut log, disk);
        }
    }
    drive(&mut log, disk);
    log
}

#[test]
fn segments_roll_named_by_first_sequence_and_batches_never_span_two() {
    let mut disk = FaultDisk::new(1);
    let log = filled(&mut disk, 120);
    let info = log.info();
    assert_eq!((info.first_sequence, info.last_sequence, info.messages), (1, 120, 120));
    assert!(info.segments >= 5, "{} segments", info.segments);
    let mut names: Vec<u64> =
        disk.durable_paths().iter().filter_map(|path| parse_segment_name(path.file_name()?.to_str()?)).collect();
    names.sort_unstable();
    assert_eq!(names.len(), info.segments);
    assert_eq!(names[0], 1);
    assert_eq!(segment_name(1), "00000000000000000001.seg");
    // Each segment starts where the previous one ended: read the first
    // message of each and check it carries the name's sequence.
    for first in &names {
        let message = log.read(&mut disk, *first).unwrap().expect("present");
        assert_eq!(message.sequence, *first);
    }
    for window in names.windows(2) {
        let last_of_previous = log.read(&mut disk, window[1] - 1).unwrap().expect("present");
        assert_eq!(last_of_previous.sequence + 1, window[1]);
    }
}

#[test]
fn reads_by_sequence_and_in_batches_cross_segments() {
    let mut disk = FaultDisk::new(2);
    let log = filled(&mut disk, 150);
    for sequence in [1, 2, 17, 64, 99, 150] {
        let message = log.read(&mut disk, sequence).unwrap().expect("present");
        assert_eq!(message.sequence, sequence);
        assert_eq!(&message.subject[..], &subject_for(sequence)[..]);
        assert!(message.payload.starts_with(format!("m{sequence}:").as_bytes()));
        assert_eq!(&message.headers[..], b"h");
    }
    assert_eq!(log.read(&mut disk, 0).unwrap(), None);
    assert_eq!(log.read(&mut disk, 151).unwrap(), None);
    let batch = log.read_batch(&mut disk, 10, 100, usize::MAX).unwrap();
    assert_eq!(batch.len(), 100);
    assert!(batch.iter().enumerate().all(|(index, message)| message.sequence == 10 + index as u64));
    let small = log.read_batch(&mut disk, 10, 100, 300).unwrap();
    let small_bytes: usize = small.iter().map(|m| m.subject.len() + m.headers.len() + m.payload.len()).sum();
    assert!(!small.is_empty() && small_bytes <= 300.max(small[0].payload.len() + 20), "{small_bytes}");
    let one = log.read_batch(&mut disk, 10, 100, 1).unwrap();
    assert_eq!(one.len(), 1, "at least one message even over bytes_max");
    let tail = log.read_batch(&mut disk, 140, 100, usize::MAX).unwrap();
    assert_eq!(tail.len(), 11);
    assert_contiguous(&log, &read_all(&log, &mut disk, 1000), "all");
}

#[test]
fn time_index_finds_the_first_message_at_or_after_a_time() {
    let mut disk = FaultDisk::new(3);
    let log = filled(&mut disk, 150);
    // Message n was appended at START_NS + (n - 1) seconds.
    for sequence in [1u64, 2, 50, 77, 150] {
        let at = START_NS + (sequence - 1) * SECOND_NS;
        assert_eq!(log.sequence_at_or_after_time(&mut disk, at).unwrap(), Some(sequence));
        assert_eq!(log.sequence_at_or_after_time(&mut disk, at - SECOND_NS / 2).unwrap(), Some(sequence));
    }
    assert_eq!(log.sequence_at_or_after_time(&mut disk, 0).unwrap(), Some(1));
    assert_eq!(log.sequence_at_or_after_time(&mut disk, START_NS + 150 * SECOND_NS).unwrap(), None);
}

#[test]
fn timestamps_never_go_backwards_even_when_the_clock_does() {
    let mut disk = FaultDisk::new(4);
    let (mut log, _) = open(&mut disk, small_config(Durability::Always));
    log.append(&mut disk, START_NS + 10, b"a", b"", b"1").unwrap();
    log.append(&mut disk, START_NS, b"a", b"", b"2").unwrap();
    drive(&mut log, &mut disk);
    let all = read_all(&log, &mut disk, 10);
    assert_eq!(all[1].timestamp_ns, START_NS + 10);
}

#[test]
fn only_acknowledged_messages_are_readable() {
    let mut disk = FaultDisk::new(5);
    let (mut log, _) = open(&mut disk, small_config(Durability::Always));
    log.append(&mut disk, START_NS, b"a", b"", b"1").unwrap();
    drive(&mut log, &mut disk);
    log.append(&mut disk, START_NS, b"a", b"", b"2").unwrap();
    assert_eq!(log.read(&mut disk, 2).unwrap(), None, "staged, not acknowledged");
    assert_eq!(log.read_batch(&mut disk, 1, 10, usize::MAX).unwrap().len(), 1);
    drive(&mut log, &mut disk);
    assert_eq!(log.read(&mut disk, 2).unwrap().map(|m| m.sequence), Some(2));
}

#[test]
fn reopen_rebuilds_the_indexes_and_continues_the_sequence() {
    let mut disk = FaultDisk::new(6);
    let log = filled(&mut disk, 90);
    let before = read_all(&log, &mut disk, 1000);
    log.close(&mut disk);
    let (mut log, report) = open(&mut disk, small_config(Durability::Always));
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.messages, 90);
    assert_eq!(read_all(&log, &mut disk, 7), before);
    assert_eq!(log.sequence_at_or_after_time(&mut disk, START_NS + 40 * SECOND_NS).unwrap(), Some(41));
    assert_eq!(log.append(&mut disk, START_NS + 100 * SECOND_NS, b"a", b"", b"after"), Ok(91));
    drive(&mut log, &mut disk);
    assert_eq!(&log.read(&mut disk, 91).unwrap().expect("present").payload[..], b"after");
}

#[test]
fn a_message_that_cannot_fit_a_segment_is_refused() {
    let mut disk = FaultDisk::new(7);
    let (mut log, _) = open(&mut disk, small_config(Durability::Always));
    let huge = vec![0u8; 5000];
    assert!(matches!(log.append(&mut disk, START_NS, b"a", b"", &huge), Err(AppendError::MessageTooLarge { .. })));
    assert_eq!(log.append(&mut disk, START_NS, b"a", b"", b"ok"), Ok(1), "no sequence was used");
}

#[test]
fn pending_bytes_are_bounded() {
    let mut disk = FaultDisk::new(8);
    let mut config = small_config(Durability::Always);
    config.segment_bytes = 1 << 20;
    config.pending_bytes_max = 4096;
    let (mut log, _) = open(&mut disk, config);
    let payload = vec![1u8; 400];
    let mut accepted = 0;
    let refused = loop {
        match log.append(&mut disk, START_NS, b"a", b"", &payload) {
            Ok(_) => accepted += 1,
            Err(error) => break error,
        }
    };
    assert!(matches!(refused, AppendError::PendingFull { .. }), "{refused:?}");
    assert!((8..=10).contains(&accepted), "{accepted}");
    drive(&mut log, &mut disk);
    assert!(log.append(&mut disk, START_NS, b"a", b"", &payload).is_ok(), "room again once acknowledged");
}

#[test]
fn segment_names_are_twenty_digits_from_one() {
    assert_eq!(parse_segment_name("00000000000000000042.seg"), Some(42));
    assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
    for stray in ["00000000000000000000.seg", "42.seg", "0000000000000000004x.seg", "00000000000000000042.tmp"] {
        assert_eq!(parse_segment_name(stray), None, "{stray}");
    }
}
