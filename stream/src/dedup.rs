//! # The per-stream message-id window (publish deduplication)
//!
//! A publisher that retries after a lost acknowledgement sends the same
//! message twice. When the message carries an id (a `Flit-Msg-Id` header,
//! or NATS's `Nats-Msg-Id`), the stream's owner asks [`DedupWindow`] before
//! appending: a new id is remembered with the sequence the append will get;
//! an id seen within the window is a duplicate, answered with the original's
//! sequence and not appended again.
//!
//! The window forgets an id by age (older than `window`) and by count (more
//! than `entries_max` ids: the oldest go first). Both are O(1) amortised per
//! message: a `HashMap` from id to entry, and a `VecDeque` in insertion
//! order that expiry pops from the front.
//!
//! ## Where the id comes from
//! flit frames carry headers as a nested flatbuffer `Headers` table
//! (`wire/schema/flit.fbs`: `table Headers { entries: [Header]; }`,
//! `table Header { key: string (required); value: string (required); }`;
//! docs/PROTOCOL.md, Headers), built by `flit_wire::encode_headers` and
//! verified by the router on decode. [`message_id_from_headers`] reads that
//! block without the flatbuffers crate (this crate does not depend on the
//! wire crate): a small reader of exactly those two tables, checking every
//! offset against the block's length, so a malformed block gives `None`,
//! never a panic. Keys are case-sensitive, as everywhere in flit.
//!
//! ## Invariants
//! - Every id in `by_id` has exactly one entry in `order` with the same
//!   sequence; `order` may also hold stale entries (an id re-inserted after
//!   its first entry expired out of order), which are skipped on pop.
//! - `order.len() <= entries_max` after every call.
//!
//! ## Time
//! `now` and the timestamps given to [`DedupWindow::rebuild`] are the same
//! clock as the log's record timestamps (time since the UNIX epoch). If the
//! clock steps back, an entry is still treated as expired once its age
//! reaches the window, even when it sits behind a newer one in `order`.
//!
//! ## Shutdown
//! Nothing to flush: the window lives in memory and is rebuilt after a
//! restart from the ids and timestamps stored in the log's records
//! ([`DedupWindow::rebuild`]), so a retry across a restart is still caught.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;

/// The header a flit publisher puts its message id in.
pub const MESSAGE_ID_HEADER: &str = "Flit-Msg-Id";
/// The header NATS clients use; accepted too, so JetStream clients' retries
/// are caught. [`MESSAGE_ID_HEADER`] wins when both are present.
pub const NATS_MESSAGE_ID_HEADER: &str = "Nats-Msg-Id";
/// Longest message id accepted. Ids are stored once per message in the
/// window, so a bound keeps the window's memory a known multiple of
/// `entries_max`.
pub const MESSAGE_ID_BYTES_MAX: usize = 256;

/// Why an id was not checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DedupError {
    /// An empty id. Recoverable: the publish can go ahead without dedup, or
    /// be refused; the shard decides.
    #[error("empty message id")]
    EmptyMessageId,
    /// The id is longer than [`MESSAGE_ID_BYTES_MAX`]. Recoverable: refuse
    /// the publish with an error code.
    #[error("message id of {length} bytes is longer than {message_id_bytes_max}")]
    MessageIdTooLong { length: usize, message_id_bytes_max: usize },
}

/// What [`DedupWindow::check_and_insert`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DedupOutcome {
    /// Not seen within the window: remembered with the given sequence;
    /// append the message.
    New,
    /// Seen within the window: do not append; answer with this sequence,
    /// flagged as a duplicate.
    Duplicate { original_sequence: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    sequence: u64,
    inserted_at: Duration,
}

/// The remembered message ids of one stream.
#[derive(Debug)]
pub struct DedupWindow {
    window: Duration,
    entries_max: usize,
    by_id: HashMap<Bytes, Entry>,
    /// (id, sequence, inserted at), oldest first.
    order: VecDeque<(Bytes, u64, Duration)>,
}

