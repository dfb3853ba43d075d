//! Durable streams on the blocking [`Client`] (protocol version 2): durable
//! publishes, stream and consumer administration, fetches and acks.
//!
//! Each call that waits writes its frame and reads its own answer on the
//! calling thread, as a request does (see `shared.rs`): no other thread is
//! woken on the way. A call that gives up (its deadline passed) forgets its
//! tag, so a late answer is counted in
//! [`Statistics::unmatched_stream_frames`](crate::Statistics) and dropped.
//!
//! [`Client::publish_durable_pipelined`] is the form for many publishes in
//! flight: it returns a [`DurablePublish`] at once, whose
//! [`wait`](DurablePublish::wait) returns the stream's answer later. The
//! answers come back in any order; waiting on the handles in publish order
//! gives them in publish order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flit_wire::stream::{StreamCommand, StreamReply};

use super::io::{slot, Slot};
use super::{deadline_after, Client};
use crate::error::ClientError;
use crate::stream::{
    consumer_of, first_stream, AckKind, ConsumerConfigSpec, ConsumerInfo, PublishAcked, StreamConfigSpec, StreamInfo,
    StreamMessage,
};

/// A durable publish in flight, from [`Client::publish_durable_pipelined`].
/// Dropping it unanswered is fine: the answer is then discarded.
#[must_use = "a durable publish is only known to be stored once its handle's wait returns Ok"]
pub struct DurablePublish {
    client: Client,
    answer: Arc<Slot<PublishAcked>>,
    ack_id: u64,
}

impl std::fmt::Debug for DurablePublish {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("DurablePublish").field("ack_id", &self.ack_id).finish_non_exhaustive()
    }
}

impl DurablePublish {
    /// The Publish frame's ack id (its tag on the wire).
    pub fn ack_id(&self) -> u64 {
        self.ack_id
    }

    /// Whether the answer (stored, refused, or the connection's end) has
    /// arrived, so that [`DurablePublish::wait`] returns at once. Reads
    /// nothing itself: the client's background thread reads while nobody waits.
    pub fn is_answered(&self) -> bool {
        self.answer.is_answered()
    }

    /// Waits up to `Options::flush_timeout` for the answer.
    pub fn wait(self) -> Result<PublishAcked, ClientError> {
        let timeout = self.client.shared.core.options.flush_timeout;
        self.wait_timeout(timeout)
    }

    /// Waits up to `timeout` for the answer, reading the socket on this
    /// thread meanwhile. `Err(Timeout)`: no answer yet; the handle is spent
    /// and a late answer is dropped.
    pub fn wait_timeout(self, timeout: Duration) -> Result<PublishAcked, ClientError> {
        // The thread that waits may not be the one that published.
        self.answer.rebind();
        let deadline = deadline_after(timeout);
        let core = &self.client.shared.core;
        self.client.answer_or_cancel(&self.answer, deadline, || core.cancel_durable_publish(self.ack_id))
    }
}

impl Client {
    /// Publishes `payload` to `subject` for a stream to store, and waits (up
    /// to `Options::flush_timeout`) until it did: under durability `always`,
    /// after the fdatasync that covers it. Core subscribers receive it as
    /// any publish. `Err(Stream { code: 404, .. })` when no stream captures
    /// `subject`; other stream codes for a stream that refuses it (413, 429,
    /// 503, 507). Needs protocol version 2.
    pub fn publish_durable(&self, subject: &str, payload: &[u8]) -> Result<PublishAcked, ClientError> {
        self.publish_durable_with(subject, &[], payload)
    }

