//! Storage errors: ENOSPC refuses and gives sequences back, probes, and
//! recovers when space returns; EIO on a write or an fsync fails closed.

mod log_support;

use flit_stream::fault_disk::{Fault, FaultDisk, Operation};
use flit_stream::log::{AckEvent, AppendError, Durability, LogState};
use log_support::*;

fn refusals(events: &[AckEvent]) -> Vec<(u64, u64, AppendError)> {
    events
        .iter()
        .filter_map(|event| match event {
            AckEvent::Refused { first_sequence, last_sequence, error } => {
                Some((*first_sequence, *last_sequence, error.clone()))
            }
            AckEvent::Acked { .. } => None,
        })
        .collect()
}

#[test]
fn enospc_on_a_write_refuses_the_batch_gives_sequences_back_and_recovers_by_itself() {
    let mut disk = FaultDisk::new(1);
    let (mut log, _) = open(&mut disk, small_config(Durability::Always));
    for _ in 0..3 {
        log.append(&mut disk, START_NS, b"a", b"", b"kept").unwrap();
    }
    drive(&mut log, &mut disk);
    assert_eq!(acked_ranges(&events(&mut log)), vec![(1, 3)]);
    disk.inject(Operation::Write, Fault::Full);
    for _ in 0..4 {
        log.append(&mut disk, START_NS, b"a", b"", b"refused").unwrap();
    }
    drive(&mut log, &mut disk);
    let happened = events(&mut log);
    assert_eq!(refusals(&happened), vec![(4, 7, AppendError::DiskFull)]);
    assert_eq!(log.next_sequence(), 4, "sequences given back");
    assert!(matches!(log.state(), LogState::DiskFull { .. }));
    assert_eq!(log.info().refused_messages, 4);
    // Refused at once until the retry time; reads keep working.
    assert_eq!(log.append(&mut disk, START_NS + 1, b"a", b"", b"x"), Err(AppendError::DiskFull));
    assert_eq!(log.read(&mut disk, 3).unwrap().map(|m| m.sequence), Some(3));
    // After disk_full_retry one probe goes through; it succeeds.
    let probe_at = START_NS + SECOND_NS;
    assert_eq!(log.append(&mut disk, probe_at, b"a", b"", b"probe"), Ok(4));
    assert_eq!(log.append(&mut disk, probe_at, b"a", b"", b"x"), Err(AppendError::DiskFull), "one probe at a time");
    drive(&mut log, &mut disk);
    assert_eq!(acked_ranges(&events(&mut log)), vec![(4, 4)]);
    assert_eq!(log.state(), &LogState::Healthy);
    assert_eq!(log.append(&mut disk, probe_at, b"a", b"", b"after"), Ok(5));
    drive(&mut log, &mut disk);
    let all = read_all(&log, &mut disk, 10);
    assert_contiguous(&log, &all, "after recovery");
    assert_eq!(&all[3].payload[..], b"probe");
}

#[test]
fn enospc_refuses_every_batch_staged_behind_the_failed_one_across_a_roll() {
    let mut disk = FaultDisk::new(2);
    let (mut log, _) = open(&mut disk, small_config(Durability::Always));
    log.append(&mut disk, START_NS, b"a", b"", b"first").unwrap();
    drive(&mut log, &mut disk);
    events(&mut log);
    // Enough to stage several batches and roll into new segments.
    for index in 0..40 {
        log.append(&mut disk, START_NS, b"a", b"", &payload_for(index, 300)).unwrap();
    }
    assert!(log.info().segments > 1);
    disk.inject(Operation::Write, Fault::Full);
    drive(&mut log, &mut disk);
    assert_eq!(refusals(&events(&mut log)), vec![(2, 41, AppendError::DiskFull)]);
    assert_eq!(log.next_sequence(), 2);
    assert_eq!(log.info().segments, 1, "segments created for refused batches are dropped");
    let probe_at = START_NS + 2 * SECOND_NS;
    for index in 0..40 {
        let sequence = log.append(&mut disk, probe_at, b"a", b"", &payload_for(index, 300)).unwrap();
        assert_eq!(sequence, 2 + index);
        if index == 0 {
            // Only the probe passes until it is written.
            drive(&mut log, &mut disk);
        }
    }
    drive(&mut log, &mut disk);
    let all = read_all(&log, &mut disk, 100);
    assert_eq!(all.len(), 41);
    assert_contiguous(&log, &all, "after refill");
    log.close(&mut disk);
    let (log, report) = open(&mut disk, small_config(Durability::Always));
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(read_all(&log, &mut disk, 100), all);
}

