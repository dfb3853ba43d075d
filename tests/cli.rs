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

/// A file in a fresh temporary directory, removed (with the directory) on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let directory = std::env::temp_dir().join(format!("flit-cli-{}-{:?}", std::process::id(), Instant::now()));
        std::fs::create_dir_all(&directory).expect("temp dir");
        let path = directory.join(name);
        std::fs::write(&path, contents).expect("write");
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(directory) = self.0.parent() {
            let _ = std::fs::remove_dir_all(directory);
        }
    }
}

const ORDERS_TOKEN: &str = "cli-orders-token-6d2b9e4f1a";

/// A router with one identity, `orders`, that may publish and subscribe
/// under `orders.>` only: not elsewhere, and not to an inbox.
fn orders_only_server() -> (FlitServer, TempFile) {
    let hash: String = flit_shard::auth::token_sha256(ORDERS_TOKEN).iter().map(|byte| format!("{byte:02x}")).collect();
    let identities = TempFile::new(
        "identities.toml",
        &format!(
            "[[identity]]\nname = \"orders\"\ntoken_sha256 = \"{hash}\"\n\
             publish = {{ allow = [\"orders.>\"] }}\nsubscribe = {{ allow = [\"orders.>\"] }}\n"
        ),
    );
    let server = FlitServer::start(1, &["--identities", identities.path()]);
    (server, identities)
}

/// The one line a failed command printed on stderr.
fn one_error_line(finished: &Finished) -> &str {
    assert_eq!(finished.stderr.len(), 1, "one line on stderr: {finished:?}");
    &finished.stderr[0]
}

#[test]
fn pub_refused_by_permissions_exits_1_naming_the_code_and_message() {
    let (server, _identities) = orders_only_server();
    let address = server.address.to_string();
    let publish = Flit::run(&["pub", "billing.new", "x", "--server", &address, "--token", ORDERS_TOKEN]);
    assert_eq!(publish.code, Some(1), "{publish:?}");
    let line = one_error_line(&publish);
    assert!(line.contains("1 of 1 publishes to `billing.new`"), "{line}");
    assert!(line.contains("401 (permission_denied)") && line.contains("may not publish to billing.new"), "{line}");
    let allowed = Flit::run(&["pub", "orders.new", "x", "--server", &address, "--token", ORDERS_TOKEN]);
    assert_eq!(allowed.code, Some(0), "{allowed:?}");
}

#[test]
fn pub_count_over_a_reject_rate_limit_exits_1_saying_how_many_were_refused() {
    let server = FlitServer::start(1, &["--rate-messages-per-second", "10", "--rate-burst-messages", "10"]);
    let address = server.address.to_string();
    let publish = Flit::run(&["pub", "rate.test", "x", "--count", "100", "--server", &address]);
    assert_eq!(publish.code, Some(1), "{publish:?}");
    let line = one_error_line(&publish);
    assert!(line.contains("307 (rate_limited)"), "{line}");
    let refused: u64 = line
        .split(" of 100 publishes")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("the line says how many of the 100 were refused: {line}"));
    // The burst of 10 passes; the time the loop takes may refill one or two.
    assert!((85..=90).contains(&refused), "{line}");
}

#[test]
fn sub_on_a_denied_subject_exits_1_with_the_servers_message_instead_of_waiting() {
    let (server, _identities) = orders_only_server();
    let address = server.address.to_string();
    let subscribe = Flit::run(&["sub", "billing.>", "--server", &address, "--token", ORDERS_TOKEN]);
    assert_eq!(subscribe.code, Some(1), "{subscribe:?}");
    let line = one_error_line(&subscribe);
    assert!(line.contains("subscription to `billing.>`"), "{line}");
    assert!(line.contains("401 (permission_denied)") && line.contains("may not subscribe to billing.>"), "{line}");
}

#[test]
fn req_whose_inbox_subscription_is_refused_exits_1_at_once_naming_the_refusal() {
    let (server, _identities) = orders_only_server();
    let address = server.address.to_string();
    let started = Instant::now();
    let request =
        Flit::run(&["req", "orders.service", "x", "--timeout", "10000", "--server", &address, "--token", ORDERS_TOKEN]);
    assert!(started.elapsed() < Duration::from_secs(5), "not after its timeout: {:?}", started.elapsed());
    assert_eq!(request.code, Some(1), "{request:?}");
    let line = one_error_line(&request);
    assert!(line.contains("refused the request on `orders.service`"), "{line}");
    assert!(line.contains("401 (permission_denied)") && line.contains("_INBOX."), "{line}");
}

#[test]
fn stats_with_an_interval_that_is_not_a_positive_number_exits_2_with_one_line() {
    let server = FlitServer::start(1, &["--metrics", "127.0.0.1:0"]);
    let metrics = server.metrics_address.expect("metrics").to_string();
    for interval in ["nan", "inf", "0", "-1"] {
        let stats = Flit::run(&["stats", "--server", &metrics, &format!("--interval={interval}")]);
        assert_eq!(stats.code, Some(2), "{interval}: {stats:?}");
        assert!(one_error_line(&stats).contains("interval must be a number of seconds"), "{stats:?}");
    }
}

