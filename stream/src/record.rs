//! # One record's bytes
//!
//! A segment file is a sequence of records, each 8-byte aligned, followed by
//! zeros (the preallocated, never written space). Layout, little-endian:
//!
//! ```text
//! offset  size  field
//!      0     4  total_length      whole record, padding included; a multiple of 8
//!      4     4  crc32c            over bytes 0..4 and 8..total_length
//!      8     8  sequence          (a commit marker: the sequence known durable)
//!     16     8  timestamp_ns      wall clock, never decreasing within a stream
//!     24     2  subject_length
//!     26     2  kind              0 = message, 1 = commit marker
//!     28     4  headers_length
//!     32     4  payload_length
//!     36     -  subject, headers, payload, then zero padding to total_length
//! ```
//!
//! The CRC covers every byte but its own field, the length fields and the
//! padding included, so a flipped bit anywhere is caught; a record's length
//! is checked against its field lengths, so nothing a length field merely
//! claims is trusted (or allocated) before the CRC over those bytes passed.
//!
//! A **commit marker** opens every commit's write: it carries the highest
//! sequence the log knew to be durable (fdatasynced) when it handed the
//! write out. Recovery uses it to tell a torn tail (damage only to data no
//! writer ever saw synced) from corruption of synced data (see
//! [`crate::recovery`]). Markers take no sequence of their own.
//!
//! ## Invariants
//! - A zero `total_length` is never a record: it is where written data ends.
//! - `check` never reads past the buffer and returns `Incomplete` for every
//!   strict prefix of a valid record.
//!
//! ## Shutdown
//! Stateless: nothing to do.

use bytes::{BufMut, Bytes};

/// Bytes of the fixed header before the subject.
pub const RECORD_HEADER_BYTES: usize = 36;
/// Records start and end on this boundary, so a recovery scan can look for
/// the next record at aligned offsets only.
pub const RECORD_ALIGNMENT_BYTES: usize = 8;
/// The smallest record: a header with empty fields, padded (also the size of
/// a commit marker).
pub const RECORD_BYTES_MIN: usize = align(RECORD_HEADER_BYTES);
/// The largest record the format accepts; a stream's own limits are lower.
pub const RECORD_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Subjects are at most this long (the length field is 16 bits).
pub const SUBJECT_BYTES_MAX: usize = u16::MAX as usize;

const _: () = assert!(RECORD_BYTES_MIN == 40);
const _: () = assert!(RECORD_BYTES_MAX % RECORD_ALIGNMENT_BYTES == 0);
const _: () = assert!(RECORD_BYTES_MAX <= u32::MAX as usize);

const KIND_MESSAGE: u16 = 0;
const KIND_COMMIT_MARKER: u16 = 1;

/// Rounds `bytes` up to the record alignment.
pub const fn align(bytes: usize) -> usize {
    bytes.div_ceil(RECORD_ALIGNMENT_BYTES) * RECORD_ALIGNMENT_BYTES
}

/// A message as stored: slices of one read buffer, no copy per field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    pub sequence: u64,
    pub timestamp_ns: u64,
    pub subject: Bytes,
    pub headers: Bytes,
    pub payload: Bytes,
}

/// What kind of record a checked buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Message,
    /// Opens a commit; `sequence` is the highest sequence known durable.
    CommitMarker,
}

/// The fixed fields of a record that passed [`check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub total_length: usize,
    pub kind: RecordKind,
    pub sequence: u64,
    pub timestamp_ns: u64,
    pub subject_length: usize,
    pub headers_length: usize,
    pub payload_length: usize,
}

/// Why a buffer is not a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidReason {
    /// Zero, unaligned, below the minimum or above [`RECORD_BYTES_MAX`].
    Length,
    /// The CRC32C does not match.
    Checksum,
    /// The CRC matched but the field lengths do not add up to the total, or
    /// the kind is unknown (a writer bug, never a torn write).
    Fields,
}

/// The answer of [`check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// A whole valid record of this many bytes starts the buffer.
    Complete(usize),
    /// The buffer is a prefix of what the length field claims.
    Incomplete,
    Invalid(InvalidReason),
}

