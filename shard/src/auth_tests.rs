//! Permission matching: examples, then properties against a naive
//! reference that decides containment and overlap by brute force over every
//! subject of up to five tokens from a small alphabet.

use proptest::prelude::*;

use super::*;

fn pattern(text: &str) -> Pattern {
    Pattern::parse(text).expect("valid pattern")
}

fn rule(allow: Option<&[&str]>, deny: &[&str]) -> Rule {
    Rule {
        allow: allow.map(|list| list.iter().map(|text| pattern(text)).collect()),
        deny: deny.iter().map(|text| pattern(text)).collect(),
    }
}

#[test]
fn deny_beats_allow_for_publish() {
    let publish = rule(Some(&["orders.>"]), &["orders.secret.>"]);
    assert!(publish.permits(b"orders.eu.new"));
    assert!(!publish.permits(b"orders.secret.key"));
    assert!(!publish.permits(b"billing.x"));
    assert!(rule(None, &[]).permits(b"anything.at.all"));
    assert!(!rule(None, &["a.*"]).permits(b"a.b"));
}

#[test]
fn subscriptions_must_be_contained_in_an_allow_pattern() {
    let subscribe = rule(Some(&["orders.>", "_INBOX.>"]), &["orders.secret.>"]);
    assert_eq!(subscribe.subscription(&pattern("orders.eu.*")), SubscribeDecision::Allowed);
    assert_eq!(subscribe.subscription(&pattern(">")), SubscribeDecision::Denied, "wider than allowed");
    assert_eq!(subscribe.subscription(&pattern("orders.secret.>")), SubscribeDecision::Denied);
    assert_eq!(subscribe.subscription(&pattern("orders.secret.x")), SubscribeDecision::Denied);
    assert_eq!(
        subscribe.subscription(&pattern("orders.>")),
        SubscribeDecision::AllowedFiltered,
        "overlaps the denied part: allowed, filtered"
    );
    assert_eq!(subscribe.subscription(&pattern("orders.*.x")), SubscribeDecision::AllowedFiltered);
}

#[test]
fn restricted_identities_subscribe_to_one_inbox_only() {
    let subscribe = rule(Some(&["_INBOX.>"]), &[]);
    assert_eq!(subscribe.subscription(&pattern("_INBOX.abc123.*")), SubscribeDecision::Allowed);
    assert_eq!(subscribe.subscription(&pattern("_INBOX.>")), SubscribeDecision::Denied);
    assert_eq!(subscribe.subscription(&pattern("_INBOX.*.*")), SubscribeDecision::Denied);
    assert_eq!(rule(None, &[]).subscription(&pattern("_INBOX.>")), SubscribeDecision::Allowed, "unrestricted");
}

#[test]
fn authentication_finds_the_identity_by_token_hash_only() {
    let identities = Identities::required(vec![
        Identity::new("orders".into(), token_sha256("secret-1"), Permissions::default()),
        Identity::new("billing".into(), token_sha256("secret-2"), Permissions::default()),
    ]);
    assert_eq!(identities.authenticate(Some("secret-2")).unwrap().unwrap().name, "billing");
    assert_eq!(identities.authenticate(Some("secret-3")).unwrap_err(), AuthError::UnknownToken);
    assert_eq!(identities.authenticate(None).unwrap_err(), AuthError::MissingToken);
    assert_eq!(identities.authenticate(Some("")).unwrap_err(), AuthError::MissingToken);
    assert!(Identities::open().authenticate(None).unwrap().is_none(), "off: unrestricted");
}

#[test]
fn a_reload_keeps_the_rate_state_of_unchanged_limits() {
    use crate::rate_limit::{Limit, Policy, RateLimits};
    let limits =
        RateLimits { messages: Some(Limit { per_second: 10, burst: 10 }), bytes: None, policy: Policy::Reject };
    let make = |limits: RateLimits| {
        Identities::required(vec![Identity::new(
            "a".into(),
            token_sha256("token-a-0123456789"),
            Permissions::default(),
        )
        .with_rate_limits(limits)])
    };
    let old = make(limits);
    let mut same = make(limits);
    same.keep_rate_state_from(&old);
    let bucket = |identities: &Identities| identities.by_name("a").unwrap().rate.clone().unwrap();
    assert!(Arc::ptr_eq(&bucket(&old), &bucket(&same)), "unchanged limits: the old buckets carry on");
    let mut changed = make(RateLimits { messages: Some(Limit { per_second: 20, burst: 10 }), ..limits });
    changed.keep_rate_state_from(&old);
    assert!(!Arc::ptr_eq(&bucket(&old), &bucket(&changed)), "new limits: new buckets");
}

