//! `Core`: the operations both clients share, minus the IO.
//!
//! Every operation follows the same shape: take the writer lock, check the
//! connection is still usable, validate and encode the frame, and register
//! whatever waits for the server's answer, all in one critical section. The
//! blocking and the tokio layers only differ in how they create the channels,
//! how they wake their writer, and how they wait.
//!
//! # Lock order
//! `writer` before `state`, always. The reader only ever takes `state`, so it
//! can never wait behind a writer blocked on a full socket while holding a
//! lock the writer needs. Registering a waiter while holding `writer` is what
//! keeps waiters in the same order as the frames they wait for.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::BytesMut;
use flit_wire::{Limits, Welcome};

use crate::dispatch::{Attributed, Channels, ConnectionState, InboxStep, PongWaiter, Statistics};
use crate::error::ClientError;
use crate::framing::{check_subject, next_incoming, FrameWriter, Incoming};
use crate::inbox::Inbox;
use crate::options::Options;

/// Locks a mutex, ignoring poisoning: every critical section here leaves the
/// data consistent at each step, and a panicking user callback never runs
/// under these locks.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) struct Core<C: Channels> {
    pub(crate) writer: Arc<Mutex<FrameWriter>>,
    pub(crate) state: Arc<Mutex<ConnectionState<C>>>,
    pub(crate) welcome: Welcome,
    pub(crate) limits: Limits,
    pub(crate) options: Options,
}

impl<C: Channels> Core<C> {
    pub(crate) fn new(welcome: Welcome, options: Options) -> Self {
        let limits = crate::framing::limits_of(&welcome);
        Core {
            writer: Arc::new(Mutex::new(FrameWriter::new(limits))),
            state: Arc::new(Mutex::new(ConnectionState::new(options.ack_mode, Inbox::random()))),
            welcome,
            limits,
            options,
        }
    }

    pub(crate) fn usable(&self) -> Result<(), ClientError> {
        lock(&self.state).usable()
    }

    pub(crate) fn statistics(&self) -> Statistics {
        lock(&self.state).statistics()
    }

    /// Whether the request inbox is accepted and visible (then it stays so).
    pub(crate) fn inbox_ready(&self) -> bool {
        lock(&self.state).inbox_ready()
    }

    /// Whether a subscription (other than the request inbox) is open.
    pub(crate) fn has_subscriptions(&self) -> bool {
        lock(&self.state).has_subscriptions()
    }

    /// `Err(ClientError::Refused)` with the refusals not reported yet.
    pub(crate) fn check_refusals(&self) -> Result<(), ClientError> {
        match lock(&self.state).take_refusals() {
            Some(refused) => Err(refused),
            None => Ok(()),
        }
    }

    pub(crate) fn fail(&self, error: ClientError) {
        lock(&self.state).fail(error);
    }

    pub(crate) fn buffered_bytes(&self) -> usize {
        lock(&self.writer).buffered_bytes()
    }

    pub(crate) fn publish(
        &self,
        subject: &str,
        reply: Option<&str>,
        headers: &[(&str, &str)],
        payload: &[u8],
        acknowledgement: Option<C::Done>,
    ) -> Result<(), ClientError> {
        let mut writer = lock(&self.writer);
        let mut state = lock(&self.state);
        state.usable()?;
        unattributed(&mut writer, &mut state, |writer| writer.publish(subject, reply, headers, payload))?;
        state.expect_acknowledgement(acknowledgement);
        Ok(())
    }

    /// Registers `sink` and encodes the Subscribe; returns the subscription id.
    pub(crate) fn subscribe(
        &self,
        pattern: &str,
        queue: Option<&str>,
        sink: C::Sink,
        acknowledgement: Option<C::Done>,
    ) -> Result<u64, ClientError> {
        let mut writer = lock(&self.writer);
        let mut state = lock(&self.state);
        state.usable()?;
        let id = state.add_subscription(sink);
        if let Err(error) = unattributed(&mut writer, &mut state, |writer| writer.subscribe(pattern, queue, id)) {
            state.remove_subscription(id);
            return Err(error);
        }
        state.expect_acknowledgement(acknowledgement);
        Ok(id)
    }

    pub(crate) fn unsubscribe(
        &self,
        id: u64,
        after_messages: u64,
        acknowledgement: Option<C::Done>,
    ) -> Result<(), ClientError> {
        let mut writer = lock(&self.writer);
        let mut state = lock(&self.state);
        state.usable()?;
        unattributed(&mut writer, &mut state, |writer| writer.unsubscribe(id, after_messages))?;
        state.close_subscription_after(id, after_messages);
        state.expect_acknowledgement(acknowledgement);
        Ok(())
    }

    /// What a dropped subscription does: forget it locally at once and, if
    /// the connection is up, tell the server. Nobody waits for the answer.
    /// Returns whether a frame was encoded (the caller then wakes its writer).
    pub(crate) fn release(&self, id: u64) -> bool {
        let mut writer = lock(&self.writer);
        let mut state = lock(&self.state);
        state.remove_subscription(id);
        if state.usable().is_err() || unattributed(&mut writer, &mut state, |writer| writer.unsubscribe(id, 0)).is_err()
        {
            return false;
        }
        state.expect_acknowledgement(None);
        true
    }

    /// Encodes a Ping whose Pong completes `waiter`.
    pub(crate) fn ping(&self, waiter: C::Done) -> Result<(), ClientError> {
        let mut writer = lock(&self.writer);
        let mut state = lock(&self.state);
        state.usable()?;
        writer.ping();
        state.add_flush_waiter(waiter);
        Ok(())
    }

