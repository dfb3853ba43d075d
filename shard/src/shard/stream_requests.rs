//! Version 2's stream frames from clients: stream administration
//! (StreamRequest), fetches and acks. Administration of streams is done on
//! the shard that received it (crate::streams::admin); consumer commands,
//! fetches and acks go to the stream's owner shard (at most one hop) as an
//! [`OwnerCommand`], and the owner answers the connection with frames.
//!
//! Permissions (with identities): adding and removing streams needs
//! `streams_admin`; reading a stream (consumers, fetches, acks) needs
//! subscribe permission for every subject it captures; a consumer's deliver
//! and dead-letter subjects, where the router publishes for it, need publish
//! permission; info and list need neither (they show configuration and
//! counts, not messages). What the router publishes is delivered under each
//! subscriber's own permissions, like any publish.

use bytes::BytesMut;
use flit_wire::stream::{StreamCommand, StreamFrame, StreamReply, StreamRequest};
use flit_wire::ErrorCode;

use super::Shard;
use crate::connection::ConnectionKey;
use crate::mesh::MeshMessage;
use crate::streams::consumers::AckKind;
use crate::streams::directory::StreamEntry;
use crate::streams::{admin, frames, ReplyTo};

/// What a shard asks a stream's owner to do for a client.
#[derive(Debug)]
pub enum OwnerCommand {
    ConsumerAdd(flit_stream::consumer::ConsumerConfig),
    ConsumerRemove { consumer: String },
    ConsumerInfo { consumer: String },
    Fetch { consumer: String, batch: u32, wait_ms: u32 },
    Ack { consumer: String, sequence: u64, kind: AckKind },
}

impl Shard {
    pub(super) fn on_stream_frame(&mut self, key: ConnectionKey, frame: StreamFrame) {
        let version = self.connections.get(key).map_or(0, |connection| connection.protocol_version);
        if version < 2 {
            let message = format!("{} needs protocol version 2 (this connection agreed {version})", frame.name());
            return self.protocol_error(key, ErrorCode::UnexpectedOp, &message);
        }
        match frame {
            StreamFrame::Request(request) => self.on_stream_request(key, request),
            StreamFrame::Fetch(fetch) => {
                let command =
                    OwnerCommand::Fetch { consumer: fetch.consumer, batch: fetch.batch, wait_ms: fetch.wait_ms };
                self.send_to_owner(key, fetch.request_id, &fetch.stream, command);
            }
            StreamFrame::Ack(ack) => {
                let kind = match ack.kind {
                    flit_wire::stream::AckKind::Ack => AckKind::Ack,
                    flit_wire::stream::AckKind::Nak => AckKind::Nak,
                    flit_wire::stream::AckKind::Term => AckKind::Term,
                    flit_wire::stream::AckKind::InProgress => AckKind::InProgress,
                };
                let command = OwnerCommand::Ack { consumer: ack.consumer, sequence: ack.sequence, kind };
                self.send_to_owner(key, ack.request_id, &ack.stream, command);
            }
            other => {
                let message = format!("{} is a server frame", other.name());
                self.protocol_error(key, ErrorCode::UnexpectedOp, &message)
            }
        }
    }

