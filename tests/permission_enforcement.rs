//! Permissions hold at delivery, whatever matched: against the real binary
//! with 1 and 2 shards and an identities file.
//! - Inboxes: a restricted identity's wildcard (`>`, `*.>`, `*.*.*`) never
//!   receives another client's reply; it holds one named inbox at a time.
//!   An identity with no rules at all still sees everything.
//! - Reply subjects: a restricted publisher may only name a reply subject it
//!   may publish to, or its own inbox; "no responders" goes to the
//!   requester's own subscription, never to other subscribers of the reply
//!   subject.
//! - Queue groups: a member whose identity may not receive a subject is
//!   never picked for it; every message reaches an entitled member, and a
//!   request only filtered subscribers match gets "no responders" at once.

mod common;

use std::time::{Duration, Instant};

use common::{next_message, FlitServer, SHARD_COUNTS};
use flit_client::{Client, ClientError, Options, Subscription};
use flit_wire::{ErrorCode, STATUS_NO_RESPONDERS};

const ADMIN: &str = "admin-token-3b9d0e1f7a2c";
const WIDE: &str = "wide-token-8c4e2a0b6d1f";
const DENY_ONLY: &str = "deny-only-token-5f1a7c3e9b0d";
const NARROW: &str = "narrow-token-2d6b8f0a4c1e";
const NO_AUDIT: &str = "no-audit-token-9e3c5a1f7b2d";

fn hex(token: &str) -> String {
    flit_shard::auth::token_sha256(token).iter().map(|byte| format!("{byte:02x}")).collect()
}

fn identities() -> String {
    format!(
        r#"
[[identity]]
name = "admin"
token_sha256 = "{}"

[[identity]]
name = "wide"
token_sha256 = "{}"
subscribe = {{ allow = [">"], deny = ["secret.>"] }}

[[identity]]
name = "deny-only"
token_sha256 = "{}"
subscribe = {{ deny = ["secret.>"] }}

[[identity]]
name = "narrow"
token_sha256 = "{}"
publish = {{ allow = ["a.>"] }}
subscribe = {{ allow = ["a.>", "_INBOX.>"] }}

[[identity]]
name = "no-audit"
token_sha256 = "{}"
subscribe = {{ allow = ["orders.>"], deny = ["orders.audit.>"] }}
"#,
        hex(ADMIN),
        hex(WIDE),
        hex(DENY_ONLY),
        hex(NARROW),
        hex(NO_AUDIT)
    )
}

fn start(shards: usize) -> FlitServer {
    let directory =
        std::env::temp_dir().join(format!("flit-perm-{}-{shards}-{:?}", std::process::id(), Instant::now()));
    std::fs::create_dir_all(&directory).expect("temp dir");
    let file = directory.join("identities.toml");
    std::fs::write(&file, identities()).expect("write identities");
    FlitServer::start(shards, &["--identities", file.to_str().expect("utf-8")])
}

fn connect(server: &FlitServer, token: &str) -> Client {
    let options = Options { auth_token: Some(token.to_owned()), ack_mode: true, ..Options::default() };
    Client::connect_with(server.address, options).expect("connect")
}

/// A client of `token`'s identity on `shard`.
fn connect_on_shard(server: &FlitServer, token: &str, shard: usize) -> Client {
    for _ in 0..500 {
        let client = connect(server, token);
        if usize::from(client.welcome().shard) == shard % server.shards {
            return client;
        }
    }
    panic!("no connection landed on shard {shard}");
}

/// Every message that arrives within `quiet` of the previous one.
fn drain(subscription: &Subscription, quiet: Duration) -> Vec<flit_client::Message> {
    let mut messages = Vec::new();
    while let Ok(Some(message)) = subscription.next_timeout(quiet) {
        messages.push(message);
    }
    messages
}

fn refused_code(error: &ClientError) -> Option<ErrorCode> {
    error.server_code()
}

/// Runs one request/reply between two admin clients, so a reply travels to
/// `_INBOX.<requester>.<n>`.
fn one_request_reply(server: &FlitServer) {
    let responder = connect_on_shard(server, ADMIN, 0);
    let requester = connect_on_shard(server, ADMIN, 1);
    let requests = responder.subscribe("svc.echo.now").expect("subscribe");
    let thread = std::thread::spawn(move || {
        let request = next_message(&requests);
        request.respond(&responder, b"the reply").expect("respond");
        responder
    });
    let answer = requester.request("svc.echo.now", b"question", Duration::from_secs(5)).expect("an answer");
    assert_eq!(&answer.payload[..], b"the reply");
    drop(thread.join().expect("responder"));
}

#[test]
fn restricted_wildcards_never_receive_other_clients_replies() {
    for shards in SHARD_COUNTS {
        let server = start(shards);
        let wide = connect(&server, WIDE);
        let deny_only = connect(&server, DENY_ONLY);
        let admin = connect(&server, ADMIN);
        let mut snoops = Vec::new();
        for pattern in [">", "*.>", "*.*.*"] {
            snoops.push((format!("wide {pattern}"), wide.subscribe(pattern).expect("a wide pattern is allowed")));
        }
        snoops.push(("deny-only >".into(), deny_only.subscribe(">").expect("allowed")));
        let unrestricted = admin.subscribe(">").expect("admin");

        one_request_reply(&server);

        for (name, subscription) in &snoops {
            let seen = drain(subscription, Duration::from_millis(300));
            assert!(
                seen.iter().any(|message| message.subject == "svc.echo.now"),
                "shards={shards}: {name} receives ordinary subjects: {seen:?}"
            );
            let leaked: Vec<_> = seen.iter().filter(|message| message.subject.starts_with("_INBOX")).collect();
            assert!(leaked.is_empty(), "shards={shards}: {name} read another client's reply: {leaked:?}");
        }
        let seen = drain(&unrestricted, Duration::from_millis(300));
        assert!(
            seen.iter().any(|message| message.subject.starts_with("_INBOX.")),
            "shards={shards}: an identity without rules still sees replies: {seen:?}"
        );
    }
}

