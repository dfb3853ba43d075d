//! The runtime-independent heart of a connection: what the reader does with
//! each decoded frame, and the bookkeeping the callers share with it.
//!
//! Both the blocking and the tokio client keep one `ConnectionState` behind a
//! mutex. Callers register subscriptions and waiters in it; whoever reads the
//! socket (a caller waiting for its answer, or a background thread or task)
//! feeds it frames. Channel types are a parameter ([`Channels`]), so the
//! routing logic exists once and unit tests drive it with plain std channels
//! and no socket.
//!
//! # Invariants
//! - Pongs answer Pings in order, so the Pong waiters form a FIFO: a waiter is
//!   pushed while the writer lock is held, in the same critical section that
//!   encodes its Ping (see `connection.rs`).
//! - In ack mode every Publish, Subscribe and Unsubscribe pushes exactly one
//!   acknowledgement slot, likewise under the writer lock, so the n-th Ok
//!   belongs to the n-th slot.
//! - Outside ack mode the server says nothing about a frame it accepts, and a
//!   refusal that keeps the connection (401, 307) does not say which frame it
//!   answers. It does arrive in order with the Pongs (the server queues
//!   refusals, Pongs and Oks in the order of the frames they answer), so the
//!   Pings cut the frames into *intervals*: a refusal that arrives after the
//!   Pong of Ping k and before the Pong of Ping k+1 answers a frame sent
//!   between those two Pings. `intervals` mirrors that: one [`Interval`] per
//!   Ping not yet answered, plus the one new frames join; a Pong retires the
//!   front one.
//! - A frame that must learn its own fate (the inbox Subscribe, a request's
//!   Publish: an [`Attributed`] frame) is never in an interval with another
//!   frame whose fate is unknown: before it is encoded, a Ping closes the
//!   current interval if it holds any such frame, and before any frame is
//!   encoded after it, a Ping closes its interval if it is still unsettled
//!   (see `connection.rs`). A refusal that arrives in an interval holding an
//!   attributed frame is therefore that frame's; any other refusal waits in
//!   `unreported` for `take_refusals` (the clients' `check_refusals`).
//! - A request's Publish is settled (accepted) when its answer arrives: a
//!   refused publish reaches nobody, so nothing answers it. A sequence of
//!   requests on a quiet connection therefore needs no Ping at all; a Ping is
//!   only spent when frames of unknown fate would otherwise share an interval
//!   (the inbox's own Subscribe, whose Pong also proves it visible, a request
//!   right after a plain publish, a publish while a request is in flight).
//! - The state holds the only sender of each subscription channel: removing a
//!   subscription closes its channel, and the receiver sees the end after
//!   draining what was already delivered.
//! - Once `terminal` is set it never changes, every waiter has been answered
//!   with it, and every subscription channel is closed.
//! - Durable streams (version 2) match answers by tag, not by order; their
//!   waiters and rules are in `dispatch_streams.rs`. A durable Publish is an
//!   attributed frame like a request's ([`Attributed::DurablePublish`]): its
//!   PublishAck settles it, a refusal in its interval fails it.
//!
//! # Shutdown
//! [`ConnectionState::fail`] is the one way out: on an Error frame, a broken
//! socket, a protocol violation or `close()`. It completes every waiter with
//! the error and drops every sender.

use std::collections::{HashMap, VecDeque};

use flit_wire::stream::StreamReply;
use flit_wire::{Deliver, ErrorCode, Frame, STATUS_NO_RESPONDERS};

use crate::error::ClientError;
use crate::inbox::Inbox;
use crate::message::Message;
use crate::refusal::{Refusal, Refusals};
pub use crate::statistics::Statistics;
use crate::stream::{PublishAcked, StreamMessage};

#[path = "dispatch_streams.rs"]
mod streams;

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
    /// A durable publish's PublishAck.
    type Stored: Completion<PublishAcked>;
    /// A StreamReply with code 0 (a refusal completes it with the error).
    type Replied: Completion<StreamReply>;
    /// A fetch's messages, once its closing StreamReply came.
    type Fetched: Completion<Vec<StreamMessage>>;
}

/// What the Pong answering one of our Pings completes.
pub(crate) enum PongWaiter<C: Channels> {
    /// `flush()`.
    Flush(C::Done),
    /// Nobody: a Ping sent only to close an interval (see the module header).
    Boundary,
}

/// The frames between two Pings whose refusals, if any, are still to come.
#[derive(Debug, Default)]
pub(crate) struct Interval {
    /// Publishes, Subscribes and Unsubscribes nobody waits on.
    unattributed: u64,
    /// The one frame whose refusal has somewhere to go; never beside an
    /// unattributed frame (see the module header).
    attributed: Option<Attributed>,
}

