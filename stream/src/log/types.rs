//! # The log's configuration, errors, events and IO vocabulary
//!
//! Plain data shared by the log's parts and its callers. See
//! [`crate::log`] for how they are used.
//!
//! ## Shutdown
//! Plain data: nothing to do.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use crate::disk::{DiskError, FileId};
use crate::record::RECORD_BYTES_MIN;
use crate::retention::{Limit, Retention};

/// Default size of a segment file.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// The smallest segment the log accepts (a marker and a small record fit).
pub const SEGMENT_BYTES_MIN: u64 = 4096;
/// Default bound on one commit's write.
pub const BATCH_BYTES_DEFAULT_MAX: usize = 1024 * 1024;
/// Default bound on bytes appended but not yet acknowledged.
pub const PENDING_BYTES_DEFAULT_MAX: u64 = 64 * 1024 * 1024;
/// Default time between probe appends while the disk is full.
pub const DISK_FULL_RETRY_DEFAULT: Duration = Duration::from_secs(1);
/// A memory stream without a byte limit keeps at most this much.
pub const MEMORY_BYTES_DEFAULT_MAX: u64 = 64 * 1024 * 1024;

const _: () = assert!(SEGMENT_BYTES_MIN >= 4 * RECORD_BYTES_MIN as u64);
const _: () = assert!(BATCH_BYTES_DEFAULT_MAX as u64 <= PENDING_BYTES_DEFAULT_MAX);
const _: () = assert!(BATCH_BYTES_DEFAULT_MAX as u64 <= SEGMENT_BYTES_DEFAULT);

/// When an append is acknowledged, and what a power loss can take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// After the fdatasync covering it completed: a power loss takes
    /// nothing acknowledged.
    #[default]
    Always,
    /// After its write completed (page cache); fdatasync at most this often.
    /// A power loss can take what was acknowledged since the last sync.
    Interval(Duration),
    /// No disk at all: a bounded ring in memory, acknowledged at once.
    Memory,
}

/// One stream's log settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// The stream's own directory (segments only).
    pub directory: PathBuf,
    pub segment_bytes: u64,
    pub durability: Durability,
    /// One commit's write is at most this big (one larger record goes alone).
    pub batch_bytes_max: usize,
    /// Appends beyond this many unacknowledged bytes get `PendingFull`.
    pub pending_bytes_max: u64,
    /// While the disk is full, one probe append is let through this often.
    pub disk_full_retry: Duration,
    pub retention: Retention,
}

