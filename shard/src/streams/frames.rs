//! Between the wire's stream types (`flit_wire::stream`) and the streams'
//! own: definitions from and to `StreamConfigSpec`, consumer configs, infos,
//! and the frames the owner answers with (PublishAck, StreamMessage,
//! StreamReply).
//!
//! Encoding cannot fail for what the server builds (names and subjects were
//! validated on the way in); should it, the frame is replaced by a refusal
//! carrying the reason, so a waiting client is still answered.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flit_stream::consumer::{
    AckPolicy, ConsumerConfig, ConsumerInfo as StateInfo, DeliveryMode, StartPosition, DELIVERIES_UNLIMITED,
};
use flit_stream::log::Durability;
use flit_stream::record::StoredMessage;
use flit_stream::retention::Discard;
use flit_wire::stream::{
    self as wire, ConsumerConfigSpec, PublishAck, StreamCode, StreamConfigSpec, StreamInfo, StreamMessageMeta,
    StreamReply,
};
use flit_wire::Encoder;

use super::admin::StreamSnapshot;
use super::definition::StreamDefinition;
use super::owner::PublishOutcome;

fn code_of(number: u16) -> StreamCode {
    StreamCode::from_u16(number).unwrap_or(StreamCode::Unavailable)
}

/// Appends the PublishAck frame answering `outcome`.
pub fn publish_ack(encoder: &mut Encoder, buffer: &mut BytesMut, outcome: &PublishOutcome) {
    let tag = outcome.reply_to.tag;
    let ack = if outcome.code == 0 {
        PublishAck::stored(tag, outcome.stream.as_ref(), outcome.sequence, outcome.duplicate)
    } else {
        let mut refused = PublishAck::refused(tag, code_of(outcome.code), outcome.message.clone());
        refused.stream = outcome.stream.to_string();
        refused
    };
    if let Err(error) = encoder.publish_ack(buffer, &ack) {
        let fallback = PublishAck::refused(tag, StreamCode::Unavailable, format!("answer not encodable: {error}"));
        let _ = encoder.publish_ack(buffer, &fallback);
    }
}

/// Appends a StreamReply; a reply that does not encode becomes a refusal.
pub fn stream_reply(encoder: &mut Encoder, buffer: &mut BytesMut, reply: &StreamReply) {
    if let Err(error) = encoder.stream_reply(buffer, reply) {
        let fallback =
            StreamReply::refused(reply.request_id, StreamCode::Unavailable, format!("reply not encodable: {error}"));
        let _ = encoder.stream_reply(buffer, &fallback);
    }
}

/// A refusal answering `request_id`.
pub fn refusal(encoder: &mut Encoder, buffer: &mut BytesMut, request_id: u64, code: u16, message: &str) {
    stream_reply(encoder, buffer, &StreamReply::refused(request_id, code_of(code), message));
}

/// Appends one StreamMessage delivered for the fetch `request_id`.
pub fn stream_message(
    encoder: &mut Encoder,
    buffer: &mut BytesMut,
    request_id: u64,
    stream: &str,
    consumer: &str,
    message: &StoredMessage,
    delivery_count: u32,
) {
    let meta = StreamMessageMeta {
        stream: stream.to_string(),
        consumer: consumer.to_string(),
        subject: message.subject.clone(),
        sequence: message.sequence,
        timestamp_ns: message.timestamp_ns,
        delivery_count,
        headers: (!message.headers.is_empty()).then(|| message.headers.clone()),
    };
    if let Err(error) = encoder.stream_message(buffer, request_id, &meta, &message.payload) {
        tracing::warn!(stream, sequence = message.sequence, %error, "a stored message could not be encoded; skipped");
    }
}

pub fn definition_from_spec(spec: &StreamConfigSpec) -> StreamDefinition {
    let subjects: Vec<&str> = spec.subjects.iter().map(String::as_str).collect();
    let mut definition = StreamDefinition::new(&spec.name, &subjects);
    definition.durability = match spec.durability {
        wire::Durability::Always => Durability::Always,
        wire::Durability::Interval { sync_interval_ms } => {
            Durability::Interval(Duration::from_millis(u64::from(sync_interval_ms)))
        }
        wire::Durability::Memory => Durability::Memory,
    };
    definition.bytes_max = spec.bytes_max;
    definition.age_max = Duration::from_millis(spec.age_ms_max);
    definition.messages_max = spec.messages_max;
    definition.message_bytes_max = spec.message_bytes_max;
    definition.discard = match spec.discard {
        wire::Discard::Old => Discard::Old,
        wire::Discard::New => Discard::New,
    };
    definition.dedup_window = Duration::from_millis(spec.dedup_window_ms);
    definition
}

