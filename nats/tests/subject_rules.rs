//! flit's subject rule (`flit_wire::subject`) is a subset of NATS's
//! (`flit_nats::subject`): everything flit accepts, NATS accepts, and a
//! wildcard means the same in both. The crate header's table lists where
//! NATS is looser; these tests pin each row.

use flit_nats::subject::{is_valid_pattern, is_valid_publish_subject};
use flit_wire::subject::{validate_pattern, validate_publish_subject, validate_queue_group};
use proptest::prelude::*;

/// Bytes that make subjects interesting: the separators, the wildcards,
/// every kind of whitespace, a control byte, DEL and a high byte.
fn subject_bytes() -> impl Strategy<Value = Vec<u8>> {
    let alphabet = prop_oneof![
        Just(b'a'),
        Just(b'b'),
        Just(b'.'),
        Just(b'*'),
        Just(b'>'),
        Just(b' '),
        Just(b'\t'),
        Just(0x0b),
        Just(0x0c),
        Just(0x00),
        Just(0x7f),
        Just(0xc3),
    ];
    proptest::collection::vec(alphabet, 0..12)
}

proptest! {
    #[test]
    fn what_flit_accepts_nats_accepts(subject in subject_bytes()) {
        if validate_pattern(&subject).is_ok() {
            prop_assert!(is_valid_pattern(&subject), "{:?}", subject);
        }
        if validate_publish_subject(&subject).is_ok() {
            prop_assert!(is_valid_publish_subject(&subject), "{:?}", subject);
        }
    }
}

#[test]
fn where_nats_is_looser_than_flit() {
    // A wildcard byte inside a longer token is a literal in NATS.
    for subject in [&b"a*"[..], b"a.b>", b"*a.b"] {
        assert!(is_valid_publish_subject(subject) && validate_publish_subject(subject).is_err(), "{subject:?}");
    }
    // Control bytes other than NATS's whitespace, and DEL.
    for subject in [&b"a\x00b"[..], b"a\x0bb", b"a\x7fb"] {
        assert!(is_valid_pattern(subject) && validate_pattern(subject).is_err(), "{subject:?}");
    }
    // Length and token count.
    let long = "a".repeat(flit_wire::subject::SUBJECT_BYTES_MAX + 1);
    assert!(is_valid_pattern(long.as_bytes()) && validate_pattern(long.as_bytes()).is_err());
    let deep = vec!["t"; flit_wire::subject::SUBJECT_TOKENS_MAX + 1].join(".");
    assert!(is_valid_pattern(deep.as_bytes()) && validate_pattern(deep.as_bytes()).is_err());
    // Queue groups: flit bounds them; any token is a NATS queue.
    let queue = "q".repeat(flit_wire::subject::QUEUE_GROUP_BYTES_MAX + 1);
    assert!(validate_queue_group(queue.as_bytes()).is_err());
}

#[test]
fn where_both_refuse() {
    for subject in [&b""[..], b".", b"a..b", b"a.", b"a b", b"a\tb", b"a.>.b", b">.a", b"a\rb", b"a\nb", b"a\x0cb"] {
        assert!(!is_valid_pattern(subject) && validate_pattern(subject).is_err(), "{subject:?}");
    }
}
