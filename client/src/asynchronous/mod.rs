//! The async client, on tokio.
//!
//! The same operations and guarantees as the blocking [`Client`](crate::Client),
//! as async fns. Frames are encoded by the caller into the shared buffer and
//! written by a writer task; a reader task dispatches what the server sends
//! through the same runtime-independent dispatcher the blocking client uses.
//!
//! # Shutdown
//! [`AsyncClient::close`] flushes, then ends the connection for every clone.
//! Dropping the last clone and the last [`AsyncSubscription`] ends it without
//! the flush: the writer task closes its half and the reader task is aborted.

mod io;
mod subscription;

use std::sync::Arc;
use std::time::Duration;

use flit_wire::Welcome;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use crate::connection::Core;
use crate::dispatch::Statistics;
use crate::error::ClientError;
use crate::message::Message;
use crate::options::Options;

pub use subscription::AsyncSubscription;

use io::Tokio;

pub(crate) struct AsyncShared {
    core: Core<Tokio>,
    wake_writer: Arc<Notify>,
    /// Notified after each write, for publishers waiting for buffer room.
    drained: Arc<Notify>,
    reader: JoinHandle<()>,
}

impl AsyncShared {
    /// After a frame was buffered: wake the writer, and if the buffer is over
    /// its bound wait until the writer has drained it (backpressure).
    async fn buffered(&self) -> Result<(), ClientError> {
        self.wake_writer.notify_one();
        loop {
            // Created before the check, so a drain between check and await is not missed.
            let drained = self.drained.notified();
            if self.core.buffered_bytes() <= self.core.options.write_buffer_bytes_max {
                return Ok(());
            }
            self.core.usable()?;
            drained.await;
        }
    }

    fn shut_down(&self, error: ClientError) {
        self.core.fail(error);
        self.wake_writer.notify_one();
        self.reader.abort();
    }
}

impl Drop for AsyncShared {
    fn drop(&mut self) {
        self.shut_down(ClientError::Closed);
    }
}

/// A connection to a flit server, for tokio. Clone it to share the connection.
#[derive(Clone)]
pub struct AsyncClient {
    shared: Arc<AsyncShared>,
}

impl std::fmt::Debug for AsyncClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("AsyncClient").field("welcome", &self.shared.core.welcome).finish_non_exhaustive()
    }
}

type Answer<T> = oneshot::Receiver<Result<T, ClientError>>;
type Done = oneshot::Sender<Result<(), ClientError>>;

impl AsyncClient {
    /// Connects with default [`Options`].
    pub async fn connect(address: impl ToSocketAddrs) -> Result<AsyncClient, ClientError> {
        AsyncClient::connect_with(address, Options::default()).await
    }

    /// Connects and completes the handshake within `options.connect_timeout`,
    /// then spawns the reader and writer tasks on the current runtime.
    pub async fn connect_with(address: impl ToSocketAddrs, options: Options) -> Result<AsyncClient, ClientError> {
        let handshake = async {
            let stream = TcpStream::connect(address).await?;
            io::connect(stream, &options).await
        };
        let (read_half, write_half, welcome, leftover) =
            tokio::time::timeout(options.connect_timeout, handshake).await.map_err(|_| ClientError::Timeout)??;
        let core = Core::<Tokio>::new(welcome, options);
        let wake_writer = Arc::new(Notify::new());
        let drained = Arc::new(Notify::new());
        let reader = tokio::spawn(io::run_reader(
            read_half,
            leftover,
            core.limits,
            Arc::clone(&core.state),
            Arc::clone(&wake_writer),
        ));
        tokio::spawn(io::run_writer(
            write_half,
            Arc::clone(&core.writer),
            Arc::clone(&core.state),
            Arc::clone(&wake_writer),
            Arc::clone(&drained),
        ));
        Ok(AsyncClient { shared: Arc::new(AsyncShared { core, wake_writer, drained, reader }) })
    }

    /// The server's Welcome: its limits and the shard this connection landed on.
    pub fn welcome(&self) -> &Welcome {
        &self.shared.core.welcome
    }

    /// What the reader dropped and delivered so far.
    pub fn statistics(&self) -> Statistics {
        self.shared.core.statistics()
    }

    /// As [`Client::check_refusals`](crate::Client::check_refusals): refusals
    /// no call has reported yet; after a [`flush`](AsyncClient::flush), every
    /// frame sent before it is covered.
    pub fn check_refusals(&self) -> Result<(), ClientError> {
        self.shared.core.check_refusals()
    }

    /// Publishes `payload` to `subject`. Returns once buffered (in ack mode:
    /// once the server accepted it).
    pub async fn publish(&self, subject: &str, payload: &[u8]) -> Result<(), ClientError> {
        self.publish_with(subject, None, &[], payload).await
    }

