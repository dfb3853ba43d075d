//! Consumers of the streams one shard owns: pull requests, deliveries read
//! from the log, acknowledgements, redelivery, and durable positions.
//!
//! The state machines are flit-stream's (`Consumer`, `PullQueue`); this
//! module keeps them per stream on the owner shard, reads the messages they
//! pick from the log, and turns what happens into [`ConsumerOutput`]s that
//! the shard encodes for the connections concerned (StreamMessage frames,
//! then one StreamReply closing each fetch).
//!
//! Durable consumers (named) keep their state in
//! `<stream>/consumers/<name>` (two checksummed slots, flit-stream's store),
//! saved with an fsync at most once per pass per consumer, before any Ack
//! that asked for an answer is answered: an acknowledged ack survives a
//! crash. The save is synchronous on the owner shard (an operator-sized
//! cost: one fsync per pass with acks, shared by every ack of the pass).
//! After a restart every message above the ack floor that was delivered and
//! not acknowledged is delivered again (at least once).
//!
//! Ephemeral consumers (no name) live in memory and are dropped after
//! [`EPHEMERAL_IDLE_MAX`] without a fetch or an ack.
//!
//! Dead letters (a message that reached `deliveries_max` and then its ack
//! wait) are published to the consumer's dead-letter subject, if it has one:
//! the stored payload, with headers naming the stream, sequence, original
//! subject and delivery count (the original headers are not carried). A
//! consumer that becomes stalled at `ack_pending_max` publishes one advisory
//! on `$FLIT.ADVISORY.CONSUMER.STALLED.<stream>.<consumer>` (JSON), and its
//! `flit_consumer_stalled` gauge is 1 until acks free room.
//!
//! Push consumers (a deliver subject) publish each delivery to that subject
//! as an ordinary message: the stored payload, the publisher's headers plus
//! `Flit-Stream`, `Flit-Consumer`, `Flit-Sequence`, `Flit-Delivery-Count` and
//! `Flit-Subject`, so a subscriber can ack with an Ack frame naming them.
//! They obey the same ack wait, redelivery, `ack_pending_max` and dead
//! letters as pull consumers; whoever subscribes to the deliver subject gets
//! them (a queue group there makes a work queue).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flit_stream::consumer::{
    AckOutcome, Consumer, ConsumerConfig, ConsumerInfo, ConsumerStoreFile, DeliveryMode, PullQueue, PullRequest,
};
use flit_stream::disk::FileDisk;
use flit_stream::log::StreamLog;
use flit_stream::record::StoredMessage;

use super::ReplyTo;

/// Pull requests one consumer holds at most, and the largest batch.
pub const PULL_REQUESTS_MAX: usize = 1024;
pub const PULL_BATCH_MAX: u32 = 10_000;
/// Consumers one stream holds at most.
pub const CONSUMERS_PER_STREAM_MAX: usize = 1024;
/// An ephemeral consumer nobody fetched from or acked for this long goes.
pub const EPHEMERAL_IDLE_MAX: Duration = Duration::from_secs(60);
/// Longest wait a fetch may ask for.
pub const FETCH_WAIT_MAX: Duration = Duration::from_secs(300);
/// Message bytes (subject, headers, payload) one stream's consumers hand out
/// in one pass of the owner shard; the rest waits for the next pass. Bounds
/// what a fetch of a large batch queues at once, whatever its batch.
pub const DELIVERY_BYTES_PER_PASS_MAX: usize = 1024 * 1024;

/// How a client answers a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckKind {
    Ack,
    Nak,
    Term,
    InProgress,
}

/// What the consumers produce for clients.
#[derive(Debug)]
pub enum ConsumerOutput {
    /// One delivered message for a fetch.
    Message {
        reply_to: ReplyTo,
        stream: std::sync::Arc<str>,
        consumer: String,
        message: StoredMessage,
        delivery_count: u32,
    },
    /// A fetch is done: `code` 0 (batch full) or 408 (its wait ran out).
    FetchDone { reply_to: ReplyTo, delivered: u32, code: u16 },
    /// The answer to an Ack that asked for one, or a refused request.
    Reply { reply_to: ReplyTo, code: u16, message: String },
    /// A message the owner publishes (dead letters, advisories), routed
    /// like any publish.
    Publish { subject: String, headers: Option<bytes::Bytes>, payload: bytes::Bytes },
}

