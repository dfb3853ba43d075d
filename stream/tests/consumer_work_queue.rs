//! Work-queue pull: several connections pull from one named consumer and
//! each message goes to exactly one of them; pull requests wait in a
//! bounded queue, oldest first, and expire.

use std::collections::HashMap;
use std::time::Duration;

use flit_stream::consumer::{Consumer, ConsumerConfig, PullError, PullQueue, PullRequest};

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

fn consumer() -> Consumer {
    let mut config = ConsumerConfig::pull(Some("workers".into()));
    config.ack_wait = ms(1_000);
    Consumer::new(config, (1, 0), |_| 1).unwrap()
}

fn request(token: u64, batch: u32, expires_at: Duration) -> PullRequest<u64> {
    PullRequest { token, batch, expires_at }
}

#[test]
fn several_pullers_each_message_exactly_once_oldest_request_first() {
    let mut consumer = consumer();
    let mut queue = PullQueue::new(16, 100);
    queue.add_pull_request(request(1, 3, ms(500)), ms(0)).unwrap();
    queue.add_pull_request(request(2, 3, ms(500)), ms(0)).unwrap();
    queue.add_pull_request(request(3, 10, ms(500)), ms(0)).unwrap();

    let mut owner: HashMap<u64, u64> = HashMap::new();
    let mut completions = Vec::new();
    while let Some(pulled) = queue.next_pull_delivery(&mut consumer, ms(1), 8) {
        assert!(owner.insert(pulled.delivery.sequence, pulled.token).is_none(), "delivered twice");
        if pulled.request_complete {
            completions.push(pulled.token);
        }
    }
    assert_eq!(owner.len(), 8, "every message went to some puller");
    // Request 1 (oldest) filled first, then 2, then 3 took the rest.
    for (sequence, token) in [(1, 1), (3, 1), (4, 2), (6, 2), (7, 3), (8, 3)] {
        assert_eq!(owner[&sequence], token);
    }
    assert_eq!(completions, vec![1, 2]);
    assert_eq!(queue.len(), 1, "request 3 still waits for 8 more");
}

#[test]
fn unacked_work_of_a_vanished_puller_goes_to_another_after_ack_wait() {
    let mut consumer = consumer();
    let mut queue = PullQueue::new(16, 100);
    queue.add_pull_request(request(1, 1, ms(10_000)), ms(0)).unwrap();
    let first = queue.next_pull_delivery(&mut consumer, ms(0), 1).unwrap();
    assert_eq!((first.token, first.delivery.sequence), (1, 1));
    // Connection 1 goes away without acking; connection 2 pulls.
    assert!(queue.cancel(|token| *token == 1).is_empty(), "its request was already complete");
    queue.add_pull_request(request(2, 1, ms(10_000)), ms(1)).unwrap();
    assert_eq!(queue.next_pull_delivery(&mut consumer, ms(500), 1), None, "still within its ack wait");
    let again = queue.next_pull_delivery(&mut consumer, ms(1_000), 1).unwrap();
    assert_eq!((again.token, again.delivery.sequence, again.delivery.redelivered), (2, 1, true));
}

#[test]
fn expired_requests_are_returned_and_never_assigned() {
    let mut consumer = consumer();
    let mut queue = PullQueue::new(16, 100);
    queue.add_pull_request(request(1, 5, ms(100)), ms(0)).unwrap();
    queue.add_pull_request(request(2, 5, ms(300)), ms(0)).unwrap();
    assert_eq!(queue.next_deadline(), Some(ms(100)));
    // At 150 ms request 1 expired, though not yet collected: request 2
    // gets the message.
    let pulled = queue.next_pull_delivery(&mut consumer, ms(150), 1).unwrap();
    assert_eq!(pulled.token, 2);
    let expired = queue.expire_pull_requests(ms(150));
    assert_eq!(expired.len(), 1);
    assert_eq!((expired[0].request.token, expired[0].delivered), (1, 0));
    let expired = queue.expire_pull_requests(ms(300));
    assert_eq!((expired[0].request.token, expired[0].delivered), (2, 1));
    assert!(queue.is_empty());
}

#[test]
fn nothing_is_taken_from_the_consumer_without_a_waiting_request() {
    let mut consumer = consumer();
    let mut queue: PullQueue<u64> = PullQueue::new(4, 10);
    assert_eq!(queue.next_pull_delivery(&mut consumer, ms(0), 5), None);
    assert_eq!(consumer.delivered_sequence(), 0);
}

#[test]
fn requests_past_the_limits_are_refused_and_handed_back() {
    let mut queue = PullQueue::new(2, 10);
    queue.add_pull_request(request(1, 1, ms(100)), ms(0)).unwrap();
    queue.add_pull_request(request(2, 1, ms(100)), ms(0)).unwrap();
    let refused = queue.add_pull_request(request(3, 1, ms(100)), ms(0)).unwrap_err();
    assert_eq!(refused.error, PullError::QueueFull { pull_requests_max: 2 });
    assert_eq!(refused.request.token, 3);
    let cancelled = queue.cancel(|token| *token == 1);
    assert_eq!(cancelled.len(), 1);
    let refused = queue.add_pull_request(request(4, 11, ms(100)), ms(0)).unwrap_err();
    assert_eq!(refused.error, PullError::BatchOutOfRange { batch: 11, batch_max: 10 });
    let refused = queue.add_pull_request(request(5, 0, ms(100)), ms(0)).unwrap_err();
    assert!(matches!(refused.error, PullError::BatchOutOfRange { .. }));
    let refused = queue.add_pull_request(request(6, 1, ms(100)), ms(100)).unwrap_err();
    assert_eq!(refused.error, PullError::AlreadyExpired);
    queue.add_pull_request(request(7, 1, ms(100)), ms(0)).unwrap();
}
