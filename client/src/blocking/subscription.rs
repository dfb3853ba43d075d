//! A blocking subscription: a bounded queue fed by whichever thread reads
//! the socket (see `shared.rs`).
//!
//! Dropping a `Subscription` unsubscribes it (without waiting for the server).
//! After [`Subscription::unsubscribe`], or once the connection ends, the
//! messages already buffered can still be read; then `next` returns `None`.

use std::cell::Cell;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

use super::io::MessageReceiver;
use super::shared::Shared;
use super::Client;
use crate::error::ClientError;
use crate::message::Message;

/// Messages for one subscription. Owned by one thread at a time.
pub struct Subscription {
    id: u64,
    receiver: MessageReceiver,
    shared: Arc<Shared>,
    /// Set once an Unsubscribe was sent, so Drop does not send another.
    released: Cell<bool>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Subscription").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(id: u64, receiver: MessageReceiver, shared: Arc<Shared>) -> Subscription {
        Subscription { id, receiver, shared, released: Cell::new(false) }
    }

    /// The subscription id, as carried in each Deliver's tag.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits for the next message; `None` once the subscription is closed and drained.
    pub fn next(&self) -> Option<Message> {
        self.receiver.recv().ok()
    }

    /// Waits up to `timeout`. `Ok(None)`: no message in time. `Err`: the
    /// subscription is closed and drained ([`ClientError::SubscriptionClosed`],
    /// or the error that ended the connection).
    pub fn next_timeout(&self, timeout: Duration) -> Result<Option<Message>, ClientError> {
        match self.receiver.recv_timeout(timeout) {
            Ok(message) => Ok(Some(message)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                Err(self.shared.core.usable().err().unwrap_or(ClientError::SubscriptionClosed))
            }
        }
    }

    /// The messages, until the subscription is closed.
    pub fn iter(&self) -> impl Iterator<Item = Message> + '_ {
        std::iter::from_fn(move || self.next())
    }

    /// Stops the subscription now. Messages already received stay readable.
    pub fn unsubscribe(&self) -> Result<(), ClientError> {
        self.unsubscribe_after(0)
    }

    /// Stops the subscription after `messages` more (0: now). The count
    /// starts when the Unsubscribe is sent, so the channel may close slightly
    /// early if messages were in flight; the server stops at exactly `messages`.
    pub fn unsubscribe_after(&self, messages: u64) -> Result<(), ClientError> {
        self.released.set(true);
        Client::from_shared(Arc::clone(&self.shared)).unsubscribe(self.id, messages)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if !self.released.get() && self.shared.core.release(self.id) {
            let _ = self.shared.buffered();
        }
    }
}
