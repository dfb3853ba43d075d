//! # Reads: by sequence, in batches for replay, and by time
//!
//! Reads serve acknowledged messages only (what a consumer may see: under
//! `Always`, what is synced). They go through the `Disk` synchronously:
//! a lookup starts at the sparse index entry at or before the wanted
//! record and reads forward, so it costs one read of about
//! `INDEX_INTERVAL_BYTES` plus the records returned. Replay reads big
//! chunks (up to `bytes_max`) into one shared buffer and returns slices of
//! it, so a batch of messages costs one allocation, not one per message.
//!
//! ## Invariants
//! - Returned messages are contiguous, start at the first retained sequence
//!   at or after the one asked for, and never pass the last acknowledged.
//!
//! ## Shutdown
//! Stateless beyond the log.

use super::{Durability, StreamLog};
use crate::disk::Disk;
use crate::record::{self, RecordKind, StoredMessage};
use crate::segment::{self, WalkError};

/// Why a read failed: the disk, or data that no longer checks out.
pub type ReadError = WalkError;

/// Replay reads fetch at most this much per disk read.
const REPLAY_CHUNK_BYTES_MAX: usize = 8 * 1024 * 1024;

impl StreamLog {
    /// The acknowledged message `sequence`, if retained.
    pub fn read(&self, disk: &mut dyn Disk, sequence: u64) -> Result<Option<StoredMessage>, ReadError> {
        if sequence < self.first_sequence || sequence > self.acknowledged_last {
            return Ok(None);
        }
        Ok(self.read_batch(disk, sequence, 1, usize::MAX)?.into_iter().next())
    }

    /// Up to `messages_max` acknowledged messages from `from_sequence` (or
    /// the first retained, if later), stopping before `bytes_max` bytes of
    /// subject, headers and payload (always at least one message).
    pub fn read_batch(
        &self,
        disk: &mut dyn Disk,
        from_sequence: u64,
        messages_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<StoredMessage>, ReadError> {
        let from = from_sequence.max(self.first_sequence);
        if from > self.acknowledged_last || messages_max == 0 {
            return Ok(Vec::new());
        }
        if self.config.durability == Durability::Memory {
            return Ok(self.read_memory(from, messages_max, bytes_max));
        }
        let last = self.acknowledged_last;
        let position = self.segments.partition_point(|segment| segment.first_sequence <= from).saturating_sub(1);
        // Big reads for replay, small ones for a lookup of a few messages.
        let wanted = bytes_max.min(messages_max.saturating_mul(segment::INDEX_INTERVAL_BYTES as usize));
        let chunk_bytes = wanted.clamp(segment::READ_CHUNK_BYTES, REPLAY_CHUNK_BYTES_MAX);
        let mut result = Vec::new();
        let mut bytes = 0usize;
        let mut done = false;
        let mut failure = None;
        for segment in self.segments.iter().skip(position) {
            let start = if segment.first_sequence <= from { segment.offset_for_sequence(from) } else { 0 };
            let mut visit = |record_bytes: bytes::Bytes| -> bool {
                let Ok(header) = record::header(&record_bytes) else { return true };
                if header.kind != RecordKind::Message || header.sequence < from {
                    return true;
                }
                if header.sequence > last {
                    done = true;
                    return false;
                }
                let size = header.subject_length + header.headers_length + header.payload_length;
                if !result.is_empty() && bytes + size > bytes_max {
                    done = true;
                    return false;
                }
                match record::decode_shared(&record_bytes) {
                    Ok((message, _)) => result.push(message),
                    Err(_) => {
                        failure = Some(header.sequence);
                        return false;
                    }
                }
                bytes += size;
                done = result.len() >= messages_max;
                !done
            };
            segment::walk_records(disk, segment, start, segment.acknowledged_end_offset, chunk_bytes, &mut visit)?;
            if failure.is_some() {
                return Err(WalkError::Corrupt { path: segment.path.clone(), offset: start });
            }
            if done {
                break;
            }
        }
        Ok(result)
    }

    /// The first acknowledged sequence with a timestamp at or after
    /// `timestamp_ns`; `None` when every message is older.
    pub fn sequence_at_or_after_time(&self, disk: &mut dyn Disk, timestamp_ns: u64) -> Result<Option<u64>, ReadError> {
        if self.config.durability == Durability::Memory {
            return Ok(self.memory_sequence_at_or_after_time(timestamp_ns));
        }
        let position = self
            .segments
            .partition_point(|segment| segment.messages() == 0 || segment.last_timestamp_ns < timestamp_ns);
        let Some(segment) = self.segments.get(position) else { return Ok(None) };
        let mut found = None;
        let mut visit = |record_bytes: bytes::Bytes| -> bool {
            match record::header(&record_bytes) {
                Ok(header) if header.kind == RecordKind::Message && header.timestamp_ns >= timestamp_ns => {
                    found = Some(header.sequence);
                    false
                }
                _ => true,
            }
        };
        let start = segment.offset_for_time(timestamp_ns);
        segment::walk_records(
            disk,
            segment,
            start,
            segment.acknowledged_end_offset,
            segment::READ_CHUNK_BYTES,
            &mut visit,
        )?;
        Ok(found.filter(|sequence| *sequence <= self.acknowledged_last && *sequence >= self.first_sequence))
    }
}
