//! Recovery at open: a torn tail is cut and reported, corruption before
//! durable data is refused naming the file and offset, gaps are
//! corruption, stray segment files are handled.

mod log_support;

use std::path::Path;

use flit_stream::disk::Disk;
use flit_stream::fault_disk::FaultDisk;
use flit_stream::log::{Durability, StreamLog};
use flit_stream::record::{self, Check, RecordHeader, RecordKind};
use log_support::*;

/// (offset, header) of each record in a durable segment image.
fn records(disk: &FaultDisk, path: &Path) -> Vec<(u64, RecordHeader)> {
    let image = disk.durable_contents(path).expect("durable");
    let mut found = Vec::new();
    let mut offset = 0;
    while let Check::Complete(length) = record::check(&image[offset..]) {
        found.push((offset as u64, record::header(&image[offset..]).expect("valid")));
        offset += length;
    }
    found
}

/// Appends `count` messages, one commit each (so each is followed by later
/// commits), all acknowledged.
fn committed(disk: &mut FaultDisk, count: u64) -> StreamLog {
    let (mut log, _) = open(disk, small_config(Durability::Always));
    for index in 0..count {
        log.append(disk, START_NS + index, &subject_for(index), b"", &payload_for(index, 100)).unwrap();
        drive(&mut log, disk);
    }
    assert_eq!(acked_ranges(&events(&mut log)).len() as u64, count);
    log
}

#[test]
fn a_torn_last_record_is_cut_reported_and_the_cut_is_durable() {
    let mut disk = FaultDisk::new(1);
    let log = committed(&mut disk, 5);
    let end = log.info().bytes;
    log.close(&mut disk);
    // A crash mid-write: the next commit's marker and half a record.
    let mut torn = record::encode_commit_marker(5).to_vec();
    record::encode_into(&mut torn, 6, START_NS, b"s", b"", &[9u8; 200]).unwrap();
    let half = torn.len() / 2;
    let file = disk.open(&segment_path(1), false).unwrap();
    disk.write_at(file, end, &torn[..half]).unwrap();
    disk.sync_data(file).unwrap();
    disk.close(file);
    let (mut log, report) = open(&mut disk, small_config(Durability::Always));
    assert_eq!(report.truncations.len(), 1, "{report:?}");
    let cut = &report.truncations[0];
    assert_eq!((cut.file.as_path(), cut.offset), (segment_path(1).as_path(), end));
    assert!(cut.bytes_dropped > 0 && cut.bytes_dropped <= half as u64, "{cut:?}");
    assert_eq!(log.info().last_sequence, 5);
    assert_eq!(log.append(&mut disk, START_NS, b"s", b"", b"next"), Ok(6));
    drive(&mut log, &mut disk);
    log.close(&mut disk);
    let (log, report) = open(&mut disk, small_config(Durability::Always));
    assert!(report.is_clean(), "the cut left zeros: {report:?}");
    assert_eq!(log.info().last_sequence, 6);
}

#[test]
fn a_flipped_bit_in_a_synced_record_followed_by_later_commits_is_corruption() {
    let mut disk = FaultDisk::new(2);
    committed(&mut disk, 6).close(&mut disk);
    let path = segment_path(1);
    let listed = records(&disk, &path);
    let (offset, header) =
        listed.iter().find(|(_, header)| header.sequence == 3 && header.kind == RecordKind::Message).unwrap();
    disk.flip_bit(&path, offset + 40 + 2, 5).unwrap();
    let (file, at) = expect_corrupt(StreamLog::open(&mut disk, small_config(Durability::Always)));
    assert_eq!((file, at), (path.clone(), *offset), "{header:?}");
    // Nothing was changed on disk: the same answer again.
    let (_, again) = expect_corrupt(StreamLog::open(&mut disk, small_config(Durability::Always)));
    assert_eq!(again, *offset);
}

#[test]
fn a_flipped_bit_in_a_commit_marker_or_a_length_field_is_corruption_too() {
    for (target, byte) in [(RecordKind::CommitMarker, 12u64), (RecordKind::Message, 1)] {
        let mut disk = FaultDisk::new(3);
        committed(&mut disk, 6).close(&mut disk);
        let path = segment_path(1);
        let listed = records(&disk, &path);
        let (offset, _) = listed.iter().filter(|(_, header)| header.kind == target).nth(2).unwrap();
        disk.flip_bit(&path, offset + byte, 3).unwrap();
        let (file, at) = expect_corrupt(StreamLog::open(&mut disk, small_config(Durability::Always)));
        assert_eq!((file, at), (path, *offset), "{target:?}");
    }
}

