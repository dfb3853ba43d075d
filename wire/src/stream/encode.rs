//! `Encoder` methods for the stream ops: typed values into whole frames,
//! appended to a caller's `BytesMut` like every other frame.
//!
//! Each method first runs the value's `validate` (the checks decode runs),
//! so a frame written here always decodes, and a client learns about a bad
//! name or config from a typed error before anything is sent. A meta above
//! `META_BYTES_MAX` is an error, never a truncated frame; only
//! [`Encoder::stream_list_reply`] shortens its list to fit.

use bytes::BytesMut;
use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::types::{
    Ack, AckKind, AckPolicy, ConsumerConfigSpec, ConsumerInfo, Discard, Durability, Fetch, PublishAck, StartPosition,
    StreamCommand, StreamConfigSpec, StreamInfo, StreamMessageMeta, StreamReply, StreamRequest,
};
use super::{StreamFrame, STREAMS_PER_REPLY_MAX};
use crate::codec::META_BYTES_MAX;
use crate::encoder::{put_frame, Encoder};
use crate::error::WireError;
use crate::frame::Op;
use crate::schema;

type Builder = FlatBufferBuilder<'static>;

/// A string field that is left out when empty (read back as empty).
fn optional_text(builder: &mut Builder, text: &str) -> Option<WIPOffset<&'static str>> {
    (!text.is_empty()).then(|| builder.create_string(text))
}

fn stream_config(builder: &mut Builder, config: &StreamConfigSpec) -> WIPOffset<schema::StreamConfig<'static>> {
    let name = Some(builder.create_string(&config.name));
    let subjects: Vec<_> = config.subjects.iter().map(|subject| builder.create_string(subject)).collect();
    let subjects = Some(builder.create_vector(&subjects));
    let (durability, sync_interval_ms) = match config.durability {
        Durability::Always => (schema::Durability::Always, 0),
        Durability::Interval { sync_interval_ms } => (schema::Durability::Interval, sync_interval_ms),
        Durability::Memory => (schema::Durability::Memory, 0),
    };
    let discard = match config.discard {
        Discard::Old => schema::Discard::Old,
        Discard::New => schema::Discard::New,
    };
    let args = schema::StreamConfigArgs {
        name,
        subjects,
        durability,
        sync_interval_ms,
        bytes_max: config.bytes_max,
        age_ms_max: config.age_ms_max,
        messages_max: config.messages_max,
        message_bytes_max: config.message_bytes_max,
        discard,
        dedup_window_ms: config.dedup_window_ms,
    };
    schema::StreamConfig::create(builder, &args)
}

fn consumer_config(builder: &mut Builder, config: &ConsumerConfigSpec) -> WIPOffset<schema::ConsumerConfig<'static>> {
    let name = config.name.as_deref().map(|name| builder.create_string(name));
    let dead_letter_subject = config.dead_letter_subject.as_deref().map(|subject| builder.create_string(subject));
    let deliver_subject = config.deliver_subject.as_deref().map(|subject| builder.create_string(subject));
    let (start, start_sequence, start_time_ns) = match config.start {
        StartPosition::First => (schema::StartPosition::First, 0, 0),
        StartPosition::Last => (schema::StartPosition::Last, 0, 0),
        StartPosition::New => (schema::StartPosition::New, 0, 0),
        StartPosition::Sequence { sequence } => (schema::StartPosition::Sequence, sequence, 0),
        StartPosition::Time { timestamp_ns } => (schema::StartPosition::Time, 0, timestamp_ns),
    };
    let ack_policy = match config.ack_policy {
        AckPolicy::Explicit => schema::AckPolicy::Explicit,
        AckPolicy::None => schema::AckPolicy::None,
    };
    let args = schema::ConsumerConfigArgs {
        name,
        start,
        start_sequence,
        start_time_ns,
        ack_policy,
        ack_wait_ms: config.ack_wait_ms,
        deliveries_max: config.deliveries_max,
        ack_pending_max: config.ack_pending_max,
        dead_letter_subject,
        deliver_subject,
    };
    schema::ConsumerConfig::create(builder, &args)
}

fn stream_info(builder: &mut Builder, info: &StreamInfo) -> WIPOffset<schema::StreamInfo<'static>> {
    let config = Some(stream_config(builder, &info.config));
    let status = optional_text(builder, &info.status);
    let args = schema::StreamInfoArgs {
        config,
        messages: info.messages,
        bytes: info.bytes,
        first_sequence: info.first_sequence,
        last_sequence: info.last_sequence,
        consumers: info.consumers,
        status,
    };
    schema::StreamInfo::create(builder, &args)
}

fn consumer_info(builder: &mut Builder, info: &ConsumerInfo) -> WIPOffset<schema::ConsumerInfo<'static>> {
    let config = Some(consumer_config(builder, &info.config));
    let args = schema::ConsumerInfoArgs {
        config,
        delivered_sequence: info.delivered_sequence,
        ack_floor: info.ack_floor,
        ack_pending: info.ack_pending,
        redeliveries_total: info.redeliveries_total,
        dead_letters_total: info.dead_letters_total,
        lag: info.lag,
        stalled: info.stalled,
    };
    schema::ConsumerInfo::create(builder, &args)
}

