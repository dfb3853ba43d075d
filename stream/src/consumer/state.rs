//! # A durable consumer's persisted state and its encoding
//!
//! What survives a restart: the config, the ack floor, the delivered
//! sequence, and the pending messages above the floor with their delivery
//! counts. Every other sequence between the floor and the delivered
//! sequence was resolved (acked, terminated, dead-lettered), so the pending
//! list is the whole truth above the floor. It is persisted rather than the
//! acked set because it is bounded: at most `ack_pending_max` entries,
//! while the acked sequences above a floor held back by one slow message
//! are not. After a restart every pending message is redelivered.
//!
//! ## Encoding (little-endian, version 1)
//! ```text
//! magic "FLCS" (4) | record_bytes u32 (the whole record) | format u16 = 1
//! | write_version u64 (the store's counter)
//! | name: opt_string | start: kind u8, value u64 | ack_policy u8
//! | ack_wait_ns u64 | deliveries_max u32 | ack_pending_max u32
//! | dead_letter_subject: opt_string | mode u8 (0 pull, 1 push) [+ string]
//! | ack_floor u64 | delivered_sequence u64 | pending_count u32
//! | pending_count x (sequence u64, delivery_count u32)
//! | crc32c u32 over every byte before it, the length fields included
//! opt_string = present u8 (0|1) [+ string]; string = length u16 + UTF-8
//! ```
//!
//! ## Invariants
//! - [`ConsumerState::decode`] accepts only what [`ConsumerState::validate`]
//!   accepts, and never panics on any input (bytes come from disk).
//! - An encoded state is at most [`ConsumerState::encoded_bytes_max`] of
//!   its `ack_pending_max`.
//!
//! ## Shutdown
//! Plain data; see [`crate::consumer::ConsumerStore`] for how it is written.

use std::time::Duration;

use super::config::{AckPolicy, ConfigError, ConsumerConfig, DeliveryMode, StartPosition};

/// The encoding's version, bumped on any change a reader must know about.
pub const STATE_FORMAT_VERSION: u16 = 1;
const MAGIC: [u8; 4] = *b"FLCS";
/// magic, record_bytes, format, write_version.
const HEADER_BYTES: usize = 4 + 4 + 2 + 8;
const CRC_BYTES: usize = 4;
const PENDING_ENTRY_BYTES: usize = 8 + 4;
/// Bound on everything but the pending entries: header, the largest config
/// (three strings within their limits: about 1.2 KiB), floor, delivered,
/// count, CRC.
const FIXED_BYTES_MAX: usize = 2048;

/// One delivered, unresolved message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingMessage {
    pub sequence: u64,
    pub delivery_count: u32,
}

/// A durable consumer's persisted state (see the module header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerState {
    pub config: ConsumerConfig,
    pub ack_floor: u64,
    pub delivered_sequence: u64,
    /// Ascending by sequence.
    pub pending: Vec<PendingMessage>,
}