#[test]
fn a_restricted_connection_holds_one_named_inbox_at_a_time() {
    for shards in SHARD_COUNTS {
        let server = start(shards);
        let wide = connect(&server, WIDE);
        let first = wide.subscribe("_INBOX.mine.*").expect("one named inbox");
        let same = wide.subscribe("_INBOX.mine.>").expect("the same inbox again");
        let other = wide.subscribe("_INBOX.theirs.*").expect_err("a second inbox");
        assert_eq!(refused_code(&other), Some(ErrorCode::PermissionDenied), "shards={shards}: {other:?}");
        for unnamed in ["_INBOX.>", "_INBOX.*.*", "_INBOX.*"] {
            let error = wide.subscribe(unnamed).expect_err("no inbox named");
            assert_eq!(refused_code(&error), Some(ErrorCode::PermissionDenied), "shards={shards}: {unnamed}");
        }
        drop(first);
        drop(same);
        wide.flush().expect("the unsubscribes are through");
        wide.subscribe("_INBOX.theirs.*").expect("the first inbox was let go");
        // Each connection has its own: another connection of the same identity may name another.
        connect(&server, WIDE).subscribe("_INBOX.third.*").expect("another connection");
    }
}

#[test]
fn reply_subjects_are_checked_and_no_responders_goes_only_to_the_requester() {
    for shards in SHARD_COUNTS {
        let server = start(shards);
        let admin = connect(&server, ADMIN);
        let victim = connect_on_shard(&server, ADMIN, 1);
        let plain = victim.subscribe("b.victim").expect("subscribe");
        let grouped = victim.queue_subscribe("b.victim", "g").expect("queue subscribe");

        // A restricted publisher may not name a reply subject it could not publish to.
        let narrow = connect_on_shard(&server, NARROW, 0);
        let refused = narrow.publish_with("a.nobody.listens", Some("b.victim"), &[], b"x").expect_err("refused");
        assert_eq!(refused_code(&refused), Some(ErrorCode::PermissionDenied), "shards={shards}: {refused:?}");
        // Its own inbox is fine, and the no-responders status comes back to it.
        let inbox = narrow.subscribe("_INBOX.narrow.*").expect("own inbox");
        narrow.publish_with("a.nobody.listens", Some("_INBOX.narrow.1"), &[], b"x").expect("own inbox as reply");
        let status = next_message(&inbox);
        assert_eq!((status.subject.as_str(), status.status), ("_INBOX.narrow.1", STATUS_NO_RESPONDERS));
        // Another client's inbox is not its own.
        let other_inbox = narrow.publish_with("a.nobody.listens", Some("_INBOX.victim.1"), &[], b"x");
        assert_eq!(refused_code(&other_inbox.expect_err("not its inbox")), Some(ErrorCode::PermissionDenied));

        // An unrestricted publisher may name any reply subject, but the
        // router never broadcasts "no responders" on it.
        admin.publish_with("nobody.listens", Some("b.victim"), &[], b"x").expect("allowed");
        admin.flush().expect("flush");
        for (name, subscription) in [("plain", &plain), ("queue", &grouped)] {
            let seen = drain(subscription, Duration::from_millis(300));
            assert!(seen.is_empty(), "shards={shards}: the {name} subscriber of b.victim got {seen:?}");
        }
    }
}

#[test]
fn queue_group_members_are_picked_only_for_what_they_may_receive() {
    for shards in SHARD_COUNTS {
        let server = start(shards);
        let restricted = connect_on_shard(&server, NO_AUDIT, 1);
        let unrestricted = connect_on_shard(&server, ADMIN, 0);
        let filtered_member = restricted.queue_subscribe("orders.>", "g").expect("allowed, filtered");
        let open_member = unrestricted.queue_subscribe("orders.>", "g").expect("subscribe");
        let publisher = connect(&server, ADMIN);
        const COUNT: usize = 100;
        for index in 0..COUNT {
            publisher.publish("orders.audit.x", format!("{index}").as_bytes()).expect("publish");
        }
        for index in 0..COUNT {
            publisher.publish("orders.eu.x", format!("{index}").as_bytes()).expect("publish");
        }
        publisher.flush().expect("flush");
        let open = drain(&open_member, Duration::from_millis(500));
        let filtered = drain(&filtered_member, Duration::from_millis(300));
        let audit_open = open.iter().filter(|message| message.subject == "orders.audit.x").count();
        let audit_filtered = filtered.iter().filter(|message| message.subject == "orders.audit.x").count();
        let eu = open.len() + filtered.len() - audit_open - audit_filtered;
        assert_eq!(audit_filtered, 0, "shards={shards}: a denied subject reached the restricted member");
        assert_eq!(audit_open, COUNT, "shards={shards}: every audit message reaches the member entitled to it");
        assert_eq!(eu, COUNT, "shards={shards}: every other message reaches exactly one member");
        assert!(filtered.len() >= COUNT / 4, "shards={shards}: both members share what both may receive");

        // A request that only a filtered subscription matches: no responders, at once.
        drop(open_member);
        unrestricted.flush().expect("flush");
        let started = Instant::now();
        let answer = publisher.request("orders.audit.x", b"?", Duration::from_secs(5));
        assert!(matches!(answer, Err(ClientError::NoResponders)), "shards={shards}: {answer:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "shards={shards}: answered, not timed out");
    }
}
