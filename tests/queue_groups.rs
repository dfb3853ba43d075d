//! Queue groups: each message reaches exactly one member of each group, with
//! members spread over shards, while plain subscribers get every message.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{FlitServer, SHARD_COUNTS};

const MESSAGES: u32 = 2_000;

fn drain(subscription: &flit_client::Subscription, into: &mut Vec<u32>) {
    while let Ok(Some(message)) = subscription.next_timeout(Duration::from_millis(300)) {
        into.push(u32::from_le_bytes(message.payload[..4].try_into().expect("4 bytes")));
    }
}

#[test]
fn each_message_goes_to_exactly_one_member_per_group() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        // Two groups of three members, members on every shard, plus one plain subscriber.
        let mut members = Vec::new();
        for group in ["billing", "audit"] {
            for member in 0..3 {
                let client = server.client_on_shard(member % shards);
                let subscription = client.queue_subscribe("jobs.*", group).expect("queue subscribe");
                client.flush().expect("flush");
                members.push((group, client, subscription));
            }
        }
        let plain_client = server.client();
        let plain = plain_client.subscribe("jobs.>").expect("subscribe");
        plain_client.flush().expect("flush");

        let publisher = server.client();
        for index in 0..MESSAGES {
            publisher.publish("jobs.run", &index.to_le_bytes()).expect("publish");
        }
        publisher.flush().expect("flush");

        let mut plain_received = Vec::new();
        drain(&plain, &mut plain_received);
        assert_eq!(plain_received, (0..MESSAGES).collect::<Vec<_>>(), "plain subscriber gets every message");

        for group in ["billing", "audit"] {
            let mut received = Vec::new();
            let mut members_used = 0;
            for (member_group, _, subscription) in &members {
                if *member_group != group {
                    continue;
                }
                let before = received.len();
                drain(subscription, &mut received);
                if received.len() > before {
                    members_used += 1;
                }
            }
            assert_eq!(received.len(), MESSAGES as usize, "group {group}: no message lost or duplicated");
            let distinct: HashSet<u32> = received.iter().copied().collect();
            assert_eq!(distinct.len(), MESSAGES as usize, "group {group}: each message exactly once");
            assert!(members_used >= 2, "group {group}: the work is shared, {members_used} member(s) used");
        }
    }
}

#[test]
fn members_on_another_shard_only_still_get_the_messages() {
    let server = FlitServer::start(2, &[]);
    let member = server.client_on_shard(1);
    let subscription = member.queue_subscribe("remote.work", "workers").expect("queue subscribe");
    member.flush().expect("flush");
    let publisher = server.client_on_shard(0);
    for index in 0..100u32 {
        publisher.publish("remote.work", &index.to_le_bytes()).expect("publish");
    }
    publisher.flush().expect("flush");
    let mut received = Vec::new();
    drain(&subscription, &mut received);
    assert_eq!(received, (0..100).collect::<Vec<_>>());
}
