//! A blocking client that knows several servers of one cluster and fails over.
//!
//! A [`ClusterClient`] holds at most one [`Client`] (a connection) at a time,
//! the subscriptions the user opened (pattern, queue group and the queue the
//! user reads), and a bounded buffer of publishes made while no connection is
//! up. A supervisor thread checks the connection every `HEALTH_CHECK`; once
//! it has ended (EOF, reset, an Error frame) or the server announced that it
//! drains (a Draining frame), the supervisor drops it and connects to the next
//! server of the list (the given servers, then the other nodes the servers
//! named in their Welcomes), round robin, waiting between failed attempts with
//! exponential backoff and full jitter (`Options::reconnect_delay_min` doubling
//! to `reconnect_delay_max`; the first attempt after a loss is immediate). On
//! the new connection it re-subscribes every open subscription (the user's
//! queues and [`ClusterSubscription::id`]s stay the same; the server-side ids
//! are new), flushes so that the interest is in place on the new node (and,
//! a round trip of the routes later, on the others), then sends the buffered
//! publishes in order, and only then lets publishers through again.
//!
//! # What is lost
//! At most once, as without failover:
//! - Requests in flight when the connection ends fail with the error that
//!   ended it ([`ClientError::Disconnected`], [`ClientError::Io`]); they are
//!   never resent (the responder may have run). A request made while no
//!   connection is up waits for one within its timeout, then fails with
//!   [`ClientError::NotConnected`].
//! - Publishes that returned `Ok` and were still in the dead connection's
//!   buffers or in the network; messages delivered by the server while no
//!   connection was up, or before the new node learned the interest.
//! - Publishes beyond `Options::reconnect_buffer_bytes_max` while no server is
//!   reachable: they fail with [`ClientError::ReconnectBufferFull`] (nothing
//!   is buffered silently past the bound). Closing the client drops the buffer.
//!
//! # Draining
//! On a Draining notice the client leaves at once, without waiting for the
//! server to close: it closes the connection (no flush: a draining server
//! stops reading, so what it had not read is lost either way) and connects to
//! the next server; subscriptions see a gap of one reconnect.
//!
//! # Limits
//! `unsubscribe_after` is not offered: a count cannot be carried over to a
//! new connection exactly. The tokio client's failover
//! ([`AsyncClusterClient`](crate::AsyncClusterClient)) makes the same
//! decisions, shared in `failover.rs`.
//!
//! # Lock order
//! `link` before `subscriptions`. Neither is held while waiting for a
//! reconnect backoff; the flush of a new connection runs with neither held.

use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::io::{message_channel, MessageReceiver, MessageSender};
use super::{deadline_after, Client};
use crate::connection::lock;
use crate::error::ClientError;
use crate::failover::{given_servers, Attempts, Connected, Health, Link, Resubscribed, Subscriptions, HEALTH_CHECK};
use crate::framing::check_pattern;
use crate::message::Message;
use crate::options::Options;

/// A client for a cluster: see the module header. Clone it to share it.
#[derive(Clone)]
pub struct ClusterClient {
    shared: Arc<ClusterShared>,
}

impl std::fmt::Debug for ClusterClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ClusterClient").field("servers", &self.servers()).finish_non_exhaustive()
    }
}

struct ClusterShared {
    options: Options,
    link: Mutex<Link<Client>>,
    /// Signalled when a connection is installed or the client closes.
    changed: Condvar,
    subscriptions: Mutex<Subscriptions<MessageSender>>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl Connected for Client {
    fn usable(&self) -> Result<(), ClientError> {
        Client::usable(self)
    }

    fn draining(&self) -> bool {
        self.statistics().server_draining_within_ms.is_some()
    }

    fn welcome(&self) -> &flit_wire::Welcome {
        Client::welcome(self)
    }
}

impl ClusterClient {
    /// Connects to the first of `servers` (`host:port`) that answers, trying
    /// them in order, each within `options.connect_timeout`; `Err` with the
    /// last error if none does. Later losses are handled in the background,
    /// with the other nodes the server names in its Welcome added to the list
    /// (after these; see [`Options::ignore_discovered_servers`]).
    pub fn connect<A: std::fmt::Display>(servers: &[A], options: Options) -> Result<ClusterClient, ClientError> {
        let servers = given_servers(servers, &options)?;
        let mut last_error = ClientError::NotConnected;
        let mut connected = None;
        for index in 0..servers.len() {
            match Client::connect_with(servers.get(index), options.clone()) {
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
            changed: Condvar::new(),
            subscriptions: Mutex::new(Subscriptions::default()),
            supervisor: Mutex::new(None),
        });
        let weak = Arc::downgrade(&shared);
        let supervisor =
            std::thread::Builder::new().name("flit-client-failover".to_owned()).spawn(move || supervise(&weak))?;
        *lock(&shared.supervisor) = Some(supervisor);
        Ok(ClusterClient { shared })
    }