impl LogConfig {
    /// The defaults, for `directory`.
    pub fn new(directory: impl Into<PathBuf>) -> LogConfig {
        LogConfig {
            directory: directory.into(),
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            durability: Durability::Always,
            batch_bytes_max: BATCH_BYTES_DEFAULT_MAX,
            pending_bytes_max: PENDING_BYTES_DEFAULT_MAX,
            disk_full_retry: DISK_FULL_RETRY_DEFAULT,
            retention: Retention::default(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), LogError> {
        let problem = if self.segment_bytes < SEGMENT_BYTES_MIN {
            Some(format!("segment_bytes {} is below {SEGMENT_BYTES_MIN}", self.segment_bytes))
        } else if self.batch_bytes_max < RECORD_BYTES_MIN {
            Some(format!("batch_bytes_max {} is below {RECORD_BYTES_MIN}", self.batch_bytes_max))
        } else if self.pending_bytes_max < self.batch_bytes_max as u64 {
            Some("pending_bytes_max is below batch_bytes_max".to_string())
        } else if matches!(self.durability, Durability::Interval(interval) if interval.is_zero()) {
            Some("an interval of zero: use Always".to_string())
        } else {
            None
        };
        match problem {
            Some(text) => Err(LogError::Config(text)),
            None => Ok(()),
        }
    }
}

/// Why a log cannot be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A checksum failure or sequence gap before data a writer had seen
    /// durable. Not recoverable by the log: the stream must refuse to serve
    /// and an operator must look at the file.
    #[error("corrupt log: {file} at offset {offset}", file = file.display())]
    Corrupt { file: PathBuf, offset: u64 },
    /// The disk failed during recovery (maybe recoverable: retry later).
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The configuration is unusable (fix it).
    #[error("invalid log config: {0}")]
    Config(String),
}

/// Why an append was refused, at once or (in an [`AckEvent::Refused`])
/// after its commit failed. Clone, so one failure can refuse many appends.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// Headers plus payload over the stream's limit, or a record that cannot
    /// fit in a segment. Never succeeds on retry.
    #[error("message of {bytes} bytes is over the limit of {limit} bytes")]
    MessageTooLarge { bytes: usize, limit: usize },
    #[error("subject of {bytes} bytes is over the limit")]
    SubjectTooLong { bytes: usize },
    /// `Discard::New` and the stream is at a limit. Retry after consumers
    /// or retention made room.
    #[error("stream limit reached: {0}")]
    LimitReached(Limit),
    /// Too many bytes wait for the disk; retry soon (backpressure).
    #[error("{pending_bytes} bytes are waiting for the disk")]
    PendingFull { pending_bytes: u64 },
    /// ENOSPC. The log lets one probe through every `disk_full_retry` and
    /// recovers by itself when a write succeeds.
    #[error("disk full")]
    DiskFull,
    /// EIO or another write or fsync failure: the log failed closed and
    /// refuses every append until it is reopened. In a `Refused` event it
    /// means "not acknowledged": part of it may still be on disk and be
    /// recovered at the next open.
    #[error("storage failed: {reason}")]
    StorageFailed { reason: String },
}

/// What became of appended messages; sequences in a range are contiguous.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AckEvent {
    Acked { first_sequence: u64, last_sequence: u64 },
    Refused { first_sequence: u64, last_sequence: u64, error: AppendError },
}

/// Names one handed-out request, so a completion finds it whatever the
/// order completions arrive in (the shard puts it in the SQE's user data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IoTag(pub u64);

/// IO the owner must perform for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoRequest {
    pub tag: IoTag,
    pub operation: IoOperation,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoOperation {
    /// pwrite of `data` at `offset`; a short write is fine (the log hands
    /// out the rest).
    Write { file: FileId, offset: u64, data: Bytes },
    /// fdatasync of `file`. When `linked`, it was handed out right after a
    /// Write that is still outstanding and covers it: submit it linked after
    /// that write (IOSQE_IO_LINK). A short write then breaks the link and
    /// the sync completes ECANCELED: report [`IoOutcome::Cancelled`]; the
    /// log hands out the rest of the write and a new sync. Without linking,
    /// hold it until that write completes.
    SyncData { file: FileId, linked: bool },
}

/// How a request ended.
#[derive(Debug)]
pub enum IoOutcome {
    /// The write wrote this many bytes (maybe fewer than asked).
    Written {
        bytes: usize,
    },
    Synced,
    /// The operation failed: ENOSPC on a write is `DiskError::Full` (the
    /// batch is refused and given back), anything else fails the log closed.
    Failed(DiskError),
    /// ECANCELED (a linked sync after a short write, or a cancelled write).
    Cancelled,
}

/// The log's health.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogState {
    Healthy,
    /// ENOSPC seen; a probe append is let through after `retry_at_ns`.
    DiskFull {
        retry_at_ns: u64,
    },
    /// A write or fsync failed: the log refuses every append.
    Failed {
        reason: String,
    },
}

/// Numbers for `flit stream info` and metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct LogInfo {
    /// Acknowledged (readable) messages and the bytes of their records.
    pub messages: u64,
    pub bytes: u64,
    /// First retained and last acknowledged sequence (last = first - 1
    /// when empty).
    pub first_sequence: u64,
    pub last_sequence: u64,
    /// The highest sequence known fdatasynced.
    pub durable_sequence: u64,
    pub segments: usize,
    pub commits: u64,
    pub mean_batch_messages: f64,
    /// Messages refused after they were staged (disk full or failed).
    pub refused_messages: u64,
    pub state: LogState,
}