    fn on_stream_request(&mut self, key: ConnectionKey, request: StreamRequest) {
        let request_id = request.request_id;
        let data_directory = self.config.data_directory.clone();
        let reply = match request.command {
            StreamCommand::Add(spec) => {
                if let Err(message) = self.may_administer(key) {
                    return self.answer(key, request_id, admin::FORBIDDEN, &message);
                }
                let definition = frames::definition_from_spec(&spec);
                admin::add(&self.shared.streams, &data_directory, self.shard_count, definition).map(|snapshot| {
                    StreamReply { streams: vec![frames::stream_info(&snapshot)], ..StreamReply::ok(request_id) }
                })
            }
            StreamCommand::Remove { stream } => {
                if let Err(message) = self.may_administer(key) {
                    return self.answer(key, request_id, admin::FORBIDDEN, &message);
                }
                admin::remove(&self.shared.streams, &data_directory, &stream).map(|snapshot| StreamReply {
                    streams: vec![frames::stream_info(&snapshot)],
                    ..StreamReply::ok(request_id)
                })
            }
            StreamCommand::Info { stream } => admin::info(&self.shared.streams, &stream).map(|snapshot| StreamReply {
                streams: vec![frames::stream_info(&snapshot)],
                ..StreamReply::ok(request_id)
            }),
            StreamCommand::List { after } => {
                let infos: Vec<_> = admin::list(&self.shared.streams)
                    .iter()
                    .filter(|snapshot| after.as_deref().is_none_or(|after| snapshot.definition.name.as_str() > after))
                    .map(frames::stream_info)
                    .collect();
                let Some(connection) = self.connections.get_mut(key) else { return };
                if self.encoder.stream_list_reply(&mut connection.write_buffer, request_id, &infos).is_err() {
                    frames::refusal(
                        &mut self.encoder,
                        &mut connection.write_buffer,
                        request_id,
                        503,
                        "list not encodable",
                    );
                }
                self.mark_dirty(key);
                return;
            }
            StreamCommand::ConsumerAdd { stream, config } => {
                // The router publishes to these subjects on the creator's
                // behalf (push deliveries, dead letters): only where it may
                // publish itself.
                let subjects = [config.deliver_subject.as_deref(), config.dead_letter_subject.as_deref()];
                let captured =
                    self.shared.streams.snapshot().find(&stream).map(|entry| entry.definition.subjects.clone());
                for subject in subjects.into_iter().flatten() {
                    if let Err(message) = self.may_publish_to(key, subject) {
                        return self.answer(key, request_id, admin::FORBIDDEN, &message);
                    }
                    // Deliveries published where the stream captures would be
                    // stored again and delivered again, without end.
                    let loops = captured
                        .iter()
                        .flatten()
                        .any(|pattern| flit_wire::subject::pattern_matches(pattern.as_bytes(), subject.as_bytes()));
                    if loops {
                        let message = format!("{subject} is captured by stream {stream} itself: a delivery loop");
                        return self.answer(key, request_id, admin::BAD_REQUEST, &message);
                    }
                }
                let command = OwnerCommand::ConsumerAdd(frames::consumer_config_from_spec(&config));
                return self.send_to_owner(key, request_id, &stream, command);
            }
            StreamCommand::ConsumerRemove { stream, consumer } => {
                return self.send_to_owner(key, request_id, &stream, OwnerCommand::ConsumerRemove { consumer });
            }
            StreamCommand::ConsumerInfo { stream, consumer } => {
                return self.send_to_owner(key, request_id, &stream, OwnerCommand::ConsumerInfo { consumer });
            }
        };
        match reply {
            Ok(reply) => {
                if self.shared.streams.generation() != self.stream_capture.generation {
                    // This connection's next publish must see the change.
                    self.sync_streams();
                }
                let Some(connection) = self.connections.get_mut(key) else { return };
                frames::stream_reply(&mut self.encoder, &mut connection.write_buffer, &reply);
                self.mark_dirty(key);
            }
            Err(refusal) => self.answer(key, request_id, refusal.code, &refusal.message),
        }
    }

    /// A StreamReply refusal (or an empty success, code 0) to `key`.
    fn answer(&mut self, key: ConnectionKey, request_id: u64, code: u16, message: &str) {
        let Some(connection) = self.connections.get_mut(key) else { return };
        frames::refusal(&mut self.encoder, &mut connection.write_buffer, request_id, code, message);
        self.mark_dirty(key);
    }

    fn may_administer(&self, key: ConnectionKey) -> Result<(), String> {
        if !self.identities.required {
            return Ok(());
        }
        let identity = self.connections.get(key).and_then(|connection| connection.identity.clone());
        match identity {
            Some(identity) if identity.permissions.streams_admin => Ok(()),
            Some(identity) => Err(format!("{} may not add or remove streams (streams_admin)", identity.name)),
            None => Err("not authenticated".to_string()),
        }
    }

    /// Whether the connection's identity may publish to `subject`.
    fn may_publish_to(&self, key: ConnectionKey, subject: &str) -> Result<(), String> {
        if !self.identities.required {
            return Ok(());
        }
        let Some(identity) = self.connections.get(key).and_then(|connection| connection.identity.clone()) else {
            return Err("not authenticated".to_string());
        };
        if identity.permissions.publish.permits(subject.as_bytes()) {
            Ok(())
        } else {
            Err(format!("{} may not publish to {subject} (a consumer's deliver or dead-letter subject)", identity.name))
        }
    }

