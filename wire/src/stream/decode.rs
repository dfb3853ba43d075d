//! Decoding the stream ops' metas into the types of [`super::types`].
//!
//! Each meta is verified by the flatbuffers verifier with the same options as
//! every other op (depth, table count, apparent size), then read into owned
//! values and checked with the type's own `validate`, the function the
//! encoders use too. Lists are measured before anything is allocated for
//! them, so a meta can never make this code allocate more than its bounds
//! allow. Enum values this version does not know are refused
//! ([`WireError::UnknownEnumValue`]), never read as a default.

use bytes::Bytes;

use super::types::{
    Ack, AckKind, AckPolicy, ConsumerConfigSpec, ConsumerInfo, Discard, Durability, Fetch, PublishAck, StartPosition,
    StreamCommand, StreamConfigSpec, StreamInfo, StreamMessage, StreamMessageMeta, StreamReply, StreamRequest,
};
use super::{StreamFrame, STREAMS_PER_REPLY_MAX, SUBJECTS_PER_STREAM_MAX};
use crate::codec::{check_payload, invalid, nested_headers, sub_bytes, verifier_options, Limits};
use crate::error::WireError;
use crate::frame::{FrameHeader, Op};
use crate::schema;

fn field_error(table: &'static str, field: &'static str, reason: &'static str) -> WireError {
    WireError::InvalidField { table, field, reason }
}

fn unknown(table: &'static str, field: &'static str, value: u8) -> WireError {
    WireError::UnknownEnumValue { table, field, value }
}

/// An optional string where empty and absent both mean "none".
fn non_empty(text: Option<&str>) -> Option<String> {
    text.filter(|text| !text.is_empty()).map(str::to_owned)
}

/// Decodes the meta (and payload) of one stream op. `header.op` must be a
/// stream op; the header has passed `parse_header`.
pub(crate) fn decode_stream_op(
    header: &FrameHeader,
    frame: &Bytes,
    meta: &[u8],
    payload: Bytes,
    limits: &Limits,
) -> Result<StreamFrame, WireError> {
    let options = verifier_options();
    let decoded = match header.op {
        Op::StreamRequest => {
            let request = flatbuffers::root_with_opts::<schema::StreamRequest>(&options, meta)
                .map_err(|error| invalid("StreamRequest", error))?;
            let request = StreamRequest { request_id: header.tag, command: stream_command(request)? };
            request.command.validate()?;
            StreamFrame::Request(request)
        }
        Op::StreamReply => {
            let reply = flatbuffers::root_with_opts::<schema::StreamReply>(&options, meta)
                .map_err(|error| invalid("StreamReply", error))?;
            let reply = stream_reply(header.tag, reply)?;
            reply.validate()?;
            StreamFrame::Reply(reply)
        }
        Op::PublishAck => StreamFrame::PublishAck(publish_ack(header.tag, meta)?),
        Op::Fetch => {
            let fetch = flatbuffers::root_with_opts::<schema::Fetch>(&options, meta)
                .map_err(|error| invalid("Fetch", error))?;
            let fetch = Fetch {
                request_id: header.tag,
                stream: fetch.stream().to_owned(),
                consumer: fetch.consumer().to_owned(),
                batch: fetch.batch(),
                wait_ms: fetch.wait_ms(),
            };
            fetch.validate()?;
            StreamFrame::Fetch(fetch)
        }
        Op::StreamMessage => {
            let message = flatbuffers::root_with_opts::<schema::StreamMessage>(&options, meta)
                .map_err(|error| invalid("StreamMessage", error))?;
            let meta = StreamMessageMeta {
                stream: message.stream().to_owned(),
                consumer: message.consumer().to_owned(),
                subject: sub_bytes(frame, message.subject()),
                sequence: message.sequence(),
                timestamp_ns: message.timestamp_ns(),
                delivery_count: message.delivery_count(),
                headers: nested_headers(frame, message.headers())?,
            };
            meta.validate()?;
            check_payload(&payload, limits)?;
            StreamFrame::Message(StreamMessage { tag: header.tag, meta, payload })
        }
        Op::Ack => {
            let ack =
                flatbuffers::root_with_opts::<schema::Ack>(&options, meta).map_err(|error| invalid("Ack", error))?;
            let ack = Ack {
                request_id: header.tag,
                stream: ack.stream().to_owned(),
                consumer: ack.consumer().to_owned(),
                sequence: ack.sequence(),
                kind: ack_kind(ack.kind())?,
            };
            ack.validate()?;
            StreamFrame::Ack(ack)
        }
        _ => return Err(WireError::MalformedFrame("not a stream op")),
    };
    Ok(decoded)
}

