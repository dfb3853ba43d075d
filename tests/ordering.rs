//! Ordering: messages from one publisher connection on one subject arrive at
//! each subscriber in publish order, including when the subscriber is on
//! another shard (the SPSC queue between two shards is FIFO).

mod common;

use std::time::Duration;

use common::FlitServer;

const MESSAGES: u64 = 100_000;

fn receive_all(subscription: flit_client::Subscription) -> std::thread::JoinHandle<Vec<u64>> {
    std::thread::spawn(move || {
        let mut received = Vec::with_capacity(MESSAGES as usize);
        while (received.len() as u64) < MESSAGES {
            match subscription.next_timeout(Duration::from_secs(10)) {
                Ok(Some(message)) => {
                    received.push(u64::from_le_bytes(message.payload[..8].try_into().expect("8 bytes")))
                }
                _ => break,
            }
        }
        received
    })
}

#[test]
fn one_publisher_order_is_kept_on_every_shard() {
    let server = FlitServer::start(2, &[]);
    let same_shard = server.client_on_shard(0);
    let other_shard = server.client_on_shard(1);
    let near = same_shard.subscribe("ordered").expect("subscribe");
    let far = other_shard.subscribe("ordered").expect("subscribe");
    same_shard.flush().expect("flush");
    other_shard.flush().expect("flush");
    let near = receive_all(near);
    let far = receive_all(far);
    let publisher = server.client_on_shard(0);
    for sequence in 0..MESSAGES {
        publisher.publish("ordered", &sequence.to_le_bytes()).expect("publish");
    }
    publisher.flush().expect("flush");
    let expected: Vec<u64> = (0..MESSAGES).collect();
    let near = near.join().expect("near");
    let far = far.join().expect("far");
    assert_eq!(near.len(), expected.len(), "same-shard subscriber lost messages");
    assert!(near == expected, "same-shard subscriber saw messages out of order");
    assert_eq!(far.len(), expected.len(), "cross-shard subscriber lost messages");
    assert!(far == expected, "cross-shard subscriber saw messages out of order");
}
