//! The runtime-independent heart of a connection: what the reader does with
//! each decoded frame, and the bookkeeping the callers share with it.
//!
//! Both the blocking and the tokio client keep one `ConnectionState` behind a
//! mutex. Callers register subscriptions and waiters in it; the reader (a
//! thread or a task) feeds it frames. Channel types are a parameter
//! ([`Channels`]), so the routing logic exists once and unit tests drive it
//! with plain std channels and no socket.
//!
//! # Invariants
//! - Pongs answer Pings in order, so the flush waiters form a FIFO: a waiter is
//!   pushed while the writer lock is held, in the same critical section that
//!   encodes its Ping (see `connection.rs`).
//! - In ack mode every Publish, Subscribe and Unsubscribe pushes exactly one
//!   acknowledgement slot, likewise under the writer lock, so the n-th Ok
//!   belongs to the n-th slot.
//! - The state holds the only sender of each subscription channel: removing a
//!   subscription closes its channel, and the receiver sees the end after
//!   draining what was already delivered.
//! - Once `terminal` is set it never changes, every waiter has been answered
//!   with it, and every subscription channel is closed.
//!
//! # Shutdown
//! [`ConnectionState::fail`] is the one way out: on an Error frame, a broken
//! socket, a protocol violation or `close()`. It completes every waiter with
//! the error and drops every sender.

use std::collections::{HashMap, VecDeque};

use flit_wire::{Deliver, ErrorCode, Frame, STATUS_NO_RESPONDERS};

use crate::error::ClientError;
use crate::inbox::Inbox;
use crate::message::Message;

/// Why a subscription channel did not take a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Full,
    Closed,
}

/// The sending side of a subscription's bounded channel.
pub(crate) trait MessageSink {
    /// Never blocks: the reader must keep serving Pongs and other subscriptions.
    fn offer(&self, message: Message) -> Result<(), Refused>;
}

/// The sending side of a one-shot answer (flush, acknowledgement, response).
pub(crate) trait Completion<T> {
    /// Delivers the answer; a waiter that gave up (timed out) is ignored.
    fn complete(self, result: Result<T, ClientError>);
}

/// The channel types an IO layer uses.
pub(crate) trait Channels {
    type Sink: MessageSink;
    type Done: Completion<()>;
    type Response: Completion<Message>;
}

/// Counters a caller can read to see what the client dropped and why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Deliveries received for a subscription id that is not (or no longer)
    /// registered, typically messages in flight when `unsubscribe()` was called.
    pub unknown_subscription_drops: u64,
    /// Deliveries dropped because the subscription's channel was full.
    pub slow_consumer_drops: u64,
    /// Answers to an inbox that matched no waiting request (late or foreign).
    pub unmatched_responses: u64,
    /// Messages delivered to subscriptions and requests.
    pub messages_delivered: u64,
    /// Set when the server announced a graceful shutdown (a Draining frame):
    /// the milliseconds within which it said it would close the connection.
    /// Publishes sent after it are not delivered; reconnect elsewhere.
    pub server_draining_within_ms: Option<u64>,
    /// Frames the server refused and that left the connection open
    /// (`permission_denied`). In ack mode the refused call also returns the
    /// error; otherwise this count is the only trace.
    pub refused_by_server: u64,
}

struct SubscriptionEntry<S> {
    sink: S,
    /// Set by `unsubscribe_after(n)`: the subscription closes after this many more.
    remaining: Option<u64>,
}

/// One connection's routing table and waiters. See the module header.
pub(crate) struct ConnectionState<C: Channels> {
    ack_mode: bool,
    subscriptions: HashMap<u64, SubscriptionEntry<C::Sink>>,
    next_subscription_id: u64,
    flush_waiters: VecDeque<C::Done>,
    /// One slot per acknowledged frame; `None` where nobody waits (a drop-time unsubscribe).
    acknowledgement_waiters: VecDeque<Option<C::Done>>,
    inbox: Inbox,
    inbox_subscription_id: Option<u64>,
    next_request: u64,
    responses: HashMap<u64, C::Response>,
    terminal: Option<ClientError>,
    statistics: Statistics,
    /// Pings the server sent (it checks idle connections) not yet answered;
    /// the writer side encodes the Pongs (the reader never writes).
    pongs_owed: u32,
}