pub fn spec_from_definition(definition: &StreamDefinition) -> StreamConfigSpec {
    StreamConfigSpec {
        name: definition.name.clone(),
        subjects: definition.subjects.clone(),
        durability: match definition.durability {
            Durability::Always => wire::Durability::Always,
            Durability::Interval(interval) => {
                wire::Durability::Interval { sync_interval_ms: u32::try_from(interval.as_millis()).unwrap_or(u32::MAX) }
            }
            Durability::Memory => wire::Durability::Memory,
        },
        bytes_max: definition.bytes_max,
        age_ms_max: definition.age_max.as_millis() as u64,
        messages_max: definition.messages_max,
        message_bytes_max: definition.message_bytes_max,
        discard: match definition.discard {
            Discard::New => wire::Discard::New,
            _ => wire::Discard::Old,
        },
        dedup_window_ms: definition.dedup_window.as_millis() as u64,
    }
}

pub fn stream_info(snapshot: &StreamSnapshot) -> StreamInfo {
    StreamInfo {
        config: spec_from_definition(&snapshot.definition),
        messages: snapshot.messages,
        bytes: snapshot.bytes,
        first_sequence: snapshot.first_sequence,
        last_sequence: snapshot.last_sequence,
        consumers: snapshot.consumers,
        status: snapshot.status.clone(),
    }
}

/// The consumer config a client asked for, with the server's defaults for
/// what it left at 0.
pub fn consumer_config_from_spec(spec: &ConsumerConfigSpec) -> ConsumerConfig {
    let mut config = ConsumerConfig::pull(spec.name.clone());
    config.start = match spec.start {
        wire::StartPosition::First => StartPosition::First,
        wire::StartPosition::Last => StartPosition::Last,
        wire::StartPosition::New => StartPosition::New,
        wire::StartPosition::Sequence { sequence } => StartPosition::Sequence { sequence },
        wire::StartPosition::Time { timestamp_ns } => StartPosition::Time { timestamp_ns },
    };
    config.ack_policy = match spec.ack_policy {
        wire::AckPolicy::Explicit => AckPolicy::Explicit,
        wire::AckPolicy::None => AckPolicy::None,
    };
    if spec.ack_wait_ms > 0 {
        config.ack_wait = Duration::from_millis(u64::from(spec.ack_wait_ms));
    }
    config.deliveries_max = if spec.deliveries_max == 0 { DELIVERIES_UNLIMITED } else { spec.deliveries_max };
    if spec.ack_pending_max > 0 {
        config.ack_pending_max = spec.ack_pending_max;
    }
    config.dead_letter_subject = spec.dead_letter_subject.clone();
    if let Some(subject) = &spec.deliver_subject {
        config.mode = DeliveryMode::Push { deliver_subject: subject.clone() };
    }
    config
}

pub fn consumer_info(name: &str, config: &ConsumerConfig, info: &StateInfo) -> wire::ConsumerInfo {
    let start = match config.start {
        StartPosition::First => wire::StartPosition::First,
        StartPosition::Last => wire::StartPosition::Last,
        StartPosition::New => wire::StartPosition::New,
        StartPosition::Sequence { sequence } => wire::StartPosition::Sequence { sequence },
        StartPosition::Time { timestamp_ns } => wire::StartPosition::Time { timestamp_ns },
        _ => wire::StartPosition::First,
    };
    wire::ConsumerInfo {
        config: ConsumerConfigSpec {
            name: Some(name.to_string()),
            start,
            ack_policy: if config.ack_policy == AckPolicy::None {
                wire::AckPolicy::None
            } else {
                wire::AckPolicy::Explicit
            },
            ack_wait_ms: u32::try_from(config.ack_wait.as_millis()).unwrap_or(u32::MAX),
            deliveries_max: if config.deliveries_max == DELIVERIES_UNLIMITED { 0 } else { config.deliveries_max },
            ack_pending_max: config.ack_pending_max,
            dead_letter_subject: config.dead_letter_subject.clone(),
            deliver_subject: match &config.mode {
                DeliveryMode::Push { deliver_subject } => Some(deliver_subject.clone()),
                _ => None,
            },
        },
        delivered_sequence: info.delivered_sequence,
        ack_floor: info.ack_floor,
        ack_pending: info.ack_pending,
        redeliveries_total: info.redeliveries_total,
        dead_letters_total: info.dead_letters_total,
        lag: info.lag,
        stalled: info.stalled,
    }
}

/// Frames as one buffer for the mesh.
pub fn freeze(buffer: BytesMut) -> Bytes {
    buffer.freeze()
}
