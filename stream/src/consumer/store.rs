//! # Persisting a durable consumer's state: two slots in one file
//!
//! The file holds two fixed-size slots. Each write goes to the slot *not*
//! holding the newest state, stamped with the next write version (version
//! v goes to slot (v - 1) % 2), and becomes current only once `sync_data`
//! returned. On load the valid slot (magic, length and CRC32C check) with
//! the higher version wins. A crash in the middle of a write tears only the
//! slot being written; the other still holds the previous state, so a
//! restart sees either the old state or the new one, never a mix.
//!
//! [`ConsumerStore`] is the IO-free part: it picks the slot, encodes, and
//! says what to write where ([`SlotWrite`]), so the shard can submit the
//! write and the fdatasync on its ring and report back with
//! [`ConsumerStore::write_synced`] or [`ConsumerStore::write_failed`].
//! [`ConsumerStoreFile`] does the same through a [`Disk`], synchronously.
//!
//! ## File layout
//! `2 * slot_bytes` bytes, preallocated with zeros when the consumer is
//! created; `slot_bytes` is [`ConsumerStore::slot_bytes_for`] the config's
//! `ack_pending_max` (a multiple of [`SLOT_ALIGNMENT_BYTES`]) and is read
//! back as half the file's length. A slot holds one [`ConsumerState`]
//! record followed by whatever an older, longer record left: the record's
//! own length says where it ends.
//!
//! ## Invariants
//! - At most one write is in flight; the slot it targets never holds the
//!   newest synced state.
//! - After a failed write or sync the store fails closed: what reached the
//!   disk is unknown, so it refuses further writes rather than risk
//!   overwriting the last good slot.
//!
//! ## Shutdown and crashes
//! Nothing is buffered here: the newest state is the last synced write.
//! After a restart, messages acked after that write are redelivered
//! (at-least-once). A crash while [`ConsumerStoreFile::create`] runs can
//! leave a file with no valid slot; creation was not acknowledged then,
//! and [`ConsumerStoreFile::open`] reports [`StoreError::NoValidSlot`].

use std::path::Path;

use super::config::ACK_PENDING_MAX_CEILING;
use super::state::{ConsumerState, StateError};
use crate::disk::{Disk, DiskError, FileId};

/// Slots are whole multiples of this (a page), so a slot write never
/// shares a page with the other slot.
pub const SLOT_ALIGNMENT_BYTES: u64 = 4096;

/// Why a state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The disk refused (full, failed, missing). A failed write or sync
    /// leaves the store failed closed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// Neither slot holds a valid state, and not both are empty: the file
    /// is corrupt (or its creation was interrupted). Not recoverable here.
    #[error("no valid consumer state: first slot {first}, second slot {second}")]
    NoValidSlot { first: StateError, second: StateError },
    /// The file's length is not two whole slots.
    #[error("consumer state file of {file_bytes} bytes is not two slots")]
    BadFileLength { file_bytes: u64 },
    /// The encoded state does not fit a slot (a bug: the slot is sized for
    /// the config's `ack_pending_max`).
    #[error("state of {encoded_bytes} bytes does not fit a slot of {slot_bytes}")]
    StateTooLarge { encoded_bytes: usize, slot_bytes: u64 },
    /// A write is already in flight (a bug in the caller: wait for it).
    #[error("a state write is already in flight")]
    WriteInFlight,
    /// An earlier write or sync failed; the store refuses writes.
    #[error("consumer state store failed closed after a write or sync error")]
    FailedClosed,
}

/// What to write, where: the whole of `bytes` at `offset`, then fdatasync,
/// then [`ConsumerStore::write_synced`] with `write_version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotWrite {
    pub offset: u64,
    pub bytes: Vec<u8>,
    pub write_version: u64,
}

/// The slot logic of one consumer's state file, without IO.
#[derive(Debug)]
pub struct ConsumerStore {
    slot_bytes: u64,
    /// Version of the newest synced state; 0 before the first.
    newest_version: u64,
    in_flight: Option<u64>,
    failed: bool,
}