impl Interval {
    fn unsettled(&self) -> bool {
        self.unattributed > 0 || self.attributed.is_some()
    }
}

/// A frame whose refusal has somewhere to go other than its caller's own
/// acknowledgement: the caller waits for something else (the inbox waiters,
/// a request's response).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attributed {
    /// The Subscribe of the request inbox.
    Inbox,
    /// The Publish of request number `n`.
    Request(u64),
    /// The Publish of the durable publish with ack id `n`.
    DurablePublish(u64),
}

/// An ack-mode slot: what the Ok or Error for one frame completes.
enum Acknowledgement<C: Channels> {
    /// Nobody waits (a dropped subscription's Unsubscribe).
    Nobody,
    /// The call that sent the frame.
    Caller(C::Done),
    /// A frame whose caller waits elsewhere (see [`Attributed`]).
    Frame(Attributed),
}

/// The request inbox's subscription.
enum InboxState<C: Channels> {
    /// None, or the server refused the last one (the next request tries again).
    Absent,
    /// Sent; the requests in `waiters` wait to learn whether the server took it.
    Pending { id: u64, waiters: Vec<C::Done> },
    /// Accepted and visible on every shard.
    Ready { id: u64 },
}

/// What a request must do about the inbox, from [`ConnectionState::join_inbox`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InboxStep {
    /// It is ready: go ahead.
    Ready,
    /// Someone already sent the Subscribe; wait on the waiter given.
    Wait,
    /// Send the Subscribe for this subscription id (attributed), then wait.
    Subscribe(u64),
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
    pong_waiters: VecDeque<PongWaiter<C>>,
    /// One per Pong waiter, plus the last, which new frames join (outside
    /// ack mode; see the module header). Never empty.
    intervals: VecDeque<Interval>,
    /// One slot per acknowledged frame (ack mode only).
    acknowledgement_waiters: VecDeque<Acknowledgement<C>>,
    /// Refusals nobody was told about yet; `take_refusals` hands them out.
    unreported: Refusals,
    inbox: Inbox,
    inbox_state: InboxState<C>,
    next_request: u64,
    responses: HashMap<u64, C::Response>,
    terminal: Option<ClientError>,
    statistics: Statistics,
    /// Pings the server sent (it checks idle connections) not yet answered;
    /// the writer side encodes the Pongs (dispatching never writes).
    pongs_owed: u32,
    /// Durable publishes, stream requests and fetches waiting for answers.
    streams: streams::StreamWaiters<C>,
}

