//! Decoding the route ops' metas into the types of [`super::types`].
//!
//! Each meta is verified by the flatbuffers verifier with the same options as
//! every client op (depth, table count, apparent size), then read and checked
//! with the rules of [`super::types`]. List lengths are compared with their
//! limits before anything is collected, so a meta can never make this code
//! allocate more than those limits allow.

use bytes::Bytes;
use flatbuffers::{ForwardsUOffset, Vector};

use super::types::{
    check_queue_pick_count, check_url, check_url_count, validate_interest, RouteAuth, RouteHello, RouteInterest,
    RouteMessage,
};
use super::{RouteFrame, RouteHeader, RouteOp, ROUTE_MAC_BYTES, ROUTE_NONCE_BYTES};
use crate::codec::{invalid, range_in, sub_bytes, verifier_options, verify_headers, Limits};
use crate::error::WireError;
use crate::frame::FRAME_HEADER_BYTES;
use crate::schema;
use crate::subject::validate_publish_subject;

// `fixed_bytes` names the size in its error.
const _: () = assert!(ROUTE_MAC_BYTES == 32 && ROUTE_NONCE_BYTES == 32);

/// Decodes the meta (and payload) of one route frame whose header passed
/// `parse_route_header` and whose length matches it.
pub(crate) fn decode_route_op(header: &RouteHeader, frame: Bytes, limits: &Limits) -> Result<RouteFrame, WireError> {
    debug_assert_eq!(frame.len(), header.frame_len());
    let meta_end = FRAME_HEADER_BYTES + header.meta_len as usize;
    let meta = &frame[FRAME_HEADER_BYTES..meta_end];
    let options = verifier_options();
    let decoded = match header.op {
        RouteOp::Ping => RouteFrame::Ping(header.tag),
        RouteOp::Pong => RouteFrame::Pong(header.tag),
        RouteOp::Barrier => RouteFrame::Barrier(header.tag),
        RouteOp::BarrierAck => RouteFrame::BarrierAck(header.tag),
        RouteOp::StoreAck => RouteFrame::StoreAck(crate::stream::decode::publish_ack(header.tag, meta)?),
        RouteOp::Hello => {
            let hello = flatbuffers::root_with_opts::<schema::RouteHello>(&options, meta)
                .map_err(|error| invalid("RouteHello", error))?;
            RouteFrame::Hello(route_hello(hello)?)
        }
        RouteOp::Auth => {
            let auth = flatbuffers::root_with_opts::<schema::RouteAuth>(&options, meta)
                .map_err(|error| invalid("RouteAuth", error))?;
            let mac = fixed_bytes::<ROUTE_MAC_BYTES>(auth.mac(), "RouteAuth", "mac")?;
            RouteFrame::Auth(RouteAuth { mac })
        }
        RouteOp::Interest | RouteOp::Capture => {
            let interest = flatbuffers::root_with_opts::<schema::RouteInterest>(&options, meta)
                .map_err(|error| invalid("RouteInterest", error))?;
            let pattern = sub_bytes(&frame, interest.pattern());
            let queue = interest.queue().map(|queue| sub_bytes(&frame, queue));
            validate_interest(&pattern, queue.as_deref())?;
            let interest = RouteInterest { add: interest.add(), pattern, queue };
            if header.op == RouteOp::Interest {
                RouteFrame::Interest(interest)
            } else if interest.queue.is_some() {
                return Err(WireError::InvalidField {
                    table: "RouteInterest",
                    field: "queue",
                    reason: "a RouteCapture names no queue group",
                });
            } else {
                RouteFrame::Capture(interest)
            }
        }
        RouteOp::Message => {
            let payload_bytes = frame.len() - meta_end;
            if payload_bytes > limits.payload_bytes_max {
                return Err(WireError::PayloadTooLarge {
                    payload_bytes: payload_bytes as u64,
                    limit_bytes: limits.payload_bytes_max as u64,
                });
            }
            let message = flatbuffers::root_with_opts::<schema::RouteMessage>(&options, meta)
                .map_err(|error| invalid("RouteMessage", error))?;
            let subject = message.subject().as_bytes();
            validate_publish_subject(subject)?;
            let reply = message.reply().map(str::as_bytes);
            if let Some(reply) = reply {
                validate_publish_subject(reply)?;
            }
            let headers = message.headers().map(|vector| vector.bytes());
            if let Some(block) = headers {
                verify_headers(block)?;
            }
            let picks = message.queue_picks();
            check_queue_pick_count(picks.map_or(0, |picks| picks.len()))?;
            let queue_picks = picks.map(|picks| picks.iter().collect()).unwrap_or_default();
            let subject = range_in(&frame, subject);
            let reply = reply.map(|reply| range_in(&frame, reply));
            let headers = headers.map(|block| range_in(&frame, block));
            let payload = meta_end..frame.len();
            let store_request = header.tag;
            RouteFrame::Message(RouteMessage { frame, subject, reply, headers, payload, queue_picks, store_request })
        }
    };
    Ok(decoded)
}

fn route_hello(hello: schema::RouteHello<'_>) -> Result<RouteHello, WireError> {
    let decoded = RouteHello {
        version_min: hello.version_min(),
        version_max: hello.version_max(),
        cluster_name: hello.cluster_name().to_owned(),
        node_id: hello.node_id(),
        generation: hello.generation(),
        shard_count: hello.shard_count(),
        lane_shard: hello.lane_shard(),
        nonce: fixed_bytes::<ROUTE_NONCE_BYTES>(hello.nonce(), "RouteHello", "nonce")?,
        route_address: hello.route_address().unwrap_or_default().to_owned(),
        client_urls: urls("client_urls", hello.client_urls())?,
        nats_urls: urls("nats_urls", hello.nats_urls())?,
    };
    // The URL lists were checked while collected; this checks the rest.
    decoded.validate()?;
    Ok(decoded)
}

/// A URL list, measured before it is collected.
fn urls(field: &'static str, list: Option<Vector<'_, ForwardsUOffset<&str>>>) -> Result<Vec<String>, WireError> {
    let Some(list) = list else { return Ok(Vec::new()) };
    check_url_count(field, list.len())?;
    list.iter()
        .map(|url| {
            check_url(field, url)?;
            Ok(url.to_owned())
        })
        .collect()
}

fn fixed_bytes<const N: usize>(
    vector: Vector<'_, u8>,
    table: &'static str,
    field: &'static str,
) -> Result<[u8; N], WireError> {
    <[u8; N]>::try_from(vector.bytes()).map_err(|_| WireError::InvalidField {
        table,
        field,
        reason: "not exactly 32 bytes",
    })
}
