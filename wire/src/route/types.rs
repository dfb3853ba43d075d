//! The validated Rust types of the route frames, and their rules.
//!
//! [`crate::decode_route`] hands these out only after `validate` passed, and
//! the route encoders refuse a value whose `validate` fails, so a route frame
//! this crate writes always decodes.
//!
//! ## Invariants (after `validate`)
//! - `version_min` is at least 1 and at most `version_max`.
//! - The cluster name is 1 to [`CLUSTER_NAME_BYTES_MAX`] bytes; it and every
//!   URL hold no whitespace or control byte (they appear in logs, metrics
//!   labels and `flit cluster ls` lines).
//! - `shard_count` is at least 1 and `lane_shard` below it.
//! - Each URL list holds at most [`ROUTE_URLS_MAX`] non-empty URLs of at most
//!   [`ROUTE_URL_BYTES_MAX`] bytes; the route address is empty (not
//!   advertised) or such a URL.
//! - Interest: a valid pattern, and a valid queue group name if any.
//! - Message: a valid publish subject, reply subject (if any), a verified
//!   header block (if any), and at most [`QUEUE_PICKS_MAX`] queue picks.

use std::ops::Range;

use bytes::Bytes;

use super::{
    CLUSTER_NAME_BYTES_MAX, QUEUE_PICKS_MAX, ROUTE_MAC_BYTES, ROUTE_NONCE_BYTES, ROUTE_URLS_MAX, ROUTE_URL_BYTES_MAX,
};
use crate::codec::verify_headers;
use crate::error::WireError;
use crate::subject::{validate_pattern, validate_publish_subject, validate_queue_group};

/// The first frame of each side of a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteHello {
    /// Lowest and highest route protocol version the sender speaks.
    pub version_min: u16,
    pub version_max: u16,
    /// Both ends must name the same cluster.
    pub cluster_name: String,
    /// The sender's stable node id.
    pub node_id: u32,
    /// Grows each time the sender starts; a newer generation of a lane
    /// replaces the older one.
    pub generation: u64,
    /// The sender's shard count, and the shard that owns this lane.
    pub shard_count: u16,
    pub lane_shard: u16,
    /// Fresh random bytes, covered by both RouteAuth macs.
    pub nonce: [u8; ROUTE_NONCE_BYTES],
    /// Where the sender accepts routes; empty: not advertised.
    pub route_address: String,
    /// Where the sender accepts flit clients and NATS clients.
    pub client_urls: Vec<String>,
    pub nats_urls: Vec<String>,
}

/// The second frame of each side: HMAC-SHA256 with the cluster secret over
/// both Hellos (computed and verified by the shard, not here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteAuth {
    pub mac: [u8; ROUTE_MAC_BYTES],
}

/// The sender's node gained its first (`add`) or lost its last local
/// subscriber for `pattern` in `queue` (or outside any queue group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInterest {
    pub add: bool,
    pub pattern: Bytes,
    pub queue: Option<Bytes>,
}

/// One routed message: the frame as received, and where its parts lie in it,
/// like [`crate::PublishParts`], so delivering it keeps one reference count.
///
/// Equality compares the message (subject, reply, headers, payload, picks),
/// not the layout of the frame around it: two encodings of one message are
/// equal.
#[derive(Clone, Debug)]
pub struct RouteMessage {
    /// The whole frame, header included.
    pub frame: Bytes,
    pub subject: Range<usize>,
    pub reply: Option<Range<usize>>,
    /// A verified `Headers` flatbuffer, as in a Publish.
    pub headers: Option<Range<usize>>,
    pub payload: Range<usize>,
    /// The queue groups the sender picked this node for (ids the shards
    /// agree on); at most [`QUEUE_PICKS_MAX`]. Empty (no allocation) for a
    /// message without queue groups.
    pub queue_picks: Vec<u64>,
    /// Non-zero: the sender asks for a RouteStoreAck with this id once a
    /// stream on the receiving node stored the message (the header's tag).
    pub store_request: u64,
}

impl RouteMessage {
    pub fn subject(&self) -> &[u8] {
        &self.frame[self.subject.clone()]
    }

    pub fn reply(&self) -> Option<&[u8]> {
        self.reply.clone().map(|range| &self.frame[range])
    }

