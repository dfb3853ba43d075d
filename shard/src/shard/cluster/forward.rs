//! What lanes carry: interest announcements (this shard's own, on its own
//! lanes; what peers announce, counted per node on every shard of this
//! node), and messages, forwarded at most once to each interested node and
//! delivered there locally, never forwarded again.
//!
//! Queue groups: a group with a member on this node is served here (the
//! local interest table already picked one); otherwise one node with members
//! is picked in rotation and only that node delivers, to one member. So each
//! message reaches exactly one member cluster-wide, local members first.

use bytes::Bytes;
use smallvec::SmallVec;

use super::super::Shard;
use crate::cluster::remote_interest::NodeMask;
use crate::cluster::{LaneSession, ROUTE_PENDING_BYTES_MAX};
use crate::connection::ConnectionKey;
use crate::interest::GroupKey;
use crate::mesh::{MeshMessage, RoutedMessage};

impl Shard {
    /// A lane this shard dialed came up: everything this shard has interest
    /// in goes to the peer (its full state of this shard).
    pub(super) fn announce_all_interest(&mut self, key: ConnectionKey) {
        let pairs: Vec<(Bytes, Option<Bytes>)> =
            self.subscriptions.interest_pairs().map(|(pattern, queue)| (pattern.clone(), queue.cloned())).collect();
        let Some(connection) = self.connections.get_mut(key) else { return };
        for (pattern, queue) in &pairs {
            let _ = self.encoder.route_interest(&mut connection.write_buffer, true, pattern, queue.as_deref());
        }
        self.mark_dirty(key);
    }

    /// This shard gained or lost interest in (pattern, queue): every lane it
    /// dialed hears of it, followed by a barrier for the epoch of the change
    /// (see `crate::cluster::barrier`).
    pub(in crate::shard) fn announce_interest(&mut self, pattern: &[u8], queue: Option<&[u8]>, gained: bool) {
        if self.config.cluster.is_none() {
            return;
        }
        let epoch = self.interest_epoch;
        for node in 0..self.lanes_by_node.len() {
            let Some(key) = self.lanes_by_node[node] else { continue };
            if let Some(connection) = self.connections.get_mut(key) {
                let _ = self.encoder.route_interest(&mut connection.write_buffer, gained, pattern, queue);
                flit_wire::Encoder::route_barrier(&mut connection.write_buffer, epoch);
                self.route_barriers.sent(node, epoch);
                self.mark_dirty(key);
            }
        }
    }

    /// A peer's barrier: answered once every shard of this node applied what
    /// the lane carried before it (the local barrier, as for a client Pong).
    /// Acknowledgements are cumulative, so a barrier that finds the lane's
    /// previous one still waiting takes its place (a burst of subscriptions
    /// keeps one waiting answer per lane, never a queue of them).
    pub(super) fn on_route_barrier(&mut self, key: ConnectionKey, epoch: u64) {
        use crate::connection::DeferredReply;
        let epoch_needed = self.interest_epoch;
        if let Some(connection) = self.connections.get_mut(key) {
            if let Some(last) = connection.deferred_replies.back_mut() {
                if matches!(last.1, DeferredReply::RouteBarrierAck(_)) {
                    *last = (epoch_needed, DeferredReply::RouteBarrierAck(epoch));
                    return;
                }
            }
        }
        self.reply(key, DeferredReply::RouteBarrierAck(epoch), true);
    }

    /// A node acknowledged this shard's barrier: replies waiting for it may go.
    pub(super) fn on_route_barrier_ack(&mut self, key: ConnectionKey, epoch: u64) {
        let peer = self.connections.get(key).and_then(|c| c.route.as_ref()).and_then(|lane| lane.peer);
        if let Some((_, node)) = peer {
            if self.lanes_by_node[node] == Some(key) {
                self.route_barriers.acknowledged(node, epoch);
                self.release_barrier_waiters();
            }
        }
    }

    /// A peer announced (or withdrew) interest on a lane this shard accepted:
    /// counted on the lane (withdrawn with it), and applied on every shard.
    pub(super) fn on_remote_interest(&mut self, key: ConnectionKey, interest: flit_wire::route::RouteInterest) {
        let Some(connection) = self.connections.get_mut(key) else { return };
        let Some(lane) = connection.route.as_mut() else { return };
        let Some((_, node)) = lane.peer else { return };
        let pair = (interest.pattern.clone(), interest.queue.clone());
        if interest.add {
            *lane.announced.entry(pair).or_insert(0) += 1;
        } else {
            match lane.announced.get_mut(&pair) {
                Some(count) if *count > 1 => *count -= 1,
                Some(_) => {
                    lane.announced.remove(&pair);
                }
                // Never announced on this lane: nothing to withdraw.
                None => return,
            }
        }
        self.apply_remote_interest(node, interest.pattern, interest.queue, interest.add);
    }

    /// Everything a closed lane announced is withdrawn, here and on every shard.
    pub(super) fn withdraw_announced(&mut self, lane: &LaneSession) {
        let Some((_, node)) = lane.peer else { return };
        for ((pattern, queue), count) in &lane.announced {
            for _ in 0..*count {
                self.apply_remote_interest(node, pattern.clone(), queue.clone(), false);
            }
        }
    }

    /// Applies a peer's interest here and on every other shard, each of
    /// which acknowledges it like a local interest change (so a
    /// RouteBarrier behind it waits for all of them).
    fn apply_remote_interest(&mut self, node: usize, pattern: Bytes, queue: Option<Bytes>, added: bool) {
        self.remote_interest.apply(node, &pattern, queue.as_deref(), added);
        self.broadcast_interest(|| MeshMessage::RemoteInterest {
            node: node as u8,
            pattern: pattern.clone(),
            queue: queue.clone(),
            added,
        });
    }

