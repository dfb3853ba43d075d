//! Fuzz target: the server side of a connection's first frames, as a client
//! could send them. The first byte chooses the client certificate mutual TLS
//! verified (none, one that maps to `orders`, one that maps to the
//! certificate-only `device`, or an unknown one); the rest arrives like a TCP
//! stream; frames are split off with `check` and decoded; a Hello goes
//! through `answer_hello` (version, then certificate and token) against three
//! identities; after a Hello that was accepted, Publish subjects go through
//! the identity's publish rule, Subscribe patterns through its subscribe rule
//! and, once accepted, every later Publish subject through the subscription's
//! delivery filter.
//!
//! Oracles, beyond "no panic": `answer_hello` accepts exactly the Hellos with
//! a version range holding ours whose certificate or token proves an
//! identity (both, when both are given, proving the same one), and names it;
//! the publish rule agrees with a naive matcher written here; a subscription
//! the rule allows unfiltered never covers a subject the naive matcher denies
//! (checked on the pattern's own literal expansion); and what an accepted
//! subscription delivers (decision plus filter) equals the documented rule,
//! inboxes included, written naively here.
#![no_main]

use bytes::Bytes;
use flit_shard::auth::{token_sha256, Identities, Identity, Pattern, Permissions, Rule, SubscribeDecision};
use flit_shard::delivery_filter::DeliveryFilter;
use flit_shard::handshake::answer_hello;
use flit_wire::{check, decode, Check, Frame, Limits};
use libfuzzer_sys::fuzz_target;

const FRAMES_PER_INPUT_MAX: usize = 256;
const TOKENS: [(&str, &str); 2] = [("orders", "orders-token-0123456789"), ("audit", "audit-token-9876543210")];
/// Client certificate fingerprints: `orders` may prove itself with this one
/// too; `device` only with its own; the third maps to nobody.
const ORDERS_CERTIFICATE: [u8; 32] = [1; 32];
const DEVICE_CERTIFICATE: [u8; 32] = [2; 32];
const UNKNOWN_CERTIFICATE: [u8; 32] = [3; 32];
const SUBSCRIPTIONS_TRACKED_MAX: usize = 16;
const PUBLISH_ALLOW: [&str; 2] = ["orders.>", "_INBOX.>"];
const PUBLISH_DENY: [&str; 1] = ["orders.*.secret"];

fn rule(allow: &[&str], deny: &[&str]) -> Rule {
    Rule {
        allow: Some(allow.iter().map(|text| Pattern::parse(text).expect("valid")).collect()),
        deny: deny.iter().map(|text| Pattern::parse(text).expect("valid")).collect(),
    }
}

fn identities() -> Identities {
    let permissions = Permissions { publish: rule(&PUBLISH_ALLOW, &PUBLISH_DENY), subscribe: rule(&PUBLISH_ALLOW, &PUBLISH_DENY), streams_admin: false };
    let mut all: Vec<Identity> =
        TOKENS.iter().map(|(name, token)| Identity::new(name.to_string(), token_sha256(token), permissions.clone())).collect();
    all[0] = all[0].clone().with_certificate(ORDERS_CERTIFICATE);
    let device = Identity::new("device".into(), token_sha256("device-token-unused"), permissions.clone())
        .with_certificate(DEVICE_CERTIFICATE)
        .without_token();
    all.push(device);
    Identities::required(all)
}

/// The identity a Hello with this token and certificate proves, written
/// from the rules in docs/OPERATIONS.md (None: refused).
fn naive_identity(token: Option<&str>, certificate: Option<&[u8; 32]>) -> Option<&'static str> {
    let by_token = token.and_then(|token| TOKENS.iter().find(|(_, known)| *known == token)).map(|(name, _)| *name);
    let by_certificate = match certificate {
        Some(fingerprint) if *fingerprint == ORDERS_CERTIFICATE => Some("orders"),
        Some(fingerprint) if *fingerprint == DEVICE_CERTIFICATE => Some("device"),
        _ => None,
    };
    match (by_certificate, token.filter(|token| !token.is_empty())) {
        (Some(name), None) => Some(name),
        (Some(name), Some(_)) => by_token.filter(|proved| *proved == name),
        (None, _) => by_token,
    }
}

/// What a subscription to `pattern` of an identity with the subscribe rule
/// above receives on `subject`, written from the documented rules.
fn naive_receives(pattern: &str, subject: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let subject_tokens: Vec<&str> = subject.split('.').collect();
    if !naive_matches(&pattern, &subject_tokens) || !naive_permits(subject) {
        return false;
    }
    // The identity is restricted: an inbox subject only through a pattern naming that inbox.
    subject_tokens[0] != "_INBOX" || (pattern[0] == "_INBOX" && subject_tokens.get(1).is_some() && pattern.get(1) == subject_tokens.get(1))
}

