//! # A stream's log: appends, group commit, acknowledgements, reads
//!
//! [`StreamLog`] is a state machine; it does no hot-path IO itself. The
//! owning shard calls [`StreamLog::append`] (stages a record, returns its
//! sequence), drains [`StreamLog::next_io`] and submits each [`IoRequest`] on
//! its io_uring ring, hands each completion back through
//! [`StreamLog::complete`] (any order, matched by [`IoTag`]), and drains
//! [`StreamLog::next_event`] for acknowledgements. [`drive_blocking`] does
//! the same synchronously through a [`Disk`], for tests and as a fallback.
//!
//! **Group commit.** At most one commit is in flight: its write (maybe in
//! several pieces after short writes) and, under `Always`, its fdatasync.
//! Appends arriving meanwhile gather into staged batches of at most
//! `batch_bytes_max`; the next commit takes the oldest. One fsync thus
//! covers every publisher that arrived during the previous one. Each commit
//! write starts with a commit marker (see [`crate::record`]) so recovery can
//! tell a torn tail from corruption.
//!
//! **Acknowledgement.** `Always`: after the commit's fdatasync succeeded.
//! `Interval(d)`: after the write completed; [`StreamLog::tick`] makes an
//! fdatasync due at most every `d`. `Memory`: at once, no disk.
//!
//! **Segment roll.** A batch never spans two segments. When a record does
//! not fit in the active segment, `append` creates and preallocates the next
//! file and syncs the directory synchronously through the `Disk`: rare (once
//! per `segment_bytes`), and it must be durable before any data in the file
//! is acknowledged. Retention's deletions are synchronous the same way.
//!
//! **Storage errors.** ENOSPC on a write or an allocation refuses the
//! failed commit and everything staged after it (`Refused(DiskFull)`), gives
//! their sequences back, and refuses new appends except one probe every
//! `disk_full_retry`; the first write that succeeds clears the state. Any
//! other write or fsync failure fails the log closed: everything pending
//! and everything later is refused with `StorageFailed`; an fsync is never
//! retried. Reads keep working in both cases. A refusal promises "not
//! acknowledged", not "not on disk": if part of a refused commit reached
//! the page cache before the error, a crash before its sequences are
//! reused can bring those messages back at the next open (contiguous, and
//! never in place of an acknowledged message).
//!
//! ## Invariants
//! - Sequences are contiguous from `first_sequence`; a refused commit gives
//!   its sequences back, so the next append reuses them.
//! - Acknowledged sequences only grow, in order; a message is readable once
//!   acknowledged.
//! - Under `Always`, `Acked` follows the successful fdatasync of a write
//!   that covered the whole commit.
//!
//! ## Shutdown
//! Stop appending, call [`StreamLog::request_sync`], and keep driving IO
//! until [`StreamLog::is_idle`]; then [`StreamLog::close`]. Whatever is
//! abandoned earlier was never acknowledged under `Always` (it is recovered
//! or dropped as a torn tail at the next open).

mod commit;
mod drive;
mod memory;
mod read;
mod types;

use std::collections::VecDeque;

use bytes::BytesMut;

pub use self::drive::{drive_blocking, CompletionOrder};
pub use self::types::*;
use crate::disk::{Disk, DiskError, FileId};
use crate::record::{self, RECORD_BYTES_MIN};
use crate::recovery::{self, RecoveryReport};
use crate::retention::Totals;
use crate::segment::Segment;

/// Appends gathered for one commit write, all in one segment.
#[derive(Debug)]
struct Batch {
    file: FileId,
    segment_first_sequence: u64,
    offset: u64,
    /// Starts with room for the commit marker, filled when sealed.
    buffer: BytesMut,
    first_sequence: u64,
    last_sequence: u64,
    /// The segment's last timestamp before this batch (for a roll back).
    previous_last_timestamp_ns: u64,
}

/// Interval-mode fdatasync bookkeeping.
#[derive(Debug, Default)]
struct IntervalSync {
    /// Files written since their last sync, oldest first, with the last
    /// sequence written to each.
    dirty: VecDeque<(FileId, u64)>,
    /// When the oldest write not yet synced completed.
    dirty_since_ns: u64,
    due: bool,
    /// The sync in flight: its tag, file and the last sequence it covers.
    in_flight: Option<(IoTag, FileId, u64)>,
}

