//! What each frame from a client does. Decoding already happened (once, at
//! the edge, in `flit-wire`); here a frame becomes a routing action, and the
//! protocol's state rules are enforced: Hello first and once, only client ops
//! from clients, replies in the order requests came.

use bytes::Bytes;
use flit_wire::{
    Encoder, ErrorCode, Frame, Op, PublishParts, Subscribe, Unsubscribe, Welcome, META_BYTES_MAX, PROTOCOL_VERSION,
};

use std::sync::Arc;

use super::Shard;
use crate::auth::{Identity, Pattern, SubscribeDecision};
use crate::connection::{Connection, ConnectionKey, ConnectionState, DeferredReply};
use crate::delivery_filter::DeliveryFilter;
use crate::mesh::RoutedMessage;

/// Most replies one connection may have waiting behind the interest barrier.
pub const DEFERRED_REPLIES_MAX: usize = 65_536;

/// A frame from a client, decoded. Publishes stay one buffer with ranges
/// (see [`RoutedMessage`]); other frames are decoded into owned parts.
pub(super) enum Incoming {
    Publish(Bytes, PublishParts),
    Other(Frame),
    /// Version 2's stream frames (shard/streams.rs).
    Stream(flit_wire::stream::StreamFrame),
}

impl Shard {
    pub(super) fn handle_frame(&mut self, key: ConnectionKey, incoming: Incoming) {
        let Some(connection) = self.connections.get(key) else { return };
        let state = connection.state;
        let frame = match incoming {
            Incoming::Publish(frame, parts) => match state {
                ConnectionState::Open => return self.on_publish(key, frame, parts),
                ConnectionState::Closing => return,
                ConnectionState::AwaitingHello => {
                    return self.protocol_error(key, ErrorCode::UnexpectedOp, "the first frame must be Hello")
                }
            },
            Incoming::Other(frame) => frame,
            Incoming::Stream(frame) => {
                return match state {
                    ConnectionState::Open => self.on_stream_frame(key, frame),
                    ConnectionState::Closing => {}
                    ConnectionState::AwaitingHello => {
                        self.protocol_error(key, ErrorCode::UnexpectedOp, "the first frame must be Hello")
                    }
                }
            }
        };
        match (state, frame) {
            (ConnectionState::Closing, _) => {}
            (ConnectionState::AwaitingHello, Frame::Hello(hello)) => {
                let certificate = connection.tls.as_deref().and_then(crate::tls::peer_fingerprint);
                match crate::handshake::answer_hello(&hello, &self.identities, certificate.as_ref()) {
                    Ok(identity) => {
                        if let Some(connection) = self.connections.get_mut(key) {
                            connection.client_name = hello.client_name.as_deref().map(Box::from);
                        }
                        let version = flit_wire::negotiate_version(hello.version_min, hello.version_max)
                            .unwrap_or(PROTOCOL_VERSION);
                        self.welcome(key, hello.ack_mode, identity, version)
                    }
                    Err((code, message)) => self.protocol_error(key, code, &message),
                }
            }
            (ConnectionState::AwaitingHello, _) => {
                self.protocol_error(key, ErrorCode::UnexpectedOp, "the first frame must be Hello")
            }
            (ConnectionState::Open, Frame::Subscribe(subscribe)) => self.on_subscribe(key, subscribe),
            (ConnectionState::Open, Frame::Unsubscribe(unsubscribe)) => self.on_unsubscribe(key, unsubscribe),
            (ConnectionState::Open, Frame::Ping) => self.reply(key, DeferredReply::Pong, true),
            // The answer to the server's idle-check Ping; reading it already
            // reset the idle clock.
            (ConnectionState::Open, Frame::Pong) => {}
            // A client that reports an error is done talking.
            (ConnectionState::Open, Frame::Error(_)) => self.begin_close(key, None),
            (ConnectionState::Open, other) => {
                let message = format!("{} is not a client operation here", frame_name(&other));
                self.protocol_error(key, ErrorCode::UnexpectedOp, &message)
            }
        }
    }

