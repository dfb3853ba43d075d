//! nats-py, the NATS project's Python client, unchanged, against flit's NATS
//! listener: each test starts a server and runs one scenario of
//! `tests/nats_clients/python/flit_nats_suite.py` (connect, wildcards, queue
//! groups, request/reply, no responders, headers, auto-unsubscribe,
//! max_payload, flush, drain, token and user/password authentication,
//! permission violations, TLS), passing the server's settings in the
//! environment, and asserts the script exits 0 (its output is printed when
//! it does not).
//!
//! Needs `python3` with nats-py (`python3 -m pip install nats-py==2.16.0`,
//! as `.ci/run` does); `FLIT_NATS_PYTHON` names another interpreter.
//!
//! `FLIT_NATS_SERVER=nats-server cargo test -p flit-router --test
//! nats_python_client` runs the same scenarios against a real nats-server
//! (see `tests/nats_clients/harness.rs`): every expectation here was checked
//! that way first.

mod common;
#[path = "nats_clients/harness.rs"]
mod harness;

use std::process::Command;

use harness::{run_client_program, NatsServer, Setup};

fn run(setup: Setup, scenario: &str) {
    let server = NatsServer::start(setup);
    let interpreter = std::env::var("FLIT_NATS_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/nats_clients/python/flit_nats_suite.py");
    let mut command = Command::new(interpreter);
    // -u: unbuffered, so a killed script's last lines are not lost.
    command.args(["-u", script, scenario]);
    run_client_program(command, &server, &format!("nats-py scenario {scenario}"));
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
fn headers_reach_subscribers_and_responders() {
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
