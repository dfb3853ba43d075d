//! `decode`: a checked frame into typed parts (the `Encoder` is in `encoder`).
//!
//! Decoding happens once, at the edge of the router. It verifies the
//! flatbuffer meta with explicit [`VerifierOptions`] limits, validates every
//! subject and queue name, and hands out `Bytes` that point into the frame
//! (the payload is never copied). Anything wrong becomes a [`WireError`],
//! never a panic. The frame must already have passed [`crate::check`].

use std::ops::Range;

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, VerifierOptions};

use crate::error::WireError;
use crate::frame::{parse_header, Op, FRAME_HEADER_BYTES};
use crate::schema;
use crate::stream::{decode_stream_op, StreamFrame};
use crate::subject::{validate_pattern, validate_publish_subject, validate_queue_group};

/// The highest protocol version this crate speaks. Version 2 added durable
/// streams: the stream ops (12 to 17) and the Publish ack id in the tag.
pub const PROTOCOL_VERSION: u16 = 2;
/// The lowest protocol version this crate still speaks: a version-1 peer
/// sees exactly the version-1 protocol.
pub const PROTOCOL_VERSION_MIN: u16 = 1;

const _: () = assert!(PROTOCOL_VERSION_MIN <= PROTOCOL_VERSION);

/// The version a server picks for a Hello offering
/// `version_min..=version_max`: the highest one both sides speak, or `None`
/// when the ranges do not overlap (`unsupported_version`).
pub fn negotiate_version(version_min: u16, version_max: u16) -> Option<u16> {
    let highest = version_max.min(PROTOCOL_VERSION);
    (highest >= version_min.max(PROTOCOL_VERSION_MIN)).then_some(highest)
}
/// Largest structured part a frame can carry (the header's meta_len is a u16).
pub const META_BYTES_MAX: usize = u16::MAX as usize;
/// Default largest payload, in bytes (1 MiB, as NATS).
pub const PAYLOAD_BYTES_MAX_DEFAULT: usize = 1024 * 1024;
/// Most entries in one header block.
pub const HEADER_ENTRIES_MAX: usize = 256;
/// Status of a Deliver that answers a request nobody could receive.
pub const STATUS_NO_RESPONDERS: u16 = 503;

/// What one side accepts from the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub payload_bytes_max: usize,
}

impl Limits {
    /// Largest whole frame: header, largest meta, largest payload.
    pub fn frame_bytes_max(&self) -> usize {
        FRAME_HEADER_BYTES + META_BYTES_MAX + self.payload_bytes_max
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits { payload_bytes_max: PAYLOAD_BYTES_MAX_DEFAULT }
    }
}

/// Most bytes the verifier may account for in one meta part. The verifier
/// counts every table, vtable and string it visits, shared ones once per
/// visit, so the count exceeds the buffer's length; this bounds the work a
/// crafted buffer with many references to the same bytes can cause.
pub const VERIFIER_APPARENT_BYTES_MAX: usize = 1024 * 1024;

/// Verifier limits for one meta part: bounded depth, table count and work.
pub(crate) fn verifier_options() -> VerifierOptions {
    VerifierOptions {
        max_depth: 8,
        max_tables: 2 * HEADER_ENTRIES_MAX + 16,
        max_apparent_size: VERIFIER_APPARENT_BYTES_MAX,
        ignore_missing_null_terminator: false,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub version_min: u16,
    pub version_max: u16,
    pub client_name: Option<String>,
    pub auth_token: Option<String>,
    pub ack_mode: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    pub version: u16,
    pub server_name: String,
    pub shard: u16,
    pub shards: u16,
    pub payload_bytes_max: u32,
    pub meta_bytes_max: u32,
    pub pending_bytes_max: u64,
    pub subscriptions_max: u32,
    /// The other nodes of the server's cluster, where they accept flit
    /// clients (`host:port`), for failover; empty without a cluster (and from
    /// a server that predates the field). At most [`WELCOME_URLS_MAX`], each
    /// 1 to [`WELCOME_URL_BYTES_MAX`] bytes without whitespace.
    pub cluster_urls: Vec<String>,
}

/// Most URLs in a Welcome's `cluster_urls` (a cluster has at most 64 nodes).
pub const WELCOME_URLS_MAX: usize = 64;
/// Longest URL in a Welcome's `cluster_urls` (as a route Hello's URLs).
pub const WELCOME_URL_BYTES_MAX: usize = crate::route::ROUTE_URL_BYTES_MAX;

/// The rules of [`Welcome::cluster_urls`], checked by the encoder and the decoder.
pub(crate) fn check_cluster_url_count(count: usize) -> Result<(), WireError> {
    if count > WELCOME_URLS_MAX {
        let reason = "more than WELCOME_URLS_MAX (64) URLs";
        return Err(WireError::InvalidField { table: "Welcome", field: "cluster_urls", reason });
    }
    Ok(())
}

pub(crate) fn check_cluster_url(url: &str) -> Result<(), WireError> {
    if url.is_empty() {
        return Err(WireError::InvalidField { table: "Welcome", field: "cluster_urls", reason: "an empty URL" });
    }
    crate::route::types::check_text("Welcome", "cluster_urls", url, WELCOME_URL_BYTES_MAX)
}

/// A message on its way in. Subjects are validated UTF-8 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// The header's tag. 0: a plain publish. Else (version 2) the id the
    /// server's PublishAck carries back once a stream has stored the message.
    pub ack_id: u64,
    pub subject: Bytes,
    pub reply: Option<Bytes>,
    /// An encoded, verified `Headers` flatbuffer; opaque to routing.
    pub headers: Option<Bytes>,
    pub payload: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    pub pattern: Bytes,
    pub queue: Option<Bytes>,
    pub subscription_id: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    pub subscription_id: u64,
    pub after_messages: u64,
}