fn required(table: &'static str, field: &'static str, text: Option<&str>) -> Result<String, WireError> {
    text.map(str::to_owned).ok_or(field_error(table, field, "required by this action"))
}

/// The command of a StreamRequest: the fields its action needs (others are
/// ignored, as a field a peer does not know would be).
fn stream_command(request: schema::StreamRequest<'_>) -> Result<StreamCommand, WireError> {
    const TABLE: &str = "StreamRequest";
    let stream = request.stream();
    let command = match request.action() {
        schema::StreamAction::Add => {
            let config = request.stream_config().ok_or(field_error(TABLE, "stream_config", "required by Add"))?;
            let config = stream_config(config)?;
            if stream.is_some_and(|stream| stream != config.name) {
                return Err(field_error(TABLE, "stream", "differs from stream_config.name"));
            }
            StreamCommand::Add(config)
        }
        schema::StreamAction::Remove => StreamCommand::Remove { stream: required(TABLE, "stream", stream)? },
        schema::StreamAction::Info => StreamCommand::Info { stream: required(TABLE, "stream", stream)? },
        schema::StreamAction::List => StreamCommand::List { after: stream.map(str::to_owned) },
        schema::StreamAction::ConsumerAdd => {
            let config =
                request.consumer_config().ok_or(field_error(TABLE, "consumer_config", "required by ConsumerAdd"))?;
            let config = consumer_config(config)?;
            if request.consumer().is_some_and(|consumer| Some(consumer) != config.name.as_deref()) {
                return Err(field_error(TABLE, "consumer", "differs from consumer_config.name"));
            }
            StreamCommand::ConsumerAdd { stream: required(TABLE, "stream", stream)?, config }
        }
        schema::StreamAction::ConsumerRemove => StreamCommand::ConsumerRemove {
            stream: required(TABLE, "stream", stream)?,
            consumer: required(TABLE, "consumer", request.consumer())?,
        },
        schema::StreamAction::ConsumerInfo => StreamCommand::ConsumerInfo {
            stream: required(TABLE, "stream", stream)?,
            consumer: required(TABLE, "consumer", request.consumer())?,
        },
        schema::StreamAction::Unspecified => return Err(field_error(TABLE, "action", "0: a request names an action")),
        other => return Err(unknown(TABLE, "action", other.0)),
    };
    Ok(command)
}

fn stream_config(config: schema::StreamConfig<'_>) -> Result<StreamConfigSpec, WireError> {
    const TABLE: &str = "StreamConfig";
    let subjects = config.subjects();
    if subjects.is_some_and(|subjects| subjects.len() > SUBJECTS_PER_STREAM_MAX) {
        return Err(field_error(TABLE, "subjects", "more than SUBJECTS_PER_STREAM_MAX (64)"));
    }
    let sync_interval_ms = config.sync_interval_ms();
    let durability = match config.durability() {
        schema::Durability::Interval => Durability::Interval { sync_interval_ms },
        schema::Durability::Always if sync_interval_ms == 0 => Durability::Always,
        schema::Durability::Memory if sync_interval_ms == 0 => Durability::Memory,
        schema::Durability::Always | schema::Durability::Memory => {
            return Err(field_error(TABLE, "sync_interval_ms", "set without durability Interval"))
        }
        other => return Err(unknown(TABLE, "durability", other.0)),
    };
    let discard = match config.discard() {
        schema::Discard::Old => Discard::Old,
        schema::Discard::New => Discard::New,
        other => return Err(unknown(TABLE, "discard", other.0)),
    };
    Ok(StreamConfigSpec {
        name: config.name().unwrap_or_default().to_owned(),
        subjects: subjects.map(|subjects| subjects.iter().map(str::to_owned).collect()).unwrap_or_default(),
        durability,
        bytes_max: config.bytes_max(),
        age_ms_max: config.age_ms_max(),
        messages_max: config.messages_max(),
        message_bytes_max: config.message_bytes_max(),
        discard,
        dedup_window_ms: config.dedup_window_ms(),
    })
}