/// The parts of a StreamReply's meta, borrowed, so a list reply can be built
/// from a prefix of the caller's slice without copying it.
struct ReplyParts<'a> {
    code: u16,
    message: &'a str,
    streams: &'a [StreamInfo],
    consumer: Option<&'a ConsumerInfo>,
    delivered: u32,
    streams_omitted: u32,
}

impl Encoder {
    /// Writes a StreamRequest (op 12); the tag is `request.request_id`,
    /// which must not be 0.
    pub fn stream_request(&mut self, out: &mut BytesMut, request: &StreamRequest) -> Result<(), WireError> {
        request.command.validate()?;
        let builder = &mut self.builder;
        builder.reset();
        let mut args = schema::StreamRequestArgs {
            action: schema::StreamAction(request.command.action() as u8),
            ..Default::default()
        };
        match &request.command {
            StreamCommand::Add(config) => {
                args.stream = Some(builder.create_string(&config.name));
                args.stream_config = Some(stream_config(builder, config));
            }
            StreamCommand::Remove { stream } | StreamCommand::Info { stream } => {
                args.stream = Some(builder.create_string(stream));
            }
            StreamCommand::List { after } => args.stream = after.as_deref().map(|after| builder.create_string(after)),
            StreamCommand::ConsumerAdd { stream, config } => {
                args.stream = Some(builder.create_string(stream));
                args.consumer = config.name.as_deref().map(|name| builder.create_string(name));
                args.consumer_config = Some(consumer_config(builder, config));
            }
            StreamCommand::ConsumerRemove { stream, consumer } | StreamCommand::ConsumerInfo { stream, consumer } => {
                args.stream = Some(builder.create_string(stream));
                args.consumer = Some(builder.create_string(consumer));
            }
        }
        let root = schema::StreamRequest::create(builder, &args);
        let meta = self.finish(root);
        put_frame(out, Op::StreamRequest, request.request_id, meta, &[])
    }

    /// Writes a StreamReply (op 13); the tag is `reply.request_id` (not 0).
    /// A reply whose meta would pass `META_BYTES_MAX` is an error: for a
    /// List answer use [`Encoder::stream_list_reply`], which fits the list.
    pub fn stream_reply(&mut self, out: &mut BytesMut, reply: &StreamReply) -> Result<(), WireError> {
        reply.validate()?;
        let parts = ReplyParts {
            code: reply.code,
            message: &reply.message,
            streams: &reply.streams,
            consumer: reply.consumer.as_ref(),
            delivered: reply.delivered,
            streams_omitted: reply.streams_omitted,
        };
        let meta = self.stream_reply_meta(&parts);
        put_frame(out, Op::StreamReply, reply.request_id, meta, &[])
    }

    /// Writes the successful StreamReply to a List: as many of `streams`
    /// (in the order given, which should be by name) as fit in one meta and
    /// in [`STREAMS_PER_REPLY_MAX`], with `streams_omitted` counting the
    /// rest. Returns how many were written; the client asks for the rest
    /// with `List { after: Some(last name written) }`.
    pub fn stream_list_reply(
        &mut self,
        out: &mut BytesMut,
        request_id: u64,
        streams: &[StreamInfo],
    ) -> Result<usize, WireError> {
        for stream in streams {
            stream.config.validate()?;
        }
        let mut count = streams.len().min(STREAMS_PER_REPLY_MAX);
        // Each try shrinks the list in proportion to the overshoot, so this
        // ends after a few builds; an empty list always fits.
        loop {
            let omitted = u32::try_from(streams.len() - count).unwrap_or(u32::MAX);
            let parts = ReplyParts {
                code: 0,
                message: "",
                streams: &streams[..count],
                consumer: None,
                delivered: 0,
                streams_omitted: omitted,
            };
            let meta_bytes = self.stream_reply_meta(&parts).len();
            if meta_bytes <= META_BYTES_MAX || count == 0 {
                let meta = self.builder.finished_data();
                put_frame(out, Op::StreamReply, request_id, meta, &[])?;
                return Ok(count);
            }
            let fitting = count * META_BYTES_MAX / meta_bytes;
            count = fitting.min(count - 1);
        }
    }

    fn stream_reply_meta(&mut self, parts: &ReplyParts<'_>) -> &[u8] {
        let builder = &mut self.builder;
        builder.reset();
        let message = optional_text(builder, parts.message);
        let streams = if parts.streams.is_empty() {
            None
        } else {
            let infos: Vec<_> = parts.streams.iter().map(|info| stream_info(builder, info)).collect();
            Some(builder.create_vector(&infos))
        };
        let consumer = parts.consumer.map(|info| consumer_info(builder, info));
        let args = schema::StreamReplyArgs {
            code: parts.code,
            message,
            streams,
            consumer,
            delivered: parts.delivered,
            streams_omitted: parts.streams_omitted,
        };
        let root = schema::StreamReply::create(builder, &args);
        self.finish(root)
    }