/// A stream's log. See the module header.
#[derive(Debug)]
pub struct StreamLog {
    config: LogConfig,
    segments: VecDeque<Segment>,
    memory: memory::MemoryRing,
    next_sequence: u64,
    first_sequence: u64,
    acknowledged_last: u64,
    durable_last: u64,
    last_timestamp_ns: u64,
    now_ns: u64,
    /// Record bytes (markers included) of every segment, staged data too.
    stored_bytes: u64,
    staged: VecDeque<Batch>,
    /// Bytes staged or in flight, not yet acknowledged.
    pending_bytes: u64,
    commit: Option<commit::Commit>,
    interval: IntervalSync,
    next_tag: u64,
    /// The write just handed out, until the next `next_io` call: a sync may
    /// be linked to it only then.
    link_window: bool,
    events: VecDeque<AckEvent>,
    state: LogState,
    /// Segments emptied by a refused commit, removed at the next call that
    /// has the disk.
    removals: Vec<Segment>,
    commits: u64,
    committed_messages: u64,
    refused_messages: u64,
}

impl StreamLog {
    /// Opens (recovering) or creates the log in `config.directory`.
    pub fn open(disk: &mut dyn Disk, config: LogConfig) -> Result<(StreamLog, RecoveryReport), LogError> {
        config.validate()?;
        let mut log = StreamLog {
            config,
            segments: VecDeque::new(),
            memory: memory::MemoryRing::default(),
            next_sequence: 1,
            first_sequence: 1,
            acknowledged_last: 0,
            durable_last: 0,
            last_timestamp_ns: 0,
            now_ns: 0,
            stored_bytes: 0,
            staged: VecDeque::new(),
            pending_bytes: 0,
            commit: None,
            interval: IntervalSync::default(),
            next_tag: 0,
            link_window: false,
            events: VecDeque::new(),
            state: LogState::Healthy,
            removals: Vec::new(),
            commits: 0,
            committed_messages: 0,
            refused_messages: 0,
        };
        if log.config.durability == Durability::Memory {
            return Ok((log, RecoveryReport::default()));
        }
        let (segments, report) = recovery::recover(disk, &log.config.directory, log.config.segment_bytes)?;
        log.segments = segments.into();
        if let (Some(first), Some(last)) = (log.segments.front(), log.segments.back()) {
            log.first_sequence = first.first_sequence;
            log.next_sequence = last.last_sequence + 1;
            log.last_timestamp_ns = log.segments.iter().map(|segment| segment.last_timestamp_ns).max().unwrap_or(0);
        }
        log.acknowledged_last = log.next_sequence - 1;
        log.durable_last = log.acknowledged_last;
        log.stored_bytes = log.segments.iter().map(|segment| segment.staged_end_offset).sum();
        let segment_bytes = log.config.segment_bytes;
        match log.segments.back_mut() {
            Some(active) if active.capacity_bytes < segment_bytes => {
                disk.allocate(active.file, segment_bytes)?;
                active.capacity_bytes = segment_bytes;
            }
            Some(_) => {}
            None => log.roll(disk)?,
        }
        Ok((log, report))
    }

    /// Stages one message; returns its sequence. No IO for `Always` and
    /// `Interval` except a segment roll; the acknowledgement comes later as
    /// an [`AckEvent`] (at once, as an event too, for `Memory`).
    pub fn append(
        &mut self,
        disk: &mut dyn Disk,
        now_ns: u64,
        subject: &[u8],
        headers: &[u8],
        payload: &[u8],
    ) -> Result<u64, AppendError> {
        self.now_ns = now_ns;
        self.remove_rolled_back(disk);
        if let LogState::Failed { reason } = &self.state {
            return Err(AppendError::StorageFailed { reason: reason.clone() });
        }
        let record_bytes = self.check_sizes(subject.len(), headers.len(), payload.len())?;
        if self.config.durability == Durability::Memory {
            return self.append_memory(now_ns, subject, headers, payload, record_bytes);
        }
        if let LogState::DiskFull { retry_at_ns } = self.state {
            if now_ns < retry_at_ns {
                return Err(AppendError::DiskFull);
            }
            // This append is the probe; the next one waits another period.
            self.state = LogState::DiskFull { retry_at_ns: self.retry_at() };
        }
        let totals = Totals { messages: self.next_sequence - self.first_sequence, bytes: self.stored_bytes };
        if let Some(limit) = self.config.retention.refuses(totals, record_bytes as u64) {
            return Err(AppendError::LimitReached(limit));
        }
        if self.pending_bytes + record_bytes as u64 > self.config.pending_bytes_max {
            return Err(AppendError::PendingFull { pending_bytes: self.pending_bytes });
        }
        let rolled = self.stage(disk, subject, headers, payload, record_bytes)?;
        if rolled {
            self.enforce_retention(disk);
        }
        Ok(self.next_sequence - 1)
    }