    fn welcome(&mut self, key: ConnectionKey, ack_mode: bool, identity: Option<Arc<Identity>>, version: u16) {
        let welcome = Welcome {
            version,
            server_name: self.config.server_name.clone(),
            shard: self.id as u16,
            shards: self.shard_count as u16,
            payload_bytes_max: self.config.payload_bytes_max as u32,
            meta_bytes_max: META_BYTES_MAX as u32,
            pending_bytes_max: self.config.pending_bytes_max as u64,
            subscriptions_max: self.config.subscriptions_per_connection_max as u32,
            // The other nodes, for failover (empty without a cluster).
            cluster_urls: self.shared.peer_urls.client_urls(),
        };
        let Some(connection) = self.connections.get_mut(key) else { return };
        connection.state = ConnectionState::Open;
        connection.ack_mode = ack_mode;
        connection.identity = identity;
        connection.protocol_version = version;
        let _ = self.encoder.welcome(&mut connection.write_buffer, &welcome);
        self.mark_dirty(key);
    }

    fn on_publish(&mut self, key: ConnectionKey, frame: Bytes, parts: PublishParts) {
        // A non-zero tag asks for a stream's acknowledgement (protocol 2).
        let tag = u64::from_le_bytes(frame[8..16].try_into().expect("a frame has a 16-byte header"));
        if tag != 0 && self.connections.get(key).is_some_and(|connection| connection.protocol_version < 2) {
            let message = "a Publish tag (acknowledgement id) needs protocol version 2";
            return self.protocol_error(key, ErrorCode::MalformedFrame, message);
        }
        let size = frame.len() as u64;
        if self.publish_from_client(key, RoutedMessage::from_publish(frame, parts), size, tag).is_ok() {
            self.acknowledge(key, false);
        }
    }

    /// A client's publish, whatever its protocol: permissions, rate limits,
    /// stream capture, routing. `size` is what the rate limit charges (the
    /// bytes the publish took on the wire). Err: refused, and the refusal
    /// already written to the client.
    pub(super) fn publish_from_client(
        &mut self,
        key: ConnectionKey,
        mut message: RoutedMessage,
        size: u64,
        tag: u64,
    ) -> Result<(), ()> {
        // Without identities nobody is restricted: no lookup at all.
        if self.identities.required {
            self.check_publish_permission(key, message.subject(), message.reply())?;
        }
        if !self.admit_by_rate(key, size) {
            return Err(());
        }
        self.metrics.messages_in.add(1);
        if let Some(connection) = self.connections.get_mut(key) {
            let message_bytes = message.payload().len() + message.headers().map_or(0, <[u8]>::len);
            connection.activity.count_received(message_bytes, self.read_pass_nanos);
        }
        message.received_at_nanos = self.read_pass_nanos;
        message.origin = crate::mesh::origin_of(self.id, key);
        if tag != 0 || !self.stream_capture.is_empty() {
            self.capture_publish(&message, key, tag);
        }
        self.route_message(message, Some(key));
        Ok(())
    }

    /// A restricted identity's publish: to a subject it may publish to, with
    /// a reply subject it may publish to itself or its own inbox.
    fn check_publish_permission(&mut self, key: ConnectionKey, subject: &[u8], reply: Option<&[u8]>) -> Result<(), ()> {
        let Some(connection) = self.connections.get_mut(key) else { return Err(()) };
        let Some(identity) = connection.identity.as_ref().filter(|identity| !identity.permissions.publish.is_open())
        else {
            return Ok(());
        };
        if connection.publish_permitted_subject != subject {
            if !identity.permissions.publish.permits(subject) {
                let message = format!("{} may not publish to {}", identity.name, String::from_utf8_lossy(subject));
                let nats = flit_nats::ProtocolError::PublishPermission { subject: subject.to_vec() };
                self.refuse_as(key, ErrorCode::PermissionDenied, &message, 0, Some(nats));
                return Err(());
            }
            // Remembered until the next different subject (or a reload).
            connection.publish_permitted_subject.clear();
            connection.publish_permitted_subject.extend_from_slice(subject);
        }
        // A reply subject is where responders will publish for this
        // client: one it may publish to itself, or its own inbox.
        if let Some(reply) = reply {
            let own_inbox =
                crate::auth::subject_inbox(reply).is_some_and(|inbox| connection.named_inboxes.contains_key(inbox));
            if !own_inbox && !identity.permissions.publish.permits(reply) {
                let message = format!(
                    "{} may not use {} as a reply subject (neither publishable nor its own inbox)",
                    identity.name,
                    String::from_utf8_lossy(reply)
                );
                let nats = flit_nats::ProtocolError::ReplyPermission { reply: reply.to_vec() };
                self.refuse_as(key, ErrorCode::PermissionDenied, &message, 0, Some(nats));
                return Err(());
            }
        }
        Ok(())
    }

