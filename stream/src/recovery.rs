//! # Recovery: scanning a stream's segments at startup
//!
//! Opening a log reads every segment whole, checks every record, rebuilds
//! the sparse indexes, and decides what a damaged place in the log means:
//!
//! - The chain of records is followed from the first segment: each message
//!   must be valid and carry the next sequence; a segment ends at its first
//!   zero length field, and the next segment must be named by the next
//!   sequence. The first place the chain breaks (an invalid record, a
//!   sequence out of order, a gap before the next segment, or non-zero bytes
//!   after the end of the last segment) is the **damage point** `X`, where
//!   the message with sequence `E` was expected.
//! - Everything after `X` (the rest of that segment and every later one) is
//!   searched, at every 8-byte offset, for a valid **commit marker** (see
//!   [`crate::record`]) saying that some sequence `>= E` was durable when a
//!   later commit was written. If one exists, `X` held data a writer had
//!   seen fdatasynced: that is **corruption** and `open` fails with
//!   `LogError::Corrupt { file, offset: X }`; nothing is changed on disk.
//! - Otherwise the damage is a **torn tail**: it touches only data no writer
//!   knew durable (a crash mid-write, or pages of an unsynced write lost or
//!   kept out of order). The segment is cut after its last valid message (at
//!   `X`, or before a commit marker that opened the torn commit), then
//!   reallocated and fdatasynced, later segments are removed (then the directory synced),
//!   and the [`RecoveryReport`] names each file, offset and bytes dropped.
//!
//! Under `always`, every commit's write starts after the previous commit's
//! fdatasync completed, so the marker of any commit after `X` proves `X`
//! was durable. The one case this rule cannot tell apart: damage inside the
//! very last commit, with no later commit written. It is treated as a torn
//! tail (truncated and reported, never silently), because a crash during
//! that commit's write or fsync looks exactly the same.
//!
//! After the scan every recovered segment is fdatasynced once: after a
//! process crash (not a power loss) recovered data may still sit only in
//! the page cache, and the markers written from now on will claim it is
//! durable.
//!
//! ## Invariants
//! - Recovery never removes or truncates bytes before the damage point, and
//!   never removes anything when it reports corruption.
//! - Recovered segments hold contiguous sequences from the first segment's
//!   name.
//!
//! ## Shutdown
//! Runs only inside `StreamLog::open`.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::disk::{Disk, DiskError};
use crate::log::LogError;
use crate::record::{self, Check, RecordKind, RECORD_ALIGNMENT_BYTES, RECORD_BYTES_MIN};
use crate::segment::{self, Segment};

/// One cut made at recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    pub file: PathBuf,
    pub offset: u64,
    /// Non-zero bytes from `offset` to the last non-zero byte of the file.
    pub bytes_dropped: u64,
}

/// What recovery found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments_scanned: usize,
    pub messages: u64,
    /// A torn tail cut, at most one.
    pub truncations: Vec<Truncation>,
    /// Segments after a torn tail, removed (with the bytes they held).
    pub removed: Vec<Truncation>,
}

impl RecoveryReport {
    /// Whether recovery changed anything on disk.
    pub fn is_clean(&self) -> bool {
        self.truncations.iter().all(|cut| cut.bytes_dropped == 0) && self.removed.is_empty()
    }
}

/// The scan of one segment up to where its chain of records stops.
struct Scan {
    segment: Segment,
    image: Bytes,
    /// Whether non-zero bytes follow the end (junk, a torn or invalid record).
    junk_after_end: bool,
    /// Where the chain stopped: the first record that is not valid data
    /// (the end itself, or a trailing commit marker's end).
    stop_offset: u64,
}