/// Why bytes are not a valid state. A slot holding any of these is not
/// used; the store falls back to the other slot.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// All zeros: never written.
    #[error("empty: never written")]
    Empty,
    #[error("not a consumer state (bad magic)")]
    BadMagic,
    #[error("record length {record_bytes} outside {minimum}..={available}")]
    Length { record_bytes: usize, minimum: usize, available: usize },
    #[error("checksum mismatch")]
    Checksum,
    #[error("unsupported state format {0}")]
    UnsupportedFormat(u16),
    #[error("record ends inside a field")]
    Truncated,
    #[error("{0} bytes after the last field")]
    TrailingBytes(usize),
    #[error("invalid {field} value {value}")]
    InvalidTag { field: &'static str, value: u8 },
    #[error("a string is not UTF-8")]
    InvalidUtf8,
    #[error("invalid config: {0}")]
    InvalidConfig(#[from] ConfigError),
    #[error("inconsistent state: {0}")]
    Inconsistent(&'static str),
}

impl ConsumerState {
    /// Largest encoding of a state with this `ack_pending_max`.
    pub fn encoded_bytes_max(ack_pending_max: u32) -> usize {
        FIXED_BYTES_MAX + PENDING_ENTRY_BYTES * ack_pending_max as usize
    }

    /// Checks the relations the consumer relies on (module header of
    /// `consumer`): pending ascending, within (floor, delivered], bounded by
    /// `ack_pending_max`, and the floor just below the lowest pending.
    pub fn validate(&self) -> Result<(), StateError> {
        self.config.validate()?;
        if self.ack_floor > self.delivered_sequence {
            return Err(StateError::Inconsistent("ack floor above delivered sequence"));
        }
        if self.pending.len() > self.config.ack_pending_max as usize {
            return Err(StateError::Inconsistent("more pending than ack_pending_max"));
        }
        if self.config.ack_policy == AckPolicy::None && !self.pending.is_empty() {
            return Err(StateError::Inconsistent("pending messages without explicit acks"));
        }
        let floor_expected = self.pending.first().map_or(self.delivered_sequence, |first| first.sequence - 1);
        if self.ack_floor != floor_expected {
            return Err(StateError::Inconsistent("ack floor is not just below the lowest pending"));
        }
        let mut previous = self.ack_floor;
        for message in &self.pending {
            if message.sequence <= previous || message.sequence > self.delivered_sequence {
                return Err(StateError::Inconsistent("pending not ascending within (floor, delivered]"));
            }
            if message.delivery_count == 0 {
                return Err(StateError::Inconsistent("pending message never delivered"));
            }
            previous = message.sequence;
        }
        Ok(())
    }

    /// The record for this state, stamped with the store's `write_version`.
    pub fn encode(&self, write_version: u64) -> Vec<u8> {
        let config = &self.config;
        let mut bytes = Vec::with_capacity(FIXED_BYTES_MAX + PENDING_ENTRY_BYTES * self.pending.len());
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&[0; 4]); // record_bytes, filled in below
        bytes.extend_from_slice(&STATE_FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&write_version.to_le_bytes());
        put_optional_string(&mut bytes, config.name.as_deref());
        let (start_kind, start_value) = match config.start {
            StartPosition::First => (0u8, 0),
            StartPosition::Last => (1, 0),
            StartPosition::New => (2, 0),
            StartPosition::Sequence { sequence } => (3, sequence),
            StartPosition::Time { timestamp_ns } => (4, timestamp_ns),
        };
        bytes.push(start_kind);
        bytes.extend_from_slice(&start_value.to_le_bytes());
        bytes.push(match config.ack_policy {
            AckPolicy::Explicit => 0,
            AckPolicy::None => 1,
        });
        let ack_wait_ns = u64::try_from(config.ack_wait.as_nanos()).unwrap_or(u64::MAX);
        bytes.extend_from_slice(&ack_wait_ns.to_le_bytes());
        bytes.extend_from_slice(&config.deliveries_max.to_le_bytes());
        bytes.extend_from_slice(&config.ack_pending_max.to_le_bytes());
        put_optional_string(&mut bytes, config.dead_letter_subject.as_deref());
        match &config.mode {
            DeliveryMode::Pull => bytes.push(0),
            DeliveryMode::Push { deliver_subject } => {
                bytes.push(1);
                put_string(&mut bytes, deliver_subject);
            }
        }
        bytes.extend_from_slice(&self.ack_floor.to_le_bytes());
        bytes.extend_from_slice(&self.delivered_sequence.to_le_bytes());
        bytes.extend_from_slice(&(self.pending.len() as u32).to_le_bytes());
        for message in &self.pending {
            bytes.extend_from_slice(&message.sequence.to_le_bytes());
            bytes.extend_from_slice(&message.delivery_count.to_le_bytes());
        }
        let record_bytes = (bytes.len() + CRC_BYTES) as u32;
        bytes[4..8].copy_from_slice(&record_bytes.to_le_bytes());
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        debug_assert!(bytes.len() <= Self::encoded_bytes_max(self.pending.len() as u32));
        bytes
    }

    /// Decodes a record at the start of `bytes` (a slot: anything after
    /// the record is ignored). Returns the write version and the state.
    pub fn decode(bytes: &[u8]) -> Result<(u64, ConsumerState), StateError> {
        if bytes.iter().all(|byte| *byte == 0) {
            return Err(StateError::Empty);
        }
        if bytes.len() < 8 || bytes[0..4] != MAGIC {
            return Err(StateError::BadMagic);
        }
        let record_bytes = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
        let minimum = HEADER_BYTES + CRC_BYTES;
        if record_bytes < minimum || record_bytes > bytes.len() {
            return Err(StateError::Length { record_bytes, minimum, available: bytes.len() });
        }
        let (body, crc) = bytes[..record_bytes].split_at(record_bytes - CRC_BYTES);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(StateError::Checksum);
        }
        let mut reader = Reader { bytes: body, position: 8 };
        let format = reader.u16()?;
        if format != STATE_FORMAT_VERSION {
            return Err(StateError::UnsupportedFormat(format));
        }
        let write_version = reader.u64()?;
        let state = decode_fields(&mut reader)?;
        if reader.position != body.len() {
            return Err(StateError::TrailingBytes(body.len() - reader.position));
        }
        state.validate()?;
        Ok((write_version, state))
    }
}

