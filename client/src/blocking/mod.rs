//! The blocking client, on `std::net`.
//!
//! A [`Client`] is a cheap handle (clone it to share one connection between
//! threads). Calls encode into a shared buffer. A publish returns and leaves
//! the writing to a flusher thread; a call that waits for an answer (a
//! request, a flush, anything in ack mode) writes the buffer out itself and
//! then reads the socket itself until its answer arrives, dispatching
//! whatever else it reads, so a request costs no other thread's wake-up. A
//! background thread reads when no caller does (subscriptions' deliveries,
//! the server's Pings). See `shared.rs` for the handoff.
//! [`Client::flush`] is the round-trip barrier: when it returns, the server has
//! processed everything sent before it, and (a server guarantee) this
//! connection's subscriptions are visible on every shard.
//!
//! # Shutdown
//! [`Client::close`] flushes, then closes the socket for every clone. Dropping
//! the last clone and the last [`Subscription`] does the same without the flush.
//! After either, and after any fatal error, every call returns the error that
//! ended the connection.

mod cluster;
mod io;
mod shared;
mod streams;
mod subscription;

use std::net::{Shutdown, ToSocketAddrs};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flit_wire::Welcome;

use crate::connection::{lock, Core};
use crate::dispatch::Statistics;
use crate::error::ClientError;
use crate::message::Message;
use crate::options::Options;

pub use cluster::{ClusterClient, ClusterSubscription};
pub(crate) use io::Blocking;
#[cfg(test)]
pub(crate) use io::{message_channel, MessageReceiver, MessageSender};
pub use streams::{DurablePublish, Messages};
pub use subscription::Subscription;

use io::{slot, Answer, Slot};
use shared::{Connection, Shared};

/// A connection to a flit server. See the module header.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Client").field("welcome", &self.shared.core.welcome).finish_non_exhaustive()
    }
}

