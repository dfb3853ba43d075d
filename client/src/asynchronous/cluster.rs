//! The tokio client for a cluster: the failover of the blocking
//! [`ClusterClient`](crate::ClusterClient), on tasks.
//!
//! An [`AsyncClusterClient`] holds at most one [`AsyncClient`] (a connection)
//! at a time, the subscriptions the user opened (pattern, queue group and the
//! channel the user reads) and a bounded buffer of publishes made while no
//! connection is up. A supervisor task checks the connection every
//! `HEALTH_CHECK` (10 ms); once it has ended (EOF, reset, an Error frame) or
//! the server announced that it drains (Draining), the supervisor drops it
//! and connects to the next server, round robin, with the same decisions as
//! the blocking client (`failover.rs`: the server list, the user's servers
//! first and then those the servers named in Welcome; exponential backoff
//! with full jitter between failed attempts; the first attempt after a loss
//! is immediate). On the new connection it re-subscribes every open
//! subscription (the user's [`AsyncClusterSubscription`]s and their ids stay
//! the same), flushes so the interest is in place there, then sends the
//! buffered publishes in order, and only then installs the connection.
//!
//! # What is lost
//! As for the blocking client (see `blocking/cluster.rs`): requests in
//! flight when the connection ends fail with its error and are never resent;
//! publishes that returned `Ok` on the dead connection but were still in its
//! buffers or in the network; deliveries while no connection is up. While no
//! server is connected a publish is buffered up to
//! `Options::reconnect_buffer_bytes_max`, then refused with
//! [`ClientError::ReconnectBufferFull`]; requests and flushes wait for a
//! connection within their own timeout, then fail with
//! [`ClientError::NotConnected`].
//!
//! # Never awaiting under a lock
//! The locks are std mutexes, held only for work that does not wait: the
//! frames of a publish, subscribe or of the whole buffer are encoded under
//! the `link` lock (which orders publishes against the buffer), and what
//! then waits (backpressure, an acknowledgement in ack mode, a flush) is
//! awaited after the lock is released. Lock order: `link`, then
//! `subscriptions`.
//!
//! # Limits
//! `unsubscribe_after` is not offered (as in the blocking client). The
//! supervisor runs on the runtime that called
//! [`AsyncClusterClient::connect`]; it ends when the client is closed or the
//! last handle (client or subscription) is dropped.

use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{deadline_after, Answer, AsyncClient};
use crate::connection::lock;
use crate::error::ClientError;
use crate::failover::{given_servers, Attempts, Connected, Health, Link, Resubscribed, Subscriptions, HEALTH_CHECK};
use crate::framing::check_pattern;
use crate::message::Message;
use crate::options::Options;

/// A tokio client for a cluster: see the module header. Clone it to share it.
#[derive(Clone)]
pub struct AsyncClusterClient {
    shared: Arc<ClusterShared>,
}

impl std::fmt::Debug for AsyncClusterClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("AsyncClusterClient").field("servers", &self.servers()).finish_non_exhaustive()
    }
}

struct ClusterShared {
    options: Options,
    link: Mutex<Link<AsyncClient>>,
    /// Notified when a connection is installed or the client closes.
    changed: Notify,
    subscriptions: Mutex<Subscriptions<mpsc::Sender<Message>>>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for ClusterShared {
    fn drop(&mut self) {
        if let Some(supervisor) = lock(&self.supervisor).take() {
            supervisor.abort();
        }
    }
}

impl Connected for AsyncClient {
    fn usable(&self) -> Result<(), ClientError> {
        AsyncClient::usable(self)
    }

    fn draining(&self) -> bool {
        self.statistics().server_draining_within_ms.is_some()
    }