impl<C: Channels> ConnectionState<C> {
    pub(crate) fn new(ack_mode: bool, inbox: Inbox) -> Self {
        ConnectionState {
            ack_mode,
            subscriptions: HashMap::new(),
            next_subscription_id: 1,
            flush_waiters: VecDeque::new(),
            acknowledgement_waiters: VecDeque::new(),
            inbox,
            inbox_subscription_id: None,
            next_request: 1,
            responses: HashMap::new(),
            terminal: None,
            statistics: Statistics::default(),
            pongs_owed: 0,
        }
    }

    /// Takes the count of Pongs owed to the server.
    pub(crate) fn take_pongs_owed(&mut self) -> u32 {
        std::mem::take(&mut self.pongs_owed)
    }

    pub(crate) fn pongs_owed(&self) -> bool {
        self.pongs_owed > 0
    }

    /// `Err` with the terminal error once the connection has ended.
    pub(crate) fn usable(&self) -> Result<(), ClientError> {
        match &self.terminal {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    pub(crate) fn statistics(&self) -> Statistics {
        self.statistics
    }

    pub(crate) fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    pub(crate) fn add_subscription(&mut self, sink: C::Sink) -> u64 {
        let id = self.next_subscription_id;
        self.next_subscription_id += 1;
        let previous = self.subscriptions.insert(id, SubscriptionEntry { sink, remaining: None });
        debug_assert!(previous.is_none(), "subscription ids are never reused");
        id
    }

    /// Forgets a subscription, closing its channel. Later deliveries for it
    /// count as unknown.
    pub(crate) fn remove_subscription(&mut self, id: u64) {
        self.subscriptions.remove(&id);
    }

    /// Closes the subscription after `messages` more deliveries. Counted from
    /// when the Unsubscribe is sent, so messages already in flight count too:
    /// the channel may close a little early, never late.
    pub(crate) fn close_subscription_after(&mut self, id: u64, messages: u64) {
        if messages == 0 {
            self.remove_subscription(id);
        } else if let Some(entry) = self.subscriptions.get_mut(&id) {
            entry.remaining = Some(messages);
        }
    }

    /// The id of the inbox subscription, allocating one if there is none yet.
    /// `true` in the second field: the caller must now send its Subscribe.
    pub(crate) fn inbox_subscription(&mut self) -> (u64, bool) {
        if let Some(id) = self.inbox_subscription_id {
            return (id, false);
        }
        let id = self.next_subscription_id;
        self.next_subscription_id += 1;
        self.inbox_subscription_id = Some(id);
        (id, true)
    }

    /// Registers a waiting request; returns its number (the reply subject's last token).
    pub(crate) fn add_request(&mut self, response: C::Response) -> u64 {
        let request = self.next_request;
        self.next_request += 1;
        self.responses.insert(request, response);
        request
    }

    /// Forgets a request that timed out or could not be sent.
    pub(crate) fn cancel_request(&mut self, request: u64) {
        self.responses.remove(&request);
    }

    pub(crate) fn add_flush_waiter(&mut self, waiter: C::Done) {
        self.flush_waiters.push_back(waiter);
    }

    /// Reserves the acknowledgement slot of a frame just encoded; a no-op
    /// outside ack mode, where the server sends no Ok.
    pub(crate) fn expect_acknowledgement(&mut self, waiter: Option<C::Done>) {
        if self.ack_mode {
            self.acknowledgement_waiters.push_back(waiter);
        }
    }

    /// Consumes one frame from the server. `Err` means the connection has
    /// just become terminal (the state has already failed everything).
    pub(crate) fn handle_frame(&mut self, frame: Frame) -> Result<(), ClientError> {
        match frame {
            Frame::Deliver(deliver) => self.deliver(deliver),
            Frame::Pong => match self.flush_waiters.pop_front() {
                Some(waiter) => waiter.complete(Ok(())),
                None => return self.fail_with(ClientError::Protocol("Pong without a Ping".to_owned())),
            },
            Frame::Ok => match self.acknowledgement_waiters.pop_front() {
                Some(Some(waiter)) => waiter.complete(Ok(())),
                Some(None) => {}
                None => return self.fail_with(ClientError::Protocol("Ok without a frame to acknowledge".to_owned())),
            },
            // The server checks that an idle connection is alive.
            Frame::Ping => self.pongs_owed = self.pongs_owed.saturating_add(1),
            Frame::Draining { close_within_ms } => {
                self.statistics.server_draining_within_ms = Some(close_within_ms);
            }
            Frame::Error(error) if ErrorCode::from_u16(error.code).is_some_and(|code| !code.closes_connection()) => {
                self.statistics.refused_by_server += 1;
                let error = ClientError::Server {
                    code: error.code,
                    message: error.message,
                    retry_after_ms: error.retry_after_ms,
                };
                // In ack mode the Error answers the oldest unacknowledged frame.
                if let Some(Some(waiter)) = self.acknowledgement_waiters.pop_front() {
                    waiter.complete(Err(error));
                }
            }
            Frame::Error(error) => {
                let error = ClientError::Server {
                    code: error.code,
                    message: error.message,
                    retry_after_ms: error.retry_after_ms,
                };
                // In ack mode the Error answers the oldest unacknowledged frame.
                if let Some(Some(waiter)) = self.acknowledgement_waiters.pop_front() {
                    waiter.complete(Err(error.clone()));
                }
                return self.fail_with(error);
            }
            other => return self.fail_with(ClientError::Protocol(format!("unexpected frame from server: {other:?}"))),
        }
        Ok(())
    }

    fn fail_with(&mut self, error: ClientError) -> Result<(), ClientError> {
        self.fail(error);
        Err(self.terminal.clone().unwrap_or(ClientError::Closed))
    }

    /// Ends the connection: records `error` (unless an earlier error was
    /// recorded), answers every waiter with it and closes every subscription.
    pub(crate) fn fail(&mut self, error: ClientError) {
        let error = self.terminal.get_or_insert(error).clone();
        for waiter in self.flush_waiters.drain(..) {
            waiter.complete(Err(error.clone()));
        }
        for waiter in self.acknowledgement_waiters.drain(..).flatten() {
            waiter.complete(Err(error.clone()));
        }
        for (_, response) in self.responses.drain() {
            response.complete(Err(error.clone()));
        }
        self.subscriptions.clear();
    }

    fn deliver(&mut self, deliver: Deliver) {
        let id = deliver.subscription_id;
        if Some(id) == self.inbox_subscription_id {
            return self.deliver_response(deliver);
        }
        let Some(entry) = self.subscriptions.get_mut(&id) else {
            self.statistics.unknown_subscription_drops += 1;
            return;
        };
        let message = match Message::from_deliver(deliver) {
            Ok(message) => message,
            Err(error) => return self.fail(error),
        };
        match entry.sink.offer(message) {
            Ok(()) => self.statistics.messages_delivered += 1,
            Err(Refused::Full) => self.statistics.slow_consumer_drops += 1,
            // The receiver is gone; the subscription's Drop sends the Unsubscribe.
            Err(Refused::Closed) => self.statistics.unknown_subscription_drops += 1,
        }
        if let Some(remaining) = entry.remaining.as_mut() {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                self.subscriptions.remove(&id);
            }
        }
    }

    fn deliver_response(&mut self, deliver: Deliver) {
        let message = match Message::from_deliver(deliver) {
            Ok(message) => message,
            Err(error) => return self.fail(error),
        };
        let waiting = self.inbox.request_of(&message.subject).and_then(|request| self.responses.remove(&request));
        let Some(response) = waiting else {
            self.statistics.unmatched_responses += 1;
            return;
        };
        self.statistics.messages_delivered += 1;
        if message.status == STATUS_NO_RESPONDERS {
            response.complete(Err(ClientError::NoResponders));
        } else {
            response.complete(Ok(message));
        }
    }
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