/// `now + timeout`, or as far as the clock goes.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl Client {
    /// Connects with default [`Options`].
    pub fn connect(address: impl ToSocketAddrs) -> Result<Client, ClientError> {
        Client::connect_with(address, Options::default())
    }

    /// Connects to the first of `servers` that answers and fails over to the
    /// others when the connection is lost. See [`ClusterClient`].
    pub fn connect_cluster<A: std::fmt::Display>(
        servers: &[A],
        options: Options,
    ) -> Result<ClusterClient, ClientError> {
        ClusterClient::connect(servers, options)
    }

    /// Connects, sends Hello and waits for the Welcome, all within
    /// `options.connect_timeout`; then starts the background and flusher threads.
    pub fn connect_with(address: impl ToSocketAddrs, options: Options) -> Result<Client, ClientError> {
        let deadline = Instant::now() + options.connect_timeout;
        let mut stream = io::connect_socket(address, options.connect_timeout)?;
        let (welcome, leftover, tls) = match io::handshake(&mut stream, &options, deadline) {
            Ok(answer) => answer,
            Err(error) => {
                let _ = stream.shutdown(Shutdown::Both);
                return Err(error);
            }
        };
        let core = Core::<Blocking>::new(welcome, options);
        let connection = Arc::new(Connection::new(core, stream, tls, leftover)?);
        if let Err(error) = connection.dispatch_leftover() {
            connection.fail(error.clone());
            return Err(error);
        }
        let (wake_flusher, wake) = sync_channel(1);
        let shared =
            Arc::new(Shared { connection: Arc::clone(&connection), wake_flusher, background: Mutex::new(None) });
        let for_background = Arc::clone(&connection);
        let background = std::thread::Builder::new()
            .name("flit-client-reader".to_owned())
            .spawn(move || shared::run_background(for_background))?;
        connection.set_background(background.thread().clone());
        *lock(&shared.background) = Some(background);
        std::thread::Builder::new()
            .name("flit-client-flusher".to_owned())
            .spawn(move || shared::run_flusher(wake, connection))?;
        Ok(Client { shared })
    }

    /// The server's Welcome: its limits and the shard this connection landed on.
    pub fn welcome(&self) -> &Welcome {
        &self.shared.core.welcome
    }

    /// What the reader dropped and delivered so far.
    pub fn statistics(&self) -> Statistics {
        self.shared.core.statistics()
    }

    /// `Err(ClientError::Refused)` if the server refused frames (401
    /// `permission_denied`, 307 `rate_limited`: refusals that keep the
    /// connection open) that no call has reported yet; each is reported once.
    /// Outside ack mode a refusal cannot be tied to the publish or subscribe
    /// that caused it, and arrives after that call returned; it does arrive
    /// before the Pong of any later flush, so after [`Client::flush`] this
    /// covers every frame sent before it (by any clone of this client).
    /// Requests need no check: a refused request fails with the server's error.
    pub fn check_refusals(&self) -> Result<(), ClientError> {
        self.shared.core.check_refusals()
    }

    /// Publishes `payload` to `subject`. Returns once buffered (in ack mode:
    /// once the server accepted it).
    pub fn publish(&self, subject: &str, payload: &[u8]) -> Result<(), ClientError> {
        self.publish_with(subject, None, &[], payload)
    }

    /// Publishes with a reply subject and headers.
    pub fn publish_with(
        &self,
        subject: &str,
        reply: Option<&str>,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<(), ClientError> {
        let (done, answer) = self.acknowledgement();
        self.shared.core.publish(subject, reply, headers, payload, done)?;
        self.sent(answer)
    }

    /// Subscribes to `pattern` (`*` one token, `>` the rest).
    pub fn subscribe(&self, pattern: &str) -> Result<Subscription, ClientError> {
        self.subscribe_inner(pattern, None)
    }

    /// Subscribes as a member of queue group `queue`: each message goes to one member.
    pub fn queue_subscribe(&self, pattern: &str, queue: &str) -> Result<Subscription, ClientError> {
        self.subscribe_inner(pattern, Some(queue))
    }

    fn subscribe_inner(&self, pattern: &str, queue: Option<&str>) -> Result<Subscription, ClientError> {
        let (sink, receiver) = io::message_channel(self.shared.core.options.subscription_capacity);
        let (done, answer) = self.acknowledgement();
        let id = self.shared.core.subscribe(pattern, queue, sink, done)?;
        // From here the Subscription owns the id: dropping it on error unsubscribes.
        let subscription = Subscription::new(id, receiver, Arc::clone(&self.shared));
        // With a subscription the background thread must not linger after
        // a caller leaves (see shared.rs): tell it.
        self.shared.wake_background();
        self.sent(answer)?;
        Ok(subscription)
    }

    /// Subscribes with a queue the caller owns (a cluster client's, which
    /// outlives this connection); no [`Subscription`] guard: the caller
    /// releases it with [`Client::release_subscription`].
    pub(crate) fn subscribe_sink(
        &self,
        pattern: &str,
        queue: Option<&str>,
        sink: io::MessageSender,
    ) -> Result<u64, ClientError> {
        let (done, answer) = self.acknowledgement();
        let id = self.shared.core.subscribe(pattern, queue, sink, done)?;
        self.shared.wake_background();
        self.sent(answer)?;
        Ok(id)
    }

    /// Forgets subscription `id` locally and tells the server, without waiting.
    pub(crate) fn release_subscription(&self, id: u64) {
        if self.shared.core.release(id) {
            let _ = self.shared.buffered();
        }
    }

    /// `Err` with the error that ended this connection, if one did.
    pub(crate) fn usable(&self) -> Result<(), ClientError> {
        self.shared.core.usable()
    }

    pub(crate) fn unsubscribe(&self, id: u64, after_messages: u64) -> Result<(), ClientError> {
        let (done, answer) = self.acknowledgement();
        self.shared.core.unsubscribe(id, after_messages, done)?;
        self.sent(answer)
    }

    /// Sends a request and waits up to `timeout` for the first answer.
    /// `Err(NoResponders)` when no subscription matched `subject`;
    /// `Err(Server { .. })` at once when the server refused the request
    /// (`permission_denied` for its subject or for this client's inbox,
    /// `rate_limited`), instead of a timeout.
    pub fn request(&self, subject: &str, payload: &[u8], timeout: Duration) -> Result<Message, ClientError> {
        self.request_with(subject, &[], payload, timeout)
    }

    /// [`Client::request`] with headers.
    pub fn request_with(
        &self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        let deadline = deadline_after(timeout);
        if !self.shared.core.inbox_ready() {
            let (done, inbox) = slot();
            if self.shared.core.prepare_inbox(done)? {
                self.round_trip(&inbox, deadline).unwrap_or(Err(ClientError::Timeout))?;
            }
        }
        let (response, answer) = slot();
        let request = self.shared.core.begin_request(subject, headers, payload, response)?;
        match self.round_trip(&answer, deadline) {
            Some(result) => result,
            None => {
                self.shared.core.cancel_request(request);
                // It may have come between the deadline and the cancel.
                answer.take().unwrap_or(Err(ClientError::Timeout))
            }
        }
    }

    /// Round trip to the server within `Options::flush_timeout`. See the module header.
    pub fn flush(&self) -> Result<(), ClientError> {
        self.flush_timeout(self.shared.core.options.flush_timeout)
    }

    /// Round trip to the server within `timeout`.
    pub fn flush_timeout(&self, timeout: Duration) -> Result<(), ClientError> {
        let (done, answer) = slot();
        self.shared.core.ping(done)?;
        self.round_trip(&answer, deadline_after(timeout)).unwrap_or(Err(ClientError::Timeout))
    }

    /// Publishes and writes at once, for a latency-bound publish (a reply).
    pub(crate) fn publish_now(&self, subject: &str, payload: &[u8]) -> Result<(), ClientError> {
        let (done, answer) = self.acknowledgement();
        self.shared.core.publish(subject, None, &[], payload, done)?;
        match answer {
            None => self.shared.write_out(),
            Some(answer) => self.sent(Some(answer)),
        }
    }

    /// Flushes (best effort, within `Options::flush_timeout`), then closes the
    /// connection for every clone and subscription.
    pub fn close(&self) -> Result<(), ClientError> {
        let flushed = match self.shared.core.usable() {
            Ok(()) => self.flush(),
            Err(error) => Err(error),
        };
        self.shared.shut_down(ClientError::Closed);
        crate::error::close_result(flushed)
    }

    /// An acknowledgement slot in ack mode; nothing otherwise.
    fn acknowledgement(&self) -> (Option<Answer<()>>, Option<Arc<Slot<()>>>) {
        if !self.shared.core.options.ack_mode {
            return (None, None);
        }
        let (done, answer) = slot();
        (Some(done), Some(answer))
    }

    /// After a frame was encoded: in ack mode write it and wait for Ok/Error;
    /// otherwise leave it to the flusher.
    fn sent(&self, answer: Option<Arc<Slot<()>>>) -> Result<(), ClientError> {
        match answer {
            None => self.shared.buffered(),
            Some(answer) => {
                let deadline = deadline_after(self.shared.core.options.flush_timeout);
                self.round_trip(&answer, deadline).unwrap_or(Err(ClientError::Timeout))
            }
        }
    }

    /// Writes what is buffered, then waits for `slot`'s answer until
    /// `deadline` (`None`: it passed), reading the socket meanwhile.
    fn round_trip<T>(&self, slot: &Slot<T>, deadline: Instant) -> Option<Result<T, ClientError>> {
        if let Err(error) = self.shared.write_out() {
            return Some(Err(error));
        }
        let caller = self.shared.enter();
        self.shared.wait(&caller, slot, deadline)
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Client {
        Client { shared }
    }
}
