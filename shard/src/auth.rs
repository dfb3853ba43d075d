//! Who a client is, and what it may publish and subscribe to.
//!
//! **Identities** carry a bearer token, stored only as its SHA-256. A Hello's
//! token is hashed once and compared with every identity's hash in constant
//! time (all of them, so the time taken says nothing about which one, or
//! whether any, matched). Tokens are meant to be long random strings (at
//! least 128 bits, e.g. `openssl rand -hex 32`), for which a fast hash is the
//! right tool; they are not passwords.
//!
//! **Permissions** are two rules, publish and subscribe, each an optional
//! allow list and a deny list of subject patterns (wildcards as in
//! subscriptions). Deny wins. No allow list means everything not denied.
//! - A publish is allowed when its subject matches an allow pattern (or there
//!   is no allow list) and matches no deny pattern.
//! - A subscription is allowed when every subject its pattern can match is
//!   allowed: the pattern is *contained* in an allow pattern and in no deny
//!   pattern. A pattern that merely *overlaps* a deny pattern (`orders.>`
//!   with `orders.secret.>` denied) is allowed with a filter: deliveries on
//!   denied subjects are dropped for that subscription.
//! - Inboxes (subjects whose first token is `_INBOX`) carry replies. An
//!   identity with any subscribe rule (an allow list or a deny list) is
//!   *restricted*: a pattern of its that starts with `_INBOX` must name one
//!   inbox (`_INBOX.<literal>...`), and one that starts with a wildcard
//!   (`>`, `*.>`, `*.*.*`) is filtered so that it never receives an inbox
//!   subject. So a restricted identity reads only the inboxes it names, and
//!   the shard holds it to one named inbox per connection at a time. Only an
//!   identity with no subscribe rule at all (or no authentication) may read
//!   any inbox through a wildcard. Replies need `_INBOX.>` in the requester's
//!   subscribe allow list and in the responder's publish allow list
//!   (docs/OPERATIONS.md).
//! - Reply subjects: a restricted publisher's reply subject must be one it
//!   may publish to, or an inbox its connection has subscribed to by name
//!   (checked by the shard, which knows the connection's inbox).
//!
//! Everything here is pure data and functions: the shard calls it at the
//! handshake, per publish of a restricted identity (a few pattern matches,
//! no allocation), and per subscribe; the fuzz target and property tests
//! call it directly.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// One token of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatternToken {
    Literal(Box<[u8]>),
    /// `*`: exactly one token.
    Single,
    /// `>`: one or more tokens, last only.
    Tail,
}

/// A validated subject pattern, split into tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(Vec<PatternToken>);

impl Pattern {
    /// Parses a pattern that `flit_wire::subject::validate_pattern` accepts.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        flit_wire::subject::validate_pattern(text.as_bytes())
            .map_err(|reason| format!("invalid pattern `{text}`: {reason}"))?;
        let tokens = text
            .split('.')
            .map(|token| match token {
                "*" => PatternToken::Single,
                ">" => PatternToken::Tail,
                literal => PatternToken::Literal(literal.as_bytes().into()),
            })
            .collect();
        Ok(Pattern(tokens))
    }

    /// Whether the subject (a valid publish subject) matches.
    pub fn matches(&self, subject: &[u8]) -> bool {
        let mut tokens = subject.split(|byte| *byte == b'.');
        for token in &self.0 {
            match token {
                PatternToken::Tail => return tokens.next().is_some(),
                PatternToken::Single => {
                    if tokens.next().is_none() {
                        return false;
                    }
                }
                PatternToken::Literal(literal) => {
                    if tokens.next() != Some(&literal[..]) {
                        return false;
                    }
                }
            }
        }
        tokens.next().is_none()
    }

    /// Whether every subject `inner` matches is matched by `self`.
    pub fn contains(&self, inner: &Pattern) -> bool {
        contains(&self.0, &inner.0)
    }

    /// Whether some subject is matched by both.
    pub fn overlaps(&self, other: &Pattern) -> bool {
        overlaps(&self.0, &other.0)
    }

    /// How this pattern reaches inbox subjects.
    pub fn inbox_reach(&self) -> InboxReach<'_> {
        match (self.0.first(), self.0.get(1)) {
            (Some(PatternToken::Literal(first)), Some(PatternToken::Literal(inbox))) if &first[..] == INBOX_PREFIX => {
                InboxReach::Named(inbox)
            }
            (Some(PatternToken::Literal(first)), _) if &first[..] == INBOX_PREFIX => InboxReach::Unnamed,
            (Some(PatternToken::Literal(_)), _) => InboxReach::None,
            _ => InboxReach::Wildcard,
        }
    }
}