    pub fn headers(&self) -> Option<&[u8]> {
        self.headers.clone().map(|range| &self.frame[range])
    }

    pub fn payload(&self) -> &[u8] {
        &self.frame[self.payload.clone()]
    }

    /// A part of the frame as `Bytes` sharing its buffer (no copy).
    pub fn slice(&self, range: Range<usize>) -> Bytes {
        self.frame.slice(range)
    }
}

impl PartialEq for RouteMessage {
    fn eq(&self, other: &Self) -> bool {
        self.subject() == other.subject()
            && self.reply() == other.reply()
            && self.headers() == other.headers()
            && self.payload() == other.payload()
            && self.queue_picks == other.queue_picks
            && self.store_request == other.store_request
    }
}

impl Eq for RouteMessage {}

fn field_error(table: &'static str, field: &'static str, reason: &'static str) -> WireError {
    WireError::InvalidField { table, field, reason }
}

/// A name or URL: at most `bytes_max` bytes, no whitespace or control byte.
/// Emptiness is the caller's rule.
pub(crate) fn check_text(
    table: &'static str,
    field: &'static str,
    text: &str,
    bytes_max: usize,
) -> Result<(), WireError> {
    if text.len() > bytes_max {
        return Err(field_error(table, field, "longer than its limit"));
    }
    if text.bytes().any(|byte| byte <= b' ' || byte == 0x7f) {
        return Err(field_error(table, field, "holds whitespace or a control character"));
    }
    Ok(())
}

/// A URL list: at most [`ROUTE_URLS_MAX`] non-empty URLs. Called with the
/// count before the list is collected, then with each URL.
pub(crate) fn check_url_count(field: &'static str, count: usize) -> Result<(), WireError> {
    if count > ROUTE_URLS_MAX {
        return Err(field_error("RouteHello", field, "more than ROUTE_URLS_MAX (64) URLs"));
    }
    Ok(())
}

pub(crate) fn check_url(field: &'static str, url: &str) -> Result<(), WireError> {
    if url.is_empty() {
        return Err(field_error("RouteHello", field, "an empty URL"));
    }
    check_text("RouteHello", field, url, ROUTE_URL_BYTES_MAX)
}

pub(crate) fn check_queue_pick_count(count: usize) -> Result<(), WireError> {
    if count > QUEUE_PICKS_MAX {
        return Err(field_error("RouteMessage", "queue_picks", "more than QUEUE_PICKS_MAX (64) picks"));
    }
    Ok(())
}

impl RouteHello {
    /// The rules above; decode and encode both run them.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.version_min == 0 || self.version_min > self.version_max {
            return Err(field_error("RouteHello", "version_min", "0, or above version_max"));
        }
        if self.cluster_name.is_empty() {
            return Err(field_error("RouteHello", "cluster_name", "empty"));
        }
        check_text("RouteHello", "cluster_name", &self.cluster_name, CLUSTER_NAME_BYTES_MAX)?;
        if self.shard_count == 0 || self.lane_shard >= self.shard_count {
            return Err(field_error("RouteHello", "lane_shard", "shard_count is 0, or lane_shard is not below it"));
        }
        check_text("RouteHello", "route_address", &self.route_address, ROUTE_URL_BYTES_MAX)?;
        for (field, urls) in [("client_urls", &self.client_urls), ("nats_urls", &self.nats_urls)] {
            check_url_count(field, urls.len())?;
            for url in urls {
                check_url(field, url)?;
            }
        }
        Ok(())
    }
}

/// Checks the parts of a RouteMessage (the encoder's side; decode checks the
/// same parts in place).
pub(crate) fn validate_message(
    subject: &[u8],
    reply: Option<&[u8]>,
    headers: Option<&[u8]>,
    queue_picks: usize,
) -> Result<(), WireError> {
    validate_publish_subject(subject)?;
    if let Some(reply) = reply {
        validate_publish_subject(reply)?;
    }
    if let Some(block) = headers {
        verify_headers(block)?;
    }
    check_queue_pick_count(queue_picks)
}

/// Checks an interest's pattern and queue group.
pub(crate) fn validate_interest(pattern: &[u8], queue: Option<&[u8]>) -> Result<(), WireError> {
    validate_pattern(pattern)?;
    if let Some(queue) = queue {
        validate_queue_group(queue)?;
    }
    Ok(())
}