#[test]
fn missing_required_arguments_are_named_on_the_one_line() {
    let publish = Flit::run(&["pub"]);
    assert_eq!(publish.code, Some(2), "{publish:?}");
    let line = one_error_line(&publish);
    assert!(line.contains("<SUBJECT>") && line.contains("<PAYLOAD>"), "{line}");
}

#[test]
fn req_timeout_0_is_a_usage_error_and_a_huge_one_still_gets_the_immediate_answer() {
    let server = FlitServer::start(1, &[]);
    let address = server.address.to_string();
    let zero = Flit::run(&["req", "nobody", "x", "--timeout", "0", "--server", &address]);
    assert_eq!(zero.code, Some(2), "{zero:?}");
    assert!(one_error_line(&zero).contains("at least 1 ms"), "{zero:?}");
    let huge = Flit::run(&["req", "nobody", "x", "--timeout", &u64::MAX.to_string(), "--server", &address]);
    assert_eq!(huge.code, Some(1), "{huge:?}");
    assert!(one_error_line(&huge).contains("no responders"), "{huge:?}");
}

#[test]
fn a_plain_client_against_a_tls_listener_is_told_to_pass_tls_ca() {
    let key = rcgen::KeyPair::generate().expect("key");
    let certificate =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params").self_signed(&key).expect("cert");
    let certificate_file = TempFile::new("server.crt", &certificate.pem());
    let key_file = TempFile::new("server.key", &key.serialize_pem());
    let server = FlitServer::start(1, &["--tls-cert", certificate_file.path(), "--tls-key", key_file.path()]);
    let address = server.address.to_string();
    let publish = Flit::run(&["pub", "a", "x", "--server", &address]);
    assert_eq!(publish.code, Some(1), "{publish:?}");
    let line = one_error_line(&publish);
    assert!(line.contains("speaks TLS") && line.contains("--tls-ca"), "{line}");
    let with_ca = Flit::run(&["pub", "a", "x", "--server", &address, "--tls-ca", certificate_file.path()]);
    assert_eq!(with_ca.code, Some(0), "{with_ca:?}");
}

#[test]
fn metrics_on_the_client_port_is_refused_by_config_check_and_serve_with_one_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let config = TempFile::new(
        "flit.toml",
        &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let check = Flit::run(&["config", "check", config.path()]);
    assert_eq!(check.code, Some(2), "{check:?}");
    let line = one_error_line(&check);
    assert!(line.contains("metrics.listen") && line.contains("a port of its own"), "{line}");
    let serve = Flit::run(&["serve", "--config", config.path(), "--shards", "1", "--no-pin"]);
    assert_eq!(serve.code, Some(2), "{serve:?}");
    assert!(serve.stdout.is_empty(), "no ready line: {serve:?}");
    assert_eq!(one_error_line(&serve), line, "serve refuses it the same way");
}

#[test]
fn listen_takes_a_host_name_as_server_does() {
    let serve = Flit::spawn(&["serve", "--listen", "localhost:0", "--shards", "1", "--no-pin"]);
    let ready = Flit::next_line(&serve.stdout_lines, PROCESS_TIMEOUT).expect("a ready line");
    let address = ready
        .strip_prefix("flit ready listen=")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|address| address.parse::<std::net::SocketAddr>().ok())
        .unwrap_or_else(|| panic!("unexpected ready line: {ready}"));
    assert!(address.ip().is_loopback(), "{ready}");
    let publish = Flit::run(&["pub", "a", "x", "--server", &format!("localhost:{}", address.port())]);
    assert_eq!(publish.code, Some(0), "{publish:?}");
}

/// Starts `flit sub SUBJECT --count 1` with `extra` flags and publishes
/// `payload` until it prints; returns every line it printed.
fn sub_output(server: &FlitServer, extra: &[&str], payload: &[u8]) -> Vec<String> {
    let address = server.address.to_string();
    let mut arguments = vec!["sub", "escape.>", "--count", "1", "--server", &address];
    arguments.extend_from_slice(extra);
    let subscriber = Flit::spawn(&arguments);
    let publisher = server.client();
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    let first = loop {
        // Publishes before the subscription was active are lost: repeat.
        publisher.publish("escape.me", payload).expect("publish");
        publisher.flush().expect("flush");
        if let Some(line) = Flit::next_line(&subscriber.stdout_lines, Duration::from_millis(200)) {
            break line;
        }
        assert!(Instant::now() < deadline, "`flit sub` printed nothing");
    };
    let finished = subscriber.wait();
    assert_eq!(finished.code, Some(0), "{finished:?}");
    std::iter::once(first).chain(finished.stdout).collect()
}

#[test]
fn sub_escapes_newlines_and_terminal_escapes_unless_raw() {
    let server = FlitServer::start(1, &[]);
    let payload = b"two\nlines\x1b[31m red \\ \xff caf\xc3\xa9";
    assert_eq!(sub_output(&server, &[], payload), ["escape.me two\\nlines\\u{1b}[31m red \\\\ \\xff caf\u{e9}"]);
    // --raw: the bytes as they came (the test reads lines, so the newline splits it).
    let raw = sub_output(&server, &["--raw"], b"two\nlines\x1b[31m");
    assert_eq!(raw, ["escape.me two", "lines\u{1b}[31m"]);
}
