//! # Waiting pull requests of one pull consumer
//!
//! A client of a pull consumer asks for a batch of up to N messages, and
//! waits until a deadline. Requests queue here, oldest first; the shard
//! assigns each delivery of the consumer to the oldest waiting request with
//! [`PullQueue::next_pull_delivery`]. Because the consumer hands out each
//! sequence once (until a redelivery), several connections pulling from one
//! named consumer share its messages: each delivery goes to exactly one
//! request (a work queue).
//!
//! The request's token is whatever the shard needs to answer it (its
//! connection and reply subject, say); this module only clones it.
//!
//! ## Invariants
//! - At most `pull_requests_max` requests wait; one more is refused and
//!   handed back, never dropped silently.
//! - A waiting request has received fewer deliveries than its batch; it
//!   leaves the queue when its batch is full, when it expires
//!   ([`PullQueue::expire_pull_requests`]), or when cancelled.
//! - An expired request is never assigned a delivery, even before the
//!   shard collected it.
//!
//! ## Shutdown
//! Waiting requests are not persisted; on a drain the shard answers each
//! with [`PullQueue::cancel`] (all of them) and a status. A connection that
//! goes away leaves its delivered messages pending: they are redelivered to
//! other pullers after their ack wait.

use std::collections::VecDeque;
use std::time::Duration;

use super::{Consumer, Delivery};

/// One client's request for up to `batch` messages, waiting until
/// `expires_at` (the consumer's clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequest<Token> {
    pub token: Token,
    pub batch: u32,
    pub expires_at: Duration,
}

/// Why a pull request was refused. The client's to fix or retry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PullError {
    /// Already `pull_requests_max` waiting. Recoverable: retry later.
    #[error("{pull_requests_max} pull requests already waiting")]
    QueueFull { pull_requests_max: usize },
    /// A batch of 0, or above the queue's `batch_max`.
    #[error("batch {batch} is 0 or above {batch_max}")]
    BatchOutOfRange { batch: u32, batch_max: u32 },
    /// `expires_at` is not after now.
    #[error("pull request already expired")]
    AlreadyExpired,
}

/// A refused request, handed back so the shard can answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRefusal<Token> {
    pub error: PullError,
    pub request: PullRequest<Token>,
}

/// A delivery assigned to a waiting request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullDelivery<Token> {
    pub token: Token,
    pub delivery: Delivery,
    /// The request's batch is now full and it left the queue.
    pub request_complete: bool,
    /// Deliveries made for the request so far, this one included.
    pub delivered: u32,
}

/// A request whose wait ended; the shard answers it with a timeout status
/// (after `delivered` messages, possibly 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredPullRequest<Token> {
    pub request: PullRequest<Token>,
    pub delivered: u32,
}

#[derive(Debug)]
struct Waiting<Token> {
    request: PullRequest<Token>,
    delivered: u32,
}

/// The waiting pull requests of one pull consumer, oldest first.
#[derive(Debug)]
pub struct PullQueue<Token> {
    waiting: VecDeque<Waiting<Token>>,
    pull_requests_max: usize,
    batch_max: u32,
}

impl<Token: Clone> PullQueue<Token> {
    /// A queue holding at most `pull_requests_max` requests of at most
    /// `batch_max` messages each.
    pub fn new(pull_requests_max: usize, batch_max: u32) -> PullQueue<Token> {
        assert!(pull_requests_max > 0 && batch_max > 0, "a pull queue must accept something");
        PullQueue { waiting: VecDeque::new(), pull_requests_max, batch_max }
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Queues `request` behind the others, or hands it back refused.
    pub fn add_pull_request(&mut self, request: PullRequest<Token>, now: Duration) -> Result<(), PullRefusal<Token>> {
        let error = if self.waiting.len() >= self.pull_requests_max {
            Some(PullError::QueueFull { pull_requests_max: self.pull_requests_max })
        } else if request.batch == 0 || request.batch > self.batch_max {
            Some(PullError::BatchOutOfRange { batch: request.batch, batch_max: self.batch_max })
        } else if request.expires_at <= now {
            Some(PullError::AlreadyExpired)
        } else {
            None
        };
        if let Some(error) = error {
            return Err(PullRefusal { error, request });
        }
        self.waiting.push_back(Waiting { request, delivered: 0 });
        debug_assert!(self.waiting.len() <= self.pull_requests_max);
        Ok(())
    }

    /// Removes and returns every request whose wait ended at `now`, oldest
    /// first.
    pub fn expire_pull_requests(&mut self, now: Duration) -> Vec<ExpiredPullRequest<Token>> {
        let mut expired = Vec::new();
        self.waiting.retain(|waiting| {
            if waiting.request.expires_at > now {
                return true;
            }
            expired.push(ExpiredPullRequest { request: waiting.request.clone(), delivered: waiting.delivered });
            false
        });
        expired
    }

    /// Removes and returns the requests whose token matches (their
    /// connection closed, or all of them on a drain).
    pub fn cancel(&mut self, mut matches: impl FnMut(&Token) -> bool) -> Vec<ExpiredPullRequest<Token>> {
        let mut cancelled = Vec::new();
        self.waiting.retain(|waiting| {
            if !matches(&waiting.request.token) {
                return true;
            }
            cancelled.push(ExpiredPullRequest { request: waiting.request.clone(), delivered: waiting.delivered });
            false
        });
        cancelled
    }

    /// The earliest expiry among the waiting requests, for the shard's
    /// timer (a scan: the queue is short and bounded).
    pub fn next_deadline(&self) -> Option<Duration> {
        self.waiting.iter().map(|waiting| waiting.request.expires_at).min()
    }

    /// Takes the consumer's next delivery for the oldest waiting request
    /// that has not expired, or `None` when no request waits or the
    /// consumer has nothing to deliver. Nothing is taken from the consumer
    /// when no request can receive it.
    pub fn next_pull_delivery(
        &mut self,
        consumer: &mut Consumer,
        now: Duration,
        stream_last_sequence: u64,
    ) -> Option<PullDelivery<Token>> {
        let index = self.waiting.iter().position(|waiting| waiting.request.expires_at > now)?;
        let delivery = consumer.next_delivery(now, stream_last_sequence)?;
        let waiting = &mut self.waiting[index];
        waiting.delivered += 1;
        debug_assert!(waiting.delivered <= waiting.request.batch);
        let token = waiting.request.token.clone();
        let request_complete = waiting.delivered == waiting.request.batch;
        let delivered = waiting.delivered;
        if request_complete {
            self.waiting.remove(index);
        }
        Some(PullDelivery { token, delivery, request_complete, delivered })
    }
}