/// Scans the segments in `directory`; returns them (oldest first, files
/// open) or the corruption found.
pub fn recover(
    disk: &mut dyn Disk,
    directory: &Path,
    segment_bytes: u64,
) -> Result<(Vec<Segment>, RecoveryReport), LogError> {
    disk.create_directory(directory)?;
    let mut firsts: Vec<u64> =
        disk.list(directory)?.iter().filter_map(|name| segment::parse_segment_name(name)).collect();
    firsts.sort_unstable();
    let mut report = RecoveryReport { segments_scanned: firsts.len(), ..RecoveryReport::default() };
    let mut recovered: Vec<Segment> = Vec::with_capacity(firsts.len());
    for (position, first) in firsts.iter().enumerate() {
        let scan = scan_segment(disk, directory, *first)?;
        let expected = scan.segment.last_sequence + 1;
        let end = scan.segment.staged_end_offset;
        let is_last = position + 1 == firsts.len();
        let continues = !is_last && firsts[position + 1] == expected;
        let chain_ok = if is_last { !scan.junk_after_end } else { continues };
        let chain_ok = chain_ok && recovered.last().is_none_or(|previous| previous.last_sequence + 1 == *first);
        if chain_ok {
            recovered.push(scan.segment);
            continue;
        }
        // The damage point: a sequence gap before this segment counts as
        // damage at the previous segment's end.
        if let Some(previous) = recovered.last() {
            if previous.last_sequence + 1 != *first {
                let previous_end = previous.staged_end_offset;
                let image = read_image(disk, previous)?;
                let expected_there = previous.last_sequence + 1;
                let path = previous.path.clone();
                let later = &firsts[position..];
                check_evidence(disk, directory, &image, previous_end, previous_end, later, expected_there, &path)?;
                scan.segment.close(disk);
                cut_tail(disk, directory, &mut recovered, &image, previous_end, segment_bytes, &mut report)?;
                remove_later(disk, directory, &firsts[position..], &mut report)?;
                return finish(disk, recovered, report);
            }
        }
        let path = scan.segment.path.clone();
        let later = &firsts[position + 1..];
        check_evidence(disk, directory, &scan.image, end, scan.stop_offset, later, expected, &path)?;
        let image = scan.image.clone();
        recovered.push(scan.segment);
        cut_tail(disk, directory, &mut recovered, &image, end, segment_bytes, &mut report)?;
        remove_later(disk, directory, &firsts[position + 1..], &mut report)?;
        return finish(disk, recovered, report);
    }
    finish(disk, recovered, report)
}

fn finish(
    disk: &mut dyn Disk,
    recovered: Vec<Segment>,
    mut report: RecoveryReport,
) -> Result<(Vec<Segment>, RecoveryReport), LogError> {
    for segment in &recovered {
        if segment.staged_end_offset > 0 {
            disk.sync_data(segment.file)?;
        }
        report.messages += segment.messages();
    }
    Ok((recovered, report))
}

fn read_image(disk: &mut dyn Disk, segment: &Segment) -> Result<Bytes, DiskError> {
    let length = disk.length(segment.file)?;
    segment::read_exact_or_less(disk, segment.file, 0, length as usize)
}

/// Opens and scans one segment.
fn scan_segment(disk: &mut dyn Disk, directory: &Path, first: u64) -> Result<Scan, LogError> {
    let path = directory.join(segment::segment_name(first));
    let file = disk.open(&path, false)?;
    let length = disk.length(file)?;
    let mut segment = Segment::empty(directory, first, file, length);
    let image = segment::read_exact_or_less(disk, file, 0, length as usize)?;
    let mut offset = 0usize;
    // The end of the last message: a commit marker with no message after
    // it (its commit torn right after the marker) is not data.
    let mut data_end = 0usize;
    while offset < image.len() {
        let rest = &image[offset..];
        if record::length_field(rest) == 0 {
            break;
        }
        let Check::Complete(total) = record::check(rest) else { break };
        let header =
            record::header(rest).map_err(|_| LogError::Corrupt { file: path.clone(), offset: offset as u64 })?;
        if header.kind == RecordKind::Message {
            if header.sequence != segment.last_sequence + 1 || header.timestamp_ns < segment.last_timestamp_ns {
                break;
            }
            segment.note_message(header.sequence, offset as u64, header.timestamp_ns);
            data_end = offset + total;
        }
        offset += total;
    }
    segment.staged_end_offset = data_end as u64;
    segment.acknowledged_end_offset = data_end as u64;
    let junk_after_end = image[data_end..].iter().any(|byte| *byte != 0);
    Ok(Scan { segment, image, junk_after_end, stop_offset: offset as u64 })
}