impl<C: Channels> ConnectionState<C> {
    pub(crate) fn new(ack_mode: bool, inbox: Inbox) -> Self {
        ConnectionState {
            ack_mode,
            subscriptions: HashMap::new(),
            next_subscription_id: 1,
            pong_waiters: VecDeque::new(),
            intervals: VecDeque::from([Interval::default()]),
            acknowledgement_waiters: VecDeque::new(),
            unreported: Refusals::default(),
            inbox,
            inbox_state: InboxState::Absent,
            next_request: 1,
            responses: HashMap::new(),
            terminal: None,
            statistics: Statistics::default(),
            pongs_owed: 0,
            streams: streams::StreamWaiters::default(),
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

    pub(crate) fn ack_mode(&self) -> bool {
        self.ack_mode
    }

    /// The refusals not reported yet (not attributed to a call), as one
    /// [`ClientError::Refused`]; each refusal is handed out once.
    pub(crate) fn take_refusals(&mut self) -> Option<ClientError> {
        std::mem::take(&mut self.unreported).into_error()
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

    /// Whether any subscription (other than the request inbox) is open.
    pub(crate) fn has_subscriptions(&self) -> bool {
        !self.subscriptions.is_empty()
    }

    pub(crate) fn inbox_ready(&self) -> bool {
        matches!(self.inbox_state, InboxState::Ready { .. })
    }

    fn inbox_subscription_id(&self) -> Option<u64> {
        match self.inbox_state {
            InboxState::Absent => None,
            InboxState::Pending { id, .. } | InboxState::Ready { id } => Some(id),
        }
    }

    /// A request needs the inbox. Unless it is ready, `waiter` is completed
    /// once the server accepted (and made visible) or refused its Subscribe;
    /// [`InboxStep::Subscribe`]: the caller sends that Subscribe, as
    /// [`Attributed::Inbox`].
    pub(crate) fn join_inbox(&mut self, waiter: C::Done) -> InboxStep {
        match &mut self.inbox_state {
            InboxState::Ready { .. } => InboxStep::Ready,
            InboxState::Pending { waiters, .. } => {
                waiters.push(waiter);
                InboxStep::Wait
            }
            InboxState::Absent => {
                let id = self.next_subscription_id;
                self.next_subscription_id += 1;
                self.inbox_state = InboxState::Pending { id, waiters: vec![waiter] };
                InboxStep::Subscribe(id)
            }
        }
    }

    /// The inbox Subscribe was accepted or refused (or could not be sent):
    /// tell every request waiting for it. After a refusal the next request
    /// tries again (permissions may have been reloaded).
    pub(crate) fn settle_inbox(&mut self, result: Result<(), ClientError>) {
        let InboxState::Pending { id, waiters } = std::mem::replace(&mut self.inbox_state, InboxState::Absent) else {
            return;
        };
        if result.is_ok() {
            self.inbox_state = InboxState::Ready { id };
        }
        for waiter in waiters {
            waiter.complete(result.clone());
        }
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
        self.add_pong_waiter(PongWaiter::Flush(waiter));
    }

    /// For a Ping just encoded: it closes the current interval.
    pub(crate) fn add_pong_waiter(&mut self, waiter: PongWaiter<C>) {
        self.pong_waiters.push_back(waiter);
        self.intervals.push_back(Interval::default());
    }

    /// Undoes the last [`ConnectionState::add_pong_waiter`] of a boundary
    /// whose frame then failed to encode (nothing was added since).
    pub(crate) fn remove_last_boundary(&mut self) {
        debug_assert!(matches!(self.pong_waiters.back(), Some(PongWaiter::Boundary)));
        debug_assert!(self.intervals.back().is_some_and(|interval| !interval.unsettled()));
        self.pong_waiters.pop_back();
        self.intervals.pop_back();
    }

    fn current_interval(&mut self) -> &mut Interval {
        self.intervals.back_mut().expect("there is always a current interval")
    }

    /// Outside ack mode, before encoding a frame that may be refused: whether
    /// a boundary Ping must go first, so that the new frame does not share an
    /// interval with an attributed frame (or, for an attributed frame, with
    /// any frame of unknown fate).
    pub(crate) fn needs_boundary(&mut self, attributed: bool) -> bool {
        if self.ack_mode {
            return false;
        }
        let interval = self.current_interval();
        if attributed {
            interval.unsettled()
        } else {
            interval.attributed.is_some()
        }
    }

    /// Outside ack mode, a Publish, Subscribe or Unsubscribe nobody waits on
    /// was just encoded (after the boundary [`ConnectionState::needs_boundary`] asked for).
    pub(crate) fn add_unattributed(&mut self) {
        if !self.ack_mode {
            let interval = self.current_interval();
            debug_assert!(interval.attributed.is_none());
            interval.unattributed += 1;
        }
    }

    /// Outside ack mode, `frame` was just encoded (after the boundary
    /// [`ConnectionState::needs_boundary`] asked for): a refusal in its
    /// interval is its.
    pub(crate) fn add_attributed(&mut self, frame: Attributed) {
        if !self.ack_mode {
            let interval = self.current_interval();
            debug_assert!(!interval.unsettled());
            interval.attributed = Some(frame);
        }
    }

    /// `frame` was answered (a request's response, a durable publish's
    /// PublishAck), so the server accepted it: it no longer keeps its
    /// interval from taking other frames.
    fn settle_attributed(&mut self, frame: Attributed) {
        let frame = Some(frame);
        // Usually the newest interval: search from the back.
        if let Some(interval) = self.intervals.iter_mut().rev().find(|interval| interval.attributed == frame) {
            interval.attributed = None;
        }
    }

    /// Reserves the acknowledgement slot of a frame just encoded; a no-op
    /// outside ack mode, where the server sends no Ok.
    pub(crate) fn expect_acknowledgement(&mut self, waiter: Option<C::Done>) {
        if self.ack_mode {
            self.acknowledgement_waiters.push_back(waiter.map_or(Acknowledgement::Nobody, Acknowledgement::Caller));
        }
    }

    /// In ack mode, the slot of a frame whose Ok or Error answers `frame`.
    pub(crate) fn expect_acknowledgement_for(&mut self, frame: Attributed) {
        if self.ack_mode {
            self.acknowledgement_waiters.push_back(Acknowledgement::Frame(frame));
        }
    }

    /// Consumes one frame from the server. `Err` means the connection has
    /// just become terminal (the state has already failed everything).
    pub(crate) fn handle_frame(&mut self, frame: Frame) -> Result<(), ClientError> {
        match frame {
            Frame::Deliver(deliver) => self.deliver(deliver),
            Frame::Pong => {
                let Some(waiter) = self.pong_waiters.pop_front() else {
                    return self.fail_with(ClientError::Protocol("Pong without a Ping".to_owned()));
                };
                // Every refusal of the front interval's frames came before this Pong.
                let interval = self.intervals.pop_front().unwrap_or_default();
                debug_assert!(!self.intervals.is_empty());
                if let Some(frame) = interval.attributed {
                    self.attribute(frame, None);
                }
                if let PongWaiter::Flush(waiter) = waiter {
                    waiter.complete(Ok(()));
                }
            }
            Frame::Ok => match self.acknowledgement_waiters.pop_front() {
                Some(Acknowledgement::Caller(waiter)) => waiter.complete(Ok(())),
                Some(Acknowledgement::Frame(frame)) => self.attribute(frame, None),
                Some(Acknowledgement::Nobody) => {}
                None => return self.fail_with(ClientError::Protocol("Ok without a frame to acknowledge".to_owned())),
            },
            // The server checks that an idle connection is alive.
            Frame::Ping => self.pongs_owed = self.pongs_owed.saturating_add(1),
            Frame::Draining { close_within_ms } => {
                self.statistics.server_draining_within_ms = Some(close_within_ms);
            }
            Frame::Error(error) if ErrorCode::from_u16(error.code).is_some_and(|code| !code.closes_connection()) => {
                self.statistics.refused_by_server += 1;
                let refusal =
                    Refusal { code: error.code, message: error.message, retry_after_ms: error.retry_after_ms };
                if !self.ack_mode {
                    // It answers a frame of the front interval (see the module header).
                    let front = self.intervals.front_mut().and_then(|interval| interval.attributed.take());
                    match front {
                        Some(frame) => self.attribute(frame, Some(refusal)),
                        None => self.unreported.add(refusal),
                    }
                    return Ok(());
                }
                // In ack mode the Error answers the oldest unacknowledged frame.
                match self.acknowledgement_waiters.pop_front() {
                    Some(Acknowledgement::Caller(waiter)) => waiter.complete(Err(refusal.into_error())),
                    Some(Acknowledgement::Frame(frame)) => self.attribute(frame, Some(refusal)),
                    Some(Acknowledgement::Nobody) | None => self.unreported.add(refusal),
                }
            }
            Frame::Error(error) => {
                let error = ClientError::Server {
                    code: error.code,
                    message: error.message,
                    retry_after_ms: error.retry_after_ms,
                };
                // In ack mode the Error answers the oldest unacknowledged frame.
                if let Some(Acknowledgement::Caller(waiter)) = self.acknowledgement_waiters.pop_front() {
                    waiter.complete(Err(error.clone()));
                }
                return self.fail_with(error);
            }
            other => return self.fail_with(ClientError::Protocol(format!("unexpected frame from server: {other:?}"))),
        }
        Ok(())
    }

    /// The server's answer to an attributed frame: `None` accepted, `Some` refused.
    fn attribute(&mut self, frame: Attributed, refusal: Option<Refusal>) {
        match frame {
            Attributed::Inbox => self.settle_inbox(refusal.map_or(Ok(()), |refusal| Err(refusal.into_error()))),
            Attributed::Request(request) => {
                let Some(refusal) = refusal else { return };
                match self.responses.remove(&request) {
                    // Fail the request now rather than let it wait for its timeout.
                    Some(response) => response.complete(Err(refusal.into_error())),
                    // It already timed out: report it like any other refusal.
                    None => self.unreported.add(refusal),
                }
            }
            Attributed::DurablePublish(tag) => {
                let Some(refusal) = refusal else { return };
                if !self.refuse_durable_publish(tag, refusal.clone().into_error()) {
                    self.unreported.add(refusal);
                }
            }
        }
    }

    fn fail_with(&mut self, error: ClientError) -> Result<(), ClientError> {
        self.fail(error);
        Err(self.terminal.clone().unwrap_or(ClientError::Closed))
    }

    /// Ends the connection: records `error` (unless an earlier error was
    /// recorded), answers every waiter with it and closes every subscription.
    pub(crate) fn fail(&mut self, error: ClientError) {
        let error = self.terminal.get_or_insert(error).clone();
        for waiter in self.pong_waiters.drain(..) {
            if let PongWaiter::Flush(waiter) = waiter {
                waiter.complete(Err(error.clone()));
            }
        }
        self.intervals.clear();
        self.intervals.push_back(Interval::default());
        for waiter in self.acknowledgement_waiters.drain(..) {
            if let Acknowledgement::Caller(waiter) = waiter {
                waiter.complete(Err(error.clone()));
            }
        }
        self.settle_inbox(Err(error.clone()));
        for (_, response) in self.responses.drain() {
            response.complete(Err(error.clone()));
        }
        self.streams.fail(&error);
        self.subscriptions.clear();
    }

    fn deliver(&mut self, deliver: Deliver) {
        let id = deliver.subscription_id;
        if Some(id) == self.inbox_subscription_id() {
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
        let request = self.inbox.request_of(&message.subject);
        if let Some(request) = request {
            // Answered, so accepted: even when nobody waits any more.
            self.settle_attributed(Attributed::Request(request));
        }
        let Some(response) = request.and_then(|request| self.responses.remove(&request)) else {
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
