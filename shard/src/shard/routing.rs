//! The routing core: publish, deliver, subscribe, and the mesh traffic they
//! cause. It works on [`RoutedMessage`] and subscription slots only, so a
//! second wire protocol (NATS text) can feed the same functions.
//!
//! Hot path of a publish: one trie walk over the interest table (which shards),
//! for the local shard one trie walk over local subscriptions (which
//! connections), for each other target shard one push of the message (four
//! refcount increments, no copy, no allocation) onto the SPSC queue to it. A
//! delivery encodes the Deliver meta once per message per shard and appends
//! header + meta + payload to each subscriber's write buffer.

use bytes::Bytes;
use flit_wire::{Encoder, Subscribe, STATUS_NO_RESPONDERS};
use smallvec::SmallVec;

use super::Shard;
use crate::connection::ConnectionKey;
use crate::delivery_filter::DeliveryFilter;
use crate::interest::{GroupKey, QueuePicks};
use crate::mesh::{MeshMessage, RoutedMessage};
use crate::subscriptions::InterestChange;

impl Shard {
    /// Sends a message to every shard with matching interest (at most one hop
    /// each), or, for a request nobody may receive, answers "no responders"
    /// to the requester's connection (`origin`) alone: the status goes to
    /// that connection's subscriptions on the reply subject, never to other
    /// subscribers of it, so a reply subject cannot make the router publish
    /// anywhere on a client's behalf.
    pub(super) fn route_message(&mut self, message: RoutedMessage, origin: Option<ConnectionKey>) {
        self.interest.route(message.subject(), &mut self.route);
        // Other nodes (cluster/): plain interest there, and the queue groups
        // no member on this node serves.
        let forwarded = self.config.cluster.is_some() && {
            let local_groups: SmallVec<[GroupKey; 8]> =
                self.route.queue_picks.iter().map(|(_, group)| *group).collect();
            self.forward_to_nodes(&message, &local_groups)
        };
        if self.route.targets == 0 {
            if forwarded {
                return;
            }
            if let (Some(reply), Some(origin)) = (message.reply(), origin) {
                self.metrics.no_responders.add(1);
                let mut status = RoutedMessage::status(reply, STATUS_NO_RESPONDERS);
                status.received_at_nanos = message.received_at_nanos;
                self.deliver_to_requester(origin, &status);
            }
            return;
        }
        self.send_to_route_targets(&message);
    }

    /// Hands a message to every shard `self.route` targets: delivered here,
    /// or one hop over the mesh, with the queue groups each target serves.
    pub(super) fn send_to_route_targets(&mut self, message: &RoutedMessage) {
        let mut targets = self.route.targets;
        while targets != 0 {
            let target = targets.trailing_zeros() as usize;
            targets &= targets - 1;
            let queue_picks = self.route.picks_for(target);
            if target == self.id {
                self.deliver_local(message, &queue_picks);
            } else {
                let message = MeshMessage::Publish { message: message.clone(), queue_picks };
                self.send_to_shard(target, message);
            }
        }
    }

    /// Delivers to this shard's matching subscriptions: every plain one, and
    /// one member of each queue group in `queue_picks`.
    pub(super) fn deliver_local(&mut self, message: &RoutedMessage, queue_picks: &QueuePicks) {
        let mut matched = std::mem::take(&mut self.matched_slots);
        matched.clear();
        self.subscriptions.trie.visit_matches(message.subject(), &mut |slot: &mut u32| matched.push(*slot));
        if matched.is_empty() {
            self.matched_slots = matched;
            return;
        }
        // Each protocol's encoding of the message is made on its first
        // subscriber here (deliver_to), then reused for the rest.
        self.delivery_meta_current = false;
        self.nats_headers.reset();
        self.queue_candidates.clear();
        for slot in &matched {
            let Some(subscription) = self.subscriptions.get(*slot) else { continue };
            if let Some(filter) = &subscription.delivery_filter {
                // Its identity may not read this subject (denied, or another
                // client's inbox matched by a wildcard).
                if !filter.permits(message.subject()) {
                    continue;
                }
            }
            if subscription.queue.is_none() {
                self.deliver_to(*slot, message);
            } else if queue_picks.contains(&subscription.group_key) {
                self.queue_candidates.push((subscription.group_key, *slot));
            }
        }
        self.deliver_to_queue_members(queue_picks, message);
        self.matched_slots = matched;
        for slot in std::mem::take(&mut self.expired_slots) {
            self.remove_subscription(slot);
        }
    }