    /// Makes sure the inbox subscription exists before a request is sent.
    /// Returns `true` while it is not yet known to be accepted and visible
    /// on every shard (before that a fast responder's answer could be lost):
    /// the caller writes out and waits for `waiter`, which is completed with
    /// `Ok` once it is, or with the server's refusal.
    pub(crate) fn prepare_inbox(&self, waiter: C::Done) -> Result<bool, ClientError> {
        // Once ready it stays ready: the common case takes no writer lock.
        if lock(&self.state).inbox_ready() {
            return Ok(false);
        }
        let mut writer = lock(&self.writer);
        let mut state = lock(&self.state);
        state.usable()?;
        match state.join_inbox(waiter) {
            InboxStep::Ready => Ok(false),
            InboxStep::Wait => Ok(true),
            InboxStep::Subscribe(id) => {
                let pattern = state.inbox().pattern();
                let encoded = attributed(&mut writer, &mut state, Attributed::Inbox, |writer| {
                    writer.subscribe(&pattern, None, id)
                });
                if let Err(error) = encoded {
                    state.settle_inbox(Err(error.clone()));
                    return Err(error);
                }
                // The Ok (ack mode) or the Pong of a Ping after it comes only
                // once the subscription is visible on every shard, like a
                // flush's; outside ack mode that Pong also settles it.
                if !state.ack_mode() {
                    writer.ping();
                    state.add_pong_waiter(PongWaiter::Boundary);
                }
                Ok(true)
            }
        }
    }

    /// Registers `response` and encodes the request's Publish with its reply
    /// subject; returns the request number for [`Core::cancel_request`].
    pub(crate) fn begin_request(
        &self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
        response: C::Response,
    ) -> Result<u64, ClientError> {
        check_subject(subject)?;
        let mut writer = lock(&self.writer);
        let mut state = lock(&self.state);
        state.usable()?;
        let request = state.add_request(response);
        let reply = state.inbox().reply_subject(request);
        // A refused request (its subject not permitted, a rate limit) fails
        // with the server's error at once instead of waiting for its timeout.
        let encoded = attributed(&mut writer, &mut state, Attributed::Request(request), |writer| {
            writer.publish(subject, Some(&reply), headers, payload)
        });
        if let Err(error) = encoded {
            state.cancel_request(request);
            return Err(error);
        }
        Ok(request)
    }

    pub(crate) fn cancel_request(&self, request: u64) {
        lock(&self.state).cancel_request(request);
    }
}

/// Encodes one frame so that the server's refusal of it, if any, reaches
/// `frame` (see the `dispatch` module header): in ack mode through its
/// acknowledgement slot; otherwise by keeping it alone among frames of
/// unknown fate in its interval, behind a boundary Ping if the current
/// interval holds any. Called with both locks held; if `encode` fails,
/// nothing is left in the buffer, the boundary included.
pub(crate) fn attributed<C: Channels>(
    writer: &mut FrameWriter,
    state: &mut ConnectionState<C>,
    frame: Attributed,
    encode: impl FnOnce(&mut FrameWriter) -> Result<(), ClientError>,
) -> Result<(), ClientError> {
    with_boundary(writer, state, true, encode)?;
    if state.ack_mode() {
        state.expect_acknowledgement_for(frame);
    } else {
        state.add_attributed(frame);
    }
    Ok(())
}

/// Encodes a Publish, Subscribe or Unsubscribe whose refusal nobody waits
/// for (it goes to `check_refusals`), behind a boundary Ping if the current
/// interval holds an attributed frame. Called with both locks held.
fn unattributed<C: Channels>(
    writer: &mut FrameWriter,
    state: &mut ConnectionState<C>,
    encode: impl FnOnce(&mut FrameWriter) -> Result<(), ClientError>,
) -> Result<(), ClientError> {
    with_boundary(writer, state, false, encode)?;
    state.add_unattributed();
    Ok(())
}

fn with_boundary<C: Channels>(
    writer: &mut FrameWriter,
    state: &mut ConnectionState<C>,
    attributed: bool,
    encode: impl FnOnce(&mut FrameWriter) -> Result<(), ClientError>,
) -> Result<(), ClientError> {
    let boundary = state.needs_boundary(attributed);
    let before = writer.buffered_bytes();
    if boundary {
        writer.ping();
        state.add_pong_waiter(PongWaiter::Boundary);
    }
    if let Err(error) = encode(writer) {
        if boundary {
            writer.truncate(before);
            state.remove_last_boundary();
        }
        return Err(error);
    }
    Ok(())
}

/// Encodes the Pongs owed to the server's Pings. Called by the writer side
/// with the writer lock held (lock order: writer, then state).
pub(crate) fn encode_owed_pongs<C: Channels>(writer: &mut FrameWriter, state: &Mutex<ConnectionState<C>>) {
    for _ in 0..lock(state).take_pongs_owed() {
        writer.pong();
    }
}

/// The reader's step: decode every whole frame in `buffer` and dispatch it,
/// taking the state lock once per batch rather than once per frame. `Err`
/// once the connection is terminal; the reader then stops. `Ok(true)` when
/// the server sent a Ping: the caller has the Pong written (writer side).
pub(crate) fn dispatch_buffered<C: Channels>(
    buffer: &mut BytesMut,
    limits: &Limits,
    state: &Mutex<ConnectionState<C>>,
) -> Result<bool, ClientError> {
    let mut state = lock(state);
    state.usable()?;
    loop {
        match next_incoming(buffer, limits) {
            Ok(Some(Incoming::Frame(frame))) => state.handle_frame(frame)?,
            Ok(Some(Incoming::Stream(frame))) => state.handle_stream_frame(frame)?,
            Ok(None) => return Ok(state.pongs_owed()),
            Err(error) => {
                state.fail(error.clone());
                return Err(error);
            }
        }
    }
}
