//! Durable streams on the tokio [`AsyncClient`] (protocol version 2): the
//! same calls as the blocking client's (`blocking/streams.rs`), as async
//! fns. A call that waits polls the socket on its own task until its answer
//! is there (see `link.rs`); one that gives up, or whose future is dropped,
//! forgets its tag, so a late answer is counted and dropped.

use std::time::Duration;

use flit_wire::stream::{StreamCommand, StreamReply};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{deadline_after, Answer, AsyncClient};
use crate::error::ClientError;
use crate::stream::{
    consumer_of, first_stream, AckKind, ConsumerConfigSpec, ConsumerInfo, PublishAcked, StreamConfigSpec, StreamInfo,
    StreamMessage,
};

/// A durable publish in flight, from [`AsyncClient::publish_durable_pipelined`].
/// Dropping it unanswered is fine: the answer is then discarded.
#[must_use = "a durable publish is only known to be stored once its handle's wait returns Ok"]
pub struct AsyncDurablePublish {
    client: AsyncClient,
    answer: Answer<PublishAcked>,
    ack_id: u64,
}

impl std::fmt::Debug for AsyncDurablePublish {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("AsyncDurablePublish").field("ack_id", &self.ack_id).finish_non_exhaustive()
    }
}

impl AsyncDurablePublish {
    /// The Publish frame's ack id (its tag on the wire).
    pub fn ack_id(&self) -> u64 {
        self.ack_id
    }

    /// Waits up to `Options::flush_timeout` for the answer.
    pub async fn wait(self) -> Result<PublishAcked, ClientError> {
        let timeout = self.client.shared.core.options.flush_timeout;
        self.wait_timeout(timeout).await
    }

    /// Waits up to `timeout` for the answer. `Err(Timeout)`: no answer yet;
    /// the handle is spent and a late answer is dropped.
    pub async fn wait_timeout(self, timeout: Duration) -> Result<PublishAcked, ClientError> {
        let AsyncDurablePublish { client, answer, ack_id } = self;
        let forget = Forget { client: &client, tag: ack_id, publish: true };
        forget.finish(client.round_trip(answer, deadline_after(timeout)).await)
    }
}

/// Forgets a tag unless the wait it guards finished: a timed-out or
/// cancelled (dropped) call must not leave its waiter registered.
struct Forget<'a> {
    client: &'a AsyncClient,
    tag: u64,
    publish: bool,
}

impl Forget<'_> {
    /// The wait finished with `result`: forget the tag only if it timed out.
    fn finish<T>(self, result: Result<T, ClientError>) -> Result<T, ClientError> {
        if !matches!(result, Err(ClientError::Timeout)) {
            std::mem::forget(self);
        }
        result
    }
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let core = &self.client.shared.core;
        if self.publish {
            core.cancel_durable_publish(self.tag);
        } else {
            core.cancel_stream_request(self.tag);
        }
    }
}

impl AsyncClient {
    /// As [`Client::publish_durable`](crate::Client::publish_durable):
    /// returns once a stream stored the message (or refused it).
    pub async fn publish_durable(&self, subject: &str, payload: &[u8]) -> Result<PublishAcked, ClientError> {
        self.publish_durable_with(subject, &[], payload).await
    }