    /// [`Client::publish_durable`] with headers, e.g.
    /// [`MESSAGE_ID_HEADER`](crate::stream::MESSAGE_ID_HEADER) for deduplication.
    pub fn publish_durable_with(
        &self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<PublishAcked, ClientError> {
        let (done, answer) = slot();
        let ack_id = self.shared.core.durable_publish(subject, headers, payload, done)?;
        let deadline = deadline_after(self.shared.core.options.flush_timeout);
        let core = &self.shared.core;
        self.answer_or_cancel(&answer, deadline, || core.cancel_durable_publish(ack_id))
    }

    /// Sends a durable publish and returns without waiting for the stream:
    /// the frame leaves with the next write (the flusher thread's, or any
    /// waiting call's), and the handle's [`wait`](DurablePublish::wait)
    /// returns the answer. Keeps many publishes in flight on one connection;
    /// the stream stores them in the order sent. Bounded by
    /// `Options::write_buffer_bytes_max` like [`Client::publish`], not by the
    /// number in flight: the caller bounds that.
    pub fn publish_durable_pipelined(
        &self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<DurablePublish, ClientError> {
        let (done, answer) = slot();
        let ack_id = self.shared.core.durable_publish(subject, headers, payload, done)?;
        self.shared.buffered()?;
        Ok(DurablePublish { client: self.clone(), answer, ack_id })
    }

    /// Creates a stream (needs the `streams_admin` permission on a server
    /// with identities). The same configuration again is fine and answers
    /// the stream as it is; a different one under the same name is
    /// `Err(Stream { code: 409, .. })`.
    pub fn stream_add(&self, config: StreamConfigSpec) -> Result<StreamInfo, ClientError> {
        let reply = self.stream_call(StreamCommand::Add(config))?;
        first_stream(reply)
    }

    /// Deletes a stream: its messages and consumers (`streams_admin`).
    pub fn stream_remove(&self, stream: &str) -> Result<(), ClientError> {
        self.stream_call(StreamCommand::Remove { stream: stream.to_owned() }).map(drop)
    }

    /// A stream's configuration, counts and status.
    pub fn stream_info(&self, stream: &str) -> Result<StreamInfo, ClientError> {
        first_stream(self.stream_call(StreamCommand::Info { stream: stream.to_owned() })?)
    }

    /// Every stream, by name; asks for as many pages as the server needs.
    pub fn stream_list(&self) -> Result<Vec<StreamInfo>, ClientError> {
        let mut streams = Vec::new();
        let mut after = None;
        loop {
            let reply = self.stream_call(StreamCommand::List { after })?;
            let more = reply.streams_omitted > 0 && !reply.streams.is_empty();
            streams.extend(reply.streams);
            if !more {
                return Ok(streams);
            }
            after = streams.last().map(|stream| stream.config.name.clone());
        }
    }

    /// Creates a consumer on `stream`, or returns the durable one of the
    /// same name and configuration. `config.name` `None`: an ephemeral
    /// consumer, whose server-chosen name is in the answer's `config.name`.
    pub fn consumer_add(&self, stream: &str, config: ConsumerConfigSpec) -> Result<ConsumerInfo, ClientError> {
        let command = StreamCommand::ConsumerAdd { stream: stream.to_owned(), config };
        consumer_of(self.stream_call(command)?)
    }

    pub fn consumer_remove(&self, stream: &str, consumer: &str) -> Result<(), ClientError> {
        let command = StreamCommand::ConsumerRemove { stream: stream.to_owned(), consumer: consumer.to_owned() };
        self.stream_call(command).map(drop)
    }

    /// A consumer's configuration and position (delivered, ack floor, pending, lag).
    pub fn consumer_info(&self, stream: &str, consumer: &str) -> Result<ConsumerInfo, ClientError> {
        let command = StreamCommand::ConsumerInfo { stream: stream.to_owned(), consumer: consumer.to_owned() };
        consumer_of(self.stream_call(command)?)
    }

    /// Fetches up to `batch` messages for `consumer`, waiting up to `wait`
    /// on the server for the batch to fill; fewer (none included) when the
    /// wait runs out. Several clients fetching from one durable consumer
    /// share its messages (a work queue). An explicit-ack consumer expects an
    /// [`ack`](Client::ack) for each, or delivers it again after its ack wait.
    pub fn fetch(
        &self,
        stream: &str,
        consumer: &str,
        batch: u32,
        wait: Duration,
    ) -> Result<Vec<StreamMessage>, ClientError> {
        let wait_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        let (done, answer) = slot();
        let request_id = self.shared.core.fetch(stream, consumer, batch, wait_ms, done)?;
        // The server closes the fetch when its wait runs out; allow a round trip more.
        let deadline = deadline_after(wait.saturating_add(self.shared.core.options.flush_timeout));
        let core = &self.shared.core;
        self.answer_or_cancel(&answer, deadline, || core.cancel_stream_request(request_id))
    }

    /// The consumer's messages as an iterator that fetches batches of up
    /// to `batch`, each waiting up to `wait`, as it runs dry: it blocks
    /// until a message comes and never ends by itself (bound it with
    /// `take`, or stop at an `Err`: a lost connection or a refusal).
    pub fn messages<'client>(
        &'client self,
        stream: &str,
        consumer: &str,
        batch: u32,
        wait: Duration,
    ) -> Messages<'client> {
        Messages {
            client: self,
            stream: stream.to_string(),
            consumer: consumer.to_string(),
            batch,
            wait,
            buffered: std::collections::VecDeque::new(),
        }
    }