    /// The server connected now (`None` while reconnecting, or once the
    /// connection ended and before the supervisor replaced it).
    pub fn connected_server(&self) -> Option<String> {
        lock(&self.shared.link).connected_server()
    }

    /// The servers this client fails over to, in the order it tries them:
    /// the given ones, then those the servers named in their Welcomes (at
    /// most [`KNOWN_SERVERS_MAX`](crate::KNOWN_SERVERS_MAX) in all).
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
    pub fn publish(&self, subject: &str, payload: &[u8]) -> Result<(), ClientError> {
        self.publish_with(subject, None, &[], payload)
    }

    /// [`ClusterClient::publish`] with a reply subject and headers.
    pub fn publish_with(
        &self,
        subject: &str,
        reply: Option<&str>,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<(), ClientError> {
        let mut link = lock(&self.shared.link);
        if link.closed {
            return Err(ClientError::Closed);
        }
        if let Some(client) = &link.client {
            match client.publish_with(subject, reply, headers, payload) {
                Ok(()) => return Ok(()),
                Err(error) if !error.is_fatal() => return Err(error),
                // The connection just ended: the supervisor replaces it; buffer.
                Err(_) => {}
            }
        }
        link.buffer.push(subject, reply, headers, payload, self.shared.options.reconnect_buffer_bytes_max)
    }

    /// Subscribes to `pattern`; the subscription survives failovers.
    pub fn subscribe(&self, pattern: &str) -> Result<ClusterSubscription, ClientError> {
        self.subscribe_inner(pattern, None)
    }

    /// Subscribes as a member of queue group `queue`; survives failovers.
    pub fn queue_subscribe(&self, pattern: &str, queue: &str) -> Result<ClusterSubscription, ClientError> {
        self.subscribe_inner(pattern, Some(queue))
    }

    fn subscribe_inner(&self, pattern: &str, queue: Option<&str>) -> Result<ClusterSubscription, ClientError> {
        check_pattern(pattern)?;
        let (sink, receiver) = message_channel(self.shared.options.subscription_capacity);
        let link = lock(&self.shared.link);
        if link.closed {
            return Err(ClientError::Closed);
        }
        let mut inner = None;
        if let Some(client) = &link.client {
            match client.subscribe_sink(pattern, queue, sink.clone()) {
                Ok(id) => inner = Some((link.generation, id)),
                Err(error) if !error.is_fatal() => return Err(error),
                // Subscribed on the next connection by the supervisor.
                Err(_) => {}
            }
        }
        let id = lock(&self.shared.subscriptions).add(pattern, queue, sink, inner);
        Ok(ClusterSubscription { id, receiver, shared: Arc::clone(&self.shared) })
    }

    /// Sends a request on the current connection, waiting for one (within
    /// `timeout`) while reconnecting. A request in flight when the connection
    /// ends fails with that connection's error; it is not resent.
    pub fn request(&self, subject: &str, payload: &[u8], timeout: Duration) -> Result<Message, ClientError> {
        self.request_with(subject, &[], payload, timeout)
    }

    /// [`ClusterClient::request`] with headers.
    pub fn request_with(
        &self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        let deadline = deadline_after(timeout);
        let client = self.shared.connected_within(deadline)?;
        client.request_with(subject, headers, payload, left(deadline))
    }

    /// Round trip to the current server within `Options::flush_timeout`,
    /// waiting for a connection while reconnecting (inside the same bound).
    /// After it returns `Ok`, the publish buffer has been sent.
    pub fn flush(&self) -> Result<(), ClientError> {
        let deadline = deadline_after(self.shared.options.flush_timeout);
        let client = self.shared.connected_within(deadline)?;
        client.flush_timeout(left(deadline))
    }

    /// [`Client::check_refusals`] on the current connection (`Ok` while
    /// reconnecting: refusals of a connection that ended are lost with it).
    pub fn check_refusals(&self) -> Result<(), ClientError> {
        let client = lock(&self.shared.link).client.clone();
        client.map_or(Ok(()), |client| client.check_refusals())
    }

    /// Stops reconnecting, flushes the current connection (best effort) and
    /// closes it; buffered publishes are dropped; subscriptions end.
    pub fn close(&self) -> Result<(), ClientError> {
        let client = {
            let mut link = lock(&self.shared.link);
            lock(&self.shared.subscriptions).clear();
            link.close()
        };
        self.shared.changed.notify_all();
        let supervisor = lock(&self.shared.supervisor).take();
        if let Some(supervisor) = supervisor {
            supervisor.thread().unpark();
            if supervisor.thread().id() != std::thread::current().id() {
                let _ = supervisor.join();
            }
        }
        match client {
            Some(client) => client.close(),
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
    fn connected_within(&self, deadline: Instant) -> Result<Client, ClientError> {
        let mut link = lock(&self.link);
        loop {
            if let Some(client) = link.usable_client()? {
                return Ok(client);
            }
            let wait = left(deadline);
            if wait.is_zero() {
                return Err(ClientError::NotConnected);
            }
            // Nobody signals when the supervisor takes a dead connection out.
            let wait = wait.min(HEALTH_CHECK);
            link = self.changed.wait_timeout(link, wait).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
    }

    /// The connection's health; one that ended or drains is dropped here,
    /// outside the lock.
    fn health(&self) -> Health<Client> {
        lock(&self.link).health()
    }

    /// One reconnect attempt to `servers[index]`: connect, re-subscribe,
    /// flush, send the buffer, install. `Err`: try the next server later.
    fn reconnect(&self, index: usize) -> Result<(), ClientError> {
        let server = lock(&self.link).servers.get(index).to_owned();
        let client = Client::connect_with(server.as_str(), self.options.clone())?;
        let generation = lock(&self.link).next_generation();
        let subscribed = match self.resubscribe(&client, generation) {
            Ok(subscribed) => subscribed,
            Err(error) => {
                let _ = client.close();
                return Err(error);
            }
        };
        if let Err(error) = client.flush() {
            let _ = client.close();
            return Err(error);
        }
        let mut link = lock(&self.link);
        if link.closed {
            drop(link);
            let _ = client.close();
            return Err(ClientError::Closed);
        }
        // Subscriptions opened or closed since `resubscribe`.
        let late = self.resubscribe(&client, generation);
        for inner_id in lock(&self.subscriptions).closed_since(&subscribed) {
            client.release_subscription(inner_id);
        }
        if let Err(error) = late.and_then(|_| send_buffer(&mut link, &client)) {
            drop(link);
            let _ = client.close();
            return Err(error);
        }
        link.install(client, &server, index, generation);
        drop(link);
        self.changed.notify_all();
        Ok(())
    }

    /// Subscribes every subscription not yet on `generation` on `client`;
    /// returns `(id, server-side id, ())` of those it subscribed.
    fn resubscribe(&self, client: &Client, generation: u64) -> Result<Resubscribed<()>, ClientError> {
        lock(&self.subscriptions).resubscribe(generation, |pattern, queue, sink| {
            client.subscribe_sink(pattern, queue, sink).map(|inner_id| (inner_id, ()))
        })
    }

    fn unsubscribe(&self, id: u64) {
        let link = lock(&self.link);
        let inner = lock(&self.subscriptions).remove(id);
        if let Some((client, inner_id)) = link.holding(inner) {
            client.release_subscription(inner_id);
        }
    }
}

/// Sends the buffered publishes on `client`, in order (see
/// [`PublishBuffer::send_all`]).
fn send_buffer(link: &mut Link<Client>, client: &Client) -> Result<(), ClientError> {
    link.buffer.send_all(|publish| {
        client.publish_with(&publish.subject, publish.reply.as_deref(), &publish.headers(), &publish.payload)
    })
}

/// The supervisor thread's body: it holds the client only while it works,
/// so dropping the last handle ends it.
fn supervise(weak: &Weak<ClusterShared>) {
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
                attempts.settle(index, servers, shared.reconnect(index).is_ok(), &shared.options)
            }
        };
        let closed = lock(&shared.link).closed;
        drop(shared);
        if closed {
            return;
        }
        // `close` unparks it, so closing never waits out a backoff.
        std::thread::park_timeout(wait);
    }
}

/// Messages for one subscription of a [`ClusterClient`]; it survives
/// failovers (see the module header for the gap). Dropping it unsubscribes.
pub struct ClusterSubscription {
    id: u64,
    receiver: MessageReceiver,
    shared: Arc<ClusterShared>,
}

impl std::fmt::Debug for ClusterSubscription {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ClusterSubscription").field("id", &self.id).finish_non_exhaustive()
    }
}

impl ClusterSubscription {
    /// This client's id for the subscription; the same across failovers.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits up to `timeout`. `Ok(None)`: no message in time. `Err`: the
    /// subscription (or the client) is closed and drained.
    pub fn next_timeout(&self, timeout: Duration) -> Result<Option<Message>, ClientError> {
        match self.receiver.recv_timeout(timeout) {
            Ok(message) => Ok(Some(message)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(ClientError::SubscriptionClosed),
        }
    }

    /// Waits for the next message; `None` once closed and drained.
    pub fn next(&self) -> Option<Message> {
        self.receiver.recv().ok()
    }

    /// Stops the subscription now. Messages already received stay readable.
    pub fn unsubscribe(&self) {
        self.shared.unsubscribe(self.id);
    }
}

impl Drop for ClusterSubscription {
    fn drop(&mut self) {
        self.shared.unsubscribe(self.id);
    }
}
