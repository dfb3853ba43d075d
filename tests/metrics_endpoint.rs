//! The metrics listener (`--metrics`): `/metrics` parses as Prometheus text
//! and its counters move with the traffic the test sends, scraped while the
//! traffic runs; `/healthz` and `/readyz` answer; errors are counted by code;
//! `flit stats --once` prints a row per shard; a taken metrics port is a
//! one-line startup error.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{http_get, metric_sum, next_message, scrape, FlitServer, RawConnection, SHARD_COUNTS};
use flit_wire::{Frame, Op};

/// Messages each publisher sends.
const MESSAGES_PER_PUBLISHER: u64 = 2_000;
/// Payload bytes of each message.
const PAYLOAD_BYTES: usize = 100;

fn start(shards: usize) -> (FlitServer, std::net::SocketAddr) {
    let server = FlitServer::start(shards, &["--metrics", "127.0.0.1:0"]);
    let metrics = server.metrics_address.expect("the ready line names the metrics address");
    (server, metrics)
}

/// The in-router latency histogram's sample count, summed over shards.
fn latency_samples(scrape: &prometheus_parse::Scrape) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == "flit_in_router_latency_seconds")
        .map(|sample| match &sample.value {
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|bucket| bucket.count).fold(0.0, f64::max)
            }
            other => panic!("not a histogram: {other:?}"),
        })
        .sum()
}

