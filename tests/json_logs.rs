//! `--log-format json`: every stderr line is one JSON object; connection
//! open/close and protocol errors are logged with their reason; a flood of
//! bad clients is rate-limited (at most `LOG_LINES_PER_WINDOW_MAX` lines per
//! second per shard and kind, then a count of what was left out).

mod common;

use std::io::Write;
use std::time::Duration;

use common::{log_events, FlitServer, RawConnection};
use flit_shard::log_limit::LOG_LINES_PER_WINDOW_MAX;
use flit_wire::{FrameHeader, Op};

/// Bad clients sent within one rate-limit window.
const BAD_CLIENTS: usize = 40;

fn send_unknown_op(server: &FlitServer) {
    let mut connection = RawConnection::connect(server.address);
    let mut frame = FrameHeader { body_len: 0, op: Op::Ping, meta_len: 0, tag: 0 }.to_bytes();
    frame[4] = 200;
    connection.stream.write_all(&frame).expect("send");
    // Wait for the Error frame, so the server has handled it.
    let _ = connection.read_frame();
}

#[test]
fn every_line_is_json_and_bad_clients_are_rate_limited() {
    let server = FlitServer::start(1, &["--log-level", "debug"]);
    let good = server.client();
    good.publish("a.b", b"x").expect("publish");
    good.flush().expect("flush");
    drop(good);
    let started = std::time::Instant::now();
    for _ in 0..BAD_CLIENTS {
        send_unknown_op(&server);
    }
    let flood_took = started.elapsed();
    std::thread::sleep(Duration::from_millis(100));
    let (code, stderr) = server.stop();
    assert_eq!(code, Some(0), "{stderr}");
    let events = log_events(&stderr); // panics on any line that is not a JSON object
    for event in &events {
        assert!(event["level"].is_string() && event["timestamp"].is_string(), "{event}");
    }
    let messages: Vec<&str> = events.iter().filter_map(|event| event["message"].as_str()).collect();
    assert!(messages.contains(&"flit ready"), "{messages:?}");
    assert!(messages.contains(&"connection opened"), "debug level logs connections: {messages:?}");
    assert!(messages.contains(&"draining") && messages.contains(&"shard stopped"), "{messages:?}");

    let closes: Vec<&serde_json::Value> = events
        .iter()
        .filter(|event| event["message"].as_str().is_some_and(|m| m.starts_with("closing connection")))
        .collect();
    assert!(!closes.is_empty(), "protocol errors are logged: {messages:?}");
    assert!(closes.iter().all(|event| event["code"] == "unknown_op" && event["level"] == "INFO"), "{closes:?}");
    if flood_took < Duration::from_millis(900) {
        // All of them fell in one or two windows of one second.
        assert!(closes.len() <= 2 * LOG_LINES_PER_WINDOW_MAX as usize, "rate-limited: {} lines", closes.len());
        assert!(closes.len() < BAD_CLIENTS, "some lines were left out");
    }
    assert!(closes.len() >= LOG_LINES_PER_WINDOW_MAX as usize, "the first ones of a window are logged");
}
