//! The `flit` command line for durable streams, exactly as scripts use it:
//! `flit stream add|ls|info [--json]|rm`, `flit pub SUBJECT PAYLOAD --ack`
//! (`NAME SEQ`), `flit pub SUBJECT --ack --stdin` (one `SEQ` per line, in
//! order, pipelined; exit 1 after what it got when the connection is lost),
//! `flit consume NAME [--from ...] [--count N] [--consumer NAME] [--ack]`
//! (`SEQ SUBJECT PAYLOAD`), and `flit pub x.y hi --ack` with no stream:
//! exit 1 and a clear message.

mod common;
mod stream_support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::FlitServer;
use stream_support::{start_on, TempDir};

/// Runs `flit ARGUMENTS... --server ADDRESS` and returns its output.
fn flit(server: &FlitServer, arguments: &[&str]) -> Output {
    let address = server.address.to_string();
    Command::new(env!("CARGO_BIN_EXE_flit")).args(arguments).args(["--server", &address]).output().expect("run flit")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

/// Runs `flit` and asserts it succeeded; returns its stdout.
fn flit_ok(server: &FlitServer, arguments: &[&str]) -> String {
    let output = flit(server, arguments);
    assert!(output.status.success(), "flit {arguments:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    stdout(&output)
}

fn info_json(server: &FlitServer, name: &str) -> serde_json::Value {
    serde_json::from_str(&flit_ok(server, &["stream", "info", name, "--json"])).expect("one JSON object")
}

#[test]
fn stream_add_ls_info_and_rm() {
    let data = TempDir::new("cli-stream");
    let server = start_on(&data.path, 2, &[]);
    let added = flit_ok(
        &server,
        &[
            "stream",
            "add",
            "orders",
            "--subjects",
            "orders.>",
            "--subjects",
            "refunds.*",
            "--durability",
            "interval=10ms",
            "--max-bytes",
            "10GiB",
            "--max-age",
            "7d",
            "--max-msgs",
            "1000",
            "--max-msg-size",
            "1MiB",
            "--dedup-window",
            "2m",
            "--discard",
            "new",
        ],
    );
    assert!(added.contains("orders"), "{added}");
    flit_ok(&server, &["stream", "add", "audit", "--subjects", "audit.>"]);
    let listed = flit_ok(&server, &["stream", "ls"]);
    let names: Vec<&str> = listed.lines().filter_map(|line| line.split_whitespace().next()).collect();
    assert_eq!(names, ["audit", "orders"], "{listed}");
    let info = info_json(&server, "orders");
    assert_eq!(info["name"], "orders");
    assert_eq!(info["subjects"], serde_json::json!(["orders.>", "refunds.*"]));
    assert_eq!(info["durability"], "interval=10ms");
    assert_eq!(info["status"], "ok");
    for (field, value) in [("messages", 0), ("bytes", 0), ("last_seq", 0), ("consumers", 0)] {
        assert_eq!(info[field], value, "{field}: {info}");
    }
    assert!(info["first_seq"].is_u64(), "{info}");
    assert_eq!(info["max_bytes"], 10u64 << 30);
    assert_eq!(info["max_age_ms"], 7 * 86_400_000u64);
    assert_eq!(info["max_msgs"], 1000);
    assert_eq!(info["max_msg_size"], 1 << 20);
    assert_eq!(info["dedup_window_ms"], 120_000);
    assert_eq!(info["discard"], "new");
    let human = flit_ok(&server, &["stream", "info", "orders"]);
    assert!(human.contains("name: orders") && human.contains("messages: 0"), "{human}");
    // A different definition under the same name is refused.
    let conflict = flit(&server, &["stream", "add", "orders", "--subjects", "other.>"]);
    assert_eq!(conflict.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&conflict.stderr).contains("409"), "{conflict:?}");
    flit_ok(&server, &["stream", "rm", "audit"]);
    let missing = flit(&server, &["stream", "info", "audit"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no stream named audit"), "{missing:?}");
    let listed = flit_ok(&server, &["stream", "ls"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let bad = flit(&server, &["stream", "add", "x", "--subjects", "x.>", "--durability", "sometimes"]);
    assert_eq!(bad.status.code(), Some(2), "a bad flag is a usage error");
}

#[test]
fn pub_ack_prints_the_stream_and_sequence_and_info_counts_them() {
    let data = TempDir::new("cli-pub-ack");
    let server = start_on(&data.path, 2, &[]);
    flit_ok(&server, &["stream", "add", "orders", "--subjects", "orders.>"]);
    assert_eq!(flit_ok(&server, &["pub", "orders.eu", "first", "--ack"]), "orders 1\n");
    assert_eq!(flit_ok(&server, &["pub", "orders.us", "second", "--ack"]), "orders 2\n");
    assert_eq!(flit_ok(&server, &["pub", "orders.us", "again", "--ack", "--count", "2"]), "orders 3\norders 4\n");
    let info = info_json(&server, "orders");
    assert_eq!(
        (info["messages"].as_u64(), info["first_seq"].as_u64(), info["last_seq"].as_u64()),
        (Some(4), Some(1), Some(4))
    );
    assert!(info["bytes"].as_u64().is_some_and(|bytes| bytes > 0), "{info}");
}

#[test]
fn pub_ack_with_no_stream_exits_1_with_a_clear_message() {
    let data = TempDir::new("cli-pub-404");
    let server = start_on(&data.path, 1, &[]);
    let output = flit(&server, &["pub", "x.y", "hi", "--ack"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "nothing acknowledged, nothing printed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no stream captures `x.y`"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    // Without --ack the same publish is fine: nobody asked a stream.
    flit_ok(&server, &["pub", "x.y", "hi"]);
}

#[test]
fn pub_ack_stdin_prints_one_sequence_per_line_in_order() {
    const LINES: usize = 500;
    let data = TempDir::new("cli-pub-stdin");
    let server = start_on(&data.path, 2, &[]);
    flit_ok(&server, &["stream", "add", "events", "--subjects", "events.>"]);
    flit_ok(&server, &["pub", "events.x", "before", "--ack"]);
    let address = server.address.to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flit"))
        .args(["pub", "events.in", "--ack", "--stdin", "--server", &address])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn flit pub");
    let input: String = (1..=LINES).map(|line| format!("line {line}\n")).collect();
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write lines");
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: Vec<u64> = stdout(&output).lines().map(|line| line.parse().expect("a sequence")).collect();
    assert_eq!(printed, (2..=LINES as u64 + 1).collect::<Vec<_>>());
    // The stream has them in the same order.
    let read = flit_ok(&server, &["consume", "events", "--from", "seq=2", "--count", &LINES.to_string()]);
    let expected: String = (1..=LINES).map(|line| format!("{} events.in line {line}\n", line + 1)).collect();
    assert_eq!(read, expected);
}

#[test]
fn pub_ack_stdin_prints_each_acknowledgement_as_it_comes() {
    let data = TempDir::new("cli-pub-interactive");
    let server = start_on(&data.path, 1, &[]);
    flit_ok(&server, &["stream", "add", "chat", "--subjects", "chat.>"]);
    let address = server.address.to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flit"))
        .args(["pub", "chat.room", "--ack", "--stdin", "--server", &address])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn flit pub");
    let mut input = child.stdin.take().expect("stdin");
    let mut printed = BufReader::new(child.stdout.take().expect("stdout"));
    for expected in 1..=3u64 {
        // Each line is acknowledged and printed while stdin stays open.
        writeln!(input, "message {expected}").expect("write");
        input.flush().expect("flush");
        let mut line = String::new();
        printed.read_line(&mut line).expect("read an acknowledgement");
        assert_eq!(line, format!("{expected}\n"));
    }
    drop(input);
    assert!(child.wait().expect("wait").success());
}

#[test]
fn pub_ack_stdin_exits_1_after_what_it_got_when_the_connection_is_lost() {
    let data = TempDir::new("cli-pub-lost");
    let server = start_on(&data.path, 1, &[]);
    flit_ok(&server, &["stream", "add", "jobs", "--subjects", "jobs.>"]);
    let address = server.address.to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flit"))
        .args(["pub", "jobs.new", "--ack", "--stdin", "--server", &address])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn flit pub");
    let mut input = child.stdin.take().expect("stdin");
    let mut printed = BufReader::new(child.stdout.take().expect("stdout"));
    writeln!(input, "one").expect("write");
    input.flush().expect("flush");
    let mut line = String::new();
    printed.read_line(&mut line).expect("read");
    assert_eq!(line, "1\n");
    // The server goes away while stdin is still open.
    let (code, stderr) = server.stop();
    assert_eq!(code, Some(0), "{stderr}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        // Lines after the loss cannot be acknowledged.
        let _ = writeln!(input, "more");
        let _ = input.flush();
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "flit pub did not notice the lost connection");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut printed, &mut rest).expect("read the rest");
    assert_eq!(rest, "", "nothing more was acknowledged");
    let mut error = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut error).expect("stderr");
    assert!(error.contains("after 1 acknowledged line"), "{error}");
}

#[test]
fn consume_prints_seq_subject_payload_from_where_asked() {
    let data = TempDir::new("cli-consume");
    let server = start_on(&data.path, 2, &[]);
    flit_ok(&server, &["stream", "add", "orders", "--subjects", "orders.>"]);
    for (subject, payload) in [("orders.eu", "one"), ("orders.us", "two"), ("orders.eu", "three\nlines")] {
        flit_ok(&server, &["pub", subject, payload, "--ack"]);
    }
    let all = "1 orders.eu one\n2 orders.us two\n3 orders.eu three\\nlines\n";
    assert_eq!(flit_ok(&server, &["consume", "orders", "--wait", "200"]), all, "from first by default, until empty");
    assert_eq!(flit_ok(&server, &["consume", "orders", "--from", "first", "--count", "2"]), &all[..32]);
    assert_eq!(
        flit_ok(&server, &["consume", "orders", "--from", "last", "--wait", "200"]),
        "3 orders.eu three\\nlines\n"
    );
    assert_eq!(flit_ok(&server, &["consume", "orders", "--from", "seq=2", "--count", "1"]), "2 orders.us two\n");
    assert_eq!(flit_ok(&server, &["consume", "orders", "--from", "new", "--wait", "200"]), "");
    let past = flit_ok(&server, &["consume", "orders", "--from", "time=2000-01-01T00:00:00Z", "--count", "3"]);
    assert_eq!(past, all);
    let future = flit_ok(&server, &["consume", "orders", "--from", "time=2200-01-01T00:00:00+02:00", "--wait", "200"]);
    assert_eq!(future, "");
    let missing = flit(&server, &["consume", "nothing", "--wait", "200"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no stream named nothing"), "{missing:?}");
}

#[test]
fn consume_with_a_durable_consumer_and_ack_resumes_where_it_stopped() {
    let data = TempDir::new("cli-consume-durable");
    let server = start_on(&data.path, 2, &[]);
    flit_ok(&server, &["stream", "add", "tasks", "--subjects", "tasks.*"]);
    for index in 1..=5 {
        flit_ok(&server, &["pub", "tasks.new", &format!("t{index}"), "--ack"]);
    }
    let first = flit_ok(&server, &["consume", "tasks", "--consumer", "workers", "--ack", "--count", "2"]);
    assert_eq!(first, "1 tasks.new t1\n2 tasks.new t2\n");
    // The consumer exists now; it goes on after the acknowledged ones.
    let next = flit_ok(&server, &["consume", "tasks", "--consumer", "workers", "--ack", "--count", "2"]);
    assert_eq!(next, "3 tasks.new t3\n4 tasks.new t4\n");
    // Without --ack the message stays pending: an explicit-ack consumer
    // redelivers it only after its ack wait (30 s), so the next read skips it.
    let unacked = flit_ok(&server, &["consume", "tasks", "--consumer", "workers", "--wait", "200"]);
    assert_eq!(unacked, "5 tasks.new t5\n");
    assert_eq!(flit_ok(&server, &["consume", "tasks", "--consumer", "workers", "--wait", "200"]), "");
    // An ephemeral consumer with --ack reads everything and acknowledges it.
    let all = flit_ok(&server, &["consume", "tasks", "--ack", "--wait", "200"]);
    assert_eq!(all.lines().count(), 5, "{all}");
    let info = info_json(&server, "tasks");
    assert!(info["consumers"].as_u64().is_some_and(|consumers| consumers >= 1), "{info}");
}