/// Scrapes until `done` holds or five seconds pass; returns the last scrape.
fn scrape_until(
    address: std::net::SocketAddr,
    done: impl Fn(&prometheus_parse::Scrape) -> bool,
) -> prometheus_parse::Scrape {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let current = scrape(address);
        if done(&current) || Instant::now() > deadline {
            return current;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn counters_move_with_the_traffic_sent_scraped_while_it_runs() {
    for shards in SHARD_COUNTS {
        let (server, metrics) = start(shards);
        assert_eq!(http_get(metrics, "/healthz").0, 200);
        assert_eq!(http_get(metrics, "/readyz").0, 200, "ready as soon as the ready line is printed");
        let before = scrape(metrics);
        assert_eq!(metric_sum(&before, "flit_shard_messages_in_total", &[]), 0.0);
        assert_eq!(metric_sum(&before, "flit_shard_up", &[]), shards as f64);

        let subscribers: Vec<_> = (0..shards).map(|shard| server.client_on_shard(shard)).collect();
        let subscriptions: Vec<_> =
            subscribers.iter().map(|client| client.subscribe("load.>").expect("subscribe")).collect();
        for client in &subscribers {
            client.flush().expect("flush");
        }
        let publishers: Vec<_> = (0..shards).map(|shard| server.client_on_shard(shard)).collect();

        // A scraper runs all through the traffic: every counter it sees must
        // only go up.
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let scraper = {
            let (stop, scrapes) = (stop.clone(), scrapes.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let current = scrape(metrics);
                    seen.push((
                        metric_sum(&current, "flit_shard_messages_in_total", &[]),
                        metric_sum(&current, "flit_shard_deliveries_total", &[]),
                        metric_sum(&current, "flit_shard_busy_seconds_total", &[]),
                    ));
                    scrapes.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
                seen
            })
        };
        // On a busy machine the scraper thread may not run before the traffic
        // ends: wait for its first scrape, and after the traffic for one more.
        let wait_for_scrapes = |count: usize| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while scrapes.load(Ordering::Relaxed) < count && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        wait_for_scrapes(1);
        let payload = vec![b'x'; PAYLOAD_BYTES];
        for index in 0..MESSAGES_PER_PUBLISHER {
            for publisher in &publishers {
                publisher.publish(&format!("load.{index}"), &payload).expect("publish");
            }
        }
        for publisher in &publishers {
            publisher.flush().expect("flush");
        }
        let published = MESSAGES_PER_PUBLISHER * shards as u64;
        for subscription in &subscriptions {
            for _ in 0..published {
                next_message(subscription);
            }
        }
        wait_for_scrapes(scrapes.load(Ordering::Relaxed) + 1);
        stop.store(true, Ordering::Relaxed);
        let seen = scraper.join().expect("scraper");
        assert!(seen.len() >= 2, "the scraper ran during the traffic");
        for pair in seen.windows(2) {
            assert!(pair[1].0 >= pair[0].0 && pair[1].1 >= pair[0].1 && pair[1].2 >= pair[0].2, "{pair:?}");
        }

        let delivered = published * shards as u64;
        // Every message is received, so every delivery has been written; the
        // histogram counts a write's deliveries once the buffer is empty.
        let after = scrape_until(metrics, |current| latency_samples(current) >= delivered as f64);
        let shards_f = shards as f64;
        assert_eq!(metric_sum(&after, "flit_shard_messages_in_total", &[]), published as f64, "shards={shards}");
        assert_eq!(metric_sum(&after, "flit_shard_deliveries_total", &[]), delivered as f64, "shards={shards}");
        assert_eq!(latency_samples(&after), delivered as f64, "one latency sample per delivery, shards={shards}");
        assert!(metric_sum(&after, "flit_shard_bytes_in_total", &[]) >= (published * PAYLOAD_BYTES as u64) as f64);
        assert!(metric_sum(&after, "flit_shard_bytes_out_total", &[]) >= (delivered * PAYLOAD_BYTES as u64) as f64);
        assert_eq!(metric_sum(&after, "flit_shard_connections", &[]), 2.0 * shards_f);
        assert_eq!(metric_sum(&after, "flit_shard_subscriptions", &[]), shards_f);
        assert_eq!(metric_sum(&after, "flit_shard_pending_bytes", &[]), 0.0);
        let mesh_sent = metric_sum(&after, "flit_shard_mesh_messages_sent_total", &[]);
        assert_eq!(mesh_sent, metric_sum(&after, "flit_shard_mesh_messages_received_total", &[]));
        if shards > 1 {
            // Each shard's publisher reaches the other shard's subscriber.
            assert!(mesh_sent >= published as f64 / shards_f, "mesh_sent={mesh_sent}");
        }
        let busy = metric_sum(&after, "flit_shard_busy_seconds_total", &[]);
        let idle = metric_sum(&after, "flit_shard_idle_seconds_total", &[]);
        assert!(busy > 0.0 && idle > 0.0, "busy={busy} idle={idle}");
        assert_eq!(metric_sum(&after, "flit_shard_errors_total", &[]), 0.0);
    }
}

#[test]
fn error_frames_are_counted_by_code() {
    let (server, metrics) = start(1);
    let mut connection = RawConnection::connect(server.address);
    let mut frame = flit_wire::FrameHeader { body_len: 0, op: Op::Ping, meta_len: 0, tag: 0 }.to_bytes();
    frame[4] = 200; // no such op
    connection.stream.write_all(&frame).expect("send");
    match connection.read_frame() {
        Some(Frame::Error(error)) => assert_eq!(error.code, flit_wire::ErrorCode::UnknownOp.as_u16()),
        other => panic!("expected an Error frame, got {other:?}"),
    }
    let after = scrape_until(metrics, |current| {
        metric_sum(current, "flit_shard_errors_total", &[("code", "unknown_op")]) == 1.0
    });
    assert_eq!(metric_sum(&after, "flit_shard_errors_total", &[("code", "unknown_op")]), 1.0);
    assert_eq!(metric_sum(&after, "flit_shard_errors_total", &[]), 1.0, "no other code moved");
    assert_eq!(metric_sum(&after, "flit_shard_protocol_errors_total", &[]), 1.0);
}

#[test]
fn unknown_paths_and_methods_are_refused() {
    let (_server, metrics) = start(1);
    assert_eq!(http_get(metrics, "/nope").0, 404);
    let mut stream = std::net::TcpStream::connect(metrics).expect("connect");
    stream.write_all(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 405"), "{response}");
}

#[test]
fn flit_stats_once_prints_a_row_per_shard() {
    let (server, metrics) = start(2);
    let client = server.client_on_shard(1);
    for _ in 0..7 {
        client.publish("stats.test", b"x").expect("publish");
    }
    client.flush().expect("flush");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flit"))
        .args(["stats", "--server", &metrics.to_string(), "--once"])
        .output()
        .expect("run flit stats");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "a header and one row per shard: {stdout}");
    assert!(lines[0].split_whitespace().any(|column| column == "in"), "{stdout}");
    let shard_1: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(shard_1[0], "1");
    assert_eq!(shard_1[4], "7", "shard 1 received 7 messages: {stdout}");
}

#[test]
fn a_taken_metrics_port_is_a_one_line_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flit"))
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "1", "--no-pin", "--metrics", &address])
        .output()
        .expect("run flit");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    let errors: Vec<&str> = stderr.lines().filter(|line| line.starts_with("flit: error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(&address) && errors[0].contains("--metrics"), "{stderr}");
}
