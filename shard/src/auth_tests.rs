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
    let filtered = SubscribeDecision::AllowedFiltered { inboxes_excluded: false };
    assert_eq!(subscribe.subscription(&pattern("orders.>")), filtered, "overlaps the denied part: allowed, filtered");
    assert_eq!(subscribe.subscription(&pattern("orders.*.x")), filtered);
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
fn restricted_wildcards_never_reach_an_inbox() {
    let excluded = SubscribeDecision::AllowedFiltered { inboxes_excluded: true };
    let allow_all_but_secrets = rule(Some(&[">"]), &["secret.>"]);
    for wide in [">", "*.>", "*.*.*", "*.abc.*"] {
        assert_eq!(allow_all_but_secrets.subscription(&pattern(wide)), excluded, "{wide}");
    }
    assert_eq!(allow_all_but_secrets.subscription(&pattern("_INBOX.>")), SubscribeDecision::Denied);
    assert_eq!(allow_all_but_secrets.subscription(&pattern("_INBOX.mine.*")), SubscribeDecision::Allowed);
    assert_eq!(allow_all_but_secrets.subscription(&pattern("orders.>")), SubscribeDecision::Allowed);
    // Deny rules alone also make an identity restricted.
    let deny_only = rule(None, &["secret.>"]);
    assert_eq!(deny_only.subscription(&pattern(">")), excluded);
    assert_eq!(deny_only.subscription(&pattern("_INBOX.*.*")), SubscribeDecision::Denied);
    assert_eq!(rule(None, &[]).subscription(&pattern(">")), SubscribeDecision::Allowed, "no rules: unrestricted");
}

#[test]
fn inbox_helpers_read_the_first_two_tokens() {
    assert_eq!(subject_inbox(b"_INBOX.abc.1"), Some(&b"abc"[..]));
    assert_eq!(subject_inbox(b"_INBOX.abc"), Some(&b"abc"[..]));
    assert_eq!(subject_inbox(b"_INBOX"), Some(&b""[..]));
    assert_eq!(subject_inbox(b"_INBOXES.abc"), None);
    assert_eq!(subject_inbox(b"a._INBOX.abc"), None);
    assert_eq!(pattern_named_inbox(b"_INBOX.abc.*"), Some(&b"abc"[..]));
    assert_eq!(pattern_named_inbox(b"_INBOX.*.*"), None);
    assert_eq!(pattern_named_inbox(b"_INBOX.>"), None);
    assert_eq!(pattern_named_inbox(b">"), None);
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
fn a_reload_keeps_the_rate_state_of_unchanged_limits_and_every_subscription_count() {
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
    same.keep_shared_state_from(&old);
    let bucket = |identities: &Identities| identities.by_name("a").unwrap().rate.clone().unwrap();
    assert!(Arc::ptr_eq(&bucket(&old), &bucket(&same)), "unchanged limits: the old buckets carry on");
    let mut changed = make(RateLimits { messages: Some(Limit { per_second: 20, burst: 10 }), ..limits });
    changed.keep_shared_state_from(&old);
    assert!(!Arc::ptr_eq(&bucket(&old), &bucket(&changed)), "new limits: new buckets");
    let bytes = |identities: &Identities| identities.by_name("a").unwrap().subscription_bytes.clone();
    assert!(Arc::ptr_eq(&bytes(&old), &bytes(&changed)), "the subscription bytes held carry over whatever changed");
    assert!(!Arc::ptr_eq(&bytes(&old), &bytes(&make(limits))), "a new identity set starts at zero");
}

// ---- the naive reference ----

/// Tokens of the brute-force universe: two literals the patterns use, one
/// they never name (standing for every other literal), and the inbox prefix.
const UNIVERSE: [&str; 4] = ["a", "b", "z", "_INBOX"];
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
    prop_oneof![Just("a"), Just("b"), Just("*"), Just("_INBOX")]
}

/// The inbox rule written the obvious way: a restricted identity receives an
/// inbox subject only through a pattern whose first two tokens are `_INBOX`
/// and that inbox, literally.
fn naive_inbox_permits(restricted: bool, pattern: &[&str], subject: &[&str]) -> bool {
    if !restricted || subject.first() != Some(&"_INBOX") {
        return true;
    }
    pattern.first() == Some(&"_INBOX") && subject.get(1).is_some() && pattern.get(1) == subject.get(1)
}

/// What a subscription to `pattern` receives, per the documented rules.
fn naive_receives(allow: &Option<Vec<Vec<&str>>>, deny: &[Vec<&str>], pattern: &[&str], subject: &[&str]) -> bool {
    let restricted = allow.is_some() || !deny.is_empty();
    naive_matches(pattern, subject)
        && naive_permits(allow, deny, subject)
        && naive_inbox_permits(restricted, pattern, subject)
}

