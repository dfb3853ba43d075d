//! Ack none: fire-and-forget replay. Every delivery is done when handed
//! out: nothing is pending, nothing is redelivered, the consumer never
//! stalls, and acks are ignored.

use std::time::Duration;

use flit_stream::consumer::{AckOutcome, AckPolicy, Consumer, ConsumerConfig, DeliveryMode};

#[test]
fn ack_none_replays_everything_once_without_holding_anything() {
    let mut config = ConsumerConfig::pull(None);
    config.ack_policy = AckPolicy::None;
    config.ack_pending_max = 2;
    config.mode = DeliveryMode::Push { deliver_subject: "replay.inbox".into() };
    let mut consumer = Consumer::new(config, (1, 0), |_| 1).unwrap();

    let sequences: Vec<u64> =
        std::iter::from_fn(|| consumer.next_delivery(Duration::ZERO, 10)).map(|delivery| delivery.sequence).collect();
    assert_eq!(sequences, (1..=10).collect::<Vec<u64>>(), "not limited by ack_pending_max");
    assert!(!consumer.stalled());
    assert_eq!(consumer.next_deadline(), None);
    assert_eq!(consumer.next_delivery(Duration::from_secs(3600), 10), None, "never redelivered");
    let info = consumer.info(10);
    assert_eq!((info.ack_pending, info.ack_floor, info.delivered_sequence, info.lag), (0, 10, 10, 0));
    assert_eq!(consumer.ack(3, Duration::ZERO), AckOutcome::Unknown);
    assert_eq!(consumer.nak(3), AckOutcome::Unknown);
    assert!(consumer.state().pending.is_empty());
}
