//! The streams one shard owns: their logs, driven on the shard's ring.
//!
//! A publish captured by a stream reaches its owner shard (at most one hop),
//! which stages it in the log ([`OwnedStreams::append`]). After the pass, the
//! owner hands every log's IO to the ring ([`OwnedStreams::submit_io`]): a
//! commit's write with its fdatasync linked after it, all of a pass's
//! streams in the one `io_uring_enter` the shard makes anyway. Completions
//! come back by token ([`OwnedStreams::on_disk_completion`]) and the log's
//! acknowledgements become [`PublishOutcome`]s, one per publisher that
//! asked, which the shard turns into PublishAck frames for the publisher's
//! connection, here or on its shard.
//!
//! Group commit is the log's (flit-stream): appends that arrive while a
//! commit is in flight go into the next one, so one fdatasync covers every
//! publisher of a pass, and more under load.
//!
//! Invariants: a publisher is answered exactly once per acknowledged
//! publish, in sequence order per stream, and never before the log says the
//! policy's condition holds (under `always`: the covering fdatasync
//! completed); a stream whose log failed to open refuses every publish with
//! its reason; a write's bytes live in the ring until its completion.
//!
//! Shutdown: `flush_for_shutdown` asks every log for a final sync and the
//! shard keeps driving IO until every log is idle or the flush timeout ends;
//! whatever is abandoned was never acknowledged under `always`.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use flit_stream::dedup::{message_id_from_headers, DedupOutcome, DedupWindow};
use flit_stream::disk::{Disk, DiskError, FileDisk};
use flit_stream::log::{AckEvent, AppendError, IoOperation, IoOutcome, IoTag, LogState, StreamLog};
use rustc_hash::FxHashMap;

use super::consumers::{AckKind, ConsumerOutput, StreamConsumers};
use super::directory::StreamEntry;
use super::ReplyTo;
use crate::mesh::RoutedMessage;
use crate::ring::Ring;

/// Message ids a stream's dedup window remembers at most.
pub const DEDUP_ENTRIES_MAX: usize = 1_000_000;
/// How often a log's clock advances (interval syncs, age retention).
pub const LOG_TICK_INTERVAL: Duration = Duration::from_millis(2);
/// Bits of a disk token's key that hold the log's IO tag (the rest: slot).
const TAG_BITS: u32 = 40;

/// The answer to one publish a client asked to be acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishOutcome {
    pub reply_to: ReplyTo,
    pub stream: Arc<str>,
    pub sequence: u64,
    pub duplicate: bool,
    /// 0: stored; else a stream code (see [`refusal_code`]).
    pub code: u16,
    pub message: String,
}

/// Stream reply codes (docs/PROTOCOL.md, "Stream codes").
pub mod codes {
    pub const NOT_FOUND: u16 = 404;
    pub const TOO_LARGE: u16 = 413;
    pub const LIMIT_REACHED: u16 = 429;
    pub const UNAVAILABLE: u16 = 503;
    pub const DISK_FULL: u16 = 507;
    pub const BUSY: u16 = 504;
}

/// The code a refused append answers with.
pub fn refusal_code(error: &AppendError) -> u16 {
    match error {
        AppendError::MessageTooLarge { .. } | AppendError::SubjectTooLong { .. } => codes::TOO_LARGE,
        AppendError::LimitReached(_) => codes::LIMIT_REACHED,
        AppendError::PendingFull { .. } => codes::BUSY,
        AppendError::DiskFull => codes::DISK_FULL,
        _ => codes::UNAVAILABLE,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IoKind {
    Write,
    Sync,
}

/// A staged append: its sequence, who to answer, and its dedup message id
/// (forgotten again if the append is refused).
type Waiter = (u64, Option<ReplyTo>, Option<Box<[u8]>>);

struct OwnedStream {
    entry: Arc<StreamEntry>,
    name: Arc<str>,
    /// Err: the log could not be opened (corrupt, unreadable): every publish
    /// is refused with this reason until an operator acts.
    log: Result<StreamLog, String>,
    /// Publishers waiting for their sequence to be acknowledged, in order.
    waiters: VecDeque<Waiter>,
    io_in_flight: FxHashMap<u64, IoKind>,
    /// When each fdatasync in flight was submitted (by tag).
    sync_submitted_at: FxHashMap<u64, std::time::Instant>,
    dedup: Option<DedupWindow>,
    consumers: StreamConsumers,
}

impl std::fmt::Debug for OwnedStream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("OwnedStream").field("name", &self.name).finish()
    }
}

