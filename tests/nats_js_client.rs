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
#[macro_use]
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

// One #[test] per scenario, the same list for every client (harness.rs).
nats_client_scenarios!(run);