    fn on_subscribe(&mut self, key: ConnectionKey, subscribe: Subscribe) {
        match self.subscribe_from_client(key, subscribe) {
            Ok(_) => self.acknowledge(key, true),
            Err(SubscribeRefusal::DuplicateId(message)) => {
                self.protocol_error(key, ErrorCode::DuplicateSubscriptionId, &message)
            }
            Err(SubscribeRefusal::OverLimit(message)) => {
                self.protocol_error(key, ErrorCode::TooManySubscriptions, &message)
            }
            Err(SubscribeRefusal::Denied(message)) => self.refuse(key, ErrorCode::PermissionDenied, &message, 0),
        }
    }

    /// A client's subscription, whatever its protocol: the id must be new,
    /// the limits must allow it, and a restricted identity must be permitted
    /// (with the delivery filter it needs). Ok: its slot.
    pub(super) fn subscribe_from_client(
        &mut self,
        key: ConnectionKey,
        subscribe: Subscribe,
    ) -> Result<u32, SubscribeRefusal> {
        let Some(connection) = self.connections.get(key) else {
            return Err(SubscribeRefusal::OverLimit("connection gone".to_string()));
        };
        if connection.subscriptions.contains_key(&subscribe.subscription_id) {
            let message = format!("subscription id {} is already in use", subscribe.subscription_id);
            return Err(SubscribeRefusal::DuplicateId(message));
        }
        if connection.subscriptions.len() >= self.config.subscriptions_per_connection_max {
            let message =
                format!("at most {} subscriptions per connection", self.config.subscriptions_per_connection_max);
            return Err(SubscribeRefusal::OverLimit(message));
        }
        let mut delivery_filter = None;
        if let Some(identity) =
            connection.identity.as_ref().filter(|identity| !identity.permissions.subscribe.is_open())
        {
            let pattern_text = String::from_utf8_lossy(&subscribe.pattern);
            match subscribe_decision(identity, connection, &subscribe.pattern) {
                Ok(filter) => delivery_filter = filter,
                Err(reason) => {
                    let message = format!("{} may not subscribe to {pattern_text}: {reason}", identity.name);
                    return Err(SubscribeRefusal::Denied(message));
                }
            }
        }
        let identity = connection.identity.as_ref().map(|identity| crate::subscriptions::IdentityLimit {
            name: &identity.name,
            counter: &identity.subscription_bytes,
            bytes_max: self.config.identity_subscription_bytes_max,
        });
        let (pattern, queue, bytes_max) =
            (&subscribe.pattern, subscribe.queue.as_deref(), self.config.subscription_bytes_max);
        if let Err(message) = self.subscriptions.reserve_bytes(key, pattern, queue, bytes_max, identity) {
            return Err(SubscribeRefusal::OverLimit(message));
        }
        Ok(self.add_subscription(key, subscribe, delivery_filter))
    }

    fn on_unsubscribe(&mut self, key: ConnectionKey, unsubscribe: Unsubscribe) {
        let Some(connection) = self.connections.get(key) else { return };
        // An unknown id is not an error: the subscription may have ended by
        // itself (auto-unsubscribe) while this frame was on its way.
        if let Some(slot) = connection.subscriptions.get(&unsubscribe.subscription_id).copied() {
            if unsubscribe.after_messages == 0 {
                self.remove_subscription(slot);
            } else if let Some(subscription) = self.subscriptions.get_mut(slot) {
                subscription.remaining = Some(unsubscribe.after_messages);
            }
        }
        self.acknowledge(key, true);
    }

    /// Refuses one frame with an Error that leaves the connection open (in
    /// ack mode it takes the place of the frame's Ok). It keeps its place
    /// behind replies still waiting for the interest barrier.
    pub(super) fn refuse(&mut self, key: ConnectionKey, code: ErrorCode, message: &str, retry_after_ms: u32) {
        self.refuse_as(key, code, message, retry_after_ms, None);
    }