/// Errors of encoding and decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("subject is {bytes} bytes, the limit is {SUBJECT_BYTES_MAX}")]
    SubjectTooLong { bytes: usize },
    #[error("record would be {bytes} bytes, the limit is {RECORD_BYTES_MAX}")]
    TooLarge { bytes: usize },
    #[error("incomplete record")]
    Incomplete,
    #[error("invalid record: {0:?}")]
    Invalid(InvalidReason),
    #[error("a commit marker is not a message")]
    NotAMessage,
}

/// The bytes a message record takes, padding included, or an error when it
/// exceeds the format's limits.
pub fn encoded_bytes(subject: usize, headers: usize, payload: usize) -> Result<usize, RecordError> {
    if subject > SUBJECT_BYTES_MAX {
        return Err(RecordError::SubjectTooLong { bytes: subject });
    }
    let total = RECORD_HEADER_BYTES.saturating_add(subject).saturating_add(headers).saturating_add(payload);
    let total = align(total.min(usize::MAX - RECORD_ALIGNMENT_BYTES));
    if total > RECORD_BYTES_MAX {
        return Err(RecordError::TooLarge { bytes: total });
    }
    Ok(total)
}

/// Appends one message record to `buffer`; returns the bytes appended.
pub fn encode_into<B: BufMut>(
    buffer: &mut B,
    sequence: u64,
    timestamp_ns: u64,
    subject: &[u8],
    headers: &[u8],
    payload: &[u8],
) -> Result<usize, RecordError> {
    let total = encoded_bytes(subject.len(), headers.len(), payload.len())?;
    let fixed = fixed_fields(total, sequence, timestamp_ns, KIND_MESSAGE, subject.len(), headers.len(), payload.len());
    let padding = total - RECORD_HEADER_BYTES - subject.len() - headers.len() - payload.len();
    let zeros = [0u8; RECORD_ALIGNMENT_BYTES];
    let mut crc = crc32c::crc32c(&fixed[0..4]);
    for part in [&fixed[8..], subject, headers, payload, &zeros[..padding]] {
        crc = crc32c::crc32c_append(crc, part);
    }
    buffer.put_slice(&fixed[0..4]);
    buffer.put_u32_le(crc);
    buffer.put_slice(&fixed[8..]);
    buffer.put_slice(subject);
    buffer.put_slice(headers);
    buffer.put_slice(payload);
    buffer.put_slice(&zeros[..padding]);
    Ok(total)
}

/// A commit marker saying `durable_sequence` was known durable (0: none).
pub fn encode_commit_marker(durable_sequence: u64) -> [u8; RECORD_BYTES_MIN] {
    let fixed = fixed_fields(RECORD_BYTES_MIN, durable_sequence, 0, KIND_COMMIT_MARKER, 0, 0, 0);
    let mut record = [0u8; RECORD_BYTES_MIN];
    record[..RECORD_HEADER_BYTES].copy_from_slice(&fixed);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&record[0..4]), &record[8..]);
    record[4..8].copy_from_slice(&crc.to_le_bytes());
    record
}

fn fixed_fields(
    total: usize,
    sequence: u64,
    timestamp_ns: u64,
    kind: u16,
    subject: usize,
    headers: usize,
    payload: usize,
) -> [u8; RECORD_HEADER_BYTES] {
    // Callers checked every length against RECORD_BYTES_MAX, so the casts
    // below cannot truncate.
    debug_assert!(total <= RECORD_BYTES_MAX && subject <= SUBJECT_BYTES_MAX);
    let mut fixed = [0u8; RECORD_HEADER_BYTES];
    fixed[0..4].copy_from_slice(&(total as u32).to_le_bytes());
    fixed[8..16].copy_from_slice(&sequence.to_le_bytes());
    fixed[16..24].copy_from_slice(&timestamp_ns.to_le_bytes());
    fixed[24..26].copy_from_slice(&(subject as u16).to_le_bytes());
    fixed[26..28].copy_from_slice(&kind.to_le_bytes());
    fixed[28..32].copy_from_slice(&(headers as u32).to_le_bytes());
    fixed[32..36].copy_from_slice(&(payload as u32).to_le_bytes());
    fixed
}

/// The length field at the start of `buffer` (0 when fewer than 4 bytes).
pub fn length_field(buffer: &[u8]) -> u32 {
    match buffer.get(0..4) {
        Some(bytes) => u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        None => 0,
    }
}

