//! Authentication and per-subject permissions against the real binary:
//! no token, wrong token, right token; publish and subscribe allowed and
//! denied by pattern, deny beating allow; a wildcard subscription that
//! overlaps a denied subject gets everything but the denied part;
//! request/reply through `_INBOX` under permissions; no snooping on other
//! inboxes; SIGHUP reloads without dropping entitled connections.

mod common;

use std::time::{Duration, Instant};

use common::{next_message, FlitServer, SHARD_COUNTS};
use flit_client::{Client, ClientError, Options};
use flit_wire::ErrorCode;

const ORDERS_TOKEN: &str = "orders-token-7f3a9c1e5b2d";
const ADMIN_TOKEN: &str = "admin-token-0c8e4f2a6d1b";

fn hex(token: &str) -> String {
    flit_shard::auth::token_sha256(token).iter().map(|byte| format!("{byte:02x}")).collect()
}

fn identities(orders_publish_allow: &str) -> String {
    format!(
        r#"
[[identity]]
name = "orders"
token_sha256 = "{}"
publish = {{ allow = [{orders_publish_allow}, "_INBOX.>"], deny = ["orders.secret.>"] }}
subscribe = {{ allow = ["orders.>", "_INBOX.>"], deny = ["orders.secret.>"] }}

[[identity]]
name = "admin"
token_sha256 = "{}"
"#,
        hex(ORDERS_TOKEN),
        hex(ADMIN_TOKEN)
    )
}

/// A server with an identities file in a temporary directory.
struct AuthServer {
    server: FlitServer,
    file: std::path::PathBuf,
}