/// The first token of every inbox subject.
pub const INBOX_PREFIX: &[u8] = b"_INBOX";

/// How a pattern can match inbox subjects (`_INBOX...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboxReach<'a> {
    /// Its first token is a literal other than `_INBOX`: it matches no inbox.
    None,
    /// `_INBOX.<inbox>...`: only subjects of that one inbox.
    Named(&'a [u8]),
    /// `_INBOX` followed by a wildcard (or by nothing): any inbox.
    Unnamed,
    /// Its first token is a wildcard: inbox subjects among others.
    Wildcard,
}

/// The inbox a validated pattern names (`_INBOX.<inbox>...` with `<inbox>`
/// a literal), if it names one.
pub fn pattern_named_inbox(pattern: &[u8]) -> Option<&[u8]> {
    subject_inbox(pattern).filter(|inbox| !inbox.is_empty() && *inbox != b"*" && *inbox != b">")
}

/// The inbox a subject belongs to (its second token), if it is an inbox
/// subject at all (its first token is `_INBOX`). `Some(b"")` for the bare
/// subject `_INBOX`, which names no inbox.
pub fn subject_inbox(subject: &[u8]) -> Option<&[u8]> {
    let rest = subject.strip_prefix(INBOX_PREFIX)?;
    match rest.split_first() {
        None => Some(&[]),
        Some((b'.', rest)) => Some(rest.split(|byte| *byte == b'.').next().unwrap_or_default()),
        Some(_) => None,
    }
}

fn contains(outer: &[PatternToken], inner: &[PatternToken]) -> bool {
    use PatternToken::{Literal, Single, Tail};
    match (outer.first(), inner.first()) {
        (None, None) => true,
        // `>` takes whatever one or more tokens remain of the inner pattern.
        (Some(Tail), Some(_)) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(Single), Some(Literal(_) | Single)) => contains(&outer[1..], &inner[1..]),
        // The inner `>` can match several tokens; an outer `*` or literal only one.
        (Some(Single | Literal(_)), Some(Tail)) => false,
        (Some(Literal(_)), Some(Single)) => false,
        (Some(Literal(a)), Some(Literal(b))) => a == b && contains(&outer[1..], &inner[1..]),
    }
}

fn overlaps(left: &[PatternToken], right: &[PatternToken]) -> bool {
    use PatternToken::{Literal, Single, Tail};
    match (left.first(), right.first()) {
        (None, None) => true,
        (Some(Tail), Some(_)) | (Some(_), Some(Tail)) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(Literal(a)), Some(Literal(b))) => a == b && overlaps(&left[1..], &right[1..]),
        (Some(Single | Literal(_)), Some(Single | Literal(_))) => overlaps(&left[1..], &right[1..]),
    }
}

/// One direction's rule: optional allow list, deny list; deny wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// None: everything not denied is allowed.
    pub allow: Option<Vec<Pattern>>,
    pub deny: Vec<Pattern>,
}

/// The answer to a subscribe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscribeDecision {
    Allowed,
    /// Allowed, but deliveries on subjects the deny list matches are dropped,
    /// and with `inboxes_excluded` so are deliveries on any inbox subject.
    AllowedFiltered {
        inboxes_excluded: bool,
    },
    Denied,
}

impl Rule {
    /// Everything allowed.
    pub fn open() -> Rule {
        Rule::default()
    }

    pub fn is_open(&self) -> bool {
        self.allow.is_none() && self.deny.is_empty()
    }