impl DedupWindow {
    /// A window remembering ids for `window`, and at most `entries_max` of
    /// them. `entries_max` of 0 remembers nothing (dedup off).
    pub fn new(window: Duration, entries_max: usize) -> DedupWindow {
        DedupWindow { window, entries_max, by_id: HashMap::new(), order: VecDeque::new() }
    }

    /// How many ids are remembered now.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Checks `message_id`; when new, remembers it with `sequence_if_new`,
    /// the sequence the caller's append will get. Expires old ids first.
    pub fn check_and_insert(
        &mut self,
        message_id: &[u8],
        sequence_if_new: u64,
        now: Duration,
    ) -> Result<DedupOutcome, DedupError> {
        check_message_id(message_id)?;
        self.expire(now);
        if let Some(entry) = self.by_id.get(message_id) {
            // An entry can outlive its window when the clock stepped back
            // and a newer entry sits before it in `order`; age decides.
            if !self.is_expired(entry.inserted_at, now) {
                return Ok(DedupOutcome::Duplicate { original_sequence: entry.sequence });
            }
        }
        self.insert(Bytes::copy_from_slice(message_id), sequence_if_new, now);
        Ok(DedupOutcome::New)
    }

    /// Forgets `message_id` if it is remembered with `sequence`: the append
    /// that was to get that sequence failed, so a retry must be new again.
    /// Returns whether it was forgotten.
    pub fn forget(&mut self, message_id: &[u8], sequence: u64) -> bool {
        match self.by_id.get(message_id) {
            Some(entry) if entry.sequence == sequence => {
                // Its `order` entry becomes stale and is skipped on pop.
                self.by_id.remove(message_id);
                true
            }
            _ => false,
        }
    }

    /// Rebuilds the window after a restart from the log's records, oldest
    /// first: (message id, sequence, record timestamp). The first record of
    /// an id wins, as it did when it was published. Ids older than the
    /// window at `now`, and all but the newest `entries_max`, are dropped.
    pub fn rebuild<Id: AsRef<[u8]>>(&mut self, records: impl IntoIterator<Item = (Id, u64, Duration)>, now: Duration) {
        self.by_id.clear();
        self.order.clear();
        for (message_id, sequence, timestamp) in records {
            let message_id = message_id.as_ref();
            if check_message_id(message_id).is_err() || self.is_expired(timestamp, now) {
                continue;
            }
            if self.by_id.contains_key(message_id) {
                continue;
            }
            self.insert(Bytes::copy_from_slice(message_id), sequence, timestamp);
        }
        self.expire(now);
    }

    /// Drops ids older than the window; the shard may call it from a timer
    /// so an idle stream's window empties too.
    pub fn expire(&mut self, now: Duration) {
        while let Some((_, _, inserted_at)) = self.order.front() {
            if !self.is_expired(*inserted_at, now) {
                break;
            }
            self.pop_oldest();
        }
    }

    fn is_expired(&self, inserted_at: Duration, now: Duration) -> bool {
        now.saturating_sub(inserted_at) >= self.window
    }

    fn insert(&mut self, message_id: Bytes, sequence: u64, now: Duration) {
        if self.entries_max == 0 {
            return;
        }
        while self.order.len() >= self.entries_max {
            self.pop_oldest();
        }
        self.by_id.insert(message_id.clone(), Entry { sequence, inserted_at: now });
        self.order.push_back((message_id, sequence, now));
        debug_assert!(self.order.len() <= self.entries_max);
        debug_assert!(self.by_id.len() <= self.order.len());
    }

    fn pop_oldest(&mut self) {
        let Some((message_id, sequence, _)) = self.order.pop_front() else { return };
        // Only the entry this `order` slot stands for: a stale slot (the id
        // was forgotten or re-inserted since) leaves the map alone.
        if self.by_id.get(&message_id).is_some_and(|entry| entry.sequence == sequence) {
            self.by_id.remove(&message_id);
        }
    }
}

