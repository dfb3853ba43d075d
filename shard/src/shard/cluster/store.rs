//! Durable publishes across nodes (issue 13: placement and forwarding; the
//! replication of a stream is the next step, through openraft).
//!
//! Placement: a stream lives on the node where it was created (its
//! definition file and its log are there, on one owner shard as on a single
//! host). Each shard announces on its lanes the patterns its node's streams
//! capture (RouteCapture, in full when a lane comes up, then as the stream
//! directory changes); the accepting node counts them per node like
//! interest, so every shard knows which nodes capture a subject.
//!
//! Forwarding: a publish that a remote stream captures is forwarded to that
//! node (once, together with its subscribers' copy); the node's streams
//! capture what arrives on its routes. A publish that asked for an
//! acknowledgement and that no local stream captures becomes a *store
//! request*: the RouteMessage carries an id, the node answers RouteStoreAck
//! on the same lane, and this shard turns it into the client's PublishAck.
//!
//! Invariants: at most `ROUTE_STORE_REQUESTS_MAX` store requests wait per
//! shard (more are refused `busy`); every waiting request is answered
//! exactly once: by its RouteStoreAck, or `unavailable` when its lane closes
//! first (the message may or may not have been stored: the client retries
//! with a message id and the stream's deduplication settles it).

use bytes::Bytes;

use super::super::Shard;
use crate::connection::ConnectionKey;
use crate::mesh::{MeshMessage, RoutedMessage};
use crate::streams::owner::{codes, PublishOutcome};
use crate::streams::ReplyTo;

/// Most store requests one shard may have waiting for other nodes.
pub const ROUTE_STORE_REQUESTS_MAX: usize = 65_536;

/// A store request waiting for its node's answer.
#[derive(Debug)]
pub(crate) struct PendingStore {
    pub reply_to: ReplyTo,
    pub node: usize,
}

impl Shard {
    /// The patterns this node's streams capture, as this shard announces
    /// them (one entry per stream subject).
    fn capture_patterns(&self) -> Vec<Bytes> {
        self.stream_capture
            .entries()
            .iter()
            .flat_map(|entry| entry.definition.subjects.iter().map(|subject| Bytes::from(subject.clone())))
            .collect()
    }

    /// A lane this shard dialed came up: every pattern this node captures.
    pub(super) fn announce_all_captures(&mut self, key: ConnectionKey) {
        let Some(connection) = self.connections.get_mut(key) else { return };
        for pattern in &self.announced_captures {
            let _ = self.encoder.route_capture(&mut connection.write_buffer, true, pattern);
        }
        self.mark_dirty(key);
    }

    /// The stream directory changed (`sync_streams`): the patterns gained
    /// and lost go to every lane this shard dialed.
    pub(in crate::shard) fn announce_capture_changes(&mut self) {
        if self.config.cluster.is_none() {
            return;
        }
        let now = self.capture_patterns();
        let before = std::mem::replace(&mut self.announced_captures, now.clone());
        let lost: Vec<&Bytes> = before.iter().filter(|pattern| !now.contains(pattern)).collect();
        let gained: Vec<&Bytes> = now.iter().filter(|pattern| !before.contains(pattern)).collect();
        if lost.is_empty() && gained.is_empty() {
            return;
        }
        for node in 0..self.lanes_by_node.len() {
            let Some(key) = self.lanes_by_node[node] else { continue };
            let Some(connection) = self.connections.get_mut(key) else { continue };
            for pattern in &lost {
                let _ = self.encoder.route_capture(&mut connection.write_buffer, false, pattern);
            }
            for pattern in &gained {
                let _ = self.encoder.route_capture(&mut connection.write_buffer, true, pattern);
            }
            self.mark_dirty(key);
        }
    }

    /// A peer's capture, on a lane this shard accepted: counted on the lane
    /// (withdrawn with it) and applied on every shard.
    pub(super) fn on_remote_capture(&mut self, key: ConnectionKey, capture: flit_wire::route::RouteInterest) {
        let Some(lane) = self.connections.get_mut(key).and_then(|connection| connection.route.as_mut()) else {
            return;
        };
        let Some((_, node)) = lane.peer else { return };
        if capture.add {
            *lane.captured.entry(capture.pattern.clone()).or_insert(0) += 1;
        } else {
            match lane.captured.get_mut(&capture.pattern) {
                Some(count) if *count > 1 => *count -= 1,
                Some(_) => {
                    lane.captured.remove(&capture.pattern);
                }
                None => return,
            }
        }
        self.apply_remote_capture(node, capture.pattern, capture.add);
    }

    /// Everything a closed lane's peer captured is withdrawn.
    pub(super) fn withdraw_captured(&mut self, lane: &crate::cluster::LaneSession) {
        let Some((_, node)) = lane.peer else { return };
        for (pattern, count) in &lane.captured {
            for _ in 0..*count {
                self.apply_remote_capture(node, pattern.clone(), false);
            }
        }
    }