    /// Whether the deny list matches `subject`.
    pub fn denies(&self, subject: &[u8]) -> bool {
        self.deny.iter().any(|pattern| pattern.matches(subject))
    }

    /// Whether a message on `subject` may pass.
    pub fn permits(&self, subject: &[u8]) -> bool {
        if self.denies(subject) {
            return false;
        }
        self.allow.as_ref().is_none_or(|allow| allow.iter().any(|pattern| pattern.matches(subject)))
    }

    /// Whether a subscription to `pattern` may be made, and how.
    pub fn subscription(&self, pattern: &Pattern) -> SubscribeDecision {
        if let Some(allow) = &self.allow {
            if !allow.iter().any(|allowed| allowed.contains(pattern)) {
                return SubscribeDecision::Denied;
            }
        }
        if self.deny.iter().any(|denied| denied.contains(pattern)) {
            return SubscribeDecision::Denied;
        }
        // Restricted identities read only the inboxes they name.
        let inboxes_excluded = !self.is_open()
            && match pattern.inbox_reach() {
                InboxReach::Unnamed => return SubscribeDecision::Denied,
                InboxReach::Wildcard => true,
                InboxReach::None | InboxReach::Named(_) => false,
            };
        if inboxes_excluded || self.deny.iter().any(|denied| denied.overlaps(pattern)) {
            return SubscribeDecision::AllowedFiltered { inboxes_excluded };
        }
        SubscribeDecision::Allowed
    }
}

/// What an identity may do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Rule,
    pub subscribe: Rule,
    /// May add and remove streams (`flit stream add/rm`). Reading a stream
    /// needs subscribe permission for every subject it captures instead.
    pub streams_admin: bool,
}

/// A named client identity.
#[derive(Clone, Debug)]
pub struct Identity {
    pub name: String,
    /// None: this identity proves itself with a client certificate only.
    token_sha256: Option<[u8; 32]>,
    pub permissions: Arc<Permissions>,
    /// The identity's rate limit, shared by all its connections on all shards.
    pub rate: Option<Arc<crate::rate_limit::SharedBuckets>>,
    /// Subscription bytes held by all of this identity's connections on all
    /// shards, against `identity_subscription_bytes_max` (subscriptions.rs).
    pub subscription_bytes: Arc<std::sync::atomic::AtomicUsize>,
    /// With mutual TLS: the SHA-256 of the client certificate that proves
    /// this identity (instead of, or as well as, the token).
    pub certificate_sha256: Option<[u8; 32]>,
    /// For NATS clients: the SHA-256 of the password that, with the
    /// identity's name as the user, proves it (CONNECT `user`/`pass`).
    password_sha256: Option<[u8; 32]>,
}

impl Identity {
    pub fn new(name: String, token_sha256: [u8; 32], permissions: Permissions) -> Identity {
        Identity {
            name,
            token_sha256: Some(token_sha256),
            permissions: Arc::new(permissions),
            rate: None,
            subscription_bytes: Arc::default(),
            certificate_sha256: None,
            password_sha256: None,
        }
    }

    /// The identity may also be proved by its name and this password's
    /// SHA-256 (a NATS client's CONNECT `user` and `pass`).
    pub fn with_password(mut self, password_sha256: [u8; 32]) -> Identity {
        self.password_sha256 = Some(password_sha256);
        self
    }

    /// An identity proved by a client certificate (mutual TLS), with or
    /// without a token as well.
    pub fn with_certificate(mut self, certificate_sha256: [u8; 32]) -> Identity {
        self.certificate_sha256 = Some(certificate_sha256);
        self
    }

    /// Drops the token: only the certificate proves this identity.
    pub fn without_token(mut self) -> Identity {
        self.token_sha256 = None;
        self
    }

    /// The identity with a rate limit for all of its connections together.
    pub fn with_rate_limits(mut self, limits: crate::rate_limit::RateLimits) -> Identity {
        if !limits.is_unlimited() {
            self.rate = Some(Arc::new(crate::rate_limit::SharedBuckets::new(limits)));
        }
        self
    }

