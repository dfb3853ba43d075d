//! NATS's subject rules, as nats-server's `IsValidSubject` and
//! `IsValidLiteralSubject` apply them (`server/sublist.go`).
//!
//! A subject is tokens separated by `.`; no token is empty; no token holds
//! space, tab, CR, LF or form feed. A token that is exactly `*` matches one
//! token, a token that is exactly `>` matches the rest and must be last. A
//! `*` or `>` inside a longer token (`a*`) is an ordinary character. A
//! publish subject holds no `*` or `>` token. Nothing else is limited:
//! length and token count are bounded only by the control line.
//!
//! How flit's own rules (`flit_wire::subject`) differ is written in the
//! crate header; these functions do not apply them, so the caller chooses.

use crate::error::ProtocolError;

/// Bytes no NATS token may hold.
fn is_nats_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n' | 0x0c)
}

/// Is `subject` a valid NATS subscription pattern (wildcards allowed)?
pub fn is_valid_pattern(subject: &[u8]) -> bool {
    if subject.is_empty() {
        return false;
    }
    let mut after_full_wildcard = false;
    for token in subject.split(|byte| *byte == b'.') {
        if token.is_empty() || after_full_wildcard {
            return false;
        }
        if token.iter().any(|byte| is_nats_whitespace(*byte)) {
            return false;
        }
        after_full_wildcard = token == b">";
    }
    true
}

/// Is `subject` a valid NATS publish subject (no wildcard tokens)?
pub fn is_valid_publish_subject(subject: &[u8]) -> bool {
    is_valid_pattern(subject) && subject.split(|byte| *byte == b'.').all(|token| token != b"*" && token != b">")
}

/// [`is_valid_pattern`] as the error a SUB gets (`'Invalid Subject'`).
pub fn check_pattern(subject: &[u8]) -> Result<(), ProtocolError> {
    if is_valid_pattern(subject) {
        Ok(())
    } else {
        Err(ProtocolError::InvalidSubject)
    }
}

/// [`is_valid_publish_subject`] as the error a PUB gets
/// (`'Invalid Publish Subject'`).
pub fn check_publish_subject(subject: &[u8]) -> Result<(), ProtocolError> {
    if is_valid_publish_subject(subject) {
        Ok(())
    } else {
        Err(ProtocolError::InvalidPublishSubject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_follow_nats_rules() {
        for valid in ["a", "a.b.c", "*", ">", "a.*.c", "a.>", "*.*.>", "a*", "a>b.c", "a\x00b", "é.ü"] {
            assert!(is_valid_pattern(valid.as_bytes()), "{valid:?}");
        }
        for invalid in ["", ".", "a.", ".a", "a..b", ">.a", "a.>.b", "a b", "a\tb", "a\rb", "a\nb", "a\x0cb"] {
            assert!(!is_valid_pattern(invalid.as_bytes()), "{invalid:?}");
        }
    }

    #[test]
    fn publish_subjects_hold_no_wildcard_tokens() {
        assert!(is_valid_publish_subject(b"orders.eu.created"));
        assert!(is_valid_publish_subject(b"a*.b>"));
        assert!(!is_valid_publish_subject(b"a.*"));
        assert!(!is_valid_publish_subject(b">"));
        assert_eq!(check_publish_subject(b"a.*"), Err(ProtocolError::InvalidPublishSubject));
        assert_eq!(check_pattern(b"a..b"), Err(ProtocolError::InvalidSubject));
    }
}
