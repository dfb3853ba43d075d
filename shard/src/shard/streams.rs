//! The shard loop's side of durable streams (the streams themselves live in
//! `crate::streams`): noticing directory changes, capturing publishes,
//! appending what arrives for the streams this shard owns, driving their IO
//! once per pass, and turning outcomes into PublishAck frames.
//!
//! Cost on the message path when no stream exists: one branch per publish
//! (`stream_capture.is_empty()`), unless the publish asks for an
//! acknowledgement (then it is answered "no stream" at once).

use bytes::BytesMut;
use flit_wire::stream::StreamReply;

use super::Shard;
use crate::connection::ConnectionKey;
use crate::mesh::{MeshMessage, RoutedMessage};
use crate::streams::consumers::ConsumerOutput;
use crate::streams::directory::StreamCapture;
use crate::streams::frames;
use crate::streams::owner::{codes, PublishOutcome};
use crate::streams::ReplyTo;

impl Shard {
    /// Once per pass: a new directory generation rebuilds the capture trie,
    /// opens the streams this shard now owns and closes the ones removed.
    pub(super) fn sync_streams(&mut self) -> bool {
        let generation = self.shared.streams.generation();
        if generation == self.stream_capture.generation {
            return false;
        }
        let directory = self.shared.streams.snapshot();
        let owned_now: Vec<_> = directory.entries.iter().filter(|entry| entry.owner == self.id).cloned().collect();
        for id in self.owned_stream_ids.clone() {
            if !owned_now.iter().any(|entry| entry.id == id) {
                if let Some(log_directory) = self.owned_streams.close(id) {
                    // Removed by an operator: its data goes with it (its
                    // definition file went with the command).
                    if let Err(error) = std::fs::remove_dir_all(&log_directory) {
                        tracing::warn!(shard = self.id, directory = %log_directory.display(), %error, "could not delete a removed stream's log");
                    }
                }
            }
        }
        for entry in &owned_now {
            if !self.owned_stream_ids.contains(&entry.id) {
                self.owned_streams.open(entry.clone());
            }
        }
        self.owned_stream_ids = owned_now.iter().map(|entry| entry.id).collect();
        self.stream_capture = StreamCapture::from_directory(&directory, generation);
        self.announce_capture_changes();
        true
    }

    /// A client's publish: if a stream on this node captures its subject,
    /// hand it to the owner; a publish that asked for an acknowledgement
    /// (`tag != 0`) and that no stream here captures becomes a store request
    /// to the node whose stream does (cluster/store.rs), or is answered
    /// "no stream" at once.
    pub(super) fn capture_publish(&mut self, message: &RoutedMessage, origin: ConnectionKey, tag: u64) {
        let reply_to = (tag != 0).then_some(ReplyTo { shard: self.id, connection: origin, tag });
        if self.capture_here(message, reply_to) {
            return;
        }
        if let Some(reply_to) = reply_to {
            if !self.request_remote_store(message, reply_to) {
                self.answer_no_stream(message, reply_to);
            }
        }
    }

    /// A message another node forwarded: captured by this node's streams
    /// like a local publish; a store request no stream here captures (any
    /// more) is answered "no stream", never sent on to a third node.
    pub(super) fn capture_routed(&mut self, message: &RoutedMessage, lane: ConnectionKey, store_request: u64) {
        let reply_to = (store_request != 0).then_some(ReplyTo { shard: self.id, connection: lane, tag: store_request });
        if !self.capture_here(message, reply_to) {
            if let Some(reply_to) = reply_to {
                self.answer_no_stream(message, reply_to);
            }
        }
    }

    /// Hands the message to the owner shard of the stream on this node that
    /// captures it; false when none does.
    fn capture_here(&mut self, message: &RoutedMessage, reply_to: Option<ReplyTo>) -> bool {
        let Some(entry) = self.stream_capture.capture(message.subject()) else { return false };
        if entry.owner == self.id {
            self.owned_streams.append(entry.id, message, reply_to);
        } else {
            let append = MeshMessage::Append { stream: entry.id, message: message.clone(), reply_to };
            self.send_to_shard(entry.owner, append);
        }
        true
    }

    fn answer_no_stream(&mut self, message: &RoutedMessage, reply_to: ReplyTo) {
        let subject = String::from_utf8_lossy(message.subject()).into_owned();
        self.stream_outcomes.push(PublishOutcome {
            reply_to,
            stream: std::sync::Arc::from(""),
            sequence: 0,
            duplicate: false,
            code: codes::NOT_FOUND,
            message: format!("no stream captures {subject}"),
        });
    }

    /// An append from another shard for a stream this shard owns.
    pub(super) fn append_captured(&mut self, stream: u64, message: &RoutedMessage, reply_to: Option<ReplyTo>) {
        if !self.owned_stream_ids.contains(&stream) {
            // The sender saw a directory generation this shard has not
            // looked at yet: catch up before deciding the stream is gone.
            self.sync_streams();
        }
        self.owned_streams.append(stream, message, reply_to);
    }

