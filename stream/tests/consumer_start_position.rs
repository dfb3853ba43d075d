//! Start positions (first, last, new, a sequence, a time) over a stream
//! whose first messages were removed, and config validation.

use std::time::Duration;

use flit_stream::consumer::{
    AckPolicy, ConfigError, Consumer, ConsumerConfig, DeliveryMode, StartPosition, ACK_PENDING_MAX_CEILING,
};

/// A stream holding sequences 11..=20 (1..=10 removed by retention).
const BOUNDS: (u64, u64) = (11, 20);

fn first_delivered(start: StartPosition, bounds: (u64, u64)) -> Option<u64> {
    let mut config = ConsumerConfig::pull(None);
    config.start = start;
    // Timestamps are sequence * 1000 ns in this stream.
    let resolve_time = |timestamp_ns: u64| timestamp_ns.div_ceil(1000).min(bounds.1 + 1);
    let mut consumer = Consumer::new(config, bounds, resolve_time).unwrap();
    consumer.next_delivery(Duration::ZERO, 25).map(|delivery| delivery.sequence)
}

#[test]
fn first_starts_at_the_first_stored_message() {
    assert_eq!(first_delivered(StartPosition::First, BOUNDS), Some(11));
}

#[test]
fn last_starts_at_the_last_message() {
    assert_eq!(first_delivered(StartPosition::Last, BOUNDS), Some(20));
}

#[test]
fn new_starts_after_the_last_message() {
    assert_eq!(first_delivered(StartPosition::New, BOUNDS), Some(21));
}

#[test]
fn sequence_starts_there_or_at_the_first_stored() {
    assert_eq!(first_delivered(StartPosition::Sequence { sequence: 15 }, BOUNDS), Some(15));
    assert_eq!(first_delivered(StartPosition::Sequence { sequence: 3 }, BOUNDS), Some(11), "3 was removed");
    assert_eq!(first_delivered(StartPosition::Sequence { sequence: 23 }, BOUNDS), Some(23), "a future sequence");
}

#[test]
fn time_starts_at_the_first_message_at_or_after_it() {
    assert_eq!(first_delivered(StartPosition::Time { timestamp_ns: 14_500 }, BOUNDS), Some(15));
    assert_eq!(first_delivered(StartPosition::Time { timestamp_ns: 1 }, BOUNDS), Some(11));
    assert_eq!(first_delivered(StartPosition::Time { timestamp_ns: 99_000 }, BOUNDS), Some(21));
}

#[test]
fn positions_on_an_empty_stream() {
    let empty = (1, 0);
    assert_eq!(first_delivered(StartPosition::First, empty), Some(1));
    assert_eq!(first_delivered(StartPosition::Last, empty), Some(1));
    assert_eq!(first_delivered(StartPosition::New, empty), Some(1));
}

#[test]
fn floor_and_lag_start_just_below_the_start() {
    let mut config = ConsumerConfig::pull(None);
    config.start = StartPosition::Sequence { sequence: 15 };
    let consumer = Consumer::new(config, BOUNDS, |_| 0).unwrap();
    let info = consumer.info(20);
    assert_eq!((info.delivered_sequence, info.ack_floor, info.lag), (14, 14, 6));
}

#[test]
fn invalid_configs_are_refused_with_typed_errors() {
    let check = |change: &dyn Fn(&mut ConsumerConfig)| {
        let mut config = ConsumerConfig::pull(Some("ok".into()));
        change(&mut config);
        Consumer::new(config, BOUNDS, |_| 0).err()
    };
    assert_eq!(check(&|_| {}), None);
    assert_eq!(check(&|config| config.name = Some(String::new())), Some(ConfigError::NameEmpty));
    assert_eq!(check(&|config| config.name = Some("a.b".into())), Some(ConfigError::NameInvalid));
    assert!(matches!(check(&|config| config.name = Some("n".repeat(129))), Some(ConfigError::NameTooLong { .. })));
    assert_eq!(
        check(&|config| config.start = StartPosition::Sequence { sequence: 0 }),
        Some(ConfigError::StartSequenceZero)
    );
    assert!(matches!(check(&|config| config.ack_wait = Duration::ZERO), Some(ConfigError::AckWaitOutOfRange { .. })));
    assert_eq!(check(&|config| config.deliveries_max = 0), Some(ConfigError::DeliveriesMaxZero));
    assert!(matches!(
        check(&|config| config.ack_pending_max = ACK_PENDING_MAX_CEILING + 1),
        Some(ConfigError::AckPendingMaxOutOfRange { .. })
    ));
    assert!(matches!(
        check(&|config| config.dead_letter_subject = Some("dead.*".into())),
        Some(ConfigError::InvalidDeadLetterSubject { .. })
    ));
    assert_eq!(
        check(&|config| {
            config.ack_policy = AckPolicy::None;
            config.dead_letter_subject = Some("dead".into());
        }),
        Some(ConfigError::DeadLetterNeedsExplicitAck)
    );
    assert!(matches!(
        check(&|config| config.mode = DeliveryMode::Push { deliver_subject: "a..b".into() }),
        Some(ConfigError::InvalidDeliverSubject { .. })
    ));
}
