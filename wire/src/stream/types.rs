//! The owned, validated Rust types of the stream frames, and their rules.
//!
//! Every type here is what [`crate::decode_stream`] hands out after the
//! checks below passed, and what the stream encoders accept only if the same
//! checks pass (`validate`), so a frame this crate writes always decodes.
//!
//! ## Invariants (after `validate`)
//! - Stream and consumer names are 1 to [`NAME_BYTES_MAX`] bytes of
//!   `[A-Za-z0-9_-]` (they become file names and subject tokens).
//! - A stream captures 1 to [`SUBJECTS_PER_STREAM_MAX`] subject patterns,
//!   each valid by the subject rules; deliver and dead-letter subjects are
//!   publish subjects.
//! - Sequences start at 1: a sequence or delivery count of 0 is refused.
//! - A field that only one enum value uses (`sync_interval_ms`,
//!   `start_sequence`, `start_time_ns`) is 0 for every other value, so one
//!   config has exactly one encoding.
//!
//! Semantic rules that depend on the server's state or policy (a batch above
//! its maximum, a dead-letter subject on an `AckPolicy::None` consumer,
//! overlapping subjects) are not checked here: the server answers those
//! with a [`crate::StreamCode`] in a StreamReply and keeps the connection.

use bytes::Bytes;

use super::{NAME_BYTES_MAX, STREAMS_PER_REPLY_MAX, SUBJECTS_PER_STREAM_MAX};
use crate::error::WireError;
use crate::subject::{validate_pattern, validate_publish_subject};

/// Checks a stream or consumer name: 1 to [`NAME_BYTES_MAX`] bytes of
/// `[A-Za-z0-9_-]`. The error names the field as `"name"`.
pub fn validate_name(name: &str) -> Result<(), WireError> {
    check_name("name", name)
}

pub(crate) fn check_name(field: &'static str, name: &str) -> Result<(), WireError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > NAME_BYTES_MAX {
        "longer than NAME_BYTES_MAX (64 bytes)"
    } else if !name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-') {
        "only letters, digits, '_' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(WireError::InvalidName { field, reason })
}

fn field_error(table: &'static str, field: &'static str, reason: &'static str) -> WireError {
    WireError::InvalidField { table, field, reason }
}

/// What a StreamRequest asks for (the schema's `StreamAction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamAction {
    Add = 1,
    Remove = 2,
    Info = 3,
    List = 4,
    ConsumerAdd = 5,
    ConsumerRemove = 6,
    ConsumerInfo = 7,
}

impl StreamAction {
    /// A short stable name, for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            StreamAction::Add => "add",
            StreamAction::Remove => "remove",
            StreamAction::Info => "info",
            StreamAction::List => "list",
            StreamAction::ConsumerAdd => "consumer_add",
            StreamAction::ConsumerRemove => "consumer_remove",
            StreamAction::ConsumerInfo => "consumer_info",
        }
    }

    /// Whether the action creates or deletes a stream: the server checks its
    /// own permission for these (issue 11).
    pub fn changes_streams(self) -> bool {
        matches!(self, StreamAction::Add | StreamAction::Remove)
    }
}

/// When a stream acknowledges a stored publish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// After the fdatasync that covers the message.
    #[default]
    Always,
    /// After its write; fdatasync at most every `sync_interval_ms` (> 0).
    Interval { sync_interval_ms: u32 },
    /// No disk: a bounded ring in memory.
    Memory,
}

/// What a stream does when a byte or message limit would be passed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Discard {
    /// Delete the oldest messages.
    #[default]
    Old,
    /// Refuse the new one (PublishAck code `limit_reached`, 429).
    New,
}

/// Where a new consumer starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StartPosition {
    /// The stream's first stored message.
    #[default]
    First,
    /// The stream's last message, then everything after it.
    Last,
    /// Only messages stored after the consumer was created.
    New,
    /// This sequence (>= 1), or the first stored one after it.
    Sequence { sequence: u64 },
    /// The first message stored at or after this time, nanoseconds since the
    /// UNIX epoch.
    Time { timestamp_ns: u64 },
}

/// Whether a consumer's deliveries wait for an Ack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AckPolicy {
    /// Each delivery waits for an Ack and is redelivered after the ack wait.
    #[default]
    Explicit,
    /// Fire and forget: a delivery is done when it is sent.
    None,
}