fn decode_fields(reader: &mut Reader<'_>) -> Result<ConsumerState, StateError> {
    let name = reader.optional_string()?;
    let start_kind = reader.u8()?;
    let start_value = reader.u64()?;
    let start = match start_kind {
        0 => StartPosition::First,
        1 => StartPosition::Last,
        2 => StartPosition::New,
        3 => StartPosition::Sequence { sequence: start_value },
        4 => StartPosition::Time { timestamp_ns: start_value },
        value => return Err(StateError::InvalidTag { field: "start", value }),
    };
    let ack_policy = match reader.u8()? {
        0 => AckPolicy::Explicit,
        1 => AckPolicy::None,
        value => return Err(StateError::InvalidTag { field: "ack_policy", value }),
    };
    let ack_wait = Duration::from_nanos(reader.u64()?);
    let deliveries_max = reader.u32()?;
    let ack_pending_max = reader.u32()?;
    let dead_letter_subject = reader.optional_string()?;
    let mode = match reader.u8()? {
        0 => DeliveryMode::Pull,
        1 => DeliveryMode::Push { deliver_subject: reader.string()? },
        value => return Err(StateError::InvalidTag { field: "mode", value }),
    };
    let config = ConsumerConfig {
        name,
        start,
        ack_policy,
        ack_wait,
        deliveries_max,
        ack_pending_max,
        dead_letter_subject,
        mode,
    };
    let ack_floor = reader.u64()?;
    let delivered_sequence = reader.u64()?;
    let pending_count = reader.u32()? as usize;
    // Check the count against what is left before allocating for it, so a
    // crafted count cannot ask for a huge vector.
    if pending_count > (reader.bytes.len() - reader.position) / PENDING_ENTRY_BYTES {
        return Err(StateError::Truncated);
    }
    let mut pending = Vec::with_capacity(pending_count);
    for _ in 0..pending_count {
        pending.push(PendingMessage { sequence: reader.u64()?, delivery_count: reader.u32()? });
    }
    Ok(ConsumerState { config, ack_floor, delivered_sequence, pending })
}

fn put_string(bytes: &mut Vec<u8>, text: &str) {
    // Validated configs keep strings within SUBJECT_BYTES_MAX, far below
    // u16::MAX.
    debug_assert!(text.len() <= u16::MAX as usize);
    bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
    bytes.extend_from_slice(text.as_bytes());
}

fn put_optional_string(bytes: &mut Vec<u8>, text: Option<&str>) {
    match text {
        None => bytes.push(0),
        Some(text) => {
            bytes.push(1);
            put_string(bytes, text);
        }
    }
}

/// Bounds-checked little-endian reads over a record's body.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Result<&'a [u8], StateError> {
        let end = self.position.checked_add(length).ok_or(StateError::Truncated)?;
        let slice = self.bytes.get(self.position..end).ok_or(StateError::Truncated)?;
        self.position = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, StateError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32, StateError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, StateError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn string(&mut self) -> Result<String, StateError> {
        let length = self.u16()? as usize;
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| StateError::InvalidUtf8)
    }

    fn optional_string(&mut self) -> Result<Option<String>, StateError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            value => Err(StateError::InvalidTag { field: "optional string", value }),
        }
    }
}