/// What the shard delivers: the subscribe decision, then the filter it gives.
fn delivered(rule: &Rule, pattern: &[&str], subject: &[&str]) -> bool {
    let permissions = Arc::new(Permissions { publish: Rule::open(), subscribe: rule.clone(), streams_admin: false });
    let text = subject.join(".");
    let matched = naive_matches(pattern, subject);
    match rule.subscription(&compile(pattern)) {
        SubscribeDecision::Denied => false,
        SubscribeDecision::Allowed => matched,
        SubscribeDecision::AllowedFiltered { inboxes_excluded } => {
            matched
                && crate::delivery_filter::DeliveryFilter::new(permissions, inboxes_excluded).permits(text.as_bytes())
        }
    }
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
    fn deliveries_agree_with_the_reference(
        allow in proptest::option::of(proptest::collection::vec(pattern_strategy(), 1..4)),
        deny in proptest::collection::vec(pattern_strategy(), 0..3),
        wanted in pattern_strategy(),
    ) {
        let rule = Rule {
            allow: allow.as_ref().map(|list| list.iter().map(|tokens| compile(tokens)).collect()),
            deny: deny.iter().map(|tokens| compile(tokens)).collect(),
        };
        let decision = rule.subscription(&compile(&wanted));
        let matched: Vec<_> = every_subject().into_iter().filter(|subject| naive_matches(&wanted, subject)).collect();
        if decision == SubscribeDecision::Denied {
            // Refused only for a reason the rules name: a subject outside
            // every allow pattern, all of it denied, or an unnamed inbox.
            let restricted = allow.is_some() || !deny.is_empty();
            let outside_allow = allow.is_some()
                && !allow.as_ref().unwrap().iter().any(|outer| matched.iter().all(|subject| naive_matches(outer, subject)));
            let all_denied = matched.iter().all(|subject| deny.iter().any(|pattern| naive_matches(pattern, subject)));
            let unnamed_inbox = restricted && wanted[0] == "_INBOX" && wanted.get(1).is_none_or(|token| *token == "*" || *token == ">");
            prop_assert!(outside_allow || all_denied || unnamed_inbox, "{:?} refused for no named reason", wanted);
            return Ok(());
        }
        for subject in &matched {
            prop_assert_eq!(
                delivered(&rule, &wanted, subject),
                naive_receives(&allow, &deny, &wanted, subject),
                "{:?} on {:?}", subject, wanted
            );
        }
    }
}

// ---- routing with filters, against the reference ----

/// One subscription in the routing property: which rule its identity has,
/// its pattern, whether it is in the queue group, and its shard.
type Member = (usize, Vec<&'static str>, bool, usize);

fn member_strategy() -> impl Strategy<Value = Member> {
    (0..3usize, pattern_strategy(), any::<bool>(), 0..4usize)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The interest table with filters sends each subject to exactly the
    /// shards holding a subscription that receives it, and a queue group's
    /// pick to a shard holding a member that receives it (one pick per
    /// group whenever any member may receive the subject, none otherwise).
    #[test]
    fn routing_agrees_with_the_reference(members in proptest::collection::vec(member_strategy(), 1..8)) {
        use crate::delivery_filter::DeliveryFilter;
        use crate::interest::{InterestTable, Route};
        let rules = [
            (None, vec![]),
            (None, vec![vec!["a", ">"]]),
            (Some(vec![vec![">"]]), vec![vec!["b", "*"]]),
        ];
        let permissions: Vec<Arc<Permissions>> = rules
            .iter()
            .map(|(allow, deny)| {
                let subscribe = Rule {
                    allow: allow.as_ref().map(|list: &Vec<Vec<&str>>| list.iter().map(|tokens| compile(tokens)).collect()),
                    deny: deny.iter().map(|tokens: &Vec<&str>| compile(tokens)).collect(),
                };
                Arc::new(Permissions { publish: Rule::open(), subscribe, streams_admin: false })
            })
            .collect();
        let queue = bytes::Bytes::from_static(b"q");
        let mut table = InterestTable::default();
        let mut accepted = Vec::new();
        for (rule, tokens, in_group, shard) in &members {
            let filter = match permissions[*rule].subscribe.subscription(&compile(tokens)) {
                SubscribeDecision::Denied => continue,
                SubscribeDecision::Allowed => None,
                SubscribeDecision::AllowedFiltered { inboxes_excluded } => {
                    Some(DeliveryFilter::new(permissions[*rule].clone(), inboxes_excluded))
                }
            };
            let group = in_group.then_some(&queue);
            table.add(tokens.join(".").as_bytes(), group, filter.as_ref(), *shard);
            accepted.push((*rule, tokens.clone(), *in_group, *shard));
        }
        let mut route = Route::default();
        for subject in every_subject().iter().filter(|subject| subject.len() <= 3) {
            table.route(subject.join(".").as_bytes(), &mut route);
            let receives = |(rule, tokens, _, _): &&(usize, Vec<&str>, bool, usize)| {
                naive_receives(&rules[*rule].0, &rules[*rule].1, tokens, subject)
            };
            let mut plain_shards = 0u64;
            for member in accepted.iter().filter(|member| !member.2).filter(receives) {
                plain_shards |= 1 << member.3;
            }
            // Each (pattern, queue) is its own group.
            let mut groups: Vec<(String, u64)> = Vec::new();
            for member in accepted.iter().filter(|member| member.2).filter(receives) {
                let pattern = member.1.join(".");
                match groups.iter_mut().find(|(known, _)| *known == pattern) {
                    Some((_, shards)) => *shards |= 1 << member.3,
                    None => groups.push((pattern, 1 << member.3)),
                }
            }
            prop_assert_eq!(route.queue_picks.len(), groups.len(), "one pick per receivable group on {:?}", subject);
            let mut picked = 0u64;
            for (pattern, shards) in &groups {
                let key = crate::interest::group_key(pattern.as_bytes(), b"q");
                let pick = route.queue_picks.iter().find(|(_, group)| *group == key);
                prop_assert!(pick.is_some_and(|(shard, _)| shards & (1 << shard) != 0), "{} picked a shard without a receiving member on {:?}", pattern, subject);
                picked |= 1 << pick.unwrap().0;
            }
            prop_assert_eq!(route.targets, plain_shards | picked, "targets on {:?}", subject);
        }
    }
}