    /// Delivers a status message to `origin`'s own subscriptions that match
    /// its subject (and whose filters permit it).
    fn deliver_to_requester(&mut self, origin: ConnectionKey, status: &RoutedMessage) {
        let mut matched = std::mem::take(&mut self.matched_slots);
        matched.clear();
        self.subscriptions.trie.visit_matches(status.subject(), &mut |slot: &mut u32| matched.push(*slot));
        matched.retain(|slot| {
            self.subscriptions.get(*slot).is_some_and(|subscription| {
                subscription.connection == origin
                    && subscription.delivery_filter.as_ref().is_none_or(|filter| filter.permits(status.subject()))
            })
        });
        self.delivery_meta_current = false;
        self.nats_headers.reset();
        if !matched.is_empty() {
            for slot in &matched {
                self.deliver_to(*slot, status);
            }
        }
        self.matched_slots = matched;
        for slot in std::mem::take(&mut self.expired_slots) {
            self.remove_subscription(slot);
        }
    }

    /// One member per picked group, rotating through the local members.
    fn deliver_to_queue_members(&mut self, queue_picks: &QueuePicks, message: &RoutedMessage) {
        if queue_picks.is_empty() {
            return;
        }
        let mut candidates = std::mem::take(&mut self.queue_candidates);
        // A delivery earlier in this message may have evicted a member's
        // connection (and freed its subscriptions): pick among the living.
        candidates.retain(|(_, slot)| self.subscriptions.get(*slot).is_some());
        candidates.sort_unstable();
        for group in queue_picks {
            // Candidates are sorted, so a group's members are one run.
            let start = candidates.partition_point(|(key, _)| key < group);
            let members = candidates[start..].iter().take_while(|(key, _)| key == group).count();
            if members == 0 {
                // The member that made this shard a target left meanwhile.
                self.metrics.queue_group_misses.add(1);
                continue;
            }
            let cursor = self.group_cursors.entry(*group).or_insert(0);
            let (_, slot) = candidates[start + *cursor as usize % members];
            *cursor = cursor.wrapping_add(1);
            self.deliver_to(slot, message);
        }
        candidates.clear();
        self.queue_candidates = candidates;
    }

    /// Appends one Deliver frame (a NATS subscriber: MSG or HMSG) to the
    /// subscriber's write buffer.
    fn deliver_to(&mut self, slot: u32, message: &RoutedMessage) {
        let Some(subscription) = self.subscriptions.get_mut(slot) else { return };
        let key = subscription.connection;
        let subscription_id = subscription.subscription_id;
        let Some(connection) = self.connections.get_mut(key) else { return };
        if let Some(session) = connection.nats.as_deref() {
            if !super::nats::nats_takes(session, message, crate::mesh::origin_of(self.id, key)) {
                return;
            }
        }
        subscription.delivered += 1;
        if let Some(remaining) = subscription.remaining.as_mut() {
            *remaining -= 1;
            if *remaining == 0 {
                self.expired_slots.push(slot);
            }
        }
        if let Some(session) = connection.nats.as_deref() {
            let headers = &mut self.nats_headers;
            super::nats::write_nats_delivery(&mut connection.write_buffer, session, subscription_id, message, headers);
        } else {
            if !self.delivery_meta_current {
                // Subjects were validated on the way in, so encoding cannot
                // fail; should it, the message is dropped, not the shard.
                if self.delivery_meta.prepare(&mut self.encoder, message).is_err() {
                    return;
                }
                self.delivery_meta_current = true;
            }
            let meta = self.delivery_meta.meta();
            let payload = message.payload();
            if payload.len() >= self.config.splice_payload_bytes_min
                && connection.sends_on_ring
                && connection.tls.is_none()
                && connection.spliced.len() + 2 <= crate::connection::SPLICED_PIECES_MAX
            {
                // Large: queued by reference, not copied (outgoing.rs); the
                // frame's head ends the write buffer's piece, the payload
                // (the frame's last part) is the next piece.
                if Encoder::deliver_head(&mut connection.write_buffer, subscription_id, meta, payload.len()).is_ok() {
                    connection.spliced.push(connection.write_buffer.split().freeze());
                    connection.spliced.push(message.payload_bytes());
                }
            } else {
                let _ = Encoder::deliver(&mut connection.write_buffer, subscription_id, meta, payload);
            }
        }
        if connection.deliveries_pending == 0 {
            connection.oldest_delivery_received_at_nanos = message.received_at_nanos;
        }
        connection.deliveries_pending = connection.deliveries_pending.saturating_add(1);
        let message_bytes = message.payload().len() + message.headers().map_or(0, <[u8]>::len);
        connection.activity.count_sent(message_bytes, message.received_at_nanos);
        self.metrics.deliveries.add(1);
        self.mark_dirty(key);
        self.enforce_pending_limit(key);
    }