    fn welcome(&self) -> &flit_wire::Welcome {
        AsyncClient::welcome(self)
    }
}

impl AsyncClient {
    /// Connects to the first of `servers` that answers and fails over to the
    /// others when the connection is lost. See [`AsyncClusterClient`].
    pub async fn connect_cluster<A: std::fmt::Display>(
        servers: &[A],
        options: Options,
    ) -> Result<AsyncClusterClient, ClientError> {
        AsyncClusterClient::connect(servers, options).await
    }
}

impl AsyncClusterClient {
    /// Connects to the first of `servers` (`host:port`) that answers, trying
    /// them in order, each within `options.connect_timeout`; `Err` with the
    /// last error if none does. Then spawns the supervisor on the current
    /// runtime; the other nodes the server names in its Welcome are added to
    /// the list (after these; see [`Options::ignore_discovered_servers`]).
    pub async fn connect<A: std::fmt::Display>(
        servers: &[A],
        options: Options,
    ) -> Result<AsyncClusterClient, ClientError> {
        let servers = given_servers(servers, &options)?;
        let mut last_error = ClientError::NotConnected;
        let mut connected = None;
        for index in 0..servers.len() {
            match AsyncClient::connect_with(servers.get(index), options.clone()).await {
                Ok(client) => {
                    connected = Some((index, client));
                    break;
                }
                Err(error) => last_error = error,
            }
        }
        let Some((index, client)) = connected else { return Err(last_error) };
        let link = Link::first(client, servers, index);
        let shared = Arc::new(ClusterShared {
            options,
            link: Mutex::new(link),
            changed: Notify::new(),
            subscriptions: Mutex::new(Subscriptions::default()),
            supervisor: Mutex::new(None),
        });
        let supervisor = tokio::spawn(supervise(Arc::downgrade(&shared)));
        *lock(&shared.supervisor) = Some(supervisor);
        Ok(AsyncClusterClient { shared })
    }

    /// The server connected now (`None` while reconnecting, or once the
    /// connection ended and before the supervisor replaced it).
    pub fn connected_server(&self) -> Option<String> {
        lock(&self.shared.link).connected_server()
    }

    /// The servers this client fails over to, in the order it tries them:
    /// the given ones, then those the servers named in their Welcomes.
    pub fn servers(&self) -> Vec<String> {
        lock(&self.shared.link).servers.to_vec()
    }

    /// How many times the client reconnected after a loss.
    pub fn reconnects(&self) -> u64 {
        lock(&self.shared.link).reconnects
    }

    /// Bytes of publishes waiting for a connection.
    pub fn buffered_bytes(&self) -> usize {
        lock(&self.shared.link).buffer.bytes()
    }

    /// Publishes `payload` to `subject`. While reconnecting the publish is
    /// buffered (sent in order after the reconnect), or refused with
    /// [`ClientError::ReconnectBufferFull`] once the buffer is full.
    pub async fn publish(&self, subject: &str, payload: &[u8]) -> Result<(), ClientError> {
        self.publish_with(subject, None, &[], payload).await
    }

    /// [`AsyncClusterClient::publish`] with a reply subject and headers.
    pub async fn publish_with(
        &self,
        subject: &str,
        reply: Option<&str>,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<(), ClientError> {
        let sent = {
            let mut link = lock(&self.shared.link);
            if link.closed {
                return Err(ClientError::Closed);
            }
            let encoded = link
                .client
                .as_ref()
                .map(|client| (client.clone(), client.encode_publish(subject, reply, headers, payload)));
            match encoded {
                Some((client, Ok(answer))) => Some((client, answer)),
                Some((_, Err(error))) if !error.is_fatal() => return Err(error),
                // No connection, or it just ended: the supervisor replaces it; buffer.
                _ => {
                    let limit_bytes = self.shared.options.reconnect_buffer_bytes_max;
                    return link.buffer.push(subject, reply, headers, payload, limit_bytes);
                }
            }
        };
        match sent {
            Some((client, answer)) => client.sent(answer).await,
            None => Ok(()),
        }
    }

    /// Subscribes to `pattern`; the subscription survives failovers.
    pub async fn subscribe(&self, pattern: &str) -> Result<AsyncClusterSubscription, ClientError> {
        self.subscribe_inner(pattern, None).await
    }

    /// Subscribes as a member of queue group `queue`; survives failovers.
    pub async fn queue_subscribe(&self, pattern: &str, queue: &str) -> Result<AsyncClusterSubscription, ClientError> {
        self.subscribe_inner(pattern, Some(queue)).await
    }

    async fn subscribe_inner(
        &self,
        pattern: &str,
        queue: Option<&str>,
    ) -> Result<AsyncClusterSubscription, ClientError> {
        check_pattern(pattern)?;
        let (sink, receiver) = mpsc::channel(self.shared.options.subscription_capacity);
        let (id, pending) = {
            let link = lock(&self.shared.link);
            if link.closed {
                return Err(ClientError::Closed);
            }
            let mut inner = None;
            let mut pending = None;
            if let Some(client) = &link.client {
                match client.encode_subscribe(pattern, queue, sink.clone()) {
                    Ok((inner_id, answer)) => {
                        inner = Some((link.generation, inner_id));
                        pending = Some((client.clone(), answer));
                    }
                    Err(error) if !error.is_fatal() => return Err(error),
                    // Subscribed on the next connection by the supervisor.
                    Err(_) => {}
                }
            }
            let id = lock(&self.shared.subscriptions).add(pattern, queue, sink, inner);
            (id, pending)
        };
        // From here the subscription owns the entry: dropping it unsubscribes.
        let subscription = AsyncClusterSubscription { id, receiver, shared: Arc::clone(&self.shared) };
        if let Some((client, answer)) = pending {
            match client.sent(answer).await {
                // Refused by this server (ack mode): as a plain client, an error.
                Err(error) if !error.is_fatal() => return Err(error),
                // The connection ended: the supervisor subscribes it again.
                Ok(()) | Err(_) => {}
            }
        }
        Ok(subscription)
    }

    /// Sends a request on the current connection, waiting for one (within
    /// `timeout`) while reconnecting. A request in flight when the connection
    /// ends fails with that connection's error; it is not resent.
    pub async fn request(&self, subject: &str, payload: &[u8], timeout: Duration) -> Result<Message, ClientError> {
        self.request_with(subject, &[], payload, timeout).await
    }

    /// [`AsyncClusterClient::request`] with headers.
    pub async fn request_with(
        &self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        let deadline = deadline_after(timeout);
        let client = self.shared.connected_within(deadline).await?;
        client.request_with(subject, headers, payload, left(deadline)).await
    }

    /// Round trip to the current server within `Options::flush_timeout`,
    /// waiting for a connection while reconnecting (inside the same bound).
    /// After it returns `Ok`, the publish buffer has been sent.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let deadline = deadline_after(self.shared.options.flush_timeout);
        let client = self.shared.connected_within(deadline).await?;
        client.flush_timeout(left(deadline)).await
    }

