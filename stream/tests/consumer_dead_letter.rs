//! Max deliver to dead letter: a message delivered `deliveries_max` times
//! becomes a dead letter when its ack wait expires again (or when it is
//! nak'ed), is no longer pending, and is never delivered again. An
//! unpublished dead letter holds its ack-pending slot.

use std::time::Duration;

use flit_stream::consumer::{AckOutcome, Consumer, ConsumerConfig, DeadLetter, DELIVERIES_UNLIMITED};

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

fn consumer(deliveries_max: u32, ack_pending_max: u32) -> Consumer {
    let mut config = ConsumerConfig::pull(Some("work".into()));
    config.ack_wait = ms(10);
    config.deliveries_max = deliveries_max;
    config.ack_pending_max = ack_pending_max;
    config.dead_letter_subject = Some("dead.work".into());
    Consumer::new(config, (1, 0), |_| 1).unwrap()
}

#[test]
fn message_becomes_dead_letter_after_max_deliveries_and_one_more_ack_wait() {
    let mut consumer = consumer(3, 100);
    let mut now = 0;
    for expected_count in 1..=3 {
        let delivery = consumer.next_delivery(ms(now), 1).expect("delivered again");
        assert_eq!((delivery.sequence, delivery.delivery_count), (1, expected_count));
        assert_eq!(consumer.pop_dead_letter(), None);
        now += 10;
    }
    // The third delivery's ack wait expired at 30 ms: a dead letter, not a
    // fourth delivery.
    assert_eq!(consumer.next_delivery(ms(now), 1), None);
    assert_eq!(consumer.pop_dead_letter(), Some(DeadLetter { sequence: 1, delivery_count: 3 }));
    assert_eq!(consumer.pop_dead_letter(), None, "exactly one dead letter");
    assert_eq!(consumer.next_delivery(ms(1_000), 1), None, "never delivered again");
    assert_eq!(consumer.ack(1, ms(1_000)), AckOutcome::Duplicate, "an ack after the dead letter is ignored");
    let info = consumer.info(1);
    assert_eq!((info.dead_letters_total, info.ack_pending, info.ack_floor), (1, 0, 1));
}

#[test]
fn deadlines_alone_produce_dead_letters_on_the_timer() {
    let mut consumer = consumer(1, 100);
    consumer.next_delivery(ms(0), 2).unwrap();
    consumer.next_delivery(ms(5), 2).unwrap();
    consumer.process_deadlines(ms(15));
    assert_eq!(consumer.pop_dead_letter(), Some(DeadLetter { sequence: 1, delivery_count: 1 }));
    assert_eq!(consumer.pop_dead_letter(), Some(DeadLetter { sequence: 2, delivery_count: 1 }));
    assert_eq!(consumer.next_deadline(), None);
}

#[test]
fn nak_at_max_deliveries_dead_letters_at_once() {
    let mut consumer = consumer(2, 100);
    consumer.next_delivery(ms(0), 1).unwrap();
    assert_eq!(consumer.nak(1), AckOutcome::Applied);
    assert_eq!(consumer.next_delivery(ms(1), 1).map(|delivery| delivery.delivery_count), Some(2));
    assert_eq!(consumer.nak(1), AckOutcome::DeadLettered);
    assert_eq!(consumer.pop_dead_letter(), Some(DeadLetter { sequence: 1, delivery_count: 2 }));
    assert_eq!(consumer.next_delivery(ms(2), 1), None);
}

#[test]
fn an_ack_before_the_last_wait_expires_prevents_the_dead_letter() {
    let mut consumer = consumer(2, 100);
    consumer.next_delivery(ms(0), 1).unwrap();
    consumer.next_delivery(ms(10), 1).unwrap();
    assert_eq!(consumer.ack(1, ms(19)), AckOutcome::Applied);
    consumer.process_deadlines(ms(100));
    assert_eq!(consumer.pop_dead_letter(), None);
}

#[test]
fn unpublished_dead_letter_holds_its_ack_pending_slot() {
    let mut consumer = consumer(1, 1);
    consumer.next_delivery(ms(0), 5).unwrap();
    // Expired and dead: but until the shard takes the event, the slot is used.
    assert_eq!(consumer.next_delivery(ms(10), 5), None);
    assert!(consumer.stalled());
    assert_eq!(consumer.pop_dead_letter().map(|dead| dead.sequence), Some(1));
    assert!(!consumer.stalled());
    assert_eq!(consumer.next_delivery(ms(10), 5).map(|delivery| delivery.sequence), Some(2));
}

#[test]
fn unlimited_deliveries_never_dead_letter() {
    let mut consumer = consumer(DELIVERIES_UNLIMITED, 100);
    for round in 0..50u64 {
        let delivery = consumer.next_delivery(ms(round * 10), 1).unwrap();
        assert_eq!(delivery.delivery_count as u64, round + 1);
    }
    assert_eq!(consumer.pop_dead_letter(), None);
}