/// The header block of a push delivery: the publisher's headers, then the
/// stream's (a block that does not decode is replaced by the stream's alone).
fn push_headers(stream: &str, consumer: &str, message: &StoredMessage, delivery_count: u32) -> Option<bytes::Bytes> {
    let mut entries = if message.headers.is_empty() {
        Vec::new()
    } else {
        flit_wire::decode_headers(&message.headers).unwrap_or_default()
    };
    let original = String::from_utf8_lossy(&message.subject).into_owned();
    entries.push(("Flit-Stream".into(), stream.to_string()));
    entries.push(("Flit-Consumer".into(), consumer.to_string()));
    entries.push(("Flit-Sequence".into(), message.sequence.to_string()));
    entries.push(("Flit-Delivery-Count".into(), delivery_count.to_string()));
    entries.push(("Flit-Subject".into(), original));
    let borrowed: Vec<(&str, &str)> = entries.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
    flit_wire::encode_headers(&borrowed).ok()
}

/// The subject prefix of stall advisories: `<prefix>.<stream>.<consumer>`.
pub const STALLED_ADVISORY_PREFIX: &str = "$FLIT.ADVISORY.CONSUMER.STALLED";

/// One consumer's numbers, as the metrics endpoint shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerStat {
    pub name: String,
    pub lag: u64,
    pub ack_pending: u64,
    pub stalled: bool,
    pub redeliveries_total: u64,
    pub dead_letters_total: u64,
}

struct OwnedConsumer {
    consumer: Consumer,
    pulls: PullQueue<ReplyTo>,
    store: Option<ConsumerStoreFile>,
    saved_version: u64,
    last_used: Duration,
    /// Ack answers held until the state that includes them is saved.
    answers_after_save: Vec<ReplyTo>,
    /// Stalled at the last look (an advisory goes out on the change).
    was_stalled: bool,
}

impl std::fmt::Debug for OwnedConsumer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("OwnedConsumer").field("config", self.consumer.config()).finish()
    }
}

/// Messages read ahead of the consumers, per stream: deliveries are mostly
/// consecutive sequences, and one read of many records costs one `pread`
/// where a read per message costs one each (measured: replay was bound by
/// them, bench-results/2026-11-30-durable).
pub const READ_AHEAD_MESSAGES_MAX: usize = 1024;
pub const READ_AHEAD_BYTES_MAX: usize = 1024 * 1024;

/// The consumers of one stream.
#[derive(Debug, Default)]
pub struct StreamConsumers {
    consumers: BTreeMap<String, OwnedConsumer>,
    next_ephemeral: u64,
    /// Consecutive acknowledged messages read ahead (stored messages never
    /// change; one retention removed meanwhile may still be handed out).
    read_ahead: std::collections::VecDeque<StoredMessage>,
}

/// The acknowledged message `sequence`: from the read-ahead, or read with
/// the messages after it.
fn read_message(
    read_ahead: &mut std::collections::VecDeque<StoredMessage>,
    disk: &mut FileDisk,
    log: &StreamLog,
    sequence: u64,
) -> Option<StoredMessage> {
    let first = read_ahead.front().map(|message| message.sequence);
    if let Some(first) = first {
        let index = sequence.checked_sub(first).map(|offset| offset as usize);
        if let Some(message) = index.and_then(|index| read_ahead.get(index)) {
            if message.sequence == sequence {
                return Some(message.clone());
            }
        }
    }
    match log.read_batch(disk, sequence, READ_AHEAD_MESSAGES_MAX, READ_AHEAD_BYTES_MAX) {
        Ok(batch) => {
            read_ahead.clear();
            read_ahead.extend(batch);
            read_ahead.front().filter(|message| message.sequence == sequence).cloned()
        }
        Err(error) => {
            tracing::warn!(sequence, %error, "reading a message to deliver failed");
            None
        }
    }
}

fn refusal(code: u16, text: impl Into<String>) -> (u16, String) {
    (code, text.into())
}

impl StreamConsumers {
    pub fn len(&self) -> usize {
        self.consumers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.consumers.is_empty()
    }

    fn directory(stream_directory: &Path) -> PathBuf {
        stream_directory.join("consumers")
    }