    /// [`AsyncClient::check_refusals`] on the current connection (`Ok` while
    /// reconnecting: refusals of a connection that ended are lost with it).
    pub fn check_refusals(&self) -> Result<(), ClientError> {
        let client = lock(&self.shared.link).client.clone();
        client.map_or(Ok(()), |client| client.check_refusals())
    }

    /// Stops reconnecting, flushes the current connection (best effort) and
    /// closes it; buffered publishes are dropped; subscriptions end.
    pub async fn close(&self) -> Result<(), ClientError> {
        let client = {
            let mut link = lock(&self.shared.link);
            lock(&self.shared.subscriptions).clear();
            link.close()
        };
        self.shared.changed.notify_waiters();
        if let Some(supervisor) = lock(&self.shared.supervisor).take() {
            supervisor.abort();
        }
        match client {
            Some(client) => client.close().await,
            None => Ok(()),
        }
    }
}

/// The time until `deadline` (zero once it passed).
fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

impl ClusterShared {
    /// The current connection, waiting for one until `deadline`.
    async fn connected_within(&self, deadline: Instant) -> Result<AsyncClient, ClientError> {
        loop {
            // Created before the check, so an install in between is not missed.
            let changed = self.changed.notified();
            if let Some(client) = lock(&self.link).usable_client()? {
                return Ok(client);
            }
            let wait = left(deadline);
            if wait.is_zero() {
                return Err(ClientError::NotConnected);
            }
            // Nobody notifies when the supervisor takes a dead connection out.
            let _ = tokio::time::timeout(wait.min(HEALTH_CHECK), changed).await;
        }
    }

    /// The connection's health; one that ended or drains is taken out (and
    /// closes once a call in flight on it lets go of it).
    fn health(&self) -> Health<AsyncClient> {
        lock(&self.link).health()
    }

    /// One reconnect attempt to `servers[index]`: connect, re-subscribe,
    /// flush, send the buffer, install. `Err`: try the next server later.
    async fn reconnect(&self, index: usize) -> Result<(), ClientError> {
        let server = lock(&self.link).servers.get(index).to_owned();
        let client = AsyncClient::connect_with(server.as_str(), self.options.clone()).await?;
        let generation = lock(&self.link).next_generation();
        let mut subscribed = self.resubscribe(&client, generation)?;
        for (_, _, answer) in &mut subscribed {
            match client.sent(answer.take()).await {
                Err(error) if error.is_fatal() => return Err(error),
                // Refused by this server (ack mode): kept without interest
                // here, as in the blocking client; the next connection tries again.
                Ok(()) | Err(_) => {}
            }
        }
        client.flush().await?;
        self.install(&mut lock(&self.link), client, &server, index, generation, &subscribed)?;
        self.changed.notify_waiters();
        Ok(())
    }