    /// The record size of a message, or why it is refused outright.
    fn check_sizes(&self, subject: usize, headers: usize, payload: usize) -> Result<usize, AppendError> {
        if subject > record::SUBJECT_BYTES_MAX {
            return Err(AppendError::SubjectTooLong { bytes: subject });
        }
        let message_bytes = headers.saturating_add(payload);
        if let Some(limit) = self.config.retention.message_bytes_max {
            if message_bytes > limit {
                return Err(AppendError::MessageTooLarge { bytes: message_bytes, limit });
            }
        }
        // A record must fit in an empty segment after its commit marker.
        let segment_room = (self.config.segment_bytes as usize).saturating_sub(RECORD_BYTES_MIN);
        let limit = segment_room.min(record::RECORD_BYTES_MAX);
        match record::encoded_bytes(subject, headers, payload) {
            Ok(bytes) if bytes <= limit => Ok(bytes),
            Ok(bytes) | Err(record::RecordError::TooLarge { bytes }) => {
                Err(AppendError::MessageTooLarge { bytes, limit })
            }
            Err(_) => Err(AppendError::SubjectTooLong { bytes: subject }),
        }
    }

    fn retry_at(&self) -> u64 {
        self.now_ns.saturating_add(self.config.disk_full_retry.as_nanos() as u64)
    }

    /// Encodes the record into the last staged batch or a new one (rolling
    /// the segment when it does not fit). Returns whether it rolled.
    fn stage(
        &mut self,
        disk: &mut dyn Disk,
        subject: &[u8],
        headers: &[u8],
        payload: &[u8],
        record_bytes: usize,
    ) -> Result<bool, AppendError> {
        let Some(active) = self.segments.back() else {
            return Err(AppendError::StorageFailed { reason: "no active segment".to_string() });
        };
        let joins_last = self.staged.back().is_some_and(|batch| {
            batch.file == active.file && batch.buffer.len() + record_bytes <= self.config.batch_bytes_max
        });
        let needed = record_bytes + if joins_last { 0 } else { RECORD_BYTES_MIN };
        let mut rolled = false;
        if !active.fits(needed as u64) {
            self.roll(disk).map_err(|error| self.storage_error(error))?;
            rolled = true;
        }
        let sequence = self.next_sequence;
        let timestamp_ns = self.now_ns.max(self.last_timestamp_ns);
        let Some(active) = self.segments.back_mut() else { unreachable!("a segment was just checked or created") };
        if rolled || !joins_last {
            let mut buffer = BytesMut::with_capacity(self.config.batch_bytes_max.min(64 * 1024).max(needed));
            buffer.extend_from_slice(&[0u8; RECORD_BYTES_MIN]);
            self.staged.push_back(Batch {
                file: active.file,
                segment_first_sequence: active.first_sequence,
                offset: active.staged_end_offset,
                buffer,
                first_sequence: sequence,
                last_sequence: sequence - 1,
                previous_last_timestamp_ns: active.last_timestamp_ns,
            });
            active.staged_end_offset += RECORD_BYTES_MIN as u64;
            self.stored_bytes += RECORD_BYTES_MIN as u64;
            self.pending_bytes += RECORD_BYTES_MIN as u64;
        }
        let Some(batch) = self.staged.back_mut() else { unreachable!("a batch was just checked or pushed") };
        let written = record::encode_into(&mut batch.buffer, sequence, timestamp_ns, subject, headers, payload)
            .map_err(|error| AppendError::StorageFailed { reason: error.to_string() })?;
        debug_assert_eq!(written, record_bytes);
        batch.last_sequence = sequence;
        active.note_message(sequence, active.staged_end_offset, timestamp_ns);
        active.staged_end_offset += record_bytes as u64;
        debug_assert!(active.staged_end_offset <= active.capacity_bytes);
        self.stored_bytes += record_bytes as u64;
        self.pending_bytes += record_bytes as u64;
        self.next_sequence += 1;
        self.last_timestamp_ns = timestamp_ns;
        Ok(rolled)
    }

    /// Turns a synchronous disk error into the log's state and the answer
    /// for the append that hit it.
    fn storage_error(&mut self, error: DiskError) -> AppendError {
        match error {
            DiskError::Full(_) => {
                self.state = LogState::DiskFull { retry_at_ns: self.retry_at() };
                AppendError::DiskFull
            }
            other => {
                let reason = other.to_string();
                self.fail_closed(reason.clone());
                AppendError::StorageFailed { reason }
            }
        }
    }

    /// Creates, preallocates and makes durable the segment that starts at
    /// `next_sequence`, and makes it the active one.
    fn roll(&mut self, disk: &mut dyn Disk) -> Result<(), DiskError> {
        let first = self.next_sequence;
        let directory = self.config.directory.clone();
        let path = directory.join(crate::segment::segment_name(first));
        let file = disk.open(&path, true)?;
        let prepared = disk.allocate(file, self.config.segment_bytes).and_then(|()| disk.sync_directory(&directory));
        if let Err(error) = prepared {
            disk.close(file);
            // Best effort: an empty file left behind is removed by recovery
            // or by the next roll's open of the same name.
            let _ = disk.remove(&path);
            return Err(error);
        }
        if let Some(previous) = self.segments.back() {
            debug_assert_eq!(previous.last_sequence + 1, first);
        }
        self.segments.push_back(Segment::empty(&directory, first, file, self.config.segment_bytes));
        Ok(())
    }