#[test]
fn enospc_on_segment_allocation_refuses_the_append() {
    let mut disk = FaultDisk::new(3);
    let (mut log, _) = open(&mut disk, small_config(Durability::Always));
    let payload = vec![7u8; 900];
    for _ in 0..4 {
        log.append(&mut disk, START_NS, b"a", b"", &payload).unwrap();
    }
    drive(&mut log, &mut disk);
    disk.inject(Operation::Allocate, Fault::Full);
    assert_eq!(log.append(&mut disk, START_NS, b"a", b"", &payload), Err(AppendError::DiskFull));
    assert_eq!(log.append(&mut disk, START_NS + 1, b"a", b"", &payload), Err(AppendError::DiskFull));
    assert_eq!(log.next_sequence(), 5);
    assert_eq!(log.append(&mut disk, START_NS + 2 * SECOND_NS, b"a", b"", &payload), Ok(5), "the probe rolls");
    drive(&mut log, &mut disk);
    assert_eq!(log.state(), &LogState::Healthy);
    assert_eq!(log.info().segments, 2);
}

#[test]
fn a_full_disk_by_capacity_refuses_then_recovers_when_space_returns() {
    let mut disk = FaultDisk::new(4);
    let (mut log, _) = open(&mut disk, small_config(Durability::Always));
    disk.set_capacity_bytes(Some(3 * 4096));
    let mut now = START_NS;
    let mut model = Model::default();
    let mut saw_full = false;
    for index in 0..200u64 {
        now += SECOND_NS / 4;
        let payload = payload_for(index, 200);
        match log.append(&mut disk, now, b"c", b"", &payload) {
            Ok(sequence) => model.note_append(sequence, b"c".to_vec(), payload),
            Err(AppendError::DiskFull) => saw_full = true,
            Err(other) => panic!("{other:?}"),
        }
        drive(&mut log, &mut disk);
        model.note_events(events(&mut log));
    }
    assert!(saw_full, "the capacity was reached");
    let acked_before = model.acked.len();
    disk.set_capacity_bytes(None);
    now += 2 * SECOND_NS;
    for index in 0..20u64 {
        let payload = payload_for(1000 + index, 200);
        let sequence = log.append(&mut disk, now, b"c", b"", &payload).expect("space returned");
        model.note_append(sequence, b"c".to_vec(), payload);
        drive(&mut log, &mut disk);
    }
    model.note_events(events(&mut log));
    assert_eq!(model.acked.len(), acked_before + 20);
    assert_eq!(log.state(), &LogState::Healthy);
    model.check(&log, &mut disk, "capacity");
}

#[test]
fn eio_on_a_write_fails_closed() {
    let mut disk = FaultDisk::new(5);
    let (mut log, _) = open(&mut disk, small_config(Durability::Always));
    log.append(&mut disk, START_NS, b"a", b"", b"1").unwrap();
    drive(&mut log, &mut disk);
    disk.inject(Operation::Write, Fault::Failed);
    log.append(&mut disk, START_NS, b"a", b"", b"2").unwrap();
    log.append(&mut disk, START_NS, b"a", b"", b"3").unwrap();
    drive(&mut log, &mut disk);
    let happened = events(&mut log);
    assert_eq!(acked_ranges(&happened), vec![(1, 1)]);
    assert!(matches!(&refusals(&happened)[..], [(2, 3, AppendError::StorageFailed { .. })]));
    assert!(matches!(log.append(&mut disk, START_NS, b"a", b"", b"4"), Err(AppendError::StorageFailed { .. })));
    assert!(matches!(log.info().state, LogState::Failed { .. }));
    assert_eq!(log.next_io(), None);
    assert_eq!(log.read(&mut disk, 1).unwrap().map(|m| m.sequence), Some(1), "reads keep working");
}

#[test]
fn eio_on_fdatasync_fails_closed_and_is_never_retried() {
    for failure in [Fault::Failed, Fault::Full] {
        let mut disk = FaultDisk::new(6);
        let (mut log, _) = open(&mut disk, small_config(Durability::Always));
        disk.inject(Operation::Sync, failure);
        log.append(&mut disk, START_NS, b"a", b"", b"1").unwrap();
        drive(&mut log, &mut disk);
        log.append(&mut disk, START_NS, b"a", b"", b"2").unwrap_err();
        let syncs = disk.syncs;
        drive(&mut log, &mut disk);
        assert_eq!(disk.syncs, syncs, "{failure:?}: no retry");
        let happened = events(&mut log);
        assert!(acked_ranges(&happened).is_empty(), "{failure:?}: no ack after a failed fsync");
        assert!(matches!(&refusals(&happened)[..], [(1, 1, AppendError::StorageFailed { .. })]), "{failure:?}");
    }
}

#[test]
fn eio_on_an_interval_sync_fails_closed() {
    let mut disk = FaultDisk::new(7);
    let interval = std::time::Duration::from_millis(10);
    let (mut log, _) = open(&mut disk, small_config(Durability::Interval(interval)));
    log.append(&mut disk, START_NS, b"a", b"", b"1").unwrap();
    drive(&mut log, &mut disk);
    assert_eq!(acked_ranges(&events(&mut log)), vec![(1, 1)]);
    disk.inject(Operation::Sync, Fault::Failed);
    log.tick(&mut disk, START_NS + 20_000_000);
    drive(&mut log, &mut disk);
    assert!(matches!(log.state(), LogState::Failed { .. }));
    assert!(matches!(log.append(&mut disk, START_NS, b"a", b"", b"2"), Err(AppendError::StorageFailed { .. })));
}