/// A message on its way out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deliver {
    pub subscription_id: u64,
    pub subject: Bytes,
    pub reply: Option<Bytes>,
    pub headers: Option<Bytes>,
    pub status: u16,
    pub payload: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorFrame {
    /// The raw code; [`ErrorCode::from_u16`] names it if this version knows it.
    pub code: u16,
    pub message: String,
    /// For `rate_limited`: milliseconds until the refused message would be
    /// allowed. 0: no hint.
    pub retry_after_ms: u32,
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Hello(Hello),
    Welcome(Welcome),
    Publish(Publish),
    Subscribe(Subscribe),
    Unsubscribe(Unsubscribe),
    Deliver(Deliver),
    Ping,
    Pong,
    Ok,
    Error(ErrorFrame),
    /// The server is draining: it reads nothing more from this connection,
    /// writes what is queued, and closes it within `close_within_ms`.
    Draining {
        close_within_ms: u64,
    },
    /// A version-2 stream frame (ops 12 to 17), see [`crate::stream`].
    Stream(StreamFrame),
}

impl Frame {
    /// The frame's op.
    pub fn op(&self) -> Op {
        match self {
            Frame::Hello(_) => Op::Hello,
            Frame::Welcome(_) => Op::Welcome,
            Frame::Publish(_) => Op::Publish,
            Frame::Subscribe(_) => Op::Subscribe,
            Frame::Unsubscribe(_) => Op::Unsubscribe,
            Frame::Deliver(_) => Op::Deliver,
            Frame::Ping => Op::Ping,
            Frame::Pong => Op::Pong,
            Frame::Ok => Op::Ok,
            Frame::Error(_) => Op::Error,
            Frame::Draining { .. } => Op::Draining,
            Frame::Stream(stream) => stream.op(),
        }
    }

    /// The op's name, for logs and error messages.
    pub fn name(&self) -> &'static str {
        self.op().name()
    }
}

pub(crate) fn invalid(table: &'static str, error: flatbuffers::InvalidFlatbuffer) -> WireError {
    WireError::InvalidFlatbuffer { table, reason: error.to_string() }
}

/// `Bytes` for a string that lives inside `frame`, without copying.
pub(crate) fn sub_bytes(frame: &Bytes, text: &str) -> Bytes {
    frame.slice_ref(text.as_bytes())
}

pub(crate) fn check_payload(payload: &Bytes, limits: &Limits) -> Result<(), WireError> {
    if payload.len() > limits.payload_bytes_max {
        return Err(WireError::PayloadTooLarge {
            payload_bytes: payload.len() as u64,
            limit_bytes: limits.payload_bytes_max as u64,
        });
    }
    Ok(())
}

/// Verifies a nested header block and returns it as `Bytes` inside `frame`.
pub(crate) fn nested_headers(
    frame: &Bytes,
    headers: Option<flatbuffers::Vector<'_, u8>>,
) -> Result<Option<Bytes>, WireError> {
    let Some(vector) = headers else { return Ok(None) };
    let block = frame.slice_ref(vector.bytes());
    verify_headers(&block)?;
    Ok(Some(block))
}

pub(crate) fn verify_headers(block: &[u8]) -> Result<(), WireError> {
    let headers = flatbuffers::root_with_opts::<schema::Headers>(&verifier_options(), block)
        .map_err(|_| WireError::InvalidHeaders("header block fails verification"))?;
    if headers.entries().map_or(0, |entries| entries.len()) > HEADER_ENTRIES_MAX {
        return Err(WireError::InvalidHeaders("more than HEADER_ENTRIES_MAX entries"));
    }
    Ok(())
}

