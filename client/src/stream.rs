//! Durable streams from the client's side: the values the stream calls take
//! and return (protocol version 2, docs/PROTOCOL.md "Durable streams").
//!
//! A stream stores what is published on the subjects it captures, each
//! message with a sequence (per stream, from 1, contiguous). A durable
//! publish ([`Client::publish_durable`](crate::Client::publish_durable))
//! returns once a stream stored the message: the answer is a
//! [`PublishAcked`]. A consumer reads a stream from a start position;
//! [`Client::fetch`](crate::Client::fetch) returns up to a batch of
//! [`StreamMessage`]s, which an explicit-ack consumer then acknowledges
//! ([`Client::ack`](crate::Client::ack)) or gets again after its ack wait.
//!
//! The configurations and infos are the wire crate's validated types,
//! re-exported here so that a caller needs no direct `flit-wire` dependency.

use bytes::Bytes;
use flit_wire::stream::StreamReply;

pub use flit_wire::stream::{
    AckKind, AckPolicy, ConsumerConfigSpec, ConsumerInfo, Discard, Durability, StartPosition, StreamCode,
    StreamConfigSpec, StreamInfo, NAME_BYTES_MAX,
};

use crate::error::ClientError;

/// The header that makes a durable publish idempotent: publishes with the
/// same value within the stream's dedup window are stored once, and the
/// repeats are answered with the original's sequence and `duplicate` set.
pub const MESSAGE_ID_HEADER: &str = "Flit-Msg-Id";

/// A stream's answer to a durable publish: where the message is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishAcked {
    /// The stream that captured the subject.
    pub stream: String,
    /// The message's sequence in that stream (from 1, contiguous).
    pub sequence: u64,
    /// The message id (`Flit-Msg-Id`) was seen within the dedup window:
    /// nothing new was stored, and `sequence` is the original's.
    pub duplicate: bool,
}

/// A stored message delivered to a consumer by a fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamMessage {
    pub stream: String,
    /// The consumer it was delivered for (the server's name for an
    /// ephemeral one): the one to acknowledge it to.
    pub consumer: String,
    /// The subject it was published to.
    pub subject: String,
    /// Its sequence in the stream: what an ack names.
    pub sequence: u64,
    /// When the stream stored it, in nanoseconds since the UNIX epoch.
    pub timestamp_ns: u64,
    /// 1 on the first delivery; more after an ack wait ran out or a nak.
    pub delivery_count: u32,
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

impl StreamMessage {
    /// Converts a decoded StreamMessage frame. `decode_stream` has already
    /// verified the subject and the header block, so a failure here means
    /// the server and this client disagree on the protocol.
    pub(crate) fn from_wire(message: flit_wire::stream::StreamMessage) -> Result<StreamMessage, ClientError> {
        let meta = message.meta;
        let subject = String::from_utf8(meta.subject.to_vec())
            .map_err(|_| ClientError::Protocol("StreamMessage subject is not UTF-8".to_owned()))?;
        let headers = match &meta.headers {
            Some(block) => flit_wire::decode_headers(block)
                .map_err(|error| ClientError::Protocol(format!("StreamMessage headers: {error}")))?,
            None => Vec::new(),
        };
        Ok(StreamMessage {
            stream: meta.stream,
            consumer: meta.consumer,
            subject,
            sequence: meta.sequence,
            timestamp_ns: meta.timestamp_ns,
            delivery_count: meta.delivery_count,
            headers,
            payload: message.payload,
        })
    }

    /// The first value of header `key`, if present.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers.iter().find(|(name, _)| name == key).map(|(_, value)| value.as_str())
    }
}

/// The one stream an Add or Info reply carries.
pub(crate) fn first_stream(reply: StreamReply) -> Result<StreamInfo, ClientError> {
    reply.streams.into_iter().next().ok_or_else(|| ClientError::Protocol("a stream reply without its stream".into()))
}

/// The consumer a ConsumerAdd or ConsumerInfo reply carries.
pub(crate) fn consumer_of(reply: StreamReply) -> Result<ConsumerInfo, ClientError> {
    reply.consumer.ok_or_else(|| ClientError::Protocol("a consumer reply without its consumer".into()))
}