/// Is a whole valid record at the start of `buffer`?
pub fn check(buffer: &[u8]) -> Check {
    if buffer.len() < 4 {
        return Check::Incomplete;
    }
    let total = length_field(buffer) as usize;
    if !(RECORD_BYTES_MIN..=RECORD_BYTES_MAX).contains(&total) || total % RECORD_ALIGNMENT_BYTES != 0 {
        return Check::Invalid(InvalidReason::Length);
    }
    let Some(record) = buffer.get(..total) else {
        return Check::Incomplete;
    };
    let stored = u32::from_le_bytes([record[4], record[5], record[6], record[7]]);
    let computed = crc32c::crc32c_append(crc32c::crc32c(&record[0..4]), &record[8..]);
    if stored != computed {
        return Check::Invalid(InvalidReason::Checksum);
    }
    let header = read_header(record);
    let body = RECORD_HEADER_BYTES + header.subject_length + header.headers_length + header.payload_length;
    let kind_ok = match header.kind {
        RecordKind::Message => u16_at(record, 26) == KIND_MESSAGE,
        // A marker carries only the durable sequence: its timestamp is 0
        // as written (a non-zero one was accepted before fuzzing found it).
        RecordKind::CommitMarker => body == RECORD_HEADER_BYTES && header.timestamp_ns == 0,
    };
    if align(body) != total || !kind_ok {
        return Check::Invalid(InvalidReason::Fields);
    }
    // The encoder pads with zeros. A checksum that also covers non-zero
    // padding means the bytes were not written by this encoder (found by
    // fuzzing): refused, so each valid record has exactly one encoding.
    if record[body..total].iter().any(|byte| *byte != 0) {
        return Check::Invalid(InvalidReason::Fields);
    }
    Check::Complete(total)
}

/// The fixed fields of a record that [`check`] called `Complete`.
pub fn header(record: &[u8]) -> Result<RecordHeader, RecordError> {
    match check(record) {
        Check::Complete(_) => Ok(read_header(record)),
        Check::Incomplete => Err(RecordError::Incomplete),
        Check::Invalid(reason) => Err(RecordError::Invalid(reason)),
    }
}

fn u16_at(record: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([record[at], record[at + 1]])
}

fn u32_at(record: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([record[at], record[at + 1], record[at + 2], record[at + 3]])
}

fn u64_at(record: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&record[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// Reads the fixed fields; `record` holds at least the header.
fn read_header(record: &[u8]) -> RecordHeader {
    RecordHeader {
        total_length: u32_at(record, 0) as usize,
        kind: if u16_at(record, 26) == KIND_COMMIT_MARKER { RecordKind::CommitMarker } else { RecordKind::Message },
        sequence: u64_at(record, 8),
        timestamp_ns: u64_at(record, 16),
        subject_length: u16_at(record, 24) as usize,
        headers_length: u32_at(record, 28) as usize,
        payload_length: u32_at(record, 32) as usize,
    }
}

/// Decodes the message record at the start of `buffer`, slicing `buffer`
/// (no copy). Returns the message and the record's length.
pub fn decode_shared(buffer: &Bytes) -> Result<(StoredMessage, usize), RecordError> {
    let header = header(buffer)?;
    if header.kind != RecordKind::Message {
        return Err(RecordError::NotAMessage);
    }
    let subject_start = RECORD_HEADER_BYTES;
    let headers_start = subject_start + header.subject_length;
    let payload_start = headers_start + header.headers_length;
    let payload_end = payload_start + header.payload_length;
    let message = StoredMessage {
        sequence: header.sequence,
        timestamp_ns: header.timestamp_ns,
        subject: buffer.slice(subject_start..headers_start),
        headers: buffer.slice(headers_start..payload_start),
        payload: buffer.slice(payload_start..payload_end),
    };
    Ok((message, header.total_length))
}

/// Decodes the message record at the start of `buffer` (one copy of the
/// record, checked first, so a bad length field allocates nothing).
pub fn decode(buffer: &[u8]) -> Result<StoredMessage, RecordError> {
    let total = match check(buffer) {
        Check::Complete(total) => total,
        Check::Incomplete => return Err(RecordError::Incomplete),
        Check::Invalid(reason) => return Err(RecordError::Invalid(reason)),
    };
    decode_shared(&Bytes::copy_from_slice(&buffer[..total])).map(|(message, _)| message)
}