    /// Frames another shard encoded for one of this shard's connections.
    pub(super) fn write_frames(&mut self, connection: ConnectionKey, frames: &[u8]) {
        let Some(target) = self.connections.get_mut(connection) else { return };
        if target.state == crate::connection::ConnectionState::Closing {
            return;
        }
        if target.route.is_some() {
            // A stream here answered another node's store request.
            self.store_ack_to_lane(connection, frames);
            return;
        }
        if target.nats.is_some() {
            // A NATS client's stream acknowledgement: a message on its reply
            // subject, not a frame (nats/deliver.rs).
            self.nats_stream_ack(connection, frames);
            return;
        }
        target.write_buffer.extend_from_slice(frames);
        self.mark_dirty(connection);
        // Fetched messages count against pending_bytes_max like deliveries.
        self.enforce_pending_limit(connection);
    }

    /// End of a pass: every owned log's IO to the ring, then every outcome
    /// to its publisher. True if anything happened.
    pub(super) fn pump_streams(&mut self) -> std::io::Result<bool> {
        let mut did_work = false;
        if !self.owned_streams.is_empty() {
            self.owned_streams.set_now(self.epoch.elapsed());
            self.owned_streams.tick();
            self.owned_streams.submit_io(&mut self.ring)?;
            self.owned_streams.take_outcomes(&mut self.stream_outcomes);
            self.owned_streams.take_consumer_outputs(&mut self.consumer_outputs);
            did_work |= !self.consumer_outputs.is_empty() || self.owned_streams.has_work_pending();
            self.send_consumer_outputs();
        }
        if self.stream_outcomes.is_empty() {
            return Ok(did_work);
        }
        let mut outcomes = std::mem::take(&mut self.stream_outcomes);
        for outcome in outcomes.drain(..) {
            let mut frame = BytesMut::new();
            crate::streams::frames::publish_ack(&mut self.encoder, &mut frame, &outcome);
            self.send_frames(outcome.reply_to, frame);
        }
        self.stream_outcomes = outcomes;
        Ok(true)
    }

    /// Deliveries and answers of the owned streams' consumers, as frames.
    fn send_consumer_outputs(&mut self) {
        if self.consumer_outputs.is_empty() {
            return;
        }
        let mut outputs = std::mem::take(&mut self.consumer_outputs);
        for output in outputs.drain(..) {
            let mut frame = BytesMut::new();
            let reply_to = match output {
                ConsumerOutput::Message { reply_to, stream, consumer, message, delivery_count } => {
                    frames::stream_message(
                        &mut self.encoder,
                        &mut frame,
                        reply_to.tag,
                        &stream,
                        &consumer,
                        &message,
                        delivery_count,
                    );
                    reply_to
                }
                ConsumerOutput::FetchDone { reply_to, delivered, code } => {
                    let reply = StreamReply { request_id: reply_to.tag, code, delivered, ..StreamReply::default() };
                    frames::stream_reply(&mut self.encoder, &mut frame, &reply);
                    reply_to
                }
                ConsumerOutput::Reply { reply_to, code, message } => {
                    let reply = StreamReply { request_id: reply_to.tag, code, message, ..StreamReply::default() };
                    frames::stream_reply(&mut self.encoder, &mut frame, &reply);
                    reply_to
                }
                ConsumerOutput::Publish { subject, headers, payload } => {
                    self.publish_from_owner(&subject, headers.as_deref(), &payload);
                    continue;
                }
            };
            self.send_frames(reply_to, frame);
        }
        self.consumer_outputs = outputs;
    }

    /// Publishes a message the shard itself makes (a dead letter, an
    /// advisory): captured by streams and routed to subscribers like a
    /// client's publish, with no publisher connection.
    fn publish_from_owner(&mut self, subject: &str, headers: Option<&[u8]>, payload: &[u8]) {
        let mut frame = BytesMut::new();
        if let Err(error) = self.encoder.publish(&mut frame, subject.as_bytes(), None, headers, payload) {
            tracing::warn!(shard = self.id, subject, %error, "an owner's publish could not be encoded; dropped");
            return;
        }
        let frame = frame.freeze();
        let Ok(parts) = flit_wire::decode_publish(&frame, &self.limits) else { return };
        let mut message = RoutedMessage::from_publish(frame, parts);
        message.received_at_nanos = self.now_nanos();
        if !self.stream_capture.is_empty() {
            // No connection asks for an acknowledgement: tag 0.
            self.capture_publish(&message, 0, 0);
        }
        self.route_message(message, None);
    }

    /// A disk completion for an owned stream's log.
    pub(super) fn on_disk_completion(&mut self, key: u64, result: i32) {
        self.owned_streams.on_disk_completion(key, result, &mut self.ring);
    }
}
