//! # Group commit: handing out IO and taking completions back
//!
//! One [`Commit`] at a time: the oldest staged batch, sealed (its commit
//! marker filled in) and frozen. Its write is handed out whole; after a
//! short write the rest is handed out again. Under `Always` one fdatasync
//! follows, either linked to the write just handed out or once every byte
//! is written. Completions are matched by tag, so their order does not
//! matter, and a completion for a request the log no longer waits for (a
//! sync cancelled after its batch was refused) is ignored.
//!
//! ## Invariants
//! - At most one write and one fdatasync of a commit are outstanding.
//! - A sync counts only if it was handed out after (or linked to) a write
//!   that then completed whole; a short write voids it.
//! - Under `Always` a commit is acknowledged only when every byte is
//!   written and such a sync succeeded.
//!
//! ## Shutdown
//! See [`crate::log`]: drive until idle.

use bytes::Bytes;

use super::{AckEvent, AppendError, Durability, IoOperation, IoOutcome, IoRequest, IoTag, LogState, StreamLog};
use crate::disk::{DiskError, FileId};
use crate::record;

/// The commit in flight.
#[derive(Debug)]
pub(super) struct Commit {
    pub(super) file: FileId,
    segment_first_sequence: u64,
    offset: u64,
    data: Bytes,
    written: usize,
    first_sequence: u64,
    last_sequence: u64,
    previous_last_timestamp_ns: u64,
    write_outstanding: Option<IoTag>,
    sync_outstanding: Option<IoTag>,
    synced: bool,
}

/// What a completion leads to, decided while the commit is borrowed.
enum Next {
    Continue,
    WriteSucceeded,
    DiskFull,
    FailClosed(String),
}

impl Commit {
    fn messages(&self) -> u64 {
        self.last_sequence + 1 - self.first_sequence
    }
}

impl StreamLog {
    fn take_tag(&mut self) -> IoTag {
        self.next_tag += 1;
        IoTag(self.next_tag)
    }

    /// The next IO to perform, if any. Call it until it returns `None`
    /// after every `append`, `complete` and `tick`.
    pub fn next_io(&mut self) -> Option<IoRequest> {
        let may_link = std::mem::take(&mut self.link_window);
        if !matches!(self.state, LogState::Healthy | LogState::DiskFull { .. }) {
            return None;
        }
        if self.commit.is_none() {
            self.seal_next_batch();
        }
        if let Some(request) = self.next_commit_io(may_link) {
            return Some(request);
        }
        self.next_interval_sync()
    }

    /// Makes the oldest staged batch the commit in flight.
    fn seal_next_batch(&mut self) {
        let Some(mut batch) = self.staged.pop_front() else { return };
        let marker = record::encode_commit_marker(self.durable_last);
        batch.buffer[..marker.len()].copy_from_slice(&marker);
        self.commit = Some(Commit {
            file: batch.file,
            segment_first_sequence: batch.segment_first_sequence,
            offset: batch.offset,
            data: batch.buffer.freeze(),
            written: 0,
            first_sequence: batch.first_sequence,
            last_sequence: batch.last_sequence,
            previous_last_timestamp_ns: batch.previous_last_timestamp_ns,
            write_outstanding: None,
            sync_outstanding: None,
            synced: false,
        });
    }

    fn next_commit_io(&mut self, may_link: bool) -> Option<IoRequest> {
        let wants_sync = self.config.durability == Durability::Always;
        let tag = IoTag(self.next_tag + 1);
        let commit = self.commit.as_mut()?;
        if commit.write_outstanding.is_none() && commit.written < commit.data.len() {
            commit.write_outstanding = Some(tag);
            commit.synced = false;
            let operation = IoOperation::Write {
                file: commit.file,
                offset: commit.offset + commit.written as u64,
                data: commit.data.slice(commit.written..),
            };
            self.next_tag += 1;
            self.link_window = true;
            return Some(IoRequest { tag, operation });
        }
        let all_written = commit.write_outstanding.is_none() && commit.written == commit.data.len();
        let can_sync = wants_sync
            && commit.sync_outstanding.is_none()
            && !commit.synced
            && (all_written || (commit.write_outstanding.is_some() && may_link));
        if !can_sync {
            return None;
        }
        commit.sync_outstanding = Some(tag);
        let operation = IoOperation::SyncData { file: commit.file, linked: !all_written };
        self.next_tag += 1;
        Some(IoRequest { tag, operation })
    }

