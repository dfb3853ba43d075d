//! The `flit` binary's command-line clients against a real router, and the
//! exit codes and one-line errors of `flit serve` when it cannot start.
//!
//! Exit codes: 0 success, 1 a client command failed, 2 bad usage or the
//! router could not start. Every process started here is waited for with a
//! bound and killed if it overstays.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::{FlitServer, SHARD_COUNTS};

/// Bound on any one `flit` process in these tests.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `flit` process whose output lines arrive on channels.
struct Flit {
    child: Child,
    stdout_lines: Receiver<String>,
    stderr_lines: Receiver<String>,
}

/// What a finished process left behind.
#[derive(Debug)]
struct Finished {
    code: Option<i32>,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

fn forward_lines(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

impl Flit {
    fn spawn(arguments: &[&str]) -> Flit {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flit"))
            .args(arguments)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flit");
        let stdout_lines = forward_lines(child.stdout.take().expect("stdout"));
        let stderr_lines = forward_lines(child.stderr.take().expect("stderr"));
        Flit { child, stdout_lines, stderr_lines }
    }

    /// Runs to completion within `PROCESS_TIMEOUT`.
    fn run(arguments: &[&str]) -> Finished {
        Flit::spawn(arguments).wait()
    }

    fn next_line(lines: &Receiver<String>, timeout: Duration) -> Option<String> {
        lines.recv_timeout(timeout).ok()
    }

    /// Waits for exit; kills the process and panics after `PROCESS_TIMEOUT`.
    fn wait(mut self) -> Finished {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("flit did not exit within {PROCESS_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The pipes close with the process; collect what is left, bounded.
        let collect = |lines: &Receiver<String>| {
            let mut collected = Vec::new();
            while let Some(line) = Flit::next_line(lines, Duration::from_secs(5)) {
                collected.push(line);
            }
            collected
        };
        let stdout = collect(&self.stdout_lines);
        let stderr = collect(&self.stderr_lines);
        Finished { code: status.code(), stdout, stderr }
    }
}

impl Drop for Flit {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn request_to_an_echo_responder_prints_the_reply_and_exits_0() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        let address = server.address.to_string();
        let responder = Flit::spawn(&["reply", "svc", "--echo", "--count", "1", "--server", &address]);
        // Printed after the responder's flush: its subscription is visible everywhere.
        let ready = Flit::next_line(&responder.stderr_lines, PROCESS_TIMEOUT);
        assert!(
            ready.as_deref().is_some_and(|line| line.contains("answering requests")),
            "shards={shards}: responder did not report readiness: {ready:?}"
        );

        let request = Flit::run(&["req", "svc", "hello", "--server", &address]);
        assert_eq!(request.code, Some(0), "shards={shards}: {request:?}");
        assert_eq!(request.stdout, ["hello"], "shards={shards}: {request:?}");

        let responder = responder.wait();
        assert_eq!(responder.code, Some(0), "shards={shards}: responder after --count 1: {responder:?}");
    }
}

#[test]
fn subscriber_prints_subject_and_payload_of_a_published_message() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        let address = server.address.to_string();
        let subscriber = Flit::spawn(&["sub", "a.>", "--count", "1", "--server", &address]);
        // `flit sub` prints nothing until a message arrives, so publish until
        // one does: publishes before its subscription was active are lost.
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        let line = loop {
            let publish = Flit::run(&["pub", "a.b.c", "hi", "--server", &address]);
            assert_eq!(publish.code, Some(0), "shards={shards}: {publish:?}");
            if let Some(line) = Flit::next_line(&subscriber.stdout_lines, Duration::from_millis(200)) {
                break line;
            }
            assert!(
                Instant::now() < deadline,
                "shards={shards}: `flit sub` printed nothing within {PROCESS_TIMEOUT:?}"
            );
        };
        assert_eq!(line, "a.b.c hi", "shards={shards}");
        let subscriber = subscriber.wait();
        assert_eq!(subscriber.code, Some(0), "shards={shards}: subscriber after --count 1: {subscriber:?}");
    }
}

#[test]
fn request_without_responders_exits_1_saying_so() {
    let server = FlitServer::start(1, &[]);
    let address = server.address.to_string();
    let request = Flit::run(&["req", "nobody", "x", "--server", &address]);
    assert_eq!(request.code, Some(1), "{request:?}");
    assert!(request.stdout.is_empty(), "{request:?}");
    assert_eq!(request.stderr.len(), 1, "one line on stderr: {request:?}");
    assert!(request.stderr[0].contains("no responders"), "{request:?}");
}

#[test]
fn serve_on_an_address_in_use_exits_2_with_one_line() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        let address = server.address.to_string();
        let second = Flit::run(&["serve", "--listen", &address, "--shards", &shards.to_string(), "--no-pin"]);
        assert_eq!(second.code, Some(2), "shards={shards}: {second:?}");
        assert!(second.stdout.is_empty(), "shards={shards}: no ready line: {second:?}");
        assert_eq!(second.stderr.len(), 1, "shards={shards}: one line on stderr: {second:?}");
        assert!(second.stderr[0].contains("in use"), "shards={shards}: {second:?}");
        // The first router is unharmed and still takes connections.
        server.client().flush().expect("the running router still serves");
    }
}

#[test]
fn serve_with_an_unknown_flag_exits_2_with_one_line() {
    let serve = Flit::run(&["serve", "--bogus-flag"]);
    assert_eq!(serve.code, Some(2), "{serve:?}");
    assert!(serve.stdout.is_empty(), "{serve:?}");
    assert_eq!(serve.stderr.len(), 1, "one line on stderr: {serve:?}");
    assert!(serve.stderr[0].contains("--bogus-flag"), "the line names the flag: {serve:?}");
}

#[test]
fn serve_with_zero_shards_exits_2_with_one_line() {
    let serve = Flit::run(&["serve", "--shards", "0", "--listen", "127.0.0.1:0", "--no-pin"]);
    assert_eq!(serve.code, Some(2), "{serve:?}");
    assert!(serve.stdout.is_empty(), "no ready line: {serve:?}");
    assert_eq!(serve.stderr.len(), 1, "one line on stderr: {serve:?}");
}
