//! File descriptors run out (EMFILE at accept): the shard backs off, counts
//! it, and keeps serving the connections it has; once descriptors free up it
//! accepts again. The server runs under `prlimit --nofile` so the limit is
//! reached with a few dozen connections.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{metric_sum, next_message, scrape, FlitServer};

/// The server's descriptor limit: its rings, listener, wake pipes, metrics
/// listener and a handful of clients.
const SERVER_FILES_MAX: &str = "--nofile=48:48";

#[test]
fn descriptor_exhaustion_pauses_accepting_and_existing_clients_keep_working() {
    let server = FlitServer::start_under(&["prlimit", SERVER_FILES_MAX], 1, &["--metrics", "127.0.0.1:0"]);
    let client = server.client();
    let subscription = client.subscribe("still.>").expect("subscribe");
    client.flush().expect("flush");

    // Far more connections than descriptors: the kernel completes them (the
    // backlog), the shard cannot accept them all.
    let flood: Vec<TcpStream> = (0..120).filter_map(|_| TcpStream::connect(server.address).ok()).collect();
    std::thread::sleep(Duration::from_millis(300));
    for index in 0..50u32 {
        client.publish("still.here", &index.to_le_bytes()).expect("publish");
    }
    for index in 0..50u32 {
        assert_eq!(&next_message(&subscription).payload[..], &index.to_le_bytes(), "the old client is served");
    }

    drop(flood);
    // Descriptors free up as the shard closes what it had accepted; then new
    // clients get in again.
    let deadline = Instant::now() + Duration::from_secs(15);
    let late = loop {
        match flit_client::Client::connect(server.address) {
            Ok(late) if late.flush().is_ok() => break late,
            _ => assert!(Instant::now() < deadline, "no new connection accepted after descriptors freed"),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    late.publish("still.late", b"x").expect("publish");
    assert_eq!(next_message(&subscription).subject, "still.late");
    let metrics_address = server.metrics_address.expect("metrics");
    let accept_errors = loop {
        if let Ok(stream) = TcpStream::connect(metrics_address) {
            drop(stream);
            break metric_sum(&scrape(metrics_address), "flit_shard_accept_errors_total", &[]);
        }
        assert!(Instant::now() < deadline, "metrics unreachable");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(accept_errors > 0.0, "EMFILE was counted");
    let (code, stderr) = server.stop();
    assert_eq!(code, Some(0), "{stderr}");
}