    /// Deletes the oldest segments while a retention limit says so: whole,
    /// fully acknowledged, never the active one, none with IO in flight.
    fn enforce_retention(&mut self, disk: &mut dyn Disk) {
        let mut removed_any = false;
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let busy = self.commit.as_ref().is_some_and(|commit| commit.file == oldest.file)
                || self.interval.in_flight.is_some_and(|(_, file, _)| file == oldest.file);
            let totals = Totals { messages: self.next_sequence - self.first_sequence, bytes: self.stored_bytes };
            let wanted = self.config.retention.should_delete_oldest(totals, oldest.last_timestamp_ns, self.now_ns);
            if busy || !wanted || oldest.last_sequence > self.acknowledged_last {
                break;
            }
            if disk.remove(&oldest.path).is_err() {
                break;
            }
            let Some(oldest) = self.segments.pop_front() else { break };
            oldest.close(disk);
            self.interval.dirty.retain(|(file, _)| *file != oldest.file);
            self.stored_bytes -= oldest.staged_end_offset;
            self.first_sequence = oldest.last_sequence + 1;
            removed_any = true;
        }
        if removed_any {
            // A failed directory sync only delays the removal's durability;
            // recovery accepts a log that starts later or earlier.
            let _ = disk.sync_directory(&self.config.directory);
        }
    }

    fn remove_rolled_back(&mut self, disk: &mut dyn Disk) {
        if self.removals.is_empty() {
            return;
        }
        for segment in self.removals.drain(..) {
            segment.close(disk);
            let _ = disk.remove(&segment.path);
        }
        let _ = disk.sync_directory(&self.config.directory);
    }

    /// Advances the clock: makes an interval fdatasync due, applies age
    /// retention, finishes deferred removals. Call it every few ms.
    pub fn tick(&mut self, disk: &mut dyn Disk, now_ns: u64) {
        self.now_ns = now_ns;
        self.remove_rolled_back(disk);
        if let Durability::Interval(interval) = self.config.durability {
            // A clock that went back restarts the interval rather than
            // postponing the sync by the jump.
            self.interval.dirty_since_ns = self.interval.dirty_since_ns.min(now_ns);
            let elapsed = now_ns - self.interval.dirty_since_ns;
            if !self.interval.dirty.is_empty() && elapsed >= interval.as_nanos() as u64 {
                self.interval.due = true;
            }
        }
        match self.config.durability {
            Durability::Memory => self.enforce_memory_retention(),
            _ => self.enforce_retention(disk),
        }
    }

    /// Makes an fdatasync of everything written due now (shutdown, or an
    /// operator's flush); no effect under `Always` and `Memory`.
    pub fn request_sync(&mut self) {
        if !self.interval.dirty.is_empty() {
            self.interval.due = true;
        }
    }

    /// No staged batch, no IO in flight, nothing written but unsynced.
    pub fn is_idle(&self) -> bool {
        self.staged.is_empty()
            && self.commit.is_none()
            && self.interval.in_flight.is_none()
            && (self.interval.dirty.is_empty() || matches!(self.state, LogState::Failed { .. }))
    }

    /// The next acknowledgement or refusal, oldest first.
    pub fn next_event(&mut self) -> Option<AckEvent> {
        self.events.pop_front()
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn state(&self) -> &LogState {
        &self.state
    }

    /// The sequence the next append gets.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    pub fn info(&self) -> LogInfo {
        let bytes = match self.config.durability {
            Durability::Memory => self.memory.bytes,
            _ => self.segments.iter().map(|segment| segment.acknowledged_end_offset).sum(),
        };
        LogInfo {
            messages: self.acknowledged_last + 1 - self.first_sequence,
            bytes,
            first_sequence: self.first_sequence,
            last_sequence: self.acknowledged_last,
            durable_sequence: self.durable_last,
            segments: self.segments.len(),
            commits: self.commits,
            mean_batch_messages: if self.commits == 0 {
                0.0
            } else {
                self.committed_messages as f64 / self.commits as f64
            },
            refused_messages: self.refused_messages,
            state: self.state.clone(),
        }
    }

    /// Closes every file. Unsynced data stays in the page cache.
    pub fn close(self, disk: &mut dyn Disk) {
        for segment in self.segments.iter().chain(self.removals.iter()) {
            segment.close(disk);
        }
    }
}