/// What an Ack says about one delivered message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AckKind {
    /// Processed: never deliver it again.
    #[default]
    Ack,
    /// Not processed: redeliver it now.
    Nak,
    /// Not processed, and never deliver it again.
    Term,
    /// Still working on it: restart its ack wait.
    InProgress,
}

/// A stream's configuration. A limit of 0 means unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamConfigSpec {
    pub name: String,
    /// Subject patterns the stream captures (`*` and `>` allowed).
    pub subjects: Vec<String>,
    pub durability: Durability,
    pub bytes_max: u64,
    pub age_ms_max: u64,
    pub messages_max: u64,
    /// Headers plus payload of one message.
    pub message_bytes_max: u32,
    pub discard: Discard,
    /// 0: no deduplication by message id.
    pub dedup_window_ms: u64,
}

impl StreamConfigSpec {
    /// A stream capturing `subjects`, with every other field at its default
    /// (durability `Always`, no limits, discard old, no deduplication).
    pub fn new(name: impl Into<String>, subjects: impl IntoIterator<Item = impl Into<String>>) -> StreamConfigSpec {
        StreamConfigSpec {
            name: name.into(),
            subjects: subjects.into_iter().map(Into::into).collect(),
            ..StreamConfigSpec::default()
        }
    }

    /// Checks the rules in the module header.
    pub fn validate(&self) -> Result<(), WireError> {
        check_name("stream_config.name", &self.name)?;
        if self.subjects.is_empty() {
            return Err(field_error("StreamConfig", "subjects", "a stream captures at least one subject"));
        }
        if self.subjects.len() > SUBJECTS_PER_STREAM_MAX {
            return Err(field_error("StreamConfig", "subjects", "more than SUBJECTS_PER_STREAM_MAX (64)"));
        }
        for subject in &self.subjects {
            validate_pattern(subject.as_bytes())?;
        }
        if self.durability == (Durability::Interval { sync_interval_ms: 0 }) {
            return Err(field_error("StreamConfig", "sync_interval_ms", "0 with durability Interval"));
        }
        Ok(())
    }
}

/// A consumer's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerConfigSpec {
    /// `None`: an ephemeral consumer, named by the server (its ConsumerInfo
    /// carries the name). `Some`: a durable consumer.
    pub name: Option<String>,
    pub start: StartPosition,
    pub ack_policy: AckPolicy,
    /// 0: the server's default.
    pub ack_wait_ms: u32,
    /// Deliveries of one message before it is a dead letter. 0: unlimited.
    pub deliveries_max: u32,
    /// Most delivered and unacknowledged messages. 0: the server's default.
    pub ack_pending_max: u32,
    /// Where dead letters are published. `None`: only counted.
    pub dead_letter_subject: Option<String>,
    /// `None`: a pull consumer (Fetch). `Some`: a push consumer that
    /// delivers to this subject.
    pub deliver_subject: Option<String>,
}

impl ConsumerConfigSpec {
    /// Checks the rules in the module header.
    pub fn validate(&self) -> Result<(), WireError> {
        if let Some(name) = &self.name {
            check_name("consumer_config.name", name)?;
        }
        if self.start == (StartPosition::Sequence { sequence: 0 }) {
            return Err(field_error("ConsumerConfig", "start_sequence", "0: sequences start at 1"));
        }
        if let Some(subject) = &self.dead_letter_subject {
            validate_publish_subject(subject.as_bytes())?;
        }
        if let Some(subject) = &self.deliver_subject {
            validate_publish_subject(subject.as_bytes())?;
        }
        Ok(())
    }
}

/// A stream's configuration and state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamInfo {
    pub config: StreamConfigSpec,
    pub messages: u64,
    pub bytes: u64,
    pub first_sequence: u64,
    pub last_sequence: u64,
    pub consumers: u32,
    /// Empty: serving. Else why not: `corrupt: FILE at OFFSET`,
    /// `storage failed: ...`, `disk full`.
    pub status: String,
}

/// A consumer's configuration and state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// `name` is the server-chosen one for an ephemeral consumer.
    pub config: ConsumerConfigSpec,
    /// Highest sequence delivered at least once.
    pub delivered_sequence: u64,
    /// Every sequence at or below it is acknowledged.
    pub ack_floor: u64,
    pub ack_pending: u32,
    pub redeliveries_total: u64,
    pub dead_letters_total: u64,
    /// Messages in the stream not yet delivered.
    pub lag: u64,
    /// At `ack_pending_max`: delivers nothing new until acks arrive.
    pub stalled: bool,
}

