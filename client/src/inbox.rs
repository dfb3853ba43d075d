//! Request/reply inbox naming.
//!
//! Each client owns one random inbox prefix, `_INBOX.<22 random characters>`,
//! and one wildcard subscription `_INBOX.<random>.*`, created on the first
//! request. Request number `n` uses the reply subject `_INBOX.<random>.<n>`;
//! the dispatcher routes an answer to its waiting request by that last token.
//! 22 base-62 characters are about 131 bits, so two clients never share an
//! inbox by accident, and one subscription serves every request (instead of
//! one subscribe/unsubscribe pair, two round trips of routing state, each).

use rand::distr::{Alphanumeric, SampleString};

/// Random characters in an inbox prefix.
pub const INBOX_RANDOM_CHARACTERS: usize = 22;
/// The first token of every inbox subject.
pub const INBOX_ROOT: &str = "_INBOX";

/// One client's inbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Inbox {
    /// `_INBOX.<random>`, without a trailing dot.
    prefix: String,
}

impl Inbox {
    /// A fresh inbox with a random prefix.
    pub(crate) fn random() -> Inbox {
        let random = Alphanumeric.sample_string(&mut rand::rng(), INBOX_RANDOM_CHARACTERS);
        Inbox::with_random_part(&random)
    }

    pub(crate) fn with_random_part(random: &str) -> Inbox {
        debug_assert!(!random.is_empty() && !random.contains('.'));
        Inbox { prefix: format!("{INBOX_ROOT}.{random}") }
    }

    #[cfg(test)]
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The pattern of the one subscription that receives every answer.
    pub(crate) fn pattern(&self) -> String {
        format!("{}.*", self.prefix)
    }

    /// The reply subject of request number `request`.
    pub(crate) fn reply_subject(&self, request: u64) -> String {
        format!("{}.{request}", self.prefix)
    }

    /// The request number an answer on `subject` belongs to, if `subject` is
    /// one of this inbox's reply subjects.
    pub(crate) fn request_of(&self, subject: &str) -> Option<u64> {
        let token = subject.strip_prefix(self.prefix.as_str())?.strip_prefix('.')?;
        // Reject "+1" and similar, which `parse` would accept; only our own digits are ours.
        if token.is_empty() || !token.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        token.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_inbox_has_the_documented_shape_and_is_a_valid_subject() {
        let inbox = Inbox::random();
        let random = inbox.prefix().strip_prefix("_INBOX.").expect("prefix");
        assert_eq!(random.len(), INBOX_RANDOM_CHARACTERS);
        assert!(random.bytes().all(|byte| byte.is_ascii_alphanumeric()));
        assert!(flit_wire::subject::validate_pattern(inbox.pattern().as_bytes()).is_ok());
        assert!(flit_wire::subject::validate_publish_subject(inbox.reply_subject(7).as_bytes()).is_ok());
        assert_ne!(Inbox::random(), inbox, "two inboxes share 131 random bits");
    }

    #[test]
    fn answers_are_routed_by_the_last_token_only_within_this_inbox() {
        let inbox = Inbox::with_random_part("abc");
        assert_eq!(inbox.reply_subject(42), "_INBOX.abc.42");
        assert_eq!(inbox.request_of("_INBOX.abc.42"), Some(42));
        assert_eq!(inbox.request_of("_INBOX.abcd.42"), None);
        assert_eq!(inbox.request_of("_INBOX.abc.+4"), None);
        assert_eq!(inbox.request_of("_INBOX.abc.4.2"), None);
        assert_eq!(inbox.request_of("_INBOX.abc."), None);
        assert_eq!(inbox.request_of("_INBOX.other.1"), None);
    }
}