    /// Under the `link` lock, with nothing awaited: subscribes what was
    /// opened since `resubscribe` (in ack mode without awaiting the answers:
    /// a refusal shows in `check_refusals`), releases what was closed,
    /// encodes the buffered publishes in order (their acknowledgements are
    /// not awaited: their callers returned long ago; the write buffer may pass
    /// its bound by the publish buffer's for a moment), and installs `client`.
    fn install(
        &self,
        link: &mut Link<AsyncClient>,
        client: AsyncClient,
        server: &str,
        index: usize,
        generation: u64,
        subscribed: &[(u64, u64, Option<Answer<()>>)],
    ) -> Result<(), ClientError> {
        if link.closed {
            return Err(ClientError::Closed);
        }
        self.resubscribe(&client, generation)?;
        for inner_id in lock(&self.subscriptions).closed_since(subscribed) {
            client.release(inner_id);
        }
        link.buffer.send_all(|publish| {
            client
                .encode_publish(&publish.subject, publish.reply.as_deref(), &publish.headers(), &publish.payload)
                .map(drop)
        })?;
        client.wake_writer();
        link.install(client, server, index, generation);
        Ok(())
    }

    /// Encodes a Subscribe on `client` for every subscription not yet on
    /// `generation`; returns `(id, server-side id, acknowledgement)` of those.
    fn resubscribe(
        &self,
        client: &AsyncClient,
        generation: u64,
    ) -> Result<Resubscribed<Option<Answer<()>>>, ClientError> {
        lock(&self.subscriptions)
            .resubscribe(generation, |pattern, queue, sink| client.encode_subscribe(pattern, queue, sink))
    }

    fn unsubscribe(&self, id: u64) {
        let link = lock(&self.link);
        let inner = lock(&self.subscriptions).remove(id);
        if let Some((client, inner_id)) = link.holding(inner) {
            client.release(inner_id);
        }
    }
}

/// The supervisor task's body: it holds the client only while it works, so
/// dropping the last handle ends it.
async fn supervise(weak: Weak<ClusterShared>) {
    let mut attempts = Attempts::default();
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let wait = match shared.health() {
            Health::Closed => return,
            Health::Healthy => HEALTH_CHECK,
            Health::Lost { from, lost } => {
                drop(lost);
                let servers = lock(&shared.link).servers.len();
                let index = attempts.target(from, servers);
                attempts.settle(index, servers, shared.reconnect(index).await.is_ok(), &shared.options)
            }
        };
        drop(shared);
        // `close` aborts this task, so closing never waits out a backoff.
        tokio::time::sleep(wait).await;
    }
}

/// Messages for one subscription of an [`AsyncClusterClient`]; it survives
/// failovers (see the module header for the gap). Dropping it unsubscribes.
/// Also a `futures_core::Stream` of messages.
pub struct AsyncClusterSubscription {
    id: u64,
    receiver: mpsc::Receiver<Message>,
    shared: Arc<ClusterShared>,
}

impl std::fmt::Debug for AsyncClusterSubscription {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("AsyncClusterSubscription").field("id", &self.id).finish_non_exhaustive()
    }
}

impl AsyncClusterSubscription {
    /// This client's id for the subscription; the same across failovers.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next message; `None` once the subscription (or the client) is
    /// closed and drained.
    pub async fn next(&mut self) -> Option<Message> {
        self.receiver.recv().await
    }

    /// Waits up to `timeout`. `Ok(None)`: no message in time. `Err`: the
    /// subscription (or the client) is closed and drained.
    pub async fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Message>, ClientError> {
        match tokio::time::timeout(timeout, self.receiver.recv()).await {
            Ok(Some(message)) => Ok(Some(message)),
            Err(_elapsed) => Ok(None),
            Ok(None) => Err(ClientError::SubscriptionClosed),
        }
    }

    /// Stops the subscription now. Messages already received stay readable.
    pub fn unsubscribe(&self) {
        self.shared.unsubscribe(self.id);
    }
}

impl futures_core::Stream for AsyncClusterSubscription {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Message>> {
        self.receiver.poll_recv(context)
    }
}

impl Drop for AsyncClusterSubscription {
    fn drop(&mut self) {
        self.shared.unsubscribe(self.id);
    }
}
