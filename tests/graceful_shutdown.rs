//! SIGTERM drains the router: what was published and flushed before the
//! signal reaches its subscribers, every connected client is told the server
//! is shutting down (Error 303) or sees its connection closed, each shard
//! logs its counters in one `shard stopped` event, and the exit code is 0. A
//! subscriber that is behind when the signal comes but keeps reading gets
//! every queued delivery, after a Draining notice; /readyz turns 503 at once.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{next_message, FlitServer, RawConnection, SHARD_COUNTS};
use flit_wire::{ErrorCode, Frame};

/// Messages published and flushed before the signal.
const MESSAGES: u64 = 5_000;

/// The shard numbers of the `shard stopped` log events, in order seen.
fn stopped_shards(stderr: &str) -> Vec<usize> {
    common::shard_stopped_events(stderr).into_iter().map(|(shard, _)| shard as usize).collect()
}

/// How a raw subscriber's connection ended.
#[derive(Debug)]
struct RawEnding {
    delivered: Vec<u64>,
    error_code: Option<u16>,
    /// The Draining notice's `close_within_ms`, if one came.
    draining_within_ms: Option<u64>,
}

/// Reads frames until the server closes: Deliver payloads, then at most one
/// Error frame, then EOF. Every read is bounded by the connection's timeout.
fn read_to_close(connection: &mut RawConnection) -> RawEnding {
    let mut ending = RawEnding { delivered: Vec::new(), error_code: None, draining_within_ms: None };
    while let Some(frame) = connection.read_frame() {
        assert!(ending.error_code.is_none(), "a frame followed the Error frame: {frame:?}");
        match frame {
            Frame::Deliver(deliver) => {
                let index = std::str::from_utf8(&deliver.payload).expect("utf-8").parse().expect("a number");
                ending.delivered.push(index);
            }
            Frame::Error(error) => ending.error_code = Some(error.code),
            Frame::Draining { close_within_ms } => {
                assert!(ending.draining_within_ms.is_none(), "a second Draining notice");
                ending.draining_within_ms = Some(close_within_ms);
            }
            other => panic!("unexpected frame: {other:?}"),
        }
    }
    ending
}

#[test]
fn sigterm_exits_0_with_one_stopped_line_per_shard() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        let clients: Vec<_> = (0..shards).map(|shard| server.client_on_shard(shard)).collect();
        for client in &clients {
            client.publish("warm.up", b"x").expect("publish");
            client.flush().expect("flush");
        }
        let (code, stderr) = server.stop();
        assert_eq!(code, Some(0), "shards={shards}: stderr: {stderr}");
        let mut stopped = stopped_shards(&stderr);
        stopped.sort_unstable();
        assert_eq!(stopped, (0..shards).collect::<Vec<_>>(), "shards={shards}: stderr: {stderr}");
    }
}

#[test]
fn subscriber_connected_at_shutdown_gets_shutting_down_or_eof() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        let mut subscribers: Vec<_> = (0..shards)
            .map(|shard| {
                let mut connection = RawConnection::connect_on_shard(server.address, shard);
                connection.subscribe_and_flush("idle.>", 1);
                connection
            })
            .collect();
        let (code, stderr) = server.stop();
        assert_eq!(code, Some(0), "shards={shards}: stderr: {stderr}");
        for (shard, subscriber) in subscribers.iter_mut().enumerate() {
            let ending = read_to_close(subscriber);
            assert!(ending.delivered.is_empty(), "shards={shards}: shard {shard}: {ending:?}");
            if let Some(code) = ending.error_code {
                assert_eq!(code, ErrorCode::ShuttingDown.as_u16(), "shards={shards}: shard {shard}: {ending:?}");
            }
        }
    }
}

