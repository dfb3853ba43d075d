//! # One segment file and its sparse indexes
//!
//! A stream's log is a list of segment files in one directory, each named by
//! the sequence of its first message (`00000000000000000001.seg`, twenty
//! digits so names sort like sequences). A segment is preallocated to
//! `segment_bytes` when created, so appends within it never change the
//! file's size (an fdatasync then flushes data only) and never hit ENOSPC on
//! file systems that honour fallocate. Records follow each other from offset
//! 0; the first zero length field marks the end of written data.
//!
//! The in-memory [`Segment`] keeps where its data ends and a sparse index:
//! one [`IndexEntry`] (sequence, offset, timestamp) every
//! [`INDEX_INTERVAL_BYTES`] of data, so a lookup by sequence or by time
//! reads at most about that many bytes before the record it wants.
//! Timestamps never decrease within a stream (the log clamps them), so the
//! same entries serve as the time index. Both are rebuilt by the recovery
//! scan at startup, never stored.
//!
//! ## Invariants
//! - `first_sequence` is the name's sequence; messages in the segment are
//!   `first_sequence..=last_sequence`, contiguous.
//! - Index entries are in increasing sequence, offset and timestamp order.
//! - `staged_end_offset >= acknowledged_end_offset`; data below
//!   `acknowledged_end_offset` is written (and, under `always`, synced).
//!
//! ## Shutdown
//! The file handle is closed by the log ([`Segment::close`]); nothing is
//! buffered here.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

use crate::disk::{Disk, DiskError, FileId};
use crate::record::{self, Check, RECORD_BYTES_MIN};

/// One index entry every this many bytes of segment data.
pub const INDEX_INTERVAL_BYTES: u64 = 4096;
/// Reads for lookups fetch at least this much at a time.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
/// The file name suffix of segments.
pub const SEGMENT_SUFFIX: &str = ".seg";

/// A sparse index point: the record of `sequence` starts at `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub sequence: u64,
    pub offset: u64,
    pub timestamp_ns: u64,
}

/// The file name of the segment whose first message is `first_sequence`.
pub fn segment_name(first_sequence: u64) -> String {
    format!("{first_sequence:020}{SEGMENT_SUFFIX}")
}

/// The first sequence a segment file name stands for, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    // Sequences start at 1: a segment named 0 is not one of ours.
    digits.parse().ok().filter(|first| *first > 0)
}

/// A segment as the log sees it.
#[derive(Debug)]
pub struct Segment {
    pub first_sequence: u64,
    pub path: PathBuf,
    pub file: FileId,
    /// Preallocated size; records never extend past it.
    pub capacity_bytes: u64,
    /// Where the next staged record goes.
    pub staged_end_offset: u64,
    /// End of the data acknowledged (readable).
    pub acknowledged_end_offset: u64,
    /// The last message staged here (first_sequence - 1 when none).
    pub last_sequence: u64,
    /// Timestamp of the first and last staged message (0 when none).
    pub first_timestamp_ns: u64,
    pub last_timestamp_ns: u64,
    pub index: Vec<IndexEntry>,
}

impl Segment {
    /// A segment with no data yet, over an open file.
    pub fn empty(directory: &Path, first_sequence: u64, file: FileId, capacity_bytes: u64) -> Segment {
        Segment {
            first_sequence,
            path: directory.join(segment_name(first_sequence)),
            file,
            capacity_bytes,
            staged_end_offset: 0,
            acknowledged_end_offset: 0,
            last_sequence: first_sequence - 1,
            first_timestamp_ns: 0,
            last_timestamp_ns: 0,
            index: Vec::new(),
        }
    }

    /// Messages staged in this segment.
    pub fn messages(&self) -> u64 {
        self.last_sequence + 1 - self.first_sequence
    }

    /// Whether `bytes` more fit after what is staged.
    pub fn fits(&self, bytes: u64) -> bool {
        self.staged_end_offset + bytes <= self.capacity_bytes
    }

    /// Records a message staged at `offset` (indexes it when due).
    pub fn note_message(&mut self, sequence: u64, offset: u64, timestamp_ns: u64) {
        debug_assert_eq!(sequence, self.last_sequence + 1);
        let due = match self.index.last() {
            None => true,
            Some(last) => offset >= last.offset + INDEX_INTERVAL_BYTES,
        };
        if due {
            self.index.push(IndexEntry { sequence, offset, timestamp_ns });
        }
        if self.messages() == 0 {
            self.first_timestamp_ns = timestamp_ns;
        }
        self.last_sequence = sequence;
        self.last_timestamp_ns = timestamp_ns;
    }