    fn next_interval_sync(&mut self) -> Option<IoRequest> {
        if !self.interval.due || self.interval.in_flight.is_some() {
            return None;
        }
        let Some(&(file, last_sequence)) = self.interval.dirty.front() else {
            self.interval.due = false;
            return None;
        };
        let tag = self.take_tag();
        self.interval.in_flight = Some((tag, file, last_sequence));
        Some(IoRequest { tag, operation: IoOperation::SyncData { file, linked: false } })
    }

    /// Hands back how a request ended. Unknown tags are ignored.
    pub fn complete(&mut self, tag: IoTag, outcome: IoOutcome) {
        if let Some((sync_tag, file, last_sequence)) = self.interval.in_flight {
            if sync_tag == tag {
                self.interval.in_flight = None;
                return self.complete_interval_sync(file, last_sequence, outcome);
            }
        }
        let Some(commit) = self.commit.as_mut() else { return };
        let next = if commit.write_outstanding == Some(tag) {
            commit.write_outstanding = None;
            match outcome {
                IoOutcome::Written { bytes: 0 } if commit.written < commit.data.len() => {
                    Next::FailClosed("write made no progress".to_string())
                }
                IoOutcome::Written { bytes } => {
                    commit.written = (commit.written + bytes).min(commit.data.len());
                    if commit.written < commit.data.len() {
                        // A short write: any sync linked to it is void.
                        commit.synced = false;
                    }
                    Next::WriteSucceeded
                }
                IoOutcome::Cancelled => {
                    commit.synced = false;
                    Next::Continue
                }
                IoOutcome::Synced => Next::FailClosed("a write completed as a sync".to_string()),
                IoOutcome::Failed(DiskError::Full(_)) => Next::DiskFull,
                IoOutcome::Failed(error) => Next::FailClosed(error.to_string()),
            }
        } else if commit.sync_outstanding == Some(tag) {
            commit.sync_outstanding = None;
            match outcome {
                IoOutcome::Synced => {
                    // Linked to a write that already came back short: the
                    // kernel should have cancelled it; do not trust it.
                    let voided = commit.write_outstanding.is_none() && commit.written < commit.data.len();
                    commit.synced = !voided;
                    Next::Continue
                }
                IoOutcome::Cancelled => Next::Continue,
                // A failed fdatasync is never retried and trusted, ENOSPC
                // included: what reached the disk is unknown.
                IoOutcome::Failed(error) => Next::FailClosed(format!("fdatasync: {error}")),
                IoOutcome::Written { .. } => Next::FailClosed("a sync completed as a write".to_string()),
            }
        } else {
            return;
        };
        match next {
            Next::Continue => {}
            Next::WriteSucceeded => {
                if matches!(self.state, LogState::DiskFull { .. }) {
                    // A write succeeded: the disk has room again.
                    self.state = LogState::Healthy;
                }
            }
            Next::DiskFull => return self.refuse_for_disk_full(),
            Next::FailClosed(reason) => return self.fail_closed(reason),
        }
        self.finish_commit_if_done();
    }