/// What a StreamRequest asks for, with exactly the fields that action needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamCommand {
    /// Create a stream. Adding an existing stream with the same config is ok;
    /// with a different one it is refused (`already_exists`, 409).
    Add(StreamConfigSpec),
    Remove {
        stream: String,
    },
    Info {
        stream: String,
    },
    /// Every stream, in byte order of names; `after`: only names after it
    /// (the next page when a reply had `streams_omitted` > 0).
    List {
        after: Option<String>,
    },
    ConsumerAdd {
        stream: String,
        config: ConsumerConfigSpec,
    },
    ConsumerRemove {
        stream: String,
        consumer: String,
    },
    ConsumerInfo {
        stream: String,
        consumer: String,
    },
}

impl StreamCommand {
    pub fn action(&self) -> StreamAction {
        match self {
            StreamCommand::Add(_) => StreamAction::Add,
            StreamCommand::Remove { .. } => StreamAction::Remove,
            StreamCommand::Info { .. } => StreamAction::Info,
            StreamCommand::List { .. } => StreamAction::List,
            StreamCommand::ConsumerAdd { .. } => StreamAction::ConsumerAdd,
            StreamCommand::ConsumerRemove { .. } => StreamAction::ConsumerRemove,
            StreamCommand::ConsumerInfo { .. } => StreamAction::ConsumerInfo,
        }
    }

    /// The stream the command is about (`None` for List).
    pub fn stream(&self) -> Option<&str> {
        match self {
            StreamCommand::Add(config) => Some(&config.name),
            StreamCommand::Remove { stream }
            | StreamCommand::Info { stream }
            | StreamCommand::ConsumerAdd { stream, .. }
            | StreamCommand::ConsumerRemove { stream, .. }
            | StreamCommand::ConsumerInfo { stream, .. } => Some(stream),
            StreamCommand::List { .. } => None,
        }
    }

    pub fn validate(&self) -> Result<(), WireError> {
        match self {
            StreamCommand::Add(config) => config.validate(),
            StreamCommand::Remove { stream } | StreamCommand::Info { stream } => check_name("stream", stream),
            StreamCommand::List { after } => after.as_deref().map_or(Ok(()), |after| check_name("stream", after)),
            StreamCommand::ConsumerAdd { stream, config } => {
                check_name("stream", stream)?;
                config.validate()
            }
            StreamCommand::ConsumerRemove { stream, consumer } | StreamCommand::ConsumerInfo { stream, consumer } => {
                check_name("stream", stream)?;
                check_name("consumer", consumer)
            }
        }
    }
}

/// Client -> server, op 12.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRequest {
    /// The header's tag, chosen by the client, non-zero; the StreamReply
    /// carries it back.
    pub request_id: u64,
    pub command: StreamCommand,
}

/// Server -> client, op 13: the answer to a StreamRequest, a Fetch, or an
/// Ack with a non-zero request id. It never closes the connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamReply {
    /// The header's tag: the request id answered (non-zero).
    pub request_id: u64,
    /// 0: done. Else a [`crate::StreamCode`] number; codes this version does
    /// not know are kept as they are.
    pub code: u16,
    /// Detail for a person; never parse it.
    pub message: String,
    /// Info: one stream; List: up to [`STREAMS_PER_REPLY_MAX`].
    pub streams: Vec<StreamInfo>,
    /// ConsumerAdd and ConsumerInfo: the consumer.
    pub consumer: Option<ConsumerInfo>,
    /// Fetch: StreamMessages sent for it before this reply.
    pub delivered: u32,
    /// List: streams left out of this reply; ask again with `List { after }`
    /// set to the last name received.
    pub streams_omitted: u32,
}

impl StreamReply {
    /// A success answering `request_id`, with nothing else in it.
    pub fn ok(request_id: u64) -> StreamReply {
        StreamReply { request_id, ..StreamReply::default() }
    }

    /// A refusal answering `request_id`.
    pub fn refused(request_id: u64, code: crate::StreamCode, message: impl Into<String>) -> StreamReply {
        StreamReply { request_id, code: code.as_u16(), message: message.into(), ..StreamReply::default() }
    }

    pub fn validate(&self) -> Result<(), WireError> {
        if self.streams.len() > STREAMS_PER_REPLY_MAX {
            return Err(field_error("StreamReply", "streams", "more than STREAMS_PER_REPLY_MAX (256)"));
        }
        for stream in &self.streams {
            stream.config.validate()?;
        }
        if let Some(consumer) = &self.consumer {
            consumer.config.validate()?;
        }
        Ok(())
    }
}

