//! What a permitted subscription must still not receive.
//!
//! A subscription of a restricted identity can match subjects its identity
//! may not read: a pattern that overlaps the subscribe deny list
//! (`orders.>` with `orders.audit.>` denied), or one that starts with a
//! wildcard and so matches other clients' inboxes (`>`, `*.*.*`). Such a
//! subscription carries a [`DeliveryFilter`]; so does its entry in every
//! shard's interest table. The one predicate, [`DeliveryFilter::permits`],
//! decides in both places:
//! - on the publishing shard, a shard whose only subscriptions for a pattern
//!   filter the subject out is not a target, and a queue group's member is
//!   picked only among shards with a member that may receive it (so a filter
//!   never eats a queue-group message, and a request nobody may receive gets
//!   "no responders" at once);
//! - on the delivering shard, each subscription is checked again, since
//!   several subscriptions with different filters share a pattern there.
//!
//! Filters compare by identity of the permissions they came from plus the
//! inbox flag, so all subscriptions of one identity to one pattern share one
//! interest entry. A reload that changes an identity's permissions makes new
//! filters; the shard moves each subscription's interest to its new filter.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::auth::{subject_inbox, Permissions};

/// Drops deliveries on subjects a subscription's identity may not read.
#[derive(Clone, Debug)]
pub struct DeliveryFilter {
    permissions: Arc<Permissions>,
    /// The pattern starts with a wildcard and its identity is restricted:
    /// no inbox subject passes.
    inboxes_excluded: bool,
}

impl DeliveryFilter {
    pub fn new(permissions: Arc<Permissions>, inboxes_excluded: bool) -> DeliveryFilter {
        DeliveryFilter { permissions, inboxes_excluded }
    }

    /// Whether a message on `subject` (which the subscription's pattern
    /// matches) may be delivered.
    pub fn permits(&self, subject: &[u8]) -> bool {
        if self.inboxes_excluded && subject_inbox(subject).is_some() {
            return false;
        }
        !self.permissions.subscribe.denies(subject)
    }
}

impl PartialEq for DeliveryFilter {
    fn eq(&self, other: &DeliveryFilter) -> bool {
        Arc::ptr_eq(&self.permissions, &other.permissions) && self.inboxes_excluded == other.inboxes_excluded
    }
}

impl Eq for DeliveryFilter {}

impl Hash for DeliveryFilter {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.permissions), state);
        self.inboxes_excluded.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Pattern, Rule};

    fn permissions(deny: &[&str]) -> Arc<Permissions> {
        let deny = deny.iter().map(|text| Pattern::parse(text).expect("valid")).collect();
        Arc::new(Permissions { publish: Rule::open(), subscribe: Rule { allow: None, deny }, streams_admin: false })
    }

    #[test]
    fn drops_denied_subjects_and_with_the_flag_every_inbox() {
        let filter = DeliveryFilter::new(permissions(&["secret.>"]), true);
        assert!(filter.permits(b"orders.1"));
        assert!(!filter.permits(b"secret.x"));
        assert!(!filter.permits(b"_INBOX.abc.1"));
        assert!(!filter.permits(b"_INBOX"));
        assert!(filter.permits(b"_INBOXES.abc"), "only the first token `_INBOX` makes an inbox");
        let named = DeliveryFilter::new(permissions(&["_INBOX.abc.secret"]), false);
        assert!(named.permits(b"_INBOX.abc.1"));
        assert!(!named.permits(b"_INBOX.abc.secret"));
    }

    #[test]
    fn equal_only_for_the_same_permissions_and_flag() {
        let shared = permissions(&["a"]);
        assert_eq!(DeliveryFilter::new(shared.clone(), true), DeliveryFilter::new(shared.clone(), true));
        assert_ne!(DeliveryFilter::new(shared.clone(), true), DeliveryFilter::new(shared, false));
        assert_ne!(DeliveryFilter::new(permissions(&["a"]), true), DeliveryFilter::new(permissions(&["a"]), true));
    }
}
