//! Publish rate limits against the real binary: under `reject` a burst
//! passes, the rest is refused with `rate_limited` (307) and a retry-after
//! hint while the connection stays open; under `slow_down` nothing is
//! dropped and the publisher is held to the rate by TCP backpressure; an
//! identity's limit is shared by all of its connections. Counters move.

mod common;

use std::time::{Duration, Instant};

use common::{metric_sum, next_message, scrape, FlitServer, SHARD_COUNTS};
use flit_client::{Client, ClientError, Options};
use flit_wire::ErrorCode;

fn ack_client(server: &FlitServer, token: Option<&str>) -> Client {
    let options = Options { ack_mode: true, auth_token: token.map(str::to_owned), ..Options::default() };
    Client::connect_with(server.address, options).expect("connect")
}

/// Publishes `count` messages as fast as acks come back; returns (passed, refusals' retry hints).
fn publish_burst(client: &Client, count: usize) -> (usize, Vec<u32>) {
    let mut passed = 0;
    let mut hints = Vec::new();
    for _ in 0..count {
        match client.publish("rate.test", b"x") {
            Ok(()) => passed += 1,
            Err(ClientError::Server { code, retry_after_ms, .. }) if code == ErrorCode::RateLimited.as_u16() => {
                hints.push(retry_after_ms)
            }
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    (passed, hints)
}

#[test]
fn reject_lets_the_burst_through_and_refuses_the_rest_with_a_hint() {
    for shards in SHARD_COUNTS {
        // 10 a second, burst 10: a tight loop of 40 gets about 10 through.
        let server = FlitServer::start(
            shards,
            &["--metrics", "127.0.0.1:0", "--rate-messages-per-second", "10", "--rate-burst-messages", "10"],
        );
        let client = ack_client(&server, None);
        let (passed, hints) = publish_burst(&client, 40);
        assert!((10..=15).contains(&passed), "shards={shards}: {passed} passed");
        assert_eq!(passed + hints.len(), 40);
        assert!(hints.iter().all(|hint| (1..=200).contains(hint)), "shards={shards}: hints {hints:?}");
        // Still open; after the hinted wait a publish passes again.
        std::thread::sleep(Duration::from_millis(u64::from(*hints.last().expect("refused some")) + 50));
        client.publish("rate.test", b"x").expect("allowed again after the hint");
        let metrics = scrape(server.metrics_address.expect("metrics"));
        assert_eq!(metric_sum(&metrics, "flit_shard_rate_limit_rejections_total", &[]), hints.len() as f64);
        assert_eq!(
            metric_sum(&metrics, "flit_shard_errors_total", &[("code", "rate_limited")]),
            hints.len() as f64,
            "shards={shards}"
        );
        // A second connection has its own budget.
        let other = ack_client(&server, None);
        assert!(publish_burst(&other, 5).0 == 5, "shards={shards}: per connection");
    }
}

#[test]
fn slow_down_drops_nothing_and_holds_the_publisher_to_the_rate() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(
            shards,
            &[
                "--metrics",
                "127.0.0.1:0",
                "--rate-messages-per-second",
                "500",
                "--rate-burst-messages",
                "50",
                "--rate-policy",
                "slow-down",
            ],
        );
        let subscriber = server.client();
        let subscription = subscriber.subscribe("slow.>").expect("subscribe");
        subscriber.flush().expect("flush");
        let publisher = server.client();
        let started = Instant::now();
        for index in 0..550u32 {
            publisher.publish("slow.data", &index.to_le_bytes()).expect("publish");
        }
        publisher.flush().expect("flush: returns once the server has read everything");
        let took = started.elapsed();
        for index in 0..550u32 {
            let message = next_message(&subscription);
            assert_eq!(&message.payload[..], &index.to_le_bytes(), "shards={shards}: none dropped, in order");
        }
        // 500 beyond the burst at 500/s: about a second (less a pause's slack).
        assert!(took >= Duration::from_millis(800), "shards={shards}: took {took:?}");
        let metrics = scrape(server.metrics_address.expect("metrics"));
        assert!(metric_sum(&metrics, "flit_shard_rate_limit_pauses_total", &[]) > 0.0);
        assert_eq!(metric_sum(&metrics, "flit_shard_rate_limit_rejections_total", &[]), 0.0);
    }
}

#[test]
fn an_identity_limit_is_shared_by_its_connections() {
    let token = "limited-token-5e2a7c9d1f";
    let hash: String = flit_shard::auth::token_sha256(token).iter().map(|byte| format!("{byte:02x}")).collect();
    let directory = std::env::temp_dir().join(format!("flit-rate-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("temp dir");
    let file = directory.join("identities.toml");
    let text = format!(
        "[[identity]]\nname = \"limited\"\ntoken_sha256 = \"{hash}\"\n\
         rate = {{ messages_per_second = 10, burst_messages = 10, policy = \"reject\" }}\n"
    );
    std::fs::write(&file, text).expect("write");
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &["--identities", file.to_str().expect("utf-8")]);
        let first = ack_client(&server, Some(token));
        let second = ack_client(&server, Some(token));
        let (first_passed, _) = publish_burst(&first, 8);
        let (second_passed, second_refused) = publish_burst(&second, 8);
        assert_eq!(first_passed, 8, "shards={shards}");
        assert!((2..=5).contains(&second_passed), "shards={shards}: the two share one budget: {second_passed}");
        assert!(!second_refused.is_empty());
    }
    let _ = std::fs::remove_dir_all(&directory);
}
