//! Refusals that keep the connection open (`permission_denied` 401 and
//! `rate_limited` 307) reach the Rust client's caller, outside ack mode too,
//! against the real binary:
//! - after `flush()`, `check_refusals()` returns them: the server sends each
//!   refusal in order with its other replies, so every refusal of a frame
//!   sent before the flush's Ping arrives before its Pong; the error carries
//!   the code, the server's message and how many frames were refused, and
//!   each refusal is reported once (the flush itself succeeds: the
//!   connection is open);
//! - a request whose inbox subscription is refused fails at once with the
//!   server's error instead of waiting for its timeout, and so does a request
//!   whose publish is refused;
//! - both for the blocking and the tokio client, with and without ack mode.

mod common;

use std::time::{Duration, Instant};

use common::FlitServer;
use flit_client::{AsyncClient, Client, ClientError, Options};
use flit_wire::ErrorCode;

/// May publish and subscribe under `orders.>` only: no inbox, so a request's
/// inbox subscription is refused.
const NO_INBOX_TOKEN: &str = "no-inbox-token-4b7e1d9c";
/// May subscribe to its inbox but publish under `orders.>` only.
const ORDERS_ONLY_TOKEN: &str = "orders-only-token-8a2f6c3e";

/// Long enough that waiting for it would be obvious next to a refusal, which
/// comes back in one round trip.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const PROMPTLY: Duration = Duration::from_secs(3);