fn check_message_id(message_id: &[u8]) -> Result<(), DedupError> {
    if message_id.is_empty() {
        return Err(DedupError::EmptyMessageId);
    }
    if message_id.len() > MESSAGE_ID_BYTES_MAX {
        return Err(DedupError::MessageIdTooLong {
            length: message_id.len(),
            message_id_bytes_max: MESSAGE_ID_BYTES_MAX,
        });
    }
    Ok(())
}

/// The message id in a flit header block: the value of `Flit-Msg-Id`, else
/// of `Nats-Msg-Id` (first entry of that key in each case); `None` when
/// neither is present, the value is empty, or the block is malformed.
pub fn message_id_from_headers(headers: &[u8]) -> Option<&[u8]> {
    let mut nats_message_id = None;
    for (key, value) in header_entries(headers)? {
        if value.is_empty() {
            continue;
        }
        if key == MESSAGE_ID_HEADER.as_bytes() {
            return Some(value);
        }
        if key == NATS_MESSAGE_ID_HEADER.as_bytes() && nats_message_id.is_none() {
            nats_message_id = Some(value);
        }
    }
    nats_message_id
}

/// Most entries read from one block, as `flit_wire::HEADER_ENTRIES_MAX`
/// (the router refuses blocks with more).
const HEADER_ENTRIES_MAX: usize = 256;

/// The (key, value) pairs of a `Headers` flatbuffer, or `None` if any
/// offset points outside the block.
///
/// Flatbuffer layout read here: the block starts with a u32 offset to the
/// root table; a table starts with an i32 back-offset to its vtable; the
/// vtable is u16 vtable length, u16 table length, then one u16 per field
/// (the field's offset in the table, 0 when absent). Reference fields hold
/// a u32 offset from the field itself to a vector or string, which begins
/// with a u32 count. All little-endian.
fn header_entries(block: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let root = reference(block, 0)?;
    // Headers.entries is field 0; an absent vector means no headers.
    let Some(entries) = table_reference_field(block, root, 0)? else { return Some(Vec::new()) };
    let count = read_u32(block, entries)? as usize;
    if count > HEADER_ENTRIES_MAX {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    for index in 0..count {
        let entry = reference(block, entries.checked_add(4 + 4 * index)?)?;
        // Header.key is field 0, Header.value field 1; both required.
        let key = string(block, table_reference_field(block, entry, 0)??)?;
        let value = string(block, table_reference_field(block, entry, 1)??)?;
        pairs.push((key, value));
    }
    Some(pairs)
}

/// The position a reference field at `position` points to.
fn reference(block: &[u8], position: usize) -> Option<usize> {
    position.checked_add(read_u32(block, position)? as usize).filter(|target| *target < block.len())
}

/// Where reference field `field` of the table at `table` points: `Some(None)`
/// when the field is absent, `None` when the table is malformed.
fn table_reference_field(block: &[u8], table: usize, field: usize) -> Option<Option<usize>> {
    let back_offset = i64::from(read_u32(block, table)? as i32);
    let vtable = usize::try_from(i64::try_from(table).ok()?.checked_sub(back_offset)?).ok()?;
    let vtable_bytes = usize::from(read_u16(block, vtable)?);
    let slot = 4 + 2 * field;
    if slot + 2 > vtable_bytes {
        return Some(None);
    }
    let field_offset = usize::from(read_u16(block, vtable.checked_add(slot)?)?);
    if field_offset == 0 {
        return Some(None);
    }
    Some(Some(reference(block, table.checked_add(field_offset)?)?))
}

fn string(block: &[u8], position: usize) -> Option<&[u8]> {
    let length = read_u32(block, position)? as usize;
    let start = position.checked_add(4)?;
    block.get(start..start.checked_add(length)?)
}

fn read_u32(block: &[u8], position: usize) -> Option<u32> {
    let bytes = block.get(position..position.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn read_u16(block: &[u8], position: usize) -> Option<u16> {
    let bytes = block.get(position..position.checked_add(2)?)?;
    Some(u16::from_le_bytes(bytes.try_into().ok()?))
}
