//! Fuzz target: the server side of a connection's first frames, as a client
//! could send them. Bytes arrive like a TCP stream; frames are split off with
//! `check` and decoded; a Hello goes through `answer_hello` (version, then
//! token) against two known identities; after a Hello that was accepted,
//! Publish subjects go through the identity's publish rule and Subscribe
//! patterns through its subscribe rule.
//!
//! Oracles, beyond "no panic": `answer_hello` accepts exactly the Hellos with
//! a version range holding ours and one of the two known tokens, and names
//! the right identity; the publish rule agrees with a naive matcher written
//! here; a subscription the rule allows unfiltered never covers a subject the
//! naive matcher denies (checked on the pattern's own literal expansion).
#![no_main]

use bytes::Bytes;
use flit_shard::auth::{token_sha256, Identities, Identity, Pattern, Permissions, Rule, SubscribeDecision};
use flit_shard::handshake::answer_hello;
use flit_wire::{check, decode, Check, Frame, Limits, PROTOCOL_VERSION};
use libfuzzer_sys::fuzz_target;

const FRAMES_PER_INPUT_MAX: usize = 256;
const TOKENS: [(&str, &str); 2] = [("orders", "orders-token-0123456789"), ("audit", "audit-token-9876543210")];
const PUBLISH_ALLOW: [&str; 2] = ["orders.>", "_INBOX.>"];
const PUBLISH_DENY: [&str; 1] = ["orders.*.secret"];

fn rule(allow: &[&str], deny: &[&str]) -> Rule {
    Rule {
        allow: Some(allow.iter().map(|text| Pattern::parse(text).expect("valid")).collect()),
        deny: deny.iter().map(|text| Pattern::parse(text).expect("valid")).collect(),
    }
}

fn identities() -> Identities {
    let permissions = Permissions { publish: rule(&PUBLISH_ALLOW, &PUBLISH_DENY), subscribe: rule(&PUBLISH_ALLOW, &PUBLISH_DENY) };
    Identities::required(
        TOKENS.iter().map(|(name, token)| Identity::new(name.to_string(), token_sha256(token), permissions.clone())).collect(),
    )
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
    let identities = identities();
    let limits = Limits::default();
    let mut stream = Bytes::copy_from_slice(data);
    let mut identity = None;
    for _ in 0..FRAMES_PER_INPUT_MAX {
        let length = match check(&stream, limits.frame_bytes_max()) {
            Check::Complete(length) => length,
            Check::Incomplete | Check::Invalid(_) => return,
        };
        let Ok(frame) = decode(stream.split_to(length), &limits) else { return };
        match (identity.as_ref(), frame) {
            (None, Frame::Hello(hello)) => {
                let version_ok = hello.version_min <= PROTOCOL_VERSION && hello.version_max >= PROTOCOL_VERSION;
                let expected = TOKENS.iter().find(|(_, token)| hello.auth_token.as_deref() == Some(*token));
                match answer_hello(&hello, &identities, None) {
                    Ok(Some(accepted)) => {
                        assert!(version_ok, "accepted a Hello without our version");
                        assert_eq!(Some(accepted.name.as_str()), expected.map(|(name, _)| *name));
                        identity = Some(accepted);
                    }
                    Ok(None) => panic!("authentication is required, yet no identity"),
                    Err(_) => assert!(!version_ok || expected.is_none(), "refused a good Hello"),
                }
            }
            (None, _) => return,
            (Some(identity), Frame::Publish(publish)) => {
                let Ok(subject) = std::str::from_utf8(&publish.subject) else { continue };
                assert_eq!(identity.permissions.publish.permits(subject.as_bytes()), naive_permits(subject), "{subject}");
            }
            (Some(identity), Frame::Subscribe(subscribe)) => {
                let Ok(text) = std::str::from_utf8(&subscribe.pattern) else { continue };
                let Ok(pattern) = Pattern::parse(text) else { continue };
                if identity.permissions.subscribe.subscription(&pattern) == SubscribeDecision::Allowed {
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
