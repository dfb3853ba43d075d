//! An async subscription: a bounded tokio channel fed by the reader task.
//!
//! Dropping an `AsyncSubscription` unsubscribes it without waiting. After
//! [`AsyncSubscription::unsubscribe`], or once the connection ends, messages
//! already buffered can still be read; then `next` returns `None`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;

use super::AsyncClient;
use crate::error::ClientError;
use crate::message::Message;

/// Messages for one subscription. Also a `futures_core::Stream` of messages.
pub struct AsyncSubscription {
    id: u64,
    receiver: mpsc::Receiver<Message>,
    client: AsyncClient,
    /// Set once an Unsubscribe was sent, so Drop does not send another.
    released: bool,
}

impl std::fmt::Debug for AsyncSubscription {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("AsyncSubscription").field("id", &self.id).finish_non_exhaustive()
    }
}

impl AsyncSubscription {
    pub(crate) fn new(id: u64, receiver: mpsc::Receiver<Message>, client: AsyncClient) -> AsyncSubscription {
        AsyncSubscription { id, receiver, client, released: false }
    }

    /// The subscription id, as carried in each Deliver's tag.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next message; `None` once the subscription is closed and drained.
    pub async fn next(&mut self) -> Option<Message> {
        self.receiver.recv().await
    }

    /// Waits up to `timeout`. `Ok(None)`: no message in time. `Err`: the
    /// subscription is closed and drained.
    pub async fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Message>, ClientError> {
        match tokio::time::timeout(timeout, self.receiver.recv()).await {
            Ok(Some(message)) => Ok(Some(message)),
            Err(_elapsed) => Ok(None),
            Ok(None) => Err(self.client.core_error().unwrap_or(ClientError::SubscriptionClosed)),
        }
    }

    /// Stops the subscription now. Messages already received stay readable.
    pub async fn unsubscribe(&mut self) -> Result<(), ClientError> {
        self.unsubscribe_after(0).await
    }

    /// Stops the subscription after `messages` more (0: now); see the blocking
    /// [`Subscription::unsubscribe_after`](crate::Subscription::unsubscribe_after).
    pub async fn unsubscribe_after(&mut self, messages: u64) -> Result<(), ClientError> {
        self.released = true;
        self.client.unsubscribe(self.id, messages).await
    }
}

impl futures_core::Stream for AsyncSubscription {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Message>> {
        self.receiver.poll_recv(context)
    }
}

impl Drop for AsyncSubscription {
    fn drop(&mut self) {
        if !self.released {
            self.client.release(self.id);
        }
    }
}
