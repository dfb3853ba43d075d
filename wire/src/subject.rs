//! Subject rules and the reference matcher.
//!
//! A subject is a non-empty sequence of non-empty tokens separated by `.`
//! (`orders.eu.created`). A subscription pattern may also hold the wildcard
//! tokens `*` (exactly one token) and `>` (one or more trailing tokens, only as
//! the last token). A publish subject may hold no `*` or `>` at all, so a
//! published subject can never be mistaken for a pattern.
//!
//! Bytes are checked, not characters: any UTF-8 is allowed except ASCII
//! control characters, space and DEL. The routing trie in `flit-shard` is the
//! fast matcher; [`pattern_matches`] here is the plain reference it is
//! property-tested against.

use crate::error::WireError;

/// Longest subject or pattern, in bytes.
pub const SUBJECT_BYTES_MAX: usize = 512;
/// Most tokens in a subject or pattern.
pub const SUBJECT_TOKENS_MAX: usize = 32;
/// Longest queue group name, in bytes.
pub const QUEUE_GROUP_BYTES_MAX: usize = 128;

/// What a byte may be inside a token, by a 256-entry table: one load per
/// byte in the single pass below (this runs for every published message).
const fn byte_classes() -> [u8; 256] {
    let mut classes = [BYTE_TOKEN; 256];
    let mut byte = 0;
    while byte <= b' ' as usize {
        classes[byte] = BYTE_FORBIDDEN;
        byte += 1;
    }
    classes[0x7f] = BYTE_FORBIDDEN;
    classes[b'.' as usize] = BYTE_SEPARATOR;
    classes[b'*' as usize] = BYTE_WILDCARD;
    classes[b'>' as usize] = BYTE_WILDCARD;
    classes
}

const BYTE_TOKEN: u8 = 0;
const BYTE_FORBIDDEN: u8 = 1;
const BYTE_SEPARATOR: u8 = 2;
const BYTE_WILDCARD: u8 = 3;
static BYTE_CLASSES: [u8; 256] = byte_classes();

/// One pass over the subject: length, empty tokens, token count, forbidden
/// bytes. Returns whether any wildcard byte was seen.
fn check_shape(subject: &[u8]) -> Result<bool, WireError> {
    if subject.is_empty() {
        return Err(WireError::InvalidSubject("empty"));
    }
    if subject.len() > SUBJECT_BYTES_MAX {
        return Err(WireError::InvalidSubject("longer than SUBJECT_BYTES_MAX"));
    }
    let mut tokens = 1usize;
    let mut token_len = 0usize;
    let mut wildcard = false;
    for byte in subject {
        match BYTE_CLASSES[*byte as usize] {
            BYTE_TOKEN => token_len += 1,
            BYTE_SEPARATOR => {
                if token_len == 0 {
                    return Err(WireError::InvalidSubject("empty token"));
                }
                tokens += 1;
                token_len = 0;
            }
            BYTE_WILDCARD => {
                wildcard = true;
                token_len += 1;
            }
            _ => return Err(WireError::InvalidSubject("whitespace or control character")),
        }
    }
    if token_len == 0 {
        return Err(WireError::InvalidSubject("empty token"));
    }
    if tokens > SUBJECT_TOKENS_MAX {
        return Err(WireError::InvalidSubject("more than SUBJECT_TOKENS_MAX tokens"));
    }
    Ok(wildcard)
}

/// Validates a subject to publish to (no wildcards).
pub fn validate_publish_subject(subject: &[u8]) -> Result<(), WireError> {
    if check_shape(subject)? {
        return Err(WireError::InvalidSubject("wildcard in a publish subject"));
    }
    Ok(())
}

/// Validates a subscription pattern.
pub fn validate_pattern(pattern: &[u8]) -> Result<(), WireError> {
    if !check_shape(pattern)? {
        return Ok(());
    }
    let token_count = pattern.split(|byte| *byte == b'.').count();
    for (index, token) in pattern.split(|byte| *byte == b'.').enumerate() {
        let has_wildcard_byte = token.iter().any(|byte| *byte == b'*' || *byte == b'>');
        if !has_wildcard_byte {
            continue;
        }
        match token {
            b"*" => {}
            b">" if index + 1 == token_count => {}
            b">" => return Err(WireError::InvalidSubject("'>' is only allowed as the last token")),
            _ => return Err(WireError::InvalidSubject("wildcard inside a token")),
        }
    }
    Ok(())
}

/// Validates a queue group name.
pub fn validate_queue_group(queue: &[u8]) -> Result<(), WireError> {
    if queue.is_empty() {
        return Err(WireError::InvalidQueueGroup("empty"));
    }
    if queue.len() > QUEUE_GROUP_BYTES_MAX {
        return Err(WireError::InvalidQueueGroup("longer than QUEUE_GROUP_BYTES_MAX"));
    }
    if !queue.iter().all(|byte| *byte > b' ' && *byte != 0x7f) {
        return Err(WireError::InvalidQueueGroup("whitespace or control character"));
    }
    Ok(())
}

/// The reference matcher: does a valid `pattern` match a valid publish `subject`?
/// Written for obviousness, not speed.
pub fn pattern_matches(pattern: &[u8], subject: &[u8]) -> bool {
    let pattern_tokens: Vec<&[u8]> = pattern.split(|byte| *byte == b'.').collect();
    let subject_tokens: Vec<&[u8]> = subject.split(|byte| *byte == b'.').collect();
    for (index, pattern_token) in pattern_tokens.iter().enumerate() {
        if *pattern_token == b">" {
            return subject_tokens.len() > index;
        }
        match subject_tokens.get(index) {
            None => return false,
            Some(subject_token) => {
                if *pattern_token != b"*" && pattern_token != subject_token {
                    return false;
                }
            }
        }
    }
    pattern_tokens.len() == subject_tokens.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_subjects() {
        assert!(validate_publish_subject(b"orders.eu.created").is_ok());
        assert!(validate_publish_subject(b"a").is_ok());
        for bad in [&b""[..], b".a", b"a.", b"a..b", b"a b", b"a.*", b"a.>", b"a\tb", b"a*"] {
            assert!(validate_publish_subject(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(validate_publish_subject(&[b'a'; SUBJECT_BYTES_MAX + 1]).is_err());
    }

    #[test]
    fn patterns() {
        for good in [&b"a.*.c"[..], b">", b"a.>", b"*", b"*.*"] {
            assert!(validate_pattern(good).is_ok(), "{:?}", String::from_utf8_lossy(good));
        }
        for bad in [&b"a.>.c"[..], b"a*.b", b"a.b>", b"", b"a..*"] {
            assert!(validate_pattern(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn reference_matcher() {
        assert!(pattern_matches(b"a.*.c", b"a.b.c"));
        assert!(!pattern_matches(b"a.*.c", b"a.b.d"));
        assert!(pattern_matches(b"a.>", b"a.b.c"));
        assert!(!pattern_matches(b"a.>", b"a"));
        assert!(pattern_matches(b">", b"a"));
        assert!(!pattern_matches(b"a.b", b"a.b.c"));
        assert!(!pattern_matches(b"a.b.c", b"a.b"));
    }
}