/// Where the parts of a Publish lie inside its frame, as byte ranges.
///
/// The router keeps the frame as one `Bytes` and these ranges beside it, so a
/// message costs one reference count however many parts it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishParts {
    /// The header's tag: 0, or the id of the PublishAck wanted (version 2).
    pub ack_id: u64,
    pub subject: Range<usize>,
    pub reply: Option<Range<usize>>,
    pub headers: Option<Range<usize>>,
    pub payload: Range<usize>,
}

/// The range `inner` occupies inside `outer` (a sub-slice of it).
pub(crate) fn range_in(outer: &[u8], inner: &[u8]) -> Range<usize> {
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    debug_assert!(start + inner.len() <= outer.len());
    start..start + inner.len()
}

/// Decodes and validates one whole Publish frame (as accepted by
/// [`crate::check`]) exactly as [`decode`] does, returning ranges instead of
/// `Bytes`. A frame of another op is `MalformedFrame`: callers look at the op
/// byte before they choose this function.
pub fn decode_publish(frame: &[u8], limits: &Limits) -> Result<PublishParts, WireError> {
    let header = parse_header(frame)?;
    if header.op != Op::Publish {
        return Err(WireError::MalformedFrame("not a Publish frame"));
    }
    if frame.len() != header.frame_len() {
        return Err(WireError::MalformedFrame("frame length differs from body_len"));
    }
    let meta_end = FRAME_HEADER_BYTES + header.meta_len as usize;
    let meta = &frame[FRAME_HEADER_BYTES..meta_end];
    let publish =
        flatbuffers::root_with_opts::<schema::Publish>(&verifier_options(), meta).map_err(|e| invalid("Publish", e))?;
    let subject = publish.subject().as_bytes();
    validate_publish_subject(subject)?;
    let reply = publish.reply().map(str::as_bytes);
    if let Some(reply) = reply {
        validate_publish_subject(reply)?;
    }
    let headers = publish.headers().map(|vector| vector.bytes());
    if let Some(block) = headers {
        verify_headers(block)?;
    }
    let payload_len = frame.len() - meta_end;
    if payload_len > limits.payload_bytes_max {
        return Err(WireError::PayloadTooLarge {
            payload_bytes: payload_len as u64,
            limit_bytes: limits.payload_bytes_max as u64,
        });
    }
    Ok(PublishParts {
        ack_id: header.tag,
        subject: range_in(frame, subject),
        reply: reply.map(|reply| range_in(frame, reply)),
        headers: headers.map(|block| range_in(frame, block)),
        payload: meta_end..frame.len(),
    })
}