    /// After local routing of a message published on this node: which other
    /// nodes get it (plain interest, and queue groups with no member here);
    /// true if any node will. `local_groups` are the groups a local member
    /// serves.
    pub(in crate::shard) fn forward_to_nodes(&mut self, message: &RoutedMessage, local_groups: &[GroupKey]) -> bool {
        if self.remote_interest.is_empty() && self.remote_captures.is_empty() {
            return false;
        }
        let mut remote = std::mem::take(&mut self.remote_route);
        self.remote_interest.route(message.subject(), &mut remote);
        let mut picks: SmallVec<[(usize, GroupKey); 4]> = SmallVec::new();
        // Nodes with subscribers, and nodes whose streams capture it.
        let mut nodes: NodeMask = remote.nodes | self.capturing_nodes(message.subject());
        let store = self.outgoing_store.take();
        for (group, members) in &remote.groups {
            if local_groups.contains(group) {
                continue;
            }
            // Nodes with members whose lane from this shard is up.
            let reachable = members & self.nodes_with_lanes();
            let candidates = if reachable != 0 { reachable } else { *members };
            let count = candidates.count_ones();
            let cursor = self.node_cursors.entry(*group).or_insert(0);
            let nth = *cursor % count;
            *cursor = cursor.wrapping_add(1);
            let node = nth_set_bit(candidates, nth);
            nodes |= 1 << node;
            picks.push((node, *group));
        }
        let forwarded = nodes != 0;
        while nodes != 0 {
            let node = nodes.trailing_zeros() as usize;
            nodes &= nodes - 1;
            let node_picks: SmallVec<[GroupKey; 4]> =
                picks.iter().filter(|(picked, _)| *picked == node).map(|(_, group)| *group).collect();
            let store_request = store.filter(|(store_node, _)| *store_node == node).map_or(0, |(_, id)| id);
            self.send_to_node(node, message, &node_picks, store_request);
        }
        self.remote_route = remote;
        forwarded
    }

    fn nodes_with_lanes(&self) -> NodeMask {
        self.lanes_by_node
            .iter()
            .enumerate()
            .filter(|(_, lane)| lane.is_some())
            .fold(0, |mask, (node, _)| mask | 1 << node)
    }

    /// One RouteMessage on this shard's lane to `node`; dropped and counted
    /// when the lane is down or its queue is full (at most once).
    fn send_to_node(&mut self, node: usize, message: &RoutedMessage, picks: &[GroupKey], store_request: u64) {
        let Some(key) = self.lanes_by_node[node] else {
            self.metrics.route_messages_dropped.add(1);
            self.metrics.route_nodes[node].dropped.add(1);
            return self.fail_store_request(store_request, "the route to the stream's node is down");
        };
        let Some(connection) = self.connections.get_mut(key) else { return };
        if connection.queued_output_bytes() > ROUTE_PENDING_BYTES_MAX {
            self.metrics.route_messages_dropped.add(1);
            self.metrics.route_nodes[node].dropped.add(1);
            return self.fail_store_request(store_request, "the route to the stream's node is full (not stored)");
        }
        let length_before = connection.write_buffer.len();
        let encoded = self.encoder.route_message(
            &mut connection.write_buffer,
            &flit_wire::route::OutgoingRouteMessage {
                subject: message.subject(),
                reply: message.reply(),
                headers: message.headers(),
                payload: message.payload(),
                queue_picks: picks,
                store_request,
            },
        );
        if encoded.is_ok() {
            let counters = &self.metrics.route_nodes[node];
            counters.messages_sent.add(1);
            counters.bytes_sent.add((connection.write_buffer.len() - length_before) as u64);
            self.metrics.route_messages_sent.add(1);
            self.mark_dirty(key);
        }
    }

    /// A message another node forwarded: delivered on this node only (its
    /// shards, its members of the picked groups), never forwarded again;
    /// captured by this node's streams (store.rs).
    pub(super) fn on_route_message(&mut self, key: ConnectionKey, routed: flit_wire::route::RouteMessage) {
        self.metrics.route_messages_received.add(1);
        let peer = self.connections.get(key).and_then(|c| c.route.as_ref()).and_then(|lane| lane.peer);
        if let Some((_, node)) = peer {
            let counters = &self.metrics.route_nodes[node];
            counters.messages_received.add(1);
            counters.bytes_received.add(routed.frame.len() as u64);
        }
        let mut message =
            RoutedMessage::from_parts(routed.frame, routed.subject, routed.reply, routed.headers, routed.payload);
        message.received_at_nanos = self.read_pass_nanos;
        if routed.store_request != 0 || !self.stream_capture.is_empty() {
            self.capture_routed(&message, key, routed.store_request);
        }
        self.interest.route(message.subject(), &mut self.route);
        // Groups another node serves are not this node's to serve.
        let picks = routed.queue_picks;
        self.route.queue_picks.retain(|(_, group)| picks.contains(group));
        self.send_to_route_targets(&message);
    }
}

/// The index of the `n`th set bit of `mask` (n < mask.count_ones()).
fn nth_set_bit(mut mask: NodeMask, n: u32) -> usize {
    for _ in 0..n {
        mask &= mask - 1;
    }
    mask.trailing_zeros() as usize
}

#[cfg(test)]
mod tests {
    use super::nth_set_bit;

    #[test]
    fn nth_set_bit_walks_the_mask_in_order() {
        let mask = 0b1011_0100;
        assert_eq!((0..4).map(|n| nth_set_bit(mask, n)).collect::<Vec<_>>(), vec![2, 4, 5, 7]);
    }
}
