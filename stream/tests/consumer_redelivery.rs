//! Redelivery after the ack wait: an unacknowledged delivery comes back
//! once its ack wait expired, before any new message, lowest sequence
//! first, with its delivery count raised; an acked one never does.

use std::time::Duration;

use flit_stream::consumer::{AckOutcome, Consumer, ConsumerConfig, Delivery};

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

fn consumer(ack_wait: Duration) -> Consumer {
    let mut config = ConsumerConfig::pull(Some("orders".into()));
    config.ack_wait = ack_wait;
    Consumer::new(config, (1, 0), |_| 1).unwrap()
}

#[test]
fn unacked_delivery_is_redelivered_after_ack_wait_before_new_messages() {
    let mut consumer = consumer(ms(100));
    assert_eq!(consumer.next_delivery(ms(0), 2), Some(Delivery { sequence: 1, delivery_count: 1, redelivered: false }));
    assert_eq!(
        consumer.next_delivery(ms(10), 2),
        Some(Delivery { sequence: 2, delivery_count: 1, redelivered: false })
    );
    assert_eq!(consumer.ack(2, ms(20)), AckOutcome::Applied);
    assert_eq!(consumer.next_deadline(), Some(ms(100)));

    // Before the deadline nothing comes back, and nothing new exists yet.
    assert_eq!(consumer.next_delivery(ms(99), 2), None);
    // At the deadline sequence 1 comes back, ahead of the new sequence 3.
    assert_eq!(
        consumer.next_delivery(ms(100), 3),
        Some(Delivery { sequence: 1, delivery_count: 2, redelivered: true })
    );
    assert_eq!(
        consumer.next_delivery(ms(100), 3),
        Some(Delivery { sequence: 3, delivery_count: 1, redelivered: false })
    );
    assert_eq!(consumer.next_deadline(), Some(ms(200)), "the redelivery armed a new ack wait");
    let info = consumer.info(3);
    assert_eq!(info.redeliveries_total, 1);
    assert_eq!(info.ack_pending, 2);
    assert_eq!(info.ack_floor, 0);
}

#[test]
fn expired_redeliveries_come_lowest_sequence_first() {
    let mut consumer = consumer(ms(50));
    for now in [0, 1, 2] {
        consumer.next_delivery(ms(now), 3).unwrap();
    }
    // All three expired by 60 ms; they come back 1, 2, 3 and then nothing.
    let sequences: Vec<u64> =
        std::iter::from_fn(|| consumer.next_delivery(ms(60), 3)).map(|delivery| delivery.sequence).collect();
    assert_eq!(sequences, vec![1, 2, 3]);
}

#[test]
fn acked_message_is_never_redelivered_and_the_floor_moves() {
    let mut consumer = consumer(ms(50));
    consumer.next_delivery(ms(0), 2).unwrap();
    consumer.next_delivery(ms(0), 2).unwrap();
    assert_eq!(consumer.ack(1, ms(10)), AckOutcome::Applied);
    assert_eq!(consumer.ack_floor(), 1);
    assert_eq!(consumer.ack(2, ms(10)), AckOutcome::Applied);
    assert_eq!(consumer.ack_floor(), 2);
    assert_eq!(consumer.next_deadline(), None);
    assert_eq!(consumer.next_delivery(ms(10_000), 2), None);
    assert_eq!(consumer.info(2).last_ack_at, Some(ms(10)));
}

#[test]
fn in_progress_restarts_the_ack_wait() {
    let mut consumer = consumer(ms(100));
    consumer.next_delivery(ms(0), 1).unwrap();
    assert_eq!(consumer.in_progress(1, ms(90)), AckOutcome::Applied);
    assert_eq!(consumer.next_deadline(), Some(ms(190)));
    assert_eq!(consumer.next_delivery(ms(150), 1), None, "the wait was extended");
    assert_eq!(consumer.next_delivery(ms(190), 1).map(|delivery| delivery.delivery_count), Some(2));
}