    fn finish_commit_if_done(&mut self) {
        let Some(commit) = self.commit.as_ref() else { return };
        let written = commit.write_outstanding.is_none() && commit.written == commit.data.len();
        let done = match self.config.durability {
            Durability::Always => written && commit.synced && commit.sync_outstanding.is_none(),
            _ => written,
        };
        if !done {
            return;
        }
        let Some(commit) = self.commit.take() else { return };
        if self.config.durability == Durability::Always {
            self.durable_last = commit.last_sequence;
        } else {
            if self.interval.dirty.is_empty() {
                self.interval.dirty_since_ns = self.now_ns;
            }
            match self.interval.dirty.iter_mut().find(|(file, _)| *file == commit.file) {
                Some(entry) => entry.1 = commit.last_sequence,
                None => self.interval.dirty.push_back((commit.file, commit.last_sequence)),
            }
        }
        let end = commit.offset + commit.data.len() as u64;
        if let Some(segment) = self.segments.iter_mut().find(|segment| segment.file == commit.file) {
            segment.acknowledged_end_offset = end;
        }
        self.acknowledged_last = commit.last_sequence;
        self.pending_bytes -= commit.data.len() as u64;
        self.commits += 1;
        self.committed_messages += commit.messages();
        self.events
            .push_back(AckEvent::Acked { first_sequence: commit.first_sequence, last_sequence: commit.last_sequence });
    }

    fn complete_interval_sync(&mut self, file: FileId, last_sequence: u64, outcome: IoOutcome) {
        match outcome {
            IoOutcome::Synced => {
                self.durable_last = self.durable_last.max(last_sequence);
                if self.interval.dirty.front() == Some(&(file, last_sequence)) {
                    self.interval.dirty.pop_front();
                }
                // Other files still dirty are synced next; this file's
                // writes made while it ran wait for the next interval.
                self.interval.due = self.interval.dirty.front().is_some_and(|(dirty, _)| *dirty != file);
                self.interval.dirty_since_ns = self.now_ns;
            }
            IoOutcome::Cancelled => {}
            IoOutcome::Failed(error) => self.fail_closed(format!("fdatasync: {error}")),
            IoOutcome::Written { .. } => self.fail_closed("a sync completed as a write".to_string()),
        }
    }

    /// ENOSPC on the commit's write: refuse it and everything staged after
    /// it, give their sequences back, and wait for a probe.
    fn refuse_for_disk_full(&mut self) {
        let Some(commit) = self.commit.take() else { return };
        let last = self.next_sequence - 1;
        self.push_refusal(commit.first_sequence, last, AppendError::DiskFull);
        while self.segments.back().is_some_and(|segment| segment.first_sequence > commit.segment_first_sequence) {
            let Some(segment) = self.segments.pop_back() else { break };
            self.stored_bytes -= segment.staged_end_offset;
            self.removals.push(segment);
        }
        if let Some(segment) = self.segments.back_mut() {
            debug_assert_eq!(segment.first_sequence, commit.segment_first_sequence);
            self.stored_bytes -= segment.staged_end_offset - commit.offset;
            segment.roll_back(commit.offset, commit.first_sequence, commit.previous_last_timestamp_ns);
        }
        self.next_sequence = commit.first_sequence;
        self.staged.clear();
        self.pending_bytes = 0;
        self.state = LogState::DiskFull { retry_at_ns: self.retry_at() };
    }

    /// A write or fsync failed: refuse everything pending, and every later
    /// append, for good.
    pub(super) fn fail_closed(&mut self, reason: String) {
        let in_flight = self.commit.take().map(|commit| commit.first_sequence);
        let first = in_flight.or(self.staged.front().map(|batch| batch.first_sequence));
        if let Some(first) = first {
            let error = AppendError::StorageFailed { reason: reason.clone() };
            self.push_refusal(first, self.next_sequence - 1, error);
        }
        self.staged.clear();
        self.pending_bytes = 0;
        self.interval.in_flight = None;
        self.state = LogState::Failed { reason };
    }

    fn push_refusal(&mut self, first_sequence: u64, last_sequence: u64, error: AppendError) {
        if last_sequence < first_sequence {
            return;
        }
        self.refused_messages += last_sequence + 1 - first_sequence;
        self.events.push_back(AckEvent::Refused { first_sequence, last_sequence, error });
    }
}
