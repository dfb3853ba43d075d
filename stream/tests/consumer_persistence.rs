//! A durable consumer's state survives restarts: the encoding round-trips
//! and its CRC covers the length fields; the two-slot store through
//! `FileDisk` in a temp dir loads the newest valid slot, falls back to the
//! other when one is torn, and fails closed after a failed sync; a
//! restored consumer redelivers every pending message (at-least-once).

use std::path::{Path, PathBuf};
use std::time::Duration;

use flit_stream::consumer::{
    AckPolicy, Consumer, ConsumerConfig, ConsumerState, ConsumerStore, ConsumerStoreFile, DeadLetter, DeliveryMode,
    PendingMessage, StartPosition, StateError, StoreError,
};
use flit_stream::disk::{Disk, DiskError, FileDisk, FileId};

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDirectory(PathBuf);

impl TempDirectory {
    fn new(name: &str) -> TempDirectory {
        let path = std::env::temp_dir().join(format!("flit-consumer-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDirectory(path)
    }

    fn file(&self) -> PathBuf {
        self.0.join("orders.consumer")
    }
}

impl Drop for TempDirectory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config() -> ConsumerConfig {
    ConsumerConfig {
        name: Some("orders-worker".into()),
        start: StartPosition::Time { timestamp_ns: 1_700_000_000_000_000_000 },
        ack_policy: AckPolicy::Explicit,
        ack_wait: ms(250),
        deliveries_max: 3,
        ack_pending_max: 64,
        dead_letter_subject: Some("dead.orders".into()),
        mode: DeliveryMode::Push { deliver_subject: "deliver.orders".into() },
    }
}

/// A consumer that delivered 1..=6, acked 1, 3 and 6, and redelivered 2.
fn busy_consumer() -> Consumer {
    let mut consumer = Consumer::new(config(), (1, 0), |_| 1).unwrap();
    for _ in 0..6 {
        consumer.next_delivery(ms(0), 6).unwrap();
    }
    for sequence in [1, 3, 6] {
        consumer.ack(sequence, ms(1));
    }
    consumer.nak(2);
    assert_eq!(consumer.next_delivery(ms(2), 6).map(|delivery| delivery.delivery_count), Some(2));
    consumer
}

fn slot_bytes_of(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len() / 2
}

fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

#[test]
fn state_round_trips_through_its_encoding() {
    let state = busy_consumer().state();
    assert_eq!(state.ack_floor, 1);
    assert_eq!(state.delivered_sequence, 6);
    assert_eq!(
        state.pending,
        vec![
            PendingMessage { sequence: 2, delivery_count: 2 },
            PendingMessage { sequence: 4, delivery_count: 1 },
            PendingMessage { sequence: 5, delivery_count: 1 },
        ]
    );
    let bytes = state.encode(42);
    assert_eq!(ConsumerState::decode(&bytes), Ok((42, state.clone())));
    // Bytes after the record (an older, longer record in the slot) are ignored.
    let mut slot = bytes.clone();
    slot.extend_from_slice(&[0xAB; 100]);
    assert_eq!(ConsumerState::decode(&slot), Ok((42, state)));
}

#[test]
fn crc_covers_every_byte_the_length_fields_included() {
    let bytes = busy_consumer().state().encode(7);
    // Shrinking the record length by 12 (one pending entry) keeps every
    // field parseable: only the CRC can catch it.
    let mut shorter = bytes.clone();
    let record_bytes = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
    shorter[4..8].copy_from_slice(&(record_bytes - 12).to_le_bytes());
    assert_eq!(ConsumerState::decode(&shorter), Err(StateError::Checksum));
    // So is the pending count, a length inside the body.
    let count_offset = bytes.len() - 4 - 3 * 12 - 4;
    let mut fewer = bytes.clone();
    fewer[count_offset] -= 1;
    assert_eq!(ConsumerState::decode(&fewer), Err(StateError::Checksum));
    // No single flipped bit anywhere decodes.
    for index in 0..bytes.len() {
        for bit in 0..8 {
            let mut flipped = bytes.clone();
            flipped[index] ^= 1 << bit;
            assert!(ConsumerState::decode(&flipped).is_err(), "byte {index} bit {bit}");
        }
    }
}

#[test]
fn empty_and_garbage_bytes_are_told_apart() {
    assert_eq!(ConsumerState::decode(&[0; 4096]), Err(StateError::Empty));
    assert_eq!(ConsumerState::decode(b"garbage garbage"), Err(StateError::BadMagic));
}

#[test]
fn file_round_trip_and_restart_redelivers_every_pending_message() {
    let directory = TempDirectory::new("round-trip");
    let mut disk = FileDisk::new();
    let mut consumer = busy_consumer();
    let mut store = ConsumerStoreFile::create(&mut disk, &directory.file(), &consumer.state()).unwrap();
    assert_eq!(store.store().newest_version(), 1);
    consumer.ack(4, ms(3));
    store.save(&mut disk, &consumer.state()).unwrap();
    assert_eq!(store.store().newest_version(), 2);
    store.close(&mut disk);

    // A restart: a new disk, the file read back.
    let mut disk = FileDisk::new();
    let (state, store) = ConsumerStoreFile::open(&mut disk, &directory.file()).unwrap().expect("state saved");
    assert_eq!(state, consumer.state());
    assert_eq!(store.store().newest_version(), 2);
    let mut restored = Consumer::restore(state, 1, ms(1_000)).unwrap();
    let redelivered: Vec<(u64, u32, bool)> = std::iter::from_fn(|| restored.next_delivery(ms(1_000), 6))
        .map(|delivery| (delivery.sequence, delivery.delivery_count, delivery.redelivered))
        .collect();
    // 2 and 5 were pending (delivery counts kept and raised); 1, 3, 4 and 6
    // were acked and are not delivered again.
    assert_eq!(redelivered, vec![(2, 3, true), (5, 2, true)]);
    assert_eq!(restored.info(6).ack_floor, 1);
    store.close(&mut disk);
}

#[test]
fn restored_message_at_deliveries_max_gets_one_ack_wait_then_dead_letters() {
    let mut consumer = Consumer::new(config(), (1, 0), |_| 1).unwrap();
    consumer.next_delivery(ms(0), 1).unwrap();
    consumer.next_delivery(ms(250), 1).unwrap();
    consumer.next_delivery(ms(500), 1).unwrap(); // third delivery: deliveries_max
    let mut restored = Consumer::restore(consumer.state(), 1, ms(10)).unwrap();
    assert_eq!(restored.next_delivery(ms(10), 1), None, "its last delivery may still be acked");
    assert_eq!(restored.next_deadline(), Some(ms(260)));
    assert_eq!(restored.next_delivery(ms(260), 1), None);
    assert_eq!(restored.pop_dead_letter(), Some(DeadLetter { sequence: 1, delivery_count: 3 }));
}

#[test]
fn restore_skips_what_retention_removed_meanwhile() {
    let state = busy_consumer().state();
    let mut restored = Consumer::restore(state, 5, ms(0)).unwrap();
    let sequences: Vec<u64> =
        std::iter::from_fn(|| restored.next_delivery(ms(0), 8)).map(|delivery| delivery.sequence).collect();
    assert_eq!(sequences, vec![5, 7, 8]);
    assert_eq!(restored.info(8).skipped_by_retention_total, 2);
}

#[test]
fn torn_newest_slot_falls_back_to_the_other() {
    let directory = TempDirectory::new("torn");
    let mut disk = FileDisk::new();
    let mut consumer = busy_consumer();
    let mut store = ConsumerStoreFile::create(&mut disk, &directory.file(), &consumer.state()).unwrap();
    let version_1 = consumer.state();
    consumer.ack(2, ms(5));
    store.save(&mut disk, &consumer.state()).unwrap(); // version 2, slot 1
    store.close(&mut disk);
    let slot_bytes = slot_bytes_of(&directory.file());

    // Tear version 2's slot: its first bytes rewritten with garbage.
    overwrite(&directory.file(), slot_bytes + 9, b"torn write");
    let (state, store) = ConsumerStoreFile::open(&mut disk, &directory.file()).unwrap().unwrap();
    assert_eq!(state, version_1);
    assert_eq!(store.store().newest_version(), 1);
    store.close(&mut disk);
}

#[test]
fn torn_older_slot_leaves_the_newest_in_use_and_writes_go_around_it() {
    let directory = TempDirectory::new("torn-older");
    let mut disk = FileDisk::new();
    let mut consumer = busy_consumer();
    let mut store = ConsumerStoreFile::create(&mut disk, &directory.file(), &consumer.state()).unwrap();
    consumer.ack(2, ms(5));
    store.save(&mut disk, &consumer.state()).unwrap(); // version 2, slot 1
    store.close(&mut disk);
    overwrite(&directory.file(), 100, &[0xFF; 64]); // slot 0, version 1

    let (state, mut store) = ConsumerStoreFile::open(&mut disk, &directory.file()).unwrap().unwrap();
    assert_eq!(state, consumer.state());
    // The next write (version 3) goes to the torn slot 0, not over version 2.
    consumer.ack(4, ms(6));
    store.save(&mut disk, &consumer.state()).unwrap();
    store.close(&mut disk);
    let (state, store) = ConsumerStoreFile::open(&mut disk, &directory.file()).unwrap().unwrap();
    assert_eq!((state, store.store().newest_version()), (consumer.state(), 3));
    store.close(&mut disk);
}

#[test]
fn both_slots_invalid_is_reported_and_missing_or_never_written_is_none() {
    let directory = TempDirectory::new("invalid");
    let mut disk = FileDisk::new();
    assert!(ConsumerStoreFile::open(&mut disk, &directory.file()).unwrap().is_none(), "no file");
    let store = ConsumerStoreFile::create(&mut disk, &directory.file(), &busy_consumer().state()).unwrap();
    store.close(&mut disk);
    let slot_bytes = slot_bytes_of(&directory.file());
    overwrite(&directory.file(), 20, b"rot");
    let store = ConsumerStore::from_file_contents(&std::fs::read(directory.file()).unwrap());
    assert!(matches!(store, Err(StoreError::NoValidSlot { second: StateError::Empty, .. })));
    overwrite(&directory.file(), slot_bytes + 20, b"rot");
    assert!(matches!(
        ConsumerStoreFile::open(&mut disk, &directory.file()),
        Err(StoreError::NoValidSlot { first: StateError::BadMagic | StateError::Checksum, .. })
    ));
    assert!(ConsumerStore::from_file_contents(&vec![0; 2 * slot_bytes as usize]).unwrap().is_none());
}

#[test]
fn sans_io_writes_alternate_slots_one_at_a_time() {
    let state = busy_consumer().state();
    let slot_bytes = ConsumerStore::slot_bytes_for(64);
    let mut store = ConsumerStore::new(slot_bytes);
    let mut file = vec![0u8; store.file_bytes() as usize];
    for version in 1..=4u64 {
        let write = store.prepare_write(&state).unwrap();
        assert_eq!(write.write_version, version);
        assert_eq!(write.offset, ((version - 1) % 2) * slot_bytes);
        assert!(matches!(store.prepare_write(&state), Err(StoreError::WriteInFlight)));
        file[write.offset as usize..write.offset as usize + write.bytes.len()].copy_from_slice(&write.bytes);
        store.write_synced(write.write_version);
    }
    let (loaded, store) = ConsumerStore::from_file_contents(&file).unwrap().unwrap();
    assert_eq!((loaded, store.newest_version()), (state, 4));
}

/// FileDisk whose fdatasync fails once armed (EIO).
struct FailingSyncDisk {
    inner: FileDisk,
    fail_sync: bool,
}

impl Disk for FailingSyncDisk {
    fn create_directory(&mut self, directory: &Path) -> Result<(), DiskError> {
        self.inner.create_directory(directory)
    }
    fn list(&mut self, directory: &Path) -> Result<Vec<String>, DiskError> {
        self.inner.list(directory)
    }
    fn open(&mut self, path: &Path, create: bool) -> Result<FileId, DiskError> {
        self.inner.open(path, create)
    }
    fn length(&mut self, file: FileId) -> Result<u64, DiskError> {
        self.inner.length(file)
    }
    fn allocate(&mut self, file: FileId, length: u64) -> Result<(), DiskError> {
        self.inner.allocate(file, length)
    }
    fn read_at(&mut self, file: FileId, offset: u64, buffer: &mut [u8]) -> Result<usize, DiskError> {
        self.inner.read_at(file, offset, buffer)
    }
    fn write_at(&mut self, file: FileId, offset: u64, data: &[u8]) -> Result<usize, DiskError> {
        // Short writes, to exercise the resume loop.
        let data = &data[..data.len().min(100)];
        self.inner.write_at(file, offset, data)
    }
    fn sync_data(&mut self, file: FileId) -> Result<(), DiskError> {
        if self.fail_sync {
            return Err(DiskError::Failed("injected EIO".into()));
        }
        self.inner.sync_data(file)
    }
    fn truncate(&mut self, file: FileId, length: u64) -> Result<(), DiskError> {
        self.inner.truncate(file, length)
    }
    fn close(&mut self, file: FileId) {
        self.inner.close(file)
    }
    fn remove(&mut self, path: &Path) -> Result<(), DiskError> {
        self.inner.remove(path)
    }
    fn sync_directory(&mut self, directory: &Path) -> Result<(), DiskError> {
        self.inner.sync_directory(directory)
    }
}

#[test]
fn failed_sync_fails_the_store_closed() {
    let directory = TempDirectory::new("failed-sync");
    let mut disk = FailingSyncDisk { inner: FileDisk::new(), fail_sync: false };
    let mut consumer = busy_consumer();
    let mut store = ConsumerStoreFile::create(&mut disk, &directory.file(), &consumer.state()).unwrap();
    consumer.ack(2, ms(5));
    store.save(&mut disk, &consumer.state()).unwrap();
    disk.fail_sync = true;
    consumer.ack(4, ms(6));
    assert!(matches!(store.save(&mut disk, &consumer.state()), Err(StoreError::Disk(DiskError::Failed(_)))));
    disk.fail_sync = false;
    assert!(matches!(store.save(&mut disk, &consumer.state()), Err(StoreError::FailedClosed)), "never retried");
    store.close(&mut disk);
}
