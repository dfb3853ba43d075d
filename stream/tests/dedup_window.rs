//! The per-stream message-id window: a duplicate within the window gets the
//! original's sequence back; ids expire by age and by count; a window
//! rebuilt from the log after a restart still catches retries; a failed
//! append's id can be forgotten.

use std::time::Duration;

use flit_stream::dedup::{DedupError, DedupOutcome, DedupWindow, MESSAGE_ID_BYTES_MAX};

fn seconds(value: u64) -> Duration {
    Duration::from_secs(value)
}

#[test]
fn duplicate_within_window_returns_original_sequence() {
    let mut window = DedupWindow::new(seconds(120), 1000);
    assert_eq!(window.check_and_insert(b"order-1", 7, seconds(1)), Ok(DedupOutcome::New));
    assert_eq!(window.check_and_insert(b"order-2", 8, seconds(2)), Ok(DedupOutcome::New));
    assert_eq!(
        window.check_and_insert(b"order-1", 9, seconds(60)),
        Ok(DedupOutcome::Duplicate { original_sequence: 7 })
    );
    // The duplicate did not replace the original.
    assert_eq!(
        window.check_and_insert(b"order-1", 10, seconds(61)),
        Ok(DedupOutcome::Duplicate { original_sequence: 7 })
    );
    assert_eq!(window.len(), 2);
}

#[test]
fn ids_expire_by_age() {
    let mut window = DedupWindow::new(seconds(10), 1000);
    assert_eq!(window.check_and_insert(b"a", 1, seconds(100)), Ok(DedupOutcome::New));
    assert_eq!(window.check_and_insert(b"b", 2, seconds(105)), Ok(DedupOutcome::New));
    // 9.999 s later: still within the window.
    let almost = seconds(100) + Duration::from_millis(9_999);
    assert_eq!(window.check_and_insert(b"a", 3, almost), Ok(DedupOutcome::Duplicate { original_sequence: 1 }));
    // 10 s later: expired, so the id is new again, with the new sequence.
    assert_eq!(window.check_and_insert(b"a", 4, seconds(110)), Ok(DedupOutcome::New));
    assert_eq!(window.check_and_insert(b"a", 5, seconds(111)), Ok(DedupOutcome::Duplicate { original_sequence: 4 }));
    // `b` is still remembered until 115.
    assert_eq!(window.check_and_insert(b"b", 6, seconds(114)), Ok(DedupOutcome::Duplicate { original_sequence: 2 }));
    window.expire(seconds(115));
    assert_eq!(window.len(), 1, "b expired on the timer, a (inserted at 110) stays");
}

#[test]
fn ids_expire_by_count_oldest_first() {
    let mut window = DedupWindow::new(seconds(3600), 3);
    for (index, id) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
        assert_eq!(window.check_and_insert(*id, index as u64 + 1, seconds(1)), Ok(DedupOutcome::New));
    }
    assert_eq!(window.len(), 3);
    // `a` was the oldest and was evicted; b, c, d remain.
    assert_eq!(window.check_and_insert(b"b", 10, seconds(2)), Ok(DedupOutcome::Duplicate { original_sequence: 2 }));
    assert_eq!(window.check_and_insert(b"d", 11, seconds(2)), Ok(DedupOutcome::Duplicate { original_sequence: 4 }));
    assert_eq!(window.check_and_insert(b"a", 12, seconds(2)), Ok(DedupOutcome::New));
    // Inserting `a` evicted `b`, now the oldest.
    assert_eq!(window.check_and_insert(b"b", 13, seconds(2)), Ok(DedupOutcome::New));
    assert_eq!(window.len(), 3);
}

#[test]
fn clock_stepping_back_still_expires_by_age() {
    let mut window = DedupWindow::new(seconds(10), 100);
    assert_eq!(window.check_and_insert(b"new", 1, seconds(100)), Ok(DedupOutcome::New));
    // The clock stepped back 50 s: `old` sits behind `new` in insertion order.
    assert_eq!(window.check_and_insert(b"old", 2, seconds(50)), Ok(DedupOutcome::New));
    // At 105 `new` is young, so the front of the queue stops expiry, but
    // `old` is 55 s old and must not be reported as a duplicate.
    assert_eq!(window.check_and_insert(b"old", 3, seconds(105)), Ok(DedupOutcome::New));
    assert_eq!(window.check_and_insert(b"old", 4, seconds(106)), Ok(DedupOutcome::Duplicate { original_sequence: 3 }));
    // At 111 `new` expires and the stale entry of `old` (sequence 2) is
    // popped behind it: the live entry (sequence 3, until 115) must stay.
    assert_eq!(window.check_and_insert(b"old", 5, seconds(111)), Ok(DedupOutcome::Duplicate { original_sequence: 3 }));
}