    /// `refuse`, with the NATS error a NATS client gets (None: the one
    /// `nats_line_for` picks for the code). A NATS refusal goes out at once,
    /// even past replies waiting for the interest barrier (NATS clients take
    /// `-ERR` lines asynchronously anyway).
    pub(super) fn refuse_as(
        &mut self,
        key: ConnectionKey,
        code: ErrorCode,
        message: &str,
        retry_after_ms: u32,
        nats: Option<flit_nats::ProtocolError>,
    ) {
        self.metrics.count_error(code);
        if let Some(suppressed) = self.log_limits.client_errors.admit(std::time::Instant::now()) {
            tracing::info!(shard = self.id, connection = key, code = code.name(), suppressed, "refused: {message}");
        }
        let Some(connection) = self.connections.get_mut(key) else { return };
        if connection.nats.is_some() {
            let line = match nats {
                Some(error) => error.err_line(),
                None => super::nats::nats_line_for(code, message),
            };
            connection.write_buffer.extend_from_slice(line.as_bytes());
        } else if connection.deferred_replies.is_empty() {
            // (NATS refuses with codes a native connection is closed for,
            // e.g. an invalid subject; a native refusal never closes.)
            debug_assert!(!code.closes_connection());
            let _ = self.encoder.error_with_retry(&mut connection.write_buffer, code.as_u16(), message, retry_after_ms);
        } else {
            return self.reply(key, DeferredReply::Refused(code, retry_after_ms), false);
        }
        self.mark_dirty(key);
        self.enforce_pending_limit(key);
    }

    /// In ack mode, one Ok per publish, subscribe and unsubscribe.
    /// Subscribe and unsubscribe may have changed interest: their Ok waits
    /// for the barrier like a Pong does. A publish's Ok only keeps its place
    /// in the queue behind earlier replies.
    fn acknowledge(&mut self, key: ConnectionKey, needs_barrier: bool) {
        if self.connections.get(key).is_some_and(|connection| connection.ack_mode) {
            self.reply(key, DeferredReply::Ok, needs_barrier);
        }
    }

    /// Sends Pong or Ok now, or queues it behind the interest barrier: the
    /// reply goes out only once every shard has applied every interest change
    /// this shard broadcast before it, and every node this shard announced
    /// them to has acknowledged them on all its shards (a RouteBarrierAck),
    /// so a client that saw the reply knows its subscriptions are visible to
    /// publishers on all shards of all reachable nodes.
    ///
    /// Replies count against `pending_bytes_max` like deliveries (a client
    /// that pipelines pings and never reads is a slow consumer too), and at
    /// most `DEFERRED_REPLIES_MAX` may wait behind a barrier.
    pub(super) fn reply(&mut self, key: ConnectionKey, reply: DeferredReply, needs_barrier: bool) {
        let epoch_needed = if needs_barrier { self.interest_epoch } else { 0 };
        // A lane's acknowledgement waits for this node's shards only: were it
        // to wait for this shard's own barriers on other nodes too, two nodes
        // subscribing at once would wait for each other forever.
        let passed = match reply {
            DeferredReply::RouteBarrierAck(_) => self.local_acknowledged_epoch_min(),
            _ if epoch_needed == 0 => 0,
            _ => self.acknowledged_epoch_min(),
        };
        let barrier_passed = epoch_needed <= passed;
        let Some(connection) = self.connections.get_mut(key) else { return };
        if connection.error_sent {
            // Nothing follows an Error frame.
            return;
        }
        if barrier_passed && connection.deferred_replies.is_empty() {
            let nats = connection.nats.is_some();
            write_reply(&mut self.encoder, &mut connection.write_buffer, reply, nats);
            self.mark_dirty(key);
            self.enforce_pending_limit(key);
            return;
        }
        if connection.deferred_replies.len() >= DEFERRED_REPLIES_MAX {
            self.metrics.slow_consumer_evictions.add(1);
            let message = format!("more than {DEFERRED_REPLIES_MAX} replies waiting");
            return self.begin_close(key, Some((ErrorCode::SlowConsumer, &message)));
        }
        if connection.deferred_replies.is_empty() {
            self.barrier_waiters.push(key);
        }
        connection.deferred_replies.push_back((epoch_needed, reply));
    }

    /// The highest interest epoch that every shard of this node, and every
    /// node a barrier is outstanding on, has acknowledged.
    pub(super) fn acknowledged_epoch_min(&self) -> u64 {
        self.local_acknowledged_epoch_min().min(self.route_barriers.acknowledged_min())
    }

    /// The highest interest epoch every shard of this node acknowledged.
    fn local_acknowledged_epoch_min(&self) -> u64 {
        self.acknowledged_epochs.iter().copied().min().unwrap_or(u64::MAX)
    }

