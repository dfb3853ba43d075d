//! Group commit: one commit in flight, appends gather behind it, acks
//! follow the fdatasync under `Always`, the write under `Interval`, at once
//! under `Memory`; short writes and linked syncs; completions in any order.

mod log_support;

use std::time::Duration;

use flit_stream::fault_disk::{FaultDisk, SeededRandom};
use flit_stream::log::{drive_blocking, AckEvent, CompletionOrder, Durability, IoOperation, IoOutcome};
use log_support::*;

#[test]
fn always_acks_only_after_the_covering_fdatasync() {
    let mut disk = FaultDisk::new(1);
    let (mut log, _) = open(&mut disk, small_config(Durability::Always));
    assert_eq!(log.append(&mut disk, START_NS, b"a", b"", b"one").unwrap(), 1);
    let write = log.next_io().expect("a write");
    let sync = log.next_io().expect("a linked sync");
    assert!(matches!(write.operation, IoOperation::Write { offset: 0, .. }));
    assert!(matches!(sync.operation, IoOperation::SyncData { linked: true, .. }));
    assert_eq!(log.next_io(), None, "one commit in flight");
    let IoOperation::Write { file, offset, data } = write.operation.clone() else { unreachable!() };
    let written = flit_stream::disk::Disk::write_at(&mut disk, file, offset, &data).unwrap();
    log.complete(write.tag, IoOutcome::Written { bytes: written });
    assert_eq!(log.next_event(), None, "no ack before the sync");
    assert_eq!(log.info().last_sequence, 0, "not readable before the ack");
    log.complete(sync.tag, IoOutcome::Synced);
    assert_eq!(log.next_event(), Some(AckEvent::Acked { first_sequence: 1, last_sequence: 1 }));
    assert_eq!(log.info().durable_sequence, 1);
}

#[test]
fn appends_during_a_commit_gather_into_the_next_one() {
    let mut disk = FaultDisk::new(2);
    let mut config = small_config(Durability::Always);
    config.segment_bytes = 1 << 20;
    config.batch_bytes_max = 64 * 1024;
    let (mut log, _) = open(&mut disk, config);
    log.append(&mut disk, START_NS, b"a", b"", b"first").unwrap();
    let mut ring = Ring::default();
    ring.submit(&mut log);
    assert_eq!(ring.submitted.len(), 2, "write + linked sync of commit 1");
    for index in 0..50 {
        log.append(&mut disk, START_NS, b"a", b"", &payload_for(index, 20)).unwrap();
    }
    ring.submit(&mut log);
    assert_eq!(ring.submitted.len(), 2, "nothing more while commit 1 is in flight");
    let mut random = SeededRandom::new(2);
    ring.settle(&mut log, &mut disk, &mut random);
    assert_eq!(
        acked_ranges(&events(&mut log)),
        vec![(1, 1), (2, 51)],
        "the 50 appends made during commit 1 share commit 2"
    );
    let info = log.info();
    assert_eq!(info.commits, 2);
    assert_eq!(disk.syncs, 2, "two fdatasyncs for 51 messages");
    assert!((info.mean_batch_messages - 25.5).abs() < 1e-9);
}

#[test]
fn batches_are_bounded_by_batch_bytes_max() {
    let mut disk = FaultDisk::new(3);
    let mut config = small_config(Durability::Always);
    config.segment_bytes = 1 << 20;
    config.batch_bytes_max = 512;
    let (mut log, _) = open(&mut disk, config);
    for index in 0..20 {
        log.append(&mut disk, START_NS, b"s", b"", &payload_for(index, 100)).unwrap();
    }
    let mut sizes = Vec::new();
    while let Some(request) = log.next_io() {
        if let IoOperation::Write { data, .. } = &request.operation {
            sizes.push(data.len());
            log.complete(request.tag, IoOutcome::Written { bytes: data.len() });
        } else {
            log.complete(request.tag, IoOutcome::Synced);
        }
    }
    assert!(sizes.len() >= 5, "20 records of ~144 bytes in several commits: {sizes:?}");
    assert!(sizes.iter().all(|size| *size <= 512), "{sizes:?}");
    let acked: u64 = acked_ranges(&events(&mut log)).iter().map(|(first, last)| last - first + 1).sum();
    assert_eq!(acked, 20);
}

#[test]
fn a_short_write_cancels_the_linked_sync_and_the_rest_is_written_then_synced() {
    let mut disk = FaultDisk::new(4);
    let (mut log, _) = open(&mut disk, small_config(Durability::Always));
    log.append(&mut disk, START_NS, b"a", b"", &payload_for(1, 300)).unwrap();
    let write = log.next_io().unwrap();
    let sync = log.next_io().unwrap();
    let IoOperation::Write { file, offset, data } = write.operation.clone() else { unreachable!() };
    let short = 100;
    flit_stream::disk::Disk::write_at(&mut disk, file, offset, &data[..short]).unwrap();
    // The cancel arrives first, then the short write: any order works.
    log.complete(sync.tag, IoOutcome::Cancelled);
    assert_eq!(log.next_io(), None, "the write is still outstanding");
    log.complete(write.tag, IoOutcome::Written { bytes: short });
    let rest = log.next_io().expect("the rest of the write");
    match &rest.operation {
        IoOperation::Write { offset: rest_offset, data: rest_data, .. } => {
            assert_eq!(*rest_offset, offset + short as u64);
            assert_eq!(&rest_data[..], &data[short..]);
        }
        other => panic!("expected the rest of the write, got {other:?}"),
    }
    let new_sync = log.next_io().expect("a new linked sync");
    assert!(matches!(new_sync.operation, IoOperation::SyncData { linked: true, .. }));
    assert_eq!(log.next_event(), None);
    log.complete(rest.tag, IoOutcome::Written { bytes: data.len() - short });
    // A stale completion for the first sync is ignored.
    log.complete(sync.tag, IoOutcome::Synced);
    assert_eq!(log.next_event(), None);
    log.complete(new_sync.tag, IoOutcome::Synced);
    assert_eq!(log.next_event(), Some(AckEvent::Acked { first_sequence: 1, last_sequence: 1 }));
}