/// Fails with `Corrupt` at `damage_offset` when a commit marker after
/// `search_from` (in this image or a later segment) says a sequence
/// `>= expected` was durable.
#[allow(clippy::too_many_arguments)]
fn check_evidence(
    disk: &mut dyn Disk,
    directory: &Path,
    image: &[u8],
    search_from: u64,
    damage_offset: u64,
    later_firsts: &[u64],
    expected: u64,
    path: &Path,
) -> Result<(), LogError> {
    let corrupt = || LogError::Corrupt { file: path.to_path_buf(), offset: damage_offset };
    if has_durable_marker(&image[search_from as usize..], expected) {
        return Err(corrupt());
    }
    for first in later_firsts {
        let later = directory.join(segment::segment_name(*first));
        let file = disk.open(&later, false)?;
        let length = disk.length(file)?;
        let later_image = segment::read_exact_or_less(disk, file, 0, length as usize);
        disk.close(file);
        if has_durable_marker(&later_image?, expected) {
            return Err(corrupt());
        }
    }
    Ok(())
}

/// Looks at every aligned offset for a commit marker naming a durable
/// sequence `>= expected`. Cheap on zeros and garbage: only 40-byte
/// records are checksummed.
fn has_durable_marker(image: &[u8], expected: u64) -> bool {
    let mut offset = 0;
    while offset + RECORD_BYTES_MIN <= image.len() {
        let candidate = &image[offset..offset + RECORD_BYTES_MIN];
        if record::length_field(candidate) as usize == RECORD_BYTES_MIN {
            if let Ok(header) = record::header(candidate) {
                if header.kind == RecordKind::CommitMarker && header.sequence >= expected {
                    return true;
                }
            }
        }
        offset += RECORD_ALIGNMENT_BYTES;
    }
    false
}

/// Cuts the last recovered segment at `end` (its chain's end) and makes the
/// cut durable; reports the bytes dropped.
fn cut_tail(
    disk: &mut dyn Disk,
    directory: &Path,
    recovered: &mut [Segment],
    image: &[u8],
    end: u64,
    segment_bytes: u64,
    report: &mut RecoveryReport,
) -> Result<(), LogError> {
    let _ = directory;
    let Some(segment) = recovered.last_mut() else { return Ok(()) };
    let tail = &image[(end as usize).min(image.len())..];
    let bytes_dropped = tail.iter().rposition(|byte| *byte != 0).map_or(0, |last| last as u64 + 1);
    // Truncating and reallocating leaves zeros after the cut, so no stale
    // record can be mistaken for data by a later scan.
    disk.truncate(segment.file, end)?;
    segment.capacity_bytes = segment.capacity_bytes.max(segment_bytes);
    disk.allocate(segment.file, segment.capacity_bytes)?;
    disk.sync_data(segment.file)?;
    report.truncations.push(Truncation { file: segment.path.clone(), offset: end, bytes_dropped });
    Ok(())
}

/// Removes the segments named by `firsts` (after a torn tail) and syncs the
/// directory.
fn remove_later(
    disk: &mut dyn Disk,
    directory: &Path,
    firsts: &[u64],
    report: &mut RecoveryReport,
) -> Result<(), LogError> {
    if firsts.is_empty() {
        return Ok(());
    }
    for first in firsts {
        let path = directory.join(segment::segment_name(*first));
        let file = disk.open(&path, false)?;
        let length = disk.length(file)?;
        let image = segment::read_exact_or_less(disk, file, 0, length as usize);
        disk.close(file);
        let bytes = image?.iter().rposition(|byte| *byte != 0).map_or(0, |last| last as u64 + 1);
        disk.remove(&path)?;
        report.removed.push(Truncation { file: path, offset: 0, bytes_dropped: bytes });
    }
    disk.sync_directory(directory)?;
    Ok(())
}