    /// Sends the deferred replies whose barrier has now passed.
    pub(super) fn release_barrier_waiters(&mut self) {
        let (passed_for_clients, passed_for_lanes) =
            (self.acknowledged_epoch_min(), self.local_acknowledged_epoch_min());
        let mut waiters = std::mem::take(&mut self.barrier_waiters);
        waiters.retain(|key| {
            let Some(connection) = self.connections.get_mut(*key) else { return false };
            let passed = if connection.route.is_some() { passed_for_lanes } else { passed_for_clients };
            let mut released = false;
            while let Some((epoch_needed, reply)) = connection.deferred_replies.front().copied() {
                if epoch_needed > passed {
                    break;
                }
                connection.deferred_replies.pop_front();
                let nats = connection.nats.is_some();
                write_reply(&mut self.encoder, &mut connection.write_buffer, reply, nats);
                released = true;
            }
            let still_waiting = !connection.deferred_replies.is_empty();
            if released && !connection.in_dirty_list {
                connection.in_dirty_list = true;
                self.dirty.push(*key);
            }
            still_waiting
        });
        waiters.append(&mut self.barrier_waiters);
        self.barrier_waiters = waiters;
    }
}

/// Why a subscription was not made.
pub(super) enum SubscribeRefusal {
    DuplicateId(String),
    /// A per-connection or per-identity limit.
    OverLimit(String),
    /// The identity may not subscribe to the pattern.
    Denied(String),
}

/// Whether a restricted identity may subscribe to `pattern` on this
/// connection, and with which delivery filter; or why not.
pub(super) fn subscribe_decision(
    identity: &Identity,
    connection: &Connection,
    pattern: &[u8],
) -> Result<Option<DeliveryFilter>, &'static str> {
    let parsed = Pattern::parse(&String::from_utf8_lossy(pattern)).map_err(|_| "not a valid pattern")?;
    let filter = match identity.permissions.subscribe.subscription(&parsed) {
        SubscribeDecision::Denied => return Err("not permitted"),
        SubscribeDecision::Allowed => None,
        SubscribeDecision::AllowedFiltered { inboxes_excluded } => {
            Some(DeliveryFilter::new(identity.permissions.clone(), inboxes_excluded))
        }
    };
    // One named inbox per connection at a time, so a restricted client
    // cannot collect inboxes (every other client's replies go to one).
    if let Some(inbox) = crate::auth::pattern_named_inbox(pattern) {
        if connection.named_inboxes.keys().any(|held| &held[..] != inbox) {
            return Err("this connection already holds another inbox (one at a time)");
        }
    }
    Ok(filter)
}

fn write_reply(encoder: &mut Encoder, buffer: &mut bytes::BytesMut, reply: DeferredReply, nats: bool) {
    if let DeferredReply::RouteBarrierAck(epoch) = reply {
        Encoder::route_barrier_ack(buffer, epoch);
        return;
    }
    if nats {
        match reply {
            DeferredReply::Pong => flit_nats::encode_pong(buffer),
            DeferredReply::Ok => flit_nats::encode_ok(buffer),
            DeferredReply::Refused(code, _) => {
                buffer.extend_from_slice(super::nats::nats_line_for(code, "refused").as_bytes())
            }
            DeferredReply::RouteBarrierAck(_) => {}
        }
        return;
    }
    match reply {
        DeferredReply::Pong => Encoder::bare(buffer, Op::Pong),
        DeferredReply::Ok => Encoder::bare(buffer, Op::Ok),
        DeferredReply::Refused(code, retry_after_ms) => {
            let message = "refused (the frame's details were logged by the server)";
            let _ = encoder.error_with_retry(buffer, code.as_u16(), message, retry_after_ms);
        }
        DeferredReply::RouteBarrierAck(_) => {}
    }
}

fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello(_) => "Hello",
        Frame::Welcome(_) => "Welcome",
        Frame::Publish(_) => "Publish",
        Frame::Subscribe(_) => "Subscribe",
        Frame::Unsubscribe(_) => "Unsubscribe",
        Frame::Deliver(_) => "Deliver",
        Frame::Ping => "Ping",
        Frame::Pong => "Pong",
        Frame::Ok => "Ok",
        Frame::Draining { .. } => "Draining",
        Frame::Error(_) => "Error",
        Frame::Stream(stream) => stream.name(),
    }
}