    /// Same name and same token: a reload keeps such a client connected.
    pub fn same_credentials(&self, other: &Identity) -> bool {
        let same = |left: Option<[u8; 32]>, right: Option<[u8; 32]>| match (left, right) {
            (Some(left), Some(right)) => bool::from(left.ct_eq(&right)),
            (None, None) => true,
            _ => false,
        };
        self.name == other.name
            && same(self.token_sha256, other.token_sha256)
            && same(self.certificate_sha256, other.certificate_sha256)
            && same(self.password_sha256, other.password_sha256)
    }
}

/// SHA-256 of a token, as stored in the identities file (lowercase hex there).
pub fn token_sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Why a Hello was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a token is required")]
    MissingToken,
    #[error("the token matches no identity")]
    UnknownToken,
}

/// Every identity the server knows. Empty and not `required`: authentication
/// is off and every client is unrestricted.
#[derive(Clone, Debug, Default)]
pub struct Identities {
    pub required: bool,
    identities: Vec<Arc<Identity>>,
}

impl Identities {
    /// Authentication off.
    pub fn open() -> Identities {
        Identities::default()
    }

    /// Authentication on, with these identities (names must be unique and
    /// tokens distinct; the file loader checks).
    pub fn required(identities: Vec<Identity>) -> Identities {
        Identities { required: true, identities: identities.into_iter().map(Arc::new).collect() }
    }

    pub fn len(&self) -> usize {
        self.identities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// The identity a Hello's token proves. `Ok(None)`: authentication is
    /// off, the client is unrestricted.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Option<Arc<Identity>>, AuthError> {
        if !self.required {
            return Ok(None);
        }
        let token = token.filter(|token| !token.is_empty()).ok_or(AuthError::MissingToken)?;
        let presented = token_sha256(token);
        // Compare with every identity, matched or not, in constant time each.
        let mut found = None;
        for identity in &self.identities {
            if identity.token_sha256.is_some_and(|known| bool::from(known.ct_eq(&presented))) {
                found = Some(identity.clone());
            }
        }
        found.map(Some).ok_or(AuthError::UnknownToken)
    }

    /// The identity a NATS client's `user` and `pass` prove: the identity
    /// named `user` whose password hash matches. `Ok(None)`: authentication
    /// is off. The hash is compared in constant time; which names exist is
    /// not secret (they appear in logs and metrics), so the name lookup is
    /// not.
    pub fn authenticate_password(&self, user: &str, password: &str) -> Result<Option<Arc<Identity>>, AuthError> {
        if !self.required {
            return Ok(None);
        }
        let presented = token_sha256(password);
        let identity = self.by_name(user).ok_or(AuthError::UnknownToken)?;
        match identity.password_sha256 {
            Some(known) if bool::from(known.ct_eq(&presented)) => Ok(Some(identity.clone())),
            _ => Err(AuthError::UnknownToken),
        }
    }

    /// The identity a verified client certificate maps to, if any.
    pub fn by_certificate(&self, fingerprint: &[u8; 32]) -> Option<Arc<Identity>> {
        let mut found = None;
        for identity in &self.identities {
            if identity.certificate_sha256.is_some_and(|known| bool::from(known.ct_eq(fingerprint))) {
                found = Some(identity.clone());
            }
        }
        found
    }

    /// A reload keeps the state identities share across shards: an identity
    /// of the same name keeps counting the subscription bytes its
    /// connections hold, and one whose rate limits did not change takes over
    /// the old one's buckets, so a SIGHUP does not hand every identity a
    /// fresh burst.
    pub fn keep_shared_state_from(&mut self, old: &Identities) {
        for identity in &mut self.identities {
            let Some(previous) = old.by_name(&identity.name) else { continue };
            let same_limits = match (&identity.rate, &previous.rate) {
                (Some(new), Some(old)) => new.limits == old.limits,
                _ => false,
            };
            let identity = Arc::make_mut(identity);
            identity.subscription_bytes = previous.subscription_bytes.clone();
            if same_limits {
                identity.rate = previous.rate.clone();
            }
        }
    }

    /// The identity of this name, for a reload.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Identity>> {
        self.identities.iter().find(|identity| identity.name == name)
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