fn hex(token: &str) -> String {
    flit_shard::auth::token_sha256(token).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A server with two restricted identities, and the directory of its file.
struct Restricted {
    server: FlitServer,
    directory: std::path::PathBuf,
}

impl Restricted {
    fn start() -> Restricted {
        let directory = std::env::temp_dir().join(format!("flit-refusals-{}-{:?}", std::process::id(), Instant::now()));
        std::fs::create_dir_all(&directory).expect("temp dir");
        let file = directory.join("identities.toml");
        let text = format!(
            r#"
[[identity]]
name = "no-inbox"
token_sha256 = "{}"
publish = {{ allow = ["orders.>"] }}
subscribe = {{ allow = ["orders.>"] }}

[[identity]]
name = "orders-only"
token_sha256 = "{}"
publish = {{ allow = ["orders.>"] }}
subscribe = {{ allow = ["orders.>", "_INBOX.>"] }}
"#,
            hex(NO_INBOX_TOKEN),
            hex(ORDERS_ONLY_TOKEN)
        );
        std::fs::write(&file, text).expect("write identities");
        let server = FlitServer::start(2, &["--identities", file.to_str().expect("utf-8")]);
        Restricted { server, directory }
    }

    fn options(token: &str, ack_mode: bool) -> Options {
        Options { auth_token: Some(token.to_owned()), ack_mode, ..Options::default() }
    }

    fn client(&self, token: &str, ack_mode: bool) -> Client {
        Client::connect_with(self.server.address, Restricted::options(token, ack_mode)).expect("connect")
    }

    async fn async_client(&self, token: &str, ack_mode: bool) -> AsyncClient {
        AsyncClient::connect_with(self.server.address, Restricted::options(token, ack_mode)).await.expect("connect")
    }
}

impl Drop for Restricted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// After a flush: the refusals `check_refusals` reported, as (count, code, message).
fn refused(result: Result<(), ClientError>) -> (u64, u16, String) {
    match result {
        Err(error @ ClientError::Refused { .. }) => {
            assert!(!error.is_fatal(), "a refusal leaves the connection open: {error}");
            let ClientError::Refused { count, code, message, .. } = error else { unreachable!() };
            (count, code, message)
        }
        other => panic!("expected check_refusals to report refusals, got {other:?}"),
    }
}

fn flushed(client: &Client) -> Result<(), ClientError> {
    client.flush().expect("a flush succeeds: refusals keep the connection open");
    client.check_refusals()
}

fn assert_permission_denied(error: &ClientError, what: &str) {
    assert_eq!(error.server_code(), Some(ErrorCode::PermissionDenied), "{what}: {error:?}");
    assert!(!error.is_fatal(), "{what}: {error:?}");
}

#[test]
fn after_a_flush_refused_publishes_are_reported_once_with_code_message_and_count() {
    let restricted = Restricted::start();
    let client = restricted.client(ORDERS_ONLY_TOKEN, false);
    for _ in 0..3 {
        client.publish("billing.new", b"x").expect("outside ack mode a publish only buffers");
    }
    client.publish("orders.new", b"allowed").expect("publish");
    let (count, code, message) = refused(flushed(&client));
    assert_eq!((count, code), (3, ErrorCode::PermissionDenied.as_u16()));
    assert!(message.contains("billing.new"), "the server's message: {message}");
    client.check_refusals().expect("each refusal is reported once");
    client.flush().expect("the connection is still open");
    assert_eq!(client.statistics().refused_by_server, 3);
}

#[test]
fn after_a_flush_a_refused_subscribe_is_reported() {
    let restricted = Restricted::start();
    let client = restricted.client(ORDERS_ONLY_TOKEN, false);
    let _subscription = client.subscribe("billing.>").expect("outside ack mode a subscribe only buffers");
    let (count, code, message) = refused(flushed(&client));
    assert_eq!((count, code), (1, ErrorCode::PermissionDenied.as_u16()));
    assert!(message.contains("billing.>"), "the server's message: {message}");
}

#[test]
fn after_a_flush_publishes_over_a_reject_rate_limit_are_reported() {
    let server = FlitServer::start(1, &["--rate-messages-per-second", "10", "--rate-burst-messages", "10"]);
    let client = server.client();
    for _ in 0..100 {
        client.publish("rate.test", b"x").expect("publish");
    }
    let (count, code, message) = refused(flushed(&client));
    assert_eq!(code, ErrorCode::RateLimited.as_u16(), "{message}");
    // The burst of 10 passes; the time the loop takes may refill one or two.
    assert!((85..=90).contains(&count), "{count} of 100 refused: {message}");
}

#[test]
fn a_request_whose_inbox_subscription_is_refused_fails_at_once() {
    let restricted = Restricted::start();
    for ack_mode in [false, true] {
        let client = restricted.client(NO_INBOX_TOKEN, ack_mode);
        let started = Instant::now();
        let error = client.request("orders.service", b"x", REQUEST_TIMEOUT).expect_err("the inbox is refused");
        assert!(started.elapsed() < PROMPTLY, "ack_mode={ack_mode}: took {:?}", started.elapsed());
        assert_permission_denied(&error, &format!("ack_mode={ack_mode}"));
        // Reported to the request, so not again.
        client.flush().expect("the connection is still open");
        client.check_refusals().expect("the refusal was reported to the request");
    }
}

#[test]
fn a_request_whose_publish_is_refused_fails_at_once() {
    let restricted = Restricted::start();
    for ack_mode in [false, true] {
        let client = restricted.client(ORDERS_ONLY_TOKEN, ack_mode);
        let started = Instant::now();
        let error = client.request("billing.service", b"x", REQUEST_TIMEOUT).expect_err("the publish is refused");
        assert!(started.elapsed() < PROMPTLY, "ack_mode={ack_mode}: took {:?}", started.elapsed());
        assert_permission_denied(&error, &format!("ack_mode={ack_mode}"));
        // The inbox itself was fine: an allowed request gets its answer (here: no responders).
        let next = client.request("orders.nobody", b"x", REQUEST_TIMEOUT);
        assert!(matches!(next, Err(ClientError::NoResponders)), "ack_mode={ack_mode}: {next:?}");
    }
}

#[test]
fn the_async_client_reports_refusals_the_same_way() {
    let restricted = Restricted::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let client = restricted.async_client(ORDERS_ONLY_TOKEN, false).await;
        client.publish("billing.new", b"x").await.expect("buffered");
        client.publish("billing.new", b"x").await.expect("buffered");
        let (count, code, _) = refused({
            client.flush().await.expect("flush");
            client.check_refusals()
        });
        assert_eq!((count, code), (2, ErrorCode::PermissionDenied.as_u16()));
        client.check_refusals().expect("reported once");

        for ack_mode in [false, true] {
            let client = restricted.async_client(NO_INBOX_TOKEN, ack_mode).await;
            let started = Instant::now();
            let error = client.request("orders.service", b"x", REQUEST_TIMEOUT).await.expect_err("inbox refused");
            assert!(started.elapsed() < PROMPTLY, "ack_mode={ack_mode}: took {:?}", started.elapsed());
            assert_permission_denied(&error, &format!("async, ack_mode={ack_mode}"));

            let client = restricted.async_client(ORDERS_ONLY_TOKEN, ack_mode).await;
            let started = Instant::now();
            let error = client.request("billing.service", b"x", REQUEST_TIMEOUT).await.expect_err("publish refused");
            assert!(started.elapsed() < PROMPTLY, "ack_mode={ack_mode}: took {:?}", started.elapsed());
            assert_permission_denied(&error, &format!("async, ack_mode={ack_mode}"));
        }
    });
}