/// Decodes one whole frame (as accepted by [`crate::check`]).
pub fn decode(frame: Bytes, limits: &Limits) -> Result<Frame, WireError> {
    let header = parse_header(&frame)?;
    if frame.len() != header.frame_len() {
        return Err(WireError::MalformedFrame("frame length differs from body_len"));
    }
    let meta_end = FRAME_HEADER_BYTES + header.meta_len as usize;
    // The meta is only borrowed (verified in place); `Bytes` are cut from the
    // frame for what outlives it: subjects and payload. Fewer refcount
    // operations on the per-message path.
    let meta: &[u8] = &frame[FRAME_HEADER_BYTES..meta_end];
    let payload = frame.slice(meta_end..);
    let options = verifier_options();
    let decoded = match header.op {
        Op::Ping => Frame::Ping,
        Op::Pong => Frame::Pong,
        Op::Ok => Frame::Ok,
        Op::Draining => Frame::Draining { close_within_ms: header.tag },
        Op::Hello => {
            let hello =
                flatbuffers::root_with_opts::<schema::Hello>(&options, meta).map_err(|e| invalid("Hello", e))?;
            Frame::Hello(Hello {
                version_min: hello.version_min(),
                version_max: hello.version_max(),
                client_name: hello.client_name().map(str::to_owned),
                auth_token: hello.auth_token().map(str::to_owned),
                ack_mode: hello.ack_mode(),
            })
        }
        Op::Welcome => {
            let welcome =
                flatbuffers::root_with_opts::<schema::Welcome>(&options, meta).map_err(|e| invalid("Welcome", e))?;
            Frame::Welcome(Welcome {
                version: welcome.version(),
                server_name: welcome.server_name().unwrap_or_default().to_owned(),
                shard: welcome.shard(),
                shards: welcome.shards(),
                payload_bytes_max: welcome.payload_bytes_max(),
                meta_bytes_max: welcome.meta_bytes_max(),
                pending_bytes_max: welcome.pending_bytes_max(),
                subscriptions_max: welcome.subscriptions_max(),
                cluster_urls: cluster_urls(welcome.cluster_urls())?,
            })
        }
        Op::Publish => {
            let parts = decode_publish(&frame, limits)?;
            Frame::Publish(Publish {
                ack_id: parts.ack_id,
                subject: frame.slice(parts.subject),
                reply: parts.reply.map(|range| frame.slice(range)),
                headers: parts.headers.map(|range| frame.slice(range)),
                payload,
            })
        }
        Op::Subscribe => {
            let subscribe = flatbuffers::root_with_opts::<schema::Subscribe>(&options, meta)
                .map_err(|e| invalid("Subscribe", e))?;
            let pattern = sub_bytes(&frame, subscribe.subject());
            validate_pattern(&pattern)?;
            let queue = subscribe.queue().map(|queue| sub_bytes(&frame, queue));
            if let Some(queue) = &queue {
                validate_queue_group(queue)?;
            }
            Frame::Subscribe(Subscribe { pattern, queue, subscription_id: subscribe.subscription_id() })
        }
        Op::Unsubscribe => {
            let unsubscribe = flatbuffers::root_with_opts::<schema::Unsubscribe>(&options, meta)
                .map_err(|e| invalid("Unsubscribe", e))?;
            Frame::Unsubscribe(Unsubscribe {
                subscription_id: unsubscribe.subscription_id(),
                after_messages: unsubscribe.after_messages(),
            })
        }
        Op::Deliver => {
            let deliver =
                flatbuffers::root_with_opts::<schema::Deliver>(&options, meta).map_err(|e| invalid("Deliver", e))?;
            let subject = sub_bytes(&frame, deliver.subject());
            validate_publish_subject(&subject)?;
            let reply = deliver.reply().map(|reply| sub_bytes(&frame, reply));
            if let Some(reply) = &reply {
                validate_publish_subject(reply)?;
            }
            let headers = nested_headers(&frame, deliver.headers())?;
            check_payload(&payload, limits)?;
            Frame::Deliver(Deliver {
                subscription_id: header.tag,
                subject,
                reply,
                headers,
                status: deliver.status(),
                payload,
            })
        }
        Op::StreamRequest | Op::StreamReply | Op::PublishAck | Op::Fetch | Op::StreamMessage | Op::Ack => {
            Frame::Stream(decode_stream_op(&header, &frame, meta, payload, limits)?)
        }
        Op::Error => {
            let error =
                flatbuffers::root_with_opts::<schema::Error>(&options, meta).map_err(|e| invalid("Error", e))?;
            Frame::Error(ErrorFrame {
                code: error.code(),
                message: error.message().unwrap_or_default().to_owned(),
                retry_after_ms: error.retry_after_ms(),
            })
        }
    };
    Ok(decoded)
}

/// Encodes a header block from key/value pairs.
pub fn encode_headers(entries: &[(&str, &str)]) -> Result<Bytes, WireError> {
    if entries.len() > HEADER_ENTRIES_MAX {
        return Err(WireError::InvalidHeaders("more than HEADER_ENTRIES_MAX entries"));
    }
    let mut builder = FlatBufferBuilder::new();
    let offsets: Vec<_> = entries
        .iter()
        .map(|(key, value)| {
            let key = builder.create_string(key);
            let value = builder.create_string(value);
            schema::Header::create(&mut builder, &schema::HeaderArgs { key: Some(key), value: Some(value) })
        })
        .collect();
    let entries = builder.create_vector(&offsets);
    let root = schema::Headers::create(&mut builder, &schema::HeadersArgs { entries: Some(entries) });
    builder.finish_minimal(root);
    Ok(Bytes::copy_from_slice(builder.finished_data()))
}

/// Decodes a header block into key/value pairs, in order.
pub fn decode_headers(block: &[u8]) -> Result<Vec<(String, String)>, WireError> {
    verify_headers(block)?;
    let headers = flatbuffers::root_with_opts::<schema::Headers>(&verifier_options(), block)
        .map_err(|_| WireError::InvalidHeaders("header block fails verification"))?;
    Ok(headers
        .entries()
        .map(|entries| entries.iter().map(|entry| (entry.key().to_owned(), entry.value().to_owned())).collect())
        .unwrap_or_default())
}

/// A Welcome's `cluster_urls`, measured before it is collected (a server
/// cannot make a client allocate past the limits).
fn cluster_urls(
    list: Option<flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<&str>>>,
) -> Result<Vec<String>, WireError> {
    let Some(list) = list else { return Ok(Vec::new()) };
    check_cluster_url_count(list.len())?;
    list.iter()
        .map(|url| {
            check_cluster_url(url)?;
            Ok(url.to_owned())
        })
        .collect()
}