#[test]
fn messages_flushed_before_sigterm_are_all_delivered() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        // A raw subscriber on the last shard, read by its own thread from the
        // start, so it keeps reading through the shutdown.
        let mut raw = RawConnection::connect_on_shard(server.address, shards - 1);
        raw.subscribe_and_flush("drain.>", 1);
        let (ending_sender, ending_receiver) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let _ = ending_sender.send(read_to_close(&mut raw));
        });
        // Client subscribers on every shard, read by their clients' reader threads.
        let clients: Vec<_> = (0..shards).map(|shard| server.client_on_shard(shard)).collect();
        let subscriptions: Vec<_> =
            clients.iter().map(|client| client.subscribe("drain.>").expect("subscribe")).collect();
        for client in &clients {
            client.flush().expect("flush subscriber");
        }

        let publisher = server.client_on_shard(0);
        for index in 0..MESSAGES {
            publisher.publish("drain.data", index.to_string().as_bytes()).expect("publish");
        }
        publisher.flush().expect("flush publisher");

        let (code, stderr) = server.stop();
        assert_eq!(code, Some(0), "shards={shards}: stderr: {stderr}");

        let ending = ending_receiver
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("shards={shards}: the raw subscriber's reader did not finish"));
        reader.join().expect("reader thread");
        assert_eq!(
            ending.delivered,
            (0..MESSAGES).collect::<Vec<_>>(),
            "shards={shards}: the raw subscriber got every flushed message, in order (error {:?})",
            ending.error_code
        );
        if let Some(code) = ending.error_code {
            assert_eq!(code, ErrorCode::ShuttingDown.as_u16(), "shards={shards}");
        }

        for (shard, subscription) in subscriptions.iter().enumerate() {
            for index in 0..MESSAGES {
                let message = next_message(subscription);
                assert_eq!(
                    message.payload,
                    index.to_string().as_bytes(),
                    "shards={shards}: subscriber on shard {shard}"
                );
            }
            // Then the subscription ends with the connection.
            match subscription.next_timeout(Duration::from_secs(5)) {
                Err(_) => {}
                Ok(extra) => panic!("shards={shards}: subscriber on shard {shard}: expected the end, got {extra:?}"),
            }
        }
    }
}

/// Payload bytes of each message in the queued-delivery test.
const QUEUED_PAYLOAD_BYTES: usize = 1024;
/// Messages published to a subscriber that is not reading: about 20 MiB,
/// several times what loopback socket buffers hold, so most of it waits in
/// the router's write buffer when the signal comes.
const QUEUED_MESSAGES: u64 = 20_000;

#[test]
fn queued_deliveries_reach_a_subscriber_that_keeps_reading_through_the_drain() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(
            shards,
            &["--metrics", "127.0.0.1:0", "--pending-bytes-max", "67108864", "--shutdown-flush-timeout-ms", "20000"],
        );
        let metrics = server.metrics_address.expect("metrics address");
        let mut subscriber = RawConnection::connect_on_shard(server.address, shards - 1);
        subscriber.subscribe_and_flush("queued.>", 1);
        let publisher = server.client_on_shard(0);
        let payload = vec![b'q'; QUEUED_PAYLOAD_BYTES];
        for index in 0..QUEUED_MESSAGES {
            let mut numbered = payload.clone();
            numbered[..8].copy_from_slice(&index.to_le_bytes());
            publisher.publish("queued.data", &numbered).expect("publish");
        }
        publisher.flush().expect("flush publisher");
        // The router has read every publish; the subscriber has read none, so
        // deliveries are queued in the router.
        let queued = wait_for(|| {
            let pending = common::metric_sum(&common::scrape(metrics), "flit_shard_pending_bytes", &[]);
            (pending > 0.0).then_some(pending)
        });
        assert!(queued.is_some(), "shards={shards}: deliveries are queued in the router before the signal");
        assert_eq!(common::http_get(metrics, "/readyz").0, 200);

        server.terminate();
        // Draining: not ready (load balancers stop sending), still alive.
        let not_ready = wait_for(|| (common::http_get(metrics, "/readyz").0 == 503).then_some(()));
        assert!(not_ready.is_some(), "shards={shards}: /readyz turns 503 once the drain begins");
        assert_eq!(common::http_get(metrics, "/healthz").0, 200, "alive while draining");
        assert_eq!(common::metric_sum(&common::scrape(metrics), "flit_draining", &[]), 1.0);

        // Now the subscriber reads: everything queued arrives, in order.
        let mut received = 0u64;
        let mut draining_within_ms = None;
        let mut error_code = None;
        while let Some(frame) = subscriber.read_frame() {
            assert!(error_code.is_none(), "shards={shards}: a frame after the Error frame: {frame:?}");
            match frame {
                Frame::Deliver(deliver) => {
                    let index = u64::from_le_bytes(deliver.payload[..8].try_into().expect("8 bytes"));
                    assert_eq!(index, received, "shards={shards}: in order, none missing");
                    received += 1;
                }
                Frame::Draining { close_within_ms } => {
                    assert!(draining_within_ms.is_none(), "one notice");
                    draining_within_ms = Some(close_within_ms);
                }
                Frame::Error(error) => error_code = Some(error.code),
                other => panic!("shards={shards}: unexpected frame {other:?}"),
            }
        }
        assert_eq!(received, QUEUED_MESSAGES, "shards={shards}: no queued message was lost");
        assert_eq!(draining_within_ms, Some(20_000), "shards={shards}: the Draining notice names the deadline");
        assert_eq!(error_code, Some(ErrorCode::ShuttingDown.as_u16()), "shards={shards}");
        let (code, stderr) = server.wait();
        assert_eq!(code, Some(0), "shards={shards}: {stderr}");
    }
}

/// Polls `probe` every 20 ms for up to ten seconds.
fn wait_for<T>(mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Some(value) = probe() {
            return Some(value);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