#[test]
fn corruption_in_an_old_segment_names_that_segment() {
    let mut disk = FaultDisk::new(4);
    let log = committed(&mut disk, 60);
    assert!(log.info().segments >= 2);
    log.close(&mut disk);
    let path = segment_path(1);
    let (offset, _) = records(&disk, &path)[5];
    disk.flip_bit(&path, offset + 20, 0).unwrap();
    let (file, at) = expect_corrupt(StreamLog::open(&mut disk, small_config(Durability::Always)));
    assert_eq!((file, at), (path, offset));
}

#[test]
fn a_flipped_bit_in_the_last_commit_cannot_be_told_from_a_torn_write_and_is_cut_and_reported() {
    let mut disk = FaultDisk::new(5);
    committed(&mut disk, 4).close(&mut disk);
    let path = segment_path(1);
    let (offset, header) = *records(&disk, &path).last().unwrap();
    assert_eq!(header.sequence, 4);
    disk.flip_bit(&path, offset + 44, 1).unwrap();
    let (log, report) = open(&mut disk, small_config(Durability::Always));
    assert_eq!(report.truncations.len(), 1);
    // Cut at the start of that commit: its marker goes with it.
    assert_eq!(report.truncations[0].offset, offset - record::RECORD_BYTES_MIN as u64);
    assert!(report.truncations[0].bytes_dropped > 0, "reported, never silent");
    assert_eq!(log.info().last_sequence, 3);
}

#[test]
fn a_missing_middle_segment_is_a_gap_and_a_gap_is_corruption() {
    let mut disk = FaultDisk::new(6);
    let log = committed(&mut disk, 80);
    assert!(log.info().segments >= 3);
    log.close(&mut disk);
    let mut names = disk.durable_paths();
    names.sort();
    disk.remove(&names[1]).unwrap();
    disk.sync_directory(&directory()).unwrap();
    let (file, _) = expect_corrupt(StreamLog::open(&mut disk, small_config(Durability::Always)));
    assert_eq!(file, names[0], "the damage is where the chain stops");
}

#[test]
fn stray_files_are_ignored_and_an_empty_trailing_segment_from_a_crashed_roll_is_removed() {
    let mut disk = FaultDisk::new(7);
    let log = committed(&mut disk, 5);
    log.close(&mut disk);
    for name in ["notes.txt", "00000000000000000099.seg"] {
        let file = disk.open(&directory().join(name), true).unwrap();
        disk.allocate(file, 4096).unwrap();
        disk.close(file);
    }
    disk.sync_directory(&directory()).unwrap();
    let (mut log, report) = open(&mut disk, small_config(Durability::Always));
    assert_eq!(report.removed.len(), 1, "{report:?}");
    assert_eq!(report.removed[0].file, segment_path(99));
    assert_eq!(report.removed[0].bytes_dropped, 0);
    assert_eq!(log.append(&mut disk, START_NS, b"s", b"", b"6"), Ok(6));
    drive(&mut log, &mut disk);
    assert!(disk.durable_paths().contains(&directory().join("notes.txt")));
}

#[test]
fn an_empty_trailing_segment_with_the_next_sequence_becomes_the_active_one() {
    let mut disk = FaultDisk::new(8);
    let log = committed(&mut disk, 5);
    log.close(&mut disk);
    let file = disk.open(&segment_path(6), true).unwrap();
    disk.close(file);
    disk.sync_directory(&directory()).unwrap();
    let (mut log, report) = open(&mut disk, small_config(Durability::Always));
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(log.info().segments, 2);
    assert_eq!(log.append(&mut disk, START_NS, b"s", b"", b"6"), Ok(6));
    drive(&mut log, &mut disk);
    assert_eq!(log.read(&mut disk, 6).unwrap().map(|m| m.sequence), Some(6));
}

#[test]
fn after_a_process_crash_recovered_page_cache_data_is_synced_at_open() {
    let mut disk = FaultDisk::new(9);
    let interval = std::time::Duration::from_secs(3600);
    let (mut log, _) = open(&mut disk, small_config(Durability::Interval(interval)));
    for index in 0..10 {
        log.append(&mut disk, START_NS, b"s", b"", &payload_for(index, 50)).unwrap();
    }
    drive(&mut log, &mut disk);
    assert_eq!(log.info().durable_sequence, 0, "acknowledged, not synced");
    // The process dies (the page cache survives) and restarts.
    drop(log);
    let (log, report) = open(&mut disk, small_config(Durability::Interval(interval)));
    assert!(report.is_clean());
    assert_eq!(log.info().last_sequence, 10);
    // Then the power fails: the data recovered at open was made durable.
    drop(log);
    disk.crash();
    let (log, _) = open(&mut disk, small_config(Durability::Interval(interval)));
    assert_eq!(log.info().last_sequence, 10);
}