/// Server -> client, op 14: the answer to a Publish with a non-zero tag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishAck {
    /// The header's tag: the Publish's ack id (non-zero).
    pub ack_id: u64,
    /// The stream that stored it; may be empty on a refusal.
    pub stream: String,
    /// Its sequence in the stream (>= 1 when stored).
    pub sequence: u64,
    /// Seen within the dedup window: not stored again; `sequence` is the
    /// original's.
    pub duplicate: bool,
    /// 0: stored. Else a [`crate::StreamCode`] number.
    pub code: u16,
    pub message: String,
}

impl PublishAck {
    /// The message is stored (or was, for a duplicate) as `sequence`.
    pub fn stored(ack_id: u64, stream: impl Into<String>, sequence: u64, duplicate: bool) -> PublishAck {
        PublishAck { ack_id, stream: stream.into(), sequence, duplicate, ..PublishAck::default() }
    }

    /// The message was not stored.
    pub fn refused(ack_id: u64, code: crate::StreamCode, message: impl Into<String>) -> PublishAck {
        PublishAck { ack_id, code: code.as_u16(), message: message.into(), ..PublishAck::default() }
    }

    pub fn validate(&self) -> Result<(), WireError> {
        if self.code == 0 {
            check_name("stream", &self.stream)?;
            if self.sequence == 0 {
                return Err(field_error("PublishAck", "sequence", "0 on a stored message"));
            }
        } else {
            if !self.stream.is_empty() {
                check_name("stream", &self.stream)?;
            }
            if self.duplicate {
                return Err(field_error("PublishAck", "duplicate", "set on a refusal"));
            }
        }
        Ok(())
    }
}

/// Client -> server, op 15: up to `batch` messages of a pull consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetch {
    /// The header's tag (non-zero): the StreamMessages and the closing
    /// StreamReply carry it.
    pub request_id: u64,
    pub stream: String,
    pub consumer: String,
    /// At least 1; the server refuses more than its maximum (400).
    pub batch: u32,
    /// How long the server may wait for the whole batch. 0: answer at once.
    pub wait_ms: u32,
}

impl Fetch {
    pub fn validate(&self) -> Result<(), WireError> {
        check_name("stream", &self.stream)?;
        check_name("consumer", &self.consumer)?;
        if self.batch == 0 {
            return Err(field_error("Fetch", "batch", "0: a fetch asks for at least one message"));
        }
        Ok(())
    }
}

/// The meta part of a StreamMessage: everything but the tag and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamMessageMeta {
    pub stream: String,
    pub consumer: String,
    /// The subject it was published to (a validated publish subject).
    pub subject: Bytes,
    pub sequence: u64,
    /// When the stream stored it, nanoseconds since the UNIX epoch.
    pub timestamp_ns: u64,
    /// 1 on the first delivery.
    pub delivery_count: u32,
    /// The publisher's header block, passed on unchanged.
    pub headers: Option<Bytes>,
}

impl StreamMessageMeta {
    pub fn validate(&self) -> Result<(), WireError> {
        check_name("stream", &self.stream)?;
        check_name("consumer", &self.consumer)?;
        validate_publish_subject(&self.subject)?;
        if self.sequence == 0 {
            return Err(field_error("StreamMessage", "sequence", "0: sequences start at 1"));
        }
        if self.delivery_count == 0 {
            return Err(field_error("StreamMessage", "delivery_count", "0: the first delivery is 1"));
        }
        if let Some(block) = &self.headers {
            crate::codec::verify_headers(block)?;
        }
        Ok(())
    }
}

/// Server -> client, op 16: one stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamMessage {
    /// The header's tag: the Fetch's request id, or the subscription id of a
    /// push consumer's deliver subject (as a Deliver's).
    pub tag: u64,
    pub meta: StreamMessageMeta,
    pub payload: Bytes,
}

/// Client -> server, op 17.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The header's tag. 0: no reply. Else the server answers with a
    /// StreamReply carrying it.
    pub request_id: u64,
    pub stream: String,
    pub consumer: String,
    /// The acknowledged message's sequence (>= 1).
    pub sequence: u64,
    pub kind: AckKind,
}

impl Ack {
    pub fn validate(&self) -> Result<(), WireError> {
        check_name("stream", &self.stream)?;
        check_name("consumer", &self.consumer)?;
        if self.sequence == 0 {
            return Err(field_error("Ack", "sequence", "0: sequences start at 1"));
        }
        Ok(())
    }
}
