//! The dispatcher's side of durable streams: who waits for which tag, and
//! what each stream frame from the server completes.
//!
//! Every stream frame a client sends that expects an answer carries a tag
//! this connection chose (`next_tag`, never 0, never reused): a durable
//! Publish's ack id, or the request id of a StreamRequest, a Fetch or an Ack
//! that asked for a reply. The answer carries the same tag:
//! - a PublishAck completes the durable publish waiting in `publishes`;
//! - StreamMessages with a Fetch's tag are collected in that fetch's entry,
//!   and the StreamReply with its tag closes it (code 0: batch full, 408:
//!   its wait ran out; either way the messages so far are the answer);
//! - any other StreamReply completes the request waiting in `requests`.
//!
//! # Invariants
//! - A tag is in at most one of `publishes` and `requests`, and leaves it
//!   when its answer comes, when its caller gives up (cancel), or when the
//!   connection ends (`fail`, which answers every waiter with the error).
//! - A frame whose tag nobody waits for (a late answer to a call that timed
//!   out, or a tag this client never used) is counted in
//!   [`Statistics::unmatched_stream_frames`](crate::Statistics) and dropped:
//!   it never ends the connection.
//! - A fetch never holds more messages than its batch: the server sends at
//!   most that many, and any beyond are dropped and counted as unmatched.
//! - Stream requests, fetches and acks are not Publish/Subscribe/Unsubscribe:
//!   the server never answers them with a refusal Error frame that keeps the
//!   connection (it answers with a stream code), so they take no part in the
//!   refusal intervals of `dispatch`. A durable Publish does (it can be
//!   refused 401 or 307 like any publish): it is an attributed frame.

use std::collections::HashMap;

use flit_wire::stream::{PublishAck, StreamCode, StreamFrame, StreamReply};

use super::{Attributed, Channels, Completion, ConnectionState};
use crate::error::ClientError;
use crate::stream::{PublishAcked, StreamMessage};

/// A stream request waiting for its StreamReply.
pub(crate) enum StreamWaiter<C: Channels> {
    /// Stream administration, a consumer command, or an Ack that asked for a
    /// reply: the reply (code 0) or the refusal.
    Reply(C::Replied),
    /// A Fetch: its messages so far, up to `batch`.
    Fetch { batch: usize, messages: Vec<StreamMessage>, done: C::Fetched },
}

/// The stream waiters of one connection.
pub(crate) struct StreamWaiters<C: Channels> {
    next_tag: u64,
    publishes: HashMap<u64, C::Stored>,
    requests: HashMap<u64, StreamWaiter<C>>,
}

impl<C: Channels> Default for StreamWaiters<C> {
    fn default() -> Self {
        StreamWaiters { next_tag: 1, publishes: HashMap::new(), requests: HashMap::new() }
    }
}

impl<C: Channels> StreamWaiters<C> {
    fn allocate_tag(&mut self) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        debug_assert!(tag != 0, "0 means no answer on the wire");
        tag
    }

    /// Answers every waiter with `error` (the connection ended).
    pub(super) fn fail(&mut self, error: &ClientError) {
        for (_, waiter) in self.publishes.drain() {
            waiter.complete(Err(error.clone()));
        }
        for (_, waiter) in self.requests.drain() {
            match waiter {
                StreamWaiter::Reply(done) => done.complete(Err(error.clone())),
                StreamWaiter::Fetch { done, .. } => done.complete(Err(error.clone())),
            }
        }
    }
}

/// A stream code in an answer as the caller's result.
fn refusal(code: u16, message: String) -> ClientError {
    ClientError::Stream { code, message }
}

impl<C: Channels> ConnectionState<C> {
    /// Registers a durable publish; returns its ack id (the Publish's tag).
    pub(crate) fn add_durable_publish(&mut self, waiter: C::Stored) -> u64 {
        let tag = self.streams.allocate_tag();
        self.streams.publishes.insert(tag, waiter);
        tag
    }

    /// Registers a request waiting for its StreamReply; returns its request id.
    pub(crate) fn add_stream_request(&mut self, waiter: C::Replied) -> u64 {
        let tag = self.streams.allocate_tag();
        self.streams.requests.insert(tag, StreamWaiter::Reply(waiter));
        tag
    }