fn consumer_config(config: schema::ConsumerConfig<'_>) -> Result<ConsumerConfigSpec, WireError> {
    const TABLE: &str = "ConsumerConfig";
    let (sequence, time) = (config.start_sequence(), config.start_time_ns());
    let start = match config.start() {
        schema::StartPosition::Sequence if time == 0 => StartPosition::Sequence { sequence },
        schema::StartPosition::Time if sequence == 0 => StartPosition::Time { timestamp_ns: time },
        schema::StartPosition::First if sequence == 0 && time == 0 => StartPosition::First,
        schema::StartPosition::Last if sequence == 0 && time == 0 => StartPosition::Last,
        schema::StartPosition::New if sequence == 0 && time == 0 => StartPosition::New,
        schema::StartPosition::First
        | schema::StartPosition::Last
        | schema::StartPosition::New
        | schema::StartPosition::Sequence
        | schema::StartPosition::Time => {
            return Err(field_error(TABLE, "start", "start_sequence or start_time_ns set for another start"))
        }
        other => return Err(unknown(TABLE, "start", other.0)),
    };
    let ack_policy = match config.ack_policy() {
        schema::AckPolicy::Explicit => AckPolicy::Explicit,
        schema::AckPolicy::None => AckPolicy::None,
        other => return Err(unknown(TABLE, "ack_policy", other.0)),
    };
    Ok(ConsumerConfigSpec {
        name: non_empty(config.name()),
        start,
        ack_policy,
        ack_wait_ms: config.ack_wait_ms(),
        deliveries_max: config.deliveries_max(),
        ack_pending_max: config.ack_pending_max(),
        dead_letter_subject: non_empty(config.dead_letter_subject()),
        deliver_subject: non_empty(config.deliver_subject()),
    })
}

fn ack_kind(kind: schema::AckKind) -> Result<AckKind, WireError> {
    Ok(match kind {
        schema::AckKind::Ack => AckKind::Ack,
        schema::AckKind::Nak => AckKind::Nak,
        schema::AckKind::Term => AckKind::Term,
        schema::AckKind::InProgress => AckKind::InProgress,
        other => return Err(unknown("Ack", "kind", other.0)),
    })
}

fn stream_info(info: schema::StreamInfo<'_>) -> Result<StreamInfo, WireError> {
    let config = info.config().ok_or(field_error("StreamInfo", "config", "required"))?;
    Ok(StreamInfo {
        config: stream_config(config)?,
        messages: info.messages(),
        bytes: info.bytes(),
        first_sequence: info.first_sequence(),
        last_sequence: info.last_sequence(),
        consumers: info.consumers(),
        status: info.status().unwrap_or_default().to_owned(),
    })
}

fn consumer_info(info: schema::ConsumerInfo<'_>) -> Result<ConsumerInfo, WireError> {
    let config = info.config().ok_or(field_error("ConsumerInfo", "config", "required"))?;
    Ok(ConsumerInfo {
        config: consumer_config(config)?,
        delivered_sequence: info.delivered_sequence(),
        ack_floor: info.ack_floor(),
        ack_pending: info.ack_pending(),
        redeliveries_total: info.redeliveries_total(),
        dead_letters_total: info.dead_letters_total(),
        lag: info.lag(),
        stalled: info.stalled(),
    })
}

fn stream_reply(request_id: u64, reply: schema::StreamReply<'_>) -> Result<StreamReply, WireError> {
    let streams = match reply.streams() {
        None => Vec::new(),
        Some(streams) if streams.len() > STREAMS_PER_REPLY_MAX => {
            return Err(field_error("StreamReply", "streams", "more than STREAMS_PER_REPLY_MAX (256)"))
        }
        Some(streams) => streams.iter().map(stream_info).collect::<Result<_, _>>()?,
    };
    Ok(StreamReply {
        request_id,
        code: reply.code(),
        message: reply.message().unwrap_or_default().to_owned(),
        streams,
        consumer: reply.consumer().map(consumer_info).transpose()?,
        delivered: reply.delivered(),
        streams_omitted: reply.streams_omitted(),
    })
}

/// A PublishAck meta (also the body of a route's RouteStoreAck), verified
/// and validated; `ack_id` comes from the frame header's tag.
pub(crate) fn publish_ack(ack_id: u64, meta: &[u8]) -> Result<PublishAck, WireError> {
    let ack = flatbuffers::root_with_opts::<schema::PublishAck>(&verifier_options(), meta)
        .map_err(|error| invalid("PublishAck", error))?;
    let ack = PublishAck {
        ack_id,
        stream: ack.stream().unwrap_or_default().to_owned(),
        sequence: ack.sequence(),
        duplicate: ack.duplicate(),
        code: ack.code(),
        message: ack.message().unwrap_or_default().to_owned(),
    };
    ack.validate()?;
    Ok(ack)
}