    /// Adds a subscription (with its delivery filter, if its identity needs
    /// one); returns its slot.
    pub(super) fn add_subscription(
        &mut self,
        key: ConnectionKey,
        subscribe: Subscribe,
        delivery_filter: Option<DeliveryFilter>,
    ) -> u32 {
        // Own copies: the decoded pattern and queue are slices of the read
        // buffer, and a subscription lives long; keeping the slices would pin
        // that whole buffer (up to a megabyte-sized frame) for as long.
        let pattern = Bytes::copy_from_slice(&subscribe.pattern);
        let queue = subscribe.queue.as_deref().map(Bytes::copy_from_slice);
        let subscription_id = subscribe.subscription_id;
        let (slot, change) =
            self.subscriptions.add(key, subscription_id, pattern.clone(), queue.clone(), delivery_filter.clone());
        self.metrics.subscriptions.set(self.subscriptions.len() as u64);
        if let Some(connection) = self.connections.get_mut(key) {
            connection.subscriptions.insert(subscription_id, slot);
            connection.count_named_inbox(&pattern, true);
        }
        if change == InterestChange::Gained {
            self.broadcast_interest_change(pattern, queue, delivery_filter, true);
        }
        slot
    }

    pub(super) fn remove_subscription(&mut self, slot: u32) {
        let Some((subscription, change)) = self.subscriptions.remove(slot) else { return };
        self.metrics.subscriptions.set(self.subscriptions.len() as u64);
        if let Some(connection) = self.connections.get_mut(subscription.connection) {
            connection.subscriptions.remove(&subscription.subscription_id);
            connection.count_named_inbox(&subscription.pattern, false);
            if let Some(session) = connection.nats.as_mut() {
                session.forget_sid(subscription.subscription_id);
            }
        }
        if change == InterestChange::Lost {
            // The group's last member on this shard left: its rotation cursor
            // goes too, so cursors follow the live groups, not every group
            // ever seen. (Other filters' members of the same group share
            // the cursor; losing it only restarts the rotation.)
            if subscription.queue.is_some() {
                self.group_cursors.remove(&subscription.group_key);
            }
            self.broadcast_interest_change(
                subscription.pattern,
                subscription.queue,
                subscription.delivery_filter,
                false,
            );
        }
    }

    /// Moves a subscription to a new delivery filter (after a reload): the
    /// interest under the new filter is announced before the old one is
    /// withdrawn, so no shard sees a moment without it.
    pub(super) fn refilter_subscription(&mut self, slot: u32, delivery_filter: Option<DeliveryFilter>) {
        let Some((old_filter, gained, lost)) = self.subscriptions.refilter(slot, delivery_filter.clone()) else {
            return;
        };
        let Some(subscription) = self.subscriptions.get(slot) else { return };
        let (pattern, queue) = (subscription.pattern.clone(), subscription.queue.clone());
        if gained == InterestChange::Gained {
            self.broadcast_interest_change(pattern.clone(), queue.clone(), delivery_filter, true);
        }
        if lost == InterestChange::Lost {
            self.broadcast_interest_change(pattern, queue, old_filter, false);
        }
    }

    /// Applies a change of this shard's interest locally and tells every
    /// other shard.
    fn broadcast_interest_change(
        &mut self,
        pattern: Bytes,
        queue: Option<Bytes>,
        filter: Option<DeliveryFilter>,
        gained: bool,
    ) {
        if gained {
            self.interest.add(&pattern, queue.as_ref(), filter.as_ref(), self.id);
            self.broadcast_interest(|| MeshMessage::InterestAdd {
                pattern: pattern.clone(),
                queue: queue.clone(),
                filter: filter.clone(),
            });
        } else {
            self.interest.remove(&pattern, queue.as_ref(), filter.as_ref(), self.id);
            self.broadcast_interest(|| MeshMessage::InterestRemove {
                pattern: pattern.clone(),
                queue: queue.clone(),
                filter: filter.clone(),
            });
        }
        // After the local broadcast, so its barrier names this change's epoch.
        self.announce_interest(&pattern, queue.as_deref(), gained);
    }

    pub(super) fn remove_connection_subscriptions(&mut self, key: ConnectionKey) {
        let Some(connection) = self.connections.get_mut(key) else { return };
        let slots: Vec<u32> = connection.subscriptions.drain().map(|(_, slot)| slot).collect();
        for slot in slots {
            self.remove_subscription(slot);
        }
    }