    /// Publishes with a reply subject and headers.
    pub async fn publish_with(
        &self,
        subject: &str,
        reply: Option<&str>,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<(), ClientError> {
        let (done, answer) = self.acknowledgement();
        self.shared.core.publish(subject, reply, headers, payload, done)?;
        self.sent(answer).await
    }

    /// Subscribes to `pattern` (`*` one token, `>` the rest).
    pub async fn subscribe(&self, pattern: &str) -> Result<AsyncSubscription, ClientError> {
        self.subscribe_inner(pattern, None).await
    }

    /// Subscribes as a member of queue group `queue`: each message goes to one member.
    pub async fn queue_subscribe(&self, pattern: &str, queue: &str) -> Result<AsyncSubscription, ClientError> {
        self.subscribe_inner(pattern, Some(queue)).await
    }

    async fn subscribe_inner(&self, pattern: &str, queue: Option<&str>) -> Result<AsyncSubscription, ClientError> {
        let (sink, receiver) = mpsc::channel(self.shared.core.options.subscription_capacity);
        let (done, answer) = self.acknowledgement();
        let id = self.shared.core.subscribe(pattern, queue, sink, done)?;
        // From here the subscription owns the id: dropping it on error unsubscribes.
        let subscription = AsyncSubscription::new(id, receiver, self.clone());
        self.sent(answer).await?;
        Ok(subscription)
    }

    pub(crate) async fn unsubscribe(&self, id: u64, after_messages: u64) -> Result<(), ClientError> {
        let (done, answer) = self.acknowledgement();
        self.shared.core.unsubscribe(id, after_messages, done)?;
        self.sent(answer).await
    }

    /// Dropped subscription: unsubscribe without waiting (Drop cannot await).
    pub(crate) fn release(&self, id: u64) {
        if self.shared.core.release(id) {
            self.shared.wake_writer.notify_one();
        }
    }

    pub(crate) fn core_error(&self) -> Option<ClientError> {
        self.shared.core.usable().err()
    }

    /// Sends a request and waits up to `timeout` for the first answer.
    /// `Err(NoResponders)` when no subscription matched `subject`;
    /// `Err(Server { .. })` at once when the server refused the request
    /// (see [`Client::request`](crate::Client::request)).
    pub async fn request(&self, subject: &str, payload: &[u8], timeout: Duration) -> Result<Message, ClientError> {
        self.request_with(subject, &[], payload, timeout).await
    }

    /// [`AsyncClient::request`] with headers.
    pub async fn request_with(
        &self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        let started = tokio::time::Instant::now();
        let (inbox_done, inbox_answer) = oneshot::channel();
        if self.shared.core.prepare_inbox(inbox_done)? {
            self.shared.wake_writer.notify_one();
            self.wait(inbox_answer, timeout).await?;
        }
        let (response, answer) = oneshot::channel();
        let request = self.shared.core.begin_request(subject, headers, payload, response)?;
        self.shared.wake_writer.notify_one();
        let result = self.wait(answer, timeout.saturating_sub(started.elapsed())).await;
        if matches!(result, Err(ClientError::Timeout)) {
            self.shared.core.cancel_request(request);
        }
        result
    }

    /// Round trip to the server within `Options::flush_timeout`. When it
    /// returns, the server has processed everything sent before, and this
    /// connection's subscriptions are visible on every shard.
    pub async fn flush(&self) -> Result<(), ClientError> {
        self.flush_timeout(self.shared.core.options.flush_timeout).await
    }

    /// Round trip to the server within `timeout`.
    pub async fn flush_timeout(&self, timeout: Duration) -> Result<(), ClientError> {
        let (done, answer) = oneshot::channel();
        self.shared.core.ping(done)?;
        self.shared.wake_writer.notify_one();
        self.wait(answer, timeout).await
    }

    /// Flushes (best effort), then ends the connection for every clone.
    pub async fn close(&self) -> Result<(), ClientError> {
        let flushed = match self.shared.core.usable() {
            Ok(()) => self.flush().await,
            Err(error) => Err(error),
        };
        self.shared.shut_down(ClientError::Closed);
        crate::error::close_result(flushed)
    }

    fn acknowledgement(&self) -> (Option<Done>, Option<Answer<()>>) {
        if !self.shared.core.options.ack_mode {
            return (None, None);
        }
        let (done, answer) = oneshot::channel();
        (Some(done), Some(answer))
    }

    async fn sent(&self, answer: Option<Answer<()>>) -> Result<(), ClientError> {
        self.shared.buffered().await?;
        match answer {
            None => Ok(()),
            Some(answer) => self.wait(answer, self.shared.core.options.flush_timeout).await,
        }
    }

    async fn wait<T>(&self, answer: Answer<T>, timeout: Duration) -> Result<T, ClientError> {
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Err(_elapsed) => Err(ClientError::Timeout),
            // Dropped unanswered only while failing: report why the connection ended.
            Ok(Err(_closed)) => Err(self.core_error().unwrap_or(ClientError::Closed)),
        }
    }
}