    /// Registers a fetch of up to `batch` messages; returns its request id.
    pub(crate) fn add_fetch(&mut self, batch: u32, done: C::Fetched) -> u64 {
        let tag = self.streams.allocate_tag();
        let batch = batch as usize;
        // The server sends at most `batch`; reserve for a small one only.
        let messages = Vec::with_capacity(batch.min(64));
        self.streams.requests.insert(tag, StreamWaiter::Fetch { batch, messages, done });
        tag
    }

    /// Forgets a durable publish whose caller gave up or could not send it.
    pub(crate) fn cancel_durable_publish(&mut self, tag: u64) {
        self.streams.publishes.remove(&tag);
    }

    /// Forgets a stream request or fetch whose caller gave up or could not send it.
    pub(crate) fn cancel_stream_request(&mut self, tag: u64) {
        self.streams.requests.remove(&tag);
    }

    /// A refusal (401, 307) of durable publish `tag`'s Publish frame: fail it
    /// now. `false` if nobody waits for it any more.
    pub(super) fn refuse_durable_publish(&mut self, tag: u64, error: ClientError) -> bool {
        match self.streams.publishes.remove(&tag) {
            Some(waiter) => {
                waiter.complete(Err(error));
                true
            }
            None => false,
        }
    }

    /// Consumes one stream frame from the server. `Err` means the connection
    /// has just become terminal.
    pub(crate) fn handle_stream_frame(&mut self, frame: StreamFrame) -> Result<(), ClientError> {
        match frame {
            StreamFrame::PublishAck(ack) => self.publish_acknowledged(ack),
            StreamFrame::Reply(reply) => self.stream_replied(reply),
            StreamFrame::Message(message) => {
                let tag = message.tag;
                let Some(StreamWaiter::Fetch { batch, messages, .. }) = self.streams.requests.get_mut(&tag) else {
                    self.statistics.unmatched_stream_frames += 1;
                    return Ok(());
                };
                if messages.len() >= *batch {
                    self.statistics.unmatched_stream_frames += 1;
                    return Ok(());
                }
                match StreamMessage::from_wire(message) {
                    Ok(message) => messages.push(message),
                    Err(error) => return self.fail_with(error),
                }
            }
            other => {
                let error = ClientError::Protocol(format!("unexpected frame from server: {}", other.name()));
                return self.fail_with(error);
            }
        }
        Ok(())
    }

    fn publish_acknowledged(&mut self, ack: PublishAck) {
        // Answered, so the server accepted the Publish frame itself.
        self.settle_attributed(Attributed::DurablePublish(ack.ack_id));
        let Some(waiter) = self.streams.publishes.remove(&ack.ack_id) else {
            self.statistics.unmatched_stream_frames += 1;
            return;
        };
        if ack.code == StreamCode::Ok.as_u16() {
            waiter.complete(Ok(PublishAcked { stream: ack.stream, sequence: ack.sequence, duplicate: ack.duplicate }));
        } else {
            waiter.complete(Err(refusal(ack.code, ack.message)));
        }
    }

    fn stream_replied(&mut self, reply: StreamReply) {
        let Some(waiter) = self.streams.requests.remove(&reply.request_id) else {
            self.statistics.unmatched_stream_frames += 1;
            return;
        };
        let ok = reply.code == StreamCode::Ok.as_u16();
        match waiter {
            StreamWaiter::Reply(done) if ok => done.complete(Ok(reply)),
            StreamWaiter::Reply(done) => done.complete(Err(refusal(reply.code, reply.message))),
            // A fetch whose wait ran out answers with what it has.
            StreamWaiter::Fetch { messages, done, .. } if ok || reply.code == StreamCode::FetchExpired.as_u16() => {
                done.complete(Ok(messages))
            }
            StreamWaiter::Fetch { done, .. } => done.complete(Err(refusal(reply.code, reply.message))),
        }
    }
}

#[cfg(test)]
#[path = "dispatch_streams_tests.rs"]
mod tests;