#[derive(Debug)]
pub struct OwnedStreams {
    disk: FileDisk,
    data_directory: PathBuf,
    slots: Vec<Option<OwnedStream>>,
    by_id: FxHashMap<u64, u16>,
    /// Slots with IO to hand out or events to drain.
    active: Vec<u16>,
    outcomes: Vec<PublishOutcome>,
    consumer_outputs: Vec<ConsumerOutput>,
    last_tick_ns: u64,
    /// The consumers' clock (monotonic, from the owner shard).
    now: Duration,
}

/// Wall-clock nanoseconds: record timestamps and the dedup window's clock.
pub fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_nanos() as u64)
}

impl OwnedStreams {
    pub fn new(data_directory: PathBuf) -> OwnedStreams {
        OwnedStreams {
            disk: FileDisk::new(),
            data_directory,
            slots: Vec::new(),
            by_id: FxHashMap::default(),
            active: Vec::new(),
            outcomes: Vec::new(),
            consumer_outputs: Vec::new(),
            last_tick_ns: 0,
            now: Duration::ZERO,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Streams with work left for the next pass (a consumer's delivery byte
    /// budget ran out): the shard must not park before it runs.
    pub fn has_work_pending(&self) -> bool {
        !self.active.is_empty()
    }

    /// Where a stream's files live.
    pub fn stream_directory(data_directory: &std::path::Path, name: &str) -> PathBuf {
        data_directory.join("streams").join(name)
    }

    /// Opens (recovering) the log of a stream this shard owns. A failure is
    /// kept as the stream's status: it refuses publishes and says why.
    pub fn open(&mut self, entry: Arc<StreamEntry>) {
        let directory = Self::stream_directory(&self.data_directory, &entry.definition.name);
        let config = entry.definition.log_config(directory.join("log"));
        let log = match StreamLog::open(&mut self.disk, config) {
            Ok((log, report)) => {
                for torn in report.truncations.iter().chain(report.removed.iter()).filter(|cut| cut.bytes_dropped > 0) {
                    tracing::warn!(
                        stream = %entry.definition.name,
                        file = %torn.file.display(),
                        offset = torn.offset,
                        bytes = torn.bytes_dropped,
                        "recovery: a torn tail (a write cut short by a crash, never acknowledged) was truncated"
                    );
                }
                entry.stats.set_status("");
                Ok(log)
            }
            Err(error) => {
                let reason = error.to_string();
                tracing::error!(stream = %entry.definition.name, %reason, "stream unavailable: its log did not open; it refuses publishes until fixed");
                entry.stats.set_status(&reason);
                Err(reason)
            }
        };
        let dedup_window = entry.definition.dedup_window;
        let consumers = match &log {
            Ok(log) => StreamConsumers::load(&mut self.disk, &directory, log, self.now),
            Err(_) => StreamConsumers::default(),
        };
        entry.stats.set_consumers(consumers.len());
        let stream = OwnedStream {
            name: Arc::from(entry.definition.name.as_str()),
            entry: entry.clone(),
            log,
            waiters: VecDeque::new(),
            io_in_flight: FxHashMap::default(),
            sync_submitted_at: FxHashMap::default(),
            dedup: (!dedup_window.is_zero()).then(|| DedupWindow::new(dedup_window, DEDUP_ENTRIES_MAX)),
            consumers,
        };
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.slots[slot] = Some(stream);
        self.by_id.insert(entry.id, slot as u16);
        self.publish_stats(slot as u16);
    }

    /// Stops owning a stream (removed): its waiters are refused, its files
    /// closed. IO in flight completes into nothing (its bytes stay with the
    /// ring until then). Returns the log's directory, for deletion.
    pub fn close(&mut self, id: u64) -> Option<PathBuf> {
        let slot = self.by_id.remove(&id)?;
        let stream = self.slots[slot as usize].take()?;
        for (sequence, reply_to, _) in stream.waiters {
            if let Some(reply_to) = reply_to {
                self.outcomes.push(PublishOutcome {
                    reply_to,
                    stream: stream.name.clone(),
                    sequence,
                    duplicate: false,
                    code: codes::NOT_FOUND,
                    message: "stream removed".to_string(),
                });
            }
        }
        if let Ok(log) = stream.log {
            log.close(&mut self.disk);
        }
        Some(Self::stream_directory(&self.data_directory, &stream.entry.definition.name).join("log"))
    }

    /// Stages a captured message; the answer comes later as an outcome.
    pub fn append(&mut self, id: u64, message: &RoutedMessage, reply_to: Option<ReplyTo>) {
        let Some(&slot) = self.by_id.get(&id) else {
            if let Some(reply_to) = reply_to {
                self.outcomes.push(PublishOutcome {
                    reply_to,
                    stream: Arc::from(""),
                    sequence: 0,
                    duplicate: false,
                    code: codes::NOT_FOUND,
                    message: "no such stream on its owner (removed?)".to_string(),
                });
            }
            return;
        };
        let now_ns = wall_clock_ns();
        let stream = self.slots[slot as usize].as_mut().expect("by_id names live slots");
        let refuse = |outcomes: &mut Vec<PublishOutcome>, name: &Arc<str>, code: u16, text: String| {
            if let Some(reply_to) = reply_to {
                outcomes.push(PublishOutcome {
                    reply_to,
                    stream: name.clone(),
                    sequence: 0,
                    duplicate: false,
                    code,
                    message: text,
                });
            }
        };
        let log = match stream.log.as_mut() {
            Ok(log) => log,
            Err(reason) => return refuse(&mut self.outcomes, &stream.name, codes::UNAVAILABLE, reason.clone()),
        };
        let headers = message.headers().unwrap_or(&[]);
        let mut message_id = None;
        if let (Some(window), Some(id)) = (stream.dedup.as_mut(), message_id_from_headers(headers)) {
            match window.check_and_insert(id, log.next_sequence(), Duration::from_nanos(now_ns)) {
                Ok(DedupOutcome::Duplicate { original_sequence }) => {
                    if let Some(reply_to) = reply_to {
                        self.outcomes.push(PublishOutcome {
                            reply_to,
                            stream: stream.name.clone(),
                            sequence: original_sequence,
                            duplicate: true,
                            code: 0,
                            message: String::new(),
                        });
                    }
                    return;
                }
                Ok(_) => message_id = Some(Box::<[u8]>::from(id)),
                // An unusable id (empty, too long) is stored without dedup.
                Err(_) => {}
            }
        }
        match log.append(&mut self.disk, now_ns, message.subject(), headers, message.payload()) {
            Ok(sequence) => {
                stream.entry.stats.appends.fetch_add(1, Ordering::Relaxed);
                stream.waiters.push_back((sequence, reply_to, message_id));
                if !self.active.contains(&slot) {
                    self.active.push(slot);
                }
            }
            Err(error) => {
                if let (Some(window), Some(id)) = (stream.dedup.as_mut(), message_id.as_deref()) {
                    window.forget(id, log.next_sequence());
                }
                stream.entry.stats.refused.fetch_add(1, Ordering::Relaxed);
                refuse(&mut self.outcomes, &stream.name, refusal_code(&error), error.to_string());
            }
        }
    }

    /// Hands every active log's IO to the ring and turns its events into
    /// outcomes. Call once per pass, after appends and completions.
    pub fn submit_io(&mut self, ring: &mut Ring) -> std::io::Result<()> {
        for slot in std::mem::take(&mut self.active) {
            self.pump(slot, ring)?;
        }
        Ok(())
    }

    fn pump(&mut self, slot: u16, ring: &mut Ring) -> std::io::Result<()> {
        let Some(stream) = self.slots[slot as usize].as_mut() else { return Ok(()) };
        let Ok(log) = stream.log.as_mut() else { return Ok(()) };
        let mut requests = Vec::new();
        while let Some(request) = log.next_io() {
            requests.push(request);
        }
        let mut index = 0;
        while index < requests.len() {
            let request = &requests[index];
            let key = disk_key(slot, request.tag);
            match &request.operation {
                IoOperation::Write { file, offset, data } => {
                    let Some(fd) = self.disk.file(*file).map(|file| file.as_raw_fd()) else {
                        log.complete(request.tag, IoOutcome::Failed(DiskError::UnknownFile(*file)));
                        index += 1;
                        continue;
                    };
                    // A sync handed out right after, linked, goes in the same chain.
                    let linked_sync = requests.get(index + 1).and_then(|next| match next.operation {
                        IoOperation::SyncData { linked: true, .. } => Some(next.tag),
                        _ => None,
                    });
                    stream.io_in_flight.insert(request.tag.0, IoKind::Write);
                    if let Some(sync_tag) = linked_sync {
                        stream.io_in_flight.insert(sync_tag.0, IoKind::Sync);
                        stream.sync_submitted_at.insert(sync_tag.0, std::time::Instant::now());
                        index += 1;
                    }
                    ring.write_at(fd, *offset, data.clone(), key, linked_sync.map(|tag| disk_key(slot, tag)))?;
                }
                IoOperation::SyncData { file, .. } => {
                    let Some(fd) = self.disk.file(*file).map(|file| file.as_raw_fd()) else {
                        log.complete(request.tag, IoOutcome::Failed(DiskError::UnknownFile(*file)));
                        index += 1;
                        continue;
                    };
                    stream.io_in_flight.insert(request.tag.0, IoKind::Sync);
                    stream.sync_submitted_at.insert(request.tag.0, std::time::Instant::now());
                    ring.sync_data(fd, key)?;
                }
            }
            index += 1;
        }
        self.drain_events(slot);
        self.deliver_to_consumers(slot);
        Ok(())
    }

    fn deliver_to_consumers(&mut self, slot: u16) {
        let Some(stream) = self.slots[slot as usize].as_mut() else { return };
        let Ok(log) = stream.log.as_ref() else { return };
        if stream.consumers.is_empty() {
            return;
        }
        let more = stream.consumers.deliver(&mut self.disk, &stream.name, log, self.now, &mut self.consumer_outputs);
        if more && !self.active.contains(&slot) {
            // Out of this pass's byte budget: the next pass goes on.
            self.active.push(slot);
        }
    }

    /// Sets the consumers' clock (the owner shard's monotonic time).
    pub fn set_now(&mut self, now: Duration) {
        self.now = now;
    }

    fn owned_mut<'a>(
        by_id: &FxHashMap<u64, u16>,
        slots: &'a mut [Option<OwnedStream>],
        id: u64,
    ) -> Result<(u16, &'a mut OwnedStream), (u16, String)> {
        let slot = *by_id.get(&id).ok_or_else(|| (codes::NOT_FOUND, "no such stream on its owner".to_string()))?;
        let stream = slots[slot as usize].as_mut().ok_or_else(|| (codes::NOT_FOUND, "no such stream".to_string()))?;
        Ok((slot, stream))
    }

    /// Creates a consumer on stream `id`; returns its name.
    pub fn consumer_add(
        &mut self,
        id: u64,
        config: flit_stream::consumer::ConsumerConfig,
    ) -> Result<String, (u16, String)> {
        let now = self.now;
        let directory_root = self.data_directory.clone();
        let (_, stream) = Self::owned_mut(&self.by_id, &mut self.slots, id)?;
        let log = stream.log.as_ref().map_err(|reason| (codes::UNAVAILABLE, reason.clone()))?;
        let directory = Self::stream_directory(&directory_root, &stream.entry.definition.name);
        let name = stream.consumers.add(&mut self.disk, &directory, log, config, now)?;
        stream.entry.stats.set_consumers(stream.consumers.len());
        stream.entry.stats.set_consumer_stats(stream.consumers.stats(log.info().last_sequence));
        Ok(name)
    }

    pub fn consumer_remove(&mut self, id: u64, name: &str) -> Result<(), (u16, String)> {
        let directory_root = self.data_directory.clone();
        let (_, stream) = Self::owned_mut(&self.by_id, &mut self.slots, id)?;
        let directory = Self::stream_directory(&directory_root, &stream.entry.definition.name);
        stream.consumers.remove(&mut self.disk, &directory, name)?;
        stream.entry.stats.set_consumers(stream.consumers.len());
        Ok(())
    }

    pub fn consumer_info(
        &mut self,
        id: u64,
        name: &str,
    ) -> Result<(flit_stream::consumer::ConsumerConfig, flit_stream::consumer::ConsumerInfo), (u16, String)> {
        let (_, stream) = Self::owned_mut(&self.by_id, &mut self.slots, id)?;
        let last = stream.log.as_ref().map(|log| log.info().last_sequence).unwrap_or(0);
        stream.consumers.info(name, last).ok_or_else(|| (codes::NOT_FOUND, format!("no consumer {name}")))
    }

    /// Queues a fetch from consumer `name`; messages follow as outputs.
    pub fn fetch(
        &mut self,
        id: u64,
        name: &str,
        batch: u32,
        wait: Duration,
        reply_to: ReplyTo,
    ) -> Result<(), (u16, String)> {
        let now = self.now;
        let (slot, stream) = Self::owned_mut(&self.by_id, &mut self.slots, id)?;
        stream.consumers.fetch(name, batch, wait, reply_to, now)?;
        self.deliver_to_consumers(slot);
        Ok(())
    }

    pub fn ack(&mut self, id: u64, name: &str, sequence: u64, kind: AckKind, reply_to: Option<ReplyTo>) {
        let now = self.now;
        match Self::owned_mut(&self.by_id, &mut self.slots, id) {
            Ok((slot, stream)) => {
                stream.consumers.ack(name, sequence, kind, reply_to, now, &mut self.consumer_outputs);
                if !self.active.contains(&slot) {
                    self.active.push(slot);
                }
            }
            Err((code, message)) => {
                if let Some(reply_to) = reply_to {
                    self.consumer_outputs.push(ConsumerOutput::Reply { reply_to, code, message });
                }
            }
        }
    }

    /// Consumer outputs ready since the last call.
    pub fn take_consumer_outputs(&mut self, into: &mut Vec<ConsumerOutput>) {
        into.append(&mut self.consumer_outputs);
    }

    /// A `Disk(key)` completion.
    pub fn on_disk_completion(&mut self, key: u64, result: i32, ring: &mut Ring) {
        let (slot, tag) = split_disk_key(key);
        let kind = self
            .slots
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
            .and_then(|stream| stream.io_in_flight.remove(&tag));
        if kind == Some(IoKind::Write) || kind.is_none() {
            // Free the write's bytes (a sync has none; a stream removed
            // meanwhile still had its bytes held here).
            ring.finish_disk_write(key);
        }
        let Some(kind) = kind else { return };
        let Some(stream) = self.slots[slot as usize].as_mut() else { return };
        if let Some(submitted_at) = stream.sync_submitted_at.remove(&tag) {
            if result >= 0 {
                stream.entry.stats.sync_latency.record(submitted_at.elapsed().as_nanos() as u64, 1);
            }
        }
        let Ok(log) = stream.log.as_mut() else { return };
        let outcome = match (kind, result) {
            (_, result) if result == -libc::ECANCELED => IoOutcome::Cancelled,
            (_, result) if result < 0 => IoOutcome::Failed(DiskError::from_errno(
                -result,
                match kind {
                    IoKind::Write => "write",
                    IoKind::Sync => "fdatasync",
                },
            )),
            (IoKind::Write, written) => IoOutcome::Written { bytes: written as usize },
            (IoKind::Sync, _) => IoOutcome::Synced,
        };
        log.complete(IoTag(tag), outcome);
        if !self.active.contains(&slot) {
            self.active.push(slot);
        }
    }

    fn drain_events(&mut self, slot: u16) {
        let Some(stream) = self.slots[slot as usize].as_mut() else { return };
        let Ok(log) = stream.log.as_mut() else { return };
        while let Some(event) = log.next_event() {
            let (first, last, failure) = match event {
                AckEvent::Acked { first_sequence, last_sequence } => (first_sequence, last_sequence, None),
                AckEvent::Refused { first_sequence, last_sequence, error } => {
                    (first_sequence, last_sequence, Some(error))
                }
            };
            while let Some(&(sequence, _, _)) = stream.waiters.front() {
                if sequence > last {
                    break;
                }
                let (sequence, reply_to, message_id) = stream.waiters.pop_front().expect("front exists");
                if sequence < first {
                    continue;
                }
                if let (Some(error), Some(window), Some(id)) = (&failure, stream.dedup.as_mut(), message_id.as_deref())
                {
                    let _ = error;
                    window.forget(id, sequence);
                }
                if failure.is_some() {
                    stream.entry.stats.refused.fetch_add(1, Ordering::Relaxed);
                }
                let Some(reply_to) = reply_to else { continue };
                self.outcomes.push(match &failure {
                    None => PublishOutcome {
                        reply_to,
                        stream: stream.name.clone(),
                        sequence,
                        duplicate: false,
                        code: 0,
                        message: String::new(),
                    },
                    Some(error) => PublishOutcome {
                        reply_to,
                        stream: stream.name.clone(),
                        sequence: 0,
                        duplicate: false,
                        code: refusal_code(error),
                        message: error.to_string(),
                    },
                });
            }
        }
        self.publish_stats(slot);
    }

    fn publish_stats(&self, slot: u16) {
        let Some(stream) = self.slots[slot as usize].as_ref() else { return };
        let Ok(log) = stream.log.as_ref() else { return };
        let info = log.info();
        let stats = &stream.entry.stats;
        stats.messages.store(info.messages, Ordering::Relaxed);
        stats.bytes.store(info.bytes, Ordering::Relaxed);
        stats.first_sequence.store(info.first_sequence, Ordering::Relaxed);
        stats.last_sequence.store(info.last_sequence, Ordering::Relaxed);
        stats.commits.store(info.commits, Ordering::Relaxed);
        stats.set_status(match &info.state {
            LogState::Healthy => "",
            LogState::DiskFull { .. } => "disk full",
            LogState::Failed { reason } => reason,
            _ => "unavailable",
        });
    }

    /// Advances every log's clock (interval syncs, age retention) at most
    /// every `LOG_TICK_INTERVAL`.
    pub fn tick(&mut self) {
        let now_ns = wall_clock_ns();
        if now_ns.saturating_sub(self.last_tick_ns) < LOG_TICK_INTERVAL.as_nanos() as u64 {
            return;
        }
        self.last_tick_ns = now_ns;
        for slot in 0..self.slots.len() {
            let Some(stream) = self.slots[slot].as_mut() else { continue };
            let Ok(log) = stream.log.as_mut() else { continue };
            log.tick(&mut self.disk, now_ns);
            if !stream.consumers.is_empty() {
                stream.entry.stats.set_consumer_stats(stream.consumers.stats(log.info().last_sequence));
            }
            if let Some(window) = stream.dedup.as_mut() {
                window.expire(Duration::from_nanos(now_ns));
            }
            if !self.active.contains(&(slot as u16)) {
                self.active.push(slot as u16);
            }
        }
    }

    /// Answers ready since the last call.
    pub fn take_outcomes(&mut self, into: &mut Vec<PublishOutcome>) {
        into.append(&mut self.outcomes);
    }

    /// Shutdown: a final sync for every log; true once all are idle.
    pub fn flush_for_shutdown(&mut self) -> bool {
        let mut idle = true;
        for slot in 0..self.slots.len() {
            let Some(stream) = self.slots[slot].as_mut() else { continue };
            let Ok(log) = stream.log.as_mut() else { continue };
            log.request_sync();
            if !log.is_idle() {
                idle = false;
                if !self.active.contains(&(slot as u16)) {
                    self.active.push(slot as u16);
                }
            }
        }
        idle
    }

    /// Reads for consumers: up to `messages_max` acknowledged messages from
    /// `from_sequence`.
    pub fn read_batch(
        &mut self,
        id: u64,
        from_sequence: u64,
        messages_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<flit_stream::record::StoredMessage>, String> {
        let slot = *self.by_id.get(&id).ok_or_else(|| "no such stream".to_string())?;
        let stream = self.slots[slot as usize].as_ref().ok_or_else(|| "no such stream".to_string())?;
        let log = stream.log.as_ref().map_err(Clone::clone)?;
        log.read_batch(&mut self.disk as &mut dyn Disk, from_sequence, messages_max, bytes_max)
            .map_err(|error| error.to_string())
    }
}

fn disk_key(slot: u16, tag: IoTag) -> u64 {
    debug_assert!(tag.0 < 1 << TAG_BITS);
    (u64::from(slot) << TAG_BITS) | (tag.0 & ((1 << TAG_BITS) - 1))
}

fn split_disk_key(key: u64) -> (u16, u64) {
    ((key >> TAG_BITS) as u16, key & ((1 << TAG_BITS) - 1))
}