    /// Sends an interest change to every other shard; each acknowledges it
    /// (`InterestAck`), which is what the barrier counts. The epoch grows
    /// even on a single shard: lanes' barriers name it.
    pub(super) fn broadcast_interest(&mut self, make: impl Fn() -> MeshMessage) {
        self.interest_epoch += 1;
        if self.shard_count == 1 {
            return;
        }
        for target in 0..self.shard_count {
            if target != self.id {
                self.send_to_shard(target, make());
            }
        }
    }

    /// Queues a message for another shard, preserving order: once anything
    /// waits in the outbox, later messages wait behind it.
    pub(super) fn send_to_shard(&mut self, target: usize, message: MeshMessage) {
        if self.known_dead_shards & (1 << target) != 0 {
            // Nobody will take it: at-most-once, counted.
            self.metrics.mesh_messages_to_dead_shards.add(1);
            return;
        }
        self.metrics.mesh_messages_sent.add(1);
        self.targets_to_wake |= 1 << target;
        if !self.outboxes[target].is_empty() {
            self.outboxes[target].push_back(message);
            return;
        }
        let producer = self.mesh.outbound[target].as_mut().expect("a queue to every other shard");
        if let Err(rtrb::PushError::Full(message)) = producer.push(message) {
            self.metrics.mesh_queue_full_events.add(1);
            self.outboxes[target].push_back(message);
        }
    }

    /// Moves outboxes into the mesh as room allows; wakes targets.
    pub(super) fn flush_outboxes(&mut self) {
        for target in 0..self.shard_count {
            let outbox = &mut self.outboxes[target];
            if outbox.is_empty() {
                continue;
            }
            let producer = self.mesh.outbound[target].as_mut().expect("a queue to every other shard");
            while let Some(message) = outbox.pop_front() {
                if let Err(rtrb::PushError::Full(message)) = producer.push(message) {
                    outbox.push_front(message);
                    break;
                }
            }
        }
        let mut targets = std::mem::take(&mut self.targets_to_wake);
        while targets != 0 {
            let target = targets.trailing_zeros() as usize;
            targets &= targets - 1;
            self.shared.wakers[target].wake_if_parked();
        }
        // A target with a non-empty outbox must be woken again next pass.
        for target in 0..self.shard_count {
            if !self.outboxes[target].is_empty() {
                self.targets_to_wake |= 1 << target;
            }
        }
    }

    /// Handles what other shards sent; true if anything came.
    pub(super) fn drain_mesh(&mut self) -> bool {
        let mut did_work = false;
        for source in 0..self.shard_count {
            for _ in 0..super::MESH_MESSAGES_PER_PASS_MAX {
                let Some(consumer) = self.mesh.inbound[source].as_mut() else { break };
                let Ok(message) = consumer.pop() else { break };
                did_work = true;
                self.metrics.mesh_messages_received.add(1);
                self.handle_mesh_message(source, message);
            }
        }
        did_work
    }

    fn handle_mesh_message(&mut self, source: usize, message: MeshMessage) {
        match message {
            MeshMessage::Publish { message, queue_picks } => self.deliver_local(&message, &queue_picks),
            MeshMessage::InterestAdd { pattern, queue, filter } => {
                self.interest.add(&pattern, queue.as_ref(), filter.as_ref(), source);
                self.send_to_shard(source, MeshMessage::InterestAck);
            }
            MeshMessage::InterestRemove { pattern, queue, filter } => {
                self.interest.remove(&pattern, queue.as_ref(), filter.as_ref(), source);
                self.send_to_shard(source, MeshMessage::InterestAck);
            }
            MeshMessage::InterestAck => {
                self.acknowledged_epochs[source] = self.acknowledged_epochs[source].saturating_add(1);
                if !self.barrier_waiters.is_empty() {
                    self.release_barrier_waiters();
                }
            }
            MeshMessage::Append { stream, message, reply_to } => self.append_captured(stream, &message, reply_to),
            MeshMessage::Frames { connection, frames } => self.write_frames(connection, &frames),
            MeshMessage::StreamCommand(command) => {
                let (stream, command, reply_to) = *command;
                self.run_owner_command(stream, command, reply_to);
            }
            MeshMessage::RemoteInterest { node, pattern, queue, added } => {
                self.remote_interest.apply(usize::from(node), &pattern, queue.as_deref(), added);
                self.send_to_shard(source, MeshMessage::InterestAck);
            }
            MeshMessage::RemoteCapture { node, pattern, added } => {
                self.remote_captures.apply(usize::from(node), &pattern, None, added)
            }
            MeshMessage::PeerAddress(address) => self.learn_peer_address(address, false),
        }
    }
}
