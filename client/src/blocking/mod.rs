//! The blocking client, on `std::net`.
//!
//! A [`Client`] is a cheap handle (clone it to share one connection between
//! threads). Calls encode into a shared buffer and return; a flusher thread
//! writes the buffer out, and a reader thread dispatches what the server sends.
//! [`Client::flush`] is the round-trip barrier: when it returns, the server has
//! processed everything sent before it, and (a server guarantee) this
//! connection's subscriptions are visible on every shard.
//!
//! # Shutdown
//! [`Client::close`] flushes, then closes the socket for every clone. Dropping
//! the last clone and the last [`Subscription`] does the same without the flush.
//! After either, and after any fatal error, every call returns the error that
//! ended the connection.

mod io;
mod subscription;

use std::net::{Shutdown, ToSocketAddrs};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flit_wire::Welcome;

use crate::connection::{lock, Core};
use crate::dispatch::Statistics;
use crate::error::ClientError;
use crate::message::Message;
use crate::options::Options;

pub(crate) use io::Blocking;
#[cfg(test)]
pub(crate) use io::{message_channel, MessageReceiver};
pub use subscription::Subscription;

use io::Shared;

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

type Answer<T> = Receiver<Result<T, ClientError>>;
type Done = std::sync::mpsc::SyncSender<Result<(), ClientError>>;

impl Client {
    /// Connects with default [`Options`].
    pub fn connect(address: impl ToSocketAddrs) -> Result<Client, ClientError> {
        Client::connect_with(address, Options::default())
    }

    /// Connects, sends Hello and waits for the Welcome, all within
    /// `options.connect_timeout`; then starts the reader and flusher threads.
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
        let read_half = stream.try_clone()?;
        let (wake_flusher, wake) = sync_channel(1);
        let state = Arc::clone(&core.state);
        let limits = core.limits;
        let reader_wakes_flusher = wake_flusher.clone();
        let reader_tls = tls.clone();
        let shared = Arc::new(Shared { core, stream: Mutex::new(stream), wake_flusher, reader: Mutex::new(None), tls });
        let reader = std::thread::Builder::new()
            .name("flit-client-reader".to_owned())
            .spawn(move || io::run_reader(read_half, leftover, limits, state, reader_wakes_flusher, reader_tls))?;
        *lock(&shared.reader) = Some(reader);
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("flit-client-flusher".to_owned())
            .spawn(move || io::run_flusher(wake, weak))?;
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
        self.sent(answer)?;
        Ok(subscription)
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
        let started = Instant::now();
        let (inbox_done, inbox_answer) = sync_channel(1);
        if self.shared.core.prepare_inbox(inbox_done)? {
            self.shared.write_out()?;
            self.wait(&inbox_answer, timeout)?;
        }
        let (response, answer) = sync_channel(1);
        let request = self.shared.core.begin_request(subject, headers, payload, response)?;
        // A request is latency-bound: write it now rather than wake the flusher.
        self.shared.write_out()?;
        let left = timeout.saturating_sub(started.elapsed());
        let result = self.wait(&answer, left);
        if matches!(result, Err(ClientError::Timeout)) {
            self.shared.core.cancel_request(request);
        }
        result
    }

    /// Round trip to the server within `Options::flush_timeout`. See the module header.
    pub fn flush(&self) -> Result<(), ClientError> {
        self.flush_timeout(self.shared.core.options.flush_timeout)
    }

    /// Round trip to the server within `timeout`.
    pub fn flush_timeout(&self, timeout: Duration) -> Result<(), ClientError> {
        let (done, answer) = sync_channel(1);
        self.shared.core.ping(done)?;
        self.shared.write_out()?;
        self.wait(&answer, timeout)
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

    /// An acknowledgement channel in ack mode; nothing otherwise.
    fn acknowledgement(&self) -> (Option<Done>, Option<Answer<()>>) {
        if !self.shared.core.options.ack_mode {
            return (None, None);
        }
        let (done, answer) = sync_channel(1);
        (Some(done), Some(answer))
    }

    /// After a frame was encoded: in ack mode write it and wait for Ok/Error;
    /// otherwise leave it to the flusher.
    fn sent(&self, answer: Option<Answer<()>>) -> Result<(), ClientError> {
        match answer {
            None => self.shared.buffered(),
            Some(answer) => {
                self.shared.write_out()?;
                self.wait(&answer, self.shared.core.options.flush_timeout)
            }
        }
    }

    fn wait<T>(&self, answer: &Answer<T>, timeout: Duration) -> Result<T, ClientError> {
        match answer.recv_timeout(timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(ClientError::Timeout),
            // The state drops a waiter only when failing, after answering it;
            // reaching here means the connection ended, so report why.
            Err(RecvTimeoutError::Disconnected) => Err(self.shared.core.usable().err().unwrap_or(ClientError::Closed)),
        }
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Client {
        Client { shared }
    }
}