    fn apply_remote_capture(&mut self, node: usize, pattern: Bytes, added: bool) {
        self.remote_captures.apply(node, &pattern, None, added);
        for target in 0..self.shard_count {
            if target != self.id {
                let message = MeshMessage::RemoteCapture { node: node as u8, pattern: pattern.clone(), added };
                self.send_to_shard(target, message);
            }
        }
    }

    /// The nodes whose streams capture `subject` (0: none).
    pub(in crate::shard) fn capturing_nodes(&mut self, subject: &[u8]) -> crate::cluster::NodeMask {
        if self.remote_captures.is_empty() {
            return 0;
        }
        let mut route = std::mem::take(&mut self.remote_capture_route);
        self.remote_captures.route(subject, &mut route);
        let nodes = route.nodes;
        self.remote_capture_route = route;
        nodes
    }

    /// A publish that asked for an acknowledgement and that no stream on
    /// this node captures: a store request to the node whose stream does
    /// (sent with the message by `forward_to_nodes`), or an answer now when
    /// that node is unreachable or too many requests wait. False when no
    /// node captures the subject.
    pub(in crate::shard) fn request_remote_store(&mut self, message: &RoutedMessage, reply_to: ReplyTo) -> bool {
        let nodes = self.capturing_nodes(message.subject());
        if nodes == 0 {
            return false;
        }
        // Stream subjects do not overlap, so one node captures it (the
        // lowest index if an operator made two streams overlap on two nodes).
        let node = nodes.trailing_zeros() as usize;
        let refusal = if self.lanes_by_node[node].is_none() {
            Some((codes::UNAVAILABLE, "the node whose stream captures this subject is unreachable"))
        } else if self.store_requests.len() >= ROUTE_STORE_REQUESTS_MAX {
            Some((codes::BUSY, "too many durable publishes waiting for other nodes (ROUTE_STORE_REQUESTS_MAX)"))
        } else {
            None
        };
        if let Some((code, text)) = refusal {
            self.stream_outcomes.push(refused(reply_to, code, text.to_string()));
            return true;
        }
        self.next_store_request = self.next_store_request.wrapping_add(1).max(1);
        let request = self.next_store_request;
        self.store_requests.insert(request, PendingStore { reply_to, node });
        self.outgoing_store = Some((node, request));
        true
    }

    /// A node answered one of this shard's store requests.
    pub(super) fn on_route_store_ack(&mut self, key: ConnectionKey, ack: flit_wire::PublishAck) {
        let Some(pending) = self.store_requests.get(&ack.ack_id) else { return };
        if self.lanes_by_node[pending.node] != Some(key) {
            return; // not this lane's request: ignored
        }
        let Some(pending) = self.store_requests.remove(&ack.ack_id) else { return };
        self.stream_outcomes.push(PublishOutcome {
            reply_to: pending.reply_to,
            stream: std::sync::Arc::from(ack.stream.as_str()),
            sequence: ack.sequence,
            duplicate: ack.duplicate,
            code: ack.code,
            message: ack.message,
        });
    }

    /// The lane to `node` closed: its waiting store requests are answered
    /// `unavailable` (stored or not is unknown; a retry with the same
    /// message id is deduplicated by the stream).
    pub(super) fn fail_store_requests(&mut self, node: usize) {
        let failed: Vec<u64> =
            self.store_requests.iter().filter(|(_, pending)| pending.node == node).map(|(id, _)| *id).collect();
        for id in failed {
            if let Some(pending) = self.store_requests.remove(&id) {
                let text = "the route to the stream's node closed before it answered; the message may or may not be \
                            stored (retry with the same message id)";
                self.stream_outcomes.push(refused(pending.reply_to, codes::UNAVAILABLE, text.to_string()));
            }
        }
    }

    /// A store request whose message was not sent (its lane down or full):
    /// answered `unavailable` now; 0 is no request.
    pub(super) fn fail_store_request(&mut self, request: u64, text: &str) {
        if let Some(pending) = self.store_requests.remove(&request) {
            self.stream_outcomes.push(refused(pending.reply_to, codes::UNAVAILABLE, text.to_string()));
        }
    }

    /// A PublishAck frame for a lane (an answer to a store request that a
    /// stream on this node produced): written as a RouteStoreAck.
    pub(in crate::shard) fn store_ack_to_lane(&mut self, key: ConnectionKey, frames: &[u8]) {
        let frame = Bytes::copy_from_slice(frames);
        let Ok(flit_wire::stream::StreamFrame::PublishAck(ack)) =
            flit_wire::stream::decode_stream(frame, &flit_wire::Limits::default())
        else {
            return;
        };
        let Some(connection) = self.connections.get_mut(key) else { return };
        if self.encoder.route_store_ack(&mut connection.write_buffer, &ack).is_ok() {
            self.mark_dirty(key);
        }
    }
}

fn refused(reply_to: ReplyTo, code: u16, message: String) -> PublishOutcome {
    PublishOutcome { reply_to, stream: std::sync::Arc::from(""), sequence: 0, duplicate: false, code, message }
}