    /// Writes a PublishAck (op 14); the tag is `ack.ack_id` (not 0), the
    /// Publish's.
    pub fn publish_ack(&mut self, out: &mut BytesMut, ack: &PublishAck) -> Result<(), WireError> {
        let meta = self.publish_ack_meta(ack)?;
        put_frame(out, Op::PublishAck, ack.ack_id, meta, &[])
    }

    /// The flatbuffer of a PublishAck (a client frame's meta, or a route's
    /// RouteStoreAck).
    pub(crate) fn publish_ack_meta(&mut self, ack: &PublishAck) -> Result<&[u8], WireError> {
        ack.validate()?;
        let builder = &mut self.builder;
        builder.reset();
        let stream = optional_text(builder, &ack.stream);
        let message = optional_text(builder, &ack.message);
        let args = schema::PublishAckArgs {
            stream,
            sequence: ack.sequence,
            duplicate: ack.duplicate,
            code: ack.code,
            message,
        };
        let root = schema::PublishAck::create(builder, &args);
        Ok(self.finish(root))
    }

    /// Writes a Fetch (op 15); the tag is `fetch.request_id` (not 0).
    pub fn fetch(&mut self, out: &mut BytesMut, fetch: &Fetch) -> Result<(), WireError> {
        fetch.validate()?;
        let builder = &mut self.builder;
        builder.reset();
        let stream = Some(builder.create_string(&fetch.stream));
        let consumer = Some(builder.create_string(&fetch.consumer));
        let args = schema::FetchArgs { stream, consumer, batch: fetch.batch, wait_ms: fetch.wait_ms };
        let root = schema::Fetch::create(builder, &args);
        let meta = self.finish(root);
        put_frame(out, Op::Fetch, fetch.request_id, meta, &[])
    }

    /// Writes a StreamMessage (op 16) with `tag` (a Fetch's request id, or a
    /// push consumer's subscription id) and `payload` after the meta.
    pub fn stream_message(
        &mut self,
        out: &mut BytesMut,
        tag: u64,
        meta: &StreamMessageMeta,
        payload: &[u8],
    ) -> Result<(), WireError> {
        meta.validate()?;
        let subject = std::str::from_utf8(&meta.subject).map_err(|_| WireError::InvalidSubject("not UTF-8"))?;
        let builder = &mut self.builder;
        builder.reset();
        let stream = Some(builder.create_string(&meta.stream));
        let consumer = Some(builder.create_string(&meta.consumer));
        let subject = Some(builder.create_string(subject));
        let headers = meta.headers.as_deref().map(|block| builder.create_vector(block));
        let args = schema::StreamMessageArgs {
            stream,
            consumer,
            subject,
            sequence: meta.sequence,
            timestamp_ns: meta.timestamp_ns,
            delivery_count: meta.delivery_count,
            headers,
        };
        let root = schema::StreamMessage::create(builder, &args);
        let meta = self.finish(root);
        put_frame(out, Op::StreamMessage, tag, meta, payload)
    }

    /// Writes an Ack (op 17); the tag is `ack.request_id` (0: no reply).
    pub fn ack(&mut self, out: &mut BytesMut, ack: &Ack) -> Result<(), WireError> {
        ack.validate()?;
        let builder = &mut self.builder;
        builder.reset();
        let stream = Some(builder.create_string(&ack.stream));
        let consumer = Some(builder.create_string(&ack.consumer));
        let kind = match ack.kind {
            AckKind::Ack => schema::AckKind::Ack,
            AckKind::Nak => schema::AckKind::Nak,
            AckKind::Term => schema::AckKind::Term,
            AckKind::InProgress => schema::AckKind::InProgress,
        };
        let args = schema::AckArgs { stream, consumer, sequence: ack.sequence, kind };
        let root = schema::Ack::create(builder, &args);
        let meta = self.finish(root);
        put_frame(out, Op::Ack, ack.request_id, meta, &[])
    }

    /// Writes any decoded stream frame back: decoding the result gives the
    /// same value (the round trip the tests and the fuzzer check).
    pub fn stream_frame(&mut self, out: &mut BytesMut, frame: &StreamFrame) -> Result<(), WireError> {
        match frame {
            StreamFrame::Request(request) => self.stream_request(out, request),
            StreamFrame::Reply(reply) => self.stream_reply(out, reply),
            StreamFrame::PublishAck(ack) => self.publish_ack(out, ack),
            StreamFrame::Fetch(fetch) => self.fetch(out, fetch),
            StreamFrame::Message(message) => self.stream_message(out, message.tag, &message.meta, &message.payload),
            StreamFrame::Ack(ack) => self.ack(out, ack),
        }
    }
}