fn naive_matches(pattern: &[&str], subject: &[&str]) -> bool {
    match (pattern.first(), subject.first()) {
        (Some(&">"), Some(_)) => true,
        (None, None) => true,
        (Some(&"*"), Some(_)) => naive_matches(&pattern[1..], &subject[1..]),
        (Some(literal), Some(token)) => literal == token && naive_matches(&pattern[1..], &subject[1..]),
        _ => false,
    }
}

fn naive_permits(subject: &str) -> bool {
    let tokens: Vec<&str> = subject.split('.').collect();
    let matches = |pattern: &&str| naive_matches(&pattern.split('.').collect::<Vec<_>>(), &tokens);
    !PUBLISH_DENY.iter().any(matches) && PUBLISH_ALLOW.iter().any(matches)
}

fuzz_target!(|data: &[u8]| {
    let Some((selector, data)) = data.split_first() else { return };
    let certificate = match selector % 4 {
        0 => None,
        1 => Some(&ORDERS_CERTIFICATE),
        2 => Some(&DEVICE_CERTIFICATE),
        _ => Some(&UNKNOWN_CERTIFICATE),
    };
    let identities = identities();
    let limits = Limits::default();
    let mut stream = Bytes::copy_from_slice(data);
    let mut identity = None;
    let mut subscriptions: Vec<(String, Option<DeliveryFilter>)> = Vec::new();
    for _ in 0..FRAMES_PER_INPUT_MAX {
        let length = match check(&stream, limits.frame_bytes_max()) {
            Check::Complete(length) => length,
            Check::Incomplete | Check::Invalid(_) => return,
        };
        let Ok(frame) = decode(stream.split_to(length), &limits) else { return };
        match (identity.as_ref(), frame) {
            (None, Frame::Hello(hello)) => {
                // Any version both sides speak (the server speaks 1..=PROTOCOL_VERSION).
                let version_ok = flit_wire::negotiate_version(hello.version_min, hello.version_max).is_some();
                let expected = naive_identity(hello.auth_token.as_deref(), certificate);
                match answer_hello(&hello, &identities, certificate) {
                    Ok(Some(accepted)) => {
                        assert!(version_ok, "accepted a Hello with no version in common");
                        assert_eq!(Some(accepted.name.as_str()), expected, "certificate {certificate:?}");
                        identity = Some(accepted);
                    }
                    Ok(None) => panic!("authentication is required, yet no identity"),
                    Err(_) => assert!(!version_ok || expected.is_none(), "refused a good Hello (certificate {certificate:?})"),
                }
            }
            (None, _) => return,
            (Some(identity), Frame::Publish(publish)) => {
                let Ok(subject) = std::str::from_utf8(&publish.subject) else { continue };
                assert_eq!(identity.permissions.publish.permits(subject.as_bytes()), naive_permits(subject), "{subject}");
                for (pattern, filter) in &subscriptions {
                    let matched = Pattern::parse(pattern).expect("kept valid").matches(subject.as_bytes());
                    let delivered = matched && filter.as_ref().is_none_or(|filter| filter.permits(subject.as_bytes()));
                    assert_eq!(delivered, naive_receives(pattern, subject), "{subject} through {pattern}");
                }
            }
            (Some(identity), Frame::Subscribe(subscribe)) => {
                let Ok(text) = std::str::from_utf8(&subscribe.pattern) else { continue };
                let Ok(pattern) = Pattern::parse(text) else { continue };
                let decision = identity.permissions.subscribe.subscription(&pattern);
                let filter = match decision {
                    SubscribeDecision::Denied => None,
                    SubscribeDecision::Allowed => Some(None),
                    SubscribeDecision::AllowedFiltered { inboxes_excluded } => {
                        Some(Some(DeliveryFilter::new(identity.permissions.clone(), inboxes_excluded)))
                    }
                };
                if let Some(filter) = filter.filter(|_| subscriptions.len() < SUBSCRIPTIONS_TRACKED_MAX) {
                    subscriptions.push((text.to_string(), filter));
                }
                if decision == SubscribeDecision::Allowed {
                    // Every subject the pattern matches must be allowed; try
                    // the pattern with its wildcards filled by literal tokens.
                    for filler in ["x", "secret", "orders"] {
                        let subject = text.replace('*', filler).replace('>', filler);
                        assert!(naive_permits(&subject), "{text} allowed but covers {subject}");
                    }
                }
            }
            (Some(_), _) => {}
        }
    }
});