    /// Loads the durable consumers saved under `stream_directory`.
    pub fn load(disk: &mut FileDisk, stream_directory: &Path, log: &StreamLog, now: Duration) -> StreamConsumers {
        let mut consumers = StreamConsumers::default();
        let directory = Self::directory(stream_directory);
        let Ok(listing) = std::fs::read_dir(&directory) else { return consumers };
        for entry in listing.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            match ConsumerStoreFile::open(disk, &path) {
                Ok(Some((state, store))) => {
                    let first = log.info().first_sequence;
                    match Consumer::restore(state, first, now) {
                        Ok(consumer) => {
                            let saved_version = consumer.state_version();
                            consumers.consumers.insert(
                                name,
                                OwnedConsumer {
                                    consumer,
                                    pulls: PullQueue::new(PULL_REQUESTS_MAX, PULL_BATCH_MAX),
                                    store: Some(store),
                                    saved_version,
                                    last_used: now,
                                    answers_after_save: Vec::new(),
                                    was_stalled: false,
                                },
                            );
                        }
                        Err(error) => {
                            tracing::error!(consumer = %name, %error, "consumer state unusable; consumer not loaded")
                        }
                    }
                }
                // Created but never written (a crash during creation, which
                // was never acknowledged): not a consumer.
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(file = %path.display(), %error, "consumer state unreadable; consumer not loaded")
                }
            }
        }
        consumers
    }

    /// Creates a consumer (or returns the existing durable one with the same
    /// config); returns its name.
    pub fn add(
        &mut self,
        disk: &mut FileDisk,
        stream_directory: &Path,
        log: &StreamLog,
        config: ConsumerConfig,
        now: Duration,
    ) -> Result<String, (u16, String)> {
        config.validate().map_err(|error| refusal(400, error.to_string()))?;
        if let Some(name) = &config.name {
            if let Some(existing) = self.consumers.get(name) {
                if existing.consumer.config() == &config {
                    return Ok(name.clone());
                }
                return Err(refusal(409, format!("consumer {name} exists with another config")));
            }
        }
        if self.consumers.len() >= CONSUMERS_PER_STREAM_MAX {
            return Err(refusal(429, format!("at most {CONSUMERS_PER_STREAM_MAX} consumers per stream")));
        }
        let info = log.info();
        let bounds = (info.first_sequence, info.last_sequence);
        let resolve_time = |timestamp_ns: u64| {
            log.sequence_at_or_after_time(disk, timestamp_ns).ok().flatten().unwrap_or(info.last_sequence + 1)
        };
        let consumer =
            Consumer::new(config.clone(), bounds, resolve_time).map_err(|error| refusal(400, error.to_string()))?;
        let (name, store) = match &config.name {
            Some(name) => {
                let directory = Self::directory(stream_directory);
                std::fs::create_dir_all(&directory)
                    .map_err(|error| refusal(500, format!("{}: {error}", directory.display())))?;
                let store = ConsumerStoreFile::create(disk, &directory.join(name), &consumer.state())
                    .map_err(|error| refusal(500, format!("cannot save consumer {name}: {error}")))?;
                if let Ok(handle) = std::fs::File::open(&directory) {
                    let _ = handle.sync_all();
                }
                (name.clone(), Some(store))
            }
            None => {
                self.next_ephemeral += 1;
                (format!("ephemeral-{}", self.next_ephemeral), None)
            }
        };
        let saved_version = consumer.state_version();
        self.consumers.insert(
            name.clone(),
            OwnedConsumer {
                consumer,
                pulls: PullQueue::new(PULL_REQUESTS_MAX, PULL_BATCH_MAX),
                store,
                saved_version,
                last_used: now,
                answers_after_save: Vec::new(),
                was_stalled: false,
            },
        );
        Ok(name)
    }

    /// Removes a consumer and its saved state.
    pub fn remove(&mut self, disk: &mut FileDisk, stream_directory: &Path, name: &str) -> Result<(), (u16, String)> {
        let owned = self.consumers.remove(name).ok_or_else(|| refusal(404, format!("no consumer {name}")))?;
        if let Some(store) = owned.store {
            store.close(disk);
            let _ = std::fs::remove_file(Self::directory(stream_directory).join(name));
        }
        Ok(())
    }

    pub fn info(&self, name: &str, stream_last_sequence: u64) -> Option<(ConsumerConfig, ConsumerInfo)> {
        let owned = self.consumers.get(name)?;
        Some((owned.consumer.config().clone(), owned.consumer.info(stream_last_sequence)))
    }

    /// Queues a fetch; deliveries follow in `deliver`.
    pub fn fetch(
        &mut self,
        name: &str,
        batch: u32,
        wait: Duration,
        reply_to: ReplyTo,
        now: Duration,
    ) -> Result<(), (u16, String)> {
        let owned = self.consumers.get_mut(name).ok_or_else(|| refusal(404, format!("no consumer {name}")))?;
        if owned.consumer.config().mode != DeliveryMode::Pull {
            return Err(refusal(400, format!("consumer {name} pushes to its deliver subject: subscribe there")));
        }
        owned.last_used = now;
        // A fetch that does not wait still gets whatever is there now.
        let wait = wait.clamp(Duration::from_millis(1), FETCH_WAIT_MAX);
        let request = PullRequest { token: reply_to, batch, expires_at: now + wait };
        owned.pulls.add_pull_request(request, now).map_err(|refused| refusal(429, refused.error.to_string()))
    }

    /// Applies an ack; `reply_to` is answered once the consumer's state that
    /// includes it is durable (durable consumers) or at once.
    pub fn ack(
        &mut self,
        name: &str,
        sequence: u64,
        kind: AckKind,
        reply_to: Option<ReplyTo>,
        now: Duration,
        outputs: &mut Vec<ConsumerOutput>,
    ) {
        let Some(owned) = self.consumers.get_mut(name) else {
            if let Some(reply_to) = reply_to {
                outputs.push(ConsumerOutput::Reply { reply_to, code: 404, message: format!("no consumer {name}") });
            }
            return;
        };
        owned.last_used = now;
        let outcome = match kind {
            AckKind::Ack => owned.consumer.ack(sequence, now),
            AckKind::Nak => owned.consumer.nak(sequence),
            AckKind::Term => owned.consumer.term(sequence),
            AckKind::InProgress => owned.consumer.in_progress(sequence, now),
        };
        let Some(reply_to) = reply_to else { return };
        match outcome {
            AckOutcome::Applied | AckOutcome::DeadLettered => owned.answers_after_save.push(reply_to),
            AckOutcome::Duplicate => {
                outputs.push(ConsumerOutput::Reply { reply_to, code: 0, message: "already resolved".into() })
            }
            _ => outputs.push(ConsumerOutput::Reply {
                reply_to,
                code: 404,
                message: format!("sequence {sequence} was not delivered"),
            }),
        }
    }

    /// Delivers to waiting fetches (up to `DELIVERY_BYTES_PER_PASS_MAX`),
    /// expires them, redelivers what timed out, saves durable state, and
    /// answers acks held for the save. True when the byte budget ran out
    /// with deliveries still possible (call again next pass).
    pub fn deliver(
        &mut self,
        disk: &mut FileDisk,
        stream: &std::sync::Arc<str>,
        log: &StreamLog,
        now: Duration,
        outputs: &mut Vec<ConsumerOutput>,
    ) -> bool {
        let info = log.info();
        let mut budget_bytes = DELIVERY_BYTES_PER_PASS_MAX;
        let mut idle_ephemeral = Vec::new();
        for (name, owned) in self.consumers.iter_mut() {
            owned.consumer.process_deadlines(now);
            owned.consumer.retention_moved(info.first_sequence);
            while let Some(dead) = owned.consumer.pop_dead_letter() {
                let Some(subject) = owned.consumer.config().dead_letter_subject.clone() else { continue };
                match read_message(&mut self.read_ahead, disk, log, dead.sequence) {
                    Some(message) => {
                        let original = String::from_utf8_lossy(&message.subject).into_owned();
                        let sequence = dead.sequence.to_string();
                        let count = dead.delivery_count.to_string();
                        let entries = [
                            ("Flit-Stream", stream.as_ref()),
                            ("Flit-Consumer", name.as_str()),
                            ("Flit-Sequence", sequence.as_str()),
                            ("Flit-Subject", original.as_str()),
                            ("Flit-Delivery-Count", count.as_str()),
                        ];
                        let headers = flit_wire::encode_headers(&entries).ok();
                        outputs.push(ConsumerOutput::Publish { subject, headers, payload: message.payload });
                    }
                    // Gone (retention) or unreadable: counted, not published.
                    _ => {
                        tracing::warn!(consumer = %name, sequence = dead.sequence, "dead letter not readable; counted only")
                    }
                }
            }
            if let DeliveryMode::Push { deliver_subject } = owned.consumer.config().mode.clone() {
                while budget_bytes > 0 {
                    let Some(delivery) = owned.consumer.next_delivery(now, info.last_sequence) else { break };
                    let Some(message) = read_message(&mut self.read_ahead, disk, log, delivery.sequence) else {
                        continue;
                    };
                    budget_bytes = budget_bytes.saturating_sub(message.payload.len().max(1));
                    let headers = push_headers(stream, name, &message, delivery.delivery_count);
                    outputs.push(ConsumerOutput::Publish {
                        subject: deliver_subject.clone(),
                        headers,
                        payload: message.payload,
                    });
                }
            }
            while budget_bytes > 0 {
                let Some(pulled) = owned.pulls.next_pull_delivery(&mut owned.consumer, now, info.last_sequence) else {
                    break;
                };
                // None: removed by retention between pick and read (the
                // consumer hears of it at the next retention_moved), or
                // unreadable (logged by read_message): skipped.
                if let Some(message) = read_message(&mut self.read_ahead, disk, log, pulled.delivery.sequence) {
                    let bytes = message.subject.len() + message.headers.len() + message.payload.len();
                    budget_bytes = budget_bytes.saturating_sub(bytes.max(1));
                    outputs.push(ConsumerOutput::Message {
                        reply_to: pulled.token,
                        stream: stream.clone(),
                        consumer: name.clone(),
                        message,
                        delivery_count: pulled.delivery.delivery_count,
                    });
                }
                if pulled.request_complete {
                    outputs.push(ConsumerOutput::FetchDone {
                        reply_to: pulled.token,
                        delivered: pulled.delivered,
                        code: 0,
                    });
                }
            }
            for expired in owned.pulls.expire_pull_requests(now) {
                outputs.push(ConsumerOutput::FetchDone {
                    reply_to: expired.request.token,
                    delivered: expired.delivered,
                    code: 408,
                });
            }
            let stalled = owned.consumer.stalled();
            if stalled && !owned.was_stalled {
                let info = owned.consumer.info(info.last_sequence);
                let body = format!(
                    "{{\"stream\":\"{stream}\",\"consumer\":\"{name}\",\"ack_pending\":{},\"ack_pending_max\":{},\"lag\":{}}}",
                    info.ack_pending,
                    owned.consumer.config().ack_pending_max,
                    info.lag
                );
                outputs.push(ConsumerOutput::Publish {
                    subject: format!("{STALLED_ADVISORY_PREFIX}.{stream}.{name}"),
                    headers: None,
                    payload: bytes::Bytes::from(body),
                });
            }
            owned.was_stalled = stalled;
            if owned.consumer.state_version() != owned.saved_version {
                if let Some(store) = owned.store.as_mut() {
                    if let Err(error) = store.save(disk, &owned.consumer.state()) {
                        tracing::error!(consumer = %name, %error, "saving consumer state failed; acks are not answered");
                        for reply_to in owned.answers_after_save.drain(..) {
                            outputs.push(ConsumerOutput::Reply {
                                reply_to,
                                code: 500,
                                message: format!("consumer state not saved: {error}"),
                            });
                        }
                        continue;
                    }
                }
                owned.saved_version = owned.consumer.state_version();
            }
            for reply_to in owned.answers_after_save.drain(..) {
                outputs.push(ConsumerOutput::Reply { reply_to, code: 0, message: String::new() });
            }
            if owned.store.is_none()
                && owned.pulls.is_empty()
                && now.saturating_sub(owned.last_used) > EPHEMERAL_IDLE_MAX
            {
                idle_ephemeral.push(name.clone());
            }
        }
        for name in idle_ephemeral {
            self.consumers.remove(&name);
        }
        budget_bytes == 0
    }

    /// Every consumer's numbers, for the metrics endpoint.
    pub fn stats(&self, stream_last_sequence: u64) -> Vec<ConsumerStat> {
        self.consumers
            .iter()
            .map(|(name, owned)| {
                let info = owned.consumer.info(stream_last_sequence);
                ConsumerStat {
                    name: name.clone(),
                    lag: info.lag,
                    ack_pending: u64::from(info.ack_pending),
                    stalled: info.stalled,
                    redeliveries_total: info.redeliveries_total,
                    dead_letters_total: info.dead_letters_total,
                }
            })
            .collect()
    }

    /// Fetches of a connection that closed are dropped.
    pub fn has_waiting_pulls(&self) -> bool {
        self.consumers.values().any(|owned| !owned.pulls.is_empty())
    }
}
