//! Backpressure between shards: with cross-shard queues only two messages
//! deep, a fast publisher on one shard and a subscriber on the other still
//! lose nothing and see publish order. The publisher's shard holds messages
//! in its outbox and stops reading sockets until the queue has room.

mod common;

use std::time::Duration;

use common::FlitServer;

const MESSAGES: u32 = 50_000;

#[test]
fn tiny_mesh_queue_loses_nothing_and_keeps_order() {
    let server = FlitServer::start(2, &["--mesh-depth", "2"]);
    let subscriber = server.client_on_shard(1);
    let subscription = subscriber.subscribe("pressure").expect("subscribe");
    subscriber.flush().expect("flush");
    let receiver = std::thread::spawn(move || {
        let mut received = Vec::with_capacity(MESSAGES as usize);
        while received.len() < MESSAGES as usize {
            match subscription.next_timeout(Duration::from_secs(10)) {
                Ok(Some(message)) => {
                    received.push(u32::from_le_bytes(message.payload[..4].try_into().expect("4 bytes")))
                }
                _ => break,
            }
        }
        received
    });
    let publisher = server.client_on_shard(0);
    for sequence in 0..MESSAGES {
        publisher.publish("pressure", &sequence.to_le_bytes()).expect("publish");
    }
    publisher.flush().expect("flush");
    let received = receiver.join().expect("receiver");
    assert_eq!(received.len(), MESSAGES as usize, "messages lost");
    assert!(received.iter().copied().eq(0..MESSAGES), "messages out of order");
    let (code, stderr) = server.stop();
    assert_eq!(code, Some(0));
    let full_events: u64 = stderr
        .split_whitespace()
        .filter_map(|field| field.strip_prefix("mesh_queue_full_events="))
        .map(|value| value.parse::<u64>().expect("a number"))
        .sum();
    assert!(full_events > 0, "the test must actually fill the queue: {stderr}");
}