// ---- the naive reference ----

/// Tokens of the brute-force universe: two literals the patterns use and one
/// they never name (standing for every other literal).
const UNIVERSE: [&str; 3] = ["a", "b", "z"];
const SUBJECT_TOKENS_MAX: usize = 5;

fn every_subject() -> Vec<Vec<&'static str>> {
    let mut all = Vec::new();
    let mut layer: Vec<Vec<&str>> = vec![vec![]];
    for _ in 0..SUBJECT_TOKENS_MAX {
        layer = layer
            .iter()
            .flat_map(|prefix| {
                UNIVERSE.iter().map(move |token| {
                    let mut next = prefix.clone();
                    next.push(*token);
                    next
                })
            })
            .collect();
        all.extend(layer.iter().cloned());
    }
    all
}

/// Matching written the obvious way, over string tokens.
fn naive_matches(pattern: &[&str], subject: &[&str]) -> bool {
    match (pattern.first(), subject.first()) {
        (Some(&">"), Some(_)) => true,
        (None, None) => true,
        (Some(&"*"), Some(_)) => naive_matches(&pattern[1..], &subject[1..]),
        (Some(literal), Some(token)) => literal == token && naive_matches(&pattern[1..], &subject[1..]),
        _ => false,
    }
}

fn naive_permits(allow: &Option<Vec<Vec<&str>>>, deny: &[Vec<&str>], subject: &[&str]) -> bool {
    !deny.iter().any(|pattern| naive_matches(pattern, subject))
        && allow.as_ref().is_none_or(|allow| allow.iter().any(|pattern| naive_matches(pattern, subject)))
}

fn token_strategy() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("a"), Just("b"), Just("*")]
}

fn pattern_strategy() -> impl Strategy<Value = Vec<&'static str>> {
    (proptest::collection::vec(token_strategy(), 1..4), any::<bool>()).prop_map(|(mut tokens, tail)| {
        if tail {
            tokens.push(">");
        }
        tokens
    })
}

fn compile(tokens: &[&str]) -> Pattern {
    pattern(&tokens.join("."))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn publish_rule_agrees_with_the_reference(
        allow in proptest::option::of(proptest::collection::vec(pattern_strategy(), 0..4)),
        deny in proptest::collection::vec(pattern_strategy(), 0..3),
    ) {
        let rule = Rule {
            allow: allow.as_ref().map(|list| list.iter().map(|tokens| compile(tokens)).collect()),
            deny: deny.iter().map(|tokens| compile(tokens)).collect(),
        };
        for subject in every_subject() {
            prop_assert_eq!(rule.permits(subject.join(".").as_bytes()), naive_permits(&allow, &deny, &subject), "{:?}", subject);
        }
    }

    #[test]
    fn containment_and_overlap_agree_with_the_reference(outer in pattern_strategy(), inner in pattern_strategy()) {
        let subjects = every_subject();
        let inner_subjects: Vec<_> = subjects.iter().filter(|subject| naive_matches(&inner, subject)).collect();
        let contained = inner_subjects.iter().all(|subject| naive_matches(&outer, subject));
        let overlapping = inner_subjects.iter().any(|subject| naive_matches(&outer, subject));
        prop_assert_eq!(compile(&outer).contains(&compile(&inner)), contained);
        prop_assert_eq!(compile(&outer).overlaps(&compile(&inner)), overlapping);
    }

    #[test]
    fn an_allowed_subscription_never_receives_a_denied_subject(
        allow in proptest::option::of(proptest::collection::vec(pattern_strategy(), 1..4)),
        deny in proptest::collection::vec(pattern_strategy(), 0..3),
        wanted in pattern_strategy(),
    ) {
        let rule = Rule {
            allow: allow.as_ref().map(|list| list.iter().map(|tokens| compile(tokens)).collect()),
            deny: deny.iter().map(|tokens| compile(tokens)).collect(),
        };
        let decision = rule.subscription(&compile(&wanted));
        for subject in every_subject().iter().filter(|subject| naive_matches(&wanted, subject)) {
            // What the shard delivers: everything matched when Allowed;
            // filtered by the deny list when AllowedFiltered; nothing when Denied.
            let delivered = match decision {
                SubscribeDecision::Allowed => true,
                SubscribeDecision::AllowedFiltered => !deny.iter().any(|pattern| naive_matches(pattern, subject)),
                SubscribeDecision::Denied => false,
            };
            if delivered {
                prop_assert!(naive_permits(&allow, &deny, subject), "{:?} delivered to {:?}", subject, wanted);
            }
        }
    }
}
