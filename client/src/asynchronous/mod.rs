//! The async client, on tokio.
//!
//! The same operations and guarantees as the blocking [`Client`](crate::Client),
//! as async fns, through the same runtime-independent dispatcher. Frames are
//! encoded by the caller into the shared buffer. A publish leaves the writing
//! to a writer task; a call that waits for an answer (a request, a flush,
//! anything in ack mode) writes on its own task and then polls the socket
//! itself until its answer arrives, dispatching whatever else it reads; a
//! reader task reads while no call waits. See `link.rs`.
//!
//! [`AsyncClusterClient`] (`cluster.rs`) fails over between the nodes of a
//! cluster, as the blocking [`ClusterClient`](crate::ClusterClient) does.
//!
//! # Shutdown
//! [`AsyncClient::close`] flushes, then ends the connection for every clone.
//! Dropping the last clone and the last [`AsyncSubscription`] ends it without
//! the flush: the writer task closes its half and the reader task is aborted.

mod cluster;
mod io;
mod link;
mod streams;
mod subscription;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use flit_wire::Welcome;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::connection::Core;
use crate::dispatch::Statistics;
use crate::error::ClientError;
use crate::message::Message;
use crate::options::Options;

pub use cluster::{AsyncClusterClient, AsyncClusterSubscription};
pub use streams::AsyncDurablePublish;
pub use subscription::AsyncSubscription;

use io::Tokio;
use link::Link;

pub(crate) struct AsyncShared {
    link: Arc<Link>,
    reader: JoinHandle<()>,
}

impl Deref for AsyncShared {
    type Target = Link;

    fn deref(&self) -> &Link {
        &self.link
    }
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
        self.link.fail(error);
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

pub(crate) type Answer<T> = oneshot::Receiver<Result<T, ClientError>>;
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
        let link = Arc::new(Link::new(core, read_half, write_half, leftover));
        link.dispatch_leftover()?;
        let reader = tokio::spawn(link::run_reader(Arc::clone(&link)));
        tokio::spawn(link::run_writer(Arc::clone(&link)));
        Ok(AsyncClient { shared: Arc::new(AsyncShared { link, reader }) })
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
        let answer = self.encode_publish(subject, reply, headers, payload)?;
        self.sent(answer).await
    }

    /// The part of a publish that does not wait: encodes it (and registers
    /// its acknowledgement in ack mode). The caller then awaits
    /// [`AsyncClient::sent`] (backpressure, or the acknowledgement), or only
    /// wakes the writer (a cluster client sending its buffer).
    pub(crate) fn encode_publish(
        &self,
        subject: &str,
        reply: Option<&str>,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<Option<Answer<()>>, ClientError> {
        let (done, answer) = self.acknowledgement();
        self.shared.core.publish(subject, reply, headers, payload, done)?;
        Ok(answer)
    }

    /// Subscribes with a queue the caller owns (a cluster client's, which
    /// outlives this connection), without waiting: returns the id and, in ack
    /// mode, the answer to await. No guard: the caller releases the id.
    pub(crate) fn encode_subscribe(
        &self,
        pattern: &str,
        queue: Option<&str>,
        sink: mpsc::Sender<Message>,
    ) -> Result<(u64, Option<Answer<()>>), ClientError> {
        let (done, answer) = self.acknowledgement();
        let id = self.shared.core.subscribe(pattern, queue, sink, done)?;
        self.shared.wake_reader();
        self.shared.wake_writer.notify_one();
        Ok((id, answer))
    }

    /// Wakes the writer task for frames encoded without [`AsyncClient::sent`].
    pub(crate) fn wake_writer(&self) {
        self.shared.wake_writer.notify_one();
    }

    /// `Err` with the error that ended this connection, if one did.
    pub(crate) fn usable(&self) -> Result<(), ClientError> {
        self.shared.core.usable()
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
        // With a subscription the reader task must not linger (see link.rs).
        self.shared.wake_reader();
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
        let deadline = deadline_after(timeout);
        if !self.shared.core.inbox_ready() {
            let (inbox_done, inbox_answer) = oneshot::channel();
            if self.shared.core.prepare_inbox(inbox_done)? {
                self.round_trip(inbox_answer, deadline).await?;
            }
        }
        let (response, answer) = oneshot::channel();
        let request = self.shared.core.begin_request(subject, headers, payload, response)?;
        let result = self.round_trip(answer, deadline).await;
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
        self.round_trip(answer, deadline_after(timeout)).await
    }

    /// Publishes and writes at once, for a latency-bound publish (a reply).
    pub(crate) async fn publish_now(&self, subject: &str, payload: &[u8]) -> Result<(), ClientError> {
        let (done, answer) = self.acknowledgement();
        self.shared.core.publish(subject, None, &[], payload, done)?;
        match answer {
            None => {
                self.shared.write_now();
                self.shared.core.usable()
            }
            Some(answer) => self.round_trip(answer, deadline_after(self.shared.core.options.flush_timeout)).await,
        }
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

    pub(crate) async fn sent(&self, answer: Option<Answer<()>>) -> Result<(), ClientError> {
        match answer {
            None => self.shared.buffered().await,
            Some(answer) => self.round_trip(answer, deadline_after(self.shared.core.options.flush_timeout)).await,
        }
    }

    /// Writes what is buffered, then waits for `answer` until `deadline`,
    /// reading the socket meanwhile.
    async fn round_trip<T>(&self, answer: Answer<T>, deadline: Instant) -> Result<T, ClientError> {
        self.shared.write_now();
        self.shared.wait(answer, deadline).await.unwrap_or(Err(ClientError::Timeout))
    }
}

/// `now + timeout`, or as far as the clock goes.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}
