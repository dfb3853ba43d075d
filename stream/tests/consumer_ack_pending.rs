//! Max ack pending: a consumer never has more than `ack_pending_max`
//! deliveries outstanding; at the limit it is stalled (and says so), keeps
//! redelivering, and resumes with the next new message after an ack.

use std::time::Duration;

use flit_stream::consumer::{AckOutcome, Consumer, ConsumerConfig};

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

fn consumer(ack_pending_max: u32) -> Consumer {
    let mut config = ConsumerConfig::pull(Some("slow".into()));
    config.ack_pending_max = ack_pending_max;
    config.ack_wait = ms(1_000);
    Consumer::new(config, (1, 0), |_| 1).unwrap()
}

#[test]
fn stalls_at_ack_pending_max_and_resumes_after_an_ack() {
    let mut consumer = consumer(3);
    for sequence in 1..=3 {
        assert_eq!(consumer.next_delivery(ms(0), 10).map(|delivery| delivery.sequence), Some(sequence));
        assert_eq!(consumer.stalled(), sequence == 3);
    }
    assert_eq!(consumer.next_delivery(ms(1), 10), None, "stalled: nothing new");
    let info = consumer.info(10);
    assert!(info.stalled);
    assert_eq!((info.ack_pending, info.lag), (3, 7));

    assert_eq!(consumer.ack(2, ms(2)), AckOutcome::Applied);
    assert!(!consumer.stalled());
    assert_eq!(consumer.next_delivery(ms(3), 10).map(|delivery| delivery.sequence), Some(4));
    assert!(consumer.stalled());
    assert_eq!(consumer.next_delivery(ms(3), 10), None);
}

#[test]
fn term_frees_a_slot_too() {
    let mut consumer = consumer(1);
    consumer.next_delivery(ms(0), 2).unwrap();
    assert_eq!(consumer.next_delivery(ms(0), 2), None);
    assert_eq!(consumer.term(1), AckOutcome::Applied);
    assert_eq!(consumer.next_delivery(ms(0), 2).map(|delivery| delivery.sequence), Some(2));
}

#[test]
fn redeliveries_continue_while_stalled() {
    let mut consumer = consumer(2);
    consumer.next_delivery(ms(0), 10).unwrap();
    consumer.next_delivery(ms(0), 10).unwrap();
    assert!(consumer.stalled());
    // Both ack waits expired: they are redelivered although the consumer is
    // at its limit, because a redelivery adds nothing outstanding.
    let redelivered: Vec<u64> =
        std::iter::from_fn(|| consumer.next_delivery(ms(1_000), 10)).map(|delivery| delivery.sequence).collect();
    assert_eq!(redelivered, vec![1, 2]);
    assert!(consumer.stalled());
    assert_eq!(consumer.info(10).ack_pending, 2);
}
