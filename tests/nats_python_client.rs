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
#[macro_use]
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

// One #[test] per scenario, the same list for every client (harness.rs).
nats_client_scenarios!(run);