#[test]
fn forget_makes_a_failed_append_new_again() {
    let mut window = DedupWindow::new(seconds(60), 10);
    assert_eq!(window.check_and_insert(b"x", 5, seconds(1)), Ok(DedupOutcome::New));
    assert!(!window.forget(b"x", 6), "another sequence's id is left alone");
    assert!(window.forget(b"x", 5));
    assert_eq!(window.check_and_insert(b"x", 6, seconds(2)), Ok(DedupOutcome::New));
    assert_eq!(window.len(), 1);
    // Evicting by count pops the forgotten entry's stale slot first; the
    // live entry of `x` survives it.
    let mut window = DedupWindow::new(seconds(60), 2);
    window.check_and_insert(b"x", 1, seconds(1)).unwrap();
    assert!(window.forget(b"x", 1));
    window.check_and_insert(b"x", 2, seconds(1)).unwrap();
    window.check_and_insert(b"y", 3, seconds(1)).unwrap();
    assert_eq!(window.check_and_insert(b"x", 4, seconds(1)), Ok(DedupOutcome::Duplicate { original_sequence: 2 }));
}

#[test]
fn rebuild_from_log_catches_retries_after_restart() {
    let mut window = DedupWindow::new(seconds(60), 2);
    let records: Vec<(&[u8], u64, Duration)> = vec![
        (b"too-old", 1, seconds(10)),
        (b"evicted-by-count", 2, seconds(50)),
        (b"kept-1", 3, seconds(55)),
        (b"kept-1", 4, seconds(56)), // a second record with the same id: the first wins
        (b"kept-2", 5, seconds(57)),
    ];
    window.rebuild(records, seconds(100));
    assert_eq!(window.len(), 2);
    assert_eq!(
        window.check_and_insert(b"kept-1", 9, seconds(100)),
        Ok(DedupOutcome::Duplicate { original_sequence: 3 })
    );
    assert_eq!(
        window.check_and_insert(b"kept-2", 9, seconds(100)),
        Ok(DedupOutcome::Duplicate { original_sequence: 5 })
    );
    assert_eq!(window.check_and_insert(b"too-old", 10, seconds(100)), Ok(DedupOutcome::New));
}

#[test]
fn rebuild_drops_ids_already_expired_at_now() {
    let mut window = DedupWindow::new(seconds(60), 100);
    window.rebuild([(b"a".as_slice(), 1, seconds(10)), (b"b".as_slice(), 2, seconds(70))], seconds(100));
    assert_eq!(window.len(), 1);
    assert_eq!(window.check_and_insert(b"a", 3, seconds(100)), Ok(DedupOutcome::New));
}

#[test]
fn empty_and_oversized_ids_are_refused() {
    let mut window = DedupWindow::new(seconds(60), 10);
    assert_eq!(window.check_and_insert(b"", 1, seconds(1)), Err(DedupError::EmptyMessageId));
    let long = vec![b'x'; MESSAGE_ID_BYTES_MAX + 1];
    assert!(matches!(window.check_and_insert(&long, 1, seconds(1)), Err(DedupError::MessageIdTooLong { .. })));
    let longest = vec![b'x'; MESSAGE_ID_BYTES_MAX];
    assert_eq!(window.check_and_insert(&longest, 1, seconds(1)), Ok(DedupOutcome::New));
    assert!(window.len() == 1);
}

#[test]
fn zero_entries_max_remembers_nothing() {
    let mut window = DedupWindow::new(seconds(60), 0);
    assert_eq!(window.check_and_insert(b"a", 1, seconds(1)), Ok(DedupOutcome::New));
    assert_eq!(window.check_and_insert(b"a", 2, seconds(1)), Ok(DedupOutcome::New));
    assert!(window.is_empty());
}