impl ConsumerStore {
    /// The slot size for a consumer with this `ack_pending_max`.
    pub fn slot_bytes_for(ack_pending_max: u32) -> u64 {
        let bytes = ConsumerState::encoded_bytes_max(ack_pending_max) as u64;
        bytes.div_ceil(SLOT_ALIGNMENT_BYTES) * SLOT_ALIGNMENT_BYTES
    }

    /// A store for a new file of two `slot_bytes` slots, nothing written.
    pub fn new(slot_bytes: u64) -> ConsumerStore {
        assert!(slot_bytes > 0 && slot_bytes % SLOT_ALIGNMENT_BYTES == 0, "slots are whole pages");
        ConsumerStore { slot_bytes, newest_version: 0, in_flight: None, failed: false }
    }

    pub fn slot_bytes(&self) -> u64 {
        self.slot_bytes
    }

    /// The file's length: two slots.
    pub fn file_bytes(&self) -> u64 {
        2 * self.slot_bytes
    }

    pub fn newest_version(&self) -> u64 {
        self.newest_version
    }

    /// Loads from a whole file's contents: the newest valid state and the
    /// store to continue writing with, or `None` when both slots are
    /// empty (never written).
    pub fn from_file_contents(contents: &[u8]) -> Result<Option<(ConsumerState, ConsumerStore)>, StoreError> {
        let file_bytes = contents.len() as u64;
        if file_bytes == 0 || file_bytes % (2 * SLOT_ALIGNMENT_BYTES) != 0 {
            return Err(StoreError::BadFileLength { file_bytes });
        }
        let slot_bytes = file_bytes / 2;
        let (first, second) = contents.split_at(slot_bytes as usize);
        let first = decode_slot(first, 0);
        let second = decode_slot(second, 1);
        let newest = match (first, second) {
            (Ok(first), Ok(second)) => Some(if first.0 > second.0 { first } else { second }),
            (Ok(first), Err(_)) => Some(first),
            (Err(_), Ok(second)) => Some(second),
            (Err(StateError::Empty), Err(StateError::Empty)) => None,
            (Err(first), Err(second)) => return Err(StoreError::NoValidSlot { first, second }),
        };
        Ok(newest.map(|(newest_version, state)| {
            (state, ConsumerStore { slot_bytes, newest_version, in_flight: None, failed: false })
        }))
    }

    /// Encodes `state` as the next version, for the slot not holding the
    /// newest one. One write at a time.
    pub fn prepare_write(&mut self, state: &ConsumerState) -> Result<SlotWrite, StoreError> {
        if self.failed {
            return Err(StoreError::FailedClosed);
        }
        if self.in_flight.is_some() {
            return Err(StoreError::WriteInFlight);
        }
        let write_version = self.newest_version + 1;
        let bytes = state.encode(write_version);
        if bytes.len() as u64 > self.slot_bytes {
            return Err(StoreError::StateTooLarge { encoded_bytes: bytes.len(), slot_bytes: self.slot_bytes });
        }
        let offset = slot_index(write_version) * self.slot_bytes;
        debug_assert!(self.newest_version == 0 || slot_index(self.newest_version) * self.slot_bytes != offset);
        self.in_flight = Some(write_version);
        Ok(SlotWrite { offset, bytes, write_version })
    }

    /// The write of `write_version` and its fdatasync completed: that state
    /// is now the newest.
    pub fn write_synced(&mut self, write_version: u64) {
        assert_eq!(self.in_flight, Some(write_version), "completion of a write that is not in flight");
        self.in_flight = None;
        self.newest_version = write_version;
    }

    /// The write or its fdatasync failed: fail closed (module header).
    pub fn write_failed(&mut self) {
        self.in_flight = None;
        self.failed = true;
    }
}

/// Version v lives in slot (v - 1) % 2: the first write goes to slot 0.
fn slot_index(write_version: u64) -> u64 {
    debug_assert!(write_version > 0);
    (write_version - 1) % 2
}

fn decode_slot(slot: &[u8], index: u64) -> Result<(u64, ConsumerState), StateError> {
    let (write_version, state) = ConsumerState::decode(slot)?;
    // A valid record in the wrong slot is not something this store wrote.
    if write_version == 0 || slot_index(write_version) != index {
        return Err(StateError::Inconsistent("write version does not belong to this slot"));
    }
    Ok((write_version, state))
}