    /// Acknowledges (or naks, terms, extends) delivery `sequence` of
    /// `consumer`, and waits until the server saved the consumer's state
    /// that includes it: an acknowledged ack survives a crash.
    pub fn ack(&self, stream: &str, consumer: &str, sequence: u64, kind: AckKind) -> Result<(), ClientError> {
        let (done, answer) = slot();
        let request_id = self.shared.core.ack(stream, consumer, sequence, kind, Some(done))?;
        let deadline = deadline_after(self.shared.core.options.flush_timeout);
        let core = &self.shared.core;
        self.answer_or_cancel(&answer, deadline, || core.cancel_stream_request(request_id)).map(drop)
    }

    /// [`Client::ack`] without waiting: nothing answers it (an ack for an
    /// unknown consumer is ignored by the server), and it leaves with the
    /// next write.
    pub fn ack_no_wait(&self, stream: &str, consumer: &str, sequence: u64, kind: AckKind) -> Result<(), ClientError> {
        self.shared.core.ack(stream, consumer, sequence, kind, None)?;
        self.shared.buffered()
    }

    /// Sends a StreamRequest and waits up to `Options::flush_timeout` for its reply.
    fn stream_call(&self, command: StreamCommand) -> Result<StreamReply, ClientError> {
        let (done, answer) = slot();
        let request_id = self.shared.core.stream_request(command, done)?;
        let deadline = deadline_after(self.shared.core.options.flush_timeout);
        let core = &self.shared.core;
        self.answer_or_cancel(&answer, deadline, || core.cancel_stream_request(request_id))
    }

    /// Writes out and waits for `answer` until `deadline`; past it, `cancel`
    /// forgets the tag, and an answer that came meanwhile still counts.
    fn answer_or_cancel<T>(
        &self,
        answer: &Slot<T>,
        deadline: Instant,
        cancel: impl FnOnce(),
    ) -> Result<T, ClientError> {
        match self.round_trip(answer, deadline) {
            Some(result) => result,
            None => {
                cancel();
                answer.take().unwrap_or(Err(ClientError::Timeout))
            }
        }
    }
}

/// A pull consumer's messages, fetched in batches as they are needed
/// ([`Client::messages`]).
#[derive(Debug)]
pub struct Messages<'client> {
    client: &'client Client,
    stream: String,
    consumer: String,
    batch: u32,
    wait: Duration,
    buffered: std::collections::VecDeque<StreamMessage>,
}

impl Iterator for Messages<'_> {
    type Item = Result<StreamMessage, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.buffered.is_empty() {
            match self.client.fetch(&self.stream, &self.consumer, self.batch, self.wait) {
                Ok(batch) => self.buffered.extend(batch),
                Err(error) => return Some(Err(error)),
            }
        }
        self.buffered.pop_front().map(Ok)
    }
}
