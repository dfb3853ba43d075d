//! # The `Memory` policy: a bounded ring of messages, no disk
//!
//! Each message is encoded once into its own buffer (the record format, so
//! the CRC and length checks are the same as on disk) and kept as slices of
//! it. Acknowledged at once. Retention drops single messages from the front;
//! without a byte limit the ring keeps at most
//! [`super::MEMORY_BYTES_DEFAULT_MAX`].
//!
//! ## Invariants
//! - `messages[i].sequence == first_sequence + i`.
//! - `bytes` is the sum of the messages' record sizes.
//!
//! ## Shutdown
//! Everything is lost by design.

use std::collections::VecDeque;

use bytes::BytesMut;

use super::{AckEvent, AppendError, StreamLog, MEMORY_BYTES_DEFAULT_MAX};
use crate::record::{self, StoredMessage};
use crate::retention::{Discard, Limit, Totals};

#[derive(Debug, Default)]
pub(super) struct MemoryRing {
    pub(super) messages: VecDeque<StoredMessage>,
    pub(super) bytes: u64,
}

fn record_bytes(message: &StoredMessage) -> u64 {
    record::encoded_bytes(message.subject.len(), message.headers.len(), message.payload.len()).unwrap_or(0) as u64
}

impl StreamLog {
    fn memory_bytes_max(&self) -> u64 {
        self.config.retention.bytes_max.unwrap_or(MEMORY_BYTES_DEFAULT_MAX)
    }

    pub(super) fn append_memory(
        &mut self,
        now_ns: u64,
        subject: &[u8],
        headers: &[u8],
        payload: &[u8],
        record_bytes: usize,
    ) -> Result<u64, AppendError> {
        let totals = Totals { messages: self.memory.messages.len() as u64, bytes: self.memory.bytes };
        if let Some(limit) = self.config.retention.refuses(totals, record_bytes as u64) {
            return Err(AppendError::LimitReached(limit));
        }
        let bound = self.memory_bytes_max();
        if self.config.retention.discard == Discard::New && self.memory.bytes + record_bytes as u64 > bound {
            return Err(AppendError::LimitReached(Limit::Bytes));
        }
        let sequence = self.next_sequence;
        let timestamp_ns = now_ns.max(self.last_timestamp_ns);
        let mut buffer = BytesMut::with_capacity(record_bytes);
        record::encode_into(&mut buffer, sequence, timestamp_ns, subject, headers, payload)
            .map_err(|error| AppendError::StorageFailed { reason: error.to_string() })?;
        let (message, _) = record::decode_shared(&buffer.freeze())
            .map_err(|error| AppendError::StorageFailed { reason: error.to_string() })?;
        self.memory.messages.push_back(message);
        self.memory.bytes += record_bytes as u64;
        self.next_sequence += 1;
        self.acknowledged_last = sequence;
        self.last_timestamp_ns = timestamp_ns;
        self.commits += 1;
        self.committed_messages += 1;
        self.events.push_back(AckEvent::Acked { first_sequence: sequence, last_sequence: sequence });
        self.enforce_memory_retention();
        Ok(sequence)
    }

    /// Drops messages from the front while a limit says so.
    pub(super) fn enforce_memory_retention(&mut self) {
        let bound = self.memory_bytes_max();
        while let Some(oldest) = self.memory.messages.front() {
            let totals = Totals { messages: self.memory.messages.len() as u64, bytes: self.memory.bytes };
            let wanted = self.config.retention.should_delete_oldest(totals, oldest.timestamp_ns, self.now_ns)
                || self.memory.bytes > bound;
            if !wanted {
                break;
            }
            let bytes = record_bytes(oldest);
            self.memory.messages.pop_front();
            self.memory.bytes -= bytes;
            self.first_sequence += 1;
        }
    }

    /// Messages from `from_sequence` on, within the limits (at least one).
    pub(super) fn read_memory(&self, from_sequence: u64, messages_max: usize, bytes_max: usize) -> Vec<StoredMessage> {
        let start = from_sequence.max(self.first_sequence) - self.first_sequence;
        let mut result = Vec::new();
        let mut bytes = 0usize;
        for message in self.memory.messages.iter().skip(start as usize) {
            let size = message.subject.len() + message.headers.len() + message.payload.len();
            if result.len() >= messages_max || (!result.is_empty() && bytes + size > bytes_max) {
                break;
            }
            bytes += size;
            result.push(message.clone());
        }
        result
    }

    pub(super) fn memory_sequence_at_or_after_time(&self, timestamp_ns: u64) -> Option<u64> {
        let index = self.memory.messages.partition_point(|message| message.timestamp_ns < timestamp_ns);
        self.memory.messages.get(index).map(|message| message.sequence)
    }
}