/// A consumer's state file written synchronously through a [`Disk`].
#[derive(Debug)]
pub struct ConsumerStoreFile {
    store: ConsumerStore,
    file: FileId,
}

impl ConsumerStoreFile {
    /// Creates the state file of a new consumer at `path` (replacing any
    /// file there), sized for its `ack_pending_max`, and writes `state` as
    /// version 1. The consumer exists durably once this returns `Ok`.
    pub fn create(disk: &mut impl Disk, path: &Path, state: &ConsumerState) -> Result<ConsumerStoreFile, StoreError> {
        let store = ConsumerStore::new(ConsumerStore::slot_bytes_for(state.config.ack_pending_max));
        let file = disk.open(path, true)?;
        let mut store_file = ConsumerStoreFile { store, file };
        let created = store_file.initialise(disk, path, state);
        if let Err(error) = created {
            disk.close(file);
            return Err(error);
        }
        Ok(store_file)
    }

    fn initialise(&mut self, disk: &mut impl Disk, path: &Path, state: &ConsumerState) -> Result<(), StoreError> {
        // Zero both slots, so an interrupted first write is told from a
        // never-written slot.
        disk.truncate(self.file, 0)?;
        disk.truncate(self.file, self.store.file_bytes())?;
        self.save(disk, state)?;
        if let Some(directory) = path.parent() {
            disk.sync_directory(directory)?;
        }
        Ok(())
    }

    /// Opens the state file at `path`: `None` if it does not exist or was
    /// never written.
    pub fn open(disk: &mut impl Disk, path: &Path) -> Result<Option<(ConsumerState, ConsumerStoreFile)>, StoreError> {
        let file = match disk.open(path, false) {
            Ok(file) => file,
            Err(DiskError::NotFound(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        match Self::load(disk, file) {
            Ok(Some((state, store))) => Ok(Some((state, ConsumerStoreFile { store, file }))),
            other => {
                disk.close(file);
                other.map(|_| None)
            }
        }
    }

    fn load(disk: &mut impl Disk, file: FileId) -> Result<Option<(ConsumerState, ConsumerStore)>, StoreError> {
        let file_bytes = disk.length(file)?;
        if file_bytes == 0 {
            // Created, not yet sized: the creation never completed.
            return Ok(None);
        }
        if file_bytes > 2 * ConsumerStore::slot_bytes_for(ACK_PENDING_MAX_CEILING) {
            return Err(StoreError::BadFileLength { file_bytes });
        }
        let mut contents = vec![0; file_bytes as usize];
        let mut filled = 0;
        while filled < contents.len() {
            let read = disk.read_at(file, filled as u64, &mut contents[filled..])?;
            if read == 0 {
                return Err(StoreError::BadFileLength { file_bytes: filled as u64 });
            }
            filled += read;
        }
        ConsumerStore::from_file_contents(&contents)
    }

    /// Writes `state` into the other slot and syncs it; on any error the
    /// store fails closed.
    pub fn save(&mut self, disk: &mut impl Disk, state: &ConsumerState) -> Result<(), StoreError> {
        let write = self.store.prepare_write(state)?;
        match write_all_and_sync(disk, self.file, &write) {
            Ok(()) => {
                self.store.write_synced(write.write_version);
                Ok(())
            }
            Err(error) => {
                self.store.write_failed();
                Err(error.into())
            }
        }
    }

    pub fn store(&self) -> &ConsumerStore {
        &self.store
    }

    pub fn file(&self) -> FileId {
        self.file
    }

    pub fn close(self, disk: &mut impl Disk) {
        disk.close(self.file);
    }
}

fn write_all_and_sync(disk: &mut impl Disk, file: FileId, write: &SlotWrite) -> Result<(), DiskError> {
    let mut written = 0;
    while written < write.bytes.len() {
        let count = disk.write_at(file, write.offset + written as u64, &write.bytes[written..])?;
        if count == 0 {
            return Err(DiskError::Failed("write wrote nothing".to_string()));
        }
        written += count;
    }
    disk.sync_data(file)
}
