//! Nak and term: a nak redelivers at once (ahead of new messages), a term
//! stops redelivery without a dead letter; acks, naks and terms of
//! sequences not pending are ignored and reported.

use std::time::Duration;

use flit_stream::consumer::{AckOutcome, Consumer, ConsumerConfig, Delivery};

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

fn consumer() -> Consumer {
    let mut config = ConsumerConfig::pull(Some("jobs".into()));
    config.ack_wait = ms(1_000);
    config.deliveries_max = 2;
    Consumer::new(config, (1, 0), |_| 1).unwrap()
}

#[test]
fn nak_redelivers_at_once_before_new_messages() {
    let mut consumer = consumer();
    consumer.next_delivery(ms(0), 3).unwrap();
    consumer.next_delivery(ms(0), 3).unwrap();
    assert_eq!(consumer.nak(2), AckOutcome::Applied);
    assert_eq!(consumer.next_delivery(ms(1), 3), Some(Delivery { sequence: 2, delivery_count: 2, redelivered: true }));
    assert_eq!(consumer.next_delivery(ms(1), 3).map(|delivery| delivery.sequence), Some(3));
    assert_eq!(consumer.nak(2), AckOutcome::DeadLettered, "delivered twice = deliveries_max");
}

#[test]
fn nak_twice_before_redelivery_redelivers_once() {
    let mut consumer = consumer();
    consumer.next_delivery(ms(0), 1).unwrap();
    assert_eq!(consumer.nak(1), AckOutcome::Applied);
    assert_eq!(consumer.nak(1), AckOutcome::Applied);
    assert!(consumer.next_delivery(ms(1), 1).is_some());
    assert_eq!(consumer.next_delivery(ms(1), 1), None);
}

#[test]
fn term_stops_redelivery_without_dead_letter() {
    let mut consumer = consumer();
    consumer.next_delivery(ms(0), 1).unwrap();
    assert_eq!(consumer.term(1), AckOutcome::Applied);
    consumer.process_deadlines(ms(10_000));
    assert_eq!(consumer.next_delivery(ms(10_000), 1), None);
    assert_eq!(consumer.pop_dead_letter(), None);
    let info = consumer.info(1);
    assert_eq!((info.terminated_total, info.dead_letters_total, info.ack_floor), (1, 0, 1));
}

#[test]
fn term_of_a_message_awaiting_redelivery_removes_it() {
    let mut consumer = consumer();
    consumer.next_delivery(ms(0), 1).unwrap();
    consumer.nak(1);
    assert_eq!(consumer.term(1), AckOutcome::Applied);
    assert_eq!(consumer.next_delivery(ms(1), 1), None);
}

#[test]
fn duplicate_and_unknown_acks_are_ignored_and_counted() {
    let mut consumer = consumer();
    consumer.next_delivery(ms(0), 5).unwrap();
    assert_eq!(consumer.ack(1, ms(1)), AckOutcome::Applied);
    assert_eq!(consumer.ack(1, ms(2)), AckOutcome::Duplicate);
    assert_eq!(consumer.nak(1), AckOutcome::Duplicate);
    assert_eq!(consumer.term(1), AckOutcome::Duplicate);
    assert_eq!(consumer.ack(4, ms(2)), AckOutcome::Unknown, "never delivered");
    assert_eq!(consumer.nak(4), AckOutcome::Unknown);
    let info = consumer.info(5);
    assert_eq!((info.acks_total, info.acks_ignored_total), (1, 5));
    assert_eq!(info.last_ack_at, Some(ms(1)));
}