#[test]
fn a_sync_that_succeeds_after_its_write_came_back_short_is_not_trusted() {
    let mut disk = FaultDisk::new(5);
    let (mut log, _) = open(&mut disk, small_config(Durability::Always));
    log.append(&mut disk, START_NS, b"a", b"", &payload_for(1, 300)).unwrap();
    let write = log.next_io().unwrap();
    let sync = log.next_io().unwrap();
    log.complete(write.tag, IoOutcome::Written { bytes: 8 });
    // A ring would have cancelled it; a broken one reports success.
    log.complete(sync.tag, IoOutcome::Synced);
    let rest = log.next_io().expect("the rest");
    let IoOperation::Write { data, .. } = &rest.operation else { panic!("expected a write") };
    log.complete(rest.tag, IoOutcome::Written { bytes: data.len() });
    assert_eq!(log.next_event(), None, "the rest was never synced");
    let new_sync = log.next_io().expect("a new sync");
    assert!(matches!(new_sync.operation, IoOperation::SyncData { linked: false, .. }));
    log.complete(new_sync.tag, IoOutcome::Synced);
    assert!(matches!(log.next_event(), Some(AckEvent::Acked { .. })));
}

#[test]
fn the_blocking_driver_handles_random_short_writes_and_reversed_completions() {
    for order in [CompletionOrder::Submission, CompletionOrder::Reversed] {
        let mut disk = FaultDisk::new(6);
        disk.set_short_writes(true);
        let (mut log, _) = open(&mut disk, small_config(Durability::Always));
        let mut model = Model::default();
        for index in 0..200 {
            let payload = payload_for(index, (index as usize * 13) % 200);
            let sequence = log.append(&mut disk, START_NS + index, b"subject", b"", &payload).unwrap();
            model.note_append(sequence, b"subject".to_vec(), payload);
            if index % 7 == 0 {
                drive_blocking(&mut log, &mut disk, order);
            }
        }
        drive_blocking(&mut log, &mut disk, order);
        model.note_events(events(&mut log));
        assert_eq!(model.acked.len(), 200, "{order:?}");
        assert!(disk.writes > log.info().commits, "{order:?}: some writes were short");
        model.check(&log, &mut disk, &format!("{order:?}"));
        assert!(log.info().segments > 3, "rolled across segments");
    }
}

#[test]
fn interval_acks_after_the_write_and_syncs_when_due() {
    let mut disk = FaultDisk::new(7);
    let (mut log, _) = open(&mut disk, small_config(Durability::Interval(Duration::from_millis(10))));
    log.append(&mut disk, START_NS, b"a", b"", b"x").unwrap();
    let write = log.next_io().expect("a write");
    assert_eq!(log.next_io(), None, "no sync per commit");
    let IoOperation::Write { data, .. } = &write.operation else { panic!() };
    log.complete(write.tag, IoOutcome::Written { bytes: data.len() });
    assert_eq!(log.next_event(), Some(AckEvent::Acked { first_sequence: 1, last_sequence: 1 }));
    assert_eq!(log.info().durable_sequence, 0);
    log.tick(&mut disk, START_NS + 5_000_000);
    assert_eq!(log.next_io(), None, "not due yet");
    log.tick(&mut disk, START_NS + 10_000_000);
    let sync = log.next_io().expect("due");
    assert!(matches!(sync.operation, IoOperation::SyncData { linked: false, .. }));
    log.complete(sync.tag, IoOutcome::Synced);
    assert_eq!(log.info().durable_sequence, 1);
    assert!(log.is_idle());
    log.tick(&mut disk, START_NS + 30_000_000);
    assert_eq!(log.next_io(), None, "nothing written since");
}

#[test]
fn memory_acks_at_once_and_touches_no_disk() {
    let mut disk = FaultDisk::new(8);
    let (mut log, _) = open(&mut disk, small_config(Durability::Memory));
    for index in 0..10 {
        let sequence = log.append(&mut disk, START_NS + index, b"m", b"h", &payload_for(index, 5)).unwrap();
        assert_eq!(sequence, index + 1);
    }
    assert_eq!(log.next_io(), None);
    assert_eq!(acked_ranges(&events(&mut log)).len(), 10);
    assert!(disk.durable_paths().is_empty() && disk.writes == 0);
    let all = read_all(&log, &mut disk, 3);
    assert_contiguous(&log, &all, "memory");
    assert_eq!(&all[4].payload[..], &payload_for(4, 5)[..]);
    assert_eq!(log.sequence_at_or_after_time(&mut disk, START_NS + 3).unwrap(), Some(4));
}