impl AuthServer {
    fn start(shards: usize) -> AuthServer {
        let directory =
            std::env::temp_dir().join(format!("flit-auth-{}-{shards}-{:?}", std::process::id(), Instant::now()));
        std::fs::create_dir_all(&directory).expect("temp dir");
        let file = directory.join("identities.toml");
        std::fs::write(&file, identities(r#""orders.>""#)).expect("write identities");
        let server = FlitServer::start(shards, &["--identities", file.to_str().expect("utf-8")]);
        AuthServer { server, file }
    }

    fn connect(&self, token: Option<&str>) -> Result<Client, ClientError> {
        let options = Options { auth_token: token.map(str::to_owned), ack_mode: true, ..Options::default() };
        Client::connect_with(self.server.address, options)
    }
}

fn code(error: &ClientError) -> Option<ErrorCode> {
    error.server_code()
}

#[test]
fn no_token_and_wrong_token_are_refused_and_the_right_one_connects() {
    for shards in SHARD_COUNTS {
        let server = AuthServer::start(shards);
        let missing = server.connect(None).expect_err("no token");
        assert_eq!(code(&missing), Some(ErrorCode::AuthenticationFailed), "shards={shards}: {missing:?}");
        let wrong = server.connect(Some("not-a-known-token-123")).expect_err("wrong token");
        assert_eq!(code(&wrong), Some(ErrorCode::AuthenticationFailed), "shards={shards}: {wrong:?}");
        let client = server.connect(Some(ORDERS_TOKEN)).expect("right token");
        client.flush().expect("works");
    }
}

#[test]
fn publish_and_subscribe_follow_allow_and_deny_and_the_connection_stays_open() {
    for shards in SHARD_COUNTS {
        let server = AuthServer::start(shards);
        let orders = server.connect(Some(ORDERS_TOKEN)).expect("orders");
        let admin = server.connect(Some(ADMIN_TOKEN)).expect("admin");

        let denied = orders.publish("billing.new", b"x").expect_err("outside the allow list");
        assert_eq!(code(&denied), Some(ErrorCode::PermissionDenied), "shards={shards}");
        assert!(!denied.is_fatal());
        let denied = orders.publish("orders.secret.key", b"x").expect_err("deny beats allow");
        assert_eq!(code(&denied), Some(ErrorCode::PermissionDenied), "shards={shards}");
        let denied = orders.subscribe("billing.>").expect_err("subscribe outside the allow list");
        assert_eq!(code(&denied), Some(ErrorCode::PermissionDenied), "shards={shards}");
        let denied = orders.subscribe("orders.secret.>").expect_err("subscribe to the denied part");
        assert_eq!(code(&denied), Some(ErrorCode::PermissionDenied), "shards={shards}");
        let denied = orders.subscribe(">").expect_err("wider than allowed");
        assert_eq!(code(&denied), Some(ErrorCode::PermissionDenied), "shards={shards}");

        // Still open: an allowed wildcard that overlaps the denied subjects
        // receives the rest, never the denied part.
        let everything_orders = orders.subscribe("orders.>").expect("allowed, filtered");
        orders.flush().expect("flush");
        admin.publish("orders.secret.key", b"hidden").expect("admin may publish anything");
        admin.publish("orders.eu.new", b"visible").expect("publish");
        let message = next_message(&everything_orders);
        assert_eq!(message.subject, "orders.eu.new", "shards={shards}: the denied subject was filtered out");
        common::assert_no_message(&everything_orders);
        assert!(orders.statistics().refused_by_server >= 5);
    }
}

#[test]
fn request_reply_works_under_permissions_and_inboxes_cannot_be_snooped() {
    for shards in SHARD_COUNTS {
        let server = AuthServer::start(shards);
        let responder = server.connect(Some(ORDERS_TOKEN)).expect("responder");
        let requester = server.connect(Some(ORDERS_TOKEN)).expect("requester");
        let requests = responder.subscribe("orders.service").expect("subscribe");
        responder.flush().expect("flush");
        let thread = std::thread::spawn(move || {
            let request = next_message(&requests);
            request.respond(&responder, b"done").expect("reply to the inbox");
            responder
        });
        let answer = requester.request("orders.service", b"do it", Duration::from_secs(5)).expect("an answer");
        assert_eq!(&answer.payload[..], b"done", "shards={shards}");
        drop(thread.join().expect("responder"));
        let snoop = requester.subscribe("_INBOX.>").expect_err("every inbox at once");
        assert_eq!(code(&snoop), Some(ErrorCode::PermissionDenied), "shards={shards}");
    }
}

/// Retries `probe` for up to five seconds (a reload reaches every shard within a pass).
fn eventually(mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if probe() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn sighup_reloads_identities_without_dropping_entitled_connections() {
    for shards in SHARD_COUNTS {
        let server = AuthServer::start(shards);
        let orders = server.connect(Some(ORDERS_TOKEN)).expect("orders");
        let admin = server.connect(Some(ADMIN_TOKEN)).expect("admin");
        orders.publish("orders.eu.new", b"x").expect("allowed before the reload");

        // Narrow orders' publish rule: the connection stays, the rule changes.
        std::fs::write(&server.file, identities(r#""orders.us.>""#)).expect("rewrite");
        server.server.signal("HUP");
        assert!(
            eventually(|| orders.publish("orders.eu.new", b"x").is_err_and(|error| !error.is_fatal())),
            "shards={shards}: the new rule applies to the open connection"
        );
        orders.publish("orders.us.new", b"x").expect("still allowed, still connected");

        // A file that does not load changes nothing.
        std::fs::write(&server.file, "[[identity]]\nname = ").expect("break the file");
        server.server.signal("HUP");
        std::thread::sleep(Duration::from_millis(300));
        orders.publish("orders.us.new", b"x").expect("old identities still in force");
        server.connect(Some(ORDERS_TOKEN)).expect("and new connections still authenticate").flush().expect("flush");

        // Remove orders: its connection is closed, admin's stays.
        let only_admin = format!("[[identity]]\nname = \"admin\"\ntoken_sha256 = \"{}\"\n", hex(ADMIN_TOKEN));
        std::fs::write(&server.file, only_admin).expect("rewrite");
        server.server.signal("HUP");
        assert!(
            eventually(|| orders.flush().is_err_and(|error| code(&error) == Some(ErrorCode::AuthenticationFailed))),
            "shards={shards}: a revoked identity's connection is closed with authentication_failed"
        );
        admin.publish("anything", b"x").expect("admin unaffected");
        assert_eq!(code(&server.connect(Some(ORDERS_TOKEN)).expect_err("gone")), Some(ErrorCode::AuthenticationFailed));
    }
}

#[test]
fn the_cli_authenticates_with_a_token_file() {
    let server = AuthServer::start(1);
    let address = server.server.address.to_string();
    let token_file = server.file.with_file_name("orders.token");
    std::fs::write(&token_file, format!("{ORDERS_TOKEN}\n")).expect("write token");
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_flit"))
            .args(["pub", "orders.cli", "x", "--server", &address])
            .args(extra)
            .output()
            .expect("flit pub")
    };
    let without = run(&[]);
    assert_eq!(without.status.code(), Some(1), "{without:?}");
    assert!(String::from_utf8_lossy(&without.stderr).contains("400"), "{without:?}");
    let with = run(&["--token-file", token_file.to_str().expect("utf-8")]);
    assert!(with.status.success(), "{with:?}");
}