    /// [`AsyncClient::publish_durable`] with headers (e.g. `Flit-Msg-Id`).
    pub async fn publish_durable_with(
        &self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<PublishAcked, ClientError> {
        let (done, answer) = oneshot::channel();
        let ack_id = self.shared.core.durable_publish(subject, headers, payload, done)?;
        let forget = Forget { client: self, tag: ack_id, publish: true };
        forget.finish(self.round_trip(answer, self.call_deadline()).await)
    }

    /// As [`Client::publish_durable_pipelined`](crate::Client::publish_durable_pipelined):
    /// sends (the writer task writes it) and returns a handle to wait on later.
    pub async fn publish_durable_pipelined(
        &self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<AsyncDurablePublish, ClientError> {
        let (done, answer) = oneshot::channel();
        let ack_id = self.shared.core.durable_publish(subject, headers, payload, done)?;
        let handle = AsyncDurablePublish { client: self.clone(), answer, ack_id };
        self.shared.buffered().await?;
        Ok(handle)
    }

    /// As [`Client::stream_add`](crate::Client::stream_add).
    pub async fn stream_add(&self, config: StreamConfigSpec) -> Result<StreamInfo, ClientError> {
        first_stream(self.stream_call(StreamCommand::Add(config)).await?)
    }

    pub async fn stream_remove(&self, stream: &str) -> Result<(), ClientError> {
        self.stream_call(StreamCommand::Remove { stream: stream.to_owned() }).await.map(drop)
    }

    pub async fn stream_info(&self, stream: &str) -> Result<StreamInfo, ClientError> {
        first_stream(self.stream_call(StreamCommand::Info { stream: stream.to_owned() }).await?)
    }

    /// Every stream, by name, over as many pages as the server needs.
    pub async fn stream_list(&self) -> Result<Vec<StreamInfo>, ClientError> {
        let mut streams = Vec::new();
        let mut after = None;
        loop {
            let reply = self.stream_call(StreamCommand::List { after }).await?;
            let more = reply.streams_omitted > 0 && !reply.streams.is_empty();
            streams.extend(reply.streams);
            if !more {
                return Ok(streams);
            }
            after = streams.last().map(|stream: &StreamInfo| stream.config.name.clone());
        }
    }

    /// As [`Client::consumer_add`](crate::Client::consumer_add).
    pub async fn consumer_add(&self, stream: &str, config: ConsumerConfigSpec) -> Result<ConsumerInfo, ClientError> {
        let command = StreamCommand::ConsumerAdd { stream: stream.to_owned(), config };
        consumer_of(self.stream_call(command).await?)
    }

    pub async fn consumer_remove(&self, stream: &str, consumer: &str) -> Result<(), ClientError> {
        let command = StreamCommand::ConsumerRemove { stream: stream.to_owned(), consumer: consumer.to_owned() };
        self.stream_call(command).await.map(drop)
    }

    pub async fn consumer_info(&self, stream: &str, consumer: &str) -> Result<ConsumerInfo, ClientError> {
        let command = StreamCommand::ConsumerInfo { stream: stream.to_owned(), consumer: consumer.to_owned() };
        consumer_of(self.stream_call(command).await?)
    }

    /// As [`Client::fetch`](crate::Client::fetch).
    pub async fn fetch(
        &self,
        stream: &str,
        consumer: &str,
        batch: u32,
        wait: Duration,
    ) -> Result<Vec<StreamMessage>, ClientError> {
        let wait_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        let (done, answer) = oneshot::channel();
        let request_id = self.shared.core.fetch(stream, consumer, batch, wait_ms, done)?;
        let forget = Forget { client: self, tag: request_id, publish: false };
        let deadline = deadline_after(wait.saturating_add(self.shared.core.options.flush_timeout));
        forget.finish(self.round_trip(answer, deadline).await)
    }

    /// As [`Client::ack`](crate::Client::ack): waits until the server saved it.
    pub async fn ack(&self, stream: &str, consumer: &str, sequence: u64, kind: AckKind) -> Result<(), ClientError> {
        let (done, answer) = oneshot::channel();
        let request_id = self.shared.core.ack(stream, consumer, sequence, kind, Some(done))?;
        let forget = Forget { client: self, tag: request_id, publish: false };
        forget.finish(self.round_trip(answer, self.call_deadline()).await).map(drop)
    }

    /// As [`Client::ack_no_wait`](crate::Client::ack_no_wait).
    pub async fn ack_no_wait(
        &self,
        stream: &str,
        consumer: &str,
        sequence: u64,
        kind: AckKind,
    ) -> Result<(), ClientError> {
        self.shared.core.ack(stream, consumer, sequence, kind, None)?;
        self.shared.buffered().await
    }

    async fn stream_call(&self, command: StreamCommand) -> Result<StreamReply, ClientError> {
        let (done, answer) = oneshot::channel();
        let request_id = self.shared.core.stream_request(command, done)?;
        let forget = Forget { client: self, tag: request_id, publish: false };
        forget.finish(self.round_trip(answer, self.call_deadline()).await)
    }

    fn call_deadline(&self) -> Instant {
        deadline_after(self.shared.core.options.flush_timeout)
    }
}