    /// Whether the connection's identity may read every subject `entry` captures.
    fn may_read(&self, key: ConnectionKey, entry: &StreamEntry) -> Result<(), String> {
        if !self.identities.required {
            return Ok(());
        }
        let Some(identity) = self.connections.get(key).and_then(|connection| connection.identity.clone()) else {
            return Err("not authenticated".to_string());
        };
        for subject in &entry.definition.subjects {
            let allowed = crate::auth::Pattern::parse(subject).is_ok_and(|pattern| {
                identity.permissions.subscribe.subscription(&pattern) == crate::auth::SubscribeDecision::Allowed
            });
            if !allowed {
                return Err(format!(
                    "{} may not read stream {} (subject {subject})",
                    identity.name, entry.definition.name
                ));
            }
        }
        Ok(())
    }

    /// Sends a consumer command to the stream's owner (or runs it here).
    fn send_to_owner(&mut self, key: ConnectionKey, request_id: u64, stream: &str, command: OwnerCommand) {
        let Some(entry) = self.shared.streams.snapshot().find(stream).cloned() else {
            if request_id != 0 {
                self.answer(key, request_id, 404, &format!("no stream {stream}"));
            }
            return;
        };
        if let Err(message) = self.may_read(key, &entry) {
            if request_id != 0 {
                self.answer(key, request_id, admin::FORBIDDEN, &message);
            } else {
                self.protocol_error(key, ErrorCode::PermissionDenied, &message);
            }
            return;
        }
        let reply_to = (request_id != 0).then_some(ReplyTo { shard: self.id, connection: key, tag: request_id });
        if entry.owner == self.id {
            self.run_owner_command(entry.id, command, reply_to);
        } else {
            let message = MeshMessage::StreamCommand(Box::new((entry.id, command, reply_to)));
            self.send_to_shard(entry.owner, message);
        }
    }

    /// On the owner: runs a consumer command and answers `reply_to`.
    pub(super) fn run_owner_command(&mut self, stream: u64, command: OwnerCommand, reply_to: Option<ReplyTo>) {
        if !self.owned_stream_ids.contains(&stream) {
            self.sync_streams();
        }
        self.owned_streams.set_now(self.epoch.elapsed());
        let answer: Result<StreamReply, (u16, String)> = match command {
            OwnerCommand::ConsumerAdd(config) => self.owned_streams.consumer_add(stream, config).and_then(|name| {
                let (config, info) = self.owned_streams.consumer_info(stream, &name)?;
                Ok(StreamReply {
                    consumer: Some(frames::consumer_info(&name, &config, &info)),
                    ..StreamReply::default()
                })
            }),
            OwnerCommand::ConsumerRemove { consumer } => {
                self.owned_streams.consumer_remove(stream, &consumer).map(|()| StreamReply::default())
            }
            OwnerCommand::ConsumerInfo { consumer } => {
                self.owned_streams.consumer_info(stream, &consumer).map(|(config, info)| StreamReply {
                    consumer: Some(frames::consumer_info(&consumer, &config, &info)),
                    ..StreamReply::default()
                })
            }
            OwnerCommand::Fetch { consumer, batch, wait_ms } => {
                let Some(reply_to) = reply_to else { return };
                let wait = std::time::Duration::from_millis(u64::from(wait_ms));
                match self.owned_streams.fetch(stream, &consumer, batch, wait, reply_to) {
                    // Messages and the closing reply follow as consumer outputs.
                    Ok(()) => return,
                    Err(refusal) => Err(refusal),
                }
            }
            OwnerCommand::Ack { consumer, sequence, kind } => {
                // Answered (if asked) once the consumer's state is saved.
                self.owned_streams.ack(stream, &consumer, sequence, kind, reply_to);
                return;
            }
        };
        let Some(reply_to) = reply_to else { return };
        let reply = match answer {
            Ok(reply) => StreamReply { request_id: reply_to.tag, ..reply },
            Err((code, message)) => StreamReply::refused(
                reply_to.tag,
                flit_wire::stream::StreamCode::from_u16(code).unwrap_or(flit_wire::stream::StreamCode::Unavailable),
                message,
            ),
        };
        let mut frame = BytesMut::new();
        frames::stream_reply(&mut self.encoder, &mut frame, &reply);
        self.send_frames(reply_to, frame);
    }

    /// Frames for `reply_to`'s connection, here or on its shard.
    pub(super) fn send_frames(&mut self, reply_to: ReplyTo, frame: BytesMut) {
        if reply_to.shard == self.id {
            self.write_frames(reply_to.connection, &frame);
        } else {
            let frames = MeshMessage::Frames { connection: reply_to.connection, frames: frame.freeze() };
            self.send_to_shard(reply_to.shard, frames);
        }
    }
}
