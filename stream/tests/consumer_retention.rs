//! Retention skipping: when retention removes messages below the
//! consumer's position, pending ones among them are dropped and counted,
//! never redelivered or dead-lettered, and the position moves up.

use std::time::Duration;

use flit_stream::consumer::{Consumer, ConsumerConfig};

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

fn consumer() -> Consumer {
    let mut config = ConsumerConfig::pull(Some("audit".into()));
    config.ack_wait = ms(100);
    config.deliveries_max = 2;
    Consumer::new(config, (1, 0), |_| 1).unwrap()
}

#[test]
fn pending_messages_below_the_new_first_sequence_are_dropped_and_counted() {
    let mut consumer = consumer();
    for _ in 0..5 {
        consumer.next_delivery(ms(0), 10).unwrap();
    }
    consumer.ack(2, ms(1));
    consumer.nak(4); // waiting for redelivery: dropped from that queue too
    assert_eq!(consumer.retention_moved(5), 3, "1, 3 and 4 were pending");
    let info = consumer.info(10);
    assert_eq!((info.skipped_by_retention_total, info.ack_pending, info.ack_floor), (3, 1, 4));
    // Only 5 comes back when the ack waits expire; the dropped ones never
    // do, and never become dead letters.
    let redelivered: Vec<u64> =
        std::iter::from_fn(|| consumer.next_delivery(ms(200), 5)).map(|delivery| delivery.sequence).collect();
    assert_eq!(redelivered, vec![5]);
    consumer.process_deadlines(ms(10_000));
    let dead: Vec<u64> = std::iter::from_fn(|| consumer.pop_dead_letter()).map(|dead| dead.sequence).collect();
    assert_eq!(dead, vec![5], "5 was delivered deliveries_max times");
}

#[test]
fn a_position_behind_retention_jumps_to_the_first_stored_message() {
    let mut consumer = consumer();
    consumer.next_delivery(ms(0), 10).unwrap();
    consumer.ack(1, ms(0));
    assert_eq!(consumer.retention_moved(8), 0);
    assert_eq!(consumer.next_delivery(ms(0), 10).map(|delivery| delivery.sequence), Some(8));
    assert_eq!(consumer.info(10).ack_floor, 7);
}

#[test]
fn retention_below_the_floor_changes_nothing() {
    let mut consumer = consumer();
    consumer.next_delivery(ms(0), 10).unwrap();
    let version = consumer.state_version();
    assert_eq!(consumer.retention_moved(1), 0);
    assert_eq!(consumer.state_version(), version, "nothing to persist");
    assert_eq!(consumer.next_delivery(ms(0), 10).map(|delivery| delivery.sequence), Some(2));
}