    /// Forgets everything staged from `offset` on (a refused commit):
    /// `last_sequence` becomes `first_rolled_back - 1`.
    pub fn roll_back(&mut self, offset: u64, first_rolled_back: u64, last_timestamp_ns: u64) {
        debug_assert!(offset >= self.acknowledged_end_offset);
        self.staged_end_offset = offset;
        self.last_sequence = first_rolled_back - 1;
        self.last_timestamp_ns = last_timestamp_ns;
        self.index.retain(|entry| entry.sequence < first_rolled_back);
        if self.messages() == 0 {
            self.first_timestamp_ns = 0;
        }
    }

    /// The offset to start scanning from for `sequence` (an index entry at
    /// or before it).
    pub fn offset_for_sequence(&self, sequence: u64) -> u64 {
        let after = self.index.partition_point(|entry| entry.sequence <= sequence);
        if after == 0 {
            0
        } else {
            self.index[after - 1].offset
        }
    }

    /// The offset to start scanning from for the first message at or after
    /// `timestamp_ns` (the last index entry strictly before it).
    pub fn offset_for_time(&self, timestamp_ns: u64) -> u64 {
        let after = self.index.partition_point(|entry| entry.timestamp_ns < timestamp_ns);
        if after == 0 {
            0
        } else {
            self.index[after - 1].offset
        }
    }

    pub fn close(&self, disk: &mut dyn Disk) {
        disk.close(self.file);
    }
}

/// Reads `bytes` at `offset` of `file` into one shared buffer (fewer at end
/// of file).
pub fn read_exact_or_less(disk: &mut dyn Disk, file: FileId, offset: u64, bytes: usize) -> Result<Bytes, DiskError> {
    let mut buffer = BytesMut::zeroed(bytes);
    let mut filled = 0;
    while filled < bytes {
        let count = disk.read_at(file, offset + filled as u64, &mut buffer[filled..])?;
        if count == 0 {
            break;
        }
        filled += count;
    }
    buffer.truncate(filled);
    Ok(buffer.freeze())
}

/// Walks the records of `segment` between `from_offset` and `end_offset`
/// (data known valid: acknowledged or scanned at open), handing each whole
/// record to `visit` as a slice of a shared read buffer; `visit` returns
/// false to stop. Reads `chunk_bytes` (at least one record) at a time.
pub fn walk_records(
    disk: &mut dyn Disk,
    segment: &Segment,
    from_offset: u64,
    end_offset: u64,
    chunk_bytes: usize,
    visit: &mut dyn FnMut(Bytes) -> bool,
) -> Result<(), WalkError> {
    let mut offset = from_offset;
    while offset < end_offset {
        let want = (chunk_bytes.max(READ_CHUNK_BYTES) as u64).min(end_offset - offset) as usize;
        let chunk = read_exact_or_less(disk, segment.file, offset, want)?;
        let mut at = 0usize;
        while at < chunk.len() {
            let rest = &chunk[at..];
            match record::check(rest) {
                Check::Complete(length) => {
                    if !visit(chunk.slice(at..at + length)) {
                        return Ok(());
                    }
                    at += length;
                }
                Check::Incomplete if at > 0 || (rest.len() as u64) < end_offset - offset => break,
                _ => return Err(WalkError::Corrupt { path: segment.path.clone(), offset: offset + at as u64 }),
            }
        }
        if at == 0 {
            // One record larger than the chunk: read exactly it next time.
            let length = record::length_field(&chunk) as usize;
            if length < RECORD_BYTES_MIN {
                return Err(WalkError::Corrupt { path: segment.path.clone(), offset });
            }
            let whole = read_exact_or_less(disk, segment.file, offset, length)?;
            match record::check(&whole) {
                Check::Complete(_) if visit(whole.clone()) => at = length,
                Check::Complete(_) => return Ok(()),
                _ => return Err(WalkError::Corrupt { path: segment.path.clone(), offset }),
            }
        }
        offset += at as u64;
    }
    Ok(())
}

/// Why a walk over known-valid data stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalkError {
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// Data that was valid no longer is (a media error since it was read).
    #[error("corrupt record in {path} at offset {offset}", path = path.display())]
    Corrupt { path: PathBuf, offset: u64 },
}
