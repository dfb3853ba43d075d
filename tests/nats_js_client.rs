//! nats.js (`@nats-io/transport-node` 3.4.0), the NATS project's JavaScript
//! client, unchanged, against flit's NATS listener: each test starts a
//! server and runs one scenario of `tests/nats_clients/js/flit_nats_suite.mjs`
//! (connect, wildcards, queue groups, request/reply, no responders, headers
//! with multi-valued keys, auto-unsubscribe, max_payload, flush, drain, token
//! and user/password authentication, permission violations, TLS) with the
//! server's settings in the environment, and asserts it exits 0 (its output
//! is printed when it does not).
//!
//! Needs `node` (18 or later) and the suite's packages: `npm ci --prefix
//! tests/nats_clients/js`, as `.ci/run` does; `FLIT_NATS_NODE` names another
//! node binary.
//!
//! `FLIT_NATS_SERVER=nats-server cargo test -p flit-router --test
//! nats_js_client` runs the same scenarios against a real nats-server (see
//! `tests/nats_clients/harness.rs`): every expectation here was checked that
//! way first.

mod common;
#[path = "nats_clients/harness.rs"]
mod harness;

use std::path::Path;
use std::process::Command;

use harness::{run_client_program, NatsServer, Setup};

fn run(setup: Setup, scenario: &str) {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/nats_clients/js");
    assert!(
        directory.join("node_modules/@nats-io/transport-node").is_dir(),
        "nats.js is not installed: run `npm ci --prefix tests/nats_clients/js`"
    );
    let server = NatsServer::start(setup);
    let node = std::env::var("FLIT_NATS_NODE").unwrap_or_else(|_| "node".to_owned());
    let mut command = Command::new(node);
    command.current_dir(&directory).args(["flit_nats_suite.mjs", scenario]);
    run_client_program(command, &server, &format!("nats.js scenario {scenario}"));
}

#[test]
fn connect_reads_info() {
    run(Setup::Open, "connect");
}

#[test]
fn wildcards_match_as_in_nats() {
    run(Setup::Open, "wildcards");
}

#[test]
fn queue_group_members_share_messages_without_duplicates() {
    run(Setup::Open, "queue_groups");
}

#[test]
fn request_reply() {
    run(Setup::Open, "request_reply");
}

#[test]
fn no_responders_fails_the_request_at_once() {
    run(Setup::Open, "no_responders");
}

#[test]
fn headers_with_multiple_values_reach_subscribers_and_responders() {
    run(Setup::Open, "headers");
}

#[test]
fn unsubscribe_with_a_maximum_stops_after_it() {
    run(Setup::Open, "unsubscribe_max");
}

#[test]
fn max_payload_is_accepted_and_one_byte_more_is_refused() {
    run(Setup::Open, "max_payload");
}

#[test]
fn flush_is_a_round_trip() {
    run(Setup::Open, "flush");
}

#[test]
fn drain_delivers_pending_messages_then_closes() {
    run(Setup::Open, "drain");
}

#[test]
fn token_authentication() {
    run(Setup::Token, "token");
}

#[test]
fn user_password_authentication() {
    run(Setup::Users, "user_password");
}

#[test]
fn permission_violations_are_reported_and_the_connection_stays() {
    run(Setup::Users, "permissions");
}

#[test]
fn tls_upgrade_with_a_trusted_ca() {
    run(Setup::Tls, "tls");
}
